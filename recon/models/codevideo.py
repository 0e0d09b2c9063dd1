"""CodeVideoNet: one encoder pass per coded frame, a light decoder queried at any time t.

The encoder is a U-Net of residual blocks over the coded frame ``y`` whose every level is
modulated (FiLM) by an embedding of the whole exposure code, so one network serves a family of
codes; its deepest level works at 1/16 of the resolution, so the receptive field (~200 px) covers
the longest streaks of training (48 px) with context on both sides. It ends in a set of
``features`` basis images ``B_c`` at full resolution. The input is divided by its mean level and
the output scaled back, so the network sees the same picture at any exposure (the forward model is
linear). The decoder gives the sharp frame at time
``t`` in ``[0, 1]`` (the exposure's time, as in :mod:`recon.data`) as ``y + sum_c a_c(t) B_c``,
where the coefficients ``a(t)`` come from a small MLP of Fourier features of ``t``, the code's state
at ``t`` (open or closed), the open fraction of the code before ``t`` and the code embedding. So
the network is run once per capture, and each extra frame costs ``features`` multiply-adds per
pixel; all queries are decoded as one batch, without recursion over time.

Codes are given as 0/1 vectors padded to :data:`MAX_CHIPS` with their length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MAX_CHIPS = 32


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a :class:`CodeVideoNet`."""

    variant: str
    widths: tuple[int, ...]  # encoder channels: full resolution, then one entry per level
    blocks: tuple[int, ...]  # residual blocks per level after its (strided) entry conv
    features: int  # channels of F
    code_embed: int
    t_freqs: int
    cond_hidden: int
    norm: str = "batch"  # "batch" or "none"
    max_chips: int = MAX_CHIPS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        d["blocks"] = tuple(d["blocks"])
        return cls(**d)


TINY = ModelConfig("tiny", widths=(12, 24, 32, 48, 64), blocks=(0, 1, 1, 1, 2), features=32,
                   code_embed=32, t_freqs=4, cond_hidden=64)  # fmt: skip
BASE = ModelConfig("base", widths=(24, 48, 64, 96, 128), blocks=(1, 1, 2, 2, 3), features=48,
                   code_embed=64, t_freqs=6, cond_hidden=128)  # fmt: skip
VARIANTS = {"tiny": TINY, "base": BASE}


def pad_code(bits: Sequence[int], max_chips: int = MAX_CHIPS) -> tuple[Tensor, int]:
    """A code as a float vector padded with zeros to ``max_chips``, and its length."""
    b = [int(x) for x in bits]
    if not 1 <= len(b) <= max_chips:
        raise ValueError(f"The model takes codes of 1..{max_chips} chips; this one has {len(b)}.")
    v = torch.zeros(max_chips)
    v[: len(b)] = torch.tensor(b, dtype=torch.float32)
    return v, len(b)


def code_features(bits: Tensor, lengths: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """The code at query times: its state (1 open, 0 closed) and the open fraction before ``t``.

    Args:
        bits: [B, max_chips] 0/1, padded.
        lengths: [B] code lengths.
        t: [B, T] times in [0, 1].

    Returns:
        ``(state, fraction)``, both [B, T].
    """
    n = lengths.to(t.dtype)[:, None]  # [B, 1]
    pos = (t.clamp(0.0, 1.0) * n).clamp(max=n - 1e-6)  # chip coordinate
    k = pos.floor().long()  # [B, T]
    state = torch.gather(bits, 1, k)
    cum = torch.cumsum(bits, dim=1)  # open chips up to and including k
    before = torch.gather(cum, 1, k) - state  # open chips strictly before chip k
    n_open = cum.gather(1, (lengths - 1)[:, None]).clamp(min=1.0)
    fraction = (before + state * (pos - k.to(t.dtype))) / n_open
    return state, fraction


def fourier_t(t: Tensor, n_freqs: int) -> Tensor:
    """[B, T] -> [B, T, 2 * n_freqs]: sin/cos of 2^i * pi * t (low frequencies only)."""
    freqs = (2.0 ** torch.arange(n_freqs, device=t.device, dtype=t.dtype)) * math.pi
    a = t[..., None] * freqs
    return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _norm(ch: int, kind: str) -> nn.Module:
    # Batch statistics, not per-sample ones: the blur's direction lives in how strong some
    # filter responses are relative to others in one picture. Without normalisation the net
    # did not find even the axis of a global blur (toy of bench/diag_learnability.py: no gain in
    # 800 steps); with BatchNorm it did within 100 steps; GroupNorm did not help.
    return nn.BatchNorm2d(ch) if kind == "batch" else nn.Identity()


class _ResBlock(nn.Module):
    """x + conv(SiLU(norm(conv(x)))), the second conv starting at zero (the block starts as
    identity)."""

    def __init__(self, ch: int, norm: str) -> None:
        super().__init__()
        self.a, self.n, self.b = _conv(ch, ch), _norm(ch, norm), _conv(ch, ch)
        nn.init.zeros_(self.b.weight)
        nn.init.zeros_(self.b.bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.b(F.silu(self.n(self.a(x))))


class _Level(nn.Module):
    """Entry conv (strided below full resolution), norm, SiLU, residual blocks, then code FiLM."""

    def __init__(self, cin: int, cout: int, stride: int, n_blocks: int, embed: int,
                 norm: str) -> None:
        super().__init__()
        self.entry = _conv(cin, cout, stride=stride)
        self.n = _norm(cout, norm)
        self.blocks = nn.Sequential(*[_ResBlock(cout, norm) for _ in range(n_blocks)])
        self.film = nn.Linear(embed, 2 * cout)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: Tensor, code: Tensor) -> Tensor:
        h = self.blocks(F.silu(self.n(self.entry(x))))
        gamma, beta = self.film(code)[:, :, None, None].chunk(2, dim=1)
        return h * (1 + gamma) + beta


class CodeVideoNet(nn.Module):
    """The code-conditioned continuous-time decoder network.

    Example:
        >>> net = CodeVideoNet(TINY)
        >>> y = torch.rand(2, 1, 64, 64)
        >>> bits, n = pad_code([1, 1, 1, 0, 0, 1, 0, 1])
        >>> out = net(y, torch.stack([bits, bits]), torch.tensor([n, n]), torch.rand(2, 5))
        >>> tuple(out.shape)
        (2, 5, 64, 64)
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        w = config.widths
        e = config.code_embed
        self.code_mlp = nn.Sequential(
            nn.Linear(2 * config.max_chips + 2, e), nn.SiLU(), nn.Linear(e, e), nn.SiLU()
        )
        if len(config.blocks) != len(w):
            raise ValueError("ModelConfig.blocks needs one entry per width.")
        self.down = nn.ModuleList(
            _Level(1 if i == 0 else w[i - 1], w[i], 1 if i == 0 else 2, config.blocks[i], e,
                   config.norm)
            for i in range(len(w))
        )
        self.up = nn.ModuleList(
            _Level(w[i + 1] + w[i], w[i], 1, 0, e, config.norm)
            for i in reversed(range(len(w) - 1))
        )
        self.to_basis = _conv(w[0], config.features)
        cond_in = 2 * config.t_freqs + 2 + e
        self.cond = nn.Sequential(
            nn.Linear(cond_in, config.cond_hidden),
            nn.SiLU(),
            nn.Linear(config.cond_hidden, config.cond_hidden),
            nn.SiLU(),
            nn.Linear(config.cond_hidden, config.features),
        )
        # Not zero: with a(t) = 0 at the start, the basis images get no gradient and a(t) only the
        # correlation of random basis images with the residual, which averages out over scenes:
        # training stays at frame(t) = y (seen: 200 steps on fresh batches, +0.00 dB).

    # -- pieces ----------------------------------------------------------------------------------
    def embed_code(self, bits: Tensor, lengths: Tensor) -> Tensor:
        n = lengths.to(bits.dtype)[:, None]
        mask = (torch.arange(bits.shape[1], device=bits.device)[None] < n).to(bits.dtype)
        extra = torch.cat([n / self.config.max_chips, bits.sum(1, keepdim=True) / n], dim=1)
        return self.code_mlp(torch.cat([bits * mask, mask, extra], dim=1))

    def encode(self, y: Tensor, code: Tensor) -> Tensor:
        """[B,1,H,W] coded frame (normalised) and [B,E] code embedding -> basis images
        [B,features,H,W]."""
        skips = []
        h = y
        for level in self.down:
            h = level(h, code)
            skips.append(h)
        skips.pop()
        for level in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = level(torch.cat([h, skip], dim=1), code)
        return self.to_basis(h)

    def decode(
        self, y: Tensor, basis: Tensor, code: Tensor, bits: Tensor, lengths: Tensor, t: Tensor
    ) -> Tensor:
        """Frames at times ``t`` [B, T] from the encoder's basis images: [B, T, H, W]."""
        b, n_t = t.shape
        state, fraction = code_features(bits, lengths, t)
        cond = torch.cat(
            [
                fourier_t(t, self.config.t_freqs),
                state[..., None],
                fraction[..., None],
                code[:, None, :].expand(b, n_t, code.shape[-1]),
            ],
            dim=-1,
        )
        coeff = self.cond(cond.to(basis.dtype))  # [B, T, C]
        return y + torch.einsum("btc,bchw->bthw", coeff, basis)

    def forward(self, y: Tensor, bits: Tensor, lengths: Tensor, t: Tensor) -> Tensor:
        code = self.embed_code(bits.to(y.dtype), lengths)
        # Exposure normalisation: frames scale with the coded frame (the forward model is linear).
        level = y.detach().float().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-3).to(y.dtype)
        feats = self.encode(y / level, code)
        return self.decode(y, feats * level, code, bits.to(y.dtype), lengths, t)


def build_model(variant: str = "tiny") -> CodeVideoNet:
    """A freshly initialised model of a named variant (``tiny`` or ``base``)."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown model variant {variant!r}; choose one of {sorted(VARIANTS)}.")
    return CodeVideoNet(VARIANTS[variant])


def count_macs(model: CodeVideoNet, height: int, width: int, n_frames: int) -> int:
    """Multiply-accumulates of one coded frame of ``height x width`` -> ``n_frames`` frames,
    counted over the convolutions and linear layers (activations and additions left out)."""
    macs = 0

    def hook(mod: nn.Module, inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * mod.in_channels // mod.groups
            macs += out.numel() * k
        elif isinstance(mod, nn.Linear):
            macs += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]  # fmt: skip
    try:
        bits, n = pad_code([1, 0] * 4, model.config.max_chips)
        t = torch.linspace(0, 1, n_frames)[None]
        with torch.no_grad():
            model(torch.zeros(1, 1, height, width), bits[None], torch.tensor([n]), t)
    finally:
        for h in handles:
            h.remove()
    return macs
