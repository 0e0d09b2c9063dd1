"""Motion PSFs and deconvolution with unknown boundaries (the building blocks of recon.classical).

Holds :func:`motion_psf` and :func:`motion_psf_batch` (the PSF of linear motion seen through a
global code), :func:`wiener_deconvolve` and :func:`tv_deconvolve` (FFT deconvolution on a domain
extended beyond the frame) and their forms on an already padded grid
(:func:`wiener_deconvolve_padded`, :func:`tv_deconvolve_padded`, which :mod:`recon.classical`
chains with rendering), and the checks of velocities, code weights and saturation masks that
:mod:`recon.velocity` and :mod:`recon.classical` share. The FFT pieces (padding, OTFs, gradients)
live in :mod:`recon.fft_ops`. The public deconvolutions are re-exported by :mod:`recon.classical`.

Conventions (shared with :mod:`recon.data`): the exposure spans ``t in [0, 1]``; a velocity
``(dx, dy)`` is the displacement in pixels over the whole exposure; at time ``t`` the camera sees
the mid-exposure image shifted by ``(t - 1/2) * (dx, dy)``. PSFs sum to one. Images are
``(H, W)`` or ``(B, H, W)``; results follow the input's device and floating dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from recon.fft_ops import (
    Pads,
    as_batch,
    check_positive,
    crop,
    fft_pads,
    grad,
    grad_adjoint,
    grad_power,
    otf,
    padded_hw,
    robust_range,
    tapered,
    window_mask,
)
from recon.functional import CodeLike, code_bits, code_weights

__all__ = [
    "Velocity",
    "check_saturated",
    "check_velocity",
    "motion_psf",
    "motion_psf_batch",
    "psf_radius",
    "time_weights",
    "tv_deconvolve",
    "tv_deconvolve_padded",
    "wiener_deconvolve",
    "wiener_deconvolve_padded",
]

#: ``(dx, dy)``: displacement in pixels over the whole exposure.
Velocity = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------


def check_velocity(velocity_px: Sequence[float]) -> Velocity:
    """``velocity_px`` as a pair of finite floats ``(dx, dy)``.

    Raises:
        ValueError: not a pair of numbers, or not finite.

    >>> check_velocity([3, -1])
    (3.0, -1.0)
    """
    try:
        dx, dy = (float(v) for v in velocity_px)
    except (TypeError, ValueError) as e:
        raise ValueError(f"velocity_px must be a pair (dx, dy); got {velocity_px!r}.") from e
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise ValueError(f"velocity_px must be finite; got {velocity_px!r}.")
    return dx, dy


def time_weights(bits: CodeLike, sub_steps: int, weights: Tensor | None) -> Tensor:
    """Per-sub-step weights of a code (float64, CPU): ``weights`` if given (checked), else the
    ideal code (:func:`recon.functional.code_weights`, summing to one).

    Args:
        bits: the binary code, K chips.
        sub_steps: S, sub-steps per chip of the ideal weights.
        weights: measured weights, or ``None``.

    Raises:
        ValueError: ``weights`` of the wrong length, negative or all zero.

    Shape:
        - weights: ``(K * S',)`` for any whole ``S'``
        - output: ``(K * S,)`` ideal, or ``weights`` as given

    >>> time_weights("101", 2, None).tolist()
    [0.25, 0.25, 0.0, 0.0, 0.25, 0.25]
    """
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


def psf_radius(velocity: Velocity, t_range: tuple[float, float] = (0.0, 1.0)) -> int:
    """Half-size R of the smallest ``(2R + 1)``-square grid that holds the motion path of
    ``velocity`` over ``t_range`` (what :func:`motion_psf` uses by default).

    >>> psf_radius((6.0, 0.0)), psf_radius((6.0, 0.0), (0.5, 0.75))
    (4, 3)
    """
    ext = max(abs(t_range[0] - 0.5), abs(t_range[1] - 0.5))
    return math.ceil(max(abs(velocity[0]), abs(velocity[1])) * ext) + 1


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


def _path_samples(velocity: Velocity, t_range: tuple[float, float], n_bins: int,
                  samples_per_px: int) -> int:
    """Number of time samples :func:`motion_psf` takes along the path (a whole number per bin)."""
    t0, t1 = t_range
    length = math.hypot(velocity[0], velocity[1]) * (t1 - t0)
    per_bin = max(1, math.ceil(length * samples_per_px / max(1e-12, (t1 - t0) * n_bins)))
    return max(1, math.ceil((t1 - t0) * n_bins * per_bin))


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
    # one path is a batch of one: the sampling and splatting live in motion_psf_batch
    return motion_psf_batch(
        weights, [velocity_px], t_range=t_range, samples_per_px=samples_per_px, radius=radius,
        dtype=dtype, device=device,
    )[0]


def motion_psf_batch(
    weights: Tensor,
    velocities: Sequence[Velocity],
    *,
    t_range: tuple[float, float] = (0.0, 1.0),
    samples_per_px: int = 8,
    radius: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """:func:`motion_psf` of many velocities at once, on a common grid, as tensor ops.

    Same path sampling (per velocity), bin weights and bilinear splatting as :func:`motion_psf`,
    so each slice equals ``motion_psf(weights, v, radius=R, ...)`` to float64 rounding: the paths
    are padded to the longest with zero-weight samples and splatted into one flat buffer.

    Args:
        weights: non-negative time-bin weights, not all zero (e.g. from :func:`time_weights`).
        velocities: ``(dx, dy)`` displacements over the whole exposure, pixels (at least one).
        t_range: ``(t0, t1)``, ``0 <= t0 <= t1 <= 1``.
        samples_per_px: sampling density of each path (>= 1).
        radius: half-size R of the common grid (default: the smallest that holds every path).
        dtype: dtype of the result.
        device: device of the result (default CPU).

    Returns:
        The PSFs, each centred on the mid-exposure position and summing to one.

    Raises:
        ValueError: no velocity, a bad ``t_range``, no weight inside it, or a ``radius`` too
            small for some path.

    Shape:
        - weights: ``(N,)``
        - output: ``(C, 2R + 1, 2R + 1)`` for ``C`` velocities
    """
    w = weights.detach().to(device="cpu", dtype=torch.float64)
    vel = [check_velocity(v) for v in velocities]
    if not vel:
        raise ValueError("velocities must hold at least one (dx, dy).")
    t0, t1 = float(t_range[0]), float(t_range[1])
    if not (0.0 <= t0 <= t1 <= 1.0):
        raise ValueError(f"t_range must satisfy 0 <= t0 <= t1 <= 1; got {t_range!r}.")
    n_bins = w.numel()
    r = max(psf_radius(v, (t0, t1)) for v in vel)
    if radius is not None:
        if int(radius) < r:
            raise ValueError(f"radius={radius} cannot hold a path reaching {r - 1} px from the "
                             "centre.")
        r = int(radius)
    # Sample counts in Python, exactly as motion_psf (ceil is sensitive to the last bit).
    m = torch.tensor([_path_samples(v, (t0, t1), n_bins, samples_per_px) for v in vel],
                     dtype=torch.float64).unsqueeze(1)
    j = torch.arange(int(m.max()), dtype=torch.float64)
    valid = j < m
    t = torch.where(valid, t0 + (j + 0.5) * ((t1 - t0) / m), 0.5)
    wt = torch.where(valid, w[(t * n_bins).floor().clamp(0, n_bins - 1).long()], 0.0)
    if bool((wt.sum(1) <= 0).any()):
        raise ValueError(f"The transmittance is zero everywhere in t_range={t_range!r}.")
    v = torch.tensor(vel, dtype=torch.float64)
    px = r + (t - 0.5) * v[:, :1]
    py = r + (t - 0.5) * v[:, 1:]
    ix, iy = px.floor(), py.floor()
    ax, ay = px - ix, py - iy
    size = 2 * r + 1
    base = (iy.long() * size + ix.long()) + torch.arange(len(vel)).unsqueeze(1) * (size * size)
    k = torch.zeros(len(vel) * size * size, dtype=torch.float64)
    for off, wgt in ((0, (1 - ay) * (1 - ax)), (1, (1 - ay) * ax), (size, ay * (1 - ax)),
                     (size + 1, ay * ax)):
        k.index_add_(0, (base + off).flatten(), (wt * wgt).flatten())
    k = k.view(len(vel), size, size)
    return (k / k.sum((-2, -1), keepdim=True)).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------------
# Deconvolution
# ---------------------------------------------------------------------------------------------


def check_saturated(saturated: Tensor | None, y: Tensor) -> Tensor | None:
    """``None`` when no pixel is saturated, else the bool mask checked against ``y (B, H, W)``."""
    if saturated is None:
        return None
    if saturated.shape != y.shape[-2:] or saturated.dtype != torch.bool:
        raise ValueError(f"saturated must be a bool mask of the frame's shape "
                         f"{tuple(y.shape[-2:])}; got {saturated.dtype} {tuple(saturated.shape)}.")
    return saturated.to(y.device) if bool(saturated.any()) else None


def wiener_deconvolve_padded(y: Tensor, psf: Tensor, nsr: float, boundary: str, iters: int,
                             pads: Pads, saturated: Tensor | None = None) -> Tensor:
    """:func:`wiener_deconvolve` without the checks, returning the whole padded grid.

    For callers that keep working on the extended domain (:mod:`recon.classical` renders its
    frames from it); :func:`recon.fft_ops.crop` with ``pads`` gives the frame.

    Args:
        y: the blurred images.
        psf: the blur kernels, centred, summing to one.
        nsr: noise-to-signal ratio (> 0, not checked).
        boundary: ``"solve"`` or ``"taper"``.
        iters: conjugate-gradient iterations for ``boundary="solve"``.
        pads: the padding, e.g. :func:`recon.fft_ops.fft_pads`.
        saturated: clipped pixels, given no weight with ``boundary="solve"`` (checked by
            :func:`check_saturated`), or ``None``.

    Returns:
        The deconvolved images on the padded grid.

    Raises:
        ValueError: an unknown ``boundary``, or a PSF larger than the padded grid.

    Shape:
        - y: ``(B, H, W)``; psf: ``(1, kh, kw)`` or ``(B, kh, kw)``; saturated: ``(H, W)`` bool
        - output: ``(B, H + top + bottom, W + left + right)``
    """
    if boundary not in ("solve", "taper"):
        raise ValueError(f"boundary must be 'solve' or 'taper'; got {boundary!r}.")
    hw = padded_hw(y, pads)
    k_hat = otf(psf.to(y.dtype), hw)
    reg = grad_power(hw, y.device, y.dtype)
    den = k_hat.abs().square() + nsr * reg
    den[..., 0, 0] = den[..., 0, 0].clamp(min=1e-12)

    def precond(r: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(r) / den, s=hw)

    x = precond(torch.fft.irfft2(torch.fft.rfft2(tapered(y, pads)) * k_hat.conj(), s=hw))
    if boundary == "taper" or iters <= 0:
        return x
    # Unknown boundary: solve (K^T M K + nsr R) x = K^T M y by preconditioned conjugate gradients.
    mask, y_ext = window_mask(y, pads, saturated)
    y_ext = y_ext * mask

    def normal(v: Tensor) -> Tensor:
        fv = torch.fft.rfft2(v)
        kv = torch.fft.irfft2(fv * k_hat, s=hw) * mask
        return torch.fft.irfft2(torch.fft.rfft2(kv) * k_hat.conj() + nsr * reg * fv, s=hw)

    def dot(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum(dim=(-2, -1), keepdim=True)

    r = torch.fft.irfft2(torch.fft.rfft2(y_ext) * k_hat.conj(), s=hw) - normal(x)
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
    saturated: Tensor | None = None,
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
        saturated: bool ``(H, W)`` mask of clipped pixels, left out of the data term with
            ``boundary="solve"`` (the closed-form taper cannot leave pixels out).

    Returns:
        The deconvolved image(s), same shape as ``y``.

    Raises:
        ValueError: bad shapes, ``nsr <= 0`` or an unknown ``boundary``.

    Shape:
        - y: ``(H, W)`` or ``(B, H, W)``; psf: ``(kh, kw)`` or ``(B, kh, kw)``
        - output: same as ``y``
    """
    yb, squeeze = as_batch(y)
    psf_b = _check_psf(psf, yb.shape[0])
    pads = fft_pads(yb.shape[-2], yb.shape[-1], psf_b, margin)
    x = wiener_deconvolve_padded(yb, psf_b, check_positive("nsr", nsr), boundary, int(iters),
                                 pads, check_saturated(saturated, yb))
    x = crop(x, pads)
    return x[0] if squeeze else x


def tv_deconvolve_padded(y: Tensor, psf: Tensor, lam: float, iters: int, pads: Pads,
                         rho: float, saturated: Tensor | None = None) -> Tensor:
    """ADMM for ``min 1/2 ||M (k * x) - y||^2 + lam TV(x)`` on the padded grid.

    :func:`tv_deconvolve` without the checks, returning the whole padded grid (see
    :func:`wiener_deconvolve_padded`). Splitting ``u = k * x`` (masked data term: per-pixel
    average) and ``z = grad x`` (isotropic shrinkage) leaves an x step that is diagonal in
    Fourier. ``saturated`` pixels are clipped: out of the data term, and their ``u`` is kept at or
    above the clipped value (the light there was at least that much).

    Args:
        y: the blurred images.
        psf: the blur kernels, centred, summing to one.
        lam: TV weight (> 0, not checked).
        iters: ADMM iterations.
        pads: the padding, e.g. :func:`recon.fft_ops.fft_pads`.
        rho: penalty of the data splitting (> 0, not checked).
        saturated: clipped pixels (checked by :func:`check_saturated`), or ``None``.

    Returns:
        The deconvolved images on the padded grid.

    Shape:
        - y: ``(B, H, W)``; psf: ``(1, kh, kw)`` or ``(B, kh, kw)``; saturated: ``(H, W)`` bool
        - output: ``(B, H + top + bottom, W + left + right)``
    """
    hw = padded_hw(y, pads)
    mask, y_ext = window_mask(y, pads, saturated)
    clip = None
    if saturated is not None:
        clip = F.pad(saturated, (pads[2], pads[3], pads[0], pads[1]))
    k_hat = otf(psf.to(y.dtype), hw)
    g2 = grad_power(hw, y.device, y.dtype)
    rho_u = rho
    rho_z = 10.0 * lam / robust_range(y)  # shrinkage threshold lam / rho_z: 10 % of the range
    den = rho_u * k_hat.abs().square() + rho_z * g2
    den[..., 0, 0] = den[..., 0, 0].clamp(min=1e-12)

    def conv(a: Tensor) -> Tensor:
        return torch.fft.irfft2(torch.fft.rfft2(a) * k_hat, s=hw)

    x = wiener_deconvolve_padded(y, psf, 1e-2, "taper", 0, pads)
    u, z = conv(x), grad(x)
    du, dz = torch.zeros_like(u), torch.zeros_like(z)
    thr = (lam / rho_z).unsqueeze(1)
    for _ in range(iters):
        rhs = rho_u * torch.fft.rfft2(u - du) * k_hat.conj() + rho_z * torch.fft.rfft2(
            grad_adjoint(z - dz))
        x = torch.fft.irfft2(rhs / den, s=hw)
        kx, gx = conv(x), grad(x)
        u = (mask * y_ext + rho_u * (kx + du)) / (mask + rho_u)
        if clip is not None:
            u = torch.where(clip, torch.maximum(u, y_ext), u)
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
    saturated: Tensor | None = None,
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
        saturated: bool ``(H, W)`` mask of clipped pixels (left out of the data term, kept at or
            above their value); the same for every image of a batch.

    Returns:
        The deconvolved image(s), same shape as ``y``.

    Raises:
        ValueError: bad shapes, ``lam <= 0``, ``rho <= 0`` or ``iters < 1``.

    Shape:
        - y: ``(H, W)`` or ``(B, H, W)``; psf: ``(kh, kw)`` or ``(B, kh, kw)``
        - output: same as ``y``
    """
    yb, squeeze = as_batch(y)
    psf_b = _check_psf(psf, yb.shape[0])
    if int(iters) < 1:
        raise ValueError(f"iters must be >= 1; got {iters!r}.")
    pads = fft_pads(yb.shape[-2], yb.shape[-1], psf_b, margin)
    x = tv_deconvolve_padded(yb, psf_b, check_positive("lam", lam), int(iters), pads,
                             check_positive("rho", rho), check_saturated(saturated, yb))
    x = crop(x, pads)
    return x[0] if squeeze else x
