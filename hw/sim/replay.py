"""A camera that replays a few pre-rendered frames, paced at its frame rate: for throughput tests.

:class:`SimCamera` renders every frame (scene, coded integration, sensor noise), which at 1024x1024
takes about 30 ms, so it cannot show whether the rest of the rig keeps up at 200 frames/s.
:class:`ReplayCamera` renders nothing: it holds a few full-sensor images (given, rendered once by
:func:`sim_frames`, or synthetic noise) and hands out a fresh copy of the next one for every
exposure, never earlier than one frame period after the previous frame, so its frame rate is the
camera's, not the consumer's.

It has the settings, states and errors of the other cameras:

* ``trigger_mode='On'``, ``trigger_source='Line1'``: a frame per
  :class:`~hw.sim.shutter.TriggerEvent` of the connected shutter (``trigger_index`` and
  ``code_sha256`` from the event; ``exposure_us`` is the code period with
  ``exposure_mode='TriggerWidth'``, else ``exposure_us``).
* ``trigger_mode='On'``, ``trigger_source='Software'``: a frame per
  :meth:`~hw.base.Camera.software_trigger`.
* ``trigger_mode='Off'``: free run at the frame rate (paced by the wall clock).

Pacing: the shortest frame period is ``max(1 / frame_rate_hz, exposure)`` (the node map's
``ResultingFrameRate``). A frame is ready at ``max(trigger time, previous frame ready + period)``;
``fetch`` returns it no earlier. ``camera_timestamp_ns`` is that ready time on the camera's own
clock (nanoseconds since the camera was opened), so the timestamps show the camera's rate.

Buffer: like a real camera, the camera holds at most ``buffer_frames`` frames (from the trigger
until fetched); a frame that finds the buffer full is lost and counted in ``dropped_frames``, and
the frame id still advances, so the consumer sees the gap.

Images: ``frames`` are integer images of the full sensor whose values are on a ``bit_depth``-bit
scale (16 by default). At ``start()`` they are cropped to the ROI and shifted to the pixel format's
bit depth (so Mono16 frames of a Mono16 source are replayed bit for bit). Gain, black level and
exposure do not change the images.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hw.sim.camera import SimCamera
from hw.sim.camera_base import SimCameraBase, shortest_frame_period_s
from hw.sim.shutter import SimShutter, TriggerEvent
from hw.sim.wire import SimTriggerWire
from hw.types import CameraSettings, Frame, Roi, ShutterCode

__all__ = ["ReplayCamera", "sim_frames"]


@dataclass(frozen=True)
class _Slot:
    """One frame in the camera's buffer: what it will be stamped with and when it is ready."""

    frame_id: int
    ready_s: float  # time.monotonic() at which the frame may be fetched
    trigger_index: int
    code_sha256: str
    exposure_us: float


class ReplayCamera(SimCameraBase):
    """A camera that replays pre-rendered frames at its frame rate (no rendering cost).

    Args:
        shutter: a :class:`SimShutter` (or :class:`SimTriggerWire`) whose triggers this camera
            receives on Line1; None for a camera without a trigger line.
        frames: full-sensor 2-D integer images, all of one shape, on a ``bit_depth``-bit scale;
            handed out in turn (frame ``i`` shows ``frames[i % len(frames)]``). None: ``n_frames``
            synthetic images (a gradient plus noise, seeded by ``seed``).
        sensor_width: sensor width when ``frames`` is None (default 1024).
        sensor_height: sensor height when ``frames`` is None (default 1024).
        bit_depth: the scale of ``frames`` in bits (8..16).
        n_frames: how many synthetic images to make when ``frames`` is None.
        seed: seeds the synthetic images; part of the serial number.
        pixel_size_um: reported pixel pitch.
        buffer_frames: frames the camera holds until fetched; more are lost (ids still advance).

    Raises:
        ValueError: frames of different shapes, not 2-D integer images, or too small; bad sizes.

    Example::

        sh = SimShutter()
        cam = ReplayCamera(sh, sensor_width=1024, sensor_height=1024)
        with cam, sh:
            cam.apply_settings(cam.settings.replace(
                trigger_mode="On", trigger_source="Line1", exposure_mode="TriggerWidth",
                pixel_format="Mono16", frame_rate_hz=200.0))
            sh.load_code(ShutterCode.parse("11100101", 500)); sh.arm(); cam.start()
            sh.fire(); frame = cam.fetch(timeout_s=1.0)
    """

    _MODEL = "ReplayCamera"
    _VERSION = "replay-1"
    _SERIAL_PREFIX = "REPLAY"

    def __init__(
        self,
        shutter: SimShutter | SimTriggerWire | None = None,
        frames: Sequence[np.ndarray] | None = None,
        *,
        sensor_width: int | None = None,
        sensor_height: int | None = None,
        bit_depth: int = 16,
        n_frames: int = 4,
        seed: int = 0,
        pixel_size_um: float = 3.45,
        buffer_frames: int = 16,
    ) -> None:
        if not 8 <= int(bit_depth) <= 16:
            raise ValueError(f"bit_depth must be 8..16, got {bit_depth!r}.")
        if int(buffer_frames) < 1:
            raise ValueError(f"buffer_frames must be >= 1, got {buffer_frames!r}.")
        if not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
            raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um!r}.")
        bit_depth = int(bit_depth)
        if frames is None:
            sw = 1024 if sensor_width is None else int(sensor_width)
            sh = 1024 if sensor_height is None else int(sensor_height)
            if sw < 8 or sh < 8:
                raise ValueError(f"The sensor must be at least 8x8 pixels, got {sw}x{sh}.")
            if int(n_frames) < 1:
                raise ValueError(f"n_frames must be >= 1, got {n_frames!r}.")
            source = _synthetic_frames(sw, sh, int(n_frames), bit_depth, int(seed))
        else:
            source = [np.asarray(f) for f in frames]
            if not source:
                raise ValueError("frames is empty; give at least one image (or None).")
            shape = source[0].shape
            for i, f in enumerate(source):
                if f.ndim != 2 or f.dtype.kind not in "iu" or f.shape != shape:
                    raise ValueError(
                        f"frames[{i}] is a {f.dtype} array of shape {f.shape}; every frame must "
                        f"be a 2-D integer image of the same shape as frames[0] {shape}."
                    )
            sh, sw = shape
            if (sensor_width, sensor_height) not in ((None, None), (sw, sh)):
                raise ValueError(
                    f"The frames are {sw}x{sh} but the sensor was given as "
                    f"{sensor_width}x{sensor_height}; leave the sensor size out."
                )
            if sw < 8 or sh < 8:
                raise ValueError(f"The frames must be at least 8x8 pixels, got {sw}x{sh}.")
        super().__init__(
            shutter, (sw, sh), seed=seed, pixel_size_um=pixel_size_um, buffer_frames=buffer_frames
        )
        self._buffer: deque[_Slot]
        self._bit_depth = bit_depth
        self._source = source
        self._pool: list[np.ndarray] = []
        self._pool_key: tuple[Roi, str] | None = None
        self._last_ready_s = -math.inf
        self._t0_s = time.monotonic()
        if shutter is not None:
            shutter.connect_trigger(self._on_trigger)

    # -- sim API ---------------------------------------------------------------------------------
    @property
    def n_source_frames(self) -> int:
        """How many different images the camera replays."""
        return len(self._source)

    def frame_period_s(self, settings: CameraSettings | None = None) -> float:
        """Shortest time between two frames: ``max(1 / frame_rate_hz, exposure)``."""
        return shortest_frame_period_s(self._settings if settings is None else settings)

    # -- Camera hooks ----------------------------------------------------------------------------
    def _do_open(self) -> None:
        with self._cond:
            self._t0_s = time.monotonic()
            self._last_ready_s = -math.inf

    def _extra_nodes(self, s: CameraSettings) -> dict[str, Any]:
        return {
            "ReplaySourceFrames": len(self._source),
            "ReplaySourceBitDepth": self._bit_depth,
            "ReplayBufferFrames": self._buffer_frames,
        }

    def _prepare_pool(self, s: CameraSettings) -> None:
        """The source images cropped to the ROI, in the pixel format (made once per format)."""
        key = (s.roi, s.pixel_format)
        if self._pool_key == key:
            return
        r = s.roi
        crop = np.s_[r.offset_y : r.offset_y + r.height, r.offset_x : r.offset_x + r.width]
        shift = self._bit_depth - s.bit_depth
        pool = []
        for src in self._source:
            img = np.asarray(src[crop], dtype=np.int64)
            img = img >> shift if shift >= 0 else img << -shift
            img = np.clip(img, 0, s.saturation_dn).astype(s.dtype)
            pool.append(np.ascontiguousarray(img))
        self._pool, self._pool_key = pool, key

    def _before_start(self, s: CameraSettings) -> None:
        self._prepare_pool(s)

    def _first_free_run_due(self) -> float:
        return max(time.monotonic(), self._last_ready_s + self._period_s)

    def _do_software_trigger(self) -> None:
        with self._cond:
            s = self._acq
            self._schedule(time.monotonic(), -1, "", s.exposure_us)

    def _line1_frame(self, event: TriggerEvent, window_us: float, now: float) -> None:
        self._schedule(now, event.trigger_index, event.code.sha256, window_us)

    def _schedule(self, now: float, trigger_index: int, sha: str, exposure_us: float) -> None:
        """A triggered frame (caller holds ``_cond``): ready one period after the previous one."""
        ready = max(now, self._last_ready_s + self._period_s)
        self._last_ready_s = ready
        self._put(_Slot(self._next_frame_id, ready, trigger_index, sha, float(exposure_us)))

    def _put(self, slot: _Slot) -> None:
        """Into the buffer, or lost if it is full (caller holds ``_cond``); the id advances."""
        self._next_frame_id = slot.frame_id + 1
        self._offer(slot)

    def _make_free_run_frames(self, n_due: int, period: float) -> int:
        n = min(n_due, max(0, self._buffer_frames - len(self._buffer)))
        exposure = self._acq.exposure_us
        for k in range(n):
            self._put(_Slot(self._next_frame_id, self._fr_next_due + k * period, -1, "", exposure))
        self._last_ready_s = self._fr_next_due + (n_due - 1) * period
        return n

    def _pop_ready(
        self, now: float, timeout_s: float
    ) -> tuple[_Slot, list[np.ndarray], float] | None:
        """The next ready slot, with the image pool and clock origin read under the same lock."""
        if self._buffer and self._buffer[0].ready_s <= now:
            return self._buffer.popleft(), self._pool, self._t0_s
        return None

    def _wait_s(self, now: float, remaining: float, free_run: bool) -> float:
        wait = remaining
        if self._buffer:
            wait = min(wait, self._buffer[0].ready_s - now)
        elif free_run:
            wait = min(wait, self._fr_next_due - now)
        return max(wait, 0.0)

    def _do_fetch(self, timeout_s: float) -> Frame:
        slot, pool, t0 = self._wait_for_frame(timeout_s, time.monotonic() + timeout_s)
        image = pool[slot.frame_id % len(pool)].copy()  # a fresh array, owned by the frame
        return self._frame(slot, image, slot.ready_s - t0)


def _synthetic_frames(
    width: int, height: int, n: int, bit_depth: int, seed: int
) -> list[np.ndarray]:
    """``n`` uint16 images: a diagonal gradient over a quarter of the range, plus noise."""
    rng = np.random.default_rng([seed, 0x4E9A])
    full = 2**bit_depth - 1
    yy, xx = np.mgrid[0:height, 0:width]
    base = (0.2 + 0.3 * (xx + yy) / (width + height)) * full
    out = []
    for _ in range(n):
        img = base + rng.normal(0.0, 0.01 * full, size=(height, width))
        out.append(np.clip(np.rint(img), 0, full).astype(np.uint16))
    return out


def sim_frames(
    width: int,
    height: int,
    n: int,
    code: ShutterCode | None = None,
    *,
    seed: int = 0,
    pixel_format: str = "Mono16",
) -> list[np.ndarray]:
    """Render ``n`` coded frames of the default simulated scene with a :class:`SimCamera`.

    Args:
        width, height: sensor size.
        n: number of frames.
        code: the code played (default ``11100101`` at 1000 us chips).
        seed: seeds the scene and the noise.
        pixel_format: of the frames (Mono16 gives 16-bit-scale images for ``ReplayCamera``).

    Returns:
        ``n`` arrays ``(height, width)`` in the dtype of ``pixel_format``.
    """
    code = code if code is not None else ShutterCode.parse("11100101", 1000.0)
    shutter = SimShutter()
    camera = SimCamera(None, shutter, sensor_width=width, sensor_height=height, seed=seed)
    with camera, shutter:
        camera.apply_settings(
            camera.settings.replace(
                trigger_mode="On",
                trigger_source="Line1",
                exposure_mode="TriggerWidth",
                exposure_us=code.period_us,
                pixel_format=pixel_format,
            )
        )
        shutter.load_code(code)
        shutter.arm()
        camera.start()
        frames = []
        for _ in range(n):
            shutter.fire()
            frames.append(camera.fetch(timeout_s=30.0).image)
    return frames
