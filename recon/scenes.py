"""Synthetic coded-blur scenes with ground truth at any time, for the learned reconstruction.

A scene is a stack of layers seen through a moving camera during one exposure ``t in [0, 1]``:

* layer 0, the background: an opaque crop of a still photograph (from the free-licence Debian
  wallpaper packages, see :class:`PhotoLibrary`) or of a procedural dead-leaves image
  (:func:`recon.data.dead_leaves`);
* layers 1.., 1 to 3 sprites: photo or dead-leaves patches with soft random-shape alpha masks;
* a global camera shake, a small smooth translation added to every layer.

Each layer has parametric motion (velocity, acceleration, rotation, scale change; see
:class:`Layer`). :func:`render` gives the instantaneous view at any ``t`` by affine warps
(``grid_sample``, all times of a layer in one call) and alpha compositing back to front.

Time and brightness conventions are those of :mod:`recon.data`: chip ``k`` of a K-chip code covers
``[k/K, (k+1)/K]``; its ground truth is the view averaged over that interval (here the mean of
``sub_steps`` views at the centres of equal sub-intervals); the coded frame is
``y = sum_k c_k v_k / sum_k c_k``, then noise. :func:`make_batch` draws training batches;
:func:`fixed_set` gives the validation and test sets, stratified by motion and noise and
regenerated bit for bit from seeds. The code family for training and its held-out evaluation
codes are :data:`CODE_FAMILY`, :func:`sample_code`, :func:`is_in_family` and :data:`UNSEEN_CODES`.

Coordinates: pixel centres at integers, x to the right and y down; a layer position is the
position of its texture centre relative to the frame centre, ``((W - 1) / 2, (H - 1) / 2)``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from common.codes import CodeValidationError, code_string
from recon.codes import KNOWN_CODES
from recon.data import dead_leaves
from recon.functional import CodeLike, code_bits
from recon.noise import SensorModel

__all__ = [
    "CODE_FAMILY", "MOTION_STRATA", "NOISE_STRATA", "PHOTO_PACKAGES", "UNSEEN_CODES",
    "CameraShake", "CodeFamily", "CodedBatch", "FixedSet", "Layer", "PhotoLibrary",
    "PhotoLibraryError", "Scene", "SceneSampler", "coded_batch", "default_photos", "fixed_set",
    "is_in_family", "make_batch", "motion_class", "motion_extent_px", "package_photo_paths",
    "fill_layer_grid", "preload_dead_leaves", "render", "render_batch", "sample_code",
    "sprite_window",
]

# ---------------------------------------------------------------------------------------------
# Photographs
# ---------------------------------------------------------------------------------------------

#: Debian packages whose still photographs (free licences) feed the scenes.
PHOTO_PACKAGES: tuple[str, ...] = (
    "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
)
APT_COMMAND = "sudo apt-get install -y " + " ".join(PHOTO_PACKAGES)
PHOTO_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
DPKG_INFO_DIR = Path("/var/lib/dpkg/info")
#: Splits of the photos (and of the dead-leaves bank): group ``g`` (sorted) is test if
#: ``g % 5 == 4`` (every 5th), val if ``g % 10 == 1``, train otherwise.
SPLITS: tuple[str, ...] = ("train", "val", "test")
# Two files whose 64x64 high-passed thumbnails correlate above this are one picture (the same
# photo at several resolutions, colour variants of one design): they share a split.
_DUPLICATE_CORRELATION = 0.9
_IMAGE_CACHE: dict[tuple[str, int, int], np.ndarray] = {}


class PhotoLibraryError(FileNotFoundError):
    """No usable photograph was found, or one could not be read. The message says what to do."""


def _split_of_group(g: int) -> str:
    if g % 5 == 4:
        return "test"
    if g % 10 == 1:
        return "val"
    return "train"


def package_photo_paths(packages: Sequence[str] = PHOTO_PACKAGES,
                        info_dir: Path = DPKG_INFO_DIR) -> list[Path]:
    """Photographs installed by Debian packages, from dpkg's file lists (what ``dpkg -L`` prints).

    Args:
        packages: package names.
        info_dir: dpkg's database folder.

    Returns:
        Existing ``.jpg``/``.jpeg``/``.png`` files, sorted, without duplicates.
    """
    found: set[Path] = set()
    for pkg in packages:
        for lst in sorted(info_dir.glob(f"{pkg}.list")) + sorted(info_dir.glob(f"{pkg}:*.list")):
            for line in lst.read_text(encoding="utf-8", errors="replace").splitlines():
                p = Path(line.strip())
                if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file():
                    found.add(p)
    return sorted(found)


def _load_gray(path: Path, max_side: int) -> np.ndarray:
    """Grayscale float32 in [0, 1], short side ~max_side (never upsampled); alpha over black."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, max_side)
    if key in _IMAGE_CACHE:
        return _IMAGE_CACHE[key]
    try:
        with Image.open(path) as im:
            w0, h0 = im.size
    except OSError as e:
        raise PhotoLibraryError(f"Cannot read the image header of {path}: {e}. Remove or replace "
                                "the file, or pass roots= without it.") from e
    if path.suffix.lower() in (".jpg", ".jpeg"):
        factor = min(w0, h0) // max_side  # JPEG decodes directly at 1/2, 1/4 or 1/8 size
        flag = (cv2.IMREAD_REDUCED_GRAYSCALE_8 if factor >= 8 else
                cv2.IMREAD_REDUCED_GRAYSCALE_4 if factor >= 4 else
                cv2.IMREAD_REDUCED_GRAYSCALE_2 if factor >= 2 else cv2.IMREAD_GRAYSCALE)
        raw = cv2.imread(str(path), flag)
    else:
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise PhotoLibraryError(f"OpenCV cannot decode {path}; remove or replace the file, or "
                                "pass roots= without it.")
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    img = raw.astype(np.float32) / scale
    if img.ndim == 3:
        alpha = img[..., 3] if img.shape[2] == 4 else None
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
        if alpha is not None:
            img = img * alpha  # transparent wallpapers: composite over black
    h, w = img.shape
    if min(h, w) > max_side:
        f = max_side / min(h, w)
        img = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))),
                         interpolation=cv2.INTER_AREA)
    img = np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32)
    img.setflags(write=False)
    _IMAGE_CACHE[key] = img
    return img


def _thumbnail(img: np.ndarray) -> np.ndarray:
    h, w = img.shape
    s = min(h, w)
    sq = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    t = cv2.resize(sq, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float64)
    t = t - cv2.GaussianBlur(t, (0, 0), 4.0)
    t = t.ravel() - t.mean()
    return t / (np.linalg.norm(t) + 1e-12)


class PhotoLibrary:
    """Still photographs as grayscale float32 images in ``[0, 1]``, cached in memory.

    Files are taken in sorted path order. Each is decoded with OpenCV (transparent PNGs composited
    over black) and downscaled so its short side is ``max_side`` (smaller images are kept as they
    are); the sampler draws crops at random scales from it. Near-duplicates (one photo at several
    resolutions, colour variants of one design) are grouped by their thumbnails, and the groups
    are split by position: every 5th group is ``"test"``, every 10th (offset 1) ``"val"``, the
    rest ``"train"``, so test scenes use photographs never seen in training.

    Args:
        roots: folders searched recursively for ``.jpg``/``.jpeg``/``.png``; default: the files of
            the Debian packages :data:`PHOTO_PACKAGES` (from dpkg's lists).
        max_side: short side of the cached images in pixels (>= 64).

    Raises:
        PhotoLibraryError: no photograph found (the message names the apt packages), or a file
            that cannot be decoded.
        ValueError: ``max_side < 64``.
    """

    def __init__(self, roots: Sequence[str | Path] | None = None, max_side: int = 512) -> None:
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 64:
            raise ValueError(f"max_side must be an integer >= 64 pixels; got {max_side!r}.")
        if roots is None:
            paths = package_photo_paths()
            where = "the files of the Debian packages " + ", ".join(PHOTO_PACKAGES)
        else:
            found: set[Path] = set()
            for root in roots:
                for p in Path(root).rglob("*"):
                    if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file():
                        found.add(p)
            paths = sorted(found)
            where = "the folders " + ", ".join(str(r) for r in roots)
        if not paths:
            raise PhotoLibraryError(
                f"No photograph (.jpg, .jpeg, .png) was found in {where}. Install the photo "
                f"packages with `{APT_COMMAND}`, or pass roots= folders that hold photographs."
            )
        self.max_side = max_side
        self.paths: tuple[Path, ...] = tuple(paths)
        self._images = [_load_gray(p, max_side) for p in self.paths]
        thumbs = np.stack([_thumbnail(im) for im in self._images])
        corr = thumbs @ thumbs.T
        parent = list(range(len(paths)))

        def find(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for i, j in zip(*np.nonzero(np.triu(corr, 1) > _DUPLICATE_CORRELATION), strict=True):
            a, b = find(int(i)), find(int(j))
            parent[max(a, b)] = min(a, b)
        roots_sorted = sorted({find(i) for i in range(len(paths))})
        group_of_root = {r: g for g, r in enumerate(roots_sorted)}
        self.groups: tuple[int, ...] = tuple(group_of_root[find(i)] for i in range(len(paths)))
        self._split = {s: tuple(i for i, g in enumerate(self.groups) if _split_of_group(g) == s)
                       for s in SPLITS}
        names = "\n".join(str(p) for p in self.paths)
        #: SHA-256 of the sorted paths and max_side: identifies the library a fixed set came from.
        self.fingerprint = hashlib.sha256(f"{max_side}\n{names}".encode()).hexdigest()

    def save_cache(self, path: str | Path) -> Path:
        """Write the decoded library to one ``.npz`` file (16-bit grey levels, splits kept).

        A machine without the photo packages (a GPU box used for training) can then load the
        same photographs with :meth:`from_cache`, or through the ``BLURVID_PHOTO_CACHE``
        environment variable read by :func:`default_photos`. Grey levels are rounded to 1/65535,
        so scenes rendered from a cache differ from those rendered from the packages by at most
        that much: use it for training, and the packages for the fixed evaluation sets.

        Returns:
            The path written.
        """
        path = Path(path)
        arrays = {f"img{i:03d}": np.round(im * 65535.0).astype(np.uint16)
                  for i, im in enumerate(self._images)}
        np.savez_compressed(path, paths=np.array([str(p) for p in self.paths]),
                            groups=np.array(self.groups, dtype=np.int64),
                            max_side=np.array(self.max_side), fingerprint=np.array(
                                self.fingerprint), **arrays)  # fmt: skip
        return path

    @classmethod
    def from_cache(cls, path: str | Path) -> PhotoLibrary:
        """A library written by :meth:`save_cache`.

        Raises:
            PhotoLibraryError: the file is missing or not such a cache.
        """
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                paths = tuple(Path(str(p)) for p in z["paths"])
                groups = tuple(int(g) for g in z["groups"])
                images = []
                for i in range(len(paths)):
                    im = (z[f"img{i:03d}"].astype(np.float32) / np.float32(65535.0))
                    im.setflags(write=False)
                    images.append(im)
                max_side, fingerprint = int(z["max_side"]), str(z["fingerprint"])
        except (OSError, KeyError, ValueError) as e:
            raise PhotoLibraryError(f"Cannot read the photo cache {path}: {e}. Write one with "
                                    "`python -m recon.scenes --save-cache FILE`.") from e
        lib = cls.__new__(cls)
        lib.max_side, lib.paths, lib._images, lib.groups = max_side, paths, images, groups
        lib._split = {s: tuple(i for i, g in enumerate(groups) if _split_of_group(g) == s)
                      for s in SPLITS}
        lib.fingerprint = fingerprint
        return lib

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        """The cached image ``index`` (read-only float32, shape ``(H, W)``)."""
        return self._images[index]

    def split(self, name: str) -> tuple[int, ...]:
        """Indices of the photos of one split.

        Args:
            name: ``"train"``, ``"val"`` or ``"test"``.

        Returns:
            Sorted photo indices.

        Raises:
            ValueError: unknown split name.
        """
        if name not in SPLITS:
            raise ValueError(f"Unknown split {name!r}; use one of {SPLITS}.")
        return self._split[name]

    def __repr__(self) -> str:
        n = {s: len(v) for s, v in self._split.items()}
        return f"PhotoLibrary({len(self)} photos, max_side={self.max_side}, split={n})"


@functools.cache
def default_photos(max_side: int = 512) -> PhotoLibrary:
    """The package photo library, built once per process (see :class:`PhotoLibrary`).

    With the environment variable ``BLURVID_PHOTO_CACHE`` naming a file written by
    :meth:`PhotoLibrary.save_cache`, the library is read from that file instead.
    """
    cache = os.environ.get("BLURVID_PHOTO_CACHE")
    if cache:
        lib = PhotoLibrary.from_cache(cache)
        if lib.max_side != max_side:
            raise PhotoLibraryError(f"The photo cache {cache} holds max_side={lib.max_side}, "
                                    f"not {max_side}; write a cache with that size.")
        return lib
    return PhotoLibrary(None, max_side)


#: Dead-leaves images used like photographs: seeds per split, side 384 px, r_min 3 px.
DEAD_LEAVES_SEEDS: dict[str, tuple[int, ...]] = {
    "train": tuple(range(8)), "val": (1000, 1001, 1002, 1003), "test": (2000, 2001, 2002, 2003),
}
_DEAD_LEAVES_SIDE = 384


@functools.lru_cache(maxsize=64)
def _dead_leaves_image(seed: int) -> np.ndarray:
    img = dead_leaves(_DEAD_LEAVES_SIDE, _DEAD_LEAVES_SIDE, seed=seed, r_min=3.0).numpy()
    img.setflags(write=False)
    return img


def preload_dead_leaves(split: str = "train") -> None:
    """Draw the dead-leaves images of a split now (about 0.5 s each, once per process).

    Otherwise each is drawn when a scene first uses it, which makes the first batches slow.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.

    Raises:
        ValueError: unknown split.
    """
    if split not in DEAD_LEAVES_SEEDS:
        raise ValueError(f"Unknown split {split!r}; use one of {SPLITS}.")
    for seed in DEAD_LEAVES_SEEDS[split]:
        _dead_leaves_image(seed)


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
                img, src = _dead_leaves_image(seed), f"dead_leaves:{seed}"
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


# ---------------------------------------------------------------------------------------------
# The code family
# ---------------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{round(100 * x, 1):g} %"


def _canonical(s: str) -> str:
    return min(s, s[::-1])


@dataclass(frozen=True)
class CodeFamily:
    """Binary codes the learned reconstruction is trained on.

    A code is in the family if it has ``min_chips`` to ``max_chips`` chips and an open fraction
    within ``[min_open_fraction, max_open_fraction]`` (so at least one open and one closed chip).
    A fixed ``1/holdout_modulus`` of the family is held out for evaluation: a code is held out if
    the SHA-256 of the smaller of its '0'/'1' string and its reverse, read as a number, is a
    multiple of ``holdout_modulus`` (a code and its reverse are held out together); the anchor
    code is never held out. Training draws the anchor with probability ``anchor_probability``.
    """

    min_chips: int = 8
    max_chips: int = 32
    min_open_fraction: float = 0.4
    max_open_fraction: float = 0.7
    anchor: str = KNOWN_CODES["bdinr8"]
    anchor_probability: float = 0.2
    holdout_modulus: int = 16

    def open_range(self, n_chips: int) -> tuple[int, int]:
        """Smallest and largest number of open chips allowed for ``n_chips`` chips."""
        return (math.ceil(self.min_open_fraction * n_chips - 1e-9),
                math.floor(self.max_open_fraction * n_chips + 1e-9))

    def is_held_out(self, bits: CodeLike) -> bool:
        """Whether a code is one of the held-out evaluation codes (by the hash rule above)."""
        s = code_string(code_bits(bits).numpy().astype(np.uint8))
        if _canonical(s) == _canonical(self.anchor):
            return False
        digest = hashlib.sha256(_canonical(s).encode("ascii")).hexdigest()
        return int(digest[:16], 16) % self.holdout_modulus == 0

    def check(self, bits: CodeLike) -> tuple[bool, str]:
        """Whether a code is in the family, and a sentence saying why (or why not)."""
        try:
            c = code_bits(bits)
        except (ValueError, TypeError, CodeValidationError) as e:
            return False, f"This is not a binary code: {e}"
        k, n = c.numel(), int(c.sum())
        lo, hi = self.min_open_fraction, self.max_open_fraction
        span = f"{self.min_chips} to {self.max_chips} chips, {_pct(lo)} to {_pct(hi)} open"
        if not self.min_chips <= k <= self.max_chips:
            return False, (f"The code has {k} chips, outside the family's {self.min_chips} to "
                           f"{self.max_chips}; use a code of {self.min_chips} to {self.max_chips} "
                           "chips.")
        if n == 0:
            return False, (f"The code has no open chip, so it records no light; the family needs "
                           f"{_pct(lo)} to {_pct(hi)} of the chips open.")
        if n == k:
            return False, (f"The code is open on all {k} chips (a box exposure, whose blur cannot "
                           f"be inverted); the family needs {_pct(lo)} to {_pct(hi)} of the chips "
                           "open.")
        n_lo, n_hi = self.open_range(k)
        if not n_lo <= n <= n_hi:
            return False, (f"The code is open on {n} of {k} chips ({_pct(n / k)}), outside the "
                           f"family's {_pct(lo)} to {_pct(hi)}; open or close chips so that "
                           f"{n_lo} to {n_hi} of the {k} are open.")
        s = code_string(c.numpy().astype(np.uint8))
        msg = f"The code ({k} chips, {n} open = {_pct(n / k)}) is inside the family ({span})."
        if s == self.anchor:
            msg += (f" It is the anchor code, drawn in training with probability "
                    f"{_pct(self.anchor_probability)}.")
        elif self.is_held_out(s):
            msg += " It is a held-out evaluation code: training never samples it."
        return True, msg

    def sample(self, generator: torch.Generator,
               lengths: Sequence[int] | None = None) -> tuple[int, ...]:
        """Draw a training code: the anchor, or a random code of the family that is not held out.

        The anchor is drawn with probability ``anchor_probability`` when its length is among
        ``lengths``; otherwise the length is uniform over ``lengths``, the number of open chips
        uniform over the allowed range, their places uniform.

        Args:
            generator: the random generator (CPU).
            lengths: allowed code lengths (default: the whole family).

        Returns:
            The code as a tuple of 0/1.

        Raises:
            ValueError: ``lengths`` empty or outside the family.
        """
        lens = list(range(self.min_chips, self.max_chips + 1) if lengths is None else lengths)
        if not lens or any(not self.min_chips <= int(k) <= self.max_chips for k in lens):
            raise ValueError(f"lengths must be a non-empty set of code lengths within "
                             f"{self.min_chips} to {self.max_chips}; got {list(lens)!r}.")
        anchor = tuple(int(ch) for ch in self.anchor)
        if len(anchor) in lens and float(torch.rand((), generator=generator)) < \
                self.anchor_probability:
            return anchor
        while True:
            k = int(lens[int(torch.randint(len(lens), (), generator=generator))])
            n_lo, n_hi = self.open_range(k)
            n = int(torch.randint(n_lo, n_hi + 1, (), generator=generator))
            bits = [0] * k
            for j in torch.randperm(k, generator=generator)[:n].tolist():
                bits[j] = 1
            if not self.is_held_out(bits):
                return tuple(bits)


#: The training code family (8 to 32 chips, 40 % to 70 % open, anchor ``11100101`` at 20 %).
CODE_FAMILY = CodeFamily()

#: Held-out codes of the family for evaluation, never drawn by :func:`sample_code`: for 12 to 32
#: chips, the two held-out codes (up to reversal) of largest min |DFT| among those found by
#: ``recon.codes.search_codes(K, n_open=n, top=400, require_asymmetric=True, n_random=100_000,
#: exhaustive_max=20, seed=K)`` over the family's open counts (first and last chip open, no
#: palindromes); for 8 chips, where no such code is held out, the two best held-out codes of all.
UNSEEN_CODES: tuple[str, ...] = (
    "01011100", "11101010",
    "110100010001", "111011010101",
    "1110001111011011", "1100010010110101",
    "11000111110010010101", "11100111101010010011",
    "111100010110111101110101", "111011110010011010100101",
    "11100000111011000010101101111101", "11110110100101000111000000110011",
)


def sample_code(generator: torch.Generator,
                lengths: Sequence[int] = range(8, 33)) -> tuple[int, ...]:
    """Draw a training code from :data:`CODE_FAMILY` (see :meth:`CodeFamily.sample`).

    Args:
        generator: the random generator (CPU).
        lengths: allowed code lengths, within 8 to 32.

    Returns:
        The code as a tuple of 0/1.

    Raises:
        ValueError: ``lengths`` empty or outside the family.

    >>> code = sample_code(torch.Generator().manual_seed(0))
    >>> is_in_family(code)[0]
    True
    """
    return CODE_FAMILY.sample(generator, lengths)


def is_in_family(bits: CodeLike) -> tuple[bool, str]:
    """Whether a code is in the training family, with a sentence saying why or why not.

    Args:
        bits: the code (a '0'/'1' string, a sequence, ndarray or tensor of 0/1).

    Returns:
        ``(inside, reason)``.

    >>> is_in_family("1101")
    (False, "The code has 4 chips, outside the family's 8 to 32; use a code of 8 to 32 chips.")
    """
    return CODE_FAMILY.check(bits)


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodedBatch:
    """Coded frames with their ground truth.

    Attributes:
        y: coded frames ``sum_k c_k v_k / sum_k c_k`` plus noise, ``(B, 1, H, W)``.
        y_clean: the same before noise, ``(B, 1, H, W)``.
        chips: ground truth, the view averaged over each chip, ``(B, K, H, W)``.
        sub: the instantaneous views, ``(B, K * S, H, W)``; ``sub[:, k * S + s]`` is at
            ``sub_times[k * S + s] = (k * S + s + 1/2) / (K * S)``.
        sub_times: ``(K * S,)`` times of ``sub`` (float64).
        bits: the code.
        sub_steps: ``S``.
        sigma: noise standard deviation per sample on the ``[0, 1]`` scale, ``(B,)`` (with a
            sensor model: the standard deviation at mid-grey).
        motion_px: :func:`motion_extent_px` per sample, ``(B,)``.
        camera_px: the motion extent of the background alone per sample, ``(B,)``.
        n_sprites: sprites per sample, ``(B,)`` int64.
        stratum: ``"<motion>/sigma=<s>"`` per sample for the fixed sets, ``""`` otherwise.
        scenes: the scenes (all parameters and texture sources).
    """

    y: Tensor
    y_clean: Tensor
    chips: Tensor
    sub: Tensor
    sub_times: Tensor
    bits: tuple[int, ...]
    sub_steps: int
    sigma: Tensor
    motion_px: Tensor
    camera_px: Tensor
    n_sprites: Tensor
    stratum: tuple[str, ...]
    scenes: tuple[Scene, ...]

    def to(self, device: torch.device | str) -> CodedBatch:
        """The batch with its tensors on ``device``."""
        return replace(self, **{k: getattr(self, k).to(device) for k in (
            "y", "y_clean", "chips", "sub", "sub_times", "sigma", "motion_px", "camera_px",
            "n_sprites")})


def _sub_times(k: int, sub_steps: int) -> np.ndarray:
    n = k * sub_steps
    return (np.arange(n) + 0.5) / n


def coded_batch(scenes: Sequence[Scene], bits: CodeLike, *, sub_steps: int = 4,
                sigma: float | Sequence[float] = 0.0, noise_seed: int | Sequence[int] = 0,
                sensor: SensorModel | None = None,
                stratum: Sequence[str] | None = None,
                device: torch.device | str = "cpu") -> CodedBatch:
    """Code given scenes: render ``K * S`` views, average them per chip, integrate, add noise.

    ``device`` renders there (see :func:`render_batch`); the Gaussian noise is drawn on the CPU
    from the seeds either way, and a sensor model needs the CPU.

    Args:
        scenes: scenes of one size.
        bits: the code of K chips.
        sub_steps: S >= 4 instantaneous views per chip.
        sigma: Gaussian noise standard deviation, one for all or one per scene.
        noise_seed: seed of the noise, one for all or one per scene.
        sensor: optional Poisson-Gaussian sensor model instead (see :func:`make_batch`).
        stratum: optional label per scene.

    Returns:
        The batch.

    Raises:
        ValueError: a bad code or ``sub_steps``, or per-scene lists of the wrong length.

    Shape:
        - y, y_clean: ``(B, 1, H, W)``; chips: ``(B, K, H, W)``; sub: ``(B, K * S, H, W)``
    """
    c = _check_batch_args(bits, sub_steps)
    n = len(scenes)
    sig = [float(sigma)] * n if isinstance(sigma, int | float) else [float(v) for v in sigma]
    seeds = [int(noise_seed)] * n if isinstance(noise_seed, int) else [int(v) for v in noise_seed]
    labels = [""] * n if stratum is None else list(stratum)
    if not (len(sig) == len(seeds) == len(labels) == n):
        raise ValueError(f"sigma, noise_seed and stratum need one value per scene ({n}).")
    if any(not (v >= 0 and math.isfinite(v)) for v in sig):
        raise ValueError(f"sigma must be finite and >= 0; got {sig!r}.")
    return _coded_batch(scenes, c, sub_steps, sig, seeds, labels, sensor, device)


def _coded_batch(scenes: Sequence[Scene], bits: tuple[int, ...], sub_steps: int,
                 sigmas: Sequence[float], noise_seeds: Sequence[int],
                 strata: Sequence[str], sensor: SensorModel | None,
                 device: torch.device | str = "cpu") -> CodedBatch:
    k = len(bits)
    t = _sub_times(k, sub_steps)
    sub = render_batch(scenes, t, device)
    b, _, hh, ww = sub.shape
    chips = sub.view(b, k, sub_steps, hh, ww).mean(dim=2)
    c = torch.tensor(bits, dtype=torch.float32, device=sub.device)
    y_clean = ((c.view(1, k, 1, 1) * chips).sum(dim=1) / c.sum()).unsqueeze(1)
    noisy = []
    sig_out = []
    for i in range(b):
        gen = torch.Generator().manual_seed(int(noise_seeds[i]))
        if sensor is None:
            s = float(sigmas[i])
            noise = torch.randn(y_clean[i].shape, generator=gen).to(sub.device)
            noisy.append(y_clean[i] + s * noise)
            sig_out.append(s)
        else:
            white = sensor.max_dn - sensor.dark_offset_dn
            raw = sensor.apply(y_clean[i] * white, generator=gen)
            noisy.append((raw - sensor.dark_offset_dn) / white)
            sig_out.append(math.sqrt(float(sensor.expected_variance_dn(0.5 * white))) / white)
    return CodedBatch(
        y=torch.stack(noisy), y_clean=y_clean, chips=chips, sub=sub,
        sub_times=torch.from_numpy(t), bits=tuple(bits), sub_steps=sub_steps,
        sigma=torch.tensor(sig_out, dtype=torch.float32),
        motion_px=torch.tensor([s.motion_px for s in scenes], dtype=torch.float32),
        camera_px=torch.tensor([motion_extent_px(replace(s, layers=s.layers[:1]))
                                for s in scenes], dtype=torch.float32),
        n_sprites=torch.tensor([len(s.layers) - 1 for s in scenes], dtype=torch.int64),
        stratum=tuple(strata), scenes=tuple(scenes),
    )


def _check_batch_args(bits: CodeLike, sub_steps: int) -> tuple[int, ...]:
    c = tuple(int(v) for v in code_bits(bits).tolist())
    if sum(c) == 0:
        raise ValueError("The code has no open chip, so the exposure records nothing.")
    if isinstance(sub_steps, bool) or not isinstance(sub_steps, int) or sub_steps < 4:
        raise ValueError(f"sub_steps must be an integer >= 4 (the chip average needs several "
                         f"views of moving content); got {sub_steps!r}.")
    return c


def make_batch(batch_size: int, size: int | tuple[int, int], bits: CodeLike, *,
               sub_steps: int = 4, sigma: tuple[float, float] = (0.0, 0.01),
               generator: torch.Generator, photos: PhotoLibrary | None,
               split: str = "train", max_motion_px: float = 48.0,
               sensor: SensorModel | None = None) -> CodedBatch:
    """A random training batch of coded frames with ground truth (one code for the batch).

    Scenes come from :class:`SceneSampler` (seeded per sample from ``generator``). Noise: white
    Gaussian with a standard deviation drawn uniformly from ``sigma`` per sample, not clipped
    (the model of BDINR and of the fixed sets); or, with ``sensor``, the Poisson-Gaussian model
    of :class:`recon.noise.SensorModel` with ``y = 1`` at the top of the ADC range (shot noise,
    read noise, quantisation and clipping), mapped back to ``[0, 1]``.

    Args:
        batch_size: B (>= 1).
        size: ``H = W`` or ``(H, W)``.
        bits: the code of K chips (see :func:`sample_code`).
        sub_steps: S >= 4 instantaneous views per chip.
        sigma: ``(lo, hi)`` range of the Gaussian noise standard deviation.
        generator: CPU random generator; the same state gives the same batch.
        photos: photographs, or ``None`` for dead-leaves textures only.
        split: photo split (``"train"`` for training).
        max_motion_px: top motion extent per exposure.
        sensor: optional sensor model replacing the Gaussian noise.

    Returns:
        The batch.

    Raises:
        ValueError: a bad code, ``sub_steps < 4``, a bad sigma range or batch size.

    Shape:
        - y, y_clean: ``(B, 1, H, W)``; chips: ``(B, K, H, W)``; sub: ``(B, K * S, H, W)``
    """
    c = _check_batch_args(bits, sub_steps)
    lo, hi = float(sigma[0]), float(sigma[1])
    if not (0 <= lo <= hi and math.isfinite(hi)):
        raise ValueError(f"sigma must be a range (lo, hi) with 0 <= lo <= hi; got {sigma!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size!r}.")
    sampler = SceneSampler(photos, size, split=split, max_motion_px=max_motion_px)
    seeds = torch.randint(0, 2**62, (batch_size,), generator=generator).tolist()
    sigmas = (lo + (hi - lo) * torch.rand(batch_size, generator=generator, dtype=torch.float64))
    scenes = [sampler.sample(s, 0) for s in seeds]
    return _coded_batch(scenes, c, sub_steps, sigmas.tolist(), [s ^ 0x5A5A for s in seeds],
                        [""] * batch_size, sensor)


# ---------------------------------------------------------------------------------------------
# Fixed validation and test sets
# ---------------------------------------------------------------------------------------------

#: Motion strata: name -> (lo, hi) of :func:`motion_extent_px` in pixels per exposure.
MOTION_STRATA: dict[str, tuple[float, float]] = {
    "slow": (0.0, 8.0), "medium": (8.0, 24.0), "fast": (24.0, 48.0),
}
#: Noise strata: Gaussian standard deviations on the ``[0, 1]`` scale.
NOISE_STRATA: tuple[float, ...] = (0.002, 0.01)
_SET_SEEDS = {"val": 0x7A1_5EED, "test": 0x7E57_5EED}


def motion_class(motion_px: float) -> str:
    """The motion stratum of an extent: ``"slow"``, ``"medium"``, ``"fast"`` or ``"beyond"``.

    >>> [motion_class(x) for x in (0.0, 8.0, 8.5, 30.0, 60.0)]
    ['slow', 'slow', 'medium', 'fast', 'beyond']
    """
    for name, (_, hi) in MOTION_STRATA.items():
        if motion_px <= hi:
            return name
    return "beyond"
_SET_DEFAULT_N = {"val": 8, "test": 16}


@dataclass(frozen=True)
class FixedSet:
    """A fixed evaluation set, rendered on demand, bit for bit the same on every call.

    Sample ``i`` belongs to stratum ``strata[i]``; its scene depends only on the set's name and
    ``i`` (not on the code, so several codes can be compared on identical scenes).

    Attributes:
        name: ``"val"`` or ``"test"``.
        size_hw: ``(H, W)``.
        bits: the code.
        sub_steps: S.
        photos: the photo library (its ``name`` split provides the textures).
        strata: label per sample.
        motion_ranges: ``(lo, hi)`` motion range per sample.
        sigmas: noise standard deviation per sample.
    """

    name: str
    size_hw: tuple[int, int]
    bits: tuple[int, ...]
    sub_steps: int
    photos: PhotoLibrary
    strata: tuple[str, ...]
    motion_ranges: tuple[tuple[float, float], ...]
    sigmas: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.strata)

    def scene(self, index: int) -> Scene:
        """The scene of sample ``index``."""
        sampler = SceneSampler(self.photos, self.size_hw, split=self.name)
        return sampler.sample(_SET_SEEDS[self.name], index, motion_px=self.motion_ranges[index])

    def batch(self, indices: Sequence[int]) -> CodedBatch:
        """Render the samples ``indices`` as one batch (each sample independent of the others)."""
        idx = [int(i) for i in indices]
        if not idx or any(not 0 <= i < len(self) for i in idx):
            raise ValueError(f"indices must be a non-empty list within 0..{len(self) - 1}.")
        scenes = [self.scene(i) for i in idx]
        seeds = [_SET_SEEDS[self.name] * 1_000_003 + i for i in idx]
        return _coded_batch(scenes, self.bits, self.sub_steps, [self.sigmas[i] for i in idx],
                            seeds, [self.strata[i] for i in idx], None)

    def batches(self, batch_size: int = 8) -> Iterator[CodedBatch]:
        """All samples in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))


def fixed_set(name: str, size: int | tuple[int, int] = 128, n_per_stratum: int | None = None,
              code: CodeLike = KNOWN_CODES["bdinr8"], *, sub_steps: int = 4,
              photos: PhotoLibrary | None = None) -> FixedSet:
    """The fixed validation or test set, stratified by motion and noise.

    Strata: motion slow (extent <= 8 px per exposure), medium (8 to 24), fast (24 to 48), each
    with Gaussian noise sigma 0.002 and 0.01; ``n_per_stratum`` samples each, the extent drawn
    uniformly within the motion range. Textures come from the ``name`` split of the photos and of
    the dead-leaves bank, which training never uses.

    Args:
        name: ``"val"`` or ``"test"``.
        size: ``H = W`` or ``(H, W)`` (128 by default; 256 for a final test at a larger size).
        n_per_stratum: samples per stratum (default 8 for val, 16 for test).
        code: the code (default ``11100101``); :data:`UNSEEN_CODES` hold codes training never saw.
        sub_steps: S >= 4.
        photos: the photo library (default :func:`default_photos`).

    Returns:
        The set; render it with :meth:`FixedSet.batch` or :meth:`FixedSet.batches`.

    Raises:
        ValueError: unknown name, bad code, sub_steps or count.
        PhotoLibraryError: no photo installed (the message names the apt packages).
    """
    if name not in _SET_SEEDS:
        raise ValueError(f"Unknown fixed set {name!r}; use 'val' or 'test'.")
    c = _check_batch_args(code, sub_steps)
    n = _SET_DEFAULT_N[name] if n_per_stratum is None else int(n_per_stratum)
    if n < 1:
        raise ValueError(f"n_per_stratum must be >= 1; got {n_per_stratum!r}.")
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    strata, ranges, sigmas = [], [], []
    for motion, rng in MOTION_STRATA.items():
        for s in NOISE_STRATA:
            for _ in range(n):
                strata.append(f"{motion}/sigma={s:g}")
                ranges.append(rng)
                sigmas.append(s)
    return FixedSet(name=name, size_hw=hw, bits=c, sub_steps=sub_steps,
                    photos=photos if photos is not None else default_photos(),
                    strata=tuple(strata), motion_ranges=tuple(ranges), sigmas=tuple(sigmas))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m recon.scenes --save-cache FILE``: write the photo library to one file."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m recon.scenes",
                                description="Tools for the synthetic training scenes.")
    p.add_argument("--save-cache", metavar="FILE", required=True,
                   help="write the package photo library (see PhotoLibrary.save_cache) to FILE; "
                        "set BLURVID_PHOTO_CACHE=FILE where the packages are not installed")
    args = p.parse_args(argv)
    lib = PhotoLibrary(None)
    path = lib.save_cache(args.save_cache)
    print(f"wrote {lib!r} to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
