"""Our :class:`~hw.types.CameraSettings` on the SFNC features of one GenICam device.

The settings half of :class:`~hw.genicam_camera.GenICamCamera` (see its module doc for the rules):
:func:`apply_settings` checks what can be checked without writing, writes in SFNC order and reads
back, reporting what happened to each setting; :func:`read_settings` reads the device's state.
Both work on a :class:`~hw.genicam_support.NodeAccess` and raise the GenICam libraries' errors
unchanged (the camera turns them into ours).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hw.errors import UnsupportedFeatureError
from hw.genicam_support import (
    ABSENT,
    ADJUSTED,
    APPLIED,
    NOT_APPLIED,
    FeatureStatus,
    NodeAccess,
    snap,
)
from hw.types import EXPOSURE_MODES, TRIGGER_SOURCES, CameraSettings, Roi

__all__ = ["MONO_DTYPES", "apply_settings", "read_settings", "resolve_roi", "select_frame_start"]

#: Pixel format -> numpy dtype of the frames.
MONO_DTYPES: dict[str, type[np.unsignedinteger]] = {
    "Mono8": np.uint8,
    "Mono10": np.uint16,
    "Mono12": np.uint16,
    "Mono16": np.uint16,
}


def select_frame_start(f: NodeAccess) -> None:
    """Point TriggerSelector at FrameStart, so the trigger features read are the frame's."""
    if f.readable("TriggerSelector") and f.get("TriggerSelector") != "FrameStart":
        if f.writable("TriggerSelector") and "FrameStart" in f.entries("TriggerSelector"):
            f.set("TriggerSelector", "FrameStart", "trigger_mode")


def read_settings(f: NodeAccess, nominal: CameraSettings) -> CameraSettings:
    """The device's current state as CameraSettings; ``nominal`` fills what it lacks."""

    def val(name: str, default: Any, ok: Any = lambda v: True) -> Any:
        if f.readable(name):
            v = f.get(name)
            if ok(v):
                return v
        return default

    select_frame_start(f)
    n = nominal
    roi = Roi(
        val("OffsetX", 0), val("OffsetY", 0), val("Width", n.roi.width),
        val("Height", n.roi.height),
    )  # fmt: skip
    return n.replace(
        pixel_format=val("PixelFormat", n.pixel_format, lambda v: v in MONO_DTYPES),
        roi=roi,
        trigger_mode=val("TriggerMode", "Off", lambda v: v in ("Off", "On")),
        trigger_source=val("TriggerSource", n.trigger_source, lambda v: v in TRIGGER_SOURCES),
        exposure_mode=val("ExposureMode", "Timed", lambda v: v in EXPOSURE_MODES),
        exposure_us=float(val("ExposureTime", n.exposure_us, lambda v: v > 0)),
        gain_db=float(val("Gain", n.gain_db, lambda v: v >= 0)),
        frame_rate_hz=float(val("AcquisitionFrameRate", n.frame_rate_hz, lambda v: v > 0)),
        black_level_dn=float(val("BlackLevel", n.black_level_dn, lambda v: v >= 0)),
    )


def resolve_roi(f: NodeAccess, roi: Roi, sensor: tuple[int, int], label: str) -> Roi:
    """``roi`` on the device's grid (width/height 0: up to the sensor edge), or
    UnsupportedFeatureError when it does not fit or the device cannot place it."""
    sw, sh = sensor
    if roi.offset_x >= sw or roi.offset_y >= sh:
        raise UnsupportedFeatureError(
            f"ROI offset ({roi.offset_x}, {roi.offset_y}) is outside the {sw}x{sh} sensor of "
            f"{label}; use a smaller offset."
        )
    w = roi.width or sw - roi.offset_x
    h = roi.height or sh - roi.offset_y
    if roi.offset_x + w > sw or roi.offset_y + h > sh:
        raise UnsupportedFeatureError(
            f"An ROI of {w}x{h} at ({roi.offset_x}, {roi.offset_y}) does not fit on the "
            f"{sw}x{sh} sensor of {label} (it would end at x={roi.offset_x + w}, "
            f"y={roi.offset_y + h}); reduce its size or offset."
        )
    out = {}
    for off_name, off, dim_name, dim, size in (
        ("OffsetX", roi.offset_x, "Width", w, sw),
        ("OffsetY", roi.offset_y, "Height", h, sh),
    ):
        if f.present(off_name):
            lo, _, inc = f.limits(off_name)
            off = snap(off, int(lo), size - 1, int(inc))
        elif off:
            raise UnsupportedFeatureError(
                f"{label} has no {off_name}, so the ROI cannot start at {off} px; use an "
                f"ROI offset of 0 (crop in software if needed)."
            )
        if f.present(dim_name):
            lo, _, inc = f.limits(dim_name)
            dim = snap(dim, int(lo), size - off, int(inc))
            if off + dim > size:
                raise UnsupportedFeatureError(
                    f"The ROI {dim_name} cannot be below {lo} px on {label}, which does "
                    f"not fit after an offset of {off} px on a {size} px sensor."
                )
        elif dim != size:
            raise UnsupportedFeatureError(
                f"{label} has no {dim_name}; the ROI must be the whole {size} px."
            )
        out[off_name], out[dim_name] = off, dim
    return Roi(out["OffsetX"], out["OffsetY"], out["Width"], out["Height"])


def apply_settings(
    f: NodeAccess, s: CameraSettings, *, sensor: tuple[int, int], label: str, strict: bool
) -> tuple[CameraSettings, list[FeatureStatus]]:
    """Check what can be checked without writing, write in SFNC order, read back.

    Args:
        f: the device's features.
        s: the settings asked for.
        sensor: ``(width, height)`` of the sensor in pixels.
        label: the device's name in messages.
        strict: raise for a setting the device has no feature for, instead of reporting it as
            not applied.

    Returns:
        The settings the device holds (the nominal value where one was not applied) and what
        happened to each setting, in CameraSettings' field order.

    Raises:
        UnsupportedFeatureError: a mode or value the device cannot do; nothing was written when
            a check fails.
    """
    run = _ApplyRun(f, s, label, strict)
    roi, free_rate = run.check(sensor)
    run.write(roi, free_rate)
    return run.read_back(sensor)


class _ApplyRun:
    """One :func:`apply_settings`: the report so far, the settings kept nominal, the writes."""

    def __init__(self, f: NodeAccess, s: CameraSettings, label: str, strict: bool) -> None:
        self.f, self.s, self.label, self.strict = f, s, label, strict
        self.on, self.timed = s.trigger_mode == "On", s.exposure_mode == "Timed"
        self.report: dict[str, FeatureStatus] = {}
        self.nominal: set[str] = set()
        self.written: dict[str, list[str]] = {}

    def nominal_only(self, setting: str, feature: str, note: str) -> None:
        value = getattr(self.s, setting)
        self.nominal.add(setting)
        self.report[setting] = FeatureStatus(setting, feature, NOT_APPLIED, value, value, note)

    def lacks(self, setting: str, feature: str, harmless: bool, note: str = "") -> None:
        value = getattr(self.s, setting)
        if harmless:
            self.report[setting] = FeatureStatus(setting, feature, ABSENT, value, value, note)
        elif self.strict:
            raise UnsupportedFeatureError(
                f"{self.label} has no {feature}, so {setting}={value!r} cannot be applied "
                "(strict=True)."
            )
        else:
            self.nominal_only(setting, feature, note or f"the device has no {feature}")

    # -- 1. checks: nothing is written if one fails -----------------------------------------------
    def check(self, sensor: tuple[int, int]) -> tuple[Roi, bool]:
        """Returns the ROI on the device's grid and whether the frame rate is written."""
        f, s, has = self.f, self.s, self.f.present
        if has("PixelFormat"):
            f.check_entry("PixelFormat", s.pixel_format, "pixel_format")
        else:
            self.lacks("pixel_format", "PixelFormat", False, "frames must arrive in this format")
        roi = resolve_roi(f, s.roi, sensor, self.label)
        self._check_trigger()
        if has("ExposureMode"):
            f.check_entry("ExposureMode", s.exposure_mode, "exposure_mode")
        elif not self.timed:
            raise UnsupportedFeatureError(
                f"{self.label} has no ExposureMode, so it cannot expose for the trigger width; "
                "use exposure_mode='Timed' with an exposure_us that covers the code."
            )
        else:
            self.lacks("exposure_mode", "ExposureMode", True, "the device's exposure is timed")
        for setting, feature, unit, harmless in (
            ("exposure_us", "ExposureTime", "us", None),
            ("gain_db", "Gain", "dB", 0.0),
            ("black_level_dn", "BlackLevel", "DN", 0.0),
        ):
            value = getattr(s, setting)
            if setting == "exposure_us" and not self.timed:
                self.nominal_only(setting, feature, "TriggerWidth: the trigger sets the exposure")
            elif has(feature):
                f.check_range(feature, value, setting, unit)
            else:
                self.lacks(setting, feature, value == harmless)
        limited = self.on and has("AcquisitionFrameRateEnable")
        free_rate = has("AcquisitionFrameRate") and not limited
        if free_rate:
            f.check_range("AcquisitionFrameRate", s.frame_rate_hz, "frame_rate_hz", "Hz")
        elif limited:
            self.nominal_only("frame_rate_hz", "AcquisitionFrameRate", "no limit while triggered")
        else:
            self.lacks("frame_rate_hz", "AcquisitionFrameRate", False)
        return roi, free_rate

    def _check_trigger(self) -> None:
        f, has = self.f, self.f.present
        if self.on:
            for name, value in (("TriggerMode", "On"), ("TriggerSource", self.s.trigger_source)):
                if not has(name):
                    raise UnsupportedFeatureError(
                        f"{self.label} has no {name}, so it cannot be triggered; use "
                        "trigger_mode='Off' (free run)."
                    )
                f.check_entry(name, value, "trigger_mode")
            if has("TriggerSelector"):
                f.check_entry("TriggerSelector", "FrameStart", "trigger_mode")
        elif not has("TriggerMode"):
            self.lacks("trigger_mode", "TriggerMode", True, "the device free runs only")
            self.lacks("trigger_source", "TriggerSource", True, "the device free runs only")

    # -- 2. writes, in SFNC order ------------------------------------------------------------------
    def put(self, name: str, value: Any, setting: str) -> None:
        self.f.set(name, value, setting)
        self.written.setdefault(setting, []).append(name)

    def select(self, name: str, entry: str, setting: str) -> None:
        if self.f.readable(name) and entry in self.f.entries(name):
            self.f.set(name, entry, setting)

    def write(self, roi: Roi, free_rate: bool) -> None:
        f, s, has, put, select = self.f, self.s, self.f.present, self.put, self.select
        for auto in ("ExposureAuto", "GainAuto", "BlackLevelAuto"):
            select(auto, "Off", auto)
        if has("PixelFormat"):
            put("PixelFormat", s.pixel_format, "pixel_format")
        for off in ("OffsetX", "OffsetY"):  # let Width and Height grow first
            if f.readable(off) and f.get(off) != 0:
                f.set(off, 0, "roi")
        for name in ("Width", "Height", "OffsetX", "OffsetY"):
            if has(name):
                put(name, {"Width": roi.width, "Height": roi.height, "OffsetX": roi.offset_x,
                           "OffsetY": roi.offset_y}[name], "roi")  # fmt: skip
        select("TriggerSelector", "FrameStart", "trigger_mode")
        if has("TriggerMode"):
            self._write_trigger()
        if has("ExposureMode"):
            put("ExposureMode", s.exposure_mode, "exposure_mode")
        if self.timed and has("ExposureTime"):
            put("ExposureTime", float(s.exposure_us), "exposure_us")
        if has("Gain"):
            select("GainSelector", "All", "gain_db")
            put("Gain", float(s.gain_db), "gain_db")
        if has("BlackLevel"):
            select("BlackLevelSelector", "All", "black_level_dn")
            put("BlackLevel", float(s.black_level_dn), "black_level_dn")
        if has("AcquisitionFrameRateEnable"):
            f.set("AcquisitionFrameRateEnable", not self.on, "frame_rate_hz")
        if free_rate:
            put("AcquisitionFrameRate", float(s.frame_rate_hz), "frame_rate_hz")

    def _write_trigger(self) -> None:
        f, s = self.f, self.s
        f.set("TriggerMode", "Off", "trigger_mode")  # some lock the source while on
        offered = f.entries("TriggerSource") if f.readable("TriggerSource") else ()
        if s.trigger_source in offered:
            self.put("TriggerSource", s.trigger_source, "trigger_source")
        else:
            self.nominal_only("trigger_source", "TriggerSource", "not offered; unused in free run")
        if self.on and s.trigger_source != "Software" and f.readable("TriggerActivation"):
            acts = f.entries("TriggerActivation")
            act = next((a for a in ("RisingEdge", "LevelHigh") if a in acts), None)
            if act is None:
                raise UnsupportedFeatureError(
                    f"{self.label} offers TriggerActivation {list(acts)}; the shutter "
                    "controller's trigger needs RisingEdge or LevelHigh."
                )
            self.put("TriggerActivation", act, "trigger_source")
        self.put("TriggerMode", s.trigger_mode, "trigger_mode")

    # -- 3. what the device holds now --------------------------------------------------------------
    def read_back(self, sensor: tuple[int, int]) -> tuple[CameraSettings, list[FeatureStatus]]:
        s = self.s
        held = read_settings(self.f, s).replace(**{k: getattr(s, k) for k in self.nominal})
        sw, sh = sensor
        r = s.roi  # width/height 0 = up to the sensor edge
        asked_roi = Roi(
            r.offset_x, r.offset_y, r.width or sw - r.offset_x, r.height or sh - r.offset_y
        )
        for setting, names in self.written.items():
            asked = asked_roi if setting == "roi" else getattr(s, setting)
            got = getattr(held, setting)
            same = (
                math.isclose(asked, got, rel_tol=1e-6, abs_tol=1e-9)
                if isinstance(asked, float)
                else asked == got
            )
            status, note = (APPLIED, "") if same else (ADJUSTED, "rounded by the device")
            self.report[setting] = FeatureStatus(setting, "/".join(names), status, asked, got, note)
        fields = CameraSettings.__dataclass_fields__
        return held, [self.report[k] for k in fields if k in self.report]
