"""Support for :mod:`hw.genicam_camera`: GenTL producers, device enumeration, value types, checks.

Producers (``.cti`` files) come from ``$GENICAM_GENTL64_PATH`` (folders holding ``.cti`` files, the
GenTL convention), from an explicit list, or from a config value (an ``os.pathsep``-separated
string). harvesters 1.4.3 allows one ``Harvester`` per producer per process (a second one sees no
devices) and ``Harvester.update()`` destroys every acquirer it opened, so each producer gets one
process-wide Harvester here, re-enumerated only while none of its devices is open.

:func:`trigger_window_problems` is the pure check behind
:meth:`~hw.genicam_camera.GenICamCamera.coded_capture_problems` (it works on a name -> value map).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genicam import genapi, gentl
from harvesters.core import Harvester

from hw.errors import InitialiseError, UnsupportedFeatureError
from hw.types import ShutterCode

#: The GenTL convention: folders holding .cti files, separated by os.pathsep.
GENTL_PATH_ENV = "GENICAM_GENTL64_PATH"

#: Status values of :class:`FeatureStatus`.
APPLIED, ADJUSTED, ABSENT, NOT_APPLIED = "applied", "adjusted", "absent", "not applied"

#: Errors that mean the device (or its producer) is gone rather than a refused value.
LOST_ERRORS: tuple[type[Exception], ...] = (
    gentl.IoException,
    gentl.InvalidHandleException,
    gentl.ClosedException,
    gentl.NotInitializedException,
    genapi.RuntimeException,
    genapi.TimeoutException,
)
#: Every error the GenICam libraries raise.
LIBRARY_ERRORS: tuple[type[Exception], ...] = (gentl.GenericException, genapi.GenericException)

CtiSpec = str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None


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
    """What happened to one of our settings on a device at the last ``apply_settings``.

    ``status`` is ``"applied"``, ``"adjusted"`` (the device holds a rounded value), ``"absent"``
    (no such feature, and the requested value is what such a device does anyway) or
    ``"not applied"`` (the value was not written: it is nominal only; ``note`` says why).

    >>> print(FeatureStatus("gain_db", "Gain", NOT_APPLIED, 2.0, 2.0, "the device has no Gain"))
    gain_db -> Gain: not applied, 2.0 is nominal only (the device has no Gain)
    """

    setting: str
    feature: str
    status: str
    requested: Any
    held: Any
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.setting} -> {self.feature}: {self.status}"
        if self.status == ADJUSTED:
            text += f" (asked {self.requested!r}, holds {self.held!r})"
        elif self.status == NOT_APPLIED:
            text += f", {self.requested!r} is nominal only"
        return text + (f" ({self.note})" if self.note else "")


# -- producers and devices -------------------------------------------------------------------------
class ProducerSlot:
    """One GenTL producer and its process-wide Harvester; ``open_count`` devices are open."""

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
        """The producer's devices (harvesters DeviceInfo), re-enumerated while none is open."""
        if self.open_count == 0 or not self.enumerated:
            self.harvester.update()
            self.enumerated = True
        return list(self.harvester.device_info_list)


#: Held while producers are loaded, enumerated, or devices opened or closed.
HUB_LOCK = threading.RLock()
_SLOTS: dict[str, ProducerSlot] = {}


def producer_slot(path: str | os.PathLike[str]) -> ProducerSlot:
    """The process-wide slot of a producer (created, and its library loaded, on first use)."""
    key = os.path.realpath(path)
    with HUB_LOCK:
        if key not in _SLOTS:
            _SLOTS[key] = ProducerSlot(Path(key))
        return _SLOTS[key]


def _split_entries(cti: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    items = [cti] if isinstance(cti, str | os.PathLike) else list(cti)
    out = []
    for item in items:
        out.extend(Path(p).expanduser() for p in str(item).split(os.pathsep) if p.strip())
    return out


def search_producers(cti: CtiSpec = None) -> tuple[list[Path], list[str]]:
    """The producers found and a description of every place searched (see find_producers)."""
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


def find_producers(cti: CtiSpec = None) -> list[Path]:
    """The GenTL producers (``.cti`` files) to use.

    Args:
        cti: a ``.cti`` file, a folder of them, a list of either, or an ``os.pathsep``-separated
            string (as in a config file). None: the folders in ``$GENICAM_GENTL64_PATH``.

    Raises:
        InitialiseError: an explicit path does not exist, or no producer was found (the message
            lists where it looked).
    """
    found, searched = search_producers(cti)
    if not found:
        raise InitialiseError(
            "No GenTL producer (.cti file) was found; searched: " + "; ".join(searched) + ". "
            f"Install your camera vendor's GenTL producer and set {GENTL_PATH_ENV} to its folder, "
            "or name it explicitly (a .cti file or folder: --cti on the command line, cti= in "
            "Python). For the simulators run "
            "`.venv/bin/python scripts/fetch_genicam_producers.py`."
        )
    return found


def _info_attr(dev: Any, name: str) -> str:
    try:
        value = getattr(dev, name)
    except LIBRARY_ERRORS:  # the producer does not give this piece of information
        return ""
    return "" if value is None else str(value)


def enumerate_devices(
    cti: CtiSpec = None,
) -> tuple[list[tuple[DeviceEntry, ProducerSlot, Any]], list[str]]:
    """``(entry, producer slot, harvesters DeviceInfo)`` per device, and the places searched."""
    paths = find_producers(cti)
    _, searched = search_producers(cti)
    rows: list[tuple[DeviceEntry, ProducerSlot, Any]] = []
    with HUB_LOCK:
        for path in paths:
            slot = producer_slot(path)
            for dev in slot.devices():
                entry = DeviceEntry(
                    index=len(rows),
                    vendor=_info_attr(dev, "vendor"),
                    model=_info_attr(dev, "model"),
                    serial=_info_attr(dev, "serial_number"),
                    id=_info_attr(dev, "id_"),
                    producer=str(slot.path),
                )
                rows.append((entry, slot, dev))
    return rows, searched


def list_devices(cti: CtiSpec = None) -> list[DeviceEntry]:
    """Every device the producers see (see :func:`find_producers` for ``cti``).

    A producer that has a device open is not re-enumerated (harvesters would close that device):
    its list is the one seen when it was last enumerated.
    """
    return [row[0] for row in enumerate_devices(cti)[0]]


# -- node map access -------------------------------------------------------------------------------
_READABLE = (genapi.EAccessMode.RO, genapi.EAccessMode.RW)
_WRITABLE = (genapi.EAccessMode.WO, genapi.EAccessMode.RW)
_IT = genapi.EInterfaceType
_SCALAR_TYPES = (_IT.intfIInteger, _IT.intfIFloat, _IT.intfIBoolean, _IT.intfIString,
                 _IT.intfIEnumeration)  # fmt: skip


class NodeAccess:
    """Features of a GenApi node map by name: presence, access, values, limits, checked writes.

    Feature sets differ per producer, so every feature is looked up before use. A refused write
    or a value out of range raises UnsupportedFeatureError (a sentence naming ``label``); errors
    of a device that stopped answering (:data:`LOST_ERRORS`) pass through unchanged.
    """

    def __init__(self, node_map: Any, label: str) -> None:
        self.node_map = node_map
        self.label = label

    def mode(self, name: str) -> Any:
        """The access mode (genapi.EAccessMode), or None when there is no such node."""
        try:
            return self.node_map.get_node(name).node.get_access_mode()
        except (genapi.LogicalErrorException, AttributeError):
            return None

    def present(self, name: str) -> bool:
        """The device implements the feature (it may be unavailable in the current state)."""
        return self.mode(name) not in (None, genapi.EAccessMode.NI)

    def readable(self, name: str) -> bool:
        return self.mode(name) in _READABLE

    def writable(self, name: str) -> bool:
        return self.mode(name) in _WRITABLE

    def get(self, name: str) -> Any:
        return self.node_map.get_node(name).value

    def entries(self, name: str) -> tuple[str, ...]:
        """The entries an enumeration offers now."""
        return tuple(self.node_map.get_node(name).symbolics)

    def limits(self, name: str) -> tuple[Any, Any, Any]:
        """``(min, max, inc)`` of a number (inc is None for floats)."""
        f = self.node_map.get_node(name)
        inc = f.inc if f.node.principal_interface_type == _IT.intfIInteger else None
        return f.min, f.max, inc

    def set(self, name: str, value: Any, setting: str) -> None:
        """Write a feature (skipped when it already holds ``value``)."""
        if self.readable(name) and self.get(name) == value:
            return
        if not self.writable(name):
            held = self.get(name) if self.readable(name) else "?"
            raise UnsupportedFeatureError(
                f"{self.label} does not let {name} be written now (for {setting}); it holds "
                f"{held!r} and {value!r} was asked."
            )
        try:
            self.node_map.get_node(name).value = value
        except LOST_ERRORS:
            raise
        except LIBRARY_ERRORS as e:
            raise UnsupportedFeatureError(
                f"{self.label} refused {name} = {value!r} (for {setting}): {e}"
            ) from e

    def check_range(self, name: str, value: float, setting: str, unit: str) -> None:
        if not self.readable(name):
            return  # unavailable in the current state: the write decides
        lo, hi, _ = self.limits(name)
        if not lo <= value <= hi:
            raise UnsupportedFeatureError(
                f"{self.label} takes {name} {lo:g}..{hi:g} {unit}; {setting}={value:g} was asked."
            )

    def check_entry(self, name: str, value: str, setting: str) -> None:
        if not self.readable(name):
            return  # unavailable in the current state: the write decides
        entries = self.entries(name)
        if value not in entries:
            raise UnsupportedFeatureError(
                f"{self.label} offers {name} {list(entries)}, not {value!r} ({setting})."
            )

    def snapshot(self, timeout_s: float) -> dict[str, Any]:
        """Every readable scalar feature as name -> value, within ``timeout_s`` (then the key
        ``BlurvidSnapshotTruncated`` is added). Features unreadable in the current state are
        skipped."""
        out: dict[str, Any] = {}
        t_end = time.monotonic() + timeout_s
        for feat in list(self.node_map.nodes):
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
            except LIBRARY_ERRORS:
                continue  # unreadable in the current state: skipped by design
            out[node.name] = value if isinstance(value, bool | int | float | str) else str(value)
        return out


# -- pure helpers ----------------------------------------------------------------------------------
#: The features :func:`trigger_window_problems` reads.
WINDOW_FEATURES = (
    "TriggerSelector", "TriggerMode", "TriggerSource", "TriggerActivation", "TriggerDelay",
    "ExposureMode", "ExposureTime", "ExposureAuto", "GainAuto", "AcquisitionFrameRateEnable",
    "AcquisitionFrameRate",
)  # fmt: skip


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
        line: the camera input wired to the controller's camera-trigger output.
        lead_us: the controller's lead from the trigger edge to chip 0.
        margin_us: extra exposure asked beyond the last chip (Timed exposure).

    >>> code = ShutterCode.parse("11100101", 1000)
    >>> good = {"TriggerMode": "On", "TriggerSource": "Line1", "ExposureMode": "TriggerWidth"}
    >>> trigger_window_problems(good, code)
    []
    >>> timed = {"TriggerMode": "On", "TriggerSource": "Line1", "ExposureTime": 5000.0}
    >>> print(trigger_window_problems(timed, code)[0].split(";")[0])
    ExposureTime is 5000 us but must cover 8150 us (lead 100 us + code 8000 us + margin 50 us)
    """
    if "TriggerMode" not in nodes:
        return [
            "the camera has no TriggerMode feature, so the shutter controller cannot trigger it; "
            "use a camera with a hardware trigger input"
        ]
    out: list[str] = []
    selector = nodes.get("TriggerSelector", "FrameStart")
    if selector != "FrameStart":
        out.append(
            f"TriggerSelector is {selector!r}, so the trigger settings read are not the frame "
            "trigger's; set it to FrameStart (apply_settings does)"
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
            f"TriggerDelay is {delay:g} us, longer than the lead of {lead_us:g} us, so "
            "the first chips would be lost; lower TriggerDelay or lengthen the lead"
        )
    out += _exposure_window_problems(nodes, code, delay, lead_us, margin_us)
    for auto in ("ExposureAuto", "GainAuto"):
        if nodes.get(auto, "Off") != "Off":
            out.append(f"{auto} is {nodes[auto]!r}; it must be 'Off' during a coded capture")
    if nodes.get("AcquisitionFrameRateEnable") is True:
        out.append(
            f"AcquisitionFrameRateEnable is on at {nodes.get('AcquisitionFrameRate', '?')} Hz, so "
            "faster triggers are ignored; switch it off (apply_settings does with trigger On)"
        )
    return out


def _exposure_window_problems(
    nodes: Mapping[str, Any], code: ShutterCode, delay_us: float, lead_us: float, margin_us: float
) -> list[str]:
    """The exposure part of :func:`trigger_window_problems`: the mode, and a Timed exposure's
    length against the lead (less the trigger delay), the code and the margin."""
    mode = nodes.get("ExposureMode", "Timed")
    if mode == "TriggerWidth":
        return []
    if mode != "Timed":
        return [f"ExposureMode is {mode!r}; use 'TriggerWidth' or 'Timed'"]
    lead = lead_us - min(delay_us, lead_us)
    need = lead + code.period_us + margin_us
    exposure = nodes.get("ExposureTime")
    if exposure is None:
        return [
            "the camera has no ExposureTime feature, so its timed exposure cannot be checked "
            "against the code; use exposure_mode='TriggerWidth' on a camera that has it"
        ]
    if float(exposure) < need:
        return [
            f"ExposureTime is {float(exposure):g} us but must cover {need:g} us (lead "
            f"{lead:g} us + code {code.period_us:g} us + margin {margin_us:g} us); use "
            "exposure_mode='TriggerWidth' or a longer exposure_us"
        ]
    return []


def snap(value: int, lo: int, hi: int, inc: int) -> int:
    """Round down to ``lo + k * inc`` and clamp into ``[lo, hi]`` (an integer feature's grid).

    >>> snap(101, 8, 4096, 4), snap(3, 8, 4096, 4), snap(5000, 8, 4096, 4)
    (100, 8, 4096)
    """
    inc = max(1, int(inc))
    v = min(max(int(value), lo), hi)
    return lo + (v - lo) // inc * inc
