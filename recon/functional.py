"""Pure tensor functions of the coded-exposure physics (no state, no nn.Module).

Conventions used across ``recon``:
    x: latent video, ``(B, T, H, W)``, T time samples (chips x sub-steps), in the units of the raw frame.
    y: coded measurement, ``(B, H, W)``.
    weights: per-sample weights ``(T,)`` for a global code, or per-pixel masks ``(T, H, W)``.
    The measurement is ``y = sum_t weights[t] * x[:, t]``; normalisation lives in the weights.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_weights(weights: Tensor, t: int, h: int, w: int) -> None:
    if weights.dim() == 1:
        if weights.shape[0] != t:
            raise ValueError(f"Code weights have {weights.shape[0]} samples but the video has T={t}.")
    elif weights.dim() == 3:
        if tuple(weights.shape) != (t, h, w):
            raise ValueError(
                f"Per-pixel masks have shape {tuple(weights.shape)}; expected (T, H, W) = {(t, h, w)}."
            )
    else:
        raise ValueError(f"weights must be (T,) or (T, H, W); got shape {tuple(weights.shape)}.")


def coded_sum(x: Tensor, weights: Tensor) -> Tensor:
    """Integrate a latent video through a code: ``y = sum_t weights[t] * x[:, t]``.

    Args:
        x: latent video.
        weights: global code weights or per-pixel masks.

    Returns:
        The coded measurement.

    Shape:
        - x: ``(B, T, H, W)``
        - weights: ``(T,)`` or ``(T, H, W)``
        - output: ``(B, H, W)``
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
