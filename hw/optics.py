"""Optics of the rig: a real shutter's transmittance over time, and a lens.

The simulated twin renders through these models, and calibration fits the shutter model to
measurements to get the effective code of any code.

:class:`ShutterOptics` is what a liquid-crystal shutter does to a binary code: it leaks when
closed, passes less than 100 % when open, starts late after each command edge and ramps between
states. The definitions follow LC-shutter data sheets:

* ``latency_us``: from a command edge (chip boundary) to 10 % of the swing;
* ``rise_us``: opening, 10 % -> 90 % of the swing; ``fall_us``: closing, 90 % -> 10 %;
* ``close_latency_us``: like ``latency_us`` for closing edges (default: the same);
* ``leakage``: transmittance when closed, ``open_transmittance`` when open (1 = no loss).

The state between the two levels moves linearly (a slew-limited ramp whose full 0 -> 100 %
duration is ``rise_us / 0.8``), and an edge that arrives mid-ramp turns it around where it is, so
chips shorter than the ramp give a partial opening, as a real LC cell does. The transmittance is
piecewise linear in time, so its integral over any interval is exact (:meth:`integrate`).

:class:`SimLens` is a pinhole camera with OpenCV's radial-tangential distortion, used to render
calibration targets as the simulated camera would see them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

#: The 10-90 % part of a linear ramp is 80 % of it (rise_us and fall_us are 10-90 % times).
RAMP_10_90 = 0.8


@dataclass(frozen=True)
class ShutterOptics:
    """Transmittance of a real (leaky, slow, late) shutter; see the module docstring.

    >>> o = ShutterOptics(leakage=0.02, latency_us=30, rise_us=50, fall_us=40)
    >>> o.transmittance([0, 30, 80, 2000], (1, 1, 1), 1000.0).round(3).tolist()  # 10 %, 90 %
    [0.02, 0.118, 0.902, 1.0]
    """

    leakage: float = 0.0
    open_transmittance: float = 1.0
    latency_us: float = 0.0
    rise_us: float = 0.0
    fall_us: float = 0.0
    close_latency_us: float | None = None

    def __post_init__(self) -> None:
        for name in ("leakage", "open_transmittance"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}.")
        if self.leakage >= self.open_transmittance:
            raise ValueError(
                f"leakage ({self.leakage:g}) must be below open_transmittance "
                f"({self.open_transmittance:g})."
            )
        for name in ("latency_us", "rise_us", "fall_us"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be >= 0, got {v!r}.")
        cl = self.close_latency
        if not (math.isfinite(cl) and cl >= 0.0):
            raise ValueError(f"close_latency_us must be >= 0, got {self.close_latency_us!r}.")
        # the ramp starts 10 % of its length before the 10 % point: not before the edge
        for lat, ramp, what in ((self.latency_us, self.rise_us, "rise"),
                                (cl, self.fall_us, "fall")):
            if lat + 1e-9 < 0.125 * ramp:
                raise ValueError(
                    f"The {what} ramp would start before its command edge: latency {lat:g} us is "
                    f"shorter than {what}_us / 8 = {ramp / 8:g} us."
                )

    @property
    def close_latency(self) -> float:
        return self.latency_us if self.close_latency_us is None else float(self.close_latency_us)

    @property
    def is_ideal(self) -> bool:
        return (
            self.leakage == 0.0
            and self.open_transmittance == 1.0
            and self.latency_us == 0.0
            and self.close_latency == 0.0
            and self.rise_us == 0.0
            and self.fall_us == 0.0
        )

    # -- the state trajectory ------------------------------------------------------------------
    def breakpoints(
        self, bits: Sequence[int], chip_us: float, t_end_us: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Times (us from the first chip's start) and open state (0..1) where the state bends.

        The state is linear between breakpoints, 0 before the first and constant after the last
        (extended to ``t_end_us`` when given).
        """
        bits = [int(b) for b in bits]
        rise_full = self.rise_us / RAMP_10_90
        fall_full = self.fall_us / RAMP_10_90
        # commands: (time the ramp starts, target)
        cmds: list[tuple[float, int]] = []
        prev = 0
        for k, b in enumerate(bits + [0]):
            if b != prev:
                if b:
                    cmds.append((k * chip_us + self.latency_us - 0.1 * rise_full, 1))
                else:
                    cmds.append((k * chip_us + self.close_latency - 0.1 * fall_full, 0))
                prev = b
        # An edge whose ramp would start no later than an earlier edge's supersedes it (a close
        # command that acts before the preceding open ramp began leaves the shutter closed):
        # keep, in edge order, only commands that start before every later one.
        kept: list[tuple[float, int]] = []
        earliest_later = math.inf
        for c in reversed(cmds):
            if c[0] < earliest_later:
                kept.append(c)
                earliest_later = c[0]
        cmds = kept[::-1]
        ts, ss = [0.0], [0.0]
        s, t = 0.0, 0.0
        for i, (tc, target) in enumerate(cmds):
            tc = max(tc, t)
            if tc > t:
                ts.append(tc)
                ss.append(s)
            t = tc
            full = rise_full if target else fall_full
            t_next = cmds[i + 1][0] if i + 1 < len(cmds) else math.inf
            dist = abs(target - s)
            dur = dist * full
            if t + dur <= t_next:
                t, s = t + dur, float(target)
            else:
                step = (t_next - t) / full if full > 0 else dist
                s = s + step if target else s - step
                t = t_next
            ts.append(t)
            ss.append(s)
        if t_end_us is not None and t_end_us > ts[-1]:
            ts.append(float(t_end_us))
            ss.append(ss[-1])
        tt, sv = np.asarray(ts, dtype=np.float64), np.asarray(ss, dtype=np.float64)
        # a zero-length ramp gives two points at one time: keep both (a step)
        return tt, sv

    def _level(self, state: np.ndarray) -> np.ndarray:
        return self.leakage + (self.open_transmittance - self.leakage) * state

    def transmittance(
        self, t_us: Sequence[float] | np.ndarray, bits: Sequence[int], chip_us: float
    ) -> np.ndarray:
        """Transmittance at times ``t_us`` (us from the start of the first chip)."""
        t = np.asarray(t_us, dtype=np.float64)
        bt, bs = self.breakpoints(bits, chip_us)
        # at a step (repeated time) take the value after it
        s = np.interp(t, bt, bs, left=0.0, right=float(bs[-1]))
        idx = np.searchsorted(bt, t, side="right") - 1
        exact = (idx >= 0) & (idx < len(bt)) & np.isin(t, bt)
        if np.any(exact):
            s = np.where(exact, bs[np.clip(idx, 0, len(bs) - 1)], s)
        return self._level(s)

    def integrate(
        self, edges_us: Sequence[float] | np.ndarray, bits: Sequence[int], chip_us: float
    ) -> np.ndarray:
        """Exact integrals of the transmittance (us) over ``[edges[i], edges[i + 1])``."""
        e = np.asarray(edges_us, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) < 0):
            raise ValueError("edges_us must be at least two increasing times.")
        bt, bs = self.breakpoints(bits, chip_us, t_end_us=float(e[-1]))
        return np.diff(_cumulative(e, bt, self._level(bs)))

    def effective_code(
        self, bits: Sequence[int], chip_us: float, sub_steps: int = 1
    ) -> np.ndarray:
        """Mean transmittance of each sub-step of each chip, ``(K * sub_steps,)``: the effective
        code that replaces the nominal bits inside an exposure window of the code's length."""
        n = len(bits) * int(sub_steps)
        edges = np.arange(n + 1) * (chip_us / sub_steps)
        return self.integrate(edges, bits, chip_us) / (chip_us / sub_steps)


def _cumulative(q: np.ndarray, bt: np.ndarray, bv: np.ndarray) -> np.ndarray:
    """Integral of the piecewise-linear function (bt, bv) from 0 to each q (value bv[0] before
    bt[0], bv[-1] after bt[-1])."""
    seg = np.diff(bt) * 0.5 * (bv[1:] + bv[:-1])
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    out = np.empty_like(q)
    for i, x in enumerate(q):
        if x <= bt[0]:
            out[i] = bv[0] * (x - bt[0])
            continue
        if x >= bt[-1]:
            out[i] = cum[-1] + bv[-1] * (x - bt[-1])
            continue
        j = int(np.searchsorted(bt, x, side="right") - 1)
        while j + 1 < len(bt) and bt[j + 1] == bt[j]:
            j += 1
        dt = bt[j + 1] - bt[j]
        vx = bv[j] if dt <= 0 else bv[j] + (bv[j + 1] - bv[j]) * (x - bt[j]) / dt
        out[i] = cum[j] + (x - bt[j]) * 0.5 * (bv[j] + vx)
    return out


def warp_masks(masks: np.ndarray, dmd_to_sensor: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """DMD mirror patterns ``(K, rows, columns)`` as seen on a sensor of ``shape`` (height,
    width) through the relay mapping ``dmd_to_sensor`` (3x3, DMD (x, y) -> sensor pixels):
    transmittance per pixel and chip, ``(K, height, width)`` float32 in [0, 1] (bilinear, so a
    mirror edge between two pixels gives a fraction)."""
    h, w = shape
    m = np.asarray(dmd_to_sensor, np.float64)
    return np.stack([
        cv2.warpPerspective(np.asarray(p, np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
        for p in masks
    ]).clip(0.0, 1.0)


@dataclass(frozen=True)
class SimLens:
    """Pinhole camera matrix and OpenCV distortion ``(k1, k2, p1, p2, k3)`` of a simulated camera.

    ``fx``, ``fy``, ``cx``, ``cy`` are in pixels of the full sensor.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    dist: tuple[float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def default(cls, width: int, height: int) -> SimLens:
        """A moderate wide-angle lens: focal length 1.2 x the width, barrel distortion."""
        f = 1.2 * width
        return cls(f, f, (width - 1) / 2 + 3.5, (height - 1) / 2 - 2.5,
                   (-0.18, 0.09, 0.0008, -0.0005, 0.0))

    @property
    def camera_matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)

    def undistorted_grid(self, width: int, height: int, oversample: int) -> np.ndarray:
        """Ideal normalised coordinates ``(H*o, W*o, 2)`` of sample points spread over each pixel
        (``o`` x ``o`` per pixel), computed once per size."""
        key = (width, height, oversample)
        if key not in self._cache:
            o = int(oversample)
            off = (np.arange(o) + 0.5) / o - 0.5
            xs = (np.arange(width)[:, None] + off[None, :]).reshape(-1)
            ys = (np.arange(height)[:, None] + off[None, :]).reshape(-1)
            gx, gy = np.meshgrid(xs, ys)
            pts = np.stack([gx, gy], -1).reshape(-1, 1, 2).astype(np.float64)
            crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-10)
            und = cv2.undistortPoints(
                pts, self.camera_matrix, np.asarray(self.dist, np.float64), criteria=crit
            )
            self._cache[key] = und.reshape(height * o, width * o, 2)
        return self._cache[key]
