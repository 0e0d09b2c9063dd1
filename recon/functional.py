"""Pure tensor functions of the coded-exposure physics (no state, no nn.Module).

Conventions used across ``recon``:
    x: latent video, ``(B, T, H, W)``, T time samples (chips x sub-steps), in the units of the
        raw frame.
    y: coded measurement, ``(B, H, W)``.
    weights: per-sample weights ``(T,)`` for a global code, or per-pixel masks ``(T, H, W)``.
    The measurement is ``y = sum_t weights[t] * x[:, t]``; normalisation lives in the weights.

Time sampling: a code of K chips is integrated with S sub-steps per chip, so T = K * S and
sample ``t = k * S + s`` is sub-step ``s`` of chip ``k``. Each sub-step carries 1/S of its chip's
weight, so the chip-average of the samples, ``v_k = mean_s x[:, k * S + s]``, enters the
measurement with the chip's weight.

Normalisation (the ``normalize`` argument of :func:`code_weights` and :func:`mask_weights`):
    ``"open"``: divide by the number of open chips of the *nominal* binary code, so a static scene
        seen through an ideal code reproduces itself (the project default; see ``recon.operators``).
    ``"chips"``: divide by the number of chips K (BDINR's convention).
    ``"none"``: no division, ``y = sum_k c_k v_k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Normalize = Literal["open", "chips", "none"]
NORMALIZATIONS: tuple[str, ...] = ("open", "chips", "none")

CodeLike = str | Sequence[int] | Sequence[float] | np.ndarray | Tensor
ArrayLike = float | Sequence[float] | np.ndarray | Tensor


def _check_weights(weights: Tensor, t: int, h: int, w: int) -> None:
    if weights.dim() == 1:
        if weights.shape[0] != t:
            raise ValueError(
                f"Code weights have {weights.shape[0]} samples but the video has T={t}."
            )
    elif weights.dim() == 3:
        if tuple(weights.shape) != (t, h, w):
            raise ValueError(
                f"Per-pixel masks have shape {tuple(weights.shape)}; "
                f"expected (T, H, W) = {(t, h, w)}."
            )
    else:
        raise ValueError(f"weights must be (T,) or (T, H, W); got shape {tuple(weights.shape)}.")


def coded_sum(x: Tensor, weights: Tensor) -> Tensor:
    """Integrate a latent video through a code: ``y = sum_t weights[t] * x[:, t]``.

    Args:
        x: latent video (floating point).
        weights: global code weights or per-pixel masks (cast to ``x.dtype``).

    Returns:
        The coded measurement.

    Raises:
        ValueError: ``x`` is not 4-D, or ``weights`` do not match its T (and H, W for masks).

    Shape:
        - x: ``(B, T, H, W)``
        - weights: ``(T,)`` or ``(T, H, W)``
        - output: ``(B, H, W)``

    >>> coded_sum(torch.ones(1, 3, 2, 2), torch.tensor([0.5, 0.0, 0.5]))[0, 0, 0].item()
    1.0
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (B, T, H, W); got shape {tuple(x.shape)}.")
    _, t, h, w = x.shape
    _check_weights(weights, t, h, w)
    if weights.dim() == 1:
        return torch.einsum("bthw,t->bhw", x, weights.to(x.dtype))
    return (x * weights.to(x.dtype).unsqueeze(0)).sum(dim=1)


def coded_sum_adjoint(y: Tensor, weights: Tensor) -> Tensor:
    """Adjoint of :func:`coded_sum`: ``x[:, t] = weights[t] * y``.

    Args:
        y: coded measurement (floating point).
        weights: global code weights or per-pixel masks (cast to ``y.dtype``).

    Returns:
        The back-projected video.

    Raises:
        ValueError: ``y`` is not 3-D, or per-pixel ``weights`` do not match its H, W.

    Shape:
        - y: ``(B, H, W)``
        - weights: ``(T,)`` or ``(T, H, W)``
        - output: ``(B, T, H, W)``
    """
    if y.dim() != 3:
        raise ValueError(f"y must be (B, H, W); got shape {tuple(y.shape)}.")
    _, h, w = y.shape
    wt = weights.to(y.dtype)
    if wt.dim() == 1:
        return y.unsqueeze(1) * wt.view(1, -1, 1, 1)
    _check_weights(wt, wt.shape[0], h, w)
    return y.unsqueeze(1) * wt.unsqueeze(0)


# ---------------------------------------------------------------------------------------------
# Codes -> weights
# ---------------------------------------------------------------------------------------------


def _check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"normalize must be one of {NORMALIZATIONS}; got {normalize!r}. 'open' divides by the "
            "number of open chips (a static scene reproduces itself), 'chips' by the number of "
            "chips K (BDINR), 'none' keeps the plain sum over chips."
        )


def _check_sub_steps(sub_steps: int) -> None:
    if isinstance(sub_steps, bool) or not isinstance(sub_steps, int) or sub_steps < 1:
        raise ValueError(f"sub_steps must be a positive integer; got {sub_steps!r}.")


def _check_dtype(dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype; got {dtype!r}.")


def _to_float64(name: str, value: ArrayLike) -> Tensor:
    if isinstance(value, Tensor):
        out = value.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            out = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(
                f"{name} must be numeric (a number, sequence, ndarray or tensor)."
            ) from e
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return out


def _fraction_vector(name: str, value: ArrayLike, length: int, what: str) -> Tensor:
    """A finite (length,) float64 CPU tensor in [0, 1]; a scalar is broadcast."""
    out = _to_float64(name, value)
    if out.dim() == 0:
        out = out.expand(length).clone()
    if tuple(out.shape) != (length,):
        raise ValueError(
            f"{name} must be a scalar or have shape ({length},) ({what}); "
            f"got shape {tuple(out.shape)}."
        )
    if bool((out < 0).any()) or bool((out > 1).any()):
        raise ValueError(
            f"{name} must lie in [0, 1] (a transmittance); got values in "
            f"[{out.min().item():.4g}, {out.max().item():.4g}]. Clip measurement noise first."
        )
    return out


def code_bits(bits: CodeLike) -> Tensor:
    """Parse a binary code into a 1-D int64 CPU tensor of 0/1.

    Args:
        bits: chip states (1 = open): a ``'0'/'1'`` string (spaces and underscores ignored), a
            sequence, ndarray or tensor of 0/1 (bool accepted).

    Returns:
        The code as an int64 tensor.

    Raises:
        ValueError: empty, not 1-D, or values other than 0 and 1.

    Shape:
        - output: ``(K,)``

    >>> code_bits("1110 0101").tolist()
    [1, 1, 1, 0, 0, 1, 0, 1]
    """
    if isinstance(bits, str):
        text = bits.replace(" ", "").replace("_", "")
        bad = sorted(set(text) - {"0", "1"})
        if bad:
            raise ValueError(
                f"Code {bits!r} contains {bad!r}; write a code with the characters 0 and 1 only, "
                "e.g. '11100101'."
            )
        values = torch.tensor([int(c) for c in text], dtype=torch.float64)
    else:
        values = _to_float64("bits", bits)
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(
            f"A code must be a non-empty 1-D sequence (K,); got shape {tuple(values.shape)}."
        )
    if not bool(((values == 0) | (values == 1)).all()):
        raise ValueError(
            "Code chips must be 0 (closed) or 1 (open); for measured, non-binary chip "
            "transmittances pass the binary code plus transmittance= / leakage=."
        )
    return values.to(torch.int64)


def code_weights(
    bits: CodeLike,
    *,
    sub_steps: int = 1,
    transmittance: ArrayLike | None = None,
    leakage: ArrayLike = 0.0,
    sub_profile: ArrayLike | None = None,
    normalize: Normalize = "open",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Per-sample weights of a global (same for every pixel) code, with sub-chip integration.

    The nominal code ``c`` (K chips of 0/1) may be replaced by a measured *effective* code:
    open chip k passes ``transmittance[k]`` (default 1), closed chip k passes ``leakage[k]``
    (default 0). A measured per-sub-step transmittance ``sub_profile`` (e.g. the rise and fall of
    an LC shutter, trigger latency folded in) overrides both. Sample ``t = k * S + s`` gets
    ``e_t / (S * n)``, where ``e_t`` is the effective transmittance and ``n`` the normaliser.

    The normaliser is always computed from the *nominal* binary code (number of open chips for
    ``"open"``, K for ``"chips"``, 1 for ``"none"``), never from the effective code: an effective
    code that loses light (transmittance < 1) therefore gives a dimmer measurement, exactly as the
    camera sees it, instead of being silently renormalised.

    Args:
        bits: nominal binary code, K chips (see :func:`code_bits`).
        sub_steps: S, number of time samples per chip (>= 1).
        transmittance: per-chip transmittance of open chips in [0, 1], scalar or ``(K,)``; entries
            of closed chips are ignored. ``None`` means 1.
        leakage: transmittance of closed chips in [0, 1], scalar or ``(K,)``; entries of open chips
            are ignored.
        sub_profile: measured transmittance of each sub-step in [0, 1], ``(K * S,)``. When given,
            ``transmittance`` and ``leakage`` are ignored.
        normalize: ``"open"``, ``"chips"`` or ``"none"`` (see the module docstring).
        dtype: floating dtype of the result.
        device: device of the result (default CPU).

    Returns:
        The weights ``w`` such that ``y = sum_t w[t] x[:, t]``.

    Raises:
        ValueError: malformed code, wrong lengths, values outside [0, 1], bad ``sub_steps`` or
            ``normalize``, or ``normalize="open"`` with a code that has no open chip.

    Shape:
        - output: ``(K * S,)``

    >>> (code_weights("1101", sub_steps=2, dtype=torch.float64) * 6).tolist()
    [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    """
    _check_sub_steps(sub_steps)
    _check_normalize(normalize)
    _check_dtype(dtype)
    c = code_bits(bits)
    k = c.numel()
    if sub_profile is not None:
        e = _fraction_vector("sub_profile", sub_profile, k * sub_steps, "K * sub_steps samples")
    else:
        open_t = (
            torch.ones(k, dtype=torch.float64)
            if transmittance is None
            else _fraction_vector("transmittance", transmittance, k, "one value per chip")
        )
        leak = _fraction_vector("leakage", leakage, k, "one value per chip")
        e = torch.where(c == 1, open_t, leak).repeat_interleave(sub_steps)
    if normalize == "open":
        n_open = int(c.sum())
        if n_open == 0:
            raise ValueError(
                "The code has no open chip, so normalize='open' is undefined; "
                "use normalize='chips' or 'none', or a code with at least one 1."
            )
        norm = float(n_open)
    elif normalize == "chips":
        norm = float(k)
    else:
        norm = 1.0
    return (e / (sub_steps * norm)).to(dtype=dtype, device=device)


def mask_weights(
    masks: np.ndarray | Tensor,
    sub_steps: int = 1,
    normalize: Normalize = "open",
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Per-sample, per-pixel weights of masks (DMD coding), with sub-chip integration.

    ``weights[k * S + s, i, j] = M[k, i, j] / (S * n[i, j])``. For ``"open"`` the normaliser
    ``n[i, j]`` is the number of chips in which pixel (i, j) is open (the sum of its
    transmittances, for masks warped from the DMD onto the sensor); a pixel that is never open
    measures nothing, its weights are all zero, and its normaliser is taken as 1 rather than
    raising (random masks leave such pixels by chance: 1 in 256 for K = 8 at 50 % fill).
    ``"chips"`` divides by K, ``"none"`` by 1.

    Args:
        masks: binary masks (0/1 or bool), ``M[k, i, j] = 1`` where pixel (i, j) is open in chip k,
            or transmittances in [0, 1] (a DMD mask seen through the relay optics).
        sub_steps: S, number of time samples per chip (>= 1).
        normalize: ``"open"``, ``"chips"`` or ``"none"``.
        dtype: floating dtype of the result.
        device: device of the result (default: the masks' device, CPU for an ndarray).

    Returns:
        The per-pixel weights.

    Raises:
        ValueError: masks not 3-D, empty, or outside [0, 1]; bad ``sub_steps`` or ``normalize``.

    Shape:
        - masks: ``(K, H, W)``
        - output: ``(K * S, H, W)``
    """
    _check_sub_steps(sub_steps)
    _check_normalize(normalize)
    _check_dtype(dtype)
    m = masks.detach() if isinstance(masks, Tensor) else torch.as_tensor(np.asarray(masks))
    if device is None:
        device = m.device
    m = m.to(torch.float64)
    if m.dim() != 3 or m.numel() == 0:
        raise ValueError(f"masks must be a non-empty (K, H, W) array; got shape {tuple(m.shape)}.")
    if not bool(((m >= 0) & (m <= 1)).all()):
        raise ValueError("masks must be binary (0 = closed, 1 = open) or transmittances in [0, 1].")
    k = m.shape[0]
    if normalize == "open":
        total = m.sum(dim=0)
        norm = torch.where(total > 0, total, torch.ones_like(total))
    elif normalize == "chips":
        norm = torch.full_like(m[0], float(k))
    else:
        norm = torch.ones_like(m[0])
    w = (m / (sub_steps * norm)).repeat_interleave(sub_steps, dim=0)
    return w.to(dtype=dtype, device=device)


def code_to_psf_1d(weights: Tensor, length_px: float) -> Tensor:
    """1-D motion PSF of a global code for constant velocity over the whole exposure.

    The scene moves by ``length_px`` pixels (in +x) between the start and the end of the
    exposure. Sample t covers positions ``[t * L / T, (t + 1) * L / T]`` and spreads its weight
    uniformly over them; ``psf[p]`` is the weight that falls in pixel ``[p, p + 1)``. The
    integration is exact (no point sampling), so the PSF sums to ``weights.sum()`` and with
    ``length_px == T`` it equals ``weights``.

    The blurred 1-D signal is the full convolution of the scene *at the start of the exposure*
    with the PSF, ``y[n] = sum_p psf[p] * x0[n - p]``; for motion in -x, flip the PSF.
    ``length_px == 0`` gives a single tap holding the total weight.

    Args:
        weights: per-sample weights of a global code (from :func:`code_weights`); differentiable.
        length_px: blur length in pixels over the whole exposure (>= 0).

    Returns:
        The PSF, same dtype and device as ``weights``.

    Raises:
        ValueError: ``weights`` not 1-D or empty, or ``length_px`` negative or not finite.

    Shape:
        - weights: ``(T,)``
        - output: ``(max(1, ceil(length_px)),)``

    >>> code_to_psf_1d(torch.tensor([1.0, 0.0, 1.0]), 1.5).tolist()
    [1.0, 1.0]
    """
    if weights.dim() != 1 or weights.numel() == 0:
        raise ValueError(
            f"weights must be a non-empty (T,) global code; got shape "
            f"{tuple(weights.shape)} (per-pixel masks have no single PSF)."
        )
    length = float(length_px)
    if not math.isfinite(length) or length < 0:
        raise ValueError(f"length_px must be a finite number >= 0; got {length_px!r}.")
    t = weights.numel()
    if length == 0:
        return weights.sum().reshape(1)
    n = max(1, math.ceil(length))
    # Cumulative weight as a piecewise-linear function of position, evaluated at pixel edges.
    edges = torch.arange(n + 1, dtype=torch.float64, device=weights.device).clamp_max(length)
    q = edges * (t / length)  # position in units of samples, in [0, T]
    idx = q.floor().clamp(0, t - 1)
    frac = (q - idx).to(weights.dtype)
    idx = idx.to(torch.int64)
    cum = torch.cat([weights.new_zeros(1), weights.cumsum(0)])
    f = cum[idx] + frac * weights[idx]
    f = torch.cat([f[:-1], cum[-1:]])  # the last edge holds exactly the total weight
    return f[1:] - f[:-1]
