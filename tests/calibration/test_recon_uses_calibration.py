"""Captures carry the active calibration, and reconstruction applies it (and is better for it)."""

from __future__ import annotations

import numpy as np
import pytest

from blurvid_rig.batch import reconstruct_capture
from blurvid_rig.capture import run_coded_capture
from blurvid_rig.corrections import calibration_of, corrections_for
from blurvid_rig.files.capture import CaptureFile
from blurvid_rig.files.reconstruction import ReconFile
from blurvid_rig.session import RigSession
from calibration.bench import SimBench
from calibration.procedures.base import Rig, run
from calibration.procedures.plan import Plan, calibrate_all
from hw.errors import IncompatibleStateError, RigError
from hw.sim import SimScene, SimSensor, make_sim_rig
from hw.types import Roi, ShutterCode
from tests.calibration.conftest import OPTICS

pytestmark = pytest.mark.slow  # records a calibrated capture and reconstructs it several times

CODE = ShutterCode.parse("11100101", 100)
BLUR = (12.0, 4.0)  # px per exposure


def _rig(size=96):
    period_s = CODE.period_us * 1e-6
    texture = SimScene.default(size, size, seed=5).render(0.0)
    scene = SimScene.translating(
        texture, (BLUR[0] / period_s, BLUR[1] / period_s), border="reflect"
    )
    return make_sim_rig(size, size, seed=7, scene=scene, shutter_kw={"optics": OPTICS},
                        sensor=SimSensor(vignetting=0.25, hot_pixel_fraction=0.001))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A calibration of the leaky, slow shutter and a 2-frame capture that embeds it."""
    out = tmp_path_factory.mktemp("cal")
    cam, sh = _rig()
    with cam, sh:
        cam.apply_settings(cam.settings.replace(exposure_us=CODE.period_us, black_level_dn=64.0))
        with SimBench(cam, ref_exposure_us=5000.0) as bench:
            plan = Plan(exposure_us=CODE.period_us, steps=("dark", "flat", "shutter_timing"),
                        flat_exposure_us=3000.0, n_frames=8, check_chip_us=())
            cal = run(calibrate_all(Rig(cam, sh, bench), plan))
        res = run_coded_capture(cam, sh, CODE, 2, out, calibration=cal)
        truths = [cam.ground_truth(fid) for fid in res.frame_ids]
        mean_response = float(np.mean(cam.vignetting_map()))
        peak = float(cam.full_scale_dn())
    return out, cal, res.path, truths, mean_response * 1.0, peak


def test_capture_embeds_the_calibration(recorded):
    _, cal, path, *_ = recorded
    with CaptureFile.open(path) as cap:
        back = calibration_of(cap)
        corr = corrections_for(cap)
    assert back is not None and back.uuid == cal.uuid
    assert corr.calibration_uuid == cal.uuid
    assert corr.used.startswith("dark+flat+effective code from calibration")
    assert corr.weights is not None and corr.weights.numel() == CODE.n_chips * corr.sub_steps


def test_effective_code_beats_nominal(recorded):
    out, cal, path, truths, mean_response, peak = recorded

    def psnr_of(use):
        o = reconstruct_capture(path, n_out=CODE.n_chips, use_calibration=use, velocity=BLUR,
                                out_dir=out / use, overwrite=True, solver="wiener")
        with ReconFile.open(o.output) as rf:
            video = np.asarray(rf.video)
            used = str(rf.process.get("calibration_used", ""))
        err = [np.mean((video[i, k] - t.chip_frames[k] * mean_response) ** 2)
               for i, t in enumerate(truths) for k in range(CODE.n_chips)]
        return 10 * np.log10(peak**2 / np.mean(err)), used

    full, used = psnr_of("auto")
    sensor, _ = psnr_of("sensor")
    none, used_none = psnr_of("none")
    assert used == f"dark+flat+effective code from calibration {cal.uuid}"
    assert used_none.startswith("black level")
    print(f"PSNR calibrated {full:.2f}, dark+flat {sensor:.2f}, none {none:.2f} dB")
    # measured (bench/bench_calibration.py at 256 px, TV): +3.5 dB from the effective code at
    # 100 us chips; here a smaller frame, Wiener, two frames
    assert full > sensor + 1.5, (full, sensor)
    assert sensor > none, (sensor, none)


def test_recording_refuses_a_calibration_that_does_not_fit(recorded, tmp_path):
    _, cal, *_ = recorded
    cam, sh = _rig()
    with cam, sh:
        s = RigSession(cam, sh)
        s.configure(CODE, settings=cam.settings.replace(roi=Roi(0, 0, 64, 64)))
        s.calibration = cal
        assert any("ROI" in p for p in s.calibration_problems())
        with pytest.raises(IncompatibleStateError, match="ROI 96x96"):
            s.record(1, tmp_path)
        assert not list(tmp_path.iterdir())  # nothing was created


def test_recon_refuses_a_calibration_that_does_not_fit(recorded, tmp_path):
    _, cal, path, *_ = recorded
    with CaptureFile.open(path) as cap:
        cal2 = calibration_of(cap)
    cal2.applies_to = type(cal.applies_to)(**{**cal.applies_to.__dict__, "gain_db": 12.0})
    with pytest.raises(RigError, match="gain 12 dB.*--no-calibration"):
        reconstruct_capture(path, calibration=cal2, out_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_old_calibration_is_a_recorded_warning(recorded, tmp_path):
    _, cal, path, *_ = recorded
    o = reconstruct_capture(path, n_out=4, velocity=BLUR, out_dir=tmp_path, solver="wiener",
                            calibration_max_age_days=-1.0)
    with ReconFile.open(o.output) as rf:
        params = rf.process["parameters"]
    assert "days old" in params["calibration_warnings"]
    assert params["calibration"].endswith(cal.uuid)
