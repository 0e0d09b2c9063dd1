"""Train the motion scorer of :mod:`recon.motion` on synthetic scenes with known motion.

    python -m recon.train_motion --minutes 60 --out out/train/motion --export recon/models/weights

Every step draws one code (the anchor ``11100101``, the 16-chip ``1100111100000101``, or a random
code of the family, 8 to 24 chips), a working-scale reduction ``f`` (3 or 4), and ``--batch``
scenes of the strata of :mod:`recon.motion_data` from the *train* photos and dead leaves, with
speeds up to ``11.5 f`` pixels per exposure and Gaussian noise of 0.001 to 0.02 (of full scale).
Their coded frames are reduced by ``f``, turned into the cost volume (:func:`cost_features`) over
the bank of every velocity up to 12 working pixels, and the scorer is fitted per tile with a soft
cross-entropy against the tile's true velocity (a Gaussian of 0.5 working pixels around it on the
bank), tiles weighted by how uniform their motion is.

Checkpoints (``ckpt.pt``: model, optimiser, step, random state, elapsed time) every
``--ckpt-every`` steps and at the end; ``--resume`` continues from one (its time counts toward
``--minutes``). ``--export DIR`` writes ``motion.safetensors`` and its model card ``motion.json``
(+ ``motion.md``) with the sha256, the data, the steps and validation figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from recon.code_family import CODE_FAMILY
from recon.functional import code_weights
from recon.motion import (
    MotionConfig,
    MotionEstimator,
    MotionScorer,
    bank_otfs,
    config_dict,
    cost_features,
    velocity_bank,
)
from recon.motion_data import STRATA, stratum_scene, tile_targets, velocity_map
from recon.photos import default_photos, preload_dead_leaves
from recon.scene_batches import coded_batch
from recon.scenes import SceneSampler

ANCHOR_8 = "11100101"
CODE_16 = "1100111100000101"
#: Relative frequency of each stratum in training.
STRATUM_WEIGHTS = {"pan": 3, "pan_accel": 3, "object": 3, "objects": 2, "nonrigid": 1, "still": 1}
SUB_STEPS = 4
LABEL_SIGMA = 0.5


def _pick(gen: torch.Generator, n: int) -> int:
    return int(torch.randint(0, n, (1,), generator=gen))


def draw_code(gen: torch.Generator) -> str:
    """A training code: the 8-chip anchor (30 %), the 16-chip code (30 %) or a family code of
    8-24 chips."""
    u = float(torch.rand(1, generator=gen))
    if u < 0.3:
        return ANCHOR_8
    if u < 0.6:
        return CODE_16
    return "".join(str(b) for b in CODE_FAMILY.sample(gen, lengths=range(8, 25)))


def draw_sigma(gen: torch.Generator, lo: float = 0.001, hi: float = 0.02) -> float:
    """A noise level drawn log-uniformly in ``[lo, hi]`` (of full scale)."""
    u = float(torch.rand(1, generator=gen))
    return float(10 ** (math.log10(lo) + u * (math.log10(hi) - math.log10(lo))))


def soft_labels(bank: Tensor, target: Tensor, sigma: float = LABEL_SIGMA) -> Tensor:
    """``(N, th, tw)`` distribution over the bank, Gaussian around each tile's velocity."""
    d2 = (bank.view(-1, 2, 1, 1) - target.unsqueeze(0)).square().sum(1)
    return torch.softmax(-d2 / (2 * sigma**2), dim=0)


class Sampler:
    """Draws training (or validation) examples: cost volumes with per-tile targets."""

    def __init__(self, split: str, size: int, cfg: MotionConfig, photos=None) -> None:
        self.photos = photos if photos is not None else default_photos()
        preload_dead_leaves(split)
        self.scenes = SceneSampler(self.photos, size, split=split, max_motion_px=48.0)
        self.cfg = cfg
        self.size = size
        self.banks: dict[int, Tensor] = {}
        self.otfs: dict[tuple[str, int], Tensor] = {}
        names, wts = zip(*STRATUM_WEIGHTS.items(), strict=True)
        self.strata = names
        self.stratum_p = torch.tensor(wts, dtype=torch.float64) / sum(wts)

    def bank(self) -> Tensor:
        key = 0
        if key not in self.banks:
            self.banks[key] = velocity_bank(self.cfg.work_max_px, angle_px=self.cfg.angle_px)
        return self.banks[key]

    def example(self, code: str, f: int, stratum: str, seed: int, index: int,
                sigma: float) -> tuple[Tensor, Tensor, Tensor, Any]:
        """Features ``(N, F, th, tw)``, tile targets ``(2, th, tw)``, weights, and the scene."""
        top = min(48.0, (self.cfg.work_max_px - 0.5) * f)
        scene = stratum_scene(self.scenes, stratum, seed, index, (1.0, top))
        b = coded_batch([scene], code, sub_steps=SUB_STEPS, sigma=sigma, noise_seed=seed ^ index)
        y = F.avg_pool2d(b.y[0:1], f)[0, 0]
        t = self.cfg.tile
        hw = ((y.shape[0] // t) * t, (y.shape[1] // t) * t)
        bank = self.bank()
        key = (code, hw[0] * 10000 + hw[1])
        w = code_weights(code, sub_steps=SUB_STEPS, dtype=torch.float64)
        if key not in self.otfs:
            if len(self.otfs) > 64:
                self.otfs.clear()
            self.otfs[key] = bank_otfs(w, bank, hw, torch.float32)
        feats = cost_features(y[: hw[0], : hw[1]], w, bank, n_chips=len(code), tile=t,
                              nsr_gain=self.cfg.nsr_gain, otfs=self.otfs[key])
        target, weight = tile_targets(velocity_map(scene), f, t)
        bg = torch.tensor(scene.layers[0].velocity_px, dtype=torch.float32) / f
        # tiles on a moving object count four times: they are few, and they are the point
        weight = weight * (1 + 3 * ((target - bg.view(2, 1, 1)).norm(dim=0) > 1.0).float())
        return feats, target, weight, scene


def _loss(scorer: MotionScorer, feats: Tensor, targets: Tensor, weights: Tensor,
          background: Tensor, bank: Tensor) -> Tensor:
    """Soft cross-entropy of the tile read-out (tiles weighted) plus that of the frame read-out
    against the background's velocity."""
    tile_logp, frame_logp = scorer(feats)  # (B, N, th, tw), (B, N)
    q = torch.stack([soft_labels(bank.float(), t) for t in targets])
    ce = -(q * tile_logp).sum(1)  # (B, th, tw)
    qb = soft_labels(bank.float(), background.T.reshape(2, -1, 1))  # (N, B, 1)
    ce_frame = -(qb[:, :, 0].T * frame_logp).sum(1).mean()
    return (ce * weights).sum() / weights.sum().clamp(min=1e-6) + ce_frame


def validate(scorer: MotionScorer, cfg: MotionConfig, photos, n_per: int = 4,
             size: int = 256) -> dict[str, Any]:
    """Global-velocity end-point error on the *val* photos, per stratum (coarse and refined)."""
    val = SceneSampler(photos, size, split="val", max_motion_px=48.0)
    preload_dead_leaves("val")
    out: dict[str, Any] = {}
    for code in (ANCHOR_8, CODE_16):
        w = code_weights(code, sub_steps=SUB_STEPS, dtype=torch.float64)
        est = MotionEstimator(scorer, cfg, w, n_chips=len(code))
        for stratum in ("pan", "pan_accel", "object"):
            errs, errs_r = [], []
            for i in range(n_per):
                scene = stratum_scene(val, stratum, 0x7A1, i, (8.0, 40.0))
                b = coded_batch([scene], code, sub_steps=SUB_STEPS, sigma=0.005, noise_seed=i)
                truth = (scene.layers[0].velocity_px if stratum.startswith("pan")
                         else scene.layers[1].velocity_px)
                e = est.estimate(b.y[0, 0], 48.0, refine=False)
                if stratum == "object":  # the object's velocity from its tiles
                    vm = velocity_map(scene)
                    m, wt = tile_targets(vm, e.scale, cfg.tile)
                    moving = (m.norm(dim=0) > 0.5) & (wt > 0.5)
                    if not bool(moving.any()):
                        continue
                    d = (e.field - m * e.scale).norm(dim=0)[moving]
                    errs.append(float(d.median()))
                    continue
                errs.append(math.hypot(e.velocity[0] - truth[0], e.velocity[1] - truth[1]))
                r = est.estimate(b.y[0, 0], 48.0, refine=True)
                errs_r.append(math.hypot(r.velocity[0] - truth[0], r.velocity[1] - truth[1]))
            key = f"{code}/{stratum}"
            out[key] = {"median_epe_coarse": float(torch.tensor(errs).median()) if errs else None,
                        "median_epe_refined": (float(torch.tensor(errs_r).median()) if errs_r
                                               else None)}
    return out


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (the weights' checksum in a model card)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(scorer: MotionScorer, cfg: MotionConfig, out_dir: Path, info: dict[str, Any]) -> Path:
    """Write ``motion.safetensors`` + ``motion.json`` + ``motion.md`` into ``out_dir``."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    wfile = out_dir / "motion.safetensors"
    save_file({k: v.contiguous() for k, v in scorer.state_dict().items()}, str(wfile))
    card = {
        "name": "motion",
        "kind": "motion-scorer",
        "weights": wfile.name,
        "sha256": sha256_file(wfile),
        "parameters": sum(p.numel() for p in scorer.parameters()),
        "hidden": scorer.hidden,
        "config": config_dict(cfg),
        **info,
    }
    cfile = out_dir / "motion.json"
    cfile.write_text(json.dumps(card, indent=2) + "\n")
    lines = [
        "# Model card: motion scorer (recon/motion.py)",
        "",
        "Scores a cost volume of coded deconvolutions (every velocity of a polar bank, both signs)",
        "per tile; softmax over the bank gives a velocity field and the global velocity.",
        "",
        f"- weights: `{wfile.name}`, sha256 `{card['sha256']}`",
        f"- parameters: {card['parameters']}",
        f"- config: `{json.dumps(card['config'])}`",
        f"- code: `{info.get('command', '')}` (recon/train_motion.py)",
        f"- data: {info.get('data', '')}",
        f"- steps: {info.get('steps')}, scenes seen: {info.get('scenes')}, "
        f"time: {info.get('train_minutes', 0):.1f} min on {info.get('machine', '')}",
        f"- final training loss (mean of the last 50 steps): {info.get('final_loss')}",
        "",
        "## Validation (val photos, median end-point error of the global velocity in px; for",
        "`object`, median error over the object's tiles)",
        "",
        "| code / stratum | coarse | refined |",
        "|---|---|---|",
    ]
    for k, v in info.get("validation", {}).items():
        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"
        lines.append(f"| {k} | {fmt(v['median_epe_coarse'])} | {fmt(v['median_epe_refined'])} |")
    (out_dir / "motion.md").write_text("\n".join(lines) + "\n")
    return cfile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recon.train_motion", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    p.add_argument("--out", type=Path, default=Path("out/train/motion"), help="checkpoint folder")
    p.add_argument("--export", type=Path, default=None, help="write weights + card here")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--batch", type=int, default=4, help="scenes per step")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--size", type=int, default=256, help="frame side of the training scenes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--val-per-stratum", type=int, default=4)
    return p


def train(argv: Sequence[str] | None = None) -> int:
    """Run the training (see the module docstring); returns the exit status."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = MotionConfig()
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "ckpt.pt"
    gen = torch.Generator().manual_seed(args.seed)
    scorer = MotionScorer(hidden=args.hidden)
    opt = torch.optim.AdamW(scorer.parameters(), lr=args.lr, weight_decay=1e-4)
    step, elapsed, scenes_seen, losses = 0, 0.0, 0, []
    sampler = Sampler("train", args.size, cfg)
    bank = sampler.bank()
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        scorer.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step, elapsed, scenes_seen, losses = (ck["step"], ck["elapsed"], ck["scenes"],
                                              ck["losses"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)
    else:
        _normalise_features(scorer, sampler, gen)
    budget = args.minutes * 60.0
    t_start = time.perf_counter() - elapsed

    def save() -> None:
        torch.save({"model": scorer.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "step": step, "elapsed": time.perf_counter() - t_start,
                    "scenes": scenes_seen, "losses": losses[-500:], "config": config_dict(cfg)},
                   ckpt_path.with_suffix(".tmp"))
        ckpt_path.with_suffix(".tmp").replace(ckpt_path)

    while True:
        now = time.perf_counter() - t_start
        if now >= budget or (args.max_steps is not None and step >= args.max_steps):
            break
        frac = min(1.0, now / budget)
        for g in opt.param_groups:
            g["lr"] = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        code = draw_code(gen)
        f = 3 + _pick(gen, 2)
        batch = _draw_batch(sampler, cfg, gen, code, f, args.batch)
        scenes_seen += args.batch
        loss = _loss(scorer, *batch, bank)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(scorer.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            print(f"step {step} t={now / 60:.1f} min loss {sum(losses[-20:]) / 20:.4f} "
                  f"lr {opt.param_groups[0]['lr']:.2e}", flush=True)
        if step % args.ckpt_every == 0:
            save()
    save()
    elapsed = time.perf_counter() - t_start
    print(f"done: {step} steps, {scenes_seen} scenes, {elapsed / 60:.1f} min", flush=True)
    if args.export is not None:
        val = validate(scorer, cfg, sampler.photos, n_per=args.val_per_stratum)
        info = _card_info(args, argv, step, scenes_seen, elapsed, losses)
        info["validation"] = val
        card = export(scorer, cfg, args.export, info)
        print(f"exported {card}", flush=True)
        print(json.dumps(val, indent=1), flush=True)
    return 0


def _normalise_features(scorer: MotionScorer, sampler: Sampler, gen: torch.Generator) -> None:
    """Set the scorer's feature normalisation from a first set of 12 examples."""
    feats = []
    for i in range(12):
        code = draw_code(gen)
        st = sampler.strata[int(torch.multinomial(sampler.stratum_p, 1, generator=gen))]
        fe, _, _, _ = sampler.example(code, 3 + i % 2, st, 10_000 + i, i, 0.005)
        feats.append(fe.permute(1, 0, 2, 3).reshape(fe.shape[1], -1))
    allf = torch.cat(feats, 1)
    scorer.mean.copy_(allf.mean(1))
    scorer.std.copy_(allf.std(1).clamp(min=1e-3))


def _draw_batch(sampler: Sampler, cfg: MotionConfig, gen: torch.Generator,
                code: str, f: int, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``n`` training examples of one code at working scale ``1/f``: features, target velocity
    maps, weights (zero where the target is beyond ``cfg.work_max_px``) and the background
    velocities at working scale, each stacked."""
    fs, ts, ws, bgs = [], [], [], []
    for _ in range(n):
        st = sampler.strata[int(torch.multinomial(sampler.stratum_p, 1, generator=gen))]
        sigma = draw_sigma(gen)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        fe, tg, wt, scene = sampler.example(code, f, st, seed, 0, sigma)
        inside = (tg.norm(dim=0) <= cfg.work_max_px).float()
        bgs.append(torch.tensor(scene.layers[0].velocity_px, dtype=torch.float32) / f)
        fs.append(fe)
        ts.append(tg)
        ws.append(wt * inside)
    return torch.stack(fs), torch.stack(ts), torch.stack(ws), torch.stack(bgs)


def _card_info(args: argparse.Namespace, argv: Sequence[str] | None, step: int,
               scenes_seen: int, elapsed: float, losses: list[float]) -> dict[str, Any]:
    """The model card's record of the training run (its validation is added by the caller)."""
    return {
        "command": "python -m recon.train_motion " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:])),
        "data": ("synthetic scenes of recon/motion_data.py (strata " + ", ".join(STRATA)
                 + ") from the train split of the photos of lomiri-wallpapers-16.04, "
                 "lomiri-wallpapers-20.04, mate-backgrounds and the train dead-leaves images; "
                 f"{args.size} px frames, codes {ANCHOR_8}, {CODE_16} and family codes of "
                 "8-24 chips, Gaussian noise 0.001-0.02 of full scale"),
        "steps": step,
        "scenes": scenes_seen,
        "train_minutes": elapsed / 60,
        "machine": f"{platform.machine()} CPU, {args.threads} threads, torch "
                   f"{torch.__version__}",
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
    }


def main() -> int:
    return train()


if __name__ == "__main__":
    sys.exit(main())
