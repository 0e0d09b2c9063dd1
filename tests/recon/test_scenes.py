"""Tests of recon.scenes and recon.scene_batches: synthetic coded-blur scenes, their rendering,
coded batches and the fixed sets.

Tests that need the photo packages skip without them, or fail under CI=true, naming the apt
command (the ``photos`` fixture of conftest.py). The others use dead-leaves textures only (a
two-image bank, to stay fast).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import recon.scene_batches as sb
import recon.scenes as sc
from recon.code_family import UNSEEN_CODES
from recon.data import dead_leaves, linear_motion_clip
from recon.noise import SensorModel
from recon.photos import DEAD_LEAVES_SEEDS, PhotoLibrary
from recon.scene_batches import coded_batch, fixed_set, make_batch
from recon.scenes import Layer, Scene, SceneSampler, motion_extent_px, render, render_batch


@pytest.fixture(autouse=True)
def small_dead_leaves_bank(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two train dead-leaves images instead of 16 (each costs ~0.5 s to draw, once)."""
    monkeypatch.setitem(DEAD_LEAVES_SEEDS, "train", (0, 1))


def _static(scene: Scene) -> Scene:
    return sc._scaled(scene, 0.0)


# ---------------------------------------------------------------------------------------------
# Batches: shapes, conventions, reproducibility
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_batch_shapes_dtypes_and_conventions() -> None:
    bits = (1, 1, 1, 0, 0, 1, 0, 1)
    b = make_batch(3, 48, bits, sub_steps=4, sigma=(0.0, 0.0),
                   generator=torch.Generator().manual_seed(1), photos=None)
    k, s = 8, 4
    assert b.y.shape == (3, 1, 48, 48) and b.y.dtype == torch.float32
    assert b.chips.shape == (3, k, 48, 48) and b.sub.shape == (3, k * s, 48, 48)
    assert b.sub_times.shape == (k * s,) and b.sigma.shape == (3,)
    assert b.motion_px.shape == b.camera_px.shape == b.n_sprites.shape == (3,)
    assert b.bits == bits and b.sub_steps == s and len(b.scenes) == 3
    assert torch.allclose(b.sub_times, (torch.arange(k * s, dtype=torch.float64) + 0.5) / (k * s))
    assert float(b.sub.min()) >= 0.0 and float(b.sub.max()) <= 1.0
    # Chip frames are the mean of their sub-step views; the coded frame is sum c_k v_k / sum c_k.
    assert torch.equal(b.chips, b.sub.view(3, k, s, 48, 48).mean(dim=2))
    c = torch.tensor(bits, dtype=torch.float32).view(1, k, 1, 1)
    assert torch.equal(b.y_clean, ((c * b.chips).sum(dim=1) / c.sum()).unsqueeze(1))
    assert torch.equal(b.y, b.y_clean)  # sigma range (0, 0): no noise
    assert bool((b.motion_px <= 48.0 + 1e-3).all()) and bool((b.camera_px <= b.motion_px).all())
    assert all(1 <= n <= 3 for n in b.n_sprites.tolist())


@pytest.mark.slow
def test_static_scene_codes_to_every_chip() -> None:
    scene = SceneSampler(None, 40).sample(5, motion_px=0.0)
    assert scene.motion_px == 0.0
    b = coded_batch([scene], "1011000111", sub_steps=4)
    for k in range(10):
        torch.testing.assert_close(b.y[0, 0], b.chips[0, k], atol=1e-6, rtol=0)
    torch.testing.assert_close(b.chips[0, 0], render(scene, [0.5])[0], atol=1e-6, rtol=0)


@pytest.mark.slow
def test_reproducible_from_seeds_and_batch_independent() -> None:
    def batch(seed: int) -> sb.CodedBatch:
        return make_batch(2, 32, "11100101", generator=torch.Generator().manual_seed(seed),
                          photos=None)

    a, b, c = batch(7), batch(7), batch(8)
    assert torch.equal(a.y, b.y) and torch.equal(a.sub, b.sub) and torch.equal(a.sigma, b.sigma)
    assert not torch.equal(a.y, c.y)
    sampler = SceneSampler(None, 32)
    s1, s2 = sampler.sample(3, 0), sampler.sample(3, 1)
    assert torch.equal(sampler.sample(3, 1).layers[0].texture, s2.layers[0].texture)
    times = torch.linspace(0, 1, 5)
    assert torch.equal(render_batch([s1, s2], times)[1], render(s2, times))


@pytest.mark.slow
def test_noise_gaussian_per_sample_and_sensor() -> None:
    b = make_batch(4, 64, "11100101", sigma=(0.004, 0.01), photos=None,
                   generator=torch.Generator().manual_seed(2))
    assert bool(((b.sigma >= 0.004) & (b.sigma <= 0.01)).all())
    est = (b.y - b.y_clean).flatten(1).std(dim=1)
    torch.testing.assert_close(est, b.sigma, rtol=0.05, atol=0)
    sensor = SensorModel(gain_e_per_dn=2.0, read_noise_e=3.0, dark_offset_dn=64.0, bit_depth=12)
    s = make_batch(1, 32, "11100101", photos=None, sensor=sensor,
                   generator=torch.Generator().manual_seed(2))
    white = sensor.max_dn - sensor.dark_offset_dn
    dn = s.y * white
    torch.testing.assert_close(dn, torch.round(dn), atol=1e-3, rtol=0)  # whole DN
    assert 0.003 < float(s.sigma[0]) < 0.02


@pytest.mark.slow
def test_render_agrees_with_linear_motion_clip() -> None:
    image = dead_leaves(72, 80, seed=3)
    clip = linear_motion_clip(image, "11100101", velocity_px=(12.0, -6.0), sub_steps=4,
                              out_hw=(48, 50))
    scene = Scene((48, 50), (Layer(image, velocity_px=(12.0, -6.0)),))
    t = sb._sub_times(8, 4)
    chips = render(scene, t).view(8, 4, 48, 50).mean(dim=1)
    torch.testing.assert_close(chips, clip.chip_frames, atol=2e-5, rtol=0)
    assert abs(motion_extent_px(scene) - float(np.hypot(12.0, 6.0))) < 1e-9


def test_sprite_moves_with_its_velocity() -> None:
    bg = Layer(torch.zeros(60, 60))
    alpha = torch.zeros(9, 9)
    alpha[3:6, 3:6] = 1.0
    sprite = Layer(torch.ones(9, 9), alpha=alpha, centre_px=(0.5, 0.5), velocity_px=(10.0, 0.0))
    v = render(Scene((32, 32), (bg, sprite)), [0.0, 0.5, 1.0])
    cols = [(v[i].sum(0) * torch.arange(32)).sum() / v[i].sum() for i in range(3)]
    assert [round(float(x), 3) for x in cols] == [11.0, 16.0, 21.0]
    assert float(v[1].sum()) == pytest.approx(9.0)


@pytest.mark.slow
def test_motion_strata_targets_are_met() -> None:
    sampler = SceneSampler(None, 48)
    for i, rng in enumerate([(0.0, 8.0), (8.0, 24.0), (24.0, 48.0)]):
        scene = sampler.sample(11, i, motion_px=rng)
        assert rng[0] <= scene.motion_px <= rng[1]
        assert abs(motion_extent_px(scene) - scene.motion_px) < 1e-9
    assert sampler.background_side >= 48 + 2 * 48


@pytest.mark.slow
def test_bad_arguments_are_refused() -> None:
    g = torch.Generator()
    with pytest.raises(ValueError, match="sub_steps"):
        make_batch(1, 32, "1101", sub_steps=2, generator=g, photos=None)
    with pytest.raises(ValueError, match="no open chip"):
        make_batch(1, 32, "0000", generator=g, photos=None)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        render(Scene((8, 8), (Layer(torch.zeros(8, 8)),)), [1.5])
    with pytest.raises(ValueError, match="opaque background"):
        render(Scene((8, 8), (Layer(torch.zeros(8, 8), alpha=torch.ones(8, 8)),)), [0.5])
    with pytest.raises(ValueError, match="'val' or 'test'"):
        fixed_set("train")
    with pytest.raises(ValueError, match="larger max_motion_px"):
        SceneSampler(None, 32, max_motion_px=8.0).sample(0, motion_px=20.0)


# ---------------------------------------------------------------------------------------------
# Fixed sets, rendering
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_rendering_matches_the_cpu() -> None:
    sampler = sc.SceneSampler(None, 48)
    scenes = [sampler.sample(5, i, motion_px=20.0) for i in range(3)]
    times = np.linspace(0.05, 0.95, 7)
    cpu = sc.render_batch(scenes, times)
    gpu = sc.render_batch(scenes, times, device="cuda").cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)


@pytest.mark.slow
def test_training_batches_use_training_photos(photos: PhotoLibrary) -> None:
    b = make_batch(4, 32, "11100101", generator=torch.Generator().manual_seed(0), photos=photos)
    train = {str(photos.paths[i]) for i in photos.split("train")}
    for scene in b.scenes:
        for src in scene.sources:
            kind, _, name = src.partition(":")
            assert (name in train) if kind == "photo" else int(name) in (0, 1)


@pytest.mark.slow
def test_fixed_test_set_is_bit_exact_and_held_out(photos: PhotoLibrary) -> None:
    a = fixed_set("test", size=32, n_per_stratum=1)
    b = fixed_set("test", size=32, n_per_stratum=1)
    assert len(a) == 6 and a.strata[0] == "slow/sigma=0.002" and a.strata[-1] == "fast/sigma=0.01"
    ba, bb = a.batch(range(len(a))), b.batch(range(len(b)))
    for name in ("y", "y_clean", "chips", "sub", "sigma", "motion_px"):
        assert torch.equal(getattr(ba, name), getattr(bb, name)), name
    assert torch.equal(a.batch([4]).y[0], ba.y[4])  # a sample does not depend on its batch
    assert ba.sigma.tolist() == pytest.approx([0.002, 0.01] * 3)
    for m, (lo, hi) in zip(ba.motion_px.tolist(), a.motion_ranges, strict=True):
        assert lo <= m <= hi
    held_out = {str(photos.paths[i]) for i in photos.split("test")}
    for scene in ba.scenes:
        assert scene.split == "test"
        for src in scene.sources:
            kind, _, name = src.partition(":")
            test_dl = DEAD_LEAVES_SEEDS["test"]
            assert name in held_out if kind == "photo" else int(name) in test_dl
    # The same scenes under another code: only the coding changes.
    other = fixed_set("test", size=32, n_per_stratum=1, code=UNSEEN_CODES[2]).batch([0])
    assert other.chips.shape[1] == 12
    assert torch.equal(other.scenes[0].layers[0].texture, ba.scenes[0].layers[0].texture)


@pytest.mark.slow
def test_background_texture_covers_every_view() -> None:
    size = 48
    sampler = SceneSampler(None, size, max_sprites=0)
    t = np.linspace(0.0, 1.0, 65)
    half = (size - 1) / 2
    for i in range(20):
        scene = sampler.sample(2, i, motion_px=(40.0, 48.0))
        pos, ang, scl = sc._pose(scene.layers[0], scene.shake, t)
        for corner in ([-half, -half], [half, -half], [-half, half], [half, half]):
            d = np.asarray(corner) - pos
            ux = (np.cos(ang) * d[:, 0] + np.sin(ang) * d[:, 1]) / scl
            uy = (-np.sin(ang) * d[:, 0] + np.cos(ang) * d[:, 1]) / scl
            assert max(np.abs(ux).max(), np.abs(uy).max()) + 1 < sampler.background_side / 2
