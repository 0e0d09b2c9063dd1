"""Training-data generation speed: ``recon.scene_batches.make_batch`` batches per second.

Batch 8 of 128x128 coded frames with codes of 8 and 32 chips and 4 sub-steps per chip (32 and 128
rendered views per sample), on 1 and 2 torch threads, photos from the Debian wallpaper packages
(or dead leaves only with ``--no-photos``). One-time costs (photo library, dead-leaves bank) are
paid before timing and printed apart. On a shared machine compare the CPU-time column too: wall
time with 2 threads degrades up to 10x when other jobs hold the cores, because OpenMP threads
spin while they wait for each other; ``OMP_WAIT_POLICY=PASSIVE`` in the environment avoids that.

    .venv/bin/python bench/bench_data.py [--batches 6] [--size 128] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import time

import cv2
import torch

from recon.code_family import sample_code
from recon.photos import PhotoLibrary, default_photos, preload_dead_leaves
from recon.scene_batches import coded_batch, make_batch
from recon.scenes import SceneSampler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=6, help="timed batches per configuration")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--sub-steps", type=int, default=4)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chips", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--no-photos", action="store_true", help="dead-leaves textures only")
    ap.add_argument("--device", default="cpu",
                    help="also time drawing the scenes on the CPU and rendering them on this "
                         "device (e.g. cuda), as recon.train does on a GPU")
    args = ap.parse_args()

    t0 = time.perf_counter()
    photos = None if args.no_photos else default_photos()
    t1 = time.perf_counter()
    preload_dead_leaves("train")
    t2 = time.perf_counter()
    print(f"photo library: {photos!r}, loaded in {t1 - t0:.2f} s" if photos is not None
          else "photo library: not used (--no-photos)")
    print(f"dead-leaves bank (train): {t2 - t1:.2f} s")
    print(f"batch {args.batch_size} x {args.size}x{args.size}, {args.sub_steps} sub-steps/chip, "
          f"Gaussian noise sigma ~ U[0, 0.01]")
    print("ms/batch is wall time; cpu ms/batch is this process's CPU time (all its threads), which "
          "other jobs on the machine do not inflate")
    print(f"{'threads':>7} {'chips':>5} {'views':>5} {'ms/batch':>9} {'batches/s':>9} "
          f"{'samples/s':>9} {'cpu ms/batch':>12}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        for k in args.chips:
            gen = torch.Generator().manual_seed(1234 + k)
            bits = sample_code(gen, [k])
            make_batch(args.batch_size, args.size, bits, sub_steps=args.sub_steps, generator=gen,
                       photos=photos)  # warm-up
            start, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(args.batches):
                make_batch(args.batch_size, args.size, bits, sub_steps=args.sub_steps,
                           generator=gen, photos=photos)
            dt = (time.perf_counter() - start) / args.batches
            cpu = (time.process_time() - cpu0) / args.batches
            print(f"{threads:>7} {k:>5} {k * args.sub_steps:>5} {dt * 1e3:>9.1f} {1 / dt:>9.2f} "
                  f"{args.batch_size / dt:>9.1f} {cpu * 1e3:>12.1f}")

    if args.device != "cpu":
        bench_device(args, photos)


def bench_device(args: argparse.Namespace, photos: PhotoLibrary | None) -> None:
    """Scene drawing (CPU, one thread: what one DataLoader worker does) and rendering on a GPU."""
    dev = torch.device(args.device)
    sampler = SceneSampler(photos, args.size, split="train")
    torch.set_num_threads(1)
    print(f"\nscenes drawn on 1 CPU thread, rendered on {dev} "
          f"({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else dev})")
    print(f"{'chips':>5} {'draw ms/batch':>13} {'render ms/batch':>15} {'samples/s render':>16}")
    for k in args.chips:
        gen = torch.Generator().manual_seed(99 + k)
        bits = sample_code(gen, [k])
        draws, renders = [], []
        for i in range(args.batches + 1):
            t0 = time.perf_counter()
            scenes = [sampler.sample(1000 + k, i * args.batch_size + j)
                      for j in range(args.batch_size)]
            t1 = time.perf_counter()
            b = coded_batch(scenes, bits, sub_steps=args.sub_steps, sigma=0.005, device=dev)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t2 = time.perf_counter()
            if i:  # the first is a warm-up
                draws.append(t1 - t0)
                renders.append(t2 - t1)
        del b
        d, r = sum(draws) / len(draws), sum(renders) / len(renders)
        print(f"{k:>5} {d * 1e3:>13.1f} {r * 1e3:>15.1f} {args.batch_size / r:>16.1f}")


if __name__ == "__main__":
    main()
