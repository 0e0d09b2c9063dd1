"""Latency of the learned models: one 512x512 coded frame -> 16 frames.

For each shipped model (``recon/models/weights/*.json``; fresh ``tiny`` and ``base`` variants with
``--fresh`` or when none is shipped: the latency does not depend on the weights), prints the
parameters, GMAC (:func:`recon.models.count_macs`) and milliseconds per coded frame:

* CPU, 1 and 2 threads, fp32 and bf16 (autocast), through :class:`recon.engine.LearnedEngine`
  (channels_last, frames over 512 px tiled);
* CUDA when available, bf16: through the engine (input upload and the frames' download included),
  the bare forward pass (eager), the forward replayed from a ``torch.cuda.CUDAGraph``, and
  ``torch.compile(mode="reduce-overhead")``; a variant that fails says why and the rest go on.

Each figure is the median of ``--repeats`` timed runs after warm-up runs. On a shared machine the
CPU figures vary with the other jobs (see ``bench_data.py``).

    .venv/bin/python bench/bench_learned.py [--size 512] [--frames 16] [--repeats 5] [--fresh]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch

from recon.engine import LearnedEngine, load_model, shipped_models
from recon.models import CodeVideoNet, build_model, count_macs, pad_code

CODE = (1, 1, 1, 0, 0, 1, 0, 1)


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int, cuda: bool) -> float:
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def _inputs(model: CodeVideoNet, size: int, frames: int, device: torch.device):
    bits, n = pad_code(CODE, model.config.max_chips)
    y = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    t = ((torch.arange(frames, dtype=torch.float32) + 0.5) / frames)[None].to(device)
    return y, bits[None].to(device), torch.tensor([n], device=device), t


def bench_cpu(model: CodeVideoNet, y: torch.Tensor, frames: int, threads: list[int],
              repeats: int) -> dict[str, float]:
    """Engine latency on the CPU per thread count and precision, in ms."""
    out = {}
    before = torch.get_num_threads()
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for bf16 in (False, True):
                eng = LearnedEngine(copy.deepcopy(model), device="cpu", bf16=bf16)
                key = f"cpu {n_threads} thr {'bf16' if bf16 else 'fp32'}"
                out[key] = _median_ms(lambda eng=eng: eng.reconstruct(y, CODE, frames), repeats,
                                      warmup=1, cuda=False)
                print(f"  {key:22s} {out[key]:9.1f} ms", flush=True)
    finally:
        torch.set_num_threads(before)
    return out


def bench_cuda(model: CodeVideoNet, y: torch.Tensor, frames: int,
               repeats: int) -> dict[str, float | str]:
    """CUDA bf16 latencies in ms (engine, eager forward, CUDA graph, torch.compile); a failed
    variant maps to its error message."""
    dev = torch.device("cuda")
    out: dict[str, float | str] = {}

    def report(key: str, value: float | str) -> None:
        out[key] = value
        text = f"{value:9.2f} ms" if isinstance(value, float) else f"failed: {value}"
        print(f"  {key:22s} {text}", flush=True)

    eng = LearnedEngine(copy.deepcopy(model), device="cuda", bf16=True)
    report("cuda engine bf16", _median_ms(lambda: eng.reconstruct(y, CODE, frames), repeats,
                                          warmup=3, cuda=True))
    net = eng.model.eval()
    ys, bits, lengths, t = _inputs(net, y.shape[-1], frames, dev)

    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)

    def eager() -> torch.Tensor:
        with torch.no_grad(), amp():
            return net(ys, bits, lengths, t)

    report("cuda eager bf16", _median_ms(eager, repeats, warmup=3, cuda=True))
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                eager()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph), amp():
            static_out = net(ys, bits, lengths, t)
        report("cuda graph bf16", _median_ms(graph.replay, repeats, warmup=3, cuda=True))
        ref = eager()
        torch.cuda.synchronize()
        err = float((static_out.float() - ref.float()).abs().max())
        print(f"  {'':22s} (graph vs eager max |diff| {err:.2e})")
    except Exception as e:  # a benchmark variant: report and go on
        report("cuda graph bf16", f"{type(e).__name__}: {e}".splitlines()[0][:160])
    try:
        compiled = torch.compile(net, mode="reduce-overhead")

        def run_compiled() -> torch.Tensor:
            with torch.no_grad(), amp():
                return compiled(ys, bits, lengths, t)

        t0 = time.perf_counter()
        run_compiled()
        torch.cuda.synchronize()
        print(f"  {'':22s} (torch.compile first call {time.perf_counter() - t0:.1f} s)")
        report("cuda compile bf16", _median_ms(run_compiled, repeats, warmup=5, cuda=True))
    except Exception as e:  # a benchmark variant: report and go on
        report("cuda compile bf16", f"{type(e).__name__}: {e}".splitlines()[0][:160])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="side of the coded frame")
    ap.add_argument("--frames", type=int, default=16, help="frames reconstructed")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts")
    ap.add_argument("--fresh", action="store_true",
                    help="freshly initialised tiny and base instead of the shipped models")
    ap.add_argument("--no-cpu", dest="cpu", action="store_false", help="skip the CPU timings")
    args = ap.parse_args()

    names = [] if args.fresh else shipped_models()
    if names:
        models = [(n, load_model(n)[0]) for n in names]
    else:
        print("no shipped model (or --fresh): timing freshly initialised variants")
        models = [(f"{v} (fresh)", build_model(v).eval()) for v in ("tiny", "base")]
    cuda = torch.cuda.is_available()
    print(f"learned reconstruction: one {args.size}x{args.size} coded frame -> {args.frames} "
          f"frames, code {''.join(map(str, CODE))}; torch {torch.__version__}, "
          f"{'CUDA ' + torch.cuda.get_device_name(0) if cuda else 'no CUDA'}; median of "
          f"{args.repeats} runs")
    y = torch.rand(args.size, args.size, generator=torch.Generator().manual_seed(0))
    summary = []
    for name, model in models:
        params = sum(p.numel() for p in model.parameters())
        gmac = count_macs(model, args.size, args.size, args.frames) / 1e9
        print(f"{name}: {params / 1e6:.3f} M parameters, {gmac:.2f} GMAC", flush=True)
        res: dict[str, float | str] = {}
        if args.cpu:
            res.update(bench_cpu(model, y, args.frames, args.threads, args.repeats))
        if cuda:
            res.update(bench_cuda(model, y, args.frames, args.repeats))
        summary.append((name, params, gmac, res))

    keys = list(dict.fromkeys(k for *_, r in summary for k in r))
    print()
    print("| model | params | GMAC | " + " | ".join(keys) + " |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in keys) + " |")
    for name, params, gmac, res in summary:
        cells = [f"{v:.1f} ms" if isinstance(v, float) else "failed" if k in res else "-"
                 for k in keys for v in [res.get(k, "-")]]
        print(f"| {name} | {params / 1e6:.3f} M | {gmac:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
