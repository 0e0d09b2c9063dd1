"""Value types shared by the drivers: codes, settings, ROI."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from common.codes import MAX_CHIPS, code_sha256
from hw.errors import CodeError
from hw.types import CameraSettings, Roi, ShutterCode


def test_code_parse_properties_and_hash() -> None:
    code = ShutterCode.parse("1110 0101", 1000, name="bdinr")
    assert code.bits == (1, 1, 1, 0, 0, 1, 0, 1)
    assert (code.n_chips, code.n_open, code.light_fraction) == (8, 5, 5 / 8)
    assert code.period_us == 8000.0
    assert code.as_string() == "11100101"
    np.testing.assert_array_equal(code.as_array(), code.bits)
    assert code.sha256 == hashlib.sha256(b"11100101").hexdigest() == code_sha256(code.bits)
    assert str(code) == "bdinr 11100101 @ 1000 us/chip"
    assert ShutterCode([1, 0, 1], 10) == ShutterCode.parse("101", 10.0)


@pytest.mark.parametrize(
    ("bits", "chip_us", "match"),
    [
        ("", 1000, "1 to"),
        ("1" * (MAX_CHIPS + 1), 1000, "1 to"),
        ("0000", 1000, "no open chip"),
        ("10a1", 1000, "0 and 1"),
        ("101", 0.5, "outside"),
        ("101", float("nan"), "outside"),
    ],
)
def test_bad_codes_raise_code_error(bits: str, chip_us: float, match: str) -> None:
    with pytest.raises(CodeError, match=match):
        ShutterCode.parse(bits, chip_us)


def test_code_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        ShutterCode([1, 2], 1000)


def test_settings_validate_and_round_trip_through_dict() -> None:
    s = CameraSettings(
        exposure_us=8000,
        pixel_format="Mono10",
        roi=Roi(8, 4, 64, 32),
        trigger_mode="On",
        trigger_source="Line1",
        exposure_mode="TriggerWidth",
    )
    assert (s.bit_depth, s.saturation_dn, s.dtype) == (10, 1023, np.dtype(np.uint16))
    assert CameraSettings(pixel_format="Mono8").dtype == np.dtype(np.uint8)
    d = s.to_dict()
    assert d["roi"] == {"offset_x": 8, "offset_y": 4, "width": 64, "height": 32}
    assert CameraSettings.from_dict(d) == s
    assert CameraSettings(roi={"width": 16, "height": 8}).roi == Roi(0, 0, 16, 8)  # type: ignore[arg-type]
    assert s.replace(gain_db=3.0).gain_db == 3.0 and s.gain_db == 0.0
    for bad in (
        {"exposure_us": 0},
        {"gain_db": -1},
        {"pixel_format": "RGB8"},
        {"trigger_mode": "Maybe"},
        {"trigger_source": "Line7"},
        {"exposure_mode": "Auto"},
        {"frame_rate_hz": 0},
    ):
        with pytest.raises(ValueError):
            CameraSettings(**bad)  # type: ignore[arg-type]


def test_roi_needs_non_negative_integers() -> None:
    assert Roi(1.0, 2, 3, 4) == Roi(1, 2, 3, 4)  # type: ignore[arg-type]
    for bad in ({"offset_x": -1}, {"width": 2.5}):
        with pytest.raises(ValueError):
            Roi(**bad)  # type: ignore[arg-type]
