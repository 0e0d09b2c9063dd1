"""The simavr harness (firmware/sim/bvsim.c) and its wrapper (hw/sim/avr.py), tested with the tiny
AVR program firmware/sim/simtest.c: pty bridge, UART bursts, exact timer edges, input pins, pause,
crash, errors.

Needs gcc-avr, avr-libc, libsimavr-dev, libelf-dev (and simavr): skipped without them, failed
without them when CI=true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import serial

from hw.errors import DeviceDisconnected, InitialiseError
from hw.sim.avr import REPO_ROOT, SimulatedArduino, cycles_to_us
from tests.firmware.toolchain import missing_firmware_tools, require

SIM_DIR = REPO_ROOT / "firmware" / "sim"
BUILD_DIR = REPO_ROOT / "firmware" / "build"
HARNESS = BUILD_DIR / "bvsim"
SIMTEST = BUILD_DIR / "simtest.elf"
APT_PACKAGES = "gcc-avr avr-libc libsimavr-dev libelf-dev simavr"
BANNER = b"simtest ready\n"
T = TypeVar("T")


@pytest.fixture(scope="session")
def simtest_elf() -> Path:
    """Build the harness and simtest.elf once per session (`make -C firmware/sim`)."""
    require(missing_firmware_tools(), APT_PACKAGES)
    res = subprocess.run(
        ["make", "-C", str(SIM_DIR)], capture_output=True, text=True, timeout=300, check=False
    )
    if res.returncode != 0:
        pytest.fail(f"`make -C firmware/sim` failed:\n{res.stdout}\n{res.stderr}")
    assert HARNESS.is_file() and SIMTEST.is_file()
    return SIMTEST


@pytest.fixture
def board(simtest_elf: Path) -> Iterator[SimulatedArduino]:
    with SimulatedArduino(simtest_elf) as b:
        yield b


def open_port(board: SimulatedArduino, timeout: float = 3.0) -> serial.Serial:
    """Open the board's port and wait for the boot banner (the open resets the board)."""
    s = serial.Serial(board.port, 115200, timeout=timeout)
    assert s.readline() == BANNER
    return s


def wait_for(predicate: Callable[[], T], timeout: float = 3.0) -> T:
    """Poll ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def test_pty_line_port_opens_and_boot_banner_arrives(board: SimulatedArduino) -> None:
    assert board.port.startswith("/dev/")
    assert board.alive and board.freq_hz == 16_000_000
    t0 = time.monotonic()
    with serial.Serial(board.port, 115200, timeout=3) as s:
        assert s.readline() == BANNER
    assert time.monotonic() - t0 < 2.0
    # like an Uno, every open resets the board: the banner comes again
    with serial.Serial(board.port, 115200, timeout=3) as s:
        assert s.readline() == BANNER


def test_5000_byte_burst_echoes_intact(board: SimulatedArduino) -> None:
    data = bytes(b"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36] for i in range(5000))
    with open_port(board, timeout=5) as s:
        t0 = time.monotonic()
        s.write(data)
        got = s.read(len(data))
        dt = time.monotonic() - t0
    assert got == data
    # 115200 baud with U2X, simavr counts 11 bits per byte: ~10.7 kB/s, paced to real time
    assert 0.3 < dt < 3.0, f"{len(data) / dt:.0f} B/s"


def test_timer1_ctc_toggle_edges_are_exactly_160_cycles_apart(board: SimulatedArduino) -> None:
    with open_port(board) as s:
        s.write(b"T")
        assert s.read(1) == b"T"
        time.sleep(0.02)
        s.write(b"S")
        assert s.read(1) == b"S"
    time.sleep(0.02)  # the harness flushes its log every 2 ms
    b1 = [(c, lvl) for c, pin, lvl in board.edges() if pin == "B1"]
    assert len(b1) > 100
    gaps = {b[0] - a[0] for a, b in zip(b1, b1[1:], strict=False)}
    assert gaps == {160}
    assert cycles_to_us(160, board.freq_hz) == 10.0
    assert [lvl for _, lvl in b1[:4]] == [1, 0, 1, 0]


def test_set_pin_d2_makes_b0_follow(board: SimulatedArduino) -> None:
    time.sleep(0.02)  # simtest polls PD2 once its boot banner is sent (1.3 ms)
    board.set_pin("D2", 1)
    rise = wait_for(lambda: [e for e in board.edges() if e[1:] == ("B0", 1)])[0]
    d2 = [e for e in board.edges() if e[1] == "D2"]
    assert d2[0][2] == 1 and 0 < rise[0] - d2[0][0] < 100  # the main loop polls PIND
    board.set_pin("D2", 0)
    wait_for(lambda: [e for e in board.edges_since(rise[0] + 1) if e[1:] == ("B0", 0)])


def test_pause_makes_reads_time_out_and_resume_continues(board: SimulatedArduino) -> None:
    with open_port(board) as s:
        board.pause()
        try:
            s.write(b"x")
            s.timeout = 0.3
            assert s.read(1) == b""
        finally:
            board.resume()
        s.timeout = 3
        assert s.read(1) == b"x"


def test_killed_harness_unblocks_a_blocked_reader(board: SimulatedArduino) -> None:
    s = open_port(board)
    s.timeout = None  # block until data or failure
    outcome: list[object] = []

    def reader() -> None:
        try:
            outcome.append(s.read(1))
        except serial.SerialException as e:
            outcome.append(e)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.1)
    os.kill(board.pid, signal.SIGKILL)
    t.join(3)
    assert not t.is_alive(), "the reader hangs after the harness died"
    assert outcome and (outcome[0] == b"" or isinstance(outcome[0], serial.SerialException))
    s.close()
    assert not board.alive
    with pytest.raises(DeviceDisconnected):
        board.set_pin("D2", 1)


def test_sigterm_exits_cleanly_and_flushes_the_log(simtest_elf: Path, tmp_path: Path) -> None:
    board = SimulatedArduino(simtest_elf, workdir=tmp_path, vcd=tmp_path / "pins.vcd").start()
    board.set_pin("D2", 1)
    time.sleep(0.05)
    assert board.stop() == 0
    assert board.stop() == 0  # idempotent
    assert ("B0", 1) in [e[1:] for e in board.edges()]
    log = (tmp_path / "bvsim-edges.log").read_text().splitlines()
    assert log[0] == "# bvsim edges freq=16000000"
    assert "$enddefinitions" in (tmp_path / "pins.vcd").read_text()


def test_max_seconds_paced_and_unpaced(simtest_elf: Path) -> None:
    t0 = time.monotonic()
    with SimulatedArduino(simtest_elf, max_seconds=0.3) as board:
        assert board.wait(5) == 0
    assert time.monotonic() - t0 >= 0.29  # paced: never ahead of wall time
    with SimulatedArduino(simtest_elf, max_seconds=0.3, speed=0, edges=False) as board:
        assert board.wait(5) == 0


def test_crashed_avr_exits_with_code_3(simtest_elf: Path, tmp_path: Path) -> None:
    src = tmp_path / "dead.c"
    src.write_text('int main(void) { __asm__ volatile("cli\\n sleep"); for (;;) {} }\n')
    elf = tmp_path / "dead.elf"
    subprocess.run(["avr-gcc", "-mmcu=atmega328p", "-Os", "-o", elf, src], check=True)
    with SimulatedArduino(elf) as board:
        assert board.wait(5) == 3
        assert "interrupts disabled" in board.harness_log()


def test_missing_elf_is_a_clear_error(simtest_elf: Path, tmp_path: Path) -> None:
    with pytest.raises(InitialiseError, match="Firmware ELF not found"):
        SimulatedArduino(tmp_path / "nope.elf").start()
    junk = tmp_path / "junk.elf"
    junk.write_bytes(b"not an elf")
    with pytest.raises(InitialiseError, match="cannot load firmware"):
        SimulatedArduino(junk).start()


def test_missing_harness_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(InitialiseError, match=r"make -C firmware/sim"):
        SimulatedArduino(tmp_path / "x.elf", harness=tmp_path / "bvsim").start()
