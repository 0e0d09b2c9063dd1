#!/usr/bin/env python3
"""Put the GenTL simulator producers (viky, TLSimu) in one folder and print their paths.

* ``viky.cti`` is copied from the installed ``genicam`` package (1.6.0 ships it).
* ``TLSimu.cti`` and ``libVirtualFG.so`` (which must sit together) come from the ``genicam==1.5.0``
  wheel: ``pip download --no-deps --only-binary=:all: genicam==1.5.0``, then the two files are
  unzipped. Nothing is installed.

Idempotent: when every file is already there, it only prints the paths (no pip, no network).
Standard library + pip only (it must run before the project is importable). Default folder:
``.producers/`` at the repository root, or ``$BLURVID_GENTL_PRODUCERS``.

Usage::

    .venv/bin/python scripts/fetch_genicam_producers.py [--dest DIR] [--force]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

#: Keep in step with hw/sim/genicam_producers.py (this script cannot import the hw package).
PRODUCERS_ENV = "BLURVID_GENTL_PRODUCERS"
TLSIMU_WHEEL_REQUIREMENT = "genicam==1.5.0"
TLSIMU_FILES = ("TLSimu.cti", "libVirtualFG.so")
VIKY_FILE = "viky.cti"
COMMAND = ".venv/bin/python scripts/fetch_genicam_producers.py"


class FetchError(RuntimeError):
    """The producers could not be obtained; the message says why and what to do."""


def default_dest() -> Path:
    """``$BLURVID_GENTL_PRODUCERS`` or ``<repo>/.producers``."""
    env = os.environ.get(PRODUCERS_ENV, "").strip()
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[1] / ".producers"


def _present(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _install_atomically(data_src: Path | bytes, target: Path) -> None:
    """Write ``target`` via a temporary file in its folder, then rename (never half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            if isinstance(data_src, bytes):
                out.write(data_src)
            else:
                with open(data_src, "rb") as src:
                    shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy_viky(dest: Path) -> Path:
    target = dest / VIKY_FILE
    if _present(target):
        return target
    spec = importlib.util.find_spec("genicam")
    locations = list(spec.submodule_search_locations or []) if spec else []
    source = next((Path(p) / VIKY_FILE for p in locations if (Path(p) / VIKY_FILE).is_file()), None)
    if source is None:
        raise FetchError(
            f"viky.cti was not found in an installed genicam package (Python: {sys.executable}). "
            "Install the project's pinned genicam==1.6.0 (`.venv/bin/pip install genicam==1.6.0`) "
            f"and run `{COMMAND}` with the project's Python."
        )
    _install_atomically(source, target)
    return target


def _fetch_tlsimu(dest: Path, timeout_s: float) -> list[Path]:
    targets = [dest / name for name in TLSIMU_FILES]
    if all(_present(t) for t in targets):
        return targets
    with tempfile.TemporaryDirectory(prefix="genicam-wheel-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", TLSIMU_WHEEL_REQUIREMENT, "-d", tmp,
        ]  # fmt: skip
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise FetchError(
                f"`pip download {TLSIMU_WHEEL_REQUIREMENT}` did not finish in {timeout_s:g} s; "
                "check the network (or a pip proxy) and run it again."
            ) from e
        if run.returncode != 0:
            lines = (run.stderr or run.stdout).strip().splitlines()
            tail = [x for x in lines if x.startswith("ERROR")][-2:] or lines[-3:]
            raise FetchError(
                f"`pip download {TLSIMU_WHEEL_REQUIREMENT}` failed ({' / '.join(tail)}). "
                "It needs network access to PyPI (or a configured index) and a wheel for this "
                f"platform; fetch it elsewhere and put {', '.join(TLSIMU_FILES)} in {dest}."
            )
        wheels = sorted(Path(tmp).glob("genicam-1.5.0-*.whl"))
        if not wheels:
            raise FetchError(f"pip reported success but left no genicam 1.5.0 wheel in {tmp}.")
        with zipfile.ZipFile(wheels[0]) as whl:
            members = {Path(n).name: n for n in whl.namelist() if Path(n).name in TLSIMU_FILES}
            lacking = [n for n in TLSIMU_FILES if n not in members]
            if lacking:
                raise FetchError(
                    f"The wheel {wheels[0].name} holds no {', '.join(lacking)}: this platform's "
                    "genicam 1.5.0 wheel carries no TLSimu simulator (only the Linux x86_64 one "
                    "is known to)."
                )
            for name, target in zip(TLSIMU_FILES, targets, strict=True):
                _install_atomically(whl.read(members[name]), target)
    return targets


def fetch_producers(
    dest: str | Path | None = None, *, force: bool = False, timeout_s: float = 120.0
) -> dict[str, Path]:
    """Make sure viky and TLSimu are in ``dest``; returns ``{"viky": path, "TLSimu": path}``.

    Raises:
        FetchError: a producer could not be obtained (the message says why and what to do).
    """
    folder = Path(dest).expanduser() if dest is not None else default_dest()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FetchError(f"Cannot create the producers folder {folder}: {e}.") from e
    if force:
        for name in (VIKY_FILE, *TLSIMU_FILES):
            (folder / name).unlink(missing_ok=True)
    viky = _copy_viky(folder)
    tlsimu = _fetch_tlsimu(folder, timeout_s)
    return {"viky": viky.resolve(), "TLSimu": tlsimu[0].resolve()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=None,
        help=f"target folder (default: ${PRODUCERS_ENV} or <repo>/.producers)",
    )
    parser.add_argument("--force", action="store_true", help="fetch again even if present")
    args = parser.parse_args(argv)
    try:
        paths = fetch_producers(args.dest, force=args.force)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in paths.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
