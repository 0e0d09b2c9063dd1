"""Coded capture through the acquisition and writer threads, on the simulated rig."""

from __future__ import annotations

import time

import numpy as np
import pytest

from blurvid_rig.capture import run_coded_capture
from blurvid_rig.files.capture import CaptureFile
from blurvid_rig.files.capture_writer import CaptureWriter
from blurvid_rig.files.describe import describe_file
from blurvid_rig.session import coded_capture_settings, exposure_window_problems
from blurvid_rig.writer import WriterOverrun
from hw.errors import (
    AcquisitionTimeout,
    DeviceDisconnected,
    IncompatibleStateError,
    ProtocolError,
    RigError,
)
from hw.sim import SimFaults, make_sim_rig
from hw.types import CameraSettings, ShutterCode

CODE = ShutterCode.parse("11100101", 1000.0)


def _rig(**kw):
    return make_sim_rig(width=64, height=48, seed=3, **kw)


def test_capture_writes_every_frame_with_provenance(tmp_path):
    cam, sh = _rig()
    with cam, sh:
        res = run_coded_capture(cam, sh, CODE, 6, tmp_path, name="t", flush_every=2)
    assert res.status == "complete"
    assert res.path.suffix == ".h5" and res.path.exists()
    assert not list(tmp_path.glob("*.partial"))
    assert res.stats.written == 6 and res.stats.frame_id_gaps == 0 and res.stats.trigger_gaps == 0
    with CaptureFile.open(res.path) as f:
        assert f.status == "complete"
        assert len(f) == 6
        assert f.code.bits == CODE.bits and f.code.chip_us == CODE.chip_us
        log = f.frame_log
        assert np.all(np.diff(log["frame_id"]) == 1)
        assert np.all(np.diff(log["trigger_index"]) == 1)
        assert {s.decode() if isinstance(s, bytes) else str(s) for s in log["code_sha"]} == {
            CODE.sha256
        }
        s = f.camera_settings
        assert (s.trigger_mode, s.trigger_source, s.exposure_mode) == (
            "On",
            "Line1",
            "TriggerWidth",
        )
        assert s.exposure_us == CODE.period_us
        img = f.read_frame(5)
        assert img.shape == (48, 64) and img.dtype == np.uint16 and img.max() > 0


def test_exposure_window_checks_name_the_problem():
    s = CameraSettings(exposure_us=5000, trigger_mode="Off")
    problems = exposure_window_problems(s, CODE)
    assert any("Line1" in p for p in problems)
    assert any("shorter than the code" in p for p in problems)
    assert exposure_window_problems(coded_capture_settings(s, CODE), CODE) == []
    timed = coded_capture_settings(s, CODE, exposure_mode="Timed", exposure_us=5000)
    assert any("shorter than the code" in p for p in exposure_window_problems(timed, CODE))


def test_timed_exposure_shorter_than_the_code_is_refused(tmp_path):
    cam, sh = _rig()
    with cam, sh:
        with pytest.raises(IncompatibleStateError, match="shorter than the code"):
            run_coded_capture(cam, sh, CODE, 2, tmp_path, exposure_mode="Timed", exposure_us=4000)
        res = run_coded_capture(cam, sh, CODE, 2, tmp_path, exposure_mode="Timed", exposure_us=9000)
    assert not [p for p in tmp_path.glob("*.h5") if p != res.path], (
        "a refused capture makes no file"
    )
    with CaptureFile.open(res.path) as f:
        assert f.camera_settings.exposure_mode == "Timed"
        assert f.camera_settings.exposure_us == 9000


@pytest.mark.slow
def test_dropped_frames_are_counted_not_hidden(tmp_path):
    cam, sh = _rig(faults=SimFaults(drop_rate=0.3))
    with cam, sh:
        res = run_coded_capture(
            cam,
            sh,
            CODE,
            20,
            tmp_path,
            fetch_timeout_s=0.3,
            max_consecutive_timeouts=20,
            on_gap="record",
        )
        dropped_by_camera = cam.dropped_frames
    assert res.status == "complete"
    lost = res.stats.trigger_gaps
    assert lost > 0, "a 30 % drop rate over 20 frames should lose some"
    assert lost == dropped_by_camera
    # the session records the 20 frames asked for, firing one more trigger per lost frame
    assert res.stats.written == 20 and res.stats.triggers_fired == 20 + lost
    with CaptureFile.open(res.path) as f:
        log = f.frame_log
        assert len(log["frame_id"]) == res.stats.written
        # exactly the lost triggers are missing from the file's frame log, and counted in it
        fired = range(res.stats.triggers_fired)
        assert len(set(fired) - set(log["trigger_index"].tolist())) == lost
        assert f.counters["trigger_gaps"] == lost and f.counters["triggers_fired"] == 20 + lost
        assert np.all(np.diff(log["trigger_index"]) >= 1)
        inside = int(np.sum(np.diff(log["trigger_index"]) - 1))
    if inside:
        assert f"{inside} trigger(s) without a frame" in describe_file(res.path)


def test_failed_camera_start_keeps_the_error_and_the_file(tmp_path, monkeypatch):
    cam, sh = _rig()

    def broken_start():
        raise DeviceDisconnected("camera vanished at start")

    with cam, sh:
        monkeypatch.setattr(cam, "_do_start", broken_start)
        with pytest.raises(DeviceDisconnected, match="camera vanished at start"):
            run_coded_capture(cam, sh, CODE, 3, tmp_path)
    (path,) = tmp_path.glob("*.h5")
    with CaptureFile.open(path) as f:
        assert f.status == "aborted" and len(f) == 0


def test_writer_failure_stops_the_capture_early(tmp_path, monkeypatch):
    real_append = CaptureWriter.append
    calls = {"n": 0}

    def failing_append(self, frame, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_append(self, frame, *a, **k)

    monkeypatch.setattr(CaptureWriter, "append", failing_append)
    cam, sh = _rig()
    with cam, sh:
        with pytest.raises(RigError, match="No space left"):
            run_coded_capture(cam, sh, CODE, 200, tmp_path, flush_every=1)
        fired = sh.status().trigger_count
    assert fired < 100, f"the acquisition went on firing after the writer died ({fired} triggers)"
    (path,) = tmp_path.glob("*.h5")
    with CaptureFile.open(path) as f:
        assert f.status == "aborted" and len(f) == 2


def test_disconnect_mid_capture_keeps_frames_and_says_so(tmp_path):
    cam, sh = _rig(faults=SimFaults(disconnect_after_n=4))
    with cam, sh:
        with pytest.raises(DeviceDisconnected) as ei:
            run_coded_capture(cam, sh, CODE, 10, tmp_path, flush_every=1)
    assert "frames recorded before the failure are kept" in str(ei.value)
    (path,) = tmp_path.glob("*.h5")
    with CaptureFile.open(path) as f:
        assert f.status == "aborted"
        assert len(f) == 4


def test_stalled_camera_times_out_with_a_sentence(tmp_path):
    cam, sh = _rig(faults=SimFaults(stall_after_n=2))
    with cam, sh:
        t0 = time.perf_counter()
        with pytest.raises(AcquisitionTimeout):
            run_coded_capture(
                cam, sh, CODE, 10, tmp_path, fetch_timeout_s=0.2, max_consecutive_timeouts=2
            )
        assert time.perf_counter() - t0 < 5
    (path,) = tmp_path.glob("*.h5")
    with CaptureFile.open(path) as f:
        assert f.status == "aborted" and len(f) == 2


@pytest.mark.slow
def test_writer_overrun_stops_instead_of_dropping(tmp_path, monkeypatch):
    real_append = CaptureWriter.append

    def slow_append(self, frame, *a, **k):
        time.sleep(0.3)
        return real_append(self, frame, *a, **k)

    monkeypatch.setattr(CaptureWriter, "append", slow_append)
    cam, sh = _rig()
    with cam, sh:
        with pytest.raises(WriterOverrun) as ei:
            run_coded_capture(cam, sh, CODE, 30, tmp_path, queue_size=2, overrun_timeout_s=0.05)
    assert "writer fell behind" in str(ei.value)
    (path,) = tmp_path.glob("*.h5")
    with CaptureFile.open(path) as f:
        assert f.status == "aborted"
        # every frame the acquisition thread handed over was written: none dropped silently
        assert len(f) >= 2
        assert np.all(np.diff(f.frame_log["frame_id"]) == 1)


def test_corrupt_echo_blocks_recording(tmp_path):
    cam, sh = _rig()
    sh.corrupt_echo = True
    with cam, sh:
        with pytest.raises(ProtocolError):
            run_coded_capture(cam, sh, CODE, 3, tmp_path)
    assert not list(tmp_path.glob("*.h5*")), "no file may claim a code that was not verified"
