"""Files: open a capture, browse its frames and metadata, reconstruct it, play and export the
result; reconstruct many captures at once with progress.

Reconstruction runs on a worker of its own (never on the GUI thread, never behind device calls);
progress arrives through a queued signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from blurvid_rig.gui.tasks import TaskRunner

EXPORTS = ("mp4", "gif", "png")


class _Progress(QObject):
    changed = Signal(str, int, int)  # what, done, total


class MetadataTree(QTreeWidget):
    """A capture's description as a two-column table (field, value) instead of a text dump.

    Each ``  field: value`` line of :func:`~blurvid_rig.files.describe.describe_file` is a row; a
    value with several comma-separated parts gets them as children, so long lines fold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setColumnCount(2)
        self.setHeaderLabels(["field", "value"])
        self.setWordWrap(True)
        self.setUniformRowHeights(False)
        self._text = ""

    def set_description(self, text: str) -> None:
        self.clear()
        self._text = text
        for line in text.splitlines():
            if not line.strip():
                continue
            key, sep, value = line.strip().partition(": ")
            if not sep:
                # "started X, ended Y", "schema 1.0, uuid U": the first word names the field
                key, _, value = line.strip().partition(" ")
            item = QTreeWidgetItem([key, value])
            item.setToolTip(1, value)
            parts = [p.strip() for p in value.split(", ")] if len(value) > 60 else []
            if len(parts) > 1:
                item.setText(1, parts[0] + " ...")
                for part in parts:
                    item.addChild(QTreeWidgetItem(["", part]))
            self.addTopLevelItem(item)
        self.resizeColumnToContents(0)
        self.setColumnWidth(0, min(self.columnWidth(0), 140))  # the values get the room

    def toPlainText(self) -> str:  # noqa: N802 (the QPlainTextEdit name it replaces)
        """The description as text (what ``blurvid-rig info`` prints)."""
        return self._text


def read_capture(path: Path) -> tuple[str, list[np.ndarray]]:
    """The capture's description (as ``blurvid-rig info`` prints it) and its frames."""
    from blurvid_rig.files.capture import CaptureFile
    from blurvid_rig.files.describe import describe_file

    text = describe_file(path)
    with CaptureFile.open(path) as f:
        frames = [np.array(x) for x in f.frames()]
    return text, frames


def read_video(path: Path) -> np.ndarray:
    """All recovered videos of a reconstruction file, ``[N, T, H, W]``."""
    from blurvid_rig.files.reconstruction import ReconFile

    with ReconFile.open(path) as f:
        return np.asarray(f.video)


class FilesPanel(QWidget):
    """Browse, reconstruct and export capture files."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tasks = TaskRunner(self)
        self.progress_signal = _Progress()
        self.progress_signal.changed.connect(self._on_progress)
        self.open_btn = QPushButton("Open capture...")
        self.open_btn.clicked.connect(self._choose)
        self.method = QComboBox()
        self.method.addItems(["auto", "classical", "learned"])
        self.recon_btn = QPushButton("Reconstruct")
        self.recon_btn.clicked.connect(self.reconstruct)
        self.export_boxes = {fmt: QCheckBox(fmt.upper()) for fmt in EXPORTS}
        self.export_boxes["mp4"].setChecked(True)
        self.batch_btn = QPushButton("Batch reconstruct...")
        self.batch_btn.clicked.connect(self._choose_batch)
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self.status = QLabel("no file open")
        self.status.setWordWrap(True)
        self.meta = MetadataTree()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.valueChanged.connect(self._show_index)
        self.graphics = pg.GraphicsLayoutWidget()
        self.coded_view = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.coded_item = pg.ImageItem(axisOrder="row-major")
        self.coded_view.addItem(self.coded_item)
        self.video_view = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.video_item = pg.ImageItem(axisOrder="row-major")
        self.video_view.addItem(self.video_item)

        row = QHBoxLayout()  # two rows: in one, the window did not fit a 1366 px screen
        for w in (self.open_btn, self.batch_btn, QLabel("method"), self.method):
            row.addWidget(w)
        row.addStretch(1)
        row2 = QHBoxLayout()
        for w in (self.recon_btn, QLabel("export"), *self.export_boxes.values()):
            row2.addWidget(w)
        row2.addStretch(1)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.addWidget(self.graphics, 1)
        lv.addWidget(self.slider)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.meta)
        split.setStretchFactor(0, 3)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addLayout(row2)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        lay.addWidget(split, 1)

        self.path: Path | None = None
        self.frames: list[np.ndarray] = []
        self.video: np.ndarray | None = None  # [N, T, H, W]
        self.recon_path: Path | None = None
        self.exports: list[Path] = []
        self.batch_outcomes: list = []
        self._t = 0
        self._levels: dict[int, tuple[float, float]] = {}  # display levels per clip
        self.play = QTimer(self)
        self.play.timeout.connect(self._next_video_frame)
        self.play.start(100)
        self._update_buttons()

    # -- API (also used by tests) ----------------------------------------------------------------
    def open_file(self, path: str | Path) -> None:
        """Load a capture in the background; metadata and frames appear when read."""
        path = Path(path)
        self.status.setText(f"reading {path.name}...")
        self.tasks.run(lambda: read_capture(path), lambda r: self._opened(path, r),
                       lambda msg: self._failed(f"cannot open {path.name}: {msg}"))  # fmt: skip

    def reconstruct(self) -> None:
        if self.path is None or self.tasks.busy:
            return
        from blurvid_rig.batch import reconstruct_capture

        path, method = self.path, self.method.currentText()
        exports = [f for f, box in self.export_boxes.items() if box.isChecked()]
        sig = self.progress_signal

        def work():
            out = reconstruct_capture(path, method=method, exports=exports, overwrite=True,
                                      progress=lambda d, t: sig.changed.emit(path.name, d, t))
            if out.error:
                raise RuntimeError(out.error)
            return out, read_video(out.output)

        self.status.setText(f"reconstructing {path.name} ({method})...")
        self.bar.setVisible(True)
        self.tasks.run(work, self._reconstructed, self._failed)
        self._update_buttons()

    def batch(self, paths: list[Path], method: str | None = None) -> None:
        """Reconstruct many captures; a failure is listed and the others go on."""
        from blurvid_rig.batch import ReconOutcome, reconstruct_capture

        method = method or self.method.currentText()
        exports = [f for f, box in self.export_boxes.items() if box.isChecked()]
        sig = self.progress_signal

        def work():
            outcomes = []
            for i, p in enumerate(paths):
                sig.changed.emit(f"file {i + 1} of {len(paths)}: {p.name}", i, len(paths))
                try:
                    outcomes.append(reconstruct_capture(p, method=method, exports=exports,
                                                        overwrite=True))  # fmt: skip
                except Exception as e:  # one bad file never stops the batch
                    outcomes.append(ReconOutcome(source=p, error=str(e)))
            sig.changed.emit("done", len(paths), len(paths))
            return outcomes

        self.bar.setVisible(True)
        self.status.setText(f"batch of {len(paths)} captures...")
        self.tasks.run(work, self._batch_done, self._failed)
        self._update_buttons()

    # -- callbacks -------------------------------------------------------------------------------
    def _opened(self, path: Path, result: tuple[str, list[np.ndarray]]) -> None:
        text, frames = result
        self.path, self.frames, self.video, self.recon_path = path, frames, None, None
        self.meta.set_description(text)
        self.slider.setRange(0, max(0, len(frames) - 1))
        self.slider.setValue(0)
        self._show_index(0)
        self.coded_view.autoRange(padding=0.0)
        self.video_item.clear()
        self.status.setText(f"{path.name}: {len(frames)} coded frames")
        self._update_buttons()

    def _reconstructed(self, result) -> None:
        outcome, video = result
        self.bar.setVisible(False)
        self.recon_path, self.video, self.exports = outcome.output, video, list(outcome.exports)
        self._levels.clear()
        self._show_index(self.slider.value())
        # draw the first frame before fitting the view: fitting an empty item zoomed onto a few
        # pixels (the video was a tiny grey box in a corner)
        self._t = -1
        self._next_video_frame(force=True)
        self.video_view.autoRange(padding=0.0)
        wrote = ", ".join(p.name for p in [outcome.output, *outcome.exports])
        self.status.setText(f"reconstructed {outcome.n_frames} frames in {outcome.seconds:.1f} s; "
                            f"wrote {wrote}")  # fmt: skip
        self._update_buttons()

    def _batch_done(self, outcomes) -> None:
        self.bar.setVisible(False)
        self.batch_outcomes = outcomes
        bad = [o for o in outcomes if o.error]
        text = f"batch: {len(outcomes) - len(bad)} of {len(outcomes)} reconstructed"
        if bad:
            text += "; failed: " + "; ".join(f"{o.source.name}: {o.error}" for o in bad)
        self.status.setText(text)
        self._update_buttons()

    def _failed(self, message: str) -> None:
        self.bar.setVisible(False)
        self.status.setText(message)
        self.status.setStyleSheet("color: #c0392b")
        QTimer.singleShot(8000, lambda: self.status.setStyleSheet(""))
        self._update_buttons()

    def _on_progress(self, what: str, done: int, total: int) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        self.bar.setFormat(f"{what}: {done}/{total}")

    # -- display ---------------------------------------------------------------------------------
    def _show_index(self, i: int) -> None:
        if 0 <= i < len(self.frames):
            self.coded_item.setImage(self.frames[i], autoLevels=True)
        self._t = 0

    def _next_video_frame(self, force: bool = False) -> None:
        if self.video is None or not (self.isVisible() or force):
            return
        i = min(self.slider.value(), self.video.shape[0] - 1)
        clip = self.video[i]
        self._t = (self._t + 1) % clip.shape[0]
        if i not in self._levels:  # once per clip: percentiles of every frame cost a core
            lo, hi = float(np.percentile(clip, 0.5)), float(np.percentile(clip, 99.5))
            self._levels[i] = (lo, max(hi, lo + 1e-6))
        self.video_item.setImage(clip[self._t], autoLevels=False, levels=self._levels[i])

    def _update_buttons(self) -> None:
        busy = self.tasks.busy
        self.recon_btn.setEnabled(self.path is not None and not busy)
        self.batch_btn.setEnabled(not busy)
        self.open_btn.setEnabled(not busy)

    def _choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a capture file", "",
                                              "Capture files (*.h5);;All files (*)")  # fmt: skip
        if path:
            self.open_file(path)

    def _choose_batch(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Captures to reconstruct", "",
                                                "Capture files (*.h5)")  # fmt: skip
        if paths:
            self.batch([Path(p) for p in paths])
