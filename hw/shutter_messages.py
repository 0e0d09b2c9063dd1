"""Reply bodies of the shutter-controller protocol, version 1: parsers and builders.

Part of :mod:`hw.shutter_protocol`, which re-exports every public name here; import them from
there (``from hw import shutter_protocol as sp``). Each reply is a frozen dataclass with
``from_body`` (parse, checking the length) and ``to_body`` (build, for tests and fakes). Standard
library only. The specification is ``firmware/PROTOCOL.md``.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass

from hw.errors import ProtocolError
from hw.shutter_constants import (
    BOARD_NAMES,
    CHIP_NS_MAX,
    CHIP_NS_MIN,
    COARSE_STEP_NS,
    FINE_MAX_NS,
    FINE_STEP_NS,
    FLAG_DMD_PULSE,
    FRAME_LEVEL_ERRORS,
    MAGIC,
    MAX_CHIPS,
    PROTOCOL_VERSION,
    RESET_CAUSES,
    DeviceState,
    DoneResult,
    PlaybackMode,
    StartSource,
    TriggerStyle,
    error_help,
    error_name,
    message_name,
)


def _check_length(what: str, body: bytes, size: int) -> None:
    if len(body) != size:
        raise ProtocolError(
            f"A {what} body must be {size} bytes, but the shutter controller sent {len(body)}: "
            "host and firmware disagree on the protocol layout. Flash firmware/blurvid_shutter "
            "from this checkout."
        )


_INFO = struct.Struct("<4sBBBBBHIIIHHIBBB")
_STATUS = struct.Struct("<BBIHIBI32sBHIIBIBBBB")
_FIRED = struct.Struct("<IH")
_DONE = struct.Struct("<IIB")
_ERROR = struct.Struct("<BBH")


def info_problem(body: bytes) -> str | None:
    """Why an INFO/READY body is not from protocol-1 blurvid firmware, or None when it is.

    Only the magic and the protocol version are checked (they come first in every version);
    :meth:`DeviceInfo.from_body` checks the rest.

    >>> info_problem(b"ABCD\\x01") is not None, info_problem(DeviceInfo().to_body())
    (True, None)
    """
    if body[:4] != MAGIC:
        return (
            f"it announced itself as {bytes(body[:4])!r} instead of {MAGIC!r}, so it does not "
            "run the blurvid shutter firmware"
        )
    if len(body) < 5:
        return "its INFO body ends before the protocol version"
    if body[4] != PROTOCOL_VERSION:
        fw = ".".join(str(b) for b in body[5:8]) if len(body) >= 8 else "?"
        return (
            f"it runs blurvid shutter firmware {fw} with protocol version {body[4]}, but this "
            f"driver speaks protocol version {PROTOCOL_VERSION}"
        )
    return None


@dataclass(frozen=True)
class DeviceInfo:
    """The INFO body (34 bytes), sent in reply to GET_INFO and in READY at boot.

    Example:
        >>> info = DeviceInfo.from_body(DeviceInfo(fw_major=1, fw_minor=2).to_body())
        >>> info.firmware_version, info.max_chips, info.board_name
        ('1.2.0', 1024, 'ATmega328P (Uno, Nano)')
    """

    magic: bytes = MAGIC
    protocol_version: int = PROTOCOL_VERSION
    fw_major: int = 0
    fw_minor: int = 0
    fw_patch: int = 0
    board: int = 1
    max_chips: int = MAX_CHIPS
    chip_ns_min: int = CHIP_NS_MIN
    chip_ns_max: int = CHIP_NS_MAX
    fine_max_ns: int = FINE_MAX_NS
    fine_step_ns: int = FINE_STEP_NS
    coarse_step_ns: int = COARSE_STEP_NS
    f_cpu_hz: int = 16_000_000
    reset_cause: int = 0
    eeprom_restored: bool = False
    reserved: int = 0

    SIZE = _INFO.size

    @classmethod
    def from_body(cls, body: bytes) -> DeviceInfo:
        """Parse an INFO body; raises ProtocolError on a wrong length."""
        _check_length("INFO", body, _INFO.size)
        v = _INFO.unpack(body)
        return cls(*v[:14], bool(v[14]), v[15])

    def to_body(self) -> bytes:
        return _INFO.pack(*dataclasses.astuple(self))

    @property
    def firmware_version(self) -> str:
        """``"major.minor.patch"``."""
        return f"{self.fw_major}.{self.fw_minor}.{self.fw_patch}"

    @property
    def board_name(self) -> str:
        return BOARD_NAMES.get(self.board, f"unknown board {self.board}")

    @property
    def reset_causes(self) -> tuple[str, ...]:
        """Names of the MCUSR bits set in ``reset_cause`` (e.g. ``("brown-out",)``)."""
        return tuple(name for bit, name in RESET_CAUSES.items() if self.reset_cause & bit)


@dataclass(frozen=True)
class DeviceStatus:
    """The STATUS body (69 bytes): what the controller holds and does.

    ``code_sha256`` is the firmware's SHA-256 (hex) of the ASCII ``0``/``1`` string of the code
    it stores (64 zeros without a code).

    Example:
        >>> st = DeviceStatus.from_body(DeviceStatus(state=1, n_chips=8).to_body())
        >>> st.state_name, st.has_code, st.eeprom_valid
        ('loaded', True, False)
    """

    state: int = DeviceState.NO_CODE
    last_error: int = 0
    trigger_count: int = 0
    n_chips: int = 0
    chip_ns: int = 0
    prescaler: int = 0
    chip_ticks: int = 0
    code_sha256: str = "0" * 64
    mode: int = PlaybackMode.SINGLE
    repeats: int = 1
    period_ns: int = 0
    lead_ns: int = 100_000
    trigger_style: int = TriggerStyle.LEVEL
    pulse_ns: int = 0
    start_source: int = StartSource.HOST
    flags: int = FLAG_DMD_PULSE
    eeprom: int = 0
    reserved: int = 0

    SIZE = _STATUS.size

    @classmethod
    def from_body(cls, body: bytes) -> DeviceStatus:
        """Parse a STATUS body; raises ProtocolError on a wrong length."""
        _check_length("STATUS", body, _STATUS.size)
        v = list(_STATUS.unpack(body))
        v[7] = v[7].hex()
        return cls(*v)

    def to_body(self) -> bytes:
        fields = list(dataclasses.astuple(self))
        fields[7] = bytes.fromhex(self.code_sha256)
        return _STATUS.pack(*fields)

    @property
    def state_name(self) -> str:
        """``"idle"`` (no code), ``"loaded"``, ``"armed"`` or ``"playing"``."""
        names = ("idle", "loaded", "armed", "playing")
        return names[self.state] if 0 <= self.state < len(names) else f"unknown({self.state})"

    @property
    def has_code(self) -> bool:
        return self.n_chips > 0

    @property
    def eeprom_valid(self) -> bool:
        return bool(self.eeprom & 1)

    @property
    def code_ns(self) -> int:
        """Duration of the code (all chips) in ns."""
        return self.n_chips * self.chip_ns


@dataclass(frozen=True)
class FiredReply:
    """The FIRED body: index of the first playback and how many follow (0 = continuous).

    Example:
        >>> FiredReply.from_body(bytes.fromhex("07000000 0100"))
        FiredReply(first_trigger_index=7, playbacks=1)
    """

    first_trigger_index: int
    playbacks: int

    @classmethod
    def from_body(cls, body: bytes) -> FiredReply:
        _check_length("FIRED", body, _FIRED.size)
        return cls(*_FIRED.unpack(body))

    def to_body(self) -> bytes:
        return _FIRED.pack(self.first_trigger_index, self.playbacks)


@dataclass(frozen=True)
class DoneEvent:
    """The DONE body: the playbacks started at ``first_trigger_index`` have ended.

    ``result``: 0 complete, 1 aborted by DISARM, 2 timing overrun.

    Example:
        >>> done = DoneEvent.from_body(bytes.fromhex("07000000 01000000 02"))
        >>> done.played, done.result_name, done.complete
        (1, 'overrun', False)
    """

    first_trigger_index: int
    played: int
    result: int

    @classmethod
    def from_body(cls, body: bytes) -> DoneEvent:
        _check_length("DONE", body, _DONE.size)
        return cls(*_DONE.unpack(body))

    def to_body(self) -> bytes:
        return _DONE.pack(self.first_trigger_index, self.played, self.result)

    @property
    def result_name(self) -> str:
        try:
            return DoneResult(self.result).name.lower()
        except ValueError:
            return f"unknown({self.result})"

    @property
    def complete(self) -> bool:
        return self.result == DoneResult.COMPLETE


@dataclass(frozen=True)
class ErrorReply:
    """The ERROR body: error code, the request type it answers (0: frame level), detail.

    Example:
        >>> e = ErrorReply.from_body(bytes([0x0A, 0x03, 0, 0]))
        >>> e.name, e.request_name, e.frame_level
        ('E_BUSY', 'LOAD_CODE', False)
    """

    code: int
    request: int
    detail: int = 0

    @classmethod
    def from_body(cls, body: bytes) -> ErrorReply:
        _check_length("ERROR", body, _ERROR.size)
        return cls(*_ERROR.unpack(body))

    def to_body(self) -> bytes:
        return _ERROR.pack(self.code, self.request, self.detail)

    @property
    def name(self) -> str:
        return error_name(self.code)

    @property
    def request_name(self) -> str:
        return "frame" if self.request == 0 else message_name(self.request)

    @property
    def frame_level(self) -> bool:
        return self.request == 0 and self.code in FRAME_LEVEL_ERRORS

    def describe(self) -> str:
        """One sentence: the code, the detail and what to do."""
        detail = f" (detail {self.detail})" if self.detail else ""
        return f"{self.name}{detail}: {error_help(self.code)}"
