"""Render screenshots of the rig window's main states into docs/screenshots/.

Runs the real window on the simulated rig in a virtual X server (Xvfb), so the pictures show what
a user sees, window manager decorations aside:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/gui_screenshots.py

States: ``live.png`` (live view with the live reconstruction preview), ``code.png`` (the code
designer after picking a longer code), ``error.png`` (a camera that disconnects: the error in the
status bar), ``files_1366x768.png`` (the Files tab after reconstructing a burst, the window at the
size of a 1366x768 screen), ``calibration.png`` (the calibration wizard after measuring the
shutter timing of the simulated LC shutter). ``--out`` writes elsewhere; ``--size`` sets the
simulated sensor.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def wait_until(app, condition, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    ap.add_argument("--size", type=int, default=384, help="simulated sensor side in pixels")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per state")
    args = ap.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from blurvid_rig.gui.main_window import MainWindow, sim_rig_factory
    from blurvid_rig.session import SessionState
    from hw.sim import SimFaults

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    captures = Path(tempfile.mkdtemp(prefix="blurvid-screenshots-"))  # not beside the pictures
    app = QApplication.instance() or QApplication(sys.argv[:1])
    platform = app.platformName()
    written = []

    def shot(win, name: str) -> None:
        app.processEvents()
        path = out / name
        if not win.grab().save(str(path)):
            raise SystemExit(f"could not write {path}")
        written.append(path)

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise SystemExit(f"timed out waiting for {what}")

    win = MainWindow(rig_factory=sim_rig_factory(args.size), out_dir=captures)
    win.devices_panel.sim_size.setValue(args.size)
    win.resize(1500, 950)
    win.show()
    win.connect_rig()
    need(wait_until(app, lambda: win.session is not None, args.timeout), "the rig to connect")
    win.preview.n_frames.setValue(8)
    win.preview.enabled.setChecked(True)
    win.toggle_live()
    need(wait_until(app, lambda: win.live.frames_shown >= 10 and win.preview.results >= 1,
                    args.timeout), "live frames and a reconstruction")  # fmt: skip
    wait_until(app, lambda: False, 1.5)  # let the rates settle
    shot(win, "live.png")

    win.toggle_live()
    need(wait_until(app, lambda: win.session.state == SessionState.IDLE, args.timeout),
         "live view to stop")  # fmt: skip
    win.designer.known.setCurrentIndex(2)
    win.designer.known.activated.emit(2)
    win.designer.upload_btn.click()
    need(wait_until(app, lambda: "echo" in win.designer.echo.text(), args.timeout),
         "the controller's echo")  # fmt: skip
    shot(win, "code.png")

    # the Files tab after reconstructing a burst, at a 1366x768 screen's size (less the panel
    # and title bar a desktop takes): everything must fit and the video sit in its pane
    win.mode.setCurrentText("Burst of N")
    win.burst_n.setValue(2)
    win.record_btn.click()
    need(wait_until(app, lambda: win.last_result is not None, args.timeout), "the burst")
    need(wait_until(app, lambda: win.files.path == win.last_result.path, args.timeout),
         "the Files tab to open the capture")  # fmt: skip
    win.resize(1366, 720)
    win.tabs.setCurrentWidget(win.files)
    win.files.reconstruct()
    need(wait_until(app, lambda: win.files.video is not None, 4 * args.timeout),
         "the reconstruction")  # fmt: skip
    wait_until(app, lambda: False, 1.0)
    shot(win, "files_1366x768.png")
    win.close()

    bad = MainWindow(rig_factory=sim_rig_factory(args.size, faults=SimFaults(disconnect_after_n=5)),
                     out_dir=captures)  # fmt: skip
    bad.devices_panel.sim_size.setValue(args.size)
    bad.resize(1500, 950)
    bad.show()
    bad.connect_rig()
    need(wait_until(app, lambda: bad.session is not None, args.timeout), "the rig to connect")
    bad.toggle_live()
    need(wait_until(app, lambda: bad.session.state == SessionState.ERROR, args.timeout),
         "the injected disconnect")  # fmt: skip
    wait_until(app, lambda: False, 0.5)
    shot(bad, "error.png")
    bad.close()

    from calibration.bench import SimBench, make_sim_bench_rig, sim_truth
    from calibration.procedures.plan import Plan
    from calibration.wizard import CalibrationWizard

    cam, sh = make_sim_bench_rig(320, 240)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(exposure_us=10_000.0, black_level_dn=64.0))
        with SimBench(cam) as bench:
            wiz = CalibrationWizard(cam, sh, bench, Plan(exposure_us=10_000.0),
                                    truth=sim_truth(cam, sh), out_path=out / "wizard.cal.h5")
            wiz.resize(900, 680)
            wiz.show()
            wiz.next()
            page = next(p for p in wiz.step_pages if p.step == "shutter_timing")
            while wiz.currentPage() is not page:
                wiz.currentPage().skip()
                wiz.next()
            page.start()
            need(wait_until(app, page.isComplete, args.timeout), "the shutter timing")
            wait_until(app, lambda: False, 0.5)
            shot(wiz, "calibration.png")
            wiz.reject()
    import shutil

    shutil.rmtree(captures, ignore_errors=True)
    for p in written:
        print(f"wrote {p} ({platform})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
