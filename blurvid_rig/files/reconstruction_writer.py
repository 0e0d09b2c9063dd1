"""Reconstruction files, written: :class:`ReconWriter` (one source frame at a time) and
:func:`write_recon` (a whole video at once).

Written like a capture (the lifecycle of :class:`blurvid_rig.files.swmr.SwmrWriter`):
``<name>.partial``, flushed every ``flush_every`` results, finalised (status, end_time) after
closing the SWMR handle, then renamed. The layout is in :mod:`blurvid_rig.files.reconstruction`
and ``docs/FORMAT.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import numpy.typing as npt

from blurvid_rig.files.h5io import (
    CREATOR,
    CaptureWriteError,
    check_finite,
    compression_kwargs,
    creator_version,
    new_group,
    to_json,
    units_for,
    write_attr_tree,
    write_field,
)
from blurvid_rig.files.reconstruction import RECON_SUFFIX, recon_path_for
from blurvid_rig.files.swmr import SwmrWriter

if TYPE_CHECKING:
    from blurvid_rig.files.capture import CaptureFile


class ReconWriter(SwmrWriter):
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

    ITEM = "result"
    READER = "ReconFile.open"
    BROKEN_REASON = "a write failed during reconstruction"

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
        final = Path(path)
        if not final.name.endswith(RECON_SUFFIX):
            raise CaptureWriteError(
                f"Reconstruction file {final} must be named '*{RECON_SUFFIX}' so it can "
                "never replace a raw capture; use recon_path_for(capture) -> "
                f"{recon_path_for(source.path)}."
            )
        if final.resolve() == Path(source.path).resolve():
            raise CaptureWriteError("A reconstruction is never written into its source capture.")
        self._time = np.asarray(time_s, dtype=np.float64)
        if self._time.ndim != 1 or len(self._time) == 0:
            raise CaptureWriteError(f"time_s must be a 1-D array (T,), got {self._time.shape}.")
        check_finite(self._time, "time_s")
        h, w = (int(v) for v in frame_shape)
        if h < 1 or w < 1:
            raise CaptureWriteError(f"frame_shape must be two positive ints, got {frame_shape}.")
        self._shape = (len(self._time), h, w)
        super().__init__(final, flush_every=flush_every)
        if full_scale is not None and not (np.isfinite(full_scale) and full_scale > 0):
            raise CaptureWriteError(f"full_scale must be a finite number > 0, got {full_scale!r}.")
        self._scale = None if full_scale is None else (1.5 * float(full_scale) / 65535,
                                                       -0.25 * float(full_scale))
        if compression == "auto":
            compression = "lz4" if self._scale is not None else None
        comp = compression_kwargs(compression)
        params_json = to_json(dict(parameters), "parameters")
        self._per_frame: dict[str, h5py.Dataset] | None = None

        def layout(entry: h5py.Group, start: str) -> None:
            _write_process(
                new_group(entry, "process", "NXprocess"), start, source, method=method,
                parameters=parameters, parameters_json=params_json, device=device,
                model_id=model_id, checkpoint_sha256=checkpoint_sha256,
                calibration_used=calibration_used,
            )
            self._create_video_datasets(entry, comp)

        self._create(
            "reconstruction", source.title if title is None else title, layout, staged=False
        )

    def _create_video_datasets(self, entry: h5py.Group, comp: Mapping[str, Any]) -> None:
        """``/entry/data``: the growing ``video`` and ``frame`` datasets and the ``time`` axis."""
        data = new_group(entry, "data", "NXdata")
        data.attrs["signal"] = "video"
        data.attrs["axes"] = ["frame", "time", ".", "."]
        data.attrs["frame_indices"] = 0
        data.attrs["time_indices"] = 1
        self._video = data.create_dataset(
            "video",
            shape=(0, *self._shape),
            maxshape=(None, *self._shape),
            chunks=(1, 1, *self._shape[1:]),
            dtype="f4" if self._scale is None else "u2",
            **comp,
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
        self._check_open()
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
            self._appended()
        except (OSError, RuntimeError) as e:
            raise self._write_failed(
                f"result {i}", e, "is the disk full? abort() the writer to keep what was flushed."
            ) from e
        return i


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


def _write_process(
    pr: h5py.Group,
    start: str,
    source: CaptureFile,
    *,
    method: str,
    parameters: Mapping[str, Any],
    parameters_json: str,
    device: str,
    model_id: str,
    checkpoint_sha256: str,
    calibration_used: str,
) -> None:
    """``/entry/process`` (NXprocess): what made the reconstruction, from which capture and code."""
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
    write_field(pr, "parameters_json", parameters_json)
