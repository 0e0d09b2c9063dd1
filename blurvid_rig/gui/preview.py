"""Live reconstruction preview: the newest coded frame, reconstructed on a worker thread, shown as a
looping playback and a strip, with its latency, rate and device.

Frames are handed over through :class:`recon.engine.LivePreview`, which keeps only the newest
one: when reconstruction is slower than the camera, frames are skipped, never queued, so capture
is never slowed down.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from recon.classical_engine import ClassicalEngine
from recon.engine import LearnedEngine, LivePreview, shipped_models

METHODS = ("auto", "classical", "learned")


def choose_engine(method: str, bits: tuple[int, ...]):
    """The engine for ``method``: ``auto`` takes a shipped learned video model whose code family
    holds ``bits``, else the classical one (its name says where its motion comes from). Returns
    ``(engine, why)``."""
    if method in ("auto", "learned"):
        models = shipped_models()
        if models:
            from recon.code_family import is_in_family

            ok, reason = is_in_family(bits)
            if ok or method == "learned":
                return LearnedEngine(models[0]), f"learned model {models[0]}"
            eng = ClassicalEngine()
            return eng, f"{eng.name}: {reason}"
        if method == "learned":
            raise ValueError("No learned video model is shipped yet; choose classical.")
        eng = ClassicalEngine()
        return eng, f"{eng.name} (no learned video model shipped)"
    eng = ClassicalEngine()
    return eng, eng.name


def strip_image(frames: np.ndarray, gap: int = 2) -> np.ndarray:
    """[T, H, W] -> one [H, T*W + (T-1)*gap] row of frames separated by NaN-free dark gaps.

    >>> strip_image(np.ones((3, 2, 2))).shape
    (2, 10)
    """
    t, h, w = frames.shape
    out = np.zeros((h, t * w + (t - 1) * gap), dtype=np.float32)
    for i in range(t):
        out[:, i * (w + gap): i * (w + gap) + w] = frames[i]
    return out


def motion_segments(field: np.ndarray, tile_px: int, min_px: float = 0.75) -> np.ndarray:
    """Pairs of points ``(2 n, 2)`` (x, y): each tile's path over the exposure, from its centre
    minus half its velocity to its centre plus half; tiles moving less than ``min_px`` are left
    out.

    >>> motion_segments(np.array([[[4.0]], [[0.0]]]), 8).tolist()
    [[2.0, 4.0], [6.0, 4.0]]
    """
    _, th, tw = field.shape
    ys, xs = np.mgrid[0:th, 0:tw]
    cx, cy = (xs + 0.5) * tile_px, (ys + 0.5) * tile_px
    vx, vy = field[0], field[1]
    keep = np.hypot(vx, vy) >= min_px
    start = np.stack([cx - vx / 2, cy - vy / 2], -1)[keep]
    end = np.stack([cx + vx / 2, cy + vy / 2], -1)[keep]
    out = np.empty((2 * len(start), 2), dtype=np.float64)
    out[0::2], out[1::2] = start, end
    return out


class PreviewPanel(QWidget):
    """The preview: call :meth:`submit` with new coded frames and :meth:`poll` on a timer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.enabled = QCheckBox("Live reconstruction")
        self.enabled.toggled.connect(self._toggled)
        self.method = QComboBox()
        self.method.addItems(METHODS)
        self.n_frames = QSpinBox()
        self.n_frames.setRange(2, 64)
        self.n_frames.setValue(8)
        self.label = QLabel("off")
        self.label.setWordWrap(True)
        self.graphics = pg.GraphicsLayoutWidget()
        self.play_view = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.play_item = pg.ImageItem(axisOrder="row-major")
        self.play_view.addItem(self.play_item)
        # the motion field: one segment per tile along its path over the exposure, a dot at the end
        self.show_motion = QCheckBox("motion")
        self.show_motion.setChecked(True)
        self.show_motion.setToolTip("Overlay the estimated motion: each tile's path over the "
                                    "exposure, a dot where it ends")
        self.show_motion.toggled.connect(self._motion_visible)
        self.motion_item = pg.PlotCurveItem(pen=pg.mkPen((0, 230, 255), width=2), connect="pairs")
        self.motion_heads = pg.ScatterPlotItem(size=5, brush=pg.mkBrush(0, 230, 255),
                                               pen=None)
        self.play_view.addItem(self.motion_item)
        self.play_view.addItem(self.motion_heads)
        self.graphics.nextRow()
        self.strip_view = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.strip_item = pg.ImageItem(axisOrder="row-major")
        self.strip_view.addItem(self.strip_item)
        bar = QHBoxLayout()
        for w in (self.enabled, QLabel("method"), self.method, QLabel("frames"), self.n_frames,
                  self.show_motion):
            bar.addWidget(w)
        bar.addStretch(1)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.label)
        lay.addWidget(self.graphics, 1)
        self.preview: LivePreview | None = None
        self.why = ""
        self.results = 0
        self._last_index = -1
        self._frames: np.ndarray | None = None
        self._play_i = 0
        self._times: list[float] = []
        self.play_timer = QTimer(self)
        self.play_timer.timeout.connect(self._next_play_frame)
        self.play_timer.start(80)  # ~12 frames/s playback loop
        self._bits: tuple[int, ...] | None = None
        self._n = 0
        self._closing: list[threading.Thread] = []

    # -- API -------------------------------------------------------------------------------------
    def submit(self, image: np.ndarray, max_value: int, bits: tuple[int, ...]) -> None:
        """Offer a new coded frame (only the newest waiting one is kept)."""
        if not self.enabled.isChecked():
            return
        if self.preview is None or bits != self._bits or self.n_frames.value() != self._n:
            self._start(bits)
            if self.preview is None:
                return
        y = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / float(max_value))
        self.preview.submit(y, bits)

    def poll(self) -> None:
        """Show a new result if there is one, and report errors."""
        p = self.preview
        if p is None:
            return
        if p.error is not None:
            self.label.setText(f"reconstruction failed: {p.error}")
            self._stop()
            self.enabled.setChecked(False)
            return
        r = p.latest()
        if r is None or r.source_index == self._last_index:
            return
        self._last_index = r.source_index
        now = time.perf_counter()
        self._times = [t for t in self._times if now - t < 5.0] + [now]
        rate = (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-6)
        frames = r.frames.numpy()
        self._frames = frames
        self.results += 1
        lo, hi = float(np.percentile(frames, 0.5)), float(np.percentile(frames, 99.5))
        self.strip_item.setImage(strip_image(frames), autoLevels=False, levels=(lo, hi))
        self.play_item.setLevels((lo, hi))
        if self.results == 1:
            self.play_item.setImage(frames[0], autoLevels=False, levels=(lo, hi))
            self.play_view.autoRange(padding=0.0)
            self.strip_view.autoRange(padding=0.0)
        self._draw_motion(r.motion, r.motion_tile_px)
        dev = "GPU" if r.device.startswith("cuda") else "CPU"
        pace = (f"{rate:.2f} results/s" if len(self._times) >= 2 else
                "first result in the last 5 s")
        slow = (" (slow on the CPU at this size: a smaller frame or ROI is faster)"
                if r.latency_s > 1.0 and dev == "CPU" else "")
        self.label.setText(
            f"{self.why}: {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}, "
            f"latency {r.latency_s * 1e3:.0f} ms on the {dev} ({r.device}){slow}; last result "
            f"at {time.strftime('%H:%M:%S')}, {pace}, {p.skipped} frames skipped"
        )

    def close_preview(self) -> None:
        """Stop the worker and wait for it (at most one reconstruction): no thread may still be
        inside torch when the interpreter exits."""
        p, self.preview = self.preview, None
        if p is not None:
            p.close()
        for t in self._closing:
            t.join(timeout=30)
        self._closing.clear()

    # -- internals -------------------------------------------------------------------------------
    def _start(self, bits: tuple[int, ...]) -> None:
        self._stop()
        try:
            engine, self.why = choose_engine(self.method.currentText(), bits)
        except ValueError as e:
            self.label.setText(str(e))
            self.enabled.setChecked(False)
            return
        self._bits, self._n = bits, self.n_frames.value()
        self.preview = LivePreview(engine, n_frames=self._n)
        self.label.setText(f"{self.why}: waiting for a frame")

    def _stop(self) -> None:
        if self.preview is not None:
            # its worker may be mid-reconstruction: let it finish off the GUI thread
            t = threading.Thread(target=self.preview.close, name="preview-close", daemon=True)
            t.start()
            self._closing = [c for c in self._closing if c.is_alive()] + [t]
            self.preview = None
        self._last_index = -1

    def _draw_motion(self, field: torch.Tensor | None, tile_px: int | None) -> None:
        """Segments from each tile centre - v/2 to centre + v/2 (the tile's path), dot at the end;
        tiles that stand still draw nothing."""
        if field is None or not tile_px:
            self.motion_item.setData([], [])
            self.motion_heads.setData([], [])
            return
        segs = motion_segments(field.numpy(), int(tile_px))
        self.motion_item.setData(segs[:, 0], segs[:, 1])
        self.motion_heads.setData(segs[1::2, 0], segs[1::2, 1])

    def _motion_visible(self, on: bool) -> None:
        self.motion_item.setVisible(on)
        self.motion_heads.setVisible(on)

    def _toggled(self, on: bool) -> None:
        if not on:
            self._stop()
            self.label.setText("off")

    def _next_play_frame(self) -> None:
        if self._frames is None or not self.isVisible():
            return
        self._play_i = (self._play_i + 1) % self._frames.shape[0]
        self.play_item.setImage(self._frames[self._play_i], autoLevels=False)
