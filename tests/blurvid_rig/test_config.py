"""blurvid_rig.config: the rig file (TOML) both ways, clear errors, and open_devices' cleanup."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import pytest

from blurvid_rig import devices as devices_mod
from blurvid_rig.config import (
    DEFAULT_CODE,
    DeviceSpec,
    RigConfig,
    load_config,
    open_devices,
    save_config,
)
from hw.errors import InitialiseError, RigError
from hw.sim import SimCamera
from hw.sim.camera import make_sim_rig
from hw.sim.shutter import SimShutter
from hw.types import CameraSettings, Roi


def test_round_trip(tmp_path: Path) -> None:
    config = RigConfig(
        devices=DeviceSpec(camera="genicam", shutter="arduino", cti="/opt/x.cti", serial="42",
                           index=1, port="/dev/ttyACM0", firmware="fw.elf",
                           trigger_source="Software", width=256, height=128, seed=3),
        bits="1101000110", chip_us=250.5,
        camera_settings=CameraSettings(exposure_mode="Timed", exposure_us=5000.0, gain_db=3.0,
                                       pixel_format="Mono8", roi=Roi(8, 4, 64, 32)),
        folder="data/run1", name="spin test",
    )  # fmt: skip
    path = save_config(config, tmp_path / "rig.toml")
    assert load_config(path) == config
    assert not (tmp_path / "rig.toml.partial").exists()


def test_defaults_round_trip_and_unset_options_stay_out_of_the_file(tmp_path: Path) -> None:
    path = save_config(RigConfig(), tmp_path / "rig.toml")
    assert load_config(path) == RigConfig()
    text = path.read_text()
    for key in ("cti", "serial", "index", "port", "firmware"):
        assert f"{key} =" not in text
    assert '[camera]\ntype = "sim"' in text and "[camera_settings]" in text


def test_missing_tables_and_keys_keep_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "min.toml"
    path.write_text("[shutter]\ntype = 'simavr'\n[camera]\nserial = 12345678\n")
    config = load_config(path)
    assert config.devices == DeviceSpec(shutter="simavr", serial="12345678")  # unquoted serial
    assert config.bits == DEFAULT_CODE and config.camera_settings == CameraSettings()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[camera]\ntype = 'sim'\nspeed = 3\n", r"unknown key\(s\) \['speed'\] in \[camera\]"),
        ("[lens]\nf = 8\n", r"unknown table \[lens\]"),
        ("camera = 3\n", r"\[camera\] must be a table of settings"),
        ("[camera]\ntype = 'webcam'\n", "Unknown camera type 'webcam'"),
        ("[shutter]\ntype = 'ttl'\n", "Unknown shutter type 'ttl'"),
        ("[sim]\nwidth = 'wide'\n", r"\[sim\] width must be a whole number, got 'wide'"),
        ("[sim]\nseed = true\n", r"\[sim\] seed must be a whole number, got True"),
        ("[code]\nchip_us = '1 ms'\n", r"\[code\] chip_us must be a number, got '1 ms'"),
        ("[camera]\nport = 1\n", r"unknown key\(s\) \['port'\] in \[camera\]"),
        ("[shutter]\nport = ['a']\n", r"\[shutter\] port must be text"),
        ("[camera_settings]\nroi = [1, 2]\n", r"\[camera_settings\] roi must be \[x, y, width"),
        ("[camera_settings]\nroi = [0, 0, -4, 8]\n", r"roi must be \[x, y, width, height\]"),
        ("[camera_settings]\ngain_db = -3\n", r"\[camera_settings\] gain_db must be >= 0"),
        ("[camera_settings]\npixel_format = 'RGB8'\n", r"pixel_format 'RGB8' is not one of"),
        ("[code\nbits=1", "Could not read the rig file"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RigError, match=match) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RigError, match="Could not read the rig file .*missing.toml"):
        load_config(tmp_path / "missing.toml")


def test_override_keeps_what_was_not_given() -> None:
    spec = DeviceSpec(camera="genicam", shutter="arduino", port="/dev/ttyACM0")
    assert spec.override(port=None, serial="7") == dataclasses.replace(spec, serial="7")
    config = RigConfig(devices=spec, name="file")
    assert config.override(name=None, folder="cli") == dataclasses.replace(config, folder="cli")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.port = "COM3"  # type: ignore[misc]


def test_open_devices_opens_both_and_closes_both() -> None:
    with open_devices(DeviceSpec(width=48, height=32, seed=1)) as (camera, shutter):
        assert isinstance(camera, SimCamera) and camera.is_open and shutter.is_open
        assert (camera.info.sensor_width, camera.info.sensor_height) == (48, 32)
    assert not camera.is_open and not shutter.is_open


class _ShutterThatWillNotOpen(SimShutter):
    """A simulated controller that does not answer when opened."""

    def _do_open(self) -> None:
        raise InitialiseError("the controller does not answer")


def test_open_devices_closes_what_it_opened_when_a_later_step_fails() -> None:
    camera, _ = make_sim_rig(width=32, height=32)
    events: list[str] = []
    camera_open = camera.open

    def open_camera() -> None:
        camera_open()
        events.append("camera open" if camera.is_open else "camera failed")

    camera.open = open_camera  # type: ignore[method-assign]
    shutter = _ShutterThatWillNotOpen()

    def make(stack: contextlib.ExitStack):
        stack.callback(events.append, "board released")  # as the AVR of shutter="simavr"
        return camera, shutter

    with pytest.raises(InitialiseError, match="does not answer"), open_devices(DeviceSpec(), make):
        pytest.fail("the block must not run")
    # the camera was opened first, the shutter then failed, and everything opened was released
    assert events == ["camera open", "board released"]
    assert not camera.is_open and not shutter.is_open


def test_open_devices_closes_both_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with open_devices(DeviceSpec(width=32, height=32)) as (camera, shutter):
            raise RuntimeError("boom")
    assert not camera.is_open and not shutter.is_open


def test_open_devices_passes_every_device_field(monkeypatch) -> None:
    seen: dict = {}

    def fake(stack, **kwargs):
        seen.update(kwargs)
        raise RigError("recorded")

    monkeypatch.setattr(devices_mod, "make_devices", fake)
    spec = DeviceSpec(camera="genicam", shutter="arduino", cti="/x.cti", serial="7", index=2,
                      port="/dev/ttyACM1", firmware="fw.elf", width=32, height=16, seed=5)
    with pytest.raises(RigError, match="recorded"), open_devices(spec):
        pass
    fields = dataclasses.asdict(spec)
    del fields["trigger_source"]  # a camera setting, applied by whoever configures the camera
    assert seen == fields
