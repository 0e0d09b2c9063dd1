"""The screenshot script runs the real window in Xvfb and writes the three pictures."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ci import missing_install

pytestmark = pytest.mark.slow  # screenshots in Xvfb

REPO = Path(__file__).resolve().parents[2]


def test_screenshot_script_writes_the_main_states(tmp_path: Path) -> None:
    if shutil.which("xvfb-run") is None:
        missing_install("xvfb-run is missing; install the Debian package xvfb (make test does).")
    proc = subprocess.run(
        ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable,
         str(REPO / "scripts" / "gui_screenshots.py"), "--out", str(tmp_path), "--size", "128"],
        capture_output=True, text=True, timeout=300, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("live.png", "code.png", "error.png", "calibration.png"):
        png = tmp_path / name
        assert png.stat().st_size > 10_000, name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(xcb)" in proc.stdout  # a real X window, not the offscreen platform


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    return env
