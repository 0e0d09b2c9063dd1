"""The capture command with the real firmware in simavr as the shutter controller: the file
records the controller's own hash echo and trigger indices."""

from __future__ import annotations

from pathlib import Path

import pytest

from blurvid_rig.cli import main
from blurvid_rig.files.capture import CaptureFile
from common.codes import code_sha256

pytestmark = pytest.mark.slow  # captures with the firmware in simavr


def test_capture_with_the_simulated_arduino(firmware_elf: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "-q",
            "capture",
            "--shutter",
            "simavr",
            "--firmware",
            str(firmware_elf),
            "--code",
            "11100101",
            "--chip-us",
            "250",
            "--count",
            "5",
            "--width",
            "96",
            "--height",
            "64",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0, capsys.readouterr()
    (path,) = tmp_path.glob("*.h5")
    with CaptureFile.open(path) as cap:
        assert cap.status == "complete" and cap.n_frames == 5
        assert cap.shutter_info.controller == "arduino"
        assert cap.shutter_info.firmware_version.startswith("1.0.0")
        assert cap.echo_verified
        assert cap.shutter_status.code_sha256 == code_sha256((1, 1, 1, 0, 0, 1, 0, 1))
        assert list(cap.frame_log["trigger_index"]) == [0, 1, 2, 3, 4]
        assert cap.settings["shutter"] == "simavr"
        assert cap.read_frame(0).std() > 0


def test_arduino_shutter_without_a_port_is_a_clear_error(tmp_path: Path, capsys) -> None:
    rc = main(["-q", "capture", "--shutter", "arduino", "--count", "1", "--out", str(tmp_path)])
    assert rc == 2
    assert "--port" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.h5"))


def test_ports_command_runs(capsys) -> None:
    assert main(["ports"]) in (0, 1)
    assert capsys.readouterr().out.strip()


def test_genicam_camera_with_the_firmware_as_controller(
    firmware_elf: Path, producers: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """The whole path with real protocols: harvesters on the TLSimu GenTL producer (which has no
    trigger lines, so the host triggers it in software) and the firmware in simavr."""
    common = [
        "-q",
        "capture",
        "--camera",
        "genicam",
        "--cti",
        str(producers["TLSimu"]),
        "--serial",
        "SN_InterfaceA_0",
        "--shutter",
        "simavr",
        "--firmware",
        str(firmware_elf),
        "--out",
        str(tmp_path),
        "--count",
        "6",
    ]
    # the rig's wiring (Line1) is refused with a sentence naming what the camera offers
    assert main(common) == 2
    assert "Software" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.h5"))
    assert main([*common, "--trigger-source", "Software", "--exposure-us", "9000"]) == 0
    (path,) = tmp_path.glob("*.h5")
    with CaptureFile.open(path) as cap:
        assert cap.status == "complete" and cap.n_frames == 6
        assert cap.camera_info.model.startswith("TLSimu")
        assert cap.shutter_info.controller == "arduino" and cap.echo_verified
        assert list(cap.frame_log["trigger_index"]) == list(range(6))
        assert list(cap.frame_log["frame_id"]) == list(range(6))


def test_rig_file_sets_the_devices_and_the_command_line_wins(
    firmware_elf: Path, producers: dict[str, Path], tmp_path: Path, capsys
) -> None:
    rig = tmp_path / "rig.toml"
    rig.write_text(
        "[camera]\n"
        'type = "genicam"\n'
        f'cti = "{producers["TLSimu"]}"\n'
        'serial = "SN_InterfaceB_0"\n'
        'trigger_source = "Software"\n'
        "[shutter]\n"
        'type = "simavr"\n'
        f'firmware = "{firmware_elf}"\n'
    )
    out = tmp_path / "out"
    args = ["-q", "capture", "--rig", str(rig), "--exposure-us", "9000", "--out", str(out)]
    assert main([*args, "--count", "2"]) == 0
    (path,) = out.glob("*.h5")
    with CaptureFile.open(path) as cap:
        assert cap.camera_info.serial_number == "SN_InterfaceB_0" and cap.n_frames == 2
    # an option on the command line overrides the file
    assert main([*args, "--count", "1", "--serial", "SN_InterfaceA_0", "--name", "b"]) == 0
    (path,) = out.glob("*_b.h5")
    with CaptureFile.open(path) as cap:
        assert cap.camera_info.serial_number == "SN_InterfaceA_0"
    rig.write_text('[camera]\ntype = "genicam"\nexposure = 3\n')
    assert main([*args, "--count", "1"]) == 2
    assert "unknown key(s) ['exposure'] in [camera]" in capsys.readouterr().err


def test_cameras_command_lists_the_simulators(producers: dict[str, Path], capsys) -> None:
    assert main(["cameras", "--cti", str(producers["TLSimu"])]) == 0
    assert "SN_InterfaceA_0" in capsys.readouterr().out
