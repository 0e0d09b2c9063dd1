"""Live view: the newest camera frame with persistent levels, auto-levels, saturation overlay and
ROI statistics (pyqtgraph ``ImageItem`` + ``HistogramLUTItem``)."""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

pg.setConfigOptions(imageAxisOrder="row-major")

#: Percentiles of the auto-levels (robust against hot pixels and a few saturated ones).
AUTO_LEVELS_PERCENTILES = (0.5, 99.5)


def percentile_levels(image: np.ndarray, lo: float = AUTO_LEVELS_PERCENTILES[0],
                      hi: float = AUTO_LEVELS_PERCENTILES[1]) -> tuple[float, float]:
    """Display levels from percentiles of (a subsample of) ``image``; never an empty range.

    >>> percentile_levels(np.arange(100, dtype=np.uint16).reshape(10, 10))
    (0.495, 98.505)
    """
    step = max(1, int(np.sqrt(image.size / 65536)))  # ~64k samples are plenty
    sample = image[::step, ::step].astype(np.float64, copy=False)
    a, b = np.percentile(sample, (lo, hi))
    if not b > a:
        b = a + 1.0
    return float(a), float(b)


def saturation_mask(image: np.ndarray, max_value: int) -> np.ndarray:
    """RGBA overlay (uint8): red where ``image >= max_value``, transparent elsewhere."""
    rgba = np.zeros((*image.shape, 4), np.uint8)
    sat = image >= max_value
    rgba[sat] = (255, 0, 0, 200)
    return rgba


class LiveView(QWidget):
    """Shows frames handed to :meth:`show_frame` (call it from the GUI thread only).

    Levels set by the user (histogram handles) persist across frames; "Auto levels" sets them
    from percentiles once, "Continuous" on every frame. ``stats_changed`` carries a sentence with
    the ROI's mean, standard deviation, min and max.
    """

    stats_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget()
        self.view = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.view.addItem(self.image)
        self.view.addItem(self.overlay)
        self.hist = pg.HistogramLUTItem(image=self.image)
        self.graphics.addItem(self.hist)
        self.roi = pg.RectROI([0, 0], [64, 64], pen=pg.mkPen("y", width=1))
        self.roi.setZValue(20)
        self.view.addItem(self.roi)
        self.roi.sigRegionChangeFinished.connect(self._update_stats)

        self.auto_btn = QPushButton("Auto levels")
        self.auto_btn.clicked.connect(self.auto_levels)
        self.continuous = QCheckBox("Continuous")
        self.show_sat = QCheckBox("Saturation")
        self.show_sat.setChecked(True)
        self.one_to_one = QPushButton("1:1")
        self.one_to_one.clicked.connect(self.zoom_one_to_one)
        self.fit_btn = QPushButton("Fit")
        self.fit_btn.clicked.connect(lambda: self.view.autoRange(padding=0.0))
        self.info = QLabel("no frame yet")
        # the statistics wrap and may shrink: their length must not set the window's width
        self.info.setWordWrap(True)
        self.info.setMinimumWidth(120)
        bar = QHBoxLayout()
        for w in (self.auto_btn, self.continuous, self.show_sat, self.one_to_one, self.fit_btn):
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(self.info)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.graphics, 1)

        self.frames_shown = 0
        self.display_fps = 0.0
        self._last_t = 0.0
        self._frame: np.ndarray | None = None
        self._max_value = 255
        self._levels_set = False

    # -- frames ----------------------------------------------------------------------------------
    def show_frame(self, image: np.ndarray, max_value: int | None = None) -> None:
        """Display ``image`` (2-D integer array), keeping the current levels."""
        first = self._frame is None or self._frame.shape != image.shape
        self._frame = image
        if max_value is not None:
            self._max_value = int(max_value)
        if first or not self._levels_set or self.continuous.isChecked():
            levels = percentile_levels(image)
            self._levels_set = True
        else:
            levels = self.hist.getLevels()
        self.image.setImage(image, autoLevels=False, levels=levels)
        saturated = self.show_sat.isChecked() and bool((image >= self._max_value).any())
        if saturated:  # most frames have no saturated pixel: no overlay to build or draw
            self.overlay.setImage(saturation_mask(image, self._max_value), autoLevels=False)
        self.overlay.setVisible(saturated)
        if first:
            self.view.autoRange(padding=0.0)
            h, w = image.shape
            self.roi.setPos([w * 3 // 8, h * 3 // 8])
            self.roi.setSize([max(8, w // 4), max(8, h // 4)])
        now = time.perf_counter()
        if self._last_t:
            dt = now - self._last_t
            self.display_fps = 1.0 / dt if self.display_fps == 0 else (
                0.9 * self.display_fps + 0.1 / max(dt, 1e-6))
        self._last_t = now
        self.frames_shown += 1
        if self.frames_shown % 5 == 1:
            self._update_stats()

    def auto_levels(self) -> None:
        if self._frame is not None:
            lo, hi = percentile_levels(self._frame)
            self.image.setLevels((lo, hi))
            self.hist.setLevels(lo, hi)

    def zoom_one_to_one(self) -> None:
        """One image pixel per screen pixel, centred on the view's centre."""
        if self._frame is None:
            return
        rect = self.view.viewRect()
        size = self.view.size()
        cx, cy = rect.center().x(), rect.center().y()
        w, h = size.width(), size.height()
        self.view.setRange(xRange=(cx - w / 2, cx + w / 2), yRange=(cy - h / 2, cy + h / 2),
                           padding=0.0)

    def roi_stats(self) -> dict[str, float] | None:
        """Mean, std, min and max of the ROI on the newest frame (None before any frame)."""
        if self._frame is None:
            return None
        # the ROI is an axis-aligned rectangle in image pixels: slice, no interpolation
        (x, y), (w, h) = self.roi.pos(), self.roi.size()
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1 = min(self._frame.shape[1], int(round(x + w)))
        y1 = min(self._frame.shape[0], int(round(y + h)))
        if x1 <= x0 or y1 <= y0:
            return None
        r = self._frame[y0:y1, x0:x1].astype(np.float64)
        return {"mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
                "max": float(r.max())}

    def _update_stats(self) -> None:
        s = self.roi_stats()
        if s is not None:
            text = (f"ROI mean {s['mean']:.1f}, std {s['std']:.1f}, min {s['min']:.0f}, "
                    f"max {s['max']:.0f}")
            self.info.setText(f"{text} | display {self.display_fps:.1f} fps")
            self.stats_changed.emit(text)
