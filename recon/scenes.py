"""Synthetic coded-blur scenes with ground truth at any time, for the learned reconstruction.

A scene is a stack of layers seen through a moving camera during one exposure ``t in [0, 1]``:

* layer 0, the background: an opaque crop of a still photograph (from the free-licence Debian
  wallpaper packages, see :class:`recon.photos.PhotoLibrary`) or of a procedural dead-leaves
  image (:func:`recon.photos.dead_leaves_image`);
* layers 1.., 1 to 3 sprites: photo or dead-leaves patches with soft random-shape alpha masks;
* a global camera shake, a small smooth translation added to every layer.

Each layer has parametric motion (velocity, acceleration, rotation, scale change; see
:class:`Layer`). :func:`render` gives the instantaneous view at any ``t`` by affine warps
(``grid_sample``, all times of a layer in one call) and alpha compositing back to front.

:class:`SceneSampler` draws random scenes, seeded, with a given motion extent
(:func:`motion_extent_px`). Time conventions are those of :mod:`recon.data` (the exposure spans
``t in [0, 1]``). The textures come from :mod:`recon.photos`; coding scenes into batches with
ground truth, and the fixed validation and test sets, are :mod:`recon.scene_batches`; the code
family for training is :mod:`recon.code_family`.

Coordinates: pixel centres at integers, x to the right and y down; a layer position is the
position of its texture centre relative to the frame centre, ``((W - 1) / 2, (H - 1) / 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recon.photos import DEAD_LEAVES_SEEDS, SPLITS, PhotoLibrary, dead_leaves_image

__all__ = [
    "CameraShake", "Layer", "Scene", "SceneSampler", "fill_layer_grid", "motion_extent_px",
    "render", "render_batch", "sprite_window",
]

# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One image layer and its motion during the exposure.

    With ``tau = t - 1/2``, the texture centre is at ``centre_px + velocity_px * tau +
    accel_px * tau**2 / 2`` (plus the camera shake), turned by ``angle_rad + spin_rad * tau`` and
    scaled by ``scale * exp(log_zoom * tau)`` output pixels per texture pixel. So ``velocity_px``
    is exactly the displacement from ``t = 0`` to ``t = 1`` and the acceleration only bends the
    path; ``spin_rad`` and ``log_zoom`` are the rotation and log scale change over the exposure.

    Attributes:
        texture: grey levels in ``[0, 1]``, ``(h, w)``.
        alpha: coverage in ``[0, 1]``, ``(h, w)``; ``None`` for an opaque layer (the background).
        centre_px: ``(x, y)`` of the texture centre at ``t = 1/2``, relative to the frame centre.
        velocity_px: ``(dx, dy)`` displacement over the exposure.
        accel_px: ``(ax, ay)``, pixels per exposure squared.
        angle_rad: rotation at ``t = 1/2`` (from +x towards +y).
        spin_rad: rotation over the exposure.
        scale: output pixels per texture pixel at ``t = 1/2``.
        log_zoom: change of the log scale over the exposure.
        source: where the texture came from (``"photo:<path>"`` or ``"dead_leaves:<seed>"``).
    """

    texture: Tensor
    alpha: Tensor | None = None
    centre_px: tuple[float, float] = (0.0, 0.0)
    velocity_px: tuple[float, float] = (0.0, 0.0)
    accel_px: tuple[float, float] = (0.0, 0.0)
    angle_rad: float = 0.0
    spin_rad: float = 0.0
    scale: float = 1.0
    log_zoom: float = 0.0
    source: str = ""

    def scaled_motion(self, f: float) -> Layer:
        """The same layer with velocity, acceleration, spin and zoom rate multiplied by ``f``."""
        return replace(
            self, velocity_px=(self.velocity_px[0] * f, self.velocity_px[1] * f),
            accel_px=(self.accel_px[0] * f, self.accel_px[1] * f),
            spin_rad=self.spin_rad * f, log_zoom=self.log_zoom * f,
        )


@dataclass(frozen=True)
class CameraShake:
    """Global translation ``sum_k A_k * (sin(2 pi f_k t + phi_k) - sin(pi f_k + phi_k))``.

    It is zero at ``t = 1/2``. Attributes are per component ``k``: ``amplitude_px`` ``(Ax, Ay)``,
    ``cycles`` ``f_k`` (per exposure) and ``phase_rad`` ``(phi_x, phi_y)``.
    """

    amplitude_px: tuple[tuple[float, float], ...] = ()
    cycles: tuple[float, ...] = ()
    phase_rad: tuple[tuple[float, float], ...] = ()

    def offset(self, t: np.ndarray) -> np.ndarray:
        """Shake at times ``t`` (``(T,)``) as ``(T, 2)`` pixels (x, y)."""
        out = np.zeros((t.size, 2))
        for a, f, ph in zip(self.amplitude_px, self.cycles, self.phase_rad, strict=True):
            for d in range(2):
                out[:, d] += a[d] * (np.sin(2 * np.pi * f * t + ph[d]) - np.sin(np.pi * f + ph[d]))
        return out

    def scaled(self, f: float) -> CameraShake:
        """The same shake with amplitudes multiplied by ``f``."""
        return replace(self, amplitude_px=tuple((a[0] * f, a[1] * f) for a in self.amplitude_px))


@dataclass(frozen=True)
class Scene:
    """Layers (background first, opaque) and camera shake, rendered at ``size_hw``.

    Attributes:
        size_hw: ``(H, W)`` of the rendered views.
        layers: ``layers[0]`` is the opaque background, then sprites back to front.
        shake: global camera shake.
        split: the photo split the textures came from (``"train"``, ``"val"``, ``"test"`` or
            ``""`` for a hand-built scene).
        motion_px: :func:`motion_extent_px` of the scene (set by the sampler; ``nan`` if unset).
    """

    size_hw: tuple[int, int]
    layers: tuple[Layer, ...]
    shake: CameraShake = field(default_factory=CameraShake)
    split: str = ""
    motion_px: float = math.nan

    @property
    def sources(self) -> tuple[str, ...]:
        """The ``source`` of every layer."""
        return tuple(layer.source for layer in self.layers)


def _pose(layer: Layer, shake: CameraShake, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Position (T, 2), angle (T,) and scale (T,) of a layer at times t (float64)."""
    tau = (t - 0.5)[:, None]
    pos = (np.asarray(layer.centre_px) + np.asarray(layer.velocity_px) * tau
           + 0.5 * np.asarray(layer.accel_px) * tau**2 + shake.offset(t))
    ang = layer.angle_rad + layer.spin_rad * tau[:, 0]
    scl = layer.scale * np.exp(layer.log_zoom * tau[:, 0])
    return pos, ang, scl


def _support_radius(layer: Layer) -> float:
    """Radius (texture px) of the visible part of a sprite around its centre."""
    h, w = layer.texture.shape
    if layer.alpha is None:
        return 0.5 * math.hypot(h, w)
    ys, xs = torch.nonzero(layer.alpha > 0.05, as_tuple=True)
    if ys.numel() == 0:
        return 0.0
    d2 = (xs.double() - (w - 1) / 2).square() + (ys.double() - (h - 1) / 2).square()
    return float(d2.max().sqrt())


def motion_extent_px(scene: Scene, n_times: int = 33) -> float:
    """Largest distance any visible scene point travels between two times of the exposure.

    Anchors per layer: for the background, the scene points at the frame corners and centre at
    ``t = 1/2``; for a sprite, its centre and 8 points on the circle that holds its visible part.
    For each anchor the trajectory diameter ``max |x(t) - x(t')|`` is taken over ``n_times``
    equally spaced times; the result is the maximum over anchors and layers (pixels per exposure).
    This is the quantity the motion strata (slow <= 8, medium 8..24, fast 24..48 px) refer to.

    Args:
        scene: the scene.
        n_times: time samples on ``[0, 1]`` (>= 2).

    Returns:
        The motion extent in pixels.
    """
    return _extent(scene, _anchors(scene), n_times)


def _anchors(scene: Scene) -> list[np.ndarray]:
    """Anchor points per layer in texture coordinates (they do not change when motion scales)."""
    h, w = scene.size_hw
    out = []
    for i, layer in enumerate(scene.layers):
        if i == 0:
            pm, am, sm = _mid(layer, scene.shake)
            hx, hy = (w - 1) / 2, (h - 1) / 2
            corners = np.array([[0.0, 0.0], [-hx, -hy], [hx, -hy], [-hx, hy], [hx, hy]])
            c, s = math.cos(am), math.sin(am)
            out.append((corners - pm) @ (np.array([[c, s], [-s, c]]) / sm).T)
        else:
            r = _support_radius(layer)
            phi = np.arange(8) * np.pi / 4
            out.append(np.concatenate([[[0.0, 0.0]],
                                       r * np.stack([np.cos(phi), np.sin(phi)], 1)]))
    return out


def _extent(scene: Scene, anchors: list[np.ndarray], n_times: int = 33) -> float:
    t = np.linspace(0.0, 1.0, n_times)
    best = 0.0
    for layer, anc in zip(scene.layers, anchors, strict=True):
        pos, ang, scl = _pose(layer, scene.shake, t)
        c, s = np.cos(ang), np.sin(ang)
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2) * scl[:, None, None]
        x = pos[:, None, :] + np.einsum("tij,aj->tai", rot, anc)  # (T, A, 2)
        d = np.sqrt(((x[:, None] - x[None, :]) ** 2).sum(-1))
        best = max(best, float(d.max()))
    return best


def _mid(layer: Layer, shake: CameraShake) -> tuple[np.ndarray, float, float]:
    pos, ang, scl = _pose(layer, shake, np.array([0.5]))
    return pos[0], float(ang[0]), float(scl[0])


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _check_times(times: Sequence[float] | Tensor) -> np.ndarray:
    t = (times.detach().cpu().double().numpy() if isinstance(times, Tensor)
         else np.asarray(times, dtype=np.float64))
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"times must be a non-empty 1-D sequence of finite numbers; got shape "
                         f"{t.shape}.")
    if t.min() < 0.0 or t.max() > 1.0:
        raise ValueError(f"times must lie in the exposure [0, 1]; got [{t.min():.4g}, "
                         f"{t.max():.4g}].")
    return t


def _fill_grid(grid: Tensor, layer: Layer, shake: CameraShake, t: np.ndarray, xs: np.ndarray,
               ys: np.ndarray) -> None:
    """Write the grid_sample grid of a layer into ``grid`` (T, Hn, Wn, 2), element by element.

    Output pixel at centred coordinates (X, Y) samples texture point u = R(-a) (X - p) / s,
    normalised (align_corners=False) as g = 2 u / (w, h); each component is the sum of a part
    that depends on X and a part that depends on Y.
    """
    pos, ang, scl = _pose(layer, shake, t)
    h, w = layer.texture.shape
    c, s = np.cos(ang) / scl, np.sin(ang) / scl
    dx = xs[None, :] - pos[:, :1]  # (T, Wn)
    dy = ys[None, :] - pos[:, 1:]  # (T, Hn)
    for comp, (mx, my) in enumerate(((2 * c / w, 2 * s / w), (-2 * s / h, 2 * c / h))):
        gx = torch.from_numpy((mx[:, None] * dx).astype(np.float32)).unsqueeze(1)
        gy = torch.from_numpy((my[:, None] * dy).astype(np.float32)).unsqueeze(2)
        if grid.device.type != "cpu":
            gx, gy = gx.to(grid.device, non_blocking=True), gy.to(grid.device, non_blocking=True)
        torch.add(gx, gy, out=grid[..., comp])


def _sprite_window(layer: Layer, shake: CameraShake, t: np.ndarray,
                   hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel box (y0, y1, x0, x1) that holds the sprite at all times t, clipped to the frame."""
    pos, ang, scl = _pose(layer, shake, t)
    h, w = layer.texture.shape
    r = 0.5 * math.hypot(h, w) * scl[:, None]  # circle around the texture, any rotation
    lo, hi = pos - r, pos + r
    hh, ww = hw
    x0 = max(0, math.floor(lo[:, 0].min() + (ww - 1) / 2) - 1)
    x1 = min(ww, math.ceil(hi[:, 0].max() + (ww - 1) / 2) + 2)
    y0 = max(0, math.floor(lo[:, 1].min() + (hh - 1) / 2) - 1)
    y1 = min(hh, math.ceil(hi[:, 1].max() + (hh - 1) / 2) + 2)
    return y0, y1, x0, x1


#: Public names of the per-layer sampling helpers (recon.motion_data renders alpha maps with them).
fill_layer_grid = _fill_grid
sprite_window = _sprite_window


def render_batch(scenes: Sequence[Scene], times: Sequence[float] | Tensor,
                 device: torch.device | str = "cpu") -> Tensor:
    """Instantaneous views of several scenes at the same times.

    Each layer is warped by one bilinear ``grid_sample`` call over all times (a sprite only over
    the box it sweeps) and composited back to front with premultiplied alpha. Scenes are rendered
    one after the other into the output (measured as fast as one call over the whole batch on
    the CPU, with an eighth of the grid memory), so the result for one scene does not depend on
    the other scenes of the batch, bit for bit. The background is clamped at its texture border
    if a view ever reaches past it (the sampler sizes textures so that it does not).

    Args:
        scenes: scenes of one ``size_hw``.
        times: ``T`` times in ``[0, 1]``.
        device: where to render (textures are copied there). A GPU renders training batches
            far faster than the CPU; results agree with the CPU's to float rounding, not bit
            for bit, so the fixed sets are rendered on the CPU.

    Returns:
        The views, float32 in ``[0, 1]``, on ``device``.

    Raises:
        ValueError: no scene, scenes of different sizes, a scene without an opaque background,
            or times outside ``[0, 1]``.

    Shape:
        - output: ``(B, T, H, W)``
    """
    if not scenes:
        raise ValueError("render_batch needs at least one scene.")
    hw = scenes[0].size_hw
    if any(s.size_hw != hw for s in scenes):
        raise ValueError("All scenes of a batch must have the same size_hw; render them apart.")
    for s in scenes:
        if not s.layers or s.layers[0].alpha is not None:
            raise ValueError("A scene needs an opaque background as layers[0] (alpha=None).")
    t = _check_times(times)
    n_t = t.size
    hh, ww = hw
    xs = np.arange(ww) - (ww - 1) / 2
    ys = np.arange(hh) - (hh - 1) / 2
    dev = torch.device(device)
    out = torch.empty(len(scenes), n_t, hh, ww, device=dev)
    grid = torch.empty(n_t, hh, ww, 2, device=dev)  # reused: one sample at a time is as fast
    for i, s in enumerate(scenes):
        _fill_grid(grid, s.layers[0], s.shake, t, xs, ys)
        tex = s.layers[0].texture.float().to(dev)[None, None]
        out[i] = F.grid_sample(tex, grid.view(1, n_t * hh, ww, 2), mode="bilinear",
                               padding_mode="border", align_corners=False).view(n_t, hh, ww)
        for layer in s.layers[1:]:
            if layer.alpha is None:
                raise ValueError("Sprites (layers[1:]) need an alpha mask.")
            y0, y1, x0, x1 = _sprite_window(layer, s.shake, t, hw)
            if y0 >= y1 or x0 >= x1:
                continue
            g = torch.empty(n_t, y1 - y0, x1 - x0, 2, device=dev)
            _fill_grid(g, layer, s.shake, t, xs[x0:x1], ys[y0:y1])
            alpha = layer.alpha.float()
            # Zero alpha all round the texture: "border" equals "zeros" padding and is faster.
            edge = torch.cat([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
            tex = torch.stack([layer.texture.float() * alpha, alpha]).unsqueeze(0).to(dev)
            pad = "border" if float(edge.abs().max()) == 0.0 else "zeros"
            pa = F.grid_sample(tex, g.view(1, n_t * (y1 - y0), x1 - x0, 2), mode="bilinear",
                               padding_mode=pad, align_corners=False).view(2, n_t, y1 - y0,
                                                                            x1 - x0)
            region = out[i, :, y0:y1, x0:x1]
            region.addcmul_(region, pa[1], value=-1.0).add_(pa[0])  # (1 - a) * below + a * v
    return out.clamp_(0.0, 1.0)


def render(scene: Scene, times: Sequence[float] | Tensor) -> Tensor:
    """The instantaneous view of a scene at each time (see :func:`render_batch`).

    Args:
        scene: the scene.
        times: ``T`` times in ``[0, 1]``.

    Returns:
        The views, float32 in ``[0, 1]``.

    Raises:
        ValueError: as :func:`render_batch`.

    Shape:
        - output: ``(T, H, W)``

    >>> bg = Layer(torch.linspace(0, 1, 40).repeat(40, 1), velocity_px=(8.0, 0.0))
    >>> v = render(Scene((16, 16), (bg,)), [0.0, 0.5, 1.0])
    >>> tuple(v.shape), bool(v[0, 8, 8] > v[1, 8, 8] > v[2, 8, 8])  # content moves right
    ((3, 16, 16), True)
    """
    return render_batch([scene], times)[0]


# ---------------------------------------------------------------------------------------------
# Scene sampling
# ---------------------------------------------------------------------------------------------


def _crop(img: np.ndarray, side: int, rng: np.random.Generator,
          rho_range: tuple[float, float]) -> np.ndarray:
    """A random square crop resized to side x side; rho = image px per output px."""
    h0, w0 = img.shape
    rho_hi = min(rho_range[1], h0 / side, w0 / side)
    rho_lo = min(rho_range[0], rho_hi)
    rho = math.exp(rng.uniform(math.log(rho_lo), math.log(rho_hi)))
    c = min(h0, w0, max(2, round(side * rho)))
    y0 = int(rng.integers(0, h0 - c + 1))
    x0 = int(rng.integers(0, w0 - c + 1))
    patch = img[y0:y0 + c, x0:x0 + c]
    interp = cv2.INTER_AREA if c > side else cv2.INTER_LINEAR
    out = cv2.resize(patch, (side, side), interpolation=interp)
    k = int(rng.integers(0, 8))  # one of the 8 flips/rotations
    out = np.rot90(out, k % 4)
    if k >= 4:
        out = out[:, ::-1]
    return np.clip(out, 0.0, 1.0)


def _blob_alpha(side: int, rng: np.random.Generator) -> np.ndarray:
    """Soft random shape: a superellipse with random harmonics of its radius, soft edges."""
    soft = rng.uniform(0.7, 2.0)
    p = rng.uniform(2.0, 6.0)
    aspect = rng.uniform(0.55, 1.0)
    amps = rng.uniform(0.0, 0.18, size=4) / np.arange(1, 5)
    phases = rng.uniform(0, 2 * np.pi, size=4)
    c = (side - 1) / 2
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) - c
    rr = np.hypot(xx, yy)
    phi = np.arctan2(yy, xx)

    def radius(ph: np.ndarray) -> np.ndarray:
        se = (np.abs(np.cos(ph)) ** p + np.abs(np.sin(ph) / aspect) ** p) ** (-1 / p)
        wobble = 1 + sum(a * np.cos(k * ph + q)
                         for k, (a, q) in enumerate(zip(amps, phases, strict=True), 1))
        return se * wobble

    rmax = radius(np.linspace(0, 2 * np.pi, 720, endpoint=False)).max()
    r = radius(phi) * (c - soft - 0.5) / rmax
    return np.clip((r - rr) / soft + 0.5, 0.0, 1.0).astype(np.float32)


def _background_side(hw: tuple[int, int], max_motion_px: float, max_angle_rad: float) -> int:
    hh, ww = hw
    c, s = math.cos(max_angle_rad), math.sin(max_angle_rad)
    half = max(ww * c + hh * s, ww * s + hh * c) / 2 + max_motion_px + 4
    return 2 * math.ceil(half)


class SceneSampler:
    """Draws random layered scenes, each reproducible from ``(seed, index)``.

    A scene: a background (a photo crop, or with probability ``dead_leaves_fraction`` a crop of a
    procedural dead-leaves image), 1 to ``max_sprites`` sprites (photo or dead-leaves patches,
    20 % to 55 % of the frame's short side, soft random-shape masks, random orientation), and
    camera shake. Crops take 0.5 to 2 image pixels per output pixel (clamped to what the image
    holds) and one of the 8 flips/rotations; a nearly flat crop (grey-level std < 0.04, e.g. sky
    or the plain parts of wallpapers) is drawn again, up to 4 times. Motion: each sprite moves in
    a uniform direction at 25 % to 100 % of the top speed, with acceleration up to its speed,
    spin and zoom; the background pans (60 % of scenes, up to 70 % of the top speed, small roll
    and zoom); then all motion is scaled so that :func:`motion_extent_px` equals a target drawn
    uniformly from ``[0, max_motion_px]`` (or the range asked for).

    Args:
        photos: the photographs; ``None`` for dead-leaves textures only.
        size: output ``H = W`` or ``(H, W)``.
        split: which photos and dead-leaves images to use: ``"train"``, ``"val"`` or ``"test"``.
        max_motion_px: top motion extent per exposure.
        dead_leaves_fraction: probability of a dead-leaves texture (background or sprite).
        max_sprites: most sprites per scene (>= 0).

    Raises:
        ValueError: a bad size, split or fraction, or a split with no photo.
    """

    #: Largest background angle at mid-exposure (the photos stay roughly upright).
    MAX_BACKGROUND_ANGLE_RAD = math.radians(10.0)

    def __init__(self, photos: PhotoLibrary | None, size: int | tuple[int, int] = 128, *,
                 split: str = "train", max_motion_px: float = 48.0,
                 dead_leaves_fraction: float = 0.3, max_sprites: int = 3) -> None:
        hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(hw) < 16:
            raise ValueError(f"size must be at least 16 pixels; got {size!r}.")
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; use one of {SPLITS}.")
        if not (0.0 <= dead_leaves_fraction <= 1.0):
            raise ValueError(f"dead_leaves_fraction must lie in [0, 1]; got "
                             f"{dead_leaves_fraction!r}.")
        if not (max_motion_px >= 0 and math.isfinite(max_motion_px)):
            raise ValueError(f"max_motion_px must be a finite number >= 0; got {max_motion_px!r}.")
        if max_sprites < 0:
            raise ValueError(f"max_sprites must be >= 0; got {max_sprites!r}.")
        self.photos = photos
        self.size_hw = hw
        self.split = split
        self.max_motion_px = float(max_motion_px)
        self.dead_leaves_fraction = float(dead_leaves_fraction) if photos is not None else 1.0
        self.max_sprites = int(max_sprites)
        self._photo_ids = photos.split(split) if photos is not None else ()
        if photos is not None and not self._photo_ids:
            raise ValueError(f"The photo library has no {split!r} photo; add photographs or use "
                             "photos=None (dead leaves only).")
        self.background_side = _background_side(hw, self.max_motion_px,
                                                self.MAX_BACKGROUND_ANGLE_RAD)

    def _texture(self, side: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """A textured crop: up to 4 draws, keeping the first with grey-level std >= 0.04."""
        for _ in range(4):
            if not self._photo_ids or rng.random() < self.dead_leaves_fraction:
                seeds = DEAD_LEAVES_SEEDS[self.split]
                seed = seeds[int(rng.integers(len(seeds)))]
                img, src = dead_leaves_image(seed), f"dead_leaves:{seed}"
            else:
                assert self.photos is not None
                pid = self._photo_ids[int(rng.integers(len(self._photo_ids)))]
                img, src = self.photos[pid], f"photo:{self.photos.paths[pid]}"
            crop = _crop(img, side, rng, (0.5, 2.0))
            if float(crop.std()) >= 0.04:
                break
        return crop, src

    def sample(self, seed: int, index: int = 0, *,
               motion_px: float | tuple[float, float] | None = None) -> Scene:
        """Draw scene ``index`` of the stream ``seed``.

        Args:
            seed: stream seed (>= 0).
            index: scene number in the stream (>= 0).
            motion_px: target :func:`motion_extent_px`: a number, a ``(lo, hi)`` range drawn
                uniformly, or ``None`` for ``[0, max_motion_px]``.

        Returns:
            The scene, with ``motion_px`` set.
        """
        rng = np.random.default_rng([int(seed), int(index)])
        hh, ww = self.size_hw
        short = min(hh, ww)
        side = self.background_side
        bg_tex, bg_src = self._texture(side, rng)
        amax = self.MAX_BACKGROUND_ANGLE_RAD
        half_diag = 0.5 * math.hypot(hh, ww)
        pan = 0.0 if rng.random() < 0.4 else rng.uniform(0.0, 0.7)
        layers = [Layer(
            texture=torch.from_numpy(np.ascontiguousarray(bg_tex)),
            velocity_px=_xy(pan * _unit(rng)),
            accel_px=_xy(pan * rng.uniform(0, 1) * _unit(rng)),
            angle_rad=float(rng.uniform(-amax, amax)),
            spin_rad=float(rng.uniform(-1, 1) * 0.1 * pan / half_diag),
            log_zoom=float(rng.uniform(-1, 1) * 0.05 * pan / half_diag),
            source=bg_src,
        )]
        for _ in range(int(rng.integers(1, self.max_sprites + 1)) if self.max_sprites else 0):
            d = max(8, round(rng.uniform(0.2, 0.55) * short))
            tex, src = self._texture(d, rng)
            alpha = _blob_alpha(d, rng)
            speed = rng.uniform(0.25, 1.0)
            r = max(d / 2, 8.0)
            layers.append(Layer(
                texture=torch.from_numpy(np.ascontiguousarray(tex)),
                alpha=torch.from_numpy(alpha),
                centre_px=_xy(rng.uniform(-0.4, 0.4, size=2) * (ww, hh)),
                velocity_px=_xy(speed * _unit(rng)),
                accel_px=_xy(speed * rng.uniform(0, 1) * _unit(rng)),
                angle_rad=float(rng.uniform(0, 2 * math.pi)),
                spin_rad=float(rng.uniform(-1, 1) * 0.5 * speed / r),
                log_zoom=float(rng.uniform(-1, 1) * 0.15 * speed / r),
                source=src,
            ))
        n_shake = 2
        shake = CameraShake(
            amplitude_px=tuple(_xy(rng.uniform(0, 0.03, size=2)) for _ in range(n_shake)),
            cycles=tuple(float(f) for f in rng.uniform(0.5, 3.0, size=n_shake)),
            phase_rad=tuple(_xy(rng.uniform(0, 2 * np.pi, size=2)) for _ in range(n_shake)),
        )
        if motion_px is None:
            target = rng.uniform(0.0, self.max_motion_px)
        elif isinstance(motion_px, tuple):
            target = rng.uniform(float(motion_px[0]), float(motion_px[1]))
        else:
            target = float(motion_px)
        if not 0.0 <= target <= self.max_motion_px + 1e-9:
            raise ValueError(f"A motion of {target:.4g} px is outside [0, {self.max_motion_px:g}] "
                             "px; create the sampler with a larger max_motion_px (its background "
                             "textures are sized for it).")
        scene = Scene(self.size_hw, tuple(layers), shake, split=self.split)
        return _scale_motion(scene, target)


def _xy(v: np.ndarray) -> tuple[float, float]:
    return float(v[0]), float(v[1])


def _unit(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * math.pi)
    return np.array([math.cos(a), math.sin(a)])


def _scaled(scene: Scene, f: float) -> Scene:
    return replace(scene, layers=tuple(layer.scaled_motion(f) for layer in scene.layers),
                   shake=scene.shake.scaled(f))


def _scale_motion(scene: Scene, target_px: float) -> Scene:
    """Scale all motion so that motion_extent_px(scene) == target_px (to 1e-3 px)."""
    anchors = _anchors(scene)
    m = _extent(scene, anchors)
    if target_px <= 0 or m <= 0:
        out = _scaled(scene, 0.0)
        return replace(out, motion_px=_extent(out, anchors))
    f = target_px / m
    for _ in range(20):
        out = _scaled(scene, f)
        m = _extent(out, anchors)
        if abs(m - target_px) < 1e-3:
            break
        f *= target_px / m
    return replace(out, motion_px=m)


if __name__ == "__main__":  # the command line moved with the photo library
    raise SystemExit("python -m recon.scenes has no command any more: the photo cache is "
                     "written by python -m recon.photo_cache --save-cache FILE")
