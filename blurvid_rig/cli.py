"""The ``blurvid-rig`` command line: capture, recon, info, code, demo.

Every subcommand works on a machine without hardware: the simulated rig is the default device.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import os
import sys
from pathlib import Path

from blurvid_rig.config import DEFAULT_CODE, DeviceSpec, RigConfig, load_config, open_devices
from hw.errors import RigError

log = logging.getLogger("blurvid_rig")


def _code_from_args(text: str, chip_us: float):
    from hw.types import ShutterCode
    from recon.codes import KNOWN_CODES, known_code

    if set(text) <= {"0", "1"}:
        return ShutterCode.parse(text, chip_us)
    bits = known_code(text)
    return ShutterCode(
        tuple(int(b) for b in bits), chip_us, name=text if text in KNOWN_CODES else text
    )


def _device_spec(args: argparse.Namespace, base: DeviceSpec | None = None) -> DeviceSpec:
    """``base`` (default: the default rig) with the device options given on the command line.

    The device options (``_add_device_args``) are named as the fields of :class:`DeviceSpec` and
    default to ``None``, which means "not given".
    """
    given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(DeviceSpec)}
    return (base or DeviceSpec()).override(**given)


def _capture_config(args: argparse.Namespace) -> RigConfig:
    """The rig of a capture: the ``--rig`` file (when given), with the options given on the
    command line on top (they win)."""
    base = load_config(args.rig) if args.rig else RigConfig()
    return base.override(devices=_device_spec(args, base.devices), bits=args.code,
                         chip_us=args.chip_us, folder=args.out, name=args.name)  # fmt: skip


def cmd_cameras(args: argparse.Namespace) -> int:
    from hw.genicam_camera import list_devices

    devices = list_devices(args.cti or None)
    if not devices:
        print("The GenTL producer(s) found no camera. Is it connected and powered?")
        return 1
    for d in devices:
        print(d)
    return 0


def cmd_ports(args: argparse.Namespace) -> int:
    from hw.serial_ports import identify, list_serial_ports

    ports = list_serial_ports()
    if not ports:
        print(
            "No serial ports found. Is the controller plugged in, and is your user in the "
            "'dialout' group?"
        )
        return 1
    for p in ports:
        ids = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "-"
        line = f"{p.device}  {ids}  {p.description}"
        if p.board_guess:
            line += f"  [{p.board_guess}]"
        if args.identify:
            info = identify(p.device, timeout_s=args.timeout)
            line += (
                f"  -> blurvid shutter firmware {info.firmware_version} (protocol "
                f"{info.protocol_version})"
                if info
                else "  -> not a blurvid shutter controller"
            )
        print(line)
    return 0


def cmd_capture(args: argparse.Namespace) -> int:
    from blurvid_rig.capture import run_coded_capture

    config = _capture_config(args)
    spec = config.devices
    code = _code_from_args(config.bits, config.chip_us)
    from recon.codes import invertibility_warning

    if (why := invertibility_warning(code.bits)) is not None and not args.masks:
        print(f"warning: {why}", file=sys.stderr)
    if args.sim and (spec.camera != "sim" or spec.shutter not in ("sim", "dmd")):
        raise RigError(
            "--sim means the simulated camera and shutter; leave it out when choosing --camera "
            f"{spec.camera} / --shutter {spec.shutter}."
        )
    calibration = _load_calibration(args.calibration)
    code, masks = _dmd_masks(args.masks, spec, code)
    with open_devices(spec) as (camera, shutter):
        if args.black_level is not None:
            camera.apply_settings(camera.settings.replace(black_level_dn=args.black_level))
        if calibration is not None:  # record with the settings the calibration was made for
            camera.apply_settings(calibration.applies_to.settings_for(camera.settings))
        with _capture_progress(args) as progress:
            result = run_coded_capture(
                camera,
                shutter,
                code,
                args.count,
                Path(config.folder),
                name=config.name,
                # the DMD's trigger out is a pulse: the camera times the whole code itself
                exposure_mode="Timed" if args.exposure_us or (
                    spec.shutter == "dmd" and spec.camera == "genicam") else "TriggerWidth",
                exposure_us=args.exposure_us or None,
                compression=None if args.compression == "none" else args.compression,
                on_gap="record" if args.tolerate_gaps else "error",
                trigger_source=spec.trigger_source,
                progress=progress,
                calibration=calibration,
                masks=masks,
                settings={
                    "cli_args": " ".join(sys.argv[1:]),
                    "sim_seed": spec.seed,
                    "shutter": spec.shutter,
                },
            )
    return _report_capture(result)


def _dmd_masks(text: str, spec: DeviceSpec, code):
    """``(code, masks)`` of ``capture --masks``: each pixel its own code on the DMD (one open chip
    per mask); without ``--masks``, ``(code, None)``."""
    if not text:
        return code, None
    if spec.shutter != "dmd":
        raise RigError("--masks codes each pixel on a DMD: add --shutter dmd.")
    from hw.sim.dmd import parse_masks_spec

    masks = parse_masks_spec(text, (spec.height, spec.width))
    return type(code)((1,) * len(masks), code.chip_us, name=f"dmd {text}"), masks


@contextlib.contextmanager
def _capture_progress(args: argparse.Namespace):
    """A progress bar of ``capture`` (closed at the end of the block) and the callback that
    moves it."""
    from tqdm import tqdm

    bar = tqdm(total=args.count, unit="frame", desc="capture", file=sys.stderr,
               disable=args.quiet)  # fmt: skip
    shown: list[tuple[int, int, int]] = []

    def progress(stats) -> None:
        key = (stats.written, stats.acquired, stats.frame_id_gaps)
        if shown and shown[-1] == key:
            return  # the writer reports the same state again at each flush
        shown.append(key)
        bar.n = stats.written
        bar.set_postfix(acquired=stats.acquired, gaps=stats.frame_id_gaps, refresh=False)
        if stats.written < args.count:
            bar.refresh()  # the last state is drawn once, by close()

    try:
        yield progress
    finally:
        bar.close()


def _report_capture(result) -> int:
    """Print what a capture wrote; the exit code (1 when it ended early or lost frames)."""
    print(
        f"{result.status}: {result.stats.written} frames in {result.elapsed_s:.2f} s "
        f"({result.stats.written / max(result.elapsed_s, 1e-9):.1f} frames/s), "
        f"{result.stats.trigger_gaps} triggers without a frame, "
        f"{result.stats.frame_id_gaps} camera frame-id gaps -> {result.path}"
    )
    lost = result.stats.trigger_gaps + result.stats.frame_id_gaps
    if lost:
        print(f"warning: {lost} frames were lost; the frame log shows where.", file=sys.stderr)
    return 0 if result.status == "complete" and not lost else 1


def _load_calibration(path: str):
    if not path:
        return None
    from calibration.model import Calibration

    return Calibration.load(Path(path))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from blurvid_rig import calibrate_cmd

    return calibrate_cmd.run(args, _device_spec(args))


def cmd_recon(args: argparse.Namespace) -> int:
    from blurvid_rig.batch import collect_captures, reconstruct_files

    if args.no_calibration and args.calibration:
        raise RigError("--calibration and --no-calibration contradict each other; pick one.")

    files, notes = collect_captures(args.files)
    for note in notes:
        print(note, file=sys.stderr)
    if not files:
        print("No capture files to reconstruct; give capture files (.h5), folders of them or "
              "glob patterns.", file=sys.stderr)
        return 1
    outcomes = reconstruct_files(
        files,
        method=args.method,
        n_out=args.frames,
        out_dir=Path(args.out) if args.out else None,
        exports=tuple(args.export or ()),
        device=args.device,
        overwrite=args.overwrite,
        max_blur_px=args.max_blur_px,
        model=args.model,
        force=args.force,
        show_progress=not args.quiet,
        calibration=_load_calibration(args.calibration),
        use_calibration=(
            "none" if args.no_calibration else "sensor" if args.no_effective_code else "auto"
        ),
        velocity=tuple(args.velocity) if args.velocity else None,
        calibration_max_age_days=args.calibration_max_age,
        per_pixel_solver=args.per_pixel_solver,
        motion=args.motion,
        float32=args.float32,
        solver=args.solver,
    )
    failed = [o for o in outcomes if o.error]
    for o in outcomes:
        if not o.error:
            extra = "".join(f"\n    {p}" for p in o.exports)
            print(f"ok    {o.source} -> {o.output} ({o.n_frames} frames, {o.seconds:.1f} s){extra}")
            for w in o.warnings:
                print(f"  warning: {w}", file=sys.stderr)
    for o in failed:
        print(f"FAILED {o.source}: {o.error}", file=sys.stderr)
    damaged = [o for o in outcomes if o.warnings and not o.error]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} files reconstructed"
          + (f"; {len(damaged)} of them with damaged frames skipped (see the warnings)."
             if damaged else "."))
    return 1 if failed or damaged else 0


def cmd_train(args: argparse.Namespace) -> int:
    from recon.train import train
    from recon.train_args import TrainConfig

    train(TrainConfig.from_args(args))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from blurvid_rig.files.describe import describe_file
    from blurvid_rig.files.h5io import CaptureFormatError

    rc = 0
    for p in args.files:
        try:
            print(describe_file(Path(p)))
            if args.verify:
                rc |= _verify_frames(Path(p))
        except (CaptureFormatError, OSError) as e:
            print(f"{p}: {e}", file=sys.stderr)
            rc = 1
        print()
    return rc


def _verify_frames(path: Path) -> int:
    """Read every frame of a capture (``info --verify``); 1 when any is damaged."""
    from blurvid_rig.batch import file_kind
    from blurvid_rig.files.capture import CaptureFile
    from blurvid_rig.files.h5io import H5_READ_ERRORS
    from blurvid_rig.files.reconstruction import ReconFile

    if file_kind(path) == "reconstruction":
        with ReconFile.open(path) as r:
            n = len(r)
            bad = []
            for i in range(n):
                try:
                    r.read_video(i)
                except H5_READ_ERRORS as e:
                    bad.append((i, str(e)))
    else:
        with CaptureFile.open(path) as c:
            n = c.n_frames
            bad = c.verify()
    if not bad:
        print(f"  verify: all {n} frames read back whole")
        return 0
    print(f"  verify: {len(bad)} of {n} frames cannot be read (damaged data): "
          + ", ".join(str(i) for i, _ in bad))
    for i, why in bad[:5]:
        print(f"    frame {i}: {why}")
    return 1


def cmd_code(args: argparse.Namespace) -> int:
    from recon.codes import describe_code, search_codes

    if args.search:
        for bits, m in search_codes(args.search, objective=args.objective, top=args.top):
            print(
                f"{''.join(map(str, bits))}  min|DFT|={m.min_dft:.4f}  "
                f"noise x{m.noise_amplification:.2f}  asym={m.reversal_asymmetry:.2f}"
            )
        return 0
    code = _code_from_args(args.code, 1000.0)
    print(describe_code(code.bits))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from blurvid_rig.demo import run_demo

    run_demo(Path(args.out), n_frames=args.count, size=args.size, seed=args.seed, quiet=args.quiet)
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    from blurvid_rig import gui

    if not gui.has_display():
        print(gui.NO_DISPLAY_MESSAGE)
        if args.fallback_demo:
            print(f"Running the demo into {args.fallback_demo} instead.")
            from blurvid_rig.demo import run_demo

            run_demo(Path(args.fallback_demo), quiet=args.quiet)
        return 0
    return gui.run(sim_size=args.sim_size, out_dir=args.out, autoconnect=not args.no_connect,
                   quit_after_s=args.quit_after)  # fmt: skip


def _add_device_args(c: argparse.ArgumentParser) -> None:
    """The options that choose the camera and the shutter controller (capture, calibrate).

    Each is named as a field of :class:`DeviceSpec` and defaults to ``None`` (not given): the
    spec's default, or the rig file's value, holds (:func:`_device_spec`).
    """
    c.add_argument(
        "--sim",
        action="store_true",
        help="use the simulated rig (the default when --camera and --shutter are not given)",
    )
    c.add_argument(
        "--camera",
        choices=["sim", "genicam"],
        default=None,
        help="the simulated camera (default) or a GenICam camera through a GenTL producer",
    )
    c.add_argument(
        "--cti",
        default=None,
        help="GenTL producer(s) for --camera genicam: a .cti file or a folder (default: the "
        "GENICAM_GENTL64_PATH environment variable)",
    )
    c.add_argument("--serial", default=None, help="serial number of the GenICam camera")
    c.add_argument("--index", type=int, default=None, help="index of the GenICam camera (0..)")
    c.add_argument(
        "--trigger-source",
        default=None,
        help="camera input wired to the controller's CAM_TRIG (default Line1); 'Software' only "
        "for camera simulators: the host then triggers the camera, unsynchronised with the code",
    )
    c.add_argument("--width", type=int, default=None, help="width of the simulated camera")
    c.add_argument("--height", type=int, default=None, help="height of the simulated camera")
    c.add_argument("--seed", type=int, default=None, help="seed of the simulated scene and noise")
    c.add_argument(
        "--shutter",
        choices=["sim", "arduino", "simavr", "dmd"],
        default=None,
        help="shutter controller: the simulated one (default), the Arduino on --port, the real "
        "firmware running in simavr (needs `make -C firmware all sim`), or a simulated DMD "
        "(the code on the whole frame, or each pixel its own code with --masks)",
    )
    c.add_argument("--port", default=None, help="serial port of the Arduino controller")
    c.add_argument("--firmware", default=None, help="firmware .elf for --shutter simavr")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="blurvid-rig",
        description="Coded-exposure (flutter shutter) rig: capture, reconstruct, inspect.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for reconstruction (default: all cores but one; OMP_NUM_THREADS wins)",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _capture_parser(sub.add_parser("capture", help="record coded frames into an HDF5 capture file"))
    _cameras_parser(sub.add_parser(
        "cameras", help="list the GenICam cameras the GenTL producers see"))
    _ports_parser(sub.add_parser(
        "ports", help="list serial ports; --identify finds shutter controllers"))
    _recon_parser(sub.add_parser("recon", help="reconstruct videos from capture files (batch)"))
    _calibrate_parser(sub.add_parser(
        "calibrate",
        help="measure dark, flat, photon transfer, shutter timing and lens geometry (headless; "
        "--sim on the simulated rig)",
    ))
    _train_parser(sub.add_parser(
        "train", help="train a learned reconstruction model (recon/train.py)"))
    _info_parser(sub.add_parser("info", help="human summary of capture or reconstruction files"))
    _code_parser(sub.add_parser(
        "code", help="describe an exposure code, or search for good codes"))
    _gui_parser(sub.add_parser("gui", help="the rig window: live view, code designer, capture"))
    _demo_parser(sub.add_parser(
        "demo", help="end to end on the simulated rig: capture, reconstruct, export"))
    return p


def _capture_parser(c: argparse.ArgumentParser) -> None:
    """``capture``: the device options, then the code, the recording and the files. The options
    a rig file may also set default to ``None`` ("not given": the file's value, else the
    default config's)."""
    _add_device_args(c)
    c.add_argument(
        "--code",
        default=None,
        help=f"code bits like 11100101, or a known name (bdinr8, raskar52, box8); default "
        f"{DEFAULT_CODE}",
    )
    c.add_argument("--chip-us", type=float, default=None,
                   help="chip duration in microseconds (default 1000)")
    c.add_argument(
        "--exposure-us",
        type=float,
        default=0.0,
        help="use a timed camera exposure of this length (must cover the code period); "
        "default: TriggerWidth exposure, held by the shutter controller for exactly the code",
    )
    c.add_argument("--count", type=positive_int, default=10, help="number of frames")
    c.add_argument("--out", default=None, help="output folder (default captures)")
    c.add_argument("--name", default=None, help="name part of the file name (default capture)")
    c.add_argument("--compression", choices=["lz4", "gzip", "none"], default="lz4")
    c.add_argument(
        "--tolerate-gaps",
        action="store_true",
        help="count a lost frame, fire once more and go on (gaps stay visible in the file); "
        "default: a lost frame ends the capture with the reason in the file",
    )
    c.add_argument(
        "--rig",
        default="",
        help="rig file (TOML; a profile saved by the rig window) with [camera] "
        "type/cti/serial/index/trigger_source, [shutter] type/port/firmware, [code] bits/chip_us, "
        "[capture] folder/name and [sim] width/height/seed; command-line options win",
    )
    c.add_argument(
        "--calibration",
        default="",
        help="calibration file (from `blurvid-rig calibrate`) to embed into the capture; it "
        "must fit the camera settings",
    )
    c.add_argument("--black-level", type=float, default=None,
                   help="camera black level in DN (default: as the camera holds it)")
    c.add_argument(
        "--masks",
        default="",
        help="per-pixel coding on the DMD (--shutter dmd): random:K or random:K:SEED, K patterns "
        "of --chip-us each (default: the DMD plays --code on the whole frame)",
    )
    c.set_defaults(func=cmd_capture)


def _cameras_parser(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--cti",
        default="",
        help="a .cti file or folder (default: the GENICAM_GENTL64_PATH environment variable)",
    )
    c.set_defaults(func=cmd_cameras)


def _ports_parser(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--identify",
        action="store_true",
        help="open each port and wait for the controller's banner (resets an Arduino)",
    )
    c.add_argument("--timeout", type=float, default=4.0, help="seconds to wait per port")
    c.set_defaults(func=cmd_ports)


def _recon_parser(c: argparse.ArgumentParser) -> None:
    """``recon``: files, method and outputs here; calibration and solver options in
    :func:`_recon_calibration_args`."""
    c.add_argument("files", nargs="+",
                   help="capture files (.h5), folders of captures or glob patterns; "
                   "reconstruction files (.recon.h5) among them are skipped")
    c.add_argument(
        "--method",
        choices=["auto", "learned", "classical"],
        default="auto",
        help="learned (the shipped model; refused for a code outside its family), classical "
        "(coded deconvolution), or auto (learned when the model accepts the code, else "
        "classical; the default)",
    )
    c.add_argument("--model", default="tiny", help="shipped model name or model card path")
    c.add_argument(
        "--force", action="store_true", help="use the learned model even outside its code family"
    )
    c.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames to recover per capture (default: one per chip)",
    )
    c.add_argument("--out", default=None, help="output folder (default: beside each capture)")
    c.add_argument(
        "--export",
        nargs="*",
        choices=["mp4", "gif", "png"],
        default=None,
        help="also write the whole high-speed video (mp4, gif: every coded frame's recovered "
        "frames in time order) and a contact sheet of the first coded frames (png)",
    )
    c.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    c.add_argument(
        "--max-blur-px",
        type=float,
        default=48.0,
        help="longest motion blur (px over the exposure) the motion estimate considers (the "
        "shipped motion model was trained up to 48)",
    )
    c.add_argument(
        "--motion",
        choices=["auto", "learned", "spectral"],
        default="auto",
        help="motion estimate of the classical method: learned (the shipped motion model: a "
        "velocity field, each distinct motion deconvolved on its own), spectral (one global "
        "velocity from the spectral search), or auto (the default: learned when the model ships, "
        "and a frame the model is unsure of, unless it agrees with the frame before, is "
        "reconstructed as still: denoised, never worse than the coded frame)",
    )
    c.add_argument(
        "--solver",
        choices=["auto", "tv", "wiener", "refined"],
        default="auto",
        help="deconvolution of the classical method for global codes: tv, wiener, refined "
        "(closed-form Wiener and the shipped learned refiner), or auto (the default: "
        "recon.solvers.default_global_solver)",
    )
    c.add_argument("--overwrite", action="store_true", help="replace existing .recon.h5 files")
    c.add_argument("--float32", action="store_true",
                   help="store the video as float32 (about 4x larger) instead of the compact "
                   "uint16 with a scale (steps of 1/44000 of full scale, -0.25..1.25 x full "
                   "scale)")
    _recon_calibration_args(c)
    c.set_defaults(func=cmd_recon)


def _recon_calibration_args(c: argparse.ArgumentParser) -> None:
    """``recon``'s options for the calibration, a known motion and per-pixel captures."""
    c.add_argument(
        "--calibration",
        default="",
        help="apply this calibration file instead of the one embedded in each capture",
    )
    c.add_argument(
        "--no-calibration",
        action="store_true",
        help="apply no calibration: subtract the black level, use the nominal code",
    )
    c.add_argument(
        "--no-effective-code",
        action="store_true",
        help="apply dark and flat but use the nominal code instead of the measured one",
    )
    c.add_argument(
        "--calibration-max-age",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="warn (in the log and the reconstruction file) when the calibration is older",
    )
    c.add_argument(
        "--velocity",
        type=float,
        nargs=2,
        metavar=("DX", "DY"),
        help="known motion in pixels per exposure (classical method); default: estimated per frame",
    )
    c.add_argument(
        "--per-pixel-solver",
        choices=["gap-tv", "admm-tv"],
        default="gap-tv",
        help="solver for captures coded per pixel (DMD masks): gap-tv (default) or admm-tv "
        "(within about 0.5 dB of it; ahead on noisy frames of sprite scenes)",
    )


def _calibrate_parser(c: argparse.ArgumentParser) -> None:
    _add_device_args(c)
    from blurvid_rig.calibrate_cmd import add_arguments as add_calibrate_arguments

    add_calibrate_arguments(c)
    c.set_defaults(func=cmd_calibrate, width=512, height=384)


def _train_parser(c: argparse.ArgumentParser) -> None:
    from recon.train_args import add_arguments as add_train_arguments

    add_train_arguments(c)
    c.set_defaults(func=cmd_train)


def _info_parser(c: argparse.ArgumentParser) -> None:
    c.add_argument("files", nargs="+")
    c.add_argument("--verify", action="store_true",
                   help="also read every frame and list the damaged ones (exit code 1 if any)")
    c.set_defaults(func=cmd_info)


def _code_parser(c: argparse.ArgumentParser) -> None:
    c.add_argument("code", nargs="?", default="bdinr8")
    c.add_argument("--search", type=int, metavar="N_CHIPS", help="search codes of this length")
    c.add_argument(
        "--objective", default="min_dft", choices=["min_dft", "noise_amplification", "flatness"]
    )
    c.add_argument("--top", type=int, default=5)
    c.set_defaults(func=cmd_code)


def _gui_parser(c: argparse.ArgumentParser) -> None:
    c.add_argument("--sim-size", type=int, default=512, help="sensor size of the simulated rig")
    c.add_argument("--out", default="captures", help="default folder of capture files")
    c.add_argument("--no-connect", action="store_true",
                   help="do not connect the simulated rig and start live view at once")
    c.add_argument("--quit-after", type=float, default=0.0, help=argparse.SUPPRESS)
    c.add_argument("--fallback-demo", default="", metavar="OUT",
                   help="without a display, run `blurvid-rig demo --out OUT` instead")
    c.set_defaults(func=cmd_gui)


def _demo_parser(c: argparse.ArgumentParser) -> None:
    c.add_argument("--out", default="out/demo", help="output folder")
    c.add_argument("--count", type=positive_int, default=3, help="coded frames to capture")
    c.add_argument("--size", type=int, default=256, help="frame width and height in pixels")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=cmd_demo)


def _default_threads() -> int:
    # Leave one core free for acquisition and display; on small machines OpenMP threads that spin
    # while another process holds the other core slow reconstruction down many times over.
    return max(1, (os.cpu_count() or 2) - 1)


_ERRNO_SENTENCES = {
    errno.ENOENT: "cannot be found or created; check the path",
    errno.ENOTDIR: "cannot be a folder: a part of this path is a file",
    errno.EISDIR: "is a folder where a file was expected",
    errno.EACCES: "cannot be used: permission denied (check who may read or write it)",
    errno.EPERM: "cannot be used: operation not permitted (check who may read or write it)",
    errno.EROFS: "is on a read-only file system; choose another folder",
    errno.ENOSPC: "cannot be written: the disk is full",
    errno.EEXIST: "already exists",
}


def os_error_sentence(e: OSError) -> str:
    """One sentence naming the path and the problem, instead of ``[Errno N] ...``."""
    if e.filename is None or e.errno not in _ERRNO_SENTENCES:
        return str(e)
    return f"{e.filename} {_ERRNO_SENTENCES[e.errno]}."


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (the message names the option the user typed)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # before torch is imported (the subcommands import it lazily); an explicit environment wins
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads or _default_threads()))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (RigError, ValueError, OSError) as e:  # bad input, device or disk: a sentence
        if args.verbose:
            raise
        print(f"error: {os_error_sentence(e) if isinstance(e, OSError) else e}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; files written so far are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
