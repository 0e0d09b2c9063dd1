"""Evaluation of the reconstructions on the fixed test set (issue 5): tables, a plot, a reading.

    python -m recon.evaluate [--size 128] [--per-stratum 16] [--out docs] [--threads 2] [--quick]

One run renders the test set of :func:`recon.scene_batches.fixed_set` (3 motion strata x 2 noise
levels, the same scenes for every code), reconstructs the K chip frames of every coded frame with
each method, and writes ``OUT/results.md`` (command, date, machine, tables, a short reading) and
``OUT/results.png`` (PSNR against t per method, PSNR per stratum).

Methods (rows):

* **B0**: the coded frame repeated for every chip (on every code evaluated);
* **B1**: classical TV deconvolution (:func:`recon.classical.reconstruct_global`) with the oracle
  velocity (the background layer's displacement over the exposure) and with the velocity
  estimated from the frame, on ``11100101``;
* **B2**: a shipped box-trained model (model card ``"family": "box"``, e.g. ``tiny-box``) on the
  same scenes exposed with a box code of the same length (all chips open);
* the shipped coded models (``tiny``, ``base``) on ``11100101``, on family codes seen in training
  (drawn with :func:`recon.code_family.sample_code` from a fixed seed) and on held-out codes
  (:data:`recon.code_family.UNSEEN_CODES`).

A model missing from the weights folder is left out with a note. Metrics: per-frame PSNR (capped at
:data:`recon.evaluate_scores.PSNR_CAP_DB`) and SSIM of the predicted chip frames (clipped to
``[0, 1]``) against the ground truth (the scene averaged over each chip), in strict time order and
as the better (per scene, by PSNR) of the prediction and its time reversal; averaged per t, per
stratum, per motion class, per noise level and overall. Each row also gives parameters, MACs
(512x512 -> 16 frames) and the measured latency of one 512x512 coded frame -> 16 frames on the CPU.

The metric helpers (:func:`~recon.evaluate_scores.score_frames`,
:func:`~recon.evaluate_scores.aggregate`) live in :mod:`recon.evaluate_scores`, usable on their own.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from recon.evaluate_scores import N_T_BINS, PSNR_CAP_DB, RowResult, score_frames

__all__ = [
    "ANCHOR_CODE", "EvalConfig", "EvalReport", "check_bars", "draw_plot", "evaluate", "main",
    "render_markdown", "write_report",
]

#: The anchor code (BDINR's ``11100101``); B1 and the bars are evaluated on it.
ANCHOR_CODE = "11100101"
#: Seed of the generator that draws the "seen" family codes.
SEEN_CODES_SEED = 5
#: Models looked for in the weights folder, in this order.
DEFAULT_MODELS: tuple[str, ...] = ("tiny-box", "tiny", "base")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class EvalConfig:
    """What one evaluation run does (see :func:`main` for the command-line flags).

    Attributes:
        size: side of the test frames in pixels.
        per_stratum: scenes per stratum (6 strata).
        threads: torch CPU threads (0: leave as is).
        device: where the models run (``"cpu"``, ``"cuda"``, ``"auto"``).
        models_dir: folder of the model cards and weights.
        models: model names looked for there.
        n_seen: family codes drawn with :func:`recon.code_family.sample_code` besides the anchor.
        n_unseen: held-out codes taken from :data:`recon.code_family.UNSEEN_CODES`.
        seen_seed: seed of the generator drawing the seen codes.
        classical: run B1.
        max_px: velocity search bound of B1 (capped at half the frame side).
        batch: scenes rendered at a time.
        latency_size: side of the frame timed for latency (0: no latency measured).
        latency_frames: frames reconstructed in the latency measurement.
        latency_repeats: timed runs of the models (median; after one warm-up run). Classical: one.
        photos_dir: folder of photographs instead of the Debian packages' (tests, other machines).
        quick: a smoke run (recorded in the report).
    """

    size: int = 128
    per_stratum: int = 16
    threads: int = 2
    device: str = "cpu"
    models_dir: Path = field(default_factory=lambda: _weights_dir())
    models: tuple[str, ...] = DEFAULT_MODELS
    n_seen: int = 2
    n_unseen: int = 2
    seen_seed: int = SEEN_CODES_SEED
    classical: bool = True
    max_px: float = 64.0
    batch: int = 8
    latency_size: int = 512
    latency_frames: int = 16
    latency_repeats: int = 3
    photos_dir: Path | None = None
    quick: bool = False


def _weights_dir() -> Path:
    return Path(__file__).resolve().parent / "models" / "weights"


@dataclass
class EvalReport:
    """The outcome of :func:`evaluate`.

    Attributes:
        config: what was run.
        rows: results, one per method and code.
        codes: ``(code, kind)`` in evaluation order.
        notes: sentences for the report (models left out, ...).
        n_scenes: scenes in the test set.
        wall_s: duration of the run.
        machine: processor, cores, threads and torch version.
        started: UTC time of the start.
    """

    config: EvalConfig
    rows: list[RowResult]
    codes: list[tuple[str, str]]
    notes: list[str]
    n_scenes: int
    wall_s: float
    machine: str
    started: _dt.datetime

    def row(self, method: str, code: str) -> RowResult | None:
        """The row of a method on a code, or ``None``."""
        return next((r for r in self.rows if r.method == method and r.code == code), None)


def machine_description() -> str:
    """Processor model, core count, OS, torch version and thread count, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores{gpu}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"torch threads: {torch.get_num_threads()}")


def seen_codes(n: int, seed: int = SEEN_CODES_SEED) -> list[str]:
    """``n`` distinct family codes drawn with :func:`recon.code_family.sample_code`, not the
    anchor.

    >>> len(seen_codes(2)), ANCHOR_CODE in seen_codes(2)
    (2, False)
    """
    from recon.code_family import sample_code

    gen = torch.Generator().manual_seed(seed)
    out: list[str] = []
    while len(out) < n:
        s = "".join(str(b) for b in sample_code(gen))
        if s != ANCHOR_CODE and s not in out:
            out.append(s)
    return out


@dataclass
class _Model:
    name: str
    engine: object  # LearnedEngine
    family: str
    params: int
    macs: int


def _load_models(cfg: EvalConfig, notes: list[str]) -> list[_Model]:
    from recon.engine import LearnedEngine, ModelFileError, load_model
    from recon.models import count_macs

    found = []
    for name in cfg.models:
        card = Path(cfg.models_dir) / f"{name}.json"
        if not card.exists():
            where = Path(cfg.models_dir).resolve()
            root = Path(__file__).resolve().parents[1]
            where = where.relative_to(root) if where.is_relative_to(root) else where
            notes.append(f"Model `{name}` is not in `{where}` (not trained or exported "
                         "yet): its rows are left out.")
            continue
        try:
            model, meta = load_model(card)
            engine = LearnedEngine(card, device=cfg.device)
        except (ModelFileError, KeyError, RuntimeError) as e:
            notes.append(f"Model `{name}` could not be loaded ({e}): its rows are left out.")
            continue
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, 512, 512, 16)
        found.append(_Model(name, engine, str(meta.get("family", "coded")), params, macs))
    return found


def _classical_frames(y: Tensor, bits: str, k: int, velocity: tuple[float, float] | None,
                      max_px: float) -> Tensor:
    from recon.operators import CodedExposure
    from recon.solvers import equal_times, make_solver

    solver = make_solver("classical-tv", velocity=velocity, max_px=max_px, motion="spectral")
    physics = CodedExposure.from_capture(bits, chip_us=None)
    return solver.reconstruct(y, physics, equal_times(k)).frames.float()


def _latency_frame(size: int) -> Tensor:
    from recon.data import dead_leaves, linear_motion_clip

    image = dead_leaves(size + 64, size + 64, seed=7)
    clip = linear_motion_clip(image, ANCHOR_CODE, velocity_px=(20.0, -13.0), sub_steps=4,
                              out_hw=(size, size), noise_sigma=0.01, seed=1)
    return clip.blurred.float()


def _time_ms(fn: Callable[[], object], repeats: int, warmup: bool) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def _codes(cfg: EvalConfig, coded: list[_Model], boxed: list[_Model]) -> list[tuple[str, str]]:
    """``(code, kind)`` in evaluation order: the anchor, then seen and unseen family codes (if a
    coded model is there) and a box code (if a box-trained model is)."""
    from recon.code_family import UNSEEN_CODES

    codes: list[tuple[str, str]] = [(ANCHOR_CODE, "anchor")]
    if coded:
        codes += [(c, "seen") for c in seen_codes(cfg.n_seen, cfg.seen_seed)]
        codes += [(c, "unseen") for c in UNSEEN_CODES[: cfg.n_unseen]]
    if boxed:
        codes.append(("1" * len(ANCHOR_CODE), "box"))
    return codes


def _runners(code: str, kind: str, cfg: EvalConfig, models: list[_Model],
             max_px: float) -> list[tuple[RowResult, Callable]]:
    """The rows evaluated on one code, each with the function from a batch to its frames."""
    runners: list[tuple[RowResult, Callable]] = []
    b0 = RowResult("B0", "B0 repeat coded frame", "baseline", code, kind)
    runners.append((b0, lambda batch: batch.y.expand_as(batch.chips)))
    if kind == "anchor" and cfg.classical:
        for key, label, oracle in (("B1-oracle", "B1 TV, oracle velocity", True),
                                   ("B1-est", "B1 TV, estimated velocity", False)):
            row = RowResult(key, label, "classical", code, kind)

            def run_b1(batch, oracle: bool = oracle, code: str = code) -> Tensor:
                k = batch.chips.shape[1]
                out = []
                for i in range(batch.y.shape[0]):
                    v = (tuple(float(x) for x in batch.scenes[i].layers[0].velocity_px)
                         if oracle else None)
                    out.append(_classical_frames(batch.y[i, 0], code, k, v, max_px))
                return torch.stack(out)

            runners.append((row, run_b1))
    for m in (m for m in models if (m.family == "box") == (kind == "box")):
        label = f"B2 {m.name} (box-trained)" if m.family == "box" else m.name
        row = RowResult(m.name, label, "box-model" if m.family == "box" else "model", code,
                        kind, params=m.params, macs=m.macs)

        def run_model(batch, m: _Model = m) -> Tensor:
            return m.engine.reconstruct(batch.y[:, 0], batch.bits,  # type: ignore[attr-defined]
                                        n_frames=batch.chips.shape[1])

        runners.append((row, run_model))
    return runners


def evaluate(cfg: EvalConfig, *, progress: bool = True) -> EvalReport:
    """Run the evaluation described by ``cfg``.

    Args:
        cfg: the configuration.
        progress: show a tqdm progress bar (on stderr).

    Returns:
        The report (write it with :func:`write_report`).

    Raises:
        recon.photos.PhotoLibraryError: no photographs (the message names the apt packages).
    """
    from tqdm import tqdm

    from recon.photos import PhotoLibrary, default_photos
    from recon.scene_batches import fixed_set

    started = _dt.datetime.now(_dt.UTC)
    t_start = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    notes: list[str] = []
    photos = PhotoLibrary([cfg.photos_dir]) if cfg.photos_dir else default_photos()
    models = _load_models(cfg, notes)
    codes = _codes(cfg, [m for m in models if m.family != "box"],
                   [m for m in models if m.family == "box"])
    max_px = float(min(cfg.max_px, cfg.size / 2 - 1))

    rows: list[RowResult] = []
    n_scenes = 6 * cfg.per_stratum
    bar = tqdm(total=n_scenes * len(codes), unit="scene", desc="evaluate", disable=not progress,
               file=sys.stderr)
    for code, kind in codes:
        runners = _runners(code, kind, cfg, models, max_px)
        fs = fixed_set("test", size=cfg.size, n_per_stratum=cfg.per_stratum, code=code,
                       photos=photos)
        for batch in fs.batches(cfg.batch):
            for row, fn in runners:
                bar.set_postfix_str(f"{code} {row.method}")
                pred = fn(batch).float().clamp(0.0, 1.0)
                row.add(score_frames(pred, batch.chips), batch.stratum)
            bar.update(batch.y.shape[0])
        rows.extend(r for r, _ in runners)
    bar.close()

    if cfg.latency_size > 0:
        _measure_latency(cfg, rows, models, max_px_latency=cfg.max_px, progress=progress)
    return EvalReport(config=cfg, rows=rows, codes=codes, notes=notes, n_scenes=n_scenes,
                      wall_s=time.perf_counter() - t_start, machine=machine_description(),
                      started=started)


def _measure_latency(cfg: EvalConfig, rows: list[RowResult], models: list[_Model], *,
                     max_px_latency: float, progress: bool) -> None:
    """Latency of one ``latency_size``^2 coded frame -> ``latency_frames`` frames per method."""
    y = _latency_frame(cfg.latency_size)
    n = cfg.latency_frames
    lat: dict[str, float] = {}
    for m in models:
        bits = [1] * len(ANCHOR_CODE) if m.family == "box" else [int(c) for c in ANCHOR_CODE]
        eng = m.engine
        lat[m.name] = _time_ms(lambda eng=eng, bits=bits: eng.reconstruct(y, bits, n),  # type: ignore[attr-defined]
                               cfg.latency_repeats, warmup=True)
        if progress:
            print(f"latency {m.name}: {lat[m.name]:.0f} ms", file=sys.stderr)
    if cfg.classical:
        bound = float(min(max_px_latency, cfg.latency_size / 2 - 1))
        lat["B1-oracle"] = _time_ms(
            lambda: _classical_frames(y, ANCHOR_CODE, n, (20.0, -13.0), bound), 1, warmup=False)
        lat["B1-est"] = _time_ms(
            lambda: _classical_frames(y, ANCHOR_CODE, n, None, bound), 1, warmup=False)
        if progress:
            print(f"latency B1: oracle {lat['B1-oracle']:.0f} ms, estimated "
                  f"{lat['B1-est']:.0f} ms", file=sys.stderr)
    for r in rows:
        r.latency_ms = lat.get(r.method)


# ---------------------------------------------------------------------------------------------
# Bars and the report
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One acceptance bar: its statement, whether it is met (``None``: not evaluated) and the
    numbers."""

    statement: str
    met: bool | None
    detail: str


def _sigma01(report: EvalReport, method: str, code: str, order: str = "strict") -> float | None:
    r = report.row(method, code)
    if r is None:
        return None
    return r.summary("psnr", order).get("sigma=0.01")


def _box_row(report: EvalReport, variant: str) -> RowResult | None:
    box = [r for r in report.rows if r.group == "box-model"]
    same = [r for r in box if r.method == f"{variant}-box"]
    return (same or box or [None])[0]


def check_bars(report: EvalReport) -> list[Bar]:
    """The issue's bars, on PSNR at sigma = 0.01 over all motion strata, code ``11100101`` (B2: its
    box code), strict order: tiny >= B0 + 5 dB and above B1 with estimated velocity; base >= B0 +
    8 dB and >= B2 + 2 dB."""
    a = ANCHOR_CODE
    b0, b1 = _sigma01(report, "B0", a), _sigma01(report, "B1-est", a)
    bars = []

    def cmp(statement: str, model: str, ref: float | None, ref_name: str, margin: float,
            strict_gt: bool = False) -> None:
        v = _sigma01(report, model, a)
        if v is None or ref is None:
            missing = model if v is None else ref_name
            bars.append(Bar(statement, None, f"{missing} absent"))
            return
        ok = v > ref + margin if strict_gt else v >= ref + margin
        bars.append(Bar(statement, ok, f"{model} {v:.2f} dB vs {ref_name} {ref:.2f} dB "
                                       f"(difference {v - ref:+.2f} dB)"))

    cmp("tiny >= B0 + 5 dB", "tiny", b0, "B0", 5.0)
    cmp("tiny > B1 (estimated velocity)", "tiny", b1, "B1-est", 0.0, strict_gt=True)
    cmp("base >= B0 + 8 dB", "base", b0, "B0", 8.0)
    b2 = _box_row(report, "base")
    b2v = b2.summary("psnr", "strict").get("sigma=0.01") if b2 is not None else None
    cmp("base >= B2 + 2 dB", "base", b2v, f"B2 {b2.method}" if b2 else "B2", 2.0)
    return bars


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" * 2 + "r" * (len(header) - 2)
    sep = ["---:" if c == "r" else "---" for c in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1000:.1f} s" if x >= 10_000 else f"{x:.0f} ms"


def _intro(report: EvalReport, command: str) -> list[str]:
    """The head of ``results.md``: command, machine, test set, codes and notes."""
    cfg = report.config
    out = [
        "# Results: coded-exposure video reconstruction",
        "",
        f"Produced by `{command}` on {report.started:%Y-%m-%d %H:%M} UTC in "
        f"{report.wall_s / 60:.1f} min"
        + (" (**quick smoke run: a tiny set, not the numbers to quote**)" if cfg.quick else "")
        + ".",
        "",
        f"Machine: {report.machine}.",
        "",
        f"Test set: `fixed_set(\"test\", size={cfg.size}, n_per_stratum={cfg.per_stratum})`, "
        f"{report.n_scenes} scenes: motion slow (<= 8 px per exposure), medium (8-24 px), fast "
        "(24-48 px), each with Gaussian noise sigma 0.002 and 0.01; the same scenes are rendered "
        "with every code (4 sub-steps per chip). Every method reconstructs the K chip frames "
        "(K = code length), clipped to [0, 1]; ground truth is the scene averaged over each chip. "
        f"PSNR: per frame (capped at {PSNR_CAP_DB:.0f} dB), averaged over frames, then over "
        "scenes; "
        "SSIM likewise (11-tap Gaussian window). **Strict**: frame k against chip k. **Best-of**: "
        "per scene the better (by PSNR) of the prediction and its time reversal; the gap between "
        "the two is the cost of not knowing the direction of time. "
        "B1 runs TV deconvolution (`reconstruct_global`, noise level fitted) with the background "
        f"layer's true displacement (oracle) or with the velocity estimated (|v| <= "
        f"{min(cfg.max_px, cfg.size / 2 - 1):g} px); scenes also hold independently moving "
        "sprites that a global velocity cannot describe.",
        "",
        "Codes:",
        "",
        _table(["code", "kind", "chips", "open"],
               [[f"`{c}`", k, str(len(c)), f"{c.count('1')}/{len(c)}"] for c, k in report.codes],
               "llrr"),
        "",
    ]
    if report.notes:
        out += ["Notes:", ""] + [f"- {n}" for n in report.notes] + [""]
    return out


def _overall(report: EvalReport) -> list[str]:
    """The overall table of ``results.md``: one line per row (method on a code)."""
    cfg, rows = report.config, report.rows
    lat_size = cfg.latency_size
    lat_head = f"latency {lat_size}->{cfg.latency_frames}" if lat_size else "latency"
    out = ["## Overall", "",
            "PSNR in dB over all scenes; the sigma = 0.01 column is the one the bars use; "
            "'vs B0' is that column minus B0 on the same code. Parameters and MACs: one "
            "512x512 coded frame -> 16 frames; latency: models through `LearnedEngine` "
            f"(device {cfg.device}, its default precision: fp32 on the CPU), median of "
            f"{cfg.latency_repeats} runs after a warm-up; classical: one run of "
            "`reconstruct_global` (TV) on the CPU; torch threads: "
            f"{cfg.threads or torch.get_num_threads()}.", ""]
    body = []
    for r in rows:
        s, b = r.summary("psnr", "strict"), r.summary("psnr", "best")
        ss, sb = r.summary("ssim", "strict"), r.summary("ssim", "best")
        ref = report.row("B0", r.code)
        d = (s.get("sigma=0.01", math.nan) - ref.summary()["sigma=0.01"]
             if ref is not None and r.method != "B0" and "sigma=0.01" in s else None)
        body.append([
            r.label, f"`{r.code}` ({r.code_kind})", _f(s["all"]), _f(b["all"]),
            _f(b["all"] - s["all"]), _f(ss["all"], 3), _f(sb["all"], 3),
            _f(s.get("sigma=0.01")), "-" if d is None else f"{d:+.2f}",
            f"{r.params / 1e6:.3f} M" if r.params else "-",
            f"{r.macs / 1e9:.2f}" if r.macs else "-", _ms(r.latency_ms),
        ])
    out += [_table(["method", "code", "PSNR strict", "PSNR best-of", "gap", "SSIM strict",
                    "SSIM best-of", "PSNR sigma=0.01", "vs B0", "params", "GMAC", lat_head],
                   body), ""]
    return out


def _per_stratum_and_t(rows: list[RowResult]) -> list[str]:
    """The tables of ``results.md`` per stratum (PSNR strict and best-of, SSIM) and per
    bin of t."""
    strata_keys = list(rows[0].summary().keys()) if rows else []
    full = [k for k in strata_keys if "/" in k]
    motions = [k for k in strata_keys if k != "all" and "/" not in k and not k.startswith("sigma")]
    noises = [k for k in strata_keys if k.startswith("sigma")]
    out: list[str] = []
    for metric, order, title, nd in (("psnr", "strict", "PSNR (dB) per stratum, strict order", 2),
                                     ("psnr", "best", "PSNR (dB) per stratum, best of "
                                      "forward/reversed", 2),
                                     ("ssim", "strict", "SSIM per stratum, strict order", 3)):
        cols = full + motions + noises
        body = [[r.label, f"`{r.code}`"] + [_f(r.summary(metric, order).get(c), nd) for c in cols]
                for r in rows]
        out += [f"## {title}", "", _table(["method", "code"] + cols, body), ""]

    edges = [f"{(b + 0.5) / N_T_BINS:.2f}" for b in range(N_T_BINS)]
    body = [[r.label, f"`{r.code}`"] + [_f(v) for v in r.per_t_bins("psnr", "strict")]
            for r in rows]
    out += ["## PSNR (dB) against time, strict order", "",
            f"Chip centres t = (k + 1/2)/K binned into {N_T_BINS} equal parts of the exposure "
            "(columns: bin centres); all scenes.", "",
            _table(["method", "code"] + [f"t={e}" for e in edges], body), ""]
    return out


def render_markdown(report: EvalReport, command: str, plot_name: str = "results.png") -> str:
    """The text of ``results.md``."""
    out = _intro(report, command) + _overall(report) + _per_stratum_and_t(report.rows)
    out += ["## Reading", ""] + _reading(report) + [""]
    out += [f"![PSNR against t per method (left), PSNR per stratum (right)]({plot_name})", ""]
    return "\n".join(out)


def _reading(report: EvalReport) -> list[str]:
    lines = []
    bars = check_bars(report)
    for b in bars:
        verdict = {True: "**met**", False: "**not met**", None: "not evaluated"}[b.met]
        lines.append(f"- Bar `{b.statement}` (sigma = 0.01, `{ANCHOR_CODE}`, strict): {verdict}; "
                     f"{b.detail}.")
    for r in report.rows:
        if r.group in ("model", "box-model") and r.code_kind in ("anchor", "box"):
            s, b = r.summary("psnr", "strict")["all"], r.summary("psnr", "best")["all"]
            share = float(r.reversed_better.double().mean()) * 100
            lines.append(f"- Direction: {r.method} on `{r.code}` gains {b - s:.2f} dB when the "
                         f"time-reversed output may be taken ({share:.0f} % of scenes score better "
                         "reversed).")
    for name in sorted({r.method for r in report.rows if r.group == "model"}):
        gain = {k: [] for k in ("anchor", "seen", "unseen")}
        for r in report.rows:
            ref = report.row("B0", r.code)
            if r.method == name and ref is not None and r.code_kind in gain:
                gain[r.code_kind].append(r.summary()["all"] - ref.summary()["all"])
        parts = [f"{k} {sum(v) / len(v):+.2f} dB" for k, v in gain.items() if v]
        lines.append(f"- Codes: {name}'s mean gain over B0 (all scenes, strict) by code kind: "
                     + ", ".join(parts) + " (unseen codes: held out from training).")
    lat = {r.method: r.latency_ms for r in report.rows if r.latency_ms is not None}
    if lat:
        parts = [f"{k} {_ms(v)}" for k, v in sorted(lat.items(), key=lambda kv: kv[1])]
        lines.append(f"- Latency ({report.config.latency_size}x{report.config.latency_size} -> "
                     f"{report.config.latency_frames} frames, CPU): " + ", ".join(parts) + ".")
    if report.config.quick:
        lines.append("- This was a quick smoke run on a tiny set: the numbers only show that the "
                     "pipeline works.")
    return lines


# ---------------------------------------------------------------------------------------------
# The plot (matplotlib, Agg backend)
# ---------------------------------------------------------------------------------------------

_COLOURS = {
    "B0": "#8c8c8c", "B1-oracle": "#146eb4", "B1-est": "#78beeb",
    "box": "#ff8c00", "tiny": "#28a032", "base": "#d22828",
}
_EXTRA = ["#963c96", "#78783c", "#c864c8", "#a05a14"]


def _plot_rows(report: EvalReport) -> list[RowResult]:
    return [r for r in report.rows
            if (r.code_kind == "anchor") or (r.code_kind == "box" and r.group == "box-model")]


def _colour(r: RowResult, i: int) -> str:
    if r.group == "box-model":
        return _COLOURS["box"]
    return _COLOURS.get(r.method, _EXTRA[i % len(_EXTRA)])


def draw_plot(report: EvalReport, path: Path) -> Path:
    """Draw ``results.png``: PSNR (strict) against t per method on ``11100101`` (B2 on its box
    code) and a bar chart of PSNR per stratum, with a shared legend.

    Args:
        report: the evaluation.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    rows = _plot_rows(report)
    names = [r.label if r.code_kind != "box" else f"{r.label} on box{len(r.code)}" for r in rows]
    colours = [_colour(r, i) for i, r in enumerate(rows)]
    fig = Figure(figsize=(15, 6.6), dpi=100)
    left, right = fig.subplots(1, 2)

    for name, col, r in zip(names, colours, rows, strict=True):
        ts, ys = r.per_chip("psnr", "strict")
        left.plot(ts, ys, "o-", color=col, lw=2, ms=5, label=name)
    left.set(title="PSNR against time (strict order, all scenes)",
             xlabel="t (fraction of the exposure)", ylabel="PSNR (dB)", xlim=(0, 1))
    left.set_xticks([0, 0.25, 0.5, 0.75, 1])

    strata = [k for k in (rows[0].summary().keys() if rows else []) if "/" in k]
    vals = [[r.summary("psnr", "strict").get(s, math.nan) for s in strata] for r in rows]
    bw = 0.8 / max(1, len(rows))
    for i, (col, vs) in enumerate(zip(colours, vals, strict=True)):
        right.bar([g + 0.1 + (i + 0.5) * bw for g in range(len(strata))], vs, bw, color=col)
    finite = [v for vs in vals for v in vs if math.isfinite(v)]
    if finite:  # bars start below the lowest value, so the differences show
        lo, hi = min(finite), max(finite)
        pad = max(1.0, 0.1 * (hi - lo))
        right.set_ylim(lo - 2 * pad, hi + pad)
    right.set(title="PSNR per stratum (strict order)", xlabel="motion / noise sigma",
              ylabel="PSNR (dB)", xlim=(0, max(1, len(strata))))
    right.set_xticks([g + 0.5 for g in range(len(strata))],
                     [s.replace("/", "\n") for s in strata])
    for ax in (left, right):
        ax.grid(axis="y", color="0.88")
        ax.set_axisbelow(True)

    fig.suptitle(f"code {ANCHOR_CODE} (B2: box exposure), {report.n_scenes} scenes of "
                 f"{report.config.size}px")
    if rows:
        fig.legend(*left.get_legend_handles_labels(), loc="lower center",
                   ncol=min(6, len(rows)), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_report(report: EvalReport, out_dir: Path, command: str) -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.png`` into ``out_dir``; returns both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = draw_plot(report, out_dir / "results.png")
    md = out_dir / "results.md"
    md.write_text(render_markdown(report, command, png.name), encoding="utf-8")
    return md, png


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(prog="python -m recon.evaluate",
                                description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=None, help="frame side (128; quick: 48)")
    p.add_argument("--per-stratum", type=int, default=None,
                   help="scenes per stratum, 6 strata (16; quick: 1)")
    p.add_argument("--out", default="docs", help="folder for results.md and results.png")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: default)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: tiny set, latency at 128 px, one timed run")
    p.add_argument("--device", default="cpu", help="where the models run: cpu, cuda, auto")
    p.add_argument("--models-dir", default=None,
                   help="folder of model cards and weights (default: recon/models/weights)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma-separated model names looked for there")
    p.add_argument("--batch", type=int, default=8, help="scenes rendered at a time")
    p.add_argument("--no-classical", dest="classical", action="store_false",
                   help="leave out B1 (slow: ~1.5 s per scene)")
    p.add_argument("--latency-size", type=int, default=None,
                   help="frame side timed for latency (512; quick: 128; 0: none)")
    p.add_argument("--photos", default=None,
                   help="folder of photographs instead of the Debian wallpaper packages")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """An :class:`EvalConfig` from parsed options (``--quick`` changes the defaults)."""
    q = bool(args.quick)
    return EvalConfig(
        size=args.size if args.size is not None else (48 if q else 128),
        per_stratum=args.per_stratum if args.per_stratum is not None else (1 if q else 16),
        threads=int(args.threads),
        device=args.device,
        models_dir=Path(args.models_dir) if args.models_dir else _weights_dir(),
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        classical=bool(args.classical),
        batch=int(args.batch),
        latency_size=(args.latency_size if args.latency_size is not None
                      else (128 if q else 512)),
        latency_repeats=1 if q else 3,
        photos_dir=Path(args.photos) if args.photos else None,
        quick=q,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation and write the report; prints the bars and the paths."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(args_list)
    cfg = config_from_args(args)
    report = evaluate(cfg, progress=not args.quiet)
    command = "python -m recon.evaluate" + ("" if not args_list else " " + " ".join(args_list))
    md, png = write_report(report, Path(args.out), command)
    for note in report.notes:
        print(f"note: {note}")
    for r in report.rows:
        s = r.summary()
        best = r.summary("psnr", "best")["all"]
        print(f"{r.label:32s} {r.code:>24s}  PSNR strict {s['all']:6.2f}  best-of {best:6.2f}  "
              f"sigma=0.01 {s.get('sigma=0.01', math.nan):6.2f}  latency {_ms(r.latency_ms)}")
    for b in check_bars(report):
        verdict = {True: "met", False: "NOT met", None: "not evaluated"}[b.met]
        print(f"bar {b.statement}: {verdict} ({b.detail})")
    print(f"wrote {md} and {png} in {report.wall_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
