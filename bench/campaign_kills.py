"""Kill campaign: SIGKILL `blurvid-rig capture` at random moments and check what is left.

    python bench/campaign_kills.py [--kills 20] [--out out/campaign_kills]

Each round starts a capture of many frames on the simulated rig in a subprocess and kills it
(SIGKILL: no cleanup runs): every other round 0-300 ms after the first file appears in the folder
(the file's first moments), the others 1.5-4 s in (well into the recording), seeded. Then it
looks at the folder:

- **no file**: the writer died before the capture file existed (a hidden ``.creating`` file may
  remain; nothing was recorded);
- **openable**: the ``.partial`` (or final) file opens with ``CaptureFile.open``;
- **intact**: every recovered frame reads back (``verify``) and its frame log is in order.

Prints one line per kill and the tallies; exits 1 if any file exists that does not open or is
not intact.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from blurvid_rig.files.capture import CaptureFile  # noqa: E402
from blurvid_rig.files.h5io import CaptureFormatError  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("out/campaign_kills"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    rng = random.Random(args.seed)
    cli = [sys.executable, "-m", "blurvid_rig.cli", "-q", "capture", "--sim", "--count", "100000",
           "--width", "128", "--height", "96", "--chip-us", "200"]
    tally = {"kills": 0, "no file": 0, "openable": 0, "intact": 0, "broken": 0}
    env = os.environ | {"PYTHONPATH": str(REPO)}
    for k in range(args.kills):
        d = args.out / f"{k:02d}"
        d.mkdir(parents=True)
        proc = subprocess.Popen([*cli, "--out", str(d)], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.monotonic()
        if k % 2 == 0:
            # early: within 0-300 ms of the first file appearing (its creation, the rename to
            # .partial, the first frames)
            while not any(d.iterdir()) and proc.poll() is None and time.monotonic() - t0 < 30:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            # late: seconds into the recording
            time.sleep(rng.uniform(1.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        delay = time.monotonic() - t0
        proc.wait()
        tally["kills"] += 1
        files = sorted(p for p in d.iterdir() if p.name.endswith((".h5", ".h5.partial")))
        if not files:
            hidden = [p.name for p in d.iterdir()]
            tally["no file"] += 1
            print(f"kill {k} at {delay:.2f} s: no capture file ({hidden or 'nothing'})")
            continue
        (path,) = files
        try:
            with CaptureFile.open(path) as c:
                tally["openable"] += 1
                bad = c.verify()
                fid = np.asarray(c.frame_log["frame_id"])
                ordered = bool(np.all(np.diff(fid) > 0)) if len(fid) > 1 else True
                if not bad and ordered:
                    tally["intact"] += 1
                    state = "intact"
                else:
                    tally["broken"] += 1
                    state = f"NOT intact (damaged {bad[:3]}, ordered {ordered})"
                print(f"kill {k} at {delay:.2f} s: {path.name}, {c.n_frames} frames, {state}; "
                      f"{c.recovery_note}")
        except CaptureFormatError as e:
            tally["broken"] += 1
            print(f"kill {k} at {delay:.2f} s: {path.name} does NOT open: {e}")
    print("\n" + ", ".join(f"{k} {v}" for k, v in tally.items()))
    return 1 if tally["broken"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
