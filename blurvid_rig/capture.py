"""Coded capture as one call: :func:`run_coded_capture` runs a :class:`~blurvid_rig.session.
RigSession` recording on devices the caller has opened.

The states and the stop order live in :mod:`blurvid_rig.session`, the threads in
:mod:`blurvid_rig.acquisition` and :mod:`blurvid_rig.writer`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from blurvid_rig.acquisition import LatestFrame
from blurvid_rig.session import RigSession, SessionState
from blurvid_rig.writer import CaptureResult, CaptureStats
from calibration.model import Calibration
from hw.base import Camera, Shutter
from hw.types import ShutterCode

__all__ = ["run_coded_capture"]

log = logging.getLogger(__name__)


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
    on_gap: str = "error",
    exposure_mode: str = "TriggerWidth",
    exposure_us: float | None = None,
    trigger_source: str = "Line1",
    flush_every: int = 8,
    compression: str | None = "lz4",
    progress: Callable[[CaptureStats], None] | None = None,
    latest: LatestFrame | None = None,
    stop: threading.Event | None = None,
    calibration: Calibration | None = None,
    masks: Any = None,
) -> CaptureResult:
    """Capture ``n_frames`` coded frames into a new HDF5 file and return how it went.

    The camera and shutter must be open (they stay open). The code is loaded (its echo verified),
    the camera is set to shutter-triggered exposure covering the whole code, and a
    :class:`~blurvid_rig.session.RigSession` records. With ``on_gap="error"`` (the default) a
    missing frame ends the capture (the file says why); with ``"record"`` gaps are counted
    (``stats.trigger_gaps``, ``stats.frame_id_gaps``), stay visible in the frame log, and
    ``max_consecutive_timeouts`` triggers without a frame in a row end it. ``stop`` (an Event) or
    Ctrl-C end the capture early as 'aborted'; then the result is returned instead of raising.
    ``calibration`` is embedded into the file after checking that it fits the camera settings.
    ``masks`` ``(K, rows, columns)``: per-pixel coding on a DMD shutter (``code`` gives the chip
    duration and K open chips); the masks are stored in the file.

    Raises:
        RigError: device failure, timeout, gap, writer overrun; the partial file is on disk and
            named in the error.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}.")
    stop = stop or threading.Event()
    session = RigSession(
        camera,
        shutter,
        fetch_timeout_s=fetch_timeout_s,
        queue_size=queue_size,
        overrun_timeout_s=overrun_timeout_s,
        on_gap=on_gap,
        max_consecutive_timeouts=max_consecutive_timeouts,
        flush_every=flush_every,
        compression=compression,
    )
    if latest is not None:
        session.latest = latest
    session.calibration = calibration
    shutter.disarm()
    camera.stop()
    session.configure(
        code, exposure_mode=exposure_mode, exposure_us=exposure_us, trigger_source=trigger_source,
        masks=masks,
    )
    session.record(n_frames, Path(out_dir), name=name, title=title, settings=settings)
    _follow(session, stop, progress)
    result = session.wait()
    if progress is not None:
        progress(result.stats)
    return result


def _follow(
    session: RigSession, stop: threading.Event, progress: Callable[[CaptureStats], None] | None
) -> None:
    """Report progress until the recording ends; ``stop`` or Ctrl-C end it early. The session
    is stopped in any case."""
    try:
        while session.state == SessionState.RECORDING:
            if stop.is_set():
                session.stop_recording()
                break
            time.sleep(0.05)
            if progress is not None and session.recording_stats is not None:
                progress(session.recording_stats)
    except KeyboardInterrupt:  # Ctrl-C: the frames recorded so far are kept
        session.stop_recording()
    finally:
        session.stop()

