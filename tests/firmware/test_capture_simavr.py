"""The capture command with the real firmware in simavr as the shutter controller: the file
records the controller's own hash echo and trigger indices."""

from __future__ import annotations

from pathlib import Path

from blurvid_rig.capture_file import CaptureFile
from blurvid_rig.cli import main
from hw.types import code_sha256


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
