"""Train a :class:`~recon.models.CodeVideoNet` on synthetic coded-blur scenes.

    python -m recon.train --variant tiny --minutes 60 --out out/train/tiny
    blurvid-rig train --variant tiny --minutes 60          # the same

Every step draws a code from the family (8..32 chips, ``11100101`` among them; ``--box`` trains on
box exposures of the same lengths instead: the B2 ablation), renders a batch of scenes
(:mod:`recon.scenes`), and fits the frames at the chip centres and at random instants. Losses:
Charbonnier at random t, a small edge (gradient) term, and re-blur consistency: the predicted chip
frames put through the exact forward model (``y = sum c_k x_k / sum c_k``) must give the coded
frame back. bf16 autocast and channels_last on the CPU, bf16 on a GPU.

Checkpoints (``ckpt.pt``, model + optimiser + step + RNG state) are written every
``--ckpt-every`` steps and at the end; ``--resume`` continues from one. ``--export DIR`` writes the
final weights as safetensors with a model card (JSON and markdown, sha256 included).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from recon.device import resolve_device
from recon.metrics import psnr
from recon.models import CodeVideoNet, build_model, pad_code
from recon.models.codevideo import ModelConfig
from recon.train_args import TrainConfig, add_arguments

WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "weights"


# -- losses ----------------------------------------------------------------------------------------
#: Charbonnier's eps: quadratic below ~eps, linear above. With 1e-3 (nearly L1) the network barely
#: moved from its identity start in 300 steps on one batch (+0.1 dB); with 0.05 it gained 5.8 dB,
#: like L2 (+4.9 dB), while large errors (occlusions) still weigh linearly.
CHARBONNIER_EPS = 0.05


def charbonnier(a: Tensor, b: Tensor, eps: float = CHARBONNIER_EPS) -> Tensor:
    """Mean of sqrt((a - b)^2 + eps^2) - eps (zero for a perfect fit)."""
    return (torch.sqrt((a - b) ** 2 + eps * eps) - eps).mean()


def edge_loss(a: Tensor, b: Tensor) -> Tensor:
    """Charbonnier distance between image gradients (last two dims)."""
    gx = lambda z: z[..., :, 1:] - z[..., :, :-1]  # noqa: E731
    gy = lambda z: z[..., 1:, :] - z[..., :-1, :]  # noqa: E731
    return charbonnier(gx(a), gx(b)) + charbonnier(gy(a), gy(b))


def reblur(chips: Tensor, bits: Tensor) -> Tensor:
    """The forward model: [B, K, H, W] chip frames and K code bits -> [B, 1, H, W]."""
    w = bits.to(chips.dtype)
    return (chips * w[None, :, None, None]).sum(1, keepdim=True) / w.sum()


def step_rate(steps: int, seconds: float) -> float:
    return steps / max(seconds, 1e-9)


def chip_centres(n_chips: int) -> Tensor:
    return (torch.arange(n_chips, dtype=torch.float32) + 0.5) / n_chips


# -- one step --------------------------------------------------------------------------------------
def model_inputs(bits: tuple[int, ...], batch: int, device: torch.device, max_chips: int):
    v, n = pad_code(bits, max_chips)
    return v[None].expand(batch, -1).to(device), torch.full((batch,), n, device=device)


def loss_on_batch(
    model: CodeVideoNet,
    y: Tensor,
    chips: Tensor,
    sub: Tensor,
    sub_times: Tensor,
    bits: tuple[int, ...],
    *,
    n_random: int,
    generator: torch.Generator,
    reblur_weight: float = 0.2,
    edge_weight: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """The training loss of one batch, and the predicted chip frames."""
    b, k = chips.shape[:2]
    device = y.device
    pbits, lengths = model_inputs(bits, b, device, model.config.max_chips)
    idx = torch.randint(0, sub.shape[1], (n_random,), generator=generator)
    t = torch.cat([chip_centres(k), sub_times[idx].float()]).to(device)
    pred = model(y, pbits, lengths, t[None].expand(b, -1))
    pred_chips, pred_sub = pred[:, :k].float(), pred[:, k:].float()
    target_sub = sub[:, idx.to(sub.device)]
    loss = charbonnier(pred_chips, chips) + charbonnier(pred_sub, target_sub)
    loss = loss + edge_weight * (edge_loss(pred_chips, chips) + edge_loss(pred_sub, target_sub))
    code = torch.tensor(bits, device=device)
    loss = loss + reblur_weight * charbonnier(reblur(pred_chips, code), y.float())
    return loss, pred_chips


# -- checkpoints and export ------------------------------------------------------------------------
def save_checkpoint(path: Path, model, opt, step: int, extra: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "opt": opt.state_dict(),
            "step": step,
            "config": model.config.to_dict(),
            "torch_rng": torch.get_rng_state(),
            "extra": extra,
        },
        tmp,
    )
    tmp.replace(path)  # a crash mid-write never leaves a broken checkpoint


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def export_weights(model: CodeVideoNet, out_dir: Path, name: str, card: dict[str, Any]) -> Path:
    """Write ``name.safetensors`` and its model card (``name.json``, ``name.md``)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"config": json.dumps(model.config.to_dict())})
    card = {**card, "file": path.name, "sha256": sha256_file(path),
            "config": model.config.to_dict()}  # fmt: skip
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(model_card_markdown(card))
    return path


def model_card_markdown(card: dict[str, Any]) -> str:
    m = card.get("metrics", {})
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"- **What**: {card['description']}",
        f"- **Architecture**: CodeVideoNet `{card['config']['variant']}`, "
        f"{card['parameters']:,} parameters, {card['gmac_512_16']:.2f} GMAC for a 512x512 coded "
        "frame -> 16 frames.",
        f"- **Codes**: {card['codes']}",
        f"- **Data**: {card['data']}",
        f"- **Training**: {card['steps']} steps of batch {card['batch']} at {card['size']}x"
        f"{card['size']}, {card['wall_minutes']:.1f} min on {card['hardware']}; "
        f"`{card['command']}` (code: `recon/train.py`, seed {card['seed']}).",
        f"- **Validation** (fixed set, {m.get('val_samples', '?')} scenes): PSNR of the chip "
        f"frames {m.get('val_psnr', float('nan')):.2f} dB (repeating the coded frame: "
        f"{m.get('val_psnr_b0', float('nan')):.2f} dB).",
        f"- **File**: `{card['file']}`, sha256 `{card['sha256']}` (checked when loaded).",
        "",
    ]
    return "\n".join(lines)


# -- validation ------------------------------------------------------------------------------------
@torch.no_grad()
def validate(model: CodeVideoNet, samples: list, device: torch.device) -> dict[str, float]:
    """PSNR of the predicted chip frames on a fixed set, and of B0 (repeat the coded frame)."""
    model.eval()
    scores, base = [], []
    for s in samples:
        y = s.y.to(device)
        k = s.chips.shape[1]
        pbits, lengths = model_inputs(s.bits, y.shape[0], device, model.config.max_chips)
        t = chip_centres(k).to(device)[None].expand(y.shape[0], -1)
        pred = model(y, pbits, lengths, t).float().clamp(0, 1)
        scores.append(float(psnr(pred, s.chips.to(device), data_range=1.0)))
        base.append(float(psnr(y.expand_as(pred), s.chips.to(device), data_range=1.0)))
    model.train()
    weights = [s.y.shape[0] for s in samples]
    n = sum(weights)
    return {
        "val_psnr": sum(w * v for w, v in zip(weights, scores, strict=True)) / n,
        "val_psnr_b0": sum(w * v for w, v in zip(weights, base, strict=True)) / n,
        "val_samples": n,
    }


# -- data: scenes drawn in worker processes, rendered there (CPU) or on the GPU ------------------
class BatchStream(torch.utils.data.IterableDataset):
    """Endless training batches from DataLoader workers (their own processes).

    With ``render=True`` a worker renders the batch itself (training on the CPU); otherwise it
    only draws the scenes (a few ms each) and the training process renders them on its GPU,
    where 128 views of a batch take milliseconds instead of a second of CPU time.
    """

    def __init__(self, batch: int, size: int, seed: int, start_step: int, box: bool,
                 render: bool) -> None:
        super().__init__()
        self.batch, self.size, self.box, self.render = batch, size, box, render
        self.seed = seed * 1_000_003 + start_step

    def __iter__(self):
        from recon.code_family import sample_code
        from recon.photos import default_photos
        from recon.scene_batches import make_batch
        from recon.scenes import SceneSampler

        torch.set_num_threads(1)
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        photos = default_photos()
        gen = torch.Generator().manual_seed(self.seed * 101 + wid)
        sampler = SceneSampler(photos, self.size, split="train")
        while True:
            bits = sample_code(gen)
            if self.box:
                bits = (1,) * len(bits)
            if self.render:
                b = make_batch(self.batch, self.size, bits, sub_steps=4, generator=gen,
                               photos=photos)  # fmt: skip
                yield bits, (b.y, b.chips, b.sub, b.sub_times)
            else:
                seeds = torch.randint(0, 2**62, (self.batch,), generator=gen).tolist()
                sigmas = (0.01 * torch.rand(self.batch, generator=gen, dtype=torch.float64))
                yield bits, ([sampler.sample(sd, 0) for sd in seeds], sigmas.tolist(),
                             [sd ^ 0x5A5A for sd in seeds])


def batch_stream(config: TrainConfig, start_step: int, workers: int, render: bool):
    """Endless ``(bits, payload)`` batches of :class:`BatchStream` from ``workers`` processes
    (0: drawn in this process)."""
    ds = BatchStream(config.batch, config.size, config.seed, start_step, config.box, render)
    if workers == 0:
        return iter(ds)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=workers, prefetch_factor=4, persistent_workers=True
    )
    return iter(loader)


def next_batch(stream, device: torch.device, render_here: bool):
    """The next ``(bits, y, chips, sub, sub_times)`` on ``device``."""
    from recon.scene_batches import coded_batch

    bits, payload = next(stream)
    bits = tuple(int(b) for b in bits)
    if render_here:
        sc, sigmas, seeds = payload
        b = coded_batch(sc, bits, sub_steps=4, sigma=sigmas, noise_seed=seeds,
                        device=device)  # fmt: skip
        return bits, b.y, b.chips, b.sub, b.sub_times
    y, chips, sub, sub_times = payload
    return bits, y.to(device), chips.to(device), sub.to(device), sub_times


def reverse_time(bits: tuple[int, ...], chips: Tensor, sub: Tensor, sub_times: Tensor):
    """The same coded frame seen as the time-reversed scene under the reversed code."""
    return bits[::-1], chips.flip(1), sub.flip(1), sub_times.flip(0).neg().add(1.0)


# -- the loop --------------------------------------------------------------------------------------
def lr_factor(step: int, progress: float) -> float:
    """Warm-up over the first 200 steps, then cosine decay to zero at ``progress`` 1."""
    return min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _learning_rate(config: TrainConfig, step: int, t_start: float) -> float:
    """The learning rate of ``step`` (:func:`lr_factor`); the schedule ends with whichever comes
    first: ``steps`` or ``minutes`` after ``t_start``."""
    progress = step / config.steps
    if config.minutes:
        progress = max(progress, (time.perf_counter() - t_start) / (config.minutes * 60))
    return config.lr * lr_factor(step, progress)


def _resume(ckpt: Path, model: CodeVideoNet, opt: torch.optim.Optimizer,
            device: torch.device) -> tuple[int, float]:
    """Load the model, optimiser and RNG state of a checkpoint; returns its step and wall time."""
    state = torch.load(ckpt, map_location=device, weights_only=False)
    if ModelConfig.from_dict(state["config"]) != model.config:
        raise SystemExit(f"{ckpt} holds a different model variant; use another --out.")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    step = int(state["step"])
    torch.set_rng_state(state["torch_rng"])
    print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    return step, float(state["extra"].get("wall_s", 0.0))


def _validation_batches(config: TrainConfig, photos: Any) -> list:
    """The fixed validation scenes (2 per stratum) under ``11100101`` (or a box of 8 chips)."""
    from recon.codes import KNOWN_CODES
    from recon.scene_batches import fixed_set

    val_code = (1,) * 8 if config.box else KNOWN_CODES["bdinr8"]
    val_set = fixed_set("val", size=config.size, n_per_stratum=2, code=val_code,
                        photos=photos)  # fmt: skip
    return list(val_set.batches(6))


def _training_batch(stream, device: torch.device, render_here: bool, config: TrainConfig,
                    gen: torch.Generator):
    """The next batch ``(bits, y, chips, sub, sub_times)``: seen time-reversed half of the time
    (coded training), at a random exposure gain, ``y`` channels-last."""
    bits, y, chips, sub, sub_times = next_batch(stream, device, render_here)
    if not config.box and torch.rand((), generator=gen) < 0.5:
        bits, chips, sub, sub_times = reverse_time(bits, chips, sub, sub_times)
    # exposure level varies between captures: a random gain (the forward model is linear)
    gain = torch.empty(config.batch, 1, 1, 1, device=device).uniform_(0.3, 1.0, generator=None)
    y, chips, sub = y * gain, chips * gain, sub * gain
    y = y.contiguous(memory_format=torch.channels_last)
    return bits, y, chips, sub, sub_times


def train(config: TrainConfig) -> Path:
    """Train the model of ``config`` (see the module docstring); returns the checkpoint path."""
    from tqdm import tqdm

    from recon.photos import default_photos

    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "ckpt.pt"
    model = build_model(config.variant).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    step, wall_before = (_resume(ckpt, model, opt, device) if config.resume and ckpt.exists()
                         else (0, 0.0))
    # channels-last: faster for these convolutions on CPUs and on GPUs
    model = model.to(memory_format=torch.channels_last)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
    photos = default_photos()
    gen = torch.Generator().manual_seed(config.seed * 1000 + step)
    val = _validation_batches(config, photos)
    render_here = config.workers > 0 and (device.type == "cuda" or config.render_in_loop)
    stream = batch_stream(config, step, config.workers, render=not render_here)
    t_start = time.perf_counter()
    first_step = step
    t_data = t_model = 0.0
    deadline = t_start + config.minutes * 60 if config.minutes else math.inf
    bar = tqdm(total=config.steps, initial=step, unit="step", desc=f"train {config.variant}",
               disable=config.quiet)  # fmt: skip
    model.train()
    while step < config.steps and time.perf_counter() < deadline:
        t0 = time.perf_counter()
        bits, y, chips, sub, sub_times = _training_batch(stream, device, render_here, config, gen)
        t1 = time.perf_counter()
        with amp:
            loss, _ = loss_on_batch(model, y, chips, sub, sub_times, bits, n_random=4,
                                    generator=gen)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        lr = _learning_rate(config, step, t_start)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        step += 1
        t2 = time.perf_counter()
        t_data += t1 - t0
        t_model += t2 - t1
        share = t_data / max(t_data + t_model, 1e-9)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}", data=f"{share:.0%}",
                            lr=f"{lr:.1e}")  # fmt: skip
        if config.log_every and step % config.log_every == 0:
            rate = step_rate(step - first_step, time.perf_counter() - t_start)
            bar.write(f"step {step}: loss {loss.item():.4f}, {rate:.1f} steps/s, data {share:.0%}")
        bar.update(1)
        if step % config.val_every == 0 or step == config.steps:
            metrics = validate(model, val, device)
            bar.write(f"step {step}: val PSNR {metrics['val_psnr']:.2f} dB "
                      f"(B0 {metrics['val_psnr_b0']:.2f} dB)")  # fmt: skip
            if config.export:
                wall = wall_before + time.perf_counter() - t_start
                export_now(model, config, step, wall, metrics, device)
        if step % config.ckpt_every == 0:
            wall = wall_before + time.perf_counter() - t_start
            save_checkpoint(ckpt, model, opt, step, {"wall_s": wall})
    bar.close()
    wall = wall_before + time.perf_counter() - t_start
    save_checkpoint(ckpt, model, opt, step, {"wall_s": wall})
    metrics = validate(model, val, device)
    metrics["data_share"] = t_data / max(t_data + t_model, 1e-9)
    print(json.dumps({"step": step, "wall_min": wall / 60, **metrics}), file=sys.stderr)
    if config.export:
        export_now(model, config, step, wall, metrics, device)
    return ckpt


def export_now(model: CodeVideoNet, config: TrainConfig, step: int, wall: float,
               metrics: dict[str, float], device: torch.device) -> Path:
    """Export the current weights with their model card (training goes on unchanged)."""
    import copy

    from recon.models import count_macs

    name = config.name or (f"{config.variant}-box" if config.box else config.variant)
    probe = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format).cpu()
    hardware = (torch.cuda.get_device_name(device) if device.type == "cuda" else
                f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)")
    card = {
        "name": name,
        "description": "coded-exposure video reconstruction: one coded frame -> frames at any t"
        + (" (trained on box exposures: the uncoded ablation B2)" if config.box else ""),
        "parameters": sum(p.numel() for p in model.parameters()),
        "gmac_512_16": count_macs(probe, 512, 512, 16) / 1e9,
        "family": "box" if config.box else "coded",
        "codes": ("box exposures of 8..32 chips" if config.box else
                  "the family of recon.code_family.sample_code: 8..32 chips, 11100101 included; "
                  "each batch also seen time-reversed under the reversed code"),
        "data": "recon.scenes synthetic layered scenes (Debian wallpaper photographs and "
        "dead-leaves images, parametric motion up to 48 px per exposure, camera shake), "
        "4 sub-steps per chip, Gaussian noise sigma in [0, 0.01], exposure gain in [0.3, 1]",
        "steps": step,
        "batch": config.batch,
        "size": config.size,
        "wall_minutes": wall / 60,
        "hardware": f"{hardware}, {device.type}",
        "command": "python -m recon.train " + " ".join(sys.argv[1:]),
        "seed": config.seed,
        "metrics": metrics,
        "torch": torch.__version__,
    }
    path = export_weights(model, Path(config.export), name, card)
    print(f"exported {path} at step {step}", file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(p)
    train(TrainConfig.from_args(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
