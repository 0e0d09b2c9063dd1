"""Learned motion estimation from one coded frame: a cost volume of coded deconvolutions, scored.

Physics supplies the hypotheses, a small network chooses. The coded frame is reduced to a working
scale (area averaging, so the largest motion searched spans at most ``MotionConfig.work_max_px``
pixels there), then deconvolved (Wiener, FFT, float32) with the coded PSF of every velocity of a
polar bank that covers both signs, every direction and every length up to the bound, and zero.
Each deconvolution is summarised per tile by a few measures that a wrong motion spoils in
different ways (:func:`cost_features`): the gradient level and sparsity (a too-short blur leaves
the image blurred, a too-long or reversed one rings), the part of the frame the hypothesis cannot
explain (the Wiener residual: a PSF with spectral zeros where the frame has energy), values
pushed out of the frame's range, and the directional structure of both the frame and the
deconvolution. :class:`MotionScorer` (an MLP of ~2 k parameters, shared by every tile and
hypothesis) turns the measures of one (tile, hypothesis) into a score; the scores are mixed with
those of the neighbouring tiles and of the whole frame, and a softmax over the bank gives each
tile a distribution over velocities. The estimate per tile is the soft-argmax around the most
probable hypothesis (a dense field at the tile grid, "still" included); the global velocity is
the hypothesis most probable over all tiles, refined at full resolution (:func:`refine_global`:
the spectral likelihood of :mod:`recon.velocity` over a local grid, and the direction test).

Conventions as in :mod:`recon.classical`: a velocity ``(dx, dy)`` is the displacement in pixels
over the whole exposure; at time ``t`` the camera sees the mid-exposure image shifted by
``(t - 1/2) * (dx, dy)``. Images are in units of the sensor's full scale (any offset is fine).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recon.psf_deconv import Velocity, motion_psf_batch
from recon.velocity import direction_sparsity, periodic_component, spectrum_scores

__all__ = [
    "MotionConfig",
    "MotionEstimate",
    "MotionEstimator",
    "MotionScorer",
    "N_FEATURES",
    "bank_otfs",
    "cost_features",
    "estimate_noise_sigma",
    "load_motion_model",
    "refine_global",
    "shipped_motion_model",
    "velocity_bank",
]

#: Where the shipped motion model lives (apart from the video models of ``models/weights``).
WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "motion"
MOTION_MODEL = "motion"

#: Measures per (tile, hypothesis) given to the scorer (see :func:`cost_features`): 11 raw ones
#: and, for the first 7, their standard score among the hypotheses of the same length.
N_RAW = 11
N_RING = 7
N_FEATURES = N_RAW + N_RING
_EPS = 1e-6


@dataclass(frozen=True)
class MotionConfig:
    """How the cost volume is built (part of a model's card: a model is trained for one config).

    Attributes:
        work_max_px: the largest motion searched spans at most this many pixels at the working
            scale (the frame is reduced by ``ceil(max_px / work_max_px)``).
        tile: tile side at the working scale, pixels.
        angle_px: arc between neighbouring directions of a bank ring, working pixels.
        min_work_side: the working frame is never reduced below this side (pixels).
        nsr_gain: Wiener noise-to-signal ratio as a multiple of ``sigma^2 / mean|grad y|^2``.
    """

    work_max_px: float = 12.0
    tile: int = 8
    angle_px: float = 1.0
    min_work_side: int = 48
    nsr_gain: float = 3.0


# ---------------------------------------------------------------------------------------------
# Bank and cost volume
# ---------------------------------------------------------------------------------------------


def velocity_bank(max_px: float, *, angle_px: float = 1.0) -> Tensor:
    """Candidate velocities on a polar grid: zero, then rings of length 1, 2, ... ``max_px``.

    Ring ``L`` holds ``max(8, ceil(2 pi L / angle_px))`` equally spaced directions over the full
    circle (both signs of every axis); the rings are staggered by half a step so that no direction
    is favoured.

    Args:
        max_px: the longest displacement (pixels over the exposure, > 0).
        angle_px: arc between neighbouring directions of a ring, pixels.

    Returns:
        float64 ``(N, 2)`` of ``(dx, dy)``; row 0 is ``(0, 0)``.

    >>> b = velocity_bank(2.0); b.shape[0], b[0].tolist()
    (22, [0.0, 0.0])
    """
    if not (max_px > 0 and math.isfinite(max_px)):
        raise ValueError(f"max_px must be a finite number > 0; got {max_px!r}.")
    rows = [torch.zeros(1, 2, dtype=torch.float64)]
    for i, ln in enumerate(torch.arange(1.0, float(max_px) + 1e-9, 1.0).tolist()):
        n = max(8, math.ceil(2 * math.pi * ln / angle_px))
        a = (torch.arange(n, dtype=torch.float64) + 0.5 * (i % 2)) * (2 * math.pi / n)
        rows.append(ln * torch.stack([a.cos(), a.sin()], 1))
    return torch.cat(rows)


def estimate_noise_sigma(y: Tensor) -> float:
    """Standard deviation of white noise in an image (Immerkaer's Laplacian-difference method).

    Args:
        y: ``(H, W)`` image, at least 3x3.

    Returns:
        The estimate (image structure biases it up a little; it never returns less than 1e-6).
    """
    k = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]], dtype=y.dtype,
                     device=y.device)
    d = F.conv2d(y[None, None], k[None, None])[0, 0].abs()
    # Robust: median instead of mean, so edges do not dominate (|N(0, 36 s^2)| median = 0.6745*6s).
    return max(float(d.median()) / (0.6745 * 6.0), 1e-6)


def _fftfreq_grads(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    fy = torch.fft.fftfreq(h, device=device, dtype=dtype).unsqueeze(1)
    fx = torch.fft.rfftfreq(w, device=device, dtype=dtype).unsqueeze(0)
    return 4 * torch.sin(math.pi * fy) ** 2 + 4 * torch.sin(math.pi * fx) ** 2


def bank_otfs(weights: Tensor, bank: Tensor, hw: tuple[int, int], dtype: torch.dtype) -> Tensor:
    """OTFs ``(N, h, w // 2 + 1)`` of the coded PSFs of the bank on an ``hw`` periodic grid."""
    psf = motion_psf_batch(weights, [tuple(v) for v in bank.tolist()], dtype=dtype)
    k = psf.shape[-1]
    h, w = hw
    if k > min(h, w):
        raise ValueError(f"A {k} px PSF does not fit the {h}x{w} working frame; search a smaller "
                         "motion or use a larger frame.")
    big = psf.new_zeros(psf.shape[0], h, w)
    big[:, :k, :k] = psf
    big = torch.roll(big, shifts=(-(k // 2), -(k // 2)), dims=(-2, -1))
    return torch.fft.rfft2(big)


def _tile_mean(x: Tensor, tile: int) -> Tensor:
    return F.avg_pool2d(x, tile)


def cost_features(y: Tensor, weights: Tensor, bank: Tensor, *, n_chips: int, tile: int,
                  sigma: float | None = None, nsr_gain: float = 3.0, chunk: int = 96,
                  otfs: Tensor | None = None) -> Tensor:
    """Measures of how well each bank velocity explains each tile of a (working-scale) frame.

    For every hypothesis ``h`` the frame's periodic part is Wiener-deconvolved with the coded PSF
    of ``h`` (gradient prior, ``nsr = nsr_gain sigma^2 / mean|grad y|^2``); per tile:

    0. log mean |grad x_h| minus that of the frame (how much sharper);
    1. log RMS |grad x_h| minus that of the frame;
    2. log (mean |grad x_h| / RMS |grad x_h|) (sparsity: ringing and blur both raise it);
    3. log of the mean squared Wiener residual over sigma^2 (frame content the PSF cannot make);
    4. log of the mean squared excursion of x_h outside the frame's range (overshoot);
    5. log ratio of |grad x_h| along and across the hypothesis' direction;
    6. the same ratio for the frame itself (a blurred frame is smooth along the motion);
    7. log of the texture of the tile (RMS gradient of the frame over sigma);
    8. the hypothesis' length / 16;
    9. length per chip of the code (how well the chips are resolved), / 4;
    10. 1 for the zero hypothesis, else 0;
    11-17. measures 0-6 as standard scores among the hypotheses of the same length.

    Args:
        y: working-scale frame ``(H, W)`` (H, W multiples of ``tile``; cropped otherwise).
        weights: per-sub-step weights of the code ``(K * S,)`` (time order).
        n_chips: K.
        bank: candidate velocities ``(N, 2)`` at the working scale.
        tile: tile side, pixels.
        sigma: noise standard deviation of ``y`` (estimated when None).
        nsr_gain: multiple of the noise-to-signal ratio.
        chunk: hypotheses deconvolved at a time (memory).
        otfs: precomputed OTFs of the bank on this frame size (see :meth:`MotionEstimator`).

    Returns:
        ``(N, N_FEATURES, H // tile, W // tile)`` float32.
    """
    h, w = (y.shape[0] // tile) * tile, (y.shape[1] // tile) * tile
    y = y[:h, :w].float()
    if sigma is None:
        sigma = estimate_noise_sigma(y)
    frame = _frame_stats(y, sigma, nsr_gain, tile)
    if otfs is None:
        otfs = bank_otfs(weights, bank.to(torch.float64), (h, w), torch.float32)
    out = [_hypothesis_features(frame, bank[i: i + chunk].to(torch.float32),
                                otfs[i: i + chunk].to(y.device), tile, n_chips)
           for i in range(0, bank.shape[0], chunk)]
    raw = torch.cat(out)
    return torch.cat([raw, _ring_scores(raw[:, :N_RING], bank)], dim=1)


@dataclass(frozen=True)
class _FrameStats:
    """What :func:`cost_features` measures once per frame, for every hypothesis: the spectrum
    of the periodic part, the gradient prior's spectrum, the frame's gradients, the Wiener
    noise-to-signal ratio, the value range allowed before overshoot, the noise power and the
    frame's per-tile gradient statistics."""

    spectrum: Tensor
    g2: Tensor
    gy_x: Tensor
    gy_y: Tensor
    nsr: float
    lo: float
    hi: float
    span: float
    s2: float
    a1_y: Tensor
    a2_y: Tensor
    texture: Tensor


def _frame_stats(y: Tensor, sigma: float, nsr_gain: float, tile: int) -> _FrameStats:
    """:class:`_FrameStats` of a frame ``(H, W)`` (H, W multiples of ``tile``)."""
    h, w = y.shape
    dev = y.device
    p = periodic_component(y.double()).float()
    yf = torch.fft.rfft2(p)
    g2 = _fftfreq_grads(h, w, torch.float32, dev)
    gy_x, gy_y = torch.roll(p, -1, 1) - p, torch.roll(p, -1, 0) - p
    grad_e = float((gy_x.square() + gy_y.square()).mean())
    nsr = nsr_gain * max(sigma, 1e-5) ** 2 / max(grad_e, 1e-10)
    lo, hi = torch.quantile(y.flatten()[:: max(1, y.numel() // 65536)],
                            torch.tensor([0.005, 0.995], device=dev)).tolist()
    span = max(hi - lo, 1e-3)
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    s2 = sigma**2 + (1e-3 * span) ** 2
    ymag = (gy_x.square() + gy_y.square() + _EPS**2).sqrt()
    a1_y = _tile_mean(ymag[None, None], tile)[0, 0]
    a2_y = _tile_mean(ymag.square()[None, None], tile)[0, 0].sqrt()
    texture = torch.log(a2_y / math.sqrt(s2) + 1e-3)
    return _FrameStats(yf, g2, gy_x, gy_y, nsr, lo, hi, span, s2, a1_y, a2_y, texture)


def _hypothesis_features(frame: _FrameStats, b: Tensor, o: Tensor, tile: int,
                         n_chips: int) -> Tensor:
    """The raw features 0-10 of :func:`cost_features` for the hypotheses ``b`` ``(n, 2)`` with
    OTFs ``o``, as ``(n, 11, H // tile, W // tile)``."""
    h, w = frame.gy_x.shape
    dev = frame.gy_x.device
    yf, g2, nsr, gy_x, gy_y = frame.spectrum, frame.g2, frame.nsr, frame.gy_x, frame.gy_y
    den = o.real.square() + o.imag.square() + nsr * g2
    x = torch.fft.irfft2(yf * o.conj() / den, s=(h, w))
    r = torch.fft.irfft2(yf * (nsr * g2) / den, s=(h, w))
    gx, gy = torch.roll(x, -1, 2) - x, torch.roll(x, -1, 1) - x
    mag2 = gx.square() + gy.square() + _EPS**2
    a1 = _tile_mean(mag2.sqrt().unsqueeze(1), tile)[:, 0]
    a2 = _tile_mean(mag2.unsqueeze(1), tile)[:, 0].sqrt()
    res = _tile_mean(r.square().unsqueeze(1), tile)[:, 0]
    over = (F.relu(x - frame.hi) + F.relu(frame.lo - x)) / frame.span
    ovr = _tile_mean(over.square().unsqueeze(1), tile)[:, 0]
    ln = b.norm(dim=1)
    u = torch.where(ln[:, None] > 0, b / ln.clamp(min=1e-9)[:, None],
                    torch.tensor([1.0, 0.0], device=dev))
    ux, uy = u[:, 0, None, None], u[:, 1, None, None]
    along = _tile_mean((ux * gx + uy * gy).abs().unsqueeze(1), tile)[:, 0]
    across = _tile_mean((uy * gx - ux * gy).abs().unsqueeze(1), tile)[:, 0]
    y_al = _tile_mean((ux * gy_x + uy * gy_y).abs().unsqueeze(1), tile)[:, 0]
    y_ac = _tile_mean((uy * gy_x - ux * gy_y).abs().unsqueeze(1), tile)[:, 0]
    th, tw = a1.shape[-2:]
    const = torch.ones_like(a1)
    return torch.stack([
        torch.log(a1 + _EPS) - torch.log(frame.a1_y + _EPS),
        torch.log(a2 + _EPS) - torch.log(frame.a2_y + _EPS),
        torch.log(a1 + _EPS) - torch.log(a2 + _EPS),
        torch.log(res / frame.s2 + 1e-3),
        torch.log(ovr + 1e-6),
        torch.log(along + _EPS) - torch.log(across + _EPS),
        torch.log(y_al + _EPS) - torch.log(y_ac + _EPS),
        frame.texture.expand(b.shape[0], th, tw),
        const * (ln / 16.0)[:, None, None],
        const * (ln / n_chips / 4.0)[:, None, None],
        const * (ln == 0).float()[:, None, None],
    ], dim=1)


def _ring_scores(f: Tensor, bank: Tensor) -> Tensor:
    """Standard score of each feature among the hypotheses of the same length (ring), per tile:
    the evidence is mostly comparative (which direction of a given length explains the tile
    best)."""
    ln = bank.norm(dim=1).round().long()
    out = torch.zeros_like(f)
    for r in torch.unique(ln).tolist():
        idx = (ln == r).nonzero().flatten()
        if idx.numel() < 2:
            continue
        g = f[idx]
        out[idx] = (g - g.mean(0, keepdim=True)) / (g.std(0, keepdim=True) + 1e-3)
    return out


# ---------------------------------------------------------------------------------------------
# The scorer
# ---------------------------------------------------------------------------------------------


class MotionScorer(nn.Module):
    """Scores per (hypothesis, tile) from :func:`cost_features`, with two read-outs.

    ``s = MLP(features)`` per (hypothesis, tile). The *tile* read-out
    ``a * s + b * mean_3x3(s) + c * mean_tiles(s)`` (softmax over the bank) is each tile's
    distribution over velocities: the motion field, objects included. The *frame* read-out
    ``d * mean_tiles(s)`` is the distribution of the background's (camera's) motion. They are
    trained apart (the tile one on every tile, moving objects weighted up; the frame one on the
    background's velocity), so a small moving object is not voted down by the frame.

    Args:
        hidden: width of the MLP's two hidden layers.
    """

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.hidden = hidden
        self.mlp = nn.Sequential(
            nn.Conv2d(N_FEATURES, hidden, 1), nn.GELU(),
            nn.Conv2d(hidden, hidden, 1), nn.GELU(),
            nn.Conv2d(hidden, 1, 1),
        )
        self.mix = nn.Parameter(torch.tensor([1.0, 1.0, 0.2, 1.0]))
        self.register_buffer("mean", torch.zeros(N_FEATURES))
        self.register_buffer("std", torch.ones(N_FEATURES))

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities over the bank per tile, and for the frame's background motion.

        Shape:
            - feats: ``(B, N, F, th, tw)``
            - output: ``(B, N, th, tw)`` and ``(B, N)``
        """
        b, n, f, th, tw = feats.shape
        z = (feats - self.mean.view(1, 1, f, 1, 1)) / self.std.view(1, 1, f, 1, 1)
        s = self.mlp(z.reshape(b * n, f, th, tw)).view(b, n, th, tw)
        nb = F.avg_pool2d(F.pad(s, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        g = s.mean(dim=(-2, -1), keepdim=True)
        tile = self.mix[0] * s + self.mix[1] * nb + self.mix[2] * g
        frame = self.mix[3] * g[..., 0, 0]
        return tile.log_softmax(dim=1), frame.log_softmax(dim=1)


# ---------------------------------------------------------------------------------------------
# Estimation
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotionEstimate:
    """Result of :meth:`MotionEstimator.estimate`.

    Attributes:
        field: per-tile velocity ``(2, th, tw)`` (dx, dy) in full-resolution pixels per exposure.
        confidence: per-tile probability mass near the chosen velocity ``(th, tw)``.
        tile_px: tile side in full-resolution pixels (tile ``(i, j)`` covers rows
            ``i * tile_px ...`` and columns ``j * tile_px ...`` of the frame).
        velocity: the background's (camera's) velocity from the frame read-out, refined when
            asked.
        global_probability: the frame read-out's probability near the global velocity.
        scale: the working-scale reduction factor.
        bank: the hypotheses ``(N, 2)`` in full-resolution pixels per exposure.
        tile_prob: per-tile probability of each hypothesis ``(N, th, tw)``.
    """

    field: Tensor
    confidence: Tensor
    tile_px: int
    velocity: Velocity
    global_probability: float
    scale: int
    bank: Tensor
    tile_prob: Tensor

    def mass_near(self, velocity: Velocity, radius_px: float | None = None) -> Tensor:
        """Per-tile probability that the motion is within ``radius_px`` of ``velocity``
        (default 1.5 bank steps), ``(th, tw)``."""
        r = 1.5 * self.scale if radius_px is None else float(radius_px)
        v = torch.tensor(velocity, dtype=self.bank.dtype)
        near = ((self.bank - v).norm(dim=1) <= r).to(self.tile_prob.dtype)
        return (self.tile_prob * near.view(-1, 1, 1)).sum(0)


def _neighbourhood(bank: Tensor, radius: float) -> Tensor:
    """``(N, N)`` 0/1 matrix: hypotheses within ``radius`` of each other."""
    return ((bank.unsqueeze(0) - bank.unsqueeze(1)).norm(dim=-1) <= radius).to(bank.dtype)


def _soft_argmax(p: Tensor, bank: Tensor, nb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per tile: the hypothesis whose neighbourhood (``nb``) holds the most probability, the
    probability-weighted mean of the bank over that neighbourhood, and its mass.

    Summing over a neighbourhood first keeps a motion whose probability is spread over several
    close hypotheses from losing to a single isolated one (zero). ``p`` ``(N, th, tw)``, bank
    ``(N, 2)``."""
    n, th, tw = p.shape
    flat = p.reshape(n, -1)
    nb_mass = nb @ flat  # (N, T)
    best = nb_mass.argmax(dim=0)  # (T,)
    sel = nb[best].T * flat  # (N, T): probability inside the winner's neighbourhood
    mass = sel.sum(0)
    mean = (sel.T @ bank) / mass.clamp(min=1e-12)[:, None]  # (T, 2)
    return (best.view(th, tw), mean.T.reshape(2, th, tw), mass.view(th, tw))


class MotionEstimator:
    """Learned motion estimation (cost volume + :class:`MotionScorer`) for one code.

    Args:
        scorer: the trained scorer.
        config: the cost-volume configuration it was trained with.
        weights: per-sub-step code weights ``(K * S,)`` (measured or ideal), time order.
        n_chips: K.
        device: where to compute.
    """

    def __init__(self, scorer: MotionScorer, config: MotionConfig, weights: Tensor,
                 n_chips: int, device: torch.device | str = "cpu") -> None:
        self.n_chips = int(n_chips)
        self.scorer = scorer.eval().to(device)
        self.config = config
        self.weights = weights.detach().to(torch.float64).cpu()
        self.device = torch.device(device)
        self._cache: dict[tuple[Any, ...], tuple[Tensor, Tensor]] = {}
        self._nb: dict[tuple[Any, ...], Tensor] = {}

    def _neighbourhoods(self, bank: Tensor) -> Tensor:
        key = ("nb", bank.shape[0], float(bank.abs().sum()))
        if key not in self._nb:
            self._nb[key] = _neighbourhood(bank, 1.5)
        return self._nb[key]

    @staticmethod
    def scale(config: MotionConfig, max_px: float, hw: tuple[int, int]) -> int:
        """The working-scale reduction for a bound of ``max_px`` on an ``hw`` frame."""
        f = max(1, math.ceil(max_px / config.work_max_px))
        return max(1, min(f, min(hw) // config.min_work_side))

    def scale_for(self, max_px: float, hw: tuple[int, int]) -> int:
        """:meth:`scale` with this estimator's config."""
        return self.scale(self.config, max_px, hw)

    def bank_and_otfs(self, max_px: float, work_hw: tuple[int, int], f: int) -> tuple[Tensor,
                                                                                     Tensor]:
        """The bank at the working scale and its OTFs (cached per frame size and bound)."""
        key = (round(max_px, 3), work_hw, f)
        if key not in self._cache:
            # beyond 4/3 of the trained range the scorer would extrapolate: a small frame cannot
            # be reduced enough for a long bound, and such motions are not searched
            bound = min(max_px / f, min(work_hw) / 2 - 2, self.config.work_max_px * 4 / 3)
            bank = velocity_bank(max(bound, 1.0), angle_px=self.config.angle_px)
            self._cache[key] = (bank, bank_otfs(self.weights, bank, work_hw, torch.float32)
                                .to(self.device))
        return self._cache[key]

    def features(self, y: Tensor, max_px: float) -> tuple[Tensor, Tensor, int]:
        """The cost volume of a full-resolution frame: features, bank (working px), scale."""
        f = self.scale_for(max_px, (int(y.shape[-2]), int(y.shape[-1])))
        t = self.config.tile
        y = y.to(self.device, torch.float32)
        if f > 1:
            y = F.avg_pool2d(y[None, None], f)[0, 0]
        hw = ((y.shape[0] // t) * t, (y.shape[1] // t) * t)
        bank, otfs = self.bank_and_otfs(max_px, hw, f)
        feats = cost_features(y[: hw[0], : hw[1]], self.weights, bank, n_chips=self.n_chips,
                              tile=t,
                              nsr_gain=self.config.nsr_gain, otfs=otfs)
        return feats, bank, f

    @torch.no_grad()
    def estimate(self, y: Tensor, max_px: float, *, refine: bool = True,
                 noise_sigma: float | None = None) -> MotionEstimate:
        """Velocity field and global velocity of one coded frame.

        Args:
            y: the coded frame ``(H, W)``, units of the full scale.
            max_px: the largest displacement over the exposure to consider (pixels).
            refine: refine the global velocity at full resolution (:func:`refine_global`).
            noise_sigma: noise standard deviation of ``y`` for the refinement (fitted if None).

        Returns:
            The estimate.
        """
        feats, bank, f = self.features(y, max_px)
        tile_logp, frame_logp = self.scorer(feats.unsqueeze(0))
        p = tile_logp[0].exp()
        bank32 = bank.to(p)
        nb = self._neighbourhoods(bank32)
        _, field, mass = _soft_argmax(p, bank32, nb)
        _, v, pg = _soft_argmax(frame_logp[0].exp().view(-1, 1, 1), bank32, nb)
        vel = (float(v[0, 0, 0]) * f, float(v[1, 0, 0]) * f)
        if math.hypot(*vel) <= 0.5 * f:
            vel = (0.0, 0.0)  # "still" is an answer: nothing to refine
        elif refine:
            vel = refine_global(y.float().cpu(), self.weights, vel, step_px=float(f),
                                noise_sigma=noise_sigma, max_len=max_px)
        return MotionEstimate(field=(field * f).cpu(), confidence=mass.cpu(),
                              tile_px=self.config.tile * f, velocity=vel,
                              global_probability=float(pg.sum()), scale=f,
                              bank=(bank * f).float().cpu(), tile_prob=p.cpu())


def refine_global(y: Tensor, weights: Tensor, velocity: Velocity, *, step_px: float,
                  noise_sigma: float | None = None, allow_zero: bool = False,
                  max_size: int | None = None, half_width: int = 2,
                  levels: int = 2, max_len: float | None = None) -> Velocity:
    """Refine a coarse global velocity at full resolution.

    The axis and length: the spectral likelihood of :mod:`recon.velocity` over a local polar grid
    of ``(2 half_width + 1)^2`` candidates around the estimate (lengths within ``+-step_px``,
    angles within ``+-step_px / length`` radians), then again ``levels - 1`` times on a grid
    four times finer around the best; the sign: the sparser of the two deconvolutions.

    Args:
        y: full-resolution frame ``(H, W)``; a centred crop of ``max_size`` is used.
        weights: per-sub-step code weights.
        velocity: the coarse estimate.
        step_px: its uncertainty (the bank step at full resolution).
        noise_sigma: noise level, fitted when None.
        allow_zero: also consider no motion (for a coarse estimate near zero).
        max_size: side of the crop (default: three times the motion, at least 128 px).
        half_width: candidates on each side of the centre, per axis.
        levels: refinement passes.
        max_len: the longest displacement allowed (the search bound).

    Returns:
        The refined ``(dx, dy)``.
    """
    h, w = y.shape
    if max_size is None:
        max_size = max(128, math.ceil(3 * (math.hypot(*velocity) + step_px)))
    side = min(h, w, max_size)
    crop = y[(h - side) // 2: (h - side) // 2 + side, (w - side) // 2: (w - side) // 2 + side]
    crop = crop.double()
    dx, dy = velocity
    l0, th0 = math.hypot(dx, dy), math.atan2(dy, dx)
    limit = side / 2 - 2 if max_len is None else min(side / 2 - 2, float(max_len))
    best = (dx, dy)
    span = float(step_px)
    for level in range(levels):
        dl = span / half_width
        lengths = [l0 + j * dl for j in range(-half_width, half_width + 1)
                   if 0 < l0 + j * dl <= limit]
        da = dl / max(l0, 2.0)
        cands = [(ln * math.cos(th0 + j * da), ln * math.sin(th0 + j * da))
                 for ln in lengths for j in range(-half_width, half_width + 1)]
        if allow_zero and level == 0:
            cands.append((0.0, 0.0))
        if not cands:
            break
        nll, _, _, _ = spectrum_scores(crop, weights, cands, noise_sigma)
        best = cands[int(nll.argmin())]
        l0, th0 = math.hypot(*best), math.atan2(best[1], best[0])
        if l0 == 0:
            return (0.0, 0.0)
        span /= 4
    fwd, rev = direction_sparsity(crop, weights, best, noise_sigma)
    if rev < fwd:
        best = (-best[0], -best[1])
    return (best[0] + 0.0, best[1] + 0.0)


# ---------------------------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------------------------


class MotionModelError(ValueError):
    """A motion model file is missing, altered, or does not match its card."""


def shipped_motion_model() -> Path | None:
    """The shipped motion model's card, or None when none ships."""
    p = WEIGHTS_DIR / f"{MOTION_MODEL}.json"
    return p if p.exists() else None


def load_motion_model(card_path: str | Path | None = None) -> tuple[MotionScorer, MotionConfig,
                                                                   dict[str, Any]]:
    """Load a motion scorer and its config from a model card (default: the shipped one).

    Raises:
        MotionModelError: no such card, a missing weights file, or a sha256 mismatch.
    """
    from safetensors.torch import load_file

    card_file = Path(card_path) if card_path is not None else shipped_motion_model()
    if card_file is None or not card_file.exists():
        raise MotionModelError(
            f"No motion model at {card_file or WEIGHTS_DIR / (MOTION_MODEL + '.json')}; train one "
            "with `python -m recon.train_motion` (or use the spectral search).")
    card = json.loads(card_file.read_text())
    wfile = card_file.with_name(card["weights"])
    if not wfile.exists():
        raise MotionModelError(f"{card_file} names {wfile.name}, which is missing.")
    digest = hashlib.sha256(wfile.read_bytes()).hexdigest()
    if digest != card.get("sha256"):
        raise MotionModelError(f"{wfile} has sha256 {digest}, but its card says "
                               f"{card.get('sha256')}: the file was altered or replaced.")
    scorer = MotionScorer(hidden=int(card["hidden"]))
    scorer.load_state_dict(load_file(str(wfile)))
    cfg = MotionConfig(**card["config"])
    return scorer, cfg, card


def config_dict(cfg: MotionConfig) -> dict[str, Any]:
    """The config as a JSON-ready dict (for model cards)."""
    return asdict(cfg)
