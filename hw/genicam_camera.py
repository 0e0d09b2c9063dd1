"""A GenICam camera (USB3 Vision, GigE Vision, CoaXPress...) through harvesters and a GenTL producer.

Producers (``.cti`` files) come from ``GENICAM_GENTL64_PATH`` (folders holding ``.cti`` files, the
GenTL convention), from an explicit list, or from a config mapping (:meth:`GenICamCamera.from_config`).
:func:`list_devices` enumerates what they see; :class:`GenICamCamera` opens one device by serial
number or by index.

Settings. :class:`~hw.types.CameraSettings` is mapped to SFNC features where the device has them
(feature sets differ per producer, so every feature is looked up first). Rules when the device
lacks the feature for one of our settings, reported by :meth:`GenICamCamera.feature_report`:

* modes the camera cannot do raise :class:`~hw.errors.UnsupportedFeatureError`: ``trigger_mode='On'``
  without TriggerMode, a trigger source it does not offer, ``exposure_mode='TriggerWidth'`` without
  that ExposureMode, an ROI offset without OffsetX/OffsetY, a pixel format it does not offer;
* a value that such a device has anyway (trigger Off, offset 0, Timed exposure, 0 dB gain, black
  level 0) is ``"absent"``: nothing to do;
* other values (exposure time, gain, frame rate, black level) are ``"not applied"``: the settings
  keep the requested value as a nominal one. ``strict=True`` raises instead.

With ``trigger_mode='On'`` the frame-rate limit is switched off (AcquisitionFrameRateEnable) so it
never swallows a trigger; ``frame_rate_hz`` is then nominal. Integer features (Width, Height,
OffsetX, OffsetY) are rounded down to the device's increments and limits; an ROI outside the sensor
is refused.

Frames are copied out of the producer's buffer inside ``with ia.fetch(...)`` (the component array
is a view); incomplete buffers are requeued and counted in :attr:`GenICamCamera.stats`. A frame
whose pixel format differs from PixelFormat raises :class:`~hw.errors.ProtocolError` (some
producers accept a PixelFormat they do not stream). A device that goes away raises
:class:`~hw.errors.DeviceDisconnected`; :meth:`GenICamCamera.reconnect` reopens it by serial number
and reapplies the last settings.

harvesters 1.4.3 quirks handled here: one ``Harvester`` per producer per process (a second one sees
no devices), ``Harvester.update()`` destroys every open acquirer (so enumeration does not refresh a
producer that has a camera open), and creating an acquirer replaces the SIGINT handler with one that
swallows Ctrl+C (the previous handler is restored).
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from genicam import genapi, gentl
from harvesters.core import Callback, Harvester

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
from hw.types import (
    EXPOSURE_MODES,
    PIXEL_FORMAT_BITS,
    TRIGGER_SOURCES,
    CameraInfo,
    CameraSettings,
    Frame,
    Roi,
    ShutterCode,
)

#: The GenTL convention: folders holding .cti files, separated by os.pathsep.
GENTL_PATH_ENV = "GENICAM_GENTL64_PATH"

#: Pixel format -> numpy dtype of the frames.
MONO_DTYPES: dict[str, type[np.unsignedinteger]] = {
    "Mono8": np.uint8,
    "Mono10": np.uint16,
    "Mono12": np.uint16,
    "Mono16": np.uint16,
}

#: Status values of :class:`FeatureStatus`.
APPLIED, ADJUSTED, ABSENT, NOT_APPLIED = "applied", "adjusted", "absent", "not applied"

_FETCH_SLICE_S = 0.05  # longest wait inside one harvesters call (stop() waits at most this long)
_RW = genapi.EAccessMode.RW
_READABLE = (genapi.EAccessMode.RO, _RW)
_WRITABLE = (genapi.EAccessMode.WO, _RW)
_IT = genapi.EInterfaceType
_SCALAR_TYPES = (_IT.intfIInteger, _IT.intfIFloat, _IT.intfIBoolean, _IT.intfIString,
                 _IT.intfIEnumeration)  # fmt: skip
#: Errors that mean the device (or its producer) is gone rather than a refused value.
_LOST_ERRORS = (
    gentl.IoException,
    gentl.InvalidHandleException,
    gentl.ClosedException,
    gentl.NotInitializedException,
    gentl.ErrorException,
    genapi.RuntimeException,
    genapi.TimeoutException,
)
_LIBRARY_ERRORS = (gentl.GenericException, genapi.GenericException)


@dataclass(frozen=True)
class DeviceEntry:
    """One device seen by a GenTL producer (``index`` counts over all producers, in order)."""

    index: int
    vendor: str
    model: str
    serial: str
    id: str
    producer: str

    def __str__(self) -> str:
        return (
            f"#{self.index} {self.vendor} {self.model} serial {self.serial!r} "
            f"(id {self.id!r}, producer {Path(self.producer).name})"
        )


@dataclass(frozen=True)
class FeatureStatus:
    """What happened to one of our settings on this device at the last ``apply_settings``.

    ``status`` is ``"applied"``, ``"adjusted"`` (the device holds a rounded or clamped value),
    ``"absent"`` (no such feature, and the requested value is what such a device does anyway) or
    ``"not applied"`` (no such feature: the value is only nominal).
    """

    setting: str
    feature: str
    status: str
    requested: Any
    held: Any
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.setting} -> {self.feature}: {self.status}"
        if self.status in (ADJUSTED, NOT_APPLIED):
            text += f" (asked {self.requested!r}, holds {self.held!r})"
        return text + (f"; {self.note}" if self.note else "")


# -- producers and devices -------------------------------------------------------------------------
class _Producer:
    """One GenTL producer and its process-wide Harvester (harvesters allows one per producer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.harvester = Harvester()
        try:
            self.harvester.add_file(str(path), check_existence=True, check_validity=True)
        except FileNotFoundError as e:
            raise InitialiseError(f"The GenTL producer {path} does not exist.") from e
        except OSError as e:
            raise InitialiseError(
                f"The GenTL producer {path} cannot be loaded ({e}); the libraries it needs must be "
                "installed or sit beside it (TLSimu.cti needs libVirtualFG.so next to it)."
            ) from e
        self.open_count = 0
        self.enumerated = False

    def devices(self) -> list[Any]:
        """The producer's devices; re-enumerated only while none of them is open (see module doc)."""
        if self.open_count == 0 or not self.enumerated:
            self.harvester.update()
            self.enumerated = True
        return list(self.harvester.device_info_list)


_HUB_LOCK = threading.RLock()
_PRODUCERS: dict[str, _Producer] = {}


def _producer(path: Path) -> _Producer:
    key = os.path.realpath(path)
    with _HUB_LOCK:
        if key not in _PRODUCERS:
            _PRODUCERS[key] = _Producer(Path(key))
        return _PRODUCERS[key]


def _split_entries(cti: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    items = [cti] if isinstance(cti, str | os.PathLike) else list(cti)
    out = []
    for item in items:
        out.extend(Path(p).expanduser() for p in str(item).split(os.pathsep) if p.strip())
    return out


def _search(cti: Any) -> tuple[list[Path], list[str]]:
    """Producers to use and a description of every place searched."""
    if cti is None:
        entries = _split_entries(os.environ.get(GENTL_PATH_ENV, ""))
        if not entries:
            return [], [f"${GENTL_PATH_ENV} (not set)"]
        explicit = False
    else:
        entries, explicit = _split_entries(cti), True
    found: list[Path] = []
    searched: list[str] = []
    for entry in entries:
        if entry.is_dir():
            ctis = sorted(p for p in entry.iterdir() if p.suffix == ".cti" and p.is_file())
            searched.append(f"{entry}{os.sep} ({len(ctis)} .cti)")
            found.extend(ctis)
        elif entry.is_file():
            searched.append(str(entry))
            found.append(entry)
        elif explicit:
            raise InitialiseError(
                f"The GenTL producer {entry} does not exist; give the path of a .cti file or of a "
                "folder holding .cti files."
            )
        else:
            searched.append(f"{entry} (missing)")
    unique = list({os.path.realpath(p): p for p in found}.values())
    return unique, searched


def find_producers(
    cti: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
) -> list[Path]:
    """The GenTL producers (``.cti`` files) to use.

    Args:
        cti: a ``.cti`` file, a folder of them, a list of either, or an ``os.pathsep``-separated
            string (as in a config file). None: the folders in ``$GENICAM_GENTL64_PATH``.

    Raises:
        InitialiseError: an explicit path does not exist, or no producer was found (the message
            lists where it looked).
    """
    found, searched = _search(cti)
    if not found:
        raise InitialiseError(
            "No GenTL producer (.cti file) was found; searched: " + "; ".join(searched) + ". "
            f"Install your camera vendor's GenTL producer and set {GENTL_PATH_ENV} to its folder, "
            "or pass cti= (a .cti file or folder). For the simulators run "
            "`.venv/bin/python scripts/fetch_genicam_producers.py`."
        )
    return found


def _info_attr(dev: Any, name: str) -> str:
    try:
        value = getattr(dev, name)
    except _LIBRARY_ERRORS:
        return ""
    return "" if value is None else str(value)


def _enumerate(cti: Any) -> tuple[list[tuple[DeviceEntry, _Producer, Any]], list[str]]:
    paths = find_producers(cti)
    _, searched = _search(cti)
    rows = []
    with _HUB_LOCK:
        for path in paths:
            prod = _producer(path)
            for dev in prod.devices():
                entry = DeviceEntry(
                    index=len(rows),
                    vendor=_info_attr(dev, "vendor"),
                    model=_info_attr(dev, "model"),
                    serial=_info_attr(dev, "serial_number"),
                    id=_info_attr(dev, "id_"),
                    producer=str(prod.path),
                )
                rows.append((entry, prod, dev))
    return rows, searched


def list_devices(
    cti: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
) -> list[DeviceEntry]:
    """Every device the producers see (see :func:`find_producers` for ``cti``).

    A producer that has a camera open is not re-enumerated (harvesters would close that camera):
    its devices are those seen when it was last enumerated.
    """
    return [row[0] for row in _enumerate(cti)[0]]


class _IncompleteCounter(Callback):
    def __init__(self, stats: dict[str, int]) -> None:
        self._stats = stats

    def emit(self, context: object | None = None) -> None:
        self._stats["incomplete"] += 1


# -- pure checks -----------------------------------------------------------------------------------
def trigger_window_problems(
    nodes: Mapping[str, Any],
    code: ShutterCode,
    *,
    line: str = "Line1",
    lead_us: float = 100.0,
    margin_us: float = 50.0,
) -> list[str]:
    """Say what in a camera's features would spoil a coded capture (empty list: all good).

    The shutter controller raises ``line`` ``lead_us`` before chip 0. The camera must start a frame
    on that edge and keep exposing until the last chip: TriggerWidth exposure, or a Timed exposure
    of at least ``lead_us - TriggerDelay + code period + margin_us``. Automatic exposure and gain
    must be off.

    Args:
        nodes: SFNC feature name -> current value; a missing name means the device lacks it.
        code: the code the shutter plays.

    >>> code = ShutterCode.parse("11100101", 1000)
    >>> trigger_window_problems({"TriggerMode": "On", "TriggerSource": "Line1",
    ...                          "ExposureMode": "TriggerWidth", "ExposureAuto": "Off"}, code)
    []
    >>> [p.split(";")[0] for p in trigger_window_problems(
    ...     {"TriggerMode": "On", "TriggerSource": "Line1", "ExposureTime": 5000.0}, code)]
    ['ExposureTime is 5000 us but the exposure must cover 8150 us (lead 100 us + code 8000 us + margin 50 us)']
    """  # noqa: E501
    out: list[str] = []
    if "TriggerMode" not in nodes:
        return [
            "the camera has no TriggerMode feature, so the shutter controller cannot trigger it; "
            "use a camera with a hardware trigger input"
        ]
    selector = nodes.get("TriggerSelector", "FrameStart")
    if selector != "FrameStart":
        out.append(
            f"TriggerSelector is {selector!r}; the trigger settings read belong to it. Set "
            "TriggerSelector to FrameStart so each trigger starts a frame (apply_settings does)"
        )
    if nodes["TriggerMode"] != "On":
        out.append(f"TriggerMode is {nodes['TriggerMode']!r}; set trigger_mode='On'")
    source = nodes.get("TriggerSource")
    if source != line:
        out.append(
            f"TriggerSource is {source!r}; set trigger_source={line!r} and wire the controller's "
            f"camera-trigger output to the camera's {line}"
        )
    activation = nodes.get("TriggerActivation", "RisingEdge")
    if activation in ("FallingEdge", "LevelLow", "AnyEdge"):
        out.append(
            f"TriggerActivation is {activation!r} but the controller's trigger is active high; "
            "set it to RisingEdge (or LevelHigh for TriggerWidth)"
        )
    delay = float(nodes.get("TriggerDelay", 0.0) or 0.0)
    if delay > lead_us:
        out.append(
            f"TriggerDelay is {delay:g} us, longer than the controller's lead of {lead_us:g} us: "
            "the first chips would be lost; lower TriggerDelay or lengthen the lead"
        )
    mode = nodes.get("ExposureMode", "Timed")
    if mode == "Timed":
        need = lead_us - min(delay, lead_us) + code.period_us + margin_us
        exposure = nodes.get("ExposureTime")
        if exposure is None:
            out.append(
                "the camera has no ExposureTime feature, so its timed exposure cannot be checked "
                "against the code; use exposure_mode='TriggerWidth' on a camera that has it"
            )
        elif float(exposure) < need:
            out.append(
                f"ExposureTime is {float(exposure):g} us but the exposure must cover {need:g} us "
                f"(lead {lead_us - min(delay, lead_us):g} us + code {code.period_us:g} us + margin "
                f"{margin_us:g} us); use exposure_mode='TriggerWidth' or a longer exposure_us"
            )
    elif mode != "TriggerWidth":
        out.append(f"ExposureMode is {mode!r}; use 'TriggerWidth' or 'Timed'")
    for auto in ("ExposureAuto", "GainAuto"):
        if nodes.get(auto, "Off") != "Off":
            out.append(f"{auto} is {nodes[auto]!r}; it must be 'Off' during a coded capture")
    if nodes.get("AcquisitionFrameRateEnable") is True:
        out.append(
            f"AcquisitionFrameRateEnable is on at {nodes.get('AcquisitionFrameRate', '?')} Hz: "
            "triggers faster than that are ignored; switch it off (apply_settings does when "
            "trigger_mode='On')"
        )
    return out


_WINDOW_FEATURES = (
    "TriggerSelector", "TriggerMode", "TriggerSource", "TriggerActivation", "TriggerDelay",
    "ExposureMode", "ExposureTime", "ExposureAuto", "GainAuto", "AcquisitionFrameRateEnable",
    "AcquisitionFrameRate",
)  # fmt: skip


def _snap(value: int, lo: int, hi: int, inc: int) -> int:
    """Round down to ``lo + k * inc`` and clamp into ``[lo, hi]``.

    >>> _snap(101, 8, 4096, 4), _snap(3, 8, 4096, 4), _snap(5000, 8, 4096, 4)
    (100, 8, 4096)
    """
    inc = max(1, int(inc))
    v = min(max(int(value), lo), hi)
    return lo + (v - lo) // inc * inc


# -- the camera ------------------------------------------------------------------------------------
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
        cti: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
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
        self._nm: Any = None
        self._prod: _Producer | None = None
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
        if not self._readable(name):
            raise UnsupportedFeatureError(
                f"{self._label} has no readable feature {name!r}; node_map_snapshot() lists those "
                "it has."
            )
        return self._get(name)

    def write_feature(self, name: str, value: Any) -> Any:
        """Write one feature directly; returns the value the device holds.

        Refused (IncompatibleStateError) while acquiring when the device locks the feature then.
        Settings are read back afterwards, so :attr:`settings` stays true.
        """
        self._require_open("write a feature")
        self._check_lost()
        if not self._present(name):
            raise UnsupportedFeatureError(f"{self._label} has no feature {name!r}.")
        if self._acquiring and not self._writable(name):
            raise IncompatibleStateError(
                f"{name} is locked while {self._label} acquires; stop acquisition first."
            )
        self._set(name, value, name)
        if not self._acquiring:
            self._settings = self._read_settings(self._settings)
        return self._get(name) if self._readable(name) else value

    def coded_capture_problems(
        self, code: ShutterCode, *, line: str = "Line1", lead_us: float = 100.0,
        margin_us: float = 50.0,
    ) -> list[str]:  # fmt: skip
        """Check the device's trigger and exposure window against ``code`` (see
        :func:`trigger_window_problems`); returns sentences saying what to change."""
        self._require_open("check the exposure window")
        self._check_lost()
        with self._io_lock:
            if self._present("TriggerSelector") and "FrameStart" in self._entries(
                "TriggerSelector"
            ):
                if not self._acquiring and self._writable("TriggerSelector"):
                    self._set("TriggerSelector", "FrameStart", "trigger_mode")
            nodes = {n: self._get(n) for n in _WINDOW_FEATURES if self._readable(n)}
        return trigger_window_problems(
            nodes, code, line=line, lead_us=lead_us, margin_us=margin_us
        )

    def reconnect(self, timeout_s: float = 10.0) -> CameraSettings:
        """Reopen the same device by serial number and reapply the last settings.

        Retries until ``timeout_s``; restarts acquisition if it was running.

        Raises:
            IncompatibleStateError: the camera was never opened.
            DeviceDisconnected: the device did not come back within ``timeout_s``.
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
                    self._connect(serial=self._entry.serial)
                    break
                except InitialiseError as e:
                    if time.monotonic() >= deadline:
                        raise DeviceDisconnected(
                            f"{self._label} did not come back within {timeout_s:g} s ({e}) "
                            "Check its cable and power, then call reconnect() again."
                        ) from e
                    time.sleep(0.2)
            self._open = True
            try:
                self._settings = self._apply(settings)
            except DeviceError:
                self.close()
                raise
            if was_acquiring:
                self.start()
            return self._settings

    # -- Camera hooks ------------------------------------------------------------------------------
    def _do_open(self) -> None:
        if self._entry is not None:  # reopen the same device
            self._connect(serial=self._entry.serial)
        else:
            self._connect(serial=self._serial_wanted, index=self._index_wanted)
        try:
            self._settings = self._apply(self._initial or self._normalised_device_settings())
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
            raise TypeError(f"apply_settings needs a CameraSettings, got {type(settings).__name__}.")
        with self._io_lock:
            self._settings = self._apply(settings)
        return self._settings

    def _do_node_map_snapshot(self) -> dict[str, Any]:
        self._check_lost()
        out: dict[str, Any] = {}
        t_end = time.monotonic() + self.snapshot_timeout_s
        with self._io_lock:
            for feat in self._nm.nodes:
                if time.monotonic() > t_end:
                    out["BlurvidSnapshotTruncated"] = True
                    break
                try:
                    node = feat.node
                    if (
                        not node.is_feature()
                        or node.principal_interface_type not in _SCALAR_TYPES
                        or node.get_access_mode() not in _READABLE
                    ):
                        continue
                    value = feat.value
                except _LIBRARY_ERRORS:
                    continue  # unreadable in the current state: skipped by design
                out[node.name] = value if isinstance(value, bool | int | float | str) else str(value)
        return out

    def _do_start(self) -> None:
        self._check_lost()
        with self._io_lock:
            self._acq = self._settings
            try:
                self._ia.start()
            except _LIBRARY_ERRORS as e:
                raise self._failure(e, "start acquisition") from e
            self._streaming = True

    def _do_stop(self) -> None:
        with self._io_lock:
            self._streaming = False
            try:
                self._ia.stop()
            except _LIBRARY_ERRORS as e:
                if not self._lost:
                    raise self._failure(e, "stop acquisition") from e

    def _do_software_trigger(self) -> None:
        self._check_lost()
        if not self._present("TriggerSoftware"):
            raise UnsupportedFeatureError(f"{self._label} has no TriggerSoftware command.")
        try:
            self._nm.get_node("TriggerSoftware").execute()
        except _LIBRARY_ERRORS as e:
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
                except _LIBRARY_ERRORS as e:
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

    def _connect(self, serial: str | None = None, index: int | None = None) -> None:
        rows, searched = _enumerate(self._cti)
        where = "; ".join(searched)
        if not rows:
            raise InitialiseError(
                f"No GenICam device was found through the GenTL producer(s) searched ({where}). "
                "Is the camera connected and powered, and is its producer (USB3 Vision, GigE "
                "Vision...) among them?"
            )
        seen = "; ".join(str(r[0]) for r in rows)
        if serial is not None:
            match = [r for r in rows if r[0].serial == serial]
            if not match:
                raise InitialiseError(
                    f"No GenICam device has serial {serial!r}. Devices found: {seen} "
                    f"(producers searched: {where})."
                )
            if len(match) > 1:
                raise InitialiseError(
                    f"{len(match)} devices have serial {serial!r} ({seen}); open one by index."
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
        with _HUB_LOCK:
            main = threading.current_thread() is threading.main_thread()
            previous = signal.getsignal(signal.SIGINT) if main else None
            try:
                ia = prod.harvester.create(dev)
            except gentl.ResourceInUseException as e:
                raise InitialiseError(
                    f"{self._label} is already open (in this or another program); close it there."
                ) from e
            except (*_LIBRARY_ERRORS, ValueError) as e:
                raise InitialiseError(f"{self._label} could not be opened: {e}.") from e
            finally:
                if main and signal.getsignal(signal.SIGINT) is not previous:
                    signal.signal(signal.SIGINT, previous)  # harvesters' handler eats Ctrl+C
            prod.open_count += 1
        self._ia, self._nm, self._lost, self._streaming = ia, ia.remote_device.node_map, False, False
        try:
            ia.num_buffers = max(self._num_buffers, ia.min_num_buffers)
            ia.add_callback(ia.Events.INCOMPLETE_BUFFER, _IncompleteCounter(self.stats))
            self._sensor = self._read_sensor()
            self._info = self._read_info(entry)
        except _LIBRARY_ERRORS as e:
            self._release(quiet=True)
            raise InitialiseError(f"{self._label} could not be opened: {e}.") from e

    def _release(self, quiet: bool) -> None:
        with _HUB_LOCK, self._io_lock:
            ia, self._ia, self._nm, self._streaming = self._ia, None, None, False
            if ia is None:
                return
            assert self._prod is not None
            self._prod.open_count -= 1
            try:
                ia.destroy()
            except _LIBRARY_ERRORS as e:
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
        if isinstance(e, _LOST_ERRORS) or (lost and not isinstance(e, gentl.TimeoutException)):
            self._lost = True
            return DeviceDisconnected(
                f"{self._label} stopped answering while trying to {doing} ({type(e).__name__}: "
                f"{e}). Check its cable and power, then call reconnect()."
            )
        return ProtocolError(f"{self._label} refused to {doing}: {type(e).__name__}: {e}.")

    def _probe_alive(self) -> None:
        """After a timeout: a device that no longer answers a register read is gone."""
        for name in ("PayloadSize", "Width"):
            if self._readable(name):
                try:
                    self._get(name)
                except _LIBRARY_ERRORS as e:
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
            raise ProtocolError(
                f"{self._label} delivered a {fmt} image although PixelFormat is {want}: this "
                f"device does not stream the format it accepts; use pixel_format={fmt!r} if we "
                f"record it (one of {sorted(MONO_DTYPES)})."
            )
        w, h = int(comp.width), int(comp.height)
        roi = self._acq.roi
        data = comp.data
        if (w, h) != (roi.width, roi.height) or data is None or data.size < w * h:
            raise ProtocolError(
                f"{self._label} delivered a {w}x{h} image ({0 if data is None else data.size} "
                f"values) but the ROI is {roi.width}x{roi.height}; the frame was discarded."
            )
        image = np.array(data[: w * h].reshape(h, w), dtype=MONO_DTYPES[fmt], copy=True)
        try:
            frame_id = int(buf.module.frame_id)
        except _LIBRARY_ERRORS:
            frame_id = self._host_count  # the device numbers no frames: count them here
        self._host_count += 1
        try:
            stamp = int(buf.module.timestamp_ns)
        except _LIBRARY_ERRORS:
            stamp = -1  # the device gives no timestamp
        return Frame(
            image=image,
            frame_id=frame_id,
            camera_timestamp_ns=stamp,
            host_time_ns=host_ns,
            exposure_us=self._acq.exposure_us,
        )

    # -- features ----------------------------------------------------------------------------------
    def _mode(self, name: str) -> Any:
        try:
            return self._nm.get_node(name).node.get_access_mode()
        except (genapi.LogicalErrorException, AttributeError):
            return None

    def _present(self, name: str) -> bool:
        return hasattr(self._nm, name) and self._mode(name) not in (
            None,
            genapi.EAccessMode.NI,
            genapi.EAccessMode.NA,
        )

    def _readable(self, name: str) -> bool:
        return hasattr(self._nm, name) and self._mode(name) in _READABLE

    def _writable(self, name: str) -> bool:
        return hasattr(self._nm, name) and self._mode(name) in _WRITABLE

    def _get(self, name: str) -> Any:
        return self._nm.get_node(name).value

    def _entries(self, name: str) -> tuple[str, ...]:
        return tuple(self._nm.get_node(name).symbolics)

    def _limits(self, name: str) -> tuple[Any, Any, Any]:
        f = self._nm.get_node(name)
        inc = f.inc if f.node.principal_interface_type == _IT.intfIInteger else None
        return f.min, f.max, inc

    def _set(self, name: str, value: Any, setting: str) -> None:
        """Write a feature; refusals become UnsupportedFeatureError sentences."""
        if self._readable(name) and self._get(name) == value:
            return
        if not self._writable(name):
            raise UnsupportedFeatureError(
                f"{self._label} does not let {name} be written now (for {setting}); it holds "
                f"{self._get(name) if self._readable(name) else '?'!r} and {value!r} was asked."
            )
        try:
            self._nm.get_node(name).value = value
        except _LOST_ERRORS as e:
            raise self._failure(e, f"write {name}") from e
        except _LIBRARY_ERRORS as e:
            raise UnsupportedFeatureError(
                f"{self._label} refused {name} = {value!r} (for {setting}): {e}"
            ) from e

    def _check_range(self, name: str, value: float, setting: str, unit: str) -> None:
        lo, hi, _ = self._limits(name)
        if not lo <= value <= hi:
            raise UnsupportedFeatureError(
                f"{self._label} takes {name} {lo:g}..{hi:g} {unit}; {setting}={value:g} was asked."
            )

    def _check_entry(self, name: str, value: str, setting: str) -> None:
        entries = self._entries(name)
        if value not in entries:
            raise UnsupportedFeatureError(
                f"{self._label} offers {name} {list(entries)}, not {value!r} ({setting})."
            )

    def _read_sensor(self) -> tuple[int, int]:
        for wn, hn in (("SensorWidth", "SensorHeight"), ("WidthMax", "HeightMax")):
            if self._readable(wn) and self._readable(hn):
                return int(self._get(wn)), int(self._get(hn))
        size = []
        for dim, off in (("Width", "OffsetX"), ("Height", "OffsetY")):
            size.append(int(self._limits(dim)[1]) + (self._get(off) if self._readable(off) else 0))
        return size[0], size[1]

    def _read_info(self, entry: DeviceEntry) -> CameraInfo:
        def text(name: str, default: str) -> str:
            return str(self._get(name)).strip() or default if self._readable(name) else default

        px = self._pixel_size_um
        if self._readable("SensorPixelWidth"):
            px = float(self._get("SensorPixelWidth"))
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
        s = self._read_settings(CameraSettings())
        if self._readable("PixelFormat") and self._get("PixelFormat") not in MONO_DTYPES:
            offered = self._entries("PixelFormat")
            for pf in ("Mono12", "Mono16", "Mono10", "Mono8"):
                if pf in offered:
                    return s.replace(pixel_format=pf)
            raise InitialiseError(
                f"{self._label} offers no pixel format we record ({list(offered)}); "
                f"blurvid-rig records {sorted(MONO_DTYPES)}."
            )
        return s

    def _read_settings(self, nominal: CameraSettings) -> CameraSettings:
        """The device's current state as CameraSettings; ``nominal`` fills what it lacks."""

        def val(name: str, default: Any, ok: Any = lambda v: True) -> Any:
            if self._readable(name):
                v = self._get(name)
                if ok(v):
                    return v
            return default

        if self._readable("TriggerSelector") and "FrameStart" in self._entries("TriggerSelector"):
            if self._get("TriggerSelector") != "FrameStart" and self._writable("TriggerSelector"):
                self._set("TriggerSelector", "FrameStart", "trigger_mode")
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

    # -- applying settings -------------------------------------------------------------------------
    def _resolve_roi(self, roi: Roi) -> Roi:
        sw, sh = self._sensor
        if roi.offset_x >= sw or roi.offset_y >= sh:
            raise UnsupportedFeatureError(
                f"ROI offset ({roi.offset_x}, {roi.offset_y}) is outside the {sw}x{sh} sensor of "
                f"{self._label}; use a smaller offset."
            )
        w = roi.width or sw - roi.offset_x
        h = roi.height or sh - roi.offset_y
        if roi.offset_x + w > sw or roi.offset_y + h > sh:
            raise UnsupportedFeatureError(
                f"An ROI of {w}x{h} at ({roi.offset_x}, {roi.offset_y}) does not fit on the "
                f"{sw}x{sh} sensor of {self._label} (it would end at x={roi.offset_x + w}, "
                f"y={roi.offset_y + h}); reduce its size or offset."
            )
        out = {}
        for off_name, off, dim_name, dim, size in (
            ("OffsetX", roi.offset_x, "Width", w, sw),
            ("OffsetY", roi.offset_y, "Height", h, sh),
        ):
            if self._present(off_name):
                lo, _, inc = self._limits(off_name)
                off = _snap(off, int(lo), size - 1, int(inc))
            elif off:
                raise UnsupportedFeatureError(
                    f"{self._label} has no {off_name}, so the ROI cannot start at {off} px; use an "
                    f"ROI offset of 0 (crop in software if needed)."
                )
            if self._present(dim_name):
                lo, _, inc = self._limits(dim_name)
                dim = _snap(dim, int(lo), size - off, int(inc))
                if off + dim > size:
                    raise UnsupportedFeatureError(
                        f"The ROI {dim_name} cannot be below {lo} px on {self._label}, which does "
                        f"not fit after an offset of {off} px on a {size} px sensor."
                    )
            elif dim != size:
                raise UnsupportedFeatureError(
                    f"{self._label} has no {dim_name}; the ROI must be the whole {size} px."
                )
            out[off_name], out[dim_name] = off, dim
        return Roi(out["OffsetX"], out["OffsetY"], out["Width"], out["Height"])

    def _apply(self, s: CameraSettings) -> CameraSettings:
        """Validate everything that can be checked without writing, then write in SFNC order."""
        report: list[FeatureStatus] = []
        nominal: set[str] = set()

        def lacks(setting: str, feature: str, harmless: bool, note: str = "") -> None:
            value = getattr(s, setting)
            if harmless:
                report.append(FeatureStatus(setting, feature, ABSENT, value, value, note))
                return
            if self.strict:
                raise UnsupportedFeatureError(
                    f"{self._label} has no {feature}, so {setting}={value!r} cannot be applied "
                    "(strict=True)."
                )
            nominal.add(setting)
            report.append(FeatureStatus(setting, feature, NOT_APPLIED, value, value, note))

        # 1. validation (no writes)
        trig_on, line = s.trigger_mode == "On", s.trigger_source != "Software"
        if self._present("PixelFormat"):
            self._check_entry("PixelFormat", s.pixel_format, "pixel_format")
        else:
            lacks("pixel_format", "PixelFormat", False, "frames must arrive in this format")
        roi = self._resolve_roi(s.roi)
        if trig_on:
            if not self._present("TriggerMode"):
                raise UnsupportedFeatureError(
                    f"{self._label} has no TriggerMode, so it cannot be triggered; use "
                    "trigger_mode='Off' (free run)."
                )
            self._check_entry("TriggerMode", "On", "trigger_mode")
            if self._present("TriggerSelector"):
                self._check_entry("TriggerSelector", "FrameStart", "trigger_mode")
            if not self._present("TriggerSource"):
                raise UnsupportedFeatureError(f"{self._label} has no TriggerSource.")
            self._check_entry("TriggerSource", s.trigger_source, "trigger_source")
        elif not self._present("TriggerMode"):
            lacks("trigger_mode", "TriggerMode", True, "free runs only")
        if self._present("ExposureMode"):
            self._check_entry("ExposureMode", s.exposure_mode, "exposure_mode")
        elif s.exposure_mode == "TriggerWidth":
            raise UnsupportedFeatureError(
                f"{self._label} has no ExposureMode, so it cannot expose for the trigger width; "
                "use exposure_mode='Timed' with an exposure_us covering the code."
            )
        else:
            lacks("exposure_mode", "ExposureMode", True, "exposure is timed")
        timed = s.exposure_mode == "Timed"
        if not timed:
            nominal.add("exposure_us")
            report.append(FeatureStatus("exposure_us", "ExposureTime", NOT_APPLIED,
                                        s.exposure_us, s.exposure_us,
                                        "TriggerWidth: the trigger sets the exposure"))  # fmt: skip
        elif self._present("ExposureTime"):
            self._check_range("ExposureTime", s.exposure_us, "exposure_us", "us")
        else:
            lacks("exposure_us", "ExposureTime", False)
        if self._present("Gain"):
            self._check_range("Gain", s.gain_db, "gain_db", "dB")
        else:
            lacks("gain_db", "Gain", s.gain_db == 0.0)
        if self._present("BlackLevel"):
            self._check_range("BlackLevel", s.black_level_dn, "black_level_dn", "")
        else:
            lacks("black_level_dn", "BlackLevel", s.black_level_dn == 0.0)
        rate_limit = not trig_on or not self._present("AcquisitionFrameRateEnable")
        if rate_limit and self._present("AcquisitionFrameRate"):
            self._check_range("AcquisitionFrameRate", s.frame_rate_hz, "frame_rate_hz", "Hz")
        elif trig_on and self._present("AcquisitionFrameRateEnable"):
            nominal.add("frame_rate_hz")
            report.append(FeatureStatus("frame_rate_hz", "AcquisitionFrameRateEnable",
                                        NOT_APPLIED, s.frame_rate_hz, s.frame_rate_hz,
                                        "limit off while triggered"))  # fmt: skip
        else:
            lacks("frame_rate_hz", "AcquisitionFrameRate", False)

        # 2. writes, in SFNC order
        written: list[tuple[str, str]] = []

        def put(name: str, value: Any, setting: str) -> None:
            self._set(name, value, setting)
            written.append((setting, name))

        for auto in ("ExposureAuto", "GainAuto", "BlackLevelAuto"):
            if self._present(auto) and "Off" in self._entries(auto):
                self._set(auto, "Off", auto)
        if self._present("PixelFormat"):
            put("PixelFormat", s.pixel_format, "pixel_format")
        for off in ("OffsetX", "OffsetY"):  # let Width/Height grow first
            if self._present(off) and self._readable(off) and self._get(off) != 0:
                self._set(off, 0, "roi")
        for name, value in (("Width", roi.width), ("Height", roi.height),
                            ("OffsetX", roi.offset_x), ("OffsetY", roi.offset_y)):  # fmt: skip
            if self._present(name):
                put(name, value, "roi")
        if self._present("TriggerSelector") and "FrameStart" in self._entries("TriggerSelector"):
            self._set("TriggerSelector", "FrameStart", "trigger_mode")
        if self._present("TriggerMode"):
            self._set("TriggerMode", "Off", "trigger_mode")
            if self._present("TriggerSource"):
                if s.trigger_source in self._entries("TriggerSource"):
                    put("TriggerSource", s.trigger_source, "trigger_source")
                else:
                    report.append(FeatureStatus("trigger_source", "TriggerSource", NOT_APPLIED,
                                                s.trigger_source, s.trigger_source,
                                                "not offered; unused while trigger is off"))  # fmt: skip
                    nominal.add("trigger_source")
            if trig_on and line and self._present("TriggerActivation"):
                acts = self._entries("TriggerActivation")
                act = "RisingEdge" if "RisingEdge" in acts or timed else "LevelHigh"
                put("TriggerActivation", act, "trigger_source")
            put("TriggerMode", s.trigger_mode, "trigger_mode")
        elif not trig_on:
            nominal.add("trigger_source")
        if self._present("ExposureMode"):
            put("ExposureMode", s.exposure_mode, "exposure_mode")
        if timed and self._present("ExposureTime"):
            put("ExposureTime", float(s.exposure_us), "exposure_us")
        if self._present("Gain"):
            if self._present("GainSelector") and "All" in self._entries("GainSelector"):
                self._set("GainSelector", "All", "gain_db")
            put("Gain", float(s.gain_db), "gain_db")
        if self._present("BlackLevel"):
            if self._present("BlackLevelSelector") and "All" in self._entries(
                "BlackLevelSelector"
            ):
                self._set("BlackLevelSelector", "All", "black_level_dn")
            put("BlackLevel", float(s.black_level_dn), "black_level_dn")
        if self._present("AcquisitionFrameRateEnable"):
            self._set("AcquisitionFrameRateEnable", not trig_on, "frame_rate_hz")
        if rate_limit and self._present("AcquisitionFrameRate"):
            put("AcquisitionFrameRate", float(s.frame_rate_hz), "frame_rate_hz")

        # 3. what the device holds now
        held = self._read_settings(s)
        held = held.replace(**{k: getattr(s, k) for k in nominal})
        done: dict[str, list[str]] = {}
        for setting, name in written:
            done.setdefault(setting, []).append(name)
        for setting, names in done.items():
            asked, got = getattr(s, setting), getattr(held, setting)
            if setting == "roi":
                asked = s.roi
            same = (
                math.isclose(asked, got, rel_tol=1e-6, abs_tol=1e-9)
                if isinstance(asked, float)
                else asked == got
            )
            status, note = (APPLIED, "") if same else (ADJUSTED, "rounded by the device")
            report.append(FeatureStatus(setting, "/".join(names), status, asked, got, note))
        order = list(CameraSettings.__dataclass_fields__)
        self._report = sorted(report, key=lambda r: order.index(r.setting))
        return held
