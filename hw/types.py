"""Frozen, validated value types shared by every device driver.

Names carry units (``exposure_us``, ``chip_us``, ``timestamp_ns``). Every setting is recorded in
every capture file, so these types are plain data that converts to and from ``dict`` without
loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.codes import CHIP_US_MAX, CHIP_US_MIN, CodeValidationError, code_sha256, parse_code
from hw import shutter_protocol as sp
from hw.errors import CodeError


def _code_bits(bits: str | Iterable[int]) -> tuple[int, ...]:
    """The chips of a code, checked by :func:`common.codes.parse_code` (its errors as
    :class:`~hw.errors.CodeError`)."""
    try:
        chips = parse_code(bits if isinstance(bits, str | np.ndarray) else list(bits))
    except CodeValidationError as e:
        raise CodeError(str(e)) from e
    return tuple(chips.tolist())


def check_dmd_masks(masks: Any, dmd_shape: tuple[int, int], max_patterns: int) -> np.ndarray:
    """``masks`` as a bool ``(K, rows, columns)`` stack for a DMD of ``dmd_shape``.

    Raises:
        ValueError: wrong shape or not binary.
        UnsupportedFeatureError: more than ``max_patterns`` patterns.
    """
    from hw.errors import UnsupportedFeatureError

    m = np.asarray(masks)
    if m.ndim != 3 or tuple(m.shape[1:]) != tuple(dmd_shape):
        raise ValueError(
            f"Masks must be (K, {dmd_shape[0]}, {dmd_shape[1]}) for this DMD; got {m.shape}."
        )
    if m.dtype != bool and not np.all((m == 0) | (m == 1)):
        raise ValueError("DMD masks are binary (mirror on or off); got other values.")
    if m.shape[0] > max_patterns:
        raise UnsupportedFeatureError(
            f"The DMD holds at most {max_patterns} 1-bit patterns; {m.shape[0]} were given."
        )
    return m.astype(bool)


def masks_sha256(masks: Any) -> str:
    """Hash of a DMD mask stack (its shape and bits), recorded like a code's hash."""
    m = np.ascontiguousarray(np.asarray(masks, dtype=bool))
    h = hashlib.sha256(np.asarray(m.shape, np.int64).tobytes())
    h.update(np.packbits(m).tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ShutterCode:
    """A binary exposure code played chip by chip by a shutter controller.

    Args:
        bits: chip states, 1 = open, 0 = closed (a '0'/'1' string or a sequence of ints).
        chip_us: duration of one chip in microseconds.
        name: optional human name (e.g. ``"raskar52"``).

    Raises:
        CodeError: empty or too long code, no open chip, characters other than 0/1, chip duration
            out of range.
    """

    bits: tuple[int, ...]
    chip_us: float
    name: str = ""

    def __post_init__(self) -> None:
        bits = _code_bits(self.bits)
        chip_us = float(self.chip_us)
        if not np.isfinite(chip_us) or not CHIP_US_MIN <= chip_us <= CHIP_US_MAX:
            raise CodeError(
                f"Chip duration {self.chip_us!r} us is outside {CHIP_US_MIN:g}..{CHIP_US_MAX:g} us."
            )
        object.__setattr__(self, "bits", bits)
        object.__setattr__(self, "chip_us", chip_us)

    @classmethod
    def parse(cls, text: str, chip_us: float, name: str = "") -> ShutterCode:
        """Build a code from a '0'/'1' string."""
        return cls(_code_bits(text), chip_us, name)

    @property
    def n_chips(self) -> int:
        return len(self.bits)

    @property
    def n_open(self) -> int:
        return sum(self.bits)

    @property
    def light_fraction(self) -> float:
        return self.n_open / self.n_chips

    @property
    def period_us(self) -> float:
        """Duration of the whole code (all chips)."""
        return self.n_chips * self.chip_us

    @property
    def sha256(self) -> str:
        return code_sha256(self.bits)

    def as_string(self) -> str:
        return "".join(str(b) for b in self.bits)

    def as_array(self) -> np.ndarray:
        return np.asarray(self.bits, dtype=np.uint8)

    def __str__(self) -> str:
        label = f"{self.name} " if self.name else ""
        return f"{label}{self.as_string()} @ {self.chip_us:g} us/chip"


PIXEL_FORMAT_BITS = {"Mono8": 8, "Mono10": 10, "Mono12": 12, "Mono16": 16}
TRIGGER_MODES = ("Off", "On")
TRIGGER_SOURCES = ("Software", "Line1")
EXPOSURE_MODES = ("Timed", "TriggerWidth")


@dataclass(frozen=True)
class Roi:
    """Region of interest on the sensor, in pixels."""

    offset_x: int = 0
    offset_y: int = 0
    width: int = 0
    height: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if int(v) != v or v < 0:
                raise ValueError(f"ROI {f.name} must be a non-negative integer, got {v!r}.")
            object.__setattr__(self, f.name, int(v))


@dataclass(frozen=True)
class CameraSettings:
    """Settings of a camera, validated here and by the device (which may narrow them).

    ``roi`` with zero width/height means "the full sensor". ``trigger_mode='On'`` with
    ``trigger_source='Line1'`` is how a coded capture runs: the shutter controller triggers the
    camera.
    """

    exposure_us: float = 10_000.0
    gain_db: float = 0.0
    pixel_format: str = "Mono12"
    roi: Roi = field(default_factory=Roi)
    trigger_mode: str = "Off"
    trigger_source: str = "Software"
    exposure_mode: str = "Timed"
    frame_rate_hz: float = 30.0
    black_level_dn: float = 0.0

    def __post_init__(self) -> None:
        if not np.isfinite(self.exposure_us) or self.exposure_us <= 0:
            raise ValueError(
                f"exposure_us must be a positive number of microseconds, got {self.exposure_us!r}."
            )
        if not np.isfinite(self.gain_db) or self.gain_db < 0:
            raise ValueError(f"gain_db must be >= 0 dB, got {self.gain_db!r}.")
        if self.pixel_format not in PIXEL_FORMAT_BITS:
            raise ValueError(
                f"pixel_format {self.pixel_format!r} is not one of {sorted(PIXEL_FORMAT_BITS)}."
            )
        if self.trigger_mode not in TRIGGER_MODES:
            raise ValueError(f"trigger_mode {self.trigger_mode!r} is not one of {TRIGGER_MODES}.")
        if self.trigger_source not in TRIGGER_SOURCES:
            raise ValueError(
                f"trigger_source {self.trigger_source!r} is not one of {TRIGGER_SOURCES}."
            )
        if self.exposure_mode not in EXPOSURE_MODES:
            raise ValueError(
                f"exposure_mode {self.exposure_mode!r} is not one of {EXPOSURE_MODES}."
            )
        if not np.isfinite(self.frame_rate_hz) or self.frame_rate_hz <= 0:
            raise ValueError(f"frame_rate_hz must be positive, got {self.frame_rate_hz!r}.")
        if isinstance(self.roi, Mapping):
            object.__setattr__(self, "roi", Roi(**self.roi))

    @property
    def bit_depth(self) -> int:
        return PIXEL_FORMAT_BITS[self.pixel_format]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth == 8 else np.uint16)

    @property
    def saturation_dn(self) -> int:
        return 2**self.bit_depth - 1

    def replace(self, **changes: Any) -> CameraSettings:
        return dataclasses.replace(self, **changes)

    @property
    def calibration_black_level_dn(self) -> float:
        """The black level a calibration (and a simulated camera) wants: 64 DN, at most 1/16 of
        the range, so the dark noise stays above 0 DN (a real sensor's offset).

        >>> CameraSettings().calibration_black_level_dn
        64.0
        >>> CameraSettings(pixel_format="Mono8").calibration_black_level_dn
        15.0
        """
        return min(64.0, float(self.saturation_dn // 16))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CameraSettings:
        d = dict(d)
        if "roi" in d and isinstance(d["roi"], Mapping):
            d["roi"] = Roi(**d["roi"])
        return cls(**d)


@dataclass(frozen=True)
class CameraInfo:
    """Identity and sensor geometry of a camera."""

    vendor: str
    model: str
    serial_number: str
    sensor_width: int
    sensor_height: int
    pixel_size_um: float
    driver: str  # "genicam" | "simulated"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ShutterInfo:
    """Identity of a shutter controller."""

    controller: str  # "arduino" | "dmd" | "simulated"
    port: str
    firmware_version: str
    chip_us_min: float
    chip_us_max: float
    max_chips: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ShutterStatus:
    """What the shutter controller reports about itself.

    ``code_sha256`` and ``chip_us`` are the controller's own echo of what it holds; the driver
    compares them to what it sent (round-trip verification).
    """

    state: str  # "idle" | "loaded" | "armed" | "playing"
    code_sha256: str
    n_chips: int
    chip_us: float
    trigger_count: int
    echo_verified: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, eq=False)
class Frame:
    """One image from a camera, with its provenance.

    The image is an owned array (never a view into a driver buffer).
    """

    image: np.ndarray
    frame_id: int
    camera_timestamp_ns: int
    host_time_ns: int
    trigger_index: int = -1  # controller trigger counter, -1 when free-running
    code_sha256: str = ""  # code played for this frame, "" when none
    exposure_us: float = 0.0


# -- shutter playback ------------------------------------------------------------------------------
# hw.shutter_protocol (standard library and hw.errors only) must never import this module.

_PLAYBACK_MODES = {
    "single": sp.PlaybackMode.SINGLE,
    "repeat": sp.PlaybackMode.REPEAT,
    "continuous": sp.PlaybackMode.CONTINUOUS,
}
_TRIGGER_STYLES = {"level": sp.TriggerStyle.LEVEL, "pulse": sp.TriggerStyle.PULSE}
_START_SOURCES = {"host": sp.StartSource.HOST, "external": sp.StartSource.EXTERNAL}


def _ns(us: float) -> int:
    return int(round(float(us) * 1000.0))


@dataclass(frozen=True)
class PlaybackConfig:
    """How the controller plays the loaded code (sent as CONFIGURE at every ``arm()``).

    Args:
        mode: ``"single"`` (one playback per trigger), ``"repeat"`` (``repeats`` playbacks per
            trigger) or ``"continuous"`` (until disarmed).
        repeats: playbacks per trigger in ``"repeat"`` mode, 1..65535.
        period_us: start-to-start time of playbacks in ``"repeat"``/``"continuous"`` mode; 0 means
            the shortest (lead + code + 20 us).
        lead_us: from the camera trigger's rising edge to chip 0, 10..32767.5 us.
        trigger_style: ``"level"`` (camera trigger high from the lead to the last chip, for
            TriggerWidth exposure) or ``"pulse"`` (high for ``pulse_us``, for Timed exposure).
        pulse_us: trigger pulse width in ``"pulse"`` style, 10 us..``lead_us``; a pulse
            shorter than the lead must leave at least 10 us of lead after it.
        start_source: ``"host"`` (``fire()``) or ``"external"`` (rising edge on TRIG_IN).
        dmd_pulse: pulse the DMD trigger line at the start of every chip.

    Raises:
        ValueError: a field out of range (the sentence names it).

    Example:
        >>> cfg = PlaybackConfig(mode="repeat", repeats=3, period_us=20000)
        >>> cfg.playbacks_per_trigger, len(cfg.to_body())
        (3, 18)
    """

    mode: str = "single"
    repeats: int = 1
    period_us: float = 0.0
    lead_us: float = 100.0
    trigger_style: str = "level"
    pulse_us: float = 10.0
    start_source: str = "host"
    dmd_pulse: bool = True

    def __post_init__(self) -> None:
        for name, table in (
            ("mode", _PLAYBACK_MODES),
            ("trigger_style", _TRIGGER_STYLES),
            ("start_source", _START_SOURCES),
        ):
            if getattr(self, name) not in table:
                raise ValueError(f"{name} {getattr(self, name)!r} is not one of {sorted(table)}.")
        for name in ("period_us", "lead_us", "pulse_us"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of us, got {value!r}.")
        if not sp.LEAD_NS_MIN <= _ns(self.lead_us) <= sp.LEAD_NS_MAX:
            raise ValueError(
                f"lead_us must be {sp.LEAD_NS_MIN / 1000:g}..{sp.LEAD_NS_MAX / 1000:g} us, "
                f"got {self.lead_us!r}."
            )
        if self.trigger_style == "pulse" and not (
            sp.PULSE_NS_MIN <= _ns(self.pulse_us) <= _ns(self.lead_us)
        ):
            raise ValueError(
                f"pulse_us must be {sp.PULSE_NS_MIN / 1000:g} us..lead_us ({self.lead_us:g} us) "
                f"in pulse style, got {self.pulse_us!r}."
            )
        if self.period_us < 0:
            raise ValueError(f"period_us must be >= 0 (0 = shortest), got {self.period_us!r}.")
        self.to_body()  # the wire ranges (repeats, period, pulse)

    def to_body(self) -> bytes:
        """The CONFIGURE body (18 bytes)."""
        return sp.configure_body(
            mode=_PLAYBACK_MODES[self.mode],
            repeats=self.repeats,
            period_ns=_ns(self.period_us),
            lead_ns=_ns(self.lead_us),
            trigger_style=_TRIGGER_STYLES[self.trigger_style],
            pulse_ns=_ns(self.pulse_us),
            start_source=_START_SOURCES[self.start_source],
            flags=sp.FLAG_DMD_PULSE if self.dmd_pulse else 0,
        )

    @property
    def playbacks_per_trigger(self) -> int:
        """1 (single), ``repeats`` (repeat) or 0 (continuous)."""
        return {"single": 1, "repeat": self.repeats, "continuous": 0}[self.mode]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
