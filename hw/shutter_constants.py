"""Constants, message types, error codes and field enums of the shutter-controller protocol, v1.

Part of :mod:`hw.shutter_protocol`, which re-exports every name here; import them from there
(``from hw import shutter_protocol as sp``). Standard library only, like the rest of the protocol.
The specification is ``firmware/PROTOCOL.md``.

>>> MsgType.LOAD_CODE | REPLY_FLAG == MsgType.STATUS_LOAD_CODE
True
"""

from __future__ import annotations

import enum

PROTOCOL_VERSION = 1
MAGIC = b"BVSH"
BAUDRATE = 115200

#: Receiver rules: more than this many bytes before a 0x00 is E_TOO_LONG.
MAX_FRAME_BYTES = 160
#: Receiver rules: a half frame is dropped when no byte arrives for this long.
FRAME_TIMEOUT_S = 0.050
#: type(1) + seq(1) + crc(2).
MIN_PACKET_BYTES = 4
#: LOAD_CODE with 1024 chips.
MAX_PACKET_BYTES = 138
MAX_CHIPS = 1024
MAX_PING_BYTES = 32
#: Bit of the reply type: reply = request | REPLY_FLAG.
REPLY_FLAG = 0x80

#: Chip timing (firmware/PROTOCOL.md, "Chip timing"): Timer1 at clk/8 (0.5 us ticks), then clk/64.
CHIP_NS_MIN = 10_000
FINE_STEP_NS = 500
FINE_MAX_NS = 32_767_500
COARSE_STEP_NS = 4_000
CHIP_NS_MAX = 262_140_000
#: CONFIGURE limits.
LEAD_NS_MIN = 10_000
LEAD_NS_MAX = FINE_MAX_NS
PULSE_NS_MIN = 10_000
#: Shortest gap between playbacks: period 0 means lead + code + this.
MIN_GAP_NS = 20_000


class MsgType(enum.IntEnum):
    """Message types (first byte of every packet)."""

    GET_INFO = 0x01
    GET_STATUS = 0x02
    LOAD_CODE = 0x03
    CONFIGURE = 0x04
    ARM = 0x05
    DISARM = 0x06
    FIRE = 0x07
    SAVE = 0x08
    ERASE = 0x09
    PING = 0x0A
    ERROR = 0x7F
    INFO = 0x81
    STATUS_GET = 0x82
    STATUS_LOAD_CODE = 0x83
    STATUS_CONFIGURE = 0x84
    STATUS_ARM = 0x85
    STATUS_DISARM = 0x86
    FIRED = 0x87
    STATUS_SAVE = 0x88
    STATUS_ERASE = 0x89
    PONG = 0x8A
    READY = 0xC0
    DONE = 0xC1


#: Requests the host may send.
REQUEST_TYPES = frozenset(t for t in MsgType if t < MsgType.ERROR)
#: Reply types whose body is a STATUS body.
STATUS_REPLY_TYPES = frozenset({0x82, 0x83, 0x84, 0x85, 0x86, 0x88, 0x89})


def reply_type(request: int) -> int:
    """The type of the success reply to ``request``.

    >>> hex(reply_type(MsgType.LOAD_CODE))
    '0x83'
    """
    return int(request) | REPLY_FLAG


def message_name(msg_type: int) -> str:
    """Human name of a message type, e.g. ``"LOAD_CODE"``; unknown types as ``"0x42"``."""
    try:
        return MsgType(msg_type).name
    except ValueError:
        return f"0x{msg_type:02X}"


class ErrorCode(enum.IntEnum):
    """Error codes carried by ERROR packets."""

    E_CRC = 0x01
    E_FRAMING = 0x02
    E_TOO_LONG = 0x03
    E_TIMEOUT = 0x04
    E_UNKNOWN_TYPE = 0x05
    E_LENGTH = 0x06
    E_CODE_LENGTH = 0x07
    E_CHIP_TIMING = 0x08
    E_BAD_VALUE = 0x09
    E_BUSY = 0x0A
    E_NO_CODE = 0x0B
    E_NOT_ARMED = 0x0C
    E_CONFIG = 0x0D
    E_EEPROM = 0x0E
    E_OVERRUN = 0x0F
    E_RX_OVERFLOW = 0x10


#: Errors about a damaged frame: answered with seq 0, request 0; the host resends its request.
FRAME_LEVEL_ERRORS = frozenset(
    {
        ErrorCode.E_CRC,
        ErrorCode.E_FRAMING,
        ErrorCode.E_TOO_LONG,
        ErrorCode.E_TIMEOUT,
        ErrorCode.E_RX_OVERFLOW,
    }
)

#: One sentence per error code: what it means and what to do.
ERROR_HELP: dict[ErrorCode, str] = {
    ErrorCode.E_CRC: (
        "A frame arrived damaged (too short or with a wrong CRC); the host resends it, and if "
        "this keeps happening check the USB cable and that both sides use 115200 baud."
    ),
    ErrorCode.E_FRAMING: (
        "A frame was not valid COBS, usually line noise or a baud-rate mismatch; the host "
        "resends it, and if this keeps happening check the cable and the baud rate (115200)."
    ),
    ErrorCode.E_TOO_LONG: (
        "More than 160 bytes arrived without a frame delimiter, so another program may be "
        "writing to the port or the baud rate is wrong; close other programs that use the port."
    ),
    ErrorCode.E_TIMEOUT: (
        "A frame stopped half-way for more than 50 ms and was dropped; the host resends it, and "
        "if this keeps happening check the USB cable and avoid overloaded USB hubs."
    ),
    ErrorCode.E_UNKNOWN_TYPE: (
        "The firmware does not know this request type, so host and firmware versions differ; "
        "flash firmware/blurvid_shutter from this checkout."
    ),
    ErrorCode.E_LENGTH: (
        "The request body had the wrong length for its type (detail: the expected length), so "
        "host and firmware disagree on the protocol; flash firmware/blurvid_shutter from this "
        "checkout."
    ),
    ErrorCode.E_CODE_LENGTH: (
        "The code has no chip or more chips than the controller holds (detail: the maximum); "
        "use a code of 1 to 1024 chips."
    ),
    ErrorCode.E_CHIP_TIMING: (
        "The chip duration is not one the timer plays exactly; use 10..32767.5 us in 0.5 us "
        "steps, or up to 262140 us in 4 us steps."
    ),
    ErrorCode.E_BAD_VALUE: (
        "A field of the request is out of range (detail: its byte offset in the body); check "
        "the value against firmware/PROTOCOL.md."
    ),
    ErrorCode.E_BUSY: (
        "The request is not allowed while the controller is armed or playing; disarm it first."
    ),
    ErrorCode.E_NO_CODE: "The request needs a loaded code; load a code first.",
    ErrorCode.E_NOT_ARMED: (
        "FIRE needs the controller armed with start_source 'host'; arm it first (a controller "
        "armed for an external start plays on a rising edge of TRIG_IN instead)."
    ),
    ErrorCode.E_CONFIG: (
        "The playback configuration does not fit the code (period shorter than lead + code + "
        "20 us, or lead or pulse too long); lengthen the period or shorten the lead or pulse."
    ),
    ErrorCode.E_EEPROM: (
        "The EEPROM write could not be verified; try again, and if it keeps failing the EEPROM "
        "may be worn out (the loaded code still plays until the next reset)."
    ),
    ErrorCode.E_OVERRUN: (
        "The timer interrupt missed a chip boundary and the playback was aborted; use longer "
        "chips and try again."
    ),
    ErrorCode.E_RX_OVERFLOW: (
        "The controller's receive buffer overflowed and bytes were lost; the host resends, and "
        "if this keeps happening send one request at a time and wait for its reply."
    ),
}


def error_name(code: int) -> str:
    """Name of an error code, e.g. ``"E_BUSY"``; unknown codes as ``"0x42"``."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:02X}"


def error_help(code: int) -> str:
    """The sentence of :data:`ERROR_HELP` for ``code`` (also for unknown codes)."""
    try:
        return ERROR_HELP[ErrorCode(code)]
    except ValueError:
        return (
            f"Error code 0x{code:02X} is not part of protocol version {PROTOCOL_VERSION}; flash "
            "firmware/blurvid_shutter from this checkout."
        )


class DeviceState(enum.IntEnum):
    """``state`` of a STATUS body."""

    NO_CODE = 0
    LOADED = 1
    ARMED = 2
    PLAYING = 3


class PlaybackMode(enum.IntEnum):
    SINGLE = 0
    REPEAT = 1
    CONTINUOUS = 2


class TriggerStyle(enum.IntEnum):
    LEVEL = 0
    PULSE = 1


class StartSource(enum.IntEnum):
    HOST = 0
    EXTERNAL = 1


class DoneResult(enum.IntEnum):
    COMPLETE = 0
    ABORTED = 1
    OVERRUN = 2


#: CONFIGURE flags, bit 0: pulse the DMD trigger line at the start of every chip.
FLAG_DMD_PULSE = 0x01
BOARD_NAMES = {1: "ATmega328P (Uno, Nano)"}
RESET_CAUSES = {1: "power-on", 2: "external", 4: "brown-out", 8: "watchdog"}
