"""A GenICam camera (USB3 Vision, GigE Vision...) through harvesters and a GenTL producer.

Producers (``.cti`` files) are found by :func:`~hw.genicam_support.find_producers`
(``$GENICAM_GENTL64_PATH``, an explicit list, or a config value); :func:`list_devices` shows the
devices they see; :class:`GenICamCamera` opens one by serial number or by index.

Settings. :class:`~hw.types.CameraSettings` is mapped to SFNC features where the device has them
(by :mod:`hw.genicam_settings`; feature sets differ per producer: every feature is looked up
first). When the device lacks the feature for one of our settings
(:meth:`GenICamCamera.feature_report` says which):

* a mode it cannot do raises :class:`~hw.errors.UnsupportedFeatureError`: ``trigger_mode='On'``
  without TriggerMode, a trigger source it does not offer, ``exposure_mode='TriggerWidth'``
  without that ExposureMode, an ROI offset without OffsetX/OffsetY, a pixel format it lacks;
* a value such a device has anyway (trigger Off, offset 0, Timed exposure, 0 dB gain, black
  level 0) is ``"absent"``: nothing to do;
* other values (exposure time, gain, frame rate, black level) are ``"not applied"``: the settings
  keep the requested value as a nominal one. ``strict=True`` raises instead.

With ``trigger_mode='On'`` the frame-rate limit is switched off (AcquisitionFrameRateEnable) so it
never swallows a trigger; ``frame_rate_hz`` is then nominal. Width, Height, OffsetX and OffsetY are
rounded down to the device's increments; an ROI outside the sensor is refused.

Frames are copied out of the producer's buffer inside the ``with`` block of the fetched buffer (its
array is a view); incomplete buffers are requeued and counted in :attr:`GenICamCamera.stats`. A
frame whose pixel format differs from PixelFormat raises :class:`~hw.errors.ProtocolError` (some
producers accept a PixelFormat they do not stream). A device that goes away raises
:class:`~hw.errors.DeviceDisconnected`; :meth:`GenICamCamera.reconnect` reopens it by serial number
and reapplies the last settings. Creating a harvesters acquirer installs a SIGINT handler that
swallows Ctrl+C; the previous handler is restored.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from genicam import gentl
from harvesters.core import Callback

from hw.base import Camera
from hw.errors import (
    AcquisitionTimeout,
    DeviceDisconnected,
    DeviceError,
    IncompatibleStateError,
    InitialiseError,
    ProtocolError,
    UnsupportedFeatureError,
)
from hw.genicam_settings import MONO_DTYPES, apply_settings, read_settings, select_frame_start
from hw.genicam_support import (
    GENTL_PATH_ENV,
    HUB_LOCK,
    LIBRARY_ERRORS,
    LOST_ERRORS,
    NOT_APPLIED,
    WINDOW_FEATURES,
    CtiSpec,
    DeviceEntry,
    FeatureStatus,
    NodeAccess,
    ProducerSlot,
    enumerate_devices,
    find_producers,
    list_devices,
    trigger_window_problems,
)
from hw.types import (
    CameraInfo,
    CameraSettings,
    Frame,
    ShutterCode,
)

__all__ = [
    "GENTL_PATH_ENV",
    "MONO_DTYPES",
    "DeviceEntry",
    "FeatureStatus",
    "GenICamCamera",
    "find_producers",
    "list_devices",
    "trigger_window_problems",
]

_FETCH_SLICE_S = 0.05  # longest wait inside one harvesters call (stop() waits at most this long)


class _IncompleteCounter(Callback):
    """Counts the incomplete buffers harvesters discards (and requeues)."""

    def __init__(self, stats: dict[str, int]) -> None:
        self._stats = stats

    def emit(self, context: object | None = None) -> None:
        self._stats["incomplete"] += 1


class GenICamCamera(Camera):
    """A GenICam camera opened through a GenTL producer (see the module doc for the rules).

    Args:
        serial: serial number of the device (as :func:`list_devices` shows it).
        index: position in :func:`list_devices` (when no serial is given; default: the first).
        cti: producers (see :func:`find_producers`); None: ``$GENICAM_GENTL64_PATH``.
        settings: settings applied at open (default: the device's own, normalised: automatic
            exposure and gain off, a pixel format we record).
        strict: raise UnsupportedFeatureError for a setting the device has no feature for,
            instead of reporting it as not applied.
        pixel_size_um: pixel pitch, when the device has no SensorPixelWidth (default NaN).
        num_buffers: buffers announced to the producer.
        snapshot_timeout_s: time limit of :meth:`node_map_snapshot`.

    Example::

        with GenICamCamera(serial="1234", cti="/opt/vendor/gentl") as cam:
            cam.apply_settings(cam.settings.replace(exposure_us=2000, pixel_format="Mono12"))
            print(*cam.feature_report(), sep="\\n")
            cam.start(); frame = cam.fetch(timeout_s=1.0)
    """

    def __init__(
        self,
        serial: str | None = None,
        index: int | None = None,
        cti: CtiSpec = None,
        *,
        settings: CameraSettings | None = None,
        strict: bool = False,
        pixel_size_um: float | None = None,
        num_buffers: int = 8,
        snapshot_timeout_s: float = 2.0,
    ) -> None:
        super().__init__()
        if serial is not None and index is not None:
            raise ValueError("Give serial or index, not both.")
        if index is not None and int(index) < 0:
            raise ValueError(f"index must be >= 0, got {index!r}.")
        self._serial_wanted = None if serial is None else str(serial)
        self._index_wanted = None if index is None else int(index)
        self._cti = cti
        self._initial = settings
        self.strict = bool(strict)
        self._pixel_size_um = pixel_size_um
        self._num_buffers = int(num_buffers)
        self.snapshot_timeout_s = float(snapshot_timeout_s)
        self._ia: Any = None
        self._f = NodeAccess(None, "The camera")
        self._prod: ProducerSlot | None = None
        self._entry: DeviceEntry | None = None
        self._info: CameraInfo | None = None
        self._settings = CameraSettings()
        self._acq = self._settings
        self._report: list[FeatureStatus] = []
        self._sensor = (0, 0)
        self._io_lock = threading.RLock()
        self._streaming = False
        self._lost = False
        self._host_count = 0
        #: Counters since construction: frames delivered, incomplete buffers requeued, timeouts.
        self.stats: dict[str, int] = {"frames": 0, "incomplete": 0, "timeouts": 0}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GenICamCamera:
        """Build from a config mapping: ``cti``, ``serial``, ``index``, ``strict``,
        ``pixel_size_um``, ``num_buffers`` and ``settings`` (a CameraSettings dict)."""
        known = {"cti", "serial", "index", "strict", "pixel_size_um", "num_buffers", "settings"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"Unknown camera config key(s) {unknown}; known: {sorted(known)}.")
        kw = dict(config)
        if isinstance(kw.get("settings"), Mapping):
            kw["settings"] = CameraSettings.from_dict(kw["settings"])
        return cls(kw.pop("serial", None), kw.pop("index", None), kw.pop("cti", None), **kw)

    # -- public extras -----------------------------------------------------------------------------
    @property
    def device_entry(self) -> DeviceEntry | None:
        """The device this camera opened (None before the first open)."""
        return self._entry

    def feature_report(self) -> list[FeatureStatus]:
        """What the last ``apply_settings`` (or open) did with each of our settings."""
        return list(self._report)

    def unapplied_settings(self) -> list[str]:
        """Our settings that this device has no feature for and that were not applied."""
        return [r.setting for r in self._report if r.status == NOT_APPLIED]

    def read_feature(self, name: str) -> Any:
        """The value of one readable feature (UnsupportedFeatureError if it has none)."""
        self._require_open("read a feature")
        self._check_lost()
        if not self._f.readable(name):
            raise UnsupportedFeatureError(
                f"{self._label} has no readable feature {name!r}; node_map_snapshot() lists those "
                "it has."
            )
        try:
            return self._f.get(name)
        except LIBRARY_ERRORS as e:
            raise self._failure(e, f"read {name}") from e

    def write_feature(self, name: str, value: Any) -> Any:
        """Write one feature directly; returns the value the device holds.

        Refused (IncompatibleStateError) while acquiring when the device locks the feature then.
        Settings are read back afterwards, so :attr:`settings` stays true.
        """
        self._require_open("write a feature")
        self._check_lost()
        if not self._f.present(name):
            raise UnsupportedFeatureError(f"{self._label} has no feature {name!r}.")
        if self._acquiring and not self._f.writable(name):
            raise IncompatibleStateError(
                f"{name} is locked while {self._label} acquires; stop acquisition first."
            )
        try:
            self._f.set(name, value, name)
            if not self._acquiring:
                s = self._settings
                kept = {r.setting: getattr(s, r.setting) for r in self._report
                        if r.status == NOT_APPLIED}  # fmt: skip
                self._settings = read_settings(self._f, s).replace(**kept)
        except LIBRARY_ERRORS as e:
            raise self._failure(e, f"write {name}") from e
        return self._f.get(name) if self._f.readable(name) else value

    def coded_capture_problems(
        self, code: ShutterCode, *, line: str = "Line1", lead_us: float = 100.0,
        margin_us: float = 50.0,
    ) -> list[str]:  # fmt: skip
        """Check the device's trigger and exposure window against ``code`` (see
        :func:`trigger_window_problems`); returns sentences saying what to change."""
        self._require_open("check the exposure window")
        self._check_lost()
        with self._io_lock:
            try:
                select_frame_start(self._f)
                nodes = {n: self._f.get(n) for n in WINDOW_FEATURES if self._f.readable(n)}
            except LIBRARY_ERRORS as e:
                raise self._failure(e, "read the trigger features") from e
        return trigger_window_problems(nodes, code, line=line, lead_us=lead_us, margin_us=margin_us)

    def reconnect(self, timeout_s: float = 10.0) -> CameraSettings:
        """Reopen the same device by serial number and reapply the last settings.

        Retries until ``timeout_s``; restarts acquisition if it was running.

        Raises:
            IncompatibleStateError: the camera was never opened.
            DeviceDisconnected: the device did not come back within ``timeout_s`` (the camera
                is then closed).
        """
        with self._lock:
            if self._entry is None:
                raise IncompatibleStateError(
                    "Cannot reconnect: this camera was never opened; call open() first."
                )
            was_acquiring, settings = self._acquiring, self._settings
            self._acquiring = False
            self._release(quiet=True)
            self._open = False
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    self._reopen()
                    break
                except InitialiseError as e:
                    if time.monotonic() >= deadline:
                        raise DeviceDisconnected(
                            f"{self._label} did not come back within {timeout_s:g} s; check its "
                            f"cable and power, then call reconnect() again. Last error: {e}"
                        ) from e
                    time.sleep(0.2)
            self._open = True
            try:
                self._settings = self._apply_checked(settings)
            except DeviceError:
                self.close()
                raise
            if was_acquiring:
                self.start()
            return self._settings

    # -- Camera hooks ------------------------------------------------------------------------------
    def _do_open(self) -> None:
        if self._entry is not None:  # the same device as before
            self._reopen()
        else:
            self._connect(serial=self._serial_wanted, index=self._index_wanted)
        try:
            self._settings = self._apply_checked(
                self._initial or self._normalised_device_settings()
            )
        except DeviceError as e:
            self._release(quiet=True)
            raise InitialiseError(f"{self._label} opened but could not be configured: {e}") from e

    def _do_close(self) -> None:
        self._release(quiet=self._lost)

    def _do_info(self) -> CameraInfo:
        assert self._info is not None
        return self._info

    def _do_get_settings(self) -> CameraSettings:
        return self._settings

    def _do_apply_settings(self, settings: CameraSettings) -> CameraSettings:
        self._check_lost()
        if not isinstance(settings, CameraSettings):
            raise TypeError(
                f"apply_settings needs a CameraSettings, got {type(settings).__name__}."
            )
        with self._io_lock:
            self._settings = self._apply_checked(settings)
        return self._settings

    def _do_node_map_snapshot(self) -> dict[str, Any]:
        self._check_lost()
        with self._io_lock:
            try:
                return self._f.snapshot(self.snapshot_timeout_s)
            except LIBRARY_ERRORS as e:
                raise self._failure(e, "list the node map") from e

    def _do_start(self) -> None:
        self._check_lost()
        with self._io_lock:
            self._acq = self._settings
            try:
                self._ia.start()
            except LIBRARY_ERRORS as e:
                raise self._failure(e, "start acquisition") from e
            self._streaming = True

    def _do_stop(self) -> None:
        # Said before taking the lock: a fetch waiting in another thread re-takes the lock after
        # every slice and could starve this thread on a busy machine; it sees the flag within one
        # slice, raises, and lets go.
        self._streaming = False
        with self._io_lock:
            self._streaming = False
            if self._ia is None:
                return
            try:
                self._ia.stop()
            except LIBRARY_ERRORS as e:
                if not self._lost:
                    raise self._failure(e, "stop acquisition") from e

    def _do_software_trigger(self) -> None:
        self._check_lost()
        if not self._f.present("TriggerSoftware"):
            raise UnsupportedFeatureError(f"{self._label} has no TriggerSoftware command.")
        try:
            self._f.node_map.get_node("TriggerSoftware").execute()
        except LIBRARY_ERRORS as e:
            raise self._failure(e, "send a software trigger") from e

    def _do_fetch(self, timeout_s: float) -> Frame:
        self._check_lost()
        deadline = time.monotonic() + timeout_s
        while True:
            with self._io_lock:
                if not self._streaming:
                    raise IncompatibleStateError(
                        "Acquisition was stopped while waiting for a frame; call start() to "
                        "acquire again."
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    buf = self._ia.try_fetch(timeout=min(remaining, _FETCH_SLICE_S))
                    if buf is None:
                        continue  # nothing yet, or an incomplete buffer (requeued and counted)
                    with buf:  # the image is copied out before the buffer is requeued
                        frame = self._frame_from(buf)
                except LIBRARY_ERRORS as e:
                    raise self._failure(e, "fetch a frame", lost=True) from e
            self.stats["frames"] += 1
            return frame
        self.stats["timeouts"] += 1
        self._probe_alive()
        raise AcquisitionTimeout(self._timeout_message(timeout_s))

    # -- connection --------------------------------------------------------------------------------
    @property
    def _label(self) -> str:
        e = self._entry
        return f"Camera {e.vendor} {e.model} (serial {e.serial!r})" if e else "The camera"

    def _reopen(self) -> None:
        """Open the device opened before, by serial number (by device id if it has none)."""
        assert self._entry is not None
        if self._entry.serial:
            self._connect(serial=self._entry.serial)
        else:
            self._connect(device_id=self._entry.id)

    def _connect(
        self, serial: str | None = None, index: int | None = None, device_id: str | None = None
    ) -> None:
        rows, searched = enumerate_devices(self._cti)
        where = "; ".join(searched)
        if not rows:
            raise InitialiseError(
                f"No GenICam device was found through the GenTL producer(s) searched ({where}). "
                "Is the camera connected and powered, and is its producer (USB3 Vision, GigE "
                "Vision...) among them?"
            )
        seen = "; ".join(str(r[0]) for r in rows)
        if serial is not None or device_id is not None:
            key, value = ("serial", serial) if serial is not None else ("id", device_id)
            match = [r for r in rows if getattr(r[0], key) == value]
            if not match:
                raise InitialiseError(
                    f"No GenICam device has {key} {value!r}. Devices found: {seen} "
                    f"(producers searched: {where})."
                )
            if len(match) > 1:
                raise InitialiseError(
                    f"{len(match)} devices have {key} {value!r} ({seen}); open one by index."
                )
            entry, prod, dev = match[0]
        else:
            i = index or 0
            if i >= len(rows):
                raise InitialiseError(
                    f"There is no GenICam device #{i}; {len(rows)} found: {seen}."
                )
            entry, prod, dev = rows[i]
        self._entry, self._prod = entry, prod
        with HUB_LOCK:
            main = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGINT) if main else None
            try:
                ia = prod.harvester.create(dev)
            except gentl.ResourceInUseException as e:
                raise InitialiseError(
                    f"{self._label} is already open (in this or another program); close it there."
                ) from e
            except (*LIBRARY_ERRORS, ValueError) as e:
                raise InitialiseError(f"{self._label} could not be opened: {e}.") from e
            finally:
                if main and signal.getsignal(signal.SIGINT) is not previous:
                    signal.signal(signal.SIGINT, previous)  # harvesters' handler eats Ctrl+C
            prod.open_count += 1
        self._ia, self._lost, self._streaming = ia, False, False
        self._f = NodeAccess(ia.remote_device.node_map, self._label)
        try:
            ia.num_buffers = max(self._num_buffers, ia.min_num_buffers)
            ia.add_callback(ia.Events.INCOMPLETE_BUFFER, _IncompleteCounter(self.stats))
            self._sensor = self._read_sensor()
            self._info = self._read_info(entry)
        except LIBRARY_ERRORS as e:
            self._release(quiet=True)
            raise InitialiseError(f"{self._label} could not be opened: {e}.") from e

    def _release(self, quiet: bool) -> None:
        with HUB_LOCK, self._io_lock:
            ia, self._ia, self._streaming = self._ia, None, False
            if ia is None:
                return
            assert self._prod is not None
            self._prod.open_count -= 1
            try:
                ia.destroy()
            except LIBRARY_ERRORS as e:
                if not quiet:
                    raise self._failure(e, "close the device") from e
            finally:
                if ia in self._prod.harvester.image_acquirers:
                    self._prod.harvester.image_acquirers.remove(ia)

    def _check_lost(self) -> None:
        if self._lost:
            raise DeviceDisconnected(
                f"{self._label} was lost; call reconnect() (or close and open it again)."
            )

    def _failure(self, e: Exception, doing: str, lost: bool = False) -> DeviceError:
        """Turn a GenTL/GenApi error into ours; marks the device lost when it looks gone."""
        if isinstance(e, LOST_ERRORS) or (lost and not isinstance(e, gentl.TimeoutException)):
            self._lost = True
            return DeviceDisconnected(
                f"{self._label} stopped answering while trying to {doing} ({type(e).__name__}: "
                f"{e}). Check its cable and power, then call reconnect()."
            )
        return ProtocolError(f"{self._label} refused to {doing}: {type(e).__name__}: {e}.")

    def _probe_alive(self) -> None:
        """After a timeout: a device that no longer answers a register read is gone."""
        for name in ("PayloadSize", "Width"):
            if self._f.readable(name):
                try:
                    self._f.get(name)
                except LIBRARY_ERRORS as e:
                    raise self._failure(e, f"read {name} after a fetch timeout", lost=True) from e
                return

    def _timeout_message(self, timeout_s: float) -> str:
        s = self._acq
        if s.trigger_mode == "Off":
            what = "while free-running; use a longer timeout or check the frame rate"
        elif s.trigger_source == "Software":
            what = "waiting for a software trigger; call software_trigger() first"
        else:
            what = (
                f"waiting for a trigger on {s.trigger_source}: is the shutter controller armed "
                "and firing, and wired to that line?"
            )
        msg = f"No frame arrived from {self._label} in {timeout_s:g} s {what}"
        return msg if msg.endswith("?") else msg + "."

    # -- frames ------------------------------------------------------------------------------------
    def _frame_from(self, buf: Any) -> Frame:
        host_ns = time.time_ns()
        comps = getattr(buf.payload, "components", None)
        if not comps:
            raise ProtocolError(f"{self._label} delivered a buffer without an image; discarded.")
        comp = comps[0]
        fmt, want = str(comp.data_format), self._acq.pixel_format
        if fmt != want:
            fix = (
                f"use pixel_format={fmt!r}"
                if fmt in MONO_DTYPES
                else f"it cannot be recorded (blurvid-rig records {', '.join(MONO_DTYPES)})"
            )
            raise ProtocolError(
                f"{self._label} delivered a {fmt} image although PixelFormat is {want}: the "
                f"device does not stream the format it accepts; {fix}. The frame was discarded."
            )
        w, h = int(comp.width), int(comp.height)
        roi = self._acq.roi
        data = comp.data
        if (w, h) != (roi.width, roi.height) or data is None or data.size < w * h:
            raise ProtocolError(
                f"{self._label} delivered a {w}x{h} image ({0 if data is None else data.size} "
                f"values) but the ROI is {roi.width}x{roi.height}; the frame was discarded."
            )
        image = np.array(data.reshape(-1)[: w * h].reshape(h, w), dtype=MONO_DTYPES[fmt])
        try:
            frame_id = int(buf.module.frame_id)
        except LIBRARY_ERRORS:
            frame_id = self._host_count  # the device numbers no frames: count them here
        self._host_count += 1
        try:
            stamp = int(buf.module.timestamp_ns)
        except LIBRARY_ERRORS:
            stamp = -1  # the device gives no timestamp
        return Frame(
            image=image,
            frame_id=frame_id,
            camera_timestamp_ns=stamp,
            host_time_ns=host_ns,
            exposure_us=self._acq.exposure_us,
        )

    # -- features ----------------------------------------------------------------------------------
    def _read_sensor(self) -> tuple[int, int]:
        for wn, hn in (("SensorWidth", "SensorHeight"), ("WidthMax", "HeightMax")):
            if self._f.readable(wn) and self._f.readable(hn):
                return int(self._f.get(wn)), int(self._f.get(hn))
        f = self._f
        w, h = (int(f.limits(d)[1]) + (f.get(o) if f.readable(o) else 0)
                for d, o in (("Width", "OffsetX"), ("Height", "OffsetY")))  # fmt: skip
        return w, h

    def _read_info(self, entry: DeviceEntry) -> CameraInfo:
        def text(name: str, default: str) -> str:
            return str(self._f.get(name)).strip() or default if self._f.readable(name) else default

        px = self._pixel_size_um
        if self._f.readable("SensorPixelWidth"):
            px = float(self._f.get("SensorPixelWidth"))
        return CameraInfo(
            vendor=text("DeviceVendorName", entry.vendor) or "unknown vendor",
            model=text("DeviceModelName", entry.model) or "unknown model",
            serial_number=entry.serial or text("DeviceSerialNumber", entry.id),
            sensor_width=self._sensor[0],
            sensor_height=self._sensor[1],
            pixel_size_um=float("nan") if px is None else float(px),
            driver="genicam",
        )

    def _normalised_device_settings(self) -> CameraSettings:
        """The device's current settings, with a pixel format we record."""
        s = read_settings(self._f, CameraSettings())
        if self._f.readable("PixelFormat") and self._f.get("PixelFormat") not in MONO_DTYPES:
            offered = self._f.entries("PixelFormat")
            for pf in ("Mono12", "Mono16", "Mono10", "Mono8"):
                if pf in offered:
                    return s.replace(pixel_format=pf)
            raise InitialiseError(
                f"{self._label} offers no pixel format we record ({list(offered)}); "
                f"blurvid-rig records {sorted(MONO_DTYPES)}."
            )
        return s

    # -- applying settings -------------------------------------------------------------------------
    def _apply_checked(self, s: CameraSettings) -> CameraSettings:
        try:
            return self._apply(s)
        except LIBRARY_ERRORS as e:
            raise self._failure(e, "apply settings") from e

    def _apply(self, s: CameraSettings) -> CameraSettings:
        """Check what can be checked without writing, write in SFNC order, read back."""
        held, self._report = apply_settings(
            self._f, s, sensor=self._sensor, label=self._label, strict=self.strict
        )
        return held
