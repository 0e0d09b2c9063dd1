"""Tests of common.codes: parsing, validation and the SHA-256 of a code (shared by hw and recon)."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from common.codes import (
    MAX_CHIPS,
    CodeValidationError,
    code_sha256,
    code_string,
    parse_code,
    validate_chip_us,
)
from hw.types import ShutterCode

RASKAR52 = "1010000111000001010000110011110111010111001001100111"
BDINR8 = "11100101"


def test_hash_matches_hw_and_hashlib() -> None:
    for s in (BDINR8, RASKAR52, "1", "0000", "1" * MAX_CHIPS):
        expected = hashlib.sha256(s.encode("ascii")).hexdigest()
        assert code_sha256(s) == expected
        assert code_sha256([int(ch) for ch in s]) == expected
        assert code_sha256(np.array([int(ch) for ch in s], dtype=np.uint8)) == expected
        if "1" in s:
            assert ShutterCode.parse(s, 1000).sha256 == expected


def test_parse_accepts_strings_sequences_arrays() -> None:
    expected = [1, 1, 1, 0, 0, 1, 0, 1]
    forms = ["11100101", " 1110 0101 ", "1110_0101", expected, tuple(expected)]
    forms += [np.array(expected), np.array(expected, dtype=bool), [1.0, 1, 1, 0, 0, 1, 0, 1]]
    for form in forms:
        out = parse_code(form)
        assert out.dtype == np.uint8
        assert out.tolist() == expected
    assert code_string(parse_code(RASKAR52)) == RASKAR52


@pytest.mark.parametrize(
    ("code", "match"),
    [
        ("", "empty"),
        ([], "empty"),
        ("1" * (MAX_CHIPS + 1), "1025 chips, too long"),
        ("0000", "no open chip"),
        ([0, 0, 0], "no open chip"),
        ("1102", "'2'"),
        ("1o1", "'o'"),
        ([1, 2, 0], "chip 1 = 2"),
        ([1, 0.5], "chip 1 = 0.5"),
        (np.ones((2, 4)), "shape"),
        (["1", "0"], "numbers 0 or 1"),
        (b"101", "bytes"),
    ],
)
def test_parse_errors_name_the_problem(code: object, match: str) -> None:
    with pytest.raises(CodeValidationError, match=match) as info:
        parse_code(code)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert str(info.value).endswith(".")


def test_chip_us_validation() -> None:
    assert validate_chip_us(1) == 1.0
    assert validate_chip_us(1e6) == 1e6
    assert validate_chip_us(50, lo=10, hi=100) == 50.0
    for bad in (0.5, 0, -3, 1e6 + 1, math.nan, math.inf):
        with pytest.raises(CodeValidationError, match="out of range; choose a value between 1"):
            validate_chip_us(bad)
    with pytest.raises(CodeValidationError, match="between 10 and 100"):
        validate_chip_us(5, lo=10, hi=100)
    for bad in ("fast", None, True):
        with pytest.raises(CodeValidationError, match="not a number"):
            validate_chip_us(bad)  # type: ignore[arg-type]
