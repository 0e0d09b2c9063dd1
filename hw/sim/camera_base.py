"""What the simulated cameras share (:class:`~hw.sim.camera.SimCamera` and
:class:`~hw.sim.replay.ReplayCamera`): limits and settings resolution, info, node map, Line1 trigger
stamping, the frame buffer and the wait of ``fetch``.

:class:`SimCameraBase` holds that common part; each camera adds how a frame is made (rendered or
replayed) through a few hooks: :meth:`~SimCameraBase._line1_frame`,
:meth:`~SimCameraBase._make_free_run_frames`, :meth:`~SimCameraBase._pop_ready` and
:meth:`~SimCameraBase._wait_s` (plus optional fault hooks, no-ops here). It is public so that the
two camera modules can subclass it; it is not a camera by itself (use one of the two).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, ClassVar, Protocol

from hw.base import Camera
from hw.errors import AcquisitionTimeout, IncompatibleStateError, UnsupportedFeatureError
from hw.sim.shutter import SimShutter, TriggerEvent
from hw.sim.wire import SimTriggerWire
from hw.types import CameraInfo, CameraSettings, Frame, Roi

#: Limits of the simulated cameras (UnsupportedFeatureError outside them).
SIM_EXPOSURE_US_MIN = 1.0
SIM_EXPOSURE_US_MAX = 60_000_000.0
SIM_GAIN_DB_MAX = 36.0
SIM_FRAME_RATE_HZ_MIN = 0.1
SIM_FRAME_RATE_HZ_MAX = 10_000.0


def resolve_sim_settings(s: CameraSettings, sensor: tuple[int, int]) -> CameraSettings:
    """Check ``s`` against the limits of a simulated camera and resolve its ROI on the sensor.

    Args:
        s: the settings asked for.
        sensor: ``(width, height)`` of the sensor in pixels.

    Returns:
        ``s`` with an explicit ROI (width/height 0 become "up to the sensor edge").

    Raises:
        TypeError: ``s`` is not a :class:`CameraSettings`.
        UnsupportedFeatureError: an ROI off the sensor, or a value outside the camera's limits.
    """
    if not isinstance(s, CameraSettings):
        raise TypeError(f"apply_settings needs a CameraSettings, got {type(s).__name__}.")
    sw, sh = sensor
    r = s.roi
    if r.offset_x >= sw or r.offset_y >= sh:
        raise UnsupportedFeatureError(
            f"ROI offset ({r.offset_x}, {r.offset_y}) is outside the {sw}x{sh} sensor; "
            "use a smaller offset."
        )
    w = r.width or sw - r.offset_x
    h = r.height or sh - r.offset_y
    if r.offset_x + w > sw or r.offset_y + h > sh:
        raise UnsupportedFeatureError(
            f"An ROI of {w}x{h} at ({r.offset_x}, {r.offset_y}) does not fit on the "
            f"{sw}x{sh} sensor (it would end at x={r.offset_x + w}, y={r.offset_y + h}); "
            "reduce its size or offset, or use width/height 0 for 'up to the sensor edge'."
        )
    if not SIM_EXPOSURE_US_MIN <= s.exposure_us <= SIM_EXPOSURE_US_MAX:
        raise UnsupportedFeatureError(
            f"The camera exposes {SIM_EXPOSURE_US_MIN:g}..{SIM_EXPOSURE_US_MAX:g} us; "
            f"{s.exposure_us:g} us was asked."
        )
    if s.gain_db > SIM_GAIN_DB_MAX:
        raise UnsupportedFeatureError(
            f"The camera's gain goes up to {SIM_GAIN_DB_MAX:g} dB; {s.gain_db:g} dB was asked."
        )
    if not SIM_FRAME_RATE_HZ_MIN <= s.frame_rate_hz <= SIM_FRAME_RATE_HZ_MAX:
        raise UnsupportedFeatureError(
            "The camera's frame rate is "
            f"{SIM_FRAME_RATE_HZ_MIN:g}..{SIM_FRAME_RATE_HZ_MAX:g} Hz; "
            f"{s.frame_rate_hz:g} Hz was asked."
        )
    max_black = s.saturation_dn / 4.0
    if not 0.0 <= s.black_level_dn <= max_black:
        raise UnsupportedFeatureError(
            f"black_level_dn must be within 0..{max_black:g} DN for {s.pixel_format}; "
            f"{s.black_level_dn:g} was asked."
        )
    return s.replace(roi=Roi(r.offset_x, r.offset_y, w, h))


def shortest_frame_period_s(s: CameraSettings) -> float:
    """Shortest time between two frames: ``max(1 / frame_rate_hz, exposure)``."""
    return max(1.0 / s.frame_rate_hz, s.exposure_us * 1e-6)


class _Stamped(Protocol):
    """A frame waiting in the buffer: what the delivered :class:`Frame` is stamped with."""

    @property
    def frame_id(self) -> int: ...
    @property
    def trigger_index(self) -> int: ...
    @property
    def code_sha256(self) -> str: ...
    @property
    def exposure_us(self) -> float: ...


class SimCameraBase(Camera):
    """The part of a simulated camera that does not depend on how frames are made.

    Subclasses set the class attributes ``_MODEL``, ``_VERSION`` and ``_SERIAL_PREFIX`` and
    implement the frame hooks. All ``_cond``-guarded state (``_buffer``, ``_running``, ``_acq``,
    ``_next_frame_id``, the free-run schedule and the counters) lives here.

    Args:
        shutter: whose Line1 triggers the camera receives (the subclass connects it).
        sensor: ``(width, height)`` of the sensor.
        seed: part of the serial number.
        pixel_size_um: reported pixel pitch.
        buffer_frames: capacity of the frame buffer; frames that find it full are lost.
    """

    _MODEL: ClassVar[str]
    _VERSION: ClassVar[str]
    _SERIAL_PREFIX: ClassVar[str]

    def __init__(
        self,
        shutter: SimShutter | SimTriggerWire | None,
        sensor: tuple[int, int],
        *,
        seed: int,
        pixel_size_um: float,
        buffer_frames: int,
    ) -> None:
        super().__init__()
        self._shutter = shutter
        self._sensor = sensor
        self._seed = int(seed)
        self._pixel_size_um = float(pixel_size_um)
        self._buffer_frames = int(buffer_frames)
        self._settings = CameraSettings(roi=Roi(0, 0, sensor[0], sensor[1]))
        self._acq: CameraSettings = self._settings
        self._cond = threading.Condition(threading.Lock())
        self._buffer: deque[Any] = deque()
        self._running = False
        self._next_frame_id = 0
        self._period_s = 0.0
        self._fr_next_due = 0.0
        #: Frames lost (a full buffer, or a fault knob); their ids are skipped.
        self.dropped_frames = 0
        #: Line1 triggers that came while the camera was not acquiring with trigger_source='Line1'.
        self.missed_triggers = 0
        #: Frames handed out by fetch() since construction.
        self.delivered_frames = 0

    @property
    def shutter(self) -> SimShutter | SimTriggerWire | None:
        return self._shutter

    # -- hooks -----------------------------------------------------------------------------------
    def _check_connected(self) -> None:
        """Raise DeviceDisconnected if the camera went away (never, here)."""

    def _check_faults(self) -> None:
        """In ``fetch``, once acquisition is known to run: raise if a fault knob says so."""

    def _drop_now(self) -> bool:
        """Whether a fault knob loses the next frame that has room in the buffer (never, here)."""
        return False

    def _before_start(self, s: CameraSettings) -> None:
        """At ``start()``, before acquisition with ``s`` begins (outside ``_cond``)."""

    def _first_free_run_due(self) -> float:
        """When the first free-run frame is due (caller holds ``_cond``; ``_period_s`` is set)."""
        raise NotImplementedError

    def _acq_period_s(self, s: CameraSettings) -> float:
        """The frame period of an acquisition with ``s`` (frame pacing)."""
        return shortest_frame_period_s(s)

    def _line1_frame(self, event: TriggerEvent, window_us: float, now: float) -> None:
        """Make the frame of a Line1 trigger (caller holds ``_cond``)."""
        raise NotImplementedError

    def _make_free_run_frames(self, n_due: int, period: float) -> int:
        """Make up to ``n_due`` free-run frames (caller holds ``_cond``); returns how many."""
        raise NotImplementedError

    def _pop_ready(self, now: float, timeout_s: float) -> Any:
        """Take the next frame that may be delivered now, or None (caller holds ``_cond``)."""
        raise NotImplementedError

    def _wait_s(self, now: float, remaining: float, free_run: bool) -> float:
        """How long ``fetch`` sleeps before it looks again (caller holds ``_cond``)."""
        raise NotImplementedError

    # -- Camera hooks ----------------------------------------------------------------------------
    @property
    def _serial(self) -> str:
        return f"{self._SERIAL_PREFIX}-{self._seed}"

    def _do_close(self) -> None:
        self._halt()

    def _do_stop(self) -> None:
        self._halt()

    def _halt(self) -> None:
        with self._cond:
            self._running = False
            self._buffer.clear()
            self._cond.notify_all()

    def _do_info(self) -> CameraInfo:
        return CameraInfo(
            vendor="blurvid-rig",
            model=self._MODEL,
            serial_number=self._serial,
            sensor_width=self._sensor[0],
            sensor_height=self._sensor[1],
            pixel_size_um=self._pixel_size_um,
            driver="simulated",
        )

    def _do_get_settings(self) -> CameraSettings:
        return self._settings

    def _do_apply_settings(self, settings: CameraSettings) -> CameraSettings:
        self._check_connected()
        resolved = resolve_sim_settings(settings, self._sensor)
        self._settings = resolved
        return resolved

    def _extra_nodes(self, s: CameraSettings) -> dict[str, Any]:
        """Camera-specific node-map entries, listed after the common ones."""
        return {}

    def _do_node_map_snapshot(self) -> dict[str, Any]:
        s = self._settings
        sw, sh = self._sensor
        return {
            "DeviceVendorName": "blurvid-rig",
            "DeviceModelName": self._MODEL,
            "DeviceSerialNumber": self._serial,
            "DeviceVersion": self._VERSION,
            "DeviceFirmwareVersion": self._VERSION,
            "SensorWidth": sw,
            "SensorHeight": sh,
            "WidthMax": sw,
            "HeightMax": sh,
            "Width": s.roi.width,
            "Height": s.roi.height,
            "OffsetX": s.roi.offset_x,
            "OffsetY": s.roi.offset_y,
            "PixelFormat": s.pixel_format,
            "PixelSize": f"Bpp{s.bit_depth}",
            "ExposureAuto": "Off",
            "ExposureMode": s.exposure_mode,
            "ExposureTime": float(s.exposure_us),
            "GainAuto": "Off",
            "GainSelector": "All",
            "Gain": float(s.gain_db),
            "BlackLevelSelector": "All",
            "BlackLevel": float(s.black_level_dn),
            "AcquisitionMode": "Continuous",
            "AcquisitionFrameRateEnable": True,
            "AcquisitionFrameRate": float(s.frame_rate_hz),
            "ResultingFrameRate": 1.0 / shortest_frame_period_s(s),
            "TriggerSelector": "FrameStart",
            "TriggerMode": s.trigger_mode,
            "TriggerSource": s.trigger_source,
            "TriggerActivation": "RisingEdge",
            **self._extra_nodes(s),
        }

    def _do_start(self) -> None:
        self._check_connected()
        s = self._settings
        self._before_start(s)
        with self._cond:
            self._acq = s
            self._buffer.clear()
            self._running = True
            self._period_s = self._acq_period_s(s)
            if s.trigger_mode == "Off":
                self._fr_next_due = self._first_free_run_due()
            self._cond.notify_all()

    # -- frames ----------------------------------------------------------------------------------
    def _on_trigger(self, event: TriggerEvent) -> None:
        """Line1: the shutter raised the exposure line (called from the shutter's ``fire()``)."""
        now = time.monotonic()
        with self._cond:
            s = self._acq
            if not self._running or s.trigger_mode != "On" or s.trigger_source != "Line1":
                self.missed_triggers += 1
                return
            code = event.code
            window_us = code.period_us if s.exposure_mode == "TriggerWidth" else s.exposure_us
            self._line1_frame(event, window_us, now)

    def _offer(self, item: Any) -> None:
        """Into the buffer, or lost if it is full (caller holds ``_cond``)."""
        if len(self._buffer) >= self._buffer_frames or self._drop_now():
            self.dropped_frames += 1
        else:
            self._buffer.append(item)
            self._cond.notify_all()

    def _advance_free_run(self, now: float) -> None:
        """Free run: create the frames due by ``now`` (caller holds ``_cond``)."""
        if now < self._fr_next_due:
            return
        period = self._period_s
        n_due = int((now - self._fr_next_due) // period) + 1
        lost = n_due - self._make_free_run_frames(n_due, period)  # came while the buffer was full
        self._next_frame_id += lost
        self.dropped_frames += lost
        self._fr_next_due += n_due * period

    def _timeout_message(self, timeout_s: float) -> str:
        s = self._acq
        if s.trigger_mode == "Off":
            what = (
                f"while free-running at {1.0 / shortest_frame_period_s(s):g} fps; use a longer "
                "timeout or a higher frame rate."
            )
        elif s.trigger_source == "Line1":
            what = (
                "waiting for a trigger on Line1 from the shutter: is the shutter armed and firing?"
            )
        else:
            what = "waiting for a software trigger: call software_trigger() first."
        return f"No frame arrived in {timeout_s:g} s {what}"

    def _wait_for_frame(self, timeout_s: float, deadline: float) -> Any:
        """Wait until ``deadline`` for the next deliverable frame (what ``_pop_ready`` returns)."""
        with self._cond:
            while True:
                self._check_connected()
                if not self._running:
                    raise IncompatibleStateError(
                        "Acquisition was stopped while waiting for a frame; "
                        "call start() to acquire again."
                    )
                self._check_faults()
                now = time.monotonic()
                free_run = self._acq.trigger_mode == "Off"
                if free_run:
                    self._advance_free_run(now)
                item = self._pop_ready(now, timeout_s)
                if item is not None:
                    break
                remaining = deadline - now
                if remaining <= 0:
                    raise AcquisitionTimeout(self._timeout_message(timeout_s))
                self._cond.wait(self._wait_s(now, remaining, free_run))
            self.delivered_frames += 1
        return item

    @staticmethod
    def _frame(item: _Stamped, image: Any, t_s: float) -> Frame:
        """The delivered frame of ``item``: ``image``, taken at ``t_s`` on the camera's clock."""
        return Frame(
            image=image,
            frame_id=item.frame_id,
            camera_timestamp_ns=int(round(t_s * 1e9)),
            host_time_ns=time.time_ns(),
            trigger_index=item.trigger_index,
            code_sha256=item.code_sha256,
            exposure_us=item.exposure_us,
        )
