"""The writer thread of one recording: the only user of its open capture file, fed by a bounded
queue (ARCHITECTURE.md's FrameWriter).

:class:`FrameWriter` holds one recording's :class:`~blurvid_rig.files.capture_writer.CaptureWriter`
(created by the caller, so that a bad path is an immediate error), its queue and its counters. The
acquisition thread hands it frames with :meth:`FrameWriter.put`, which raises
:class:`WriterOverrun` when the queue stays full; :meth:`FrameWriter.end` queues the end, and the
writer drains the frames before it. A recording that ends early says why in
:attr:`FrameWriter.reason`: a failure (an exception), or a :class:`StopRequested` when the user
stopped it short of its count (not a failure: the frames are kept, the file is marked aborted).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from blurvid_rig.files.capture_writer import CaptureWriter
from hw.errors import RigError
from hw.types import Frame

_END = object()  # queued after the last frame of a recording


class WriterOverrun(RigError):
    """The writer could not keep up: the bounded frame queue stayed full."""


@dataclass(frozen=True)
class StopRequested:
    """The user ended a counted recording before its count: not a failure (the session does not
    go to ERROR and its ``wait`` returns the result), but the file is kept as 'aborted' with this
    sentence as the reason.

    >>> str(StopRequested(written=3, requested=10))
    'stopped by the user after 3 of 10 frames'
    """

    written: int
    requested: int

    def __str__(self) -> str:
        return f"stopped by the user after {self.written} of {self.requested} frames"


@dataclass
class CaptureStats:
    """Counters of one recording, updated by the threads (read them for progress)."""

    requested: int = 0  # 0: until stopped
    acquired: int = 0
    written: int = 0
    frame_id_gaps: int = 0  # frames the camera numbered but never delivered
    trigger_gaps: int = 0  # triggers fired whose frame never arrived (fetch timed out)
    queue_high_water: int = 0
    triggers_fired: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass
class CaptureResult:
    """How a recording ended."""

    path: Path
    status: str  # complete | aborted
    stats: CaptureStats
    elapsed_s: float
    error: str = ""
    frame_ids: list[int] = field(default_factory=list)


class FrameWriter:
    """One recording in progress: its capture file, bounded frame queue and counters, and the
    thread that writes the queued frames (:meth:`start`).

    Args:
        file: the open capture file; from :meth:`start` on only the writer thread uses it.
        n_frames: frames to record (0: until ended).
        live_after: live view goes on after the recording (it was started from LIVE); False:
            the devices stop at its end. The owner may change it while recording.
        queue_size: frames the writer may lag behind before a full queue makes
            :meth:`put` wait.
        overrun_timeout_s: how long :meth:`put` waits on a full queue before it raises
            :class:`WriterOverrun`.
    """

    def __init__(
        self, file: CaptureWriter, n_frames: int, *, live_after: bool, queue_size: int,
        overrun_timeout_s: float,
    ) -> None:  # fmt: skip
        self.file = file
        self.n_frames = n_frames
        self.live_after = live_after
        self.overrun_timeout_s = float(overrun_timeout_s)
        self.frames: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self.stats = CaptureStats(requested=n_frames)
        self.t0 = time.perf_counter()
        #: the controller's trigger counter at the first trigger of the recording
        self.trigger_count0: int | None = None
        #: why the recording ended early: a failure, a StopRequested; None: it ran to its end
        self.reason: BaseException | StopRequested | None = None
        self.frame_ids: list[int] = []
        self.result: CaptureResult | None = None
        #: set once :attr:`result` is there and the owner was told (``on_finished``)
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._accepting = True  # False once the end is queued: later frames stay out

    @property
    def failed(self) -> bool:
        """The recording ended by a failure (not by its count, nor by a user's stop)."""
        return self.reason is not None and not isinstance(self.reason, StopRequested)

    def start(
        self, *, on_failure: Callable[[BaseException], None],
        on_drained: Callable[[FrameWriter], None], on_finished: Callable[[FrameWriter], None],
    ) -> None:  # fmt: skip
        """Start the writer thread.

        Args:
            on_failure: called (in a thread of its own) when writing a frame fails, so that the
                owner stops firing frames that cannot be kept.
            on_drained: called once every queued frame is written, before the file is finished.
            on_finished: called once :attr:`result` is set, before :attr:`done` is.
        """
        threading.Thread(
            target=self._run, args=(on_failure, on_drained, on_finished), name="writer",
            daemon=True,
        ).start()  # fmt: skip

    def put(self, frame: Frame) -> bool:
        """Queue a frame (the acquisition thread); False when the recording has ended already.

        Raises:
            WriterOverrun: the queue stayed full for ``overrun_timeout_s``.
        """
        with self._lock:
            if not self._accepting:  # the recording ended while this frame was on its way
                return False
            try:
                self.frames.put(frame, timeout=self.overrun_timeout_s)
            except queue.Full as e:
                raise WriterOverrun(
                    f"The writer fell behind: {self.frames.maxsize} frames waited for more than "
                    f"{self.overrun_timeout_s:g} s. Recording stopped so that no frame is lost "
                    "silently; use a faster disk, less compression, or a lower frame rate."
                ) from e
            self.stats.acquired += 1
        self.stats.queue_high_water = max(self.stats.queue_high_water, self.frames.qsize())
        return True

    def end(self, reason: BaseException | StopRequested | None = None) -> None:
        """Queue the end after the frames already queued (any thread). Idempotent: the first
        reason stays."""
        with self._lock:
            if not self._accepting:  # its end is already queued (count reached, or a failure)
                return
            if self.reason is None:
                self.reason = reason
            self._accepting = False
            self.frames.put(_END)

    def _run(
        self, on_failure: Callable[[BaseException], None],
        on_drained: Callable[[FrameWriter], None], on_finished: Callable[[FrameWriter], None],
    ) -> None:  # fmt: skip
        try:
            while True:
                item = self.frames.get()
                if item is _END:
                    break
                self.file.append(item)
                self.frame_ids.append(item.frame_id)
                self.stats.written += 1
        except BaseException as e:  # disk full, permissions...: stop firing frames we cannot keep
            self.reason = self.reason or e
            threading.Thread(target=on_failure, args=(e,), daemon=True).start()
            while self.frames.get() is not _END:  # never leave the acquisition blocked
                pass
        reason = self.reason
        on_drained(self)
        self.result = self._finish_file(reason)
        on_finished(self)
        self.done.set()

    def _finish_file(self, reason: BaseException | StopRequested | None) -> CaptureResult:
        """Close the file (complete) or abort it with the reason; the result."""
        try:
            self.file.set_counters(self.stats.to_dict())
            if reason is None:
                path, status = self.file.close(), "complete"
            else:
                text = str(reason) or type(reason).__name__
                if not isinstance(reason, StopRequested):
                    text = f"{type(reason).__name__}: {text}"
                path, status = self.file.abort(text), "aborted"
        except RigError as e:
            path, status = self.file.path, "aborted"
            self.reason = self.reason or e
        return CaptureResult(
            path=path,
            status=status,
            stats=self.stats,
            elapsed_s=time.perf_counter() - self.t0,
            error="" if self.reason is None else str(self.reason),
            frame_ids=self.frame_ids,
        )
