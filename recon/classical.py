"""Classical (non-learned) reconstruction of coded exposures.

Global codes (every pixel sees the same shutter): a scene translating at constant velocity is
recorded as its mid-exposure image convolved with a coded motion PSF (:func:`motion_psf`). The
reconstruction deconvolves (:func:`tv_deconvolve`, :func:`wiener_deconvolve`) and moves the sharp
image along the motion to each latent time (:func:`render_frames`); the velocity is given (oracle)
or estimated from the coded frame itself (:func:`estimate_velocity`). :func:`reconstruct_global`
chains the steps. Per-pixel masks (DMD coding): a static video no longer explains the measurement,
and a video prior works directly (:func:`gap_tv`).

Conventions (shared with :mod:`recon.data`): the exposure spans ``t in [0, 1]``; a velocity
``(dx, dy)`` is the displacement in pixels over the whole exposure; at time ``t`` the camera sees
the mid-exposure image shifted by ``(t - 1/2) * (dx, dy)``. The coded frame is
``y = sum_k c_k v_k / sum_k c_k``, so PSFs sum to one. Images are ``(H, W)`` or ``(B, H, W)``;
results follow the input's device and floating dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from recon.functional import CodeLike, code_bits, code_weights, coded_sum, coded_sum_adjoint

__all__ = [
    "ClassicalResult",
    "VelocityEstimate",
    "estimate_velocity",
    "gap_tv",
    "motion_psf",
    "reconstruct_global",
    "render_frames",
    "tv_deconvolve",
    "wiener_deconvolve",
]

Velocity = tuple[float, float]
Pads = tuple[int, int, int, int]


@dataclass(frozen=True)
class VelocityEstimate:
    """Result of :func:`estimate_velocity`.

    Attributes:
        dx: horizontal displacement over the exposure, pixels.
        dy: vertical displacement over the exposure, pixels.
        score: negative log-likelihood per frequency of the chosen blur (lower is better).
        direction_margin: how much sparser (relative gradient L1 / L2) the deconvolution with the
            chosen direction is than with the reverse; near 0 the direction is ambiguous (a
            palindromic code, or too little structure along the motion).
        noise_sigma: noise standard deviation fitted with the chosen blur (or the given one).
        candidates: rows ``(dx, dy, score, level)`` of every candidate searched, finest level
            first, best first within a level (scores compare within a level only; the signs of
            candidates are not resolved, only ``dx, dy`` are).
    """

    dx: float
    dy: float
    score: float
    direction_margin: float
    noise_sigma: float
    candidates: Tensor

    @property
    def velocity(self) -> Velocity:
        """``(dx, dy)`` in pixels over the exposure."""
        return (self.dx, self.dy)


@dataclass(frozen=True)
class ClassicalResult:
    """Result of :func:`reconstruct_global`.

    Attributes:
        frames: the reconstructed video, ``(T, H, W)``.
        sharp: the deconvolved mid-exposure image, ``(H, W)``.
        velocity: the velocity used, ``(dx, dy)`` pixels over the exposure.
        velocity_estimated: whether the velocity was estimated (else given).
        score: the estimate's direction margin (:class:`VelocityEstimate`), ``None`` if given.
        noise_sigma: the noise standard deviation used (given or fitted).
    """

    frames: Tensor
    sharp: Tensor
    velocity: Velocity
    velocity_estimated: bool
    score: float | None
    noise_sigma: float


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _as_batch(y: Tensor, name: str = "y") -> tuple[Tensor, bool]:
    """``(H, W)`` or ``(B, H, W)`` -> ``(B, H, W)`` and whether a batch axis was added."""
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor.")
    if y.dim() == 2:
        return y.unsqueeze(0), True
    if y.dim() == 3:
        return y, False
    raise ValueError(f"{name} must be (H, W) or (B, H, W); got shape {tuple(y.shape)}.")


def _velocity(velocity_px: Sequence[float]) -> Velocity:
    try:
        dx, dy = (float(v) for v in velocity_px)
    except (TypeError, ValueError) as e:
        raise ValueError(f"velocity_px must be a pair (dx, dy); got {velocity_px!r}.") from e
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise ValueError(f"velocity_px must be finite; got {velocity_px!r}.")
    return dx, dy


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return value


def _time_weights(bits: CodeLike, sub_steps: int, weights: Tensor | None) -> Tensor:
    """Per-sub-step weights of the code (float64, CPU): ``weights`` if given, else ideal."""
    if weights is None:
        return code_weights(bits, sub_steps=sub_steps, dtype=torch.float64)
    k = code_bits(bits).numel()
    w = weights.detach().to(device="cpu", dtype=torch.float64)
    if w.dim() != 1 or w.numel() % k != 0:
        raise ValueError(f"weights must be (K * S,) with K = {k} chips; got shape "
                         f"{tuple(w.shape)}.")
    if bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError("weights must be non-negative and not all zero.")
    return w


def _psf_radius(velocity: Velocity, t_range: tuple[float, float] = (0.0, 1.0)) -> int:
    ext = max(abs(t_range[0] - 0.5), abs(t_range[1] - 0.5))
    return math.ceil(max(abs(velocity[0]), abs(velocity[1])) * ext) + 1


def _pad_reflect(y: Tensor, m: int) -> Tensor:
    """Pad ``(B, H, W)`` by ``m`` on every side: mirror first, then repeat the edge if needed."""
    if m <= 0:
        return y
    h, w = y.shape[-2:]
    r = min(m, h - 1, w - 1)
    out = F.pad(y.unsqueeze(1), (r, r, r, r), mode="reflect") if r > 0 else y.unsqueeze(1)
    if m > r:
        out = F.pad(out, (m - r,) * 4, mode="replicate")
    return out.squeeze(1)


def _otf(psf: Tensor, hw: tuple[int, int]) -> Tensor:
    """Real FFT of a centred ``(B|1, kh, kw)`` kernel embedded in an ``hw`` periodic grid."""
    kh, kw = psf.shape[-2:]
    hp, wp = hw
    if kh > hp or kw > wp:
        raise ValueError(f"PSF of {kh}x{kw} does not fit a {hp}x{wp} image; pad the image.")
    big = psf.new_zeros(*psf.shape[:-2], hp, wp)
    big[..., :kh, :kw] = psf
    big = torch.roll(big, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.rfft2(big)


def _grad_power(hw: tuple[int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
    """``|G|^2`` of the periodic forward differences on an ``hw`` grid (rfft layout)."""
    hp, wp = hw
    fy = torch.fft.fftfreq(hp, device=device, dtype=dtype).unsqueeze(1)
    fx = torch.fft.rfftfreq(wp, device=device, dtype=dtype).unsqueeze(0)
    return (4 * torch.sin(math.pi * fy) ** 2) + (4 * torch.sin(math.pi * fx) ** 2)


def _grad(x: Tensor) -> Tensor:
    """Periodic forward differences ``(..., H, W) -> (..., 2, H, W)``."""
    return torch.stack([torch.roll(x, -1, dims=-1) - x, torch.roll(x, -1, dims=-2) - x], dim=-3)


def _grad_adjoint(g: Tensor) -> Tensor:
    """Adjoint of :func:`_grad` (minus the periodic divergence)."""
    gx, gy = g.unbind(dim=-3)
    return (torch.roll(gx, 1, dims=-1) - gx) + (torch.roll(gy, 1, dims=-2) - gy)


def _check_psf(psf: Tensor, b: int) -> Tensor:
    if psf.dim() == 2:
        return psf.unsqueeze(0)
    if psf.dim() == 3 and psf.shape[0] in (1, b):
        return psf
    raise ValueError(f"psf must be (kh, kw) or (B, kh, kw) with B = {b}; got shape "
                     f"{tuple(psf.shape)}.")


# ---------------------------------------------------------------------------------------------
# PSF
# ---------------------------------------------------------------------------------------------


def motion_psf(
    code: CodeLike,
    velocity_px: Sequence[float],
    *,
    t_range: tuple[float, float] = (0.0, 1.0),
    samples_per_px: int = 8,
    radius: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """2-D PSF of linear motion seen through a global code (sub-pixel, anti-aliased).

    ``code`` is the transmittance over ``N`` equal time bins of the exposure: a binary code (one
    bin per chip) or per-sub-step weights, e.g. ``code_weights(bits, sub_steps=S, ...)`` with a
    measured transmittance (scale does not matter). The path is sampled densely in time; the point
    at time ``t`` sits at ``(t - 1/2) * velocity_px``, carries its bin's weight and is splatted
    bilinearly. The code is laid along the path in time order, so negating the velocity reverses
    it along the path. ``t_range`` integrates part of the exposure (the blur within one frame).

    Args:
        code: binary code or non-negative time-bin weights.
        velocity_px: ``(dx, dy)`` displacement in pixels over the whole exposure.
        t_range: ``(t0, t1)``, ``0 <= t0 <= t1 <= 1``; ``t0 == t1`` is a pure shift.
        samples_per_px: sampling density of the path (>= 1).
        radius: half-size R of the grid (default: the smallest that holds the path).
        dtype: dtype of the result.
        device: device of the result (default CPU).

    Returns:
        The PSF, centred on the mid-exposure position, summing to one.

    Raises:
        ValueError: a malformed code, velocity or ``t_range``, no weight inside ``t_range``, or a
            ``radius`` too small for the path.

    Shape:
        - output: ``(2R + 1, 2R + 1)``, ``R = ceil(max(|dx|, |dy|) * max|t - 1/2|) + 1``

    >>> psf = motion_psf("101", (6.0, 0.0))
    >>> tuple(psf.shape), round(psf.sum().item(), 6), psf[4].tolist()
    ((9, 9), 1.0, [0.0, 0.125, 0.25, 0.125, 0.0, 0.125, 0.25, 0.125, 0.0])
    """
    if isinstance(code, str):
        weights = code_bits(code).to(torch.float64)
    else:
        weights = torch.as_tensor(code).detach().to(device="cpu", dtype=torch.float64)
    if weights.dim() != 1 or weights.numel() == 0 or bool((weights < 0).any()):
        raise ValueError(f"code must be a non-empty 1-D sequence of non-negative weights; got "
                         f"shape {tuple(weights.shape)}.")
    dx, dy = _velocity(velocity_px)
    t0, t1 = float(t_range[0]), float(t_range[1])
    if not (0.0 <= t0 <= t1 <= 1.0):
        raise ValueError(f"t_range must satisfy 0 <= t0 <= t1 <= 1; got {t_range!r}.")
    w = weights
    n_bins = w.numel()
    r = _psf_radius((dx, dy), (t0, t1))
    if radius is not None:
        if int(radius) < r:
            raise ValueError(f"radius={radius} cannot hold a path reaching {r - 1} px from the "
                             "centre.")
        r = int(radius)
    length = math.hypot(dx, dy) * (t1 - t0)
    per_bin = max(1, math.ceil(length * samples_per_px / max(1e-12, (t1 - t0) * n_bins)))
    m = max(1, math.ceil((t1 - t0) * n_bins * per_bin))
    t = t0 + (torch.arange(m, dtype=torch.float64) + 0.5) * ((t1 - t0) / m)
    wt = w[(t * n_bins).floor().clamp(0, n_bins - 1).long()]
    if float(wt.sum()) <= 0:
        raise ValueError(f"The transmittance is zero everywhere in t_range={t_range!r}.")
    px = r + (t - 0.5) * dx
    py = r + (t - 0.5) * dy
    ix, iy = px.floor(), py.floor()
    ax, ay = px - ix, py - iy
    ix, iy = ix.long(), iy.long()
    size = 2 * r + 1
    k = torch.zeros(size * size, dtype=torch.float64)
    for oy, ox, wgt in ((0, 0, (1 - ay) * (1 - ax)), (0, 1, (1 - ay) * ax),
                        (1, 0, ay * (1 - ax)), (1, 1, ay * ax)):
        k.index_add_(0, (iy + oy) * size + (ix + ox), wt * wgt)
    k = k.view(size, size)
    return (k / k.sum()).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------
# Deconvolution
# ---------------------------------------------------------------------------------------------


def _fast_len(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    return min(p for p in (2**i * 3**j * 5**k for i in range(16) for j in range(10)
                           for k in range(7)) if p >= n)


def _pads(h: int, w: int, psf: Tensor, margin: int | None) -> Pads:
    """(top, bottom, left, right): at least ``margin`` (default the PSF size), fast FFT sizes."""
    k = max(psf.shape[-2:])
    m = max(k if margin is None else int(margin), (k + 1) // 2)
    hp, wp = _fast_len(h + 2 * m), _fast_len(w + 2 * m)
    top, left = (hp - h) // 2, (wp - w) // 2
    return top, hp - h - top, left, wp - w - left


def _padded_hw(y: Tensor, pads: Pads) -> tuple[int, int]:
    return y.shape[-2] + pads[0] + pads[1], y.shape[-1] + pads[2] + pads[3]


def _tapered(y: Tensor, pads: Pads) -> Tensor:
    """Mirror ``y`` into the padding, then fade the band to the mean (periodic, no jumps)."""
    top, bottom, left, right = pads
    m = max(pads)
    big = _pad_reflect(y, m)[..., m - top: m + y.shape[-2] + bottom,
                                m - left: m + y.shape[-1] + right]

    def ramp(n: int, a: int, b: int) -> Tensor:
        i = torch.arange(n, device=y.device, dtype=y.dtype)
        d = torch.minimum(((i + 0.5) / max(a, 1)), ((n - i - 0.5) / max(b, 1))).clamp(max=1.0)
        return 0.5 - 0.5 * torch.cos(math.pi * d)

    win = ramp(big.shape[-2], top, bottom).unsqueeze(1) * ramp(big.shape[-1], left, right)
    mean = y.mean(dim=(-2, -1), keepdim=True)
    return mean + win * (big - mean)


def _crop(x: Tensor, pads: Pads) -> Tensor:
    top, bottom, left, right = pads
    return x[..., top: x.shape[-2] - bottom, left: x.shape[-1] - right]


def _window_mask(y: Tensor, pads: Pads) -> tuple[Tensor, Tensor]:
    """The observed-window mask and ``y`` zero-padded, both on the padded grid."""
    hw = _padded_hw(y, pads)
    mask = torch.zeros(hw, device=y.device, dtype=y.dtype)
    mask[pads[0]: hw[0] - pads[1], pads[2]: hw[1] - pads[3]] = 1.0
    return mask, F.pad(y, (pads[2], pads[3], pads[0], pads[1]))


def _wiener_ext(y: Tensor, psf: Tensor, nsr: float, boundary: str, iters: int,
                pads: Pads) -> Tensor:
    """Wiener deconvolution of ``(B, H, W)`` on the padded grid (see :func:`wiener_deconvolve`)."""
    if boundary not in ("solve", "taper"):
        raise ValueError(f"boundary must be 'solve' or 'taper'; got {boundary!r}.")
    hw = _padded_hw(y, pads)
    otf = _otf(psf.to(y.dtype), hw)
    reg = _grad_power(hw, y.device, y.dtype)
    den = otf.abs().square() + nsr * reg
    den[..., 0, 0] = den[..., 0, 0].clamp(min=1e-12)

    def precond(r: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(r) / den, s=hw)

    x = precond(torch.fft.irfft2(torch.fft.rfft2(_tapered(y, pads)) * otf.conj(), s=hw))
    if boundary == "taper" or iters <= 0:
        return x
    # Unknown boundary: solve (K^T M K + nsr R) x = K^T M y by preconditioned conjugate gradients.
    mask, y_ext = _window_mask(y, pads)

    def normal(v: Tensor) -> Tensor:
        fv = torch.fft.rfft2(v)
        kv = torch.fft.irfft2(fv * otf, s=hw) * mask
        return torch.fft.irfft2(torch.fft.rfft2(kv) * otf.conj() + nsr * reg * fv, s=hw)

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum(dim=(-2, -1), keepdim=True)

    r = torch.fft.irfft2(torch.fft.rfft2(y_ext) * otf.conj(), s=hw) - normal(x)
    z = precond(r)
    p, rz = z, dot(r, z)
    for _ in range(iters):
        ap = normal(p)
        alpha = rz / dot(p, ap).clamp(min=1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        z = precond(r)
        rz_new = dot(r, z)
        p = z + (rz_new / rz.clamp(min=1e-30)) * p
        rz = rz_new
    return x


def wiener_deconvolve(
    y: Tensor,
    psf: Tensor,
    nsr: float,
    *,
    boundary: Literal["solve", "taper"] = "solve",
    iters: int = 100,
    margin: int | None = None,
) -> Tensor:
    """Wiener (regularised least-squares) deconvolution, computed with FFTs.

    Minimises ``||k * x - y||^2 + nsr * ||grad x||^2`` (the Wiener filter of a ``1/f^2`` image
    spectrum). The image is mirrored outwards by ``margin`` pixels and the band faded to the mean
    (edge taper), so the periodic FFT sees no jump at the borders; ``boundary="taper"`` returns
    that closed-form solution. A long coded blur carries content across the frame edge and its
    inverse has long tails, so the taper alone still rings far inside (256 px frame, 32 px blur of
    ``11100101``: 21.7 dB tapered vs 24.4 dB solved; a box code falls below its blurry input).
    ``boundary="solve"`` treats the pixels outside the frame as unknowns seen only through the
    blur and solves the exact normal equations by conjugate gradients, preconditioned by the
    Fourier filter and started from the tapered solution.

    Args:
        y: blurred image(s).
        psf: blur kernel(s), centred, summing to one (e.g. from :func:`motion_psf`).
        nsr: noise-to-signal ratio (> 0), about ``noise_sigma**2 / mean|grad x|^2``.
        boundary: ``"solve"`` or ``"taper"``.
        iters: conjugate-gradient iterations for ``boundary="solve"``.
        margin: padding in pixels (default: the PSF size).

    Returns:
        The deconvolved image(s), same shape as ``y``.

    Raises:
        ValueError: bad shapes, ``nsr <= 0`` or an unknown ``boundary``.

    Shape:
        - y: ``(H, W)`` or ``(B, H, W)``; psf: ``(kh, kw)`` or ``(B, kh, kw)``
        - output: same as ``y``
    """
    yb, squeeze = _as_batch(y)
    psf_b = _check_psf(psf, yb.shape[0])
    pads = _pads(yb.shape[-2], yb.shape[-1], psf_b, margin)
    x = _wiener_ext(yb, psf_b, _positive("nsr", nsr), boundary, int(iters), pads)
    x = _crop(x, pads)
    return x[0] if squeeze else x


def _robust_range(y: Tensor) -> Tensor:
    """Spread (1st to 99th percentile) of each image of ``(B, H, W)``, as ``(B, 1, 1)``."""
    flat = y.detach().flatten(1).float()
    flat = flat[:, :: flat.shape[1] // 65536 + 1]
    q = torch.quantile(flat, torch.tensor([0.01, 0.99], device=flat.device), dim=1)
    floor = 1e-6 * flat.abs().amax(dim=1).clamp(min=1.0)
    return torch.maximum(q[1] - q[0], floor).clamp(min=1e-12).to(y.dtype).view(-1, 1, 1)


def _tv_ext(y: Tensor, psf: Tensor, lam: float, iters: int, pads: Pads,
            rho: float) -> Tensor:
    """ADMM for ``min 1/2 ||M (k * x) - y||^2 + lam TV(x)`` on the padded grid.

    Splitting ``u = k * x`` (masked data term: per-pixel average) and ``z = grad x`` (isotropic
    shrinkage) leaves an x step that is diagonal in Fourier.
    """
    hw = _padded_hw(y, pads)
    mask, y_ext = _window_mask(y, pads)
    otf = _otf(psf.to(y.dtype), hw)
    g2 = _grad_power(hw, y.device, y.dtype)
    rho_u = rho
    rho_z = 10.0 * lam / _robust_range(y)  # shrinkage threshold lam / rho_z: 10 % of the range
    den = rho_u * otf.abs().square() + rho_z * g2
    den[..., 0, 0] = den[..., 0, 0].clamp(min=1e-12)

    def conv(a: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(a) * otf, s=hw)

    x = _wiener_ext(y, psf, 1e-2, "taper", 0, pads)
    u, z = conv(x), _grad(x)
    du, dz = torch.zeros_like(u), torch.zeros_like(z)
    thr = (lam / rho_z).unsqueeze(1)
    for _ in range(iters):
        rhs = rho_u * torch.fft.rfft2(u - du) * otf.conj() + rho_z * torch.fft.rfft2(
            _grad_adjoint(z - dz))
        x = torch.fft.irfft2(rhs / den, s=hw)
        kx, gx = conv(x), _grad(x)
        u = (mask * y_ext + rho_u * (kx + du)) / (mask + rho_u)
        v = gx + dz
        z = v * (1.0 - thr / v.square().sum(dim=-3, keepdim=True).sqrt().clamp(min=1e-12)
                 ).clamp(min=0.0)
        du = du + kx - u
        dz = dz + gx - z
    return x


def tv_deconvolve(
    y: Tensor,
    psf: Tensor,
    lam: float,
    iters: int = 150,
    *,
    rho: float = 0.03,
    margin: int | None = None,
) -> Tensor:
    """Deconvolution with an isotropic total-variation prior and unknown boundaries (ADMM).

    Minimises ``1/2 ||M (k * x) - y||^2 + lam * sum |grad x|``: ``x`` covers the frame plus a
    margin and ``M`` keeps the observed frame, so no boundary condition is assumed and content the
    motion carried in from outside is estimated, not mirrored. Splitting ``u = k * x`` and
    ``z = grad x`` makes every step closed-form (the x step is diagonal in Fourier). Starts from a
    tapered Wiener estimate.

    Args:
        y: blurred image(s).
        psf: blur kernel(s), centred, summing to one.
        lam: TV weight (> 0) in the units of ``y``; ``noise_sigma / 10`` suits natural images.
        iters: ADMM iterations (>= 1).
        rho: penalty of the data splitting (> 0); that of the gradient splitting follows from
            ``lam`` and the range of each image, so the defaults do not depend on the units.
        margin: extension of the domain in pixels (default: the PSF size).

    Returns:
        The deconvolved image(s), same shape as ``y``.

    Raises:
        ValueError: bad shapes, ``lam <= 0``, ``rho <= 0`` or ``iters < 1``.

    Shape:
        - y: ``(H, W)`` or ``(B, H, W)``; psf: ``(kh, kw)`` or ``(B, kh, kw)``
        - output: same as ``y``
    """
    yb, squeeze = _as_batch(y)
    psf_b = _check_psf(psf, yb.shape[0])
    if int(iters) < 1:
        raise ValueError(f"iters must be >= 1; got {iters!r}.")
    pads = _pads(yb.shape[-2], yb.shape[-1], psf_b, margin)
    x = _tv_ext(yb, psf_b, _positive("lam", lam), int(iters), pads, _positive("rho", rho))
    x = _crop(x, pads)
    return x[0] if squeeze else x


# ---------------------------------------------------------------------------------------------
# Blur and noise estimation
# ---------------------------------------------------------------------------------------------


def _periodic_component(u: Tensor) -> Tensor:
    """Periodic part of ``(..., H, W)`` images (Moisan's periodic + smooth decomposition).

    Removes the jumps between opposite borders that otherwise put a bright cross in the spectrum.
    """
    h, w = u.shape[-2:]
    v = torch.zeros_like(u)
    v[..., 0, :] += u[..., -1, :] - u[..., 0, :]
    v[..., -1, :] += u[..., 0, :] - u[..., -1, :]
    v[..., :, 0] += u[..., :, -1] - u[..., :, 0]
    v[..., :, -1] += u[..., :, 0] - u[..., :, -1]
    fy = torch.fft.fftfreq(h, device=u.device, dtype=u.dtype).unsqueeze(1)
    fx = torch.fft.rfftfreq(w, device=u.device, dtype=u.dtype).unsqueeze(0)
    den = 2 * torch.cos(2 * math.pi * fy) + 2 * torch.cos(2 * math.pi * fx) - 4
    den[0, 0] = 1.0
    s = torch.fft.rfft2(v) / den
    s[..., 0, 0] = 0.0
    return u - torch.fft.irfft2(s, s=(h, w))


class _Spectrum:
    """Gaussian model of one image's power spectrum: ``a |H(f)|^2 / |2 pi f|^(2 g) + sigma^2``.

    The latent image has a power-law spectrum of unknown scale ``a`` and exponent ``g`` (fitted:
    dead leaves and photographs fall faster than ``1/f^2`` near Nyquist, and with ``g = 1`` fixed
    a static image looks slightly blurred), ``H`` is a candidate blur, the noise is white. The
    negative log-likelihood, with ``a``, ``g``, ``sigma^2`` fitted by Fisher scoring, scores a blur
    without deconvolving: unlike the fit of a sharp image, the marginal likelihood does not favour
    "no blur". It sees only ``|H|``, so it cannot tell a velocity from its reverse.
    """

    def __init__(self, y: Tensor, noise_sigma: float | None) -> None:
        h, w = y.shape[-2:]
        self.hw = (h, w)
        self.power = torch.fft.rfft2(_periodic_component(y)).abs().square() / (h * w)
        wts = torch.full((h, w // 2 + 1), 2.0, device=y.device, dtype=y.dtype)
        wts[:, 0] = 1.0
        if w % 2 == 0:
            wts[:, -1] = 1.0
        wts[0, 0] = 0.0  # the mean carries no information about the blur
        self.wts = wts / wts.sum()
        fy = torch.fft.fftfreq(h, device=y.device, dtype=y.dtype).unsqueeze(1)
        fx = torch.fft.rfftfreq(w, device=y.device, dtype=y.dtype).unsqueeze(0)
        f2 = (2 * math.pi) ** 2 * (fx.square() + fy.square())
        f2[0, 0] = 1.0
        self.log_f2 = f2.log()
        self.a0 = float((self.power * f2 * self.wts).sum())
        self.s2_fixed = None if noise_sigma is None else float(noise_sigma) ** 2
        self.s2_0 = float(torch.quantile(self.power[self.wts > 0].float(), 0.01))

    def fit(self, h2: Tensor, iters: int = 8) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """NLL per frequency and fitted ``a, sigma^2, g`` for each ``|H|^2`` of ``(C, h, w')``."""
        c = h2.shape[0]
        a = torch.full((c,), self.a0, device=h2.device, dtype=h2.dtype)
        s2 = torch.full_like(a, self.s2_0 if self.s2_fixed is None else self.s2_fixed)
        g = torch.ones_like(a)

        def model(a: Tensor, s2: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
            base = h2 * torch.exp(-g.view(-1, 1, 1) * self.log_f2)
            return base, a.view(-1, 1, 1) * base + s2.view(-1, 1, 1)

        for _ in range(iters):
            base, s = model(a, s2, g)
            r = (self.power - s) / s.square() * self.wts
            inv = self.wts / s.square()
            ds = [base, torch.ones_like(base), -a.view(-1, 1, 1) * base * self.log_f2]
            score = torch.stack([(r * d).sum((-2, -1)) for d in ds], dim=-1)
            info = torch.stack([torch.stack([(inv * di * dj).sum((-2, -1)) for dj in ds], -1)
                                for di in ds], dim=-2)
            if self.s2_fixed is not None:  # freeze sigma^2: identity row and column, zero score
                info[:, 1, :], info[:, :, 1], score[:, 1] = 0.0, 0.0, 0.0
                info[:, 1, 1] = 1.0
            info = info + 1e-12 * info.diagonal(dim1=-2, dim2=-1).abs().amax(-1).view(-1, 1, 1) \
                * torch.eye(3, device=h2.device, dtype=h2.dtype)
            step = torch.linalg.solve(info, score)
            a = torch.maximum(a + step[:, 0], a * 0.1)
            s2 = torch.maximum(s2 + step[:, 1], s2 * 0.1).clamp(min=1e-20)
            g = (g + step[:, 2]).clamp(0.5, 2.5)
        _, s = model(a, s2, g)
        nll = ((self.power / s + s.log()) * self.wts).sum((-2, -1))
        return nll, a, s2, g

    def grad_energy(self, a: float, g: float) -> float:
        """Mean squared gradient ``mean|grad x|^2`` of a latent image with the fitted spectrum."""
        g2 = _grad_power(self.hw, self.log_f2.device, self.log_f2.dtype)
        return float((a * torch.exp(-g * self.log_f2) * g2 * self.wts).sum())

    def score(self, w: Tensor, cands: list[Velocity]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`fit` for the PSFs of candidate velocities, in chunks of 32."""
        out = []
        for i in range(0, len(cands), 32):
            chunk = cands[i: i + 32]
            r = max(_psf_radius(v) for v in chunk)
            psfs = torch.stack([motion_psf(w, v, radius=r, dtype=self.power.dtype,
                                           device=self.power.device) for v in chunk])
            out.append(self.fit(_otf(psfs, self.hw).abs().square()))
        nll, a, s2, g = (torch.cat(parts) for parts in zip(*out, strict=True))
        return nll, a, s2, g


def _sparsity(y: Tensor, w: Tensor, v: Velocity, nsr: float) -> float:
    """Gradient L1 / L2 of the periodic Wiener deconvolution of ``y`` for velocity ``v``."""
    hw = (y.shape[-2], y.shape[-1])
    otf = _otf(motion_psf(w, v, dtype=y.dtype, device=y.device).unsqueeze(0), hw)[0]
    filt = otf.conj() / (otf.abs().square() + nsr * _grad_power(hw, y.device, y.dtype))
    filt[0, 0] = 1.0
    g = _grad(torch.fft.irfft2(torch.fft.rfft2(y) * filt, s=hw))
    return float(g.square().sum(dim=0).sqrt().sum() / g.square().sum().sqrt())


def estimate_velocity(
    y: Tensor,
    code: CodeLike,
    *,
    max_px: float,
    sub_steps: int = 1,
    weights: Tensor | None = None,
    noise_sigma: float | None = None,
    angle_step_deg: float | None = None,
    max_size: int = 256,
) -> VelocityEstimate:
    """Estimate a global linear velocity, sign included, from one coded frame.

    1. Axis and length: the Gaussian marginal likelihood of the spectrum under "power-law image,
       blurred by the candidate PSF, plus white noise", scale, exponent and noise fitted per
       candidate (``_Spectrum``): no deconvolution, no bias to short blurs. Coarse grid (angles in
       ``[0, 180)``, lengths up to ``max_px``, on a ``max(128, 3 max_px)`` px crop), then two
       refinements at 1/4 and 1/16 of the steps.
    2. Sign: a velocity and its reverse give PSFs of equal ``|H|``, so their Wiener deconvolutions
       differ only in phase: the true direction gives compact edges, the reverse smears them into
       ripples (for a non-palindromic code). The sparser gradients (lower L1 / L2) win.

    Args:
        y: the coded frame; a centred crop of at most ``max_size`` pixels a side is used.
        code: binary code of K chips, in time order.
        max_px: largest displacement over the exposure to consider, pixels (> 0, at most half the
            crop side).
        sub_steps: S of ``weights``.
        weights: measured per-sub-step weights ``(K * S,)``; default the ideal code.
        noise_sigma: noise standard deviation in the units of ``y``; default: fitted.
        angle_step_deg: coarse angular step in degrees (default ``min(6, 1.5 rad / max_px)``).
        max_size: side of the centred crop used.

    Returns:
        The estimate.

    Raises:
        ValueError: ``y`` not 2-D, a malformed code, or bad search parameters.

    Shape:
        - y: ``(H, W)``
    """
    if y.dim() != 2 or not y.is_floating_point():
        raise ValueError(f"y must be one floating-point (H, W) image; got {tuple(y.shape)}.")
    w = _time_weights(code, sub_steps, weights)

    def centre(img: Tensor, side: int) -> Tensor:
        h, wd = img.shape
        ch, cw = min(h, side), min(wd, side)
        return img[(h - ch) // 2: (h - ch) // 2 + ch, (wd - cw) // 2: (wd - cw) // 2 + cw]

    crop = centre(y, int(max_size))
    max_px = _positive("max_px", max_px)
    if max_px > min(crop.shape) / 2:
        raise ValueError(f"max_px={max_px:g} is more than half the {tuple(crop.shape)} crop; "
                         "use a larger image or max_size, or a smaller max_px.")
    # Coded blurs have fine spectral ripples: a blur of L px rotated by more than ~1/L rad already
    # fits worse than a short spurious blur, so the coarse angles must be that fine.
    step = (_positive("angle_step_deg", angle_step_deg) if angle_step_deg is not None
            else min(6.0, math.degrees(1.5 / max_px)))
    specs = (_Spectrum(centre(crop, max(128, math.ceil(3 * max_px))), noise_sigma),
             _Spectrum(crop, noise_sigma))
    l_step = max(1.0, max_px / 20)
    thetas = torch.arange(0.0, 180.0, step).tolist()
    lengths = [0.0] + torch.arange(l_step, max_px + 1e-9, l_step).tolist()
    rows = []
    for level in range(3):
        cands = [(ln * math.cos(math.radians(t)), ln * math.sin(math.radians(t)))
                 for t in thetas for ln in lengths if ln > 0 or t == thetas[0]]
        nll, a, s2, g = specs[min(level, 1)].score(w, cands)
        rows.append(torch.cat([torch.tensor(cands, dtype=nll.dtype, device=nll.device),
                               nll.unsqueeze(1), torch.full_like(nll, level).unsqueeze(1)], 1))
        rows[-1] = rows[-1][nll.argsort()]
        i = int(nll.argmin())
        dx, dy = cands[i]
        th0, l0 = math.degrees(math.atan2(dy, dx)), math.hypot(dx, dy)
        step, l_step = step / 4, l_step / 4
        thetas = [th0 + j * step for j in range(-4, 5)]
        lengths = [l0 + j * l_step for j in range(-4, 5) if 0 <= l0 + j * l_step <= max_px * 1.05]
    margin = 0.0
    if l0 > 0:
        p = _periodic_component(crop)
        nsr = float(s2[i]) / max(specs[1].grad_energy(float(a[i]), float(g[i])), 1e-30)
        fwd, rev = _sparsity(p, w, (dx, dy), nsr), _sparsity(p, w, (-dx, -dy), nsr)
        if rev < fwd:
            dx, dy, fwd, rev = -dx, -dy, rev, fwd
        margin = (rev - fwd) / fwd
    return VelocityEstimate(dx=dx + 0.0, dy=dy + 0.0, score=float(nll[i]), direction_margin=margin,
                            noise_sigma=math.sqrt(float(s2[i])),
                            candidates=torch.cat(rows[::-1]).cpu())


# ---------------------------------------------------------------------------------------------
# Rendering and the global-code pipeline
# ---------------------------------------------------------------------------------------------


def _frame_windows(n_frames: int | None, times: Sequence[float] | Tensor | None,
                   frame_exposure: float | None) -> list[tuple[float, float]]:
    if (n_frames is None) == (times is None):
        raise ValueError("Give exactly one of n_frames and times.")
    if times is None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
            raise ValueError(f"n_frames must be a positive integer; got {n_frames!r}.")
        ts = [(i + 0.5) / n_frames for i in range(n_frames)]
        e = 1.0 / n_frames if frame_exposure is None else float(frame_exposure)
    else:
        ts = [float(t) for t in (times.tolist() if isinstance(times, Tensor) else times)]
        e = 0.0 if frame_exposure is None else float(frame_exposure)
    if not ts or any(not 0.0 <= t <= 1.0 for t in ts):
        raise ValueError(f"Frame times must lie in [0, 1] (the exposure); got {ts!r}.")
    if not 0.0 <= e <= 1.0:
        raise ValueError(f"frame_exposure must lie in [0, 1]; got {e!r}.")
    return [(max(0.0, t - e / 2), min(1.0, t + e / 2)) for t in ts]


def _render_ext(x: Tensor, velocity: Velocity, windows: list[tuple[float, float]]) -> Tensor:
    """Frames ``(B, T, Hp, Wp)`` of a (padded) mid-exposure image, by FFT convolution."""
    r = max(_psf_radius(velocity, win) for win in windows)
    one = torch.ones(1, dtype=torch.float64)
    kernels = torch.stack([motion_psf(one, velocity, t_range=win, radius=r, dtype=x.dtype,
                                      device=x.device) for win in windows])
    hw = (x.shape[-2], x.shape[-1])
    return torch.fft.irfft2(torch.fft.rfft2(x).unsqueeze(1) * _otf(kernels, hw), s=hw)


def render_frames(
    sharp: Tensor,
    velocity_px: Sequence[float],
    n_frames: int | None = None,
    *,
    times: Sequence[float] | Tensor | None = None,
    frame_exposure: float | None = None,
) -> Tensor:
    """Move a mid-exposure image along a linear motion to each output time.

    Frame ``i`` is the image shifted by ``(t_i - 1/2) * velocity_px`` and averaged over its window
    ``[t_i - e/2, t_i + e/2]`` (a uniform motion PSF), matching ground truth defined as the scene
    averaged over each chip. ``n_frames`` gives equal slots with ``e = 1 / n_frames``; ``times``
    gives instantaneous frames unless ``frame_exposure`` is set. Content entering the frame is
    mirrored (:func:`reconstruct_global` renders from its extended deconvolution instead).

    Args:
        sharp: mid-exposure image(s).
        velocity_px: ``(dx, dy)`` displacement in pixels over the whole exposure.
        n_frames: number of equal time slots.
        times: explicit frame times in ``[0, 1]`` (instead of ``n_frames``).
        frame_exposure: exposure of each frame as a fraction of the whole exposure.

    Returns:
        The frames.

    Raises:
        ValueError: not exactly one of ``n_frames`` and ``times``, times outside ``[0, 1]``,
            bad shapes or velocity.

    Shape:
        - sharp: ``(H, W)`` or ``(B, H, W)``
        - output: ``(T, H, W)`` or ``(B, T, H, W)``

    >>> img = torch.zeros(9, 9); img[4, 4] = 1.0
    >>> render_frames(img, (4.0, 0.0), times=[0.0, 1.0])[:, 4].argmax(dim=-1).tolist()
    [2, 6]
    """
    xb, squeeze = _as_batch(sharp, "sharp")
    v = _velocity(velocity_px)
    windows = _frame_windows(n_frames, times, frame_exposure)
    m = max(_psf_radius(v, win) for win in windows) + 1
    pads = (m, m, m, m)
    frames = _crop(_render_ext(_pad_reflect(xb, m), v, windows), pads)
    return frames[0] if squeeze else frames


def reconstruct_global(
    y: Tensor,
    bits: CodeLike,
    *,
    n_frames: int,
    sub_steps: int = 1,
    weights: Tensor | None = None,
    velocity: Sequence[float] | None = None,
    max_px: float | None = None,
    method: Literal["wiener", "tv"] = "tv",
    noise_sigma: float | None = None,
    iters: int | None = None,
) -> ClassicalResult:
    """Reconstruct a short video from one globally coded frame of a linearly moving scene.

    Velocity (given, or :func:`estimate_velocity`); noise level (given, or fitted to the spectrum
    with that blur); deconvolution on a domain extended beyond the frame with unknown boundaries
    (:func:`tv_deconvolve`, ``lam = sigma / 10``, or :func:`wiener_deconvolve`,
    ``nsr = 3 sigma^2 / mean|grad x|^2`` of the fitted spectrum); :func:`render_frames` from the
    extended image, so content entering the frame comes from the data, not a mirror.

    Args:
        y: the coded frame, ``y = sum_k c_k v_k / sum_k c_k`` (dark-subtracted).
        bits: the binary code, K chips in time order.
        n_frames: number of output frames (equal time slots; K gives one per chip).
        sub_steps: S of ``weights``.
        weights: measured per-sub-step code weights ``(K * S,)``; default the ideal code.
        velocity: ``(dx, dy)`` in pixels over the exposure, or ``None`` to estimate it.
        max_px: search bound of the estimate (default: half the smaller side, at most 127).
        method: ``"tv"`` (default, sharper) or ``"wiener"`` (faster).
        noise_sigma: noise standard deviation in the units of ``y``; ``None`` to fit it.
        iters: solver iterations (default 150 ADMM for TV, 100 CG for Wiener).

    Returns:
        Frames, sharp image, velocity, whether it was estimated, direction margin, noise level.

    Raises:
        ValueError: bad shapes, code, velocity or method.

    Shape:
        - y: ``(H, W)``
        - frames: ``(n_frames, H, W)``; sharp: ``(H, W)``
    """
    if y.dim() != 2 or not y.is_floating_point():
        raise ValueError(f"y must be one floating-point (H, W) image; got {tuple(y.shape)}.")
    if method not in ("tv", "wiener"):
        raise ValueError(f"method must be 'tv' or 'wiener'; got {method!r}.")
    windows = _frame_windows(n_frames, None, None)
    w = _time_weights(bits, sub_steps, weights)
    score = None
    if velocity is None:
        bound = max_px if max_px is not None else min(min(y.shape), 256) / 2 - 1
        est = estimate_velocity(y, bits, max_px=bound, sub_steps=sub_steps, weights=weights,
                                noise_sigma=noise_sigma)
        v, score = est.velocity, est.direction_margin
    else:
        v = _velocity(velocity)
    psf = motion_psf(w, v, dtype=y.dtype, device=y.device).unsqueeze(0)
    h, wd = y.shape
    spec = _Spectrum(y[max(0, h // 2 - 128): h // 2 + 128, max(0, wd // 2 - 128): wd // 2 + 128],
                     noise_sigma)
    _, a_fit, s2_fit, g_fit = spec.fit(_otf(psf, spec.hw).abs().square())
    sigma = math.sqrt(float(s2_fit[0])) if noise_sigma is None else float(noise_sigma)
    sigma = max(sigma, 1e-4 * float(_robust_range(y.unsqueeze(0))))
    pads = _pads(h, wd, psf, None)  # >= the PSF size: enough for the deconvolution and renders
    if method == "tv":
        x = _tv_ext(y.unsqueeze(0), psf, sigma / 10, iters or 150, pads, 0.03)
    else:
        nsr = 3 * sigma**2 / max(spec.grad_energy(float(a_fit[0]), float(g_fit[0])), 1e-30)
        x = _wiener_ext(y.unsqueeze(0), psf, nsr, "solve", iters or 100, pads)
    return ClassicalResult(frames=_crop(_render_ext(x, v, windows), pads)[0],
                           sharp=_crop(x, pads)[0], velocity=v, velocity_estimated=velocity is None,
                           score=score, noise_sigma=sigma)


# ---------------------------------------------------------------------------------------------
# Per-pixel masks: GAP-TV
# ---------------------------------------------------------------------------------------------


def _grad3(x: Tensor, tw: float) -> Tensor:
    """Forward differences over (t, y, x) with Neumann borders: ``(B, T, H, W) -> (3, ...)``."""
    g = x.new_zeros((3, *x.shape))
    g[0, :, :-1] = (x[:, 1:] - x[:, :-1]) * tw
    g[1, :, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    g[2, ..., :-1] = x[..., 1:] - x[..., :-1]
    return g


def _div3(p: Tensor, tw: float) -> Tensor:
    """Discrete divergence, the negative adjoint of :func:`_grad3`."""
    out = torch.zeros_like(p[0])
    for axis, q in zip((1, 2, 3), (p[0] * tw, p[1], p[2]), strict=True):
        n = q.shape[axis]
        if n < 2:
            continue
        d = q.clone()
        d.narrow(axis, 1, n - 1).sub_(q.narrow(axis, 0, n - 1))
        d.narrow(axis, n - 1, 1).copy_(-q.narrow(axis, n - 2, 1))
        out = out + d
    return out


def _tv_denoise(x: Tensor, lam: float | Tensor, tw: float, iters: int) -> Tensor:
    """Spatio-temporal isotropic TV denoising (Chambolle's dual projection algorithm)."""
    tau = 0.99 / (8.0 + 4.0 * tw * tw)
    p = x.new_zeros((3, *x.shape))
    for _ in range(iters):
        g = _grad3(_div3(p, tw) - x / lam, tw)
        p = (p + tau * g) / (1.0 + tau * g.square().sum(dim=0).sqrt())
    return x - lam * _div3(p, tw)


def gap_tv(
    y: Tensor,
    weights: Tensor,
    *,
    iters: int = 60,
    tv_weight: float | None = None,
    temporal_weight: float = 0.25,
    tv_iters: int = 10,
    accelerate: bool = True,
) -> Tensor:
    """Generalized alternating projection with a TV prior (GAP-TV) for per-pixel coded video.

    Alternates the projection ``x = v + A^T (A A^T)^-1 (y' - A v)`` onto the measurements
    (``A A^T = sum_t weights[t]^2`` per pixel) with spatio-temporal TV denoising ``v = D(x)``;
    ``accelerate`` adds the residual back into ``y'``. With a global code (``weights`` ``(T,)``)
    a static video fits the data exactly and it cannot beat the blurry frame: use
    :func:`reconstruct_global` then.

    Args:
        y: coded frame(s), ``y = sum_t weights[t] * x[t]`` (see :func:`recon.functional.coded_sum`).
        weights: per-pixel masks with normalisation, e.g. ``mask_weights(masks)``.
        iters: GAP iterations (>= 1).
        tv_weight: TV denoising strength in the units of ``y`` (default 10 % of its range).
        temporal_weight: weight of time differences relative to space in the TV.
        tv_iters: inner iterations of the TV denoiser.
        accelerate: use accelerated GAP.

    Returns:
        The reconstructed video.

    Raises:
        ValueError: bad shapes or parameters.

    Shape:
        - y: ``(H, W)`` or ``(B, H, W)``
        - weights: ``(T, H, W)`` (or ``(T,)``)
        - output: ``(T, H, W)`` or ``(B, T, H, W)``
    """
    yb, squeeze = _as_batch(y)
    if weights.dim() not in (1, 3) or (weights.dim() == 3 and weights.shape[1:] != yb.shape[1:]):
        raise ValueError(f"weights must be (T, H, W) matching y's {tuple(yb.shape[1:])}, or (T,); "
                         f"got {tuple(weights.shape)}.")
    if int(iters) < 1 or int(tv_iters) < 1:
        raise ValueError("iters and tv_iters must be >= 1.")
    if temporal_weight < 0:
        raise ValueError(f"temporal_weight must be >= 0; got {temporal_weight}.")
    wt = weights.to(device=yb.device, dtype=yb.dtype)
    lam = (0.1 * _robust_range(yb).unsqueeze(1) if tv_weight is None
           else _positive("tv_weight", tv_weight))
    phi = (wt.square().sum(dim=0) if wt.dim() == 3 else wt.square().sum()).clamp(min=1e-12)
    x = coded_sum_adjoint(yb / phi, wt)
    y_acc = yb.clone()
    v = x
    for _ in range(int(iters)):
        v = _tv_denoise(x, lam, float(temporal_weight), int(tv_iters))
        av = coded_sum(v, wt)
        if accelerate:
            y_acc = y_acc + (yb - av)
        x = v + coded_sum_adjoint(((y_acc if accelerate else yb) - av) / phi, wt)
    return v[0] if squeeze else v
