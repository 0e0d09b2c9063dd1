"""Capture-to-HDF5 throughput of the simulated rig at 1024x1024 uint16.

Prints frames/s, MB/s and lost frames for: rendering only (the simulated camera without a
file), and the full capture path (acquisition thread -> bounded queue -> writer thread -> HDF5)
with and without compression, measured side by side in one run so the ratios are meaningful on a
shared machine.

    .venv/bin/python bench/bench_capture.py [--frames 40] [--size 1024]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from blurvid_rig.capture import run_coded_capture
from blurvid_rig.session import coded_capture_settings
from hw.sim import make_sim_rig
from hw.types import ShutterCode


def render_only(size: int, n: int, code: ShutterCode) -> float:
    cam, sh = make_sim_rig(width=size, height=size, seed=1)
    with cam, sh:
        cam.apply_settings(
            coded_capture_settings(cam.settings, code).replace(pixel_format="Mono16")
        )
        sh.load_code(code)
        sh.arm()
        cam.start()
        t0 = time.perf_counter()
        for _ in range(n):
            sh.fire()
            cam.fetch(timeout_s=10.0)
        return time.perf_counter() - t0


def full_capture(size: int, n: int, code: ShutterCode, compression: str | None, out: Path):
    cam, sh = make_sim_rig(width=size, height=size, seed=1)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(pixel_format="Mono16"))
        res = run_coded_capture(
            cam, sh, code, n, out, name=f"bench_{compression}", compression=compression
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--code", default="11100101")
    args = ap.parse_args()
    code = ShutterCode.parse(args.code, 1000.0)
    mb = args.size * args.size * 2 / 1e6
    print(
        f"simulated rig, {args.size}x{args.size} uint16 ({mb:.2f} MB/frame), code {code}, "
        f"{args.frames} frames"
    )
    t = render_only(args.size, args.frames, code)
    base = args.frames / t
    print(f"{'render only (no file)':32s} {base:7.1f} frames/s {base * mb:7.1f} MB/s")
    with tempfile.TemporaryDirectory() as d:
        for comp in (None, "lz4", "gzip"):
            r = full_capture(args.size, args.frames, code, comp, Path(d))
            fps = r.stats.written / r.elapsed_s
            size_mb = r.path.stat().st_size / 1e6
            lost = r.stats.trigger_gaps + r.stats.frame_id_gaps
            print(
                f"{'capture -> HDF5, ' + str(comp):32s} {fps:7.1f} frames/s {fps * mb:7.1f} MB/s  "
                f"x{fps / base:.2f} of render-only  lost={lost}  "
                f"written={r.stats.written}/{args.frames}  file={size_mb:.1f} MB "
                f"(ratio {args.frames * mb / size_mb:.2f})  "
                f"queue high-water={r.stats.queue_high_water}"
            )


if __name__ == "__main__":
    main()
