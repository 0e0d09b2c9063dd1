"""Speed of the reconstruction paths, side by side in one run: the spectral search path (before the
learned motion model), the learned-motion batch path and the live-preview path.

    python bench/bench_motion.py [--threads 2] [--repeats 3]

For a 256x256 and a 512x512 coded frame (a test photo panning 24 px per exposure, code 11100101,
sigma 0.005) it times, per frame: the spectral velocity search alone; ``classical-tv`` with it
(the batch path before); the learned motion estimate (cost volume + scorer), its full-resolution
refinement, and ``classical-tv`` with the learned motion (the batch path now); the live preview's
closed-form path (``ClassicalEngine``: learned motion, tapered Wiener), 8 and 16 output frames;
when a refiner ships, ``refined`` (learned motion, closed-form Wiener and the refiner).
Prints a markdown table and the throughput ratio of the new batch path to the old one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from recon.classical import estimate_velocity  # noqa: E402
from recon.classical_engine import ClassicalEngine  # noqa: E402
from recon.functional import code_weights  # noqa: E402
from recon.motion import MotionEstimator, load_motion_model, refine_global  # noqa: E402
from recon.motion_data import stratum_scene  # noqa: E402
from recon.operators import CodedExposure  # noqa: E402
from recon.photos import default_photos  # noqa: E402
from recon.refiner import shipped_refiner  # noqa: E402
from recon.scene_batches import coded_batch  # noqa: E402
from recon.scenes import SceneSampler  # noqa: E402
from recon.solvers import ClassicalGlobal, equal_times  # noqa: E402

CODE = "11100101"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (caches, allocator)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    photos = default_photos()
    scorer, cfg, card = load_motion_model()
    w = code_weights(CODE, sub_steps=4, dtype=torch.float64)
    phys = CodedExposure.from_capture(CODE, chip_us=None)
    rows = []
    for size in (256, 512):
        s = SceneSampler(photos, size, split="test", max_motion_px=48.0)
        scene = stratum_scene(s, "pan", 0xBE7C, 0, (24.0, 24.0))
        y = coded_batch([scene], CODE, sub_steps=4, sigma=0.005, noise_seed=1).y[0, 0]
        est = MotionEstimator(scorer, cfg, w, n_chips=8)
        coarse = est.estimate(y, 48.0, refine=False)
        old = ClassicalGlobal("tv", motion="spectral", max_px=48.0)
        new = ClassicalGlobal("tv", motion="learned", max_px=48.0)
        eng = ClassicalEngine(max_side=size, max_px=48.0)
        r = {
            "size": size,
            "spectral search": timed(lambda y=y: estimate_velocity(y, CODE, max_px=48.0),
                                     args.repeats),
            "classical-tv, spectral (old batch path)": timed(
                lambda y=y, o=old: o.reconstruct(y, phys, equal_times(8)), args.repeats),
            "learned motion: cost volume + scorer": timed(
                lambda y=y, e=est: e.estimate(y, 48.0, refine=False), args.repeats),
            "learned motion: full-resolution refinement": timed(
                lambda y=y, c=coarse: refine_global(y, w, c.velocity, step_px=c.scale),
                args.repeats),
            "classical-tv, learned motion (batch path)": timed(
                lambda y=y, n=new: n.reconstruct(y, phys, equal_times(8)), args.repeats),
            "live preview, 8 frames": timed(lambda y=y, g=eng: g.reconstruct(y, CODE, 8),
                                            args.repeats),
            "live preview, 16 frames": timed(lambda y=y, g=eng: g.reconstruct(y, CODE, 16),
                                             args.repeats),
        }
        if shipped_refiner() is not None:
            ref = ClassicalGlobal("refined", motion="learned", max_px=48.0)
            r["refined, learned motion (Wiener + refiner)"] = timed(
                lambda y=y, n=ref: n.reconstruct(y, phys, equal_times(8)), args.repeats)
            r["refined, learned motion, 16 frames"] = timed(
                lambda y=y, n=ref: n.reconstruct(y, phys, equal_times(16)), args.repeats)
        rows.append(r)
        print(f"{size}: " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in r.items()
                                       if k != "size"), file=sys.stderr, flush=True)
    keys = [k for k in rows[0] if k != "size"]
    print(f"\nMotion model sha256 {card['sha256'][:16]}..., torch {torch.__version__}, "
          f"{args.threads} threads, median of {args.repeats}\n")
    print("| step | " + " | ".join(f"{r['size']} px" for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r[k] * 1e3:.0f} ms" for r in rows) + " |")
    for r in rows:
        ratio = r["classical-tv, spectral (old batch path)"] / r[
            "classical-tv, learned motion (batch path)"]
        print(f"\n{r['size']} px: batch throughput, learned motion / spectral search: "
              f"{ratio:.2f}x")
        key = "refined, learned motion (Wiener + refiner)"
        if key in r:
            print(f"{r['size']} px: batch throughput, refined / spectral search (old path): "
                  f"{r['classical-tv, spectral (old batch path)'] / r[key]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
