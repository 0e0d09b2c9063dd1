"""GAP-TV and ADMM-TV reconstruction of per-pixel coded video (DMD masks).

Holds :func:`gap_tv` (generalized alternating projection with a spatio-temporal TV prior),
:func:`admm_tv` (the plug-and-play ADMM with the same prior) and their private TV denoiser
(Chambolle's dual projection with Neumann-border 3-D gradients). Both exploit that ``A A^T`` is
diagonal for per-pixel coding, so every data step is closed form. Re-exported by
:mod:`recon.classical`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recon.fft_ops import as_batch, check_positive, robust_range
from recon.functional import coded_sum, coded_sum_adjoint

__all__ = ["PER_PIXEL_SOLVERS", "admm_tv", "gap_tv", "per_pixel_solve"]


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


def _setup(y: Tensor, weights: Tensor, iters: int, tv_iters: int, temporal_weight: float,
           tv_weight: float | None) -> tuple[Tensor, bool, Tensor, Tensor | float, Tensor]:
    """Checks shared by the solvers; returns y as a batch, whether to squeeze, the weights on
    y's device, the TV strength and ``A A^T`` (per pixel)."""
    yb, squeeze = as_batch(y)
    if weights.dim() not in (1, 3) or (weights.dim() == 3 and weights.shape[1:] != yb.shape[1:]):
        raise ValueError(f"weights must be (T, H, W) matching y's {tuple(yb.shape[1:])}, or (T,); "
                         f"got {tuple(weights.shape)}.")
    if int(iters) < 1 or int(tv_iters) < 1:
        raise ValueError("iters and tv_iters must be >= 1.")
    if temporal_weight < 0:
        raise ValueError(f"temporal_weight must be >= 0; got {temporal_weight}.")
    wt = weights.to(device=yb.device, dtype=yb.dtype)
    lam = (0.1 * robust_range(yb).unsqueeze(1) if tv_weight is None
           else check_positive("tv_weight", tv_weight))
    phi = (wt.square().sum(dim=0) if wt.dim() == 3 else wt.square().sum()).clamp(min=1e-12)
    return yb, squeeze, wt, lam, phi


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
    :func:`recon.classical.reconstruct_global` then.

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
    yb, squeeze, wt, lam, phi = _setup(y, weights, iters, tv_iters, temporal_weight, tv_weight)
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


def admm_tv(
    y: Tensor,
    weights: Tensor,
    *,
    iters: int = 60,
    tv_weight: float | None = None,
    temporal_weight: float = 0.25,
    tv_iters: int = 10,
    rho: float | None = None,
) -> Tensor:
    """Plug-and-play ADMM with a spatio-temporal TV prior (ADMM-TV) for per-pixel coded video.

    Splits ``min ||y - A x||^2 / 2 + TV(v)`` with ``x = v`` and iterates

    - ``x = z + A^T (y - A z) / (A A^T + rho)`` with ``z = v - u`` (the exact x-step: ``A A^T`` is
      diagonal, so the Woodbury identity makes it closed form),
    - ``v = D(x + u)``, the TV denoiser,
    - ``u = u + x - v``.

    Unlike GAP, the data term is not enforced exactly at every step. Measured at 128 px, 8 random
    masks: on sprite scenes it scores like GAP-TV at 1 % noise (23.83 vs 23.80 dB) and 0.4 dB
    above it at 3 % (23.22 vs 22.81); on a dead-leaves pan 0.2-0.4 dB below it. Same arguments as
    :func:`gap_tv`, plus:

    Args:
        rho: the ADMM penalty (default: a tenth of the mean of ``A A^T``; on simulated sprite
            scenes at 1 % noise, 0.05-0.25 of that mean scored within 0.05 dB of each other and
            a whole mean 0.5 dB lower).

    Returns, raises and shapes: as :func:`gap_tv`.
    """
    yb, squeeze, wt, lam, phi = _setup(y, weights, iters, tv_iters, temporal_weight, tv_weight)
    r = 0.1 * phi.mean() if rho is None else check_positive("rho", rho)
    x = coded_sum_adjoint(yb / phi, wt)
    v = x
    u = torch.zeros_like(x)
    for _ in range(int(iters)):
        z = v - u
        x = z + coded_sum_adjoint((yb - coded_sum(z, wt)) / (phi + r), wt)
        v = _tv_denoise(x + u, lam, float(temporal_weight), int(tv_iters))
        u = u + x - v
    return v[0] if squeeze else v


#: the per-pixel solvers by their command-line names
PER_PIXEL_SOLVERS = {"gap-tv": gap_tv, "admm-tv": admm_tv}


def per_pixel_solve(name: str, y: Tensor, weights: Tensor, **kw) -> Tensor:
    """Run the per-pixel solver called ``name`` (``"gap-tv"`` or ``"admm-tv"``).

    Raises:
        ValueError: an unknown name (the sentence lists the known ones).
    """
    fn = PER_PIXEL_SOLVERS.get(name)
    if fn is None:
        raise ValueError(f"Unknown per-pixel solver {name!r}; choose one of "
                         f"{', '.join(PER_PIXEL_SOLVERS)}.")
    return fn(y, weights, **kw)
