"""Pure-Python implementation of the shutter-controller serial protocol, version 1.

The specification is ``firmware/PROTOCOL.md``; this module mirrors it and uses only the standard
library (no I/O, no threads), so the driver (:mod:`hw.arduino_shutter`), the port scanner
(:mod:`hw.serial_ports`) and the tests share one definition of every byte.

Wire format::

    wire:    COBS(packet) 0x00
    packet:  type(1) seq(1) body(n) crc(2)      crc = CRC-16/CCITT-FALSE over type seq body, LE

>>> frame = encode_frame(MsgType.GET_INFO, 1)
>>> frame.hex(" ")
'05 01 01 1f 3e 00'
>>> FrameReceiver().feed(frame)
[Packet(type=1, seq=1, body=b'')]
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hw.errors import CodeError, ProtocolError

# -- constants -------------------------------------------------------------------------------------

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

_U8, _U16, _U32 = 0xFF, 0xFFFF, 0xFFFF_FFFF


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

# -- CRC and COBS ----------------------------------------------------------------------------------


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR.

    Args:
        data: the bytes to check.
        crc: running value, to continue a CRC over several pieces.

    >>> hex(crc16_ccitt_false(b"123456789"))
    '0x29b1'
    """
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def cobs_encode(data: bytes | bytearray) -> bytes:
    """COBS-encode ``data`` (Cheshire & Baker 1999); the result contains no ``0x00``.

    A run of 254 non-zero bytes at the very end is not followed by an extra ``0x01`` (the
    shortest encoding); :func:`cobs_decode` accepts both forms.

    >>> cobs_encode(b"\\x11\\x00\\x00\\x22").hex(" ")
    '02 11 01 02 22'
    >>> cobs_encode(b"")
    b'\\x01'
    """
    out = bytearray(b"\x00")
    code_at, code = 0, 1
    n = len(data)
    for i, b in enumerate(data):
        if b:
            out.append(b)
            code += 1
        if not b or code == 0xFF:
            out[code_at] = code
            code = 1
            code_at = len(out)
            if not b or i < n - 1:
                out.append(0)
    if code_at < len(out):  # else the input ended exactly after a 254-byte block
        out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes | bytearray) -> bytes:
    """Decode one COBS frame (without its ``0x00`` delimiter).

    Raises:
        ProtocolError: ``data`` contains ``0x00`` or a code byte points past its end.

    >>> cobs_decode(bytes.fromhex("02 11 01 02 22"))
    b'\\x11\\x00\\x00"'
    """
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError(
                f"Invalid COBS frame: a 0x00 at offset {i}; a frame must be split at 0x00 first."
            )
        end = i + code
        if end > n:
            raise ProtocolError(
                f"Invalid COBS frame: the code byte 0x{code:02X} at offset {i} needs {code - 1} "
                f"more bytes but only {n - i - 1} follow."
            )
        block = data[i + 1 : end]
        if 0 in block:
            raise ProtocolError(f"Invalid COBS frame: a 0x00 inside the block at offset {i}.")
        out += block
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# -- packets and frames ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Packet:
    """One decoded packet: message type, sequence number and body (CRC already checked).

    Example:
        >>> Packet(0x87, 3, b"").name
        'FIRED'
    """

    type: int
    seq: int
    body: bytes = b""

    @property
    def name(self) -> str:
        return message_name(self.type)


@dataclass(frozen=True)
class FrameError:
    """A frame the receiver dropped: ``code`` is E_CRC, E_FRAMING, E_TOO_LONG or E_TIMEOUT, ``raw``
    the bytes it dropped (see :class:`FrameReceiver` for an example)."""

    code: ErrorCode
    message: str
    raw: bytes = b""


def encode_packet(msg_type: int, seq: int, body: bytes = b"") -> bytes:
    """``type seq body crc`` (CRC little-endian), before COBS.

    >>> encode_packet(MsgType.GET_INFO, 1).hex(" ")
    '01 01 1f 3e'
    """
    if not 0 <= int(msg_type) <= _U8 or not 0 <= int(seq) <= _U8:
        raise ValueError(f"type and seq are single bytes, got type={msg_type!r}, seq={seq!r}.")
    head = bytes((int(msg_type), int(seq))) + bytes(body)
    if len(head) + 2 > MAX_PACKET_BYTES:
        raise ValueError(
            f"A packet holds at most {MAX_PACKET_BYTES} bytes; this one would have {len(head) + 2}."
        )
    return head + struct.pack("<H", crc16_ccitt_false(head))


def decode_packet(packet: bytes) -> Packet:
    """Check the length and CRC of a packet (after COBS decoding) and split it.

    Raises:
        ProtocolError: shorter than 4 bytes or CRC mismatch (the receiver's E_CRC).
    """
    if len(packet) < MIN_PACKET_BYTES:
        raise ProtocolError(
            f"Packet of {len(packet)} bytes is shorter than {MIN_PACKET_BYTES} (type, seq, crc)."
        )
    (crc,) = struct.unpack_from("<H", packet, len(packet) - 2)
    want = crc16_ccitt_false(packet[:-2])
    if crc != want:
        raise ProtocolError(
            f"CRC mismatch in a {message_name(packet[0])} packet: received 0x{crc:04X}, "
            f"computed 0x{want:04X}."
        )
    return Packet(packet[0], packet[1], bytes(packet[2:-2]))


def encode_frame(msg_type: int, seq: int, body: bytes = b"") -> bytes:
    """The exact bytes to write to the port: ``COBS(packet) 0x00``.

    >>> encode_frame(MsgType.PING, 7, b"hi").hex(" ")
    '07 0a 07 68 69 f7 16 00'
    """
    return cobs_encode(encode_packet(msg_type, seq, body)) + b"\x00"


class FrameReceiver:
    """Turns received bytes into packets and frame-level errors, following the receiver rules.

    * bytes are collected until ``0x00``; empty frames are ignored;
    * more than 160 bytes before a ``0x00``: E_TOO_LONG, then everything up to and including the
      next ``0x00`` is discarded;
    * invalid COBS: E_FRAMING; packet shorter than 4 bytes or wrong CRC: E_CRC;
    * a half frame is dropped with E_TIMEOUT when no byte arrives for 50 ms. Bytes passed to one
      :meth:`feed` call count as arriving together; call :meth:`poll` while no bytes arrive.

    Args:
        clock: time source in seconds (``time.monotonic``; tests pass a fake clock).
        timeout_s: inter-byte timeout of a half frame.
        max_frame_bytes: the E_TOO_LONG limit.

    Example (``...`` elides the error's message):

        >>> t = [0.0]
        >>> rx = FrameReceiver(clock=lambda: t[0])
        >>> rx.feed(b"\\x03\\x11\\x00" + encode_frame(MsgType.PING, 3, b"x"))  # doctest: +ELLIPSIS
        [FrameError(code=<ErrorCode.E_FRAMING: 2>, ...), Packet(type=10, seq=3, body=b'x')]
        >>> rx.feed(b"\\x05\\x01")
        []
        >>> t[0] = 0.2
        >>> [e.code.name for e in rx.poll()]
        ['E_TIMEOUT']
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = FRAME_TIMEOUT_S,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self._clock = clock
        self._timeout_s = float(timeout_s)
        self._max = int(max_frame_bytes)
        self._buf = bytearray()
        self._discarding = False
        self._last_byte_s: float | None = None

    @property
    def collecting(self) -> bool:
        """True while part of a frame has been received."""
        return bool(self._buf)

    def reset(self) -> None:
        """Forget any half frame."""
        self._buf.clear()
        self._discarding = False
        self._last_byte_s = None

    def poll(self, now: float | None = None) -> list[FrameError]:
        """Drop a half frame that has waited too long; returns ``[E_TIMEOUT]`` or ``[]``."""
        now = self._clock() if now is None else now
        if (
            self._buf
            and self._last_byte_s is not None
            and now - self._last_byte_s >= self._timeout_s
        ):
            raw = bytes(self._buf)
            self._buf.clear()
            self._last_byte_s = None
            return [
                FrameError(
                    ErrorCode.E_TIMEOUT,
                    f"A half frame of {len(raw)} bytes was dropped: no byte for "
                    f"{self._timeout_s * 1000:g} ms.",
                    raw,
                )
            ]
        return []

    def feed(self, data: bytes | bytearray, now: float | None = None) -> list[Packet | FrameError]:
        """Add received bytes; returns the packets and frame errors they complete, in order."""
        now = self._clock() if now is None else now
        out: list[Packet | FrameError] = list(self.poll(now))
        for b in bytes(data):
            if b == 0:
                if self._discarding:
                    self._discarding = False
                elif self._buf:
                    out.append(self._finish(bytes(self._buf)))
                self._buf.clear()
            elif not self._discarding:
                self._buf.append(b)
                if len(self._buf) > self._max:
                    out.append(
                        FrameError(
                            ErrorCode.E_TOO_LONG,
                            f"More than {self._max} bytes arrived without a frame delimiter; "
                            "discarding up to the next 0x00.",
                            bytes(self._buf),
                        )
                    )
                    self._buf.clear()
                    self._discarding = True
        if data:
            self._last_byte_s = now
        return out

    @staticmethod
    def _finish(raw: bytes) -> Packet | FrameError:
        try:
            packet = cobs_decode(raw)
        except ProtocolError as e:
            return FrameError(ErrorCode.E_FRAMING, str(e), raw)
        try:
            return decode_packet(packet)
        except ProtocolError as e:
            return FrameError(ErrorCode.E_CRC, str(e), raw)


# -- chip timing -----------------------------------------------------------------------------------


def chip_ns_for(chip_us: float) -> int:
    """Chip duration in whole nanoseconds (rounded to the nearest ns).

    Check :func:`chip_us_problem` first: rounding hides durations that are not whole ns.

    >>> chip_ns_for(1000.5)
    1000500
    """
    if not math.isfinite(chip_us):
        raise CodeError(f"Chip duration {chip_us!r} us is not a finite number.")
    return int(round(float(chip_us) * 1000.0))


def is_chip_ns_valid(chip_ns: int) -> bool:
    """Whether the timer plays ``chip_ns`` exactly (the firmware never rounds).

    >>> is_chip_ns_valid(10_000), is_chip_ns_valid(32_768_000), is_chip_ns_valid(32_768_500)
    (True, True, False)
    """
    if int(chip_ns) != chip_ns:
        return False
    ns = int(chip_ns)
    if CHIP_NS_MIN <= ns <= FINE_MAX_NS:
        return ns % FINE_STEP_NS == 0
    if FINE_MAX_NS < ns <= CHIP_NS_MAX:
        return ns % COARSE_STEP_NS == 0
    return False


def _valid_floor_ns(x: float) -> int | None:
    if x < CHIP_NS_MIN:
        return None
    if x <= FINE_MAX_NS:
        return int(math.floor(x / FINE_STEP_NS)) * FINE_STEP_NS
    c = int(math.floor(x / COARSE_STEP_NS)) * COARSE_STEP_NS
    return FINE_MAX_NS if c <= FINE_MAX_NS else min(c, CHIP_NS_MAX)


def _valid_ceil_ns(x: float) -> int | None:
    if x > CHIP_NS_MAX:
        return None
    if x <= CHIP_NS_MIN:
        return CHIP_NS_MIN
    if x <= FINE_MAX_NS:
        return int(math.ceil(x / FINE_STEP_NS)) * FINE_STEP_NS
    return int(math.ceil(x / COARSE_STEP_NS)) * COARSE_STEP_NS


def nearest_valid_chip_us(chip_us: float) -> tuple[float, ...]:
    """The valid chip durations just below and just above ``chip_us`` (one when it is valid or
    out of range).

    >>> nearest_valid_chip_us(1000.3)
    (1000.0, 1000.5)
    >>> nearest_valid_chip_us(40000.0)
    (40000.0,)
    >>> nearest_valid_chip_us(5.0), nearest_valid_chip_us(1e6)
    ((10.0,), (262140.0,))
    """
    x = float(chip_us) * 1000.0
    found = {v for v in (_valid_floor_ns(x), _valid_ceil_ns(x)) if v is not None}
    return tuple(v / 1000.0 for v in sorted(found))


def chip_us_problem(chip_us: float) -> str | None:
    """Why the controller cannot play chips of ``chip_us``, or None when it can.

    The sentence proposes the nearest valid durations.

    >>> chip_us_problem(250.5) is None
    True
    >>> print(chip_us_problem(40001.0))  # doctest: +NORMALIZE_WHITESPACE
    The shutter controller cannot play chips of 40001 us exactly: its timer plays 10..32767.5 us
    in 0.5 us steps and 32768..262140 us in 4 us steps. Use 40000 us or 40004 us.
    """
    x = float(chip_us)
    if math.isfinite(x):
        ns = x * 1000.0
        if abs(ns - round(ns)) < 1e-6 and is_chip_ns_valid(int(round(ns))):
            return None
    else:
        return f"Chip duration {chip_us!r} us is not a finite number; use a duration in us."
    options = " or ".join(f"{v:g} us" for v in nearest_valid_chip_us(x))
    return (
        f"The shutter controller cannot play chips of {x:g} us exactly: its timer plays "
        f"{CHIP_NS_MIN / 1000:g}..{FINE_MAX_NS / 1000:g} us in {FINE_STEP_NS / 1000:g} us steps "
        f"and {(FINE_MAX_NS + FINE_STEP_NS) / 1000:g}..{CHIP_NS_MAX / 1000:g} us in "
        f"{COARSE_STEP_NS / 1000:g} us steps. Use {options}."
    )


def is_chip_us_representable(chip_us: float) -> bool:
    """Whether chips of ``chip_us`` microseconds can be played exactly.

    >>> is_chip_us_representable(1000), is_chip_us_representable(1000.25)
    (True, False)
    """
    return chip_us_problem(chip_us) is None


def timer_setting(chip_ns: int) -> tuple[int, int]:
    """``(prescaler, ticks)`` the firmware programs for a valid ``chip_ns``.

    >>> timer_setting(1_000_000), timer_setting(40_000_000)
    ((8, 2000), (64, 10000))
    """
    if not is_chip_ns_valid(chip_ns):
        raise CodeError(f"{chip_ns} ns is not a chip duration the timer can play.")
    if chip_ns <= FINE_MAX_NS:
        return 8, chip_ns // FINE_STEP_NS
    return 64, chip_ns // COARSE_STEP_NS


# -- request bodies --------------------------------------------------------------------------------


def pack_bits(bits: Iterable[int] | str) -> bytes:
    """Chip ``k`` is bit ``7 - k % 8`` of byte ``k // 8``; unused bits are 0.

    >>> pack_bits("11100101").hex(), pack_bits("1").hex(), pack_bits("101100111").hex()
    ('e5', '80', 'b380')
    """
    seq = [int(c) for c in bits]
    out = bytearray((len(seq) + 7) // 8)
    for k, b in enumerate(seq):
        if b not in (0, 1):
            raise CodeError(f"Chip {k} is {b!r}; chips are 0 (closed) or 1 (open).")
        if b:
            out[k // 8] |= 0x80 >> (k % 8)
    return bytes(out)


def unpack_bits(data: bytes, n_chips: int) -> tuple[int, ...]:
    """Inverse of :func:`pack_bits`.

    >>> unpack_bits(bytes([0xE5]), 8)
    (1, 1, 1, 0, 0, 1, 0, 1)
    """
    if len(data) != (n_chips + 7) // 8:
        raise ProtocolError(
            f"{n_chips} chips need {(n_chips + 7) // 8} bytes of bits, got {len(data)}."
        )
    return tuple((data[k // 8] >> (7 - k % 8)) & 1 for k in range(n_chips))


def load_code_body(bits: Iterable[int] | str, chip_ns: int) -> bytes:
    """Body of LOAD_CODE: ``u16 n_chips, u32 chip_ns, bits``.

    Raises:
        CodeError: 0 or more than 1024 chips, no open chip, a chip other than 0/1, or a chip
            duration the timer cannot play (the message proposes valid ones).

    >>> load_code_body("11100101", 1_000_000).hex(" ")
    '08 00 40 42 0f 00 e5'
    """
    seq = tuple(int(c) for c in bits)
    if not 1 <= len(seq) <= MAX_CHIPS:
        raise CodeError(f"A code needs 1 to {MAX_CHIPS} chips; this one has {len(seq)}.")
    packed = pack_bits(seq)
    if not any(seq):
        raise CodeError("The code has no open chip; open at least one chip (a 1).")
    if not is_chip_ns_valid(chip_ns):
        raise CodeError(
            chip_us_problem(chip_ns / 1000.0) or f"{chip_ns} ns is not a valid chip duration."
        )
    return struct.pack("<HI", len(seq), int(chip_ns)) + packed


def _check_range(name: str, value: int, lo: int, hi: int, unit: str = "") -> int:
    if int(value) != value or not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}{unit}, got {value!r}.")
    return int(value)


def configure_body(
    *,
    mode: int = PlaybackMode.SINGLE,
    repeats: int = 1,
    period_ns: int = 0,
    lead_ns: int = 100_000,
    trigger_style: int = TriggerStyle.LEVEL,
    pulse_ns: int = 10_000,
    start_source: int = StartSource.HOST,
    flags: int = FLAG_DMD_PULSE,
) -> bytes:
    """Body of CONFIGURE (18 bytes); checks every documented range that does not depend on the
    code (the period is checked by the device at ARM).

    Raises:
        ValueError: a field out of its documented range (the sentence names it).

    >>> len(configure_body()), configure_body()[:3].hex(" ")
    (18, '00 01 00')
    """
    mode = _check_range("mode", mode, 0, 2, " (0 single, 1 repeat, 2 continuous)")
    repeats = _check_range("repeats", repeats, 1, _U16)
    period_ns = _check_range("period_ns", period_ns, 0, _U32, " ns")
    lead_ns = _check_range("lead_ns", lead_ns, LEAD_NS_MIN, LEAD_NS_MAX, " ns")
    trigger_style = _check_range("trigger_style", trigger_style, 0, 1, " (0 level, 1 pulse)")
    pulse_hi = lead_ns if trigger_style == TriggerStyle.PULSE else _U32
    pulse_ns = _check_range("pulse_ns", pulse_ns, PULSE_NS_MIN, pulse_hi, " ns")
    start_source = _check_range("start_source", start_source, 0, 1, " (0 host, 1 TRIG_IN)")
    flags = _check_range("flags", flags, 0, FLAG_DMD_PULSE, " (only bit 0 is defined)")
    return struct.pack(
        "<BHIIBIBB",
        mode,
        repeats,
        period_ns,
        lead_ns,
        trigger_style,
        pulse_ns,
        start_source,
        flags,
    )


def ping_body(payload: bytes = b"") -> bytes:
    """Body of PING: 0..32 bytes, returned unchanged in PONG."""
    payload = bytes(payload)
    if len(payload) > MAX_PING_BYTES:
        raise ValueError(
            f"A PING carries at most {MAX_PING_BYTES} bytes; this one has {len(payload)}."
        )
    return payload


# -- reply bodies ----------------------------------------------------------------------------------


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


def code_sha256_bytes(bits: Iterable[int]) -> bytes:
    """SHA-256 (32 bytes) of the ASCII ``0``/``1`` string of a code, as STATUS carries it.

    Same definition as :func:`hw.types.code_sha256`.
    """
    return hashlib.sha256("".join(str(int(b)) for b in bits).encode("ascii")).digest()
