"""Settings of the training script: :class:`TrainConfig` and its command-line options (no torch
import, so that the CLI starts fast)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

__all__ = ["VARIANTS", "TrainConfig", "add_arguments"]

#: The model variants :func:`recon.train.train` can build.
VARIANTS = ("tiny", "base")


@dataclass(frozen=True)
class TrainConfig:
    """What one run of :func:`recon.train.train` does; each field is the command-line option of
    the same name (``--val-every`` is ``val_every``; ``--no-bf16`` clears ``bf16``).

    Attributes:
        variant: the model, ``"tiny"`` or ``"base"``.
        steps: total steps (the learning-rate schedule).
        minutes: stop after this wall time (0: no limit; the schedule ends at the first of the
            two).
        batch: scenes per step.
        size: training crop size, pixels.
        lr: peak learning rate.
        seed: seed of the model initialisation, the scenes and the time reversals.
        box: train on box exposures (the ablation B2).
        out: checkpoint folder.
        resume: continue from ``out/ckpt.pt``.
        export: folder for the safetensors weights and model card (empty: no export).
        name: file name of the exported weights (empty: the variant, ``-box`` for box).
        device: where to train (``"auto"``, ``"cpu"``, ``"cuda"``).
        threads: torch CPU threads (0: leave as is).
        workers: processes rendering batches (0: in the loop).
        render_in_loop: render batches in the training process (the default on a GPU: workers
            only draw the scenes).
        bf16: bf16 autocast.
        val_every: steps between validations (and exports).
        ckpt_every: steps between checkpoints.
        log_every: also print a plain progress line every N steps (0: never; for logs).
        quiet: no progress bar.

    Raises:
        ValueError: an unknown variant.

    >>> TrainConfig(minutes=5).steps
    20000
    """

    variant: str = "tiny"
    steps: int = 20000
    minutes: float = 0.0
    batch: int = 8
    size: int = 128
    lr: float = 2e-3
    seed: int = 0
    box: bool = False
    out: str = "out/train/run"
    resume: bool = False
    export: str = ""
    name: str = ""
    device: str = "auto"
    threads: int = 0
    workers: int = 1
    render_in_loop: bool = False
    bf16: bool = True
    val_every: int = 500
    ckpt_every: int = 250
    log_every: int = 0
    quiet: bool = False

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}; got {self.variant!r}.")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """The config of parsed options (:func:`add_arguments`; other attributes are ignored)."""
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of :class:`TrainConfig` (its defaults) to ``p``."""
    d = TrainConfig()
    p.add_argument("--variant", choices=list(VARIANTS), default=d.variant)
    p.add_argument("--steps", type=int, default=d.steps, help="total steps (the LR schedule)")
    p.add_argument("--minutes", type=float, default=d.minutes, help="stop after this wall time")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--size", type=int, default=d.size, help="training crop size (pixels)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--box", action="store_true", help="train on box exposures (ablation B2)")
    p.add_argument("--out", default=d.out, help="checkpoint folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--export", default=d.export,
                   help="write safetensors + model card into this folder")
    p.add_argument("--name", default=d.name, help="file name of the exported weights")
    p.add_argument("--device", default=d.device)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument(
        "--workers", type=int, default=d.workers,
        help="processes rendering batches (0: in the loop)"
    )
    p.add_argument("--render-in-loop", action="store_true",
                   help="render batches in the training process (default on a GPU: workers "
                        "only draw the scenes)")
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--log-every", type=int, default=d.log_every,
                   help="also print a plain progress line every N steps (for logs)")
    p.add_argument("--quiet", action="store_true")
