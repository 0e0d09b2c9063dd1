"""All the procedures in one run: which steps (:class:`Plan`) and :func:`calibrate_all`, which runs
them in order into one :class:`~calibration.model.Calibration`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from calibration.bench import Board
from calibration.model import AppliesTo, Calibration
from calibration.procedures.base import Procedure, Progress, Rig, camera_temperature_c
from calibration.procedures.dmd_mapping import Projector, dmd_mapping
from calibration.procedures.geometry import geometry
from calibration.procedures.sensor import dark_frames, flat_field, photon_transfer
from calibration.procedures.shutter_timing import shutter_timing
from hw.errors import RigError

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
