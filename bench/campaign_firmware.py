"""Hostile-line campaign: feed the real shutter firmware, in simavr, 38 kinds of garbage over its
serial line and check that it recovers after each.

    make -C firmware all sim && python bench/campaign_firmware.py [--seed 0] [--only KIND] [--list]

The compiled firmware (``firmware/build/blurvid_shutter.elf``, or ``--elf``) runs in the ``bvsim``
harness, paced to real time, behind a pty opened raw (no driver: nothing retries or hides what
the board answers). The kinds come from firmware/PROTOCOL.md: random bytes, lines without a
delimiter, lone delimiters and bursts of them, 0xFF floods, frames at and over the 160-byte limit,
half frames, bad CRCs and bad COBS, short packets, unknown and reply types, wrong lengths, the
largest code and codes over the limit or with invalid chips, bad CONFIGURE fields, requests out of
order, byte-by-byte requests, a pause inside a frame, pipelined requests, garbage between valid
requests, a resent FIRE, noise and refused requests during a playback, a break inside a frame,
and the receive ring filled exactly on a delimiter.

After each kind the campaign waits for the line to go quiet (so a half frame has timed out on the
device), then checks **recovery**: a GET_STATUS and a PING with a random payload, each answered
correctly within 1 s (STATUS, and PONG with the same bytes); the board did not reset (no READY
frame, the trigger count did not go down, the code is still loaded) and the harness still runs.
A kind whose GET_STATUS gets no answer, also after one resend, is **hung**; a hung, reset or dead
board is restarted before the next kind. Where PROTOCOL.md fixes the answers (which errors, how
many replies: every request gets exactly one answer), the campaign also checks them.

Prints one line per kind (what was sent, the answers seen, whether they are what PROTOCOL.md
says, recovered or not), then ``kinds N / recovered M / hung K``. Exits 1 if any kind did not
recover or was answered against PROTOCOL.md, 2 if the firmware or the harness cannot be built.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import serial  # noqa: E402

from common.codes import code_sha256  # noqa: E402
from hw import shutter_protocol as sp  # noqa: E402
from hw.sim.avr import SimulatedArduino  # noqa: E402

E = sp.ErrorCode
T = sp.MsgType
FIRMWARE_ELF = REPO / "firmware" / "build" / "blurvid_shutter.elf"
BAD_FRAME = frozenset({E.E_CRC, E.E_FRAMING})  # a frame that lost or changed bytes
OVERFLOW = frozenset({E.E_RX_OVERFLOW, E.E_CRC, E.E_FRAMING})  # pipelined requests, refused
BASE_CODE = "11100101"
QUIET_S = 0.3  # silence that ends a kind: more than the device's 50 ms half-frame timeout
BYTE_S = 11 / 117_647 * 1.05  # one byte on simavr's UART (11 bit times at 117 647 baud), + 5 %
ANSWER_S = 1.0  # the recovery requests must be answered within this

Check = Callable[[list[sp.Packet]], str | None]


# -- the line --------------------------------------------------------------------------------------
class Link:
    """The board's port, opened raw; a reader thread turns what arrives into packets."""

    def __init__(self, port: str) -> None:
        self.port = serial.Serial(port, sp.BAUDRATE, timeout=0.01)
        # the host's own half-frame timeout is not under test: a stall of the paced simulator on
        # a loaded machine must not cut the device's frames
        self.rx = sp.FrameReceiver(timeout_s=1.0)
        self.items: list[sp.Packet | sp.FrameError] = []
        self.lock = threading.Lock()
        self.last_rx = self.tx_done = time.monotonic()
        self.sent = 0
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                data = self.port.read(max(1, self.port.in_waiting))
            except (serial.SerialException, OSError, TypeError):
                return  # the port closed, or the harness died
            now = time.monotonic()
            got = self.rx.feed(data, now) if data else self.rx.poll(now)
            with self.lock:
                if data:
                    self.last_rx = now
                self.items += got

    def close(self) -> None:
        self._stop = True
        self._thread.join(1.0)
        self.port.close()

    def write(self, data: bytes) -> None:
        """Write at once; the bytes reach the AVR at the UART's pace (``tx_done``)."""
        self.port.write(data)
        self.sent += len(data)
        self.tx_done = max(time.monotonic(), self.tx_done) + len(data) * BYTE_S

    def mark(self) -> int:
        with self.lock:
            return len(self.items)

    def packets(self, since: int = 0) -> list[sp.Packet]:
        with self.lock:
            return [i for i in self.items[since:] if isinstance(i, sp.Packet)]

    def garbled(self, since: int = 0) -> list[sp.FrameError]:
        """Frames from the device that the host could not decode (the device's output damaged)."""
        with self.lock:
            return [i for i in self.items[since:] if isinstance(i, sp.FrameError)]

    def wait_for(self, pred: Callable[[sp.Packet], bool], since: int,
                 timeout: float) -> sp.Packet | None:
        deadline = time.monotonic() + timeout
        while True:
            for p in self.packets(since):
                if pred(p):
                    return p
            if time.monotonic() > deadline:
                return None
            time.sleep(0.002)

    def settle(self, quiet: float = QUIET_S, cap: float = 20.0) -> None:
        """Wait until nothing went either way for ``quiet`` seconds (counted from when the
        last byte written reached the AVR, not from the write)."""
        deadline = time.monotonic() + cap
        while time.monotonic() < deadline:
            if time.monotonic() - max(self.last_rx, self.tx_done) >= quiet:
                return
            time.sleep(0.01)


@dataclass
class Ctx:
    link: Link
    board: SimulatedArduino
    rng: random.Random
    next_seq: int = 1

    def seq(self) -> int:
        s = self.next_seq
        self.next_seq = s % 255 + 1
        return s

    def frame(self, msg_type: int, body: bytes = b"", seq: int | None = None) -> bytes:
        return sp.encode_frame(msg_type, self.seq() if seq is None else seq, body)

    def ask(self, msg_type: int, body: bytes = b"", timeout: float = 2.0) -> sp.Packet | None:
        """One request, then wait for its answer (its seq, or a frame-level error)."""
        return self.send_and_wait(self.frame(msg_type, body), timeout)

    def send_and_wait(self, frame: bytes, timeout: float = 2.0) -> sp.Packet | None:
        try:
            seq = sp.cobs_decode(frame[:-1])[1]
        except (sp.ProtocolError, IndexError):
            seq = -1  # not a decodable frame: only a frame-level error answers it
        since = self.link.mark()
        self.link.write(frame)
        return self.link.wait_for(
            lambda p: p.seq == seq and p.type != T.DONE or p.type == T.ERROR and p.seq == 0,
            since, timeout)

    def status(self) -> sp.DeviceStatus | None:
        p = self.ask(T.GET_STATUS)
        if p is None or p.type != sp.reply_type(T.GET_STATUS):
            return None
        return sp.DeviceStatus.from_body(p.body)

    def junk(self, n: int, zeros: bool = False) -> bytes:
        lo = 0 if zeros else 1
        return bytes(self.rng.randint(lo, 255) for _ in range(n))


# -- what the answers should be --------------------------------------------------------------------
def error_codes(packets: list[sp.Packet]) -> list[int]:
    return [sp.ErrorReply.from_body(p.body).code for p in packets if p.type == T.ERROR]


def replies(packets: list[sp.Packet]) -> list[sp.Packet]:
    """Answers that are not errors (READY and DONE are events, not answers)."""
    return [p for p in packets if p.type not in (T.ERROR, T.READY, T.DONE)]


def _name(code: int | frozenset) -> str:
    if isinstance(code, frozenset):
        return "|".join(sorted(_name(c) for c in code))
    try:
        return E(code).name[2:]
    except ValueError:
        return f"0x{code:02X}"


def expect(*errors: int | frozenset, replies_n: int = 0) -> Check:
    """Exactly these errors (a frozenset: any one of its codes), in any order, and
    ``replies_n`` replies."""

    def check(packets: list[sp.Packet]) -> str | None:
        left = list(error_codes(packets))
        ok = len(left) == len(errors)
        for spec in sorted(errors, key=lambda s: isinstance(s, frozenset)):
            hit = next((c for c in left if (c in spec if isinstance(spec, frozenset)
                                            else c == spec)), None)
            if hit is None:
                ok = False
                break
            left.remove(hit)
        if ok and len(replies(packets)) == replies_n:
            return None
        want = ", ".join(_name(e) for e in errors) or "no error"
        return f"expected {want} and {replies_n} replies"

    return check


def one_answer_each(n: int, allowed: frozenset = OVERFLOW) -> Check:
    """``n`` requests: replies plus errors = n, every error one of ``allowed``."""

    def check(packets: list[sp.Packet]) -> str | None:
        errs = error_codes(packets)
        if len(replies(packets)) + len(errs) == n and set(errs) <= allowed:
            return None
        return f"expected {n} answers (replies or {_name(allowed)})"

    return check


def frame_errors_only(max_n: int) -> Check:
    def check(packets: list[sp.Packet]) -> str | None:
        errs = error_codes(packets)
        if replies(packets) or not set(errs) <= sp.FRAME_LEVEL_ERRORS or len(errs) > max_n:
            return f"expected at most {max_n} frame-level errors and no reply"
        return None

    return check


def both(*checks: Check | None) -> Check:
    def check(packets: list[sp.Packet]) -> str | None:
        for c in checks:
            why = c(packets) if c is not None else None
            if why:
                return why
        return None

    return check


def problem(text: str | None) -> Check:
    """A finding of the kind itself (e.g. a state read back), as a check."""
    return lambda packets: text


# -- the kinds -------------------------------------------------------------------------------------
KINDS: dict[str, Callable[[Ctx], Check | None]] = {}


def kind(name: str):
    def register(fn: Callable[[Ctx], Check | None]) -> Callable[[Ctx], Check | None]:
        KINDS[name] = fn
        return fn

    return register


def bad_crc(msg_type: int, seq: int, body: bytes = b"", where: int = -1) -> bytes:
    """A valid COBS frame whose packet has one byte changed (default: in its CRC)."""
    packet = bytearray(sp.encode_packet(msg_type, seq, body))
    packet[where] ^= 0x5A
    return sp.cobs_encode(bytes(packet)) + b"\x00"


def raw_frame(msg_type: int, seq: int, body: bytes) -> bytes:
    """Framed by hand: also packets over the host encoder's 138-byte limit."""
    packet = bytes((msg_type, seq)) + body
    packet += sp.crc16_ccitt_false(packet).to_bytes(2, "little")
    return sp.cobs_encode(packet) + b"\x00"


def load_body(n_chips: int, chip_ns: int, bits: bytes) -> bytes:
    return n_chips.to_bytes(2, "little") + chip_ns.to_bytes(4, "little") + bits


@kind("random bytes (2000, zeros included)")
def _random(ctx: Ctx) -> Check:
    data = ctx.junk(2000, zeros=True)
    ctx.link.write(data)
    return frame_errors_only(data.count(0) + 1)


@kind("random bytes without a delimiter (3000)")
def _random_no_zero(ctx: Ctx) -> Check:
    ctx.link.write(ctx.junk(3000))
    return expect(E.E_TOO_LONG)  # at the 161st byte; the rest is discarded until silence


@kind("very long line, then a delimiter (5000 x 'A')")
def _long_line(ctx: Ctx) -> Check:
    ctx.link.write(b"A" * 5000 + b"\x00")
    return expect(E.E_TOO_LONG)


@kind("0xFF flood (4000 bytes)")
def _ff(ctx: Ctx) -> Check:
    ctx.link.write(b"\xff" * 4000)
    return expect(E.E_TOO_LONG)


@kind("binary zeros (1000)")
def _zeros(ctx: Ctx) -> Check:
    ctx.link.write(bytes(1000))
    return expect()  # empty frames are ignored


@kind("lone delimiter")
def _lone(ctx: Ctx) -> Check:
    ctx.link.write(b"\x00")
    return expect()


@kind("bursts of delimiters around valid requests")
def _bursts(ctx: Ctx) -> Check:
    z = bytes(64)
    ctx.link.write(z + ctx.frame(T.GET_STATUS) + z + ctx.frame(T.PING, b"burst") + z)
    return expect(replies_n=2)


@kind("160 bytes then a delimiter (at the limit)")
def _at_limit(ctx: Ctx) -> Check:
    ctx.link.write(ctx.junk(160) + b"\x00")
    return expect(BAD_FRAME)  # decoded and refused, not E_TOO_LONG


@kind("161 bytes then a delimiter (one over)")
def _over_limit(ctx: Ctx) -> Check:
    ctx.link.write(ctx.junk(161) + b"\x00")
    return expect(E.E_TOO_LONG)


@kind("half a frame, then silence")
def _half(ctx: Ctx) -> Check:
    frame = ctx.frame(T.LOAD_CODE, sp.load_code_body(BASE_CODE * 64, 100_000))
    ctx.link.write(frame[: len(frame) // 2])
    return expect(E.E_TIMEOUT)


@kind("truncated frame, then a delimiter")
def _truncated(ctx: Ctx) -> Check:
    frame = ctx.frame(T.LOAD_CODE, sp.load_code_body(BASE_CODE * 64, 100_000))
    ctx.link.write(frame[: len(frame) // 2] + b"\x00")
    return expect(BAD_FRAME)


@kind("frame without its first byte")
def _headless(ctx: Ctx) -> Check:
    ctx.link.write(ctx.frame(T.PING, b"headless")[1:])
    return expect(BAD_FRAME)


@kind("corrupted CRC")
def _crc(ctx: Ctx) -> Check:
    ctx.send_and_wait(bad_crc(T.GET_STATUS, ctx.seq()))
    ctx.send_and_wait(bad_crc(T.FIRE, ctx.seq(), where=-2))
    return expect(E.E_CRC, E.E_CRC)


@kind("one byte changed in a LOAD_CODE body")
def _body_flip(ctx: Ctx) -> Check:
    ctx.send_and_wait(bad_crc(T.LOAD_CODE, ctx.seq(), sp.load_code_body("1" * 64, 10_000), 8))
    return expect(E.E_CRC)


@kind("invalid COBS (code byte past the end)")
def _cobs(ctx: Ctx) -> Check:
    ctx.send_and_wait(b"\x09\x01\x02\x03\x00")
    ctx.send_and_wait(b"\xff\x41\x00")
    return expect(E.E_FRAMING, E.E_FRAMING)


@kind("packets shorter than 4 bytes")
def _short(ctx: Ctx) -> Check:
    for packet in (b"\x02", b"\x02\x05", b"\x02\x05\x01"):
        ctx.send_and_wait(sp.cobs_encode(packet) + b"\x00")
    return expect(E.E_CRC, E.E_CRC, E.E_CRC)


@kind("unknown command bytes")
def _unknown(ctx: Ctx) -> Check:
    types = (0x00, 0x0B, 0x10, 0x3F, 0x7E, 0x80, 0xFE, 0xFF)
    for t in types:
        ctx.ask(t, b"\x01\x02")
    return expect(*[E.E_UNKNOWN_TYPE] * len(types))


@kind("reply and event types sent as requests")
def _reply_types(ctx: Ctx) -> Check:
    types = (T.ERROR, T.INFO, T.STATUS_GET, T.FIRED, T.PONG, T.READY, T.DONE)
    for t in types:
        ctx.ask(t)
    return expect(*[E.E_UNKNOWN_TYPE] * len(types))


@kind("wrong body lengths")
def _lengths(ctx: Ctx) -> Check:
    ctx.ask(T.GET_STATUS, b"\x00")
    ctx.ask(T.GET_INFO, b"xy")
    ctx.ask(T.CONFIGURE, sp.configure_body()[:-1])
    ctx.ask(T.LOAD_CODE, load_body(16, 100_000, b"\xff"))  # 16 chips, 1 byte of bits
    ctx.ask(T.FIRE, b"\x01")
    ctx.ask(T.PING, bytes(33))
    return expect(*[E.E_LENGTH] * 6)


@kind("seq 0 (the device's own) in a request")
def _seq0(ctx: Ctx) -> Check:
    ctx.send_and_wait(sp.encode_frame(T.PING, 0, b"zero"))
    return expect(replies_n=1)


@kind("PING payloads at the limits")
def _ping_limits(ctx: Ctx) -> Check:
    payloads = (b"", bytes(32), b"\xff" * 32, bytes(range(32)))
    bad = [pl for pl in payloads if (p := ctx.ask(T.PING, pl)) is None or p.body != pl]
    return both(expect(replies_n=len(payloads)),
                problem(f"{len(bad)} PONGs differ" if bad else None))


@kind("largest code upload (1024 chips)")
def _huge(ctx: Ctx) -> Check:
    bits = "".join(ctx.rng.choice("01") for _ in range(1023)) + "1"
    p = ctx.ask(T.LOAD_CODE, sp.load_code_body(bits, 10_000))
    ok = p is not None and p.type == sp.reply_type(T.LOAD_CODE) and sp.DeviceStatus.from_body(
        p.body).code_sha256 == code_sha256(bits)
    return both(expect(replies_n=1), problem(None if ok else "the code's SHA-256 does not match"))


@kind("code uploads over the limit")
def _too_many(ctx: Ctx) -> Check:
    before = ctx.status()
    ctx.send_and_wait(raw_frame(T.LOAD_CODE, ctx.seq(), load_body(1025, 100_000, b"\x80" * 129)))
    ctx.send_and_wait(raw_frame(T.LOAD_CODE, ctx.seq(), load_body(4096, 100_000, b"\xff" * 512)))
    ctx.ask(T.LOAD_CODE, load_body(0, 100_000, b"\x80"))
    after = ctx.status()
    kept = before is not None and after is not None and before.code_sha256 == after.code_sha256
    return both(expect(E.E_CODE_LENGTH, E.E_TOO_LONG, E.E_CODE_LENGTH, replies_n=2),
                problem(None if kept else "a refused upload changed the loaded code"))


@kind("code uploads with invalid chips or timing")
def _invalid_chips(ctx: Ctx) -> Check:
    before = ctx.status()
    ctx.ask(T.LOAD_CODE, load_body(3, 100_000, b"\xa1"))  # an unused bit set
    ctx.ask(T.LOAD_CODE, load_body(16, 100_000, b"\x00\x00"))  # every chip closed
    for chip_ns in (0, 5_000, 10_250, 32_768_500, 0xFFFFFFFF):
        ctx.ask(T.LOAD_CODE, load_body(8, chip_ns, b"\xe5"))
    after = ctx.status()
    kept = before is not None and after is not None and before.code_sha256 == after.code_sha256
    return both(expect(E.E_BAD_VALUE, E.E_BAD_VALUE, *[E.E_CHIP_TIMING] * 5, replies_n=2),
                problem(None if kept else "a refused upload changed the loaded code"))


@kind("CONFIGURE with fields out of range")
def _configure(ctx: Ctx) -> Check:
    good = bytearray(sp.configure_body())
    details = []
    for offset, value in ((0, b"\x03"), (7, (5_000).to_bytes(4, "little")), (11, b"\x02"),
                          (16, b"\x02"), (17, b"\x80")):
        body = bytearray(good)
        body[offset:offset + len(value)] = value
        p = ctx.ask(T.CONFIGURE, bytes(body))
        if p is not None and p.type == T.ERROR:
            details.append(sp.ErrorReply.from_body(p.body).detail == offset)
    wrong = None if details == [True] * 5 else "an E_BAD_VALUE detail is not the field's offset"
    return both(expect(*[E.E_BAD_VALUE] * 5), problem(wrong))


@kind("requests out of order (FIRE unarmed, LOAD while armed...)")
def _order(ctx: Ctx) -> Check:
    ctx.ask(T.FIRE)  # E_NOT_ARMED
    ctx.ask(T.DISARM)  # always allowed
    ctx.ask(T.ARM)
    ctx.ask(T.ARM)  # again: allowed
    ctx.ask(T.LOAD_CODE, sp.load_code_body(BASE_CODE, 100_000))  # E_BUSY
    ctx.ask(T.CONFIGURE, sp.configure_body())  # E_BUSY
    ctx.ask(T.DISARM)
    ctx.ask(T.DISARM)
    return expect(E.E_NOT_ARMED, E.E_BUSY, E.E_BUSY, replies_n=5)


@kind("valid request split byte by byte (5 ms apart)")
def _bytewise(ctx: Ctx) -> Check:
    for b in ctx.frame(T.GET_INFO):
        ctx.link.write(bytes([b]))
        time.sleep(0.005)
    return expect(replies_n=1)


@kind("valid request with a 100 ms pause inside")
def _paused(ctx: Ctx) -> Check:
    frame = ctx.frame(T.PING, b"pause")
    ctx.link.write(frame[:4])
    time.sleep(0.1)
    ctx.link.write(frame[4:])
    return expect(E.E_TIMEOUT, BAD_FRAME)  # the head times out, the tail is a bad frame


@kind("a break inside a frame (it reads as 0x00 bytes)")
def _break(ctx: Ctx) -> Check:
    frame = ctx.frame(T.LOAD_CODE, sp.load_code_body(BASE_CODE * 16, 100_000))
    half = len(frame) // 2
    ctx.link.write(frame[:half] + bytes(3) + frame[half:])
    return expect(BAD_FRAME, BAD_FRAME)


@kind("a frame inside a frame (one delimiter for two)")
def _nested(ctx: Ctx) -> Check:
    ctx.link.write(ctx.frame(T.GET_STATUS)[:-1] + ctx.frame(T.GET_STATUS))
    return expect(BAD_FRAME)  # one frame on the wire, so one answer


@kind("100 GET_STATUS pipelined")
def _pipelined(ctx: Ctx) -> Check:
    ctx.link.write(b"".join(ctx.frame(T.GET_STATUS) for _ in range(100)))
    return one_answer_each(100)


@kind("mixed requests pipelined (PING 32, GET_INFO, LOAD_CODE 256)")
def _pipelined_mixed(ctx: Ctx) -> Check:
    load = sp.load_code_body("10" * 128, 20_000)
    data = b"".join(ctx.frame(T.PING, bytes(range(32))) + ctx.frame(T.GET_INFO)
                    + ctx.frame(T.LOAD_CODE, load) for _ in range(20))
    ctx.link.write(data)
    return one_answer_each(60)


@kind("garbage between valid requests")
def _interleaved(ctx: Ctx) -> Check:
    data = b"".join(ctx.junk(ctx.rng.randint(5, 60)) + b"\x00" + ctx.frame(T.PING, b"ok")
                    for _ in range(10))
    ctx.link.write(data)
    return one_answer_each(20)


@kind("a resent FIRE (same bytes) does not fire twice")
def _resend(ctx: Ctx) -> Check:
    before = ctx.status()
    ctx.ask(T.ARM)
    fire = ctx.frame(T.FIRE)
    since = ctx.link.mark()
    first = ctx.send_and_wait(fire)
    ctx.link.wait_for(lambda p: p.type == T.DONE, since, 2.0)
    again = ctx.send_and_wait(fire)  # the host's retry after a lost reply: same seq, same CRC
    time.sleep(0.2)
    after = ctx.status()
    ctx.ask(T.DISARM)
    fired_once = (before is not None and after is not None
                  and after.trigger_count == before.trigger_count + 1)
    same = first is not None and again is not None and first == again
    why = None if fired_once and same else "the resend was executed again or answered differently"
    return both(expect(replies_n=6), problem(why))


@kind("noise and refused requests during a playback")
def _mid_capture(ctx: Ctx) -> Check:
    ctx.ask(T.LOAD_CODE, sp.load_code_body("1101" * 16, 2_000_000))  # 64 chips of 2 ms
    ctx.ask(T.ARM)
    since = ctx.link.mark()
    ctx.ask(T.FIRE)
    ctx.link.write(ctx.junk(300) + b"\x00")  # E_TOO_LONG
    ctx.ask(T.LOAD_CODE, sp.load_code_body(BASE_CODE, 100_000))  # E_BUSY
    ctx.ask(T.CONFIGURE, sp.configure_body())  # E_BUSY
    ctx.ask(T.FIRE)  # E_BUSY
    done = ctx.link.wait_for(lambda p: p.type == T.DONE, since, 3.0)
    ctx.ask(T.DISARM)
    complete = done is not None and sp.DoneEvent.from_body(done.body).complete
    return both(expect(E.E_TOO_LONG, E.E_BUSY, E.E_BUSY, E.E_BUSY, replies_n=4),
                problem(None if complete else f"the playback did not complete: {done}"))


# The receive ring, full exactly on a delimiter. A LOAD_CODE of 1024 chips keeps the firmware
# busy for ~85 ms (it hashes the code) with its ring empty; the 127 bytes right behind it (20
# GET_STATUS and a PING of 7 bytes) fill the ring (127 usable bytes) exactly, the last byte a
# delimiter; what comes next within those 85 ms is lost.
def _ring(ctx: Ctx, fill_ping: bytes, lost: bytes, after: bytes) -> None:
    load = ctx.frame(T.LOAD_CODE, sp.load_code_body("1" * 1024, 10_000))
    fill = b"".join(ctx.frame(T.GET_STATUS) for _ in range(20)) + ctx.frame(T.PING, fill_ping)
    since = ctx.link.mark()
    ctx.link.write(load + fill + lost)
    ctx.link.wait_for(lambda p: p.type == sp.reply_type(T.LOAD_CODE), since, 3.0)
    ctx.link.write(after)


@kind("ring full on a delimiter, then a request lost whole")
def _ring_lost_whole(ctx: Ctx) -> Check:
    frame = ctx.frame(T.GET_STATUS)
    _ring(ctx, b"x", frame[:-1], frame[-1:])  # all but its delimiter lost
    return expect(E.E_RX_OVERFLOW, replies_n=22)


@kind("ring full on a delimiter, then lone delimiters")
def _ring_lone(ctx: Ctx) -> Check:
    _ring(ctx, b"x", bytes(16), bytes(4))
    return expect(replies_n=22)


@kind("ring full after a request's head (its delimiter lost)")
def _ring_head(ctx: Ctx) -> Check:
    _ring(ctx, b"", ctx.frame(T.GET_STATUS), ctx.frame(T.GET_STATUS))
    return expect(BAD_FRAME, replies_n=23)  # the head fails its CRC, the next one is answered


# -- the campaign ----------------------------------------------------------------------------------
@dataclass
class Board:
    elf: Path
    sim: SimulatedArduino | None = None
    link: Link | None = None
    starts: int = 0
    last: sp.DeviceStatus | None = field(default=None)

    def start(self, ctx_seed: random.Random) -> Ctx:
        self.stop()
        self.sim = SimulatedArduino(self.elf).start()
        self.link = Link(self.sim.port)  # the open resets the board: READY follows
        self.starts += 1
        ctx = Ctx(self.link, self.sim, ctx_seed)
        if self.link.wait_for(lambda p: p.type == T.READY, 0, 5.0) is None:
            raise RuntimeError(f"no READY from the simulated board\n{self.sim.harness_log()}")
        # a known state: a code, one playback done (trigger_count 1: a reset would zero it)
        ctx.ask(T.LOAD_CODE, sp.load_code_body(BASE_CODE, 100_000))
        ctx.ask(T.ARM)
        since = self.link.mark()
        ctx.ask(T.FIRE)
        self.link.wait_for(lambda p: p.type == T.DONE, since, 2.0)
        ctx.ask(T.DISARM)
        self.last = ctx.status()
        if self.last is None or self.last.trigger_count != 1:
            raise RuntimeError(f"the simulated board did not reach its start state: {self.last}")
        return ctx

    def stop(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None


def recover(ctx: Ctx, board: Board, since: int) -> tuple[str, str]:
    """(verdict, note): recovered, hung, reset, died or wrong."""
    link = ctx.link
    if not ctx.board.alive:
        return "died", f"harness exit {ctx.board.returncode}"
    t0 = time.monotonic()
    frame = ctx.frame(T.GET_STATUS)
    p = ctx.send_and_wait(frame, ANSWER_S)
    if p is None or p.type != sp.reply_type(T.GET_STATUS):
        first = "no answer" if p is None else f"answered {p.name}"
        p2 = ctx.send_and_wait(frame, ANSWER_S)  # what a host does: resend the same bytes
        if not ctx.board.alive:
            return "died", f"harness exit {ctx.board.returncode}"
        if p is None and p2 is None:
            return "hung", "GET_STATUS unanswered, also after a resend"
        return "wrong", f"GET_STATUS {first}" + (", resend answered" if p2 else "")
    st = sp.DeviceStatus.from_body(p.body)
    payload = ctx.junk(ctx.rng.randint(1, 32), zeros=True)
    pong = ctx.ask(T.PING, payload, ANSWER_S)
    dt = (time.monotonic() - t0) * 1000
    if any(q.type == T.READY for q in link.packets(since)):
        return "reset", "READY seen"
    prev = board.last
    if st.state == sp.DeviceState.NO_CODE or (prev and st.trigger_count < prev.trigger_count):
        return "reset", f"state {st.state}, trigger count {st.trigger_count}"
    board.last = st
    if pong is None:
        return "hung", "PING unanswered"
    if pong.type != sp.reply_type(T.PING) or pong.body != payload:
        return "wrong", f"PING answered {pong.name} {pong.body.hex()[:16]}"
    garbled = link.garbled(since)
    if garbled:
        return "wrong", f"{len(garbled)} frames from the device did not decode"
    return "recovered", f"status + pong in {dt:.0f} ms"


def summary(packets: list[sp.Packet]) -> str:
    reps = Counter(p.name for p in replies(packets))
    errs = Counter("E_" + _name(c) for c in error_codes(packets))
    parts = [f"{n} {k}" for k, n in sorted(reps.items())]
    parts += [f"{n} {k}" for k, n in sorted(errs.items())]
    events = sum(p.type == T.DONE for p in packets)
    if events:
        parts.append(f"{events} DONE")
    return ", ".join(parts) or "nothing"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the random bytes and payloads")
    ap.add_argument("--only", action="append", metavar="KIND",
                    help="run the kinds whose name contains KIND (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the kinds and exit")
    ap.add_argument("--elf", type=Path, default=FIRMWARE_ELF, help="firmware to test")
    ap.add_argument("--no-build", action="store_true", help="skip `make -C firmware all sim`")
    args = ap.parse_args()
    if args.list:
        print("\n".join(KINDS))
        return 0
    names = [n for n in KINDS if not args.only or any(o.lower() in n.lower() for o in args.only)]
    if not names:
        print(f"no kind matches {args.only}; --list shows them")
        return 2
    if not args.no_build:
        res = subprocess.run(["make", "-C", str(REPO / "firmware"), "all", "sim"],
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"`make -C firmware all sim` failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
            return 2
    rng = random.Random(args.seed)
    board = Board(args.elf)
    ctx = board.start(rng)
    tally = Counter()
    against = []
    width = max(len(n) for n in names)
    try:
        for i, name in enumerate(names):
            link = ctx.link
            since, sent0 = link.mark(), link.sent
            try:
                check = KINDS[name](ctx)
            except (serial.SerialException, OSError) as e:
                check = problem(f"the line failed: {e}")
            link.settle()
            packets = link.packets(since)
            sent = link.sent - sent0
            why = check(packets) if check is not None else None
            verdict, note = recover(ctx, board, since)
            tally[verdict] += 1
            if why:
                against.append(name)
            print(f"[{i + 1:2d}] {name:<{width}}  sent {sent:5d} B | {summary(packets)} | "
                  f"PROTOCOL.md: {'NO (' + why + ')' if why else 'yes'} | "
                  f"recovered: {'yes' if verdict == 'recovered' else 'NO, ' + verdict} ({note})",
                  flush=True)
            if verdict in ("hung", "reset", "died"):
                ctx = board.start(random.Random(rng.random()))
    finally:
        board.stop()
    n = len(names)
    print(f"\nkinds {n} / recovered {tally['recovered']} / hung {tally['hung']}")
    print(f"reset {tally['reset']}, died {tally['died']}, wrong answer {tally['wrong']}; "
          f"answered as PROTOCOL.md says: {n - len(against)} of {n}"
          + (f" (not: {'; '.join(against)})" if against else "")
          + f"; board started {board.starts}x")
    return 0 if tally["recovered"] == n and not against else 1


if __name__ == "__main__":
    raise SystemExit(main())
