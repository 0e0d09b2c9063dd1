"""Code designer: edit or pick an exposure code, see it, its spectrum and its metrics, upload it.

The spectrum is |DFT| of the zero-padded code ``c / K`` (the convention of :mod:`recon.codes`),
with its minimum marked: a code whose spectrum stays away from zero keeps the blur invertible.
"""

from __future__ import annotations

import re

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from hw.types import ShutterCode
from recon.codes import (
    DEFAULT_PAD_FACTOR,
    KNOWN_CODES,
    code_metrics,
    invertibility_warning,
    search_codes,
)


def code_spectrum(bits: tuple[int, ...], pad_factor: int = DEFAULT_PAD_FACTOR):
    """Normalised frequencies (cycles per chip) and |DFT| of the zero-padded code ``c / K``.

    >>> f, m = code_spectrum((1, 0, 1, 1))
    >>> round(float(m[0]), 3), len(f) == len(m)
    (0.75, True)
    """
    c = np.asarray(bits, dtype=np.float64) / len(bits)
    n = pad_factor * len(bits)
    mag = np.abs(np.fft.rfft(c, n=n))
    return np.arange(mag.size) / n, mag


class CodeDesigner(QWidget):
    """Editor of the exposure code.

    Signals:
        code_changed(object): the edited :class:`~hw.types.ShutterCode`, or ``None`` while the
            text is not a valid code (the reason is shown under the editor).
        upload_requested(object): the user asked to load the code into the controller.
    """

    code_changed = Signal(object)
    upload_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bits_edit = QLineEdit(KNOWN_CODES["bdinr8"])
        self.bits_edit.setPlaceholderText("chips, e.g. 11100101")
        self.chip_us = QDoubleSpinBox()
        self.chip_us.setRange(1.0, 1_000_000.0)
        self.chip_us.setDecimals(1)
        self.chip_us.setSuffix(" us")
        self.chip_us.setValue(1000.0)
        self.known = QComboBox()
        self.known.addItem("known codes...", "")
        for name, bits in KNOWN_CODES.items():
            self.known.addItem(f"{name}  ({len(bits)} chips)", bits)
        self.known.activated.connect(self._pick_known)
        self.search_chips = QSpinBox()
        self.search_chips.setRange(4, 20)  # exhaustive up to 20 chips: well under a second
        self.search_chips.setValue(8)
        self.search_btn = QPushButton("Search best min |DFT|")
        self.search_btn.clicked.connect(self._search)
        self.upload_btn = QPushButton("Upload to shutter")
        self.upload_btn.clicked.connect(self._upload)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #c0392b")
        self.error.setWordWrap(True)
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.echo = QLabel("not uploaded")
        self.echo.setWordWrap(True)

        self.code_plot = pg.PlotWidget(title="code")
        self.code_plot.setMaximumHeight(120)
        self.code_plot.setYRange(-0.1, 1.1)
        self.code_curve = self.code_plot.plot(stepMode="center", fillLevel=0,
                                              brush=(80, 160, 255, 90), pen="w")  # fmt: skip
        self.spec_plot = pg.PlotWidget(title="|DFT| of the code")
        self.spec_plot.setMaximumHeight(160)
        self.spec_plot.setLabel("bottom", "frequency (cycles per chip)")
        self.spec_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.spec_curve = self.spec_plot.plot(pen="c")
        self.spec_min = self.spec_plot.plot(pen=None, symbol="o", symbolBrush="r", symbolSize=8)

        form = QFormLayout()
        form.addRow("chips", self.bits_edit)
        form.addRow("chip duration", self.chip_us)
        form.addRow("pick", self.known)
        row = QHBoxLayout()
        row.addWidget(QLabel("search"))
        row.addWidget(self.search_chips)
        row.addWidget(self.search_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(row)
        lay.addWidget(self.error)
        lay.addWidget(self.code_plot)
        lay.addWidget(self.spec_plot)
        lay.addWidget(self.metrics)
        lay.addWidget(self.upload_btn)
        lay.addWidget(self.echo)
        self.bits_edit.textChanged.connect(self._refresh)
        self.chip_us.valueChanged.connect(self._refresh)
        self._code: ShutterCode | None = None
        self._refresh()

    @property
    def code(self) -> ShutterCode | None:
        return self._code

    def set_code(self, code: ShutterCode) -> None:
        self.bits_edit.setText("".join(map(str, code.bits)))
        self.chip_us.setValue(code.chip_us)

    def set_echo(self, text: str, ok: bool) -> None:
        """Show what the controller echoed (green when verified, red for a mismatch/error)."""
        # a long code may break every 16 chips (zero-width spaces): an unbroken 52-chip string
        # set the dock's minimum width
        self.echo.setText(re.sub(r"[01]{17,}", lambda m: "\u200b".join(
            m.group(0)[i:i + 16] for i in range(0, len(m.group(0)), 16)), text))
        self.echo.setStyleSheet("color: #27ae60" if ok else "color: #c0392b")

    # -- internals -------------------------------------------------------------------------------
    def _refresh(self) -> None:
        text = self.bits_edit.text().strip()
        try:
            code = ShutterCode.parse(text, self.chip_us.value())
        except (ValueError, TypeError) as e:
            self._code = None
            self.error.setText(str(e))
            self.metrics.setText("")
            self.upload_btn.setEnabled(False)
            self.code_changed.emit(None)
            return
        self._code = code
        self.error.setText(invertibility_warning(code.bits) or "")
        self.upload_btn.setEnabled(True)
        bits = code.bits
        self.code_curve.setData(np.arange(len(bits) + 1), np.asarray(bits, dtype=float))
        f, mag = code_spectrum(bits)
        self.spec_curve.setData(f, mag)
        i = int(np.argmin(mag))
        self.spec_min.setData([f[i]], [mag[i]])
        m = code_metrics(bits)
        self.metrics.setText(
            f"{m.n_chips} chips, {m.n_open} open ({m.light_fraction:.0%} light), exposure "
            f"{code.period_us / 1000:.3g} ms; min |DFT| {m.min_dft:.4f}, flatness "
            f"{m.spectral_flatness:.3f}, noise gain {m.noise_amplification:.2f}, "
            f"time-reversal asymmetry {m.reversal_asymmetry:.2f}"
        )
        self.echo.setText("not uploaded")
        self.echo.setStyleSheet("")
        self.code_changed.emit(code)

    def _pick_known(self, index: int) -> None:
        bits = self.known.itemData(index)
        if bits:
            self.bits_edit.setText(bits)

    def _search(self) -> None:
        best = search_codes(self.search_chips.value(), objective="min_dft", top=1,
                            require_asymmetric=True)  # fmt: skip
        if best:
            self.bits_edit.setText("".join(str(int(b)) for b in best[0][0]))

    def _upload(self) -> None:
        if self._code is not None:
            self.upload_requested.emit(self._code)
