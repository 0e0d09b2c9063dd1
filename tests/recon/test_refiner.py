"""The non-blind refiner (recon/refiner.py) and its training script: the shape contract, the model
files (weights + card with sha256), and a cheap check that the training loop learns.

No refiner ships yet (the CPU runs so far did not beat the closed-form deconvolution it refines;
see the refiner's entry in docs/motion_results.md): the `refined` solver refuses with a sentence.
"""

from __future__ import annotations

import json

import pytest
import torch

from recon.functional import code_weights
from recon.photos import default_photos
from recon.refiner import (
    DeblurRefiner,
    RefinerModelError,
    load_refiner,
    refiner_inputs,
    shipped_refiner,
)
from recon.scenes import SceneSampler
from recon.train_refiner import example, export, refiner_loss

CODE = "11100101"


def test_untrained_refiner_is_the_closed_form_deconvolution_and_any_size_works() -> None:
    """The output layer starts at zero: an untrained refiner returns its Wiener input, at any
    frame size (padded to a multiple of 4 inside)."""
    torch.manual_seed(0)
    y = torch.rand(37, 50)
    w = code_weights(CODE, sub_steps=4, dtype=torch.float64)
    x, m = refiner_inputs(y, w, (9.0, -3.0))
    assert x.shape == (1, 5, 37, 50)
    out = DeblurRefiner(width=8)(x)
    assert out.shape == (1, 1, 37, 50)
    torch.testing.assert_close(out[0, 0], x[0, 0])


def test_model_files_round_trip_with_sha256_and_refuse_damage(tmp_path) -> None:
    if shipped_refiner() is None:
        with pytest.raises(RefinerModelError, match="No refiner ships"):
            load_refiner()
    model = DeblurRefiner(width=8)
    card_path = export(model, tmp_path / "r", {"command": "test", "steps": 0})
    back, card = load_refiner(card_path)
    assert card["kind"] == "non-blind-refiner" and len(card["sha256"]) == 64
    assert sum(p.numel() for p in back.parameters()) == card["parameters"]
    wfile = card_path.parent / card["weights"]
    data = bytearray(wfile.read_bytes())
    data[-1] ^= 0xFF
    wfile.write_bytes(bytes(data))
    with pytest.raises(RefinerModelError, match="sha256"):
        load_refiner(card_path)
    card_path.write_text(json.dumps({**card, "weights": "gone.safetensors"}))
    with pytest.raises(RefinerModelError, match="missing"):
        load_refiner(card_path)


@pytest.mark.slow
def test_training_loop_learns_a_fixed_batch() -> None:
    """Cheap learning check: 120 steps on two fixed pans (64 px) lower the loss clearly."""
    torch.manual_seed(0)
    s = SceneSampler(default_photos(), 64, split="train", max_motion_px=48.0)
    batch = [example(s, CODE, seed, 0.005, None, (6.0, 12.0)) for seed in (3, 4)]
    model = DeblurRefiner(width=8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(refiner_loss(model, batch, CODE))
    for _ in range(120):
        loss = refiner_loss(model, batch, CODE)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = float(refiner_loss(model, batch, CODE))
    print(f"loss {first:.4f} -> {last:.4f}")
    assert last < 0.7 * first
