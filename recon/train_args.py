"""Command-line options of the training script (no torch import, so that the CLI starts fast)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", choices=["tiny", "base"], default="tiny")
    p.add_argument("--steps", type=int, default=20000, help="total steps (the LR schedule)")
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this wall time")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=128, help="training crop size (pixels)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--box", action="store_true", help="train on box exposures (ablation B2)")
    p.add_argument("--out", default="out/train/run", help="checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--export", default="", help="write safetensors + model card into this folder")
    p.add_argument("--name", default="", help="file name of the exported weights")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--workers", type=int, default=1, help="processes rendering batches (0: in the loop)"
    )
    p.add_argument("--render-in-loop", action="store_true",
                   help="render batches in the training process (default on a GPU: workers "
                        "only draw the scenes)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=0,
                   help="also print a plain progress line every N steps (for logs)")
    p.add_argument("--quiet", action="store_true")
