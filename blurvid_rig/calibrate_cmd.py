"""``blurvid-rig calibrate``: run the calibration procedures headless, save file and report.

With ``--sim`` (the default without devices) the simulated rig has a leaky, slow LC shutter, a
vignetting, distorting lens and hot pixels (:func:`calibration.bench.make_sim_bench_rig`); the
bench is simulated too, and the summary shows each true value beside the measured one. With real
devices the command prints what to put in front of the camera and waits for Enter.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import datetime
from pathlib import Path

from blurvid_rig.config import DeviceFactory, DeviceSpec, open_devices
from hw.errors import RigError


def add_arguments(c: argparse.ArgumentParser) -> None:
    from calibration.procedures.plan import OPTIONAL_STEPS, STEPS

    c.add_argument("--steps", nargs="+", choices=STEPS + OPTIONAL_STEPS, default=list(STEPS),
                   help="procedures to run, in this order (default: all but dmd_mapping, which "
                        "needs --shutter dmd)")
    c.add_argument("--exposure-us", type=float, default=10_000.0,
                   help="exposure of the captures this calibration is for (darks are taken at "
                        "this and a quarter of it, and interpolated)")
    c.add_argument("--flat-exposure-us", type=float, default=0.0,
                   help="exposure for the flat field and the photon-transfer probe (default: "
                        "--exposure-us); aim for 30-70 %% of the range")
    c.add_argument("--gain-db", type=float, default=None, help="camera gain (default: as set)")
    c.add_argument("--black-level", type=float, default=None,
                   help="camera black level in DN (default: as set; 64 on the simulated camera); "
                        "the dark noise must stay above 0 DN")
    c.add_argument("--frames", type=int, default=16, help="frames averaged per dark / flat")
    c.add_argument("--views", type=int, default=12, help="checkerboard views for geometry")
    c.add_argument("--board", default="9x6", help="checkerboard inner corners, COLSxROWS")
    c.add_argument("--square-mm", type=float, default=10.0, help="checkerboard square size")
    c.add_argument("--timing-chip-us", type=float, default=1000.0,
                   help="chip of the shutter step codes (long enough for the shutter to settle)")
    c.add_argument("--check-chip-us", type=float, nargs="*", default=[100.0],
                   help="chip durations at which single-chip codes check the effective code")
    c.add_argument("--out", default="calibrations",
                   help="folder of the calibration file, as for capture (default: calibrations; "
                   "the file is <time>_calibration.cal.h5), or a file name ending in .h5")
    c.add_argument("--report", default="",
                   help="report .png or .pdf (default: beside the calibration file, .png)")
    c.add_argument("--name", default="", help="rig name recorded in the calibration")
    c.add_argument("--wizard", action="store_true",
                   help="open the calibration wizard (needs a display) instead of running "
                        "headless")


def _board(text: str):
    from calibration.bench import Board

    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RigError(f"--board must look like 9x6 (inner corners), got {text!r}.") from None
    if cols < 3 or rows < 3:
        raise RigError(f"--board needs at least 3x3 inner corners, got {text!r}.")
    return Board(cols, rows)


def run(args: argparse.Namespace, spec: DeviceSpec) -> int:
    """The command on the devices of ``spec``; ``camera="sim"`` with ``shutter="sim"`` is the
    simulated bench rig (:func:`calibration.bench.make_sim_bench_rig`)."""
    if spec.trigger_source != "Line1":
        raise RigError(
            "Calibration needs the camera triggered by the shutter controller (Line1): the shutter "
            "timing is measured against that trigger."
        )
    plan = _plan(args)
    out = Path(args.out or "calibrations")
    if out.suffix != ".h5":  # a folder, as capture's --out
        out = out / f"{datetime.now():%y%m%d_%H%M%S}_calibration.cal.h5"
    if out.exists():
        raise RigError(f"{out} exists; choose another --out (calibrations are never overwritten).")
    report = Path(args.report) if args.report else out.with_name(
        out.name.removesuffix(".h5").removesuffix(".cal") + ".report.png"
    )
    simulated = spec.camera == "sim" and spec.shutter == "sim"
    make = _sim_bench_rig(spec) if simulated else None
    with open_devices(spec, make) as (camera, shutter), contextlib.ExitStack() as stack:
        base = _base_settings(args, camera)
        bench = _bench(stack, args, camera, plan)
        info = camera.info
        rig_info = {
            "name": args.name or ("simulated rig" if simulated else ""),
            "camera": f"{info.vendor} {info.model} {info.serial_number}".strip(),
            "shutter": shutter.info.controller,
        }
        from calibration.bench import sim_truth

        truth = sim_truth(camera, shutter) if simulated else None
        if args.wizard:
            return _run_wizard(camera, shutter, bench, plan, rig_info, out, truth)
        cal = _measure(args, camera, shutter, bench, base, plan, rig_info, out)
    from calibration.report import summary_lines, write_report

    out.parent.mkdir(parents=True, exist_ok=True)
    cal.save(out)
    write_report(cal, report, truth)
    print("\n".join(summary_lines(cal, truth)))
    print(f"calibration -> {out}\nreport      -> {report}")
    return 0


def _plan(args: argparse.Namespace):
    """The procedures' plan from the command's options."""
    from calibration.procedures.plan import Plan

    return Plan(
        exposure_us=args.exposure_us, steps=tuple(args.steps),
        flat_exposure_us=args.flat_exposure_us or None, n_frames=args.frames,
        timing_chip_us=args.timing_chip_us, check_chip_us=tuple(args.check_chip_us),
        geometry_views=args.views, board=_board(args.board),
    )  # fmt: skip


def _sim_bench_rig(spec: DeviceSpec) -> DeviceFactory:
    """The simulated rig with a leaky, slow LC shutter and an imperfect lens (``--sim``)."""

    def make(_stack: contextlib.ExitStack):
        from calibration.bench import make_sim_bench_rig

        return make_sim_bench_rig(spec.width, spec.height, seed=spec.seed)

    return make


def _base_settings(args: argparse.Namespace, camera):
    """Apply the exposure, black level and gain of the command; what the camera holds."""
    from hw.sim import SimCamera

    base = camera.settings.replace(exposure_us=args.exposure_us)
    if args.black_level is not None:
        base = base.replace(black_level_dn=args.black_level)
    elif isinstance(camera, SimCamera) and base.black_level_dn == 0:
        # keep the simulated dark noise above 0 DN, as a real camera's offset does
        base = base.replace(black_level_dn=base.calibration_black_level_dn)
    if args.gain_db is not None:
        base = base.replace(gain_db=args.gain_db)
    return camera.apply_settings(base)


def _bench(stack: contextlib.ExitStack, args: argparse.Namespace, camera, plan):
    """The simulated bench for a simulated camera (closed with ``stack``), else a person who is
    told what to put in front of the camera."""
    from calibration.bench import PromptBench, SimBench
    from hw.sim import SimCamera

    if isinstance(camera, SimCamera):
        # a bench light that puts the flat target at about half the range
        return stack.enter_context(SimBench(
            camera, n_views=args.views, board=plan.board,
            ref_exposure_us=plan.flat_exposure_us or plan.exposure_us))
    return PromptBench(lambda text: input(f"\n{text}"))


def _run_wizard(camera, shutter, bench, plan, rig_info, out: Path, truth) -> int:
    """``--wizard``: the Qt calibration wizard on the open devices."""
    from blurvid_rig import gui
    from calibration.procedures.dmd_mapping import DmdProjector
    from hw.sim import SimCamera

    if not gui.has_display():
        raise RigError("No display for the wizard; run `blurvid-rig calibrate` without "
                       "--wizard to calibrate headless.")
    rc, saved = gui.run_calibration_wizard(
        camera, shutter, bench if isinstance(camera, SimCamera) else None, plan,
        rig_info=rig_info, out_path=out, truth=truth,
        projector=DmdProjector(shutter) if hasattr(shutter, "load_masks") else None)
    print(f"calibration -> {saved}" if saved else "The wizard closed without saving.")
    return rc


def _measure(args, camera, shutter, bench, base, plan, rig_info, out: Path):
    """Run the procedures headless with a progress bar; the calibration. When a step fails, the
    steps measured before it are kept in ``<out>.incomplete.h5`` and the error says so."""
    from tqdm import tqdm

    from calibration.procedures.base import Rig
    from calibration.procedures.base import run as run_procedure
    from calibration.procedures.dmd_mapping import DmdProjector
    from calibration.procedures.plan import calibrate_all

    projector = None
    if "dmd_mapping" in plan.steps:
        if not hasattr(shutter, "load_masks"):
            raise RigError("The dmd_mapping step needs the DMD as shutter (--shutter dmd).")
        projector = DmdProjector(shutter)
    rig = Rig(camera, shutter, bench, base=base)
    bar = tqdm(total=100, unit="%", desc="calibrate", file=sys.stderr, disable=args.quiet,
               bar_format="{percentage:3.0f}%|{bar}| {elapsed} {desc}", mininterval=0.5)

    def progress(p) -> None:
        bar.n = round(100 * p.fraction)
        bar.set_description_str(p.message[:60], refresh=False)
        bar.refresh()

    try:
        return run_procedure(calibrate_all(rig, plan, rig_info, projector), progress)
    except RigError as e:
        bar.close()
        partial = getattr(e, "partial", None)
        if partial is not None and partial.parts:
            kept = out.with_name(out.name.removesuffix(".h5") + ".incomplete.h5")
            kept.parent.mkdir(parents=True, exist_ok=True)
            partial.save(kept)
            raise RigError(f"{e} The steps measured before it ({', '.join(partial.parts)}) "
                           f"are kept in {kept}.") from e
        raise
    finally:
        bar.close()
