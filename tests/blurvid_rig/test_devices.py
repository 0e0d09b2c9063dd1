"""blurvid_rig.devices: the camera and shutter controller made from plain choices (the fields
of a DeviceSpec; blurvid_rig.config.open_devices passes them)."""

from __future__ import annotations

import contextlib

import pytest

from blurvid_rig import devices as devices_mod
from blurvid_rig.cli import main
from blurvid_rig.devices import make_devices
from hw.errors import RigError
from hw.sim import SimCamera
from hw.sim.shutter import SimShutter


def test_simulated_rig_comes_back_unopened() -> None:
    with contextlib.ExitStack() as stack:
        camera, shutter = make_devices(stack, width=64, height=48, seed=2)
        assert isinstance(camera, SimCamera) and isinstance(shutter, SimShutter)
        with camera, shutter:
            assert (camera.info.sensor_width, camera.info.sensor_height) == (64, 48)


@pytest.mark.parametrize(
    ("choices", "match"),
    [
        ({"camera": "genicam", "shutter": "sim"}, "needs a real shutter controller"),
        ({"shutter": "arduino"}, "needs the controller's serial port"),
        ({"shutter": "simavr", "firmware": "/nonexistent/blurvid.elf"}, "is not built"),
    ],
)
def test_combinations_that_cannot_work_say_what_to_give(choices, match: str) -> None:
    with contextlib.ExitStack() as stack, pytest.raises(RigError, match=match):
        make_devices(stack, **choices)


def _recorded(monkeypatch) -> dict:
    """Replace make_devices by a fake that records its arguments, then refuses."""
    seen: dict = {}

    def fake(stack, **kwargs):
        seen.update(kwargs)
        raise RigError("recorded")

    monkeypatch.setattr(devices_mod, "make_devices", fake)
    return seen


@pytest.mark.parametrize("command", ["capture", "calibrate"])
def test_the_command_line_passes_its_device_options(monkeypatch, capsys, command: str) -> None:
    seen = _recorded(monkeypatch)
    rc = main(
        [command, "--camera", "genicam", "--shutter", "simavr", "--cti", "/x.cti", "--index",
         "1", "--port", "/dev/ttyUSB0", "--firmware", "fw.elf", "--width", "8", "--height", "4",
         "--seed", "9"]
    )  # fmt: skip
    assert rc != 0 and "recorded" in capsys.readouterr().err
    assert seen == {"camera": "genicam", "shutter": "simavr", "cti": "/x.cti", "serial": "",
                    "index": 1, "port": "/dev/ttyUSB0", "firmware": "fw.elf", "width": 8,
                    "height": 4, "seed": 9}  # fmt: skip
