"""Can the spectral search tell a still frame from a moving one? (issue 14, the fallback of auto)

``motion="auto"`` treats a frame as still when the learned scorer is unsure (its probability below
``recon.solvers.FALLBACK_BELOW``), because the spectral search finds a motion in still frames (on
the val still scenes it cost 8.5 dB against doing nothing). Its likelihood could referee: the
search scores the zero velocity among its candidates, so the gain of its best velocity over zero,
``nll(0) - nll(best)`` on the coarse level, is free. This prints, per val frame of each stratum
(the scenes of ``recon.evaluate_motion``), the true and estimated background velocity, the error,
that gain and the sign margin, to see whether a threshold on the gain separates the strata.

    .venv/bin/python bench/diag_still_test.py --split val
"""

from __future__ import annotations

import argparse
import math

import torch

from recon.evaluate_motion import CODES, NOISE, SEED, SUB_STEPS
from recon.motion_data import stratum_scene
from recon.photos import default_photos, preload_dead_leaves
from recon.scene_batches import coded_batch
from recon.scenes import SceneSampler
from recon.velocity import estimate_velocity

STRATA = ("still", "pan", "pan_accel", "object", "nonrigid", "objects")


def zero_gain(candidates: torch.Tensor) -> float:
    """``nll(0) - min nll`` among the coarse-level candidates (rows ``dx, dy, nll, level``)."""
    coarse = candidates[candidates[:, 3] == 0]
    zero = coarse[(coarse[:, 0].abs() < 1e-9) & (coarse[:, 1].abs() < 1e-9), 2]
    return float(zero.min() - coarse[:, 2].min())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--split", default="val")
    p.add_argument("--n", type=int, default=3, help="scenes per (stratum, code, noise level)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    preload_dead_leaves(args.split)
    sampler = SceneSampler(default_photos(), 256, split=args.split, max_motion_px=48.0,
                           dead_leaves_fraction=0.3)
    gains: dict[str, list[float]] = {s: [] for s in STRATA}
    for code in CODES:
        bits = tuple(int(c) for c in code)
        for stratum in STRATA:
            for sigma in NOISE:
                for i in range(args.n):
                    scene = stratum_scene(sampler, stratum, SEED, i, (4.0, 40.0))
                    b = coded_batch([scene], code, sub_steps=SUB_STEPS, sigma=sigma,
                                    noise_seed=SEED + i)
                    e = estimate_velocity(b.y[0, 0].float(), bits, max_px=48.0)
                    bg = scene.layers[0].velocity_px
                    gain = zero_gain(e.candidates)
                    gains[stratum].append(gain)
                    print(f"{code:>16} {stratum:9s} sigma {sigma:.3f} true ({bg[0]:6.1f}, "
                          f"{bg[1]:6.1f}) est ({e.dx:6.1f}, {e.dy:6.1f}) error "
                          f"{math.hypot(e.dx - bg[0], e.dy - bg[1]):5.1f} px gain {gain:6.3f} "
                          f"sign margin {e.direction_margin:.3f}", flush=True)
    for stratum, g in gains.items():
        print(f"{stratum:9s} gain min {min(g):.3f} median {sorted(g)[len(g) // 2]:.3f} "
              f"max {max(g):.3f}")


if __name__ == "__main__":
    main()
