"""Shared fixtures for the firmware tests: build the firmware and the simavr harness once per
session; start one simulated board per test (no shared paths, so tests may run in parallel).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hw.sim.avr import SimulatedArduino
from tests.firmware.toolchain import (
    APT_FIRMWARE,
    FIRMWARE_ELF,
    make,
    missing_firmware_tools,
    require,
)


@pytest.fixture(scope="session")
def firmware_elf() -> Path:
    """The shutter firmware and the harness, built once per session."""
    require(missing_firmware_tools(), APT_FIRMWARE)
    make("all", "sim")
    assert FIRMWARE_ELF.is_file()
    return FIRMWARE_ELF


@pytest.fixture
def board(firmware_elf: Path) -> Iterator[SimulatedArduino]:
    """A simulated Arduino running the real firmware, paced to real time."""
    with SimulatedArduino(firmware_elf) as b:
        yield b
