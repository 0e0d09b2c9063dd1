"""The learned motion estimator (recon/motion.py): bank, cost volume, truth maps, model files,
and the shipped model against the spectral search on a small fixed scene set."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest
import torch

from recon.functional import code_weights
from recon.motion import (
    N_FEATURES,
    MotionEstimator,
    MotionModelError,
    MotionScorer,
    cost_features,
    estimate_noise_sigma,
    load_motion_model,
    shipped_motion_model,
    velocity_bank,
)
from recon.motion_data import STRATA, stratum_scene, velocity_map
from recon.photos import default_photos
from recon.scene_batches import coded_batch
from recon.scenes import Layer, Scene, SceneSampler
from recon.solvers import SolverError

CODE = "11100101"


def test_bank_covers_every_direction_and_length() -> None:
    b = velocity_bank(6.0)
    assert b[0].tolist() == [0.0, 0.0]
    lengths = b[1:].norm(dim=1)
    assert torch.allclose(lengths, lengths.round(), atol=1e-9)
    assert sorted(set(lengths.round().long().tolist())) == [1, 2, 3, 4, 5, 6]
    for target in ((5.0, 0.0), (-5.0, 0.0), (0.0, -5.0), (3.5, 3.5)):
        d = (b - torch.tensor(target, dtype=b.dtype)).norm(dim=1).min()
        assert float(d) < 0.6, target
    with pytest.raises(ValueError, match="max_px"):
        velocity_bank(0.0)


def test_noise_estimate_on_white_noise() -> None:
    g = torch.Generator().manual_seed(0)
    y = 0.5 + 0.01 * torch.randn(128, 128, generator=g)
    assert 0.008 < estimate_noise_sigma(y) < 0.012


def test_cost_features_shape_and_zero_hypothesis() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.rand(64, 64, generator=g)
    bank = velocity_bank(4.0)
    w = code_weights(CODE, sub_steps=2, dtype=torch.float64)
    f = cost_features(y, w, bank, n_chips=8, tile=8)
    assert f.shape == (bank.shape[0], N_FEATURES, 8, 8)
    assert torch.isfinite(f).all()
    assert bool((f[0, 10] == 1).all()) and bool((f[1:, 10] == 0).all())  # the "still" flag
    assert float(f[0, 8].abs().max()) == 0.0  # its length


def test_velocity_map_follows_the_layers() -> None:
    bg = Layer(torch.rand(200, 200), velocity_px=(3.0, -1.0))
    alpha = torch.zeros(40, 40)
    alpha[5:35, 5:35] = 1.0
    sprite = Layer(torch.rand(40, 40), alpha=alpha, velocity_px=(-20.0, 10.0))
    vm = velocity_map(Scene((96, 96), (bg, sprite)))
    assert vm.shape == (2, 96, 96)
    assert vm[:, 48, 48].tolist() == pytest.approx([-20.0, 10.0], abs=1e-4)
    assert vm[:, 2, 2].tolist() == pytest.approx([3.0, -1.0], abs=1e-4)


@pytest.mark.slow
def test_strata_move_what_they_say() -> None:
    s = SceneSampler(default_photos(), 96, split="test", max_motion_px=48.0)
    for st in STRATA:
        sc = stratum_scene(s, st, 3, 0, (10.0, 20.0))
        speeds = [math.hypot(*layer.velocity_px) for layer in sc.layers]
        if st == "still":
            assert max(speeds) == 0.0
        elif st in ("pan", "pan_accel"):
            assert len(sc.layers) == 1 and 10.0 <= speeds[0] <= 20.0
        elif st in ("object", "objects"):
            assert speeds[0] == 0.0 and all(10.0 <= v <= 20.0 for v in speeds[1:])
    with pytest.raises(ValueError, match="Unknown stratum"):
        stratum_scene(s, "tornado", 0, 0, (1.0, 2.0))


# ---------------------------------------------------------------------------------------------
# The shipped model
# ---------------------------------------------------------------------------------------------


def _shipped() -> Path:
    card = shipped_motion_model()
    assert card is not None, ("no motion model ships (recon/models/motion/motion.json); train "
                              "one with python -m recon.train_motion --export recon/models/motion")
    return card


def test_shipped_model_loads_with_its_sha256(tmp_path: Path) -> None:
    card_path = _shipped()
    scorer, cfg, card = load_motion_model()
    assert card["kind"] == "motion-scorer" and len(card["sha256"]) == 64
    assert sum(p.numel() for p in scorer.parameters()) == card["parameters"]
    # a damaged copy is refused with the reason
    d = tmp_path / "m"
    shutil.copytree(card_path.parent, d)
    w = d / card["weights"]
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(MotionModelError, match="sha256"):
        load_motion_model(d / card_path.name)
    (d / card_path.name).write_text(json.dumps({**card, "weights": "gone.safetensors"}))
    with pytest.raises(MotionModelError, match="missing"):
        load_motion_model(d / card_path.name)


@pytest.mark.slow
def test_shipped_model_finds_pans_an_untrained_scorer_cannot() -> None:
    """Six fixed pans (val photos, 12-30 px per exposure, 192 px frames, code 11100101): the
    shipped scorer finds the velocity within 2 px on most of them; the same estimator with an
    untrained scorer does not. (Side by side with the spectral search, per stratum and on
    held-out data: docs/motion_results.md.)"""
    _shipped()
    scorer, cfg, _ = load_motion_model()
    w = code_weights(CODE, sub_steps=4, dtype=torch.float64)
    torch.manual_seed(0)
    untrained = MotionScorer(hidden=scorer.hidden)
    untrained.mean.copy_(scorer.mean)
    untrained.std.copy_(scorer.std)
    s = SceneSampler(default_photos(), 192, split="val", max_motion_px=48.0)
    errs: dict[str, list[float]] = {"shipped": [], "untrained": []}
    for i in range(6):
        scene = stratum_scene(s, "pan", 0xF1C, i, (12.0, 30.0))
        y = coded_batch([scene], CODE, sub_steps=4, sigma=0.005, noise_seed=i).y[0, 0]
        truth = scene.layers[0].velocity_px
        for name, sc in (("shipped", scorer), ("untrained", untrained)):
            v = MotionEstimator(sc, cfg, w, n_chips=8).estimate(y, 40.0, refine=False).velocity
            errs[name].append(math.hypot(v[0] - truth[0], v[1] - truth[1]))
    print({k: [round(x, 1) for x in v] for k, v in errs.items()})
    assert sum(e <= 2.0 for e in errs["shipped"]) >= 4
    assert sum(e <= 2.0 for e in errs["untrained"]) <= 1


@pytest.mark.slow
def test_live_engine_uses_the_motion_model_and_reports_the_field() -> None:
    """The live preview's classical engine runs the learned motion (closed-form path) and hands
    the motion field on with its result."""
    _shipped()
    from recon.classical_engine import ClassicalEngine

    s = SceneSampler(default_photos(), 128, split="test", max_motion_px=48.0)
    scene = stratum_scene(s, "pan", 0xE1, 0, (12.0, 20.0))
    y = coded_batch([scene], CODE, sub_steps=4, sigma=0.003, noise_seed=1).y[0, 0]
    eng = ClassicalEngine(max_side=128, max_px=24.0)
    assert "learned motion" in eng.name
    frames = eng.reconstruct(y, [int(c) for c in CODE], 8)
    assert frames.shape == (8, 128, 128) and torch.isfinite(frames).all()
    rec = eng.last
    assert rec.motion is not None and rec.motion.shape[0] == 2 and rec.motion_tile_px > 0
    th, tw = rec.motion.shape[1:]
    assert th * rec.motion_tile_px <= 128 and tw * rec.motion_tile_px <= 128
    assert rec.diagnostics["motion"] == "learned" and len(rec.velocity) == 2
    assert 0.0 <= rec.diagnostics["motion_confidence"] <= 1.0
    # the preview hands the field on with the frames
    from recon.engine import LivePreview

    preview = LivePreview(eng, n_frames=4)
    try:
        preview.submit(y, [int(c) for c in CODE])
        for _ in range(600):
            r = preview.latest()
            if r is not None:
                break
            time.sleep(0.05)
        assert r is not None and r.motion is not None and r.motion_tile_px == rec.motion_tile_px
    finally:
        preview.close()


@pytest.mark.slow
def test_still_answer_and_unsure_frames_fall_back() -> None:
    """A still frame gets velocity zero and frames as close to it as denoising leaves them; with
    motion="auto", a frame whose frame read-out is below the threshold is unsure (recorded as a
    fallback) and takes the spectral search's velocity or no motion as asked, and above it keeps
    the learned one."""
    _shipped()
    from recon.operators import CodedExposure
    from recon.solvers import ClassicalGlobal, equal_times

    s = SceneSampler(default_photos(), 128, split="val", max_motion_px=48.0)
    phys = CodedExposure.from_capture(CODE, chip_us=None)
    still = coded_batch([stratum_scene(s, "still", 0x57, 0, (4.0, 8.0))], CODE, sub_steps=4,
                        sigma=0.003, noise_seed=1).y[0, 0]
    out = ClassicalGlobal("tv", motion="learned", layers=False).reconstruct(
        still, phys, equal_times(8))
    assert out.velocity == (0.0, 0.0)
    assert float((out.frames - still.float()).abs().mean()) < 0.01
    scene = stratum_scene(s, "pan", 0xF1C, 1, (12.0, 20.0))
    y = coded_batch([scene], CODE, sub_steps=4, sigma=0.003, noise_seed=2).y[0, 0]
    always = ClassicalGlobal("tv", motion="auto", fallback_below=1.01, fallback="spectral",
                             iters=5)
    never = ClassicalGlobal("tv", motion="auto", fallback_below=0.0, iters=5)
    a = always.reconstruct(y, phys, equal_times(8))
    n = never.reconstruct(y, phys, equal_times(8))
    assert a.diagnostics["motion_fallback"] == 1.0 and n.diagnostics["motion_fallback"] == 0.0
    from recon.velocity import estimate_velocity

    sv = estimate_velocity(y.float(), CODE, max_px=48.0).velocity
    assert a.velocity == pytest.approx((float(sv[0]), float(sv[1])))
    learned = ClassicalGlobal("tv", motion="learned", iters=5).reconstruct(y, phys,
                                                                          equal_times(8))
    assert n.velocity == learned.velocity
    assert math.hypot(*n.velocity) > 8.0
    still_fb = ClassicalGlobal("tv", motion="auto", fallback_below=1.01, fallback="still",
                               iters=5).reconstruct(y, phys, equal_times(8))
    assert still_fb.diagnostics["motion_fallback"] == 1.0
    assert still_fb.velocity == (0.0, 0.0) and float(still_fb.motion.abs().max()) == 0.0
    # no motion: every frame is the (denoised) coded frame, so all frames are the same
    assert float((still_fb.frames - still_fb.frames[:1]).abs().max()) < 1e-6
    with pytest.raises(SolverError, match="fallback must be one of"):
        ClassicalGlobal("tv", fallback="zero")


def test_fallback_choice_keeps_every_stratum_near_doing_nothing() -> None:
    """The tuning rule takes the best mean only among the (fallback, threshold) pairs that keep
    every stratum within 0.3 dB of B0: here the unconstrained best (no fallback) loses 10 dB on
    the still stratum, so "still" below a threshold that catches the unsure still frame wins."""
    from recon.evaluate_motion import Sample, choose_fallback

    def smp(stratum: str, conf: float, b0: float, learned: float, spectral: float,
            still: float) -> Sample:
        s = Sample(stratum, "11100101", 0.01, 0.0, confidence=conf)
        s.psnr.update(B0=b0, learned=learned, spectral=spectral, still=still)
        return s

    samples = [smp("pan", 0.95, 25.0, 40.0, 36.0, 25.5),
               smp("pan", 0.45, 25.0, 34.0, 33.0, 25.5),
               smp("still", 0.95, 45.0, 45.5, 40.0, 45.5),
               smp("still", 0.25, 45.0, 25.0, 44.0, 45.5)]
    assert choose_fallback(samples) == ("still", 0.3)
    # with no still stratum to protect, the best mean wins (no fallback)
    assert choose_fallback(samples[:2]) == ("spectral", 0.0)


def test_reused_rows_must_come_from_the_same_scenes() -> None:
    """``--only auto --reuse JSON`` copies the other rows from an earlier run only when its frames
    are the same scenes (stratum, code, noise level and B0 agree); otherwise it refuses."""
    from recon.evaluate_motion import Sample, reuse_rows

    def smp(b0: float) -> Sample:
        s = Sample("pan", "11100101", 0.01, 20.0)
        s.psnr.update(B0=b0, auto=30.0)
        return s

    old = [{"stratum": "pan", "code": "11100101", "sigma": 0.01, "confidence": 0.4,
            "psnr": {"B0": 25.0, "auto": 10.0, "learned": 31.0}, "epe": {"learned": 0.5}}]
    new = [smp(25.0)]
    reuse_rows(new, old, "prev.json")
    assert new[0].psnr == {"B0": 25.0, "auto": 30.0, "learned": 31.0}  # auto kept, rest copied
    assert new[0].epe == {"learned": 0.5} and new[0].confidence == 0.4
    with pytest.raises(ValueError, match="not hold the same scenes"):
        reuse_rows([smp(24.0)], old, "prev.json")
    with pytest.raises(ValueError, match="not the same scenes"):
        reuse_rows([smp(25.0), smp(25.0)], old, "prev.json")


@pytest.mark.slow
def test_an_unsure_frame_that_agrees_with_the_frame_before_keeps_its_motion() -> None:
    """Within a sequence (consecutive exposures of one capture), an unsure frame whose learned
    velocity agrees with the previous frame's trusted one keeps it; alone, at the start of a
    new sequence, or when it disagrees, it is still."""
    _shipped()
    from recon.operators import CodedExposure
    from recon.solvers import ClassicalGlobal, equal_times

    s = SceneSampler(default_photos(), 128, split="val", max_motion_px=48.0)
    phys = CodedExposure.from_capture(CODE, chip_us=None)
    y = coded_batch([stratum_scene(s, "pan", 0xF1C, 1, (12.0, 20.0))], CODE, sub_steps=4,
                    sigma=0.003, noise_seed=2).y[0, 0]
    t = equal_times(8)
    solver = ClassicalGlobal("tv", motion="auto", fallback_below=0.0, iters=5)
    solver.begin_sequence()
    first = solver.reconstruct(y, phys, t)  # trusted (threshold 0)
    assert math.hypot(*first.velocity) > 8.0
    solver.fallback_below = 1.01  # every frame from here on is unsure by itself
    second = solver.reconstruct(y, phys, t)
    assert second.velocity == first.velocity and second.diagnostics["motion_fallback"] == 0.0
    assert "agrees with the frame before" in str(second.diagnostics["motion"])
    # unsure frames pass the trust on: the third agrees with the second
    assert solver.reconstruct(y, phys, t).velocity == first.velocity
    # a frame moving otherwise is not corroborated, and it breaks the chain
    other = coded_batch([stratum_scene(s, "still", 0x57, 0, (4.0, 8.0))], CODE, sub_steps=4,
                        sigma=0.003, noise_seed=1).y[0, 0]
    other_est = ClassicalGlobal("tv", motion="learned", layers=False, iters=5).reconstruct(
        other, phys, t)
    assert math.hypot(other_est.velocity[0] - first.velocity[0],
                      other_est.velocity[1] - first.velocity[1]) > 4.0
    assert solver.reconstruct(other, phys, t).diagnostics["motion_fallback"] == 1.0
    assert solver.reconstruct(y, phys, t).velocity == (0.0, 0.0)
    # a frame that does not go through the learned motion (uniform) breaks the chain too
    solver.fallback_below = 0.0
    solver.reconstruct(y, phys, t)
    solver.fallback_below = 1.01
    solver.reconstruct(torch.full_like(y, 0.5), phys, t)
    assert solver.reconstruct(y, phys, t).velocity == (0.0, 0.0)
    # a new capture starts with no trusted frame; so does a solver never told of a sequence
    solver.begin_sequence()
    assert solver.reconstruct(y, phys, t).velocity == (0.0, 0.0)
    alone = ClassicalGlobal("tv", motion="auto", fallback_below=1.01, iters=5)
    assert alone.reconstruct(y, phys, t).velocity == (0.0, 0.0)


@pytest.mark.slow
def test_the_verified_fallback_keeps_an_unsure_motion_only_when_the_spectral_search_agrees(
        monkeypatch) -> None:
    """``fallback="verified"``: an unsure frame keeps its learned velocity when the spectral
    search (a second, independent estimator) finds the same motion, and is still otherwise."""
    from types import SimpleNamespace

    import recon.velocity
    from recon.operators import CodedExposure
    from recon.solvers import ClassicalGlobal, equal_times

    _shipped()
    s = SceneSampler(default_photos(), 128, split="val", max_motion_px=48.0)
    phys = CodedExposure.from_capture(CODE, chip_us=None)
    y = coded_batch([stratum_scene(s, "pan", 0xF1C, 1, (12.0, 20.0))], CODE, sub_steps=4,
                    sigma=0.003, noise_seed=2).y[0, 0]
    t = equal_times(8)
    learned = ClassicalGlobal("tv", motion="learned", layers=False, iters=5).reconstruct(
        y, phys, t).velocity
    assert math.hypot(*learned) > 8.0
    spectral = {"v": (learned[0] + 1.0, learned[1])}
    monkeypatch.setattr(recon.velocity, "estimate_velocity",
                        lambda *a, **k: SimpleNamespace(velocity=spectral["v"]))
    solver = ClassicalGlobal("tv", motion="auto", fallback="verified", fallback_below=1.01,
                             iters=5)
    agreed = solver.reconstruct(y, phys, t)
    assert agreed.velocity == learned and agreed.diagnostics["motion_fallback"] == 0.0
    assert "spectral search agrees" in str(agreed.diagnostics["motion"])
    spectral["v"] = (-learned[0], -learned[1])  # the same axis, the other direction
    refused = solver.reconstruct(y, phys, t)
    assert refused.velocity == (0.0, 0.0) and refused.diagnostics["motion_fallback"] == 1.0
