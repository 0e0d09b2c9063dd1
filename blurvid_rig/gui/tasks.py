"""Run blocking calls (device I/O, file I/O) off the GUI thread and hand results back to it.

The GUI thread never waits on a device or a file: :class:`TaskRunner` runs each call on a
``QThreadPool`` worker and delivers ``done(result)`` or ``failed(message)`` through queued signals,
so the callbacks run on the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class _Signals(QObject):
    done = Signal(object)
    failed = Signal(str)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], signals: _Signals) -> None:
        super().__init__()
        self.fn, self.signals = fn, signals
        self.setAutoDelete(True)

    def run(self) -> None:  # on a pool thread
        try:
            result = self.fn()
        except Exception as e:  # reported to the user, never swallowed
            log.debug("background task failed", exc_info=True)
            self.signals.failed.emit(str(e) or type(e).__name__)
        else:
            self.signals.done.emit(result)


class TaskRunner(QObject):
    """Runs callables on a private thread pool (one at a time by default: device calls are
    ordered); ``busy`` tells whether one is in flight."""

    def __init__(self, parent: QObject | None = None, max_threads: int = 1) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._in_flight = 0
        self._keep: set[_Signals] = set()

    @property
    def busy(self) -> bool:
        return self._in_flight > 0

    def run(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """Run ``fn()`` in the background; ``on_done(result)`` or ``on_error(message)`` follow on
        the GUI thread."""
        signals = _Signals()  # lives on the GUI thread: its slots run there
        self._keep.add(signals)
        self._in_flight += 1

        def finish() -> None:
            self._in_flight -= 1
            self._keep.discard(signals)

        def done(result: object) -> None:
            finish()
            if on_done is not None:
                on_done(result)

        def failed(message: str) -> None:
            finish()
            if on_error is not None:
                on_error(message)

        signals.done.connect(done)
        signals.failed.connect(failed)
        self.pool.start(_Task(fn, signals))

    def wait(self, timeout_ms: int = 10_000) -> bool:
        """Block until the pool is idle (for shutdown and tests)."""
        return self.pool.waitForDone(timeout_ms)
