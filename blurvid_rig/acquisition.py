"""The acquisition thread: the only caller of ``shutter.fire`` and ``camera.fetch`` (always with a
timeout), and the newest-frame slot it fills (ARCHITECTURE.md's AcquisitionLoop).

:class:`AcquisitionLoop` fires the shutter, fetches the frame of each trigger, checks that camera
and controller stay in step, puts every frame into :class:`LatestFrame` (displays and live
reconstruction) and, while a recording runs, hands it to the recording's
:class:`~blurvid_rig.writer.FrameWriter`. A trigger whose frame never came or a jump in the
camera's frame ids is counted; with ``on_gap="error"`` it ends the loop with
:class:`~hw.errors.AcquisitionTimeout` or :class:`FrameGap`, handed to its owner's
``on_failure``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from blurvid_rig.writer import FrameWriter
from hw.base import Camera, Shutter
from hw.errors import AcquisitionTimeout, ProtocolError, RigError
from hw.types import Frame

log = logging.getLogger(__name__)


class FrameGap(RigError):
    """Frames went missing between the camera, the controller and the file."""


class LatestFrame:
    """A one-slot, newest-frame-only mailbox for displays and live preview (never blocks the
    producer)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._count = 0

    def put(self, frame: Frame) -> None:
        with self._lock:
            self._frame = frame
            self._count += 1

    def get(self) -> tuple[Frame | None, int]:
        """Return the newest frame and how many frames have been put so far."""
        with self._lock:
            return self._frame, self._count


class AcquisitionLoop:
    """Fire, fetch, check, hand on: one thread, from :meth:`start` until :attr:`stop_event`.

    Args:
        camera, shutter: started and armed by the owner.
        code_sha256: the loaded code's hash, for frames that do not carry one.
        software_trigger: trigger the camera after each fire (camera simulators without
            trigger lines; the exposure is then not synchronised with the code).
        fetch_timeout_s: longest wait for the frame of one trigger.
        on_gap: ``"error"`` (a missing frame while recording ends the loop) or ``"record"``.
        max_consecutive_timeouts: triggers without a frame in a row that end the loop anyway.
        live_rate_hz: the most triggers per second (0: as fast as the rig goes).
        latest: where every frame goes.
        recording: the recording in progress, if any (asked before each trigger).
        on_failure: called in this thread with the error that ended the loop (not when it was
            stopped).
        on_live_gaps: called with the number of frames lost while no recording ran.
    """

    def __init__(
        self, camera: Camera, shutter: Shutter, *, code_sha256: str, software_trigger: bool,
        fetch_timeout_s: float, on_gap: str, max_consecutive_timeouts: int, live_rate_hz: float,
        latest: LatestFrame, recording: Callable[[], FrameWriter | None],
        on_failure: Callable[[BaseException], None], on_live_gaps: Callable[[int], None],
    ) -> None:  # fmt: skip
        self.camera, self.shutter = camera, shutter
        self.code_sha256 = code_sha256
        self.software_trigger = software_trigger
        self.fetch_timeout_s = fetch_timeout_s
        self.on_gap = on_gap
        self.max_consecutive_timeouts = max_consecutive_timeouts
        self.period_s = 1.0 / live_rate_hz if live_rate_hz > 0 else 0.0
        self.latest = latest
        self.recording = recording
        self.on_failure = on_failure
        self.on_live_gaps = on_live_gaps
        #: set to end the loop (after the fetch in progress)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="acquisition", daemon=True)
        self._last_id: int | None = None

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        timeouts = 0
        try:
            while not self.stop_event.is_set():
                rec = self.recording()
                t_fire = time.perf_counter()
                trigger = self.shutter.fire()
                if self.software_trigger:
                    self.camera.software_trigger()
                if rec is not None:
                    rec.stats.triggers_fired += 1
                    if rec.trigger_count0 is None:
                        rec.trigger_count0 = trigger
                try:
                    frame = self.camera.fetch(timeout_s=self.fetch_timeout_s)
                except AcquisitionTimeout as e:
                    timeouts += 1
                    self._missed(trigger, rec, e)
                    if timeouts >= self.max_consecutive_timeouts:
                        raise
                    continue
                timeouts = 0
                self._take(self._in_step(frame, trigger), rec)
                if self.period_s:
                    rest = self.period_s - (time.perf_counter() - t_fire)
                    if rest > 0:
                        self.stop_event.wait(rest)
        except BaseException as e:
            if not self.stop_event.is_set():  # errors while stopping (disarmed mid-fire) are not
                self.on_failure(e)  # failures

    def _missed(self, trigger: int, rec: FrameWriter | None, e: AcquisitionTimeout) -> None:
        """A trigger got no frame: counted; with ``on_gap="error"`` it ends a recording."""
        if rec is None:
            self.on_live_gaps(1)
            return
        rec.stats.trigger_gaps += 1
        if self.on_gap == "error":
            raise AcquisitionTimeout(
                f"Trigger {trigger} got no frame within {self.fetch_timeout_s:g} s: {e}"
            ) from e

    def _in_step(self, frame: Frame, trigger: int) -> Frame:
        """The frame with the trigger and code it answers filled in; ProtocolError when it
        answers another trigger than the one just fired."""
        if frame.trigger_index < 0 or not frame.code_sha256:
            frame = dataclasses.replace(
                frame,
                trigger_index=trigger if frame.trigger_index < 0 else frame.trigger_index,
                code_sha256=frame.code_sha256 or self.code_sha256,
            )
        if frame.trigger_index != trigger:
            raise ProtocolError(
                f"Frame {frame.frame_id} answers trigger {frame.trigger_index} but trigger "
                f"{trigger} was just fired: camera and shutter are out of step. Check the "
                "trigger cable and that nothing else triggers the camera."
            )
        return frame

    def _take(self, frame: Frame, rec: FrameWriter | None) -> None:
        """To the newest-frame slot, and to the recording if one runs (frame-id jumps checked)."""
        jump = 0 if self._last_id is None else frame.frame_id - self._last_id - 1
        self._last_id = frame.frame_id
        self.latest.put(frame)
        if rec is None:
            if jump > 0:
                self.on_live_gaps(jump)
            return
        if jump > 0 and rec.stats.acquired > 0:
            rec.stats.frame_id_gaps += jump
            if self.on_gap == "error":
                raise FrameGap(
                    f"The camera skipped {jump} frame id(s) before frame {frame.frame_id}: "
                    f"{jump} frame(s) were lost between sensor and host (bandwidth or buffer "
                    "shortage)"
                )
        if rec.put(frame) and rec.n_frames and rec.stats.acquired >= rec.n_frames:
            self._finish_count(rec)

    def _finish_count(self, rec: FrameWriter) -> None:
        """The last frame of a counted recording is queued."""
        if not rec.live_after:
            self.stop_event.set()  # the loop ends; the devices are stopped by the writer's end
        self._check_trigger_count(rec)
        rec.end(None)

    def _check_trigger_count(self, rec: FrameWriter) -> None:
        """The controller's own counter must agree with the frames received."""
        if rec.trigger_count0 is None:
            return
        try:
            count = self.shutter.status().trigger_count
        except RigError as e:
            log.warning("could not read the controller's trigger counter: %s", e)
            return
        fired = count - rec.trigger_count0
        missing = fired - rec.stats.acquired
        if missing > 0 and self.on_gap == "error" and rec.reason is None:
            rec.reason = FrameGap(
                f"The controller counted {fired} triggers but {rec.stats.acquired} frames arrived: "
                f"{missing} frame(s) were lost"
            )
