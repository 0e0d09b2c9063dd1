"""Where the GenTL simulator producers used by tests and demos live (no camera needed).

Two simulators stand in for a GenICam camera:

* ``viky.cti`` ships inside the installed ``genicam`` package (1.6.0): 3 devices, Mono8/RGBa8,
  AcquisitionFrameRate, no trigger, no timestamps.
* ``TLSimu.cti`` (+ ``libVirtualFG.so``, which must sit beside it) ships only in the ``genicam``
  1.5.0 wheel: 4 devices, TriggerMode/TriggerSource=Software/TriggerSoftware, timestamps.

``scripts/fetch_genicam_producers.py`` puts both in ``.producers/`` at the repository root; the
environment variable ``BLURVID_GENTL_PRODUCERS`` names another folder. This module only *locates*
them (standard library only); it downloads nothing.

>>> sorted(PRODUCER_FILES)
['TLSimu', 'viky']
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

#: Environment variable naming the folder that holds the simulator producers.
PRODUCERS_ENV = "BLURVID_GENTL_PRODUCERS"

#: Simulator name -> the files that must sit together in the producers folder (the .cti first).
#: Keep in step with scripts/fetch_genicam_producers.py (a standalone script that cannot import hw).
PRODUCER_FILES: dict[str, tuple[str, ...]] = {
    "viky": ("viky.cti",),
    "TLSimu": ("TLSimu.cti", "libVirtualFG.so"),
}

#: The command that fetches the simulator producers (named in error messages).
FETCH_COMMAND = ".venv/bin/python scripts/fetch_genicam_producers.py"


def repo_root() -> Path:
    """The repository root (the folder above the ``hw`` package)."""
    return Path(__file__).resolve().parents[2]


def producers_dir() -> Path:
    """The simulator producers' folder: ``$BLURVID_GENTL_PRODUCERS`` or ``<repo>/.producers``."""
    env = os.environ.get(PRODUCERS_ENV, "").strip()
    return Path(env).expanduser() if env else repo_root() / ".producers"


def genicam_package_dir() -> Path | None:
    """The installed ``genicam`` package folder (where ``viky.cti`` ships), or None."""
    spec = importlib.util.find_spec("genicam")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_test_producers(directory: str | Path | None = None) -> dict[str, Path]:
    """Find the simulator producers that are present.

    Args:
        directory: the producers folder (default: :func:`producers_dir`).

    Returns:
        ``{"viky": path, "TLSimu": path}`` for the producers whose files are all present; viky falls
        back to the copy inside the installed ``genicam`` package. Missing ones are left out (see
        :func:`missing_producers_message`).
    """
    folder = Path(directory) if directory is not None else producers_dir()
    found: dict[str, Path] = {}
    for name, files in PRODUCER_FILES.items():
        if all((folder / f).is_file() and (folder / f).stat().st_size > 0 for f in files):
            found[name] = folder / files[0]
    if "viky" not in found:
        pkg = genicam_package_dir()
        if pkg is not None and (pkg / "viky.cti").is_file():
            found["viky"] = pkg / "viky.cti"
    return found


def missing_producers_message(directory: str | Path | None = None) -> str:
    """A sentence saying which simulator producers are missing and how to get them ("" if none)."""
    folder = Path(directory) if directory is not None else producers_dir()
    missing = sorted(set(PRODUCER_FILES) - set(locate_test_producers(folder)))
    if not missing:
        return ""
    return (
        f"The GenTL simulator producer(s) {', '.join(missing)} are not in {folder}. "
        f"Fetch them with `{FETCH_COMMAND}` (downloads the genicam 1.5.0 wheel with pip), or set "
        f"{PRODUCERS_ENV} to a folder that holds "
        + ", ".join(f for name in missing for f in PRODUCER_FILES[name])
        + "."
    )
