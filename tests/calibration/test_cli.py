"""`blurvid-rig calibrate --sim`, then capture with the calibration and reconstruct with it."""

from __future__ import annotations

import numpy as np
import pytest

from blurvid_rig.cli import main
from blurvid_rig.files.capture import CaptureFile
from blurvid_rig.files.reconstruction import ReconFile
from calibration.model import Calibration

SIZE = ["--width", "160", "--height", "128"]


@pytest.fixture(scope="module")
def cal_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal")
    path = out / "rig.cal.h5"
    rc = main(["-q", "calibrate", "--sim", *SIZE, "--frames", "6", "--views", "6",
               "--out", str(path), "--report", str(out / "rig.pdf")])
    assert rc == 0
    return path


@pytest.mark.slow
def test_calibrate_sim_writes_file_report_and_truth(cal_path, capsys):
    cal = Calibration.load(cal_path)
    assert cal.parts == ["dark", "flat", "photon_transfer", "shutter_timing", "geometry"]
    assert cal.applies_to.roi == (0, 0, 160, 128) and cal.applies_to.black_level_dn == 64.0
    assert cal.rig["name"] == "simulated rig"
    assert (cal_path.parent / "rig.pdf").stat().st_size > 10_000
    assert cal.shutter_timing.latency_us == pytest.approx(30.0, abs=5)


@pytest.mark.slow
def test_calibrate_refuses_to_overwrite(cal_path, capsys):
    rc = main(["-q", "calibrate", "--sim", *SIZE, "--steps", "dark", "--out", str(cal_path)])
    assert rc == 2
    assert "never overwritten" in capsys.readouterr().err


@pytest.mark.slow
def test_capture_embeds_and_recon_applies(cal_path, tmp_path, capsys):
    cal = Calibration.load(cal_path)
    rc = main(["-q", "capture", "--sim", *SIZE, "--count", "2", "--out", str(tmp_path),
               "--code", "11100101", "--chip-us", "500", "--calibration", str(cal_path)])
    assert rc == 0
    (cap,) = tmp_path.glob("*.h5")
    with CaptureFile.open(cap) as c:
        assert c.calibration["uuid"] == cal.uuid
        assert c.camera_settings.black_level_dn == 64.0
    rc = main(["-q", "recon", str(cap), "--method", "classical", "--out", str(tmp_path / "r"),
               "--max-blur-px", "8"])
    assert rc == 0
    (rec,) = (tmp_path / "r").glob("*.recon.h5")
    with ReconFile.open(rec) as rf:
        assert rf.process["calibration_used"] == (
            f"dark+flat+effective code from calibration {cal.uuid}"
        )
        assert np.isfinite(np.asarray(rf.video)).all()
    rc = main(["-q", "recon", str(cap), "--no-calibration", "--calibration", str(cal_path)])
    assert rc == 2 and "contradict" in capsys.readouterr().err


@pytest.mark.slow
def test_recon_refuses_a_calibration_for_another_roi(cal_path, tmp_path, capsys):
    rc = main(["-q", "capture", "--sim", "--width", "96", "--height", "80", "--count", "1",
               "--out", str(tmp_path)])
    assert rc == 0
    (cap,) = tmp_path.glob("*.h5")
    rc = main(["-q", "recon", str(cap), "--calibration", str(cal_path), "--out",
               str(tmp_path / "r")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "ROI 160x128+0+0" in err and "--no-calibration" in err


def test_a_failed_step_keeps_what_was_measured(tmp_path, capsys):
    out = tmp_path / "x.cal.h5"
    rc = main(["-q", "calibrate", "--sim", *SIZE, "--steps", "dark", "geometry", "--board",
               "40x30", "--frames", "2", "--views", "4", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "checkerboard was found in 0 of 4" in err and "incomplete" in err
    kept = Calibration.load(tmp_path / "x.cal.incomplete.h5")
    assert kept.parts == ["dark"] and not out.exists()


@pytest.mark.slow
def test_calibrate_a_dmd_rig_including_its_mapping(tmp_path):
    out = tmp_path / "dmd.cal.h5"
    rc = main(["-q", "calibrate", "--sim", "--shutter", "dmd", "--width", "128", "--height", "96",
               "--steps", "dark", "dmd_mapping", "--frames", "2", "--out", str(out)])
    assert rc == 0
    cal = Calibration.load(out)
    assert cal.parts == ["dark", "dmd_mapping"] and cal.applies_to.black_level_dn == 64.0
    m = cal.dmd_mapping
    assert m.n_dots == m.n_projected == 48 and m.rms_px < 0.3
    corners = np.array([[0, 0], [127, 0], [0, 95], [127, 95]], float)
    np.testing.assert_allclose(m.to_camera(corners), corners, atol=0.1)  # one mirror per pixel
    rc = main(["-q", "calibrate", "--sim", "--steps", "dmd_mapping", "--out",
               str(tmp_path / "no.cal.h5")])
    assert rc == 2


def test_calibrate_out_is_a_folder_as_for_capture(tmp_path):
    """`--out calibrations` means a folder (as `capture --out`), not a file named calibrations;
    a name ending in .h5 is the file itself."""
    folder = tmp_path / "calibrations"
    rc = main(["-q", "calibrate", "--sim", "--width", "48", "--height", "32", "--steps", "dark",
               "--frames", "2", "--out", str(folder)])
    assert rc == 0 and folder.is_dir()
    (cal,) = folder.glob("*_calibration.cal.h5")
    assert Calibration.load(cal).parts == ["dark"]
