"""Shutter controller: code upload and fire-to-done latency, firmware in simavr.

Runs the real firmware (``firmware/build/blurvid_shutter.elf``) in the simavr harness and the real
host driver, and prints, per operation, the median and worst of ``--repeats`` runs in

* host time: wall-clock time of the driver call (what a capture loop waits for), and
* simulated time: AVR cycles from the first byte of the request reaching the AVR's UART to the
  last byte of the reply (or of DONE) leaving it, from the harness's UART log.

Both with the simulation paced to real time (what a real Uno would show, except that simavr's
UART takes 11 bit times per byte instead of 10) and unpaced (the host side's share).

    make -C firmware all sim && .venv/bin/python bench/bench_shutter.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from hw.arduino_shutter import ArduinoShutter
from hw.sim.avr import SimulatedArduino
from hw.types import ShutterCode

REPO = Path(__file__).resolve().parents[1]
ELF = REPO / "firmware" / "build" / "blurvid_shutter.elf"
F_CPU = 16e6


def sim_span_s(board: SimulatedArduino, start: int) -> float:
    """Simulated seconds from the first RX byte to the last TX byte logged after ``start``."""
    time.sleep(0.05)  # the harness flushes its log every few ms
    new = board.edges()[start:]
    rx = [c for c, p, _ in new if p == "RX"]
    tx = [c for c, p, _ in new if p == "TX"]
    return (tx[-1] - rx[0]) / F_CPU


def measure(board: SimulatedArduino, call: Callable[[], object], repeats: int):
    host, sim = [], []
    for _ in range(repeats):
        start = len(board.edges())
        t = time.perf_counter()
        call()
        host.append(time.perf_counter() - t)
        sim.append(sim_span_s(board, start))
    return host, sim


def make_loader(sh: ArduinoShutter, codes: list[ShutterCode]) -> Callable[[], object]:
    """A call that loads the next of ``codes`` (a different code each time: no cached reply)."""
    it = iter(codes)
    return lambda: sh.load_code(next(it))


def run(speed: float, repeats: int) -> list[tuple[str, list[float], list[float]]]:
    rng = random.Random(1)
    rows = []
    with SimulatedArduino(ELF, speed=speed, uart_log=True) as board:
        t = time.perf_counter()
        sh = ArduinoShutter(board.port)
        sh.open()
        rows.append(("open (reset, READY)", [time.perf_counter() - t], []))
        try:
            rows.append(("GET_STATUS", *measure(board, sh.status, repeats)))
            for n, chip_us in ((256, 100.0), (1024, 100.0)):
                codes = [
                    ShutterCode.parse(
                        "1" + "".join(rng.choice("01") for _ in range(n - 1)), chip_us
                    )
                    for _ in range(repeats)
                ]
                load_next = make_loader(sh, codes)
                rows.append(
                    (f"load_code {n} chips (verified)", *measure(board, load_next, repeats))
                )
            sh.load_code(ShutterCode.parse("11100101", 10.0))
            sh.arm()
            rows.append(("fire -> DONE, 8 x 10 us code", *measure(board, sh.fire, repeats)))
            sh.disarm()
            sh.load_code(codes[0])  # 1024 x 100 us = 102.4 ms of code
            sh.arm()
            rows.append(
                ("fire -> DONE, 1024 x 100 us code", *measure(board, sh.fire, max(3, repeats // 4)))
            )
        finally:
            sh.close()
    return rows


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values) * 1e3:8.2f} / {max(values) * 1e3:8.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if not ELF.is_file():
        raise SystemExit(f"{ELF} is missing: run `make -C firmware all sim` first.")
    for speed, label in ((1.0, "paced to real time"), (0.0, "unpaced")):
        print(f"\n## simavr {label} ({args.repeats} repeats; ms, median / worst)")
        print("| operation | host time | simulated time |\n|---|---|---|")
        for name, host, sim in run(speed, args.repeats):
            print(f"| {name} | {fmt(host)} | {fmt(sim)} |")


if __name__ == "__main__":
    main()
