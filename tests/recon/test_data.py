"""Tests of recon.data (synthetic scenes with ground truth) and recon.metrics."""

from __future__ import annotations

import math

import pytest
import torch

from recon.data import dead_leaves, linear_motion_clip, shift_bilinear
from recon.metrics import psnr, ssim, video_psnr

# ---------------------------------------------------------------------------------------------
# dead_leaves
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dead_leaves_range_determinism_and_statistics() -> None:
    img = dead_leaves(128, 160, seed=1)
    assert img.shape == (128, 160) and img.dtype == torch.float32
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert torch.equal(img, dead_leaves(128, 160, seed=1))
    assert not torch.equal(img, dead_leaves(128, 160, seed=2))
    assert 0.15 < float(img.std()) < 0.45
    # Natural-image-like: most gradients are ~0 (flat leaves), a few are large (occlusion edges).
    g = torch.cat([(img[:, 1:] - img[:, :-1]).flatten(), (img[1:] - img[:-1]).flatten()])
    assert float((g.abs() < 1e-3).float().mean()) > 0.4
    kurtosis = float(((g - g.mean()) ** 4).mean() / g.var() ** 2)
    assert kurtosis > 6.0  # heavy tails (a Gaussian has 3)


@pytest.mark.slow
def test_dead_leaves_spectrum_falls_like_a_power_law() -> None:
    img = dead_leaves(256, 256, seed=5).double()
    power = torch.fft.rfft2(img - img.mean()).abs().square()
    fy = torch.fft.fftfreq(256, dtype=torch.float64).unsqueeze(1)
    fx = torch.fft.rfftfreq(256, dtype=torch.float64).unsqueeze(0)
    f = (fx.square() + fy.square()).sqrt()
    low = power[(f > 0.02) & (f < 0.04)].mean()
    high = power[(f > 0.16) & (f < 0.32)].mean()
    slope = math.log(float(low / high)) / math.log(8.0)  # power ~ f^-slope
    assert 1.5 < slope < 4.0


def test_dead_leaves_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        dead_leaves(0, 10, seed=0)
    with pytest.raises(ValueError):
        dead_leaves(10, 10, seed=0, r_min=5.0, r_max=2.0)
    with pytest.raises(ValueError):
        dead_leaves(10, 10, seed=0, alpha=1.0)


# ---------------------------------------------------------------------------------------------
# linear_motion_clip
# ---------------------------------------------------------------------------------------------


def test_static_clip_reproduces_the_image() -> None:
    img = dead_leaves(64, 64, seed=3)
    clip = linear_motion_clip(img, "11100101", velocity_px=(0.0, 0.0), out_hw=(60, 60))
    crop = img[2:62, 2:62]
    assert torch.allclose(clip.sharp, crop)
    assert torch.allclose(clip.blurred, crop, atol=1e-6)
    assert torch.allclose(clip.chip_frames, crop.expand(8, -1, -1), atol=1e-6)


def test_blurred_is_the_code_weighted_mean_of_the_chip_frames() -> None:
    img = dead_leaves(96, 96, seed=4)
    code = (1, 1, 1, 0, 0, 1, 0, 1)
    clip = linear_motion_clip(img, code, velocity_px=(14.0, -9.0), sub_steps=4)
    c = torch.tensor(code, dtype=torch.float32).view(-1, 1, 1)
    assert torch.allclose(clip.blurred, (c * clip.chip_frames).sum(0) / c.sum(), atol=1e-6)
    # Closed chips still have ground truth: the scene keeps moving while the shutter is shut.
    assert not torch.allclose(clip.chip_frames[3], clip.chip_frames[4])
    assert clip.code == code and clip.sub_steps == 4 and clip.velocity_px == (14.0, -9.0)


def test_chip_frames_follow_the_motion_in_time_order() -> None:
    img = torch.zeros(41, 41)
    img[20, 20] = 1.0
    # Two chips, one sub-step each: chip centres at t = 1/4 and 3/4, shifts -2 and +2 px.
    clip = linear_motion_clip(img, "11", velocity_px=(8.0, 0.0), sub_steps=1, out_hw=(31, 31))
    peaks = [divmod(int(f.argmax()), 31) for f in clip.chip_frames]
    assert peaks == [(15, 13), (15, 17)]


def test_noise_has_the_requested_sigma_and_is_seeded() -> None:
    img = torch.full((140, 140), 0.5)
    a = linear_motion_clip(img, "1101", velocity_px=(4.0, 0.0), noise_sigma=0.01, seed=7)
    b = linear_motion_clip(img, "1101", velocity_px=(4.0, 0.0), noise_sigma=0.01, seed=7)
    assert torch.equal(a.blurred, b.blurred)
    assert float((a.blurred - 0.5).std()) == pytest.approx(0.01, rel=0.05)
    assert torch.allclose(a.chip_frames, torch.full_like(a.chip_frames, 0.5))


def test_shift_bilinear_half_pixel_is_the_average_of_neighbours() -> None:
    img = torch.arange(100.0).view(10, 10)
    out = shift_bilinear(img, (0.5, 0.0), (2, 2), (4, 4))
    assert torch.allclose(out, 0.5 * (img[2:6, 1:5] + img[2:6, 2:6]))
    with pytest.raises(ValueError):
        shift_bilinear(img, (5.0, 0.0), (2, 2), (4, 4))


def test_linear_motion_clip_rejects_bad_input() -> None:
    img = torch.rand(40, 40)
    with pytest.raises(ValueError):
        linear_motion_clip(img, "0000", velocity_px=(4.0, 0.0))
    with pytest.raises(ValueError):
        linear_motion_clip(img, "1101", velocity_px=(30.0, 0.0), out_hw=(30, 30))
    with pytest.raises(ValueError):
        linear_motion_clip(img, "1121", velocity_px=(4.0, 0.0))
    with pytest.raises(ValueError):
        linear_motion_clip(img, "1101", velocity_px=(4.0, 0.0), sub_steps=0)


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def test_psnr_and_video_psnr() -> None:
    ref = torch.zeros(3, 8, 8)
    x = ref.clone()
    x[0] += 0.1
    x[1] += 0.01
    x[2] += 0.001
    assert float(psnr(x[0], ref[0])) == pytest.approx(20.0)
    assert float(psnr(x[0] * 255, ref[0], data_range=255.0)) == pytest.approx(20.0)
    per_frame = video_psnr(x, ref, reduce=False)
    assert torch.allclose(per_frame, torch.tensor([20.0, 40.0, 60.0], dtype=torch.float64))
    assert float(video_psnr(x, ref)) == pytest.approx(40.0)
    assert video_psnr(x.expand(2, -1, -1, -1), ref.expand(2, -1, -1, -1), reduce=False).shape \
        == (2, 3)
    with pytest.raises(ValueError):
        psnr(x, ref[:2])
    with pytest.raises(ValueError):
        video_psnr(x[0], ref[0])
    with pytest.raises(ValueError):
        psnr(x, ref, data_range=0.0)


def test_ssim_orders_degradations() -> None:
    img = dead_leaves(64, 64, seed=9)
    gen = torch.Generator().manual_seed(0)
    noisy = img + 0.05 * torch.randn(64, 64, generator=gen)
    noisier = img + 0.2 * torch.randn(64, 64, generator=gen)
    assert float(ssim(img, img)) == pytest.approx(1.0)
    assert 1.0 > float(ssim(noisy, img)) > float(ssim(noisier, img)) > 0.0
    assert float(ssim(img.expand(2, 3, -1, -1), img.expand(2, 3, -1, -1))) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ssim(img[:8, :8], img[:8, :8])
    with pytest.raises(ValueError):
        ssim(img, img[:, :32])
