"""Simulated shutter controller: the twin of the Arduino shutter, with fault knobs.

:class:`SimShutter` behaves like the firmware: it holds a code and a chip duration (whole
microseconds, 10..65535 us, at most 1024 chips), echoes the code's hash and timing on load (the
driver verifies the echo), counts triggers, and on ``fire()`` "plays" the code and raises the camera
trigger: every callback registered with :meth:`SimShutter.connect_trigger` receives a
:class:`TriggerEvent`. A :class:`SimCamera` connected to it renders the coded exposure from that
event.

Time is simulated (:class:`SimClock`): each fire reserves one code period plus a gap, so consecutive
frames show the scene at different times, independent of how fast the host calls ``fire()``.

Fault knobs (plain attributes, may be changed at any time):
    * ``latency_s``: seconds added to every request (load, arm, disarm, fire, status).
    * ``corrupt_echo``: the controller stores a corrupted code, so its echo differs from what was
      sent and ``load_code`` raises :class:`~hw.errors.ProtocolError` (a wrong code never records).
    * ``disconnect_after_n``: after that many fires since ``open()``, the controller "goes away":
      the next request raises :class:`~hw.errors.DeviceDisconnected` until the shutter is closed
      and opened again.

Optics knob: ``optics`` (:class:`~hw.optics.ShutterOptics`) makes the shutter leak, pass less
than 100 %, open late and ramp, as an LC shutter does; cameras integrate that transmittance. The
default is ideal (the transmittance is exactly the code's bits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.codes import code_sha256
from hw.base import Shutter
from hw.errors import DeviceDisconnected, ProtocolError, UnsupportedFeatureError
from hw.optics import ShutterOptics
from hw.types import ShutterCode, ShutterInfo, ShutterStatus

#: The firmware's limits (see firmware/PROTOCOL.md): chip durations are uint16 microseconds.
SIM_CHIP_US_MIN = 10.0
SIM_CHIP_US_MAX = 65535.0
SIM_MAX_CHIPS = 1024


class SimClock:
    """Simulated time (seconds), shared by a :class:`SimShutter` and the cameras it triggers.

    Thread-safe. Time only moves forward, by reservations of exposure slots.

    >>> c = SimClock()
    >>> c.reserve(0.5), c.reserve(0.25), c.now_s()
    (0.0, 0.5, 0.75)
    """

    def __init__(self, t0_s: float = 0.0) -> None:
        self._t = float(t0_s)
        self._lock = threading.Lock()

    def now_s(self) -> float:
        """Current simulated time."""
        with self._lock:
            return self._t

    def reserve(self, duration_s: float) -> float:
        """Take the next ``duration_s`` seconds of simulated time; returns when that slot starts."""
        if not duration_s >= 0:
            raise ValueError(f"duration_s must be >= 0, got {duration_s!r}.")
        with self._lock:
            start = self._t
            self._t += float(duration_s)
            return start


@dataclass(frozen=True)
class TriggerEvent:
    """One trigger from the shutter controller: the code played and when it started.

    Attributes:
        trigger_index: the controller's trigger counter for this fire (0 for the first since open).
        code: the code played (chip ``k`` spans ``t_start_s + [k, k + 1) * chip_us * 1e-6``).
        t_start_s: simulated time at which the first chip started (and the camera line went high).
        optics: how the shutter's transmittance follows the code (ideal: exactly the bits).
        masks: per-pixel coding (a DMD): ``(K, H, W)`` transmittance of each sensor pixel in each
            chip, in full-sensor coordinates; None for a global shutter.
    """

    trigger_index: int
    code: ShutterCode
    t_start_s: float
    optics: ShutterOptics = ShutterOptics()
    masks: Any = None


TriggerCallback = Callable[[TriggerEvent], None]


class TriggerOutput:
    """The camera-trigger output of a simulated controller: cameras connect a callback that gets a
    :class:`TriggerEvent` for every playback (called from the thread that fires)."""

    def __init__(self) -> None:
        super().__init__()  # cooperative: the device base class comes next in the MRO
        self._callbacks: list[TriggerCallback] = []
        self._cb_lock = threading.Lock()

    def connect_trigger(self, callback: TriggerCallback) -> None:
        """Call ``callback(event)`` on every fire (from the thread that calls ``fire()``)."""
        with self._cb_lock:
            if callback not in self._callbacks:
                self._callbacks.append(callback)

    def disconnect_trigger(self, callback: TriggerCallback) -> None:
        """Stop calling ``callback``; no error when it was not connected."""
        with self._cb_lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def _emit(self, event: TriggerEvent) -> None:
        with self._cb_lock:
            callbacks = list(self._callbacks)
        for cb in callbacks:
            cb(event)


class SimShutter(TriggerOutput, Shutter):
    """Simulated shutter controller.

    Args:
        latency_s: seconds added to every request.
        corrupt_echo: make the controller's echo differ from what was sent (``load_code`` raises
            ProtocolError).
        disconnect_after_n: fires after which the controller disconnects (None = never).
        gap_s: simulated time between the end of one code and the start of the next fire.
        realtime: when True, ``fire()`` also sleeps for the code period, as the hardware takes.
        clock: simulated clock to use (shared with cameras); a new one when None.
        optics: transmittance model of the shutter itself (default ideal); a plain attribute.

    Example::

        with SimShutter() as sh:
            sh.load_code(ShutterCode.parse("11100101", 1000))
            sh.arm()
            index = sh.fire()
    """

    def __init__(
        self,
        *,
        latency_s: float = 0.0,
        corrupt_echo: bool = False,
        disconnect_after_n: int | None = None,
        gap_s: float = 0.002,
        realtime: bool = False,
        clock: SimClock | None = None,
        optics: ShutterOptics | None = None,
    ) -> None:
        super().__init__()
        if not latency_s >= 0 or not gap_s >= 0:
            raise ValueError(f"latency_s and gap_s must be >= 0, got {latency_s!r}, {gap_s!r}.")
        self.latency_s = float(latency_s)
        self.corrupt_echo = bool(corrupt_echo)
        self.disconnect_after_n = disconnect_after_n
        self.gap_s = float(gap_s)
        self.realtime = bool(realtime)
        self.optics = optics if optics is not None else ShutterOptics()
        self._clock = clock if clock is not None else SimClock()
        # Controller-side state (what the "firmware" holds).
        self._dev_bits: tuple[int, ...] | None = None
        self._dev_chip_us = 0
        self._dev_armed = False
        self._verified = False
        self._trigger_count = 0
        self._fires_since_open = 0
        self._disconnected = False

    # -- sim API ---------------------------------------------------------------------------------
    @property
    def clock(self) -> SimClock:
        """The simulated clock this shutter advances."""
        return self._clock

    # -- hooks -----------------------------------------------------------------------------------
    def _request(self, what: str) -> None:
        """One request/reply round trip: latency, then fail if the controller is gone."""
        if self.latency_s > 0:
            time.sleep(self.latency_s)
        if self._disconnected:
            raise DeviceDisconnected(
                f"The simulated shutter controller did not answer ({what}): it is disconnected. "
                "Check its USB cable, then close and open the shutter again."
            )

    def _do_open(self) -> None:
        self._disconnected = False
        self._dev_bits = None
        self._dev_chip_us = 0
        self._dev_armed = False
        self._verified = False
        self._trigger_count = 0
        self._fires_since_open = 0
        self._code = None

    def _do_close(self) -> None:
        self._dev_armed = False

    def _do_info(self) -> ShutterInfo:
        return ShutterInfo(
            controller="simulated",
            port="sim://shutter",
            firmware_version="sim-1",
            chip_us_min=SIM_CHIP_US_MIN,
            chip_us_max=SIM_CHIP_US_MAX,
            max_chips=SIM_MAX_CHIPS,
        )

    def _do_load_code(self, code: ShutterCode) -> ShutterStatus:
        if code.chip_us != round(code.chip_us):
            raise UnsupportedFeatureError(
                "The shutter controller times chips in whole microseconds; "
                f"{code.chip_us:g} us is not one. Use chip_us={round(code.chip_us)}."
            )
        self._request("load code")
        self._verified = False
        bits = code.bits
        if self.corrupt_echo:  # a transmission error: one chip arrives flipped
            bits = bits[:-1] + (1 - bits[-1],)
        self._dev_bits = bits
        self._dev_chip_us = int(round(code.chip_us))
        self._dev_armed = False
        echo_sha, echo_chip_us, echo_n = code_sha256(bits), float(self._dev_chip_us), len(bits)
        if (echo_sha, echo_chip_us, echo_n) != (code.sha256, code.chip_us, code.n_chips):
            self._dev_bits = None
            raise ProtocolError(
                f"The shutter controller echoed code {echo_sha[:12]}... ({echo_n} chips of "
                f"{echo_chip_us:g} us) but {code.sha256[:12]}... ({code.n_chips} chips of "
                f"{code.chip_us:g} us) was sent, so the code was not loaded. Check the cable and "
                "load the code again."
            )
        self._verified = True
        return self._status_now()

    def _do_arm(self) -> None:
        self._request("arm")
        if self._dev_bits is None:
            raise ProtocolError(
                "The shutter controller holds no verified code and refused to arm; "
                "load the code again."
            )
        self._dev_armed = True

    def _do_disarm(self) -> None:
        # Disarming must work on a disconnected controller so that close() always succeeds.
        if self.latency_s > 0 and not self._disconnected:
            time.sleep(self.latency_s)
        self._dev_armed = False

    def _do_fire(self) -> int:
        self._request("fire")
        if (
            self.disconnect_after_n is not None
            and self._fires_since_open >= self.disconnect_after_n
        ):
            self._disconnected = True
            raise DeviceDisconnected(
                "The simulated shutter controller disconnected after "
                f"{self._fires_since_open} fires (fault knob disconnect_after_n). Check its USB "
                "cable, then close and open the shutter again."
            )
        code = self._code
        assert code is not None  # the base class only fires when armed, and arming needs a code
        index = self._trigger_count
        self._trigger_count += 1
        self._fires_since_open += 1
        period_s = code.period_us * 1e-6
        event = TriggerEvent(
            index, code, self._clock.reserve(period_s + self.gap_s), self.optics
        )
        self._emit(event)
        if self.realtime:
            time.sleep(period_s)
        return index

    def _do_status(self) -> ShutterStatus:
        self._request("status")
        return self._status_now()

    def _status_now(self) -> ShutterStatus:
        bits = self._dev_bits
        if bits is None:
            state = "idle"
        elif self._dev_armed:
            state = "armed"
        else:
            state = "loaded"
        return ShutterStatus(
            state=state,
            code_sha256=code_sha256(bits) if bits is not None else "",
            n_chips=len(bits) if bits is not None else 0,
            chip_us=float(self._dev_chip_us) if bits is not None else 0.0,
            trigger_count=self._trigger_count,
            echo_verified=self._verified and bits is not None,
        )
