"""How fast does a network learn coded-exposure deblurring on the simplest data?

Dead-leaves images under one global translation (up to ``--motion`` px per exposure, random
direction), code ``11100101``, 64x64 crops, noise sigma 0.005, MSE on the chip frames, Adam. Prints
the PSNR of the predicted chip frames on a fixed batch of 16 against B0 (repeating the coded frame)
every ``--every`` steps, for CodeVideoNet's encoder (one output channel per chip) or a plain
7-layer CNN. This is the check behind the closing note of the first training attempts: both gain
well under 1 dB in 600 steps on 2 CPU threads, so the learned model needs GPU-scale training.

    .venv/bin/python bench/diag_learnability.py --model plain --motion 16 --steps 600
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from recon.data import dead_leaves, linear_motion_clip
from recon.metrics import psnr
from recon.models import build_model
from recon.train import model_inputs

BITS = (1, 1, 1, 0, 0, 1, 0, 1)
SIZE = 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["plain", "codevideo"], default="plain")
    ap.add_argument("--motion", type=float, default=16.0, help="largest motion, px per exposure")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = [dead_leaves(160, 160, seed=s) for s in range(64)]

    def batch(n: int, gen: torch.Generator, pool: range) -> tuple[torch.Tensor, torch.Tensor]:
        ys, chips = [], []
        for _ in range(n):
            img = images[pool[int(torch.randint(0, len(pool), (1,), generator=gen))]]
            ang = float(torch.rand(1, generator=gen)) * 2 * math.pi
            mag = float(torch.rand(1, generator=gen)) * args.motion
            seed = int(torch.randint(0, 1 << 30, (1,), generator=gen))
            clip = linear_motion_clip(img, BITS, velocity_px=(mag * math.cos(ang),
                                      mag * math.sin(ang)), out_hw=(SIZE, SIZE),
                                      noise_sigma=0.005, seed=seed)  # fmt: skip
            ys.append(clip.blurred)
            chips.append(clip.chip_frames)
        return torch.stack(ys)[:, None], torch.stack(chips)

    if args.model == "plain":
        layers: list[nn.Module] = [nn.Conv2d(1, 32, 3, padding=1), nn.ReLU()]
        for _ in range(6):
            layers += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
        net = nn.Sequential(*layers, nn.Conv2d(32, len(BITS), 3, padding=1))

        def forward(y: torch.Tensor) -> torch.Tensor:
            return y + net(y)

        params = list(net.parameters())
    else:
        model = build_model("tiny")

        def forward(y: torch.Tensor) -> torch.Tensor:
            pbits, lengths = model_inputs(BITS, y.shape[0], torch.device("cpu"), 32)
            basis = model.encode(y, model.embed_code(pbits, lengths))
            return y + basis[:, : len(BITS)]

        params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    val_y, val_chips = batch(16, torch.Generator().manual_seed(123), range(48, 64))
    gen = torch.Generator().manual_seed(0)
    b0 = float(psnr(val_y.expand_as(val_chips), val_chips))
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        y, chips = batch(8, gen, range(48))
        loss = ((forward(y) - chips) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0:
            with torch.no_grad():
                score = float(psnr(forward(val_y).clamp(0, 1), val_chips))
            took = time.perf_counter() - t0
            print(f"{args.model} motion<={args.motion:g}px step {step}: {score:.2f} dB "
                  f"(B0 {b0:.2f} dB, {score - b0:+.2f}) {took:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
