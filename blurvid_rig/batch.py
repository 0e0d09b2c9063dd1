"""Batch reconstruction of capture files: one ``.recon.h5`` per capture, with progress.

A file that cannot be read or reconstructed never stops the batch: its error is collected and
reported at the end (and the command exits non-zero). Raw captures are only ever opened for reading.

"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from blurvid_rig.corrections import Corrections, corrections_for
from blurvid_rig.export import contact_sheet, display_levels, save_png, save_video
from blurvid_rig.files.capture import CaptureFile, DamagedFrameError
from blurvid_rig.files.h5io import CaptureFormatError
from blurvid_rig.files.reconstruction import ReconFile, recon_path_for
from blurvid_rig.files.reconstruction_writer import ReconWriter
from calibration.model import Calibration
from hw.errors import RigError
from hw.optics import warp_masks
from recon.device import resolve_device
from recon.gap import PER_PIXEL_SOLVERS
from recon.operators import CodedExposure
from recon.solvers import Reconstruction, Reconstructor, SolverError, solver_for

log = logging.getLogger(__name__)

METHODS = ("auto", "learned", "classical")
MOTIONS = ("auto", "learned", "spectral")


@dataclass
class ReconOutcome:
    """What happened to one capture file."""

    source: Path
    output: Path | None = None
    exports: list[Path] = field(default_factory=list)
    n_frames: int = 0
    seconds: float = 0.0
    error: str = ""
    warnings: list[str] = field(default_factory=list)


def sensor_masks(capture: CaptureFile) -> np.ndarray | None:
    """A per-pixel capture's DMD masks warped onto its frames (transmittance per pixel and chip,
    ``(K, H, W)`` float32), through the recorded DMD -> sensor mapping and the ROI offset."""
    dmd = capture.dmd
    if not dmd:
        return None
    roi = capture.camera_settings.roi
    shift = np.array([[1.0, 0, -roi.offset_x], [0, 1.0, -roi.offset_y], [0, 0, 1.0]])
    return warp_masks(dmd["masks"], shift @ np.asarray(dmd["dmd_to_camera"], np.float64),
                      capture.frame_shape)


def output_times_s(chip_us: float, n_chips: int, n_out: int) -> np.ndarray:
    """Centre time (s) of each of ``n_out`` equal sub-intervals of the code period."""
    period_s = n_chips * chip_us * 1e-6
    return (np.arange(n_out) + 0.5) * period_s / n_out


def reconstruct_capture(
    path: Path, *, method: str = "auto", n_out: int | None = None, out_dir: Path | None = None,
    exports: Sequence[str] = (), device: str = "auto", overwrite: bool = False,
    max_blur_px: float = 48.0, solver: str = "auto", model: str = "tiny", force: bool = False,
    progress: Callable[[int, int], None] | None = None, calibration: Calibration | None = None,
    use_calibration: str = "auto", velocity: tuple[float, float] | None = None,
    calibration_max_age_days: float = 30.0, per_pixel_solver: str = "gap-tv",
    motion: str = "auto", float32: bool = False,
) -> ReconOutcome:  # fmt: skip
    """Reconstruct every coded frame of one capture into ``<stem>.recon.h5`` (and optional exports).

    ``method="learned"`` uses the shipped model ``model`` and refuses a capture whose code is
    outside the model's code family (``force`` overrides); ``"classical"`` is coded deconvolution
    with an estimated velocity; ``"auto"`` is learned when the model accepts the code, else
    classical.

    Calibration (:mod:`blurvid_rig.corrections`): ``calibration`` if given, else the one embedded
    in the capture: dark subtraction, flat division and, for the classical method, the measured
    effective code; ``use_calibration="none"`` subtracts only the black level. ``velocity``
    ``(dx, dy)`` (pixels per exposure), when the motion is known, replaces the classical method's
    per-frame estimate. A capture coded per pixel (DMD masks) is reconstructed with
    ``per_pixel_solver``: ``"gap-tv"`` (default) or ``"admm-tv"``. ``motion`` chooses the classical
    method's motion estimate: ``"auto"`` (the shipped learned motion model when there is one),
    ``"learned"`` or ``"spectral"``. The video is stored compactly (uint16 with a scale and
    offset, Bitshuffle+LZ4; :class:`ReconWriter`) unless ``float32``. ``solver`` is the
    global-code deconvolution: ``"tv"``, ``"wiener"``, ``"refined"`` or ``"auto"``
    (:func:`recon.solvers.default_global_solver`).

    The capture's physics (:meth:`recon.operators.CodedExposure.from_capture`) and its solver
    (:func:`recon.solvers.solver_for`) are built once; every frame then goes through
    ``solver.reconstruct(y, physics, times, saturated=...)`` (the pixels at the camera's
    saturation value), in order, after ``solver.begin_sequence()`` (consecutive exposures).

    Raises:
        CaptureFormatError: the capture is malformed.
        RigError: the output exists (without ``overwrite``) or reconstruction failed.
    """
    _check_choices(method, motion, per_pixel_solver)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    outcome = ReconOutcome(source=Path(path))
    with CaptureFile.open(path) as cap:
        masks = sensor_masks(cap)
        coded, k = _coded_frames(cap, path, n_out, masks is not None)
        dst = _output_path(path, out_dir, overwrite)
        nominal, rec = _solver(cap, masks, dev, method, max_blur_px, solver=solver,
                               per_pixel_solver=per_pixel_solver, model=model, device=device,
                               force=force, velocity=velocity, motion=motion)
        dst, final_dst = _fresh_destination(dst)
        # the effective code serves the classical global-code solver only
        use = "sensor" if use_calibration == "auto" and (
            masks is not None or rec.name == "learned") else use_calibration
        corr = corrections_for(cap, calibration, use, calibration_max_age_days)
        frames = _FrameSolver.for_capture(cap, rec, nominal, corr, k, dev, masks is not None)
        params = _parameters(rec, cap, k, corr, velocity, per_pixel=masks is not None)
        with ReconWriter(dst, time_s=frames.times_s, frame_shape=cap.frame_shape, source=cap,
                         method=rec.method_label, parameters=params, device=str(dev),
                         calibration_used=str(params["calibration"]),
                         full_scale=None if float32 else frames.full_scale) as writer:
            skipped, inputs, videos = _reconstruct_frames(
                cap, coded, frames, writer, outcome, progress)
            outcome.output = writer.close(
                f"source frames {', '.join(map(str, skipped))} could not be read (damaged data) "
                "and were skipped" if skipped else "")
        if dst != final_dst:
            outcome.output = dst.replace(final_dst)
        outcome.n_frames = len(coded) - len(skipped)
    if exports:
        outcome.exports = export_reconstruction(outcome.output, inputs, videos, exports)
    outcome.seconds = time.perf_counter() - t0
    return outcome


def _check_choices(method: str, motion: str, per_pixel_solver: str) -> None:
    if method not in METHODS:
        raise RigError(f"Unknown reconstruction method {method!r}; choose one of {METHODS}.")
    if motion not in MOTIONS:
        raise RigError(f"Unknown motion estimate {motion!r}; choose one of {MOTIONS}.")
    if per_pixel_solver not in PER_PIXEL_SOLVERS:
        raise RigError(f"Unknown per-pixel solver {per_pixel_solver!r}; choose one of "
                       f"{', '.join(PER_PIXEL_SOLVERS)}.")


def _coded_frames(
    cap: CaptureFile, path: Path, n_out: int | None, per_pixel: bool
) -> tuple[np.ndarray, int]:
    """The indices of the capture's coded frames, and the number of output frames per frame."""
    code = cap.code
    coded = np.flatnonzero(np.asarray(cap.image_key) == 0)
    if len(coded) == 0:
        raise CaptureFormatError(f"{path} holds no coded frames (only calibration frames).")
    k = code.n_chips if n_out is None else int(n_out)
    if k < 1:
        raise RigError(f"The number of output frames must be >= 1, got {k}.")
    if per_pixel and k != code.n_chips:
        raise RigError(
            f"A per-pixel capture gives one frame per pattern ({code.n_chips}); "
            f"--frames {k} is not possible."
        )
    return coded, k


def _solver(
    cap: CaptureFile, masks: np.ndarray | None, dev: torch.device, method: str,
    max_blur_px: float, **options: Any,
) -> tuple[CodedExposure, Reconstructor]:  # fmt: skip
    """The capture's nominal physics and its solver (built first: a refused learned model must
    not cost a calibration check)."""
    code = cap.code
    h, w = cap.frame_shape
    max_px = float(min(max_blur_px, min(h, w) / 2))
    try:
        nominal = CodedExposure.from_capture(code.bits, chip_us=code.chip_us, masks=masks,
                                             device=dev if masks is not None else None)
        rec = solver_for(nominal, method, max_px=max_px, **options)
    except SolverError as e:
        raise RigError(str(e)) from e
    return nominal, rec


def _output_path(path: Path, out_dir: Path | None, overwrite: bool) -> Path:
    """Where the reconstruction of ``path`` goes; refused when it (or a half-written one) is
    there already, unless ``overwrite``."""
    dst = recon_path_for(path) if out_dir is None else Path(out_dir) / recon_path_for(path).name
    stale = Path(str(dst) + ".partial")
    if (dst.exists() or stale.exists()) and not overwrite:
        what = (
            "already exists" if dst.exists() else "was left half-written by an interrupted run"
        )
        raise RigError(f"{dst} {what}; pass --overwrite to replace it.")
    return dst


def _fresh_destination(dst: Path) -> tuple[Path, Path]:
    """``(file to write, final name)``: a half-written leftover goes; with --overwrite the old
    result stays (the new one is written beside it and renamed once complete)."""
    Path(str(dst) + ".partial").unlink(missing_ok=True)
    final_dst = dst
    if dst.exists():
        dst = dst.with_name(dst.name.removesuffix(".recon.h5") + ".new.recon.h5")
        Path(str(dst) + ".partial").unlink(missing_ok=True)
        dst.unlink(missing_ok=True)
    return dst, final_dst


def _parameters(
    rec: Reconstructor, cap: CaptureFile, k: int, corr: Corrections,
    velocity: tuple[float, float] | None, *, per_pixel: bool,
) -> dict[str, Any]:  # fmt: skip
    """The reconstruction parameters recorded in the file."""
    learned = rec.name == "learned"
    params = {**rec.parameters(cap.frame_shape), "n_out": k}
    if per_pixel:
        params["masks_sha256"] = str(cap.dmd.get("masks_sha256", ""))
    elif not learned:
        params["velocity"] = (
            "estimated per frame" if velocity is None
            else f"given ({velocity[0]:g}, {velocity[1]:g}) px per exposure")
    params["calibration"] = corr.used + (
        " (the learned model uses the nominal code)" if learned else "")
    params["calibration_warnings"] = "; ".join(corr.warnings)
    return params


@dataclass
class _FrameSolver:
    """One capture's solver, physics and corrections: a raw frame in, its video out."""

    rec: Reconstructor
    physics: CodedExposure
    corr: Corrections
    times_s: np.ndarray  # centre time of each output frame
    fractions: torch.Tensor  # the same as fractions of the code period
    saturation_dn: float
    device: torch.device | None  # where a per-pixel solver wants its input (None: as is)
    per_pixel: bool

    @classmethod
    def for_capture(
        cls, cap: CaptureFile, rec: Reconstructor, nominal: CodedExposure, corr: Corrections,
        n_out: int, dev: torch.device, per_pixel: bool,
    ) -> _FrameSolver:  # fmt: skip
        code = cap.code
        # a measured effective code changes a global code's physics; masks stay as they are
        physics = nominal if per_pixel or corr.weights is None else (
            CodedExposure.from_capture(code.bits, chip_us=code.chip_us, sub_steps=corr.sub_steps,
                                       weights=corr.weights))
        times = output_times_s(code.chip_us, code.n_chips, n_out)
        fractions = torch.from_numpy(times / (code.n_chips * code.chip_us * 1e-6))
        return cls(rec, physics, corr, times, fractions, float(cap.camera_settings.saturation_dn),
                   dev if per_pixel else None, per_pixel)  # fmt: skip

    @property
    def full_scale(self) -> float:
        return self.saturation_dn - self.corr.mean_dark

    def solve(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """``(corrected frame, video (T, H, W) in DN, per-frame diagnostics)``."""
        corrected = self.corr.apply(raw)
        y = torch.from_numpy(corrected / self.full_scale)
        # clipped pixels measure "at least this much", not the blur: a clip-aware
        # solver leaves them out of its data term
        saturated = torch.from_numpy(raw >= self.saturation_dn)
        if self.device is not None:
            y = y.to(self.device)
            saturated = saturated.to(self.device)
        result = self.rec.reconstruct(y, self.physics, self.fractions, saturated=saturated)
        video = (result.frames.float().cpu().numpy() * self.full_scale).astype(np.float32)
        return corrected, video, self._diagnostics(result)

    def _diagnostics(self, result: Reconstruction) -> dict[str, Any]:
        per_frame = {
            # share of clipped pixels; clip_aware: 1 where the solver left them out
            "saturated_fraction": np.float64(
                result.diagnostics.get("saturated_fraction", 0.0)),
            "clip_aware": np.float64(result.diagnostics.get("clip_aware", 0.0)),
        }
        if not self.per_pixel and self.rec.name != "learned":
            # a uniform frame (all dark, all saturated) is its own video: flagged
            per_frame["uniform_frame"] = np.float64(
                "uniform" in str(result.diagnostics.get("note", "")))
        if result.velocity is not None:
            per_frame["velocity_x"] = np.float64(result.velocity[0])
            per_frame["velocity_y"] = np.float64(result.velocity[1])
        if result.motion is not None:
            per_frame["motion_field"] = result.motion.numpy().astype(np.float32)
            per_frame["motion_layers"] = np.float64(result.diagnostics.get("layers", 1.0))
            per_frame["motion_confidence"] = np.float64(
                result.diagnostics.get("motion_confidence", 1.0))
            per_frame["motion_fallback"] = np.float64(
                result.diagnostics.get("motion_fallback", 0.0))
        return per_frame


def _reconstruct_frames(
    cap: CaptureFile, coded: np.ndarray, frames: _FrameSolver, writer: ReconWriter,
    outcome: ReconOutcome, progress: Callable[[int, int], None] | None,
) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:  # fmt: skip
    """Every coded frame, in order, into ``writer``; a damaged one is skipped with a warning.
    Returns the skipped source indices and the first four inputs and videos (for exports)."""
    inputs, videos, skipped = [], [], []
    frames.rec.begin_sequence()  # consecutive exposures: a solver may use the frames before
    for n, i in enumerate(coded):
        try:
            raw = cap.read_frame(int(i)).astype(np.float32)
        except DamagedFrameError as e:
            # one damaged chunk costs its frame, not the capture
            skipped.append(int(i))
            outcome.warnings.append(str(e))
            frames.rec.begin_sequence()  # the frame before the next one is missing
            if progress is not None:
                progress(n + 1, len(coded))
            continue
        corrected, video, per_frame = frames.solve(raw)
        writer.append(video, int(i), per_frame=per_frame)
        if len(inputs) < 4:
            inputs.append(corrected)
            videos.append(video)
        if progress is not None:
            progress(n + 1, len(coded))
    if len(skipped) == len(coded):
        raise CaptureFormatError(
            f"No coded frame of {cap.path} can be read (every chunk is damaged); nothing "
            "was reconstructed.")
    return skipped, inputs, videos


def export_reconstruction(
    recon_path: Path,
    inputs: Sequence[np.ndarray],
    videos: Sequence[np.ndarray],
    formats: Sequence[str],
    ground_truth: Sequence[np.ndarray] | None = None,
) -> list[Path]:
    """Write a contact sheet (PNG) and/or the whole high-speed video (MP4, GIF) beside a recon
    file.

    Each contact-sheet row is a coded input (the first four) followed by its recovered frames;
    with ground truth (simulation), a row of true frames follows each reconstruction. The movies
    hold every coded frame's recovered frames in time order, read back from the recon file.
    """
    stem = str(recon_path).removesuffix(".h5")
    levels = display_levels(*inputs, *videos)
    written = []
    if "png" in formats:
        rows, labels = [], []
        for j, (y, v) in enumerate(zip(inputs, videos, strict=True)):
            rows.append([y, *v])
            labels.append([f"coded #{j}", *[f"t{t}" for t in range(len(v))]])
            if ground_truth is not None:
                gt = ground_truth[j]
                rows.append([np.mean(gt, axis=0), *gt])
                labels.append(["true mean", *[f"true t{t}" for t in range(len(gt))]])
        written.append(save_png(Path(stem + ".png"), contact_sheet(rows, labels, levels)))
    for fmt in ("mp4", "gif"):
        if fmt in formats:
            with ReconFile.open(recon_path) as r:
                every = (f for i in range(len(r)) for f in r.read_video(i))
                written.append(save_video(Path(f"{stem}.{fmt}"), every, levels))
    return written


def reconstruct_files(
    paths: Sequence[Path],
    *,
    method: str = "auto",
    n_out: int | None = None,
    out_dir: Path | None = None,
    exports: Sequence[str] = (),
    device: str = "auto",
    overwrite: bool = False,
    max_blur_px: float = 48.0,
    model: str = "tiny",
    force: bool = False,
    show_progress: bool = True,
    calibration: Calibration | None = None,
    use_calibration: str = "auto",
    velocity: tuple[float, float] | None = None,
    calibration_max_age_days: float = 30.0,
    per_pixel_solver: str = "gap-tv",
    motion: str = "auto",
    float32: bool = False,
    solver: str = "auto",
) -> list[ReconOutcome]:
    """Reconstruct many captures; a failure is recorded in its outcome and the batch goes on.

    ``calibration``, ``use_calibration``, ``velocity``, ``calibration_max_age_days`` (older
    calibrations get a warning), ``per_pixel_solver``, ``motion``, ``float32`` and ``solver``: see
    :func:`reconstruct_capture`."""
    from tqdm import tqdm

    outcomes = []
    for path in paths:
        bar = tqdm(
            desc=Path(path).name,
            unit="frame",
            file=sys.stderr,
            disable=not show_progress,
            leave=True,
        )

        def progress(done: int, total: int, bar=bar) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            outcomes.append(
                reconstruct_capture(
                    Path(path),
                    method=method,
                    n_out=n_out,
                    out_dir=out_dir,
                    exports=exports,
                    device=device,
                    overwrite=overwrite,
                    max_blur_px=max_blur_px,
                    model=model,
                    force=force,
                    progress=progress,
                    calibration=calibration,
                    use_calibration=use_calibration,
                    velocity=velocity,
                    calibration_max_age_days=calibration_max_age_days,
                    per_pixel_solver=per_pixel_solver,
                    motion=motion,
                    float32=float32,
                    solver=solver,
                )
            )
        except Exception as e:  # reported in the outcome and at the end; the batch goes on
            log.debug("reconstruction of %s failed", path, exc_info=True)
            msg = str(e) if isinstance(e, RigError) else f"{type(e).__name__}: {e}"
            outcomes.append(ReconOutcome(source=Path(path), error=msg))
        finally:
            bar.close()
    return outcomes


def file_kind(path: Path) -> str:
    """``"reconstruction"``, ``"calibration"``, ``"capture"``, or ``""`` (unreadable here:
    reconstructing it says why)."""
    if path.name.endswith((".recon.h5", ".recon.h5.partial")):
        return "reconstruction"
    try:
        import h5py

        with h5py.File(path, "r") as f:
            kind = str(f.attrs.get("kind", ""))
    except (OSError, KeyError, RuntimeError, ValueError):
        return ""
    return "calibration" if "calibration" in kind else kind


def _is_reconstruction(path: Path) -> bool:
    return file_kind(path) == "reconstruction"


def collect_captures(inputs: Sequence[str | Path]) -> tuple[list[Path], list[str]]:
    """The capture files named by ``inputs`` (files, folders, glob patterns), in order, without
    duplicates, and one line for each input left out.

    A folder gives its ``*.h5`` captures (not its reconstructions, not subfolders); a
    reconstruction file given by name is left out ("is a reconstruction, skipped"), so rerunning
    ``recon captures/*.h5`` beside earlier results does not fail on them.
    """
    import glob

    out: list[Path] = []
    notes: list[str] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            # a folder gives its captures (and unreadable files, whose reconstruction says
            # why), not its reconstructions or calibration files
            found = [q for q in sorted(p.glob("*.h5")) if file_kind(q) in ("capture", "")]
            if not found:
                notes.append(f"{p} holds no capture files (*.h5), skipped")
            for q in found:
                add(q)
        elif not p.exists() and any(c in str(item) for c in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(item)))
            if not matches:
                notes.append(f"{item} matches no file, skipped")
            for q in matches:
                if q.is_file() and _is_reconstruction(q):
                    notes.append(f"{q} is a reconstruction, skipped")
                elif q.is_file():
                    add(q)
        elif p.is_file() and _is_reconstruction(p):
            notes.append(f"{p} is a reconstruction, skipped")
        else:
            add(p)  # a missing or unreadable file is reported by its reconstruction
    return out, notes


__all__ = [
    "ReconOutcome",
    "collect_captures",
    "file_kind",
    "reconstruct_capture",
    "reconstruct_files",
]
