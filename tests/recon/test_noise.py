"""Tests of recon.noise: Poisson-Gaussian statistics against theory, clipping, quantisation,
reproducibility, the Gaussian model, and CUDA."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from recon.noise import SensorModel, add_gaussian, poisson_gaussian

N = 256 * 256  # pixels of a flat test image
Z = 5.0  # tolerance in standard errors

SENSOR = SensorModel(gain_e_per_dn=2.0, read_noise_e=3.0, dark_offset_dn=64.0, bit_depth=12)


def _normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _theory(level_dn: float, gain: float, read_e: float) -> tuple[float, float, float]:
    """Variance and fourth cumulant of the raw value (shot + read + quantisation), in DN.

    Shot noise: electrons ~ Poisson(level * gain), all cumulants = level * gain; divided by the
    gain in DN, the k-th cumulant scales by gain**-k. Read noise is Gaussian (no 4th cumulant).
    Rounding adds a uniform error on [-1/2, 1/2]: variance 1/12, fourth cumulant -1/120.
    """
    lam = level_dn * gain
    var = lam / gain**2 + (read_e / gain) ** 2 + 1.0 / 12.0
    k4 = lam / gain**4 - 1.0 / 120.0
    return var, k4, lam


def _flat(level: float, dtype: torch.dtype = torch.float64, device: str = "cpu") -> torch.Tensor:
    return torch.full((256, 256), float(level), dtype=dtype, device=device)


def _check_moments(out: torch.Tensor, mean: float, var: float, k4: float) -> None:
    n = out.numel()
    v = out.double().flatten()
    sample_mean = float(v.mean())
    sample_var = float(v.var(unbiased=True))
    se_mean = math.sqrt(var / n)
    se_var = math.sqrt(var**2 * 2.0 / (n - 1) + k4 / n)
    assert abs(sample_mean - mean) < Z * se_mean, (sample_mean, mean, se_mean)
    assert abs(sample_var - var) < Z * se_var, (sample_var, var, se_var)


@pytest.mark.parametrize("level", [5.0, 120.0, 1500.0])
def test_mean_and_variance_match_poisson_gaussian_theory(level: float) -> None:
    g = torch.Generator().manual_seed(int(level))
    out = SENSOR.apply(_flat(level), generator=g)
    var, k4, _ = _theory(level, gain=2.0, read_e=3.0)
    _check_moments(out, mean=level + 64.0, var=var, k4=k4)
    assert SENSOR.expected_variance_dn(level) == pytest.approx(var)


def test_variance_without_read_noise_is_shot_plus_quantisation() -> None:
    # gain 0.25 e/DN: one electron is 4 DN, so rounding never moves a value (no 1/12 term).
    g = torch.Generator().manual_seed(1)
    out = poisson_gaussian(_flat(40.0), gain_e_per_dn=0.25, read_noise_e=0.0, generator=g)
    lam = 40.0 * 0.25
    _check_moments(out, mean=40.0, var=lam / 0.25**2, k4=lam / 0.25**4)
    assert bool(((out / 4.0) == (out / 4.0).round()).all())  # multiples of 4 DN


def test_output_is_integer_within_adc_range() -> None:
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(64, 64, generator=g, dtype=torch.float64) * 5000.0
    for sensor in (SENSOR, dataclasses.replace(SENSOR, bit_depth=8, dark_offset_dn=0.0)):
        out = sensor.apply(clean, generator=g)
        assert bool((out == out.round()).all())
        assert float(out.min()) >= 0.0
        assert float(out.max()) <= sensor.max_dn
        assert float(out.max()) == sensor.max_dn  # the bright pixels saturate
        assert out.dtype == clean.dtype and out.shape == clean.shape


def test_clipping_at_saturation_and_at_zero() -> None:
    g = torch.Generator().manual_seed(3)
    sat = SENSOR.apply(_flat(6000.0), generator=g)
    assert bool((sat == 4095.0).all())
    # Zero signal, no offset, read noise 1.5 DN: rounding sends n < 0.5 to 0 or below, then
    # clipping makes it 0, so P(0) = Phi(0.5 / 1.5).
    zero = SensorModel(2.0, 3.0, 0.0, 12).apply(_flat(0.0), generator=g)
    p = _normal_cdf(0.5 / 1.5)
    frac = float((zero == 0).double().mean())
    assert abs(frac - p) < Z * math.sqrt(p * (1 - p) / N)
    assert float(zero.min()) == 0.0


def test_full_well_clips_electrons_before_read_noise() -> None:
    g = torch.Generator().manual_seed(4)
    sensor = dataclasses.replace(SENSOR, full_well_e=2000.0)
    out = sensor.apply(_flat(3000.0), generator=g)
    # Every pixel holds exactly 2000 e- = 1000 DN, then offset 64 and read noise 1.5 DN.
    var = (3.0 / 2.0) ** 2 + 1.0 / 12.0
    _check_moments(out, mean=1064.0, var=var, k4=-1.0 / 120.0)


def test_same_seed_same_output_and_dtype_kept() -> None:
    clean = _flat(300.0, dtype=torch.float32)
    a = SENSOR.apply(clean, generator=torch.Generator().manual_seed(5))
    b = SENSOR.apply(clean, generator=torch.Generator().manual_seed(5))
    c = SENSOR.apply(clean, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.dtype == torch.float32


def test_sensor_model_is_frozen_and_validated() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SENSOR.gain_e_per_dn = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="gain_e_per_dn must be a positive"):
        SensorModel(0.0, 3.0, 64.0, 12)
    with pytest.raises(ValueError, match="bit_depth must be between 1 and 24"):
        SensorModel(2.0, 3.0, 64.0, 32)
    with pytest.raises(ValueError, match="read_noise_e"):
        SensorModel(2.0, -1.0, 64.0, 12)
    with pytest.raises(ValueError, match="full_well_e"):
        SensorModel(2.0, 1.0, 64.0, 12, full_well_e=0.0)


def test_invalid_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="finite and >= 0"):
        SENSOR.apply(torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        SENSOR.apply(torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="float32 or float64"):
        SENSOR.apply(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="sigma"):
        add_gaussian(torch.zeros(3), -0.1)
    with pytest.raises(ValueError, match="does not broadcast"):
        add_gaussian(torch.zeros(2, 4, 4), torch.ones(3, 1, 1))


def test_add_gaussian_statistics_per_image_sigma_and_clip() -> None:
    g = torch.Generator().manual_seed(7)
    y = torch.full((3, 128, 128), 0.5, dtype=torch.float64)
    sigma = torch.tensor([0.0, 0.01, 0.05], dtype=torch.float64)
    out = add_gaussian(y, sigma.view(-1, 1, 1), generator=g)
    n = 128 * 128
    assert torch.equal(out[0], y[0])
    for i in (1, 2):
        s = float(sigma[i])
        assert abs(float(out[i].mean()) - 0.5) < Z * s / math.sqrt(n)
        assert abs(float(out[i].var()) - s**2) < Z * s**2 * math.sqrt(2.0 / (n - 1))
    a = add_gaussian(y, 0.01, torch.Generator().manual_seed(8))
    b = add_gaussian(y, 0.01, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    clipped = add_gaussian(torch.zeros(1000, dtype=torch.float64), 0.1, g, clip=True)
    assert float(clipped.min()) == 0.0 and float(clipped.max()) <= 1.0
    assert 0.4 < float((clipped == 0).double().mean()) < 0.6


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_noise_on_cuda() -> None:
    level = 120.0
    clean = _flat(level, device="cuda")
    a = SENSOR.apply(clean, generator=torch.Generator(device="cuda").manual_seed(9))
    b = SENSOR.apply(clean, generator=torch.Generator(device="cuda").manual_seed(9))
    assert a.is_cuda and torch.equal(a, b)
    var, k4, _ = _theory(level, gain=2.0, read_e=3.0)
    _check_moments(a.cpu(), mean=level + 64.0, var=var, k4=k4)
    sat = SENSOR.apply(_flat(6000.0, device="cuda"))
    assert bool((sat == 4095.0).all())
    assert add_gaussian(clean, 0.01).is_cuda
    with pytest.raises(ValueError, match="generator is on cpu"):
        SENSOR.apply(clean, generator=torch.Generator().manual_seed(0))
