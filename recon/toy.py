"""A toy coded-blur task for quick learning checks: dead-leaves crops under one global translation.

Used by ``bench/diag_learnability.py`` (how fast a network learns as the motion gets less known)
and by a CI test that trains the tiny model for a few seconds and checks that it beats repeating
the coded frame. Clips are rendered with ``grid_sample`` (on any device), 4 sub-steps per chip.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: The code of the toy (BDINR's).
BITS = (1, 1, 1, 0, 0, 1, 0, 1)
SUB_STEPS = 4
#: How much of the motion the network must find out: see :func:`velocities`.
MODES = ("fixed", "sign", "angle", "random")


def velocities(mode: str, n: int, gen: torch.Generator) -> torch.Tensor:
    """[n, 2] displacement over the exposure in pixels, as the mode draws them.

    ``fixed``: 16 px to the right; ``sign``: horizontal, 8 to 24 px, left or right; ``angle``:
    16 px in any direction; ``random``: 0 to 24 px in any direction.
    """
    u = torch.rand(n, 2, generator=gen)
    if mode == "fixed":
        mag, ang = torch.full((n,), 16.0), torch.zeros(n)
    elif mode == "sign":
        mag, ang = 8.0 + 16.0 * u[:, 0], math.pi * (u[:, 1] < 0.5).float()
    elif mode == "angle":
        mag, ang = torch.full((n,), 16.0), 2 * math.pi * u[:, 1]
    else:
        mag, ang = 24.0 * u[:, 0], 2 * math.pi * u[:, 1]
    return torch.stack([mag * torch.cos(ang), mag * torch.sin(ang)], dim=1)


def render(images: torch.Tensor, idx: torch.Tensor, vel: torch.Tensor, size: int,
           gen: torch.Generator, sigma: float = 0.005) -> tuple[torch.Tensor, torch.Tensor]:
    """Coded frames [n, 1, size, size] and chip frames [n, K, size, size] of translating crops.

    Args:
        images: [M, side, side] source images (``side`` >= 2 * size leaves room for the motion).
        idx: [n] which image each clip crops.
        vel: [n, 2] displacement over the exposure (pixels of the output).
        size: output side.
        gen: CPU generator of the noise.
        sigma: Gaussian noise on the coded frame.
    """
    dev = images.device
    k = len(BITS)
    n_t = k * SUB_STEPS
    side = images.shape[-1]
    t = (torch.arange(n_t, device=dev) + 0.5) / n_t - 0.5  # [T], centred
    r = (torch.arange(size, device=dev) - (size - 1) / 2) * 2 / side  # normalised coords
    vel = vel.to(dev)
    shift = (2 / side) * t[None, :, None, None]  # [1, T, 1, 1]
    gx = r[None, None, None, :] + shift * vel[:, 0, None, None, None]
    gy = r[None, None, :, None] + shift * vel[:, 1, None, None, None]
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=-1)  # [n, T, size, size, 2]
    n = vel.shape[0]
    src = images[idx.to(dev)][:, None]  # [n, 1, side, side]
    views = F.grid_sample(src, grid.view(n, n_t * size, size, 2), mode="bilinear",
                          align_corners=False).view(n, k, SUB_STEPS, size, size)
    chips = views.mean(2)
    c = torch.tensor(BITS, dtype=chips.dtype, device=dev)
    y = (chips * c[None, :, None, None]).sum(1, keepdim=True) / c.sum()
    noise = torch.randn(y.shape, generator=gen).to(dev)
    return y + sigma * noise, chips
