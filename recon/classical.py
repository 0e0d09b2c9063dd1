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

Layout: this module holds :func:`render_frames` and :func:`reconstruct_global`; the PSF and the
deconvolutions live in :mod:`recon.psf_deconv`, the velocity search in :mod:`recon.velocity` and
GAP-TV in :mod:`recon.gap`, the FFT pieces (padding, OTFs) in :mod:`recon.fft_ops`. The
deconvolutions, the velocity search and GAP-TV are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from recon.fft_ops import as_batch, crop, fft_pads, otf, pad_reflect, robust_range
from recon.functional import CodeLike
from recon.gap import admm_tv, gap_tv
from recon.psf_deconv import (
    Velocity,
    check_saturated,
    check_velocity,
    motion_psf,
    psf_radius,
    time_weights,
    tv_deconvolve,
    tv_deconvolve_padded,
    wiener_deconvolve,
    wiener_deconvolve_padded,
)
from recon.velocity import Spectrum, VelocityEstimate, estimate_velocity

__all__ = [
    "ClassicalResult",
    "VelocityEstimate",
    "estimate_velocity",
    "admm_tv",
    "gap_tv",
    "motion_psf",
    "reconstruct_global",
    "render_frames",
    "tv_deconvolve",
    "wiener_deconvolve",
]


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
    r = max(psf_radius(velocity, win) for win in windows)
    one = torch.ones(1, dtype=torch.float64)
    kernels = torch.stack([motion_psf(one, velocity, t_range=win, radius=r, dtype=x.dtype,
                                      device=x.device) for win in windows])
    hw = (x.shape[-2], x.shape[-1])
    return torch.fft.irfft2(torch.fft.rfft2(x).unsqueeze(1) * otf(kernels, hw), s=hw)


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
    xb, squeeze = as_batch(sharp, "sharp")
    v = check_velocity(velocity_px)
    windows = _frame_windows(n_frames, times, frame_exposure)
    m = max(psf_radius(v, win) for win in windows) + 1
    pads = (m, m, m, m)
    frames = crop(_render_ext(pad_reflect(xb, m), v, windows), pads)
    return frames[0] if squeeze else frames


def reconstruct_global(
    y: Tensor,
    bits: CodeLike,
    *,
    n_frames: int | None = None,
    times: Sequence[float] | Tensor | None = None,
    frame_exposure: float | None = None,
    sub_steps: int = 1,
    weights: Tensor | None = None,
    velocity: Sequence[float] | None = None,
    max_px: float | None = None,
    method: Literal["wiener", "tv"] = "tv",
    noise_sigma: float | None = None,
    iters: int | None = None,
    saturated: Tensor | None = None,
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
        times: explicit frame times in ``[0, 1]`` instead of ``n_frames`` (instantaneous unless
            ``frame_exposure`` is set).
        frame_exposure: exposure of each frame as a fraction of the whole exposure.
        sub_steps: S of ``weights``.
        weights: measured per-sub-step code weights ``(K * S,)``; default the ideal code.
        velocity: ``(dx, dy)`` in pixels over the exposure, or ``None`` to estimate it.
        max_px: search bound of the estimate (default: half the smaller side, at most 127).
        method: ``"tv"`` (default, sharper) or ``"wiener"`` (faster).
        noise_sigma: noise standard deviation in the units of ``y``; ``None`` to fit it.
        iters: solver iterations (default 150 ADMM for TV, 100 CG for Wiener).
        saturated: bool ``(H, W)`` mask of clipped pixels: no weight in the data term (TV also
            keeps their re-blurred value at or above the clipped one).

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
    windows = _frame_windows(n_frames, times, frame_exposure)
    w = time_weights(bits, sub_steps, weights)
    v, score = _velocity_of(y, bits, velocity, max_px, sub_steps, weights, noise_sigma)
    psf = motion_psf(w, v, dtype=y.dtype, device=y.device).unsqueeze(0)
    h, wd = y.shape
    spec = Spectrum(y[max(0, h // 2 - 128): h // 2 + 128, max(0, wd // 2 - 128): wd // 2 + 128],
                    noise_sigma)
    _, a_fit, s2_fit, g_fit = spec.fit(otf(psf, spec.hw).abs().square())
    sigma = math.sqrt(float(s2_fit[0])) if noise_sigma is None else float(noise_sigma)
    sigma = max(sigma, 1e-4 * float(robust_range(y.unsqueeze(0))))
    pads = fft_pads(h, wd, psf, None)  # >= the PSF size: enough for the deconvolution and renders
    sat = check_saturated(saturated, y.unsqueeze(0))
    if method == "tv":
        x = tv_deconvolve_padded(y.unsqueeze(0), psf, sigma / 10, iters or 150, pads, 0.03, sat)
    else:
        nsr = 3 * sigma**2 / max(spec.grad_energy(float(a_fit[0]), float(g_fit[0])), 1e-30)
        x = wiener_deconvolve_padded(y.unsqueeze(0), psf, nsr, "solve", iters or 100, pads, sat)
    return ClassicalResult(frames=crop(_render_ext(x, v, windows), pads)[0],
                           sharp=crop(x, pads)[0], velocity=v, velocity_estimated=velocity is None,
                           score=score, noise_sigma=sigma)


def _velocity_of(y: Tensor, bits: CodeLike, velocity: Sequence[float] | None,
                 max_px: float | None, sub_steps: int, weights: Tensor | None,
                 noise_sigma: float | None) -> tuple[Velocity, float | None]:
    """The velocity of :func:`reconstruct_global`: ``velocity`` checked, or estimated
    (:func:`estimate_velocity`, bound ``max_px`` or half the smaller side up to 256), with the
    estimate's direction margin (``None`` when given)."""
    if velocity is not None:
        return check_velocity(velocity), None
    bound = max_px if max_px is not None else min(min(y.shape), 256) / 2 - 1
    est = estimate_velocity(y, bits, max_px=bound, sub_steps=sub_steps, weights=weights,
                            noise_sigma=noise_sigma)
    return est.velocity, est.direction_margin
