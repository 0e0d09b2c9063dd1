"""Rig profiles (TOML): round trip, clear errors, settings from a capture, CLI compatibility."""

from __future__ import annotations

from pathlib import Path

import pytest

from blurvid_rig.profile import (
    Devices,
    RigProfile,
    load_profile,
    profile_from_capture,
    save_profile,
)
from hw.errors import RigError
from hw.types import CameraSettings, Roi


def test_round_trip(tmp_path: Path) -> None:
    p = RigProfile(
        devices=Devices(camera="genicam", shutter="arduino", cti="/opt/x.cti", serial="42",
                        port="/dev/ttyACM0", width=256, height=128, seed=3),
        bits="1101000110", chip_us=250.5,
        camera=CameraSettings(exposure_mode="Timed", exposure_us=5000.0, gain_db=3.0,
                              pixel_format="Mono8", roi=Roi(8, 4, 64, 32)),
        folder="data/run1", name="spin test",
    )  # fmt: skip
    path = save_profile(p, tmp_path / "rig.toml")
    assert load_profile(path) == p
    assert not (tmp_path / "rig.toml.partial").exists()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[camera]\ntype = 'sim'\nspeed = 3\n", r"unknown key\(s\) \['speed'\] in \[camera\]"),
        ("[lens]\nf = 8\n", r"unknown table \[lens\]"),
        ("[camera]\ntype = 'webcam'\n", "Unknown camera type 'webcam'"),
        ("[camera_settings]\nroi = [1, 2]\n", r"roi must be \[x, y, width, height\]"),
        ("[camera_settings]\ngain_db = -3\n", "gain_db must be >= 0"),
        ("[code\nbits=1", "Could not read the rig profile"),
    ],
)
def test_bad_profiles_say_what_is_wrong(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RigError, match=match):
        load_profile(path)


def test_missing_tables_keep_defaults(tmp_path: Path) -> None:
    path = tmp_path / "min.toml"
    path.write_text("[shutter]\ntype = 'simavr'\n")
    p = load_profile(path)
    assert p.devices.shutter == "simavr" and p.devices.camera == "sim" and p.bits == "11100101"


def test_settings_from_a_capture(tmp_path: Path) -> None:
    from blurvid_rig.session import RigSession
    from hw.sim.camera import make_sim_rig
    from hw.types import ShutterCode

    cam, sh = make_sim_rig(width=48, height=48)
    with RigSession(cam, sh) as s:
        s.configure(ShutterCode.parse("1011001", 500.0))
        result = s.record(1, tmp_path).wait()
    base = RigProfile(folder="keep/me")
    p = profile_from_capture(result.path, base)
    assert p.bits == "1011001" and p.chip_us == 500.0 and p.folder == "keep/me"
    assert p.camera.exposure_mode == "TriggerWidth"


def test_the_command_line_reads_a_profile_as_a_rig_file(tmp_path: Path) -> None:
    from blurvid_rig.cli import main

    path = save_profile(RigProfile(devices=Devices(camera="sim", shutter="sim")),
                        tmp_path / "rig.toml")  # fmt: skip
    rc = main(["-q", "capture", "--rig", str(path), "--count", "1", "--width", "32",
               "--height", "32", "--out", str(tmp_path / "caps")])  # fmt: skip
    assert rc == 0 and len(list((tmp_path / "caps").glob("*.h5"))) == 1
