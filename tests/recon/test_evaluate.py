"""Tests of recon.evaluate and recon.evaluate_scores: the metric helpers (strict vs
best-of-both-orders, per-stratum aggregation, t bins), the bars, and a ``--quick`` end-to-end run on
a tiny set into a temporary folder with freshly initialised models (no shipped weights, no photo
packages needed)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from recon.evaluate import EvalConfig, EvalReport, check_bars, main, render_markdown
from recon.evaluate_scores import (
    PSNR_CAP_DB,
    FrameScores,
    RowResult,
    aggregate,
    score_frames,
    t_bins,
)
from recon.models import build_model
from recon.photos import DEAD_LEAVES_SEEDS
from recon.train import export_weights


def identity_model():
    """A tiny model whose time coefficients are zero: every frame is the coded frame (as B0)."""
    model = build_model("tiny").eval()
    torch.nn.init.zeros_(model.cond[-1].weight)
    torch.nn.init.zeros_(model.cond[-1].bias)
    return model


STRATA = ["slow/sigma=0.002", "slow/sigma=0.01", "fast/sigma=0.002", "fast/sigma=0.01"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tests run on one thread; main() sets the count, so it is put back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- metric helpers ---------------------------------------------------------------------------


def test_strict_vs_best_of_with_a_reversed_prediction():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 6, 24, 24, generator=g)
    noisy = (gt[1] + 0.01 * torch.randn(gt[1].shape, generator=g)).clamp(0, 1)
    pred = torch.stack([gt[0].flip(0), noisy])  # sample 0: exact but backwards in time
    s = score_frames(pred, gt)
    assert s.reversed_better.tolist() == [True, False]
    assert s.psnr_strict.shape == (2, 6) and s.ssim_strict.shape == (2, 6)
    # sample 0: reversal recovers it exactly (PSNR capped, SSIM 1); strict order is poor
    assert torch.all(s.psnr_best[0] == PSNR_CAP_DB)
    assert float(s.psnr_strict[0].mean()) < 15
    assert torch.allclose(s.ssim_best[0], torch.ones(6, dtype=torch.float64))
    assert float(s.ssim_strict[0].mean()) < 0.2
    # sample 1: forward is better, so best-of equals strict
    assert torch.equal(s.psnr_best[1], s.psnr_strict[1])
    assert torch.equal(s.ssim_best[1], s.ssim_strict[1])
    assert 35 < float(s.psnr_strict[1].mean()) < 45


def test_time_symmetric_prediction_has_no_gap():
    gt = torch.rand(3, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    pred = gt.mean(dim=1, keepdim=True).expand_as(gt)  # B0-like: the same frame at every t
    s = score_frames(pred, gt, with_ssim=False)
    assert not bool(s.reversed_better.any())
    assert torch.equal(s.psnr_best, s.psnr_strict)
    assert bool(torch.isnan(s.ssim_strict).all())


def test_aggregate_per_stratum_motion_and_noise():
    out = aggregate(torch.tensor([30.0, 20.0, 10.0, 0.0]), STRATA)
    assert list(out) == ["all", *STRATA, "slow", "fast", "sigma=0.002", "sigma=0.01"]
    assert out["all"] == 15.0
    assert out["slow/sigma=0.01"] == 20.0
    assert out["slow"] == 25.0 and out["fast"] == 5.0
    assert out["sigma=0.002"] == 20.0 and out["sigma=0.01"] == 10.0
    with pytest.raises(ValueError, match="one stratum label per value"):
        aggregate([1.0, 2.0], STRATA)


def test_row_result_accumulates_batches_and_bins_t():
    row = RowResult("m", "m", "model", "1101", "seen")
    for half in (0, 1):
        p = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 0.0, 0.0]]) + 10 * half
        row.add(FrameScores(p, p + 1, p / 100, p / 100, torch.tensor([False, True])),
                STRATA[2 * half: 2 * half + 2])
    assert row.psnr_strict.shape == (4, 4) and row.strata == STRATA
    s = row.summary("psnr", "strict")
    assert s["slow/sigma=0.002"] == 25.0 and s["fast/sigma=0.01"] == 10.0
    assert row.summary("psnr", "best")["all"] == s["all"] + 1
    assert t_bins(4, 8) == [1, 3, 5, 7] and t_bins(8, 8) == list(range(8))
    bins = row.per_t_bins("psnr", "strict", n_bins=8)
    assert math.isnan(bins[0]) and bins[1] == pytest.approx((10 + 0 + 20 + 10) / 4)
    ts, ys = row.per_chip("psnr", "strict", sigma="sigma=0.01")
    assert ts == [0.125, 0.375, 0.625, 0.875] and ys[0] == pytest.approx(5.0)


def _row(method: str, group: str, code: str, kind: str, psnr: float) -> RowResult:
    row = RowResult(method, method, group, code, kind)
    p = torch.full((4, len(code)), psnr, dtype=torch.float64)
    row.add(FrameScores(p, p, p / 40, p / 40, torch.zeros(4, dtype=torch.bool)), STRATA)
    return row


def test_bars_compare_at_sigma_001_and_tolerate_missing_models():
    rows = [_row("B0", "baseline", "11100101", "anchor", 20.0),
            _row("B1-est", "classical", "11100101", "anchor", 24.0),
            _row("tiny", "model", "11100101", "anchor", 26.0),
            _row("tiny-box", "box-model", "11111111", "box", 22.0)]
    report = EvalReport(EvalConfig(size=32, per_stratum=1, latency_size=0), rows,
                        [("11100101", "anchor"), ("11111111", "box")], [], 4, 1.0, "test",
                        dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    bars = {b.statement: b for b in check_bars(report)}
    assert bars["tiny >= B0 + 5 dB"].met is True
    assert "+6.00 dB" in bars["tiny >= B0 + 5 dB"].detail
    assert bars["tiny > B1 (estimated velocity)"].met is True
    assert bars["base >= B0 + 8 dB"].met is None
    assert bars["base >= B2 + 2 dB"].met is None
    text = render_markdown(report, "python -m recon.evaluate --test")
    assert "**met**" in text and "not evaluated" in text and "`python -m recon.evaluate" in text


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Six textured PNGs (distinct pictures, so at least one lands in the test split) and a
    one-image dead-leaves test bank."""
    monkeypatch.setitem(DEAD_LEAVES_SEEDS, "test", (2000,))
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = cv2.GaussianBlur(rng.random((160, 160)).astype(np.float32), (0, 0), 1.5 + i)
        img = (img - img.min()) / (img.max() - img.min())
        cv2.imwrite(str(folder / f"p{i}.png"), (255 * img).astype(np.uint8))
    return folder


def _export(model, folder: Path, name: str, family: str) -> None:
    card = {"name": name, "description": "test model", "parameters": 0, "gmac_512_16": 0.0,
            "family": family, "codes": "-", "data": "-", "steps": 0, "batch": 1, "size": 32,
            "wall_minutes": 0.0, "hardware": "-", "command": "-", "seed": 0, "metrics": {}}
    export_weights(model, folder, name, card)


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path: Path, tiny_photos: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "weights"
    torch.manual_seed(0)
    _export(identity_model(), weights, "tiny", "coded")
    _export(identity_model(), weights, "tiny-box", "box")
    out = tmp_path / "out"
    rc = main(["--quick", "--size", "32", "--latency-size", "64", "--threads", "1", "--quiet",
               "--out", str(out), "--models-dir", str(weights), "--photos", str(tiny_photos)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "base" in printed and "left out" in printed  # no base model: a note, not an error
    assert "bar tiny >= B0 + 5 dB" in printed
    md = (out / "results.md").read_text()
    for needle in ("python -m recon.evaluate --quick", "quick smoke run", "## Overall",
                   "B1 TV, oracle velocity", "B1 TV, estimated velocity", "B2 tiny-box",
                   "| tiny |", "(unseen)", "(seen)", "PSNR (dB) per stratum, best of",
                   "fast/sigma=0.01", "t=0.94", "## Reading", "results.png", "GMAC"):
        assert needle in md, needle
    # a model returning the coded frame scores exactly as B0 on the same code
    lines = [ln for ln in md.splitlines() if ln.startswith("| B0 repeat") or
             ln.startswith("| tiny |")]
    b0 = next(ln for ln in lines if "11100101" in ln and ln.startswith("| B0"))
    tiny = next(ln for ln in lines if "11100101" in ln and ln.startswith("| tiny"))
    assert b0.split("|")[3] == tiny.split("|")[3]
    img = cv2.imread(str(out / "results.png"))
    assert img is not None and img.shape[0] > 400 and img.shape[1] > 1000
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 5  # something was drawn
