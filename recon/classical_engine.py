"""The classical live-preview engine: :class:`recon.solvers.ClassicalGlobal` behind the
``reconstruct(y, bits, n_frames)`` call of :class:`recon.engine.LearnedEngine`.

It lives in its own module, above :mod:`recon.solvers`, because the solvers wrap the learned engine
(:class:`recon.solvers.LearnedVideo`): :mod:`recon.engine` imports no solver, so the two do not
form an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from recon.operators import CodedExposure
from recon.solvers import ClassicalGlobal, equal_times


class ClassicalEngine:
    """The classical global-code solver (:class:`recon.solvers.ClassicalGlobal`) behind the same
    ``reconstruct(y, bits, n_frames)`` call as :class:`recon.engine.LearnedEngine`, for live
    preview when no learned video model applies.

    The frame is first reduced (area average) so that its longer side is at most ``max_side``;
    frames come back at the reduced size. The motion comes from the shipped learned motion model
    when there is one (a field; see :mod:`recon.motion`), and each motion is deconvolved in
    closed form (``fast``: Wiener with a tapered border, no full-resolution refinement); without
    the model, from the spectral search bounded by ``max_px`` at the reduced size. :attr:`last`
    holds the newest full result (velocity, motion field, diagnostics).
    """

    def __init__(self, method: str = "wiener", max_side: int = 256, max_px: float = 32.0) -> None:
        if method not in ("wiener", "tv"):
            raise ValueError(f"method must be 'wiener' or 'tv', got {method!r}.")
        self.method, self.max_side, self.max_px = method, int(max_side), float(max_px)
        self.device = torch.device("cpu")
        self.solver = ClassicalGlobal(method, max_px=max_px, fast=True)
        motion = "learned motion" if self.solver.uses_learned_motion() else "spectral motion"
        self.name = f"classical ({method}, {motion})"
        self.last: Any = None
        self._physics: dict[tuple[int, ...], Any] = {}

    def reconstruct(self, y: Tensor, bits: Sequence[int], n_frames: int | None = None) -> Tensor:
        """[T, h, w] frames from one coded frame ``y`` [H, W] scaled to [0, 1]."""
        if y.dim() != 2:
            raise ValueError(f"y must be [H, W], got shape {tuple(y.shape)}.")
        y = y.float()
        f = max(y.shape) / self.max_side
        if f > 1:
            size = (max(8, round(y.shape[0] / f)), max(8, round(y.shape[1] / f)))
            y = F.interpolate(y[None, None], size=size, mode="area")[0, 0]
        key = tuple(int(b) for b in bits)
        if key not in self._physics:
            self._physics = {key: CodedExposure.from_capture(key, chip_us=None)}
        n = len(bits) if n_frames is None else int(n_frames)
        rec = self.solver.reconstruct(y, self._physics[key], equal_times(n))
        self.last = rec
        return rec.frames.float()
