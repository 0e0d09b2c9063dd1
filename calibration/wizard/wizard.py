"""QWizard pages running the calibration procedures (see the package docstring)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from calibration import report
from calibration.bench import Bench
from calibration.model import AppliesTo, Calibration
from calibration.procedures.base import Cancelled, Progress, Rig
from calibration.procedures.dmd_mapping import dmd_mapping
from calibration.procedures.geometry import geometry
from calibration.procedures.plan import Plan
from calibration.procedures.sensor import dark_frames, flat_field, photon_transfer
from calibration.procedures.shutter_timing import shutter_timing
from hw.base import Camera, Shutter
from hw.errors import RigError
from hw.types import ShutterCode

#: What each page asks for, in the user's words.
INSTRUCTIONS = {
    "dark": "Put the lens cap on (or block all light from the lens). Dark frames are averaged "
    "at two exposures; hot pixels are found.",
    "flat": "Put a uniform, diffuse light in front of the lens, filling the whole field (an "
    "integrating sphere, or a diffusor on a light panel). Aim for 30-70 % of the range.",
    "photon_transfer": "Keep the uniform light in place. The exposure is swept from almost dark "
    "to past saturation (pairs of frames).",
    "shutter_timing": "Keep a static, bright, uniform target in front of the lens (the flat "
    "light does). Step codes are played while the exposure end moves in microsecond steps.",
    "geometry": "Hold the printed checkerboard in view. For each view, tilt and move it to a new "
    "position, keep it whole and sharp, then press Continue.",
    "dmd_mapping": "Put a matte white card where the scene will be, lit through the DMD. The DMD "
    "shows dot patterns; each dot is found and identified in the camera image.",
}
TITLES = {
    "dark": "Dark frames",
    "flat": "Flat field",
    "photon_transfer": "Photon transfer",
    "shutter_timing": "Shutter timing and effective code",
    "geometry": "Lens geometry",
    "dmd_mapping": "DMD to camera mapping",
}


class _Bridge(QObject):
    """Carries worker-thread events to the GUI thread (queued connections)."""

    progress = Signal(object)
    instruction = Signal(str, bool)  # text, waiting for the user
    finished = Signal(object)
    failed = Signal(str)


class WizardBench:
    """The bench as the wizard runs it: shows each instruction on the page; with a real bench
    (``inner`` None) waits for the user's Continue, except for the first request of a run (the
    user pressed Run after reading the page); a simulated bench (``inner``) sets itself up."""

    def __init__(self, inner: Bench | None = None) -> None:
        self.inner = inner
        self.bridge: _Bridge | None = None
        self._go = threading.Event()
        self._first = True
        self.cancelled = threading.Event()

    def start_run(self, bridge: _Bridge) -> None:
        self.bridge, self._first = bridge, True
        self._go.clear()
        self.cancelled.clear()

    def proceed(self) -> None:
        self._go.set()

    def setup(self, target: str, instruction: str, *, view: int = 0) -> None:
        wait = self.inner is None and not self._first
        self._first = False
        if self.bridge is not None:
            self.bridge.instruction.emit(instruction, wait)
        if self.inner is not None:
            self.inner.setup(target, instruction, view=view)
            return
        while wait and not self._go.wait(0.1):
            if self.cancelled.is_set():
                raise Cancelled("Calibration cancelled while waiting for the bench.")
        self._go.clear()


class StepPage(QWizardPage):
    """One procedure: instruction, Run / Cancel, progress, plot."""

    def __init__(self, wizard: CalibrationWizard, step: str) -> None:
        super().__init__()
        self.w, self.step = wizard, step
        self.result: Any = None
        self.skipped = False
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.setTitle(TITLES[step])
        self.setSubTitle(INSTRUCTIONS[step])
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel step")
        self.continue_button = QPushButton("Continue")
        self.fix_button = QPushButton("")
        self.fix_button.setVisible(False)
        self.fix_button.clicked.connect(self._apply_fix)
        self.skip_button = QPushButton("Skip step")
        self.skip_button.setToolTip("Leave this part out of the calibration")
        self.skip_button.clicked.connect(self.skip)
        self.cancel_button.setEnabled(False)
        self.continue_button.setVisible(False)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.continue_button.clicked.connect(self._continue)
        for b in (self.run_button, self.cancel_button, self.continue_button, self.fix_button,
                  self.skip_button):
            row.addWidget(b)
        row.addStretch(1)
        lay.addLayout(row)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        lay.addWidget(self.bar)
        self.status = QLabel("Not run yet.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.status)
        self.figure = Figure(figsize=(7, 3.2), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        lay.addWidget(self.canvas, 1)
        self.bridge = _Bridge()
        self.bridge.progress.connect(self._on_progress)
        self.bridge.instruction.connect(self._on_instruction)
        self.bridge.finished.connect(self._on_finished)
        self.bridge.failed.connect(self._on_failed)

    # -- state --------------------------------------------------------------------------------
    def isComplete(self) -> bool:
        return (self.result is not None or self.skipped) and not self.running

    def skip(self) -> None:
        if self.running:
            return
        self.skipped, self.result = True, None
        setattr(self.w.calibration, self.step, None)
        self.status.setText("Skipped: this part will not be in the calibration.")
        self.completeChanged.emit()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _procedure(self):
        w, plan, cal = self.w, self.w.plan, self.w.calibration
        flat_exp = plan.flat_exposure_us or plan.exposure_us
        if self.step == "dark":
            exps = plan.dark_exposures_us or (plan.exposure_us / 4, plan.exposure_us)
            return dark_frames(w.rig, exps, plan.n_frames)
        if self.step == "flat":
            return flat_field(w.rig, flat_exp, plan.n_frames, dark=cal.dark)
        if self.step == "photon_transfer":
            return photon_transfer(w.rig, probe_us=flat_exp, dark=cal.dark)
        if self.step == "shutter_timing":
            return shutter_timing(w.rig, chip_us=plan.timing_chip_us,
                                  check_chip_us=plan.check_chip_us, dark=cal.dark)
        if self.step == "dmd_mapping":
            return dmd_mapping(w.rig, w.projector, exposure_us=flat_exp)
        return geometry(w.rig, board=plan.board, n_views=plan.geometry_views,
                        exposure_us=plan.exposure_us)

    # -- running ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.running:
            return
        self.w.read_plan()
        self._cancel.clear()
        self.result, self.skipped = None, False
        self.completeChanged.emit()
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Running...")
        self.w.bench.start_run(self.bridge)
        proc = self._procedure()

        def work() -> None:
            try:
                while True:
                    if self._cancel.is_set():
                        raise Cancelled("Cancelled; nothing of this step was kept.")
                    try:
                        p = next(proc)
                    except StopIteration as stop:
                        self.bridge.finished.emit(stop.value)
                        return
                    self.bridge.progress.emit(p)
            except (RigError, ValueError) as e:
                self.bridge.failed.emit(str(e))
            except Exception as e:  # shown on the page, never lost
                self.bridge.failed.emit(f"{type(e).__name__}: {e}")
            finally:
                proc.close()  # restores camera and shutter

        self._thread = threading.Thread(target=work, name=f"calibrate-{self.step}", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()
        self.w.bench.cancelled.set()

    def wait(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _continue(self) -> None:
        self.continue_button.setVisible(False)
        self.w.bench.proceed()

    def _on_progress(self, p: Progress) -> None:
        self.bar.setValue(round(1000 * p.fraction))
        self.status.setText(p.message)

    def _on_instruction(self, text: str, wait: bool) -> None:
        self.status.setText(text)
        self.continue_button.setVisible(wait)

    def _done(self) -> None:
        self.run_button.setEnabled(True)
        self.run_button.setText("Run again")
        self.cancel_button.setEnabled(False)
        self.continue_button.setVisible(False)

    def _on_finished(self, result: Any) -> None:
        self.wait(1.0)
        self.result = result
        setattr(self.w.calibration, self.step, result)
        self._done()
        self.bar.setValue(1000)
        self.status.setText("Done. " + self.w.part_summary(self.step))
        self.draw()
        self.completeChanged.emit()

    def _on_failed(self, message: str) -> None:
        self.wait(1.0)
        self._done()
        self.status.setText(f"<span style='color:#c00'>{message}</span>")
        # a setting the step needs, which the wizard can apply itself: offer it
        black = self.w.suggested_black_level()
        if self.step == "dark" and "black level" in message and black is not None:
            self.fix_button.setText(f"Set black level {black:g} DN and run again")
            self.fix_button.setVisible(True)
        self.completeChanged.emit()

    def _apply_fix(self) -> None:
        self.fix_button.setVisible(False)
        self.w.set_black_level(self.w.suggested_black_level() or 0.0)
        self.start()

    def draw(self) -> None:
        self.figure.clear()
        r = self.result
        if self.step == "dark":
            report.plot_dark(self.figure.add_subplot(111), r)
        elif self.step == "flat":
            report.plot_flat(self.figure.add_subplot(121), r)
            report.plot_vignetting(self.figure.add_subplot(122), r)
        elif self.step == "photon_transfer":
            report.plot_ptc(self.figure.add_subplot(111), r)
        elif self.step == "shutter_timing":
            report.plot_timing(self.figure.add_subplot(121), r)
            code = self.w.code
            if code is None:
                report.plot_effective_code(self.figure.add_subplot(122), r)
            else:  # the code the rig has loaded, at its chip duration
                report.plot_effective_code(self.figure.add_subplot(122), r, bits=code.bits,
                                           chip_us=code.chip_us)
        elif self.step == "dmd_mapping":
            report.plot_dmd_mapping(self.figure.add_subplot(111), r)
        else:
            report.plot_geometry(self.figure.add_subplot(111), r)
        self.canvas.draw_idle()

    def validatePage(self) -> bool:
        return not self.running


class PlanPage(QWizardPage):
    """Exposure and counts of the calibration, and which rig it is for."""

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__()
        self.setTitle("Calibration")
        self.setSubTitle(
            "The calibration is made for the camera settings below (gain, ROI, pixel format, "
            "black level as the camera holds them). Set the exposure of your captures."
        )
        form = QFormLayout(self)
        p = wizard.plan
        self.exposure = QDoubleSpinBox(decimals=0, maximum=10_000_000, minimum=10)
        self.exposure.setValue(p.exposure_us)
        self.exposure.setSuffix(" us")
        self.flat_exposure = QDoubleSpinBox(decimals=0, maximum=10_000_000, minimum=0)
        self.flat_exposure.setValue(p.flat_exposure_us or 0)
        self.flat_exposure.setSuffix(" us")
        self.flat_exposure.setSpecialValueText("same as captures")
        self.frames = QSpinBox(minimum=2, maximum=256, value=p.n_frames)
        self.views = QSpinBox(minimum=4, maximum=50, value=p.geometry_views)
        self.name = QLineEdit(wizard.rig_info.get("name", ""))
        form.addRow("Capture exposure", self.exposure)
        form.addRow("Flat / photon-transfer exposure", self.flat_exposure)
        form.addRow("Frames averaged", self.frames)
        form.addRow("Checkerboard views", self.views)
        form.addRow("Rig name", self.name)
        s = wizard.base
        form.addRow("Camera", QLabel(
            f"{wizard.rig_info.get('camera', '')}: gain {s.gain_db:g} dB, {s.pixel_format}, "
            f"black level {s.black_level_dn:g} DN"))


class SummaryPage(QWizardPage):
    """What was measured; where the file and the report go."""

    def __init__(self, wizard: CalibrationWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Summary")
        self.setSubTitle("Finish saves the calibration file and its one-page report; the rig "
                         "window then uses it for every capture.")
        lay = QVBoxLayout(self)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setStyleSheet("font-family: monospace")
        lay.addWidget(self.text, 1)
        row = QHBoxLayout()
        self.path = QLineEdit(str(wizard.out_path))
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(QLabel("Save to"))
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        lay.addLayout(row)
        self.error = QLabel("")
        self.error.setStyleSheet("color:#c00")
        lay.addWidget(self.error)

    def initializePage(self) -> None:
        self.text.setPlainText("\n".join(report.summary_lines(self.w.calibration, self.w.truth)))

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save calibration", self.path.text(),
                                              "Calibration (*.cal.h5 *.h5)")
        if path:
            self.path.setText(path)

    def validatePage(self) -> bool:
        try:
            self.w.save(Path(self.path.text()))
        except (RigError, OSError, ValueError) as e:
            self.error.setText(str(e))
            return False
        return True


class CalibrationWizard(QWizard):
    """The wizard; ``calibration`` holds the results so far, ``saved_path`` the file at the end.

    Args:
        camera, shutter: open devices (the wizard puts them back as they were after each step).
        bench: a simulated bench (steps set themselves up) or None (a person follows the pages).
        plan: steps and exposures.
        rig_info: rig name, camera and shutter identity, stored in the calibration.
        out_path: default file to save to.
        truth: true values to show in the summary (a simulated rig).
        projector: the DMD as projector (e.g.
            :class:`~calibration.procedures.dmd_mapping.DmdProjector`); with one, a DMD-to-camera
            mapping page is added.
        code: the exposure code the rig has loaded; the shutter-timing page plots its effective
            code (else the 8-chip reference code).
    """

    def __init__(
        self,
        camera: Camera,
        shutter: Shutter,
        bench: Bench | None = None,
        plan: Plan | None = None,
        *,
        rig_info: dict[str, str] | None = None,
        out_path: Path | None = None,
        truth: dict[str, float] | None = None,
        parent: QWidget | None = None,
        on_saved: Callable[[Calibration, Path], None] | None = None,
        projector: Any = None,
        code: ShutterCode | None = None,
    ) -> None:
        super().__init__(parent)
        self.code = code
        self.setWindowTitle("blurvid-rig calibration")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.plan = plan or Plan()
        self.rig_info = dict(rig_info or {})
        self.truth = truth
        self.on_saved = on_saved
        #: the DMD as projector (the dmd_mapping page appears only with one)
        self.projector = projector
        self.out_path = out_path or Path("calibrations") / (
            f"{datetime.now():%y%m%d_%H%M%S}_calibration.cal.h5"
        )
        self.base = camera.settings
        self.bench = WizardBench(bench)
        self.rig = Rig(camera, shutter, self.bench, base=self.base)
        info = camera.info
        roi = self.base.roi
        shape = (roi.height or info.sensor_height, roi.width or info.sensor_width)
        self._shape = shape
        self.calibration = Calibration(
            applies_to=AppliesTo.from_settings(self.base.replace(
                exposure_us=self.plan.exposure_us), shape), rig=self.rig_info)
        self.saved_path: Path | None = None
        self._camera = camera
        self.plan_page = PlanPage(self)
        self.addPage(self.plan_page)
        steps = list(self.plan.steps)
        if projector is not None and "dmd_mapping" not in steps:
            steps.append("dmd_mapping")
        self.step_pages = [StepPage(self, s) for s in steps
                           if s != "dmd_mapping" or projector is not None]
        for page in self.step_pages:
            self.addPage(page)
        self.summary_page = SummaryPage(self)
        self.addPage(self.summary_page)
        self.resize(820, 620)

    def read_plan(self) -> None:
        """Take the plan page's values (before each step runs)."""
        p = self.plan_page
        self.plan.exposure_us = float(p.exposure.value())
        self.plan.flat_exposure_us = float(p.flat_exposure.value()) or None
        self.plan.n_frames = int(p.frames.value())
        self.plan.geometry_views = int(p.views.value())
        if p.name.text():
            self.rig_info["name"] = p.name.text()
        self.calibration.rig = dict(self.rig_info)
        self.calibration.applies_to = AppliesTo.from_settings(
            self.base.replace(exposure_us=self.plan.exposure_us), self._shape)

    def suggested_black_level(self) -> float | None:
        """The black level to offer when the dark step finds the dark noise clipped at 0 DN
        (None when the camera already holds at least that much)."""
        want = self.base.calibration_black_level_dn
        return want if self.base.black_level_dn < want else None

    def set_black_level(self, dn: float) -> None:
        """Apply a black level to the camera and make it the calibration's settings (every step
        puts the camera back to these settings, and the calibration applies to them)."""
        self.base = self.base.replace(black_level_dn=float(dn))
        self._camera.apply_settings(self.base)
        self.base = self._camera.settings  # what the camera holds after rounding
        self.rig.base = self.base
        self.calibration.applies_to = AppliesTo.from_settings(
            self.base.replace(exposure_us=self.plan.exposure_us), self._shape)

    def part_summary(self, step: str) -> str:
        lines = report.summary_lines(
            Calibration(applies_to=self.calibration.applies_to,
                        **{step: getattr(self.calibration, step)}), self.truth)
        return "; ".join(" ".join(line.split()) for line in lines[3:])

    def save(self, path: Path) -> Path:
        if not self.calibration.parts:
            raise RigError("Nothing was measured yet; run at least one step.")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.calibration.save(path)
        report.write_report(self.calibration, path.with_name(
            path.name.removesuffix(".h5").removesuffix(".cal") + ".report.png"), self.truth)
        self.saved_path = path
        if self.on_saved is not None:
            self.on_saved(self.calibration, path)
        return path

    @property
    def running(self) -> bool:
        """Whether a step's worker still drives the devices."""
        return any(page.running for page in self.step_pages)

    def reject(self) -> None:
        """Cancel a running step; it stops at its next frame (see :attr:`running`)."""
        for page in self.step_pages:
            page.cancel()
        for page in self.step_pages:
            page.wait(1.0)
        super().reject()
