"""Driver of the Arduino shutter controller (``firmware/blurvid_shutter``, protocol version 1).

:class:`ArduinoShutter` is a :class:`~hw.base.Shutter` composed with a :class:`Transport` (a byte
pipe; :class:`SerialTransport` for a real port, a scripted one in tests). The protocol itself
(frames, messages, bodies) lives in :mod:`hw.shutter_protocol`; ``firmware/PROTOCOL.md`` is the
specification.

Threads: one background reader thread owns reading. It runs the
:class:`~hw.shutter_protocol.FrameReceiver` and routes every packet: a reply to the request
waiting for it (matched by ``seq``), READY and DONE to queues, frame-level errors to the waiting
request, which then resends the same bytes (same ``seq``; the firmware does not execute a request
twice). One request is in flight at a time, under a lock, so any thread may call the driver.

For humans (the command line is :mod:`hw.arduino_shutter_cli`)::

    python -m hw.arduino_shutter --port /dev/ttyACM0 info
    python -m hw.arduino_shutter --port /dev/ttyACM0 load 11100101 --chip-us 1000 --fire
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
import time
from collections import deque
from typing import Any

from hw import shutter_protocol as sp
from hw.base import Shutter
from hw.errors import (
    AcquisitionTimeout,
    DeviceDisconnected,
    DeviceError,
    IncompatibleStateError,
    InitialiseError,
    ProtocolError,
    UnsupportedFeatureError,
)
from hw.transport import PORTS_HINT as _PORTS_HINT
from hw.transport import READ_POLL_S, SerialTransport, Transport
from hw.types import PlaybackConfig, ShutterCode, ShutterInfo, ShutterStatus

__all__ = ["ArduinoShutter", "PlaybackConfig", "SerialTransport", "Transport"]

log = logging.getLogger(__name__)

_FLASH_HINT = "flash firmware/blurvid_shutter from this checkout onto the board"


# -- driver ----------------------------------------------------------------------------------------


class _Pending:
    """The request waiting for its reply: the reader thread puts what concerns it in ``q``."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.q: queue.Queue[Any] = queue.Queue()


_RESTART = object()  # marker: READY arrived while a request was waiting
_STATE_ERRORS = {sp.ErrorCode.E_BUSY, sp.ErrorCode.E_NO_CODE, sp.ErrorCode.E_NOT_ARMED}
_VALUE_ERRORS = {
    sp.ErrorCode.E_CODE_LENGTH,
    sp.ErrorCode.E_CHIP_TIMING,
    sp.ErrorCode.E_BAD_VALUE,
    sp.ErrorCode.E_CONFIG,
}
_PROTOCOL_ERRORS = {sp.ErrorCode.E_UNKNOWN_TYPE, sp.ErrorCode.E_LENGTH} | sp.FRAME_LEVEL_ERRORS
#: Body offsets of the fields of E_BAD_VALUE's detail.
_FIELD_AT = {
    sp.MsgType.LOAD_CODE: {0: "n_chips", 2: "chip_ns", 6: "bits"},
    sp.MsgType.CONFIGURE: {
        0: "mode",
        1: "repeats",
        3: "period_ns",
        7: "lead_ns",
        11: "trigger_style",
        12: "pulse_ns",
        16: "start_source",
        17: "flags",
    },
}
_STATE_NAMES = ("idle", "loaded", "armed", "playing")


class ArduinoShutter(Shutter):
    """The Arduino (ATmega328P) shutter controller over a serial port.

    Args:
        port: serial port or pyserial URL (``"/dev/ttyACM0"``, ``"COM3"``); the name used in
            messages when ``transport`` is given.
        transport: the byte pipe; a :class:`SerialTransport` on ``port`` when None.
        baudrate: of the serial port (the firmware uses 115200).
        ready_timeout_s: how long ``open()`` waits for the READY frame of a board that resets
            when its port opens; then it asks GET_INFO.
        reply_timeout_s: how long one attempt of a request waits for its reply.
        retries: resends of a request without a (valid) reply, with the same ``seq``.
        config: playback configuration sent at every ``arm()`` (see :meth:`configure`).

    Raises (from any method): :class:`~hw.errors.AcquisitionTimeout` when the controller does not
    answer, :class:`~hw.errors.ProtocolError` when its replies are damaged or do not match,
    :class:`~hw.errors.DeviceDisconnected` when the port is gone; a request the firmware refuses
    raises IncompatibleStateError (E_BUSY, E_NO_CODE, E_NOT_ARMED), UnsupportedFeatureError
    (values) or ProtocolError (host and firmware disagree).

    Example::

        with ArduinoShutter("/dev/ttyACM0") as sh:
            sh.load_code(ShutterCode.parse("11100101", chip_us=1000))
            sh.arm()
            index = sh.fire()  # returns when the playback has ended
    """

    def __init__(
        self,
        port: str | None = None,
        *,
        transport: Transport | None = None,
        baudrate: int = sp.BAUDRATE,
        ready_timeout_s: float = 4.0,
        reply_timeout_s: float = 0.5,
        retries: int = 3,
        config: PlaybackConfig | None = None,
    ) -> None:
        super().__init__()
        if transport is None:
            if not port:
                raise ValueError(
                    "ArduinoShutter needs a port (e.g. '/dev/ttyACM0' or 'COM3') or a "
                    f"transport; {_PORTS_HINT}."
                )
            transport = SerialTransport(port, baudrate)
        for name, value in (
            ("ready_timeout_s", ready_timeout_s),
            ("reply_timeout_s", reply_timeout_s),
        ):
            if not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}.")
        if int(retries) != retries or retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {retries!r}.")
        self._transport = transport
        self._port = str(port) if port else transport.name
        self._ready_timeout_s = float(ready_timeout_s)
        self._reply_timeout_s = float(reply_timeout_s)
        self._retries = int(retries)
        self._config = config if config is not None else PlaybackConfig()
        self._req_lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._pending: _Pending | None = None
        # Start at a random seq: a board that does not reset on open remembers the last request
        # of an earlier session and would answer a request with the same type and seq from memory.
        self._seq = random.randrange(255)
        self._closing = False
        self._reset_link_state()

    def _reset_link_state(self) -> None:
        self._ready_q: queue.Queue[Any] = queue.Queue()
        self._done_q: queue.Queue[Any] = queue.Queue()
        self._link_error: DeviceDisconnected | None = None
        self._identified = False
        self._restart: sp.Packet | None = None
        self._info: sp.DeviceInfo | None = None
        self._verified_sha: str | None = None
        self._armed_status: sp.DeviceStatus | None = None
        self._unsolicited: deque[sp.Packet] = deque(maxlen=32)
        self._stats = dict.fromkeys(
            ("requests", "resends", "rx_frame_errors", "device_frame_errors", "stale_packets"), 0
        )

    # -- public extras -------------------------------------------------------------------------
    @property
    def port(self) -> str:
        return self._port

    @property
    def config(self) -> PlaybackConfig:
        """The playback configuration sent at the next ``arm()``."""
        return self._config

    @property
    def device_info(self) -> sp.DeviceInfo:
        """The controller's INFO (from READY or GET_INFO at open)."""
        self._require_open("read the controller info")
        assert self._info is not None
        return self._info

    @property
    def link_stats(self) -> dict[str, int]:
        """Counters since open: requests, resends, damaged frames received (rx_frame_errors),
        damaged requests reported by the controller (device_frame_errors), stale packets."""
        return dict(self._stats)

    def configure(self, config: PlaybackConfig) -> None:
        """Set the playback configuration; sent now when open (the controller checks it) and at
        every ``arm()``.

        Raises:
            IncompatibleStateError: while armed (disarm first).
        """
        if not isinstance(config, PlaybackConfig):
            raise TypeError(f"configure() takes a PlaybackConfig, got {type(config).__name__}.")
        with self._lock:
            if self._armed:
                raise IncompatibleStateError(
                    "Cannot change the playback configuration while armed; disarm first."
                )
            if self._open:
                self._status_of(self._transact(sp.MsgType.CONFIGURE, config.to_body()))
            self._config = config

    def device_status(self) -> sp.DeviceStatus:
        """The controller's full STATUS (GET_STATUS)."""
        self._require_open("read the controller status")
        return self._status_of(self._transact(sp.MsgType.GET_STATUS))

    def save_to_eeprom(self) -> sp.DeviceStatus:
        """Save the loaded code and configuration to EEPROM; restored at every boot."""
        self._require_open("save to EEPROM")
        # An EEPROM write takes 3.3 ms per byte: about half a second for a full code.
        return self._status_of(
            self._transact(sp.MsgType.SAVE, timeout_s=max(2.0, self._reply_timeout_s))
        )

    def erase_eeprom(self) -> sp.DeviceStatus:
        """Invalidate the saved record, so the controller boots without a code."""
        self._require_open("erase the EEPROM")
        return self._status_of(
            self._transact(sp.MsgType.ERASE, timeout_s=max(2.0, self._reply_timeout_s))
        )

    def ping(self, payload: bytes = b"") -> float:
        """Round trip of PING/PONG with ``payload`` (0..32 bytes); returns seconds.

        Raises:
            ProtocolError: the PONG does not carry the same bytes.
        """
        self._require_open("ping the controller")
        body = sp.ping_body(payload)
        t0 = time.perf_counter()
        pkt = self._transact(sp.MsgType.PING, body)
        rtt = time.perf_counter() - t0
        if pkt.body != body:
            raise ProtocolError(
                f"The shutter controller on {self._port} answered PING {body!r} with "
                f"{pkt.body!r}; replies are mixed up or damaged. Close and open the shutter."
            )
        return rtt

    def stop_playback(self) -> sp.DeviceStatus:
        """DISARM now: stops a playback at the next chip boundary (DONE reports it as aborted).

        May be called from another thread while ``fire()`` waits for its playback to end.
        """
        self._require_open("stop the playback")
        st = self._status_of(self._transact(sp.MsgType.DISARM))
        self._armed = False
        self._armed_status = None
        return st

    def arm_stored_code(self) -> sp.DeviceStatus:
        """Arm with the code the controller already holds, then ``fire()`` plays it.

        That code was loaded earlier, by this or another program, or restored from EEPROM at
        boot; the driver did not load it, so there is no echo to check it against (``arm()``
        refuses without a verified code). Check ``device_status().has_code`` first: a controller
        that holds no code refuses ARM. ``stop_playback()`` or ``disarm()`` ends it.

        Returns:
            The controller's STATUS after ARM (its ``code_sha256`` names the code it will play).

        Raises:
            IncompatibleStateError: the controller holds no code.
            ProtocolError: the controller accepted ARM but does not report itself armed.
        """
        with self._lock:
            self._require_open("arm the stored code")
            st = self._arm_device(expect_sha=None)
            self._armed = True
            return st

    def wait_done(self, timeout_s: float) -> sp.DoneEvent:
        """Wait for the next DONE report: the end of playbacks started by TRIG_IN, or of a
        continuous run stopped by :meth:`stop_playback`. ``fire()`` waits for its own DONE.

        Raises:
            AcquisitionTimeout: no DONE within ``timeout_s``.
        """
        self._require_open("wait for a playback to end")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}.")
        if self._link_error is not None:
            self._done_of(self._link_error, "the end of a playback")
        try:
            item = self._done_q.get(timeout=timeout_s)
        except queue.Empty:
            raise AcquisitionTimeout(
                f"No playback on the shutter controller on {self._port} ended within "
                f"{timeout_s:g} s. Check that it is armed and, for an external start, that "
                "TRIG_IN receives a rising edge."
            ) from None
        return self._done_of(item, "DONE")

    # -- hooks ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Disarm the controller if it still answers, then release the port.

        Never raises for a controller that is gone or silent: that is logged as a warning.
        """
        self._closing = True
        try:
            super().close()
        finally:
            self._closing = False

    def _do_open(self) -> None:
        self._reset_link_state()
        self._code = None  # a reset board holds no code; a board that did not reset is disarmed
        self._armed = False
        self._transport.open()
        self._stop.clear()
        self._reader = threading.Thread(
            target=self._reader_main, name=f"ArduinoShutter reader {self._port}", daemon=True
        )
        self._reader.start()
        try:
            self._handshake()
        except BaseException:
            self._shutdown_link()
            raise

    def _handshake(self) -> None:
        try:
            item = self._ready_q.get(timeout=self._ready_timeout_s)
        except queue.Empty:
            item = None
        if isinstance(item, DeviceError):
            raise InitialiseError(
                f"The port {self._port} went away while waiting for the shutter controller "
                "to start; check the USB cable and open the shutter again."
            ) from item
        if item is not None:
            body, how = item.body, "READY"
        else:
            how = "GET_INFO"
            try:
                body = self._transact(sp.MsgType.GET_INFO).body
            except DeviceError as e:
                raise InitialiseError(
                    f"No blurvid shutter controller answered on {self._port}: no READY within "
                    f"{self._ready_timeout_s:g} s of opening the port, and GET_INFO failed. "
                    f"Check that the board is plugged in, that this is its port ({_PORTS_HINT}) "
                    f"and that it runs the blurvid shutter firmware (else {_FLASH_HINT}). "
                    f"GET_INFO: {e}"
                ) from e
        problem = sp.info_problem(body)
        if problem is None:
            try:
                info = sp.DeviceInfo.from_body(body)
            except ProtocolError as e:
                problem = str(e)
        if problem is not None:
            raise InitialiseError(
                f"The device on {self._port} is not a usable shutter controller: {problem}. "
                f"To use it, {_FLASH_HINT} (protocol version {sp.PROTOCOL_VERSION}), or pick "
                "another port."
            )
        self._info = info
        self._identified = True
        log.info(
            "Shutter controller on %s: firmware %s, protocol %d (%s)",
            self._port,
            info.firmware_version,
            info.protocol_version,
            how,
        )
        if how == "GET_INFO":
            # The board did not reset when the port opened: it may still be armed or playing.
            self._transact(sp.MsgType.DISARM)

    def _do_close(self) -> None:
        try:
            if self._identified and self._link_error is None:
                self._transact(sp.MsgType.DISARM)
        except DeviceError as e:
            log.warning(
                "Closing the shutter controller on %s without disarming it: %s", self._port, e
            )
        finally:
            self._shutdown_link()
            self._verified_sha = None
            self._armed_status = None

    def _do_info(self) -> ShutterInfo:
        info = self._info
        assert info is not None, "the controller info is read when the shutter opens"
        return ShutterInfo(
            controller="arduino",
            port=self._port,
            firmware_version=f"{info.firmware_version} (protocol {info.protocol_version})",
            chip_us_min=info.chip_ns_min / 1000.0,
            chip_us_max=info.chip_ns_max / 1000.0,
            max_chips=info.max_chips,
        )

    def _do_load_code(self, code: ShutterCode) -> ShutterStatus:
        problem = sp.chip_us_problem(code.chip_us)
        if problem is not None:
            raise UnsupportedFeatureError(problem)
        chip_ns = sp.chip_ns_for(code.chip_us)
        body = sp.load_code_body(code.bits, chip_ns)
        self._verified_sha = None
        # The firmware hashes up to 1024 chips before it answers: allow it more time.
        pkt = self._transact(sp.MsgType.LOAD_CODE, body, timeout_s=max(1.0, self._reply_timeout_s))
        st = self._status_of(pkt)
        if (st.code_sha256, st.n_chips, st.chip_ns) != (code.sha256, code.n_chips, chip_ns):
            raise ProtocolError(
                f"The shutter controller on {self._port} echoed code {st.code_sha256[:12]}... "
                f"({st.n_chips} chips of {st.chip_ns / 1000:g} us) but "
                f"{code.sha256[:12]}... ({code.n_chips} chips of {chip_ns / 1000:g} us) was sent, "
                "so the driver refuses to go on with this code. Check the USB cable and load "
                "the code again."
            )
        self._verified_sha = code.sha256
        return self._shutter_status(st)

    def _do_arm(self) -> None:
        self._arm_device(expect_sha=self._verified_sha)

    def _do_disarm(self) -> None:
        if self._closing:
            return  # _do_close disarms, and tolerates a controller that is gone
        self._status_of(self._transact(sp.MsgType.DISARM))
        self._armed_status = None

    def _do_fire(self) -> int:
        return self._fire_device().first_trigger_index

    def _do_status(self) -> ShutterStatus:
        return self._shutter_status(self.device_status())

    # -- device operations ---------------------------------------------------------------------
    def _arm_device(self, expect_sha: str | None) -> sp.DeviceStatus:
        """CONFIGURE, then ARM; checks that the controller still holds ``expect_sha``."""
        self._status_of(self._transact(sp.MsgType.CONFIGURE, self._config.to_body()))
        st = self._status_of(self._transact(sp.MsgType.ARM))
        if st.state not in (sp.DeviceState.ARMED, sp.DeviceState.PLAYING):
            raise ProtocolError(
                f"The shutter controller on {self._port} accepted ARM but reports the state "
                f"{st.state_name!r}; close and open the shutter, then load the code again."
            )
        if expect_sha is not None and st.code_sha256 != expect_sha:
            self._verified_sha = None
            try:
                self._transact(sp.MsgType.DISARM)
            except DeviceError as e:
                log.warning("Could not disarm the controller on %s: %s", self._port, e)
            raise ProtocolError(
                f"The shutter controller on {self._port} holds code {st.code_sha256[:12]}..., "
                f"not the verified {expect_sha[:12]}..., so the driver refuses to arm it (did "
                "it restart?). Load the code again."
            )
        self._armed_status = st
        return st

    def _fire_device(self) -> sp.FiredReply:
        """FIRE, then wait for the DONE of those playbacks (not in continuous mode)."""
        pkt = self._transact(sp.MsgType.FIRE)
        fired = sp.FiredReply.from_body(pkt.body)
        if fired.playbacks == 0:  # continuous: DONE comes after stop_playback()
            return fired
        timeout_s = 1.1 * self._playback_s(fired.playbacks) + max(1.0, 4 * self._reply_timeout_s)
        done = self._wait_done_for(fired.first_trigger_index, timeout_s)
        if done.result == sp.DoneResult.ABORTED:
            raise DeviceError(
                f"The playback of trigger {fired.first_trigger_index} on {self._port} was "
                f"aborted by DISARM after {done.played} of {fired.playbacks} playbacks, so its "
                "frame is incomplete; arm and fire again."
            )
        if done.result != sp.DoneResult.COMPLETE:
            reason = (
                sp.error_help(sp.ErrorCode.E_OVERRUN)
                if done.result == sp.DoneResult.OVERRUN
                else f"unknown result {done.result}; {_FLASH_HINT}."
            )
            raise DeviceError(
                f"The playback of trigger {fired.first_trigger_index} on {self._port} failed "
                f"after {done.played} of {fired.playbacks} playbacks: {reason}"
            )
        return fired

    def _playback_s(self, playbacks: int) -> float:
        st = self._armed_status
        if st is None:
            return 0.0
        lead_code_ns = st.lead_ns + st.code_ns
        period_ns = st.period_ns or lead_code_ns + sp.MIN_GAP_NS
        return ((playbacks - 1) * period_ns + lead_code_ns) * 1e-9

    def _wait_done_for(self, index: int, timeout_s: float) -> sp.DoneEvent:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                item = self._done_q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise self._done_timeout(index, timeout_s) from None
            done = self._done_of(item, f"the end of trigger {index}")
            if done.first_trigger_index == index:
                return done
            log.info(
                "Ignoring the DONE of trigger %d (waiting for %d)", done.first_trigger_index, index
            )

    def _done_timeout(self, index: int, timeout_s: float) -> DeviceError:
        try:
            st = self.device_status()
        except DeviceError as e:
            return AcquisitionTimeout(
                f"The playback of trigger {index} on {self._port} did not report its end within "
                f"{timeout_s:g} s, and the controller does not answer either ({e})."
            )
        if st.state == sp.DeviceState.PLAYING:
            return AcquisitionTimeout(
                f"The playback of trigger {index} on {self._port} was still running after "
                f"{timeout_s:g} s; call stop_playback() and check the playback configuration."
            )
        return ProtocolError(
            f"The end-of-playback report (DONE) of trigger {index} on {self._port} was lost "
            f"({self._stats['rx_frame_errors']} damaged frames received), so the result of that "
            "playback is unknown; check the USB cable and fire again."
        )

    # -- parsing helpers -----------------------------------------------------------------------
    def _status_of(self, pkt: sp.Packet) -> sp.DeviceStatus:
        st = sp.DeviceStatus.from_body(pkt.body)
        if not 0 <= st.state < len(_STATE_NAMES):
            raise ProtocolError(
                f"The shutter controller on {self._port} reports the unknown state {st.state}; "
                f"{_FLASH_HINT}."
            )
        return st

    def _done_of(self, item: Any, what: str) -> sp.DoneEvent:
        if isinstance(item, DeviceError):
            raise DeviceDisconnected(
                f"The port {self._port} went away while waiting for {what}. Check the USB cable, "
                "then close and open the shutter again."
            ) from item
        return sp.DoneEvent.from_body(item.body)

    def _shutter_status(self, st: sp.DeviceStatus) -> ShutterStatus:
        verified = self._verified_sha
        return ShutterStatus(
            state=_STATE_NAMES[st.state],
            code_sha256=st.code_sha256 if st.has_code else "",
            n_chips=st.n_chips,
            chip_us=st.chip_ns / 1000.0,
            trigger_count=st.trigger_count,
            echo_verified=st.has_code and verified is not None and st.code_sha256 == verified,
        )

    # -- link ----------------------------------------------------------------------------------
    def _reader_main(self) -> None:
        rx = sp.FrameReceiver()
        while not self._stop.is_set():
            try:
                data = self._transport.read(512, READ_POLL_S)
            except DeviceDisconnected as e:
                if not self._stop.is_set():
                    self._link_lost(e)
                return
            except Exception as e:  # a transport outside the contract: report it, never hide it
                if not self._stop.is_set():
                    err = DeviceDisconnected(f"Reading from {self._port} failed: {e!r}.")
                    err.__cause__ = e
                    self._link_lost(err)
                return
            for item in rx.feed(data) if data else rx.poll():
                self._route(item)

    def _link_lost(self, err: DeviceDisconnected) -> None:
        log.warning("Lost the shutter controller on %s: %s", self._port, err)
        self._link_error = err
        for q in (self._ready_q, self._done_q):
            q.put(err)
        pending = self._pending
        if pending is not None:
            pending.q.put(err)

    def _to_pending(self, item: Any) -> None:
        pending = self._pending
        if pending is not None:
            pending.q.put(item)

    def _route(self, item: sp.Packet | sp.FrameError) -> None:
        if isinstance(item, sp.FrameError):
            self._stats["rx_frame_errors"] += 1
            log.info("Damaged frame from %s: %s", self._port, item.message)
            self._to_pending(item)  # it may have been the reply: resend
            return
        pkt = item
        if pkt.type == sp.MsgType.READY:
            if self._identified:
                self._restart = pkt
                self._to_pending(_RESTART)
            else:
                self._ready_q.put(pkt)
        elif pkt.type == sp.MsgType.DONE:
            self._done_q.put(pkt)
        elif pkt.seq == 0:
            err = None
            if pkt.type == sp.MsgType.ERROR and len(pkt.body) == 4:
                err = sp.ErrorReply.from_body(pkt.body)
            if err is not None and err.request == 0:
                self._stats["device_frame_errors"] += 1
                self._to_pending(err)  # the request may not have arrived intact: resend
            else:
                self._unsolicited.append(pkt)
                log.warning("Unsolicited %s from %s: %s", pkt.name, self._port, pkt.body.hex())
        else:
            pending = self._pending
            if pending is not None and pending.seq == pkt.seq:
                pending.q.put(pkt)
            else:  # e.g. the stored reply to a resent request, after the first one arrived
                self._stats["stale_packets"] += 1

    def _shutdown_link(self) -> None:
        self._stop.set()
        reader, self._reader = self._reader, None
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=2.0)
        self._transport.close()
        self._identified = False

    def _check_link(self, name: str) -> None:
        if self._reader is None:
            raise IncompatibleStateError(
                f"Cannot send {name}: the shutter on {self._port} is not open; open it first."
            )
        if self._link_error is not None:
            raise DeviceDisconnected(
                f"Cannot send {name}: the shutter controller on {self._port} is gone "
                f"({self._link_error}). Close and open the shutter again."
            ) from self._link_error
        if self._restart is not None:
            self._handle_restart(name)

    def _handle_restart(self, name: str) -> None:
        """A READY after open: the controller restarted and lost what it held."""
        pkt, self._restart = self._restart, None
        if pkt is None:
            return
        try:
            info = sp.DeviceInfo.from_body(pkt.body)
        except ProtocolError:
            info = self._info
        causes = ", ".join(info.reset_causes) if info is not None else ""
        had_state = self._code is not None or self._armed or self._verified_sha is not None
        self._info = info or self._info
        self._code, self._armed = None, False
        self._verified_sha, self._armed_status = None, None
        if had_state:
            raise DeviceDisconnected(
                f"The shutter controller on {self._port} restarted (reset cause: "
                f"{causes or 'unknown'}) and lost its code, so {name} was not sent. Check its "
                "power supply and USB cable, then load the code and arm again."
            )
        log.info("The shutter controller on %s restarted (%s)", self._port, causes or "unknown")

    def _transact(
        self, msg_type: int, body: bytes = b"", *, timeout_s: float | None = None
    ) -> sp.Packet:
        """Send one request and return its reply packet, resending on a lost or damaged reply."""
        name = sp.message_name(msg_type)
        timeout_s = self._reply_timeout_s if timeout_s is None else timeout_s
        with self._req_lock:
            self._check_link(name)
            self._seq = self._seq % 255 + 1
            seq = self._seq
            frame = sp.encode_frame(msg_type, seq, body)
            pending = _Pending(seq)
            self._pending = pending
            self._stats["requests"] += 1
            problems: list[str] = []
            try:
                for attempt in range(self._retries + 1):
                    if attempt:
                        self._stats["resends"] += 1
                    self._write(frame, name)
                    problem = None
                    deadline = time.monotonic() + timeout_s
                    while problem is None:
                        try:
                            item = pending.q.get(timeout=max(0.0, deadline - time.monotonic()))
                        except queue.Empty:
                            problem = f"no reply within {timeout_s:g} s"
                            break
                        if isinstance(item, sp.Packet):
                            return self._check_reply(item, msg_type, seq)
                        if isinstance(item, DeviceError):
                            raise DeviceDisconnected(
                                f"The shutter controller on {self._port} went away while "
                                f"waiting for the reply to {name} ({item}). Check the USB "
                                "cable, then close and open the shutter again."
                            ) from item
                        if item is _RESTART:
                            self._handle_restart(name)
                            problem = "the controller restarted"
                        elif isinstance(item, sp.FrameError):
                            problem = f"a damaged reply ({item.code.name})"
                        elif isinstance(item, sp.ErrorReply):
                            problem = f"the controller received a damaged request ({item.name})"
                    problems.append(problem)
                    log.info("%s (seq %d) to %s: %s", name, seq, self._port, problem)
            finally:
                self._pending = None
        raise self._no_reply_error(name, seq, problems)

    def _write(self, frame: bytes, name: str) -> None:
        try:
            self._transport.write(frame)
        except DeviceDisconnected as e:
            if self._link_error is None:
                self._link_error = e
            raise DeviceDisconnected(
                f"Could not send {name} to the shutter controller on {self._port} ({e})."
            ) from e

    def _no_reply_error(self, name: str, seq: int, problems: list[str]) -> DeviceError:
        seen = "; ".join(dict.fromkeys(problems))
        head = (
            f"The shutter controller on {self._port} did not answer {name} (seq {seq}) in "
            f"{len(problems)} attempts ({seen})."
        )
        if all(p.startswith("no reply") for p in problems):
            return AcquisitionTimeout(
                f"{head} Check that the board is powered and plugged in, that this is its port "
                f"({_PORTS_HINT}) and that it runs the blurvid shutter firmware."
            )
        return ProtocolError(
            f"{head} Check the USB cable (short, no unpowered hub), that both sides use "
            f"{sp.BAUDRATE} baud and that no other program writes to the port."
        )

    def _check_reply(self, pkt: sp.Packet, msg_type: int, seq: int) -> sp.Packet:
        name = sp.message_name(msg_type)
        if pkt.type == sp.MsgType.ERROR:
            raise self._refusal(sp.ErrorReply.from_body(pkt.body), msg_type)
        if pkt.type == msg_type:
            raise ProtocolError(
                f"The port {self._port} sends {name} back as it was sent: it is a loopback or an "
                f"echoing terminal, not the shutter controller. Pick another port ({_PORTS_HINT})."
            )
        if pkt.type != sp.reply_type(msg_type):
            raise ProtocolError(
                f"The shutter controller on {self._port} answered {name} (seq {seq}) with "
                f"{pkt.name} instead of {sp.message_name(sp.reply_type(msg_type))}; host and "
                f"firmware disagree, {_FLASH_HINT}."
            )
        return pkt

    def _refusal(self, err: sp.ErrorReply, msg_type: int) -> DeviceError:
        name = sp.message_name(msg_type)
        detail = ""
        field = _FIELD_AT.get(msg_type, {}).get(err.detail)
        if err.code == sp.ErrorCode.E_BAD_VALUE and field:
            detail = f" (field {field})"
        message = f"The shutter controller on {self._port} refused {name}{detail}: {err.describe()}"
        if err.code in _STATE_ERRORS:
            exc: DeviceError = IncompatibleStateError(message)
        elif err.code in _VALUE_ERRORS:
            exc = UnsupportedFeatureError(message)
        elif err.code in _PROTOCOL_ERRORS:
            exc = ProtocolError(message)
        else:
            exc = DeviceError(message)
        exc.error_reply = err  # type: ignore[attr-defined]
        return exc


if __name__ == "__main__":
    # ``python -m hw.arduino_shutter``: run the command line module as the program. It imports this
    # module, so this module does not import it (no cycle); runpy starts it by name instead.
    import runpy

    runpy.run_module("hw.arduino_shutter_cli", run_name="__main__", alter_sys=True)
