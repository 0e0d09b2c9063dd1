"""The Devices box of the rig window: which camera and shutter controller, as a device spec.

The box turns the user's choice into a :class:`~blurvid_rig.config.DeviceSpec` (:meth:`spec`)
and shows a spec from a profile (:meth:`show_spec`); the window opens the devices from that spec
with :func:`~blurvid_rig.config.open_devices`. "Find devices" lists GenTL cameras and serial
ports in the background. The Connect, Disconnect, live, clear-error and profile buttons sit here
too; the window wires them to its actions.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from blurvid_rig.config import DeviceSpec
from blurvid_rig.gui.tasks import TaskRunner

#: rig choices of the Devices panel: label -> (camera type, shutter type)
RIG_CHOICES = {
    "Simulated rig (camera + shutter)": ("sim", "sim"),
    "GenICam camera + Arduino controller": ("genicam", "arduino"),
    "GenICam camera + firmware in simavr": ("genicam", "simavr"),
    "Simulated camera + Arduino controller": ("sim", "arduino"),
    "Simulated camera + firmware in simavr": ("sim", "simavr"),
    "Simulated camera + DMD (DLPC900 driver, simulated controller)": ("sim", "dmd"),
    "GenICam camera + DMD (DLPC900 on USB; set a Timed exposure)": ("genicam", "dmd"),
}


def _banner(port: str) -> str:
    """The shutter firmware's banner on ``port``, or why there is none (never raises)."""
    from hw.serial_ports import identify

    try:
        info = identify(port, timeout_s=2.5)
    except Exception as e:
        return f"cannot open: {e}"
    if info is None:
        return "not blurvid shutter firmware"
    return f"blurvid shutter firmware {info.firmware_version}"


def _find(cti: str | None) -> tuple[list[str], list[str], str]:
    """``(serial ports, GenICam cameras, a note)``, as labels for the choosers (blocking)."""
    from hw.serial_ports import list_serial_ports

    ports = []
    for p in list_serial_ports():
        label = f"{p.device} {p.board_guess or p.description}".strip()
        if p.looks_like_arduino:  # ask for the firmware banner (the board resets)
            label += f" [{_banner(p.device)}]"
        ports.append(label)
    try:
        from hw.genicam_camera import list_devices

        cams = [f"{d.serial} ({d.vendor} {d.model})" for d in list_devices(cti)]
        cam_note = "" if cams else "no GenICam camera found"
    except Exception as e:  # a missing producer must not hide the ports
        cams, cam_note = [], f"cameras: {e}"
    return ports, cams, cam_note


class DevicesPanel(QGroupBox):
    """Which rig, how to reach it, and the buttons that connect it.

    Args:
        tasks: runs "Find devices" off the GUI thread (the window's runner: device calls are
            ordered).

    Signals:
        error(str): finding devices failed.
    """

    error = Signal(str)

    def __init__(self, tasks: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__("Devices", parent)
        self._tasks = tasks
        self.rig_choice = QComboBox()
        self.rig_choice.addItems(list(RIG_CHOICES))
        self.sim_size = QSpinBox()
        self.sim_size.setRange(64, 4096)
        self.sim_size.setSingleStep(64)
        self.sim_size.setValue(512)
        self.cti = QLineEdit()
        self.cti.setPlaceholderText("GenTL producer .cti (empty: GENICAM_GENTL64_PATH)")
        self.cam_serial = QComboBox()
        self.cam_serial.setEditable(True)
        self.cam_serial.setToolTip("serial number of the GenICam camera (empty: the first)")
        self.port = QComboBox()
        self.port.setEditable(True)
        self.port.setToolTip("serial port of the Arduino shutter controller")
        self.trigger = QComboBox()
        self.trigger.addItems(["Line1", "Software"])
        self.trigger.setToolTip(
            "Line1: the camera input wired to the controller's camera trigger (the rig). "
            "Software: for camera simulators without trigger lines; the exposure is then NOT "
            "synchronised with the code (pipeline tests only, never data).")
        self.find_btn = QPushButton("Find devices")
        self.find_btn.clicked.connect(self.find_devices)
        self.connect_btn = QPushButton("Connect")
        self.disconnect_btn = QPushButton("Disconnect")
        self.live_btn = QPushButton("Start live")
        self.clear_btn = QPushButton("Clear error")
        self.load_btn = QPushButton("Load profile...")
        self.save_btn = QPushButton("Save profile...")
        self.from_capture_btn = QPushButton("From capture...")
        self.device_label = QLabel("not connected")
        self.device_label.setWordWrap(True)
        self._layout()

    def _layout(self) -> None:
        form = QFormLayout(self)
        form.addRow("rig", self.rig_choice)
        form.addRow("sim sensor", self.sim_size)
        form.addRow("GenTL .cti", self.cti)
        form.addRow("camera serial", self.cam_serial)
        form.addRow("shutter port", self.port)
        form.addRow("camera trigger", self.trigger)
        form.addRow(self.find_btn)
        for buttons in ((self.load_btn, self.save_btn, self.from_capture_btn),
                        (self.connect_btn, self.disconnect_btn), (self.live_btn, self.clear_btn)):
            row = QHBoxLayout()
            for b in buttons:
                row.addWidget(b)
            form.addRow(row)
        form.addRow(self.device_label)

    def spec(self) -> DeviceSpec:
        """The devices chosen."""
        camera, shutter = RIG_CHOICES[self.rig_choice.currentText()]
        serial = self.cam_serial.currentText().strip()
        return DeviceSpec(camera=camera, shutter=shutter, cti=self.cti.text().strip(),
                          serial=serial.split(" ")[0] if serial else "",
                          port=self.port.currentText().strip().split(" ")[0],
                          trigger_source=self.trigger.currentText(), width=self.sim_size.value(),
                          height=self.sim_size.value())  # fmt: skip

    def show_spec(self, spec: DeviceSpec) -> None:
        """Show ``spec`` in the choosers (it applies at the next Connect)."""
        for label, kinds in RIG_CHOICES.items():
            if kinds == (spec.camera, spec.shutter):
                self.rig_choice.setCurrentText(label)
        self.sim_size.setValue(spec.width)
        self.cti.setText(spec.cti)
        self.cam_serial.setEditText(spec.serial)
        self.port.setEditText(spec.port)
        self.trigger.setCurrentText(spec.trigger_source)

    def find_devices(self) -> None:
        """List GenTL cameras and serial ports (in the background) into the choosers."""
        cti = self.cti.text().strip() or None

        def done(result: tuple[list[str], list[str], str]) -> None:
            ports, cams, note = result
            for box, items in ((self.port, ports), (self.cam_serial, cams)):
                box.clear()
                box.addItems(items)
            self.device_label.setText(f"{len(ports)} serial port(s), {len(cams)} camera(s)"
                                      + (f"; {note}" if note else ""))  # fmt: skip

        self.device_label.setText("looking for devices...")
        self._tasks.run(lambda: _find(cti), done, self.error.emit)
