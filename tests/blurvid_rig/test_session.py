"""RigSession on the simulated rig: states, live view, recordings, provenance, gap checks, and the
reliability cases of issue 4 (fault knobs of the simulated devices), each bounded in time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from blurvid_rig.acquisition import FrameGap
from blurvid_rig.files.capture import CaptureFile
from blurvid_rig.files.capture_writer import CaptureWriter
from blurvid_rig.session import RigSession, SessionState
from blurvid_rig.writer import WriterOverrun
from hw.errors import AcquisitionTimeout, DeviceDisconnected, IncompatibleStateError
from hw.sim import SimFaults, make_sim_rig
from hw.types import ShutterCode

CODE = ShutterCode.parse("11100101", 1000.0)
BOUND_S = 10.0  # every fault must settle within this


def session(tmp_path: Path | None = None, *, shutter_kw=None, states=None, **camera_kw):
    cam, sh = make_sim_rig(width=64, height=48, seed=5, shutter_kw=shutter_kw, **camera_kw)
    cb = (lambda st, why: states.append((st, why))) if states is not None else None
    return RigSession(cam, sh, fetch_timeout_s=0.5, flush_every=1, on_state=cb)


def wait_for(cond, timeout_s: float = BOUND_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout_s} s")
        time.sleep(0.01)


def only_file(tmp_path: Path) -> Path:
    (path,) = tmp_path.glob("*.h5")
    return path


# -- states, live view, recordings -------------------------------------------------------------
def test_live_then_record_then_live_again(tmp_path):
    states: list = []
    with session(states=states) as s:
        assert s.state == SessionState.IDLE
        s.configure(CODE)
        s.start_live()
        assert s.state == SessionState.LIVE
        wait_for(lambda: s.latest.get()[1] >= 3)
        result = s.record(5, tmp_path, name="live").wait(timeout_s=BOUND_S)
        assert result.status == "complete" and result.stats.written == 5
        assert s.state == SessionState.LIVE  # live view goes on after the recording
        n = s.latest.get()[1]
        wait_for(lambda: s.latest.get()[1] > n)
        s.stop()
        assert s.state == SessionState.IDLE
    assert [st for st, _ in states] == ["live", "recording", "live", "idle"]
    with CaptureFile.open(result.path) as f:
        log = f.frame_log
        assert f.status == "complete" and len(f) == 5
        # provenance: consecutive controller triggers, increasing camera ids, the code's hash
        assert np.all(np.diff(log["trigger_index"]) == 1)
        assert np.all(np.diff(log["frame_id"]) == 1)
        assert set(log["code_sha"]) == {CODE.sha256}
        assert np.all(log["camera_timestamp_ns"] > 0) and np.all(np.diff(log["host_time_ns"]) > 0)
        assert f.counters["written"] == 5 and f.counters["trigger_gaps"] == 0


def test_record_from_idle_returns_to_idle(tmp_path):
    with session() as s:
        s.configure(CODE)
        result = s.record(3, tmp_path).wait(timeout_s=BOUND_S)
        assert result.status == "complete" and result.stats.written == 3
        wait_for(lambda: s.state == SessionState.IDLE)
        assert not s.camera.is_acquiring and not s.shutter.is_armed


def test_open_ended_recording_completes_on_stop(tmp_path):
    with session() as s:
        s.configure(CODE)
        s.start_live()
        s.record(0, tmp_path)
        wait_for(lambda: s.recording_stats.written >= 4)
        result = s.stop_recording()
        assert result.status == "complete" and result.stats.written >= 4
        assert s.state == SessionState.LIVE
        s.stop()
    with CaptureFile.open(result.path) as f:
        assert f.status == "complete" and len(f) == result.stats.written


def test_counted_recording_stopped_early_is_kept_as_aborted(tmp_path):
    with session() as s:
        s.configure(CODE)
        s.record(10_000, tmp_path)
        wait_for(lambda: s.recording_stats.written >= 3)
        s.stop()
        result = s.wait()
        assert s.state == SessionState.IDLE
    assert result.status == "aborted"
    assert result.error.startswith("stopped by the user after ")  # not a failure
    with CaptureFile.open(result.path) as f:
        assert f.status == "aborted" and "stopped by the user" in f.status_reason
        assert len(f) == result.stats.written >= 3


def test_state_rules_are_sentences():
    with session() as s:
        with pytest.raises(IncompatibleStateError, match="configure"):
            s.record(1, Path("unused"))
        s.configure(CODE)
        s.start_live()
        with pytest.raises(IncompatibleStateError, match="live"):
            s.configure(CODE)
        with pytest.raises(IncompatibleStateError, match="live"):
            s.start_live()
        s.stop()


def test_latest_frame_never_blocks_and_is_the_newest():
    with session() as s:
        s.configure(CODE)
        s.start_live()
        wait_for(lambda: s.latest.get()[1] >= 5)
        frame, count = s.latest.get()
        assert frame is not None and count >= 5
        assert frame.trigger_index >= count - 1 - s.live_gaps
        s.stop()


# -- gaps and faults: ERROR within a bound, the file keeps every frame and says why ------------
def check_error(s: RigSession, tmp_path: Path, error_type, min_frames: int, max_frames: int):
    t0 = time.monotonic()
    wait_for(lambda: s.state == SessionState.ERROR)
    assert time.monotonic() - t0 < BOUND_S
    with pytest.raises(error_type) as ei:
        s.wait(timeout_s=BOUND_S)
    assert "frames recorded before the failure are kept in" in str(ei.value)
    assert error_type.__name__ in s.reason
    with CaptureFile.open(only_file(tmp_path)) as f:
        assert f.status == "aborted" and error_type.__name__ in f.status_reason
        assert min_frames <= len(f) <= max_frames
        assert np.all(np.diff(f.frame_log["frame_id"]) >= 1)
    s.clear_error()
    assert s.state == SessionState.IDLE
    return ei.value


@pytest.mark.slow
def test_a_dropped_frame_ends_the_recording_in_error(tmp_path):
    with session(faults=SimFaults(drop_rate=0.5)) as s:
        s.configure(CODE)
        s.record(50, tmp_path)
        check_error(s, tmp_path, AcquisitionTimeout, 0, 49)


@pytest.mark.slow
def test_with_on_gap_record_the_gaps_are_counted_in_the_file(tmp_path):
    cam, sh = make_sim_rig(width=64, height=48, seed=5, faults=SimFaults(drop_rate=0.3))
    with RigSession(
        cam, sh, fetch_timeout_s=0.3, on_gap="record", max_consecutive_timeouts=50
    ) as s:
        s.configure(CODE)
        result = s.record(10, tmp_path).wait(timeout_s=BOUND_S * 3)
    assert result.status == "complete" and result.stats.written == 10
    with CaptureFile.open(result.path) as f:
        assert f.counters["trigger_gaps"] == cam.dropped_frames > 0
        assert f.counters["triggers_fired"] == 10 + cam.dropped_frames


@pytest.mark.slow
def test_camera_stall_is_an_error_within_the_fetch_timeout(tmp_path):
    with session(faults=SimFaults(stall_after_n=3)) as s:
        s.configure(CODE)
        s.record(20, tmp_path)
        check_error(s, tmp_path, AcquisitionTimeout, 3, 3)


def test_camera_disconnect_mid_recording(tmp_path):
    with session(faults=SimFaults(disconnect_after_n=4)) as s:
        s.configure(CODE)
        s.record(20, tmp_path)
        err = check_error(s, tmp_path, DeviceDisconnected, 4, 4)
        assert "disconnect" in str(err).lower()


def test_shutter_disconnect_mid_recording(tmp_path):
    with session(shutter_kw={"disconnect_after_n": 5}) as s:
        s.configure(CODE)
        s.record(20, tmp_path)
        check_error(s, tmp_path, DeviceDisconnected, 5, 5)


@pytest.mark.slow
def test_a_slow_writer_is_an_overrun_not_a_silent_drop(tmp_path, monkeypatch):
    real_append = CaptureWriter.append

    def slow_append(self, frame, *a, **k):
        time.sleep(0.2)
        return real_append(self, frame, *a, **k)

    monkeypatch.setattr(CaptureWriter, "append", slow_append)
    cam, sh = make_sim_rig(width=64, height=48, seed=5)
    with RigSession(cam, sh, queue_size=2, overrun_timeout_s=0.1, flush_every=1) as s:
        s.configure(CODE)
        s.record(40, tmp_path)
        check_error(s, tmp_path, WriterOverrun, 2, 39)
    with CaptureFile.open(only_file(tmp_path)) as f:
        # every frame handed to the writer was written, in order, without holes
        assert np.all(np.diff(f.frame_log["frame_id"]) == 1)
        assert f.counters["acquired"] == len(f)


def test_a_disk_error_stops_triggering(tmp_path, monkeypatch):
    real_append = CaptureWriter.append
    calls = {"n": 0}

    def failing_append(self, frame, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_append(self, frame, *a, **k)

    monkeypatch.setattr(CaptureWriter, "append", failing_append)
    with session() as s:
        s.configure(CODE)
        s.record(500, tmp_path)
        wait_for(lambda: s.state == SessionState.ERROR)
        with pytest.raises(Exception, match="No space left"):
            s.wait(timeout_s=BOUND_S)
        fired = s.shutter.status().trigger_count
    assert fired < 100, f"the session went on firing after the writer died ({fired} triggers)"
    with CaptureFile.open(only_file(tmp_path)) as f:
        assert f.status == "aborted" and len(f) == 2


def test_controller_counter_disagreeing_with_frames_is_a_gap(tmp_path, monkeypatch):
    with session() as s:
        s.configure(CODE)
        real_status = s.shutter.status

        def status_with_an_extra_trigger():
            st = real_status()
            return type(st)(**{**st.to_dict(), "trigger_count": st.trigger_count + 1})

        monkeypatch.setattr(s.shutter, "status", status_with_an_extra_trigger)
        s.record(4, tmp_path)
        err = check_error(s, tmp_path, FrameGap, 4, 4)
        assert "controller counted 5 triggers but 4 frames" in str(err)


def test_error_then_clear_then_record_again(tmp_path):
    cam, sh = make_sim_rig(
        width=64, height=48, seed=5, faults=SimFaults(disconnect_after_n=2)
    )
    with RigSession(cam, sh, fetch_timeout_s=0.5) as s:
        s.configure(CODE)
        s.record(5, tmp_path / "a")
        wait_for(lambda: s.state == SessionState.ERROR)
        with pytest.raises(DeviceDisconnected):
            s.wait()
        s.clear_error()
        cam.close()  # replug
        cam.disconnect_after_n = None
        cam.open()
        s.configure(CODE)
        result = s.record(3, tmp_path / "b").wait(timeout_s=BOUND_S)
    assert result.status == "complete" and result.stats.written == 3


def test_close_during_recording_never_hangs(tmp_path):
    s = session().open()
    s.configure(CODE)
    s.record(10_000, tmp_path)
    wait_for(lambda: s.recording_stats.written >= 2)
    closer = threading.Thread(target=s.close)
    closer.start()
    closer.join(BOUND_S)
    assert not closer.is_alive()
    with CaptureFile.open(only_file(tmp_path)) as f:
        assert f.status == "aborted" and len(f) >= 2


KILLED_CAPTURE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from blurvid_rig.session import RigSession
    from hw.sim import make_sim_rig
    from hw.types import ShutterCode

    cam, sh = make_sim_rig(width=128, height=96, seed=1)
    with RigSession(cam, sh, flush_every=2) as s:
        s.configure(ShutterCode.parse("11100101", 1000.0))
        s.record(100000, Path(sys.argv[1]))
        s.wait()
    """
)


def test_a_capture_killed_with_sigkill_keeps_its_flushed_frames(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CAPTURE, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            partial = list(tmp_path.glob("*.h5.partial"))
            if partial and partial[0].stat().st_size > 200_000:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        else:
            raise AssertionError("the capture did not start writing within 60 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=BOUND_S)
    (partial,) = tmp_path.glob("*.h5.partial")
    with CaptureFile.open(partial) as f:
        assert f.status == "partial"
        assert len(f) >= 2
        assert np.all(np.diff(f.frame_log["trigger_index"]) == 1)
        assert f.read_frame(len(f) - 1).std() > 0


def test_stop_during_a_live_recording_goes_straight_to_idle(tmp_path):
    states: list = []
    with session(states=states) as s:
        s.configure(CODE)
        s.start_live()
        s.record(0, tmp_path)
        wait_for(lambda: s.recording_stats.written >= 2)
        s.stop()
        assert s.state == SessionState.IDLE
        assert s.wait().status == "complete"
    assert [st for st, _ in states] == ["live", "recording", "idle"]
