"""Calibration procedures: Qt-free generators that take frames, yield progress, return a result.

Each procedure is a generator function: iterate it (or hand it to :func:`run`) and it yields
:class:`Progress` while it works and returns its result (``StopIteration.value``); closing it
(``gen.close()``, which :func:`run` does on cancel) stops it between frames, and the camera and
shutter are put back as they were. They drive the devices directly through the :class:`~hw.base`
contracts, so the same code calibrates the simulated rig and a real one:

* the camera is triggered by the shutter controller on Line1 and exposes for a timed window from
  the trigger (``exposure_mode='Timed'``);
* the shutter plays an all-open code covering that window (so an LC shutter is open), or the test
  codes of the timing procedure;
* what is in front of the camera comes from a :class:`~calibration.bench.Bench`.

Procedures: :func:`dark_frames`, :func:`flat_field`, :func:`photon_transfer`,
:func:`shutter_timing`, :func:`geometry`; :func:`calibrate_all` runs the ones asked for in order.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np

from calibration.bench import Bench, Board
from calibration.model import (
    AppliesTo,
    Calibration,
    DarkResult,
    DmdMapping,
    FlatResult,
    GeometryResult,
    PtcResult,
    ShutterTiming,
)
from hw.base import Camera, Shutter
from hw.errors import RigError
from hw.optics import RAMP_10_90
from hw.types import CameraSettings, ShutterCode

T = TypeVar("T")


class CalibrationFailed(RigError):
    """A procedure could not produce a result; the message says what to change on the bench."""


class Cancelled(RigError):
    """The user cancelled a procedure."""


@dataclass
class Progress:
    """How far a procedure is (``fraction`` 0..1) and what it is doing."""

    fraction: float
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Procedure = Generator[Progress, None, T]


def run(
    proc: Procedure[T],
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
) -> T:
    """Drive a procedure to its result, reporting progress; raises :class:`Cancelled` when
    ``cancel`` is set (the procedure is closed, so devices are restored)."""
    try:
        while True:
            if cancel is not None and cancel.is_set():
                proc.close()
                raise Cancelled("Calibration cancelled; nothing was saved from this step.")
            try:
                p = next(proc)
            except StopIteration as stop:
                return stop.value
            if on_progress is not None:
                on_progress(p)
    finally:
        proc.close()


# ============================================================================================
# Taking frames
# ============================================================================================


@dataclass
class Rig:
    """The devices a calibration drives (opened by the caller) and the bench."""

    camera: Camera
    shutter: Shutter
    bench: Bench
    #: camera settings the calibration is made for (gain, ROI, pixel format); exposures vary
    base: CameraSettings | None = None
    #: how long to wait for a frame beyond its exposure
    fetch_timeout_s: float = 5.0


class _Session:
    """Takes frames with given exposure and code; puts camera and shutter back on exit."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.cam, self.sh = rig.camera, rig.shutter
        self._saved_settings = self.cam.settings
        self._saved_code = self.sh.code
        self._saved_armed = self.sh.is_armed
        self.base = rig.base or self._saved_settings
        self._exposure: float | None = None
        self._code: ShutterCode | None = None
        self.frame_shape: tuple[int, ...] | None = None  # of the last frame grabbed
        self._darks: dict[float, np.ndarray | float] = {}
        info = self.sh.info
        self.chip_min, self.chip_max, self.max_chips = (
            info.chip_us_min, info.chip_us_max, info.max_chips
        )

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()

    def restore(self) -> None:
        try:
            self.cam.stop()
            self.sh.disarm()
            self.cam.apply_settings(self._saved_settings)
            if self._saved_code is not None:
                self.sh.load_code(self._saved_code)
                if self._saved_armed:
                    self.sh.arm()
        except RigError:  # the caller sees the original error; restoring is best effort
            pass

    @property
    def saturation_dn(self) -> float:
        return float(self.base.saturation_dn)

    def settings(self, exposure_us: float) -> CameraSettings:
        return self.base.replace(
            trigger_mode="On", trigger_source="Line1", exposure_mode="Timed",
            exposure_us=float(exposure_us),
        )

    def open_code(self, window_us: float) -> ShutterCode:
        """An all-open code lasting at least ``window_us`` plus 1 ms (the shutter settles)."""
        need = window_us + 1000.0
        n = max(1, math.ceil(need / self.chip_max))
        chip = max(self.chip_min, math.ceil(need / n))
        if n > self.max_chips:
            raise CalibrationFailed(
                f"An exposure of {window_us:g} us is longer than the shutter controller can hold "
                "open; use shorter exposures."
            )
        return ShutterCode((1,) * n, float(chip), name="calibration-open")

    def set(self, exposure_us: float, code: ShutterCode | None = None) -> None:
        code = code or self.open_code(exposure_us)
        if exposure_us == self._exposure and code == self._code:
            return
        self.cam.stop()
        if code != self._code:
            self.sh.disarm()
            self.sh.load_code(code)
            self.sh.arm()
            self._code = code
        if exposure_us != self._exposure:
            held = self.cam.apply_settings(self.settings(exposure_us))
            self._exposure = float(held.exposure_us)
        self.cam.start()

    def adopt_loaded(self, exposure_us: float) -> None:
        """Expose with whatever the shutter holds now (a DMD showing a projected pattern)."""
        self.cam.stop()
        self.sh.arm()
        self._code = self.sh.code
        if exposure_us != self._exposure:
            held = self.cam.apply_settings(self.settings(exposure_us))
            self._exposure = float(held.exposure_us)
        self.cam.start()

    def grab(self) -> np.ndarray:
        self.sh.fire()
        timeout = self.rig.fetch_timeout_s + 2 * (self._exposure or 0.0) * 1e-6
        image = self.cam.fetch(timeout_s=timeout).image.astype(np.float32)
        self.frame_shape = image.shape
        return image

    def dark(self, dark: DarkResult | None, exposure_us: float) -> np.ndarray | float:
        """The dark signal to subtract from the frames just grabbed at ``exposure_us``: the
        measured dark frame when it fits them, else the black level (once per exposure)."""
        if exposure_us not in self._darks:
            fits = dark is not None and dark.frames.shape[1:] == self.frame_shape
            self._darks[exposure_us] = (
                dark.at(exposure_us) if fits else float(self.base.black_level_dn))
        return self._darks[exposure_us]


def camera_temperature_c(camera: Camera) -> float | None:
    """The camera's ``DeviceTemperature`` node when it has one (recorded with a calibration)."""
    try:
        t = camera.node_map_snapshot().get("DeviceTemperature")
    except RigError:
        return None
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None


def _robust_sigma(x: np.ndarray) -> float:
    med = np.median(x)
    return float(1.4826 * np.median(np.abs(x - med)))


# ============================================================================================
# Dark
# ============================================================================================


def dark_frames(
    rig: Rig, exposures_us: Sequence[float], n_frames: int = 16, hot_sigma: float = 8.0
) -> Procedure[DarkResult]:
    """Average ``n_frames`` dark frames at each exposure; find hot pixels.

    Hot pixels: above the median by ``hot_sigma`` robust standard deviations in the longest
    exposure's mean dark frame.
    """
    exposures = sorted(float(e) for e in exposures_us)
    if not exposures or n_frames < 2:
        raise ValueError("dark_frames needs at least one exposure and n_frames >= 2.")
    rig.bench.setup("cap", "Put the lens cap on (or block all light), then continue.")
    total = len(exposures) * n_frames
    means, noise_var = [], []
    zeros = samples = 0
    with _Session(rig) as s:
        for ei, exp in enumerate(exposures):
            s.set(exp)
            acc = acc2 = None
            for i in range(n_frames):
                f = s.grab().astype(np.float64)
                zeros += int(np.count_nonzero(f <= 0))
                samples += f.size
                acc = f if acc is None else acc + f
                acc2 = f * f if acc2 is None else acc2 + f * f
                yield Progress((ei * n_frames + i + 1) / total,
                               f"dark: {exp:g} us, frame {i + 1} of {n_frames}")
            mean = acc / n_frames
            var = (acc2 - n_frames * mean * mean) / (n_frames - 1)
            means.append(mean.astype(np.float32))
            noise_var.append(float(np.median(var)))
    frames = np.stack(means)
    if zeros > 0.001 * samples:
        raise CalibrationFailed(
            f"{100 * zeros / samples:.1f} % of the dark samples read 0 DN: the "
            "camera clips its dark noise, so noise and offsets would be wrong. Raise the "
            "camera's black level (BlackLevel, e.g. to 64 DN in Mono12) and repeat."
        )
    longest = frames[-1]
    sig = max(_robust_sigma(longest), 1e-6)
    hot = longest > np.median(longest) + hot_sigma * max(sig, math.sqrt(noise_var[-1]))
    first = frames[0][~hot]
    temporal = math.sqrt(noise_var[0])
    dsnu = math.sqrt(max(float(np.var(first)) - temporal**2 / n_frames, 0.0))
    saturated = float(np.mean(frames[0])) > 0.5 * s.saturation_dn
    if saturated:
        raise CalibrationFailed(
            f"The dark frames average {np.mean(frames[0]):.0f} DN, half the camera's range: light "
            "reaches the sensor. Cap the lens and darken the room, then repeat."
        )
    return DarkResult(
        exposures_us=np.asarray(exposures), frames=frames, hot_pixels=hot,
        temporal_noise_dn=temporal, dsnu_dn=dsnu, n_frames=n_frames,
    )


# ============================================================================================
# Flat
# ============================================================================================


def flat_field(
    rig: Rig, exposure_us: float, n_frames: int = 16, dark: DarkResult | None = None,
    n_radii: int = 24,
) -> Procedure[FlatResult]:
    """Average ``n_frames`` frames of a uniform target; the flat is their dark-subtracted mean
    normalised to mean 1; vignetting is its smooth radial profile, PRNU what is left."""
    rig.bench.setup("flat", "Put the uniform light (diffusor, integrating sphere) in front of "
                            "the lens, filling the field, then continue.")
    with _Session(rig) as s:
        s.set(exposure_us)
        acc = acc2 = None
        for i in range(n_frames):
            f = s.grab().astype(np.float64)
            acc = f if acc is None else acc + f
            acc2 = f * f if acc2 is None else acc2 + f * f
            yield Progress((i + 1) / n_frames, f"flat: frame {i + 1} of {n_frames}")
        d = s.dark(dark, exposure_us)
        sat = s.saturation_dn
    mean = acc / n_frames
    if float(np.percentile(mean, 99.9)) >= 0.95 * sat:
        raise CalibrationFailed(
            f"The flat frames saturate (99.9th percentile {np.percentile(mean, 99.9):.0f} of "
            f"{sat:.0f} DN); dim the light or shorten the exposure ({exposure_us:g} us)."
        )
    signal = mean - d
    level = float(np.mean(signal))
    if level < 0.05 * sat:
        raise CalibrationFailed(
            f"The flat frames are too dark ({level:.0f} DN above dark of {sat:.0f}); "
            "brighten the light or lengthen the exposure (aim for 30-70 % of the range)."
        )
    flat = (signal / level).astype(np.float32)
    h, w = flat.shape
    sigma = max(h, w) / 24.0
    smooth = cv2.GaussianBlur(flat, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(x - (w - 1) / 2, y - (h - 1) / 2) / math.hypot((w - 1) / 2, (h - 1) / 2)
    edges = np.linspace(0, 1, n_radii + 1)
    idx = np.clip(np.digitize(r.ravel(), edges) - 1, 0, n_radii - 1)
    counts = np.bincount(idx, minlength=n_radii)
    prof = np.bincount(idx, weights=flat.ravel(), minlength=n_radii) / np.maximum(counts, 1)
    keep = counts > 0
    var = (acc2 - n_frames * mean * mean) / (n_frames - 1)
    temporal_rel = math.sqrt(float(np.median(var)) / n_frames) / level
    resid = flat / smooth
    margin = int(2 * sigma)
    core = resid[margin : h - margin, margin : w - margin] if min(h, w) > 4 * margin else resid
    prnu = math.sqrt(max(float(np.var(core)) - temporal_rel**2, 0.0))
    return FlatResult(
        flat=flat, radius=0.5 * (edges[1:] + edges[:-1])[keep], vignetting=prof[keep],
        prnu=prnu, mean_dn=level, exposure_us=float(exposure_us), n_frames=n_frames,
    )


# ============================================================================================
# Photon transfer
# ============================================================================================


def photon_transfer(
    rig: Rig, *, n_points: int = 20, probe_us: float = 1000.0, dark: DarkResult | None = None,
    max_exposure_us: float = 2_000_000.0,
) -> Procedure[PtcResult]:
    """Mean and temporal variance of pairs of flat frames over exposures from ~0.5 % of the
    range to past saturation (EMVA 1288's method): gain from the slope, read noise from the
    dark noise (or the intercept), saturation capacity where the variance peaks."""
    rig.bench.setup("flat", "Keep the uniform light in front of the lens (photon transfer), "
                            "then continue.")
    with _Session(rig) as s:
        sat = s.saturation_dn
        s.set(probe_us)
        frame = s.grab()
        probe = float(np.mean(frame - s.dark(dark, probe_us)))
        if probe <= 0.002 * sat:
            raise CalibrationFailed(
                f"At {probe_us:g} us the flat target gives {probe:.1f} DN: no light reaches the "
                "sensor. Switch the light on and uncap the lens."
            )
        e_sat = probe_us * (sat - float(np.mean(s.dark(dark, probe_us)))) / probe
        if e_sat * 1.25 > max_exposure_us:
            raise CalibrationFailed(
                f"The light is too dim for photon transfer: reaching saturation would take "
                f"{e_sat / 1e6:.1f} s exposures (limit {max_exposure_us / 1e6:g} s). Brighten the "
                "flat light."
            )
        exposures = np.geomspace(e_sat * 0.004, e_sat * 1.25, n_points)
        exposures = np.maximum(exposures, 1.0)
        means, variances = [], []
        for i, exp in enumerate(exposures):
            s.set(float(exp))
            a, b = s.grab(), s.grab()
            d = s.dark(dark, float(exp))
            means.append(float(np.mean((a + b) / 2 - d)))
            variances.append(float(np.var(a - b) / 2))
            yield Progress((i + 1) / n_points,
                           f"photon transfer: {exp:.0f} us, mean {means[-1]:.0f} DN",
                           {"mean": means[-1], "variance": variances[-1]})
    m, v = np.asarray(means), np.asarray(variances)
    peak = int(np.argmax(v))
    full_mean = float(m[peak])
    # gain: straight line through the points below 70 % of the saturation mean
    lo = m > max(0.002 * sat, 5.0)
    fit = lo & (m < 0.7 * full_mean) & (np.arange(len(m)) < peak)
    if np.count_nonzero(fit) < 4:
        raise CalibrationFailed(
            "Too few unsaturated photon-transfer points to fit the gain; the light flickers or "
            "saturates at the shortest exposure. Dim the light."
        )
    slope, intercept = np.polyfit(m[fit], v[fit], 1)
    if slope <= 0:
        raise CalibrationFailed(
            "The variance does not grow with the signal: the light is not stable (or the camera "
            "applies noise reduction). Use a DC light source and turn off camera processing."
        )
    gain = 1.0 / slope  # e-/DN
    if dark is not None:
        read_dn2 = dark.temporal_noise_dn**2 - 1.0 / 12.0  # quantisation (EMVA 1288)
    else:
        read_dn2 = intercept - 1.0 / 12.0
    read_dn = math.sqrt(max(read_dn2, 0.0))
    # linearity: mean against exposure between 5 % and 90 % of the saturation mean
    lin = (m > 0.05 * full_mean) & (m < 0.9 * full_mean)
    if np.count_nonzero(lin) >= 3:
        p = np.polyfit(exposures[lin], m[lin], 1)
        resid = m[lin] - np.polyval(p, exposures[lin])
        lin_err = 100.0 * float(np.max(np.abs(resid))) / float(np.ptp(m[lin]) or 1.0)
    else:
        lin_err = float("nan")
    return PtcResult(
        exposures_us=exposures, mean_dn=m, variance_dn2=v, gain_e_per_dn=float(gain),
        read_noise_e=float(read_dn * gain), read_noise_dn=float(read_dn),
        full_well_e=float(full_mean * gain), linearity_error_pct=lin_err,
        fit_max_dn=float(0.7 * full_mean),
    )


# ============================================================================================
# Shutter timing and effective code
# ============================================================================================


#: Bounds of a plausible timing measurement, in transmittance (1 = the open level): the issue's
#: [-0.05, 1.1] for the 5-point running mean of the measured samples, widened by three standard
#: errors of that mean as the frames' own noise predicts (on the simulated bench, 4 frames
#: averaged: 0.003 at the opening and 0.017 at the closing edge with 512 x 512 pixels, 0.017 and
#: 0.09 with 96 x 96); leakage at most 90 % of the open level.
TRANSMITTANCE_RANGE = (-0.05, 1.1)
LEAKAGE_MAX = 0.9
#: The fit of the shutter model must leave a residual (rms over the samples of an edge, in
#: transmittance) of at most this many times what the frames' noise explains (on the simulated
#: bench, whose shutter is the model, the residual is 0.95-1.17 times that noise)...
RESIDUAL_NOISE_FACTOR = 3.0
#: ... or this much, whichever is larger, for the frames of a large sensor, whose noise explains
#: almost nothing: a real LC shutter's ramp is not the model's straight line, and a 1 - exp ramp
#: (10-90 % in 50, 100, 150 us) leaves 0.036, 0.050, 0.061 rms on the 4 us grid (an S-shaped one
#: 0.009). Measured on the simulated bench at 512 x 512 pixels, a disturbance leaves far more:
#: 0.14 (a lamp flickering by 0.1 %), 1.4 (by 1 %), 1.25 (a moving target), 0.34-0.57 (Mono8).
RESIDUAL_FLOOR = 0.08
#: The expected noise of the transmittance samples (rms) above which the edges cannot be
#: located (the simulated bench: 0.02 at 512 x 512 pixels and 0.11 at 96 x 96 with 4 frames
#: averaged, 0.21 at 96 x 96 with one).
MAX_NOISE_RMS = 0.3
#: Frame differences whose kurtosis exceeds this are not sensor noise (3 for Gaussian noise; a
#: moving target on the simulated bench gives 23-43): part of the picture changed between them.
MOTION_KURTOSIS = 6.0
#: Below this temporal noise (DN rms) per pixel the noise no longer dithers the 1-DN steps of
#: the pixel values, and the mean of a frame moves in quantisation steps (the simulated camera
#: in Mono8: 0.06 DN at the opening edge of a 2 % leaky shutter; in Mono12: 1.0 DN).
DITHER_MIN_DN = 0.5


def _ramp_integral(x: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Integral from -inf to ``x`` of ``clip(u / full, 0, 1)`` (``full`` 0: a step)."""
    pos = np.maximum(x, 0.0)
    inside = pos * pos / (2.0 * np.where(full > 0, full, 1.0))
    return np.where(pos >= full, pos - 0.5 * full, inside)


def _ramp_means(t: np.ndarray, start: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Mean over each ``[t[i], t[i + 1]]`` of a 0 -> 1 ramp starting at ``start`` and lasting
    ``full`` (arrays of candidates, ``(C,)``) -> ``(C, len(t) - 1)``."""
    g = _ramp_integral(t[None, :] - start[:, None], full[:, None])
    return np.diff(g, axis=-1) / np.diff(t)


@dataclass
class _EdgeFit:
    """A straight ramp (the model of :class:`~hw.optics.ShutterOptics`) fitted to the measured
    transmittance around one command edge; times from the edge."""

    start_us: float  # where the ramp starts (>= 0: not before the command)
    full_us: float  # its length, 0 -> 100 %
    sse: float  # sum of squared residuals
    free_start_us: float  # the start without the constraint (may precede the command)
    free_sse: float


def _fit_edge(t: np.ndarray, tr: np.ndarray, leakage: float, rising: bool,
              earliest_us: float) -> _EdgeFit:
    """Least squares over the ramp's start and length, the levels fixed at the leakage and the
    open level (1): a coarse grid, then two finer ones around the best."""
    swing = 1.0 - leakage
    y = (tr - leakage) / swing if rising else (1.0 - tr) / swing  # 0 -> 1 in both cases
    end = float(t[-1])

    def best(starts: np.ndarray, fulls: np.ndarray, lo: float) -> tuple[float, float, float]:
        s, f = (a.ravel() for a in np.meshgrid(starts, fulls, indexing="ij"))
        ok = (s >= lo) & (f >= 0) & (s + f <= end)
        s, f = s[ok], f[ok]
        out = (math.inf, 0.0, 0.0)
        for k in range(0, s.size, 4096):
            sse = np.sum((_ramp_means(t, s[k:k + 4096], f[k:k + 4096]) - y) ** 2, axis=-1)
            j = int(np.argmin(sse))
            if sse[j] < out[0]:
                out = (float(sse[j]), float(s[k + j]), float(f[k + j]))
        return out

    def search(lo: float) -> tuple[float, float, float]:
        b = best(np.arange(lo, end, 1.0), np.arange(0.0, end - lo, 2.0), lo)
        for ds, df, st in ((2.0, 4.0, 0.1), (0.2, 0.4, 0.01)):
            b = min(b, best(np.arange(b[1] - ds, b[1] + ds + st / 2, st),
                            np.arange(b[2] - df, b[2] + df + st / 2, st), lo))
        return b

    free = search(earliest_us)
    fixed = free if free[1] >= 0 else search(0.0)
    scale = swing * swing  # back to transmittance units
    return _EdgeFit(start_us=fixed[1], full_us=fixed[2], sse=fixed[0] * scale,
                    free_start_us=free[1], free_sse=free[0] * scale)


class _NoiseProbe:
    """The timing frames' own temporal noise, from pairs of frames (EMVA 1288's pair method:
    half the variance of their difference), and how heavy the tails of those differences are."""

    def __init__(self) -> None:
        self.level: list[float] = []
        self.var: list[float] = []
        self.kurtosis: list[float] = []
        self.n_pixels = 0

    def add(self, level: float, a: np.ndarray, b: np.ndarray) -> None:
        d = (a - b).astype(np.float64)
        d -= d.mean()
        m2 = float(np.mean(d * d))
        self.level.append(level)
        self.var.append(0.5 * m2)
        self.kurtosis.append(float(np.mean(d**4)) / (m2 * m2) if m2 > 0 else math.inf)
        self.n_pixels = d.size

    def variance_model(self) -> Callable[[np.ndarray], np.ndarray]:
        """Per-pixel temporal variance (DN^2) against the signal (DN above dark): the straight
        line of photon transfer, fitted to the pairs."""
        lv, var = np.asarray(self.level), np.asarray(self.var)
        if lv.size >= 2 and np.ptp(lv) > 0:
            slope, icpt = np.polyfit(lv, var, 1)
            slope = max(float(slope), 0.0)
        else:
            slope, icpt = 0.0, float(np.mean(var)) if var.size else 0.0
        icpt = max(float(icpt), float(np.min(var)) if var.size else 0.0, 1e-6)
        return lambda v: icpt + slope * np.maximum(np.asarray(v, np.float64), 0.0)

    @property
    def min_sigma_dn(self) -> float:
        return math.sqrt(min(self.var)) if self.var else math.inf

    @property
    def median_kurtosis(self) -> float:
        return float(np.median(self.kurtosis)) if self.kurtosis else 3.0


def _disturbance(noise: _NoiseProbe, pixel_format: str) -> str:
    """What in front of the camera most likely spoiled a timing measurement, and what to do."""
    if noise.min_sigma_dn < DITHER_MIN_DN:
        return (
            "Too little light for the pixel format: where the light is faintest the frames' "
            f"noise ({noise.min_sigma_dn:.2f} DN) is below the camera's 1-DN step, so their mean "
            "climbs in quantisation steps instead of with the shutter. Use a pixel format with "
            f"more bits than {pixel_format} (e.g. Mono12), more gain or a brighter target, then "
            "run this step again.")
    if noise.median_kurtosis > MOTION_KURTOSIS:
        return (
            "The picture itself changed between the frames (their differences are not sensor "
            f"noise: kurtosis {noise.median_kurtosis:.0f} where noise has 3): something moves in "
            "front of the camera. Keep the target, the camera and the light still, then run this "
            "step again.")
    return (
        "The brightness changed between the frames while the picture stayed the same: the light "
        "flickers (a lamp on mains power or a dimmer flickers at 100 or 120 Hz). Light the "
        "target with DC or high-frequency LED light, then run this step again.")


def shutter_timing(
    rig: Rig, *, chip_us: float = 1000.0, step_us: float = 4.0, span_us: float = 300.0,
    n_avg: int = 4, check_chip_us: Sequence[float] = (), dark: DarkResult | None = None,
) -> Procedure[ShutterTiming]:
    """Transmittance of the shutter around an opening and a closing edge, from the light
    integrated by timed exposures that end at successive times ``tau`` (the derivative of that
    integral is the transmittance at ``tau``).

    Test code: 2 chips closed, 4 open, 2 closed, with chips of ``chip_us`` (long enough for the
    shutter to settle). Exposures end every ``step_us`` from 20 us before each edge to
    ``span_us`` after it, ``n_avg`` frames each; the open level comes from exposures ending in
    the middle and at the end of the open part, the leakage from the closed parts. The shutter
    model (:class:`~hw.optics.ShutterOptics`: a straight ramp after a latency, between the
    leakage and the open level) is fitted to the measured transmittance of each edge (the
    mean over each step, as measured); the fit's residual must stay within what the frames' own
    noise explains (:data:`RESIDUAL_NOISE_FACTOR`, :data:`RESIDUAL_FLOOR`), else the step fails
    and says what disturbed it. With ``check_chip_us``, single-chip codes of that chip length
    are measured whole and compared with what the fitted model predicts (the check of the
    effective code).
    """
    if chip_us < span_us or step_us <= 0 or n_avg < 1:
        raise ValueError(
            f"The step code's chips ({chip_us:g} us) must outlast the measured span after each "
            f"edge ({span_us:g} us), so that the shutter settles; and step_us > 0, n_avg >= 1."
        )
    bits = (0, 0, 1, 1, 1, 1, 0, 0)
    code = ShutterCode(bits, float(chip_us), name="timing-step")
    c = float(chip_us)
    rise_edge, fall_edge = 2 * c, 6 * c
    grid_r = np.arange(rise_edge - 20.0, rise_edge + span_us + step_us / 2, step_us)
    grid_f = np.arange(fall_edge - 20.0, fall_edge + span_us + step_us / 2, step_us)
    anchors = np.array([c, 1.5 * c, 3.5 * c, 5.5 * c, 7.0 * c, 8.0 * c])
    taus = np.concatenate([anchors, grid_r, grid_f])
    checks = [
        ShutterCode(tuple(1 if k == j else 0 for k in range(8)), float(cc), name=f"single-{j}")
        for cc in check_chip_us for j in (3,)
    ] + [
        ShutterCode((0, 0, 0, 1, 1, 0, 0, 0), float(cc), name="double") for cc in check_chip_us
    ]
    n_total = len(taus) + len(checks)
    rig.bench.setup("bright", "Put a static, bright, uniform target in front of the lens "
                              "(the flat-field light does), then continue.")
    values: dict[float, float] = {}
    check_vals: list[float] = []
    noise = _NoiseProbe()
    with _Session(rig) as s:
        prev: tuple[float, np.ndarray] | None = None
        for i, tau in enumerate(taus):
            tau = float(tau)
            s.set(tau, code)
            frames = [s.grab() for _ in range(n_avg)]
            values[tau] = (sum(float(np.mean(f)) for f in frames) / n_avg
                           - float(np.mean(s.dark(dark, tau))))
            # the noise of the frames: two of this exposure, or this one and the previous
            # exposure's (one step shorter) when only one frame is taken per exposure
            if n_avg >= 2:
                noise.add(values[tau], frames[0], frames[1])
            elif prev is not None and 0 < tau - prev[0] <= 1.5 * step_us:
                noise.add(0.5 * (values[tau] + values[prev[0]]), frames[0], prev[1])
            prev = (tau, frames[0])
            yield Progress((i + 1) / n_total, f"shutter timing: exposure ending at {tau:.0f} us")
        # the open level per microsecond, for the check codes too
        open_rate = (values[5.5 * c] - values[3.5 * c]) / (2 * c)
        for j, chk in enumerate(checks):
            s.set(chk.period_us, chk)
            acc = sum(float(np.mean(s.grab())) for _ in range(n_avg))
            level = acc / n_avg - float(np.mean(s.dark(dark, chk.period_us)))
            check_vals.append(level / (open_rate * chk.chip_us))
            yield Progress((len(taus) + j + 1) / n_total, f"shutter check: code {chk.name}")
        sat = s.saturation_dn
        pixel_format = s.base.pixel_format
    if values[8.0 * c] > 0.9 * sat:
        raise CalibrationFailed(
            f"The timing frames saturate ({values[8.0 * c]:.0f} of {sat:.0f} DN with "
            f"{4 * c:g} us of open shutter); dim the target (aim for about half the range)."
        )
    if open_rate <= 0 or values[5.5 * c] < 0.02 * sat:
        raise CalibrationFailed(
            "The timing frames hardly change while the shutter is open: is the target lit and "
            "is the camera triggered by the shutter controller (Line1)?"
        )
    if noise.median_kurtosis > MOTION_KURTOSIS:  # before the noise, which motion inflates
        raise CalibrationFailed("The shutter timing measurement is implausible. "
                                + _disturbance(noise, pixel_format))
    # the standard error of each value (mean of n_avg frames of n_pixels) from the frames' noise
    var_model = noise.variance_model()
    n_mean = max(noise.n_pixels, 1) * n_avg

    def se(tau: np.ndarray) -> np.ndarray:
        v = np.array([values[float(t)] for t in np.atleast_1d(tau)])
        return np.sqrt(var_model(v) / n_mean)

    leak_a = (values[1.5 * c] - values[c]) / (0.5 * c) / open_rate
    leak_b = (values[8.0 * c] - values[7.0 * c]) / c / open_rate
    raw_leakage = float(0.5 * (leak_a + leak_b))
    se_a = float(np.hypot(*se(np.array([1.5 * c, c])))) / (0.5 * c) / open_rate
    se_b = float(np.hypot(*se(np.array([8.0 * c, 7.0 * c])))) / c / open_rate
    leakage_se = 0.5 * math.hypot(se_a, se_b)

    def profile(grid: np.ndarray, edge: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        iv = np.array([values[float(t)] for t in grid])
        tr = np.diff(iv) / np.diff(grid) / open_rate
        tm = 0.5 * (grid[1:] + grid[:-1]) - edge
        e = se(grid)
        sd = np.hypot(e[1:], e[:-1]) / np.diff(grid) / open_rate
        return tm, tr, sd

    rt, rtr, rsd = profile(grid_r, rise_edge)
    ft, ftr, fsd = profile(grid_f, fall_edge)
    noise_rms = float(np.sqrt(np.mean(np.concatenate([rsd, fsd]) ** 2)))
    if noise_rms > MAX_NOISE_RMS:
        raise CalibrationFailed(
            f"Too little light to time the shutter: the frames' noise makes each measured "
            f"transmittance uncertain by {noise_rms:.2f} rms (at most {MAX_NOISE_RMS:g} locates "
            f"the edges), with {open_rate * step_us:.2f} DN of light per {step_us:g} us step. "
            "Brighten the target, open the aperture, use a larger ROI or average more frames, "
            "then run this step again.")
    leakage = min(max(raw_leakage, 0.0), LEAKAGE_MAX)
    fits = {}
    for name, tr, grid, edge in (("opening", rtr, grid_r, rise_edge),
                                 ("closing", ftr, grid_f, fall_edge)):
        fit = _fit_edge(grid - edge, tr, leakage, name == "opening",
                        earliest_us=float(grid[1] - edge))
        if fit.start_us + fit.full_us > span_us - 2 * step_us:
            raise CalibrationFailed(
                f"The shutter did not {'open' if name == 'opening' else 'close'} within "
                f"{span_us:g} us of the command edge; lengthen span_us, or check that the shutter "
                "is driven by the controller."
            )
        fits[name] = fit
    o, co = fits["opening"], fits["closing"]
    timing = ShutterTiming(
        latency_us=o.start_us + 0.1 * o.full_us, rise_us=RAMP_10_90 * o.full_us,
        close_latency_us=co.start_us + 0.1 * co.full_us, fall_us=RAMP_10_90 * co.full_us,
        leakage=leakage, chip_us=c, rise_t_us=rt, rise_transmittance=rtr, fall_t_us=ft,
        fall_transmittance=ftr,
    )
    # the residual of the model as stored (what the effective code is computed from)
    model = timing.optics()
    r_res = rtr - model.integrate(grid_r, bits, c) / np.diff(grid_r)
    f_res = ftr - model.integrate(grid_f, bits, c) / np.diff(grid_f)
    timing.fit_residual_rms = float(np.sqrt(np.mean(np.concatenate([r_res, f_res]) ** 2)))
    timing.fit_noise_rms = noise_rms
    _check_timing_plausible(
        {"opening": (rtr, r_res, rsd, o), "closing": (ftr, f_res, fsd, co)},
        raw_leakage, leakage_se, noise, pixel_format)
    if checks:
        pred = [float(np.sum(timing.effective_code(k.bits, k.chip_us, 8)) / 8) for k in checks]
        timing.check_codes = [f"{k.as_string()}@{k.chip_us:g}us" for k in checks]
        timing.check_measured = np.asarray(check_vals)
        timing.check_predicted = np.asarray(pred)
    return timing


def _check_timing_plausible(edges: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, _EdgeFit]],
                            leakage: float, leakage_se: float, noise: _NoiseProbe,
                            pixel_format: str) -> None:
    """Refuse a timing measurement no shutter can produce, with what disturbed it: per edge
    ``(measured transmittance, residual of the fitted model, expected noise of each sample,
    fit)``; the leakage before clamping at 0, and its standard error."""
    problems = []
    for name, (tr, res, sd, fit) in edges.items():
        n5 = min(5, len(tr))
        m = np.convolve(tr, np.ones(n5) / n5, mode="valid")
        # the standard error of a 5-sample mean: the differences telescope to its two ends,
        # so it is that of one sample (two ends too) over 5
        margin = 3.0 * float(np.sqrt(np.mean(sd**2))) / n5
        lo, hi = float(m.min()), float(m.max())
        if lo < TRANSMITTANCE_RANGE[0] - margin or hi > TRANSMITTANCE_RANGE[1] + margin:
            problems.append(f"the transmittance around the {name} edge swings from {lo:.2f} to "
                            f"{hi:.2f} (a shutter stays within 0..1)")
        rms = float(np.sqrt(np.mean(res**2)))
        expected = float(np.sqrt(np.mean(sd**2)))
        bound = max(RESIDUAL_NOISE_FACTOR * expected, RESIDUAL_FLOOR)
        if rms > bound:
            problems.append(
                f"the shutter model fits the {name} edge with a residual of {rms:.3f} rms, "
                f"{rms / expected:.0f} times the {expected:.3f} that the frames' noise explains "
                f"(bound {bound:.3f})")
        # light before the command: the fit starting at the command is significantly worse
        # than the free one (likelihood ratio; a poor fit widens the noise it is judged by)
        s2 = max(expected**2, fit.free_sse / max(len(tr) - 2, 1))
        if fit.free_start_us < 0 and (fit.sse - fit.free_sse) / s2 > 9.0:
            problems.append(f"the {name} edge begins {-fit.free_start_us:.1f} us before the "
                            "command")
    if leakage < -3.0 * leakage_se - 1e-4:
        problems.append(f"the leakage is {100 * leakage:.2f} % of the open level (less light "
                        "with the shutter closed than in the dark)")
    elif leakage > LEAKAGE_MAX:
        problems.append(f"the leakage is {100 * leakage:.1f} % of the open level")
    if problems:
        raise CalibrationFailed("The shutter timing measurement is implausible: "
                                + "; ".join(problems) + ". " + _disturbance(noise, pixel_format))


# ============================================================================================
# Geometry
# ============================================================================================


def _to_u8(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)


def geometry(
    rig: Rig, *, board: Board | None = None, n_views: int = 12, exposure_us: float = 5000.0,
    fix_k3: bool = True,
) -> Procedure[GeometryResult]:
    """Detect a checkerboard in ``n_views`` poses and fit intrinsics and distortion
    (``cv2.calibrateCamera``); views where the board is not found are skipped and reported."""
    board = board or Board()
    pattern = (board.cols, board.rows)
    objp = board.object_points()
    obj_pts, img_pts, found = [], [], []
    size: tuple[int, int] = (0, 0)
    with _Session(rig) as s:
        for v in range(n_views):
            rig.bench.setup(
                "checkerboard",
                f"Hold the checkerboard ({board.cols}x{board.rows} inner corners) in view at a "
                f"new tilt and position (view {v + 1} of {n_views}), then continue.",
                view=v,
            )
            s.set(exposure_us)
            img = s.grab()
            h, w = img.shape
            size = (w, h)
            u8 = _to_u8(img)
            flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
            ok, corners = cv2.findChessboardCorners(u8, pattern, flags=flags)
            if ok:
                crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
                corners = cv2.cornerSubPix(u8, corners, (5, 5), (-1, -1), crit)
                obj_pts.append(objp)
                img_pts.append(corners)
            found.append(ok)
            yield Progress((v + 1) / n_views,
                           f"geometry: view {v + 1}: board {'found' if ok else 'NOT found'}")
    if len(img_pts) < 4:
        raise CalibrationFailed(
            f"The checkerboard was found in {len(img_pts)} of {n_views} views; at least 4 are "
            "needed. Light the board evenly, keep it whole in view and in focus."
        )
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    rms, k, dist, rvecs, tvecs = cv2.calibrateCamera(obj_pts, img_pts, size, None, None,
                                                     flags=flags)
    per_view = []
    for o, im, r, t in zip(obj_pts, img_pts, rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(o, r, t, k, dist)
        per_view.append(float(np.sqrt(np.mean(np.sum((proj - im) ** 2, axis=-1)))))
    return GeometryResult(
        camera_matrix=np.asarray(k, np.float64), dist=np.asarray(dist, np.float64).ravel()[:5],
        rms_px=float(rms), per_view_rms_px=np.asarray(per_view), image_size=size,
        board=pattern, square_mm=board.square_mm,
        corners=np.stack([c.reshape(-1, 2) for c in img_pts]).astype(np.float32),
    )


# ============================================================================================
# All of them
# ============================================================================================

STEPS = ("dark", "flat", "photon_transfer", "shutter_timing", "geometry")
#: steps that need more than a camera and a shutter (a DMD projector)
OPTIONAL_STEPS = ("dmd_mapping",)


@dataclass
class Plan:
    """Which procedures to run and with what exposure (that of the captures to calibrate)."""

    exposure_us: float = 10_000.0
    steps: tuple[str, ...] = STEPS
    #: exposure of the flat field and the photon-transfer probe (default ``exposure_us``): pick
    #: one that puts the flat target at 30-70 % of the range
    flat_exposure_us: float | None = None
    dark_exposures_us: tuple[float, ...] = ()
    n_frames: int = 16
    timing_chip_us: float = 1000.0
    check_chip_us: tuple[float, ...] = (100.0,)
    geometry_views: int = 12
    board: Board = field(default_factory=Board)

    def __post_init__(self) -> None:
        if not self.exposure_us > 0 or (self.flat_exposure_us is not None
                                        and not self.flat_exposure_us > 0):
            raise ValueError("Exposures must be > 0 us.")
        if self.n_frames < 2:
            raise ValueError(f"Average at least 2 frames per dark and flat; got {self.n_frames}.")
        if self.geometry_views < 4 and "geometry" in self.steps:
            raise ValueError(f"Geometry needs at least 4 checkerboard views; got "
                             f"{self.geometry_views}.")
        if self.timing_chip_us < 300 and "shutter_timing" in self.steps:
            raise ValueError(
                f"The shutter-timing step codes need chips of at least 300 us (the span measured "
                f"after each edge); got {self.timing_chip_us:g} us.")
        bad = [s for s in self.steps if s not in STEPS + OPTIONAL_STEPS]
        if bad:
            raise ValueError(
                f"Unknown calibration steps {bad}; choose from {STEPS + OPTIONAL_STEPS}."
            )


def calibrate_all(
    rig: Rig, plan: Plan, rig_info: dict[str, str] | None = None,
    projector: Projector | None = None,
) -> Procedure[Calibration]:
    """Run the planned procedures in order (each step's progress scaled into 0..1);
    ``dmd_mapping`` needs the DMD as ``projector``."""
    if "dmd_mapping" in plan.steps and projector is None:
        raise ValueError("The dmd_mapping step needs the DMD (projector=); the shutter is not one.")
    base = rig.base or rig.camera.settings
    rig.base = base
    shape = (base.roi.height or rig.camera.settings.roi.height,
             base.roi.width or rig.camera.settings.roi.width)
    cal = Calibration(applies_to=AppliesTo.from_settings(base.replace(
        exposure_us=plan.exposure_us), shape, camera_temperature_c(rig.camera)),
        rig=dict(rig_info or {}))
    n = len(plan.steps)
    flat_exposure = plan.flat_exposure_us or plan.exposure_us

    def scaled(i: int, proc: Procedure[Any]) -> Procedure[Any]:
        try:
            while True:
                p = next(proc)
                yield Progress((i + p.fraction) / n, p.message, p.data)
        except StopIteration as stop:
            return stop.value
        finally:
            proc.close()

    try:
        yield from _run_steps(rig, plan, cal, projector, scaled, flat_exposure)
    except RigError as e:
        e.partial = cal  # type: ignore[attr-defined]  # what was measured before the failure
        raise
    return cal


def _run_steps(rig, plan, cal, projector, scaled, flat_exposure):
    for i, step in enumerate(plan.steps):
        if step == "dark":
            exps = plan.dark_exposures_us or (plan.exposure_us / 4, plan.exposure_us)
            cal.dark = yield from scaled(i, dark_frames(rig, exps, plan.n_frames))
        elif step == "flat":
            cal.flat = yield from scaled(
                i, flat_field(rig, flat_exposure, plan.n_frames, dark=cal.dark))
        elif step == "photon_transfer":
            cal.photon_transfer = yield from scaled(
                i, photon_transfer(rig, probe_us=flat_exposure, dark=cal.dark))
        elif step == "shutter_timing":
            cal.shutter_timing = yield from scaled(i, shutter_timing(
                rig, chip_us=plan.timing_chip_us, check_chip_us=plan.check_chip_us,
                dark=cal.dark))
        elif step == "geometry":
            cal.geometry = yield from scaled(i, geometry(
                rig, board=plan.board, n_views=plan.geometry_views,
                exposure_us=plan.exposure_us))
        elif step == "dmd_mapping":
            assert projector is not None
            cal.dmd_mapping = yield from scaled(i, dmd_mapping(
                rig, projector, exposure_us=plan.flat_exposure_us or plan.exposure_us))


# ============================================================================================
# DMD -> camera mapping
# ============================================================================================


class Projector(Protocol):
    """Shows a binary pattern on the DMD (``pattern[y, x]``, True = mirror on) and holds it.

    A projector that is also the rig's shutter sets ``is_shutter = True``: the pattern is then
    what the shutter plays during each exposure (see :class:`DmdProjector`)."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def show(self, pattern: np.ndarray) -> None: ...


class DmdProjector:
    """The rig's DMD shutter used as projector: each pattern is loaded as a one-pattern mask
    stack of ``chip_us``, played once per exposure, so the camera sees the lit card through it."""

    is_shutter = True

    def __init__(self, shutter: Shutter, chip_us: float = 2000.0) -> None:
        if not hasattr(shutter, "load_masks"):
            raise ValueError(f"{shutter.info.controller} is not a DMD; it cannot project dots.")
        self.shutter = shutter
        self.chip_us = float(chip_us)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.shutter.dmd_shape)  # type: ignore[attr-defined]

    def show(self, pattern: np.ndarray) -> None:
        self.shutter.disarm()
        self.shutter.load_masks(np.asarray(pattern, bool)[None], self.chip_us)  # type: ignore


def dot_grid(shape: tuple[int, int], grid: tuple[int, int], radius: int) -> np.ndarray:
    """Centres ``(N, 2)`` (x, y) of a ``cols`` x ``rows`` grid of dots inside a DMD of ``shape``."""
    h, w = shape
    cols, rows = grid
    xs = np.linspace(0.12 * w, 0.88 * w, cols)
    ys = np.linspace(0.12 * h, 0.88 * h, rows)
    gx, gy = np.meshgrid(xs, ys)
    centres = np.round(np.stack([gx.ravel(), gy.ravel()], -1))
    if radius * 2 + 2 > min(np.diff(xs).min(initial=w), np.diff(ys).min(initial=h)):
        raise ValueError(f"Dots of radius {radius} overlap on a {cols}x{rows} grid; use fewer.")
    return centres


def _dots_image(shape: tuple[int, int], centres: np.ndarray, radius: int) -> np.ndarray:
    img = np.zeros(shape, np.uint8)
    for x, y in centres:
        cv2.circle(img, (int(x), int(y)), int(radius), 1, -1)
    return img.astype(bool)


def dmd_mapping(
    rig: Rig, projector: Projector, *, grid: tuple[int, int] = (8, 6), radius: int | None = None,
    exposure_us: float = 10_000.0, model: str = "homography",
) -> Procedure[DmdMapping]:
    """Fit the DMD -> camera mapping from projected dots.

    Frame 0 shows every dot (their camera positions are the centroids of the bright blobs);
    frames 1..B show the dots whose index + 1 has bit b set, so each blob reads its own index
    (a binary structured-light code: no ordering assumptions, any rotation or flip). The mapping
    is a homography (or an affine map) fitted with RANSAC; its residual is reported.
    """
    if model not in ("homography", "affine"):
        raise ValueError(f"model must be 'homography' or 'affine', got {model!r}.")
    if radius is None:  # a quarter of the dot spacing, at most 6 mirrors
        h, w = projector.shape
        spacing = min(0.76 * w / max(grid[0] - 1, 1), 0.76 * h / max(grid[1] - 1, 1))
        radius = int(max(1, min(6, spacing // 4)))
    centres = dot_grid(projector.shape, grid, radius)
    n = len(centres)
    n_bits = int(np.ceil(np.log2(n + 1)))
    rig.bench.setup("flat", "Put a matte white card where the scene will be (the DMD's dots "
                            "are imaged on it), then continue.")
    frames = []
    with _Session(rig) as s:
        roi = s.base.roi
        s.set(exposure_us)
        patterns = [np.ones(n, bool)] + [((np.arange(n) + 1) >> b) & 1 == 1 for b in range(n_bits)]
        if getattr(projector, "is_shutter", False):
            projector.chip_us = float(exposure_us)  # type: ignore[attr-defined]
        try:
            for i, on in enumerate([np.zeros(n, bool)] + patterns):
                projector.show(_dots_image(projector.shape, centres[on], radius))
                if getattr(projector, "is_shutter", False):
                    s.adopt_loaded(exposure_us)
                frames.append(s.grab())
                yield Progress((i + 1) / (n_bits + 2),
                               f"DMD mapping: pattern {i + 1} of {n_bits + 2}")
        finally:  # never leave dots on the DMD (cancel, timeout)
            projector.show(np.zeros(projector.shape, bool))
    dark, allon, bits = frames[0], frames[1], frames[2:]
    diff = allon - dark
    thr = 0.5 * float(np.percentile(diff, 99.5))
    if thr <= 5 * max(_robust_sigma(dark), 0.5):
        raise CalibrationFailed(
            "The projected dots are not visible in the camera: is the DMD lit and imaged on "
            "the card, and is it in focus?"
        )
    n_lab, labels, stats, cents = cv2.connectedComponentsWithStats(
        (diff > thr).astype(np.uint8), connectivity=8)
    cam_pts, dmd_pts = [], []
    for lab in range(1, n_lab):
        if stats[lab, cv2.CC_STAT_AREA] < 3:
            continue
        mask = labels == lab
        wts = diff[mask]
        ys, xs = np.nonzero(mask)
        cx, cy = float(np.sum(xs * wts) / wts.sum()), float(np.sum(ys * wts) / wts.sum())
        code = 0
        for b, f in enumerate(bits):
            if float(np.mean((f - dark)[mask])) > 0.5 * float(np.mean(diff[mask])):
                code |= 1 << b
        idx = code - 1
        if 0 <= idx < n:
            cam_pts.append((cx, cy))
            dmd_pts.append(centres[idx])
    if len(cam_pts) < 6:
        raise CalibrationFailed(
            f"Only {len(cam_pts)} of {n} dots were found and identified; at least 6 are needed. "
            "Light the DMD evenly, focus it on the card, and keep it in the camera's view."
        )
    src = np.asarray(dmd_pts, np.float64)
    dst = np.asarray(cam_pts, np.float64)
    if model == "homography":
        h, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 2.0)
    else:
        a, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
        h = None if a is None else np.vstack([a, [0.0, 0.0, 1.0]])
    if h is None or inliers is None or int(np.count_nonzero(inliers)) < 6:
        raise CalibrationFailed(
            "The dots found do not determine the mapping (too few, or all in a line): put the "
            "whole DMD field in the camera's view."
        )
    proj = cv2.perspectiveTransform(src[:, None, :], h)[:, 0, :]
    err = np.sqrt(np.sum((proj - dst) ** 2, axis=1))
    ok = inliers.ravel().astype(bool)
    # the dots were found in frame pixels; the mapping is stored in full-sensor pixels
    to_sensor = np.array([[1.0, 0.0, roi.offset_x], [0.0, 1.0, roi.offset_y], [0.0, 0.0, 1.0]])
    return DmdMapping(
        matrix=to_sensor @ h, model=model, rms_px=float(np.sqrt(np.mean(err[ok] ** 2))),
        n_dots=int(ok.sum()), n_projected=n, dmd_shape=tuple(projector.shape),
        dmd_points=src, camera_points=dst,
    )
