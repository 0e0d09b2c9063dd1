"""The rig window: devices, code designer, live view, capture and a status bar.

It drives the same :class:`~blurvid_rig.session.RigSession` as the command line. Device and file
calls run on a :class:`~blurvid_rig.gui.tasks.TaskRunner` worker; the session's state callbacks
arrive from its threads and are turned into a Qt signal; frames are polled from the session's
newest-frame slot on a timer, so the display skips frames instead of slowing acquisition.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from blurvid_rig.config import RigConfig, load_config, open_devices, save_config
from blurvid_rig.gui.calibration_panel import CalibrationPanel
from blurvid_rig.gui.camera_panel import CameraPanel, FeatureTree
from blurvid_rig.gui.code_designer import CodeDesigner
from blurvid_rig.gui.devices_panel import DevicesPanel
from blurvid_rig.gui.files import FilesPanel
from blurvid_rig.gui.live_view import LiveView
from blurvid_rig.gui.preview import PreviewPanel
from blurvid_rig.gui.tasks import TaskRunner
from blurvid_rig.profile import profile_from_capture
from blurvid_rig.session import RigSession, SessionState
from blurvid_rig.writer import CaptureResult
from common.codes import code_string
from hw.types import ShutterCode
from recon.codes import known_code

log = logging.getLogger(__name__)

#: Display refresh (the newest frame is taken at this rate, whatever the camera delivers).
DISPLAY_HZ = 30
CAPTURE_MODES = ("Single frame", "Burst of N", "Continuous")


class StateBridge(QObject):
    """Turns ``RigSession.on_state`` calls (from any thread) into a queued Qt signal."""

    changed = Signal(str, str)

    def __call__(self, state: SessionState, reason: str) -> None:
        self.changed.emit(state.value, reason)


def sim_rig_factory(size: int, **camera_kw: Any) -> Callable[..., tuple[Any, Any]]:
    """A factory of the simulated camera and shutter (``size`` x ``size`` sensor)."""

    def make(stack: contextlib.ExitStack | None = None) -> tuple[Any, Any]:
        from hw.sim.camera import make_sim_rig

        return make_sim_rig(width=size, height=size, **camera_kw)

    return make


class MainWindow(QMainWindow):
    """The rig window.

    Args:
        rig_factory: called with an ``ExitStack`` (closed at disconnect) when the user connects,
            returns ``(camera, shutter)`` (not opened); default: the devices chosen in the
            Devices panel.
        out_dir: default folder of capture files.
    """

    def __init__(self, rig_factory: Callable[..., tuple[Any, Any]] | None = None,
                 out_dir: Path = Path("captures")) -> None:  # fmt: skip
        super().__init__()
        self._out_dir = Path(out_dir)
        self.setWindowTitle("blurvid-rig")
        # 1400x900, or the screen's free area where it is smaller (a 1366x768 laptop)
        screen = QGuiApplication.primaryScreen()
        free = screen.availableGeometry() if screen is not None else None
        self.resize(min(1400, free.width()) if free else 1400,
                    min(900, free.height()) if free else 900)
        self._rig_factory = rig_factory
        self.session: RigSession | None = None
        self.tasks = TaskRunner(self)
        self.bridge = StateBridge()
        self.bridge.changed.connect(self._on_state)
        self.last_result: CaptureResult | None = None
        self.last_error = ""
        self._last_count = 0
        self._count_t = time.perf_counter()
        self.camera_fps = 0.0
        self._shown_count = 0
        self._stack: contextlib.ExitStack | None = None
        self._stat_t = 0.0
        self._trigger_source = "Line1"
        #: the camera settings held after the last configure (read on the worker, kept here)
        self.held_settings = None

        self.live = LiveView()
        self.files = FilesPanel()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.live, "Live")
        self.tabs.addTab(self.files, "Files")
        self.features = FeatureTree()
        self.tabs.addTab(self.features, "Camera features")
        self.setCentralWidget(self.tabs)
        self._menus()
        self.designer = CodeDesigner()
        self.designer.upload_requested.connect(self.upload_code)
        panel = QWidget()
        col = QVBoxLayout(panel)
        col.addWidget(self._devices_box())
        self.camera_panel = CameraPanel()
        self.camera_panel.apply_requested.connect(self.apply_camera)
        col.addWidget(self.camera_panel)
        col.addWidget(self._capture_box())
        self.calibration_panel = CalibrationPanel()
        self.calibration_panel.calibrate_requested.connect(self.open_calibration_wizard)
        self.calibration_panel.changed.connect(self._calibration_changed)
        col.addWidget(self.calibration_panel)
        col.addStretch(1)
        #: the calibration wizard while it is open
        self.wizard = None
        for combo in panel.findChildren(QComboBox):
            # long entries (rig choices, ports) elide instead of widening the whole panel
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(12)
        self._docks(panel)
        self._status_labels()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._poll)
        self.timer.start(int(1000 / DISPLAY_HZ))
        self._update_buttons()

    # -- panels ----------------------------------------------------------------------------------
    def _docks(self, panel: QWidget) -> None:
        """The rig panel (scrolling) on the left, the code designer on the right and the live
        reconstruction at the bottom."""
        scroll = QScrollArea()
        scroll.setWidget(panel)
        scroll.setWidgetResizable(True)
        # the panel fits its width: it scrolls up and down only (it scrolled sideways when a
        # field took focus, hiding the labels)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(panel.minimumSizeHint().width()
                               + scroll.verticalScrollBar().sizeHint().width() + 4)
        dock = QDockWidget("Rig", self)
        dock.setObjectName("rig-dock")
        dock.setWidget(scroll)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        cdock = QDockWidget("Exposure code", self)
        cdock.setObjectName("code-dock")
        cdock.setWidget(self.designer)
        cdock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, cdock)
        self.preview = PreviewPanel()
        pdock = QDockWidget("Live reconstruction", self)
        pdock.setObjectName("preview-dock")
        pdock.setWidget(self.preview)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, pdock)
        self.resizeDocks([pdock], [300], Qt.Orientation.Vertical)  # the live view keeps most

    def _devices_box(self) -> DevicesPanel:
        box = self.devices_panel = DevicesPanel(self.tasks)
        for button, slot in ((box.connect_btn, self.connect_rig),
                             (box.disconnect_btn, self.disconnect_rig),
                             (box.live_btn, self.toggle_live), (box.clear_btn, self.clear_error),
                             (box.load_btn, self._load_profile_dialog),
                             (box.save_btn, self._save_profile_dialog),
                             (box.from_capture_btn, self._from_capture_dialog)):  # fmt: skip
            button.clicked.connect(slot)
        box.error.connect(self._show_error)
        # the buttons and the status line the window drives
        self.connect_btn, self.disconnect_btn = box.connect_btn, box.disconnect_btn
        self.live_btn, self.clear_btn = box.live_btn, box.clear_btn
        self.device_label = box.device_label
        return box

    def _capture_box(self) -> QGroupBox:
        box = QGroupBox("Capture")
        form = QFormLayout(box)
        self.mode = QComboBox()
        self.mode.addItems(CAPTURE_MODES)
        self.burst_n = QSpinBox()
        self.burst_n.setRange(1, 1_000_000)
        self.burst_n.setValue(10)
        self.folder = QLineEdit(str(self._out_dir))
        browse = QPushButton("...")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        frow = QHBoxLayout()
        frow.addWidget(self.folder)
        frow.addWidget(browse)
        self.name = QLineEdit("capture")
        self.name.setToolTip("file name: <yymmdd_HHMMSS>_<name>.h5 in the folder")
        self.record_btn = QPushButton("Record")
        self.record_btn.clicked.connect(self.start_recording)
        self.stop_rec_btn = QPushButton("Stop recording")
        self.stop_rec_btn.clicked.connect(self.stop_recording)
        self.progress = QLabel("")
        self.progress.setWordWrap(True)
        form.addRow("mode", self.mode)
        form.addRow("frames (burst)", self.burst_n)
        form.addRow("folder", frow)
        form.addRow("name", self.name)
        row = QHBoxLayout()
        row.addWidget(self.record_btn)
        row.addWidget(self.stop_rec_btn)
        form.addRow(row)
        form.addRow(self.progress)
        return box

    def _status_labels(self) -> None:
        bar = self.statusBar()
        self.st_state = QLabel("IDLE (not connected)")
        self.st_fps = QLabel("camera - fps")
        self.st_dropped = QLabel("dropped 0")
        self.st_queue = QLabel("writer queue 0")
        self.st_triggers = QLabel("triggers 0")
        self.st_file = QLabel("")
        self.st_error = QLabel("")
        self.st_error.setStyleSheet("color: #c0392b")
        for lab in (self.st_file, self.st_error):
            # a long file name or error is clipped (its tooltip has it whole) rather than
            # widening the window beyond the screen
            lab.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        for w in (self.st_state, self.st_fps, self.st_dropped, self.st_queue, self.st_triggers,
                  self.st_file):  # fmt: skip
            bar.addWidget(w)
        bar.addPermanentWidget(self.st_error, 1)

    # -- actions ---------------------------------------------------------------------------------
    def connect_rig(self) -> None:
        if self.session is not None or self.tasks.busy:
            return
        spec, make = self.devices_panel.spec(), self._rig_factory
        code = self.designer.code
        bridge = self.bridge
        self._trigger_source = spec.trigger_source  # fixed while connected
        configure = self._configure_call(code, self._trigger_source)
        stack = self._stack = contextlib.ExitStack()

        def work() -> tuple[RigSession, Any]:
            try:
                camera, shutter = stack.enter_context(open_devices(spec, make))
                session = RigSession(camera, shutter, on_state=bridge)
                session.open()  # the devices are open: the session takes them over
                from hw.sim import SimCamera

                if isinstance(camera, SimCamera) and camera.settings.black_level_dn == 0:
                    # as a real sensor's offset (and calibrate --sim): dark noise above 0 DN
                    cs = camera.settings
                    camera.apply_settings(cs.replace(
                        black_level_dn=cs.calibration_black_level_dn))
            except BaseException:
                stack.close()
                raise
            try:
                return session, (configure(session) if code is not None else None)
            except Exception as e:
                # the devices stay usable: connected, with the problem shown
                return session, e

        self.device_label.setText("connecting...")
        self.tasks.run(work, self._connected, self._show_error)
        self._update_buttons()

    # -- profiles ------------------------------------------------------------------------------
    def current_profile(self) -> RigConfig:
        code = self.designer.code
        panel = self.camera_panel
        base = self.held_settings  # what the camera held at the last Apply (no device call here)
        from hw.types import CameraSettings

        cam = panel.settings_from(base or CameraSettings()).replace(
            exposure_mode=panel.mode, exposure_us=panel.exposure_us.value())
        return RigConfig(devices=self.devices_panel.spec(),
                         bits=code.as_string() if code else self.designer.bits_edit.text(),
                         chip_us=self.designer.chip_us.value(), camera_settings=cam,
                         folder=self.folder.text(), name=self.name.text())  # fmt: skip

    def apply_profile(self, profile: RigConfig) -> None:
        """Show a profile in the panels (devices apply at the next Connect, settings at Apply)."""
        self.devices_panel.show_spec(profile.devices)
        bits = profile.bits
        if not set(bits) <= {"0", "1"}:  # a known code's name
            bits = code_string(known_code(bits))
        self.designer.bits_edit.setText(bits)
        self.designer.chip_us.setValue(profile.chip_us)
        self.camera_panel.show_settings(profile.camera_settings)
        self.camera_panel.user_edited = True  # the profile's settings are the user's choice
        self.folder.setText(profile.folder)
        self.name.setText(profile.name)

    def load_profile(self, path: Path) -> None:
        try:
            self.apply_profile(load_config(path))
        except Exception as e:
            self._show_error(str(e))
        else:
            self.device_label.setText(f"profile {path.name} loaded; Apply or Connect to use it")

    def save_profile(self, path: Path) -> None:
        try:
            save_config(self.current_profile(), path)
        except Exception as e:
            self._show_error(f"could not save the profile: {e}")
        else:
            self.device_label.setText(f"profile saved to {path}")

    def settings_from_capture(self, path: Path) -> None:
        self.tasks.run(lambda: profile_from_capture(path, self.current_profile()),
                       lambda p: (self.apply_profile(p), self.device_label.setText(
                           f"code and camera settings of {Path(path).name} loaded; Apply to "
                           "use them")), self._show_error)  # fmt: skip

    def _menus(self) -> None:
        """File (open capture, profiles, quit) and Help (about, documentation)."""
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for text, key, slot in (
            ("&Open capture...", QKeySequence.StandardKey.Open, self._open_capture_dialog),
            ("&Load profile...", "Ctrl+L", self._load_profile_dialog),
            ("&Save profile...", QKeySequence.StandardKey.Save, self._save_profile_dialog),
            (None, None, None),
            ("&Quit", QKeySequence.StandardKey.Quit, self.close),
        ):
            if text is None:
                file_menu.addSeparator()
                continue
            act = QAction(text, self)
            act.setShortcut(QKeySequence(key))
            act.triggered.connect(slot)
            file_menu.addAction(act)
        quit_act = file_menu.actions()[-1]
        # Ctrl+Q everywhere, plus the platform's own quit keys when they differ (the same key
        # twice on one action makes Qt call it ambiguous and do nothing)
        keys: dict[str, QKeySequence] = {}
        for k in [QKeySequence("Ctrl+Q"), *QKeySequence.keyBindings(QKeySequence.StandardKey.Quit)]:
            if not k.isEmpty():
                keys.setdefault(k.toString(), k)
        quit_act.setShortcuts(list(keys.values()))
        help_menu = bar.addMenu("&Help")
        docs = QAction("&Documentation", self)
        docs.triggered.connect(self._open_docs)
        about = QAction("&About blurvid-rig", self)
        about.triggered.connect(self._about)
        help_menu.addAction(docs)
        help_menu.addAction(about)

    def _open_capture_dialog(self) -> None:
        self.tabs.setCurrentWidget(self.files)
        self.files._choose()

    def _open_docs(self) -> None:
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        readme = Path(__file__).resolve().parents[2] / "README.md"
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(readme)))

    def about_text(self) -> str:
        from blurvid_rig.files.h5io import creator_version

        return (f"blurvid-rig {creator_version()}: capture, calibration and reconstruction "
                "for a coded-exposure (flutter shutter) high-speed camera rig. Documentation: "
                "README.md and docs/ in the project folder.")

    def _about(self) -> None:
        QMessageBox.about(self, "About blurvid-rig", self.about_text())

    def _load_profile_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a rig profile", "", "TOML (*.toml)")
        if path:
            self.load_profile(Path(path))

    def _save_profile_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the rig profile", "rig.toml",
                                              "TOML (*.toml)")  # fmt: skip
        if path:
            self.save_profile(Path(path))

    def _from_capture_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Settings of a capture file", "",
                                              "Capture files (*.h5)")  # fmt: skip
        if path:
            self.settings_from_capture(Path(path))

    def _configure_call(self, code: ShutterCode | None,
                        trigger_source: str = "Line1") -> Callable[[RigSession], Any]:  # fmt: skip
        """What configuring ``session`` for ``code`` with the camera panel's settings runs on the
        worker: returns ``(camera settings held, feature snapshot)``."""
        panel = self.camera_panel
        mode, exposure_us = panel.mode, panel.timed_exposure_us

        def call(session: RigSession):
            base = session.camera.settings
            settings = panel.settings_from(base) if panel.user_edited else base
            cam = session.configure(code, exposure_mode=mode, exposure_us=exposure_us,
                                    settings=settings, trigger_source=trigger_source)
            return cam, session.camera.node_map_snapshot()

        return call

    def _configured(self, session: RigSession, result: Any) -> None:
        if isinstance(result, Exception):
            msg = str(result)
            self.camera_panel.show_problem(msg)
            self.designer.set_echo(f"not loaded: {msg}", False)
            return
        cam, features = result
        self.held_settings = cam
        self.camera_panel.show_settings(cam)
        self.features.set_features(features)
        self._show_configured(session)
        self._show_calibration_fit()

    def apply_camera(self) -> None:
        """Apply the camera panel (and load the designer's code) while IDLE."""
        session, code = self.session, self.designer.code
        if session is None or code is None:
            self.camera_panel.show_problem("connect the rig and enter a valid code first")
            return
        if session.state != SessionState.IDLE:
            self.camera_panel.show_problem(f"stop live view or recording first (the session is "
                                           f"{session.state.value})")  # fmt: skip
            return
        configure = self._configure_call(code, self._trigger_source)
        self.tasks.run(lambda: configure(session), lambda r: self._configured(session, r),
                       lambda msg: self._configured(session, RuntimeError(msg)))  # fmt: skip

    def _connected(self, result: tuple[RigSession, Any]) -> None:
        session, configured = result
        self.session = session
        session.calibration = self.calibration_panel.calibration
        if configured is not None:
            self._configured(session, configured)
        info, sh = session.camera.info, session.shutter.info
        self.device_label.setText(
            f"camera {info.vendor} {info.model} ({info.serial_number}), "
            f"{info.sensor_width}x{info.sensor_height}; shutter {sh.controller} "
            f"{sh.port or ''} firmware {sh.firmware_version}"
        )
        self._on_state(session.state.value, session.reason)

    # -- calibration -----------------------------------------------------------------------------
    def _calibration_changed(self, cal) -> None:
        if self.session is not None:
            self.session.calibration = cal
        self._show_calibration_fit()

    def _show_calibration_fit(self) -> None:
        s = self.session
        self.calibration_panel.show_problems(s.calibration_problems() if s is not None else [])

    def open_calibration_wizard(self) -> None:
        """The calibration wizard on the connected devices (session idle); a simulated camera
        gets a simulated bench. Saving it makes it the active calibration."""
        s = self.session
        if s is None or s.state != SessionState.IDLE or self.tasks.busy:
            self._show_error("Connect the rig and stop live view before calibrating.")
            return
        from calibration.bench import SimBench
        from calibration.procedures.dmd_mapping import DmdProjector
        from calibration.procedures.plan import Plan
        from calibration.wizard import CalibrationWizard
        from hw.sim import SimCamera

        cam = s.camera
        bench = SimBench(cam) if isinstance(cam, SimCamera) else None
        info = cam.info
        code = s.code
        plan = Plan(exposure_us=code.period_us if code is not None else cam.settings.exposure_us,
                    check_chip_us=(code.chip_us,) if code is not None else (100.0,))
        wiz = CalibrationWizard(
            cam, s.shutter, bench, plan, parent=self,
            rig_info={"name": "", "camera": f"{info.vendor} {info.model} {info.serial_number}",
                      "shutter": s.shutter.info.controller},
            on_saved=lambda cal, path: self.calibration_panel.set_calibration(cal, path),
            projector=DmdProjector(s.shutter) if hasattr(s.shutter, "load_masks") else None,
            code=code or self.designer.code,
        )

        def closed(_result: int) -> None:
            if wiz.running:  # a cancelled step still finishing its frame: wait for it
                QTimer.singleShot(200, lambda: closed(_result))
                return
            if bench is not None:
                bench.close()
            self.wizard = None
            # the procedures put the devices back; configure again so the session's view holds
            session = self.session
            if session is not None and session.code is not None:
                call = self._configure_call(session.code, self._trigger_source)
                self.tasks.run(lambda: call(session), lambda r: self._configured(session, r),
                               self._show_error)

        wiz.finished.connect(closed)
        self.wizard = wiz
        wiz.open()

    def _show_configured(self, session: RigSession) -> None:
        code = session.code
        status = session.shutter_status
        if code is None or status is None:
            return
        ok = status.echo_verified and status.code_sha256 == code.sha256
        verdict = "verified" if ok else "MISMATCH"
        self.designer.set_echo(f"controller holds {code} ({status.code_sha256[:12]}...): echo "
                               f"{verdict}", ok)  # fmt: skip

    def disconnect_rig(self) -> None:
        session = self.session
        if session is None:
            return
        self.session = None
        stack, self._stack = self._stack, None
        self.device_label.setText("disconnecting...")

        def work() -> None:
            try:
                session.close()
            finally:
                if stack is not None:
                    stack.close()

        self.tasks.run(work, lambda _: self._disconnected(), self._show_error)
        self._update_buttons()

    def _disconnected(self) -> None:
        self.device_label.setText("not connected")
        self.st_state.setText("IDLE (not connected)")
        self._update_buttons()

    def upload_code(self, code: ShutterCode) -> None:
        session = self.session
        if session is None:
            self.designer.set_echo("connect the rig first: the code is loaded on connect", False)
            return
        if session.state != SessionState.IDLE:
            self.designer.set_echo(f"stop live view or recording first (the session is "
                                   f"{session.state.value})", False)  # fmt: skip
            return
        self.designer.set_echo("uploading...", True)
        configure = self._configure_call(code, self._trigger_source)
        self.tasks.run(lambda: configure(session), lambda r: self._configured(session, r),
                       lambda msg: self._configured(session, RuntimeError(msg)))  # fmt: skip

    def toggle_live(self) -> None:
        session = self.session
        if session is None:
            return
        if session.state == SessionState.LIVE:
            self.tasks.run(session.stop, None, self._show_error)
        elif session.state == SessionState.IDLE:
            self.tasks.run(session.start_live, None, self._show_error)

    def start_recording(self) -> None:
        session = self.session
        if session is None:
            return
        mode = self.mode.currentText()
        n = {"Single frame": 1, "Burst of N": self.burst_n.value(), "Continuous": 0}[mode]
        folder, name = Path(self.folder.text().strip() or "."), self.name.text().strip()
        self.progress.setText("starting...")

        def work() -> CaptureResult:
            folder.mkdir(parents=True, exist_ok=True)
            session.record(n, folder, name=name or "capture", settings={"gui_mode": mode})
            return session.wait()

        self.tasks.pool.setMaxThreadCount(2)  # the wait must not block stop_recording
        self.tasks.run(work, self._recorded, self._show_error)

    def stop_recording(self) -> None:
        session = self.session
        if session is not None and session.state == SessionState.RECORDING:
            self.tasks.run(session.stop_recording, None, self._show_error)

    def clear_error(self) -> None:
        session = self.session
        if session is not None:
            self.st_error.setText("")
            self.last_error = ""
            self.tasks.run(session.clear_error, None, self._show_error)

    def _recorded(self, result: CaptureResult) -> None:
        self.last_result = result
        st = result.stats
        lost = st.frame_id_gaps + st.trigger_gaps
        text = (f"wrote {result.path} ({st.written} frames"
                + (f", {lost} lost" if lost else "") + ")")
        if result.error:
            text += f"; ended with an error: {result.error}"
            self._show_error(result.error)
        self.progress.setText(text)
        if result.path is not None and st.written:
            self.files.open_file(result.path)  # ready to browse and reconstruct

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Folder for capture files", self.folder.text())
        if d:
            self.folder.setText(d)

    # -- feedback --------------------------------------------------------------------------------
    def _show_error(self, message: str) -> None:
        self.last_error = message
        self.st_error.setText(message)
        self.st_error.setToolTip(message)
        if self.session is None:
            self.device_label.setText("not connected")
        self._update_buttons()

    def _on_state(self, state: str, reason: str) -> None:
        self.st_state.setText(state.upper())
        if state == SessionState.ERROR.value and reason:
            self._show_error(reason)
        self.live_btn.setText("Stop live" if state == SessionState.LIVE.value else "Start live")
        self._update_buttons()

    def _update_buttons(self) -> None:
        s = self.session
        state = s.state if s is not None else None
        connected = s is not None
        self.connect_btn.setEnabled(not connected and not self.tasks.busy)
        self.disconnect_btn.setEnabled(connected)
        self.live_btn.setEnabled(state in (SessionState.IDLE, SessionState.LIVE))
        self.record_btn.setEnabled(state in (SessionState.IDLE, SessionState.LIVE))
        self.stop_rec_btn.setEnabled(state == SessionState.RECORDING)
        self.clear_btn.setEnabled(state == SessionState.ERROR)
        self.designer.upload_btn.setEnabled(state == SessionState.IDLE
                                            and self.designer.code is not None)  # fmt: skip
        self.camera_panel.apply_btn.setEnabled(state == SessionState.IDLE)
        self.calibration_panel.calibrate_btn.setEnabled(state == SessionState.IDLE)

    def _poll(self) -> None:
        """Timer tick: newest frame to the screen, counters to the status bar."""
        s = self.session
        if s is None:
            return
        frame, count = s.latest.get()
        now = time.perf_counter()
        if now - self._count_t >= 1.0:
            self.camera_fps = (count - self._last_count) / (now - self._count_t)
            self._last_count, self._count_t = count, now
            running = s.state in (SessionState.LIVE, SessionState.RECORDING)
            self.st_fps.setText(f"camera {self.camera_fps:.1f} fps" if running else "camera - fps")
        if frame is not None and count != self._shown_count:
            held = self.held_settings
            max_value = (1 << held.bit_depth) - 1 if held else int(frame.image.max())
            self.live.show_frame(frame.image, max_value)
            self._shown_count = count
            if s.code is not None:
                self.preview.submit(frame.image, max_value, s.code.bits)
        self.preview.poll()
        st = s.recording_stats
        dropped = s.live_gaps + ((st.frame_id_gaps + st.trigger_gaps) if st else 0)
        self.st_dropped.setText(f"dropped {dropped}")
        self.st_queue.setText(f"writer queue {s.writer_queue}")
        status_count = st.triggers_fired if st else 0
        self.st_triggers.setText(f"triggers {status_count}")
        path = s.recording_file
        if path is not None and now - self._stat_t >= 1.0:  # one file-size check per second
            self._stat_t = now
            try:
                size = path.stat().st_size
            except OSError:
                size = None
            self.st_file.setText(f"{path.name}: {size / 1e6:.1f} MB" if size is not None
                                 else path.name)  # fmt: skip
            self.st_file.setToolTip(str(path))
        if s.state == SessionState.RECORDING and st is not None:
            total = f"/{st.requested}" if st.requested else ""
            self.progress.setText(f"recording: {st.written}{total} frames written")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.timer.stop()
        self.preview.close_preview()
        session, self.session = self.session, None
        if session is not None:
            try:
                session.close()  # finishes a recording as it stands: nothing is lost
            except Exception as e:
                log.warning("closing the rig: %s", e)
        if self._stack is not None:
            self._stack.close()
        self.tasks.wait(5000)
        self.files.tasks.wait(60_000)  # a reconstruction in progress finishes its file
        super().closeEvent(event)
