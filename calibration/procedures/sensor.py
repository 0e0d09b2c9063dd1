"""The sensor's procedures: dark frames (offsets, hot pixels, DSNU), flat field (vignetting,
PRNU) and photon transfer (gain, read noise, saturation capacity, linearity)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from calibration.model import DarkResult, FlatResult, PtcResult
from calibration.procedures.base import (
    CalibrationFailed,
    FrameSession,
    Procedure,
    Progress,
    Rig,
    robust_sigma,
)


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
    with FrameSession(rig) as s:
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
    sig = max(robust_sigma(longest), 1e-6)
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
    with FrameSession(rig) as s:
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
    with FrameSession(rig) as s:
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
