"""Camera controls bound to typed settings, and the camera's feature tree with search.

The controls edit a :class:`~hw.types.CameraSettings`; "Apply" hands it to the session, which
loads the code and sets the camera up to expose for it. What the camera actually holds (ROI
rounded to its increments, limits applied) is read back into the controls, and the session's
consistency problems (exposure window vs code) are shown in red under them.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from hw.types import EXPOSURE_MODES, PIXEL_FORMAT_BITS, CameraSettings, Roi


def _spin(lo: int, hi: int, step: int = 1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setSingleStep(step)
    return s


class CameraPanel(QGroupBox):
    """Exposure mode and time, gain, pixel format and ROI.

    Signals:
        apply_requested(): the user pressed "Apply" (read :meth:`settings_from` and
            :attr:`exposure_mode`/:attr:`exposure_us`).
    """

    apply_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Camera", parent)
        self.exposure_mode = QComboBox()
        self.exposure_mode.addItems(EXPOSURE_MODES[::-1])  # TriggerWidth first: the coded default
        self.exposure_mode.setToolTip(
            "TriggerWidth: the camera exposes while the controller holds its trigger (the whole "
            "code). Timed: a fixed exposure time that must cover the code.")
        self.exposure_us = QDoubleSpinBox()
        self.exposure_us.setRange(1.0, 10_000_000.0)
        self.exposure_us.setDecimals(1)
        self.exposure_us.setSuffix(" us")
        self.exposure_us.setValue(10_000.0)
        self.gain = QDoubleSpinBox()
        self.gain.setRange(0.0, 48.0)
        self.gain.setSuffix(" dB")
        self.black_level = QDoubleSpinBox()
        self.black_level.setRange(0.0, 4095.0)
        self.black_level.setSuffix(" DN")
        self.black_level.setToolTip(
            "Offset added by the camera; keep the dark noise above 0 DN (calibration needs it)")
        self.pixel_format = QComboBox()
        self.pixel_format.addItems(list(PIXEL_FORMAT_BITS))
        self.roi = [_spin(0, 65535) for _ in range(4)]  # x, y, w, h
        self.roi[2].setSpecialValueText("full")
        self.roi[3].setSpecialValueText("full")
        self.apply_btn = QPushButton("Apply (loads the code too)")
        self.apply_btn.clicked.connect(self.apply_requested.emit)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #c0392b")
        self.held = QLabel("")
        self.held.setWordWrap(True)
        roi_row = QGridLayout()  # two rows (offset, size): four spin boxes in a row were too wide
        for k, (label, w) in enumerate(zip(("x", "y", "w", "h"), self.roi, strict=True)):
            roi_row.addWidget(QLabel(label), k // 2, 2 * (k % 2))
            roi_row.addWidget(w, k // 2, 2 * (k % 2) + 1)
        form = QFormLayout(self)
        form.addRow("exposure mode", self.exposure_mode)
        form.addRow("exposure (Timed)", self.exposure_us)
        form.addRow("gain", self.gain)
        form.addRow("black level", self.black_level)
        form.addRow("pixel format", self.pixel_format)
        form.addRow("ROI", roi_row)
        form.addRow(self.apply_btn)
        form.addRow(self.warning)
        form.addRow(self.held)
        self.exposure_mode.currentTextChanged.connect(
            lambda m: self.exposure_us.setEnabled(m == "Timed"))
        self.exposure_us.setEnabled(False)
        #: whether the user changed gain, black level, pixel format or ROI here; until then
        #: connecting keeps what the camera holds (the panel's blank defaults are not applied)
        self.user_edited = False
        self._showing = False
        for w in (self.gain, self.black_level, *self.roi):
            w.valueChanged.connect(self._edited)
        self.pixel_format.currentTextChanged.connect(self._edited)

    def _edited(self, *_: object) -> None:
        if not self._showing:
            self.user_edited = True

    @property
    def mode(self) -> str:
        return self.exposure_mode.currentText()

    @property
    def timed_exposure_us(self) -> float | None:
        return self.exposure_us.value() if self.mode == "Timed" else None

    def settings_from(self, base: CameraSettings) -> CameraSettings:
        """``base`` with the panel's gain, black level, pixel format and ROI."""
        x, y, w, h = (s.value() for s in self.roi)
        return base.replace(gain_db=self.gain.value(), pixel_format=self.pixel_format.currentText(),
                            black_level_dn=self.black_level.value(),
                            roi=Roi(offset_x=x, offset_y=y, width=w, height=h))  # fmt: skip

    def show_settings(self, cam: CameraSettings) -> None:
        """Show what the camera holds (after the device rounded and limited it)."""
        self._showing = True
        try:
            self._show_settings(cam)
        finally:
            self._showing = False

    def _show_settings(self, cam: CameraSettings) -> None:
        self.gain.setValue(cam.gain_db)
        self.black_level.setValue(cam.black_level_dn)
        self.pixel_format.setCurrentText(cam.pixel_format)
        r = cam.roi
        for s, v in zip(self.roi, (r.offset_x, r.offset_y, r.width, r.height), strict=True):
            s.setValue(int(v))
        if cam.exposure_mode in EXPOSURE_MODES:
            self.exposure_mode.setCurrentText(cam.exposure_mode)
        if cam.exposure_mode == "Timed":
            self.exposure_us.setValue(cam.exposure_us)
        roi = "full sensor" if not (r.width and r.height) else (
            f"{r.width}x{r.height} at ({r.offset_x}, {r.offset_y})")
        self.held.setText(
            f"camera holds: {cam.exposure_mode}"
            + (f" {cam.exposure_us:.1f} us" if cam.exposure_mode == "Timed" else "")
            + f", gain {cam.gain_db:.1f} dB, black level {cam.black_level_dn:g} DN, "
            f"{cam.pixel_format}, {roi}, trigger "
            f"{cam.trigger_mode}/{cam.trigger_source}"
        )
        self.warning.setText("")

    def show_problem(self, message: str) -> None:
        self.warning.setText(message)


class FeatureTree(QWidget):
    """Every readable camera feature (name -> value), filtered by a search box."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search = QLineEdit()
        self.search.setPlaceholderText("search features (name or value)")
        self.search.textChanged.connect(self._filter)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["feature", "value"])
        self.tree.setRootIsDecorated(False)
        lay = QVBoxLayout(self)
        lay.addWidget(self.search)
        lay.addWidget(self.tree, 1)

    def set_features(self, features: dict[str, Any]) -> None:
        self.tree.clear()
        for name in sorted(features, key=str.lower):
            self.tree.addTopLevelItem(QTreeWidgetItem([name, str(features[name])]))
        self.tree.resizeColumnToContents(0)
        self._filter(self.search.text())

    def visible_names(self) -> list[str]:
        return [self.tree.topLevelItem(i).text(0) for i in range(self.tree.topLevelItemCount())
                if not self.tree.topLevelItem(i).isHidden()]  # fmt: skip

    def _filter(self, text: str) -> None:
        t = text.strip().lower()
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            item.setHidden(bool(t) and t not in item.text(0).lower()
                           and t not in item.text(1).lower())  # fmt: skip
