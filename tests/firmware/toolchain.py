"""Toolchain checks and `make -C firmware` for the firmware tests.

A missing toolchain skips the tests on a developer machine and fails them under ``CI=true``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hw.sim.avr import REPO_ROOT
from tests.ci import missing_install

FIRMWARE_DIR = REPO_ROOT / "firmware"
BUILD_DIR = FIRMWARE_DIR / "build"
FIRMWARE_ELF = BUILD_DIR / "blurvid_shutter.elf"
APT_FIRMWARE = "gcc-avr avr-libc arduino-core-avr libsimavr-dev libelf-dev simavr"
APT_FUZZ = "clang libclang-rt-14-dev"


def require(missing: list[str], packages: str) -> None:
    """Skip (or, under CI=true, fail) when tools are missing, naming the packages to install."""
    if not missing:
        return
    msg = (
        f"missing {', '.join(missing)}; install them with: sudo apt-get install -y {packages} "
        "(or run `make test`, which installs them)"
    )
    missing_install(msg)


def missing_firmware_tools() -> list[str]:
    missing = [t for t in ("cc", "avr-gcc", "avr-objcopy", "make") if not shutil.which(t)]
    for path, what in (
        ("/usr/lib/avr/include/avr/io.h", "avr-libc"),
        ("/usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h", "arduino-core-avr"),
        ("/usr/include/simavr/sim_avr.h", "libsimavr-dev"),
        ("/usr/include/libelf.h", "libelf-dev"),
    ):
        if not Path(path).exists():
            missing.append(what)
    return missing


def make(*targets: str, timeout: float = 600.0, **variables: str) -> subprocess.CompletedProcess:
    """``make -C firmware TARGETS``; fails the test with make's output on an error."""
    cmd = ["make", "-C", str(FIRMWARE_DIR), *targets, *(f"{k}={v}" for k, v in variables.items())]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        pytest.fail(f"`{' '.join(cmd[1:])}` failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res
