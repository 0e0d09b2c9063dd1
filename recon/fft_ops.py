"""FFT building blocks of the classical solvers: checks, padding, OTFs, gradients and cropping.

The deconvolutions of :mod:`recon.psf_deconv`, the velocity search of :mod:`recon.velocity`, the
per-pixel solvers of :mod:`recon.gap` and the pipeline of :mod:`recon.classical` share these
pieces: the check of an image batch at the boundary, reflect and taper padding to fast FFT sizes
(and the crop back), the OTF of a centred kernel on a periodic grid, periodic forward differences
and their power spectrum, the observed-window mask of an extended domain and the robust range of
an image.

Conventions: images are ``(H, W)`` or ``(B, H, W)``; a padding is ``(top, bottom, left, right)``
in pixels (:data:`Pads`); spectra use the ``rfft2`` layout ``(..., Hp, Wp // 2 + 1)``; results
follow the input's device and floating dtype.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "Pads",
    "as_batch",
    "check_positive",
    "crop",
    "fast_len",
    "fft_pads",
    "grad",
    "grad_adjoint",
    "grad_power",
    "otf",
    "pad_reflect",
    "padded_hw",
    "robust_range",
    "tapered",
    "window_mask",
]

#: ``(top, bottom, left, right)`` padding in pixels.
Pads = tuple[int, int, int, int]


# ---------------------------------------------------------------------------------------------
# Checks at the boundary
# ---------------------------------------------------------------------------------------------


def as_batch(y: Tensor, name: str = "y") -> tuple[Tensor, bool]:
    """An image or a batch of images as a batch, and whether a batch axis was added.

    Args:
        y: a floating-point image or batch of images.
        name: the argument's name, for the error message.

    Returns:
        ``(batch, added)``: ``added`` is true when ``y`` was one image (squeeze the result back).

    Raises:
        ValueError: ``y`` is not a floating-point tensor of 2 or 3 dimensions.

    Shape:
        - y: ``(H, W)`` or ``(B, H, W)``
        - batch: ``(B, H, W)`` (``B = 1`` for one image)

    >>> b, added = as_batch(torch.zeros(4, 5))
    >>> tuple(b.shape), added
    ((1, 4, 5), True)
    """
    if not isinstance(y, Tensor) or not y.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor.")
    if y.dim() == 2:
        return y.unsqueeze(0), True
    if y.dim() == 3:
        return y, False
    raise ValueError(f"{name} must be (H, W) or (B, H, W); got shape {tuple(y.shape)}.")


def check_positive(name: str, value: float) -> float:
    """``value`` as a float, checked to be finite and > 0.

    Raises:
        ValueError: ``value`` is not a finite number > 0 (the message names ``name``).

    >>> check_positive("nsr", 1)
    1.0
    """
    value = float(value)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return value


# ---------------------------------------------------------------------------------------------
# Padding and cropping
# ---------------------------------------------------------------------------------------------


def pad_reflect(y: Tensor, m: int) -> Tensor:
    """Pad by ``m`` pixels on every side: mirror first, then repeat the edge if ``m`` is larger
    than the image allows a mirror.

    Shape:
        - y: ``(B, H, W)``
        - output: ``(B, H + 2m, W + 2m)`` (``y`` itself when ``m <= 0``)
    """
    if m <= 0:
        return y
    h, w = y.shape[-2:]
    r = min(m, h - 1, w - 1)
    out = F.pad(y.unsqueeze(1), (r, r, r, r), mode="reflect") if r > 0 else y.unsqueeze(1)
    if m > r:
        out = F.pad(out, (m - r,) * 4, mode="replicate")
    return out.squeeze(1)


def fast_len(n: int) -> int:
    """Smallest integer >= ``n`` whose prime factors are 2, 3 and 5 (fast FFT sizes).

    >>> fast_len(97), fast_len(128)
    (100, 128)
    """
    return min(p for p in (2**i * 3**j * 5**k for i in range(16) for j in range(10)
                           for k in range(7)) if p >= n)


def fft_pads(h: int, w: int, psf: Tensor, margin: int | None) -> Pads:
    """Padding of an ``h x w`` image for a deconvolution with ``psf``.

    At least ``margin`` pixels on each side (default: the PSF size), and at least half the PSF;
    the padded sides are fast FFT lengths (:func:`fast_len`), the image centred in them.

    Shape:
        - psf: ``(..., kh, kw)``

    >>> fft_pads(90, 100, torch.ones(5, 5), None)
    (5, 5, 10, 10)
    """
    k = max(psf.shape[-2:])
    m = max(k if margin is None else int(margin), (k + 1) // 2)
    hp, wp = fast_len(h + 2 * m), fast_len(w + 2 * m)
    top, left = (hp - h) // 2, (wp - w) // 2
    return top, hp - h - top, left, wp - w - left


def padded_hw(y: Tensor, pads: Pads) -> tuple[int, int]:
    """Height and width of ``y (..., H, W)`` once padded by ``pads``."""
    return y.shape[-2] + pads[0] + pads[1], y.shape[-1] + pads[2] + pads[3]


def tapered(y: Tensor, pads: Pads) -> Tensor:
    """Mirror ``y`` into the padding, then fade the band to the mean (periodic, no jumps).

    Shape:
        - y: ``(B, H, W)``
        - output: ``(B, H + top + bottom, W + left + right)``
    """
    top, bottom, left, right = pads
    m = max(pads)
    big = pad_reflect(y, m)[..., m - top: m + y.shape[-2] + bottom,
                               m - left: m + y.shape[-1] + right]

    def ramp(n: int, a: int, b: int) -> Tensor:
        i = torch.arange(n, device=y.device, dtype=y.dtype)
        d = torch.minimum(((i + 0.5) / max(a, 1)), ((n - i - 0.5) / max(b, 1))).clamp(max=1.0)
        return 0.5 - 0.5 * torch.cos(math.pi * d)

    win = ramp(big.shape[-2], top, bottom).unsqueeze(1) * ramp(big.shape[-1], left, right)
    mean = y.mean(dim=(-2, -1), keepdim=True)
    return mean + win * (big - mean)


def crop(x: Tensor, pads: Pads) -> Tensor:
    """Remove the padding ``pads`` (the inverse of padding by it).

    Shape:
        - x: ``(..., Hp, Wp)``
        - output: ``(..., Hp - top - bottom, Wp - left - right)``
    """
    top, bottom, left, right = pads
    return x[..., top: x.shape[-2] - bottom, left: x.shape[-1] - right]


def window_mask(y: Tensor, pads: Pads, saturated: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The observed-window mask and ``y`` zero-padded, both on the padded grid.

    ``saturated`` pixels are left out of the mask (clipped: not a measurement of the blur).

    Shape:
        - y: ``(B, H, W)``; saturated: ``(H, W)`` bool
        - mask: ``(Hp, Wp)``; padded ``y``: ``(B, Hp, Wp)``
    """
    hw = padded_hw(y, pads)
    mask = torch.zeros(hw, device=y.device, dtype=y.dtype)
    mask[pads[0]: hw[0] - pads[1], pads[2]: hw[1] - pads[3]] = 1.0
    if saturated is not None:
        mask[pads[0]: hw[0] - pads[1], pads[2]: hw[1] - pads[3]] *= (~saturated).to(y.dtype)
    return mask, F.pad(y, (pads[2], pads[3], pads[0], pads[1]))


# ---------------------------------------------------------------------------------------------
# Periodic operators
# ---------------------------------------------------------------------------------------------


def otf(psf: Tensor, hw: tuple[int, int]) -> Tensor:
    """Real FFT of a centred kernel embedded in an ``hw`` periodic grid.

    Raises:
        ValueError: the kernel is larger than the grid.

    Shape:
        - psf: ``(B, kh, kw)`` (or ``(1, kh, kw)``)
        - output: ``(B, Hp, Wp // 2 + 1)`` complex, ``hw = (Hp, Wp)``
    """
    kh, kw = psf.shape[-2:]
    hp, wp = hw
    if kh > hp or kw > wp:
        raise ValueError(f"PSF of {kh}x{kw} does not fit a {hp}x{wp} image; pad the image.")
    big = psf.new_zeros(*psf.shape[:-2], hp, wp)
    big[..., :kh, :kw] = psf
    big = torch.roll(big, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.rfft2(big)


def grad_power(hw: tuple[int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
    """``|G|^2`` of the periodic forward differences (:func:`grad`) on an ``hw`` grid.

    Shape:
        - output: ``(Hp, Wp // 2 + 1)``, ``hw = (Hp, Wp)``
    """
    hp, wp = hw
    fy = torch.fft.fftfreq(hp, device=device, dtype=dtype).unsqueeze(1)
    fx = torch.fft.rfftfreq(wp, device=device, dtype=dtype).unsqueeze(0)
    return (4 * torch.sin(math.pi * fy) ** 2) + (4 * torch.sin(math.pi * fx) ** 2)


def grad(x: Tensor) -> Tensor:
    """Periodic forward differences along x, then y.

    Shape:
        - x: ``(..., H, W)``
        - output: ``(..., 2, H, W)``
    """
    return torch.stack([torch.roll(x, -1, dims=-1) - x, torch.roll(x, -1, dims=-2) - x], dim=-3)


def grad_adjoint(g: Tensor) -> Tensor:
    """Adjoint of :func:`grad` (minus the periodic divergence).

    Shape:
        - g: ``(..., 2, H, W)``
        - output: ``(..., H, W)``
    """
    gx, gy = g.unbind(dim=-3)
    return (torch.roll(gx, 1, dims=-1) - gx) + (torch.roll(gy, 1, dims=-2) - gy)


def robust_range(y: Tensor) -> Tensor:
    """Spread (1st to 99th percentile) of each image, at least ``1e-6`` of its peak magnitude.

    Shape:
        - y: ``(B, H, W)``
        - output: ``(B, 1, 1)``
    """
    flat = y.detach().flatten(1).float()
    flat = flat[:, :: flat.shape[1] // 65536 + 1]
    q = torch.quantile(flat, torch.tensor([0.01, 0.99], device=flat.device), dim=1)
    floor = 1e-6 * flat.abs().amax(dim=1).clamp(min=1.0)
    return torch.maximum(q[1] - q[0], floor).clamp(min=1e-12).to(y.dtype).view(-1, 1, 1)
