"""The rig's configuration: which devices, which code, which camera settings, where captures go.

:class:`DeviceSpec` says which camera and shutter controller to use and how to reach them;
:class:`RigConfig` adds the code, the camera settings and the capture folder. Both are frozen.
:func:`load_config` / :func:`save_config` are the one reader and writer of the rig file (TOML),
which serves as the command line's ``--rig FILE`` and as the rig window's profile (``capture
--rig`` uses its device, code and capture tables and leaves ``[camera_settings]`` to its own
options). :func:`open_devices` turns a spec into open devices and closes what it opened when a
later step fails. The command line, the calibration command, profiles and the rig window only
turn their input into a spec; none of them builds devices.

Example file (every table and key is optional; a missing one keeps its default)::

    [camera]
    type = "genicam"                 # or "sim"
    cti = "/opt/vendor/lib/gentl.cti"
    serial = "12345678"
    trigger_source = "Line1"
    [shutter]
    type = "arduino"                 # or "sim", "simavr", "dmd"
    port = "/dev/ttyACM0"
    [code]
    bits = "11100101"
    chip_us = 1000.0
    [camera_settings]
    exposure_mode = "TriggerWidth"
    exposure_us = 10000.0
    gain_db = 0.0
    pixel_format = "Mono12"
    roi = [0, 0, 0, 0]               # x, y, width, height; 0 x 0 = full sensor
    [capture]
    folder = "captures"
    name = "capture"
    [sim]
    width = 512
    height = 512
    seed = 0
"""

from __future__ import annotations

import contextlib
import dataclasses
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.base import Camera, Shutter
from hw.errors import RigError
from hw.types import CameraSettings, Roi

__all__ = [
    "CAMERA_TYPES", "SHUTTER_TYPES", "TABLES", "DeviceFactory", "DeviceSpec", "RigConfig",
    "load_config", "open_devices", "parse_config", "save_config",
]  # fmt: skip

CAMERA_TYPES = ("sim", "genicam")
SHUTTER_TYPES = ("sim", "arduino", "simavr", "dmd")
#: The code when neither the command line nor the rig file gives one (a known code's name).
DEFAULT_CODE = "bdinr8"

#: Makes the (unopened) camera and shutter; what must outlive the call goes on the stack.
DeviceFactory = Callable[[contextlib.ExitStack], tuple[Camera, Shutter]]


@dataclass(frozen=True)
class DeviceSpec:
    """Which camera and shutter controller, and how to reach them.

    Attributes:
        camera: ``"sim"`` (the simulated camera) or ``"genicam"``.
        shutter: ``"sim"``, ``"arduino"`` (on ``port``), ``"simavr"`` (the real firmware in a
            simulated ATmega328P) or ``"dmd"`` (a DLPC900; simulated with the simulated camera).
        cti: GenTL producer(s) of a GenICam camera; empty: the environment's.
        serial: serial number of the GenICam camera; empty: ``index`` (default 0) picks it.
        index: index of the GenICam camera when no ``serial`` is given.
        port: serial port of the Arduino controller.
        firmware: firmware ``.elf`` for ``"simavr"``; empty: the one built in this checkout.
        trigger_source: the camera input wired to the controller's trigger (a camera setting,
            applied by whoever configures the camera).
        width: sensor width of the simulated camera.
        height: sensor height of the simulated camera.
        seed: seed of the simulated scene and noise.

    Raises:
        RigError: an unknown camera or shutter type.
    """

    camera: str = "sim"
    shutter: str = "sim"
    cti: str = ""
    serial: str = ""
    index: int | None = None
    port: str = ""
    firmware: str = ""
    trigger_source: str = "Line1"
    width: int = 512
    height: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.camera not in CAMERA_TYPES:
            raise RigError(f"Unknown camera type {self.camera!r}; use one of {CAMERA_TYPES}.")
        if self.shutter not in SHUTTER_TYPES:
            raise RigError(f"Unknown shutter type {self.shutter!r}; use one of {SHUTTER_TYPES}.")

    def override(self, **given: Any) -> DeviceSpec:
        """This spec with the values that were given (``None``: not given, this spec's stays).

        >>> DeviceSpec(camera="genicam", shutter="arduino").override(port="COM3", serial=None).port
        'COM3'
        """
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class RigConfig:
    """Everything a rig file holds: the devices, the code, camera settings, capture folder.

    Attributes:
        devices: the camera and shutter controller.
        bits: the code as ``0``/``1`` text or a known code's name (:data:`DEFAULT_CODE`).
        chip_us: chip duration in microseconds.
        camera_settings: exposure mode and time, gain, pixel format and ROI.
        folder: folder of the capture files.
        name: name part of the capture file names.
    """

    devices: DeviceSpec = field(default_factory=DeviceSpec)
    bits: str = DEFAULT_CODE
    chip_us: float = 1000.0
    camera_settings: CameraSettings = field(default_factory=CameraSettings)
    folder: str = "captures"
    name: str = "capture"

    def override(self, **given: Any) -> RigConfig:
        """This config with the values that were given (``None``: not given, this one's stays)."""
        return dataclasses.replace(self, **{k: v for k, v in given.items() if v is not None})

    def to_toml(self) -> str:
        """The rig file's text (the inverse of :func:`parse_config`)."""
        import tomli_w

        data: dict[str, dict[str, Any]] = {}
        for table, keys in TABLES.items():
            out = data.setdefault(table, {})
            for key, (where, _kind) in keys.items():
                value, default = _get(self, where), _get(RigConfig(), where)
                if value in ("", None) and value == default:
                    continue  # an unset option (cti, serial, index, port, firmware)
                if isinstance(value, Roi):
                    value = [value.offset_x, value.offset_y, value.width, value.height]
                out[key] = value
        return tomli_w.dumps(data)


_TEXT, _WHOLE, _NUMBER, _ROI = "text", "a whole number", "a number", "[x, y, width, height]"
#: The rig file's tables: TOML key -> (where the value goes in a :class:`RigConfig`, what it
#: must be). The reader and the writer both follow this table.
TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "camera": {"type": ("devices.camera", _TEXT), "cti": ("devices.cti", _TEXT),
               "serial": ("devices.serial", _TEXT), "index": ("devices.index", _WHOLE),
               "trigger_source": ("devices.trigger_source", _TEXT)},
    "shutter": {"type": ("devices.shutter", _TEXT), "port": ("devices.port", _TEXT),
                "firmware": ("devices.firmware", _TEXT)},
    "code": {"bits": ("bits", _TEXT), "chip_us": ("chip_us", _NUMBER)},
    "camera_settings": {
        "exposure_mode": ("camera_settings.exposure_mode", _TEXT),
        "exposure_us": ("camera_settings.exposure_us", _NUMBER),
        "gain_db": ("camera_settings.gain_db", _NUMBER),
        "pixel_format": ("camera_settings.pixel_format", _TEXT),
        "roi": ("camera_settings.roi", _ROI),
    },
    "capture": {"folder": ("folder", _TEXT), "name": ("name", _TEXT)},
    "sim": {"width": ("devices.width", _WHOLE), "height": ("devices.height", _WHOLE),
            "seed": ("devices.seed", _WHOLE)},
}  # fmt: skip


def _get(config: RigConfig, where: str) -> Any:
    obj: Any = config
    for part in where.split("."):
        obj = getattr(obj, part)
    return obj


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _typed(value: Any, kind: str) -> Any:
    """``value`` as ``kind``; ``None`` when it is not one."""
    if kind == _TEXT:
        # a serial number written without quotes is still its text
        whole = isinstance(value, int) and not isinstance(value, bool)
        return value if isinstance(value, str) else str(value) if whole else None
    if kind == _WHOLE:
        return _whole(value)
    if kind == _NUMBER:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None
    parts = [_whole(v) for v in value] if isinstance(value, list) and len(value) == 4 else None
    return Roi(*parts) if parts is not None and None not in parts and min(parts) >= 0 else None


def parse_config(data: dict[str, Any], source: str | Path = "<rig file>") -> RigConfig:
    """A config from the parsed tables of a rig file; missing tables and keys keep defaults.

    Args:
        data: what ``tomllib`` read.
        source: the file, named in every error.

    Raises:
        RigError: an unknown table or key, or a bad value; the sentence names the file, the table
            and the key.
    """
    values: dict[str, dict[str, Any]] = {"": {}, "devices": {}, "camera_settings": {}}
    for table, content in data.items():
        if table not in TABLES:
            raise RigError(f"{source}: unknown table [{table}]; known: {sorted(TABLES)}.")
        if not isinstance(content, dict):
            raise RigError(f"{source}: [{table}] must be a table of settings.")
        unknown = sorted(set(content) - set(TABLES[table]))
        if unknown:
            raise RigError(f"{source}: unknown key(s) {unknown} in [{table}]; known: "
                           f"{sorted(TABLES[table])}.")  # fmt: skip
        for key, raw in content.items():
            where, kind = TABLES[table][key]
            value = _typed(raw, kind)
            if value is None:
                raise RigError(f"{source}: [{table}] {key} must be {kind}, got {raw!r}.")
            group, _, name = where.rpartition(".")
            values[group][name] = value
    try:
        devices = DeviceSpec(**values["devices"])
    except RigError as e:
        raise RigError(f"{source}: {e}") from e
    try:
        camera = CameraSettings().replace(**values["camera_settings"])
    except ValueError as e:
        raise RigError(f"{source}: [camera_settings] {e}") from e
    return RigConfig(devices=devices, camera_settings=camera, **values[""])


def load_config(path: str | Path) -> RigConfig:
    """Read a rig file (TOML).

    Raises:
        RigError: an unreadable file or TOML syntax, an unknown table or key, or a bad value (the
            sentence names the file and the key).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RigError(f"Could not read the rig file {path}: {e}") from e
    return parse_config(data, path)


def save_config(config: RigConfig, path: str | Path) -> Path:
    """Write ``config`` as a rig file, atomically (a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(config.to_toml(), encoding="utf-8")
    tmp.replace(path)
    return path


@contextlib.contextmanager
def open_devices(
    spec: DeviceSpec, make: DeviceFactory | None = None
) -> Iterator[tuple[Camera, Shutter]]:
    """The camera and shutter controller of ``spec``, open; closed when the block ends.

    The camera is opened first, then the shutter. If a step fails (making the devices, opening
    either of them), what was already opened or started (the camera, a simulated AVR) is closed
    again before the error propagates.

    Args:
        spec: which devices.
        make: makes the (unopened) devices instead of ``spec``'s choice (a simulated bench, a
            test's rig); it may put what must outlive it on the stack it is given.

    Yields:
        ``(camera, shutter)``, both open.

    Raises:
        RigError: a combination of devices that cannot work, or a device that fails to open.

    Example::

        with open_devices(DeviceSpec(width=64, height=64)) as (camera, shutter):
            camera.apply_settings(camera.settings.replace(gain_db=1.0))
    """
    with contextlib.ExitStack() as stack:
        if make is None:
            from blurvid_rig import devices

            choices = dataclasses.asdict(spec)
            del choices["trigger_source"]  # a camera setting, applied when configuring
            camera, shutter = devices.make_devices(stack, **choices)
        else:
            camera, shutter = make(stack)
        stack.enter_context(camera)
        stack.enter_context(shutter)
        yield camera, shutter
