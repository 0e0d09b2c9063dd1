"""Simulated camera rendering (coded) exposures of a :class:`~hw.sim.scene.SimScene`, with noise.

:class:`SimCamera` is the twin of the GenICam camera: same settings, same states, same errors, plus
ground truth and fault knobs. Three ways to get frames (as on a real camera):

* ``trigger_mode='Off'``: free run at ``frame_rate_hz`` (paced by the wall clock), box exposure of
  ``exposure_us``.
* ``trigger_mode='On'``, ``trigger_source='Software'``: a box exposure per
  :meth:`~hw.base.Camera.software_trigger`.
* ``trigger_mode='On'``, ``trigger_source='Line1'``: an exposure per
  :class:`~hw.sim.shutter.TriggerEvent` from the connected :class:`~hw.sim.shutter.SimShutter`; the
  frame integrates the scene over the open chips of the code. With ``exposure_mode='TriggerWidth'``
  the exposure lasts the whole code; with ``'Timed'`` it lasts ``exposure_us`` from the trigger
  (chips after that are lost, a partly covered chip counts partly).

Brightness convention (other modules rely on it). Let ``v_k`` (float32, DN) be the scene averaged
over chip ``k`` times ``full_scale_dn`` (the DN that a static full-scale radiance 1.0 gives:
``signal_dn`` at 0 dB, times the linear gain). The noise-free frame is
``dark_dn + sum_k c_k v_k / sum_k c_k`` (``c`` = code bits), so a static scene gives the same
brightness whatever the code or exposure time (as if the lighting were adjusted to keep the frame
well exposed). A box exposure is an all-open code (chips of about 1 ms). Then the sensor: PRNU
(fixed multiplicative pattern), shot noise (Poisson on electrons, ``gain_e_per_dn`` e-/DN), dark
current and DSNU (fixed additive pattern), read noise, black level, clipping to saturation and
rounding to the pixel format. ``SimSensor(noise=False)`` keeps only the deterministic part:
``rint(clip(dark_dn + signal))``.

Frames are rendered in the thread that calls :meth:`~hw.base.Camera.fetch`, from a recipe fixed
when the frame was triggered, with noise seeded by ``(seed, frame_id)``: the result does not depend
on thread timing.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hw.errors import DeviceDisconnected
from hw.optics import SimLens
from hw.sim.camera_base import SIM_EXPOSURE_US_MAX as SIM_EXPOSURE_US_MAX
from hw.sim.camera_base import SIM_EXPOSURE_US_MIN as SIM_EXPOSURE_US_MIN
from hw.sim.camera_base import SIM_FRAME_RATE_HZ_MAX as SIM_FRAME_RATE_HZ_MAX
from hw.sim.camera_base import SIM_FRAME_RATE_HZ_MIN as SIM_FRAME_RATE_HZ_MIN
from hw.sim.camera_base import SIM_GAIN_DB_MAX as SIM_GAIN_DB_MAX
from hw.sim.camera_base import SimCameraBase, shortest_frame_period_s
from hw.sim.scene import SimScene
from hw.sim.shutter import SimClock, SimShutter, TriggerEvent
from hw.sim.wire import SimTriggerWire
from hw.types import CameraSettings, Frame, ShutterCode

# The limits SIM_* (UnsupportedFeatureError outside them) live in hw.sim.camera_base, shared with
# the replay camera; they are imported above, so ``hw.sim.camera.SIM_*`` still works.

#: A box exposure is rendered as an all-open code with chips of about this length.
BOX_CHIP_US = 1000.0
MAX_BOX_CHIPS = 64

#: Below this many electrons, shot noise is drawn from a true Poisson law (Gaussian above).
_POISSON_BELOW_E = 20.0


@dataclass(frozen=True, eq=False)
class SimGroundTruth:
    """What the scene looked like during one frame, chip by chip, in the frame's DN scale.

    Attributes:
        frame_id: the frame this belongs to.
        chip_frames: ``(K, H, W)`` float32: ``v_k``, the scene averaged over chip ``k``, in DN
            (cropped to the ROI).
        chip_t_s: ``(K,)`` centre time of each chip (simulated seconds).
        code: the code played (an all-open code for box exposures).
        dark_dn: the dark offset of the frame (black level + mean dark current), DN.
        chip_weights: ``(K,)``: code bit times the fraction of the chip inside the exposure window
            (equal to the code bits when the exposure covers the whole code, as with
            ``exposure_mode='TriggerWidth'``).
    """

    frame_id: int
    chip_frames: np.ndarray
    chip_t_s: np.ndarray
    code: ShutterCode
    dark_dn: float
    chip_weights: np.ndarray

    def expected_frame(self) -> np.ndarray:
        """Noise-free frame before clipping and rounding: ``dark_dn + sum_k w_k v_k / sum_k c_k``.

        Exact when the exposure covers whole chips; for a partly covered chip (``Timed`` exposure
        ending mid-chip) it uses the whole chip's average.

        Returns:
            float32 ``(H, W)``.
        """
        w = self.chip_weights.astype(np.float64) / float(self.code.n_open)
        out = np.tensordot(w, self.chip_frames, axes=(0, 0)).astype(np.float32)
        return out + np.float32(self.dark_dn)


@dataclass(frozen=True, eq=False)
class _Exposure:
    """Everything needed to render one frame, fixed when it was triggered."""

    frame_id: int
    t_start_s: float
    code: ShutterCode
    weights: tuple[float, ...]  # per chip: bit x fraction of the chip inside the exposure window
    trigger_index: int
    code_sha256: str
    exposure_us: float
    settings: CameraSettings
    scene: SimScene
    # with a non-ideal shutter: (offset from t_start in us, weight in chips) of each render sample
    samples: tuple[tuple[float, float], ...] = ()
    # per-pixel coding (a DMD): (K, H, W) transmittances on the full sensor
    masks: Any = None


def _box_code(exposure_us: float) -> ShutterCode:
    n = int(min(MAX_BOX_CHIPS, max(1, round(exposure_us / BOX_CHIP_US))))
    return ShutterCode((1,) * n, exposure_us / n, name="box")


def _sensor_size(scene: SimScene | None, width: int | None, height: int | None) -> tuple[int, int]:
    """The sensor's size: the scene's (which must match ``width``/``height`` where given), else
    ``width`` x ``height`` (1024 each by default, at least 8)."""
    if scene is not None:
        sw = scene.width if width is None else int(width)
        sh = scene.height if height is None else int(height)
        if (sw, sh) != (scene.width, scene.height):
            raise ValueError(
                f"The scene is {scene.width}x{scene.height} but the sensor is {sw}x{sh}; "
                "make the scene the size of the sensor."
            )
        return sw, sh
    sw = 1024 if width is None else int(width)
    sh = 1024 if height is None else int(height)
    if sw < 8 or sh < 8:
        raise ValueError(f"The sensor must be at least 8x8 pixels, got {sw}x{sh}.")
    return sw, sh


def _check(name: str, v: float | None, *, positive: bool = False, none_ok: bool = False) -> None:
    """ValueError unless ``v`` is finite and > 0 (``positive``) or >= 0 (None passes if
    ``none_ok``)."""
    if v is None and none_ok:
        return
    if positive and not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be > 0{' (or None)' if none_ok else ''}, got {v!r}.")
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be >= 0, got {v!r}.")


@dataclass(frozen=True)
class SimSensor:
    """The simulated sensor: its light response and noise (see the module doc for the model).

    Args:
        pixel_size_um: reported pixel pitch.
        signal_dn: DN of a static full-scale (1.0) scene at 0 dB gain; None = 60 % of the pixel
            format's saturation (so it follows the pixel format).
        full_well_e: electrons at saturation at 0 dB; sets ``gain_e_per_dn``.
        read_noise_e: read noise, electrons rms.
        prnu: photo-response non-uniformity, relative rms of the fixed gain pattern.
        dsnu_e: dark-signal non-uniformity, electrons rms of the fixed offset pattern.
        dark_current_e_per_s: mean dark current.
        linear_exposure_ref_us: None (default): frames keep their brightness whatever the code or
            exposure (see the module docstring). A number: the camera stands under fixed light,
            as a real one does: a static full-scale scene gives ``full_scale_dn`` after this many
            microseconds of open shutter, and proportionally more or less light for other
            exposures (what calibration measures against).
        vignetting: relative light lost at the sensor corners by the lens (0.3 = corners get
            70 %), falling off with the squared distance from the centre.
        hot_pixel_fraction: fraction of pixels with ``hot_pixel_e_per_s`` of extra dark current.
        hot_pixel_e_per_s: dark current of a hot pixel.
        noise: False = no noise and no fixed patterns (deterministic frames).

    Raises:
        ValueError: a value out of its range.
    """

    pixel_size_um: float = 3.45
    signal_dn: float | None = None
    full_well_e: float = 10_500.0
    read_noise_e: float = 2.5
    prnu: float = 0.01
    dsnu_e: float = 1.0
    dark_current_e_per_s: float = 5.0
    linear_exposure_ref_us: float | None = None
    vignetting: float = 0.0
    hot_pixel_fraction: float = 0.0
    hot_pixel_e_per_s: float = 20_000.0
    noise: bool = True

    def __post_init__(self) -> None:
        _check("full_well_e", self.full_well_e, positive=True)
        _check("pixel_size_um", self.pixel_size_um, positive=True)
        for name in ("read_noise_e", "prnu", "dsnu_e", "dark_current_e_per_s", "hot_pixel_e_per_s"):
            _check(name, getattr(self, name))
        _check("signal_dn", self.signal_dn, positive=True, none_ok=True)
        _check("linear_exposure_ref_us", self.linear_exposure_ref_us, positive=True, none_ok=True)
        if not 0.0 <= self.vignetting < 1.0:
            raise ValueError(f"vignetting must be in [0, 1), got {self.vignetting!r}.")
        if not 0.0 <= self.hot_pixel_fraction <= 0.1:
            raise ValueError(
                f"hot_pixel_fraction must be in [0, 0.1], got {self.hot_pixel_fraction!r}."
            )


@dataclass(frozen=True)
class SimFaults:
    """Fault knobs of the simulated camera (the camera copies them into plain attributes of the
    same names, which may change at any time).

    Args:
        drop_rate: probability that a frame is lost (frame id still advances).
        stall_after_n: stop delivering after that many frames since open (fetch times out).
        disconnect_after_n: after that many frames since open, fetch raises DeviceDisconnected.
        fetch_latency_s: extra delay of every fetch.

    Raises:
        ValueError: a value out of its range.
    """

    drop_rate: float = 0.0
    stall_after_n: int | None = None
    disconnect_after_n: int | None = None
    fetch_latency_s: float = 0.0

    def __post_init__(self) -> None:
        _check("fetch_latency_s", self.fetch_latency_s)
        if not 0.0 <= self.drop_rate <= 1.0:
            raise ValueError(f"drop_rate must be in [0, 1], got {self.drop_rate!r}.")


class SimCamera(SimCameraBase):
    """Simulated camera with sensor noise, ground truth and fault knobs.

    The sensor's parameters (``read_noise_e``, ``dark_current_e_per_s``,
    ``linear_exposure_ref_us``...) and the fault knobs (``drop_rate``...) become plain attributes
    of the camera, which may change at any time.

    Args:
        scene: what the camera sees; a ``SimScene.default`` of the sensor size when None.
        shutter: a :class:`SimShutter` (or a :class:`~hw.sim.wire.SimTriggerWire` from a real
            controller) whose triggers this camera receives on Line1 (the camera connects itself
            and shares the shutter's simulated clock).
        sensor_width: sensor width in pixels (default: the scene's width, else 1024).
        sensor_height: sensor height in pixels (default: the scene's height, else 1024).
        seed: seeds the default scene, the fixed patterns, the noise and the drop decisions.
        sensor: light response and noise (default: ``SimSensor()``).
        faults: fault knobs (default: none).
        lens: the lens (:class:`~hw.optics.SimLens`) through which calibration targets are
            rendered; a moderate barrel-distorting one when None.
        render_sub_steps: time samples per chip when rendering.
        buffer_frames: capacity of the output queue; frames that arrive while it is full are lost
            (the frame id still advances).
        history_frames: how many recent frames keep their ground-truth recipe.
        clock: simulated clock (default: the shutter's, else a new one).

    Raises:
        ValueError: bad sizes, a scene whose size differs from the sensor.
    """

    _MODEL = "SimCamera"
    _VERSION = "sim-1"
    _SERIAL_PREFIX = "SIM"

    def __init__(
        self,
        scene: SimScene | None = None,
        shutter: SimShutter | SimTriggerWire | None = None,
        *,
        sensor_width: int | None = None,
        sensor_height: int | None = None,
        seed: int = 0,
        sensor: SimSensor | None = None,
        faults: SimFaults | None = None,
        lens: SimLens | None = None,
        render_sub_steps: int = 2,
        buffer_frames: int = 16,
        history_frames: int = 64,
        clock: SimClock | None = None,
    ) -> None:
        sw, sh = _sensor_size(scene, sensor_width, sensor_height)
        scene = scene if scene is not None else SimScene.default(sw, sh, seed=seed)
        sensor = sensor if sensor is not None else SimSensor()
        faults = faults if faults is not None else SimFaults()
        if int(render_sub_steps) < 1 or int(buffer_frames) < 1 or int(history_frames) < 1:
            raise ValueError("render_sub_steps, buffer_frames and history_frames must be >= 1.")
        super().__init__(
            shutter, (sw, sh), seed=seed, pixel_size_um=sensor.pixel_size_um,
            buffer_frames=buffer_frames,
        )  # fmt: skip
        self._buffer: deque[_Exposure]
        self._scene = scene
        self._signal_dn = None if sensor.signal_dn is None else float(sensor.signal_dn)
        self.full_well_e = float(sensor.full_well_e)
        self.read_noise_e = float(sensor.read_noise_e)
        self.prnu = float(sensor.prnu)
        self.dsnu_e = float(sensor.dsnu_e)
        self.dark_current_e_per_s = float(sensor.dark_current_e_per_s)
        ref_us = sensor.linear_exposure_ref_us
        self.linear_exposure_ref_us = None if ref_us is None else float(ref_us)
        self.vignetting = float(sensor.vignetting)
        self.hot_pixel_fraction = float(sensor.hot_pixel_fraction)
        self.hot_pixel_e_per_s = float(sensor.hot_pixel_e_per_s)
        self.noise = bool(sensor.noise)
        self.lens = lens if lens is not None else SimLens.default(sw, sh)
        self.render_sub_steps = int(render_sub_steps)
        self._history_frames = int(history_frames)
        # Fault knobs: plain attributes, may change at any time.
        self.drop_rate = float(faults.drop_rate)
        self.stall_after_n = faults.stall_after_n
        self.disconnect_after_n = faults.disconnect_after_n
        self.fetch_latency_s = float(faults.fetch_latency_s)

        if clock is None:
            clock = shutter.clock if shutter is not None else SimClock()
        self._clock = clock
        self._history: OrderedDict[int, _Exposure] = OrderedDict()
        self._delivered_since_open = 0
        self._disconnected = False
        self._drop_rng = np.random.default_rng([self._seed, 0xD209])
        self._patterns: tuple[np.ndarray, np.ndarray] | None = None
        self._maps: dict[tuple[str, float], np.ndarray] = {}
        self._patterns_lock = threading.Lock()
        if shutter is not None:
            shutter.connect_trigger(self._on_trigger)

    # -- sim API ---------------------------------------------------------------------------------
    @property
    def scene(self) -> SimScene:
        return self._scene

    @scene.setter
    def scene(self, scene: SimScene) -> None:
        """Put another scene in front of the camera (frames already triggered keep theirs)."""
        sw, sh = self._sensor
        if (scene.width, scene.height) != (sw, sh):
            raise ValueError(
                f"The scene is {scene.width}x{scene.height} but the sensor is {sw}x{sh}; "
                "make the scene the size of the sensor."
            )
        with self._cond:
            self._scene = scene

    @property
    def clock(self) -> SimClock:
        return self._clock

    @property
    def seed(self) -> int:
        return self._seed

    def signal_dn(self, settings: CameraSettings | None = None) -> float:
        """DN of a static full-scale scene at 0 dB for ``settings`` (default: the current ones)."""
        s = self._settings if settings is None else settings
        return self._signal_dn if self._signal_dn is not None else 0.6 * s.saturation_dn

    def full_scale_dn(self, settings: CameraSettings | None = None) -> float:
        """DN of a static full-scale scene at the gain of ``settings``.

        ``signal_dn * 10^(gain_db / 20)``.
        """
        s = self._settings if settings is None else settings
        return self.signal_dn(s) * 10.0 ** (s.gain_db / 20.0)

    def gain_e_per_dn(self, settings: CameraSettings | None = None) -> float:
        """Conversion gain, e-/DN: ``full_well_e / saturation_dn / 10^(gain_db / 20)``."""
        s = self._settings if settings is None else settings
        return self.full_well_e / s.saturation_dn / 10.0 ** (s.gain_db / 20.0)

    def dark_dn(self, exposure_us: float, settings: CameraSettings | None = None) -> float:
        """Mean dark offset for an exposure: black level + dark current, DN."""
        s = self._settings if settings is None else settings
        return (
            s.black_level_dn
            + self.dark_current_e_per_s * exposure_us * 1e-6 / self.gain_e_per_dn(s)
        )

    def ground_truth(self, frame_id: int) -> SimGroundTruth:
        """Chip-by-chip ground truth of a recent frame (delivered or dropped), cropped to its ROI.

        Raises:
            KeyError: the frame is unknown or older than the last ``history_frames`` frames.
        """
        with self._cond:
            exp = self._history.get(int(frame_id))
        if exp is None:
            raise KeyError(
                f"No ground truth for frame {frame_id}: only the last {self._history_frames} "
                "frames are kept; ask right after fetching it."
            )
        s = exp.settings
        region = (s.roi.offset_x, s.roi.offset_y, s.roi.width, s.roi.height)
        scale = np.float32(self.full_scale_dn(s))
        chip_s = exp.code.chip_us * 1e-6
        k = exp.code.n_chips
        t0 = exp.t_start_s + np.arange(k) * chip_s
        frames = exp.scene.render_means(t0, t0 + chip_s, self.render_sub_steps, region)
        frames *= scale
        return SimGroundTruth(
            frame_id=exp.frame_id,
            chip_frames=frames,
            chip_t_s=exp.t_start_s + (np.arange(k) + 0.5) * chip_s,
            code=exp.code,
            dark_dn=self.dark_dn(exp.exposure_us, s),
            chip_weights=np.asarray(exp.weights, dtype=np.float64),
        )

    # -- Camera hooks ----------------------------------------------------------------------------
    def _check_connected(self) -> None:
        if self._disconnected:
            raise DeviceDisconnected(
                f"The simulated camera {self._serial} is disconnected (fault knob "
                f"disconnect_after_n={self.disconnect_after_n}). Close it and open it again to "
                "reconnect."
            )

    def _do_open(self) -> None:
        with self._cond:
            self._disconnected = False
            self._delivered_since_open = 0
            self._drop_rng = np.random.default_rng([self._seed, 0xD209])

    def _extra_nodes(self, s: CameraSettings) -> dict[str, Any]:
        return {
            "SimSeed": self._seed,
            "SimNoise": self.noise,
            "SimSignalDN": float(self.signal_dn(s)),
            "SimFullWellE": self.full_well_e,
            "SimReadNoiseE": self.read_noise_e,
            "SimPRNU": self.prnu,
            "SimDSNUE": self.dsnu_e,
            "SimDarkCurrentEPerS": self.dark_current_e_per_s,
            "SimRenderSubSteps": self.render_sub_steps,
        }

    @staticmethod
    def _free_run_period_fps(s: CameraSettings) -> float:
        return 1.0 / shortest_frame_period_s(s)

    def _acq_period_s(self, s: CameraSettings) -> float:
        return 1.0 / self._free_run_period_fps(s)

    def _first_free_run_due(self) -> float:
        return time.monotonic() + self._period_s

    def _do_software_trigger(self) -> None:
        self._check_connected()
        with self._cond:
            s = self._acq
            code = _box_code(s.exposure_us)
            t0 = self._clock.reserve(s.exposure_us * 1e-6 + 0.001)
            self._enqueue(t0, code, code.bits, -1, "", s.exposure_us)

    def _line1_frame(self, event: TriggerEvent, window_us: float, now: float) -> None:
        code = event.code
        if event.masks is not None:
            sw, sh = self._sensor
            if tuple(event.masks.shape[1:]) != (sh, sw) or event.masks.shape[0] != code.n_chips:
                raise ValueError(
                    f"The DMD masks are {event.masks.shape}; this camera needs "
                    f"({code.n_chips}, {sh}, {sw})."
                )
            weights = tuple(
                min(1.0, max(0.0, (window_us - k * code.chip_us) / code.chip_us))
                for k in range(code.n_chips)
            )
            self._enqueue(
                event.t_start_s, code, weights, event.trigger_index, code.sha256, window_us,
                masks=event.masks,
            )
            return
        if event.optics.is_ideal:
            weights = tuple(
                float(b) * min(1.0, max(0.0, (window_us - k * code.chip_us) / code.chip_us))
                for k, b in enumerate(code.bits)
            )
            self._enqueue(
                event.t_start_s, code, weights, event.trigger_index, code.sha256, window_us
            )
            return
        # A real shutter: integrate its transmittance over sub-steps of the exposure window,
        # which may extend past the code (Timed exposures) where the shutter is closing or leaks.
        n_sub = self.render_sub_steps
        step = code.chip_us / n_sub
        n_steps = max(1, math.ceil(window_us / step - 1e-9))
        edges = np.minimum(np.arange(n_steps + 1) * step, window_us)
        w = event.optics.integrate(edges, code.bits, code.chip_us) / code.chip_us
        centres = 0.5 * (edges[1:] + edges[:-1])
        per_chip = np.zeros(code.n_chips)
        k_of = np.minimum(np.arange(n_steps) // n_sub, code.n_chips - 1)
        np.add.at(per_chip, k_of, w)
        samples = tuple((float(c), float(x)) for c, x in zip(centres, w, strict=True) if x > 0)
        self._enqueue(
            event.t_start_s, code, tuple(per_chip), event.trigger_index, code.sha256, window_us,
            samples,
        )

    def _enqueue(
        self,
        t_start_s: float,
        code: ShutterCode,
        weights: tuple[float, ...],
        trigger_index: int,
        sha: str,
        exposure_us: float,
        samples: tuple[tuple[float, float], ...] = (),
        masks: Any = None,
    ) -> None:
        """Create the next frame (caller holds ``_cond``): queued, or lost if the queue is full."""
        exp = _Exposure(
            frame_id=self._next_frame_id,
            t_start_s=t_start_s,
            code=code,
            weights=tuple(float(w) for w in weights),
            trigger_index=trigger_index,
            code_sha256=sha,
            exposure_us=float(exposure_us),
            settings=self._acq,
            scene=self._scene,
            samples=samples,
            masks=masks,
        )
        self._next_frame_id += 1
        self._history[exp.frame_id] = exp
        while len(self._history) > self._history_frames:
            self._history.popitem(last=False)
        self._offer(exp)

    def _drop_now(self) -> bool:
        return self.drop_rate > 0 and self._drop_rng.random() < self.drop_rate

    def _make_free_run_frames(self, n_due: int, period: float) -> int:
        s = self._acq
        made = 0
        while (
            made < n_due
            and len(self._buffer) < self._buffer_frames
            and made < 4 * self._buffer_frames
        ):
            code = _box_code(s.exposure_us)
            self._enqueue(self._clock.reserve(period), code, code.bits, -1, "", s.exposure_us)
            made += 1
        if made < n_due:  # the lost frames' time passes too
            self._clock.reserve((n_due - made) * period)
        return made

    def _stalled(self) -> bool:
        return self.stall_after_n is not None and self._delivered_since_open >= self.stall_after_n

    def _timeout_message(self, timeout_s: float) -> str:
        msg = super()._timeout_message(timeout_s)
        if self.fetch_latency_s >= timeout_s:
            msg += f" (Fault knob fetch_latency_s={self.fetch_latency_s:g} s exceeds the timeout.)"
        if self._stalled():
            msg += (
                " (The simulated camera is stalled: fault knob "
                f"stall_after_n={self.stall_after_n}.)"
            )
        return msg

    def _check_faults(self) -> None:
        n = self._delivered_since_open
        if self.disconnect_after_n is not None and n >= self.disconnect_after_n:
            self._disconnected = True
            self._check_connected()

    def _pop_ready(self, now: float, timeout_s: float) -> _Exposure | None:
        late = self.fetch_latency_s >= timeout_s
        if self._buffer and not self._stalled() and not late:
            self._delivered_since_open += 1
            return self._buffer.popleft()
        return None

    def _wait_s(self, now: float, remaining: float, free_run: bool) -> float:
        if free_run:
            return min(remaining, max(0.0, self._fr_next_due - now) + 1e-4)
        return remaining

    def _do_fetch(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        if self.fetch_latency_s > 0:
            time.sleep(min(self.fetch_latency_s, timeout_s))
        exp = self._wait_for_frame(timeout_s, deadline)
        return self._frame(exp, self._render(exp), exp.t_start_s)

    # -- rendering -------------------------------------------------------------------------------
    def _fixed_patterns(self) -> tuple[np.ndarray, np.ndarray]:
        """Full-sensor unit-variance patterns for PRNU (gain) and DSNU (offset), made once.

        They are scaled by the ``prnu`` and ``dsnu_e`` knobs at use, so the knobs may change.
        """
        with self._patterns_lock:
            if self._patterns is None:
                sw, sh = self._sensor
                rng = np.random.default_rng([self._seed, 0xF1C5])
                gain_z = rng.standard_normal((sh, sw), dtype=np.float32)
                offset_z = rng.standard_normal((sh, sw), dtype=np.float32)
                self._patterns = (gain_z, offset_z)
            return self._patterns

    def _render_masked(self, exp: _Exposure, region: tuple[int, int, int, int]) -> np.ndarray:
        """Per-pixel coding: each chip's scene through its mask, normalised per pixel by the
        chips it is open in (the brightness convention, pixel by pixel)."""
        x, y, w, h = region
        m = np.asarray(exp.masks[:, y : y + h, x : x + w], dtype=np.float32)
        m = m * np.asarray(exp.weights, np.float32)[:, None, None]
        chip_s = exp.code.chip_us * 1e-6
        t0 = exp.t_start_s + np.arange(exp.code.n_chips) * chip_s
        frames = exp.scene.render_means(t0, t0 + chip_s, self.render_sub_steps, region)
        total = m.sum(axis=0)
        signal = np.einsum("khw,khw->hw", m, frames)
        ref = self.linear_exposure_ref_us
        if ref is None:
            signal /= np.where(total > 0, total, 1.0)
        else:
            signal *= np.float32(exp.code.chip_us / ref)
        return (signal * np.float32(self.full_scale_dn(exp.settings))).astype(np.float32)

    def vignetting_map(self) -> np.ndarray:
        """Full-sensor relative illumination of the lens, ``1 - vignetting * r^2`` (r = 1 at the
        corners), float32."""
        key = ("vignetting", self.vignetting)
        if key not in self._maps:
            sw, sh = self._sensor
            y, x = np.mgrid[0:sh, 0:sw].astype(np.float32)
            r2 = ((x - (sw - 1) / 2) ** 2 + (y - (sh - 1) / 2) ** 2) / (
                ((sw - 1) / 2) ** 2 + ((sh - 1) / 2) ** 2
            )
            self._maps[key] = (1.0 - np.float32(self.vignetting) * r2).astype(np.float32)
        return self._maps[key]

    def hot_pixel_map(self) -> np.ndarray:
        """Full-sensor boolean map of the hot pixels (fixed by the seed and the fraction)."""
        key = ("hot", self.hot_pixel_fraction)
        if key not in self._maps:
            sw, sh = self._sensor
            rng = np.random.default_rng([self._seed, 0x407])
            self._maps[key] = rng.random((sh, sw)) < self.hot_pixel_fraction
        return self._maps[key]

    def _render(self, exp: _Exposure) -> np.ndarray:
        s = exp.settings
        roi = s.roi
        region = (roi.offset_x, roi.offset_y, roi.width, roi.height)
        n_sub = self.render_sub_steps
        chip_s = exp.code.chip_us * 1e-6
        # DN per chip of full weight: see the brightness convention and linear_exposure_ref_us
        ref_us = self.linear_exposure_ref_us
        per_chip = self.full_scale_dn(s) * (
            1.0 / exp.code.n_open if ref_us is None else exp.code.chip_us / ref_us
        )
        if exp.masks is not None:
            return self._expose(self._render_masked(exp, region), exp)
        times: list[float] = []
        wts: list[float] = []
        if exp.samples:
            for off_us, wk in exp.samples:
                times.append(exp.t_start_s + off_us * 1e-6)
                wts.append(per_chip * wk)
        else:
            norm = per_chip / n_sub
            for k, wk in enumerate(exp.weights):
                if wk <= 0.0:
                    continue
                t0 = exp.t_start_s + k * chip_s
                dt = wk * chip_s / n_sub
                times.extend(t0 + (i + 0.5) * dt for i in range(n_sub))
                wts.extend([norm * wk] * n_sub)
        if not times:  # nothing reached the sensor (a closed ideal shutter)
            signal = np.zeros((roi.height, roi.width), np.float32)
        else:
            signal = exp.scene.render_weighted(times, wts, region)
        return self._expose(signal, exp)

    def _expose(self, signal_dn: np.ndarray, exp: _Exposure) -> np.ndarray:
        """Sensor model: ``signal_dn`` (noise-free DN above dark) -> image in the pixel format."""
        s = exp.settings
        if not self.noise:
            if self.vignetting > 0:
                roi = s.roi
                signal_dn = signal_dn * self.vignetting_map()[
                    roi.offset_y : roi.offset_y + roi.height,
                    roi.offset_x : roi.offset_x + roi.width,
                ]
            dn = signal_dn + np.float32(self.dark_dn(exp.exposure_us, s))
        else:
            e_per_dn = self.gain_e_per_dn(s)
            roi = s.roi
            crop = np.s_[
                roi.offset_y : roi.offset_y + roi.height, roi.offset_x : roi.offset_x + roi.width
            ]
            gain_z, offset_z = self._fixed_patterns()
            rng = np.random.default_rng([self._seed, exp.frame_id, 0x5107])
            mean_e = signal_dn * np.float32(e_per_dn)
            if self.prnu > 0:
                tmp = gain_z[crop] * np.float32(self.prnu)
                tmp += np.float32(1.0)
                mean_e *= tmp
            if self.vignetting > 0:
                mean_e *= self.vignetting_map()[crop]
            mean_e += np.float32(self.dark_current_e_per_s * exp.exposure_us * 1e-6)
            if self.hot_pixel_fraction > 0:
                hot = self.hot_pixel_map()[crop]
                mean_e[hot] += np.float32(self.hot_pixel_e_per_s * exp.exposure_us * 1e-6)
            np.maximum(mean_e, 0.0, out=mean_e)
            read = np.float32(self.read_noise_e)
            # Shot + read noise, Gaussian approximation. cv2.randn is ~5x faster than numpy; its
            # generator is per thread and seeded here from (seed, frame_id): frames are repeatable.
            electrons = np.empty_like(mean_e)
            cv2.setRNGSeed(int(rng.integers(1, 2**31 - 1)))
            cv2.randn(electrons, 0.0, 1.0)
            sd = mean_e + read * read
            np.sqrt(sd, out=sd)
            electrons *= sd
            electrons += mean_e
            low = mean_e < _POISSON_BELOW_E  # few electrons: a true Poisson law
            n_low = int(np.count_nonzero(low))
            if n_low:
                shot = rng.poisson(mean_e[low]).astype(np.float32)
                electrons[low] = shot + read * rng.standard_normal(n_low, dtype=np.float32)
            if self.dsnu_e > 0:
                tmp = offset_z[crop] * np.float32(self.dsnu_e)
                electrons += tmp
            dn = electrons
            dn *= np.float32(1.0 / e_per_dn)
            dn += np.float32(s.black_level_dn)
        np.clip(dn, 0.0, float(s.saturation_dn), out=dn)
        np.rint(dn, out=dn)
        return dn.astype(s.dtype)


def make_sim_rig(
    width: int | None = None,
    height: int | None = None,
    seed: int = 0,
    scene: SimScene | None = None,
    *,
    shutter_kw: Mapping[str, Any] | None = None,
    **camera_kw: Any,
) -> tuple[SimCamera, SimShutter]:
    """A simulated camera wired to a simulated shutter (neither opened yet).

    Args:
        width: sensor width (default: the scene's, else 1024).
        height: sensor height (default: the scene's, else 1024).
        seed: seeds the default scene and the camera.
        scene: what the camera sees; ``SimScene.default(width, height, seed)`` when None.
        shutter_kw: keyword arguments of :class:`SimShutter` (fault knobs, ``gap_s``...).
        **camera_kw: keyword arguments of :class:`SimCamera`.

    Returns:
        ``(camera, shutter)``; the camera renders a coded frame on each ``shutter.fire()`` once it
        acquires with ``trigger_mode='On'``, ``trigger_source='Line1'``.

    Example::

        cam, sh = make_sim_rig(width=256, height=256)
        with cam, sh:
            cam.apply_settings(cam.settings.replace(
                trigger_mode="On", trigger_source="Line1", exposure_mode="TriggerWidth"))
            sh.load_code(ShutterCode.parse("11100101", 1000)); sh.arm(); cam.start()
            index = sh.fire(); frame = cam.fetch(timeout_s=2.0)
    """
    shutter = SimShutter(**dict(shutter_kw or {}))
    if scene is None:
        w = 1024 if width is None else int(width)
        h = 1024 if height is None else int(height)
        scene = SimScene.default(w, h, seed=seed)
    camera = SimCamera(
        scene, shutter, sensor_width=width, sensor_height=height, seed=seed, **camera_kw
    )
    return camera, shutter
