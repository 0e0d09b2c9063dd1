"""Capture files, read: one coded-exposure capture per HDF5 file, self-describing, crash-safe.

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

:class:`CaptureFile` opens complete, partial (a crashed writer's ``.partial``, read up to its last
flush) and aborted files alike. :mod:`blurvid_rig.files.capture_writer` writes them;
:func:`blurvid_rig.files.describe.describe_file` summarises them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from blurvid_rig.files.h5io import (
    H5_READ_ERRORS,
    CaptureFormatError,
    H5Reader,
    allocated_frames,
    check_numeric_finite,
    load_or_close,
    open_h5,
    py_value,
    read_attr_tree,
    read_header,
    read_num,
    read_str,
    require,
)
from blurvid_rig.files.instrument import (
    CAMERA,
    LOG_COLUMNS,
    SHUTTER,
    UNWRITTEN,
    read_camera_info,
    read_camera_settings,
    read_code,
    read_shutter_info,
    read_shutter_status,
)


class DamagedFrameError(CaptureFormatError):
    """One frame's data cannot be read (a damaged chunk); the rest of the file can.

    Attributes:
        index: the frame's index in the file.
    """

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


class CaptureFile(H5Reader):
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
        super().__init__(f, path)
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
        load_or_close(f, path, obj._load)
        return obj

    # -- loading ----------------------------------------------------------------------------

    def _load(self) -> None:
        f, path = self._f, self.path
        self.schema_version, self.uuid, self.status, self.status_reason = read_header(
            f, path, "capture")
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


def _read_settings(entry: h5py.Group) -> dict[str, Any]:
    if "settings_json" in entry:
        return json.loads(read_str(entry, "settings_json"))
    return read_attr_tree(entry["settings"]) if "settings" in entry else {}
