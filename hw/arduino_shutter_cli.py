"""Command line of the Arduino shutter controller: ``python -m hw.arduino_shutter``.

``hw.arduino_shutter`` runs this module as the program; this module imports the driver, never the
other way round.

For humans::

    python -m hw.arduino_shutter --port /dev/ttyACM0 info
    python -m hw.arduino_shutter --port /dev/ttyACM0 load 11100101 --chip-us 1000 --fire
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from hw.arduino_shutter import ArduinoShutter
from hw.errors import RigError
from hw.transport import PORTS_HINT
from hw.types import ShutterCode


def _print_fields(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        print(f"  {f.name:18s} {getattr(obj, f.name)}")


def main(argv: list[str] | None = None) -> int:
    """``python -m hw.arduino_shutter --port PORT {info,status,ping,load,fire}``."""
    parser = argparse.ArgumentParser(
        prog="python -m hw.arduino_shutter",
        description="Talk to the blurvid Arduino shutter controller (protocol 1) by hand.",
    )
    parser.add_argument("--port", required=True, help=f"serial port or URL; {PORTS_HINT}")
    parser.add_argument(
        "--ready-timeout", type=float, default=4.0, help="seconds to wait for READY (4)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="identity of the controller")
    sub.add_parser("status", help="what the controller holds")
    p = sub.add_parser("ping", help="round-trip time")
    p.add_argument("--count", type=int, default=4)
    p = sub.add_parser("load", help="load a code and verify its echo")
    p.add_argument("bits", help="the code as 0/1, e.g. 11100101")
    p.add_argument("--chip-us", type=float, required=True, help="chip duration in us")
    p.add_argument("--save", action="store_true", help="also save it to EEPROM")
    p.add_argument("--fire", action="store_true", help="then arm, fire once and disarm")
    sub.add_parser("fire", help="arm, play the code the controller holds once, disarm")
    args = parser.parse_args(argv)
    try:
        with ArduinoShutter(args.port, ready_timeout_s=args.ready_timeout) as sh:
            if args.command == "info":
                print(f"{sh.port}: {sh.info.firmware_version}, {sh.device_info.board_name}")
                _print_fields(sh.device_info)
            elif args.command == "status":
                st = sh.device_status()
                print(f"{sh.port}: {st.state_name}")
                _print_fields(st)
            elif args.command == "ping":
                for i in range(max(1, args.count)):
                    rtt = sh.ping(f"blurvid {i}".encode())
                    print(f"PONG from {sh.port}: {rtt * 1000:.2f} ms")
            elif args.command == "load":
                st = sh.load_code(ShutterCode.parse(args.bits, args.chip_us))
                print(
                    f"loaded and verified: {st.n_chips} chips of {st.chip_us:g} us, "
                    f"sha256 {st.code_sha256}"
                )
                if args.save:
                    sh.save_to_eeprom()
                    print("saved to EEPROM")
                if args.fire:
                    sh.arm()
                    print(f"fired: trigger {sh.fire()}")
                    sh.disarm()
            elif args.command == "fire":
                st = sh.device_status()
                if not st.has_code:
                    print(
                        f"error: the controller on {sh.port} holds no code; load one with "
                        "`load BITS --chip-us N --save` (a board that resets when its port opens "
                        "keeps only a saved code).",
                        file=sys.stderr,
                    )
                    return 1
                sh.arm_stored_code()
                try:
                    print(f"fired: trigger {sh.fire()}")
                finally:
                    sh.stop_playback()
    except RigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
