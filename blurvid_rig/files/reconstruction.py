"""Reconstruction files, read: the video recovered from a capture, with its full provenance.

One ``<capture stem>.recon.h5`` per source capture; the raw capture is never modified::

    /                 NXroot  @kind = reconstruction, @status, @uuid, @schema_version
    /entry            NXentry start_time, end_time, title, program_name
    /entry/process    NXprocess program, version, date, method, model_id, checkpoint_sha256, code,
                      code_sha256, chip_duration, device, calibration_used, source_uuid,
                      source_path, parameters (attributes) + parameters_json
    /entry/data       NXdata @signal=video @axes=[frame, time, ., .]
                      video[n, t, y, x] float32, time[t] (s), frame[n] (source frame index)
    /entry/per_frame  NXcollection  name -> [n, ...] (e.g. residual, estimated velocity)

:mod:`blurvid_rig.files.reconstruction_writer` writes them, like a capture (``<name>.partial`` in
SWMR mode, finalised and renamed when done); :class:`ReconFile` reads complete, partial and
aborted ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from blurvid_rig.files.h5io import (
    CaptureFormatError,
    H5Reader,
    allocated_frames,
    check_numeric_finite,
    load_or_close,
    open_h5,
    py_value,
    read_attr_tree,
    read_header,
    read_str,
    require,
)

RECON_SUFFIX = ".recon.h5"


def recon_path_for(capture_path: str | Path) -> Path:
    """Default reconstruction file of a capture: ``<dir>/<capture stem>.recon.h5``.

    >>> recon_path_for("/data/250301_140203_fan.h5").as_posix()
    '/data/250301_140203_fan.recon.h5'
    """
    p = Path(capture_path)
    name = p.name.removesuffix(".partial").removesuffix(".h5")
    return p.with_name(name + RECON_SUFFIX)


class ReconFile(H5Reader):
    """Read a reconstruction file (complete, partial or aborted). Open with :meth:`open`.

    Attributes:
        path, uuid, title, schema_version, status, status_reason, start_time, end_time.
        n_frames, recovery_note: results recovered (all of them in a complete file).
        time_s: ``(T,)`` sub-frame times in seconds; frame_index: ``(N,)`` source frame indices.
        process: provenance dict (method, device, model_id, code, parameters, source_uuid, ...).
        per_frame: name -> ``(N, ...)`` array; source_uuid: ``@uuid`` of the source capture.
    """

    def __init__(self, f: h5py.File, path: Path) -> None:
        """Private: use :meth:`ReconFile.open`."""
        super().__init__(f, path)

    @classmethod
    def open(cls, path: str | Path) -> ReconFile:
        """Open and validate a reconstruction file.

        Raises:
            CaptureFormatError: not a readable blurvid-rig reconstruction file.
        """
        path = Path(path)
        f, _ = open_h5(path)
        obj = cls(f, path)
        load_or_close(f, path, obj._load)
        return obj

    def _load(self) -> None:
        f, path = self._f, self.path
        self.schema_version, self.uuid, self.status, self.status_reason = read_header(
            f, path, "reconstruction")
        entry = require(f, "entry", path, "the NXentry group")
        self.title = read_str(entry, "title")
        self.start_time = read_str(entry, "start_time")
        self.end_time = read_str(entry, "end_time") or None
        pr = require(entry, "process", path, "the NXprocess provenance group")
        video = require(entry, "data/video", path, "the reconstructed video")
        scaled = "scale_factor" in video.attrs
        if video.ndim != 4 or video.dtype.kind != ("u" if scaled else "f"):
            raise CaptureFormatError(
                f"{path}: /entry/data/video must be a 4-D float array (or uint16 with "
                f"scale_factor and add_offset) [frame, time, y, x], got {video.dtype} "
                f"{video.shape}."
            )
        self._scale = None
        if scaled:
            sf = float(video.attrs["scale_factor"])
            off = float(video.attrs.get("add_offset", 0.0))
            if not (np.isfinite(sf) and sf > 0 and np.isfinite(off)):
                raise CaptureFormatError(
                    f"{path}: the video's scale_factor/add_offset ({sf!r}, {off!r}) are not "
                    "finite numbers (scale_factor > 0); the file is damaged.")
            self._scale = (sf, off)
        check_numeric_finite(entry, path, frozenset({video.name}))
        self.time_s = np.asarray(require(entry, "data/time", path, "the time axis")[()])
        if self.time_s.shape != (video.shape[1],):
            raise CaptureFormatError(
                f"{path}: the time axis has {self.time_s.shape} entries but the video has "
                f"{video.shape[1]} time samples."
            )
        frame = require(entry, "data/frame", path, "the source frame index")
        per = entry.get("per_frame", {})
        n_rows = min([len(frame), *(len(ds) for ds in per.values())])
        n = min(video.shape[0], n_rows)
        idx = frame[:n]
        if (idx < 0).any():
            n = int(np.argmax(idx < 0))
        n = allocated_frames(video, n)
        self.n_frames = n
        self.frame_index = idx[:n]
        self.per_frame = {k: ds[:n] for k, ds in per.items()}
        self._video = video
        self.recovery_note = (
            f"All {n} reconstructed frames are present."
            if self.status == "complete" and n == video.shape[0]
            else f"Status {self.status!r}: {n} reconstructed frames recovered "
            f"({video.shape[0]} slots on disk)."
        )
        self.process: dict[str, Any] = {
            k: py_value(ds[()]) for k, ds in pr.items() if isinstance(ds, h5py.Dataset)
        }
        self.process["code"] = "".join(str(b) for b in self.process.get("code", []))
        params = self.process.pop("parameters_json", None)
        self.process["parameters"] = (
            json.loads(params) if params is not None else read_attr_tree(pr["parameters"])
        )
        self.source_uuid = str(self.process.get("source_uuid", ""))

    @property
    def method(self) -> str:
        """Solver name."""
        return str(self.process.get("method", ""))

    @property
    def device(self) -> str:
        """Where the reconstruction ran."""
        return str(self.process.get("device", ""))

    @property
    def video(self) -> np.ndarray:
        """All recovered results, ``(N, T, H, W)`` float32 (loads everything into memory;
        a compact uint16 video is decoded)."""
        return self._decode(self._video[: self.n_frames])

    @property
    def storage(self) -> str:
        """How the video is stored: ``"uint16 (scaled)"`` or ``"float32"``."""
        return "float32" if self._scale is None else "uint16 (scaled)"

    def _decode(self, stored: np.ndarray) -> np.ndarray:
        if self._scale is None:
            return np.asarray(stored, dtype=np.float32)
        sf, off = self._scale
        return (stored.astype(np.float32) * np.float32(sf) + np.float32(off))

    @property
    def video_shape(self) -> tuple[int, int, int, int]:
        """``(N, T, H, W)`` of the recovered results."""
        return (self.n_frames, *(int(s) for s in self._video.shape[1:]))

    def read_video(self, i: int) -> np.ndarray:
        """Result ``i``, ``(T, H, W)`` float32."""
        if not 0 <= i < self.n_frames:
            raise IndexError(f"Result {i} is outside {self.path} ({self.n_frames} results).")
        return self._decode(self._video[i])

