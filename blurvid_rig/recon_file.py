"""Reconstruction files: the video recovered from a capture, with its full provenance.

One ``<capture stem>.recon.h5`` per source capture; the raw capture is never modified::

    /                 NXroot  @kind = reconstruction, @status, @uuid, @schema_version
    /entry            NXentry start_time, end_time, title, program_name
    /entry/process    NXprocess program, version, date, method, model_id, checkpoint_sha256, code,
                      code_sha256, chip_duration, device, calibration_used, source_uuid,
                      source_path, parameters (attributes) + parameters_json
    /entry/data       NXdata @signal=video @axes=[frame, time, ., .]
                      video[n, t, y, x] float32, time[t] (s), frame[n] (source frame index)
    /entry/per_frame  NXcollection  name -> [n, ...] (e.g. residual, estimated velocity)

Written like a capture: ``<name>.partial`` in SWMR mode, flushed every ``flush_every`` results,
finalised (status, end_time) after closing the SWMR handle, then renamed.
"""

from __future__ import annotations

import json
import uuid as uuid_mod
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import numpy.typing as npt

from blurvid_rig.h5util import (
    CREATOR,
    H5_LIBVER,
    H5_READ_ERRORS,
    STATUSES,
    CaptureFormatError,
    CaptureWriteError,
    allocated_frames,
    check_finite,
    check_numeric_finite,
    compression_kwargs,
    creator_version,
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
    read_str,
    refuse_existing,
    require,
    root_attrs,
    to_json,
    units_for,
    write_attr_tree,
    write_field,
)

if TYPE_CHECKING:
    from blurvid_rig.capture_file import CaptureFile

RECON_SUFFIX = ".recon.h5"


def recon_path_for(capture_path: str | Path) -> Path:
    """Default reconstruction file of a capture: ``<dir>/<capture stem>.recon.h5``.

    >>> recon_path_for("/data/250301_140203_fan.h5").as_posix()
    '/data/250301_140203_fan.recon.h5'
    """
    p = Path(capture_path)
    name = p.name.removesuffix(".partial").removesuffix(".h5")
    return p.with_name(name + RECON_SUFFIX)


class ReconWriter:
    """Write a reconstruction one source frame at a time (batch reconstruction with progress).

    Same crash safety as a capture: ``<path>.partial`` in SWMR mode, every result up to the last
    flush survives a crash; closing marks it complete and renames it. An exception inside ``with``
    aborts (keeps) the file.

    Args:
        path: final name; must end in ``.recon.h5`` and differ from the source capture.
        time_s: time of each reconstructed sub-frame within the exposure, seconds, shape ``(T,)``.
        frame_shape: ``(H, W)`` of the reconstructed images.
        source: the open capture the reconstruction was made from.
        method: solver name (e.g. ``"coded-deconv"``, ``"gap-tv"``, ``"bdinr"``).
        parameters: solver parameters (nested dict of scalars, strings, lists).
        device: where it ran (``"cuda:0"``, ``"cpu"``).
        model_id: learned model identifier, ``""`` for classical solvers.
        checkpoint_sha256: SHA-256 of the model weights, ``""`` when none.
        calibration_used: which calibration was applied (e.g. ``"dark+flat from <uuid>"``).
        title: free text (default: the source's title).
        flush_every: flush every this many results.
        compression: ``"lz4"``, ``"gzip"`` or None (default: ``"lz4"`` for the compact uint16
            video, None for float32, which compresses poorly).
        full_scale: the sensor's full scale in the video's units (counts above the dark level).
            Given, the video is stored compactly: uint16 with ``scale_factor`` and ``add_offset``
            attributes (value = stored x scale_factor + add_offset) covering ``-0.25`` to
            ``1.25`` x ``full_scale`` in steps of ``1.5 full_scale / 65535`` (0.09 counts of a
            12-bit sensor); values beyond are clipped to that range. None stores float32.

    Raises:
        CaptureWriteError: bad arguments, or the file name is taken.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        time_s: npt.ArrayLike,
        frame_shape: tuple[int, int],
        source: CaptureFile,
        method: str,
        parameters: Mapping[str, Any],
        device: str,
        model_id: str = "",
        checkpoint_sha256: str = "",
        calibration_used: str = "",
        title: str | None = None,
        flush_every: int = 8,
        compression: str | None = "auto",
        full_scale: float | None = None,
    ) -> None:
        self._final = Path(path)
        if not self._final.name.endswith(RECON_SUFFIX):
            raise CaptureWriteError(
                f"Reconstruction file {self._final} must be named '*{RECON_SUFFIX}' so it can "
                "never replace a raw capture; use recon_path_for(capture) -> "
                f"{recon_path_for(source.path)}."
            )
        if self._final.resolve() == Path(source.path).resolve():
            raise CaptureWriteError("A reconstruction is never written into its source capture.")
        self._time = np.asarray(time_s, dtype=np.float64)
        if self._time.ndim != 1 or len(self._time) == 0:
            raise CaptureWriteError(f"time_s must be a 1-D array (T,), got {self._time.shape}.")
        check_finite(self._time, "time_s")
        h, w = (int(v) for v in frame_shape)
        if h < 1 or w < 1:
            raise CaptureWriteError(f"frame_shape must be two positive ints, got {frame_shape}.")
        self._shape = (len(self._time), h, w)
        if int(flush_every) != flush_every or flush_every < 1:
            raise CaptureWriteError(f"flush_every must be a positive integer, got {flush_every!r}.")
        self._flush_every = int(flush_every)
        if full_scale is not None and not (np.isfinite(full_scale) and full_scale > 0):
            raise CaptureWriteError(f"full_scale must be a finite number > 0, got {full_scale!r}.")
        self._scale = None if full_scale is None else (1.5 * float(full_scale) / 65535,
                                                       -0.25 * float(full_scale))
        if compression == "auto":
            compression = "lz4" if self._scale is not None else None
        self._comp = compression_kwargs(compression)
        params_json = to_json(dict(parameters), "parameters")
        refuse_existing(self._final)
        self._final.parent.mkdir(parents=True, exist_ok=True)
        self._partial = partial_path(self._final)
        self._uuid = str(uuid_mod.uuid4())
        self._n = 0
        self._state = "open"
        self._closed_path: Path | None = None
        self._per_frame: dict[str, h5py.Dataset] | None = None

        self._file = h5py.File(self._partial, "w", libver=H5_LIBVER)
        try:
            start = now_iso()
            root_attrs(self._file, kind="reconstruction", uuid=self._uuid, time=start)
            entry = entry_group(
                self._file, title=source.title if title is None else title, start_time=start
            )
            pr = new_group(entry, "process", "NXprocess")
            write_field(pr, "program", CREATOR)
            write_field(pr, "version", creator_version())
            write_field(pr, "date", start)
            write_field(pr, "method", method)
            write_field(pr, "model_id", model_id)
            write_field(pr, "checkpoint_sha256", checkpoint_sha256)
            code = source.code
            write_field(pr, "code", code.as_array(), "1")
            write_field(pr, "code_sha256", code.sha256)
            write_field(pr, "chip_duration", np.float64(code.chip_us), "us")
            write_field(pr, "device", device)
            write_field(pr, "calibration_used", calibration_used)
            write_field(pr, "source_uuid", source.uuid)
            write_field(pr, "source_path", str(Path(source.path).resolve()))
            write_attr_tree(new_group(pr, "parameters", "NXcollection"), parameters, "parameters")
            write_field(pr, "parameters_json", params_json)
            data = new_group(entry, "data", "NXdata")
            data.attrs["signal"] = "video"
            data.attrs["axes"] = ["frame", "time", ".", "."]
            data.attrs["frame_indices"] = 0
            data.attrs["time_indices"] = 1
            self._video = data.create_dataset(
                "video",
                shape=(0, *self._shape),
                maxshape=(None, *self._shape),
                chunks=(1, 1, h, w),
                dtype="f4" if self._scale is None else "u2",
                **self._comp,
            )
            self._video.attrs["units"] = "counts"
            if self._scale is not None:
                self._video.attrs["scale_factor"] = np.float64(self._scale[0])
                self._video.attrs["add_offset"] = np.float64(self._scale[1])
            write_field(data, "time", self._time, "s")
            self._frame = data.create_dataset(
                "frame", shape=(0,), maxshape=(None,), chunks=(512,), dtype="i8", fillvalue=-1
            )
            self._frame.attrs["units"] = "1"
            self._frame.attrs["long_name"] = "source frame index"
            self._file.flush()
        except BaseException:
            self._file.close()
            self._partial.unlink(missing_ok=True)
            raise

    @property
    def n_frames(self) -> int:
        """Results appended so far."""
        return self._n

    @property
    def path(self) -> Path:
        """``<final>.partial`` while open, the final name once closed."""
        return self._closed_path or self._partial

    @property
    def uuid(self) -> str:
        """UUID of the reconstruction file."""
        return self._uuid

    def _start_swmr(self, per_frame: Mapping[str, Any]) -> None:
        """Create the per-frame datasets (shapes from the first result), then enter SWMR mode."""
        group = new_group(self._file["entry"], "per_frame", "NXcollection")
        self._per_frame = {}
        for name, value in per_frame.items():
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf" or not isinstance(name, str) or "/" in name:
                raise CaptureWriteError(
                    f"per_frame[{name!r}] must be a number or numeric array, got {arr.dtype}."
                )
            ds = group.create_dataset(
                name, shape=(0, *arr.shape), maxshape=(None, *arr.shape), dtype=arr.dtype
            )
            ds.attrs["units"] = units_for(name) or ""
            self._per_frame[name] = ds
        self._file.swmr_mode = True

    def append(
        self,
        video: npt.ArrayLike,
        frame_index: int,
        per_frame: Mapping[str, Any] | None = None,
    ) -> int:
        """Append the reconstruction of one source frame.

        Args:
            video: the reconstructed sub-frames, converted to float32.
            frame_index: index of the source frame in the capture.
            per_frame: values for this frame (same names, shapes and dtypes at every call).

        Returns:
            Index of the result in this file.

        Shape:
            video: ``(T, H, W)`` with ``T = len(time_s)``.

        Raises:
            CaptureWriteError: wrong shape, NaN/inf values, mismatched per-frame names, closed.
        """
        if self._state != "open":
            raise CaptureWriteError(f"Cannot append to {self.path}: the writer is {self._state}.")
        arr = np.asarray(video)
        if arr.shape != self._shape or arr.dtype.kind != "f":
            raise CaptureWriteError(
                f"Reconstruction of frame {frame_index} has shape {arr.shape} and dtype {arr.dtype}"
                f"; this file holds float (T, H, W) = {self._shape} results."
            )
        if not np.isfinite(arr).all():
            raise CaptureWriteError(
                f"Reconstruction of frame {frame_index} holds NaN or infinity; the solver diverged "
                "(check its step size/regularisation) and the result is not stored."
            )
        values = dict(per_frame or {})
        if self._per_frame is None:
            self._start_swmr(values)
        assert self._per_frame is not None
        if set(values) != set(self._per_frame):
            raise CaptureWriteError(
                f"per_frame names {sorted(values)} differ from the first result's "
                f"{sorted(self._per_frame)}; give the same values for every frame."
            )
        i = self._n
        try:
            for name, ds in self._per_frame.items():
                v = np.asarray(values[name])
                if v.shape != ds.shape[1:]:
                    raise CaptureWriteError(
                        f"per_frame[{name!r}] has shape {v.shape}, expected {ds.shape[1:]}."
                    )
            self._video.resize(i + 1, axis=0)
            self._frame.resize(i + 1, axis=0)
            for ds in self._per_frame.values():
                ds.resize(i + 1, axis=0)
            if self._scale is None:
                self._video[i] = arr.astype(np.float32, copy=False)
            else:
                q = np.rint((arr - self._scale[1]) / self._scale[0])
                self._video[i] = np.clip(q, 0, 65535).astype(np.uint16)
            for name, ds in self._per_frame.items():
                ds[i] = values[name]
            self._frame[i] = int(frame_index)  # last: marks the result complete
            self._n = i + 1
            if self._n % self._flush_every == 0:
                self._file.flush()
        except (OSError, RuntimeError) as e:
            self._state = "broken"
            raise CaptureWriteError(
                f"Writing result {i} to {self._partial} failed ({e}); is the disk full? abort() "
                "the writer to keep what was flushed."
            ) from e
        return i

    def close(self, note: str = "") -> Path:
        """Mark complete (with ``note`` as its ``status_reason``, e.g. which source frames were
        skipped) and rename to the final name; returns the final path."""
        if self._closed_path is not None:
            return self._closed_path
        if self._state == "broken":
            return self.abort("a write failed during reconstruction")
        return self._finish("complete", note)

    def abort(self, reason: str) -> Path:
        """Keep what was written, mark it aborted with ``reason``, rename; returns the path."""
        if self._closed_path is not None:
            return self._closed_path
        return self._finish("aborted", reason or "aborted")

    def _finish(self, status: str, reason: str) -> Path:
        self._state = "closed"
        self._file.close()
        self._closed_path = self._partial
        self._closed_path = finalise(self._partial, self._final, status, reason)
        return self._closed_path

    def __enter__(self) -> ReconWriter:
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


def write_recon(
    path: str | Path,
    *,
    video: npt.ArrayLike,
    time_s: npt.ArrayLike,
    frame_index: npt.ArrayLike,
    source: CaptureFile,
    method: str,
    parameters: Mapping[str, Any],
    device: str,
    model_id: str = "",
    checkpoint_sha256: str = "",
    calibration_used: str = "",
    per_frame: Mapping[str, npt.ArrayLike] | None = None,
) -> Path:
    """Write a whole reconstruction at once (atomically: ``.partial``, then rename).

    Args:
        path: final name, ending in ``.recon.h5`` (see :func:`recon_path_for`).
        video: reconstructed video.
        time_s: sub-frame times within the exposure, seconds.
        frame_index: source frame index of each reconstructed frame.
        source: the open source capture.
        method: solver name.
        parameters: solver parameters.
        device: where it ran.
        model_id: learned model id (``""`` for classical solvers).
        checkpoint_sha256: SHA-256 of the weights.
        calibration_used: what calibration was applied.
        per_frame: name -> array whose first axis has length N.

    Returns:
        The final path.

    Shape:
        video: ``(N, T, H, W)``; time_s: ``(T,)``; frame_index: ``(N,)``; per_frame: ``(N, ...)``.

    Raises:
        CaptureWriteError: inconsistent shapes or values that cannot be stored.
    """
    v = np.asarray(video)
    idx = np.asarray(frame_index)
    t = np.asarray(time_s)
    if v.ndim != 4 or idx.shape != (v.shape[0],) or t.shape != (v.shape[1],):
        raise CaptureWriteError(
            f"write_recon needs video (N, T, H, W), frame_index (N,) and time_s (T,); got "
            f"{v.shape}, {idx.shape} and {t.shape}."
        )
    extra = {k: np.asarray(a) for k, a in (per_frame or {}).items()}
    for k, a in extra.items():
        if a.ndim == 0 or a.shape[0] != v.shape[0]:
            raise CaptureWriteError(
                f"per_frame[{k!r}] has shape {a.shape}; its first axis must be N = {v.shape[0]}."
            )
    with ReconWriter(
        path,
        time_s=t,
        frame_shape=(v.shape[2], v.shape[3]),
        source=source,
        method=method,
        parameters=parameters,
        device=device,
        model_id=model_id,
        checkpoint_sha256=checkpoint_sha256,
        calibration_used=calibration_used,
        flush_every=max(1, v.shape[0]),
    ) as w:
        for i in range(v.shape[0]):
            w.append(v[i], int(idx[i]), {k: a[i] for k, a in extra.items()})
    return w.path


class ReconFile:
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
        self._f = f
        self.path = path

    @classmethod
    def open(cls, path: str | Path) -> ReconFile:
        """Open and validate a reconstruction file.

        Raises:
            CaptureFormatError: not a readable blurvid-rig reconstruction file.
        """
        path = Path(path)
        f, _ = open_h5(path)
        obj = cls(f, path)
        try:
            obj._load()
        except CaptureFormatError:
            f.close()
            raise
        except H5_READ_ERRORS as e:
            f.close()
            raise damaged_file_error(path, e) from e
        return obj

    def _load(self) -> None:
        f, path = self._f, self.path
        self.schema_version = parse_schema(f, path, "reconstruction")
        self.uuid = str(py_value(f.attrs.get("uuid", "")))
        self.status = str(py_value(f.attrs.get("status", "")))
        if self.status not in STATUSES:
            raise CaptureFormatError(f"{path} has unknown status {self.status!r}.")
        self.status_reason = str(py_value(f.attrs.get("status_reason", "")))
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

    def __len__(self) -> int:
        return self.n_frames

    def describe(self) -> str:
        """Human summary (what :func:`blurvid_rig.describe.describe_file` prints)."""
        n, t, h, w = self.video_shape
        p = self.process
        span = (
            f"{self.time_s[0] * 1e3:.6g} .. {self.time_s[-1] * 1e3:.6g} ms"
            if len(self.time_s)
            else "-"
        )
        params = ", ".join(f"{k}={v}" for k, v in p["parameters"].items())
        lines = [
            f"blurvid-rig reconstruction: {self.path}",
            f"  status: {self.status}" + (f" ({self.status_reason})" if self.status_reason else ""),
            f"  schema {self.schema_version}, uuid {self.uuid}",
            f"  method: {self.method} ({params or 'no parameters'})",
            f"  device: {self.device}; model: {p.get('model_id') or '(none)'}, checkpoint "
            f"sha256 {str(p.get('checkpoint_sha256') or '-')[:12]}",
            f"  source: {p.get('source_path')} (uuid {self.source_uuid})",
            f"  code used: {p.get('code')} @ {p.get('chip_duration')} us, sha256 "
            f"{str(p.get('code_sha256'))[:12]}",
            f"  video: {n} frames x {t} time samples x {w}x{h}, stored {self.storage} "
            f"(source frames {self.frame_index[:1].tolist()}..{self.frame_index[-1:].tolist()})",
            f"  time span: {span} ({t} samples)",
            f"  calibration used: {p.get('calibration_used') or 'none'}",
            f"  per-frame values: {', '.join(self.per_frame) or 'none'}",
            f"  started {self.start_time}, ended {self.end_time or '(not recorded)'}",
        ]
        return "\n".join(lines)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> ReconFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReconFile({str(self.path)!r}, status={self.status!r}, n_frames={self.n_frames})"
