"""The learned model: shapes, code conditioning, the code features, MACs, weights files checked by
sha256, tiled inference and the newest-frame-only live preview."""

from __future__ import annotations

import json
import time

import pytest
import torch

from recon.engine import LearnedEngine, LivePreview, ModelFileError, load_model
from recon.models import (
    TINY,
    CodeVideoNet,
    ModelConfig,
    build_model,
    code_features,
    count_macs,
    pad_code,
)
from recon.train import export_weights, reblur

CODE = (1, 1, 1, 0, 0, 1, 0, 1)


def randomised(model: CodeVideoNet, seed: int = 0) -> CodeVideoNet:
    """A model with perturbed weights (for tests that need outputs to depend on their inputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def test_shapes():
    model = build_model("tiny").eval()
    y = torch.rand(2, 1, 40, 56)
    bits, n = pad_code(CODE)
    t = torch.rand(2, 7)
    out = model(y, torch.stack([bits, bits]), torch.tensor([n, n]), t)
    assert out.shape == (2, 7, 40, 56) and torch.isfinite(out).all()


def test_output_depends_on_t_and_on_the_code():
    model = randomised(build_model("tiny"))
    y = torch.rand(1, 1, 32, 32)
    a, na = pad_code(CODE)
    b, nb = pad_code((1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 0))
    t = torch.tensor([[0.1, 0.9]])
    with torch.no_grad():
        out_a = model(y, a[None], torch.tensor([na]), t)
        out_b = model(y, b[None], torch.tensor([nb]), t)
    assert (out_a[0, 0] - out_a[0, 1]).abs().mean() > 1e-4  # t matters
    assert (out_a - out_b).abs().mean() > 1e-4  # the code matters


def test_code_features_state_and_open_fraction():
    bits, n = pad_code(CODE)
    t = torch.tensor([[0.0, 1 / 16, 3.5 / 8, 5.5 / 8, 1.0]])
    state, frac = code_features(bits[None], torch.tensor([n]), t)
    assert state.tolist() == [[1.0, 1.0, 0.0, 1.0, 1.0]]
    # 5 open chips: half of chip 0 is 0.1 of the open time; before chip 3 three are done
    assert torch.allclose(frac, torch.tensor([[0.0, 0.1, 0.6, 0.7, 1.0]]), atol=1e-6)


def test_reblur_of_the_ground_truth_is_the_measurement():
    chips = torch.rand(2, 8, 16, 16)
    code = torch.tensor(CODE)
    y = reblur(chips, code)
    expected = sum(chips[:, k] * CODE[k] for k in range(8)) / sum(CODE)
    assert torch.allclose(y[:, 0], expected, atol=1e-6)


def test_parameters_and_macs_are_small():
    model = build_model("tiny")
    params = sum(p.numel() for p in model.parameters())
    assert 100_000 < params < 500_000
    assert count_macs(model, 512, 512, 16) < 8e9


def test_output_scales_with_the_exposure():
    """The forward model is linear: twice the light gives twice the frames (input normalised)."""
    model = randomised(build_model("tiny"))
    y = torch.rand(2, 1, 32, 32) * 0.4 + 0.05
    bits, n = pad_code(CODE)
    b, lengths, t = torch.stack([bits, bits]), torch.tensor([n, n]), torch.rand(2, 3)
    with torch.no_grad():
        a, b2 = model(y, b, lengths, t), model(2 * y, b, lengths, t)
    assert torch.allclose(b2, 2 * a, atol=1e-5)
    assert float((a - y).abs().mean()) > 1e-3  # not the identity


def test_time_reversal_augmentation_keeps_the_measurement():
    from recon.train import reverse_time

    gen = torch.Generator().manual_seed(0)
    chips = torch.rand(2, 8, 6, 6, generator=gen)
    sub = torch.rand(2, 32, 6, 6, generator=gen)
    times = (torch.arange(32, dtype=torch.float64) + 0.5) / 32
    y = reblur(chips, torch.tensor(CODE))
    bits2, chips2, sub2, times2 = reverse_time(tuple(CODE), chips, sub, times)
    assert bits2 == tuple(CODE[::-1])
    assert torch.allclose(reblur(chips2, torch.tensor(bits2)), y, atol=1e-6)
    assert torch.allclose(times2, times) and torch.equal(sub2[:, 0], sub[:, -1])


def test_weights_round_trip_and_sha256_check(tmp_path):
    model = randomised(build_model("tiny"))
    card = {"name": "t", "description": "test", "parameters": 1, "gmac_512_16": 1.0,
            "codes": "c", "data": "d", "steps": 1, "batch": 1, "size": 8, "wall_minutes": 0.0,
            "hardware": "x", "command": "c", "seed": 0, "metrics": {}, "family": "any"}  # fmt: skip
    path = export_weights(model, tmp_path, "t", card)
    loaded, card2 = load_model(path)
    assert card2["sha256"] and ModelConfig.from_dict(card2["config"]) == TINY
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match its model card"):
        load_model(path)
    with pytest.raises(ModelFileError, match="No model"):
        load_model(tmp_path / "nothing.json")
    assert json.loads((tmp_path / "t.json").read_text())["file"] == "t.safetensors"


def test_tiled_inference_matches_one_pass():
    model = randomised(build_model("tiny"), seed=3)
    y = torch.rand(100, 150)
    whole = LearnedEngine(model, bf16=False, tile=512).reconstruct(y, CODE, 4)
    tiled = LearnedEngine(model, bf16=False, tile=64, overlap=48).reconstruct(y, CODE, 4)
    assert whole.shape == tiled.shape == (4, 100, 150)
    assert (whole - tiled).abs().max() < 0.02


def test_live_preview_takes_the_newest_frame_only():
    engine = LearnedEngine(randomised(build_model("tiny")), bf16=False)
    preview = LivePreview(engine, n_frames=4)
    try:
        for i in range(20):
            preview.submit(torch.full((64, 64), i / 20), CODE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = preview.latest()
            if r is not None and r.source_index == 19:
                break
            time.sleep(0.01)
        assert r is not None and r.source_index == 19
        assert r.frames.shape == (4, 64, 64) and r.latency_s > 0 and r.device == "cpu"
        assert preview.skipped > 0  # frames that came while it worked were dropped, not queued
    finally:
        preview.close()
