"""Capture files, written: :class:`CaptureWriter` and the name of a new capture.

The writer works on ``<final>.partial`` in SWMR mode and flushes every ``flush_every`` frames
(the lifecycle of :class:`blurvid_rig.files.swmr.SwmrWriter`); a writer killed at any moment
leaves a file that :meth:`blurvid_rig.files.capture.CaptureFile.open` reads with every frame up to
the last flush. The layout is in ``docs/FORMAT.md`` and :mod:`blurvid_rig.files.capture`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from blurvid_rig.files.h5io import (
    CaptureWriteError,
    check_finite,
    compression_kwargs,
    new_group,
    to_json,
    units_for,
    write_attr_tree,
    write_field,
)
from blurvid_rig.files.instrument import (
    CAMERA,
    IMAGE_KEYS,
    LOG_COLUMNS,
    UNWRITTEN,
    write_camera,
    write_shutter,
)
from blurvid_rig.files.swmr import SwmrWriter
from hw.types import (
    CameraInfo,
    CameraSettings,
    Frame,
    ShutterCode,
    ShutterInfo,
    ShutterStatus,
)


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


class CaptureWriter(SwmrWriter):
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
        dmd: per-pixel coding, stored under ``shutter/dmd``: ``masks`` ``(K, rows, columns)`` 0/1,
            and optionally ``dmd_to_camera`` (3x3), ``masks_sha256``, ``dmd_to_camera_source``.

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

    BROKEN_REASON = "a write failed while recording"

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
        self._shape = _check_shape(frame_shape)
        self._dtype = np.dtype(dtype)
        if self._dtype.kind not in "iu":
            raise CaptureWriteError(
                f"Frame dtype {self._dtype} is not an integer type; a capture stores raw camera "
                "frames (uint8/uint16) unconverted."
            )
        super().__init__(path, flush_every=flush_every)
        comp = compression_kwargs(compression)
        settings_json = to_json(dict(settings or {}), "settings")
        self._pending: list[tuple[Any, ...]] = []  # frame_log rows waiting for the next flush
        self._rows_on_disk = 0
        self._counters: dict[str, int] = {}

        def layout(entry: h5py.Group, start: str) -> None:
            instrument = new_group(entry, "instrument", "NXinstrument")
            camera = write_camera(instrument, camera_info, camera_settings, genicam_nodes or {})
            self._create_frame_datasets(camera, comp)
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

        self._create("capture", title, layout, staged=True)

    def _create_frame_datasets(self, camera: h5py.Group, comp: Mapping[str, Any]) -> None:
        """The growing datasets: ``data``, ``image_key`` and the ``frame_log`` columns."""
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
        self._check_open(" Start a new capture.")
        sha = self._check_frame(frame, image_key)
        i = self._n
        try:
            self._data.resize(i + 1, axis=0)
            self._data[i] = frame.image
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
            self._appended()
        except (OSError, ValueError, RuntimeError) as e:
            raise self._write_failed(
                f"frame {i}", e, "is the disk full or gone? The frames flushed before it are "
                "safe: abort() the writer to keep them."
            ) from e
        return i

    def _check_frame(self, frame: Frame, image_key: int) -> bytes:
        """Refuse a frame this capture cannot hold; returns its code hash as stored."""
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
        return sha

    def _flush_buffers(self) -> None:
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

    def _before_close(self) -> None:
        """The last frame_log rows, and the acquisition counters as attributes of frame_log."""
        super()._before_close()
        if self._counters:
            log_attrs = self._file[f"{CAMERA}/frame_log"].attrs
            for k, v in self._counters.items():
                log_attrs[k] = np.int64(v)


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
