"""The life of a blurvid-rig file being written: ``.partial`` in SWMR mode, then renamed.

Every writer (capture, reconstruction) extends :class:`SwmrWriter`, which holds the lifecycle they
share:

1. refuse a taken name (nothing is ever overwritten), create the file with its NXroot and
   ``/entry``, and let the subclass write its layout; either under a hidden ``.<name>.creating``
   that becomes ``<name>.partial`` only once it is whole on disk (``staged``), or directly as
   ``<name>.partial``;
2. append in SWMR mode, flushing every ``flush_every`` items (what a crash can lose at most);
3. finish: close the SWMR handle, reopen the file in ordinary ``r+`` mode to set ``status`` and
   ``end_time`` (a SWMR writer must not touch attributes while readers may be attached), fsync, and
   rename it to its final name; :meth:`SwmrWriter.abort` does the same with status ``aborted``.

A writer killed at any moment leaves a ``.partial`` file that the readers open with everything up
to the last flush.
"""

from __future__ import annotations

import os
import uuid as uuid_mod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import h5py

from blurvid_rig.files.h5io import (
    H5_LIBVER,
    CaptureWriteError,
    entry_group,
    now_iso,
    root_attrs,
    write_field,
)


def partial_path(final: Path) -> Path:
    """Name a file carries while it is being written: ``<final>.partial``."""
    return final.with_name(final.name + ".partial")


def creating_path(final: Path) -> Path:
    """Name a file carries while its metadata is written, before it becomes ``.partial``: a
    hidden ``.<final>.creating`` (a file killed then holds no frames; nothing reads it)."""
    return final.with_name("." + final.name + ".creating")


def refuse_existing(final: Path) -> None:
    """Refuse to start a file whose final or partial name is taken (nothing is ever overwritten)."""
    for p in (final, partial_path(final)):
        if p.exists():
            raise CaptureWriteError(
                f"{p} already exists; blurvid-rig never overwrites a file. Choose another name, or "
                "move the old file away first (a '.partial' file is what a crashed capture left: "
                "open it with CaptureFile.open to recover its frames)."
            )


def finalise(current: Path, final: Path, status: str, reason: str = "") -> Path:
    """Mark a closed file ``status``, stamp ``end_time`` and rename it to its final name.

    A SWMR writer must not add or change attributes while readers may be attached, so the writer
    closes its SWMR handle first and this reopens the file in ordinary ``r+`` mode to write the
    last metadata. The file is fsynced before the rename and the directory after it.

    Args:
        current: path of the closed file (normally ``<final>.partial``).
        final: name to give it.
        status: ``"complete"`` or ``"aborted"``.
        reason: why the file was aborted (stored as ``@status_reason``).

    Returns:
        The final path.

    Raises:
        CaptureWriteError: the final name is taken (the file stays at ``current``).
    """
    with h5py.File(current, "r+", libver=H5_LIBVER) as f:
        entry = f["entry"]
        if "end_time" in entry:
            del entry["end_time"]
        write_field(entry, "end_time", now_iso())
        f.attrs["status"] = status
        if reason:
            f.attrs["status_reason"] = reason
    with open(current, "rb+") as fh:
        os.fsync(fh.fileno())
    if current == final:
        return final
    if final.exists():
        raise CaptureWriteError(
            f"Cannot rename {current} to {final}: that name is taken. The data are safe in "
            f"{current}; rename it by hand."
        )
    os.replace(current, final)
    try:
        dir_fd = os.open(final.parent, os.O_RDONLY)
    except OSError:
        return final
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename itself has happened
    finally:
        os.close(dir_fd)
    return final


class SwmrWriter:
    """Base of the writers: one file written in SWMR mode as ``<final>.partial``, renamed when done.

    Use a writer as a context manager: leaving the ``with`` normally calls :meth:`close`, an
    exception calls :meth:`abort` (what was written is kept, ``status`` becomes ``"aborted"``);
    the file is never deleted once created. Exactly one thread may use a writer.

    A subclass checks its arguments, calls ``super().__init__`` and then :meth:`_create` with its
    layout; its ``append`` starts with :meth:`_check_open`, writes, calls :meth:`_appended` and
    turns a failed disk write into :meth:`_write_failed`. It overrides :meth:`_flush_buffers` when
    it holds rows in memory between flushes, and :meth:`_before_close` for what is written last.

    Args:
        path: final file name.
        flush_every: flush to disk every this many appended items.

    Raises:
        CaptureWriteError: ``flush_every`` is not a positive integer.
    """

    #: The abort reason :meth:`close` stores when a write had failed.
    BROKEN_REASON = "a write failed"
    #: What one appended item is, and how the file is read back (named when finishing fails).
    ITEM = "frame"
    READER = "CaptureFile.open"

    def __init__(self, path: str | Path, *, flush_every: int) -> None:
        self._final = Path(path)
        self._partial = partial_path(self._final)
        if int(flush_every) != flush_every or flush_every < 1:
            raise CaptureWriteError(f"flush_every must be a positive integer, got {flush_every!r}.")
        self._flush_every = int(flush_every)
        self._uuid = str(uuid_mod.uuid4())
        self._n = 0
        self._state = "open"  # open | broken | closed
        self._closed_path: Path | None = None

    def _create(
        self,
        kind: str,
        title: str,
        layout: Callable[[h5py.Group, str], None],
        *,
        staged: bool,
    ) -> None:
        """Create the file: root attributes, ``/entry``, then ``layout(entry, start_time)``.

        Args:
            kind: the root ``@kind`` (``"capture"``, ``"reconstruction"``).
            title: ``/entry/title``.
            layout: writes the rest of the metadata and creates the growing datasets.
            staged: write under the hidden :func:`creating_path`, enter SWMR mode, fsync, and
                only then rename to ``.partial`` (a ``.partial`` file opens from its first byte
                on). Otherwise the file is created as ``.partial`` and the subclass enters SWMR
                mode itself (when its dataset shapes are known only from the first item).

        Raises:
            CaptureWriteError: the final or partial name is taken.
            Anything ``layout`` raises, after the file is closed and removed (nothing was
            recorded in it yet, so the name stays free).
        """
        refuse_existing(self._final)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        target = creating_path(self._final) if staged else self._partial
        self._file = h5py.File(target, "w", libver=H5_LIBVER)
        try:
            start = now_iso()
            root_attrs(self._file, kind=kind, uuid=self._uuid, time=start)
            layout(entry_group(self._file, title=title, start_time=start), start)
            if staged:
                self._file.swmr_mode = True
            self._file.flush()
            if staged:
                os.fsync(self._file.id.get_vfd_handle())
                os.replace(target, self._partial)
        except BaseException:
            self._file.close()
            target.unlink(missing_ok=True)
            self._partial.unlink(missing_ok=True)
            raise

    # -- properties -------------------------------------------------------------------------

    @property
    def n_frames(self) -> int:
        """Items appended so far (frames of a capture, results of a reconstruction)."""
        return self._n

    @property
    def path(self) -> Path:
        """Where the file is now: ``<final>.partial`` while open, the final name once closed."""
        return self._closed_path or self._partial

    @property
    def final_path(self) -> Path:
        """Name the file gets when closed or aborted."""
        return self._final

    @property
    def uuid(self) -> str:
        """UUID of the file (root ``@uuid``)."""
        return self._uuid

    # -- appending --------------------------------------------------------------------------

    def _check_open(self, advice: str = "") -> None:
        """Raise CaptureWriteError unless the writer is open (``advice`` ends the sentence)."""
        if self._state != "open":
            raise CaptureWriteError(
                f"Cannot append to {self.path}: the writer is {self._state}.{advice}"
            )

    def _appended(self) -> None:
        """Count one more item on disk; flush every ``flush_every`` items."""
        self._n += 1
        if self._n % self._flush_every == 0:
            self._flush_buffers()
            self._file.flush()

    def _write_failed(self, what: str, e: BaseException, advice: str) -> CaptureWriteError:
        """Mark the writer broken; returns the error to raise (``from e``) for a failed write."""
        self._state = "broken"
        return CaptureWriteError(f"Writing {what} to {self._partial} failed ({e}); {advice}")

    def _flush_buffers(self) -> None:
        """Write what the subclass holds in memory; called before every flush and at the end."""

    def _before_close(self) -> None:
        """Last writes before the SWMR handle is closed (only when no write had failed)."""
        self._flush_buffers()

    def flush(self) -> None:
        """Flush everything appended so far to disk (also done every ``flush_every`` items)."""
        if self._state == "open":
            self._flush_buffers()
            self._file.flush()

    # -- finishing --------------------------------------------------------------------------

    def close(self, note: str = "") -> Path:
        """Finish the file: ``status="complete"``, ``end_time``, rename to the final name.

        Args:
            note: stored as ``@status_reason`` when given (e.g. which source frames were skipped).

        Returns:
            The final path. Calling it again returns the same path. A writer whose write failed
            is aborted instead (:attr:`BROKEN_REASON`).
        """
        if self._closed_path is not None:
            return self._closed_path
        if self._state == "broken":
            return self.abort(self.BROKEN_REASON)
        return self._finish("complete", note)

    def abort(self, reason: str) -> Path:
        """Stop but keep the file: ``status="aborted"``, ``@status_reason``, final name.

        Args:
            reason: one sentence saying why (stored in the file).

        Returns:
            The final path.

        Raises:
            CaptureWriteError: the status could not be written (the file is still renamed and
                keeps ``status="partial"``; every flushed item is readable).
        """
        if self._closed_path is not None:
            return self._closed_path
        return self._finish("aborted", reason or "aborted")

    def _finish(self, status: str, reason: str) -> Path:
        was_open = self._state == "open"
        self._state = "closed"
        try:
            if was_open:
                self._before_close()
            self._file.close()
            self._closed_path = finalise(self._partial, self._final, status, reason)
        except CaptureWriteError:
            self._closed_path = self._partial
            raise
        except (OSError, KeyError, RuntimeError) as e:
            self._closed_path = self._partial
            if not self._final.exists() and self._partial.exists():
                self._partial.rename(self._final)
                self._closed_path = self._final
            raise CaptureWriteError(
                f"Could not mark {self._closed_path} as {status} ({e}); it keeps status 'partial' "
                f"and every flushed {self.ITEM} is readable with {self.READER}."
            ) from e
        return self._closed_path

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(f"{exc_type.__name__ if exc_type else 'error'}: {exc}")
