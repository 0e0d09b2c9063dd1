"""Find the shutter controller: list serial ports with a guess of their board, and identify one.

>>> guess_board(0x1A86, 0x7523)
'CH340 USB-serial (Uno/Nano clone)'
>>> guess_board(0x1234, 0x5678)
''

For humans: ``python -m hw.serial_ports`` lists the ports; ``--identify`` also asks each likely
board whether it runs the blurvid shutter firmware (opening an Uno resets it).
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from serial.tools import list_ports

from hw import shutter_protocol as sp
from hw.arduino_shutter import SerialTransport, Transport
from hw.errors import DeviceDisconnected, InitialiseError, ProtocolError

log = logging.getLogger(__name__)

#: (vid, pid) -> board; pid None matches any product of that vendor.
KNOWN_BOARDS: dict[tuple[int, int | None], str] = {
    (0x2341, 0x0043): "Arduino Uno R3",
    (0x2341, 0x0001): "Arduino Uno",
    (0x2341, 0x0243): "Arduino Uno R3 (Genuino)",
    (0x2341, 0x0042): "Arduino Mega 2560 R3",
    (0x2341, 0x0010): "Arduino Mega 2560",
    (0x2341, 0x8036): "Arduino Leonardo",
    (0x2341, 0x0058): "Arduino Nano Every",
    (0x2341, None): "Arduino (genuine)",
    (0x2A03, 0x0043): "Arduino Uno R3 (arduino.org)",
    (0x2A03, None): "Arduino (arduino.org)",
    (0x1A86, 0x7523): "CH340 USB-serial (Uno/Nano clone)",
    (0x0403, 0x6001): "FTDI FT232R USB-serial (Nano, Duemilanove or an adapter)",
    (0x10C4, 0xEA60): "CP210x USB-serial (clone or adapter)",
}


def guess_board(vid: int | None, pid: int | None) -> str:
    """The board a USB VID:PID suggests, or ``""`` when it is not a known Arduino or clone."""
    if vid is None:
        return ""
    return KNOWN_BOARDS.get((vid, pid)) or KNOWN_BOARDS.get((vid, None), "")


@dataclass(frozen=True)
class SerialPortInfo:
    """One serial port as the operating system lists it.

    Example:
        >>> p = SerialPortInfo("/dev/ttyUSB0", 0x1A86, 0x7523, None, None, "USB Serial")
        >>> p.board_guess, p.usb_id
        ('CH340 USB-serial (Uno/Nano clone)', '1A86:7523')
    """

    device: str
    vid: int | None
    pid: int | None
    serial_number: str | None
    manufacturer: str | None
    description: str
    board_guess: str = ""

    def __post_init__(self) -> None:
        if not self.board_guess:
            object.__setattr__(self, "board_guess", guess_board(self.vid, self.pid))

    @property
    def usb_id(self) -> str:
        """``"VID:PID"`` in hex, ``""`` for a port that is not USB."""
        return f"{self.vid:04X}:{self.pid:04X}" if self.vid is not None and self.pid else ""

    @property
    def looks_like_arduino(self) -> bool:
        return bool(self.board_guess)


def list_serial_ports() -> list[SerialPortInfo]:
    """Every serial port of this computer, likely Arduino boards first, then by name."""
    ports = [
        SerialPortInfo(
            device=p.device,
            vid=p.vid,
            pid=p.pid,
            serial_number=p.serial_number,
            manufacturer=p.manufacturer,
            description=p.description or "",
        )
        for p in list_ports.comports()
    ]
    return sorted(ports, key=lambda p: (not p.looks_like_arduino, p.device))


def _wait_for(
    transport: Transport,
    rx: sp.FrameReceiver,
    accept: Callable[[sp.Packet], bool],
    timeout_s: float,
) -> sp.Packet | None:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        data = transport.read(512, min(left, 0.05))
        for item in rx.feed(data) if data else rx.poll():
            if isinstance(item, sp.Packet) and accept(item):
                return item
    return None


def identify(
    port: str,
    timeout_s: float = 4.0,
    *,
    baudrate: int = sp.BAUDRATE,
    reply_timeout_s: float = 0.3,
    transport: Transport | None = None,
) -> sp.DeviceInfo | None:
    """Ask the device on ``port`` whether it is a blurvid shutter controller.

    Opens the port, waits up to ``timeout_s`` for the READY frame (an Uno resets when its port
    opens), else sends GET_INFO (twice, ``reply_timeout_s`` each). The port is closed in all cases.

    Returns:
        The controller's :class:`~hw.shutter_protocol.DeviceInfo`, or None when the port holds
        something else (silence, other firmware, the port vanished).

    Raises:
        InitialiseError: the port cannot be opened, or it holds blurvid shutter firmware of
            another protocol version (the message says what to flash).
    """
    t = transport if transport is not None else SerialTransport(port, baudrate)
    t.open()
    try:
        rx = sp.FrameReceiver()
        pkt = _wait_for(t, rx, lambda p: p.type == sp.MsgType.READY, timeout_s)
        if pkt is None:
            seq = random.randint(1, 255)
            frame = sp.encode_frame(sp.MsgType.GET_INFO, seq)
            for _ in range(2):
                t.write(frame)
                pkt = _wait_for(
                    t, rx, lambda p: p.type == sp.MsgType.INFO and p.seq == seq, reply_timeout_s
                )
                if pkt is not None:
                    break
    except DeviceDisconnected as e:
        log.info("%s went away while identifying it: %s", port, e)
        return None
    finally:
        t.close()
    if pkt is None:
        return None
    problem = sp.info_problem(pkt.body)
    if problem is not None and not pkt.body.startswith(sp.MAGIC):
        log.info("%s is not a blurvid shutter controller: %s", port, problem)
        return None
    if problem is None:
        try:
            return sp.DeviceInfo.from_body(pkt.body)
        except ProtocolError as e:
            problem = str(e)
    raise InitialiseError(
        f"{port} holds a blurvid shutter controller this driver cannot use: {problem}. Flash "
        f"firmware/blurvid_shutter (protocol {sp.PROTOCOL_VERSION}) from this checkout onto it."
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m hw.serial_ports [--identify]``."""
    parser = argparse.ArgumentParser(
        prog="python -m hw.serial_ports", description="List serial ports and guess their boards."
    )
    parser.add_argument(
        "--identify",
        action="store_true",
        help="ask every likely Arduino whether it runs the blurvid shutter firmware",
    )
    parser.add_argument("--timeout", type=float, default=4.0, help="READY wait per port (4 s)")
    args = parser.parse_args(argv)
    ports = list_serial_ports()
    if not ports:
        print("No serial ports found. Plug the board in (and check its USB cable carries data).")
        return 1
    for p in ports:
        line = f"{p.device:20s} {p.usb_id:9s} {p.board_guess or p.description}"
        if args.identify and p.looks_like_arduino:
            try:
                info = identify(p.device, args.timeout)
            except InitialiseError as e:
                line += f"  -> {e}"
            else:
                line += (
                    f"  -> blurvid shutter, firmware {info.firmware_version}"
                    if info
                    else "  -> not a blurvid shutter"
                )
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
