"""Fixtures shared by several test folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from hw.sim.genicam_producers import (
    FETCH_COMMAND,
    PRODUCERS_ENV,
    locate_test_producers,
    producers_dir,
)
from tests.ci import missing_install

REPO = Path(__file__).resolve().parents[1]


def fetch_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fetch_genicam_producers", REPO / "scripts" / "fetch_genicam_producers.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def producers() -> dict[str, Path]:
    """viky.cti and TLSimu.cti, fetched when missing (skip, or fail under CI=true, if not)."""
    found = locate_test_producers()
    if set(found) == {"viky", "TLSimu"}:
        return found
    script = fetch_script()
    try:
        return script.fetch_producers(producers_dir())
    except (script.FetchError, OSError) as e:
        problem = str(e).rstrip(".")
    msg = (
        f"The GenTL simulator producers are not available ({problem}). Run `{FETCH_COMMAND}` (or "
        f"set {PRODUCERS_ENV} to a folder holding viky.cti, TLSimu.cti and libVirtualFG.so)."
    )
    missing_install(msg)
