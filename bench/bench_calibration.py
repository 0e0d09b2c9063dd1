"""Does calibration pay off? Reconstruction with and without the measured calibration.

On the simulated rig with a leaky, slow, late LC shutter (2 % leakage, 30 us latency, 50 us rise,
40 us fall), vignetting, PRNU and hot pixels, for several chip durations:

1. calibrate (dark, flat, shutter timing) with the procedures, as ``blurvid-rig calibrate`` does;
2. record coded frames of a panning scene with that calibration embedded (``run_coded_capture``);
3. reconstruct each capture twice with ``reconstruct_capture`` (the batch path): with the
   calibration (dark + flat + effective code) and without it (black level, nominal code);
   and with dark + flat only (the nominal code), to separate the effective code's share;
4. compare with the simulator's ground truth: the chip-averaged scene as a camera with a uniform
   response (the sensor's mean response, no vignetting or PRNU) would record it; PSNR in dB,
   with the velocity known, and estimated per frame (the default of ``blurvid-rig recon``).

    python bench/bench_calibration.py [--size 256] [--frames 4] [--chips 100 250 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from blurvid_rig.batch import reconstruct_capture  # noqa: E402
from blurvid_rig.capture import run_coded_capture  # noqa: E402
from blurvid_rig.files.reconstruction import ReconFile  # noqa: E402
from calibration.bench import SimBench  # noqa: E402
from calibration.procedures.base import Rig, run  # noqa: E402
from calibration.procedures.plan import Plan, calibrate_all  # noqa: E402
from hw.optics import ShutterOptics  # noqa: E402
from hw.sim import SimScene, SimSensor, make_sim_rig  # noqa: E402
from hw.types import ShutterCode  # noqa: E402

OPTICS = ShutterOptics(leakage=0.02, latency_us=30.0, rise_us=50.0, fall_us=40.0)
SENSOR = SimSensor(vignetting=0.25, prnu=0.01, hot_pixel_fraction=0.0005, dsnu_e=2.0)
CODE = "11100101"


def psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 10 * np.log10(peak**2 / max(mse, 1e-12))


def one(chip_us: float, size: int, n_frames: int, blur_px: float, out: Path) -> dict:
    code = ShutterCode.parse(CODE, chip_us)
    period_s = code.period_us * 1e-6
    texture = SimScene.default(size, size, seed=5).render(0.0)
    scene = SimScene.translating(texture, (blur_px / period_s, 0.3 * blur_px / period_s),
                                 border="reflect")
    cam, sh = make_sim_rig(size, size, seed=7, scene=scene, shutter_kw={"optics": OPTICS},
                           history_frames=64, sensor=SENSOR)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(exposure_us=code.period_us, black_level_dn=64.0))
        t0 = time.perf_counter()
        # the light level of the bench: half the range after 5 ms of open shutter
        with SimBench(cam, level=0.8, ref_exposure_us=5000.0) as bench:
            plan = Plan(exposure_us=code.period_us, steps=("dark", "flat", "shutter_timing"),
                        flat_exposure_us=3000.0,
                        timing_chip_us=1000.0, check_chip_us=(chip_us,))
            cal = run(calibrate_all(Rig(cam, sh, bench), plan))
        t_cal = time.perf_counter() - t0
        res = run_coded_capture(cam, sh, code, n_frames, out, name=f"chip{chip_us:g}",
                                calibration=cal)
        truths = [cam.ground_truth(fid) for fid in res.frame_ids]
    peak = float(cam.full_scale_dn())
    mean_response = float(np.mean(cam.vignetting_map()))
    scores = {}
    true_v = (blur_px, 0.3 * blur_px)
    for label, use, v in (
        ("calibrated", "auto", true_v), ("sensor", "sensor", true_v), ("nominal", "none", true_v),
        ("calibrated-est", "auto", None), ("nominal-est", "none", None),
    ):
        o = reconstruct_capture(res.path, n_out=code.n_chips, use_calibration=use,
                                out_dir=out / label, overwrite=True, velocity=v)
        with ReconFile.open(o.output) as rf:
            video = np.asarray(rf.video)
        scores[label] = float(np.mean([
            psnr(video[i, k], t.chip_frames[k] * mean_response, peak)
            for i, t in enumerate(truths) for k in range(code.n_chips)
        ]))
    t = cal.shutter_timing
    return {
        "chip_us": chip_us, "calibrated": scores["calibrated"], "nominal": scores["nominal"],
        "gain": scores["calibrated"] - scores["nominal"], "cal_s": t_cal,
        "calibrated_est": scores["calibrated-est"], "nominal_est": scores["nominal-est"],
        "sensor": scores["sensor"],
        "latency": t.latency_us, "rise": t.rise_us, "leak": t.leakage,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--blur", type=float, default=16.0, help="blur length per exposure (px)")
    ap.add_argument("--chips", type=float, nargs="+", default=[100.0, 250.0, 1000.0])
    a = ap.parse_args()
    print(f"code {CODE}, {a.size}x{a.size}, {a.frames} frames per chip duration, "
          f"blur {a.blur:g} px, shutter {OPTICS}")
    print("PSNR (dB) against the simulator's ground truth; velocity known / estimated per frame")
    print("        velocity known                           | velocity estimated")
    print("chip_us  calibrated  dark+flat  none   gain (code) | calibrated  none   gain  | "
          "measured latency, rise, leakage; calibration time")
    with tempfile.TemporaryDirectory() as d:
        for c in a.chips:
            r = one(c, a.size, a.frames, a.blur, Path(d) / f"c{c:g}")
            ge = r["calibrated_est"] - r["nominal_est"]
            gc = r["calibrated"] - r["sensor"]
            print(f"{r['chip_us']:7.0f}  {r['calibrated']:10.2f}  {r['sensor']:9.2f}  "
                  f"{r['nominal']:5.2f}  {r['gain']:+5.2f} ({gc:+5.2f}) | "
                  f"{r['calibrated_est']:10.2f}  {r['nominal_est']:5.2f}  "
                  f"{ge:+5.2f} | {r['latency']:.1f} us, {r['rise']:.1f} us, "
                  f"{100 * r['leak']:.2f} %; {r['cal_s']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
