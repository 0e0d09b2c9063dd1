"""A real learning check, cheap enough for CI: the tiny model, trained for a few seconds on a toy
coded blur whose motion is known (one direction, one length), must beat repeating the coded frame.
It fails if the model, its losses' gradients or its inference path (eval mode) break."""

from __future__ import annotations

import pytest
import torch

from recon.data import dead_leaves
from recon.metrics import psnr
from recon.models import build_model
from recon.toy import BITS, render, velocities
from recon.train import chip_centres, model_inputs

SIZE = 48


@pytest.mark.slow
def test_tiny_model_learns_a_known_blur_and_beats_b0() -> None:
    torch.manual_seed(0)
    images = torch.stack([dead_leaves(2 * SIZE, 2 * SIZE, seed=s) for s in range(12)])
    model = build_model("tiny")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def forward(y: torch.Tensor) -> torch.Tensor:
        pbits, lengths = model_inputs(BITS, y.shape[0], torch.device("cpu"), 32)
        t = chip_centres(len(BITS))[None].expand(y.shape[0], -1)
        return model(y, pbits, lengths, t)

    vgen = torch.Generator().manual_seed(1)
    val_y, val_c = render(images, torch.randint(8, 12, (16,), generator=vgen),
                          velocities("fixed", 16, vgen), SIZE, vgen)  # fmt: skip
    b0 = float(psnr(val_y.expand_as(val_c), val_c))
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        y, chips = render(images, torch.randint(0, 8, (8,), generator=gen),
                          velocities("fixed", 8, gen), SIZE, gen)  # fmt: skip
        loss = ((forward(y) - chips) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        score = float(psnr(forward(val_y).clamp(0, 1), val_c))
    assert score >= b0 + 1.5, f"trained {score:.2f} dB vs B0 {b0:.2f} dB"
