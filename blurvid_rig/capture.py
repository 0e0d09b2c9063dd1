"""Coded capture: the acquisition thread, the writer thread and the function that runs them.

Threading (ARCHITECTURE.md): exactly one thread calls ``camera.fetch`` (always with a timeout)
and exactly one thread owns the open HDF5 file. Frames to disk pass through a bounded queue; if
the writer cannot keep up the capture stops with a "writer overrun" error instead of dropping
frames. A newest-frame-only slot feeds displays. Stop order: disarm shutter -> stop camera ->
join acquisition -> drain and close writer. Whatever happens, the file on disk keeps every frame
that reached the writer and says in its ``status`` how the capture ended.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from blurvid_rig.capture_file import CaptureWriter, make_capture_path
from hw.base import Camera, Shutter
from hw.errors import AcquisitionTimeout, IncompatibleStateError, ProtocolError, RigError
from hw.types import CameraSettings, Frame, ShutterCode
from recon.codes import code_metrics

log = logging.getLogger(__name__)


class WriterOverrun(RigError):
    """The writer could not keep up: the bounded frame queue stayed full."""


def exposure_window_problems(settings: CameraSettings, code: ShutterCode) -> list[str]:
    """Say what in the camera settings would spoil a coded capture (empty list: all good).

    The camera must be triggered by the shutter controller (trigger On, source Line1) and its
    exposure window must cover the whole code: TriggerWidth exposure, or a timed exposure at least
    as long as the code period.
    """
    problems = []
    if settings.trigger_mode != "On" or settings.trigger_source != "Line1":
        problems.append(
            "the camera must be triggered by the shutter controller (trigger_mode='On', "
            f"trigger_source='Line1'); it has trigger_mode={settings.trigger_mode!r}, "
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
        trigger_source="Line1",
        exposure_mode=exposure_mode,
        exposure_us=exposure,
    )


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


@dataclass
class CaptureStats:
    """Counters of one capture, updated by the threads (read them for progress)."""

    requested: int = 0
    acquired: int = 0
    written: int = 0
    frame_id_gaps: int = 0  # frames the camera numbered but never delivered
    trigger_gaps: int = 0  # triggers fired whose frame never arrived (fetch timed out)
    queue_high_water: int = 0


@dataclass
class CaptureResult:
    """How a capture ended."""

    path: Path
    status: str  # complete | aborted
    stats: CaptureStats
    elapsed_s: float
    error: str = ""
    frame_ids: list[int] = field(default_factory=list)


_STOP = object()


class _AcquisitionLoop(threading.Thread):
    """The only caller of ``camera.fetch``: fire the shutter, fetch the frame, hand it on."""

    def __init__(
        self,
        camera: Camera,
        shutter: Shutter,
        n_frames: int,
        frames_out: queue.Queue,
        latest: LatestFrame,
        stats: CaptureStats,
        stop: threading.Event,
        fetch_timeout_s: float,
        overrun_timeout_s: float,
        max_consecutive_timeouts: int,
    ) -> None:
        super().__init__(name="acquisition", daemon=True)
        self.camera, self.shutter, self.n_frames = camera, shutter, n_frames
        self.frames_out, self.latest, self.stats, self.stop_event = frames_out, latest, stats, stop
        self.fetch_timeout_s, self.overrun_timeout_s = fetch_timeout_s, overrun_timeout_s
        self.max_consecutive_timeouts = max_consecutive_timeouts
        code = shutter.code
        self.code_sha256 = code.sha256 if code is not None else ""
        self.error: BaseException | None = None

    def run(self) -> None:
        last_id: int | None = None
        timeouts = 0
        try:
            for _ in range(self.n_frames):
                if self.stop_event.is_set():
                    break
                trigger = self.shutter.fire()
                try:
                    frame = self.camera.fetch(timeout_s=self.fetch_timeout_s)
                except AcquisitionTimeout:
                    # one trigger without a frame: counted (never silent); several in a row:
                    # the rig is broken
                    self.stats.trigger_gaps += 1
                    timeouts += 1
                    if timeouts >= self.max_consecutive_timeouts:
                        raise
                    continue
                timeouts = 0
                if frame.trigger_index < 0 or not frame.code_sha256:
                    # drivers that don't know the controller's counter or code: stamp what was fired
                    frame = dataclasses.replace(
                        frame,
                        trigger_index=trigger if frame.trigger_index < 0 else frame.trigger_index,
                        code_sha256=frame.code_sha256 or self.code_sha256,
                    )
                if frame.trigger_index >= 0 and frame.trigger_index != trigger:
                    raise ProtocolError(
                        f"Frame {frame.frame_id} answers trigger {frame.trigger_index} "
                        f"but trigger {trigger} "
                        "was just fired: camera and shutter are out of step. "
                        "Check the trigger cable and "
                        "that nothing else triggers the camera."
                    )
                if last_id is not None and frame.frame_id > last_id + 1:
                    self.stats.frame_id_gaps += frame.frame_id - last_id - 1
                last_id = frame.frame_id
                self.stats.acquired += 1
                self.latest.put(frame)
                try:
                    self.frames_out.put(frame, timeout=self.overrun_timeout_s)
                except queue.Full as e:
                    raise WriterOverrun(
                        f"The writer fell behind: {self.frames_out.maxsize} frames "
                        "waited for more than "
                        f"{self.overrun_timeout_s:g} s. "
                        "Capture stopped so that no frame is lost silently; "
                        "use a faster disk, less compression, or a lower frame rate."
                    ) from e
                self.stats.queue_high_water = max(
                    self.stats.queue_high_water, self.frames_out.qsize()
                )
        except BaseException as e:  # handed to the main thread, which re-raises it
            self.error = e


class _FrameWriter(threading.Thread):
    """The only owner of the open capture file: drain the queue into it."""

    def __init__(
        self,
        writer: CaptureWriter,
        frames_in: queue.Queue,
        stats: CaptureStats,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="writer", daemon=True)
        self.writer, self.frames_in, self.stats, self.stop_event = writer, frames_in, stats, stop
        self.error: BaseException | None = None
        self.frame_ids: list[int] = []

    def run(self) -> None:
        try:
            while True:
                item = self.frames_in.get()
                if item is _STOP:
                    return
                self.writer.append(item)
                self.frame_ids.append(item.frame_id)
                self.stats.written += 1
        except BaseException as e:
            self.error = e
            self.stop_event.set()  # no point firing more frames that cannot be written
            # keep draining so the acquisition thread never blocks on a dead writer
            while self.frames_in.get() is not _STOP:
                pass


def run_coded_capture(
    camera: Camera,
    shutter: Shutter,
    code: ShutterCode,
    n_frames: int,
    out_dir: Path,
    *,
    name: str = "capture",
    title: str = "",
    settings: Mapping[str, Any] | None = None,
    fetch_timeout_s: float = 5.0,
    queue_size: int = 64,
    overrun_timeout_s: float = 10.0,
    max_consecutive_timeouts: int = 3,
    exposure_mode: str = "TriggerWidth",
    exposure_us: float | None = None,
    flush_every: int = 8,
    compression: str | None = "lz4",
    progress: Callable[[CaptureStats], None] | None = None,
    latest: LatestFrame | None = None,
    stop: threading.Event | None = None,
) -> CaptureResult:
    """Capture ``n_frames`` coded frames into a new HDF5 file and return how it went.

    The camera and shutter must be open. The code is loaded (and its echo verified by the shutter
    driver), the camera is switched to shutter-triggered exposure covering the whole code, and each
    frame is fired, fetched and written. A trigger whose frame never arrives is counted in
    ``stats.trigger_gaps`` and the capture goes on; ``max_consecutive_timeouts`` in a row end it.
    Camera frame-id gaps are counted in ``stats.frame_id_gaps`` and remain visible in the file's
    frame log. On any error the file is kept with ``status='aborted'`` and the error is raised after
    the devices are stopped; ``stop`` (an Event) or Ctrl-C end the capture early, also as
    'aborted', and then the result is returned instead of raising.

    Raises:
        RigError: device failure, timeout, writer overrun; the partial file is on disk and named in
            the error.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stop = stop or threading.Event()
    latest = latest or LatestFrame()
    stats = CaptureStats(requested=n_frames)

    shutter.disarm()
    camera.stop()
    cam_settings = camera.apply_settings(
        coded_capture_settings(
            camera.settings, code, exposure_mode=exposure_mode, exposure_us=exposure_us
        )
    )
    problems = exposure_window_problems(cam_settings, code)
    if problems:
        raise IncompatibleStateError("Cannot record a coded capture: " + "; ".join(problems) + ".")
    shutter_status = shutter.load_code(code)
    if not shutter_status.echo_verified:
        raise IncompatibleStateError(
            "The shutter controller did not confirm the code it holds; "
            "recording is blocked so that the "
            "file cannot claim a code that was not played. Reload the code or check the controller."
        )
    roi = cam_settings.roi
    info = camera.info
    h = roi.height or info.sensor_height
    w = roi.width or info.sensor_width
    metrics = code_metrics(code.bits).to_dict()
    writer = CaptureWriter(
        make_capture_path(out_dir, name),
        camera_info=info,
        camera_settings=cam_settings,
        code=code,
        shutter_info=shutter.info,
        shutter_status=shutter_status,
        frame_shape=(h, w),
        dtype=cam_settings.dtype,
        genicam_nodes=camera.node_map_snapshot(),
        settings=dict(settings or {}),
        code_metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        title=title or f"coded capture {code}",
        flush_every=flush_every,
        compression=compression,
    )
    frames_q: queue.Queue = queue.Queue(maxsize=queue_size)
    acq = _AcquisitionLoop(
        camera,
        shutter,
        n_frames,
        frames_q,
        latest,
        stats,
        stop,
        fetch_timeout_s,
        overrun_timeout_s,
        max_consecutive_timeouts,
    )
    wr = _FrameWriter(writer, frames_q, stats, stop)
    t0 = time.perf_counter()
    error: BaseException | None = None
    wr.start()
    try:
        camera.start()
        shutter.arm()
        acq.start()
        while acq.is_alive():
            acq.join(timeout=0.1)
            if progress is not None:
                progress(stats)
    except BaseException as e:  # KeyboardInterrupt included: stop cleanly, keep the file
        stop.set()
        error = e
    finally:
        # stop order: disarm shutter -> stop camera -> join acquisition -> drain and close writer
        for step in (shutter.disarm, camera.stop):
            try:
                step()
            except RigError as e:
                log.warning("while stopping: %s", e)
                error = error or e
        if acq.ident is not None:  # it may never have started (start/arm failed, Ctrl-C)
            acq.join()
        frames_q.put(_STOP)
        wr.join()
    error = error or wr.error or acq.error
    if error is None and stop.is_set() and stats.written < n_frames:
        error = KeyboardInterrupt(f"stopped after {stats.written} of {n_frames} frames")
    if error is None:
        path = writer.close()
        status = "complete"
    else:
        reason = str(error) or (
            "stopped by the user" if isinstance(error, KeyboardInterrupt) else ""
        )
        path = writer.abort(f"{type(error).__name__}: {reason}")
        status = "aborted"
    if progress is not None:
        progress(stats)
    result = CaptureResult(
        path=path,
        status=status,
        stats=stats,
        elapsed_s=time.perf_counter() - t0,
        error="" if error is None else str(error),
        frame_ids=wr.frame_ids,
    )
    if error is not None:
        if isinstance(error, KeyboardInterrupt):
            return result
        msg = f"{error} The {stats.written} frames recorded before the failure are kept in {path}."
        if isinstance(error, RigError):
            raise type(error)(msg) from error
        raise RigError(msg) from error
    return result


def frame_ids_consistent(frame_ids: list[int]) -> bool:
    """True when the camera frame ids are strictly increasing without gaps."""
    return bool(len(frame_ids) == 0 or np.all(np.diff(frame_ids) == 1))
