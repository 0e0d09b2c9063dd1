"""Classical reconstruction time per coded frame at 512x512 (one coded frame -> 8 frames).

Measures, side by side in one run: Wiener and TV deconvolution, each with the oracle velocity and
with the velocity estimated from the frame, on the CPU and (when present) on CUDA. Prints seconds
per frame, the ratios to the fastest variant, and the PSNR reached, on a synthetic dead-leaves scene
moving 24 px.

    .venv/bin/python bench/bench_recon.py [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from recon.classical import reconstruct_global
from recon.data import dead_leaves, linear_motion_clip
from recon.metrics import video_psnr

CODE = "11100101"


def _time(fn, repeats: int, device: torch.device) -> tuple[float, object]:
    out = fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sigma", type=float, default=0.002)
    ap.add_argument(
        "--max-blur-px",
        type=float,
        default=64.0,
        help="velocity search bound (the batch recon default is 64)",
    )
    args = ap.parse_args()
    velocity = (20.0, -13.0)
    image = dead_leaves(args.size + 64, args.size + 64, seed=7)
    clip = linear_motion_clip(
        image,
        CODE,
        velocity_px=velocity,
        sub_steps=4,
        out_hw=(args.size, args.size),
        noise_sigma=args.sigma,
        seed=1,
    )
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"classical reconstruction, {args.size}x{args.size} -> 8 frames, code {CODE}, "
        f"velocity {velocity} px, sigma {args.sigma}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    rows = []
    for dev in devices:
        y = clip.blurred.to(dev)
        gt = clip.chip_frames.to(dev)
        for method in ("wiener", "tv"):
            for oracle in (True, False):

                def run(method=method, oracle=oracle, y=y):
                    return reconstruct_global(
                        y,
                        CODE,
                        n_frames=8,
                        method=method,
                        velocity=velocity if oracle else None,
                        max_px=args.max_blur_px,
                    )

                sec, res = _time(run, args.repeats, dev)
                psnr = float(video_psnr(res.frames.clamp(0, 1), gt))
                name = f"{dev.type:4s} {method:6s} {'oracle' if oracle else 'estimated'} velocity"
                rows.append((name, sec, psnr, res.velocity))
    fastest = min(r[1] for r in rows)
    for name, sec, psnr, v in rows:
        print(
            f"{name:36s} {sec:7.3f} s/coded frame  x{sec / fastest:5.1f}  PSNR {psnr:5.2f} dB  "
            f"velocity ({v[0]:+.1f}, {v[1]:+.1f})"
        )


if __name__ == "__main__":
    main()
