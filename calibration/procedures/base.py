"""What every calibration procedure shares: the rig, progress, the runner and the frame session.

A procedure is a generator function: iterate it (or hand it to :func:`run`) and it yields
:class:`Progress` while it works and returns its result (``StopIteration.value``); closing it
(``gen.close()``, which :func:`run` does on cancel) stops it between frames, and a
:class:`FrameSession` puts the camera and shutter back as they were.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from calibration.bench import Bench
from calibration.model import DarkResult
from hw.base import Camera, Shutter
from hw.errors import RigError
from hw.types import CameraSettings, ShutterCode

T = TypeVar("T")


class CalibrationFailed(RigError):
    """A procedure could not produce a result; the message says what to change on the bench."""


class Cancelled(RigError):
    """The user cancelled a procedure."""


@dataclass
class Progress:
    """How far a procedure is (``fraction`` 0..1) and what it is doing."""

    fraction: float
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Procedure = Generator[Progress, None, T]


def run(
    proc: Procedure[T],
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> T:
    """Drive a procedure to its result, reporting progress; raises :class:`Cancelled` when
    ``cancel`` is set (the procedure is closed, so devices are restored)."""
    try:
        while True:
            if cancel is not None and cancel.is_set():
                proc.close()
                raise Cancelled("Calibration cancelled; nothing was saved from this step.")
            try:
                p = next(proc)
            except StopIteration as stop:
                return stop.value
            if on_progress is not None:
                on_progress(p)
    finally:
        proc.close()


# ============================================================================================
# Taking frames
# ============================================================================================


@dataclass
class Rig:
    """The devices a calibration drives (opened by the caller) and the bench."""

    camera: Camera
    shutter: Shutter
    bench: Bench
    #: camera settings the calibration is made for (gain, ROI, pixel format); exposures vary
    base: CameraSettings | None = None
    #: how long to wait for a frame beyond its exposure
    fetch_timeout_s: float = 5.0


class FrameSession:
    """Takes frames with given exposure and code; puts camera and shutter back on exit (the
    procedures' one way to the devices)."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.cam, self.sh = rig.camera, rig.shutter
        self._saved_settings = self.cam.settings
        self._saved_code = self.sh.code
        self._saved_armed = self.sh.is_armed
        self.base = rig.base or self._saved_settings
        self._exposure: float | None = None
        self._code: ShutterCode | None = None
        self.frame_shape: tuple[int, ...] | None = None  # of the last frame grabbed
        self._darks: dict[float, np.ndarray | float] = {}
        info = self.sh.info
        self.chip_min, self.chip_max, self.max_chips = (
            info.chip_us_min, info.chip_us_max, info.max_chips
        )

    def __enter__(self) -> FrameSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        try:
            self.cam.stop()
            self.sh.disarm()
            self.cam.apply_settings(self._saved_settings)
            if self._saved_code is not None:
                self.sh.load_code(self._saved_code)
                if self._saved_armed:
                    self.sh.arm()
        except RigError:  # the caller sees the original error; restoring is best effort
            pass

    @property
    def saturation_dn(self) -> float:
        return float(self.base.saturation_dn)

    def settings(self, exposure_us: float) -> CameraSettings:
        return self.base.replace(
            trigger_mode="On", trigger_source="Line1", exposure_mode="Timed",
            exposure_us=float(exposure_us),
        )

    def open_code(self, window_us: float) -> ShutterCode:
        """An all-open code lasting at least ``window_us`` plus 1 ms (the shutter settles)."""
        need = window_us + 1000.0
        n = max(1, math.ceil(need / self.chip_max))
        chip = max(self.chip_min, math.ceil(need / n))
        if n > self.max_chips:
            raise CalibrationFailed(
                f"An exposure of {window_us:g} us is longer than the shutter controller can hold "
                "open; use shorter exposures."
            )
        return ShutterCode((1,) * n, float(chip), name="calibration-open")

    def set(self, exposure_us: float, code: ShutterCode | None = None) -> None:
        code = code or self.open_code(exposure_us)
        if exposure_us == self._exposure and code == self._code:
            return
        self.cam.stop()
        if code != self._code:
            self.sh.disarm()
            self.sh.load_code(code)
            self.sh.arm()
            self._code = code
        if exposure_us != self._exposure:
            held = self.cam.apply_settings(self.settings(exposure_us))
            self._exposure = float(held.exposure_us)
        self.cam.start()

    def adopt_loaded(self, exposure_us: float) -> None:
        """Expose with whatever the shutter holds now (a DMD showing a projected pattern)."""
        self.cam.stop()
        self.sh.arm()
        self._code = self.sh.code
        if exposure_us != self._exposure:
            held = self.cam.apply_settings(self.settings(exposure_us))
            self._exposure = float(held.exposure_us)
        self.cam.start()

    def grab(self) -> np.ndarray:
        self.sh.fire()
        timeout = self.rig.fetch_timeout_s + 2 * (self._exposure or 0.0) * 1e-6
        image = self.cam.fetch(timeout_s=timeout).image.astype(np.float32)
        self.frame_shape = image.shape
        return image

    def dark(self, dark: DarkResult | None, exposure_us: float) -> np.ndarray | float:
        """The dark signal to subtract from the frames just grabbed at ``exposure_us``: the
        measured dark frame when it fits them, else the black level (once per exposure)."""
        if exposure_us not in self._darks:
            fits = dark is not None and dark.frames.shape[1:] == self.frame_shape
            self._darks[exposure_us] = (
                dark.at(exposure_us) if fits else float(self.base.black_level_dn))
        return self._darks[exposure_us]


def camera_temperature_c(camera: Camera) -> float | None:
    """The camera's ``DeviceTemperature`` node when it has one (recorded with a calibration)."""
    try:
        t = camera.node_map_snapshot().get("DeviceTemperature")
    except RigError:
        return None
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def robust_sigma(x: np.ndarray) -> float:
    """The standard deviation of Gaussian noise with the same median absolute deviation."""
    med = np.median(x)
    return float(1.4826 * np.median(np.abs(x - med)))

