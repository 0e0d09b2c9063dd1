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


def edge_timing(bits: str, chip_us: float) -> dict[str, str]:
    """Where the outputs land relative to their ideal tick, from one playback's edge log."""
    from hw.arduino_shutter import PlaybackConfig

    chip = round(chip_us * F_CPU / 1e6)
    out: dict[str, str] = {}
    with SimulatedArduino(ELF) as board, ArduinoShutter(board.port) as sh:
        sh.load_code(ShutterCode.parse(bits, chip_us))
        sh.arm()
        start = len(board.edges())
        sh.fire()
        time.sleep(0.1)
        e = board.edges()[start:]
        opens = [c for c, p, lvl in e if p == "B1"]
        t0 = opens[0] - bits.index("1") * chip
        ideal, prev = [], "0"
        for k, b in enumerate(bits + "0"):
            if b != prev:
                ideal.append(t0 + k * chip)
            prev = b
        err = max(abs(a - b) for a, b in zip(opens, ideal, strict=True))
        inv = [c for c, p, _ in e if p == "B2"]
        out["SHUTTER edges vs ideal tick (max)"] = f"{err} cycles"
        out["SHUTTER_N vs SHUTTER (max)"] = (
            f"{max(abs(a - b) for a, b in zip(inv, opens, strict=True))} cycles"
        )
        dmd = [c for c, p, lvl in e if p == "D7" and lvl == 1]
        offs = [(c - (t0 + k * chip)) / 16 for k, c in enumerate(dmd)]
        out["DMD_TRIG rise after chip start"] = f"{min(offs):.2f}..{max(offs):.2f} us"
        dmd_fall = [c for c, p, lvl in e if p == "D7" and lvl == 0]
        widths = [(b - a) / 16 for a, b in zip(dmd, dmd_fall, strict=False)]
        out["DMD_TRIG pulse width"] = f"{min(widths):.2f}..{max(widths):.2f} us"
        cam = [c for c, p, _ in e if p == "D4"]
        lead = sh.config.lead_us
        out["CAM_TRIG rise after lead start"] = f"{(cam[0] - (t0 - lead * 16)) / 16:.2f} us"
        out["CAM_TRIG fall after last chip"] = f"{(cam[1] - (t0 + len(bits) * chip)) / 16:.2f} us"
        # external start: TRIG_IN edge -> lead start
        sh.disarm()
        sh.configure(PlaybackConfig(start_source="external"))
        sh.arm()
        lat = []
        for _ in range(5):
            start = len(board.edges())
            board.set_pin("D2", 1)
            sh.wait_done(timeout_s=2.0)
            board.set_pin("D2", 0)
            time.sleep(0.05)
            e = board.edges()[start:]
            trig = next(c for c, p, lvl in e if p == "D2" and lvl == 1)
            first = next(c for c, p, lvl in e if p == "B1")
            lat.append((first - bits.index("1") * chip - lead * 16 - trig) / 16)
        out["TRIG_IN rise -> lead start"] = f"{min(lat):.2f}..{max(lat):.2f} us"
    return out


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
    print("\n## output timing, code 11100101 at 10 us chips (simavr, cycle-exact)")
    print("| what | measured |\n|---|---|")
    for name, value in edge_timing("11100101", 10.0).items():
        print(f"| {name} | {value} |")
    for speed, label in ((1.0, "paced to real time"), (0.0, "unpaced")):
        print(f"\n## simavr {label} ({args.repeats} repeats; ms, median / worst)")
        print("| operation | host time | simulated time |\n|---|---|---|")
        for name, host, sim in run(speed, args.repeats):
            print(f"| {name} | {fmt(host)} | {fmt(sim)} |")


if __name__ == "__main__":
    main()
