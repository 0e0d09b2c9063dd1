"""What is in front of the camera during a calibration step, and who puts it there.

Procedures ask a :class:`Bench` for a target (``bench.setup(target, instruction, view=i)``)
before they take frames:

=================  ==========================================================================
``"cap"``          no light reaches the sensor (lens cap on, room dark)
``"flat"``         a uniform, diffuse, static light filling the field (integrating sphere, a
                   diffusor on a light panel); also used for photon transfer
``"bright"``       a static bright target for shutter timing (the flat target does)
``"checkerboard"`` view ``i`` of a printed checkerboard at a new pose (tilt it, move it)
=================  ==========================================================================

On a real bench a person does it: the wizard shows the instruction and waits for "Next", and the
command line waits for Enter (:class:`PromptBench`). :class:`SimBench` does it for the simulated
rig: it puts the matching scene in front of the :class:`~hw.sim.SimCamera`, and renders each
checkerboard view through the camera's lens (:class:`~hw.optics.SimLens`), so geometry
calibration has a known answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from hw.optics import ShutterOptics, warp_masks
from hw.sim.camera import SimCamera, SimSensor, make_sim_rig
from hw.sim.scene import SimScene
from hw.sim.shutter import SimShutter

TARGETS = ("cap", "flat", "bright", "checkerboard")

#: The simulated rig of ``blurvid-rig calibrate --sim``: an LC shutter as data sheets describe
#: one, and a sensor and lens with the defects calibration is for.
SIM_LC_SHUTTER = ShutterOptics(leakage=0.02, latency_us=30.0, rise_us=50.0, fall_us=40.0)
SIM_SENSOR = SimSensor(vignetting=0.25, prnu=0.01, dsnu_e=2.0, hot_pixel_fraction=0.0005)


def make_sim_bench_rig(
    width: int = 512, height: int = 384, seed: int = 0, *, sensor: SimSensor = SIM_SENSOR,
    **camera_kw: object,
) -> tuple[SimCamera, SimShutter]:
    """A simulated camera and shutter with :data:`SIM_LC_SHUTTER` and :data:`SIM_SENSOR` (the
    truth a simulated calibration should recover); ``camera_kw``: more SimCamera options."""
    return make_sim_rig(
        width, height, seed=seed, shutter_kw={"optics": SIM_LC_SHUTTER}, sensor=sensor,
        **camera_kw,
    )  # fmt: skip


def sim_truth(camera: SimCamera, shutter: SimShutter) -> dict[str, float]:
    """The simulated rig's true parameters, under the names the calibration reports them."""
    s = camera.settings
    o = shutter.optics
    g = camera.gain_e_per_dn(s)
    return {
        "gain_e_per_dn": g,
        "read_noise_e": camera.read_noise_e,
        "dsnu_dn": camera.dsnu_e / g,
        "prnu": camera.prnu,
        "hot_pixels": float(camera.hot_pixel_map().sum()),
        "latency_us": o.latency_us,
        "rise_us": o.rise_us,
        "close_latency_us": o.close_latency,
        "fall_us": o.fall_us,
        "leakage": o.leakage,
        "fx": camera.lens.fx,
        "fy": camera.lens.fy,
        "k1": camera.lens.dist[0],
    }


class Bench(Protocol):
    """Puts a target in front of the camera (or asks a person to)."""

    def setup(self, target: str, instruction: str, *, view: int = 0) -> None: ...


class PromptBench:
    """A person sets up the bench; ``ask(instruction)`` returns when it is done (e.g. Enter)."""

    def __init__(self, ask: Callable[[str], object] = input) -> None:
        self._ask = ask

    def setup(self, target: str, instruction: str, *, view: int = 0) -> None:
        self._ask(f"{instruction}  [Enter when ready] ")


@dataclass(frozen=True)
class Board:
    """A checkerboard: ``cols`` x ``rows`` inner corners, squares of ``square_mm``."""

    cols: int = 9
    rows: int = 6
    square_mm: float = 10.0

    def object_points(self) -> np.ndarray:
        """Inner-corner coordinates on the board plane (z = 0), row by row, ``(N, 3)`` float32."""
        j, i = np.mgrid[0 : self.rows, 0 : self.cols]
        pts = np.stack([i.ravel(), j.ravel(), np.zeros(i.size)], -1) * self.square_mm
        return pts.astype(np.float32)


def board_poses(n: int, board: Board, focal_px: float, width: int, height: int) -> list[
    tuple[np.ndarray, np.ndarray]
]:
    """``n`` varied poses ``(rvec, tvec)`` (board -> camera, mm) that keep the board in view."""
    bw = (board.cols + 1) * board.square_mm
    z0 = focal_px * bw / (0.62 * width)
    rng = np.random.default_rng(12345)
    poses = []
    for k in range(n):
        ax = math.radians(28.0 * math.sin(2.0 * math.pi * k / max(n, 1)) + rng.uniform(-4, 4))
        ay = math.radians(28.0 * math.cos(2.0 * math.pi * k / max(n, 1)) + rng.uniform(-4, 4))
        az = math.radians(rng.uniform(-15, 15))
        rmat = cv2.Rodrigues(np.array([ax, ay, az]))[0]
        centre = np.array([(board.cols - 1) * board.square_mm / 2,
                           (board.rows - 1) * board.square_mm / 2, 0.0])
        z = z0 * rng.uniform(0.9, 1.15)
        shift = np.array([rng.uniform(-0.12, 0.12) * width * z / focal_px,
                          rng.uniform(-0.12, 0.12) * height * z / focal_px, z])
        tvec = shift - rmat @ centre
        poses.append((cv2.Rodrigues(rmat)[0].ravel(), tvec))
    return poses


class SimBench:
    """Sets up the simulated rig's camera for each calibration target (see the module docstring).

    Args:
        camera: the simulated camera whose scene is replaced.
        level: radiance of the flat / bright target (0..1 of the camera's full scale).
        board: the checkerboard rendered for geometry.
        oversample: samples per pixel side when rendering the checkerboard (anti-aliasing).
        n_views: how many checkerboard poses there are.
        ref_exposure_us: a real camera's frames brighten with exposure; the simulated one is
            made to (``linear_exposure_ref_us``), the target giving ``level`` of its full scale
            after this exposure (default: the camera's current exposure).
        flicker: relative depth of a light flicker on the flat and bright targets (0: steady
            light; 0.05: the radiance swings by +-5 %), at ``flicker_hz`` (a lamp on 50 Hz
            mains flickers at 100 Hz).
    """

    def __init__(
        self, camera: SimCamera, *, level: float = 0.8, board: Board | None = None,
        oversample: int = 4, n_views: int = 12, ref_exposure_us: float | None = None,
        flicker: float = 0.0, flicker_hz: float = 100.0,
    ) -> None:
        if not (0.0 <= flicker < 1.0 and flicker_hz > 0):
            raise ValueError(f"flicker must be in [0, 1) and flicker_hz > 0, got {flicker!r}, "
                             f"{flicker_hz!r}.")
        self.flicker, self.flicker_hz = float(flicker), float(flicker_hz)
        self.camera = camera
        self._saved = (camera.scene, camera.linear_exposure_ref_us)
        if camera.linear_exposure_ref_us is None:
            camera.linear_exposure_ref_us = float(
                ref_exposure_us or (camera.settings.exposure_us if camera.is_open else 10_000.0)
            )
        self.level = float(level)
        self.board = board or Board()
        self.oversample = int(oversample)
        w, h = camera.scene.width, camera.scene.height
        self.poses = board_poses(n_views, self.board, camera.lens.fx, w, h)
        self.log: list[tuple[str, str]] = []

    def close(self) -> None:
        """Put the camera's scene and exposure behaviour back as they were."""
        self.camera.scene, self.camera.linear_exposure_ref_us = self._saved

    def __enter__(self) -> SimBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def setup(self, target: str, instruction: str, *, view: int = 0) -> None:
        if target not in TARGETS:
            raise ValueError(f"Unknown calibration target {target!r}; one of {TARGETS}.")
        self.log.append((target, instruction))
        w, h = self.camera.scene.width, self.camera.scene.height
        if target == "cap":
            image = np.zeros((h, w), np.float32)
        elif target in ("flat", "bright"):
            image = np.full((h, w), self.level, np.float32)
            if self.flicker > 0:
                self.camera.scene = FlickeringScene(image, self.flicker, self.flicker_hz)
                return
        else:
            image = self.render_board(view % len(self.poses))
        self.camera.scene = SimScene.static(image)

    def render_board(self, view: int) -> np.ndarray:
        """Radiance image of checkerboard view ``view`` seen through the camera's lens."""
        lens = self.camera.lens
        w, h = self.camera.scene.width, self.camera.scene.height
        o = self.oversample
        grid = lens.undistorted_grid(w, h, o)
        rvec, tvec = self.poses[view]
        rmat = cv2.Rodrigues(rvec)[0]
        m = np.column_stack([rmat[:, 0], rmat[:, 1], tvec])  # board (X, Y, 1) -> camera ray
        minv = np.linalg.inv(m)
        x, y = grid[..., 0], grid[..., 1]
        b = minv[:, 0, None, None] * x + minv[:, 1, None, None] * y + minv[:, 2, None, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            bx, by = b[0] / b[2], b[1] / b[2]
        sq = self.board.square_mm
        u, v = bx / sq, by / sq
        cols, rows = self.board.cols, self.board.rows
        inside = (u >= -1) & (u < cols) & (v >= -1) & (v < rows) & (b[2] > 0)
        margin = (u >= -2) & (u < cols + 1) & (v >= -2) & (v < rows + 1) & (b[2] > 0)
        dark = ((np.floor(u) + np.floor(v)) % 2 == 0) & inside
        img = np.full(u.shape, 0.25, np.float32)  # the room behind the board
        img[margin] = 0.85  # white border
        img[dark] = 0.08
        img = img.reshape(h, o, w, o).mean(axis=(1, 3))
        return (img * (self.level / 0.85)).astype(np.float32)


class FlickeringScene(SimScene):
    """A still image under a light whose brightness swings by ``depth`` (relative) at ``hz``:
    ``render(t) = image * (1 + depth * sin(2 pi hz t))``, ``t`` the simulated time."""

    def __init__(self, image: np.ndarray, depth: float, hz: float = 100.0) -> None:
        super().__init__(image)
        self.depth, self.hz = float(depth), float(hz)

    @property
    def is_static(self) -> bool:
        return self.depth == 0.0

    def render_weighted(self, times_s, weights, region=None) -> np.ndarray:
        t = np.asarray(times_s, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64) * (
            1.0 + self.depth * np.sin(2.0 * np.pi * self.hz * t))
        return super().render_weighted(t, w, region)

    def render_means(self, t0_s, t1_s, n_sub: int = 8, region=None) -> np.ndarray:
        t0 = np.asarray(t0_s, dtype=np.float64).ravel()
        t1 = np.asarray(t1_s, dtype=np.float64).ravel()
        return np.stack([self.render_mean(a, b, n_sub, region) for a, b in zip(t0, t1,
                                                                               strict=True)])


class SimDmdProjector:
    """A simulated DMD imaged onto the simulated camera's scene through a known homography
    ``matrix`` (DMD ``(x, y)`` -> camera pixels): the truth of the DMD mapping procedure."""

    def __init__(self, camera: SimCamera, shape: tuple[int, int], matrix: np.ndarray,
                 level: float = 0.8) -> None:
        self.camera = camera
        self._shape = (int(shape[0]), int(shape[1]))
        self.matrix = np.asarray(matrix, np.float64)
        self.level = float(level)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def show(self, pattern: np.ndarray) -> None:
        if pattern.shape != self._shape:
            raise ValueError(f"The DMD has {self._shape} mirrors; the pattern is {pattern.shape}.")
        shape = (self.camera.scene.height, self.camera.scene.width)
        lit = warp_masks(pattern[None], self.matrix, shape)[0] * np.float32(self.level)
        self.camera.scene = SimScene.static(lit)
