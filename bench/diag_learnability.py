"""How fast does a network learn coded-exposure deblurring on the simplest data?

Dead-leaves images under one global translation, code ``11100101``, noise sigma 0.005, MSE on the
chip frames, Adam at 1e-3, the ``tiny`` CodeVideoNet. What varies is how much of the motion the
network has to find out by itself:

- ``fixed``: always 16 px to the right (one linear filter solves it),
- ``sign``: horizontal, 8 to 24 px, left or right,
- ``angle``: 16 px in any direction,
- ``random``: 0 to 24 px in any direction (what real captures need).

Clips are rendered with ``grid_sample`` on ``--device`` (a GPU renders them far faster than the
model trains). Every ``--every`` steps it prints the PSNR of the predicted chip frames on a fixed
batch of 64, strict and best of forward/reversed, against B0 (repeating the coded frame) and
against the oracle that knows everything but the direction of time (``(x + reversed x) / 2``).

    .venv/bin/python bench/diag_learnability.py --mode random --steps 400
    python3 bench/diag_learnability.py --mode random --device cuda --batch 64 --minutes 5
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from recon.data import dead_leaves
from recon.metrics import psnr
from recon.models import build_model
from recon.toy import BITS, MODES, render, velocities
from recon.train import chip_centres, model_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=MODES, default="random")
    ap.add_argument("--loss", choices=["strict", "best"], default="strict",
                    help="best: the smaller of the errors against forward and reversed frames")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--minutes", type=float, default=0.0, help="stop after this wall time")
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    side = 2 * args.size
    images = torch.stack([dead_leaves(side, side, seed=s) for s in range(40)]).to(dev)
    model = build_model("tiny").to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    def forward(y: torch.Tensor) -> torch.Tensor:
        pbits, lengths = model_inputs(BITS, y.shape[0], dev, model.config.max_chips)
        t = chip_centres(len(BITS)).to(dev)[None].expand(y.shape[0], -1)
        return model(y, pbits, lengths, t)

    vgen = torch.Generator().manual_seed(123)
    vv = velocities(args.mode, 64, vgen)
    val_y, val_c = render(images, torch.randint(32, 40, (64,), generator=vgen), vv, args.size,
                          vgen)  # fmt: skip
    b0 = float(psnr(val_y.expand_as(val_c), val_c))
    sym = float(psnr(0.5 * (val_c + val_c.flip(1)), val_c))
    print(f"mode {args.mode}, loss {args.loss}, batch {args.batch}, {args.size} px, {dev}: "
          f"B0 {b0:.2f} dB, direction-blind oracle {sym:.2f} dB")
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    deadline = t0 + args.minutes * 60 if args.minutes else math.inf
    step = 0
    while step < args.steps and time.perf_counter() < deadline:
        step += 1
        vel = velocities(args.mode, args.batch, gen)
        y, chips = render(images, torch.randint(0, 32, (args.batch,), generator=gen), vel,
                          args.size, gen)  # fmt: skip
        pred = forward(y)
        err_f = ((pred - chips) ** 2).mean((1, 2, 3))
        if args.loss == "best":
            err_f = torch.minimum(err_f, ((pred - chips.flip(1)) ** 2).mean((1, 2, 3)))
        loss = err_f.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            with torch.no_grad():
                p = forward(val_y).clamp(0, 1)
            e_f = ((p - val_c) ** 2).mean((1, 2, 3))
            e_r = ((p - val_c.flip(1)) ** 2).mean((1, 2, 3))
            strict = float(psnr(p, val_c))
            best = float(-10 * torch.log10(torch.minimum(e_f, e_r).mean()))
            print(f"step {step} ({step * args.batch} clips, {time.perf_counter() - t0:.0f} s): "
                  f"strict {strict:.2f} dB ({strict - b0:+.2f}), best-of {best:.2f} dB "
                  f"({best - b0:+.2f})", flush=True)


if __name__ == "__main__":
    main()
