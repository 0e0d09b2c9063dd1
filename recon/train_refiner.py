"""Train the non-blind refiner of :mod:`recon.refiner` on synthetic pans with known motion.

    python -m recon.train_refiner --minutes 60 --out out/train/refiner --export recon/models/refiner

Every step draws one code (the anchor ``11100101``, the 16-chip ``1100111100000101`` or a family
code of 8 to 24 chips) and ``--batch`` scenes of the ``pan`` and ``pan_accel`` strata of
:mod:`recon.motion_data` from the *train* photos and dead leaves (``--size`` px, 2 to 48 px per
exposure), coded with Gaussian noise of 0.001 to 0.02 of full scale (its level estimated from
the frame, as at inference). The velocity handed to the
refiner is the truth jittered as the estimator errs (length x N(1, 0.03), direction N(0, 2 deg),
plus N(0, 0.5) px), so the network learns to tolerate it. Loss: L1 between the refined image and
the true mid-exposure image (which does not depend on the velocity), plus 0.1 x the L1 of
re-blurring the refined image through the forward model (the code-weighted mean of the frames
rendered along the given velocity) against the coded frame.

Checkpoints (``ckpt.pt``) every ``--ckpt-every`` steps and at the end; ``--resume`` continues from
one. ``--export DIR`` writes ``refiner.safetensors``, its card ``refiner.json`` (+ ``refiner.md``)
with the sha256, data, steps and validation figures (val photos: PSNR of the frames from the
closed-form Wiener deconvolution alone and from the refiner, with the true and a jittered
velocity).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from recon.classical import render_frames
from recon.functional import code_weights
from recon.metrics import psnr
from recon.motion_data import stratum_scene
from recon.photos import default_photos, preload_dead_leaves
from recon.refiner import DeblurRefiner, refiner_inputs
from recon.scene_batches import coded_batch
from recon.scenes import SceneSampler, render
from recon.train_motion import ANCHOR_8, CODE_16, draw_code, draw_sigma, sha256_file

SUB_STEPS = 4


def jitter(v: Sequence[float], gen: torch.Generator) -> tuple[float, float]:
    """The truth as an estimator misses it: length x N(1, 0.03), angle N(0, 2 deg),
    plus N(0, 0.5) px per axis."""
    r = torch.randn(4, generator=gen).tolist()
    ln = math.hypot(v[0], v[1]) * (1 + 0.03 * r[0])
    a = math.atan2(v[1], v[0]) + math.radians(2.0) * r[1]
    return (ln * math.cos(a) + 0.5 * r[2], ln * math.sin(a) + 0.5 * r[3])


def example(sampler: SceneSampler, code: str, seed: int, sigma: float,
            gen: torch.Generator | None, motion_px: tuple[float, float] = (2.0, 48.0)
            ) -> tuple[Tensor, Tensor, Tensor, tuple[float, float], float, Tensor]:
    """One training pair: the refiner's input ``(1, 5, H, W)``, the coded frame, the true chips
    ``(K, H, W)``, the velocity given (jittered when ``gen`` is given), the frame's mean and the
    true mid-exposure image ``(H, W)`` (the instantaneous view at ``t = 1/2``)."""
    stratum = "pan_accel" if seed % 3 == 0 else "pan"
    scene = stratum_scene(sampler, stratum, seed, 0, motion_px)
    b = coded_batch([scene], code, sub_steps=SUB_STEPS, sigma=sigma, noise_seed=seed)
    y = b.y[0, 0]
    v = scene.layers[0].velocity_px
    vg = jitter(v, gen) if gen is not None else (float(v[0]), float(v[1]))
    w = code_weights(code, sub_steps=SUB_STEPS, dtype=torch.float64)
    x, m = refiner_inputs(y, w, vg)  # the noise level estimated, as at inference
    # the instantaneous view at t = 1/2 (what render_frames carries along the motion); the mean
    # of the two sub-step views around it was a double image, v / n px apart
    sharp = render(scene, [0.5])[0]
    return x, y, b.chips[0], vg, m, sharp


def refiner_loss(model: DeblurRefiner, batch: list[tuple[Any, ...]], code: str) -> Tensor:
    """The training loss of one batch of :func:`example` pairs coded with ``code``: L1 to the
    mid-exposure image plus 0.1 x the L1 of the re-blurred refined image to the coded frame."""
    k = len(code)
    times = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    c = torch.tensor([float(ch) for ch in code])
    c = (c / c.sum()).view(k, 1, 1)
    out = model(torch.cat([b[0] for b in batch]))
    total = out.new_zeros(())
    for i, (_, y, _chips, vg, m, target) in enumerate(batch):
        sharp = out[i, 0] + m
        # the mid-exposure image does not depend on the (jittered) velocity: it is the target;
        # the frames rendered along a jittered velocity would be misaligned whatever the net did
        frames = render_frames(sharp, vg, times=times, frame_exposure=1.0 / k)
        # the forward model: the coded frame is the code-weighted mean of the chips' views
        reblur = (frames * c).sum(0)
        total = total + (sharp - target).abs().mean() + 0.1 * (reblur - y).abs().mean()
    return total / len(batch)


def validate(model: DeblurRefiner, photos: Any, size: int, n: int = 6) -> dict[str, Any]:
    """Mean frame PSNR on val pans: Wiener alone vs refined, true and jittered velocity."""
    val = SceneSampler(photos, size, split="val", max_motion_px=48.0)
    preload_dead_leaves("val")
    gen = torch.Generator().manual_seed(0xFA1)
    out: dict[str, Any] = {}
    model.eval()
    for code in (ANCHOR_8, CODE_16):
        k = len(code)
        times = (torch.arange(k, dtype=torch.float64) + 0.5) / k
        for jit in (False, True):
            rows: dict[str, list[float]] = {"B0": [], "wiener": [], "refined": []}
            for i in range(n):
                x, y, chips, vg, m, _ = example(val, code, 0x5EED + i, 0.005,
                                                gen if jit else None, (8.0, 40.0))
                with torch.no_grad():
                    sharp = model(x)[0, 0] + m
                for name, img in (("wiener", x[0, 0] + m), ("refined", sharp)):
                    fr = render_frames(img, vg, times=times, frame_exposure=1.0 / k)
                    rows[name].append(float(torch.stack([
                        psnr(fr[j].clamp(0, 1), chips[j], data_range=1.0)
                        for j in range(k)]).mean()))
                rows["B0"].append(float(torch.stack([
                    psnr(y.clamp(0, 1), chips[j], data_range=1.0) for j in range(k)]).mean()))
            key = f"{code}/{'jittered' if jit else 'true'} velocity"
            out[key] = {r: sum(v) / len(v) for r, v in rows.items()}
    model.train()
    return out


def export(model: DeblurRefiner, out_dir: Path, info: dict[str, Any]) -> Path:
    """Write ``refiner.safetensors`` + ``refiner.json`` + ``refiner.md`` into ``out_dir``."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    wfile = out_dir / "refiner.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(wfile))
    card = {"name": "refiner", "kind": "non-blind-refiner", "weights": wfile.name,
            "sha256": sha256_file(wfile), "parameters": sum(p.numel() for p in model.parameters()),
            "width": model.width, **info}
    cfile = out_dir / "refiner.json"
    cfile.write_text(json.dumps(card, indent=2) + "\n")
    lines = [
        "# Model card: non-blind refiner (recon/refiner.py)",
        "",
        "A three-level U-Net that corrects the closed-form coded (Wiener) deconvolution of a frame",
        "with its estimated motion; the frames are the refined image rendered along the motion.",
        "",
        f"- weights: `{wfile.name}`, sha256 `{card['sha256']}`",
        f"- parameters: {card['parameters']} (width {model.width})",
        f"- code: `{info.get('command', '')}` (recon/train_refiner.py)",
        f"- data: {info.get('data', '')}",
        f"- steps: {info.get('steps')}, scenes seen: {info.get('scenes')}, "
        f"time: {info.get('train_minutes', 0):.1f} min on {info.get('machine', '')}",
        f"- final training loss (mean of the last 50 steps): {info.get('final_loss')}",
        "",
        "## Validation (val photos, pans 8-40 px, noise 0.005; mean frame PSNR, dB)",
        "",
        "| code / velocity given | B0 | Wiener | refined |",
        "|---|---|---|---|",
    ]
    for k, v in info.get("validation", {}).items():
        lines.append(f"| {k} | {v['B0']:.2f} | {v['wiener']:.2f} | {v['refined']:.2f} |")
    (out_dir / "refiner.md").write_text("\n".join(lines) + "\n")
    return cfile


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recon.train_refiner", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="training time budget")
    p.add_argument("--out", type=Path, default=Path("out/train/refiner"),
                   help="checkpoint folder")
    p.add_argument("--export", type=Path, default=None, help="write weights + card here")
    p.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    p.add_argument("--batch", type=int, default=4, help="scenes per step")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--width", type=int, default=24)
    p.add_argument("--size", type=int, default=128, help="frame side of the training scenes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--val-n", type=int, default=6, help="validation scenes per row")
    return p


def train(argv: Sequence[str] | None = None) -> int:
    """Run the training (see the module docstring); returns the exit status."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "ckpt.pt"
    gen = torch.Generator().manual_seed(args.seed)
    model = DeblurRefiner(width=args.width)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, elapsed, scenes_seen, losses = 0, 0.0, 0, []
    photos = default_photos()
    preload_dead_leaves("train")
    sampler = SceneSampler(photos, args.size, split="train", max_motion_px=48.0)
    if args.resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        step, elapsed, scenes_seen, losses = (ck["step"], ck["elapsed"], ck["scenes"],
                                              ck["losses"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min)", flush=True)
    budget = args.minutes * 60.0
    t_start = time.perf_counter() - elapsed

    def save() -> None:
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "step": step, "elapsed": time.perf_counter() - t_start,
                    "scenes": scenes_seen, "losses": losses[-500:], "width": model.width},
                   ckpt_path.with_suffix(".tmp"))
        ckpt_path.with_suffix(".tmp").replace(ckpt_path)

    model.train()
    while True:
        now = time.perf_counter() - t_start
        if now >= budget or (args.max_steps is not None and step >= args.max_steps):
            break
        set_lr(opt, args.lr, step, now / budget)
        code, batch = draw_batch(sampler, gen, args.batch)
        scenes_seen += args.batch
        loss = refiner_loss(model, batch, code)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            print(f"step {step} t={now / 60:.1f} min loss {sum(losses[-20:]) / 20:.5f} "
                  f"lr {opt.param_groups[0]['lr']:.2e}", flush=True)
        if step % args.ckpt_every == 0:
            save()
    save()
    elapsed = time.perf_counter() - t_start
    print(f"done: {step} steps, {scenes_seen} scenes, {elapsed / 60:.1f} min", flush=True)
    if args.export is not None:
        val = validate(model, photos, 256, n=args.val_n)
        info = _card_info(args, argv, step, scenes_seen, elapsed, losses, val)
        card = export(model, args.export, info)
        print(f"exported {card}", flush=True)
        print(json.dumps(val, indent=1), flush=True)
    return 0


def set_lr(opt: torch.optim.Optimizer, lr: float, step: int, frac: float) -> None:
    """Warm up over the first 100 steps, then a cosine from ``lr`` to 5 % of it over the time
    budget (``frac``: the share of it spent)."""
    warm = min(1.0, (step + 1) / 100)
    frac = min(1.0, frac)
    for g in opt.param_groups:
        g["lr"] = lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


def draw_batch(sampler: SceneSampler, gen: torch.Generator, n: int
               ) -> tuple[str, list[tuple[Any, ...]]]:
    """One step's code and its ``n`` training pairs (:func:`example`), drawn from ``gen``."""
    code = draw_code(gen)
    batch = []
    for _ in range(n):
        sigma = draw_sigma(gen)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        batch.append(example(sampler, code, seed, sigma, gen))
    return code, batch


def _card_info(args: argparse.Namespace, argv: Sequence[str] | None, step: int, scenes_seen: int,
               elapsed: float, losses: list[float], val: dict[str, Any]) -> dict[str, Any]:
    """What the model card says of the run."""
    return {
        "command": "python -m recon.train_refiner " + " ".join(
            a for a in (argv if argv is not None else sys.argv[1:])),
        "data": ("pans with and without acceleration (recon/motion_data.py) from the train "
                 "split of the photos of lomiri-wallpapers-16.04, lomiri-wallpapers-20.04, "
                 f"mate-backgrounds and the train dead-leaves images; {args.size} px frames, "
                 "2-48 px per exposure, codes 11100101, 1100111100000101 and family codes "
                 "of 8-24 chips, Gaussian noise 0.001-0.02 of full scale, velocities "
                 "jittered (length 3 %, direction 2 deg, 0.5 px)"),
        "steps": step,
        "scenes": scenes_seen,
        "train_minutes": elapsed / 60,
        "machine": f"{platform.machine()} CPU, {args.threads} threads, torch "
                   f"{torch.__version__}",
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 5),
        "validation": val,
    }


def main() -> int:
    return train()


if __name__ == "__main__":
    sys.exit(main())
