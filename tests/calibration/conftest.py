"""A simulated rig with known sensor, shutter and lens parameters, calibrated once per session."""

from __future__ import annotations

import pytest

from calibration.bench import SimBench
from calibration.procedures import Plan, Rig, calibrate_all, run
from hw.optics import ShutterOptics
from hw.sim import make_sim_rig

#: The truth the procedures must recover (issue 7's numbers).
OPTICS = ShutterOptics(leakage=0.02, latency_us=30.0, rise_us=50.0, fall_us=40.0)
SENSOR = dict(read_noise_e=3.0, prnu=0.012, dsnu_e=2.0, vignetting=0.3, hot_pixel_fraction=0.001)


def make_rig(seed: int = 3, size: tuple[int, int] = (256, 192)):
    cam, sh = make_sim_rig(*size, seed=seed, shutter_kw={"optics": OPTICS}, **SENSOR)
    return cam, sh


@pytest.fixture(scope="session")
def calibrated():
    """(camera, shutter, calibration) after every procedure ran on the simulated rig."""
    cam, sh = make_rig()
    with cam, sh:
        cam.apply_settings(cam.settings.replace(exposure_us=10_000.0, black_level_dn=64.0))
        rig = Rig(cam, sh, SimBench(cam))
        cal = run(calibrate_all(rig, Plan(exposure_us=10_000.0), {"name": "test rig"}))
        yield cam, sh, cal
