"""Rig profiles: settings from a capture file, and a profile read by the command line."""

from __future__ import annotations

from pathlib import Path

from blurvid_rig.config import DeviceSpec, RigConfig, save_config
from blurvid_rig.profile import profile_from_capture


def test_settings_from_a_capture(tmp_path: Path) -> None:
    from blurvid_rig.session import RigSession
    from hw.sim.camera import make_sim_rig
    from hw.types import ShutterCode

    cam, sh = make_sim_rig(width=48, height=48)
    with RigSession(cam, sh) as s:
        s.configure(ShutterCode.parse("1011001", 500.0))
        result = s.record(1, tmp_path).wait()
    base = RigConfig(folder="keep/me")
    p = profile_from_capture(result.path, base)
    assert p.bits == "1011001" and p.chip_us == 500.0 and p.folder == "keep/me"
    assert p.camera_settings.exposure_mode == "TriggerWidth"


def test_the_command_line_reads_a_profile_as_a_rig_file(tmp_path: Path) -> None:
    from blurvid_rig.cli import main

    path = save_config(RigConfig(devices=DeviceSpec(camera="sim", shutter="sim")),
                       tmp_path / "rig.toml")  # fmt: skip
    rc = main(["-q", "capture", "--rig", str(path), "--count", "1", "--width", "32",
               "--height", "32", "--out", str(tmp_path / "caps")])  # fmt: skip
    assert rc == 0 and len(list((tmp_path / "caps").glob("*.h5"))) == 1


def test_the_rig_files_code_and_folder_apply_and_the_command_line_wins(tmp_path: Path) -> None:
    from blurvid_rig.cli import main

    folder = tmp_path / "from_file"
    rig = RigConfig(devices=DeviceSpec(camera="genicam", shutter="arduino", port="/dev/none"),
                    bits="1101000110", chip_us=250.0, folder=str(folder), name="file")
    path = save_config(rig, tmp_path / "rig.toml")
    sim = ["--camera", "sim", "--shutter", "sim", "--width", "32", "--height", "32"]
    # the options given win, also where they name the default value (--camera sim)
    assert main(["-q", "capture", "--rig", str(path), "--count", "1", *sim]) == 0
    (first,) = folder.glob("*_file.h5")
    taken = profile_from_capture(first)
    assert taken.bits == "1101000110" and taken.chip_us == 250.0  # the file's [code]
    assert main(["-q", "capture", "--rig", str(path), "--count", "1", *sim, "--code", "box8",
                 "--chip-us", "1000", "--name", "cli"]) == 0  # fmt: skip
    (second,) = folder.glob("*_cli.h5")
    taken = profile_from_capture(second)
    assert taken.bits == "11111111" and taken.chip_us == 1000.0


def test_a_rig_file_without_a_code_records_the_default_named_code(tmp_path: Path) -> None:
    from blurvid_rig.cli import main
    from blurvid_rig.config import DEFAULT_CODE
    from blurvid_rig.files.capture import CaptureFile

    path = tmp_path / "rig.toml"
    path.write_text("[camera]\ntype = 'sim'\n[shutter]\ntype = 'sim'\n")
    assert main(["-q", "capture", "--rig", str(path), "--count", "1", "--width", "32",
                 "--height", "32", "--out", str(tmp_path)]) == 0  # fmt: skip
    (capture,) = tmp_path.glob("*.h5")
    with CaptureFile.open(capture) as f:  # the same code, named, as without --rig
        assert f.code.name == DEFAULT_CODE and f.code.as_string() == "11100101"
