"""Tests of the batched PSF builder behind the velocity search of recon.velocity."""

from __future__ import annotations

import pytest
import torch

from recon.classical import motion_psf
from recon.functional import code_weights
from recon.psf_deconv import motion_psf_batch, time_weights

CODE = "11100101"
VELOCITIES = [(0.0, 0.0), (20.0, -13.0), (-7.3, 2.1), (5.0, 5.0), (-15.0, -15.0), (0.3, -0.2),
              (-0.6, 0.0), (40.0, 0.0), (0.0, -24.5), (3.75, 9.125)]


@pytest.mark.parametrize("sub_steps", [1, 4])
def test_batched_psfs_equal_stacked_motion_psf(sub_steps: int) -> None:
    w = time_weights(CODE, sub_steps, None)
    batch = motion_psf_batch(w, VELOCITIES, dtype=torch.float64)
    r = (batch.shape[-1] - 1) // 2
    ref = torch.stack([motion_psf(w, v, radius=r, dtype=torch.float64) for v in VELOCITIES])
    assert batch.shape == ref.shape
    assert torch.allclose(batch, ref, rtol=0.0, atol=1e-6)
    assert torch.allclose(batch.sum((-2, -1)), torch.ones(len(VELOCITIES), dtype=torch.float64))


def test_batched_psfs_options_and_errors() -> None:
    w = code_weights(CODE, sub_steps=2, dtype=torch.float64)
    part = motion_psf_batch(w, VELOCITIES[:4], t_range=(0.25, 0.75), radius=20)
    assert part.shape == (4, 41, 41) and part.dtype == torch.float32
    for k, v in zip(part, VELOCITIES[:4], strict=True):
        ref = motion_psf(w, v, t_range=(0.25, 0.75), radius=20)
        assert torch.allclose(k, ref, atol=1e-6)
    with pytest.raises(ValueError):
        motion_psf_batch(w, [(30.0, 0.0)], radius=3)
    with pytest.raises(ValueError):
        motion_psf_batch(w, [])
