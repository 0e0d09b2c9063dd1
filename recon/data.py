"""Synthetic scenes with exact ground truth for evaluating reconstructions.

Two pieces:

* :func:`dead_leaves` draws a procedural "dead leaves" image (:mod:`common.dead_leaves`, seeded
  with a torch generator): opaque discs of random grey level with a power-law radius
  distribution, stacked until the plane is covered. Such images share the properties of natural
  photographs that matter to deblurring (scale invariance, a roughly ``1/f^2`` power spectrum,
  sparse gradients with sharp occlusion edges) and need no download.
* :func:`linear_motion_clip` moves a still image at constant velocity during one coded exposure and
  renders both the coded frame and the ground-truth chip frames. It is an independent "truth"
  renderer: it shifts the image itself, sub-step by sub-step, and shares no code with the
  deconvolution in :mod:`recon.classical`.

Time and brightness conventions (shared with ``recon.classical``): the exposure spans
``t in [0, 1]``; the scene moves by ``velocity_px = (dx, dy)`` pixels over the whole exposure, and
at time ``t`` the camera sees the image shifted by ``(t - 1/2) * velocity_px``, so the mid-exposure
view is the unshifted image. Chip ``k`` of a K-chip code covers ``[k/K, (k+1)/K]``; its ground-truth
frame is the view averaged over that interval. The coded frame is
``y = sum_k c_k v_k / sum_k c_k`` (a static scene reproduces itself), plus optional Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from common import dead_leaves as texture
from recon.functional import CodeLike, code_bits

__all__ = ["MotionClip", "dead_leaves", "linear_motion_clip", "shift_bilinear"]


def dead_leaves(
    h: int,
    w: int,
    *,
    seed: int,
    r_min: float = 2.0,
    r_max: float | None = None,
    alpha: float = 3.0,
    max_leaves: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Procedural dead-leaves image in ``[0, 1]`` (:func:`common.dead_leaves.dead_leaves`).

    Opaque discs of random grey level with a power-law radius distribution, stacked with exact
    occlusion until the plane is covered; the draws come from a private torch generator seeded
    with ``seed``, so a seed gives the same image as it always has, on every device.

    Args:
        h: image height in pixels (>= 1).
        w: image width in pixels (>= 1).
        seed: seed of the private random generator (same seed, same image on every device).
        r_min: smallest disc radius in pixels (> 0).
        r_max: largest disc radius in pixels (default ``max(h, w) / 4``); must exceed ``r_min``.
        alpha: exponent of the radius distribution (> 1).
        max_leaves: cap on the number of discs (default ``40 * h * w / r_min**2``, enough to cover
            the plane for the defaults).
        dtype: floating dtype of the result.
        device: device of the result (default CPU); drawing itself runs on the CPU.

    Returns:
        The image, values in ``[0, 1]``.

    Raises:
        ValueError: a non-positive size, ``r_min <= 0``, ``r_max <= r_min`` or ``alpha <= 1``.

    Shape:
        - output: ``(H, W)``

    >>> img = dead_leaves(32, 48, seed=0)
    >>> tuple(img.shape), bool(img.min() >= 0), bool(img.max() <= 1)
    ((32, 48), True, True)
    """
    gen = torch.Generator().manual_seed(int(seed))

    def uniform(shape: tuple[int, ...]) -> np.ndarray:
        return torch.rand(shape, generator=gen, dtype=torch.float64).numpy()

    img = texture.dead_leaves(h, w, uniform, r_min=r_min, r_max=r_max, alpha=alpha,
                              max_leaves=max_leaves)
    return torch.from_numpy(img).to(dtype=dtype, device=device)


def shift_bilinear(image: Tensor, shift_xy: tuple[float, float], top_left: tuple[int, int],
                   out_hw: tuple[int, int]) -> Tensor:
    """Crop a window of an image translated by a sub-pixel shift, with bilinear interpolation.

    Output pixel ``(i, j)`` takes the image value at ``(top + i - sy, left + j - sx)``: the content
    moves by ``(sx, sy)``. Bilinear interpolation is exact for integer shifts and low-pass for
    fractional ones (at worst a 2-tap average); the window must stay inside the image (no
    wrap-around, no padding), which the caller guarantees by cropping the valid centre.

    Args:
        image: the (larger) source image.
        shift_xy: ``(sx, sy)`` translation of the content in pixels.
        top_left: ``(top, left)`` of the window in the unshifted image.
        out_hw: ``(H, W)`` of the window.

    Returns:
        The shifted window.

    Raises:
        ValueError: the shifted window reaches outside the image.

    Shape:
        - image: ``(..., H0, W0)``
        - output: ``(..., H, W)``
    """
    sx, sy = float(shift_xy[0]), float(shift_xy[1])
    top, left = top_left
    hh, ww = out_hw
    fy, fx = top - sy, left - sx
    iy, ix = math.floor(fy), math.floor(fx)
    ay, ax = fy - iy, fx - ix
    h0, w0 = image.shape[-2:]
    if iy < 0 or ix < 0 or iy + hh + 1 > h0 or ix + ww + 1 > w0:
        raise ValueError(
            f"A shift of ({sx:.3g}, {sy:.3g}) px moves the {hh}x{ww} window at {top_left} outside "
            f"the {h0}x{w0} image; use a larger image or a smaller output."
        )

    def win(dy: int, dx: int) -> Tensor:
        return image[..., iy + dy: iy + dy + hh, ix + dx: ix + dx + ww]

    return ((1 - ay) * ((1 - ax) * win(0, 0) + ax * win(0, 1))
            + ay * ((1 - ax) * win(1, 0) + ax * win(1, 1)))


@dataclass(frozen=True)
class MotionClip:
    """One coded exposure of a linearly moving scene, with its ground truth.

    Attributes:
        blurred: the coded frame ``sum_k c_k v_k / sum_k c_k`` plus noise, ``(H, W)``.
        chip_frames: ground truth, the view averaged over each chip, ``(K, H, W)`` (noise free).
        sharp: the instantaneous mid-exposure view (``t = 1/2``), ``(H, W)`` (noise free).
        velocity_px: ``(dx, dy)``, motion in pixels over the whole exposure.
        code: the binary code, K chips.
        sub_steps: time samples per chip used to integrate the motion.
        noise_sigma: standard deviation of the added Gaussian noise.
    """

    blurred: Tensor
    chip_frames: Tensor
    sharp: Tensor
    velocity_px: tuple[float, float]
    code: tuple[int, ...]
    sub_steps: int
    noise_sigma: float


def linear_motion_clip(
    image: Tensor,
    code: CodeLike,
    *,
    velocity_px: tuple[float, float],
    sub_steps: int = 4,
    out_hw: tuple[int, int] | None = None,
    noise_sigma: float = 0.0,
    seed: int = 0,
) -> MotionClip:
    """Render a coded exposure of an image translating at constant velocity.

    The exposure is split into ``K * sub_steps`` equal time bins; bin ``j`` is represented by its
    centre time ``t_j = (j + 1/2) / (K S)``, where the view is the centre window of ``image``
    shifted by ``(t_j - 1/2) * velocity_px`` (bilinear interpolation, see :func:`shift_bilinear`).
    Chip frames average the S views of each chip; the coded frame is the code-weighted mean of the
    chip frames, normalised by the number of open chips. The window is the centre of the image,
    cropped so that no shifted view reaches outside it (no wrap-around, no padding).

    Args:
        image: the still scene, larger than the output by at least the motion.
        code: binary code of K chips (``'11100101'``, a sequence or tensor of 0/1).
        velocity_px: ``(dx, dy)`` displacement in pixels over the whole exposure.
        sub_steps: S, time samples per chip (>= 1); use >= 4 for motion of several px per chip.
        out_hw: output size ``(H, W)``; default: the largest centred window that stays valid.
        noise_sigma: standard deviation of additive Gaussian noise on the ``[0, 1]`` scale.
        seed: seed of the noise generator.

    Returns:
        The clip: coded frame, chip frames, mid-exposure view and the parameters.

    Raises:
        ValueError: malformed code or image, no open chip, bad ``sub_steps`` or ``noise_sigma``,
            or an ``out_hw`` too large for the image and the motion.

    Shape:
        - image: ``(H0, W0)``
        - blurred, sharp: ``(H, W)``
        - chip_frames: ``(K, H, W)``

    >>> clip = linear_motion_clip(torch.rand(40, 40), "1101", velocity_px=(8.0, 0.0))
    >>> tuple(clip.chip_frames.shape), tuple(clip.blurred.shape)
    ((4, 38, 30), (38, 30))
    """
    if image.dim() != 2 or not image.is_floating_point():
        raise ValueError(f"image must be a floating-point (H0, W0) tensor; got {image.dtype} "
                         f"with shape {tuple(image.shape)}.")
    bits = code_bits(code)
    k = bits.numel()
    if int(bits.sum()) == 0:
        raise ValueError("The code has no open chip, so the exposure records nothing.")
    if isinstance(sub_steps, bool) or not isinstance(sub_steps, int) or sub_steps < 1:
        raise ValueError(f"sub_steps must be a positive integer; got {sub_steps!r}.")
    if not (noise_sigma >= 0 and math.isfinite(noise_sigma)):
        raise ValueError(f"noise_sigma must be a finite number >= 0; got {noise_sigma!r}.")
    dx, dy = float(velocity_px[0]), float(velocity_px[1])
    top, left, hh, ww = _output_window(image.shape, (dx, dy), out_hw)
    n = k * sub_steps
    views = torch.stack([
        shift_bilinear(image, (((j + 0.5) / n - 0.5) * dx, ((j + 0.5) / n - 0.5) * dy),
                       (top, left), (hh, ww))
        for j in range(n)
    ])
    chip_frames = views.view(k, sub_steps, hh, ww).mean(dim=1)
    c = bits.to(dtype=image.dtype, device=image.device)
    blurred = (c.view(k, 1, 1) * chip_frames).sum(dim=0) / c.sum()
    if noise_sigma > 0:
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(hh, ww, generator=gen, dtype=torch.float64)
        blurred = blurred + (noise_sigma * noise).to(dtype=image.dtype, device=image.device)
    sharp = image[top: top + hh, left: left + ww].clone()
    return MotionClip(
        blurred=blurred,
        chip_frames=chip_frames,
        sharp=sharp,
        velocity_px=(dx, dy),
        code=tuple(int(b) for b in bits.tolist()),
        sub_steps=sub_steps,
        noise_sigma=float(noise_sigma),
    )


def _output_window(image_hw: tuple[int, int], velocity_px: tuple[float, float],
                   out_hw: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """The centred output window ``(top, left, H, W)`` of :func:`linear_motion_clip`: ``out_hw``
    (default: the largest valid) with room for every shifted view.

    Raises:
        ValueError: ``out_hw`` too large for the image and the motion.
    """
    (h0, w0), (dx, dy) = image_hw, velocity_px
    # Shifts span [-|v|/2, +|v|/2]; bilinear needs one extra pixel on the far side.
    my, mx = math.ceil(abs(dy) / 2) + 1, math.ceil(abs(dx) / 2) + 1
    if out_hw is None:
        out_hw = (h0 - 2 * my, w0 - 2 * mx)
    hh, ww = int(out_hw[0]), int(out_hw[1])
    if hh < 1 or ww < 1 or hh + 2 * my > h0 or ww + 2 * mx > w0:
        raise ValueError(
            f"A {h0}x{w0} image cannot give a {hh}x{ww} output for a motion of ({dx:g}, {dy:g}) "
            f"px: it needs at least {hh + 2 * my}x{ww + 2 * mx}."
        )
    return (h0 - hh) // 2, (w0 - ww) // 2, hh, ww
