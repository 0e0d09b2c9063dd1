"""Inference with the shipped learned models: batch reconstruction and a live-preview API.

:class:`LearnedEngine` loads a model (its sha256 checked against its model card), picks the
device (CUDA when present, else the CPU), runs in bf16 with channels_last, and tiles frames larger
than ``tile`` pixels (overlapping tiles blended with linear ramps, so seams do not show).
:class:`LivePreview` reconstructs only the newest frame it was given, on its own thread, and reports
the latency of each result; frames that arrive while it works are skipped, never queued.

Example::

    engine = LearnedEngine("tiny")
    ok, why = engine.accepts(code_bits)           # is the capture's code inside the model's family?
    video = engine.reconstruct(y, code_bits, n_frames=8)   # y: [H, W] in [0, 1] of full scale
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from recon.device import resolve_device
from recon.models import CodeVideoNet, pad_code
from recon.models.codevideo import ModelConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "weights"


class ModelFileError(ValueError):
    """A weights file is missing, altered, or does not match its model card."""


def shipped_models() -> list[str]:
    """Names of the models shipped with the package (``recon/models/weights/*.json``)."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


def _card_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        return p
    if p.suffix == ".safetensors":
        return p.with_suffix(".json")
    return WEIGHTS_DIR / f"{name_or_path}.json"


def load_model(name_or_path: str | Path = "tiny") -> tuple[CodeVideoNet, dict[str, Any]]:
    """A shipped model by name (``"tiny"``), or a model card / safetensors path, with its card.

    Raises:
        ModelFileError: no such model, or its file's sha256 differs from the card's.
    """
    from safetensors.torch import load_file

    card_path = _card_path(name_or_path)
    if not card_path.exists():
        have = ", ".join(shipped_models()) or "none"
        raise ModelFileError(
            f"No model {str(name_or_path)!r} (looked for {card_path}); shipped models: {have}. "
            "Train one with `blurvid-rig train` or use --method classical."
        )
    card = json.loads(card_path.read_text())
    weights = card_path.with_name(card["file"])
    digest = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else "missing"
    if digest != card["sha256"]:
        raise ModelFileError(
            f"{weights} does not match its model card ({card_path.name}): sha256 {digest[:16]}... "
            f"instead of {card['sha256'][:16]}...; the file is damaged or was replaced. Reinstall "
            "the package or re-export the model."
        )
    model = CodeVideoNet(ModelConfig.from_dict(card["config"]))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    return model, card


def _ramp(n: int, overlap: int, first: bool, last: bool) -> Tensor:
    w = torch.ones(n)
    if overlap > 0:
        r = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if not first:
            w[:overlap] = r
        if not last:
            w[-overlap:] = r.flip(0)
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


class LearnedEngine:
    """Batched, device-aware inference of a learned model.

    Args:
        model: a shipped model name, a card/weights path, or a :class:`CodeVideoNet`.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``.
        bf16: run in bfloat16 (autocast). None (default): on a GPU only; on the 2-core CPU of
            the development machine fp32 was 3x faster for these small networks (memory-bound).
        tile: frames larger than this (pixels) are reconstructed in overlapping tiles.
        overlap: tile overlap in pixels (covers the network's receptive field).
    """

    def __init__(
        self,
        model: str | Path | CodeVideoNet = "tiny",
        *,
        device: str = "auto",
        bf16: bool | None = None,
        tile: int = 512,
        overlap: int = 64,
    ) -> None:
        if isinstance(model, CodeVideoNet):
            self.model, self.card = model.eval(), {"name": "custom", "codes": "any"}
        else:
            self.model, self.card = load_model(model)
        self.device = resolve_device(device)
        self.model = self.model.to(self.device)
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bool(bf16)
        self.tile, self.overlap = int(tile), int(overlap)
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile), got {overlap} for tile {tile}.")

    @property
    def name(self) -> str:
        return str(self.card.get("name", "custom"))

    def accepts(self, bits: Sequence[int]) -> tuple[bool, str]:
        """Is ``bits`` inside the code family the model was trained on? ``(ok, reason)``."""
        bits = tuple(int(b) for b in bits)
        if self.card.get("family") == "box":
            ok = all(bits)
            return ok, "" if ok else "it was trained on box exposures (all chips open) only"
        if self.card.get("family", "coded") == "coded":
            from recon.code_family import is_in_family

            return is_in_family(bits)
        return True, ""

    @torch.no_grad()
    def reconstruct(
        self, y: Tensor, bits: Sequence[int], n_frames: int | None = None, *,
        times: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """Frames at ``times`` (default: the centres of ``n_frames`` equal parts of the exposure,
        ``n_frames`` defaulting to the code length) from one coded frame ``y`` [H, W] (or a batch
        [B, H, W]) scaled to [0, 1] of full scale. Returns [T, H, W] (or [B, T, H, W]), float32 on
        the CPU."""
        single = y.dim() == 2
        yb = (y[None] if single else y).float()
        if yb.dim() != 3:
            raise ValueError(f"y must be [H, W] or [B, H, W], got shape {tuple(y.shape)}.")
        n = len(bits) if n_frames is None else int(n_frames)
        if times is None:
            times = (torch.arange(n, dtype=torch.float32) + 0.5) / n
        times = times.float()
        out = torch.stack([self._one(frame, bits, times) for frame in yb])
        return out[0] if single else out

    def _one(self, y: Tensor, bits: Sequence[int], times: Tensor) -> Tensor:
        h, w = y.shape
        ts, ov = self.tile, self.overlap
        tiles = [(r, c) for r in _starts(h, ts, ov) for c in _starts(w, ts, ov)]
        th, tw = min(h, ts), min(w, ts)
        out = torch.zeros(len(times), h, w)
        weight = torch.zeros(h, w)
        pbits, n = pad_code(bits, self.model.config.max_chips)
        dev = self.device
        for i in range(0, len(tiles), 4):  # up to 4 tiles per forward pass
            group = tiles[i : i + 4]
            batch = torch.stack([y[r : r + th, c : c + tw] for r, c in group])[:, None].to(dev)
            if dev.type == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            b = len(group)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
                pred = self.model(
                    batch,
                    pbits[None].expand(b, -1).to(dev),
                    torch.full((b,), n, device=dev),
                    times[None].expand(b, -1).to(dev),
                )
            pred = pred.float().cpu()
            for (r, c), p in zip(group, pred, strict=True):
                wr = _ramp(th, ov, r == 0, r + th >= h)
                wc = _ramp(tw, ov, c == 0, c + tw >= w)
                wt = wr[:, None] * wc[None, :]
                out[:, r : r + th, c : c + tw] += p * wt
                weight[r : r + th, c : c + tw] += wt
        return out / weight.clamp(min=1e-6)


@dataclass
class PreviewResult:
    """One live reconstruction: the frames, which input frame they came from, and how long it
    took."""

    frames: Tensor
    source_index: int
    latency_s: float
    device: str
    #: the engine's motion field ``(2, th, tw)`` (pixels per exposure per tile), when it has one
    motion: Tensor | None = None
    #: side of one motion tile in the frames' pixels
    motion_tile_px: int | None = None


class LivePreview:
    """Reconstruct the newest frame only, on a worker thread; never slows the caller.

    ``submit(frame, bits)`` drops any frame still waiting; :meth:`latest` returns the newest
    result. Example::

        preview = LivePreview(LearnedEngine("tiny"), n_frames=8)
        preview.submit(y, code_bits)        # from the acquisition side, as often as frames come
        result = preview.latest()           # from the display side
        preview.close()
    """

    def __init__(self, engine: LearnedEngine, n_frames: int = 8) -> None:
        self.engine, self.n_frames = engine, int(n_frames)
        self._cv = threading.Condition()
        self._pending: tuple[Tensor, tuple[int, ...], int] | None = None
        self._result: PreviewResult | None = None
        self._submitted = 0
        self.skipped = 0
        self.error: BaseException | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="live-preview", daemon=True)
        self._thread.start()

    def submit(self, y: Tensor, bits: Sequence[int]) -> None:
        with self._cv:
            if self._pending is not None:
                self.skipped += 1
            self._pending = (y, tuple(int(b) for b in bits), self._submitted)
            self._submitted += 1
            self._cv.notify()

    def latest(self) -> PreviewResult | None:
        with self._cv:
            return self._result

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                y, bits, index = self._pending  # type: ignore[misc]
                self._pending = None
            t0 = time.perf_counter()
            try:
                frames = self.engine.reconstruct(y, bits, self.n_frames)
            except Exception as e:  # reported to the display, the preview stops
                self.error = e
                return
            last = getattr(self.engine, "last", None)
            result = PreviewResult(frames, index, time.perf_counter() - t0,
                                   str(self.engine.device),
                                   motion=getattr(last, "motion", None),
                                   motion_tile_px=getattr(last, "motion_tile_px", None))
            with self._cv:
                self._result = result
