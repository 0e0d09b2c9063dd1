"""Hostile-file campaign: damage one good capture in many ways and tally how every reader copes.

    python bench/campaign_files.py [--flips 60] [--out out/campaign_files]

A capture of 3 coded frames is recorded on the simulated rig, then copied and damaged: named kinds
(truncations, deleted and retyped datasets, edited codes, NaN metadata, foreign and random files,
a damaged chunk, damaged object headers) and ``--flips`` copies with 16 bytes flipped at a seeded
random offset each. On every copy it runs ``blurvid-rig info``, ``info --verify`` and ``recon``
(in this process, through ``blurvid_rig.cli.main``) and sorts the outcome:

- **clear**: an exit status of 1 or 2 and a sentence that names the file;
- **unnamed**: an error whose text does not name the file;
- **whole**: exit status 0 (the damage hit bytes nobody reads, or a frame that still decodes);
- **traceback**: an exception escaped the command (the failure this campaign looks for).

Prints one line per copy and the tallies.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import shutil
import sys
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from blurvid_rig.cli import main as cli  # noqa: E402

SHUTTER = "/entry/instrument/shutter"
CAMERA = "/entry/instrument/camera"


def _flip(p: Path, offset: int, n: int = 16) -> None:
    b = bytearray(p.read_bytes())
    for k in range(n):
        if offset + k < len(b):
            b[offset + k] ^= 0x5A
    p.write_bytes(bytes(b))


def _edit(path: str, fn):
    def damage(p: Path) -> None:
        with h5py.File(p, "r+") as f:
            fn(f, path)
    return damage


def named_kinds() -> dict[str, object]:
    def header_of(obj: str):
        def damage(p: Path) -> None:
            with h5py.File(p, "r") as f:
                addr = h5py.h5o.get_info(f[obj].id).addr
            _flip(p, addr + 20, 8)
        return damage

    def chunk(p: Path) -> None:
        with h5py.File(p, "r") as f:
            info = f[f"{CAMERA}/data"].id.get_chunk_info_by_coord((1, 0, 0))
        _flip(p, info.byte_offset, 16)

    def swap_code(p: Path) -> None:
        from hw.types import ShutterCode

        other = ShutterCode((1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1), 500.0)
        with h5py.File(p, "r+") as f:
            del f[f"{SHUTTER}/code"], f[f"{SHUTTER}/code_sha256"]
            f[SHUTTER].create_dataset("code", data=np.array(other.bits, np.uint8))
            f[SHUTTER].create_dataset("code_sha256", data=other.sha256)

    def frames_to_float(p: Path) -> None:
        with h5py.File(p, "r+") as f:
            del f["entry/data/data"], f[f"{CAMERA}/data"]
            f[CAMERA].create_dataset("data", data=np.full((3, 80, 96), np.nan, np.float32))

    return {
        "truncated to half": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "truncated to 48 bytes": lambda p: p.write_bytes(p.read_bytes()[:48]),
        "empty file": lambda p: p.write_bytes(b""),
        "random bytes": lambda p: p.write_bytes(random.Random(1).randbytes(4096)),
        "foreign HDF5": lambda p: (p.unlink(), h5py.File(p, "w").close()),
        "no code": _edit(f"{SHUTTER}/code", lambda f, x: f.__delitem__(x)),
        "no frame log": _edit(f"{CAMERA}/frame_log", lambda f, x: f.__delitem__(x)),
        "no frames": _edit(f"{CAMERA}/data", lambda f, x: f.__delitem__(x)),
        "code not binary": _edit(f"{SHUTTER}/code", lambda f, x: f[x].__setitem__(0, 2)),
        "code edited": _edit(f"{SHUTTER}/code", lambda f, x: f[x].__setitem__(3, 1)),
        "code swapped with its own sha256": swap_code,
        "NaN chip duration": _edit(f"{SHUTTER}/chip_duration",
                                   lambda f, x: f[x].__setitem__((), np.nan)),
        "float frames with NaN": frames_to_float,
        "status 'finished'": lambda p: _edit("", lambda f, x: f.attrs.__setitem__(
            "status", "finished"))(p),
        "schema 9.0": lambda p: _edit("", lambda f, x: f.attrs.__setitem__(
            "schema_version", "9.0"))(p),
        "damaged chunk of frame 1": chunk,
        **{f"damaged object header {o}": header_of(o) for o in
           ("/", "/entry", CAMERA, SHUTTER, f"{CAMERA}/frame_log")},
    }


def run_cmd(argv: list[str], path: Path) -> tuple[str, int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = cli(argv)
    except SystemExit as e:
        rc = int(e.code or 0)
    except Exception:  # noqa: BLE001 - what the campaign counts
        return "traceback", -1, traceback.format_exc(limit=3)
    text = out.getvalue() + err.getvalue()
    if "Traceback" in text:
        return "traceback", rc, text
    if rc == 0:
        return "whole", rc, text
    return ("clear" if path.name in text else "unnamed"), rc, text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flips", type=int, default=60, help="copies with random flipped bytes")
    ap.add_argument("--out", type=Path, default=Path("out/campaign_files"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "good").mkdir(parents=True)
    rc = cli(["-q", "capture", "--sim", "--count", "3", "--width", "96", "--height", "80",
              "--code", "11100101", "--chip-us", "500", "--out", str(args.out / "good")])
    assert rc == 0
    (good,) = (args.out / "good").glob("*.h5")
    kinds = dict(named_kinds())
    rng = random.Random(args.seed)
    size = good.stat().st_size
    for _ in range(args.flips):
        off = rng.randrange(0, size - 16)
        kinds[f"16 bytes flipped at {off}"] = (lambda o: lambda p: _flip(p, o))(off)
    tally: dict[str, Counter] = {"info": Counter(), "info --verify": Counter(),
                                 "recon": Counter()}
    tracebacks = []
    for n, (name, damage) in enumerate(kinds.items()):
        d = args.out / f"{n:03d}"
        d.mkdir()
        p = d / good.name
        shutil.copy(good, p)
        damage(p)
        row = []
        for cmd, argv in (("info", ["info", str(p)]),
                          ("info --verify", ["info", "--verify", str(p)]),
                          ("recon", ["-q", "recon", str(p), "--out", str(d / "r"),
                                     "--motion", "spectral", "--max-blur-px", "8"])):
            kind, code, text = run_cmd(argv, p)
            tally[cmd][kind] += 1
            row.append(f"{cmd}: {kind} ({code})")
            if kind == "traceback":
                tracebacks.append((name, cmd, text[-600:]))
        print(f"{name}: " + "; ".join(row), flush=True)
    print(f"\n{len(kinds)} damaged copies ({len(kinds) - args.flips} named kinds, "
          f"{args.flips} random flips)")
    for cmd, c in tally.items():
        print(f"{cmd}: clear error {c['clear']}, error without the file's name "
              f"{c['unnamed']}, whole {c['whole']}, traceback {c['traceback']}")
    for name, cmd, text in tracebacks:
        print(f"\nTRACEBACK in {cmd} on '{name}':\n{text}")
    return 1 if tracebacks or any(c["unnamed"] for c in tally.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
