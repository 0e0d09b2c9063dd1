"""Judge motion estimation and the classical reconstruction it feeds, per stratum, side by side.

    python -m recon.evaluate_motion --n 4 --out docs/motion_results.md

Scenes: the *test* photos and dead leaves (never seen in training), 256x256, in the strata of
:mod:`recon.motion_data` (pans 4-40 px per exposure with and without acceleration, one and
several objects over a still background, a turning and zooming object, still scenes), for the
8-chip code ``11100101`` and the 16-chip ``1100111100000101``, at two noise levels (Gaussian,
0.002 and 0.01 of full scale), sub-steps 4. Ground truth: each chip's average view.

Rows, all on the same frames:

- **B0**: the coded frame repeated (doing nothing);
- **spectral**: ``classical-tv`` with the spectral velocity search (the path before the learned
  motion model);
- **learned**: ``classical-tv`` with the learned motion field (layers);
- **learned-global**: ``classical-tv`` with the learned global velocity only;
- **auto**: ``classical-tv`` with ``motion="auto"``, the default: the learned field, and on
  frames where the learned frame read-out is unsure (probability below
  ``recon.solvers.FALLBACK_BELOW``) ``recon.solvers.FALLBACK``: no motion, or the spectral
  search's velocity for the background;
- **refined**: ``refined`` (:mod:`recon.refiner`) with ``motion="auto"``: the same motion, then
  closed-form Wiener and the non-blind refiner instead of TV (when a refiner ships);
- **wiener-true**: ``classical-wiener`` with the true velocity of the background (for pans, the
  true motion; for objects over a still background, zero);
- **refined-true**: ``refined`` with the true velocity of the background.

Motion: end-point error of the global velocity against the background's (pans), sign flips
(estimate pointing more than 90 degrees away from a true motion of at least 8 px), and for scenes
with objects the error on the tiles the objects cover (the learned field; the spectral search has
only its global velocity there). Seconds per frame for each. Writes a markdown report and a plot.

``--tune-fallback`` chooses ``FALLBACK`` and ``FALLBACK_BELOW`` on the *val* photos (never the test
ones): for each threshold, the mean PSNR of taking the spectral row (or the still row: no motion)
where the learned probability is below it and the learned row elsewhere (written to
``docs/motion_fallback.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from recon.metrics import psnr
from recon.motion_data import STRATA, stratum_scene, tile_targets, velocity_map
from recon.operators import CodedExposure
from recon.photos import default_photos, preload_dead_leaves
from recon.refiner import shipped_refiner
from recon.scene_batches import coded_batch
from recon.scenes import SceneSampler
from recon.solvers import ClassicalGlobal, equal_times, same_motion

CODES = ("11100101", "1100111100000101")
NOISE = (0.002, 0.01)
SUB_STEPS = 4
SEED = 0x7E57


@dataclass
class Sample:
    """Scores of one frame."""

    stratum: str
    code: str
    sigma: float
    motion_px: float
    psnr: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    epe: dict[str, float] = field(default_factory=dict)
    flip: dict[str, bool] = field(default_factory=dict)
    object_epe: dict[str, float] = field(default_factory=dict)
    confidence: float = math.nan
    velocity: dict[str, list[float]] = field(default_factory=dict)


def _video_psnr(pred: Tensor, gt: Tensor) -> float:
    return float(torch.stack([psnr(pred[i].clamp(0, 1), gt[i], data_range=1.0)
                              for i in range(gt.shape[0])]).mean())


def _object_tiles(scene: Any, tile_px: int) -> tuple[Tensor, Tensor]:
    """True per-tile velocity and the mask of tiles covered by moving objects (pure tiles)."""
    m, uniform = tile_targets(velocity_map(scene), 1, tile_px)
    bg = torch.tensor(scene.layers[0].velocity_px).view(2, 1, 1)
    return m, ((m - bg).norm(dim=0) > 2.0) & (uniform > math.exp(-1.0))


def evaluate(n: int, size: int = 256, strata: tuple[str, ...] = STRATA,
             codes: tuple[str, ...] = CODES, noise: tuple[float, ...] = NOISE,
             progress: bool = True, split: str = "test", photos: Any = None,
             dead_leaves_fraction: float = 0.3, label: str = "",
             with_auto: bool = True, only: tuple[str, ...] | None = None) -> list[Sample]:
    """Run every row on ``n`` scenes per (stratum, code, noise level); strata are named
    ``label + stratum``; ``with_auto=False`` leaves out the ``auto`` row (for tuning it);
    ``only`` runs those rows alone (B0 always)."""
    photos = default_photos() if photos is None else photos
    preload_dead_leaves(split)
    sampler = SceneSampler(photos, size, split=split, max_motion_px=48.0,
                           dead_leaves_fraction=dead_leaves_fraction)
    rows, refined = _solver_rows(with_auto, only)
    true_rows = {r for r in ("wiener-true", "refined-true") if only is None or r in only}
    out = []
    total = len(strata) * len(codes) * len(noise) * n
    done = 0
    for code in codes:
        phys = CodedExposure.from_capture(code, chip_us=None, sub_steps=1)
        times = equal_times(len(code))
        for stratum in strata:
            for sigma in noise:
                for i in range(n):
                    scene = stratum_scene(sampler, stratum, SEED, i, (4.0, 40.0))
                    b = coded_batch([scene], code, sub_steps=SUB_STEPS, sigma=sigma,
                                    noise_seed=SEED + i)
                    y, gt = b.y[0, 0], b.chips[0]
                    smp = Sample(label + stratum, code, sigma, scene.motion_px)
                    smp.psnr["B0"] = _video_psnr(y.expand_as(gt), gt)
                    bg = scene.layers[0].velocity_px
                    if "wiener-true" in true_rows:
                        _run_row(smp, "wiener-true", ClassicalGlobal("wiener", velocity=bg), y,
                                 phys, times, gt)
                    if refined is not None and "refined-true" in true_rows:
                        _run_row(smp, "refined-true", ClassicalGlobal("refined", velocity=bg), y,
                                 phys, times, gt)
                    for name, solver in rows:
                        rec = _run_row(smp, name, solver, y, phys, times, gt)
                        if name == "learned":
                            smp.confidence = float(rec.diagnostics.get("motion_confidence",
                                                                       math.nan))
                        if name not in ("learned-global", "still"):
                            _score_motion(smp, name, rec, scene, stratum)
                    out.append(smp)
                    done += 1
                    if progress:
                        print(f"[{done}/{total}] {code} {stratum} sigma={sigma:g} "
                              f"motion={scene.motion_px:.1f}: " + ", ".join(
                                  f"{k} {v:.2f}" for k, v in smp.psnr.items())
                              + " | epe " + ", ".join(f"{k} {v:.1f}" for k, v in smp.epe.items()),
                              file=sys.stderr, flush=True)
    return out


def _solver_rows(with_auto: bool, only: tuple[str, ...] | None
                 ) -> tuple[list[tuple[str, ClassicalGlobal]], ClassicalGlobal | None]:
    """The rows of :func:`evaluate` (name, solver) kept by ``only``, and the refined solver when
    the refiner ships and ``auto`` is evaluated (else None)."""
    learned = ClassicalGlobal("tv", motion="learned", max_px=48.0)
    learned_g = ClassicalGlobal("tv", motion="learned", max_px=48.0, layers=False)
    spectral = ClassicalGlobal("tv", motion="spectral", max_px=48.0)
    rows = [("spectral", spectral), ("learned", learned), ("learned-global", learned_g)]
    if with_auto:
        rows.append(("auto", ClassicalGlobal("tv", motion="auto", max_px=48.0)))
    else:  # tuning: what the "still" fallback gives (no motion, TV denoising only)
        rows.append(("still", ClassicalGlobal("tv", velocity=(0.0, 0.0))))
    refined = None
    if with_auto and shipped_refiner() is not None:
        refined = ClassicalGlobal("refined", motion="auto", max_px=48.0)
        rows.append(("refined", refined))
    return [r for r in rows if only is None or r[0] in only], refined


def _run_row(smp: Sample, name: str, solver: ClassicalGlobal, y: Tensor, phys: CodedExposure,
             times: Tensor, gt: Tensor) -> Any:
    """Reconstruct with one row's solver; record its time and PSNR in ``smp``; return the
    reconstruction."""
    t0 = time.perf_counter()
    rec = solver.reconstruct(y, phys, times)
    smp.seconds[name] = time.perf_counter() - t0
    smp.psnr[name] = _video_psnr(rec.frames, gt)
    return rec


def _score_motion(smp: Sample, name: str, rec: Any, scene: Any, stratum: str) -> None:
    """Record the motion errors of one row in ``smp``: end-point error of the background
    velocity, a flipped direction (motion of 8 px or more) and, with moving objects, the median
    end-point error over their tiles."""
    bg = scene.layers[0].velocity_px
    v = rec.velocity or (0.0, 0.0)
    smp.velocity[name] = [float(v[0]), float(v[1])]
    smp.epe[name] = math.hypot(v[0] - bg[0], v[1] - bg[1])
    if math.hypot(*bg) >= 8.0:
        smp.flip[name] = (v[0] * bg[0] + v[1] * bg[1]) < 0
    if stratum in ("object", "objects", "nonrigid"):
        tile = rec.motion_tile_px or 32
        m, moving = _object_tiles(scene, tile)
        if bool(moving.any()):
            if rec.motion is not None:
                th, tw = rec.motion.shape[-2:]
                d = (rec.motion - m[:, :th, :tw]).norm(dim=0)
                d = d[moving[:th, :tw]]
            else:
                d = (torch.tensor(v).view(2, 1, 1) - m).norm(dim=0)[moving]
            smp.object_epe[name] = float(d.median())


#: Debian packages kept out of training and tuning: the independent held-out check.
HELDOUT_PACKAGES = ("plasma-workspace-wallpapers", "opencv-doc")
#: Sample videos of opencv-doc (real motion: a street with people walking, a cartoon, a tree).
HELDOUT_VIDEOS = ("vtest.avi", "Megamind.avi", "tree.avi")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def _video_frames(path: Path, size: int, scale: float) -> Tensor:
    """All frames of a video, grey, linear light (sRGB decoded), resized by ``scale`` and
    centre-cropped to ``size`` (float32 ``(N, size, size)`` in [0, 1])."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
        if scale != 1.0:
            g = cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = g.shape
        s = min(size, h, w)
        g = g[(h - s) // 2: (h - s) // 2 + s, (w - s) // 2: (w - s) // 2 + s]
        frames.append(np.power(g, 2.2))
    cap.release()
    if not frames:
        raise ValueError(f"{path} has no readable frame.")
    return torch.from_numpy(np.stack(frames))


def evaluate_heldout_videos(n_clips: int, size: int = 256, codes: tuple[str, ...] = CODES,
                            sigma: float = 0.005, progress: bool = True,
                            only: tuple[str, ...] | None = None) -> list[Sample]:
    """Coded frames made from real video: each chip is one video frame (as BDINR's data: a
    240 fps GoPro frame per chip), ``y = sum_k c_k x_k / sum_k c_k`` plus noise; the truth is the
    frames themselves. Rows: B0, spectral, learned, learned-global (no true velocity exists)."""
    learned = ClassicalGlobal("tv", motion="learned", max_px=48.0)
    learned_g = ClassicalGlobal("tv", motion="learned", max_px=48.0, layers=False)
    spectral = ClassicalGlobal("tv", motion="spectral", max_px=48.0)
    auto = ClassicalGlobal("tv", motion="auto", max_px=48.0)
    video_rows = [("spectral", spectral), ("learned", learned), ("learned-global", learned_g),
                  ("auto", auto)]
    if shipped_refiner() is not None:
        video_rows.append(("refined", ClassicalGlobal("refined", motion="auto", max_px=48.0)))
    video_rows = [r for r in video_rows if only is None or r[0] in only]
    out = []
    for name in HELDOUT_VIDEOS:
        path = OPENCV_DATA / name
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; install the held-out data with "
                                    f"`sudo apt-get install -y {' '.join(HELDOUT_PACKAGES)}`.")
        scale = 0.5 if name == "vtest.avi" else 1.0
        video = _video_frames(path, size, scale)
        for code in codes:
            k = len(code)
            phys = CodedExposure.from_capture(code, chip_us=None)
            times = equal_times(k)
            c = torch.tensor([int(b) for b in code], dtype=torch.float32)
            starts = torch.linspace(0, video.shape[0] - k - 1, n_clips).round().long().tolist()
            for i, s0 in enumerate(starts):
                gt = video[s0: s0 + k]
                y = (c.view(k, 1, 1) * gt).sum(0) / c.sum()
                g = torch.Generator().manual_seed(SEED + i)
                y = y + sigma * torch.randn(y.shape, generator=g)
                smp = Sample(f"video:{name.split('.')[0]}", code, sigma, math.nan)
                smp.psnr["B0"] = _video_psnr(y.expand_as(gt), gt)
                for row, solver in video_rows:
                    t0 = time.perf_counter()
                    rec = solver.reconstruct(y, phys, times)
                    smp.seconds[row] = time.perf_counter() - t0
                    smp.psnr[row] = _video_psnr(rec.frames, gt)
                out.append(smp)
                if progress:
                    print(f"[held-out {name} {code} clip {i}] " + ", ".join(
                        f"{r} {v:.2f}" for r, v in smp.psnr.items()), file=sys.stderr,
                        flush=True)
    return out


def evaluate_heldout_photos(n: int, size: int = 256, progress: bool = True,
                            only: tuple[str, ...] | None = None) -> list[Sample]:
    """The strata of :func:`evaluate` on photos of ``plasma-workspace-wallpapers`` only (no dead
    leaves), which training and tuning never saw."""
    from recon.photos import PhotoLibrary, package_photo_paths

    paths = package_photo_paths(("plasma-workspace-wallpapers",))
    if not paths:
        raise FileNotFoundError("plasma-workspace-wallpapers is not installed; run `sudo apt-get "
                                f"install -y {' '.join(HELDOUT_PACKAGES)}`.")
    lib = PhotoLibrary(roots=sorted({p.parent for p in paths}))
    return evaluate(n, size, photos=lib, split="train", dead_leaves_fraction=0.0,
                    progress=progress, label="plasma:", only=only)


ROWS = ("B0", "spectral", "learned", "learned-global", "auto", "refined", "wiener-true",
        "refined-true")
MOTION_ROWS = ("spectral", "learned", "auto")


def reuse_rows(samples: list[Sample], previous: list[dict[str, Any]], source: str) -> None:
    """Fill the rows ``samples`` did not run from an earlier run's samples of the same scenes
    (``--only`` with ``--reuse``): matched in order, and refused unless every frame's stratum,
    code, noise level and B0 agree (the same scenes and noise)."""
    if len(previous) != len(samples):
        raise ValueError(f"{source} holds {len(previous)} frames, this run {len(samples)}: not "
                         "the same scenes (use the same --n and --heldout).")
    for s, old in zip(samples, previous, strict=True):
        if (s.stratum, s.code, s.sigma) != (old["stratum"], old["code"], old["sigma"]) or (
                abs(s.psnr["B0"] - old["psnr"]["B0"]) > 1e-6):
            raise ValueError(f"{source} does not hold the same scenes as this run (frame "
                             f"{s.stratum} {s.code} sigma={s.sigma:g} differs).")
        for attr in ("psnr", "seconds", "epe", "flip", "object_epe", "velocity"):
            mine = getattr(s, attr)
            for k, v in old.get(attr, {}).items():
                mine.setdefault(k, v)
        if math.isnan(s.confidence) and old.get("confidence") is not None:
            s.confidence = float(old["confidence"])


def _median(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else 0.5 * (s[m - 1] + s[m])


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """Tables per (code, stratum): mean PSNR per row, motion errors, sign flips, seconds."""
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(s.code, s.stratum)].append(s)
        groups[("all", s.stratum)].append(s)
        groups[(s.code, "all")].append(s)
        groups[("all", "all")].append(s)
    out: dict[str, Any] = {}
    for (code, stratum), ss in groups.items():
        row: dict[str, Any] = {"n": len(ss)}
        for r in ROWS:
            row[f"psnr_{r}"] = _mean([s.psnr[r] for s in ss if r in s.psnr])
        for r in MOTION_ROWS:
            row[f"epe_median_{r}"] = _median([s.epe[r] for s in ss if r in s.epe])
            row[f"epe_gt2_{r}"] = _mean([float(s.epe[r] > 2.0) for s in ss if r in s.epe])
            fl = [float(s.flip[r]) for s in ss if r in s.flip]
            row[f"flip_{r}"] = _mean(fl)
            row[f"object_epe_{r}"] = _median([s.object_epe[r] for s in ss if r in s.object_epe])
            row[f"seconds_{r}"] = _mean([s.seconds[r] for s in ss if r in s.seconds])
        row["seconds_refined"] = _mean([s.seconds["refined"] for s in ss
                                        if "refined" in s.seconds])
        out[f"{code}/{stratum}"] = row
    return out


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _table(summary: dict[str, Any], header: list[str], cells, keep=None) -> list[str]:
    """Markdown rows ``key | cells(row)...`` for every (sorted) key of ``summary`` that ``keep``
    accepts."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in sorted(summary):
        r = summary[key]
        if keep is None or keep(r):
            lines.append("| " + " | ".join([key, *cells(r)]) + " |")
    return lines


def _psnr_table(summary: dict[str, Any]) -> list[str]:
    def cells(r: dict[str, Any]) -> list[str]:
        def gain(ref: str) -> float | None:
            return None if r["psnr_auto"] is None else r["psnr_auto"] - r[ref]

        return [str(r["n"]), *(_f(r[f"psnr_{k}"]) for k in ROWS), _f(gain("psnr_B0")),
                _f(gain("psnr_spectral"))]

    return _table(summary, ["code / stratum", "n", "B0", "spectral", "learned (layers)",
                            "learned (global)", "auto (TV)", "refined (auto)",
                            "Wiener, true bg velocity", "refined, true bg velocity",
                            "auto - B0", "auto - spectral"], cells)


def _motion_table(summary: dict[str, Any]) -> list[str]:
    keys = ("epe_median", "epe_gt2", "flip", "object_epe")
    names = {"epe_median": "EPE", "epe_gt2": ">2 px", "flip": "flips",
             "object_epe": "object EPE"}
    return _table(summary, ["code / stratum", *(f"{names[k]} {m}" for k in keys
                                                for m in MOTION_ROWS)],
                  lambda r: [_f(r[f"{k}_{m}"]) for k in keys for m in MOTION_ROWS],
                  keep=lambda r: r["epe_median_learned"] is not None)


def render_markdown(summary: dict[str, Any], meta: dict[str, Any],
                    heldout: dict[str, Any] | None = None) -> str:
    lines = [
        "# Motion estimation and classical reconstruction, per stratum",
        "",
        f"Generated by `{meta['command']}` on {meta['machine']} ({meta['date']}); "
        f"{meta['n']} scenes per (stratum, code, noise level), {meta['size']} px, test photos. "
        f"Motion model: sha256 `{meta['motion_sha256'][:16]}...`. Rows: see the docstring of "
        "`recon/evaluate_motion.py`." + (f" The {meta['reused']}." if meta.get("reused")
                                         else ""),
        "",
        "## Reconstruction PSNR (dB, mean over frames and scenes)",
        "",
        *_psnr_table(summary),
        "",
        "## Motion",
        "",
        "Global velocity against the background's true velocity: median end-point error (px), "
        "share of frames off by more than 2 px, sign flips among true motions >= 8 px; for "
        "scenes with objects, the median error over the objects' tiles (the spectral search has "
        "one global velocity for them).",
        "",
        *_motion_table(summary),
    ]
    r = summary["all/all"]
    lines += [
        "",
        "## Seconds per 256x256 frame (mean, this machine, torch threads: "
        f"{meta['threads']})",
        "",
        f"- classical-tv with the spectral search: {_f(r['seconds_spectral'])} s",
        f"- classical-tv with the learned motion field (estimate + refinement + one TV "
        f"deconvolution per layer): {_f(r['seconds_learned'])} s",
        f"- classical-tv with motion=auto (the learned field; the spectral search on unsure "
        f"frames): {_f(r['seconds_auto'])} s",
        f"- refined with motion=auto (the same motion; closed-form Wiener and the refiner "
        f"instead of TV): {_f(r.get('seconds_refined'))} s",
        "- (the steps apart, at 256 and 512 px: `python bench/bench_motion.py`)",
        "",
        "![PSNR per stratum](motion_results.png)",
        "",
    ]
    if heldout:
        lines += [
            "## Independent held-out check",
            "",
            "Data kept out of training and tuning: photos of `plasma-workspace-wallpapers` in the "
            "same strata (`plasma:` rows, no dead leaves), and coded frames made from the real "
            "videos of `opencv-doc` (`video:` rows: each chip one video frame, linear light, "
            "noise 0.005; vtest is a fixed camera on a street with people walking, Megamind a "
            "cartoon with camera motion, tree a hand-held shot).",
            "",
            *_psnr_table(heldout),
            "",
            *_motion_table(heldout),
            "",
        ]
    return "\n".join(lines)


def draw_plot(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    codes = [c for c in CODES if any(k.startswith(c + "/") for k in summary)]
    fig, axes = plt.subplots(1, len(codes), figsize=(6 * len(codes), 4), sharey=True,
                             squeeze=False)
    axes = axes[0]
    for ax, code in zip(axes, codes, strict=True):
        keys = [f"{code}/{s}" for s in STRATA if f"{code}/{s}" in summary]
        x = range(len(keys))
        rows = [r for r in ROWS if any(summary[k][f"psnr_{r}"] is not None for k in keys)]
        wdt = 0.8 / len(rows)
        for j, r in enumerate(rows):
            vals = [summary[k][f"psnr_{r}"] or 0 for k in keys]
            ax.bar([i + (j - (len(rows) - 1) / 2) * wdt for i in x], vals, wdt, label=r)
        ax.set_xticks(list(x), [k.split("/")[1] for k in keys], rotation=20)
        ax.set_title(f"code {code}")
        ax.set_ylabel("PSNR (dB)")
        lo = min(summary[k][f"psnr_{r}"] or 99 for k in keys for r in rows)
        ax.set_ylim(max(0, lo - 3), None)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))


def tune_fallback(samples: list[Sample], policy: str = "spectral"
                  ) -> list[tuple[float, float, float]]:
    """For each threshold: mean PSNR of the ``policy`` row (``"spectral"`` or ``"still"``) on
    frames whose learned probability is below it (the learned row elsewhere), and the share of
    frames that fall back."""
    return [(th, tune_fallback_at(samples, th, policy),
             sum(s.confidence < th for s in samples) / max(1, len(samples)))
            for th in THRESHOLDS]


#: The fallbacks tuned, in the order ties are broken (at threshold 0 none applies).
TUNED = ("spectral", "still", "verified")
#: The bar of issue 14 that the fallback is chosen under: every stratum within this of doing
#: nothing (B0) or better.
NEVER_WORSE_DB = 0.3


def choose_fallback(samples: list[Sample]) -> tuple[str, float] | None:
    """The (fallback, threshold) with the highest mean PSNR among those that keep every stratum's
    mean within :data:`NEVER_WORSE_DB` of B0 or better (None when none does)."""
    strata = sorted({s.stratum for s in samples})
    best: tuple[float, str, float] | None = None
    for policy in TUNED:
        if not all(_has_fallback(s, policy) for s in samples):
            continue
        for th in THRESHOLDS:
            ok = True
            for st in strata:
                ss = [s for s in samples if s.stratum == st]
                b0 = sum(s.psnr["B0"] for s in ss) / len(ss)
                ok &= tune_fallback_at(ss, th, policy) >= b0 - NEVER_WORSE_DB
            mean = tune_fallback_at(samples, th, policy)
            if ok and (best is None or mean > best[0] + 1e-9):
                best = (mean, policy, th)
    return None if best is None else (best[1], best[2])


def _tuning_report(samples: list[Sample], command: str) -> str:
    strata = sorted({s.stratum for s in samples})
    lines = ["# Choosing the fallback of motion=auto (val photos)", "",
             f"Generated by `{command}` ({time.strftime('%Y-%m-%d')}); {len(samples)} frames of "
             "the *val* split in every stratum, code and noise level of "
             "`recon/evaluate_motion.py`. Frames whose learned frame read-out probability is "
             "below the threshold are unsure; per fallback (what an unsure frame gets) and "
             "threshold: the mean PSNR over frames, and the share of unsure frames. The chosen "
             "pair is `recon.solvers.FALLBACK` and `recon.solvers.FALLBACK_BELOW`: the "
             "highest mean PSNR among the pairs that keep every stratum within "
             f"{NEVER_WORSE_DB} dB of B0 or better (issue 14's bar for still scenes, "
             "applied to all).", "",
             "- **spectral**: the spectral search's velocity for the background;",
             "- **still**: no motion (the coded frame, TV-denoised: never worse than doing "
             "nothing);",
             "- **verified**: the learned motion where the spectral search's velocity agrees "
             "with it (`recon.solvers.same_motion`: within 2 px + 10 %), else still.", "",
             "Doing nothing (B0) per stratum: " + ", ".join(
                 f"{st} {_mean([s.psnr['B0'] for s in samples if s.stratum == st]):.2f}"
                 for st in strata) + f"; all {_mean([s.psnr['B0'] for s in samples]):.2f}.", ""]
    for policy in TUNED:
        if not all(_has_fallback(s, policy) for s in samples):
            continue
        lines += [f"## Fallback: {policy}", "",
                  "| threshold | share unsure | all | " + " | ".join(strata) + " |",
                  "|" + "---|" * (3 + len(strata))]
        for th, mean, share in tune_fallback(samples, policy):
            per = [f"{tune_fallback_at([s for s in samples if s.stratum == st], th, policy):.2f}"
                   for st in strata]
            lines.append(f"| {th:.1f} | {share:.2f} | {mean:.2f} | " + " | ".join(per) + " |")
        lines.append("")
    chosen = choose_fallback(samples)
    lines.append("**Chosen: " + (f"{chosen[0]}, threshold {chosen[1]:.1f}" if chosen else
                                 "none keeps every stratum near B0") + "**")
    return "\n".join(lines) + "\n"


def _has_fallback(s: Sample, policy: str) -> bool:
    if policy == "verified":
        return "still" in s.psnr and {"learned", "spectral"} <= s.velocity.keys()
    return policy in s.psnr


def _fallback_psnr(s: Sample, policy: str) -> float:
    """What an unsure frame scores under ``policy``."""
    if policy == "verified":
        v, sv = s.velocity["learned"], s.velocity["spectral"]
        agree = same_motion((v[0], v[1]), (sv[0], sv[1]))
        return s.psnr["learned"] if agree else s.psnr["still"]
    return s.psnr[policy]


def tune_fallback_at(samples: list[Sample], th: float, policy: str = "spectral") -> float:
    """Mean PSNR of the fallback rule at one threshold."""
    vals = [_fallback_psnr(s, policy) if s.confidence < th else s.psnr["learned"]
            for s in samples]
    return sum(vals) / max(1, len(vals))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m recon.evaluate_motion", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4, help="scenes per (stratum, code, noise level)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", type=Path, default=Path("docs/motion_results.md"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--heldout", type=int, default=0, metavar="N",
                   help="also run the independent held-out check: N scenes per stratum on the "
                   "plasma-workspace-wallpapers photos and N clips per opencv-doc video")
    p.add_argument("--tune-fallback", action="store_true",
                   help="choose the fallback threshold of motion=auto on the val photos and "
                   "write the table to OUT (default docs/motion_fallback.md)")
    p.add_argument("--only", default="", metavar="ROWS",
                   help="run only these rows (comma-separated, e.g. auto) and take the others "
                   "from --reuse")
    p.add_argument("--reuse", type=Path, default=None, metavar="JSON",
                   help="an earlier run's .json (same --n and --heldout): the rows --only leaves "
                   "out are copied from it, after checking that it holds the same scenes")
    args = p.parse_args(argv)
    only = tuple(r.strip() for r in args.only.split(",") if r.strip()) or None
    if only is not None and args.reuse is None:
        p.error("--only needs --reuse (where the other rows come from)")
    torch.set_num_threads(args.threads)
    from recon.motion import shipped_motion_model

    card_path = shipped_motion_model()
    if card_path is None:
        print("No motion model ships; train one with python -m recon.train_motion.",
              file=sys.stderr)
        return 2
    command = "python -m recon.evaluate_motion " + " ".join(
        argv if argv is not None else sys.argv[1:])
    if args.tune_fallback:
        out = (args.out if args.out != Path("docs/motion_results.md")
               else Path("docs/motion_fallback.md"))
        samples = evaluate(args.n, args.size, split="val", with_auto=False)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_tuning_report(samples, command))
        print(out)
        return 0
    previous = json.loads(args.reuse.read_text()) if args.reuse is not None else None
    samples = evaluate(args.n, args.size, only=only)
    held: list[Sample] = []
    if args.heldout:
        held = (evaluate_heldout_photos(args.heldout, args.size, only=only)
                + evaluate_heldout_videos(args.heldout, args.size, only=only))
    if previous is not None:
        reuse_rows(samples + held, previous["samples"], str(args.reuse))
    summary = summarise(samples)
    meta = {
        "command": command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d"),
        "n": args.n, "size": args.size, "threads": args.threads,
        "motion_sha256": json.loads(card_path.read_text())["sha256"],
    }
    if only is not None:
        meta["reused"] = (f"rows other than {', '.join(only)} copied from the run of "
                          f"{previous['meta']['date']} (same scenes, checked)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    held_summary = summarise(held) if held else None
    if held_summary:
        held_summary = {k: v for k, v in held_summary.items() if not k.endswith("/all")
                        and not k.startswith("all/")}
    args.out.write_text(render_markdown(summary, meta, held_summary))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "heldout": held_summary,
         "samples": [s.__dict__ for s in samples + held]}, indent=1))
    draw_plot(summary, args.out.with_suffix(".png"))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
