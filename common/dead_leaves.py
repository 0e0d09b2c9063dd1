"""The dead-leaves texture: opaque discs of random grey level stacked until the plane is covered.

Such images share the properties of natural photographs that matter to deblurring (scale
invariance, a roughly ``1/f^2`` power spectrum, sparse gradients with sharp occlusion edges) and
need no download. The random draws come from the caller (:func:`dead_leaves`'s ``uniform``), so
one drawing serves a numpy generator or another library's (``recon.data.dead_leaves`` draws with
a seeded torch generator, as it always has).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["Uniform", "dead_leaves"]

#: A source of uniform draws in ``[0, 1)``: called with a shape, returns a float64 array of it
#: (e.g. ``np.random.default_rng(seed).random``).
Uniform = Callable[[tuple[int, ...]], np.ndarray]

#: Discs drawn per call of ``uniform``.
_CHUNK = 512


def dead_leaves(
    h: int,
    w: int,
    uniform: Uniform,
    *,
    r_min: float = 2.0,
    r_max: float | None = None,
    alpha: float = 3.0,
    max_leaves: int | None = None,
) -> np.ndarray:
    """Procedural dead-leaves image in ``[0, 1]`` (float64).

    Discs are drawn front to back: each new disc only shows where the discs in front of it left
    the plane uncovered (exact occlusion). Disc radii follow ``p(r) ~ r**-alpha`` on
    ``[r_min, r_max]`` (``alpha = 3`` is the scale-invariant choice), centres are uniform over the
    image plus a border of one radius, and grey levels are uniform in ``[0, 1]``. Edges are
    anti-aliased with a one-pixel linear ramp of the coverage. Drawing stops when every pixel is
    covered to 99.9 % or after ``max_leaves`` discs; what is left uncovered takes a last grey level.

    Args:
        h: image height in pixels (>= 1).
        w: image width in pixels (>= 1).
        uniform: the random draws: ``uniform((n, 4))`` gives radius, x, y and grey of ``n``
            discs (up to 512 a call), ``uniform((1,))`` the last grey level.
        r_min: smallest disc radius in pixels (> 0).
        r_max: largest disc radius in pixels (default ``max(h, w) / 4``); must exceed ``r_min``.
        alpha: exponent of the radius distribution (> 1).
        max_leaves: cap on the number of discs (default ``40 * h * w / r_min**2``, enough to cover
            the plane for the defaults).

    Returns:
        The image, float64, values in ``[0, 1]``.

    Raises:
        ValueError: a non-positive size, ``r_min <= 0``, ``r_max <= r_min`` or ``alpha <= 1``.

    Shape:
        - output: ``(h, w)``

    >>> img = dead_leaves(32, 48, np.random.default_rng(0).random)
    >>> img.shape, img.dtype.name, bool(img.min() >= 0), bool(img.max() <= 1)
    ((32, 48), 'float64', True, True)
    """
    if h < 1 or w < 1:
        raise ValueError(f"Image size must be positive; got h={h}, w={w}.")
    if r_max is None:
        r_max = max(h, w) / 4.0
    if not (r_min > 0 and r_max > r_min):
        raise ValueError(f"Need 0 < r_min < r_max; got r_min={r_min}, r_max={r_max}.")
    if alpha <= 1:
        raise ValueError(f"alpha must be > 1 for a normalisable radius law; got {alpha}.")
    if max_leaves is None:
        max_leaves = int(40 * h * w / r_min**2) + 100
    img = np.zeros((h, w))
    cov = np.zeros((h, w))
    a1 = 1.0 - alpha
    lo, hi = r_min**a1, r_max**a1
    drawn = 0
    while drawn < max_leaves:
        n = min(_CHUNK, max_leaves - drawn)
        u = np.asarray(uniform((n, 4)), dtype=np.float64)
        radii = (lo + u[:, 0] * (hi - lo)) ** (1.0 / a1)  # inverse CDF of the truncated power law
        cx = -radii + u[:, 1] * (w + 2 * radii)
        cy = -radii + u[:, 2] * (h + 2 * radii)
        for r, x0, y0, g in zip(radii.tolist(), cx.tolist(), cy.tolist(), u[:, 3].tolist(),
                                strict=True):
            _add_disc(img, cov, r, x0, y0, g)
        drawn += n
        if float(cov.min()) > 0.999:
            break
    g_last = float(np.asarray(uniform((1,)), dtype=np.float64)[0])
    img += np.clip(1.0 - cov, 0.0, None) * g_last
    return np.clip(img, 0.0, 1.0, out=img)


def _add_disc(img: np.ndarray, cov: np.ndarray, r: float, x0: float, y0: float,
              g: float) -> None:
    """Paint a disc of grey ``g`` behind what is already drawn (``cov``: coverage so far)."""
    h, w = img.shape
    i0, i1 = max(0, math.floor(y0 - r - 1)), min(h, math.ceil(y0 + r + 2))
    j0, j1 = max(0, math.floor(x0 - r - 1)), min(w, math.ceil(x0 + r + 2))
    if i0 >= i1 or j0 >= j1:
        return
    yy = np.square(np.arange(i0, i1, dtype=np.float64) - y0)[:, None]
    xx = np.square(np.arange(j0, j1, dtype=np.float64) - x0)[None, :]
    # Pixel centres at integer coordinates; coverage ramps from 0 to 1 across one pixel.
    a = np.clip(r + 0.5 - np.sqrt(yy + xx), 0.0, 1.0)
    c = cov[i0:i1, j0:j1]
    a *= 1.0 - c
    img[i0:i1, j0:j1] += a * g
    c += a
