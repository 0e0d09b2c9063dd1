"""ArduinoShutter against a scripted fake controller: the handshake and the error paths.

``FakeController`` is a test double: just enough of protocol 1 (firmware/PROTOCOL.md) in Python,
with fault knobs, to drive the driver through every error path. The real firmware, in a simulated
AVR, is tested elsewhere. It is reached through an in-memory :class:`MemoryLink` transport, or
through a pseudo-terminal with the driver's real :class:`SerialTransport` (``PtyLink``).
"""

from __future__ import annotations

import os
import pty
import select
import struct
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator

import pytest

from common.codes import code_sha256
from hw import shutter_protocol as sp
from hw.arduino_shutter import ArduinoShutter, PlaybackConfig, SerialTransport
from hw.arduino_shutter_cli import main
from hw.errors import (
    AcquisitionTimeout,
    DeviceDisconnected,
    DeviceError,
    IncompatibleStateError,
    InitialiseError,
    ProtocolError,
    UnsupportedFeatureError,
)
from hw.serial_ports import identify
from hw.types import ShutterCode
from tests.hw.contracts import ShutterContract

T = sp.MsgType
CODE8 = ShutterCode.parse("11100101", 1000)
FAST = {"ready_timeout_s": 0.15, "reply_timeout_s": 0.08, "retries": 2}


# -- the test double -------------------------------------------------------------------------------
class FakeController:
    """A scripted shutter controller: protocol 1, just enough of it, with fault knobs.

    Knobs (counters are used up one per reply): ``silent`` (answers nothing), ``drop_replies``,
    ``corrupt_replies`` (wrong CRC), ``damage_requests`` (answers a frame-level E_CRC instead of
    executing), ``flip_last_chip`` (stores a corrupted code), ``done_result``, ``drop_done``,
    ``late_duplicates`` (every reply comes after a copy of the previous one), ``refuse``
    (type -> (error code, detail)).
    """

    def __init__(self, info: sp.DeviceInfo | bytes | None = None, resets_on_open: bool = True):
        self.info_body = info if isinstance(info, bytes) else (info or sp.DeviceInfo()).to_body()
        self.resets_on_open = resets_on_open
        self.send: Callable[[bytes], None] = lambda frame: None
        self.rx = sp.FrameReceiver()
        self.received: list[sp.Packet] = []
        self.executed: list[sp.Packet] = []
        self.silent = False
        self.drop_replies = self.corrupt_replies = self.damage_requests = 0
        self.flip_last_chip = False
        self.done_result = sp.DoneResult.COMPLETE
        self.drop_done = self.late_duplicates = False
        self.previous_reply = b""
        self.refuse: dict[int, tuple[int, int]] = {}
        self.trigger_count = 0
        self.boot()

    def boot(self, announce: bool = False) -> None:
        self.bits: tuple[int, ...] = ()
        self.chip_ns = 0
        self.armed = False
        self.config = sp.configure_body()
        self.last: tuple[int, int, bytes] | None = None
        if announce and not self.silent:
            self.send(sp.encode_frame(T.READY, 0, self.info_body))

    def feed(self, data: bytes) -> None:
        for item in self.rx.feed(data):
            if isinstance(item, sp.FrameError):
                self.send(sp.encode_frame(T.ERROR, 0, sp.ErrorReply(item.code, 0).to_body()))
            else:
                self.handle(item)

    def handle(self, pkt: sp.Packet) -> None:
        self.received.append(pkt)
        if self.silent:
            return
        if self.damage_requests:
            self.damage_requests -= 1
            self.send(sp.encode_frame(T.ERROR, 0, sp.ErrorReply(sp.ErrorCode.E_CRC, 0).to_body()))
            return
        extra: list[bytes] = []
        if self.last is not None and self.last[:2] == (pkt.type, pkt.seq):
            reply = self.last[2]  # a resent request: the stored reply, not executed again
        else:
            self.executed.append(pkt)
            rtype, body, extra = self.execute(pkt)
            reply = sp.encode_packet(rtype, pkt.seq, body)
            self.last = (pkt.type, pkt.seq, reply)
        if self.drop_replies:
            self.drop_replies -= 1
        elif self.corrupt_replies:
            self.corrupt_replies -= 1
            self.send(sp.cobs_encode(reply[:-1] + bytes([reply[-1] ^ 0x5A])) + b"\x00")
        else:
            if self.late_duplicates and self.previous_reply:
                self.send(sp.cobs_encode(self.previous_reply) + b"\x00")
            self.send(sp.cobs_encode(reply) + b"\x00")
            self.previous_reply = reply
        for frame in [] if self.drop_done else extra:
            self.send(frame)

    def status_body(self) -> bytes:
        prescaler, ticks = sp.timer_setting(self.chip_ns) if self.bits else (0, 0)
        state = sp.DeviceState.ARMED if self.armed else int(bool(self.bits))
        mode, repeats, period, lead, style, pulse, source, flags = struct.unpack(
            "<BHIIBIBB", self.config
        )
        return sp.DeviceStatus(
            state, 0, self.trigger_count, len(self.bits), self.chip_ns, prescaler, ticks,
            code_sha256(self.bits) if self.bits else "0" * 64,
            mode, repeats, period, lead, style, pulse, source, flags,
        ).to_body()  # fmt: skip

    def execute(self, pkt: sp.Packet) -> tuple[int, bytes, list[bytes]]:
        def error(code: int, detail: int = 0) -> tuple[int, bytes, list[bytes]]:
            return T.ERROR, sp.ErrorReply(code, pkt.type, detail).to_body(), []

        if pkt.type in self.refuse:
            return error(*self.refuse[pkt.type])
        status = (sp.reply_type(pkt.type), b"", [])
        if pkt.type == T.GET_INFO:
            return T.INFO, self.info_body, []
        if pkt.type == T.PING:
            return T.PONG, pkt.body, []
        if pkt.type == T.LOAD_CODE:
            if self.armed:
                return error(sp.ErrorCode.E_BUSY)
            n, chip_ns = struct.unpack_from("<HI", pkt.body)
            if not sp.is_chip_ns_valid(chip_ns):
                return error(sp.ErrorCode.E_CHIP_TIMING)
            bits = sp.unpack_bits(pkt.body[6:], n)
            if self.flip_last_chip:
                bits = bits[:-1] + (1 - bits[-1],)
            self.bits, self.chip_ns = bits, chip_ns
        elif pkt.type == T.CONFIGURE:
            self.config = pkt.body
        elif pkt.type == T.ARM:
            if not self.bits:
                return error(sp.ErrorCode.E_NO_CODE)
            self.armed = True
        elif pkt.type == T.DISARM:
            self.armed = False
        elif pkt.type == T.FIRE:
            if not self.armed:
                return error(sp.ErrorCode.E_NOT_ARMED)
            index = self.trigger_count
            self.trigger_count += 1
            done = sp.DoneEvent(index, 1, self.done_result).to_body()
            return T.FIRED, sp.FiredReply(index, 1).to_body(), [sp.encode_frame(T.DONE, 0, done)]
        elif pkt.type not in (T.GET_STATUS, T.SAVE, T.ERASE):
            return error(sp.ErrorCode.E_UNKNOWN_TYPE)
        return status[0], self.status_body(), []

    def seqs(self, msg_type: int) -> list[int]:
        """The seq of every intact request of this type that arrived."""
        return [p.seq for p in self.received if p.type == msg_type]


class MemoryLink:
    """In-memory Transport to a FakeController (it answers inside ``write``)."""

    name = "fake://shutter"

    def __init__(self, device: FakeController) -> None:
        self.device = device
        device.send = self._from_device
        self._buf = bytearray()
        self._cv = threading.Condition()
        self.gone = False
        self.opened = self.closed = 0

    def _from_device(self, frame: bytes) -> None:
        with self._cv:
            self._buf += frame
            self._cv.notify_all()

    def open(self) -> None:
        self.opened += 1
        if self.device.resets_on_open:
            self.device.boot(announce=True)

    def close(self) -> None:
        self.closed += 1

    def write(self, data: bytes) -> None:
        if self.gone:
            raise DeviceDisconnected("The fake port vanished.")
        self.device.feed(data)

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        with self._cv:
            self._cv.wait_for(lambda: self._buf or self.gone, timeout_s)
            if self.gone:
                raise DeviceDisconnected("The fake port vanished.")
            out = bytes(self._buf[:max_bytes])
            del self._buf[:max_bytes]
            return out

    def vanish(self) -> None:
        with self._cv:
            self.gone = True
            self._cv.notify_all()


class PtyLink:
    """The FakeController behind a pseudo-terminal: the driver opens ``path`` with pyserial."""

    def __init__(self, device: FakeController) -> None:
        self.device = device
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        device.send = lambda frame: os.write(self.master, frame)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.02)
                if ready:
                    self.device.feed(os.read(self.master, 512))
            except OSError:
                return

    def boot_later(self, delay_s: float) -> None:
        """Send READY after ``delay_s`` (after the driver opened the port, as a reset board)."""
        threading.Timer(delay_s, self.device.boot, kwargs={"announce": True}).start()

    def vanish(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def make(device: FakeController | None = None, **kwargs: object):
    device = device or FakeController()
    link = MemoryLink(device)
    return ArduinoShutter(transport=link, **{**FAST, **kwargs}), device, link  # type: ignore[arg-type]


@pytest.fixture
def rig() -> Iterator[tuple[ArduinoShutter, FakeController, MemoryLink]]:
    sh, device, link = make()
    sh.open()
    try:
        yield sh, device, link
    finally:
        sh.close()


# -- contract --------------------------------------------------------------------------------------
class TestArduinoShutterOnFakeContract(ShutterContract):
    def make_shutter(self) -> ArduinoShutter:
        return make()[0]


# -- open ------------------------------------------------------------------------------------------
def test_ready_handshake_reads_info_without_asking() -> None:
    sh, device, _ = make(FakeController(sp.DeviceInfo(fw_major=1, fw_minor=4, fw_patch=2)))
    with sh:
        info = sh.info
        assert (info.controller, info.port) == ("arduino", "fake://shutter")
        assert info.firmware_version == "1.4.2 (protocol 1)"
        assert (info.chip_us_min, info.chip_us_max, info.max_chips) == (10.0, 262140.0, 1024)
        assert sh.device_info.f_cpu_hz == 16_000_000
    assert device.seqs(T.GET_INFO) == []


def test_get_info_fallback_when_the_board_does_not_reset() -> None:
    sh, device, _ = make(FakeController(resets_on_open=False))
    t0 = time.monotonic()
    sh.open()
    assert time.monotonic() - t0 >= FAST["ready_timeout_s"]
    assert [p.type for p in device.received] == [T.GET_INFO, T.DISARM]  # disarms a stale session
    assert sh.info.firmware_version.endswith("(protocol 1)")
    sh.close()


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (sp.DeviceInfo(magic=b"XXXX"), "instead of b'BVSH'"),
        (sp.DeviceInfo(protocol_version=2, fw_major=2), "firmware 2.0.0 with protocol version 2"),
        (sp.DeviceInfo().to_body()[:30], "must be 34 bytes"),
    ],
    ids=["magic", "protocol", "length"],
)
def test_wrong_firmware_is_refused_and_the_port_closed(info, expected: str) -> None:
    for resets in (True, False):
        sh, _, link = make(FakeController(info, resets_on_open=resets))
        with pytest.raises(InitialiseError) as err:
            sh.open()
        assert expected in str(err.value) and "flash firmware/blurvid_shutter" in str(err.value)
        assert not sh.is_open and link.closed == 1


def test_silent_device_fails_to_open_in_the_expected_time() -> None:
    device = FakeController()
    device.silent = True
    sh, _, link = make(device)
    t0 = time.monotonic()
    with pytest.raises(InitialiseError) as err:
        sh.open()
    elapsed = time.monotonic() - t0
    expected = FAST["ready_timeout_s"] + (FAST["retries"] + 1) * FAST["reply_timeout_s"]
    assert expected * 0.9 <= elapsed <= expected + 1.0
    assert "fake://shutter" in str(err.value) and "GET_INFO" in str(err.value)
    assert isinstance(err.value.__cause__, AcquisitionTimeout)
    assert link.closed == 1 and not sh.is_open


# -- retries ---------------------------------------------------------------------------------------
def test_silent_device_times_out_with_a_clear_error(rig) -> None:
    sh, device, _ = rig
    device.silent = True
    t0 = time.monotonic()
    with pytest.raises(AcquisitionTimeout) as err:
        sh.status()
    elapsed = time.monotonic() - t0
    expected = (FAST["retries"] + 1) * FAST["reply_timeout_s"]
    assert expected * 0.9 <= elapsed <= expected + 1.0
    message = str(err.value)
    assert "GET_STATUS" in message and "fake://shutter" in message and "Check" in message
    assert len(set(device.seqs(T.GET_STATUS))) == 1  # every attempt with the same seq
    assert len(device.seqs(T.GET_STATUS)) == FAST["retries"] + 1


def test_reply_with_a_wrong_crc_is_retried(rig) -> None:
    sh, device, _ = rig
    sh.load_code(CODE8)
    device.corrupt_replies = 1
    n_before = len(device.executed)
    assert sh.status().echo_verified
    assert len(device.executed) == n_before + 1  # the resend got the stored reply
    seqs = device.seqs(T.GET_STATUS)
    assert len(seqs) == 2 and seqs[0] == seqs[1]
    assert sh.link_stats["rx_frame_errors"] == 1 and sh.link_stats["resends"] == 1


def test_lost_reply_is_retried_with_the_same_seq_and_not_executed_twice(rig) -> None:
    sh, device, _ = rig
    sh.load_code(CODE8)
    sh.arm()
    device.drop_replies = 1
    assert sh.fire() == 0
    seqs = device.seqs(T.FIRE)
    assert len(seqs) == 2 and seqs[0] == seqs[1]
    assert device.trigger_count == 1  # played once
    assert sh.fire() == 1  # and the next fire pairs with its own DONE


def test_damaged_request_reported_by_the_device_is_resent(rig) -> None:
    sh, device, _ = rig
    device.damage_requests = 1
    assert sh.ping(b"abc") >= 0
    assert sh.link_stats["device_frame_errors"] == 1
    assert len(device.seqs(T.PING)) == 2


def test_replies_damaged_every_time_raise_protocol_error(rig) -> None:
    sh, device, _ = rig
    device.corrupt_replies = 100
    with pytest.raises(ProtocolError) as err:
        sh.status()
    assert "damaged reply (E_CRC)" in str(err.value) and "cable" in str(err.value)


# -- code verification -----------------------------------------------------------------------------
def test_echo_with_another_sha_is_refused_and_the_code_not_loaded(rig) -> None:
    sh, device, _ = rig
    device.flip_last_chip = True
    with pytest.raises(ProtocolError) as err:
        sh.load_code(CODE8)
    assert "refuses to go on" in str(err.value) and CODE8.sha256[:12] in str(err.value)
    assert sh.code is None
    assert not sh.status().echo_verified
    with pytest.raises(IncompatibleStateError):
        sh.arm()


def test_chip_duration_the_timer_cannot_play_is_refused_before_sending(rig) -> None:
    sh, device, _ = rig
    with pytest.raises(UnsupportedFeatureError) as err:
        sh.load_code(ShutterCode.parse("101", 1000.3))
    assert "1000 us or 1000.5 us" in str(err.value)
    assert device.seqs(T.LOAD_CODE) == []


def test_refusals_map_to_the_error_tree(rig) -> None:
    sh, device, _ = rig
    device.refuse[T.CONFIGURE] = (sp.ErrorCode.E_BAD_VALUE, 7)
    with pytest.raises(UnsupportedFeatureError) as err:
        sh.configure(PlaybackConfig(lead_us=200))
    assert "field lead_ns" in str(err.value) and "E_BAD_VALUE" in str(err.value)
    device.refuse[T.CONFIGURE] = (sp.ErrorCode.E_BUSY, 0)
    with pytest.raises(IncompatibleStateError, match="disarm"):
        sh.configure(PlaybackConfig())
    device.refuse[T.CONFIGURE] = (sp.ErrorCode.E_LENGTH, 18)
    with pytest.raises(ProtocolError, match="flash"):
        sh.configure(PlaybackConfig())


def test_aborted_playback_raises(rig) -> None:
    sh, device, _ = rig
    sh.load_code(CODE8)
    sh.arm()
    device.done_result = sp.DoneResult.ABORTED
    with pytest.raises(DeviceError, match="aborted"):
        sh.fire()
    device.done_result = sp.DoneResult.OVERRUN
    with pytest.raises(DeviceError, match="missed a chip boundary"):
        sh.fire()
    with pytest.raises(AcquisitionTimeout, match="TRIG_IN"):
        sh.wait_done(0.05)  # fire() consumed its own DONE reports


@pytest.mark.slow
def test_lost_done_is_reported(rig) -> None:
    sh, device, _ = rig
    sh.load_code(CODE8)
    sh.arm()
    device.drop_done = True
    with pytest.raises(ProtocolError, match="DONE.*was lost"):
        sh.fire()


def test_configuration_is_sent_at_arm(rig) -> None:
    sh, device, _ = rig
    cfg = PlaybackConfig(trigger_style="pulse", pulse_us=50, lead_us=200, dmd_pulse=False)
    sh.configure(cfg)
    sh.load_code(CODE8)
    sh.arm()
    assert device.config == cfg.to_body()
    st = sh.device_status()
    assert (st.state_name, st.lead_ns, st.pulse_ns, st.flags) == ("armed", 200_000, 50_000, 0)
    with pytest.raises(IncompatibleStateError):
        sh.configure(PlaybackConfig())


def test_restart_of_the_controller_is_reported(rig) -> None:
    sh, device, _ = rig
    sh.load_code(CODE8)
    device.boot(announce=True)  # e.g. a brown-out: READY with seq 0
    time.sleep(0.1)
    with pytest.raises(DeviceDisconnected, match="restarted"):
        sh.status()
    assert sh.code is None
    assert sh.status().state == "idle"  # usable again


# -- disconnects and threads -----------------------------------------------------------------------
def test_port_vanishing_raises_device_disconnected(rig) -> None:
    sh, _, link = rig
    sh.load_code(CODE8)
    sh.arm()
    link.vanish()
    time.sleep(0.05)
    t0 = time.monotonic()
    with pytest.raises(DeviceDisconnected) as err:
        sh.fire()
    assert "fake://shutter" in str(err.value)
    with pytest.raises(DeviceDisconnected):
        sh.status()
    for _ in range(2):
        with pytest.raises(DeviceDisconnected):
            sh.wait_done(5.0)
    assert time.monotonic() - t0 < 0.5
    sh.close()  # never raises on a dead port
    assert not sh.is_open and link.closed == 1


def test_port_vanishing_during_a_request_is_not_a_timeout(rig) -> None:
    sh, device, link = rig
    device.silent = True
    threading.Timer(0.05, link.vanish).start()
    t0 = time.monotonic()
    with pytest.raises(DeviceDisconnected):
        sh.status()
    assert time.monotonic() - t0 < FAST["reply_timeout_s"] * (FAST["retries"] + 1)


def test_concurrent_calls_stay_paired_with_their_replies(rig) -> None:
    sh, device, _ = rig
    sh.load_code(CODE8)
    device.late_duplicates = True  # a late copy of a reply must not pair with the next request
    errors: list[BaseException] = []

    def worker(tag: bytes) -> None:
        try:
            for i in range(100):
                sh.ping(tag + str(i).encode())  # raises ProtocolError on a mismatched PONG
                assert sh.device_status().n_chips == 8
        except Exception as e:  # reported by the assert below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in (b"a", b"b", b"c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors
    assert sh.link_stats["resends"] == 0 and sh.link_stats["stale_packets"] > 0


# -- over a pseudo-terminal, with the real SerialTransport -----------------------------------------
def test_pty_ready_handshake_and_vanishing() -> None:
    link = PtyLink(FakeController(sp.DeviceInfo(fw_major=3)))
    sh = ArduinoShutter(link.path, ready_timeout_s=2.0, reply_timeout_s=0.2)
    try:
        link.boot_later(0.2)
        sh.open()
        assert sh.info.firmware_version == "3.0.0 (protocol 1)" and sh.info.port == link.path
        assert link.device.seqs(T.GET_INFO) == []
        sh.load_code(CODE8)
        link.vanish()
        time.sleep(0.1)
        with pytest.raises(DeviceDisconnected, match=link.path):
            sh.status()
    finally:
        sh.close()
        link.vanish()


def test_identify_over_pty() -> None:
    link = PtyLink(FakeController(sp.DeviceInfo(fw_minor=7), resets_on_open=False))
    try:
        info = identify(link.path, timeout_s=0.1)
        assert info is not None and info.firmware_version == "0.7.0"
        link.device.silent = True
        assert identify(link.path, timeout_s=0.1, reply_timeout_s=0.05) is None
    finally:
        link.vanish()


def test_identify_refuses_other_protocol_versions_and_ignores_strangers() -> None:
    link = MemoryLink(FakeController(sp.DeviceInfo(protocol_version=2), resets_on_open=False))
    with pytest.raises(InitialiseError, match="protocol version 2"):
        identify("fake", 0.05, transport=link)
    assert link.closed == 1
    link = MemoryLink(FakeController(sp.DeviceInfo(magic=b"ABCD")))
    assert identify("fake", 0.05, transport=link) is None


@pytest.mark.slow
def test_cli_info_status_load_and_fire(capsys) -> None:
    link = PtyLink(FakeController(resets_on_open=False))
    try:
        port = ["--port", link.path, "--ready-timeout", "0.1"]
        assert main([*port, "info"]) == 0
        assert main([*port, "fire"]) == 1  # no code yet
        assert main([*port, "load", "1101", "--chip-us", "250", "--fire"]) == 0
        assert main([*port, "fire"]) == 0  # the board kept its code
        assert main([*port, "load", "1101", "--chip-us", "250.2"]) == 1
        assert main([*port, "status"]) == 0
        out, err = capsys.readouterr()
        assert "protocol_version" in out and "fired: trigger 1" in out and "loaded" in out
        assert "holds no code" in err and "250 us or 250.5 us" in err
    finally:
        link.vanish()


@pytest.mark.slow
def test_python_m_runs_the_cli_and_the_driver_does_not_import_it() -> None:
    link = PtyLink(FakeController(resets_on_open=False))
    try:
        cmd = [sys.executable, "-m", "hw.arduino_shutter", "--port", link.path, "--ready-timeout"]
        done = subprocess.run([*cmd, "0.1", "fire"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "holds no code" in done.stderr, done
        done = subprocess.run([*cmd, "0.1", "info"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "protocol_version" in done.stdout, done
    finally:
        link.vanish()
    usage = subprocess.run(
        [sys.executable, "-m", "hw.arduino_shutter", "--help"], capture_output=True, text=True
    )
    assert usage.returncode == 0 and "usage: python -m hw.arduino_shutter" in usage.stdout
    probe = "import sys, hw.arduino_shutter; print('hw.arduino_shutter_cli' in sys.modules)"
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert imported.stdout.strip() == "False", imported


def test_arm_stored_code_fires_what_the_controller_holds() -> None:
    device = FakeController(resets_on_open=False)
    sh = make(device)[0]
    sh.open()
    try:
        with pytest.raises(IncompatibleStateError, match="refused ARM: E_NO_CODE"):
            sh.arm_stored_code()
        assert not sh.is_armed
    finally:
        sh.close()
    device.bits, device.chip_ns = CODE8.bits, 1_000_000  # e.g. restored from EEPROM at boot
    sh = make(device)[0]
    sh.open()
    try:
        with pytest.raises(IncompatibleStateError, match="no code is loaded"):
            sh.arm()  # the driver did not load (and verify) this code
        st = sh.arm_stored_code()
        assert sh.is_armed and st.state_name == "armed" and st.code_sha256 == CODE8.sha256
        assert sh.fire() == device.trigger_count - 1 == 0
        sh.stop_playback()
        assert not sh.is_armed and not device.armed
    finally:
        sh.close()


def test_serial_transport_on_a_loop_url() -> None:
    t = SerialTransport("loop://")
    t.open()
    try:
        frame = sp.encode_frame(T.PING, 9, b"loop")
        t.write(frame)
        assert t.read(256, 0.2) == frame
        assert t.read(256, 0.01) == b""
    finally:
        t.close()
    with pytest.raises(InitialiseError, match="Could not open"):
        SerialTransport("/dev/does-not-exist-blurvid").open()
    with pytest.raises(InitialiseError, match="loopback"):  # our own request comes back
        ArduinoShutter("loop://", ready_timeout_s=0.05, reply_timeout_s=0.05).open()
    assert identify("loop://", 0.05, reply_timeout_s=0.05) is None


def test_list_serial_ports_guesses_boards(monkeypatch) -> None:
    from types import SimpleNamespace

    import hw.serial_ports as ports

    def port(device: str, vid: int | None, pid: int | None) -> SimpleNamespace:
        return SimpleNamespace(
            device=device, vid=vid, pid=pid, serial_number="1", manufacturer="m", description="d"
        )

    found = [
        port("/dev/ttyS0", None, None),
        port("/dev/ttyUSB0", 0x1A86, 0x7523),
        port("/dev/ttyACM0", 0x2341, 0x0043),
        port("/dev/ttyACM1", 0x2341, 0x1234),
        port("/dev/ttyUSB1", 0x0403, 0x6001),
        port("/dev/ttyUSB2", 0x10C4, 0xEA60),
        port("/dev/ttyACM2", 0x2A03, 0x0043),
    ]
    monkeypatch.setattr(ports.list_ports, "comports", lambda: found)
    listed = ports.list_serial_ports()
    assert [p.device for p in listed][-1] == "/dev/ttyS0"  # likely Arduinos first
    guesses = {p.device: p.board_guess for p in listed}
    assert guesses["/dev/ttyACM0"] == "Arduino Uno R3"
    assert guesses["/dev/ttyACM1"] == "Arduino (genuine)"
    assert guesses["/dev/ttyACM2"].startswith("Arduino Uno R3")
    assert "CH340" in guesses["/dev/ttyUSB0"] and "FTDI" in guesses["/dev/ttyUSB1"]
    assert "CP210x" in guesses["/dev/ttyUSB2"] and guesses["/dev/ttyS0"] == ""
    assert listed[0].usb_id and not listed[-1].looks_like_arduino
