"""A simulated rig with known sensor, shutter and lens parameters, calibrated once per session."""

from __future__ import annotations

import pytest

from calibration.bench import SimBench
from calibration.procedures.base import Rig, run
from calibration.procedures.plan import Plan, calibrate_all
from hw.optics import ShutterOptics
from hw.sim import SimScene, SimSensor, make_sim_rig

#: The truth the procedures must recover (issue 7's numbers).
OPTICS = ShutterOptics(leakage=0.02, latency_us=30.0, rise_us=50.0, fall_us=40.0)
SENSOR = SimSensor(
    read_noise_e=3.0, prnu=0.012, dsnu_e=2.0, vignetting=0.3, hot_pixel_fraction=0.001
)


def make_rig(seed: int = 3, size: tuple[int, int] = (256, 192)):
    cam, sh = make_sim_rig(*size, seed=seed, shutter_kw={"optics": OPTICS}, sensor=SENSOR)
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


def assert_timing_matches(st, optics, *, edge_us: float, leakage: float) -> None:
    """A measured ``ShutterTiming`` against the simulated shutter's ``optics``: latencies within
    2 us, rise and fall within ``edge_us``, leakage within ``leakage``, and (the simulated
    shutter being the fitted model) a fit residual that the frames' noise explains."""
    assert st.latency_us >= 0 and st.close_latency_us >= 0 and st.leakage >= 0
    assert st.latency_us == pytest.approx(optics.latency_us, abs=2.0)
    assert st.close_latency_us == pytest.approx(optics.close_latency, abs=2.0)
    assert st.rise_us == pytest.approx(optics.rise_us, abs=edge_us)
    assert st.fall_us == pytest.approx(optics.fall_us, abs=edge_us)
    assert st.leakage == pytest.approx(optics.leakage, abs=leakage)
    assert 0.5 * st.fit_noise_rms < st.fit_residual_rms < 1.5 * st.fit_noise_rms


class MovingBench(SimBench):
    """The bright target is replaced by the simulator's moving scene (someone in front of the
    lens): the timing step must refuse it."""

    def setup(self, target, instruction, *, view=0):
        super().setup(target, instruction, view=view)
        if target == "bright":
            w, h = self.camera.scene.width, self.camera.scene.height
            self.camera.scene = SimScene.default(w, h, seed=3)
