"""Calibration storage and the applicability check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import h5py
import numpy as np
import pytest

from calibration.model import Calibration, CalibrationError
from hw.types import CameraSettings, Roi


def test_file_round_trip(calibrated, tmp_path):
    _, _, cal = calibrated
    path = cal.save(tmp_path / "rig.cal.h5")
    back = Calibration.load(path)
    assert back.uuid == cal.uuid and back.parts == cal.parts
    assert back.applies_to == cal.applies_to
    assert back.rig == {"name": "test rig"}
    np.testing.assert_array_equal(back.dark.hot_pixels, cal.dark.hot_pixels)
    np.testing.assert_array_equal(back.flat.flat, cal.flat.flat)
    assert back.shutter_timing.latency_us == cal.shutter_timing.latency_us
    assert back.shutter_timing.check_codes == cal.shutter_timing.check_codes
    assert back.geometry.board == cal.geometry.board
    np.testing.assert_allclose(back.geometry.camera_matrix, cal.geometry.camera_matrix)
    bits = (1, 0, 1, 1)
    np.testing.assert_array_equal(
        back.shutter_timing.effective_code(bits, 200, 2),
        cal.shutter_timing.effective_code(bits, 200, 2),
    )
    with pytest.raises(CalibrationError, match="exists"):
        cal.save(path)
    assert not list(tmp_path.glob("*.partial"))


def test_load_refuses_what_is_not_a_calibration(tmp_path):
    with pytest.raises(CalibrationError, match="does not exist"):
        Calibration.load(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(CalibrationError, match="not a readable HDF5"):
        Calibration.load(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("entry")
    with pytest.raises(CalibrationError, match="holds no blurvid-rig calibration"):
        Calibration.load(tmp_path / "other.h5")


def test_newer_schema_is_refused(calibrated):
    _, _, cal = calibrated
    tree = cal.to_tree()
    tree["schema_version"] = "2.0"
    with pytest.raises(CalibrationError, match="schema 2.0"):
        Calibration.from_tree(tree)


def test_applicability(calibrated):
    _, _, cal = calibrated
    a = cal.applies_to
    ok = a.settings_for(CameraSettings(exposure_us=a.exposure_us))
    shape = (a.roi[3], a.roi[2])
    assert cal.check(ok, shape) == []
    black = cal.check(ok.replace(black_level_dn=0.0), shape)
    assert len(black) == 1 and "black level 64 DN" in black[0].message
    # darks at two exposures are interpolated: another exposure is fine
    assert cal.check(ok.replace(exposure_us=2000.0), shape) == []
    problems = cal.check(ok.replace(gain_db=6.0, pixel_format="Mono8", roi=Roi()), (64, 64))
    text = " ".join(p.message for p in problems)
    assert [p.severity for p in problems] == ["error"] * 3
    assert "ROI" in text and "Mono8" in text and "6 dB" in text
    with pytest.raises(CalibrationError, match="does not apply"):
        cal.require(ok.replace(roi=Roi(8, 8, 64, 64)), (64, 64))
    later = datetime.now(UTC) + timedelta(days=45)
    old = cal.check(ok, shape, now=later)
    assert len(old) == 1 and old[0].severity == "warning" and "45 days old" in old[0].message
    assert cal.require(ok, shape, now=later) == old
