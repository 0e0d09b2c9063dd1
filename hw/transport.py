"""Byte pipes to a device: the :class:`Transport` protocol and :class:`SerialTransport` (pyserial).

A device driver has a transport, it is not one: :class:`~hw.arduino_shutter.ArduinoShutter`
takes any :class:`Transport`, so tests pass a scripted one and the rig a :class:`SerialTransport`.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol, runtime_checkable

import serial

from hw import shutter_protocol as sp
from hw.errors import DeviceDisconnected, InitialiseError

__all__ = ["PORTS_HINT", "READ_POLL_S", "SerialTransport", "Transport"]

log = logging.getLogger(__name__)

#: How long one read of the reader thread blocks (also the granularity of the 50 ms frame timeout).
READ_POLL_S = 0.02
#: Where a user finds the port of a board (ends the sentences about a port that cannot be used).
PORTS_HINT = "python -m hw.serial_ports lists the ports and their boards"


@runtime_checkable
class Transport(Protocol):
    """A byte pipe to the controller.

    ``open`` raises :class:`~hw.errors.InitialiseError` when the link cannot be opened. ``read``
    returns what arrived within ``timeout_s`` (``b""`` when nothing did). ``read`` and ``write``
    raise :class:`~hw.errors.DeviceDisconnected` when the link is gone. ``close`` never raises.
    Only the driver's reader thread calls ``read``; ``write`` is called from the requesting
    thread, one request at a time.

    Example (a scripted transport for tests, see tests/hw/test_arduino_shutter_fake.py)::

        class ScriptedLink:
            name = "fake://shutter"
            def open(self) -> None: ...
            def close(self) -> None: ...
            def write(self, data: bytes) -> None: device.feed(data)
            def read(self, max_bytes: int, timeout_s: float) -> bytes: return device.take(...)

        ArduinoShutter(transport=ScriptedLink())
    """

    @property
    def name(self) -> str:
        """The port, for messages (e.g. ``"/dev/ttyACM0"``)."""
        ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def write(self, data: bytes) -> None: ...

    def read(self, max_bytes: int, timeout_s: float) -> bytes: ...


class SerialTransport:
    """A :class:`Transport` over pyserial: a port name, a pty path or a URL such as ``loop://``.

    The link is 115200 baud 8N1 without flow control; the port is opened exclusively.

    Example::

        t = SerialTransport("/dev/ttyACM0")
        t.open()
        t.write(sp.encode_frame(sp.MsgType.GET_INFO, 1))
        reply = t.read(256, timeout_s=0.5)
        t.close()
    """

    def __init__(
        self, url: str, baudrate: int = sp.BAUDRATE, *, write_timeout_s: float = 1.0
    ) -> None:
        self._url = str(url)
        self._baudrate = int(baudrate)
        self._write_timeout_s = float(write_timeout_s)
        self._ser: Any = None

    @property
    def name(self) -> str:
        return self._url

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        if self._ser is not None:
            return
        try:
            self._ser = serial.serial_for_url(
                self._url,
                baudrate=self._baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=READ_POLL_S,
                write_timeout=self._write_timeout_s,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as e:
            raise InitialiseError(
                f"Could not open the serial port {self._url!r} ({e}). Check that the board is "
                f"plugged in and that this is its port ({PORTS_HINT}), that no other program "
                "(e.g. a serial monitor) holds it, and on Linux that you are in the dialout group."
            ) from e

    def _require(self, what: str) -> Any:
        if self._ser is None:
            raise DeviceDisconnected(
                f"Cannot {what} {self._url}: the port is closed. Open the shutter first."
            )
        return self._ser

    def write(self, data: bytes) -> None:
        ser = self._require("write to")
        try:
            ser.write(bytes(data))
        except (serial.SerialException, OSError) as e:
            raise DeviceDisconnected(
                f"Writing to {self._url} failed ({e}); the board was unplugged or reset. Check "
                "the USB cable, then close and open the shutter again."
            ) from e

    def read(self, max_bytes: int, timeout_s: float) -> bytes:
        ser = self._require("read from")
        try:
            if ser.timeout != timeout_s:
                ser.timeout = timeout_s
            data = ser.read(1)
            if data and max_bytes > 1:
                waiting = ser.in_waiting
                if waiting:
                    data += ser.read(min(waiting, max_bytes - 1))
            return bytes(data)
        except (serial.SerialException, OSError) as e:
            raise DeviceDisconnected(
                f"Reading from {self._url} failed ({e}); the board was unplugged or reset. "
                "Check the USB cable, then close and open the shutter again."
            ) from e

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is None:
            return
        try:
            ser.close()
        except (serial.SerialException, OSError) as e:  # the port may already be gone
            log.warning("Closing %s reported an error (ignored, the port is released): %s", ser, e)
