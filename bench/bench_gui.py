"""Display throughput of the live view at 1024x1024 uint16, alone and while the rig records.

1. The bare view: ``LiveView.show_frame`` of pre-made 12-bit frames plus the repaint, as fast as
   it goes (what the display costs per frame).
2. The rig window on the simulated rig (1024x1024 sensor) recording continuously to a temporary
   file: frames shown per second by the window's 30 Hz display timer, camera frames per second
   and frames written, side by side in one run.

Run it in a real (virtual) X server for figures that include drawing on screen:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/bench_gui.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()

    from PySide6.QtWidgets import QApplication

    from blurvid_rig.gui.live_view import LiveView
    from blurvid_rig.gui.main_window import MainWindow, sim_rig_factory
    from blurvid_rig.session import SessionState

    app = QApplication.instance() or QApplication(sys.argv[:1])
    print(f"Qt platform: {app.platformName()}; frames {args.size}x{args.size} uint16 (12-bit)")

    # 1. bare view
    rng = np.random.default_rng(0)
    view = LiveView()
    view.resize(1100, 1000)
    view.show()
    app.processEvents()
    for label, top in (("no saturated pixel", 4000), ("saturated pixels (overlay drawn)", 4096)):
        frames = [rng.integers(0, top, (args.size, args.size), dtype=np.uint16) for _ in range(8)]
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds / 4:
            view.show_frame(frames[n % len(frames)], 4095)
            app.processEvents()  # the repaint the frame scheduled
            n += 1
        dt = time.perf_counter() - t0
        print(f"bare live view, {label}: {n / dt:.1f} frames/s ({dt / n * 1e3:.1f} ms per frame)")
    view.close()

    # 2. the window while recording
    with tempfile.TemporaryDirectory() as tmp:
        win = MainWindow(rig_factory=sim_rig_factory(args.size), out_dir=Path(tmp))
        win.folder.setText(tmp)
        win.resize(1500, 950)
        win.show()
        win.connect_rig()
        end = time.monotonic() + 60
        while win.session is None and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)
        if win.session is None:
            raise SystemExit(f"the simulated rig did not connect: {win.last_error}")
        win.mode.setCurrentText("Continuous")
        win.record_btn.click()
        end = time.monotonic() + 30
        while win.session.state != SessionState.RECORDING and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)
        shown0 = win.live.frames_shown
        _, count0 = win.session.latest.get()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            app.processEvents()
            time.sleep(0.002)
        dt = time.perf_counter() - t0
        shown = win.live.frames_shown - shown0
        _, count = win.session.latest.get()
        stats = win.session.recording_stats
        win.stop_recording()
        end = time.monotonic() + 60
        while win.last_result is None and time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)
        written = win.last_result.stats.written if win.last_result else stats.written
        print(f"while recording: display {shown / dt:.1f} frames/s (timer at 30 Hz), camera "
              f"{(count - count0) / dt:.1f} frames/s, {written} frames written, dropped "
              f"{stats.frame_id_gaps + stats.trigger_gaps}, writer queue high-water "
              f"{stats.queue_high_water}")
        win.close()


if __name__ == "__main__":
    main()
