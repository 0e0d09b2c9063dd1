"""Shutter timing: the shutter's latencies, ramps and leakage from timed exposures ending around
an opening and a closing edge, the shutter model (:class:`~hw.optics.ShutterOptics`) fitted to
them, and the plausibility checks that refuse a disturbed measurement (flicker, motion, too
little light or too few bits) with what to change on the bench."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from calibration.model import DarkResult, ShutterTiming
from calibration.procedures.base import CalibrationFailed, FrameSession, Procedure, Progress, Rig
from hw.optics import RAMP_10_90
from hw.types import ShutterCode

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


def ramp_means(t: np.ndarray, start: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Mean over each ``[t[i], t[i + 1]]`` of a 0 -> 1 ramp starting at ``start`` and lasting
    ``full`` (arrays of candidates, ``(C,)``) -> ``(C, len(t) - 1)``."""
    g = _ramp_integral(t[None, :] - start[:, None], full[:, None])
    return np.diff(g, axis=-1) / np.diff(t)


@dataclass
class EdgeFit:
    """A straight ramp (the model of :class:`~hw.optics.ShutterOptics`) fitted to the measured
    transmittance around one command edge; times from the edge."""

    start_us: float  # where the ramp starts (>= 0: not before the command)
    full_us: float  # its length, 0 -> 100 %
    sse: float  # sum of squared residuals
    free_start_us: float  # the start without the constraint (may precede the command)
    free_sse: float


def fit_edge(t: np.ndarray, tr: np.ndarray, leakage: float, rising: bool,
              earliest_us: float) -> EdgeFit:
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
            sse = np.sum((ramp_means(t, s[k:k + 4096], f[k:k + 4096]) - y) ** 2, axis=-1)
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
    return EdgeFit(start_us=fixed[1], full_us=fixed[2], sse=fixed[0] * scale,
                    free_start_us=free[1], free_sse=free[0] * scale)


class NoiseProbe:
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


def _disturbance(noise: NoiseProbe, pixel_format: str) -> str:
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
    test = _StepTest.make(float(chip_us), step_us, span_us, check_chip_us)
    rig.bench.setup("bright", "Put a static, bright, uniform target in front of the lens "
                              "(the flat-field light does), then continue.")
    m = yield from _measure_steps(rig, test, n_avg, dark)
    _check_light(m, test.chip_us)
    return _fit_timing(m, test, n_avg)


@dataclass(frozen=True)
class _StepTest:
    """What :func:`shutter_timing` measures: the step code (2 chips closed, 4 open, 2 closed),
    the exposure ends around each edge, the anchors of the levels, and the check codes."""

    code: ShutterCode
    chip_us: float
    step_us: float
    span_us: float
    grid_r: np.ndarray  # exposure ends around the opening edge (2 chips)
    grid_f: np.ndarray  # ... and around the closing edge (6 chips)
    taus: np.ndarray  # every exposure end: the anchors, then both grids
    checks: list[ShutterCode]

    @classmethod
    def make(cls, c: float, step_us: float, span_us: float,
             check_chip_us: Sequence[float]) -> _StepTest:  # fmt: skip
        code = ShutterCode((0, 0, 1, 1, 1, 1, 0, 0), c, name="timing-step")
        grid_r = np.arange(2 * c - 20.0, 2 * c + span_us + step_us / 2, step_us)
        grid_f = np.arange(6 * c - 20.0, 6 * c + span_us + step_us / 2, step_us)
        anchors = np.array([c, 1.5 * c, 3.5 * c, 5.5 * c, 7.0 * c, 8.0 * c])
        checks = [
            ShutterCode(tuple(1 if k == j else 0 for k in range(8)), float(cc), name=f"single-{j}")
            for cc in check_chip_us for j in (3,)
        ] + [
            ShutterCode((0, 0, 0, 1, 1, 0, 0, 0), float(cc), name="double")
            for cc in check_chip_us
        ]  # fmt: skip
        return cls(code, c, float(step_us), float(span_us), grid_r, grid_f,
                   np.concatenate([anchors, grid_r, grid_f]), checks)  # fmt: skip


@dataclass
class _Measured:
    """The light of each exposure (mean DN above dark, by exposure end), the check codes'
    levels (in chips of open light), the frames' noise and the camera's range."""

    values: dict[float, float]
    check_vals: list[float]
    noise: NoiseProbe
    open_rate: float  # DN per microsecond of open shutter
    saturation_dn: float
    pixel_format: str


def _measure_steps(
    rig: Rig, test: _StepTest, n_avg: int, dark: DarkResult | None
) -> Procedure[_Measured]:
    c, taus, checks = test.chip_us, test.taus, test.checks
    n_total = len(taus) + len(checks)
    values: dict[float, float] = {}
    check_vals: list[float] = []
    noise = NoiseProbe()
    with FrameSession(rig) as s:
        prev: tuple[float, np.ndarray] | None = None
        for i, tau in enumerate(taus):
            tau = float(tau)
            s.set(tau, test.code)
            frames = [s.grab() for _ in range(n_avg)]
            values[tau] = (sum(float(np.mean(f)) for f in frames) / n_avg
                           - float(np.mean(s.dark(dark, tau))))
            # the noise of the frames: two of this exposure, or this one and the previous
            # exposure's (one step shorter) when only one frame is taken per exposure
            if n_avg >= 2:
                noise.add(values[tau], frames[0], frames[1])
            elif prev is not None and 0 < tau - prev[0] <= 1.5 * test.step_us:
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
        return _Measured(values, check_vals, noise, open_rate, s.saturation_dn,
                         s.base.pixel_format)  # fmt: skip


def _check_light(m: _Measured, c: float) -> None:
    """Refuse frames that saturate, hardly change, or show a moving picture."""
    values, sat = m.values, m.saturation_dn
    if values[8.0 * c] > 0.9 * sat:
        raise CalibrationFailed(
            f"The timing frames saturate ({values[8.0 * c]:.0f} of {sat:.0f} DN with "
            f"{4 * c:g} us of open shutter); dim the target (aim for about half the range)."
        )
    if m.open_rate <= 0 or values[5.5 * c] < 0.02 * sat:
        raise CalibrationFailed(
            "The timing frames hardly change while the shutter is open: is the target lit and "
            "is the camera triggered by the shutter controller (Line1)?"
        )
    if m.noise.median_kurtosis > MOTION_KURTOSIS:  # before the noise, which motion inflates
        raise CalibrationFailed("The shutter timing measurement is implausible. "
                                + _disturbance(m.noise, m.pixel_format))


def _fit_timing(m: _Measured, test: _StepTest, n_avg: int) -> ShutterTiming:
    """The shutter model fitted to both edges, checked against the frames' noise."""
    c, grid_r, grid_f, step_us = test.chip_us, test.grid_r, test.grid_f, test.step_us
    values, open_rate, noise = m.values, m.open_rate, m.noise
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

    rt, rtr, rsd = profile(grid_r, 2 * c)
    ft, ftr, fsd = profile(grid_f, 6 * c)
    noise_rms = float(np.sqrt(np.mean(np.concatenate([rsd, fsd]) ** 2)))
    if noise_rms > MAX_NOISE_RMS:
        raise CalibrationFailed(
            f"Too little light to time the shutter: the frames' noise makes each measured "
            f"transmittance uncertain by {noise_rms:.2f} rms (at most {MAX_NOISE_RMS:g} locates "
            f"the edges), with {open_rate * step_us:.2f} DN of light per {step_us:g} us step. "
            "Brighten the target, open the aperture, use a larger ROI or average more frames, "
            "then run this step again.")
    leakage = min(max(raw_leakage, 0.0), LEAKAGE_MAX)
    o, co = (_fit_one_edge(test, name, tr, leakage)
             for name, tr in (("opening", rtr), ("closing", ftr)))
    timing = ShutterTiming(
        latency_us=o.start_us + 0.1 * o.full_us, rise_us=RAMP_10_90 * o.full_us,
        close_latency_us=co.start_us + 0.1 * co.full_us, fall_us=RAMP_10_90 * co.full_us,
        leakage=leakage, chip_us=c, rise_t_us=rt, rise_transmittance=rtr, fall_t_us=ft,
        fall_transmittance=ftr,
    )
    # the residual of the model as stored (what the effective code is computed from)
    model = timing.optics()
    r_res = rtr - model.integrate(grid_r, test.code.bits, c) / np.diff(grid_r)
    f_res = ftr - model.integrate(grid_f, test.code.bits, c) / np.diff(grid_f)
    timing.fit_residual_rms = float(np.sqrt(np.mean(np.concatenate([r_res, f_res]) ** 2)))
    timing.fit_noise_rms = noise_rms
    check_timing_plausible(
        {"opening": (rtr, r_res, rsd, o), "closing": (ftr, f_res, fsd, co)},
        raw_leakage, leakage_se, noise, m.pixel_format)
    _add_checks(timing, test.checks, m.check_vals)
    return timing


def _fit_one_edge(test: _StepTest, name: str, tr: np.ndarray, leakage: float) -> EdgeFit:
    """:func:`fit_edge` on the ``"opening"`` or ``"closing"`` edge; fails when the shutter did
    not settle within the span measured."""
    grid, edge = (test.grid_r, 2 * test.chip_us) if name == "opening" else (
        test.grid_f, 6 * test.chip_us)  # fmt: skip
    fit = fit_edge(grid - edge, tr, leakage, name == "opening", earliest_us=float(grid[1] - edge))
    if fit.start_us + fit.full_us > test.span_us - 2 * test.step_us:
        raise CalibrationFailed(
            f"The shutter did not {'open' if name == 'opening' else 'close'} within "
            f"{test.span_us:g} us of the command edge; lengthen span_us, or check that the "
            "shutter is driven by the controller."
        )
    return fit


def _add_checks(timing: ShutterTiming, checks: list[ShutterCode], measured: list[float]) -> None:
    """Record the check codes' measured levels beside what the fitted model predicts."""
    if checks:
        pred = [float(np.sum(timing.effective_code(k.bits, k.chip_us, 8)) / 8) for k in checks]
        timing.check_codes = [f"{k.as_string()}@{k.chip_us:g}us" for k in checks]
        timing.check_measured = np.asarray(measured)
        timing.check_predicted = np.asarray(pred)


def check_timing_plausible(edges: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, EdgeFit]],
                            leakage: float, leakage_se: float, noise: NoiseProbe,
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
