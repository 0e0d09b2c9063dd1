"""Simulated DMD shutter: a global flutter shutter, or per-pixel coding with binary masks.

:class:`SimDmdShutter` behaves like :class:`~hw.sim.shutter.SimShutter` (same contract: load,
echo, arm, fire, trigger count, fault knobs) and adds :meth:`SimDmdShutter.load_masks`: a stack
of binary mirror patterns ``M[k, y, x]`` (DMD coordinates), one per chip. Global mode plays the
code as all-on / all-off patterns. The DMD is imaged onto the sensor through a relay whose mapping
``dmd_to_camera`` (3x3, DMD (x, y) -> sensor pixels) is known to the simulator; each chip's
mirror pattern is warped through it (bilinear, so a mirror edge between two sensor pixels gives
fractional transmittance), and a connected :class:`~hw.sim.SimCamera` renders every pixel
through its own code.

    with SimDmdShutter((64, 64)) as dmd:
        dmd.load_masks(random_masks(8, (64, 64), seed=1), chip_us=500)
"""

from __future__ import annotations

import numpy as np

from hw.optics import warp_masks
from hw.sim.shutter import SimClock, SimShutter, TriggerEvent
from hw.types import ShutterCode, ShutterInfo, check_dmd_masks, masks_sha256

#: Largest mask stack the simulated DMD holds (a DLPC900 holds 400 1-bit patterns in its LUT).
SIM_DMD_MAX_PATTERNS = 400


def random_masks(n: int, shape: tuple[int, int], seed: int = 0, fill: float = 0.5) -> np.ndarray:
    """``n`` random binary masks ``(n, H, W)`` (bool) with the given open fraction."""
    if n < 1 or not 0.0 < fill < 1.0:
        raise ValueError(f"Need n >= 1 and 0 < fill < 1; got n={n}, fill={fill}.")
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)) < fill


def parse_masks_spec(spec: str, shape: tuple[int, int]) -> np.ndarray:
    """``"random:K"`` or ``"random:K:SEED"`` -> masks ``(K, H, W)``."""
    parts = spec.split(":")
    try:
        if parts[0] != "random" or len(parts) not in (2, 3):
            raise ValueError
        k = int(parts[1])
        seed = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise ValueError(
            f"Masks {spec!r} not understood; use random:K or random:K:SEED (e.g. random:8)."
        ) from None
    return random_masks(k, shape, seed)


class SimDmdShutter(SimShutter):
    """A simulated DMD as shutter (see the module docstring).

    Args:
        dmd_shape: mirrors ``(rows, columns)``.
        sensor_shape: the camera's ``(height, width)`` (default: the DMD's).
        dmd_to_camera: 3x3 mapping of DMD (x, y) to sensor pixels (default identity).
        **kw: as :class:`~hw.sim.shutter.SimShutter` (fault knobs, clock, ...).
    """

    def __init__(
        self,
        dmd_shape: tuple[int, int],
        sensor_shape: tuple[int, int] | None = None,
        dmd_to_camera: np.ndarray | None = None,
        *,
        clock: SimClock | None = None,
        **kw,
    ) -> None:
        super().__init__(clock=clock, **kw)
        self.dmd_shape = (int(dmd_shape[0]), int(dmd_shape[1]))
        self.sensor_shape = tuple(sensor_shape) if sensor_shape is not None else self.dmd_shape
        self.dmd_to_camera = (
            np.eye(3) if dmd_to_camera is None else np.asarray(dmd_to_camera, np.float64)
        )
        self._masks: np.ndarray | None = None
        self._sensor_masks: np.ndarray | None = None
        self._masks_sha = ""

    @property
    def masks(self) -> np.ndarray | None:
        """The mask stack loaded (DMD coordinates), None in global mode."""
        return self._masks

    @property
    def masks_sha256(self) -> str:
        return self._masks_sha

    def _do_info(self) -> ShutterInfo:
        base = super()._do_info()
        return ShutterInfo(
            controller="simulated DMD",
            port="sim://dmd",
            firmware_version=base.firmware_version,
            chip_us_min=base.chip_us_min,
            chip_us_max=base.chip_us_max,
            max_chips=SIM_DMD_MAX_PATTERNS,
        )

    def _do_load_code(self, code: ShutterCode):
        self._masks, self._sensor_masks, self._masks_sha = None, None, ""
        return super()._do_load_code(code)

    def load_masks(self, masks: np.ndarray, chip_us: float):
        """Per-pixel mode: one binary pattern per chip, shown for ``chip_us`` each.

        Returns the controller status (its echo verified, as for a code).

        Raises:
            ValueError: masks not ``(K, rows, columns)`` of the DMD, or not binary.
            UnsupportedFeatureError: more patterns than the DMD holds.
        """
        m = check_dmd_masks(masks, self.dmd_shape, SIM_DMD_MAX_PATTERNS)
        code = ShutterCode((1,) * m.shape[0], float(chip_us), name="dmd-masks")
        status = self.load_code(code)
        self._masks = m.astype(bool)
        self._masks_sha = masks_sha256(self._masks)
        self._sensor_masks = warp_masks(self._masks, self.dmd_to_camera, self.sensor_shape)
        return status

    def _emit(self, event: TriggerEvent) -> None:
        if self._sensor_masks is not None:
            event = TriggerEvent(
                event.trigger_index, event.code, event.t_start_s, event.optics,
                self._sensor_masks,
            )
        super()._emit(event)


def make_sim_dmd_rig(
    width: int = 256, height: int = 256, seed: int = 0, scene=None, **camera_kw
):
    """A simulated camera behind a simulated DMD of the sensor's size, mirror for pixel."""
    from hw.sim.camera import SimCamera
    from hw.sim.scene import SimScene

    dmd = SimDmdShutter((height, width), (height, width))
    scene = scene if scene is not None else SimScene.default(width, height, seed=seed)
    cam = SimCamera(scene, dmd, sensor_width=width, sensor_height=height, seed=seed, **camera_kw)
    return cam, dmd
