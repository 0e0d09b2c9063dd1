"""Pure-Python implementation of the shutter-controller serial protocol, version 1.

The specification is ``firmware/PROTOCOL.md``; this module mirrors it and uses only the standard
library (no I/O, no threads), so the driver (:mod:`hw.arduino_shutter`), the port scanner
(:mod:`hw.serial_ports`) and the tests share one definition of every byte.

This module holds the framing (CRC, COBS, packets, :class:`FrameReceiver`), the chip timing and
the request bodies. The constants, message types and error codes live in
:mod:`hw.shutter_constants` and the reply bodies in :mod:`hw.shutter_messages`; every public name
of both is re-exported here, so ``from hw import shutter_protocol as sp`` reaches them all.

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

import binascii
import math
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hw.errors import CodeError, ProtocolError

# Re-exported (see __all__). Neither module imports this one: the imports form no cycle.
from hw.shutter_constants import (
    BAUDRATE,
    BOARD_NAMES,
    CHIP_NS_MAX,
    CHIP_NS_MIN,
    COARSE_STEP_NS,
    ERROR_HELP,
    FINE_MAX_NS,
    FINE_STEP_NS,
    FLAG_DMD_PULSE,
    FRAME_LEVEL_ERRORS,
    FRAME_TIMEOUT_S,
    LEAD_NS_MAX,
    LEAD_NS_MIN,
    MAGIC,
    MAX_CHIPS,
    MAX_FRAME_BYTES,
    MAX_PACKET_BYTES,
    MAX_PING_BYTES,
    MIN_GAP_NS,
    MIN_PACKET_BYTES,
    PROTOCOL_VERSION,
    PULSE_NS_MIN,
    REPLY_FLAG,
    REQUEST_TYPES,
    RESET_CAUSES,
    STATUS_REPLY_TYPES,
    DeviceState,
    DoneResult,
    ErrorCode,
    MsgType,
    PlaybackMode,
    StartSource,
    TriggerStyle,
    error_help,
    error_name,
    message_name,
    reply_type,
)
from hw.shutter_messages import (
    DeviceInfo,
    DeviceStatus,
    DoneEvent,
    ErrorReply,
    FiredReply,
    info_problem,
)

__all__ = [
    "BAUDRATE",
    "BOARD_NAMES",
    "CHIP_NS_MAX",
    "CHIP_NS_MIN",
    "COARSE_STEP_NS",
    "DeviceInfo",
    "DeviceState",
    "DeviceStatus",
    "DoneEvent",
    "DoneResult",
    "ERROR_HELP",
    "ErrorCode",
    "ErrorReply",
    "FINE_MAX_NS",
    "FINE_STEP_NS",
    "FLAG_DMD_PULSE",
    "FRAME_LEVEL_ERRORS",
    "FRAME_TIMEOUT_S",
    "FiredReply",
    "FrameError",
    "FrameReceiver",
    "LEAD_NS_MAX",
    "LEAD_NS_MIN",
    "MAGIC",
    "MAX_CHIPS",
    "MAX_FRAME_BYTES",
    "MAX_PACKET_BYTES",
    "MAX_PING_BYTES",
    "MIN_GAP_NS",
    "MIN_PACKET_BYTES",
    "MsgType",
    "PROTOCOL_VERSION",
    "PULSE_NS_MIN",
    "Packet",
    "PlaybackMode",
    "REPLY_FLAG",
    "REQUEST_TYPES",
    "RESET_CAUSES",
    "STATUS_REPLY_TYPES",
    "StartSource",
    "TriggerStyle",
    "chip_ns_for",
    "chip_us_problem",
    "cobs_decode",
    "cobs_encode",
    "configure_body",
    "crc16_ccitt_false",
    "decode_packet",
    "encode_frame",
    "encode_packet",
    "error_help",
    "error_name",
    "info_problem",
    "is_chip_ns_valid",
    "is_chip_us_representable",
    "load_code_body",
    "message_name",
    "nearest_valid_chip_us",
    "pack_bits",
    "ping_body",
    "reply_type",
    "timer_setting",
    "unpack_bits",
]

_U8, _U16, _U32 = 0xFF, 0xFFFF, 0xFFFF_FFFF

# -- CRC and COBS ----------------------------------------------------------------------------------


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR.

    This is the standard library's ``binascii.crc_hqx`` started at 0xFFFF (the tests check it
    against the bit-by-bit definition and the examples of ``firmware/PROTOCOL.md``).

    Args:
        data: the bytes to check.
        crc: running value, to continue a CRC over several pieces.

    >>> hex(crc16_ccitt_false(b"123456789"))
    '0x29b1'
    """
    return binascii.crc_hqx(data, crc)


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
