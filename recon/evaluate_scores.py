"""Scores of the evaluation (:mod:`recon.evaluate`): per-frame PSNR and SSIM of predicted chip
frames in strict time order and best of both orders, their means per stratum, motion class and
noise level, and :class:`RowResult`, the scores of one method on one code over the test set.

>>> strata = ["slow/sigma=0.002", "slow/sigma=0.01", "fast/sigma=0.002", "fast/sigma=0.01"]
>>> aggregate([30.0, 32.0, 20.0, 22.0], strata)["fast"]
21.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from recon.metrics import ssim, video_psnr

__all__ = [
    "N_T_BINS", "PSNR_CAP_DB", "FrameScores", "RowResult", "aggregate", "frame_psnr",
    "frame_ssim", "score_frames", "t_bins",
]

#: Per-frame PSNR is capped here (a perfect frame would give infinity).
PSNR_CAP_DB = 100.0
#: Bins of t for the per-t table.
N_T_BINS = 8


# ---------------------------------------------------------------------------------------------
# Metric helpers
# ---------------------------------------------------------------------------------------------


def frame_psnr(pred: Tensor, gt: Tensor, data_range: float = 1.0) -> Tensor:
    """PSNR of every frame (:func:`recon.metrics.video_psnr`), capped at :data:`PSNR_CAP_DB`.

    Args:
        pred: predicted videos.
        gt: ground truth, same shape.
        data_range: span of valid values.

    Returns:
        PSNR in dB per frame, float64.

    Shape:
        - pred, gt: ``(B, K, H, W)``
        - output: ``(B, K)``

    >>> frame_psnr(torch.zeros(1, 2, 4, 4), torch.full((1, 2, 4, 4), 0.1)).round().tolist()
    [[20.0, 20.0]]
    """
    if pred.shape != gt.shape or pred.dim() != 4:
        raise ValueError(f"pred and gt must both be (B, K, H, W); got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}.")
    return video_psnr(pred, gt, data_range, reduce=False).clamp(max=PSNR_CAP_DB)


def frame_ssim(pred: Tensor, gt: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM (:func:`recon.metrics.ssim`, 11-tap Gaussian window) of every frame.

    Shape:
        - pred, gt: ``(B, K, H, W)`` with ``H, W >= 11``
        - output: ``(B, K)`` float64
    """
    if pred.shape != gt.shape or pred.dim() != 4:
        raise ValueError(f"pred and gt must both be (B, K, H, W); got {tuple(pred.shape)} and "
                         f"{tuple(gt.shape)}.")
    b, k = pred.shape[:2]
    out = torch.empty(b, k, dtype=torch.float64)
    for i in range(b):
        for j in range(k):
            out[i, j] = ssim(pred[i, j], gt[i, j], data_range)
    return out


@dataclass(frozen=True)
class FrameScores:
    """Per-frame scores of a batch of predicted videos, in both orders.

    Attributes:
        psnr_strict: PSNR of frame k against chip k, ``(B, K)``.
        psnr_best: PSNR in the better order of each sample, ``(B, K)``; frame ``k`` of the
            reversed order is the prediction's frame ``K - 1 - k``, compared with chip ``k``.
        ssim_strict: SSIM of frame k against chip k, ``(B, K)``.
        ssim_best: SSIM in the order chosen for ``psnr_best``, ``(B, K)``.
        reversed_better: per sample, whether the time-reversed prediction scored higher, ``(B,)``.
    """

    psnr_strict: Tensor
    psnr_best: Tensor
    ssim_strict: Tensor
    ssim_best: Tensor
    reversed_better: Tensor


def score_frames(pred: Tensor, gt: Tensor, *, with_ssim: bool = True) -> FrameScores:
    """Score predicted chip frames against the ground truth, strictly and best of both orders.

    The order of each sample is chosen by its mean per-frame PSNR (the same order is then used for
    SSIM). The gap between the two shows how often the direction of time is lost.

    Args:
        pred: predicted chip frames (clip them to the valid range first).
        gt: ground-truth chip frames.
        with_ssim: also compute SSIM (else its fields are NaN).

    Returns:
        The scores.

    Shape:
        - pred, gt: ``(B, K, H, W)``

    >>> gt = torch.rand(1, 4, 16, 16)
    >>> s = score_frames(gt.flip(1), gt, with_ssim=False)
    >>> bool(s.reversed_better[0]), float(s.psnr_best.mean()) == PSNR_CAP_DB
    (True, True)
    """
    rev = pred.flip(1)
    p_fwd, p_rev = frame_psnr(pred, gt), frame_psnr(rev, gt)
    use_rev = p_rev.mean(dim=1) > p_fwd.mean(dim=1)
    p_best = torch.where(use_rev[:, None], p_rev, p_fwd)
    if with_ssim:
        s_fwd = frame_ssim(pred, gt)
        s_rev = frame_ssim(rev, gt) if bool(use_rev.any()) else s_fwd
        s_best = torch.where(use_rev[:, None], s_rev, s_fwd)
    else:
        s_fwd = s_best = torch.full_like(p_fwd, math.nan)
    return FrameScores(p_fwd, p_best, s_fwd, s_best, use_rev)


def aggregate(values: Sequence[float] | Tensor, strata: Sequence[str]) -> dict[str, float]:
    """Mean of per-sample values overall, per stratum, per motion class and per noise level.

    Labels are ``"<motion>/sigma=<s>"`` as in :func:`recon.scene_batches.fixed_set`.

    Args:
        values: one value per sample.
        strata: one label per sample.

    Returns:
        ``{"all": ..., "<motion>/sigma=<s>": ..., "<motion>": ..., "sigma=<s>": ...}``, keys in
        the order of first appearance within each kind.

    Raises:
        ValueError: lengths differ or no sample.
    """
    vals = [float(v) for v in (values.tolist() if isinstance(values, Tensor) else values)]
    labels = [str(s) for s in strata]
    if len(vals) != len(labels) or not vals:
        raise ValueError(f"Need one stratum label per value (and at least one); got {len(vals)} "
                         f"values and {len(labels)} labels.")
    groups: dict[str, list[float]] = {"all": vals}
    kinds: list[dict[str, list[float]]] = [{}, {}, {}]
    for v, s in zip(vals, labels, strict=True):
        motion, _, noise = s.partition("/")
        for d, key in zip(kinds, (s, motion, noise), strict=True):
            if key:
                d.setdefault(key, []).append(v)
    for d in kinds:
        for key, vs in d.items():
            groups.setdefault(key, vs)
    return {k: sum(vs) / len(vs) for k, vs in groups.items()}


def t_bins(n_chips: int, n_bins: int = N_T_BINS) -> list[int]:
    """Bin index of each chip centre ``t = (k + 1/2) / K`` among ``n_bins`` equal parts of [0, 1].

    >>> t_bins(4, 8)
    [1, 3, 5, 7]
    """
    return [min(n_bins - 1, int((k + 0.5) / n_chips * n_bins)) for k in range(n_chips)]


# ---------------------------------------------------------------------------------------------
# Results of one row (a method on a code)
# ---------------------------------------------------------------------------------------------


@dataclass
class RowResult:
    """Scores of one method on one code over the test set.

    Attributes:
        method: method key (``"B0"``, ``"B1-oracle"``, ``"B1-est"`` or a model name).
        label: what the tables print.
        group: ``"baseline"``, ``"classical"``, ``"box-model"`` or ``"model"``.
        code: the code as a '0'/'1' string.
        code_kind: ``"anchor"``, ``"seen"``, ``"unseen"`` or ``"box"``.
        strata: stratum label per sample.
        psnr_strict, psnr_best, ssim_strict, ssim_best: per-sample per-frame scores ``(N, K)``.
        reversed_better: per sample ``(N,)``.
        params: parameters (models), else ``None``.
        macs: multiply-accumulates of 512x512 -> 16 frames (models), else ``None``.
        latency_ms: measured latency, ``None`` if not measured.
    """

    method: str
    label: str
    group: str
    code: str
    code_kind: str
    strata: list[str] = field(default_factory=list)
    psnr_strict: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.float64))
    psnr_best: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.float64))
    ssim_strict: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.float64))
    ssim_best: Tensor = field(default_factory=lambda: torch.empty(0, 0, dtype=torch.float64))
    reversed_better: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.bool))
    params: int | None = None
    macs: int | None = None
    latency_ms: float | None = None

    @property
    def key(self) -> str:
        """``"<method>@<code>"``."""
        return f"{self.method}@{self.code}"

    def add(self, scores: FrameScores, strata: Sequence[str]) -> None:
        """Append the scores of a batch and its stratum labels."""
        if self.psnr_strict.numel() == 0:
            self.psnr_strict, self.psnr_best = scores.psnr_strict, scores.psnr_best
            self.ssim_strict, self.ssim_best = scores.ssim_strict, scores.ssim_best
            self.reversed_better = scores.reversed_better
        else:
            self.psnr_strict = torch.cat([self.psnr_strict, scores.psnr_strict])
            self.psnr_best = torch.cat([self.psnr_best, scores.psnr_best])
            self.ssim_strict = torch.cat([self.ssim_strict, scores.ssim_strict])
            self.ssim_best = torch.cat([self.ssim_best, scores.ssim_best])
            self.reversed_better = torch.cat([self.reversed_better, scores.reversed_better])
        self.strata.extend(strata)

    def frames(self, metric: str, order: str) -> Tensor:
        """Per-sample per-frame scores ``(N, K)``; ``metric`` psnr|ssim, ``order`` strict|best."""
        if metric not in ("psnr", "ssim") or order not in ("strict", "best"):
            raise ValueError(f"metric must be psnr|ssim and order strict|best; got {metric!r}, "
                             f"{order!r}.")
        return getattr(self, f"{metric}_{order}")

    def summary(self, metric: str = "psnr", order: str = "strict") -> dict[str, float]:
        """:func:`aggregate` of the per-sample means over frames."""
        return aggregate(self.frames(metric, order).mean(dim=1), self.strata)

    def per_chip(self, metric: str = "psnr", order: str = "strict",
                 sigma: str | None = None) -> tuple[list[float], list[float]]:
        """Chip-centre times ``t`` and the mean score at each (optionally one noise level only,
        ``sigma="sigma=0.01"``)."""
        x = self.frames(metric, order)
        if sigma is not None:
            keep = torch.tensor([s.partition("/")[2] == sigma for s in self.strata])
            x = x[keep]
        k = x.shape[1]
        ts = [(i + 0.5) / k for i in range(k)]
        return ts, x.mean(dim=0).tolist() if x.shape[0] else [math.nan] * k

    def per_t_bins(self, metric: str = "psnr", order: str = "strict",
                   n_bins: int = N_T_BINS) -> list[float]:
        """Mean score per bin of t (:func:`t_bins`); NaN for a bin without a chip centre."""
        x = self.frames(metric, order)
        bins = t_bins(x.shape[1], n_bins)
        out = []
        for b in range(n_bins):
            cols = [k for k, v in enumerate(bins) if v == b]
            out.append(float(x[:, cols].mean()) if cols else math.nan)
        return out
