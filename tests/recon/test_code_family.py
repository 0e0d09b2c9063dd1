"""Tests of recon.code_family: membership with reasons, sampling, the held-out codes."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from recon.code_family import CODE_FAMILY, UNSEEN_CODES, is_in_family, sample_code
from recon.codes import KNOWN_CODES


def test_family_membership_and_reasons() -> None:
    assert KNOWN_CODES["bdinr8"] == CODE_FAMILY.anchor == "11100101"
    ok, why = is_in_family("11100101")
    assert ok and "anchor" in why and "62.5 %" in why
    ok, why = is_in_family("1101")
    assert not ok and "4 chips" in why and "8 to 32" in why
    ok, why = is_in_family("1" * 40)
    assert not ok and "40 chips" in why
    ok, why = is_in_family("11111111")
    assert not ok and "box exposure" in why
    ok, why = is_in_family("00000000")
    assert not ok and "no open chip" in why
    ok, why = is_in_family("11000000")
    assert not ok and "2 of 8 chips (25 %)" in why and "4 to 5" in why
    ok, why = is_in_family("1102")
    assert not ok and "not a binary code" in why
    for code in UNSEEN_CODES:
        ok, why = is_in_family(code)
        assert ok and "held-out" in why, code
        assert CODE_FAMILY.is_held_out(code[::-1])  # a code and its reverse go together
    assert {len(c) for c in UNSEEN_CODES} == {8, 12, 16, 20, 24, 32}


def test_sample_code_stays_in_family_and_skips_held_out_codes() -> None:
    g = torch.Generator().manual_seed(0)
    codes = [sample_code(g) for _ in range(600)]
    strings = ["".join(map(str, c)) for c in codes]
    assert all(is_in_family(c)[0] for c in codes)
    assert not any(CODE_FAMILY.is_held_out(c) for c in codes)
    assert not set(strings) & set(UNSEEN_CODES)
    share = Counter(strings)["11100101"] / len(codes)
    assert 0.15 < share < 0.26
    assert len({len(c) for c in codes}) >= 20
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert [sample_code(g1) for _ in range(20)] == [sample_code(g2) for _ in range(20)]
    assert all(len(sample_code(g, [16, 20])) in (16, 20) for _ in range(30))
    with pytest.raises(ValueError, match="within 8 to 32"):
        sample_code(g, [4])
