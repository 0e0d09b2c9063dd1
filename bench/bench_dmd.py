"""Per-pixel coding on a DMD against a global flutter code, on the same moving scene.

The simulated rig records the same moving scene twice with the same chips: through K random DMD
masks (each pixel its own code, reconstructed with GAP-TV and with ADMM-TV) and through the
global code 11100101
(coded deconvolution, velocity estimated per frame as `recon` does, and known when there is one).
Two scenes: a whole image panning (one global motion, the global code's home ground) and
sprites moving in different directions over a still background (no single velocity). PSNR in dB
of the K chip frames against the simulator's ground truth; B0 repeats the coded frame.

    python bench/bench_dmd.py [--size 256] [--frames 4] [--blur 16] [--chip-us 500]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blurvid_rig.batch import reconstruct_capture  # noqa: E402
from blurvid_rig.capture import run_coded_capture  # noqa: E402
from blurvid_rig.files.capture import CaptureFile  # noqa: E402
from blurvid_rig.files.reconstruction import ReconFile  # noqa: E402
from hw.sim import SimScene, make_sim_rig  # noqa: E402
from hw.sim.dmd import make_sim_dmd_rig, random_masks  # noqa: E402
from hw.types import ShutterCode  # noqa: E402


def psnr(frames: np.ndarray, truth: np.ndarray, peak: float) -> float:
    return float(np.mean([10 * np.log10(peak**2 / np.mean((frames[k] - truth[k]) ** 2))
                          for k in range(len(truth))]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--blur", type=float, default=16.0, help="px per exposure")
    ap.add_argument("--chip-us", type=float, default=500.0)
    a = ap.parse_args()
    period_s = 8 * a.chip_us * 1e-6
    texture = SimScene.default(a.size, a.size, seed=5).render(0.0)
    v = (a.blur, 0.3 * a.blur)
    scenes = {
        "pan": SimScene.translating(texture, (v[0] / period_s, v[1] / period_s),
                                    border="reflect"),
        "sprites": SimScene.default(a.size, a.size, seed=5, speed_px_per_s=a.blur / period_s,
                                    n_sprites=6),
    }
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, scene in scenes.items():
            rows += one_scene(a, name, scene, v, Path(d) / name)
    print(f"{a.size}x{a.size}, {a.frames} frames, 8 chips of {a.chip_us:g} us; pan: "
          f"({v[0]:g}, {v[1]:g}) px per exposure; sprites: 0.5-1.5 x {a.blur:g} px per exposure "
          "in random directions")
    print(f"{'scene':<8s} {'coding, reconstruction':<50s} {'B0 dB':>7s} {'PSNR dB':>8s} "
          f"{'s/frame':>8s}")
    for name, what, b0, score, dt in rows:
        print(f"{name:<8s} {what:<50s} {b0:7.2f} {score:8.2f} {dt:8.2f}")


def one_scene(a, name, scene, v, d: Path) -> list:
    rows = []
    for label in ("per-pixel (8 random masks)", "global 11100101"):
        dmd = label.startswith("per-pixel")
        if dmd:
            cam, sh = make_sim_dmd_rig(a.size, a.size, seed=7, scene=scene)
            code, masks = ShutterCode((1,) * 8, a.chip_us), random_masks(8, (a.size,) * 2, 1)
        else:
            cam, sh = make_sim_rig(a.size, a.size, seed=7, scene=scene)
            code, masks = ShutterCode.parse("11100101", a.chip_us), None
        with cam, sh:
            res = run_coded_capture(cam, sh, code, a.frames, d / str(dmd), masks=masks)
            truths = [cam.ground_truth(fid) for fid in res.frame_ids]
            peak = float(cam.full_scale_dn())
        with CaptureFile.open(res.path) as cap:
            raws = [cap.read_frame(i).astype(np.float32) - t.dark_dn
                    for i, t in enumerate(truths)]
        b0 = np.mean([psnr(np.repeat(r[None], 8, 0), t.chip_frames, peak)
                      for r, t in zip(raws, truths, strict=True)])
        variants = (("gap-tv", None), ("admm-tv", None)) if dmd else (
            (("gap-tv", None), ("gap-tv", "known")) if name == "pan" else (("gap-tv", None),))
        for solver, vel in variants:
            t0 = time.perf_counter()
            o = reconstruct_capture(res.path, out_dir=d / f"r{dmd}{vel}{solver}",
                                    velocity=v if vel == "known" else None, max_blur_px=32,
                                    per_pixel_solver=solver)
            dt = (time.perf_counter() - t0) / a.frames
            with ReconFile.open(o.output) as rf:
                video = np.asarray(rf.video)
            score = np.mean([psnr(video[i], t.chip_frames, peak)
                             for i, t in enumerate(truths)])
            what = label + (", velocity known" if vel == "known" else
                            f", {solver.upper()}" if dmd else ", velocity estimated")
            rows.append((name, what, b0, score, dt))
    return rows


if __name__ == "__main__":
    main()
