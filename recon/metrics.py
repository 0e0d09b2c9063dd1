"""Image and video quality metrics for evaluating reconstructions.

All metrics take the estimate first and the reference second, check that the shapes agree and
return 0-dim tensors (call ``float()`` for a number). ``data_range`` is the span of valid values
(1.0 for images on the ``[0, 1]`` scale, ``2**bits - 1`` for raw counts).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "video_psnr"]


def _check_pair(x: Tensor, ref: Tensor, min_dim: int, what: str) -> None:
    if not isinstance(x, Tensor) or not isinstance(ref, Tensor):
        raise TypeError("x and ref must be torch tensors.")
    if tuple(x.shape) != tuple(ref.shape):
        raise ValueError(f"x has shape {tuple(x.shape)} but ref has {tuple(ref.shape)}; "
                         "they must match.")
    if x.dim() < min_dim:
        raise ValueError(f"{what} needs at least {min_dim} dimensions; got shape "
                         f"{tuple(x.shape)}.")
    if x.numel() == 0:
        raise ValueError("x and ref are empty.")


def _check_range(data_range: float) -> float:
    value = float(data_range)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"data_range must be a finite number > 0; got {data_range!r}.")
    return value


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio over all elements, in dB.

    ``10 log10(data_range^2 / mean((x - ref)^2))``; identical inputs give ``inf``.

    Args:
        x: estimate.
        ref: reference, same shape.
        data_range: span of valid values (> 0).

    Returns:
        The PSNR as a 0-dim float tensor (float64).

    Raises:
        ValueError: shapes differ, empty input or a bad ``data_range``.
        TypeError: an input is not a tensor.

    Shape:
        - x, ref: ``(*)``, any shape, the same for both
        - output: ``()``

    >>> round(float(psnr(torch.zeros(4), torch.full((4,), 0.1))), 6)
    20.0
    """
    _check_pair(x, ref, 0, "psnr")
    rng = _check_range(data_range)
    mse = (x.detach().double() - ref.detach().double()).square().mean()
    return 10.0 * torch.log10(rng**2 / mse)


def video_psnr(x: Tensor, ref: Tensor, data_range: float = 1.0, *,
               reduce: bool = True) -> Tensor:
    """PSNR of each frame, then the mean over frames (and over the batch).

    Averaging per-frame PSNR (rather than pooling the squared errors of the whole clip) is the
    convention of video-reconstruction papers; it weights every frame equally in dB.

    Args:
        x: estimated video(s).
        ref: reference video(s), same shape.
        data_range: span of valid values (> 0).
        reduce: return the mean (default) or the per-frame values.

    Returns:
        The mean PSNR (0-dim) or per-frame PSNRs ``(T,)`` / ``(B, T)``, float64.

    Raises:
        ValueError: shapes differ, not 3-D or 4-D, or a bad ``data_range``.
        TypeError: an input is not a tensor.

    Shape:
        - x, ref: ``(T, H, W)`` or ``(B, T, H, W)``
        - output: ``()`` if ``reduce`` else ``(T,)`` or ``(B, T)``
    """
    _check_pair(x, ref, 3, "video_psnr")
    if x.dim() > 4:
        raise ValueError(f"video_psnr takes (T, H, W) or (B, T, H, W); got shape "
                         f"{tuple(x.shape)}.")
    rng = _check_range(data_range)
    mse = (x.detach().double() - ref.detach().double()).square().mean(dim=(-2, -1))
    per_frame = 10.0 * torch.log10(rng**2 / mse)
    return per_frame.mean() if reduce else per_frame


def _gaussian_window(size: int, sigma: float, device: torch.device,
                     dtype: torch.dtype) -> Tensor:
    i = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-0.5 * (i / sigma) ** 2)
    return g / g.sum()


def ssim(
    x: Tensor,
    ref: Tensor,
    data_range: float = 1.0,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity (single scale, Gaussian window), averaged over the valid region.

    Follows Wang et al. (2004): local means, variances and covariance from an 11-tap Gaussian
    window (sigma 1.5) applied separably, stabilisers ``(k1 L)^2`` and ``(k2 L)^2`` with
    ``L = data_range``, and the mean of the SSIM map over positions where the window fits entirely
    (no padding). Leading dimensions are treated as separate grey images.

    Args:
        x: estimate.
        ref: reference, same shape.
        data_range: span of valid values (> 0).
        window_size: odd window length in pixels (>= 3), at most the image size.
        sigma: standard deviation of the Gaussian window in pixels (> 0).
        k1: luminance stabiliser.
        k2: contrast stabiliser.

    Returns:
        The mean SSIM as a 0-dim float64 tensor (1 for identical inputs).

    Raises:
        ValueError: shapes differ, fewer than 2 dimensions, an image smaller than the window,
            or bad parameters.
        TypeError: an input is not a tensor.

    Shape:
        - x, ref: ``(*, H, W)``
        - output: ``()``

    >>> img = torch.rand(32, 32)
    >>> round(float(ssim(img, img)), 6)
    1.0
    """
    _check_pair(x, ref, 2, "ssim")
    rng = _check_range(data_range)
    if window_size < 3 or window_size % 2 == 0:
        raise ValueError(f"window_size must be odd and >= 3; got {window_size}.")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; got {sigma}.")
    h, w = x.shape[-2:]
    if h < window_size or w < window_size:
        raise ValueError(f"Images of {h}x{w} are smaller than the {window_size}-pixel window.")
    a = x.detach().double().reshape(-1, 1, h, w)
    b = ref.detach().double().reshape(-1, 1, h, w)
    g = _gaussian_window(window_size, sigma, a.device, a.dtype)
    gx, gy = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(z, gx), gy)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean()
