"""Simulated moving scenes, rendered at any continuous time.

A :class:`SimScene` is a background layer plus a few :class:`Sprite` layers (texture + alpha),
each moving along a parametric :class:`Motion` (position ``p0 + v t + a t^2 / 2`` in pixels, a
rotation rate and a scale rate), optionally with a global camera-shake translation. ``render(t_s)``
returns the radiance at time ``t_s`` as float32 in [0, 1]; ``render_mean`` and ``render_weighted``
integrate it over time by sub-sampling, which is what the simulated camera uses to form (coded)
exposures.

Conventions:
    * Pixel ``(x, y)`` of a frame is the point sample at the pixel centre; ``x`` grows to the right,
      ``y`` grows downwards. Positions and velocities are ``(x, y)`` pairs in pixels (per second).
    * Angles are degrees, positive = clockwise on screen (the image ``y`` axis points down).
    * A ``region`` is ``(offset_x, offset_y, width, height)`` in frame pixels (or a
      :class:`hw.types.Roi`); rendering a region gives the matching crop of the full frame (up to
      float rounding, ~1e-7).

Rendering is fast because textures are made once and only warped per time sample
(``cv2.warpAffine``): when the background does not move, it is copied once per call and each
sample only re-composites the sprites inside their bounding boxes (about 1 ms per sample for the
default 1024x1024 scene on one slow core pair).

>>> scene = SimScene.default(64, 48, seed=1)
>>> scene.render(0.0).shape
(48, 64)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from hw.types import Roi

Region = tuple[int, int, int, int]

_BORDERS = {
    "wrap": cv2.BORDER_WRAP,
    "reflect": cv2.BORDER_REFLECT_101,
    "replicate": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}
_WARP_FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP


def _pair(v: Sequence[float], name: str) -> tuple[float, float]:
    t = tuple(float(x) for x in v)
    if len(t) != 2 or not all(math.isfinite(x) for x in t):
        raise ValueError(f"{name} must be a finite (x, y) pair, got {v!r}.")
    return (t[0], t[1])


@dataclass(frozen=True)
class Motion:
    """Parametric motion of a layer.

    Args:
        p0_px: position at ``t = 0``. For a sprite: where its texture centre is in the frame.
            For the background: offset of its texture centre from the frame centre.
        v_px_per_s: velocity.
        a_px_per_s2: acceleration.
        angle0_deg: rotation at ``t = 0`` (clockwise on screen).
        omega_deg_per_s: rotation rate.
        scale0: scale at ``t = 0`` (1 = texture pixels are frame pixels).
        scale_rate_per_s: relative scale rate: ``scale(t) = scale0 * (1 + scale_rate_per_s * t)``,
            floored at 5 % of ``scale0``.

    >>> Motion(v_px_per_s=(10.0, 0.0)).position(0.5)
    (5.0, 0.0)
    """

    p0_px: tuple[float, float] = (0.0, 0.0)
    v_px_per_s: tuple[float, float] = (0.0, 0.0)
    a_px_per_s2: tuple[float, float] = (0.0, 0.0)
    angle0_deg: float = 0.0
    omega_deg_per_s: float = 0.0
    scale0: float = 1.0
    scale_rate_per_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "p0_px", _pair(self.p0_px, "p0_px"))
        object.__setattr__(self, "v_px_per_s", _pair(self.v_px_per_s, "v_px_per_s"))
        object.__setattr__(self, "a_px_per_s2", _pair(self.a_px_per_s2, "a_px_per_s2"))
        for name in ("angle0_deg", "omega_deg_per_s", "scale0", "scale_rate_per_s"):
            v = float(getattr(self, name))
            if not math.isfinite(v):
                raise ValueError(f"Motion.{name} must be finite, got {v!r}.")
            object.__setattr__(self, name, v)
        if self.scale0 <= 0:
            raise ValueError(f"Motion.scale0 must be > 0, got {self.scale0!r}.")

    @property
    def is_static(self) -> bool:
        """True when nothing changes with time."""
        return (
            self.v_px_per_s == (0.0, 0.0)
            and self.a_px_per_s2 == (0.0, 0.0)
            and self.omega_deg_per_s == 0.0
            and self.scale_rate_per_s == 0.0
        )

    def position(self, t_s: float) -> tuple[float, float]:
        """Position ``p0 + v t + a t^2 / 2`` in pixels."""
        (x0, y0), (vx, vy), (ax, ay) = self.p0_px, self.v_px_per_s, self.a_px_per_s2
        return (x0 + vx * t_s + 0.5 * ax * t_s * t_s, y0 + vy * t_s + 0.5 * ay * t_s * t_s)

    def angle_deg(self, t_s: float) -> float:
        """Rotation at ``t_s`` in degrees."""
        return self.angle0_deg + self.omega_deg_per_s * t_s

    def scale(self, t_s: float) -> float:
        """Scale at ``t_s``."""
        return self.scale0 * max(0.05, 1.0 + self.scale_rate_per_s * t_s)


@dataclass(frozen=True, eq=False)
class Sprite:
    """A textured layer with an alpha (coverage) mask and its motion.

    Args:
        texture: ``(h, w)`` radiance in [0, 1].
        alpha: ``(h, w)`` coverage in [0, 1] (0 = transparent).
        motion: where the texture centre is in the frame over time, its rotation and scale.
        wrap: when True the position wraps around the frame (a torus with a margin of the sprite's
            size), so a sprite that leaves on one side comes back on the other while it is unseen.

    Raises:
        ValueError: shapes differ, or arrays are not 2-D.
    """

    texture: np.ndarray
    alpha: np.ndarray
    motion: Motion = field(default_factory=Motion)
    wrap: bool = True
    _premult: np.ndarray = field(init=False, repr=False)
    _support_px: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        tex = np.asarray(self.texture, dtype=np.float32)
        alpha = np.clip(np.asarray(self.alpha, dtype=np.float32), 0.0, 1.0)
        if tex.ndim != 2 or tex.shape != alpha.shape or min(tex.shape) < 1:
            raise ValueError(
                "A sprite needs 2-D texture and alpha of the same shape; "
                f"got {tex.shape} and {alpha.shape}."
            )
        object.__setattr__(self, "texture", tex)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "_premult", np.ascontiguousarray(tex * alpha))
        # Radius (texture px) around the texture centre outside which alpha is 0: bounds the patch.
        ys, xs = np.nonzero(alpha > 0)
        h, w = tex.shape
        if xs.size:
            r = float(np.max(np.hypot(xs - (w - 1) / 2.0, ys - (h - 1) / 2.0))) + 1.0
        else:
            r = 0.0
        object.__setattr__(self, "_support_px", r)

    @property
    def size(self) -> tuple[int, int]:
        """Texture ``(width, height)`` in pixels."""
        return (self.texture.shape[1], self.texture.shape[0])


def _inverse_map(
    tex_w: int, tex_h: int, cx: float, cy: float, angle_deg: float, scale: float, bx: int, by: int
) -> np.ndarray:
    """2x3 map: pixel (j, i) of a patch cornered at frame pixel (bx, by) -> texture coords."""
    th = math.radians(angle_deg)
    c, s = math.cos(th) / scale, math.sin(th) / scale
    ucx, ucy = (tex_w - 1) / 2.0, (tex_h - 1) / 2.0
    dx, dy = bx - cx, by - cy
    return np.array(
        [[c, s, c * dx + s * dy + ucx], [-s, c, -s * dx + c * dy + ucy]], dtype=np.float64
    )


def _as_region(region: Region | Roi | None, width: int, height: int) -> Region:
    if region is None:
        return (0, 0, width, height)
    if isinstance(region, Roi):
        region = (region.offset_x, region.offset_y, region.width, region.height)
    x, y, w, h = (int(v) for v in region)
    if w == 0:
        w = width - x
    if h == 0:
        h = height - y
    if x < 0 or y < 0 or w < 1 or h < 1 or x + w > width or y + h > height:
        raise ValueError(
            f"Region (x={x}, y={y}, w={w}, h={h}) does not fit in the {width}x{height} scene."
        )
    return (x, y, w, h)


def _to_radiance(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"A scene image must be a non-empty 2-D array, got shape {a.shape}.")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    out = a.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("A scene image must be finite everywhere.")
    return out


def _samples(
    times_s: Sequence[float] | np.ndarray, weights: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(times_s, dtype=np.float64).ravel()
    wts = np.asarray(weights, dtype=np.float64).ravel()
    if times.shape != wts.shape:
        raise ValueError(f"times_s and weights differ in length: {times.size} vs {wts.size}.")
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(wts))):
        raise ValueError("times_s and weights must be finite.")
    return times, wts


class SimScene:
    """A moving scene: a background layer, sprites on top, optional camera shake.

    Args:
        background: ``(H, W)`` radiance in [0, 1] (uint8 / uint16 are scaled to [0, 1]).
        sprites: layers drawn over the background in order.
        background_motion: motion of the background texture; its position is the offset of the
            texture centre from the frame centre.
        border: how the background is extended where it does not cover the frame: ``"reflect"``,
            ``"wrap"`` (periodic), ``"replicate"`` or ``"constant"`` (black).
        shake_px: amplitude of a global camera-shake translation (0 = none), applied to every layer.
        shake_hz: main frequency of the shake.
        size: ``(width, height)`` of the rendered frame; defaults to the background's size.
        seed: seeds the shake frequencies and phases.

    Raises:
        ValueError: bad image, unknown border, negative shake.
    """

    def __init__(
        self,
        background: np.ndarray,
        sprites: Sequence[Sprite] = (),
        *,
        background_motion: Motion | None = None,
        border: str = "reflect",
        shake_px: float = 0.0,
        shake_hz: float = 8.0,
        size: tuple[int, int] | None = None,
        seed: int = 0,
    ) -> None:
        self._background = np.ascontiguousarray(_to_radiance(background))
        self._sprites = tuple(sprites)
        for sp in self._sprites:
            if not isinstance(sp, Sprite):
                raise ValueError(f"sprites must be Sprite objects, got {type(sp).__name__}.")
        self._bg_motion = background_motion if background_motion is not None else Motion()
        if border not in _BORDERS:
            raise ValueError(f"border {border!r} is not one of {sorted(_BORDERS)}.")
        self._border = border
        if (
            not math.isfinite(shake_px)
            or shake_px < 0
            or not math.isfinite(shake_hz)
            or shake_hz <= 0
        ):
            raise ValueError(
                f"shake_px must be >= 0 and shake_hz > 0; got {shake_px!r}, {shake_hz!r}."
            )
        self._shake_px = float(shake_px)
        rng = np.random.default_rng([int(seed), 0x5CE7E])
        # Two sinusoids per axis: (relative amplitude, frequency Hz, phase rad).
        self._shake_terms = [
            [
                (0.8, shake_hz * rng.uniform(0.7, 1.3), rng.uniform(0, 2 * np.pi)),
                (0.45, shake_hz * rng.uniform(2.1, 3.3), rng.uniform(0, 2 * np.pi)),
            ]
            for _ in range(2)
        ]
        bh, bw = self._background.shape
        self._width, self._height = (bw, bh) if size is None else (int(size[0]), int(size[1]))
        if self._width < 1 or self._height < 1:
            raise ValueError(f"Scene size must be positive, got {size!r}.")
        self._cache: dict[Region, np.ndarray] = {}
        self._cache_lock = threading.Lock()

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def default(
        cls,
        width: int,
        height: int,
        seed: int = 0,
        speed_px_per_s: float = 400.0,
        *,
        n_sprites: int = 4,
        shake_px: float = 0.0,
    ) -> SimScene:
        """A lively procedural scene: dead-leaves background and textured moving sprites.

        Sprites move at ``0.5..1.5 x speed_px_per_s`` in random directions (wrapping around the
        frame) and some rotate; with the default speed they move about 2 to 30 px over an 8..52 ms
        exposure. The background is static unless ``shake_px > 0``.

        Args:
            width: frame width in pixels.
            height: frame height in pixels.
            seed: makes the scene reproducible.
            speed_px_per_s: typical sprite speed.
            n_sprites: number of sprites.
            shake_px: camera-shake amplitude (0 = tripod).

        Returns:
            The scene.
        """
        if width < 8 or height < 8:
            raise ValueError(f"A default scene needs at least 8x8 pixels, got {width}x{height}.")
        rng = np.random.default_rng([int(seed), 0xDEF])
        background = _dead_leaves(width, height, rng)
        sprites = []
        makers = (_striped_disk, _checker_box, _noisy_ellipse, _ring)
        for i in range(n_sprites):
            d = int(max(6, round(min(width, height) * rng.uniform(0.10, 0.20))))
            tex, alpha = makers[i % len(makers)](d, rng)
            direction = rng.uniform(0, 2 * np.pi)
            speed = speed_px_per_s * rng.uniform(0.5, 1.5)
            motion = Motion(
                p0_px=(rng.uniform(0, width), rng.uniform(0, height)),
                v_px_per_s=(speed * math.cos(direction), speed * math.sin(direction)),
                angle0_deg=rng.uniform(0, 360),
                omega_deg_per_s=float(rng.choice([-1, 1]) * rng.uniform(30, 150)) if i % 2 else 0.0,
            )
            sprites.append(Sprite(tex, alpha, motion, wrap=True))
        return cls(background, sprites, border="reflect", shake_px=shake_px, seed=seed)

    @classmethod
    def translating(
        cls,
        image: np.ndarray,
        velocity_px_per_s: tuple[float, float],
        *,
        p0_px: tuple[float, float] = (0.0, 0.0),
        acceleration_px_per_s2: tuple[float, float] = (0.0, 0.0),
        border: str = "wrap",
    ) -> SimScene:
        """A whole image moving at a known velocity.

        ``frame(x, t) = image(x - p0 - v t - a t^2 / 2)``.

        Args:
            image: ``(H, W)`` radiance in [0, 1] (uint8 / uint16 are scaled); sets the frame size.
            velocity_px_per_s: ``(vx, vy)``.
            p0_px: shift at ``t = 0``.
            acceleration_px_per_s2: ``(ax, ay)``.
            border: what enters the frame: ``"wrap"`` (periodic), ``"constant"`` (black) or
                ``"reflect"``.

        Returns:
            The scene.

        >>> img = np.zeros((8, 8), np.float32); img[4, 2] = 1.0
        >>> s = SimScene.translating(img, (1000.0, 0.0), border="constant")
        >>> float(s.render(0.003)[4, 5])
        1.0
        """
        motion = Motion(
            p0_px=p0_px, v_px_per_s=velocity_px_per_s, a_px_per_s2=acceleration_px_per_s2
        )
        return cls(image, (), background_motion=motion, border=border)

    @classmethod
    def static(cls, image: np.ndarray) -> SimScene:
        """A scene that never changes (``render(t)`` equals the image)."""
        return cls(image)

    # -- properties ------------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return self._width

    @property
    def height(self) -> int:
        return self._height

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of a rendered frame."""
        return (self._height, self._width)

    @property
    def sprites(self) -> tuple[Sprite, ...]:
        return self._sprites

    @property
    def is_static(self) -> bool:
        """True when every render is the same image."""
        return self._background_is_static and all(sp.motion.is_static for sp in self._sprites)

    @property
    def _background_is_static(self) -> bool:
        return self._bg_motion.is_static and self._shake_px == 0.0

    def shake_offset(self, t_s: float) -> tuple[float, float]:
        """Global camera-shake translation ``(dx, dy)`` in pixels at ``t_s``."""
        if self._shake_px == 0.0:
            return (0.0, 0.0)
        out = []
        for terms in self._shake_terms:
            out.append(
                self._shake_px * sum(a * math.sin(2 * math.pi * f * t_s + ph) for a, f, ph in terms)
            )
        return (out[0], out[1])

    # -- rendering -------------------------------------------------------------------------------
    def render(self, t_s: float, region: Region | Roi | None = None) -> np.ndarray:
        """Radiance at time ``t_s``.

        Args:
            t_s: time in seconds.
            region: ``(x, y, w, h)`` to render only part of the frame (zero ``w``/``h``: up to
                the edge).

        Returns:
            float32 ``(h, w)`` radiance, in [0, 1] for images in [0, 1].
        """
        return self.render_weighted([t_s], [1.0], region)

    def render_mean(
        self, t0_s: float, t1_s: float, n_sub: int = 8, region: Region | Roi | None = None
    ) -> np.ndarray:
        """Average radiance over ``[t0_s, t1_s]``, from ``n_sub`` samples at sub-interval midpoints.

        Raises:
            ValueError: ``t1_s < t0_s`` or ``n_sub < 1``.
        """
        if not t1_s >= t0_s:
            raise ValueError(f"render_mean needs t1_s >= t0_s, got [{t0_s!r}, {t1_s!r}].")
        if int(n_sub) < 1:
            raise ValueError(f"n_sub must be >= 1, got {n_sub!r}.")
        n = int(n_sub)
        dt = (t1_s - t0_s) / n
        times = t0_s + (np.arange(n) + 0.5) * dt
        return self.render_weighted(times, np.full(n, 1.0 / n), region)

    def render_weighted(
        self,
        times_s: Sequence[float] | np.ndarray,
        weights: Sequence[float] | np.ndarray,
        region: Region | Roi | None = None,
    ) -> np.ndarray:
        """Weighted sum ``sum_i weights[i] * render(times_s[i])``.

        Args:
            times_s: sample times, shape ``(N,)``.
            weights: one weight per sample, shape ``(N,)``.
            region: ``(x, y, w, h)`` to render only part of the frame.

        Returns:
            float32 ``(h, w)``.

        Raises:
            ValueError: length mismatch, non-finite values, bad region.
        """
        times, wts = _samples(times_s, weights)
        reg = _as_region(region, self._width, self._height)
        acc = np.empty((reg[3], reg[2]), np.float32)
        static_bg, canvas = self._work_canvas(reg)
        self._accumulate(acc, times, wts, reg, static_bg, canvas)
        return acc

    def render_means(
        self,
        t0_s: Sequence[float] | np.ndarray,
        t1_s: Sequence[float] | np.ndarray,
        n_sub: int = 8,
        region: Region | Roi | None = None,
    ) -> np.ndarray:
        """Average radiance over each interval ``[t0_s[k], t1_s[k]]`` (as :meth:`render_mean`).

        Faster than calling :meth:`render_mean` once per interval: one work canvas serves all.

        Returns:
            float32 ``(K, h, w)``.

        Raises:
            ValueError: length mismatch, an interval with ``t1 < t0``, ``n_sub < 1``, bad region.

        Shape:
            ``t0_s``, ``t1_s``: ``(K,)``.
        """
        t0 = np.asarray(t0_s, dtype=np.float64).ravel()
        t1 = np.asarray(t1_s, dtype=np.float64).ravel()
        if t0.shape != t1.shape or not np.all(t1 >= t0):
            raise ValueError("render_means needs as many t1_s as t0_s, each t1 >= its t0.")
        if int(n_sub) < 1:
            raise ValueError(f"n_sub must be >= 1, got {n_sub!r}.")
        n = int(n_sub)
        reg = _as_region(region, self._width, self._height)
        out = np.empty((t0.size, reg[3], reg[2]), np.float32)
        static_bg, canvas = self._work_canvas(reg)
        frac = (np.arange(n) + 0.5) / n
        wts = np.full(n, 1.0 / n)
        for k in range(t0.size):
            times, _ = _samples(t0[k] + frac * (t1[k] - t0[k]), wts)
            self._accumulate(out[k], times, wts, reg, static_bg, canvas)
        return out

    # -- internals -------------------------------------------------------------------------------
    def _work_canvas(self, reg: Region) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The cached static background of a region (None if it moves) and a private copy of it."""
        if not self._background_is_static:
            return None, None
        static_bg = self._static_background(reg)
        return static_bg, (static_bg.copy() if self._sprites else None)

    def _accumulate(
        self,
        acc: np.ndarray,
        times: np.ndarray,
        wts: np.ndarray,
        reg: Region,
        static_bg: np.ndarray | None,
        canvas: np.ndarray | None,
    ) -> None:
        """Set ``acc = sum_i wts[i] * render(times[i])``; ``canvas`` ends equal to ``static_bg``."""
        if static_bg is not None:
            np.multiply(static_bg, np.float32(wts.sum()), out=acc)
        else:
            acc.fill(0.0)
        for t, wt in zip(times.tolist(), wts.tolist(), strict=True):
            if wt == 0.0:
                continue
            if static_bg is None:
                canvas = self._warp_background(t, reg)
                cv2.scaleAdd(canvas, wt, acc, dst=acc)
            assert canvas is not None or not self._sprites
            touched = []
            shake = self.shake_offset(t)
            for sp in self._sprites:
                patch = self._sprite_patch(sp, t, shake, reg)
                if patch is None:
                    continue
                # Composite "over" as a delta on the patch: canvas <- premult + (1 - a) * canvas.
                y0, y1, x0, x1, premult, alpha = patch
                sub = canvas[y0:y1, x0:x1]  # type: ignore[index]
                delta = cv2.subtract(premult, cv2.multiply(alpha, sub))
                acc_sub = acc[y0:y1, x0:x1]
                cv2.scaleAdd(delta, wt, acc_sub, dst=acc_sub)
                cv2.add(sub, delta, dst=sub)
                touched.append((y0, y1, x0, x1))
            if static_bg is not None:
                for y0, y1, x0, x1 in touched:
                    canvas[y0:y1, x0:x1] = static_bg[y0:y1, x0:x1]  # type: ignore[index]

    def _static_background(self, reg: Region) -> np.ndarray:
        with self._cache_lock:
            cached = self._cache.get(reg)
        if cached is not None:
            return cached
        ox, oy, w, h = reg
        m = self._bg_motion
        bh, bw = self._background.shape
        identity = (
            m.p0_px == (0.0, 0.0)
            and m.angle0_deg == 0.0
            and m.scale0 == 1.0
            and (bw, bh) == (self._width, self._height)
        )
        if identity:
            img = self._background[oy : oy + h, ox : ox + w].copy()
        else:
            img = self._warp_background(0.0, reg)
        img.setflags(write=False)
        with self._cache_lock:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[reg] = img
        return img

    def _warp_background(self, t_s: float, reg: Region) -> np.ndarray:
        ox, oy, w, h = reg
        m = self._bg_motion
        px, py = m.position(t_s)
        sx, sy = self.shake_offset(t_s)
        cx = (self._width - 1) / 2.0 + px + sx
        cy = (self._height - 1) / 2.0 + py + sy
        bh, bw = self._background.shape
        M = _inverse_map(bw, bh, cx, cy, m.angle_deg(t_s), m.scale(t_s), ox, oy)
        return cv2.warpAffine(
            self._background,
            M,
            (w, h),
            flags=_WARP_FLAGS,
            borderMode=_BORDERS[self._border],
            borderValue=0.0,
        )

    def _sprite_patch(
        self, sp: Sprite, t_s: float, shake: tuple[float, float], reg: Region
    ) -> tuple[int, int, int, int, np.ndarray, np.ndarray] | None:
        """Warped premultiplied radiance and alpha of a sprite, on its bounding box (region px)."""
        ox, oy, w, h = reg
        m = sp.motion
        tw, th = sp.size
        scale = m.scale(t_s)
        angle = m.angle_deg(t_s)
        x, y = m.position(t_s)
        if sp.wrap:
            r = 0.5 * scale * math.hypot(tw, th) + 2.0
            x = (x + r) % (self._width + 2 * r) - r
            y = (y + r) % (self._height + 2 * r) - r
        x += shake[0]
        y += shake[1]
        rad = math.radians(angle)
        c, s = abs(math.cos(rad)), abs(math.sin(rad))
        support = scale * sp._support_px
        hx = min(0.5 * scale * (c * tw + s * th), support) + 1.0
        hy = min(0.5 * scale * (s * tw + c * th), support) + 1.0
        x0 = max(ox, math.floor(x - hx))
        x1 = min(ox + w, math.ceil(x + hx) + 1)
        y0 = max(oy, math.floor(y - hy))
        y1 = min(oy + h, math.ceil(y + hy) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        M = _inverse_map(tw, th, x, y, angle, scale, x0, y0)
        dsize = (x1 - x0, y1 - y0)
        premult = cv2.warpAffine(
            sp._premult,
            M,
            dsize,
            flags=_WARP_FLAGS,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        alpha = cv2.warpAffine(
            sp.alpha, M, dsize, flags=_WARP_FLAGS, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
        )
        return (y0 - oy, y1 - oy, x0 - ox, x1 - ox, premult, alpha)


# -- procedural textures ---------------------------------------------------------------------------
def _multiscale_noise(
    width: int, height: int, rng: np.random.Generator, octaves: int = 4
) -> np.ndarray:
    """Zero-mean noise with energy at several scales, roughly in [-1, 1]."""
    out = np.zeros((height, width), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cell = max(2, int(max(width, height) / (4 * 2**o)))
        gw, gh = max(2, width // cell + 2), max(2, height // cell + 2)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.6
    return out / (total * 1.5)


def _dead_leaves(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Occluding disks and boxes with a power-law size distribution, plus fine texture."""
    img = np.full((height, width), int(rng.integers(60, 190)), np.uint8)
    side = min(width, height)
    r_min, r_max = max(1.5, side / 120), max(3.0, side / 7)
    n = int(80 + width * height / 2500)
    for _ in range(n):
        r = r_min * (r_max / r_min) ** (rng.random() ** 1.6)  # many small, few large
        cx, cy = rng.uniform(-r, width + r), rng.uniform(-r, height + r)
        gray = int(rng.integers(20, 236))
        if rng.random() < 0.7:
            cv2.circle(img, (int(cx * 16), int(cy * 16)), int(r * 16), gray, -1, cv2.LINE_AA, 4)
        else:
            box = ((cx, cy), (2 * r, 2 * r * rng.uniform(0.3, 1.0)), rng.uniform(0, 180))
            pts = np.round(cv2.boxPoints(box) * 16).astype(np.int32)
            cv2.fillPoly(img, [pts], gray, cv2.LINE_AA, 4)
    out = img.astype(np.float32) / 255.0
    out *= 1.0 + 0.25 * _multiscale_noise(width, height, rng)
    out = cv2.GaussianBlur(out, (0, 0), 0.6)
    return np.clip(0.04 + 0.92 * out, 0.02, 0.98).astype(np.float32)


def _coords(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = (d - 1) / 2.0
    yy, xx = np.mgrid[0:d, 0:d].astype(np.float32)
    return xx - c, yy - c, np.hypot(xx - c, yy - c)


def _soft(x: np.ndarray) -> np.ndarray:
    """Antialiased step: 0 below -0.5, 1 above +0.5."""
    return np.clip(x + 0.5, 0.0, 1.0).astype(np.float32)


def _striped_disk(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y, r = _coords(d)
    period = max(3.0, d / rng.uniform(4, 8))
    phase = np.sin(2 * np.pi * (x * 0.8 + y * 0.6) / period)
    tex = 0.5 + 0.45 * np.clip(2.5 * phase, -1, 1)
    return tex.astype(np.float32), _soft(d / 2.0 - 0.5 - r)


def _checker_box(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = _coords(d)
    period = max(3.0, d / rng.uniform(3, 6))
    cx = np.clip(2.5 * np.sin(np.pi * x / period * 2), -1, 1)
    cy = np.clip(2.5 * np.sin(np.pi * y / period * 2), -1, 1)
    tex = 0.5 + 0.42 * cx * cy
    half = d / 2.0 - 0.5
    alpha = _soft(half - np.abs(x)) * _soft(half * 0.7 - np.abs(y))
    return tex.astype(np.float32), alpha


def _noisy_ellipse(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = _coords(d)
    a, b = d / 2.0 - 0.5, (d / 2.0 - 0.5) * rng.uniform(0.45, 0.8)
    re = np.hypot(x / a, y / b)
    level = rng.choice([0.12, 0.88])
    tex = np.clip(level + 0.35 * _multiscale_noise(d, d, rng, octaves=3), 0.0, 1.0)
    return tex.astype(np.float32), _soft((1.0 - re) * b)


def _ring(d: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x, y, r = _coords(d)
    outer = d / 2.0 - 0.5
    inner = outer * rng.uniform(0.35, 0.6)
    ang = np.arctan2(y, x)
    tex = 0.5 + 0.45 * np.clip(3 * np.sin(6 * ang), -1, 1)
    alpha = _soft(outer - r) * _soft(r - inner)
    return tex.astype(np.float32), alpha
