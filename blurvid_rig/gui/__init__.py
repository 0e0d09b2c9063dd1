"""The rig desktop app (PySide6 + pyqtgraph): ``blurvid-rig gui``.

Only this package (and ``calibration/wizard``) imports Qt. :func:`run` opens the window on the
simulated rig by default; without a display it says so in one sentence instead.
"""

from __future__ import annotations

import os
import sys

NO_DISPLAY_MESSAGE = (
    "No display found (neither DISPLAY nor WAYLAND_DISPLAY is set), so the rig window cannot open; "
    "`blurvid-rig demo` runs the same capture and reconstruction on the simulated rig without one."
)


def has_display() -> bool:
    """Whether Qt can open a window here (a display, or an offscreen/VNC platform asked for)."""
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "vnc", "minimal"):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run(sim_size: int = 512, out_dir: str = "captures", autoconnect: bool = True,
        quit_after_s: float = 0.0) -> int:
    """Open the rig window and run the Qt event loop; returns the exit code.

    Args:
        sim_size: sensor size of the simulated rig.
        out_dir: default folder of capture files.
        autoconnect: connect the simulated rig and start live view at once.
        quit_after_s: close the window after that many seconds (0: never; for smoke tests).
    """
    from pathlib import Path

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from blurvid_rig.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = MainWindow(out_dir=Path(out_dir))
    win.devices_panel.sim_size.setValue(sim_size)
    win.folder.setText(out_dir)
    win.show()
    if autoconnect:
        win.connect_rig()
        win.tasks.run(lambda: None, lambda _: _start_live_when_connected(win))
    if quit_after_s > 0:
        QTimer.singleShot(int(quit_after_s * 1000), win.close)
    return int(app.exec())


def _start_live_when_connected(win) -> None:
    if win.session is not None:
        win.toggle_live()


def run_calibration_wizard(camera, shutter, bench, plan, *, rig_info=None, out_path=None,
                           truth=None, projector=None) -> tuple[int, object]:
    """Open the calibration wizard on open devices and run the Qt event loop.

    Returns ``(exit code, saved path or None)``: 0 when a calibration was saved, 1 when the wizard
    was closed without saving.
    """
    from PySide6.QtWidgets import QApplication

    from calibration.wizard import CalibrationWizard

    app = QApplication.instance() or QApplication(sys.argv[:1])
    wiz = CalibrationWizard(camera, shutter, bench, plan, rig_info=rig_info, out_path=out_path,
                            truth=truth, projector=projector)
    wiz.show()
    app.exec()
    for page in wiz.step_pages:  # a cancelled step finishes its frame before devices close
        page.wait(60.0)
    return (0 if wiz.saved_path is not None else 1), wiz.saved_path
