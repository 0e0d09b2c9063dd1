"""Tests of recon.codes: metrics against independent computations, search, known codes.

Parsing and hashing are tested in tests/common/test_codes.py.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import pytest

from common.codes import MAX_CHIPS, CodeValidationError, code_string
from recon.codes import (
    KNOWN_CODES,
    CodeMetrics,
    SearchScreen,
    box_code,
    code_metrics,
    describe_code,
    known_code,
    noise_amplification,
    reversal_asymmetry,
    search_codes,
)

RASKAR52 = "1010000111000001010000110011110111010111001001100111"
BDINR8 = "11100101"


def _bits(s: str) -> np.ndarray:
    return np.array([int(ch) for ch in s], dtype=np.float64)


def _dense_min_dft(s: str, n_fft: int = 1 << 16) -> float:
    """min |DFT(c / K)| on a very fine grid (an upper bound of the true minimum)."""
    c = _bits(s)
    return float(np.abs(np.fft.fft(c, n_fft)).min() / c.size)


def _naive_noise_amp(s: str, n: int) -> float:
    """sqrt(trace((A^T A)^-1) / n) from an explicitly built full-convolution matrix."""
    c = _bits(s)
    k = c.size
    a = np.zeros((n + k - 1, n))
    for col in range(n):
        for i in range(k):
            a[col + i, col] = c[i] / c.sum()
    # ||pinv(A)||_F^2 = trace((A^T A)^-1) for a full-column-rank A.
    return math.sqrt(float(np.sum(np.linalg.pinv(a) ** 2)) / n)


def _naive_flatness(s: str, pad_factor: int = 8) -> float:
    c = _bits(s)
    p = np.abs(np.fft.fft(c, pad_factor * c.size)) ** 2
    if p.min() <= 1e-20 * p.mean():
        return 0.0
    return float(np.exp(np.mean(np.log(p))) / np.mean(p))


def _naive_asymmetry(s: str) -> float:
    """min over shifts of |c - shift(reverse c)|^2 / (2 n_open), by brute force."""
    k = len(s)
    c = [int(ch) for ch in s]
    rev = c[::-1]
    best = math.inf
    for shift in range(-k + 1, k):
        padded_c = [0] * (3 * k)
        padded_r = [0] * (3 * k)
        for i in range(k):
            padded_c[k + i] = c[i]
            padded_r[k + i + shift] = rev[i]
        dist = sum((x - y) ** 2 for x, y in zip(padded_c, padded_r, strict=True))
        best = min(best, dist / (2 * sum(c)))
    return best


# ------------------------------------------------------------------------------ reference values


def test_min_dft_reference_values() -> None:
    # RECON.md: 11100101 -> 0.114, with the code divided by its 8 chips.
    bdinr = code_metrics(BDINR8).min_dft
    assert round(bdinr, 3) == 0.114
    assert bdinr == pytest.approx(_dense_min_dft(BDINR8), abs=1e-6)
    # RECON.md: Raskar-52 -> 0.0256. The minimum over all frequencies is 0.025456 (see
    # code_metrics' docstring): it agrees with the quoted figure to within 1.5 units of its last
    # digit, and with an independent fine-grid computation to 1e-6.
    raskar = code_metrics(RASKAR52).min_dft
    assert abs(raskar - 0.0256) < 1.5e-4
    assert raskar == pytest.approx(_dense_min_dft(RASKAR52), abs=1e-6)
    # Dividing by the open chips instead would be twice as large: the convention matters.
    assert abs(raskar * 52 / 26 - 0.0256) > 0.02


def test_min_dft_is_the_minimum_over_all_frequencies() -> None:
    rng = np.random.default_rng(7)
    for k in (5, 13, 16, 29, 40):
        for _ in range(10):
            c = rng.integers(0, 2, k)
            c[0] = c[-1] = 1
            s = "".join(map(str, c))
            value = code_metrics(s).min_dft
            dense = _dense_min_dft(s, n_fft=1 << 17)
            # Polished value: never above a fine grid, and at most a grid step's worth below it.
            assert value <= dense + 1e-12
            assert value >= dense - 2e-5
            # ...and independent of the coarse grid it started from.
            assert code_metrics(s, pad_factor=4).min_dft == pytest.approx(value, abs=2e-3)


def test_known_metrics_of_bdinr8() -> None:
    m = code_metrics(BDINR8)
    assert (m.n_chips, m.n_open, m.light_fraction) == (8, 5, 0.625)
    assert m.spectral_flatness == pytest.approx(_naive_flatness(BDINR8), rel=1e-9)
    assert m.noise_amplification == pytest.approx(_naive_noise_amp(BDINR8, 16), rel=1e-9)
    assert m.reversal_asymmetry == pytest.approx(0.2)  # best overlap with its reverse: 4 of 5
    assert m.sha256 == hashlib.sha256(b"11100101").hexdigest()
    d = m.to_dict()
    assert set(d) == {
        "n_chips", "n_open", "light_fraction", "min_dft", "spectral_flatness",
        "noise_amplification", "reversal_asymmetry", "sha256",
    }  # fmt: skip
    assert d["min_dft"] == m.min_dft
    with pytest.raises(AttributeError):
        m.n_open = 3  # type: ignore[misc]


# ------------------------------------------------------------------------------ box vs good codes


@pytest.mark.parametrize(("box", "good"), [(8, BDINR8), (52, RASKAR52)])
def test_box_codes_are_much_worse(box: int, good: str) -> None:
    b = code_metrics(box_code(box))
    g = code_metrics(good)
    assert b.min_dft < 1e-12
    assert b.spectral_flatness == 0.0
    assert g.spectral_flatness > 0.4
    assert b.noise_amplification > 2.5 * g.noise_amplification
    assert b.noise_amplification == pytest.approx(_naive_noise_amp("1" * box, 2 * box), rel=1e-8)


def test_noise_amplification_matches_direct_construction() -> None:
    for s, n in [("1101", 6), ("1", 5), ("10011", 9), (BDINR8, 3), ("111", 1)]:
        assert noise_amplification(s, n_signal=n) == pytest.approx(_naive_noise_amp(s, n), rel=1e-9)
    assert noise_amplification("1") == 1.0
    # The default signal length is twice the code length.
    assert noise_amplification("10011") == pytest.approx(_naive_noise_amp("10011", 10), rel=1e-9)
    with pytest.raises(CodeValidationError, match="n_signal"):
        noise_amplification("101", n_signal=0)


# ------------------------------------------------------------------------------ reversal asymmetry


def test_palindromes_have_zero_asymmetry() -> None:
    rng = np.random.default_rng(3)
    pals = ["1", "11", "101", "1101011", "1" * 9, RASKAR52[:26] + RASKAR52[:26][::-1]]
    for _ in range(20):
        half = rng.integers(0, 2, int(rng.integers(1, 20)))
        half[0] = 1
        pals.append(
            "".join(map(str, np.concatenate([half, half[::-1][int(rng.integers(0, 2)) :]])))
        )
    for p in pals:
        assert p == p[::-1]
        assert reversal_asymmetry(p) == 0.0
    # A reverse that is only a shifted copy is just as ambiguous.
    assert reversal_asymmetry("0110100") == pytest.approx(_naive_asymmetry("0110100"))
    assert reversal_asymmetry("1100") == 0.0
    assert reversal_asymmetry("1110") == _naive_asymmetry("1110") == 0.0


def test_asymmetry_matches_brute_force() -> None:
    assert reversal_asymmetry(BDINR8) > 0
    for s in (BDINR8, RASKAR52, "1000110101", "1101", "10010111"):
        value = reversal_asymmetry(s)
        assert value == pytest.approx(_naive_asymmetry(s), abs=1e-12)
        assert 0.0 < value <= 1.0


# ------------------------------------------------------------------------------ known codes


def test_known_codes() -> None:
    assert KNOWN_CODES["bdinr8"] == BDINR8
    assert KNOWN_CODES["raskar52"] == RASKAR52
    assert code_string(known_code("bdinr8")) == BDINR8
    assert code_string(known_code(" RASKAR52 ")) == RASKAR52
    assert known_code("box8").tolist() == [1] * 8
    assert box_code(3).dtype == np.uint8
    with pytest.raises(CodeValidationError, match="bdinr8, raskar52, and box<N>"):
        known_code("nope")
    with pytest.raises(CodeValidationError, match="1 to 1024"):
        known_code("box0")
    with pytest.raises(CodeValidationError, match="1 to 1024"):
        box_code(MAX_CHIPS + 1)


def test_describe_code() -> None:
    text = describe_code(BDINR8, name="bdinr8")
    assert text.splitlines()[0] == "bdinr8: 11100101"
    assert "chips: 8, open: 5, light fraction: 62.5 %" in text
    assert "min |DFT|: 0.1141" in text
    assert hashlib.sha256(b"11100101").hexdigest() in text
    assert "ambiguous" in describe_code("101")
    long = describe_code(RASKAR52 * 2)
    assert long.splitlines()[1].strip() == (RASKAR52 * 2)[64:]


# ------------------------------------------------------------------------------ search


def _naive_search(n: int, objective: str, n_open: int | None = None) -> list[tuple[str, float]]:
    """Every code with first/last chip open, one per reversal pair, scored independently."""
    out = []
    for mid in itertools.product("01", repeat=n - 2):
        s = "1" + "".join(mid) + "1"
        if s < s[::-1] or (n_open is not None and s.count("1") != n_open):
            continue
        if objective == "min_dft":
            value = _dense_min_dft(s, n_fft=1 << 14)
        elif objective == "flatness":
            value = _naive_flatness(s)
        else:
            value = _naive_noise_amp(s, 2 * n)
        out.append((s, value))
    lower_better = objective == "noise_amplification"
    return sorted(out, key=lambda sv: sv[1] if lower_better else -sv[1])


def _metric(m: CodeMetrics, objective: str) -> float:
    return m.spectral_flatness if objective == "flatness" else getattr(m, objective)


@pytest.mark.parametrize("objective", ["min_dft", "noise_amplification", "flatness"])
def test_exhaustive_search_matches_naive_loop(objective: str) -> None:
    n = 10
    found = search_codes(n, objective=objective, top=12)
    naive = _naive_search(n, objective)
    assert len(found) == 12
    values = [_metric(m, objective) for _, m in found]
    tol = 2e-5 if objective == "min_dft" else 1e-9
    np.testing.assert_allclose(values, [v for _, v in naive[:12]], atol=tol)
    naive_of = dict(naive)
    for bits, m in found:
        s = code_string(bits)
        assert s[0] == s[-1] == "1" and len(s) == n
        assert _metric(m, objective) == pytest.approx(naive_of[s], abs=tol)
        assert m == code_metrics(bits)
    step = np.diff(values)
    assert np.all(step >= 0) if objective == "noise_amplification" else np.all(step <= 0)


def test_exhaustive_search_with_fixed_open_chips() -> None:
    found = search_codes(11, n_open=6, objective="min_dft", top=5)
    naive = _naive_search(11, "min_dft", n_open=6)
    np.testing.assert_allclose([m.min_dft for _, m in found], [v for _, v in naive[:5]], atol=2e-5)
    assert all(m.n_open == 6 for _, m in found)


def test_best_8_chip_code_is_at_least_bdinr() -> None:
    found = search_codes(8, top=3)
    assert found[0][1].min_dft >= code_metrics(BDINR8).min_dft - 1e-12
    for bits, m in found:
        assert bits[0] == bits[-1] == 1
        assert m.n_chips == 8
    # Reversal twins share every metric but the direction: by default only one is listed.
    twins = search_codes(8, top=2, collapse_reversed=False)
    a, b = (code_string(bits) for bits, _ in twins)
    assert a == b[::-1]
    assert twins[0][1].min_dft == pytest.approx(twins[1][1].min_dft, abs=1e-12)


def test_require_asymmetric_drops_palindromes() -> None:
    every = search_codes(7, objective="flatness", top=50)
    assert any(code_string(b) == code_string(b)[::-1] for b, _ in every)
    asym = search_codes(7, objective="flatness", top=50, require_asymmetric=True)
    assert asym and all(m.reversal_asymmetry > 0 for _, m in asym)
    assert search_codes(2, require_asymmetric=True) == []
    assert code_string(search_codes(1)[0][0]) == "1"


def test_random_search_beyond_exhaustive_max() -> None:
    found = search_codes(30, exhaustive_max=24, n_random=3000, top=5, seed=1)
    assert len(found) == 5
    for bits, m in found:
        assert bits.dtype == np.uint8 and bits.shape == (30,)
        assert bits[0] == bits[-1] == 1
        assert set(np.unique(bits)) <= {0, 1}
        assert m == code_metrics(bits)
    values = [m.min_dft for _, m in found]
    assert values == sorted(values, reverse=True)
    assert len({code_string(b) for b, _ in found}) == 5
    again = search_codes(30, exhaustive_max=24, n_random=3000, top=5, seed=1)
    assert [code_string(b) for b, _ in again] == [code_string(b) for b, _ in found]
    fixed = search_codes(40, n_open=20, n_random=2000, top=3, objective="noise_amplification")
    assert all(m.n_open == 20 and m.n_chips == 40 for _, m in fixed)
    nas = [m.noise_amplification for _, m in fixed]
    assert nas == sorted(nas)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_chips": 0}, "n_chips"),
        ({"n_chips": 8, "objective": "sharpness"}, "min_dft, noise_amplification, flatness"),
        ({"n_chips": 8, "n_open": 1}, "n_open=1 is impossible"),
        ({"n_chips": 8, "n_open": 9}, "n_open=9 is impossible"),
        ({"n_chips": 8, "top": 0}, "top"),
        ({"n_chips": 40, "exhaustive_max": 40}, "exhaustive_max=40 is too large"),
        ({"n_chips": 8, "pad_factor": 0}, "pad_factor"),
    ],
)
def test_search_argument_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(CodeValidationError, match=match):
        search_codes(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_chips", [12, 80])  # matmul path and rfft path
def test_search_screen_scores_match_their_definitions(n_chips: int) -> None:
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, (20, n_chips)).astype(np.uint8)
    bits[:, 0] = bits[:, -1] = 1
    power = np.abs(np.fft.fft(bits.astype(np.float64), 8 * n_chips, axis=1)) ** 2
    ok = power.min(axis=1) > 1e-2  # float32 cannot follow a spectrum into its near-zeros
    assert ok.sum() >= 10
    bits, power = bits[ok], power[ok]
    expected = {
        "min_dft": power.min(axis=1),
        "noise_amplification": -np.sum(1.0 / power, axis=1),  # lower noise -> higher score
        "flatness": 8 * n_chips * np.log(np.exp(np.log(power).mean(1)) / power.mean(1)),
    }
    for objective, want in expected.items():
        got = SearchScreen(n_chips, objective, 8)(bits)
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-3)
