"""The rig session: camera + shutter controller, the acquisition and writer threads, and the
newest-frame slot, behind four states (the state machine; the threads are
:class:`~blurvid_rig.acquisition.AcquisitionLoop` and :class:`~blurvid_rig.writer.FrameWriter`).

States::

    IDLE  --start_live()-->  LIVE  --record()-->  RECORDING  --(n frames written)-->  LIVE
      \\_______________________record()___________/                \\--> IDLE (if it was idle)
    any state --(device failure, gap, writer overrun or failure)--> ERROR --clear_error()--> IDLE

Threading (ARCHITECTURE.md): the acquisition thread is the only caller of ``camera.fetch`` (always
with a timeout) and of ``shutter.fire``; the writer thread is the only user of the open HDF5 file
and is fed by a bounded queue; displays and live reconstruction read :attr:`RigSession.latest`,
which never blocks the acquisition. Control methods (``start_live``, ``record``, ``stop``...) are
called from one controlling thread (the CLI, or the GUI's worker) and return quickly; they never
wait on a device without a timeout.

Nothing is dropped silently. Every recorded frame gets its provenance row (camera frame id and
timestamp, host time, controller trigger index, code hash). A trigger whose frame never came, a
jump in the camera's frame ids, a controller trigger count that differs from the frames received,
or a writer that falls behind ends the recording in ERROR (``on_gap="error"``, the default) with the
reason in the file; with ``on_gap="record"`` gaps are counted, kept visible in the frame log and in
the file's counters, and the recording goes on. A user's stop short of the count is no failure: the
file is kept as aborted with a :class:`~blurvid_rig.writer.StopRequested` as its reason. Stop
order, always: disarm the shutter, stop the camera, join the acquisition thread, drain and close
the writer.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from blurvid_rig.acquisition import AcquisitionLoop, LatestFrame
from blurvid_rig.files.capture_writer import CaptureWriter, make_capture_path
from blurvid_rig.writer import CaptureResult, CaptureStats, FrameWriter, StopRequested
from calibration.model import Calibration, CalibrationError
from hw.base import Camera, Shutter
from hw.errors import IncompatibleStateError, RigError
from hw.types import CameraSettings, ShutterCode, ShutterStatus
from recon.codes import code_metrics

log = logging.getLogger(__name__)


class SessionState(enum.StrEnum):
    IDLE = "idle"
    LIVE = "live"
    RECORDING = "recording"
    ERROR = "error"


def exposure_window_problems(
    settings: CameraSettings, code: ShutterCode, trigger_source: str = "Line1"
) -> list[str]:
    """Say what in the camera settings would spoil a coded capture (empty list: all good).

    The camera must be triggered by the shutter controller (trigger On, source ``trigger_source``,
    Line1 on the rig) and its exposure window must cover the whole code: TriggerWidth exposure, or
    a timed exposure at least as long as the code period.
    """
    problems = []
    if settings.trigger_mode != "On" or settings.trigger_source != trigger_source:
        problems.append(
            "the camera must be triggered by the shutter controller (trigger_mode='On', "
            f"trigger_source={trigger_source!r}); it has trigger_mode={settings.trigger_mode!r}, "
            f"trigger_source={settings.trigger_source!r}"
        )
    if settings.exposure_mode == "Timed" and settings.exposure_us < code.period_us:
        problems.append(
            f"the timed exposure ({settings.exposure_us:g} us) is shorter than the code "
            f"({code.n_chips} chips x {code.chip_us:g} us = {code.period_us:g} us); "
            "use exposure_mode="
            "'TriggerWidth' or an exposure of at least the code period"
        )
    return problems


def coded_capture_settings(
    settings: CameraSettings,
    code: ShutterCode,
    *,
    exposure_mode: str = "TriggerWidth",
    exposure_us: float | None = None,
    trigger_source: str = "Line1",
) -> CameraSettings:
    """The camera settings for a coded capture: triggered by the shutter, exposing for the code.

    With ``TriggerWidth`` (the default) the controller holds the exposure line for the whole code,
    so the recorded exposure is exactly the code period. With ``Timed`` the camera exposes for
    ``exposure_us`` (default: the code period) from the trigger; it must cover the code, which
    :func:`exposure_window_problems` checks.
    """
    if exposure_mode == "TriggerWidth":
        exposure = code.period_us
    else:
        exposure = code.period_us if exposure_us is None else float(exposure_us)
    return settings.replace(
        trigger_mode="On",
        trigger_source=trigger_source,
        exposure_mode=exposure_mode,
        exposure_us=exposure,
    )


class RigSession:
    """Camera + shutter controller, run by an acquisition thread and a writer thread.

    Args:
        camera, shutter: the devices (opened by :meth:`open`, closed by :meth:`close`).
        fetch_timeout_s: longest wait for the frame of one trigger.
        queue_size: frames the writer may lag behind before ``overrun_timeout_s`` starts counting.
        overrun_timeout_s: how long the acquisition waits on a full writer queue before the
            recording ends in ERROR (a writer overrun).
        on_gap: ``"error"`` (a missing frame ends the recording in ERROR) or ``"record"`` (gaps
            are counted and left visible in the file; ``max_consecutive_timeouts`` triggers without
            a frame in a row still end it).
        max_consecutive_timeouts: see ``on_gap="record"``.
        flush_every: frames between flushes of the capture file (what a crash can lose).
        compression: of the frames in the file (``"lz4"``, ``"gzip"`` or None).
        live_rate_hz: the most triggers per second in LIVE (0: as fast as the rig goes).
        on_state: called as ``on_state(state, reason)`` from whichever thread changes the state
            (a GUI must hand it to its own thread).

    Example::

        cam, sh = make_sim_rig(width=256, height=256)
        with RigSession(cam, sh) as s:
            s.configure(ShutterCode.parse("11100101", 1000))
            s.start_live()
            result = s.record(10, Path("captures")).wait()
            s.stop()
    """

    def __init__(
        self,
        camera: Camera,
        shutter: Shutter,
        *,
        fetch_timeout_s: float = 5.0,
        queue_size: int = 64,
        overrun_timeout_s: float = 10.0,
        on_gap: str = "error",
        max_consecutive_timeouts: int = 3,
        flush_every: int = 8,
        compression: str | None = "lz4",
        live_rate_hz: float = 0.0,
        on_state: Callable[[SessionState, str], None] | None = None,
    ) -> None:
        if on_gap not in ("error", "record"):
            raise ValueError(f"on_gap must be 'error' or 'record', got {on_gap!r}.")
        if not fetch_timeout_s > 0 or not overrun_timeout_s > 0:
            raise ValueError("fetch_timeout_s and overrun_timeout_s must be > 0 seconds.")
        self.camera, self.shutter = camera, shutter
        self.fetch_timeout_s = float(fetch_timeout_s)
        self.queue_size = int(queue_size)
        self.overrun_timeout_s = float(overrun_timeout_s)
        self.on_gap = on_gap
        self.max_consecutive_timeouts = int(max_consecutive_timeouts)
        self.flush_every = int(flush_every)
        self.compression = compression
        self.live_rate_hz = float(live_rate_hz)
        self.on_state = on_state
        self.latest = LatestFrame()
        self._lock = threading.RLock()
        self._state = SessionState.IDLE
        self._reason = ""
        self._code: ShutterCode | None = None
        self._software_trigger = False
        self._settings: CameraSettings | None = None
        self._shutter_status = None
        self._acq: AcquisitionLoop | None = None
        self._rec: FrameWriter | None = None
        self._last_rec: FrameWriter | None = None
        self._calibration: Calibration | None = None
        self._masks: Any = None
        #: triggers without a frame and frame-id jumps seen while LIVE (no file to tell)
        self.live_gaps = 0

    # -- state -------------------------------------------------------------------------------------
    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def reason(self) -> str:
        """Why the session is in ERROR (empty otherwise)."""
        return self._reason

    @property
    def code(self) -> ShutterCode | None:
        return self._code

    @property
    def recording_stats(self) -> CaptureStats | None:
        """Counters of the recording in progress (or the last one)."""
        rec = self._rec or self._last_rec
        return rec.stats if rec is not None else None

    @property
    def shutter_status(self) -> ShutterStatus | None:
        """What the controller reported when the code was loaded (its echo of the code)."""
        return self._shutter_status

    @property
    def recording_file(self) -> Path | None:
        """Path of the file being written (or the last one written); None before any."""
        rec = self._rec or self._last_rec
        return rec.file.path if rec is not None else None

    @property
    def writer_queue(self) -> int:
        """Frames waiting for the writer (0 when not recording)."""
        rec = self._rec
        return rec.frames.qsize() if rec is not None else 0

    def _set_state(self, state: SessionState, reason: str = "") -> None:
        with self._lock:
            if self._state == state and self._reason == reason:
                return
            self._state, self._reason = state, reason
        log.info("session %s%s", state.value, f": {reason}" if reason else "")
        if self.on_state is not None:
            try:
                self.on_state(state, reason)
            except Exception:  # a display callback must not break the rig
                log.exception("on_state callback failed")

    def _require(self, *states: SessionState, what: str) -> None:
        if self._state not in states:
            extra = f" ({self._reason})" if self._state == SessionState.ERROR else ""
            raise IncompatibleStateError(
                f"Cannot {what} while the session is {self._state.value}{extra}; it must be "
                f"{' or '.join(s.value for s in states)}."
                + (" Call clear_error() first." if self._state == SessionState.ERROR else "")
            )

    # -- lifetime ----------------------------------------------------------------------------------
    def open(self) -> RigSession:
        self.camera.open()
        try:
            self.shutter.open()
        except BaseException:
            self.camera.close()
            raise
        return self

    def close(self) -> None:
        """Stop everything (a recording in progress is finished as it stands) and close both
        devices; never raises for a device that is already gone."""
        try:
            self.stop()
        finally:
            for dev in (self.shutter, self.camera):
                try:
                    dev.close()
                except RigError as e:
                    log.warning("while closing %s: %s", type(dev).__name__, e)

    def __enter__(self) -> RigSession:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration -----------------------------------------------------------------------------
    def configure(
        self,
        code: ShutterCode,
        *,
        exposure_mode: str = "TriggerWidth",
        exposure_us: float | None = None,
        settings: CameraSettings | None = None,
        trigger_source: str = "Line1",
        masks: Any = None,
    ) -> CameraSettings:
        """Load ``code`` into the controller (its echo verified) and set the camera up to expose
        for it. Only while IDLE. Returns the camera settings it holds.

        ``trigger_source`` is the camera input wired to the controller's camera trigger (Line1
        on the rig). ``masks`` ``(K, rows, columns)``: per-pixel coding on a DMD shutter, one
        pattern per chip of ``code`` (whose bits are then all open). ``"Software"`` is for camera
        simulators without trigger lines: the session
        triggers the camera itself after each playback, so the exposure is *not* synchronised with
        the code; use it to test the pipeline, never for data.

        Raises:
            IncompatibleStateError: not IDLE, or the camera cannot expose for the code (the
                sentence says what to change), or the controller did not confirm the code.
        """
        with self._lock:
            self._require(SessionState.IDLE, what="change the code or the camera settings")
            base = settings if settings is not None else self.camera.settings
            cam = self.camera.apply_settings(
                coded_capture_settings(
                    base,
                    code,
                    exposure_mode=exposure_mode,
                    exposure_us=exposure_us,
                    trigger_source=trigger_source,
                )
            )
            problems = exposure_window_problems(cam, code, trigger_source)
            device_check = getattr(self.camera, "coded_capture_problems", None)
            if device_check is not None and trigger_source != "Software":
                # the device's own features (auto exposure, trigger selector, delay...)
                problems += [
                    p for p in device_check(code, line=trigger_source) if p not in problems
                ]
            if problems:
                raise IncompatibleStateError(
                    "Cannot record a coded capture: " + "; ".join(problems) + "."
                )
            if masks is not None:
                load_masks = getattr(self.shutter, "load_masks", None)
                if load_masks is None:
                    raise IncompatibleStateError(
                        f"Per-pixel masks need a DMD shutter; {self.shutter.info.controller} codes "
                        "the whole frame. Record with a code instead."
                    )
                status = load_masks(masks, code.chip_us)
                code = self.shutter.code
            else:
                status = self.shutter.load_code(code)
            if not status.echo_verified:
                raise IncompatibleStateError(
                    "The shutter controller did not confirm the code it holds; recording is "
                    "blocked so that the file cannot claim a code that was not played. Reload the "
                    "code or check the controller."
                )
            self._code, self._settings, self._shutter_status = code, cam, status
            self._masks = None if masks is None else getattr(self.shutter, "masks", masks)
            self._software_trigger = trigger_source == "Software"
            return cam

    # -- calibration -------------------------------------------------------------------------------
    @property
    def calibration(self) -> Calibration | None:
        """The active calibration: embedded into every capture recorded while it is set."""
        return self._calibration

    @calibration.setter
    def calibration(self, cal: Calibration | None) -> None:
        with self._lock:
            self._calibration = cal

    def calibration_problems(self) -> list[str]:
        """Why the active calibration does (error) or may not (warning) fit the configured
        camera settings; empty when it fits or when there is none."""
        cal, cam = self._calibration, self._settings
        if cal is None or cam is None:
            return []
        info = self.camera.info
        shape = (cam.roi.height or info.sensor_height, cam.roi.width or info.sensor_width)
        return [str(p) for p in cal.check(cam, shape)]

    # -- live and recording ------------------------------------------------------------------------
    def start_live(self) -> None:
        """IDLE -> LIVE: trigger and fetch continuously; frames go to :attr:`latest` only."""
        with self._lock:
            self._require(SessionState.IDLE, what="start live view")
            self._start_devices()
            self._set_state(SessionState.LIVE)

    def record(
        self,
        n_frames: int,
        out_dir: Path,
        *,
        name: str = "capture",
        title: str = "",
        settings: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
    ) -> RigSession:
        """Record ``n_frames`` (0: until :meth:`stop_recording`) into a new capture file.

        From IDLE the devices start now and stop at the end; from LIVE live view goes on
        afterwards. Returns the session; :meth:`wait` waits for the result.

        ``calibration`` (a name -> array dict) is stored as given; without it the active
        :attr:`calibration` is embedded, after checking that it fits the camera settings.

        Raises:
            IncompatibleStateError: no code configured, not IDLE/LIVE, or the active calibration
                does not fit the camera settings (the reason is given).
            RigError: the file could not be created (nothing was started then).
        """
        if n_frames < 0:
            raise ValueError(f"n_frames must be >= 0 (0 = until stopped), got {n_frames}.")
        with self._lock:
            self._require(SessionState.IDLE, SessionState.LIVE, what="start recording")
            if self._code is None or self._settings is None:
                raise IncompatibleStateError(
                    "Cannot record: no code is configured; call configure(code) first."
                )
            file = self._create_file(
                Path(out_dir), name, title, settings, self._calibration_tree(calibration)
            )
            was = self._state
            rec = FrameWriter(
                file, n_frames, live_after=was == SessionState.LIVE,
                queue_size=self.queue_size, overrun_timeout_s=self.overrun_timeout_s,
            )  # fmt: skip
            rec.start(
                on_failure=self._fail, on_drained=self._writer_drained,
                on_finished=self._writer_finished,
            )  # fmt: skip
            self._rec = rec
            self._set_state(SessionState.RECORDING)
            if was == SessionState.IDLE:
                try:
                    self._start_devices()
                except BaseException as e:
                    self._fail(e)
            return self

    def _frame_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the frames with the configured settings."""
        assert self._settings is not None
        cam, info = self._settings, self.camera.info
        return (cam.roi.height or info.sensor_height, cam.roi.width or info.sensor_width)

    def _calibration_tree(self, given: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The calibration to store: ``given`` as it is, else the active one once it is checked
        against the camera settings."""
        if given is not None or self._calibration is None:
            return given
        assert self._settings is not None
        try:
            self._calibration.require(self._settings, self._frame_shape())
        except CalibrationError as e:
            raise IncompatibleStateError(
                f"Cannot record with the active calibration: {e}. Calibrate again with "
                "these settings, or record without a calibration."
            ) from e
        return self._calibration.to_tree()

    def _dmd_record(self) -> dict[str, Any] | None:
        """The per-pixel masks and where each mirror lands, for the file (None without masks)."""
        if self._masks is None:
            return None
        cal = self._calibration
        cal_map = cal.dmd_mapping if cal is not None else None
        own = getattr(self.shutter, "dmd_to_camera", None)
        if cal_map is not None:
            mapping, source = cal_map.matrix, f"calibration {cal.uuid}"
        elif own is not None:
            mapping, source = own, "the shutter's own (simulated relay)"
        else:
            mapping, source = None, "none measured: identity assumed"
            log.warning("Recording DMD masks without a DMD->camera mapping; calibrate the "
                        "DMD mapping so that reconstruction knows where each mirror lands.")
        return {
            "masks": self._masks,
            "dmd_to_camera": mapping,
            "dmd_to_camera_source": source,
            "masks_sha256": getattr(self.shutter, "masks_sha256", ""),
        }

    def _create_file(
        self, out_dir: Path, name: str, title: str, settings: Mapping[str, Any] | None,
        calibration: Mapping[str, Any] | None,
    ) -> CaptureWriter:  # fmt: skip
        """The new capture file of a recording, with everything known before its frames."""
        code, cam = self._code, self._settings
        assert code is not None and cam is not None
        metrics = code_metrics(code.bits).to_dict()
        return CaptureWriter(
            make_capture_path(out_dir, name),
            camera_info=self.camera.info,
            camera_settings=cam,
            code=code,
            shutter_info=self.shutter.info,
            shutter_status=self._shutter_status,
            frame_shape=self._frame_shape(),
            dtype=cam.dtype,
            genicam_nodes=self.camera.node_map_snapshot(),
            settings=dict(settings or {}),
            code_metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            calibration=calibration,
            dmd=self._dmd_record(),
            title=title or f"coded capture {code}",
            flush_every=self.flush_every,
            compression=self.compression,
        )

    def wait(self, timeout_s: float | None = None) -> CaptureResult:
        """Wait for the current (or last) recording to end; returns its result.

        Raises:
            RigError: the recording ended in ERROR (the message names the file that keeps the
                frames recorded before the failure).
            TimeoutError: still recording after ``timeout_s``.
        """
        rec = self._rec or self._last_rec
        if rec is None:
            raise IncompatibleStateError("Nothing to wait for: no recording was started.")
        if not rec.done.wait(timeout_s):
            raise TimeoutError(f"The recording is still going after {timeout_s} s.")
        assert rec.result is not None
        return self._raise_or_return(rec.result, rec.reason)

    @staticmethod
    def _raise_or_return(
        result: CaptureResult, reason: BaseException | StopRequested | None
    ) -> CaptureResult:
        if reason is None or isinstance(reason, StopRequested):
            return result
        msg = (
            f"{reason} The {result.stats.written} frames recorded before the failure are kept in "
            f"{result.path}."
        )
        if isinstance(reason, RigError):
            raise type(reason)(msg) from reason
        raise RigError(msg) from reason

    def stop_recording(self) -> CaptureResult | None:
        """End the recording now: a count-less recording completes, an unfinished count is kept
        as 'aborted' (:class:`~blurvid_rig.writer.StopRequested`). Live view goes on if it was
        on."""
        rec = self._rec
        if rec is None or self._state != SessionState.RECORDING:
            return None
        if not rec.live_after:
            self._stop_acquisition()
        self._end_by_user(rec)
        then = SessionState.LIVE if rec.live_after else SessionState.IDLE
        self._set_state(then if self._state == SessionState.RECORDING else self._state)
        return rec.result

    def stop(self) -> None:
        """Back to IDLE (from LIVE or RECORDING; a recording in progress is ended as by
        :meth:`stop_recording`). From ERROR the devices are stopped and the state stays ERROR."""
        rec = self._rec
        if rec is not None:
            rec.live_after = False  # the recording's end leads to IDLE, not back to LIVE
        self._stop_acquisition()
        if rec is not None and not rec.done.is_set():
            self._end_by_user(rec)
        if self._state != SessionState.ERROR:
            self._set_state(SessionState.IDLE)

    def clear_error(self) -> None:
        """ERROR -> IDLE once the devices are stopped (reconfigure before recording again)."""
        if self._state == SessionState.ERROR:
            self._stop_acquisition()
            self._set_state(SessionState.IDLE)

    # -- internals ---------------------------------------------------------------------------------
    def _start_devices(self) -> None:
        if self._code is None:
            raise IncompatibleStateError("No code is configured; call configure(code) first.")
        loop = AcquisitionLoop(
            self.camera, self.shutter, code_sha256=self._code.sha256,
            software_trigger=self._software_trigger, fetch_timeout_s=self.fetch_timeout_s,
            on_gap=self.on_gap, max_consecutive_timeouts=self.max_consecutive_timeouts,
            live_rate_hz=self.live_rate_hz, latest=self.latest, recording=self._recording,
            on_failure=self._fail, on_live_gaps=self._count_live_gaps,
        )  # fmt: skip
        self.camera.start()
        try:
            self.shutter.arm()
        except BaseException:
            self.camera.stop()
            raise
        self._acq = loop
        loop.start()

    def _recording(self) -> FrameWriter | None:
        """The recording the acquisition hands frames to (None unless RECORDING)."""
        return self._rec if self._state == SessionState.RECORDING else None

    def _count_live_gaps(self, n: int) -> None:
        self.live_gaps += n

    def _stop_devices(self) -> None:
        for step in (self.shutter.disarm, self.camera.stop):
            try:
                step()
            except RigError as e:
                log.warning("while stopping: %s", e)

    def _stop_acquisition(self) -> None:
        """Stop order: disarm the shutter, stop the camera, join the acquisition thread."""
        acq = self._acq
        if acq is not None:
            acq.stop_event.set()
        self._stop_devices()
        if acq is not None and acq.thread is not threading.current_thread():
            acq.thread.join(timeout=self.fetch_timeout_s + 5.0)
            if acq.thread.is_alive():
                log.error("the acquisition thread did not stop within %.1f s", self.fetch_timeout_s)
        self._acq = None

    def _fail(self, error: BaseException) -> None:
        """Any thread: a failure ends live view and the recording; state ERROR with the reason."""
        reason = f"{type(error).__name__}: {error}"
        rec, acq = self._rec, self._acq
        if acq is not None:
            acq.stop_event.set()
        if acq is None or threading.current_thread() is not acq.thread:
            self._stop_acquisition()
        else:  # the acquisition thread stops itself: just stop the devices
            self._stop_devices()
        self._set_state(SessionState.ERROR, reason)
        if rec is not None and not rec.done.is_set():
            rec.end(error)

    def _end_by_user(self, rec: FrameWriter) -> None:
        """End a recording on request and wait for its file: an open-ended one is complete, a
        counted one that is short of its count is kept as aborted."""
        short = rec.n_frames and rec.stats.written < rec.n_frames
        rec.end(StopRequested(rec.stats.written, rec.n_frames) if short else None)
        rec.done.wait()

    def _writer_drained(self, rec: FrameWriter) -> None:
        """The writer thread wrote the last frame: the devices stop unless live view goes on."""
        if not rec.live_after or rec.reason is not None:
            self._stop_acquisition()

    def _writer_finished(self, rec: FrameWriter) -> None:
        """The writer thread finished the file: ERROR after a failure, else back to LIVE or
        IDLE."""
        self._last_rec = rec
        if self._rec is rec:
            self._rec = None
        if rec.failed:
            if self._state != SessionState.ERROR:
                self._set_state(SessionState.ERROR, f"{type(rec.reason).__name__}: {rec.reason}")
        elif self._state == SessionState.RECORDING:
            self._set_state(SessionState.LIVE if rec.live_after else SessionState.IDLE)
