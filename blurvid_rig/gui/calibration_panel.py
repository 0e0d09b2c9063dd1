"""The rig window's calibration box: the active calibration, its fit, load / calibrate / clear.

The active calibration (``session.calibration``) is embedded into every capture. Its fit to the
camera settings is shown in colour (red: it will refuse to record; orange: warnings). "Calibrate"
opens the calibration wizard on the connected devices (the session must be idle).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from calibration.model import Calibration, CalibrationError


class CalibrationPanel(QGroupBox):
    """Shows the active calibration; emits ``calibrate_requested`` and ``changed(cal or None)``."""

    calibrate_requested = Signal()
    changed = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Calibration", parent)
        self.calibration: Calibration | None = None
        self.path: Path | None = None
        lay = QVBoxLayout(self)
        self.label = QLabel("none: frames are reconstructed with the black level and the "
                            "nominal code")
        self.label.setWordWrap(True)
        self.problems = QLabel("")
        self.problems.setWordWrap(True)
        lay.addWidget(self.label)
        lay.addWidget(self.problems)
        row = QHBoxLayout()
        self.calibrate_btn = QPushButton("Calibrate...")
        self.calibrate_btn.setToolTip("Run the calibration wizard on the connected devices")
        self.load_btn = QPushButton("Load...")
        self.clear_btn = QPushButton("Clear")
        self.calibrate_btn.clicked.connect(self.calibrate_requested)
        self.load_btn.clicked.connect(self._load_dialog)
        self.clear_btn.clicked.connect(lambda: self.set_calibration(None, None))
        for b in (self.calibrate_btn, self.load_btn, self.clear_btn):
            row.addWidget(b)
        lay.addLayout(row)

    def set_calibration(self, cal: Calibration | None, path: Path | None) -> None:
        self.calibration, self.path = cal, path
        if cal is None:
            self.label.setText("none: frames are reconstructed with the black level and the "
                               "nominal code")
        else:
            where = f" ({path.name})" if path is not None else ""
            self.label.setText(f"{cal.summary()}{where}")
        self.problems.setText("")
        self.changed.emit(cal)

    def show_problems(self, problems: list[str]) -> None:
        """``problems`` as ``"error: ..."`` / ``"warning: ..."`` lines."""
        if not problems:
            ok = self.calibration is not None
            self.problems.setText("<span style='color:#1e8449'>fits the camera settings</span>"
                                  if ok else "")
            return
        colour = "#c0392b" if any(p.startswith("error") for p in problems) else "#b9770e"
        self.problems.setText(f"<span style='color:{colour}'>{'<br>'.join(problems)}</span>")

    def load(self, path: Path, on_error: Callable[[str], None] | None = None) -> bool:
        try:
            cal = Calibration.load(path)
        except CalibrationError as e:
            if on_error is not None:
                on_error(str(e))
            return False
        self.set_calibration(cal, Path(path))
        return True

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load calibration", "calibrations",
            "Calibration or capture (*.h5);;All files (*)")
        if path:
            self.load(Path(path), self._error)

    def _error(self, message: str) -> None:
        self.problems.setText(f"<span style='color:#c0392b'>{message}</span>")
