"""One solver interface: ``solver.reconstruct(y, physics, times) -> Reconstruction``.

The physics of a capture is a :class:`recon.operators.CodedExposure` built once per capture
(:meth:`CodedExposure.from_capture`: the nominal code, the calibration's effective code or the
DMD masks, and the chip duration). A solver is a registered :class:`Reconstructor`; batch
reconstruction, live preview, evaluation and the demo hold one solver and one physics object and
loop over frames, without branching on the kind of solver. Registered names
(:data:`SOLVERS`, :func:`make_solver`):

- ``classical-tv`` / ``classical-wiener``: coded deconvolution (TV or Wiener, unknown
  boundaries) with the motion estimated per frame. With the shipped learned motion model
  (:mod:`recon.motion`) the motion is a field: each distinct motion found in the frame (the
  background's, each moving object's, "still") is deconvolved on its own and the frames are
  composited by where each motion was found (``layers``); without it, the spectral search of
  :mod:`recon.velocity` gives one global velocity.
- ``gap-tv`` / ``admm-tv``: per-pixel (DMD) captures.
- ``learned``: the shipped CodeVideoNet (:mod:`recon.engine`), when one ships.

New solvers subclass :class:`Reconstructor` and are added with :func:`register`; the contract test
(``tests/recon/test_solvers.py``) runs every registered name through the interface.
"""

from __future__ import annotations

import dataclasses
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from recon.operators import CodedExposure
from recon.psf_deconv import check_saturated

__all__ = [
    "Reconstruction",
    "Reconstructor",
    "SOLVERS",
    "SolverError",
    "default_global_solver",
    "equal_times",
    "make_solver",
    "register",
    "solver_for",
    "solver_names",
]


class SolverError(ValueError):
    """A solver cannot reconstruct this capture (wrong kind of physics, bad times...)."""


@dataclass(frozen=True)
class Reconstruction:
    """What a solver returns for one coded frame.

    Attributes:
        frames: the latent frames ``(T, H, W)`` float32, in the units of ``y``.
        times: the frame times as fractions of the exposure ``(T,)``.
        velocity: the global velocity used ``(dx, dy)`` in pixels per exposure, if any.
        motion: the motion field ``(2, th, tw)`` (pixels per exposure per tile), if estimated.
        motion_tile_px: the side of one motion tile in frame pixels.
        diagnostics: per-frame scalars worth recording (motion source, layers, timings...).
    """

    frames: Tensor
    times: Tensor
    velocity: tuple[float, float] | None = None
    motion: Tensor | None = None
    motion_tile_px: int | None = None
    diagnostics: dict[str, float | str] = field(default_factory=dict)


def equal_times(n: int) -> Tensor:
    """Centres of ``n`` equal parts of the exposure, as fractions ``(n,)``.

    >>> equal_times(4).tolist()
    [0.125, 0.375, 0.625, 0.875]
    """
    if n < 1:
        raise SolverError(f"The number of output frames must be >= 1; got {n}.")
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n


def _check_times(times: Tensor | Sequence[float]) -> Tensor:
    t = torch.as_tensor(times, dtype=torch.float64).flatten()
    if t.numel() == 0 or not bool(((t >= 0) & (t <= 1)).all()):
        raise SolverError(f"Frame times must be fractions of the exposure in [0, 1]; got "
                          f"{t.tolist()!r}.")
    return t


class Reconstructor(ABC):
    """A reconstruction method. Subclasses set :attr:`name` and implement :meth:`accepts` and
    :meth:`_solve`; :meth:`reconstruct` checks its arguments and times the call."""

    name: str = ""
    #: the method recorded in reconstruction files.
    method_label: str = ""

    @abstractmethod
    def accepts(self, physics: CodedExposure) -> tuple[bool, str]:
        """Whether this solver can reconstruct captures with ``physics``, and why not."""

    @abstractmethod
    def _solve(self, y: Tensor, physics: CodedExposure, times: Tensor,
               saturated: Tensor | None) -> Reconstruction:
        """Reconstruct one frame (arguments already checked; ``saturated`` is None when no
        pixel is clipped)."""

    def clip_aware(self) -> bool:
        """Whether :meth:`_solve` leaves saturated pixels out of its data term."""
        return False

    def begin_sequence(self) -> None:
        """The frames that follow are consecutive exposures of one capture, in order (a solver
        may use the earlier frames' answers); until this is called, every frame is independent.
        Call it again at the start of each capture."""
        return None  # solvers without memory of earlier frames

    def parameters(self, frame_shape: tuple[int, int] | None = None) -> dict[str, Any]:
        """The settings to record in a reconstruction file (of frames of ``frame_shape``)."""
        return {"solver": self.name}

    def reconstruct(self, y: Tensor, physics: CodedExposure,
                    times: Tensor | Sequence[float] | None = None, *,
                    saturated: Tensor | None = None) -> Reconstruction:
        """Frames at ``times`` (fractions of the exposure; default one per chip) from one coded
        frame ``y`` ``(H, W)`` in units of the full scale (dark-subtracted).

        ``saturated`` (bool ``(H, W)``) marks clipped pixels: a clip-aware solver
        (:meth:`clip_aware`) gives them no weight in its data term; every solver records their
        share (``saturated_fraction``) and whether it left them out (``clip_aware``).

        Raises:
            SolverError: the physics does not suit this solver, a bad frame, mask or times.
        """
        if not isinstance(y, Tensor) or y.dim() != 2 or not y.is_floating_point():
            raise SolverError(f"y must be one floating-point (H, W) frame; got "
                              f"{getattr(y, 'shape', type(y))}.")
        ok, why = self.accepts(physics)
        if not ok:
            raise SolverError(f"{self.name} cannot reconstruct this capture: {why}")
        t = equal_times(physics.n_chips) if times is None else _check_times(times)
        if saturated is not None and not isinstance(saturated, Tensor):
            raise SolverError(f"saturated must be a bool mask tensor; got {type(saturated)}.")
        try:
            saturated = check_saturated(saturated, y)  # None when no pixel is clipped
        except ValueError as e:
            raise SolverError(str(e)) from e
        share = 0.0 if saturated is None else float(saturated.float().mean())
        t0 = time.perf_counter()
        out = self._solve(y, physics, t, saturated)
        out.diagnostics.setdefault("seconds", time.perf_counter() - t0)
        out.diagnostics["saturated_fraction"] = share
        # a frame returned as it is (uniform) weighs no pixel: nothing was left out
        out.diagnostics["clip_aware"] = float(
            share > 0 and self.clip_aware() and "uniform" not in str(out.diagnostics.get("note")))
        return out


#: name -> factory(**options) of every registered solver.
SOLVERS: dict[str, Callable[..., Reconstructor]] = {}


def register(name: str) -> Callable[[Callable[..., Reconstructor]], Callable[..., Reconstructor]]:
    """Class decorator: make a solver available under ``name``."""
    def deco(cls: Callable[..., Reconstructor]) -> Callable[..., Reconstructor]:
        SOLVERS[name] = cls
        return cls
    return deco


def solver_names() -> tuple[str, ...]:
    """The registered names."""
    return tuple(SOLVERS)


def make_solver(name: str, **options: Any) -> Reconstructor:
    """The solver registered as ``name``, built with ``options``.

    Raises:
        SolverError: unknown name (the sentence lists the known ones) or bad options.
    """
    if name not in SOLVERS:
        raise SolverError(f"Unknown solver {name!r}; choose one of {', '.join(SOLVERS)}.")
    try:
        return SOLVERS[name](**options)
    except TypeError as e:
        raise SolverError(f"Bad options for solver {name!r}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Classical global-code solvers
# ---------------------------------------------------------------------------------------------


_MOTION_CACHE: dict[str, Any] = {}

#: ``motion="auto"``: below this frame-read-out probability the learned motion is not trusted
#: and :data:`FALLBACK` decides instead. Chosen on the *val* split, never on the test photos
#: (``python -m recon.evaluate_motion --tune-fallback`` -> docs/motion_fallback.md): the pair with
#: the highest mean PSNR among those that keep every stratum within 0.3 dB of doing nothing (B0).
#: Without a fallback the val still scenes lost 1.8 dB to B0 (a confident-looking wrong motion
#: costs far more than none); with "still" below 0.6 they gain 0.85 dB over B0, pans keep
#: +3.9 dB over B0 (2.4 dB less than with no fallback), the mean is 0.15 dB lower.
FALLBACK_BELOW = 0.6
#: What an unsure frame gets: ``"still"`` (no motion: the frame is only denoised, never worse
#: than doing nothing), ``"spectral"`` (the spectral search's velocity for the background; no
#: threshold of it kept the still scenes near B0) or ``"verified"`` (the learned motion where the
#: spectral search agrees with it, else still; on val no better than "still" on pans, worse on
#: objects).
FALLBACK = "still"
FALLBACKS = ("still", "spectral", "verified")


def _shipped_scorer() -> Any:
    """The shipped motion scorer, its config and card (loaded once), or None when none ships."""
    if "scorer" not in _MOTION_CACHE:
        from recon.motion import load_motion_model, shipped_motion_model

        _MOTION_CACHE["scorer"] = (load_motion_model() if shipped_motion_model() is not None
                                   else None)
    return _MOTION_CACHE["scorer"]


def _shipped_refiner() -> Any:
    """The shipped non-blind refiner and its card (loaded once, on the CPU)."""
    if "refiner" not in _MOTION_CACHE:
        from recon.refiner import load_refiner

        _MOTION_CACHE["refiner"] = load_refiner()
    return _MOTION_CACHE["refiner"]


class ClassicalGlobal(Reconstructor):
    """Coded deconvolution for global codes, motion estimated per frame (or given).

    Args:
        method: ``"tv"``, ``"wiener"`` or ``"refined"`` (closed-form Wiener and the shipped
            non-blind refiner of :mod:`recon.refiner`: faster than TV, and sharper where the
            refiner was trained).
        motion: ``"auto"`` (the learned estimator when its model ships; a frame whose learned
            answer is unsure, see ``fallback_below``, gets ``fallback`` unless it agrees with
            the trusted frame before it in a sequence, :meth:`begin_sequence`; the spectral
            search alone when no model ships), ``"learned"`` (the learned estimator only) or
            ``"spectral"``.
        fallback_below: with ``motion="auto"``, frames whose learned global probability is
            below this are unsure (:data:`FALLBACK_BELOW`).
        fallback: what an unsure frame gets, ``"still"``, ``"spectral"`` or ``"verified"`` (the
            learned motion if the spectral search agrees with it, else still) (:data:`FALLBACK`).
        velocity: a known global velocity ``(dx, dy)`` in pixels per exposure (no estimation).
        max_px: the largest motion to search, pixels per exposure (capped at half the frame).
        layers: with the learned estimator, deconvolve each distinct motion of the frame on its
            own and composite (else one global velocity).
        max_layers: the most distinct motions per frame.
        iters: deconvolution iterations (default: :func:`reconstruct_global`'s).
        fast: for live preview: closed-form Wiener deconvolution with a tapered border (one FFT
            pass instead of an iterative solve) and the learned motion without the full-resolution
            refinement.
        device: where the motion estimator runs.
    """

    def __init__(self, method: str = "tv", *, motion: str = "auto",
                 velocity: Sequence[float] | None = None, max_px: float = 48.0,
                 layers: bool = True, max_layers: int = 3, iters: int | None = None,
                 fast: bool = False, device: str | torch.device = "cpu",
                 fallback_below: float | None = None, fallback: str | None = None) -> None:
        if method not in ("tv", "wiener", "refined"):
            raise SolverError(f"method must be 'tv', 'wiener' or 'refined'; got {method!r}.")
        if method == "refined":
            from recon.refiner import RefinerModelError

            try:
                _shipped_refiner()
            except RefinerModelError as e:
                raise SolverError(str(e)) from e
        if motion not in ("auto", "learned", "spectral"):
            raise SolverError(f"motion must be 'auto', 'learned' or 'spectral'; got {motion!r}.")
        if motion == "learned" and _shipped_scorer() is None:
            from recon.motion import MotionModelError, load_motion_model

            try:
                load_motion_model()
            except MotionModelError as e:
                raise SolverError(str(e)) from e
        self.method = method
        self.name = "refined" if method == "refined" else f"classical-{method}"
        self.method_label = ("coded-deconvolution-refined" if method == "refined" else
                             "classical-coded-deconvolution")
        self.motion = motion
        self.velocity = None if velocity is None else (float(velocity[0]), float(velocity[1]))
        self.max_px = float(max_px)
        self.layers = bool(layers)
        self.max_layers = int(max_layers)
        self.iters = iters
        self.fast = bool(fast)
        self.device = torch.device(device)
        self.fallback_below = FALLBACK_BELOW if fallback_below is None else float(fallback_below)
        self.fallback = FALLBACK if fallback is None else str(fallback)
        if self.fallback not in FALLBACKS:
            raise SolverError(f"fallback must be one of {FALLBACKS}; got {fallback!r}.")
        self._estimators: dict[tuple[Any, ...], Any] = {}
        #: within a sequence (:meth:`begin_sequence`): the last frame's trusted background
        #: velocity, or None
        self._sequence: dict[str, Any] | None = None

    def begin_sequence(self) -> None:
        self._sequence = {"velocity": None}

    def accepts(self, physics: CodedExposure) -> tuple[bool, str]:
        if physics.per_pixel:
            return False, ("it is coded per pixel (DMD masks); use gap-tv or admm-tv.")
        return True, ""

    def uses_learned_motion(self) -> bool:
        """Whether motion comes from the learned estimator."""
        return self.velocity is None and self.motion in ("auto", "learned") and (
            _shipped_scorer() is not None)

    def parameters(self, frame_shape: tuple[int, int] | None = None) -> dict[str, Any]:
        src = ("given" if self.velocity is not None else
               "learned field (recon/motion.py)" if self.uses_learned_motion() else
               "spectral search (recon/velocity.py)")
        p: dict[str, Any] = {"solver": self.name, "motion": src, "max_blur_px": self.max_px,
                             "layers": self.layers and self.uses_learned_motion()}
        if self.method == "refined":
            p["refiner_sha256"] = _shipped_refiner()[1]["sha256"]
        if self.velocity is not None:
            p["velocity"] = f"given ({self.velocity[0]:g}, {self.velocity[1]:g}) px per exposure"
        if self.uses_learned_motion():
            scorer, cfg, card = _shipped_scorer()
            p["motion_model_sha256"] = card["sha256"]
            if frame_shape is not None:
                from recon.motion import MotionEstimator

                f = MotionEstimator.scale(cfg, min(self.max_px, min(frame_shape) / 2 - 1),
                                          frame_shape)
                p["motion_tile_px"] = cfg.tile * f
        return p

    def _estimator(self, physics: CodedExposure) -> Any:
        from recon.motion import MotionEstimator

        key = (physics.code, tuple(physics.time_weights.tolist()))
        if key not in self._estimators:
            scorer, cfg, _ = _shipped_scorer()
            self._estimators[key] = MotionEstimator(scorer, cfg, physics.time_weights,
                                                    n_chips=physics.n_chips, device=self.device)
        return self._estimators[key]

    def clip_aware(self) -> bool:
        # TV and the solved Wiener leave clipped pixels out; the closed-form paths cannot
        return self.method != "refined" and not self.fast

    def _solve(self, y: Tensor, physics: CodedExposure, times: Tensor,
               saturated: Tensor | None) -> Reconstruction:
        from recon.classical import reconstruct_global

        bits = physics.code if physics.code is not None else tuple(
            int(b) for b in physics.bits.tolist())  # type: ignore[union-attr]
        w = physics.time_weights
        s = physics.sub_steps
        bound = float(min(self.max_px, min(y.shape) / 2 - 1))
        slot = 1.0 / len(times)
        yf = y.float()  # float32, as batch reconstruction always ran (float64 took twice as long)
        diag: dict[str, float | str] = {}
        # the trusted velocity of the frame just before (a sequence); cleared here, so a frame
        # that does not set it (uniform, spectral) breaks the chain
        before = None
        if self._sequence is not None:
            before, self._sequence["velocity"] = self._sequence["velocity"], None
        if not bool(torch.isfinite(yf).all()):
            raise SolverError("The frame holds NaN or infinite values; check the capture and its "
                              "calibration (a dark frame or flat field with zeros?).")
        span = float(yf.max() - yf.min())
        if span <= 1e-6 * max(1.0, float(yf.abs().max())):
            return self._uniform_frame(yf, physics, times, bound, diag)
        if self.velocity is None and self.uses_learned_motion():
            return self._learned_motion(y, yf, bits, physics, times, bound, slot, saturated,
                                        before, diag)
        diag["motion"] = "given" if self.velocity is not None else "spectral"
        if self.method == "refined":
            from recon.velocity import estimate_velocity

            vel = self.velocity or tuple(float(c) for c in estimate_velocity(
                yf, bits, max_px=bound, sub_steps=s, weights=w).velocity)
            frames = (yf.expand(len(times), *yf.shape).clone() if math.hypot(*vel) < 0.5 else
                      self._one_motion(yf, bits, physics, times, slot, saturated)(vel))
            return Reconstruction(frames=frames.float(), times=times,
                                  velocity=(float(vel[0]), float(vel[1])), diagnostics=diag)
        res = reconstruct_global(yf, bits, times=times, frame_exposure=slot, sub_steps=s,
                                 weights=w, velocity=self.velocity, max_px=bound,
                                 method=self.method, iters=self.iters, saturated=saturated)
        return Reconstruction(frames=res.frames.float(), times=times, velocity=res.velocity,
                              diagnostics=diag)

    def _uniform_frame(self, yf: Tensor, physics: CodedExposure, times: Tensor, bound: float,
                       diag: dict[str, float | str]) -> Reconstruction:
        """A uniform frame (all dark, all saturated) carries no motion: it is its own video
        (with a zero motion field where the learned estimator would have given one)."""
        diag["note"] = "uniform frame: reconstructed as itself"
        diag["motion_confidence"] = 1.0
        field = None
        if self.velocity is None and self.uses_learned_motion():
            est = self._estimator(physics)
            f = est.scale(est.config, bound, (int(yf.shape[0]), int(yf.shape[1])))
            t = est.config.tile
            field = torch.zeros(2, (yf.shape[0] // f) // t, (yf.shape[1] // f) // t)
            diag["motion"] = "learned"
        return Reconstruction(frames=yf.expand(len(times), *yf.shape).clone(), times=times,
                              velocity=(0.0, 0.0), motion=field,
                              motion_tile_px=None if field is None else t * f,
                              diagnostics=diag)

    def _learned_motion(self, y: Tensor, yf: Tensor, bits: tuple[int, ...],
                        physics: CodedExposure, times: Tensor, bound: float, slot: float,
                        saturated: Tensor | None, before: tuple[float, float] | None,
                        diag: dict[str, float | str]) -> Reconstruction:
        """Motion from the learned estimator (an unsure frame gets the fallback unless it
        agrees with ``before``, the trusted velocity of the frame before), then one
        deconvolution or one per distinct motion (layers)."""
        w = physics.time_weights
        s = physics.sub_steps
        t0 = time.perf_counter()
        est = self._estimator(physics).estimate(y, bound, refine=not self.fast)
        diag["motion_seconds"] = time.perf_counter() - t0
        diag["motion"] = "learned"
        diag["motion_confidence"] = est.global_probability
        diag["motion_fallback"] = 0.0
        # not on the live path (fast): the threshold was tuned on the full path, and the
        # preview's reduced frames are unsure more often (a 12-20 px pan at 128 px: p < 0.6)
        unsure = (self.motion == "auto" and not self.fast
                  and est.global_probability < self.fallback_below)
        if unsure and before is not None and same_motion(est.velocity, before):
            # unsure alone, but the frame before (a trusted answer one exposure earlier)
            # moved the same way: two frames agreeing is the corroboration it lacked
            unsure = False
            diag["motion"] = "learned, unsure, agrees with the frame before"
        if unsure and self.fallback == "verified":
            # a second, independent estimator: the spectral search agreeing with the learned
            # velocity is the corroboration the read-out lacked; otherwise the frame is still
            from recon.velocity import estimate_velocity

            sv = estimate_velocity(yf, bits, max_px=bound, sub_steps=s, weights=w).velocity
            diag["motion_seconds"] = time.perf_counter() - t0
            if same_motion(est.velocity, (float(sv[0]), float(sv[1]))):
                unsure = False
                diag["motion"] = "learned, unsure, the spectral search agrees"
        if self._sequence is not None:
            self._sequence["velocity"] = None if unsure else est.velocity
        if unsure:
            diag["motion_fallback"] = 1.0
            if self.fallback in ("still", "verified"):
                # the frame read-out is unsure (its misses are diffuse, and a wrong motion
                # costs far more than none): treat the frame as still, one layer
                diag["motion"] = "learned, unsure: still"
                diag["layers"] = 1.0
                one = self._one_motion(yf, bits, physics, times, slot, saturated)
                return Reconstruction(
                    frames=one((0.0, 0.0)).float(), times=times, velocity=(0.0, 0.0),
                    motion=torch.zeros_like(est.field), motion_tile_px=est.tile_px,
                    diagnostics=diag)
            # the background's velocity comes from the spectral search; the field stays
            # the learned one
            from recon.velocity import estimate_velocity

            sv = estimate_velocity(yf, bits, max_px=bound, sub_steps=s, weights=w).velocity
            est = dataclasses.replace(est, velocity=(float(sv[0]), float(sv[1])))
            diag["motion"] = "learned field, spectral velocity"
            diag["motion_seconds"] = time.perf_counter() - t0
        vel = est.velocity
        cands = _layer_candidates(est, self.max_layers) if self.layers else [vel]
        one = self._one_motion(yf, bits, physics, times, slot, saturated)
        if len(cands) > 1 or self.fast:
            frames, used = _layered(yf, est, cands, times, slot, one, fast=self.fast)
            diag["layers"] = float(len(used))
            diag["layer_velocities"] = "; ".join(f"({a:.2f}, {b:.2f})" for a, b in used)
            return Reconstruction(frames=frames.float(), times=times, velocity=vel,
                                  motion=est.field, motion_tile_px=est.tile_px,
                                  diagnostics=diag)
        # "still" (zero velocity) is deconvolved too: with no blur TV only denoises, which
        # measured 0.5 dB better on still scenes than returning the coded frame (B0) as is
        diag["layers"] = 1.0
        return Reconstruction(frames=one(vel).float(), times=times, velocity=vel,
                              motion=est.field, motion_tile_px=est.tile_px, diagnostics=diag)

    def _one_motion(self, y: Tensor, bits: tuple[int, ...], physics: CodedExposure,
                    times: Tensor, slot: float, saturated: Tensor | None = None
                    ) -> Callable[[tuple[float, float]], Tensor]:
        """The frames ``(T, H, W)`` of the whole frame moving at one velocity: this solver's
        deconvolution (TV or Wiener on an extended domain; for ``fast``, closed-form Wiener; for
        ``refined``, closed-form Wiener and the shipped refiner), rendered along it."""
        w = physics.time_weights
        if self.fast:
            return lambda v: _fast_frames(y, w, v, times, slot)
        if self.method == "refined":
            from recon.refiner import refine_frames

            model = _shipped_refiner()[0]
            return lambda v: refine_frames(model, y, w, v, times, slot)

        def deconvolve(v: tuple[float, float]) -> Tensor:
            from recon.classical import reconstruct_global

            return reconstruct_global(y, bits, times=times, frame_exposure=slot,
                                      sub_steps=physics.sub_steps, weights=w, velocity=v,
                                      method=self.method, iters=self.iters,
                                      saturated=saturated).frames
        return deconvolve


def same_motion(v: tuple[float, float], ref: tuple[float, float]) -> bool:
    """Whether two background velocities (pixels per exposure) are the same motion: within 2 px
    plus 10 % of the reference's length (consecutive exposures of one capture, or two
    estimators of one frame)."""
    return math.hypot(v[0] - ref[0], v[1] - ref[1]) <= 2.0 + 0.1 * math.hypot(*ref)


def _layer_candidates(est: Any, max_layers: int, min_share: float = 0.03) -> list[tuple[float,
                                                                                     float]]:
    """Distinct motions of a frame: the global velocity first, then each motion that holds at
    least ``min_share`` of the tiles' probability once the earlier ones are explained, and most
    of the probability of at least one tile (a small object is a few tiles). A later
    motion is the mean of the per-tile (soft-argmax) velocities of the tiles it dominates, so it
    is finer than the bank's step."""
    cands = [est.velocity]
    left = est.tile_prob.clone()
    r = 1.5 * est.scale
    for _ in range(max_layers - 1):
        for c in cands:
            near = ((est.bank - torch.tensor(c, dtype=est.bank.dtype)).norm(dim=1) <= r)
            left[near] = 0.0
        share = left.mean(dim=(-2, -1))
        j = int(share.argmax())
        if float(share[j]) < min_share:
            break
        c = (float(est.bank[j, 0]), float(est.bank[j, 1]))
        mass = est.mass_near(c)
        if float(mass.max()) < 0.5:
            break
        close = ((est.field - torch.tensor(c).view(2, 1, 1)).norm(dim=0) <= r) & (mass > 0.3)
        if bool(close.any()):
            wts = mass * close
            c = (float((est.field[0] * wts).sum() / wts.sum()),
                 float((est.field[1] * wts).sum() / wts.sum()))
        cands.append(c)
    return cands


def _fast_frames(y: Tensor, w: Tensor, v: tuple[float, float], times: Tensor,
                 slot: float) -> Tensor:
    """Closed-form Wiener deconvolution (tapered border) rendered along ``v``: the live path."""
    from recon.classical import motion_psf, render_frames, wiener_deconvolve
    from recon.motion import estimate_noise_sigma

    psf = motion_psf(w, v, dtype=y.dtype)
    sigma = estimate_noise_sigma(y)
    gx, gy = y.diff(dim=1), y.diff(dim=0)
    grad_e = float(gx.square().mean() + gy.square().mean())
    nsr = max(3 * sigma**2 / max(grad_e, 1e-10), 1e-5)
    sharp = wiener_deconvolve(y, psf, nsr, boundary="taper")
    return render_frames(sharp, v, times=times, frame_exposure=slot)


def shift_frames(x: Tensor, v: tuple[float, float], times: Tensor) -> Tensor:
    """``x`` moved by ``(t - 1/2) * v`` to each time (bilinear, border values beyond the edge):
    frames ``(T, H, W)``. For smooth images only (the layer masks): no motion blur within a
    frame's window."""
    h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype),
                            indexing="ij")
    d = (times.to(x.dtype) - 0.5).view(-1, 1, 1)
    gx = (xs - d * v[0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys - d * v[1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # (T, H, W, 2)
    src = x.expand(len(times), 1, h, w)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)[:, 0]


def _layered(y: Tensor, est: Any, cands: list[tuple[float, float]], times: Tensor, slot: float,
             one_motion: Callable[[tuple[float, float]], Tensor], fast: bool = False
             ) -> tuple[Tensor, list[tuple[float, float]]]:
    """Deconvolve the frame once per motion and composite by where each motion holds.

    Each motion's share of every tile (probability within 1.5 bank steps, normalised over the
    motions) is upsampled to pixels and carried along that motion to each frame time, so a
    moving object's region moves with it (``fast``: moved without the blur of each frame's
    window, which a share map upsampled from tiles does not need: the live path).
    """
    from recon.classical import render_frames

    h, wd = y.shape
    if len(cands) == 1:  # one motion holds everywhere: no compositing
        v = cands[0] if math.hypot(*cands[0]) >= 0.5 else (0.0, 0.0)
        return (one_motion(v) if v != (0.0, 0.0) else
                y.unsqueeze(0).expand(len(times), h, wd).clone()), [v]
    masses = torch.stack([est.mass_near(c) for c in cands])  # (M, th, tw)
    masses = masses + 1e-3
    masses[0] += 1e-2  # ties go to the global motion
    share = masses / masses.sum(0, keepdim=True)
    th, tw = share.shape[-2:]
    tp = est.tile_px
    # tile (i, j) covers rows i*tp..; pixels beyond the last full tile take the nearest tile
    full = F.interpolate(share[None], size=(th * tp, tw * tp), mode="bilinear",
                         align_corners=False)[0]
    full = F.pad(full, (0, max(0, wd - tw * tp), 0, max(0, h - th * tp)), mode="replicate")
    full = full[:, :h, :wd].to(y.dtype)
    frames = torch.zeros(len(times), h, wd, dtype=y.dtype)
    weight = torch.zeros_like(frames)
    used = []
    for m, v in enumerate(cands):
        if math.hypot(*v) < 0.5:
            layer = y.unsqueeze(0).expand(len(times), h, wd)
            mask_t = full[m].unsqueeze(0).expand(len(times), h, wd)
            v = (0.0, 0.0)
        else:
            layer = one_motion(v)
            mask_t = (shift_frames(full[m], v, times) if fast else
                      render_frames(full[m], v, times=times, frame_exposure=slot))
        frames += layer * mask_t
        weight += mask_t
        used.append(v)
    return frames / weight.clamp(min=1e-6), used


register("classical-tv")(lambda **kw: ClassicalGlobal("tv", **kw))
register("classical-wiener")(lambda **kw: ClassicalGlobal("wiener", **kw))
register("refined")(lambda **kw: ClassicalGlobal("refined", **kw))


# ---------------------------------------------------------------------------------------------
# Per-pixel (DMD) solvers
# ---------------------------------------------------------------------------------------------


class PerPixel(Reconstructor):
    """GAP-TV or ADMM-TV on per-pixel coded captures (:mod:`recon.gap`); one frame per pattern.

    Args:
        solver: ``"gap-tv"`` or ``"admm-tv"``.
        options: passed to the solver function (iterations, TV weight...).
    """

    def __init__(self, solver: str = "gap-tv", **options: Any) -> None:
        from recon.gap import PER_PIXEL_SOLVERS

        if solver not in PER_PIXEL_SOLVERS:
            raise SolverError(f"Unknown per-pixel solver {solver!r}; choose one of "
                              f"{', '.join(PER_PIXEL_SOLVERS)}.")
        import inspect

        try:
            inspect.signature(PER_PIXEL_SOLVERS[solver]).bind(None, None, **options)
        except TypeError as e:
            raise SolverError(f"Bad options for solver {solver!r}: {e}") from e
        self.name = solver
        self.method_label = f"{solver}-per-pixel"
        self.options = options

    def accepts(self, physics: CodedExposure) -> tuple[bool, str]:
        if not physics.per_pixel:
            return False, ("it has one global code; a static video explains a globally coded "
                           "frame exactly, so a per-pixel solver cannot recover motion. Use "
                           "classical-tv.")
        return True, ""

    def _solve(self, y: Tensor, physics: CodedExposure, times: Tensor,
               saturated: Tensor | None) -> Reconstruction:
        from recon.gap import per_pixel_solve

        k = physics.n_chips
        if not torch.allclose(times, equal_times(k)):
            raise SolverError(f"A per-pixel capture gives one frame per pattern ({k}); other "
                              "frame times are not possible.")
        if tuple(y.shape) != physics.frame_shape:
            raise SolverError(f"The frame is {tuple(y.shape)} but the masks are "
                              f"{physics.frame_shape}.")
        wts = physics.weights.to(y.device)
        video = per_pixel_solve(self.name, y.float(), wts, **self.options)
        return Reconstruction(frames=video.float(), times=times)


register("gap-tv")(lambda **kw: PerPixel("gap-tv", **kw))
register("admm-tv")(lambda **kw: PerPixel("admm-tv", **kw))


# ---------------------------------------------------------------------------------------------
# The learned video model
# ---------------------------------------------------------------------------------------------


class LearnedVideo(Reconstructor):
    """A shipped CodeVideoNet (:class:`recon.engine.LearnedEngine`).

    Args:
        model: a shipped model name or a model card path.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        force: accept codes outside the model's family.

    Raises:
        SolverError: no such model, or its file does not match its card.
    """

    name = "learned"
    method_label = "learned-codevideonet"

    def __init__(self, model: str = "tiny", *, device: str = "auto", force: bool = False,
                 engine: Any = None) -> None:
        from recon.engine import LearnedEngine, ModelFileError

        try:
            self.engine = engine if engine is not None else LearnedEngine(model, device=device)
        except ModelFileError as e:
            raise SolverError(str(e)) from e
        self.force = force

    def accepts(self, physics: CodedExposure) -> tuple[bool, str]:
        if physics.per_pixel:
            return False, "it is coded per pixel (DMD masks); the learned model takes global codes."
        ok, why = self.engine.accepts(physics.code or ())
        return (True, "") if ok or self.force else (False, why)

    def parameters(self, frame_shape: tuple[int, int] | None = None) -> dict[str, Any]:
        return {"solver": self.name, "model": self.engine.name,
                "model_sha256": str(self.engine.card.get("sha256", ""))}

    def _solve(self, y: Tensor, physics: CodedExposure, times: Tensor,
               saturated: Tensor | None) -> Reconstruction:
        frames = self.engine.reconstruct(y.float().cpu(), physics.code, times=times.float())
        return Reconstruction(frames=frames.float(), times=times)


register("learned")(LearnedVideo)


def default_global_solver() -> str:
    """The deconvolution a global-code capture gets by default: ``"refined"`` when the refiner
    ships (closed-form Wiener + the learned non-blind refiner), else ``"tv"``."""
    from recon.refiner import shipped_refiner

    return "refined" if shipped_refiner() is not None else "tv"


def solver_for(physics: CodedExposure, method: str = "auto", *, solver: str = "auto",
               per_pixel_solver: str = "gap-tv", model: str = "tiny", device: str = "auto",
               force: bool = False, velocity: Sequence[float] | None = None,
               max_px: float = 48.0, motion: str = "auto") -> Reconstructor:
    """The solver a capture gets: the policy of batch reconstruction, live preview and the demo.

    Per-pixel captures get ``per_pixel_solver``. Otherwise ``method="learned"`` takes the shipped
    video model ``model`` (refusing a code outside its family unless ``force``), ``"auto"`` takes
    it when it ships and accepts the code, and everything else is ``classical-<solver>`` (or
    ``refined``) with the motion from ``motion`` (``"auto"``: the learned motion model when it
    ships); ``solver="auto"`` is :func:`default_global_solver`.

    Raises:
        SolverError: an unknown method, a learned model that is missing or refuses the code.
    """
    if method not in ("auto", "learned", "classical"):
        raise SolverError(f"Unknown reconstruction method {method!r}; choose auto, learned or "
                          "classical.")
    if physics.per_pixel:
        if method == "learned":
            raise SolverError("The capture is coded per pixel (DMD masks); the learned model "
                              "takes global codes. Use --method classical (GAP-TV or ADMM-TV, "
                              "--per-pixel-solver).")
        return make_solver(per_pixel_solver)
    if method in ("auto", "learned"):
        from recon.engine import shipped_models

        if method == "learned" or model in shipped_models():
            learned = LearnedVideo(model, device=device, force=force)
            ok, why = learned.accepts(physics)
            if ok:
                return learned
            if method == "learned":
                code = "".join(str(b) for b in physics.code or ())
                raise SolverError(
                    f"The learned model {learned.engine.name!r} was not trained for code {code}: "
                    f"{why}. Its results would be silently wrong; use --method classical, or "
                    "--force to try it anyway.")
    dev = "cpu" if device == "auto" and not torch.cuda.is_available() else (
        "cuda" if device == "auto" else device)
    if solver == "auto":
        solver = default_global_solver()
    return ClassicalGlobal(solver, motion=motion, velocity=velocity, max_px=max_px, device=dev)
