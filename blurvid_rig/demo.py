"""The demo: the whole path on the simulated rig, with ground truth to score the result.

1. A simulated camera watches a textured scene panning at a known velocity; a simulated shutter
   plays the code `11100101` (1 ms chips) and triggers the camera; a few coded frames are recorded
   into an HDF5 capture file.
2. The capture is reconstructed (classical coded deconvolution, velocity estimated from the image
   alone) into a `.recon.h5` file, with a contact sheet (PNG) and the recovered video (MP4, GIF).
3. The recovered frames are scored against the simulator's ground truth (PSNR), beside the
   baseline of repeating the blurry frame, and the estimated velocity is printed beside the true
   one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from blurvid_rig.batch import export_reconstruction, reconstruct_capture
from blurvid_rig.capture import run_coded_capture
from blurvid_rig.files.reconstruction import ReconFile
from hw.errors import RigError
from hw.sim import SimScene, make_sim_rig
from hw.types import ShutterCode

DEMO_CODE = ShutterCode.parse("11100101", 1000.0, name="bdinr8")
#: Pan velocity of the demo scene: (18, -9) px over the 8 ms code.
DEMO_VELOCITY_PX_PER_S = (2250.0, -1125.0)


@dataclass
class DemoReport:
    capture: Path
    recon: Path
    exports: list[Path]
    psnr_db: float
    baseline_psnr_db: float
    true_velocity_px: tuple[float, float]
    estimated_velocity_px: list[tuple[float, float]]


def _psnr(x: np.ndarray, ref: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((x.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)


def run_demo(
    out: Path, *, n_frames: int = 3, size: int = 256, seed: int = 0, quiet: bool = False
) -> DemoReport:
    """Run the demo into ``out`` and print where the files are and how well it did."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result, truths, full_scale, true_v = _capture(out, n_frames, size, seed)
    with tqdm(desc="reconstructing", unit="frame", file=sys.stderr, disable=quiet) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        outcome = reconstruct_capture(result.path, n_out=DEMO_CODE.n_chips, progress=progress)
    with ReconFile.open(outcome.output) as rf:
        video = np.asarray(rf.video)
        per_frame = rf.per_frame
    gt = [t.chip_frames - 0.0 for t in truths]
    inputs, psnrs, base = _score(result.path, truths, video, full_scale)
    exports = export_reconstruction(
        outcome.output, inputs, list(video), ("png", "mp4", "gif"), ground_truth=gt
    )
    est = list(
        zip(
            np.asarray(per_frame["velocity_x"]).tolist(),
            np.asarray(per_frame["velocity_y"]).tolist(),
            strict=True,
        )
    )
    report = DemoReport(
        result.path,
        outcome.output,
        exports,
        float(np.mean(psnrs)),
        float(np.mean(base)),
        true_v,
        est,
    )
    _say(f"reconstructed {len(video)} x {video.shape[1]} frames -> {outcome.output}")
    _say(
        "estimated velocity (px per exposure): "
        + ", ".join(f"({vx:+.1f}, {vy:+.1f})" for vx, vy in est)
        + f"   true: ({true_v[0]:+.1f}, {true_v[1]:+.1f})"
    )
    _say(
        f"PSNR against the simulator's ground truth: {report.psnr_db:.1f} dB "
        f"(repeating the blurry frame: {report.baseline_psnr_db:.1f} dB)"
    )
    for p in exports:
        _say(f"wrote {p}")
    return report


def _say(msg: str) -> None:
    print(msg, flush=True)


def _capture(out: Path, n_frames: int, size: int, seed: int):
    """Record the demo's coded frames; ``(capture result, ground truths, full scale in DN, true
    velocity in px per exposure)``.

    Raises:
        RigError: the capture ended early.
    """
    texture = SimScene.default(size, size, seed=seed, speed_px_per_s=0.0).render(0.0)
    scene = SimScene.translating(texture, DEMO_VELOCITY_PX_PER_S, border="reflect")
    camera, shutter = make_sim_rig(
        width=size, height=size, seed=seed, scene=scene, history_frames=max(64, n_frames)
    )
    period_s = DEMO_CODE.period_us * 1e-6
    true_v = (DEMO_VELOCITY_PX_PER_S[0] * period_s, DEMO_VELOCITY_PX_PER_S[1] * period_s)
    _say(
        f"simulated rig: {size}x{size} Mono12 camera, code {DEMO_CODE}, scene panning "
        f"({true_v[0]:+.1f}, {true_v[1]:+.1f}) px per exposure"
    )
    with camera, shutter:
        result = run_coded_capture(
            camera,
            shutter,
            DEMO_CODE,
            n_frames,
            out,
            name="demo",
            title="blurvid-rig demo",
            settings={"demo_velocity_px_per_s": list(DEMO_VELOCITY_PX_PER_S), "seed": seed},
        )
        truths = [camera.ground_truth(fid) for fid in result.frame_ids]
    _say(f"captured {result.stats.written} coded frames -> {result.path}")
    if result.status != "complete":
        raise RigError(f"The capture ended early ({result.error}); nothing was reconstructed.")
    return result, truths, float(camera.full_scale_dn()), true_v


def _score(path: Path, truths, video: np.ndarray, full_scale: float):
    """``(coded frames less the black level, PSNRs of the recovered frames, PSNRs of repeating
    the blurry frame)`` against the simulator's ground truth."""
    psnrs, base = [], []
    inputs = []
    from blurvid_rig.files.capture import CaptureFile

    with CaptureFile.open(path) as cap:
        for i, t in enumerate(truths):
            raw = cap.read_frame(i).astype(np.float32)
            y = raw - float(cap.camera_settings.black_level_dn)
            inputs.append(y)
            psnrs += [
                _psnr(video[i, k], t.chip_frames[k], full_scale) for k in range(len(t.chip_frames))
            ]
            base += [
                _psnr(raw - t.dark_dn, t.chip_frames[k], full_scale)
                for k in range(len(t.chip_frames))
            ]
    return inputs, psnrs, base
