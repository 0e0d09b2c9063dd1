"""Capture files: one coded-exposure capture per HDF5 file, self-describing, crash-safe.

The layout (NeXus base classes, units on every number, a complete settings snapshot) is documented
field by field in ``docs/FORMAT.md``. In short::

    /                     NXroot  @status = partial | complete | aborted, @uuid, @schema_version
    /entry                NXentry start_time, end_time, title, program_name
    /entry/instrument/camera         NXdetector  data[n, y, x], image_key[n], camera fields
    /entry/instrument/camera/genicam NXcollection node-map snapshot (attributes)
    /entry/instrument/camera/frame_log           provenance columns, one row per frame
    /entry/instrument/shutter        NXcollection code[k], chip_duration, metrics, status
    /entry/calibration    NXcollection
    /entry/data           NXdata  @signal=data (hard link to camera/data)
    /entry/settings       NXcollection settings as attributes (+ /entry/settings_json)

Crash safety: the writer works on ``<final>.partial`` in SWMR mode and flushes every
``flush_every`` frames; a writer killed at any moment leaves a file that :meth:`CaptureFile.open`
reads with every frame up to the last flush. :meth:`CaptureWriter.close` (or ``abort``) closes the
SWMR handle, reopens the file in ordinary ``r+`` mode to set ``status`` and ``end_time`` (a SWMR
writer must not touch attributes while readers may be attached), and renames it to its final name.

Reconstruction files live in :mod:`blurvid_rig.recon_file` (which imports this module, not the
other way round); :func:`blurvid_rig.describe.describe_file` summarises either kind.
"""

from __future__ import annotations

import os
import re
import uuid as uuid_mod
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from blurvid_rig.h5util import (
    H5_LIBVER,
    H5_READ_ERRORS,
    STATUSES,
    UNWRITTEN,
    CaptureFormatError,
    CaptureWriteError,
    allocated_frames,
    check_finite,
    check_numeric_finite,
    compression_kwargs,
    creating_path,
    damaged_file_error,
    entry_group,
    finalise,
    new_group,
    now_iso,
    open_h5,
    parse_schema,
    partial_path,
    py_value,
    read_attr_tree,
    read_camera_info,
    read_camera_settings,
    read_code,
    read_num,
    read_shutter_info,
    read_shutter_status,
    read_str,
    refuse_existing,
    require,
    root_attrs,
    to_json,
    units_for,
    write_attr_tree,
    write_camera,
    write_field,
    write_shutter,
)
from hw.types import (
    CameraInfo,
    CameraSettings,
    Frame,
    ShutterCode,
    ShutterInfo,
    ShutterStatus,
)

__all__ = [
    "CaptureFile",
    "CaptureFormatError",
    "CaptureWriteError",
    "CaptureWriter",
    "DamagedFrameError",
    "make_capture_path",
]

CAMERA = "/entry/instrument/camera"
SHUTTER = "/entry/instrument/shutter"

#: frame_log columns: name -> (dtype, fill value, units). host_time_ns is written last in each
#: row, so a row whose host_time_ns still holds the fill value was never completed.
LOG_COLUMNS: dict[str, tuple[str, Any, str | None]] = {
    "frame_id": ("i8", UNWRITTEN, "1"),
    "camera_timestamp_ns": ("i8", UNWRITTEN, "ns"),
    "trigger_index": ("i8", UNWRITTEN, "1"),
    "exposure_us": ("f8", 0.0, "us"),
    "code_sha": ("S64", b"", None),
    "host_time_ns": ("i8", UNWRITTEN, "ns"),
}

IMAGE_KEYS = {0: "coded", 1: "flat", 2: "dark"}


def make_capture_path(directory: str | Path, name: str, when: datetime | None = None) -> Path:
    """Final path of a new capture: ``<directory>/<yymmdd_HHMMSS>_<name>.h5``.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` in ``name`` become ``_``.

    Args:
        directory: folder of the file.
        name: short description of the capture.
        when: time stamp of the name (default: now, local time).

    Returns:
        The path (the file is not created).

    Raises:
        CaptureWriteError: ``name`` has no usable character.

    >>> make_capture_path("/data", "spinning fan", datetime(2025, 3, 1, 14, 2, 3)).as_posix()
    '/data/250301_140203_spinning_fan.h5'
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    if not safe:
        raise CaptureWriteError(
            f"Capture name {name!r} has no letter or digit; give the capture a short name such as "
            "'spinning_fan'."
        )
    when = when or datetime.now()
    return Path(directory) / f"{when:%y%m%d_%H%M%S}_{safe}.h5"


# ============================================================================================
# Writer
# ============================================================================================


class CaptureWriter:
    """Write one capture to ``<path>.partial`` in SWMR mode; rename to ``path`` on close.

    Use it as a context manager: leaving the ``with`` normally calls :meth:`close`, an exception
    calls :meth:`abort` (the frames are kept, ``status`` becomes ``"aborted"``), and the file is
    never deleted. Exactly one thread may use a writer.

    Args:
        path: final file name, normally from :func:`make_capture_path`.
        camera_info: identity and geometry of the camera.
        camera_settings: settings the frames were taken with.
        code: exposure code played by the shutter.
        shutter_info: identity of the shutter controller.
        shutter_status: the controller's own report (echo of the code), if available.
        frame_shape: ``(height, width)`` of every frame.
        dtype: integer dtype of every frame (frames are stored as they come, never converted).
        genicam_nodes: node-map snapshot, name -> scalar.
        settings: app and rig settings snapshot (nested dict of scalars, strings and lists).
        code_metrics: figures of merit of the code (e.g. ``min_abs_dft``, ``spectral_flatness``).
        calibration: name -> array, scalar, string or nested dict, stored under /entry/calibration.
        title: free text.
        flush_every: flush to disk every this many frames (what a crash can lose at most).
        compression: ``"lz4"`` (Bitshuffle+LZ4 via hdf5plugin), ``"gzip"`` or None.

    Raises:
        CaptureWriteError: a value cannot be stored, or the file name is taken.

    Example::

        path = make_capture_path(folder, "fan")
        with CaptureWriter(path, camera_info=ci, camera_settings=cs, code=code, shutter_info=si,
                           frame_shape=(h, w), dtype=np.uint16) as w:
            for frame in frames:
                w.append(frame)
        # w.path is now the final .h5
    """

    def __init__(
        self,
        path: str | Path,
        *,
        camera_info: CameraInfo,
        camera_settings: CameraSettings,
        code: ShutterCode,
        shutter_info: ShutterInfo,
        shutter_status: ShutterStatus | None = None,
        frame_shape: tuple[int, int],
        dtype: npt.DTypeLike,
        genicam_nodes: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        code_metrics: Mapping[str, float] | None = None,
        calibration: Mapping[str, Any] | None = None,
        title: str = "",
        flush_every: int = 8,
        compression: str | None = "lz4",
        dmd: Mapping[str, Any] | None = None,
    ) -> None:
        self._final = Path(path)
        self._partial = partial_path(self._final)
        self._shape = _check_shape(frame_shape)
        self._dtype = np.dtype(dtype)
        if self._dtype.kind not in "iu":
            raise CaptureWriteError(
                f"Frame dtype {self._dtype} is not an integer type; a capture stores raw camera "
                "frames (uint8/uint16) unconverted."
            )
        if int(flush_every) != flush_every or flush_every < 1:
            raise CaptureWriteError(f"flush_every must be a positive integer, got {flush_every!r}.")
        self._flush_every = int(flush_every)
        comp = compression_kwargs(compression)
        settings_json = to_json(dict(settings or {}), "settings")
        refuse_existing(self._final)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._uuid = str(uuid_mod.uuid4())
        self._n = 0
        self._pending: list[tuple[Any, ...]] = []  # frame_log rows waiting for the next flush
        self._rows_on_disk = 0
        self._state = "open"  # open | broken | closed
        self._closed_path: Path | None = None
        self._counters: dict[str, int] = {}

        # the metadata is written under a hidden temporary name and the file becomes .partial
        # only once it is whole on disk: a .partial file opens from its first byte on
        creating = creating_path(self._final)
        self._file = h5py.File(creating, "w", libver=H5_LIBVER)
        try:
            start = now_iso()
            root_attrs(self._file, kind="capture", uuid=self._uuid, time=start)
            entry = entry_group(self._file, title=title, start_time=start)
            instrument = new_group(entry, "instrument", "NXinstrument")
            camera = write_camera(instrument, camera_info, camera_settings, genicam_nodes or {})
            self._data = camera.create_dataset(
                "data",
                shape=(0, *self._shape),
                maxshape=(None, *self._shape),
                chunks=(1, *self._shape),
                dtype=self._dtype,
                fillvalue=0,
                **comp,
            )
            self._data.attrs["units"] = "counts"
            self._data.attrs["interpretation"] = "image"
            self._image_key = camera.create_dataset(
                "image_key", shape=(0,), maxshape=(None,), chunks=(512,), dtype="i1", fillvalue=-1
            )
            self._image_key.attrs["units"] = "1"
            log = new_group(camera, "frame_log", "NXcollection")
            self._log: dict[str, h5py.Dataset] = {}
            for name, (dt, fill, units) in LOG_COLUMNS.items():
                ds = log.create_dataset(
                    name, shape=(0,), maxshape=(None,), chunks=(512,), dtype=dt, fillvalue=fill
                )
                if units is not None:
                    ds.attrs["units"] = units
                self._log[name] = ds
            write_shutter(instrument, shutter_info, code, shutter_status, code_metrics)
            if dmd:
                _write_dmd(instrument["shutter"], dmd)
            if calibration:
                _write_dataset_tree(
                    new_group(entry, "calibration", "NXcollection"), calibration, "calibration"
                )
            nxdata = new_group(entry, "data", "NXdata")
            nxdata.attrs["signal"] = "data"
            nxdata["data"] = self._data  # hard link
            sgroup = new_group(entry, "settings", "NXcollection")
            write_attr_tree(sgroup, settings or {}, "settings")
            write_field(entry, "settings_json", settings_json)
            self._file.swmr_mode = True
            self._file.flush()
            os.fsync(self._file.id.get_vfd_handle())
            os.replace(creating, self._partial)
        except BaseException:
            self._file.close()
            creating.unlink(missing_ok=True)  # nothing recorded yet; do not block the name
            self._partial.unlink(missing_ok=True)
            raise

    # -- properties -------------------------------------------------------------------------

    @property
    def n_frames(self) -> int:
        """Frames appended so far."""
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

    # -- writing ----------------------------------------------------------------------------

    def append(self, frame: Frame, image_key: int = 0) -> int:
        """Append one frame and its provenance row.

        Args:
            frame: the frame; its image must have exactly the writer's shape and dtype.
            image_key: 0 = coded sample, 1 = flat, 2 = dark.

        Returns:
            Index of the frame in the file.

        Raises:
            CaptureWriteError: wrong shape/dtype/key, writer closed, or the disk write failed.
        """
        if self._state != "open":
            raise CaptureWriteError(
                f"Cannot append to {self.path}: the writer is {self._state}. Start a new capture."
            )
        img = frame.image
        if not isinstance(img, np.ndarray) or img.shape != self._shape:
            shape = getattr(img, "shape", type(img).__name__)
            raise CaptureWriteError(
                f"Frame {frame.frame_id} has shape {shape} but this capture was opened for "
                f"{self._shape} (height, width); a capture holds frames of one size only. "
                "Start a new capture after changing the ROI."
            )
        if img.dtype != self._dtype:
            raise CaptureWriteError(
                f"Frame {frame.frame_id} has dtype {img.dtype} but this capture stores "
                f"{self._dtype}; frames are stored unconverted, so start a new capture after "
                "changing the pixel format."
            )
        if image_key not in IMAGE_KEYS:
            raise CaptureWriteError(
                f"image_key {image_key!r} is not one of {IMAGE_KEYS} (0 coded, 1 flat, 2 dark)."
            )
        sha = frame.code_sha256.encode("ascii", "replace")
        if len(sha) > 64:
            raise CaptureWriteError(
                f"Frame {frame.frame_id} has a code hash of {len(sha)} characters; a SHA-256 hex "
                "digest has 64."
            )
        ints = (frame.frame_id, frame.camera_timestamp_ns, frame.host_time_ns, frame.trigger_index)
        if any(int(v) == UNWRITTEN for v in ints):
            raise CaptureWriteError(
                f"Frame {frame.frame_id} carries the value {UNWRITTEN}, which capture files "
                "reserve to mark unwritten rows; the camera driver sent a bogus id or time stamp."
            )
        i = self._n
        try:
            self._data.resize(i + 1, axis=0)
            self._data[i] = img
            self._pending.append(
                (
                    image_key,
                    frame.frame_id,
                    frame.camera_timestamp_ns,
                    frame.trigger_index,
                    frame.exposure_us,
                    sha,
                    frame.host_time_ns,
                )
            )
            self._n = i + 1
            if self._n % self._flush_every == 0:
                self._write_rows()
                self._file.flush()
        except (OSError, ValueError, RuntimeError) as e:
            self._state = "broken"
            raise CaptureWriteError(
                f"Writing frame {i} to {self._partial} failed ({e}); is the disk full or gone? "
                "The frames flushed before it are safe: abort() the writer to keep them."
            ) from e
        return i

    def flush(self) -> None:
        """Flush everything appended so far to disk (also done every ``flush_every`` frames)."""
        if self._state == "open":
            self._write_rows()
            self._file.flush()

    def _write_rows(self) -> None:
        """Write the buffered image_key and frame_log rows, one slice per column.

        Rows wait in memory until a flush: a crash keeps only flushed frames anyway, and one
        write per column per flush is much cheaper than seven small writes per frame. Each row is
        written after its image, and host_time_ns last, so a row on disk implies its frame.
        """
        if not self._pending:
            return
        k0 = self._rows_on_disk
        k1 = k0 + len(self._pending)
        columns = list(zip(*self._pending, strict=True))
        targets = [self._image_key, *self._log.values()]  # same order as the row tuples
        for ds, values in zip(targets, columns, strict=True):
            ds.resize(k1, axis=0)
            ds[k0:k1] = np.asarray(values, dtype=ds.dtype)
        self._pending.clear()
        self._rows_on_disk = k1

    def set_counters(self, counters: Mapping[str, int]) -> None:
        """Acquisition counters (triggers fired, frames lost...) stored with the frame log when
        the file is finished, as integer attributes of ``frame_log``."""
        self._counters = {str(k): int(v) for k, v in counters.items()}

    def close(self) -> Path:
        """Finish the capture: ``status="complete"``, ``end_time``, rename to the final name.

        Returns:
            The final path. Calling it again returns the same path.
        """
        if self._closed_path is not None:
            return self._closed_path
        if self._state == "broken":
            return self.abort("a write failed while recording")
        return self._finish("complete", "")

    def abort(self, reason: str) -> Path:
        """Stop the capture but keep it: ``status="aborted"``, ``@status_reason``, final name.

        Args:
            reason: one sentence saying why (stored in the file).

        Returns:
            The final path.

        Raises:
            CaptureWriteError: the status could not be written (the file is still renamed and
                keeps ``status="partial"``; its flushed frames are readable).
        """
        if self._closed_path is not None:
            return self._closed_path
        return self._finish("aborted", reason or "aborted")

    def _finish(self, status: str, reason: str) -> Path:
        was_open = self._state == "open"
        self._state = "closed"
        try:
            if was_open:
                self._write_rows()
                if self._counters:
                    log_attrs = self._file[f"{CAMERA}/frame_log"].attrs
                    for k, v in self._counters.items():
                        log_attrs[k] = np.int64(v)
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
                "and every flushed frame is readable with CaptureFile.open."
            ) from e
        return self._closed_path

    def __enter__(self) -> CaptureWriter:
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


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise CaptureWriteError(f"frame_shape must be (height, width), got {shape!r}.") from None
    if h < 1 or w < 1 or (h, w) != tuple(shape):
        raise CaptureWriteError(f"frame_shape must be two positive integers, got {shape!r}.")
    return h, w


def _write_dataset_tree(group: h5py.Group, tree: Mapping[str, Any], where: str) -> None:
    """Store name -> array/number/string (nested dicts as subgroups) as datasets.

    Used for calibration entries; units come from the name's suffix, ``""`` when unstated.
    """
    for name, value in tree.items():
        path = f"{where}[{name!r}]"
        if not isinstance(name, str) or not name or "/" in name:
            raise CaptureWriteError(f"{path}: names are non-empty strings without '/'.")
        if isinstance(value, Mapping):
            _write_dataset_tree(new_group(group, name, "NXcollection"), value, path)
            continue
        if not isinstance(value, str):
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise CaptureWriteError(
                    f"{path} has dtype {arr.dtype}; entries are numbers, numeric arrays, strings "
                    "or nested dicts."
                )
            check_finite(arr, path)
            value = arr
        write_field(group, name, value, units_for(name) or "")


def _write_dmd(shutter: h5py.Group, dmd: Mapping[str, Any]) -> None:
    """``shutter/dmd``: the per-pixel masks (uint8 0/1, gzip), the DMD -> sensor mapping and the
    masks' hash."""
    masks = np.asarray(dmd["masks"])
    if masks.ndim != 3:
        raise CaptureWriteError(f"DMD masks must be (K, rows, columns); got {masks.shape}.")
    g = new_group(shutter, "dmd", "NXcollection")
    ds = g.create_dataset("masks", data=masks.astype(np.uint8), compression="gzip",
                          compression_opts=4, chunks=(1, *masks.shape[1:]))
    ds.attrs["interpretation"] = "image"
    mapping = dmd.get("dmd_to_camera")
    mapping = np.eye(3) if mapping is None else np.asarray(mapping, np.float64)
    check_finite(mapping, "dmd_to_camera")
    g.create_dataset("dmd_to_camera", data=mapping)
    write_field(g, "masks_sha256", str(dmd.get("masks_sha256", "")))
    write_field(g, "dmd_to_camera_source", str(dmd.get("dmd_to_camera_source", "")))
    write_field(g, "mode", "per-pixel")


def _read_dmd(g: h5py.Group) -> dict[str, Any]:
    return {
        "masks": g["masks"][()].astype(bool),
        "dmd_to_camera": np.asarray(g["dmd_to_camera"][()], np.float64),
        "masks_sha256": py_value(g["masks_sha256"][()]) if "masks_sha256" in g else "",
    }


def _read_dataset_tree(group: h5py.Group) -> dict[str, Any]:
    """Inverse of :func:`_write_dataset_tree`: scalars as Python values, arrays as numpy."""
    out: dict[str, Any] = {}
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            out[name] = _read_dataset_tree(obj)
        else:
            value = obj[()]
            out[name] = py_value(value) if np.ndim(value) == 0 else value
    return out


# ============================================================================================
# Reader
# ============================================================================================


class DamagedFrameError(CaptureFormatError):
    """One frame's data cannot be read (a damaged chunk); the rest of the file can.

    Attributes:
        index: the frame's index in the file.
    """

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class CaptureFile:
    """Read a capture file: metadata as typed values, frames one at a time.

    Open with :meth:`open`; partial (crashed) and aborted files open too, with ``n_frames`` the
    number of frames that could be recovered and a sentence in :attr:`recovery_note`.

    Attributes:
        path, uuid, title, schema_version: identity of the file.
        status, status_reason: ``complete`` | ``partial`` | ``aborted`` and why it was aborted.
        start_time, end_time: ISO-8601 strings (``end_time`` is None in a partial file).
        n_frames, recovery_note, opened_with: frames recovered, how, and how the file was opened
            (``normal`` or ``swmr`` for a file a crashed writer left marked open).
        code, code_metrics, echo_verified: the exposure code (ShutterCode) and its metrics.
        camera_info, camera_settings, shutter_info, shutter_status: the typed hardware records.
        genicam, settings, calibration: node-map snapshot, settings dict, calibration dict.
        frame_log: column name -> array of length n_frames; image_key: int8 array.
    """

    def __init__(self, f: h5py.File, path: Path, opened_with: str) -> None:
        """Private: use :meth:`CaptureFile.open`."""
        self._f = f
        self.path = path
        self.opened_with = opened_with

    @classmethod
    def open(cls, path: str | Path) -> CaptureFile:
        """Open and validate a capture file (complete, partial or aborted).

        Args:
            path: the ``.h5`` (or ``.h5.partial``) file.

        Returns:
            An open CaptureFile; close it (or use ``with``).

        Raises:
            CaptureFormatError: not HDF5, truncated, not a blurvid-rig capture, newer schema,
                missing required data, invalid code, non-integer frames, NaN/inf metadata.
        """
        path = Path(path)
        f, how = open_h5(path)
        obj = cls(f, path, how)
        try:
            obj._load()
        except CaptureFormatError:
            f.close()
            raise
        except H5_READ_ERRORS as e:
            f.close()
            raise damaged_file_error(path, e) from e
        return obj

    # -- loading ----------------------------------------------------------------------------

    def _load(self) -> None:
        f, path = self._f, self.path
        self.schema_version = parse_schema(f, path, "capture")
        self.uuid = str(py_value(f.attrs.get("uuid", "")))
        self.status = str(py_value(f.attrs.get("status", "")))
        if self.status not in STATUSES:
            raise CaptureFormatError(
                f"{path} has status {self.status!r}; expected one of {STATUSES}. The file was "
                "edited or damaged."
            )
        self.status_reason = str(py_value(f.attrs.get("status_reason", "")))
        entry = require(f, "entry", path, "the NXentry group")
        if py_value(entry.attrs.get("NX_class")) != "NXentry":
            raise CaptureFormatError(f"{path}: /entry is not an NXentry group; the file is broken.")
        self.title = read_str(entry, "title")
        self.start_time = read_str(entry, "start_time")
        self.end_time = read_str(entry, "end_time") or None
        cam = require(f, CAMERA, path, "the camera NXdetector")
        data = require(f, f"{CAMERA}/data", path, "the frame data")
        if not isinstance(data, h5py.Dataset) or data.ndim != 3:
            raise CaptureFormatError(
                f"{path}: {CAMERA}/data must be a 3-D dataset [frame, y, x]; the file is malformed."
            )
        if data.dtype.kind not in "iu":
            nan = ""
            frames = range(data.shape[0])
            if data.dtype.kind == "f" and any(np.isnan(data[i]).any() for i in frames):
                nan = " and holds NaN values"
            raise CaptureFormatError(
                f"{path}: frame data must be integer raw camera counts, but it is {data.dtype}"
                f"{nan}. This is not a raw capture (processed data belongs in a .recon.h5 file)."
            )
        self._data = data
        sh = require(f, SHUTTER, path, "the shutter description")
        if "code" not in sh:
            raise CaptureFormatError(
                f"{path} has no exposure code ({SHUTTER}/code is missing), so it cannot be "
                "reconstructed; the file was written by a broken tool or edited."
            )
        check_numeric_finite(entry, path, frozenset({data.name, "/entry/data/data"}))
        self.code = read_code(sh, path)
        #: per-pixel coding: {"masks": (K, rows, cols) bool, "dmd_to_camera": (3, 3), ...} or {}
        self.dmd = _read_dmd(sh["dmd"]) if "dmd" in sh else {}
        self.code_metrics = {
            k: float(v[()]) for k, v in sh.get("metrics", {}).items() if isinstance(v, h5py.Dataset)
        }
        self.shutter_info = read_shutter_info(sh, path)
        self.shutter_status = read_shutter_status(sh, path)
        self.echo_verified = bool(sh["echo_verified"][()]) if "echo_verified" in sh else False
        self.camera_info = read_camera_info(cam, path)
        self.camera_settings = read_camera_settings(cam, path)
        gen = cam.get("genicam")
        gen_attrs = gen.attrs.items() if gen is not None else ()
        self.genicam = {k: py_value(v) for k, v in gen_attrs if k != "NX_class"}
        self.settings = _read_settings(entry)
        cal = entry.get("calibration")
        self.calibration = _read_dataset_tree(cal) if cal is not None else {}
        self._recover(cam, data)
        self._check_code_agrees(sh)

    def _check_code_agrees(self, sh: h5py.Group) -> None:
        """The stored code must be the one the rest of the file names: ``n_chips``, the
        controller's echo (``status``) and the code hash of every recorded frame. A code that
        disagrees would be reconstructed silently wrong."""
        code, path = self.code, self.path
        what = []
        if "n_chips" in sh:
            n = int(read_num(sh, "n_chips", path))
            if n != code.n_chips:
                what.append(f"{SHUTTER}/n_chips ({n})")
        st = self.shutter_status
        if st is not None and st.code_sha256 and (st.code_sha256 != code.sha256
                                                   or st.n_chips != code.n_chips):
            what.append(f"the controller's echo ({SHUTTER}/status: code {st.code_sha256[:12]}..., "
                        f"{st.n_chips} chips)")
        shas = self.frame_log["code_sha"]
        bad = np.flatnonzero((shas != "") & (shas != code.sha256) & (self.image_key == 0))
        if bad.size:
            what.append(f"the code hash of {bad.size} of {len(shas)} recorded frames (first: "
                        f"frame {int(bad[0])}, {shas[bad[0]][:12]}...)")
        if what:
            raise CaptureFormatError(
                f"{path}: the stored exposure code ({code.n_chips} chips, sha256 "
                f"{code.sha256[:12]}...) disagrees with " + " and ".join(what) + ". The file was "
                "edited or damaged; reconstructing it with this code would give a wrong video "
                "without any sign of it. Use the original copy of the capture.")

    def _recover(self, cam: h5py.Group, data: h5py.Dataset) -> None:
        path = self.path
        log = require(cam, "frame_log", path, "the per-frame provenance table")
        #: acquisition counters written when the file was finished (empty for older files)
        self.counters = {
            k: int(v) for k, v in log.attrs.items() if isinstance(v, (int, np.integer))
        }
        cols = {}
        for name in LOG_COLUMNS:
            if name == "exposure_us" and name not in log:
                continue  # optional column
            cols[name] = require(log, name, path, f"the frame_log column {name}")
        key_ds = require(cam, "image_key", path, "the image_key column")
        n_data = data.shape[0]
        n_rows = min([len(key_ds), *(len(c) for c in cols.values())])
        n = min(n_data, n_rows)
        host = cols["host_time_ns"][:n]
        fid = cols["frame_id"][:n]
        keys = key_ds[:n]
        unwritten = (host == UNWRITTEN) | (fid == UNWRITTEN) | (keys < 0)
        if unwritten.any():
            n = int(np.argmax(unwritten))
        n = min(n, allocated_frames(data, n))
        self.n_frames = n
        self.image_key = keys[:n].astype(np.int8)
        self.frame_log = {name: c[:n] for name, c in cols.items()}
        self.frame_log["code_sha"] = self.frame_log["code_sha"].astype("U64")
        if self.status == "complete" and n == n_data == n_rows:
            self.recovery_note = f"Complete file: all {n} frames are present."
        else:
            why = {
                "complete": "The file is marked complete but its tables disagree",
                "partial": "The capture was interrupted (status 'partial': the writer stopped "
                "without closing the file, e.g. a crash or power loss)",
                "aborted": f"The capture was aborted ({self.status_reason or 'no reason given'})",
            }[self.status]
            self.recovery_note = (
                f"{why}: {n} frames were recovered, those with both image data and a "
                f"frame_log row ({n_data} image slots, {n_rows} log rows on disk)."
                if n else f"{why}: it holds no frames at all (the writer stopped before its "
                "first frame reached the disk)."
            )

    # -- frames -----------------------------------------------------------------------------

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the frames."""
        return int(self._data.shape[1]), int(self._data.shape[2])

    @property
    def dtype(self) -> np.dtype:
        """dtype of the frames as stored."""
        return self._data.dtype

    def read_frame(self, i: int) -> np.ndarray:
        """Frame ``i`` (0 <= i < n_frames) as a new array of the stored dtype.

        Raises:
            IndexError: ``i`` is outside the recovered frames.
        """
        if not -self.n_frames <= i < self.n_frames:
            raise IndexError(
                f"Frame {i} is outside {self.path}, which holds {self.n_frames} recovered frames."
            )
        j = i % self.n_frames
        try:
            return self._data[j]
        except H5_READ_ERRORS as e:
            raise DamagedFrameError(
                f"Frame {j} of {self.path} cannot be read (damaged chunk: {e}). The other frames "
                f"can still be read; `blurvid-rig info --verify {self.path}` lists every damaged "
                "one.", j) from e

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Iterate over frames ``start`` .. ``stop - 1`` (default: all recovered frames).

        Raises:
            DamagedFrameError: a frame's data cannot be read (the iteration stops there).
        """
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        for i in range(start, stop):
            yield self.read_frame(i)

    def verify(self, progress: Callable[[int, int], None] | None = None) -> list[tuple[int, str]]:
        """Read every recovered frame; returns ``(index, reason)`` of those that cannot be read
        (empty when all are whole)."""
        bad = []
        for i in range(self.n_frames):
            try:
                self.read_frame(i)
            except DamagedFrameError as e:
                bad.append((i, str(e.__cause__ or e)))
            if progress is not None:
                progress(i + 1, self.n_frames)
        return bad

    def __len__(self) -> int:
        return self.n_frames

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CaptureFile({str(self.path)!r}, status={self.status!r}, n_frames={self.n_frames})"


def _read_settings(entry: h5py.Group) -> dict[str, Any]:
    if "settings_json" in entry:
        import json

        return json.loads(read_str(entry, "settings_json"))
    return read_attr_tree(entry["settings"]) if "settings" in entry else {}
