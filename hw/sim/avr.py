"""Run AVR firmware in simavr, through the ``bvsim`` harness (``firmware/sim/bvsim.c``).

:class:`SimulatedArduino` starts one harness process per instance. The harness runs the firmware
on a simulated ATmega328P at 16 MHz and:

* bridges the AVR's UART0 to a pseudo-terminal, :attr:`SimulatedArduino.port`: open it with pyserial
  like the port of a real board. Like an Uno, opening the port resets the board (DTR auto-reset):
  the AVR is held in reset for 50 ms and then boots, so the host sees the boot banner after its
  ``open()``; bytes sent while the board is held in reset are lost, as on the real board;
* logs every level change of PB0 PB1 PB2 PB5 PD7 PD2 with its CPU cycle
  (:meth:`SimulatedArduino.edges`); edges made by a timer's output compare carry the exact cycle;
* drives input pins (:meth:`SimulatedArduino.set_pin`);
* paces simulated time to wall time (``speed=1``, the default; ``speed=0`` runs as fast as it can,
  about 4x real time).

Known differences from the real chip (simavr 1.6) are listed at the top of
``firmware/sim/bvsim.c``; the ones that matter most here: a UART byte takes 11 bit times instead of
10 (about 9 % slower), and in set/clear-on-match mode a ``PORTB`` write forces OC1A/OC1B back to
their ``PORTB`` bits.

Build the harness and its self-test program first: ``make -C firmware/sim``.

>>> cycles_to_us(160)
10.0
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

from hw.errors import (
    AcquisitionTimeout,
    DeviceDisconnected,
    IncompatibleStateError,
    InitialiseError,
)

#: The repository root (this file is ``hw/sim/avr.py``).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where ``make -C firmware/sim`` puts the harness.
DEFAULT_HARNESS = REPO_ROOT / "firmware" / "build" / "bvsim"
#: The shutter controller's clock.
DEFAULT_FREQ_HZ = 16_000_000
#: The pins the harness logs: SHUTTER, SHUTTER_N, CAM_TRIG, LED, DMD_TRIG, TRIG_IN.
LOGGED_PINS = ("B0", "B1", "B2", "B5", "D7", "D2")

#: One edge: (cpu cycle, pin such as ``"B1"``, new level 0 or 1).
Edge = tuple[int, str, int]

_PIN_RE = re.compile(r"^[A-La-l][0-7]$")
_BUILD_HINT = "run `make -C firmware/sim` (or `make -C firmware`) to build it"


def cycles_to_us(cycles: int | float, freq_hz: int = DEFAULT_FREQ_HZ) -> float:
    """Convert CPU cycles to microseconds (16 MHz: 16 cycles per microsecond).

    >>> cycles_to_us(16_000_000)
    1000000.0
    """
    return cycles * 1e6 / freq_hz


def _kill_and_clean(proc: subprocess.Popen[bytes] | None, tmpdir: str | None) -> None:
    """Last-resort cleanup when a :class:`SimulatedArduino` is garbage-collected unstopped."""
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


class SimulatedArduino:
    """The shutter controller's Arduino, simulated: firmware in simavr behind a pseudo-terminal.

    Use it as a context manager (``with SimulatedArduino(elf) as board: ...``), or call
    :meth:`start` and :meth:`stop`.

    Args:
        elf: the firmware, an AVR ELF file (``firmware/build/*.elf``).
        harness: the ``bvsim`` executable; default ``firmware/build/bvsim`` in this repository.
        speed: simulated seconds per wall-clock second; 1 = real time (default), 0 = unpaced.
        edges: log pin edges (:meth:`edges`).
        vcd: also write the edges as a VCD waveform to this file.
        workdir: folder for the edge log and the harness's stderr; default: a private temporary
            folder, removed by :meth:`stop`.
        max_seconds: the harness exits (code 0) after this much simulated time.
        freq_hz: CPU clock.
        reset_on_open: reset the AVR each time a host opens the port, like an Uno's DTR reset.
        uart_log: also log the UART bytes with their cycle in :meth:`edges`, as
            ``(cycle, "RX", byte)`` (handed to the AVR) and ``(cycle, "TX", byte)`` (sent by it).
        start_timeout_s: how long :meth:`start` waits for the harness to open its pty.
    """

    def __init__(
        self,
        elf: str | Path,
        *,
        harness: str | Path | None = None,
        speed: float = 1.0,
        edges: bool = True,
        vcd: Path | None = None,
        workdir: Path | None = None,
        max_seconds: float | None = None,
        freq_hz: int = DEFAULT_FREQ_HZ,
        reset_on_open: bool = True,
        start_timeout_s: float = 10.0,
        uart_log: bool = False,
    ) -> None:
        if not speed >= 0:
            raise ValueError(f"speed must be >= 0 (1 = real time, 0 = unpaced), got {speed!r}.")
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0 or None, got {max_seconds!r}.")
        if not freq_hz > 0:
            raise ValueError(f"freq_hz must be > 0, got {freq_hz!r}.")
        self.elf = Path(elf)
        self.harness = Path(harness) if harness is not None else DEFAULT_HARNESS
        self.speed = float(speed)
        self.vcd = Path(vcd) if vcd is not None else None
        self.max_seconds = max_seconds
        self.reset_on_open = reset_on_open
        self.uart_log = uart_log
        self.start_timeout_s = start_timeout_s
        self._log_edges = edges
        self._freq_hz = int(freq_hz)
        self._workdir = Path(workdir) if workdir is not None else None
        self._tmpdir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: str | None = None
        self._paused = False
        self._stopped = False
        self._finalizer: weakref.finalize | None = None
        self._edges_path: Path | None = None
        self._stderr_path: Path | None = None
        self._edges: list[Edge] = []
        self._edges_offset = 0
        self._edges_partial = b""
        self._stderr_cache: str | None = None
        self.returncode: int | None = None
        """The harness's exit code once it has exited: 0 clean, 2 load error, 3 AVR crashed."""

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> SimulatedArduino:
        """Launch the harness and wait for its pty; returns ``self``.

        Raises:
            InitialiseError: the harness or the firmware is missing, or the harness failed to
                start (its stderr is in the message).
            IncompatibleStateError: already started.
        """
        if self._proc is not None or self._stopped:
            raise IncompatibleStateError(
                "This SimulatedArduino was already started; create a new one to run again."
            )
        if not self.harness.is_file() or not os.access(self.harness, os.X_OK):
            raise InitialiseError(
                f"The simavr harness {self.harness} does not exist; {_BUILD_HINT}."
            )
        if not self.elf.is_file():
            raise InitialiseError(
                f"Firmware ELF not found: {self.elf}; build the firmware first "
                "(`make -C firmware`)."
            )
        if self._workdir is not None:
            self._workdir.mkdir(parents=True, exist_ok=True)
            base = self._workdir
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="bvsim-")
            base = Path(self._tmpdir)
        self._stderr_path = base / "bvsim-stderr.log"
        cmd = [
            str(self.harness),
            "--freq",
            str(self._freq_hz),
            "--speed",
            repr(self.speed),
        ]
        if self._log_edges:
            self._edges_path = base / "bvsim-edges.log"
            cmd += ["--edges", str(self._edges_path)]
            if self.uart_log:
                cmd.append("--uart-log")
        if self.vcd is not None:
            cmd += ["--vcd", str(self.vcd)]
        if self.max_seconds is not None:
            cmd += ["--max-seconds", repr(float(self.max_seconds))]
        if not self.reset_on_open:
            cmd.append("--no-reset-on-open")
        cmd.append(str(self.elf))
        with open(self._stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, close_fds=True
            )
        self._finalizer = weakref.finalize(self, _kill_and_clean, self._proc, self._tmpdir)
        try:
            self._port = self._read_pty_line()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_pty_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + self.start_timeout_s
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise InitialiseError(
                    f"The simavr harness did not open its pty within {self.start_timeout_s:g} s."
                    f"{self._stderr_tail()}"
                )
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 256)
            if not chunk:
                rc = self._proc.wait(timeout=5)
                raise InitialiseError(
                    f"The simavr harness exited with code {rc} before opening its pty "
                    f"(firmware {self.elf}).{self._stderr_tail()}"
                )
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
        if not line.startswith("PTY "):
            raise InitialiseError(
                f"The simavr harness printed {line!r} instead of 'PTY <path>'.{self._stderr_tail()}"
            )
        return line[4:].strip()

    def stop(self) -> int | None:
        """Stop the harness (SIGTERM, then SIGKILL after 5 s) and clean up; idempotent.

        The edge log is read one last time, so :meth:`edges` still works afterwards. Returns the
        harness's exit code (None if it never started).
        """
        if self._stopped:
            return self.returncode
        self._stopped = True
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    if self._paused:
                        proc.send_signal(signal.SIGCONT)
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
                except ProcessLookupError:
                    pass
            self._paused = False
            self.returncode = proc.returncode
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
            if self._log_edges and self._edges_path is not None:
                self._read_edges()
            self._stderr_cache = self._read_stderr()
        if self._finalizer is not None:
            self._finalizer()  # removes the private temporary folder
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the harness to exit by itself (``max_seconds``, a crash); returns its code.

        Raises:
            AcquisitionTimeout: it is still running after ``timeout`` seconds.
        """
        proc = self._require_proc()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AcquisitionTimeout(
                f"The simavr harness was still running after {timeout:g} s."
            ) from e
        self.returncode = rc
        return rc

    def __enter__(self) -> SimulatedArduino:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive else ("stopped" if self._proc else "not started")
        return f"SimulatedArduino({str(self.elf)!r}, port={self._port!r}, {state})"

    # -- properties ----------------------------------------------------------------------------
    @property
    def port(self) -> str:
        """The pty path (``/dev/pts/N``) to open with pyserial."""
        self._require_proc()
        assert self._port is not None
        return self._port

    @property
    def alive(self) -> bool:
        """True while the harness process runs (also while paused)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return self._paused

    @property
    def pid(self) -> int:
        """The harness's process id."""
        return self._require_proc().pid

    @property
    def freq_hz(self) -> int:
        """CPU clock of the simulated AVR, in Hz."""
        return self._freq_hz

    # -- pins and control ----------------------------------------------------------------------
    def set_pin(self, pin: str, level: int | bool | None) -> None:
        """Drive an input pin, e.g. ``set_pin("D2", 1)`` raises TRIG_IN; ``None`` releases it.

        The change happens within 100 us of simulated time (while paused: on :meth:`resume`).

        Raises:
            ValueError: malformed pin or level.
            DeviceDisconnected: the harness is not running any more.
        """
        if not isinstance(pin, str) or not _PIN_RE.match(pin):
            raise ValueError(f"pin must be a port letter and a bit such as 'D2', got {pin!r}.")
        if level is None:
            arg = "z"
        elif level in (0, 1):
            arg = str(int(level))
        else:
            raise ValueError(f"level must be 0, 1 or None (release), got {level!r}.")
        self._command(f"pin {pin.upper()} {arg}")

    def reset(self) -> None:
        """Reset the AVR, as a pulse on its RESET pin would."""
        self._command("reset")

    def pause(self) -> None:
        """Freeze the harness (SIGSTOP): the board hangs, its port stays open but goes silent."""
        proc = self._require_alive("pause")
        proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Continue after :meth:`pause` (SIGCONT); simulated time goes on where it stopped."""
        proc = self._require_alive("resume")
        proc.send_signal(signal.SIGCONT)
        self._paused = False

    def _command(self, line: str) -> None:
        proc = self._require_alive(line.split()[0])
        assert proc.stdin is not None
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise DeviceDisconnected(
                f"The simavr harness went away; cannot send {line!r}.{self._stderr_tail()}"
            ) from e

    # -- edges ---------------------------------------------------------------------------------
    def edges(self) -> list[Edge]:
        """Every pin edge logged so far, oldest first: ``(cycle, pin, level)``.

        The harness flushes its log every 2 ms of wall time, so an edge shows up here within a
        few milliseconds.

        Raises:
            IncompatibleStateError: not started, or started with ``edges=False``.
        """
        if not self._log_edges:
            raise IncompatibleStateError("Edge logging is off: create it with edges=True.")
        if self._proc is None:
            raise IncompatibleStateError("The SimulatedArduino is not started.")
        if not self._stopped:
            self._read_edges()
        return list(self._edges)

    def edges_since(self, cycle: int) -> list[Edge]:
        """The edges at or after ``cycle``."""
        return [e for e in self.edges() if e[0] >= cycle]

    def harness_log(self) -> str:
        """What the harness wrote on stderr (diagnostics, the reason it stopped)."""
        if self._stderr_cache is not None:
            return self._stderr_cache
        return self._read_stderr()

    def _read_edges(self) -> None:
        assert self._edges_path is not None
        try:
            with open(self._edges_path, "rb") as f:
                f.seek(self._edges_offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._edges_offset += len(data)
        data = self._edges_partial + data
        lines = data.split(b"\n")
        self._edges_partial = lines.pop()
        for raw in lines:
            if not raw or raw.startswith(b"#"):
                continue
            cycle, pin, level = raw.split()
            self._edges.append((int(cycle), pin.decode(), int(level)))

    # -- helpers -------------------------------------------------------------------------------
    def _read_stderr(self) -> str:
        if self._stderr_path is None:
            return ""
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _stderr_tail(self, n: int = 2000) -> str:
        text = self.harness_log().strip()
        if not text:
            return ""
        return "\nHarness stderr:\n" + text[-n:]

    def _require_proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise IncompatibleStateError(
                "The SimulatedArduino is not started: use it in a `with` block or call start()."
            )
        return self._proc

    def _require_alive(self, what: str) -> subprocess.Popen[bytes]:
        proc = self._require_proc()
        if self._stopped or proc.poll() is not None:
            raise DeviceDisconnected(
                f"Cannot {what}: the simavr harness is not running "
                f"(exit code {proc.poll()}).{self._stderr_tail()}"
            )
        return proc
