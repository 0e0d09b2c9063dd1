"""Rig profiles: which devices, which code, which camera settings, where captures go, as TOML.

A profile is a superset of the command line's ``--rig`` file: its ``[camera]`` and ``[shutter]``
tables are the same (``blurvid-rig capture --rig profile.toml`` reads them and ignores the rest).
The other tables hold the code, the camera settings and the capture folder, so the rig window can
come back to where the user left it. :func:`profile_from_capture` rebuilds a profile from the
metadata of any capture file (the code and the camera settings it was recorded with).

Example file::

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hw.errors import RigError
from hw.types import CameraSettings, Roi

CAMERA_TYPES = ("sim", "genicam")
SHUTTER_TYPES = ("sim", "arduino", "simavr", "dmd")


@dataclass
class Devices:
    """Which camera and shutter controller, and how to reach them."""

    camera: str = "sim"
    shutter: str = "sim"
    cti: str = ""
    serial: str = ""
    index: int | None = None
    port: str = ""
    firmware: str = ""
    trigger_source: str = "Line1"
    width: int = 512  # simulated camera
    height: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.camera not in CAMERA_TYPES:
            raise RigError(f"Unknown camera type {self.camera!r}; use one of {CAMERA_TYPES}.")
        if self.shutter not in SHUTTER_TYPES:
            raise RigError(f"Unknown shutter type {self.shutter!r}; use one of {SHUTTER_TYPES}.")

    def open(self, stack: contextlib.ExitStack) -> tuple[Any, Any]:
        """The (unopened) camera and shutter; a simavr board lives as long as ``stack``.

        Raises:
            RigError: a combination that cannot work (the sentence says what to choose).
        """
        from blurvid_rig.devices import make_devices

        return make_devices(
            stack,
            camera=self.camera,
            shutter=self.shutter,
            cti=self.cti,
            serial=self.serial,
            index=self.index,
            port=self.port,
            firmware=self.firmware,
            width=self.width,
            height=self.height,
            seed=self.seed,
        )


@dataclass
class RigProfile:
    """Everything the rig window restores from a profile."""

    devices: Devices = field(default_factory=Devices)
    bits: str = "11100101"
    chip_us: float = 1000.0
    camera: CameraSettings = field(default_factory=CameraSettings)
    folder: str = "captures"
    name: str = "capture"

    def to_toml(self) -> str:
        import tomli_w

        d, c = self.devices, self.camera
        cam: dict[str, Any] = {"type": d.camera, "trigger_source": d.trigger_source}
        for k in ("cti", "serial"):
            if getattr(d, k):
                cam[k] = getattr(d, k)
        if d.index is not None:
            cam["index"] = d.index
        sh: dict[str, Any] = {"type": d.shutter}
        for k in ("port", "firmware"):
            if getattr(d, k):
                sh[k] = getattr(d, k)
        data = {
            "camera": cam,
            "shutter": sh,
            "code": {"bits": self.bits, "chip_us": float(self.chip_us)},
            "camera_settings": {
                "exposure_mode": c.exposure_mode,
                "exposure_us": float(c.exposure_us),
                "gain_db": float(c.gain_db),
                "pixel_format": c.pixel_format,
                "roi": [c.roi.offset_x, c.roi.offset_y, c.roi.width, c.roi.height],
            },
            "capture": {"folder": self.folder, "name": self.name},
            "sim": {"width": d.width, "height": d.height, "seed": d.seed},
        }
        return tomli_w.dumps(data)


_KNOWN = {
    "camera": {"type", "cti", "serial", "index", "trigger_source"},
    "shutter": {"type", "port", "firmware"},
    "code": {"bits", "chip_us"},
    "camera_settings": {"exposure_mode", "exposure_us", "gain_db", "pixel_format", "roi"},
    "capture": {"folder", "name"},
    "sim": {"width", "height", "seed"},
}


def save_profile(profile: RigProfile, path: str | Path) -> Path:
    """Write ``profile`` as TOML (atomically: a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(profile.to_toml(), encoding="utf-8")
    tmp.replace(path)
    return path


def load_profile(path: str | Path) -> RigProfile:
    """Read a profile; missing tables keep their defaults.

    Raises:
        RigError: unreadable file, unknown table or key, or a bad value (the sentence names it).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RigError(f"Could not read the rig profile {path}: {e}") from e
    for section, table in data.items():
        if section not in _KNOWN or not isinstance(table, dict):
            raise RigError(f"{path}: unknown table [{section}]; known: {sorted(_KNOWN)}.")
        unknown = sorted(set(table) - _KNOWN[section])
        if unknown:
            raise RigError(f"{path}: unknown key(s) {unknown} in [{section}]; known: "
                           f"{sorted(_KNOWN[section])}.")  # fmt: skip
    cam, sh = data.get("camera", {}), data.get("shutter", {})
    sim, cs = data.get("sim", {}), data.get("camera_settings", {})
    code, cap = data.get("code", {}), data.get("capture", {})
    try:
        devices = Devices(
            camera=cam.get("type", "sim"), shutter=sh.get("type", "sim"), cti=cam.get("cti", ""),
            serial=str(cam.get("serial", "")), index=cam.get("index"), port=sh.get("port", ""),
            firmware=sh.get("firmware", ""), trigger_source=cam.get("trigger_source", "Line1"),
            width=int(sim.get("width", 512)), height=int(sim.get("height", 512)),
            seed=int(sim.get("seed", 0)),
        )  # fmt: skip
        roi = cs.get("roi", [0, 0, 0, 0])
        if not (isinstance(roi, list) and len(roi) == 4):
            raise ValueError(f"roi must be [x, y, width, height], got {roi!r}")
        base = CameraSettings()
        camera = base.replace(
            exposure_mode=cs.get("exposure_mode", base.exposure_mode),
            exposure_us=float(cs.get("exposure_us", base.exposure_us)),
            gain_db=float(cs.get("gain_db", base.gain_db)),
            pixel_format=cs.get("pixel_format", base.pixel_format),
            roi=Roi(*(int(v) for v in roi)),
        )
        camera = CameraSettings(**dataclasses.asdict(camera))  # validate
        profile = RigProfile(devices=devices, bits=str(code.get("bits", "11100101")),
                             chip_us=float(code.get("chip_us", 1000.0)), camera=camera,
                             folder=str(cap.get("folder", "captures")),
                             name=str(cap.get("name", "capture")))  # fmt: skip
    except (TypeError, ValueError) as e:
        raise RigError(f"{path}: {e}") from e
    return profile


def profile_from_capture(path: str | Path, base: RigProfile | None = None) -> RigProfile:
    """``base`` (default: a fresh profile) with the code and camera settings a capture file was
    recorded with; its devices and folder are kept."""
    from blurvid_rig.files.capture import CaptureFile

    base = base if base is not None else RigProfile()
    with CaptureFile.open(path) as f:
        code, cam = f.code, f.camera_settings
    return dataclasses.replace(base, bits=code.as_string(), chip_us=code.chip_us, camera=cam)
