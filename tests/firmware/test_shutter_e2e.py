"""The real firmware in a simulated ATmega328P, driven by the real host driver over a pty.

Every test starts its own simulated board (paced to real time) and checks what the firmware did
from the harness's cycle-stamped edge log: shutter edges against their ideal times, levels
against the code, the camera trigger around the code, the DMD pulses, and the trigger counter and
code hash the controller reports.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import serial

from hw import shutter_protocol as sp
from hw.arduino_shutter import ArduinoShutter, PlaybackConfig, SerialTransport
from hw.errors import (
    AcquisitionTimeout,
    DeviceDisconnected,
    DeviceError,
    IncompatibleStateError,
    UnsupportedFeatureError,
)
from hw.sim.avr import SimulatedArduino
from hw.types import ShutterCode
from tests.hw.contracts import ShutterContract

pytestmark = pytest.mark.slow  # the firmware end to end in simavr

F_CPU = 16_000_000
CYCLES_PER_US = F_CPU // 1_000_000
SHUTTER, SHUTTER_N, CAM, DMD, LED, TRIG_IN = "B1", "B2", "D4", "D7", "B5", "D2"
TOLERANCE_CYCLES = CYCLES_PER_US  # the bar: every edge within +/-1 us of its ideal time


# -- helpers ---------------------------------------------------------------------------------------
def wait_edges(board: SimulatedArduino, start: int, pin: str, count: int, timeout_s: float = 3.0):
    """Edges logged after index ``start``, once ``pin`` has at least ``count`` of them."""
    deadline = time.monotonic() + timeout_s
    while True:
        new = board.edges()[start:]
        if sum(1 for e in new if e[1] == pin) >= count or time.monotonic() > deadline:
            return new
        time.sleep(0.01)


def expected_transitions(bits: str) -> int:
    """Number of SHUTTER edges a playback of ``bits`` makes (starting and ending closed)."""
    levels = "0" + bits + "0"
    return sum(a != b for a, b in zip(levels, levels[1:], strict=False))


@dataclass
class Playback:
    t0: int  # cycle of the start of chip 0
    max_error_cycles: int
    levels: str  # SHUTTER level in the middle of every chip


def analyse_playback(edges, bits: str, chip_us: float) -> Playback:
    """Check the shutter edges of one playback against the code; returns what was measured."""
    chip = round(chip_us * CYCLES_PER_US)
    sh = [(c, lvl) for c, p, lvl in edges if p == SHUTTER]
    assert len(sh) == expected_transitions(bits), (len(sh), expected_transitions(bits))
    first_open = bits.index("1")
    t0 = sh[0][0] - first_open * chip
    # ideal edge times: chip boundaries where the level changes
    ideal = []
    prev = "0"
    for k, b in enumerate(bits + "0"):
        if b != prev:
            ideal.append((t0 + k * chip, int(b)))
        prev = b
    errors = [c - ic for (c, _), (ic, _) in zip(sh, ideal, strict=True)]
    assert [lvl for _, lvl in sh] == [lvl for _, lvl in ideal]
    # sampled levels in the middle of each chip
    levels = []
    for k in range(len(bits)):
        mid = t0 + k * chip + chip // 2
        level = 0
        for c, lvl in sh:
            if c <= mid:
                level = lvl
        levels.append(str(level))
    # the inverse line switches on the same cycles, to the opposite level
    inv = [(c, lvl) for c, p, lvl in edges if p == SHUTTER_N]
    assert [c for c, _ in inv] == [c for c, _ in sh]
    assert all(a != b for (_, a), (_, b) in zip(inv, sh, strict=True))
    return Playback(t0, max(abs(e) for e in errors), "".join(levels))


def random_bits(rng: random.Random, n: int) -> str:
    bits = "".join(rng.choice("01") for _ in range(n))
    return bits if "1" in bits else "1" + bits[1:]


@pytest.fixture
def shutter(board: SimulatedArduino) -> Iterator[ArduinoShutter]:
    with ArduinoShutter(board.port) as sh:
        yield sh


# -- the Shutter contract, against the firmware ----------------------------------------------------
class TestArduinoShutterContract(ShutterContract):
    @pytest.fixture(autouse=True)
    def _board(self, board: SimulatedArduino) -> None:
        self._sim = board

    def make_shutter(self) -> ArduinoShutter:
        return ArduinoShutter(self._sim.port)


# -- timing: random codes, several chip durations --------------------------------------------------
# (chips, chip_us): the shortest chip, fine 0.5 us steps, long codes, and the coarse 4 us range.
CASES = [(8, 10.0), (256, 10.0), (37, 12.5), (256, 100.0), (113, 1000.0), (64, 250.5), (9, 40000.0)]


@pytest.mark.parametrize(("n_chips", "chip_us"), CASES)
def test_edges_match_the_code_within_one_microsecond(
    board: SimulatedArduino, shutter: ArduinoShutter, n_chips: int, chip_us: float
) -> None:
    rng = random.Random(n_chips * 1000 + int(chip_us * 2))
    bits = random_bits(rng, n_chips)
    code = ShutterCode.parse(bits, chip_us)
    status = shutter.load_code(code)
    assert status.code_sha256 == code.sha256 and status.echo_verified
    shutter.arm()
    count0 = shutter.status().trigger_count
    start = len(board.edges())
    index = shutter.fire()
    assert index == count0
    edges = wait_edges(board, start, LED, 2)
    pb = analyse_playback(edges, bits, chip_us)
    assert pb.levels == bits
    assert pb.max_error_cycles <= TOLERANCE_CYCLES, f"edge error {pb.max_error_cycles} cycles"
    assert pb.max_error_cycles == 0  # hardware output compare: exact to the cycle in simavr

    # the camera trigger (level style) spans the whole code
    cam = [(c, lvl) for c, p, lvl in edges if p == CAM]
    assert [lvl for _, lvl in cam] == [1, 0]
    end = pb.t0 + round(n_chips * chip_us * CYCLES_PER_US)
    lead = round(shutter.config.lead_us * CYCLES_PER_US)
    assert pb.t0 - lead <= cam[0][0] <= pb.t0 - lead + 10 * CYCLES_PER_US
    assert end <= cam[1][0] <= end + 10 * CYCLES_PER_US

    # one DMD pulse per chip, inside its chip
    dmd_rises = [c for c, p, lvl in edges if p == DMD and lvl == 1]
    assert len(dmd_rises) == n_chips
    chip = round(chip_us * CYCLES_PER_US)
    offsets = [c - (pb.t0 + k * chip) for k, c in enumerate(dmd_rises)]
    assert all(0 < o < min(chip, 10 * CYCLES_PER_US) for o in offsets), offsets

    after = shutter.status()
    assert after.trigger_count == count0 + 1
    assert after.code_sha256 == code.sha256 and after.state == "armed"


def test_pulse_trigger_and_repeats_at_an_exact_period(
    board: SimulatedArduino, shutter: ArduinoShutter
) -> None:
    bits, chip_us, period_us = "1101001", 50.0, 2000.0
    shutter.configure(
        PlaybackConfig(
            mode="repeat",
            repeats=4,
            period_us=period_us,
            lead_us=200.0,
            trigger_style="pulse",
            pulse_us=30.0,
            dmd_pulse=False,
        )
    )
    shutter.load_code(ShutterCode.parse(bits, chip_us))
    shutter.arm()
    start = len(board.edges())
    first = shutter.fire()
    edges = wait_edges(board, start, LED, 2)
    per = expected_transitions(bits)
    sh_edges = [e for e in edges if e[1] == SHUTTER]
    assert len(sh_edges) == 4 * per
    t0s = []
    for r in range(4):
        chunk = sh_edges[r * per : (r + 1) * per]
        inv = [e for e in edges if e[1] == SHUTTER_N][r * per : (r + 1) * per]
        pb = analyse_playback(chunk + inv, bits, chip_us)
        assert pb.levels == bits and pb.max_error_cycles == 0
        t0s.append(pb.t0)
    period = round(period_us * CYCLES_PER_US)
    assert [b - a for a, b in zip(t0s, t0s[1:], strict=False)] == [period] * 3
    # pulse style: 30 us pulses, 200 us before each chip 0
    cam = [(c, lvl) for c, p, lvl in edges if p == CAM]
    assert [lvl for _, lvl in cam] == [1, 0] * 4
    for r, t0 in enumerate(t0s):
        rise, fall = cam[2 * r][0], cam[2 * r + 1][0]
        assert t0 - 200 * CYCLES_PER_US <= rise <= t0 - 190 * CYCLES_PER_US
        width = fall - rise  # software edges: each within the interrupt latency of its tick
        assert 25 * CYCLES_PER_US <= width <= 40 * CYCLES_PER_US, width
    assert not [e for e in edges if e[1] == DMD]
    assert shutter.status().trigger_count == first + 4


def test_continuous_until_disarmed(board: SimulatedArduino, shutter: ArduinoShutter) -> None:
    shutter.configure(PlaybackConfig(mode="continuous", period_us=5000.0))
    shutter.load_code(ShutterCode.parse("1011", 100.0))
    shutter.arm()
    count0 = shutter.status().trigger_count
    start = len(board.edges())
    shutter.fire()  # continuous: returns once started
    time.sleep(0.2)
    assert shutter.status().state == "playing"
    shutter.disarm()
    st = shutter.status()
    assert st.state == "loaded"
    played = st.trigger_count - count0
    assert 20 <= played <= 60, played  # 200 ms at 5 ms (plus host latency)
    # the counter counts camera triggers: every playback raises the trigger line at the start of
    # its lead, and the disarm may land inside the last lead, before that playback's shutter opens
    edges = wait_edges(board, start, SHUTTER, expected_transitions("1011") * (played - 1))
    triggers = [c for c, p, lvl in edges if p == CAM and lvl == 1]
    assert len(triggers) == played
    opens = [c for c, p, lvl in edges if p == SHUTTER and lvl == 1]
    starts = opens[::2]  # "1011" opens twice per playback
    assert len(starts) in (played, played - 1), (len(starts), played)
    if len(starts) == played - 1:  # caught in its lead: that trigger has no opening after it
        assert opens[-1] < triggers[-1]
    assert {b - a for a, b in zip(starts, starts[1:], strict=False)} == {5000 * CYCLES_PER_US}
    # every opening follows its own trigger by the 100 us lead; the trigger line is raised in
    # software, up to 10 us after the lead starts for the later playbacks (firmware/README.md)
    leads = [s - t for t, s in zip(triggers, starts, strict=False)]
    assert all(90 * CYCLES_PER_US <= d <= 100 * CYCLES_PER_US for d in leads), leads
    # after the abort the shutter is closed and stays closed
    final = [lvl for c, p, lvl in board.edges() if p == SHUTTER][-1]
    assert final == 0


def test_disarm_inside_the_lead_counts_the_trigger_and_never_opens(
    board: SimulatedArduino, shutter: ArduinoShutter
) -> None:
    shutter.configure(PlaybackConfig(mode="continuous", lead_us=30000.0))
    shutter.load_code(ShutterCode.parse("1011", 100.0))
    shutter.arm()
    count0 = shutter.status().trigger_count
    start = len(board.edges())
    shutter.fire()
    shutter.disarm()  # well inside the 30 ms lead
    st = shutter.status()
    assert st.state == "loaded"
    assert st.trigger_count - count0 == 1  # the camera was triggered
    time.sleep(0.05)
    edges = board.edges()[start:]
    assert [lvl for _, p, lvl in edges if p == CAM] == [1, 0]  # raised, then dropped at DISARM
    assert not [e for e in edges if e[1] == SHUTTER and e[2] == 1]  # the shutter never opened


def test_external_trigger_starts_a_playback(
    board: SimulatedArduino, shutter: ArduinoShutter
) -> None:
    shutter.configure(PlaybackConfig(start_source="external"))
    shutter.load_code(ShutterCode.parse("11100101", 20.0))
    shutter.arm()
    with pytest.raises(IncompatibleStateError):
        shutter.fire()  # the external line leads: FIRE is refused by the firmware
    start = len(board.edges())
    board.set_pin(TRIG_IN, 1)
    done = shutter.wait_done(timeout_s=2.0)
    assert done.played == 1
    edges = wait_edges(board, start, SHUTTER, expected_transitions("11100101"))
    trig = next(c for c, p, lvl in edges if p == TRIG_IN and lvl == 1)
    pb = analyse_playback(edges, "11100101", 20.0)
    assert pb.levels == "11100101"
    lead = round(shutter.config.lead_us * CYCLES_PER_US)
    latency_us = (pb.t0 - lead - trig) / CYCLES_PER_US
    assert 0 < latency_us < 10, latency_us  # edge -> lead start: the INT0 interrupt
    board.set_pin(TRIG_IN, 0)
    start = len(board.edges())
    board.set_pin(TRIG_IN, 1)  # armed again for the next edge
    assert shutter.wait_done(timeout_s=2.0).played == 1
    assert shutter.status().trigger_count == 2


# -- bad input: the firmware refuses it and keeps working, the driver recovers ---------------------
def read_some(port: serial.Serial) -> bytes:
    """What has arrived (waiting at most the port's timeout for the first byte). Reading a fixed
    count with a timeout would hand bytes of one frame to the receiver in chunks 50 ms apart,
    which its half-frame timeout rightly drops."""
    data = port.read(1)
    return data + port.read(port.in_waiting) if data and port.in_waiting else data


@pytest.fixture
def raw(board: SimulatedArduino) -> Iterator[tuple[serial.Serial, sp.FrameReceiver]]:
    """The board's port opened raw (no driver), after its READY frame."""
    port = serial.Serial(board.port, 115200, timeout=0.01)
    rx = sp.FrameReceiver()
    deadline = time.monotonic() + 3
    ready = False
    while not ready and time.monotonic() < deadline:
        ready = any(
            isinstance(i, sp.Packet) and i.type == sp.MsgType.READY
            for i in rx.feed(read_some(port))
        )
    assert ready, "no READY frame from the simulated board"
    yield port, rx
    port.close()


def exchange(port: serial.Serial, rx: sp.FrameReceiver, data: bytes, timeout_s: float = 1.0):
    port.write(data)
    items = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items += rx.feed(read_some(port))
        if any(isinstance(i, sp.Packet) for i in items):
            time.sleep(0.02)
            items += rx.feed(read_some(port))
            break
    return [i for i in items if isinstance(i, sp.Packet)]


def error_codes(packets) -> list[int]:
    return [sp.ErrorReply.from_body(p.body).code for p in packets if p.type == sp.MsgType.ERROR]


def status_ok(port: serial.Serial, rx: sp.FrameReceiver, seq: int) -> sp.DeviceStatus:
    (reply,) = [
        p for p in exchange(port, rx, sp.encode_frame(sp.MsgType.GET_STATUS, seq)) if p.seq == seq
    ]
    assert reply.type == sp.reply_type(sp.MsgType.GET_STATUS)
    return sp.DeviceStatus.from_body(reply.body)


def test_garbage_corrupt_half_and_overlong_frames_are_rejected(raw) -> None:
    port, rx = raw
    # garbage ended by a delimiter
    assert error_codes(exchange(port, rx, b"garbage \xff\x13 bytes\x00")) in (
        [sp.ErrorCode.E_CRC],
        [sp.ErrorCode.E_FRAMING],
    )
    status_ok(port, rx, 1)
    # a corrupted frame (one bit flipped)
    frame = bytearray(sp.encode_frame(sp.MsgType.GET_STATUS, 2))
    frame[2] ^= 0x10
    assert error_codes(exchange(port, rx, bytes(frame))) == [sp.ErrorCode.E_CRC]
    status_ok(port, rx, 3)
    # half a frame, then silence: dropped after 50 ms
    frame = sp.encode_frame(sp.MsgType.GET_STATUS, 4)
    assert error_codes(exchange(port, rx, frame[:3], timeout_s=0.5)) == [sp.ErrorCode.E_TIMEOUT]
    status_ok(port, rx, 5)
    # a frame over 160 bytes
    assert error_codes(exchange(port, rx, bytes([0x55]) * 200 + b"\x00")) == [
        sp.ErrorCode.E_TOO_LONG
    ]
    st = status_ok(port, rx, 6)
    assert st.last_error == sp.ErrorCode.E_TOO_LONG


def test_invalid_requests_get_the_documented_errors(raw) -> None:
    port, rx = raw
    seq = iter(range(1, 200))

    def ask(msg_type: int, body: bytes = b"") -> list[int]:
        return error_codes(exchange(port, rx, sp.encode_frame(msg_type, next(seq), body)))

    # 1025 chips: one packet byte over what the host encoder allows, so frame it by hand
    body = (1025).to_bytes(2, "little") + (100_000).to_bytes(4, "little") + b"\x80" * 129
    packet = bytes((sp.MsgType.LOAD_CODE, 99)) + body
    packet += sp.crc16_ccitt_false(packet).to_bytes(2, "little")
    replies = exchange(port, rx, sp.cobs_encode(packet) + b"\x00")
    assert error_codes(replies) == [sp.ErrorCode.E_CODE_LENGTH]
    assert ask(sp.MsgType.LOAD_CODE, sp.load_code_body("101", 100_000)[:-1]) == [
        sp.ErrorCode.E_LENGTH
    ]
    odd = (3).to_bytes(2, "little") + (10_250).to_bytes(4, "little") + b"\xa0"
    assert ask(sp.MsgType.LOAD_CODE, odd) == [sp.ErrorCode.E_CHIP_TIMING]
    assert ask(sp.MsgType.FIRE) == [sp.ErrorCode.E_NO_CODE]
    assert ask(sp.MsgType.ARM) == [sp.ErrorCode.E_NO_CODE]
    assert ask(0x55) == [sp.ErrorCode.E_UNKNOWN_TYPE]
    assert ask(sp.MsgType.PING, bytes(33)) == [sp.ErrorCode.E_LENGTH]
    assert ask(sp.MsgType.LOAD_CODE, sp.load_code_body("1" * 1024, 10_000)) == []  # the longest
    st = status_ok(port, rx, 250)
    assert st.n_chips == 1024 and st.state == sp.DeviceState.LOADED


class CorruptingTransport(SerialTransport):
    """A serial transport that flips one bit in the next ``corrupt`` writes (line noise)."""

    corrupt = 0

    def write(self, data: bytes) -> None:
        if self.corrupt and len(data) > 3:
            self.corrupt -= 1
            data = data[:2] + bytes([data[2] ^ 0x01]) + data[3:]
        super().write(data)


def test_driver_retries_after_a_corrupted_request(board: SimulatedArduino) -> None:
    transport = CorruptingTransport(board.port)
    with ArduinoShutter(transport=transport) as sh:
        code = ShutterCode.parse("1110010111", 100.0)
        transport.corrupt = 2
        st = sh.load_code(code)
        assert st.code_sha256 == code.sha256
        assert sh.link_stats["resends"] >= 2
        sh.arm()
        transport.corrupt = 1
        assert sh.fire() == 0
        assert sh.status().trigger_count == 1  # the damaged FIRE did not fire twice


def test_driver_refuses_chip_durations_the_timer_cannot_play(shutter: ArduinoShutter) -> None:
    with pytest.raises(UnsupportedFeatureError, match="10.5|11"):
        shutter.load_code(ShutterCode.parse("101", 10.25))
    with pytest.raises(UnsupportedFeatureError):
        shutter.load_code(ShutterCode.parse("101", 40001.0))
    assert shutter.status().state == "idle"


# -- a stopped or vanished simulator ---------------------------------------------------------------
def test_a_stopped_board_times_out_clearly_and_recovers(board: SimulatedArduino) -> None:
    with ArduinoShutter(board.port, reply_timeout_s=0.3, retries=2) as sh:
        sh.load_code(ShutterCode.parse("1101", 100.0))
        board.pause()
        t = time.monotonic()
        with pytest.raises(AcquisitionTimeout) as err:
            sh.status()
        elapsed = time.monotonic() - t
        assert elapsed < 0.3 * 3 + 1.0
        assert board.port in str(err.value)
        board.resume()
        assert sh.status().code_sha256 == ShutterCode.parse("1101", 100.0).sha256


def test_a_vanished_board_is_a_clear_error_not_a_hang(board: SimulatedArduino) -> None:
    sh = ArduinoShutter(board.port, reply_timeout_s=0.3, retries=1)
    sh.open()
    board.stop()
    result: dict[str, BaseException | None] = {}

    def call() -> None:
        try:
            sh.status()
            result["error"] = None
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            result["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=5.0)
    assert not worker.is_alive(), "status() hung on a vanished board"
    assert isinstance(result["error"], DeviceDisconnected | AcquisitionTimeout)
    assert isinstance(result["error"], DeviceError)
    sh.close()  # never raises on a dead port


def test_shortest_chips_stay_exact_while_the_uart_is_busy(board: SimulatedArduino, raw) -> None:
    """1024 chips of 10 us while PING frames arrive: the receive interrupt competes with the timer
    interrupt, and the code must still play exactly (no E_OVERRUN)."""
    port, rx = raw
    rng = random.Random(7)
    bits = random_bits(rng, 1024)
    load = sp.encode_frame(sp.MsgType.LOAD_CODE, 1, sp.load_code_body(bits, 10_000))
    assert [p.type for p in exchange(port, rx, load)] == [sp.reply_type(sp.MsgType.LOAD_CODE)]
    assert exchange(port, rx, sp.encode_frame(sp.MsgType.ARM, 2))[0].type == sp.reply_type(
        sp.MsgType.ARM
    )
    start = len(board.edges())
    pings = b"".join(sp.encode_frame(sp.MsgType.PING, 10 + i, bytes(range(20))) for i in range(6))
    port.write(sp.encode_frame(sp.MsgType.FIRE, 3) + pings)
    packets: list[sp.Packet] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not any(p.type == sp.MsgType.DONE for p in packets):
        packets += [i for i in rx.feed(read_some(port)) if isinstance(i, sp.Packet)]
    (done,) = [p for p in packets if p.type == sp.MsgType.DONE]
    assert sp.DoneEvent.from_body(done.body).result == sp.DoneResult.COMPLETE
    pongs = [p for p in packets if p.type == sp.reply_type(sp.MsgType.PING)]
    assert len(pongs) >= 1  # requests were served while the code played
    edges = wait_edges(board, start, LED, 2)
    pb = analyse_playback(edges, bits, 10.0)
    assert pb.levels == bits and pb.max_error_cycles == 0


def test_a_saved_code_comes_back_after_a_reset(board: SimulatedArduino) -> None:
    code = ShutterCode.parse("1110010111", 250.0)
    with ArduinoShutter(board.port) as sh:
        sh.configure(PlaybackConfig(mode="repeat", repeats=3, lead_us=50.0))
        sh.load_code(code)
        sh.arm()  # sends the configuration
        sh.disarm()
        assert sh.save_to_eeprom().eeprom & 1
    with ArduinoShutter(board.port) as sh:  # opening the port resets the board
        assert sh.device_info.eeprom_restored
        st = sh.device_status()
        assert st.code_sha256 == code.sha256 and st.n_chips == 10 and st.chip_ns == 250_000
        assert (st.mode, st.repeats, st.lead_ns) == (1, 3, 50_000)
        assert not sh.status().echo_verified  # not verified by this session: load it to use it
        sh.erase_eeprom()
    with ArduinoShutter(board.port) as sh:
        assert not sh.device_info.eeprom_restored
        assert sh.status().state == "idle"


def test_discovery_identifies_the_firmware_by_its_banner(board: SimulatedArduino) -> None:
    from hw.serial_ports import identify

    info = identify(board.port, timeout_s=3.0)
    assert info is not None and info.firmware_version == "1.0.0" and info.protocol_version == 1


def test_discovery_says_no_for_another_device(tmp_path) -> None:
    """A port whose device never answers in our protocol (here: a pty nobody serves)."""
    import os
    import pty

    from hw.serial_ports import identify

    master, slave = pty.openpty()
    try:
        t = time.monotonic()
        assert identify(os.ttyname(slave), timeout_s=0.5) is None
        assert time.monotonic() - t < 5.0
    finally:
        os.close(master)
        os.close(slave)


def test_pipelined_requests_are_each_answered_or_refused_never_dropped(raw) -> None:
    """PROTOCOL.md: one request at a time. 100 valid requests written back to back overflow the
    128-byte receive ring (25 answers came back, the rest vanished); now every request gets its
    reply or an E_RX_OVERFLOW error: answers plus errors = 100."""
    port, rx = raw
    n = 100
    port.write(b"".join(sp.encode_frame(sp.MsgType.GET_STATUS, 1 + i % 255) for i in range(n)))
    packets = []
    deadline = time.monotonic() + 15.0
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        got = [i for i in rx.feed(read_some(port)) if isinstance(i, sp.Packet)]
        packets += got
        if got:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0 and packets:
            break
    replies = [p for p in packets if p.type == sp.reply_type(sp.MsgType.GET_STATUS)]
    errors = error_codes(packets)
    print(f"{len(replies)} replies, errors {sorted(set(errors))} x {len(errors)}")
    assert len(replies) + len(errors) == n
    assert set(errors) <= {sp.ErrorCode.E_RX_OVERFLOW, sp.ErrorCode.E_CRC,
                           sp.ErrorCode.E_FRAMING}
    assert errors and replies  # the ring did overflow, and the device kept answering
    status_ok(port, rx, 7)


# -- the receive ring full exactly on a delimiter --------------------------------------------------
# A LOAD_CODE of 1024 chips keeps the firmware busy for about 85 ms of simulated time (it hashes
# the code, then replies) with its 128-byte receive ring empty (it holds 127 bytes at most). The 127
# bytes written right behind it (20 GET_STATUS frames of 6 bytes and a PING of 7) fill the ring
# exactly, the last byte a delimiter, so what follows within those 85 ms is lost whatever it is.
# Simulated time makes this deterministic: 127 + 6 bytes take 12 ms on the wire.
RING_FILL = b"".join(sp.encode_frame(sp.MsgType.GET_STATUS, 10 + i) for i in range(20))
RING_FILL += sp.encode_frame(sp.MsgType.PING, 30, b"x")


def fill_ring(port: serial.Serial, rx: sp.FrameReceiver, behind: bytes,
              after: bytes = b"") -> list[sp.Packet]:
    """Write LOAD_CODE (seq 1) + ``behind`` at once, ``after`` once the LOAD_CODE reply is in (the
    firmware is then draining its ring); return every packet until 1 s of quiet. Checks that the
    20 GET_STATUS of RING_FILL (``behind`` starts with them) are answered."""
    assert len(RING_FILL) == 127 and behind.startswith(RING_FILL[:120])
    load = sp.encode_frame(sp.MsgType.LOAD_CODE, 1, sp.load_code_body("1" * 1024, 10_000))
    port.write(load + behind)
    packets: list[sp.Packet] = []
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not any(p.seq == 1 for p in packets):
        packets += [i for i in rx.feed(read_some(port)) if isinstance(i, sp.Packet)]
    assert [p.type for p in packets if p.seq == 1] == [sp.reply_type(sp.MsgType.LOAD_CODE)]
    port.write(after)
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < 1.0:
        got = [i for i in rx.feed(read_some(port)) if isinstance(i, sp.Packet)]
        packets += got
        if got:
            quiet_since = time.monotonic()
    statuses = [p.seq for p in packets if p.type == sp.reply_type(sp.MsgType.GET_STATUS)]
    assert sorted(s for s in statuses if s < 30) == list(range(10, 30))
    return packets


def test_a_request_lost_whole_behind_a_ring_full_on_a_delimiter_gets_e_rx_overflow(raw) -> None:
    """Every byte of a GET_STATUS but its delimiter is lost to the full ring; the delimiter arrives
    once the ring drains. The frame it ends is empty, which the parser ignores: the request went
    unanswered (silence) until the receive interrupt counted such a frame as lost whole."""
    port, rx = raw
    frame = sp.encode_frame(sp.MsgType.GET_STATUS, 40)
    packets = fill_ring(port, rx, RING_FILL + frame[:-1], after=frame[-1:])
    assert error_codes(packets) == [sp.ErrorCode.E_RX_OVERFLOW]
    assert len(packets) == 1 + 21 + 1  # LOAD_CODE, the 20 GET_STATUS and PING, the lost request
    assert status_ok(port, rx, 41).last_error == sp.ErrorCode.E_RX_OVERFLOW


def test_a_request_that_lost_its_head_to_a_full_ring_fails_its_crc(raw) -> None:
    """The same, but the tail of the frame arrives after the ring drains: a truncated frame, whose
    answer is a frame-level error (E_CRC or E_FRAMING), exactly one."""
    port, rx = raw
    frame = sp.encode_frame(sp.MsgType.GET_STATUS, 40)
    packets = fill_ring(port, rx, RING_FILL + frame[:3], after=frame[3:])
    assert error_codes(packets) in ([sp.ErrorCode.E_CRC], [sp.ErrorCode.E_FRAMING])
    assert len(packets) == 1 + 21 + 1
    status_ok(port, rx, 41)


def test_lone_delimiters_lost_to_a_full_ring_are_not_requests(raw) -> None:
    """Empty frames are ignored (PROTOCOL.md), also when the ring is full: a lost 0x00 that ends
    no bytes is not a request lost whole, so no E_RX_OVERFLOW for it."""
    port, rx = raw
    packets = fill_ring(port, rx, RING_FILL + b"\x00" * 16, after=b"\x00" * 4)
    assert error_codes(packets) == []
    assert len(packets) == 1 + 21
    status_ok(port, rx, 41)


@pytest.mark.parametrize("then", ["nothing", "a request"])
def test_a_request_whose_delimiter_is_lost_after_its_head_is_answered_once(raw, then) -> None:
    """A PING of 6 bytes instead of 7 leaves one slot: the first byte of the next GET_STATUS is
    stored, the rest of it, delimiter included, is lost. That request gets one answer (its head
    fails its CRC), not an E_RX_OVERFLOW and then an E_TIMEOUT for the head left in the parser;
    and a request sent after it is answered, not merged with that head into one more bad frame."""
    port, rx = raw
    frame = sp.encode_frame(sp.MsgType.GET_STATUS, 40)
    after = sp.encode_frame(sp.MsgType.GET_STATUS, 41) if then == "a request" else b""
    fill = RING_FILL[:120] + sp.encode_frame(sp.MsgType.PING, 30)
    packets = fill_ring(port, rx, fill + frame, after=after)
    assert error_codes(packets) in ([sp.ErrorCode.E_CRC], [sp.ErrorCode.E_FRAMING])
    replied = [p.seq for p in packets if p.type == sp.reply_type(sp.MsgType.GET_STATUS)]
    assert 40 not in replied and (41 in replied) == (then == "a request")
    assert len(packets) == 1 + 21 + 1 + (then == "a request")
    status_ok(port, rx, 42)
