"""The rig window with the real shutter firmware (in simavr) as its controller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from blurvid_rig.files.capture import CaptureFile  # noqa: E402
from blurvid_rig.gui.main_window import MainWindow  # noqa: E402
from blurvid_rig.session import SessionState  # noqa: E402
from common.codes import code_sha256  # noqa: E402

pytestmark = pytest.mark.slow  # the window with the firmware in simavr


def test_window_records_with_the_firmware_in_simavr(qtbot, firmware_elf: Path,
                                                    tmp_path: Path) -> None:  # fmt: skip
    win = MainWindow(out_dir=tmp_path)
    qtbot.addWidget(win)
    win.devices_panel.rig_choice.setCurrentText("Simulated camera + firmware in simavr")
    win.devices_panel.sim_size.setValue(64)
    win.folder.setText(str(tmp_path))
    win.designer.bits_edit.setText("1101000110")
    win.designer.chip_us.setValue(250.0)
    win.connect_rig()
    qtbot.waitUntil(lambda: win.session is not None, timeout=60_000)
    assert win.session.state == SessionState.IDLE
    assert "echo verified" in win.designer.echo.text()
    assert "arduino" in win.device_label.text() and "firmware 1.0.0" in win.device_label.text()
    win.mode.setCurrentText("Burst of N")
    win.burst_n.setValue(3)
    win.record_btn.click()
    qtbot.waitUntil(lambda: win.last_result is not None, timeout=60_000)
    assert not win.last_result.error
    with CaptureFile.open(win.last_result.path) as cap:
        assert cap.n_frames == 3 and cap.echo_verified
        assert cap.shutter_status.code_sha256 == code_sha256((1, 1, 0, 1, 0, 0, 0, 1, 1, 0))
        assert list(cap.frame_log["trigger_index"]) == [0, 1, 2]
    win.disconnect_rig()
    qtbot.waitUntil(lambda: win.device_label.text() == "not connected", timeout=30_000)
    win.close()
