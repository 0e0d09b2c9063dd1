"""What a calibration knows about the rig, how it is stored, and when it may be used.

A :class:`Calibration` holds the results of the procedures (each optional): dark signal, flat
field, photon transfer, shutter timing (from which the effective code of any code follows) and
lens geometry; plus a uuid, its creation time, the rig it was measured on and the camera settings
it applies to (:class:`AppliesTo`).

Storage: one tree of HDF5 datasets (numbers, arrays, strings; one subgroup per part). The same
tree is a calibration file of its own (:meth:`Calibration.save` / :meth:`Calibration.load`,
``/entry/calibration``) and is embedded into every capture recorded while the calibration is
active (:meth:`Calibration.to_tree` / :meth:`Calibration.from_tree`).

Before use, :meth:`Calibration.check` compares it with the camera settings of a capture: a
different ROI, binning or pixel format is an error (the maps do not fit); a different gain is an
error for the sensor parts (dark, flat, photon transfer); a different exposure or an old
calibration is a warning.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hw.errors import RigError
from hw.optics import ShutterOptics
from hw.types import CameraSettings, Roi

SCHEMA_VERSION = "1.0"
FILE_KIND = "blurvid-rig calibration"

#: Default age after which a calibration is reported as old (warning, not error).
DEFAULT_MAX_AGE_DAYS = 30.0


class CalibrationError(RigError):
    """A calibration file is unreadable, or a calibration does not apply to a capture."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ============================================================================================
# Parts
# ============================================================================================


@dataclass(frozen=True)
class AppliesTo:
    """Camera settings a calibration was measured with (what it may be applied to)."""

    exposure_us: float
    gain_db: float
    pixel_format: str
    roi: tuple[int, int, int, int]  # offset_x, offset_y, width, height (resolved, in pixels)
    binning: int = 1
    temperature_c: float | None = None
    black_level_dn: float | None = None

    @classmethod
    def from_settings(
        cls, s: CameraSettings, frame_shape: tuple[int, int], temperature_c: float | None = None
    ) -> AppliesTo:
        h, w = frame_shape
        return cls(
            exposure_us=float(s.exposure_us),
            gain_db=float(s.gain_db),
            pixel_format=s.pixel_format,
            roi=(s.roi.offset_x, s.roi.offset_y, int(w), int(h)),
            temperature_c=temperature_c,
            black_level_dn=float(s.black_level_dn),
        )

    def settings_for(self, s: CameraSettings) -> CameraSettings:
        """``s`` with the gain, pixel format, black level and ROI this calibration was made
        with (what a capture should use to be corrected by it)."""
        x, y, w, h = self.roi
        out = s.replace(gain_db=self.gain_db, pixel_format=self.pixel_format,
                        roi=Roi(x, y, w, h))
        if self.black_level_dn is not None:
            out = out.replace(black_level_dn=self.black_level_dn)
        return out


@dataclass
class DarkResult:
    """Averaged dark frames at one or more exposures (shutter closed or lens capped).

    With two or more exposures, each pixel's dark signal is fitted as ``offset + rate * t``, so the
    dark frame of any exposure follows (:meth:`at`).
    """

    exposures_us: np.ndarray  # (E,)
    frames: np.ndarray  # (E, H, W) float32, mean of n_frames frames each
    hot_pixels: np.ndarray  # (H, W) bool
    temporal_noise_dn: float  # rms of one frame around the mean (read noise + dark shot noise)
    dsnu_dn: float  # rms of the mean frame across pixels (hot pixels excluded)
    n_frames: int
    created: str = field(default_factory=_now)

    def fit(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(offset, rate_per_us)`` per pixel; the rate is None with a single exposure.

        Computed once (kept outside the dataclass fields, so it is never stored)."""
        cached = self.__dict__.get("_fit")
        if cached is None:
            cached = self.__dict__["_fit"] = self._fit()
        return cached

    def _fit(self) -> tuple[np.ndarray, np.ndarray | None]:
        t = np.asarray(self.exposures_us, dtype=np.float64)
        if t.size < 2 or np.ptp(t) <= 0:
            return self.frames[0].astype(np.float32), None
        tm = t.mean()
        f = self.frames.astype(np.float64)
        fm = f.mean(axis=0)
        slope = np.tensordot(t - tm, f - fm, axes=(0, 0)) / np.sum((t - tm) ** 2)
        return (fm - slope * tm).astype(np.float32), slope.astype(np.float32)

    def at(self, exposure_us: float) -> np.ndarray:
        """The dark frame (float32, DN) expected for ``exposure_us``."""
        offset, rate = self.fit()
        if rate is None:
            return offset
        return offset + rate * np.float32(exposure_us)


@dataclass
class FlatResult:
    """Flat field from a uniform target: the relative response of each pixel (mean 1)."""

    flat: np.ndarray  # (H, W) float32, dark-subtracted and normalised to mean 1
    radius: np.ndarray  # (R,) relative radius from the centre (1 = corner)
    vignetting: np.ndarray  # (R,) mean relative response at that radius
    prnu: float  # relative rms of the pixel response once vignetting (the smooth part) is removed
    mean_dn: float  # mean dark-subtracted level of the flat frames
    exposure_us: float
    n_frames: int
    created: str = field(default_factory=_now)


@dataclass
class PtcResult:
    """Photon transfer: temporal variance against mean signal over a series of exposures."""

    exposures_us: np.ndarray  # (N,)
    mean_dn: np.ndarray  # (N,) dark-subtracted mean
    variance_dn2: np.ndarray  # (N,) temporal variance (from frame differences)
    gain_e_per_dn: float
    read_noise_e: float
    read_noise_dn: float
    full_well_e: float  # electrons at the mean where the variance peaks (saturation onset)
    linearity_error_pct: float  # max deviation from the straight line, % of its range
    fit_max_dn: float  # means below this were used for the gain fit
    created: str = field(default_factory=_now)


@dataclass
class ShutterTiming:
    """Shutter timing measured on a static bright target (see :mod:`hw.optics` for the model).

    ``rise_t_us`` / ``rise_transmittance`` (and ``fall_*``) are the measured transmittance around
    an opening (closing) command edge, time 0 at the edge; ``latency_us`` etc. are fitted to them.
    ``leakage`` and ``open_transmittance`` are relative to the open level, which is 1 by
    definition (the light of a fully open shutter is the scale of the frames). The parameters
    are the least-squares fit of the model to the measured transmittance of both edges;
    ``fit_residual_rms`` is what the fit leaves, ``fit_noise_rms`` what the frames' noise
    explains.
    """

    latency_us: float
    rise_us: float
    close_latency_us: float
    fall_us: float
    leakage: float
    chip_us: float  # chip duration of the step codes used
    rise_t_us: np.ndarray
    rise_transmittance: np.ndarray
    fall_t_us: np.ndarray
    fall_transmittance: np.ndarray
    # check with single-chip codes: measured and predicted open time of each, in chips
    check_codes: list[str] = field(default_factory=list)
    check_measured: np.ndarray = field(default_factory=lambda: np.zeros(0))
    check_predicted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    created: str = field(default_factory=_now)
    # the fit of the model to the measured transmittance of both edges: the rms of what it
    # leaves, and the rms the frames' noise explains (NaN: a calibration made before the fit)
    fit_residual_rms: float = math.nan
    fit_noise_rms: float = math.nan

    def optics(self) -> ShutterOptics:
        """The shutter model with the measured parameters."""
        rise, fall = max(0.0, self.rise_us), max(0.0, self.fall_us)
        return ShutterOptics(
            leakage=float(min(max(self.leakage, 0.0), 0.999)),
            open_transmittance=1.0,
            latency_us=max(float(self.latency_us), rise / 8),
            rise_us=rise,
            fall_us=fall,
            close_latency_us=max(float(self.close_latency_us), fall / 8),
        )

    def effective_code(self, bits: Sequence[int], chip_us: float, sub_steps: int = 4) -> np.ndarray:
        """Measured transmittance of each sub-step of each chip of ``bits`` played with
        ``chip_us`` chips, ``(K * sub_steps,)``: what the forward operator uses instead of the
        nominal bits (``sub_profile`` of :func:`recon.functional.code_weights`)."""
        return self.optics().effective_code([int(b) for b in bits], float(chip_us), sub_steps)


@dataclass
class GeometryResult:
    """Lens intrinsics and distortion from checkerboard views (OpenCV's model)."""

    camera_matrix: np.ndarray  # (3, 3)
    dist: np.ndarray  # (5,) k1, k2, p1, p2, k3
    rms_px: float  # reprojection error, rms over all corners
    per_view_rms_px: np.ndarray  # (V,)
    image_size: tuple[int, int]  # width, height
    board: tuple[int, int]  # inner corners (columns, rows)
    square_mm: float
    corners: np.ndarray  # (V, N, 2) detected corners, for plots
    created: str = field(default_factory=_now)


@dataclass
class DmdMapping:
    """Where each DMD mirror lands on the sensor: ``camera = matrix @ dmd`` (homogeneous)."""

    matrix: np.ndarray  # (3, 3)
    model: str  # "homography" or "affine"
    rms_px: float  # residual of the dots used, camera pixels
    n_dots: int  # dots used (RANSAC inliers)
    n_projected: int
    dmd_shape: tuple[int, int]  # mirrors (rows, columns)
    dmd_points: np.ndarray  # (N, 2) dot centres on the DMD (x, y)
    camera_points: np.ndarray  # (N, 2) where they were found on the sensor
    created: str = field(default_factory=_now)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """DMD ``(x, y)`` points -> camera pixels."""
        p = np.asarray(points, np.float64).reshape(-1, 2)
        q = np.c_[p, np.ones(len(p))] @ self.matrix.T
        return q[:, :2] / q[:, 2:3]


_PARTS: dict[str, type] = {
    "dark": DarkResult,
    "flat": FlatResult,
    "photon_transfer": PtcResult,
    "shutter_timing": ShutterTiming,
    "geometry": GeometryResult,
    "dmd_mapping": DmdMapping,
}


# ============================================================================================
# Calibration
# ============================================================================================


@dataclass
class Problem:
    """One reason a calibration does not fit a capture; ``error`` ones refuse its use."""

    severity: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.message}"


@dataclass
class Calibration:
    """Everything measured about one rig at one set of camera settings."""

    applies_to: AppliesTo
    rig: dict[str, str] = field(default_factory=dict)
    dark: DarkResult | None = None
    flat: FlatResult | None = None
    photon_transfer: PtcResult | None = None
    shutter_timing: ShutterTiming | None = None
    geometry: GeometryResult | None = None
    dmd_mapping: DmdMapping | None = None
    uuid: str = field(default_factory=lambda: str(uuidlib.uuid4()))
    created: str = field(default_factory=_now)
    schema_version: str = SCHEMA_VERSION

    # -- use ---------------------------------------------------------------------------------
    @property
    def parts(self) -> list[str]:
        return [name for name in _PARTS if getattr(self, name) is not None]

    def summary(self) -> str:
        """One line: uuid, date, parts."""
        parts = ", ".join(self.parts) or "empty"
        return f"calibration {self.uuid[:8]} of {self.created} ({parts})"

    def check(
        self,
        settings: CameraSettings,
        frame_shape: tuple[int, int],
        *,
        max_age_days: float = DEFAULT_MAX_AGE_DAYS,
        now: datetime | None = None,
    ) -> list[Problem]:
        """Why this calibration should not (error) or may not quite (warning) be applied to
        frames taken with ``settings`` and of ``frame_shape``."""
        a = self.applies_to
        out: list[Problem] = []
        h, w = frame_shape
        roi = (settings.roi.offset_x, settings.roi.offset_y, int(w), int(h))
        sensor_parts = [p for p in ("dark", "flat", "photon_transfer") if getattr(self, p)]
        mapped = self.geometry is not None or self.dmd_mapping is not None
        if roi != tuple(a.roi) and (sensor_parts or mapped):
            out.append(Problem("error", (
                f"the calibration was measured on ROI {_roi_text(a.roi)} but the frames are "
                f"{_roi_text(roi)}; its maps do not fit. Calibrate with this ROI."
            )))
        if settings.pixel_format != a.pixel_format:
            out.append(Problem("error", (
                f"the calibration was measured in {a.pixel_format} but the frames are "
                f"{settings.pixel_format}; calibrate in {settings.pixel_format}."
            )))
        if not math.isclose(settings.gain_db, a.gain_db, abs_tol=0.05) and sensor_parts:
            out.append(Problem("error", (
                f"the calibration was measured at gain {a.gain_db:g} dB but the frames at "
                f"{settings.gain_db:g} dB; dark, flat and photon transfer depend on gain. "
                f"Calibrate at {settings.gain_db:g} dB."
            )))
        if (
            a.black_level_dn is not None
            and (self.dark is not None or self.photon_transfer is not None)
            and abs(settings.black_level_dn - a.black_level_dn) > 0.5
        ):
            out.append(Problem("error", (
                f"the calibration was measured with black level {a.black_level_dn:g} DN but the "
                f"frames have {settings.black_level_dn:g} DN; the dark frames would be off. "
                f"Set the black level to {a.black_level_dn:g} DN."
            )))
        if (
            self.dark is not None
            and self.dark.fit()[1] is None
            and not math.isclose(settings.exposure_us, a.exposure_us, rel_tol=0.02)
        ):
            out.append(Problem("warning", (
                f"the dark frame was taken at {a.exposure_us:g} us and the frames at "
                f"{settings.exposure_us:g} us; the dark current differs. Take darks at several "
                "exposures (they are then interpolated)."
            )))
        created = _parse_time(self.created)
        if created is not None:
            age = ((now or datetime.now(UTC)) - created).total_seconds() / 86400.0
            if age > max_age_days:
                out.append(Problem("warning", (
                    f"the calibration is {age:.0f} days old (older than {max_age_days:g}); "
                    "shutters drift with temperature and age. Consider calibrating again."
                )))
        return out

    def require(self, settings: CameraSettings, frame_shape: tuple[int, int], **kw: Any) -> list[
        Problem
    ]:
        """Like :meth:`check`, but raises :class:`CalibrationError` when any problem is an
        error; returns the warnings."""
        problems = self.check(settings, frame_shape, **kw)
        errors = [p.message for p in problems if p.severity == "error"]
        if errors:
            raise CalibrationError(
                f"Calibration {self.uuid[:8]} does not apply: " + "; ".join(errors)
            )
        return problems

    # -- storage -----------------------------------------------------------------------------
    def to_tree(self) -> dict[str, Any]:
        """Name -> number / array / string / nested dict (one dict per part)."""
        a = self.applies_to
        tree: dict[str, Any] = {
            "schema_version": self.schema_version,
            "uuid": self.uuid,
            "created": self.created,
            "rig": dict(self.rig) if self.rig else {"name": ""},
            "applies_to": {
                "exposure_us": a.exposure_us,
                "gain_db": a.gain_db,
                "pixel_format": a.pixel_format,
                "roi": np.asarray(a.roi, dtype=np.int64),
                "binning": a.binning,
                **({} if a.temperature_c is None else {"temperature_c": a.temperature_c}),
                **({} if a.black_level_dn is None else {"black_level_dn": a.black_level_dn}),
            },
        }
        for name in _PARTS:
            part = getattr(self, name)
            if part is None:
                continue
            d: dict[str, Any] = {"source_uuid": self.uuid}
            for f in dataclasses.fields(part):
                v = getattr(part, f.name)
                if isinstance(v, list):
                    v = json.dumps(v)
                elif isinstance(v, tuple):
                    v = np.asarray(v)
                elif isinstance(v, np.ndarray) and v.dtype == bool:
                    v = v.astype(np.uint8)
                d[f.name] = v
            tree[name] = d
        # the two maps recon reads without knowing this module (older readers used "dark")
        if self.dark is not None:
            tree["dark_frame"] = self.dark.at(a.exposure_us)
        return tree

    @classmethod
    def from_tree(cls, tree: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_tree`.

        Raises:
            CalibrationError: not a calibration tree, or one of a newer schema.
        """
        try:
            version = str(tree["schema_version"])
            if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
                raise CalibrationError(
                    f"This calibration has schema {version}; this version of blurvid-rig reads "
                    f"{SCHEMA_VERSION}. Update blurvid-rig or calibrate again."
                )
            at = tree["applies_to"]
            applies = AppliesTo(
                exposure_us=float(at["exposure_us"]),
                gain_db=float(at["gain_db"]),
                pixel_format=str(at["pixel_format"]),
                roi=tuple(int(v) for v in np.asarray(at["roi"]).ravel()),  # type: ignore[arg-type]
                binning=int(at.get("binning", 1)),
                temperature_c=(None if "temperature_c" not in at else float(at["temperature_c"])),
                black_level_dn=(
                    None if "black_level_dn" not in at else float(at["black_level_dn"])
                ),
            )
            cal = cls(
                applies_to=applies,
                rig={k: str(v) for k, v in dict(tree.get("rig", {})).items() if str(v)},
                uuid=str(tree["uuid"]),
                created=str(tree["created"]),
                schema_version=version,
            )
            for name, kind in _PARTS.items():
                if name in tree:
                    setattr(cal, name, _part_from(kind, tree[name]))
        except CalibrationError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise CalibrationError(
                f"This is not a complete blurvid-rig calibration ({type(e).__name__}: {e})."
            ) from e
        return cal

    def save(self, path: str | Path) -> Path:
        """Write a calibration file (refuses to overwrite; written whole, then renamed)."""
        path = Path(path)
        if path.exists():
            raise CalibrationError(f"{path} exists; choose another name or delete it first.")
        tmp = path.with_name(path.name + ".partial")
        with h5py.File(tmp, "w") as f:
            f.attrs["kind"] = FILE_KIND
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["uuid"] = self.uuid
            entry = f.create_group("entry")
            entry.attrs["NX_class"] = "NXentry"
            g = entry.create_group("calibration")
            g.attrs["NX_class"] = "NXcollection"
            write_tree(g, self.to_tree())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        """Read a calibration file, or the calibration embedded in a capture file.

        Raises:
            CalibrationError: missing, unreadable, or holding no calibration.
        """
        path = Path(path)
        if not path.exists():
            raise CalibrationError(f"{path} does not exist.")
        try:
            with h5py.File(path, "r") as f:
                g = f.get("entry/calibration")
                if not isinstance(g, h5py.Group) or "uuid" not in g:
                    raise CalibrationError(
                        f"{path} holds no blurvid-rig calibration (no /entry/calibration with a "
                        "uuid); run `blurvid-rig calibrate` to make one."
                    )
                tree = read_tree(g)
        except OSError as e:
            raise CalibrationError(f"{path} is not a readable HDF5 file ({e}).") from e
        return cls.from_tree(tree)


def _part_from(kind: type, d: Mapping[str, Any]) -> Any:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(kind):
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name in ("check_codes",):
            v = json.loads(v) if isinstance(v, str) else list(v)
        elif f.name in ("image_size", "board", "dmd_shape"):
            v = tuple(int(x) for x in np.asarray(v).ravel())
        elif f.name == "hot_pixels":
            v = np.asarray(v).astype(bool)
        elif isinstance(v, np.ndarray):
            pass
        elif f.type in ("float",):
            v = float(v)
        elif f.type in ("int",):
            v = int(v)
        elif f.type in ("str",):
            v = str(v)
        kwargs[f.name] = v
    return kind(**kwargs)


def _roi_text(roi: Sequence[int]) -> str:
    x, y, w, h = (int(v) for v in roi)
    return f"{w}x{h}+{x}+{y}"


def _parse_time(text: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# ============================================================================================
# HDF5 tree (datasets only, so a capture reader that knows nothing of calibration reads it too)
# ============================================================================================


def write_tree(group: h5py.Group, tree: Mapping[str, Any]) -> None:
    for name, value in tree.items():
        if isinstance(value, Mapping):
            sub = group.create_group(name)
            sub.attrs["NX_class"] = "NXcollection"
            write_tree(sub, value)
        elif isinstance(value, str):
            group.create_dataset(name, data=value, dtype=h5py.string_dtype())
        else:
            arr = np.asarray(value)
            if arr.ndim >= 2:
                group.create_dataset(name, data=arr, compression="gzip", compression_opts=4)
            else:
                group.create_dataset(name, data=arr)


def read_tree(group: h5py.Group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            out[name] = read_tree(obj)
            continue
        v = obj[()]
        if isinstance(v, bytes):
            v = v.decode()
        elif np.ndim(v) == 0 and isinstance(v, np.generic):
            v = v.item()
        out[name] = v
    return out
