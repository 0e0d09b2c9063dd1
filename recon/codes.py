"""Binary exposure codes: quality metrics, search and the known codes.

A code is a 1-D ``uint8`` array of chips, 1 = shutter open, 0 = closed, read by
:func:`common.codes.parse_code` (parsing, validation and the code's SHA-256 live in
:mod:`common.codes`, shared with ``hw``). This module is pure numpy: it imports nothing from
``hw`` or the application, so the CLI, the GUI's code designer and the reconstruction can all use
it.

Conventions of the metrics (see :func:`code_metrics` for the details):

* The blur kernel of a code ``c`` of ``K`` chips is ``c / K`` for the spectral metrics (BDINR's
  convention: a blur is ``sum(c_k x_k) / K``), and ``c / n_open`` for the noise amplification (a
  static scene keeps its brightness, as in ``recon.functional``'s ``"open"`` normalisation).
* Spectra are sampled on an ``n_fft = pad_factor * K`` point DFT of the zero-padded code
  (``pad_factor = 8`` by default); min |DFT| is then polished to the minimum over all frequencies.
* The noise amplification is computed for a 1-D signal of ``n = 2 * K`` samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from common.codes import (
    MAX_CHIPS,
    CodeLike,
    CodeValidationError,
    code_sha256,
    code_string,
    parse_code,
)

#: Oversampling of the DFT grid of the zero-padded code: ``n_fft = DEFAULT_PAD_FACTOR * n_chips``.
DEFAULT_PAD_FACTOR = 8
#: The noise amplification is computed for a signal of ``NOISE_SIGNAL_FACTOR * n_chips`` samples.
NOISE_SIGNAL_FACTOR = 2
#: Objectives understood by :func:`search_codes`.
OBJECTIVES: tuple[str, ...] = ("min_dft", "noise_amplification", "flatness")
#: Largest ``exhaustive_max`` accepted by :func:`search_codes` (2**28 codes already take minutes).
EXHAUSTIVE_LIMIT = 30

#: Named codes, as '0'/'1' strings. ``box<N>`` names (an always-open exposure) are accepted too.
KNOWN_CODES: dict[str, str] = {
    # BDINR (IJCV 2024): the fixed global 8-chip code, one chip per 240 fps frame.
    "bdinr8": "11100101",
    # Raskar, Agrawal & Tumblin 2006, "Coded exposure photography": 52 chips, 50 % light.
    "raskar52": "1010000111000001010000110011110111010111001001100111",
}

# Power values below this fraction of the mean power are exact spectral zeros (flatness 0).
_ZERO_POWER_REL = 1e-20
# Rough float64 flop budget for the exact noise amplification of the candidates of one search.
_EXACT_NA_FLOPS = 1e10

# --- Known codes -------------------------------------------------------------------------------


def box_code(n: int) -> np.ndarray:
    """An ordinary (box) exposure of ``n`` chips, all open.

    Args:
        n: number of chips, 1 to ``MAX_CHIPS``.

    Returns:
        ``n`` ones as ``uint8``.

    Raises:
        CodeValidationError: ``n`` out of range.

    >>> box_code(4).tolist()
    [1, 1, 1, 1]
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= MAX_CHIPS:
        raise CodeValidationError(
            f"A box code needs a whole number of chips from 1 to {MAX_CHIPS}; got {n!r}."
        )
    return np.ones(int(n), dtype=np.uint8)


def known_code(name: str) -> np.ndarray:
    """Look up a named code.

    Args:
        name: a key of :data:`KNOWN_CODES` or ``"box<N>"`` (e.g. ``"box8"``); case and surrounding
            whitespace are ignored.

    Returns:
        The code as a ``uint8`` array.

    Raises:
        CodeValidationError: unknown name (the message lists the known ones) or a bad box length.

    >>> code_string(known_code("bdinr8"))
    '11100101'
    """
    key = str(name).strip().lower()
    if key in KNOWN_CODES:
        return parse_code(KNOWN_CODES[key])
    if key.startswith("box") and key[3:].isdigit():
        return box_code(int(key[3:]))
    known = ", ".join(sorted(KNOWN_CODES))
    raise CodeValidationError(
        f"Unknown code name {name!r}; known names are {known}, and box<N> for an always-open "
        f"exposure of N chips (1 to {MAX_CHIPS}), e.g. box8. A code can also be given as a "
        "'0'/'1' string."
    )


# --- Metrics -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeMetrics:
    """Quality figures of an exposure code; see :func:`code_metrics` for the definitions.

    Attributes:
        n_chips: number of chips K.
        n_open: number of open chips.
        light_fraction: ``n_open / K``.
        min_dft: min |DFT| of the zero-padded code ``c / K`` (higher is better).
        spectral_flatness: geometric / arithmetic mean of the power spectrum, in [0, 1].
        noise_amplification: RMS gain of white noise through least-squares deblurring (lower is
            better, 1 is the ideal of a one-chip code).
        reversal_asymmetry: 0 for codes whose reverse is a shifted copy (palindromes), up to 1.
        sha256: :func:`code_sha256` of the code.
    """

    n_chips: int
    n_open: int
    light_fraction: float
    min_dft: float
    spectral_flatness: float
    noise_amplification: float
    reversal_asymmetry: float
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """The metrics as a plain ``dict`` (JSON and HDF5 attribute friendly).

        Returns:
            Field name to value (ints, floats, the hash string).
        """
        return asdict(self)


def _check_pad_factor(pad_factor: int) -> int:
    if isinstance(pad_factor, bool) or not isinstance(pad_factor, int | np.integer):
        raise CodeValidationError(f"pad_factor must be a whole number >= 1; got {pad_factor!r}.")
    if pad_factor < 1:
        raise CodeValidationError(f"pad_factor must be at least 1; got {pad_factor}.")
    return int(pad_factor)


def _half_weights(n_fft: int) -> np.ndarray:
    """Weights turning sums over rfft bins into sums over the full DFT."""
    w = np.full(n_fft // 2 + 1, 2.0)
    w[0] = 1.0
    if n_fft % 2 == 0:
        w[-1] = 1.0
    return w


def _autocorr(bits2d: np.ndarray) -> np.ndarray:
    """Integer autocorrelation ``r[d] = sum_j c[j] c[j + d]``, ``d = 0..K-1``, as float64 rows."""
    k = bits2d.shape[1]
    spec = np.fft.rfft(bits2d.astype(np.float64), n=2 * k, axis=1)
    r = np.fft.irfft(spec.real**2 + spec.imag**2, n=2 * k, axis=1)[:, :k]
    return np.rint(r)  # exact: the products of 0/1 chips are integers


def _refine_min_power(r: np.ndarray, f0: np.ndarray, h: float, steps: int = 6) -> np.ndarray:
    """Polish grid minima of ``P(f) = |sum_k c_k exp(-2 pi i f k)|^2`` by bracketed Newton steps.

    Args:
        r: autocorrelation of the code of each candidate, ``(M, K)``.
        f0: grid frequency of each candidate (cycles per chip), ``(M,)``.
        h: grid spacing; each candidate stays in ``[f0 - h, f0 + h]`` clipped to ``[0, 1/2]``.
        steps: Newton steps.

    Returns:
        The smallest ``P`` evaluated for each candidate (never above its grid value).
    """
    d = np.arange(r.shape[1], dtype=np.float64)
    a0 = r * np.where(d == 0, 1.0, 2.0)  # P(f) = sum_d a0[d] cos(2 pi f d)
    a1 = a0 * (2 * np.pi * d)
    a2 = a1 * (2 * np.pi * d)
    lo = np.maximum(f0 - h, 0.0)
    hi = np.minimum(f0 + h, 0.5)
    f = f0.copy()
    best = np.full(f.shape, np.inf)
    for step in range(steps + 1):
        phase = (2 * np.pi) * f[:, None] * d[None, :]
        cos = np.cos(phase)
        p = np.einsum("md,md->m", a0, cos)
        best = np.minimum(best, p)
        if step == steps:
            break
        dp = -np.einsum("md,md->m", a1, np.sin(phase))
        d2p = -np.einsum("md,md->m", a2, cos)
        ok = d2p > 0
        f = np.where(ok, np.clip(f - dp / np.where(ok, d2p, 1.0), lo, hi), f)
    return best


def _min_power_batch(bits2d: np.ndarray, power: np.ndarray, n_fft: int) -> np.ndarray:
    """Minimum over all frequencies of ``|DFT(c)|^2``, from its grid samples ``power``.

    Every local minimum of the half-spectrum grid is polished (see :func:`_refine_min_power`), so
    a dip that falls between grid points is found as long as the grid shows its basin.
    """
    left = np.concatenate([power[:, 1:2], power[:, :-1]], axis=1)  # P is even about f = 0
    if n_fft % 2 == 0:
        right = np.concatenate([power[:, 1:], power[:, -2:-1]], axis=1)  # and about f = 1/2
    else:
        right = np.concatenate([power[:, 1:], np.full((power.shape[0], 1), np.inf)], axis=1)
    code_idx, bin_idx = np.nonzero((power <= left) & (power <= right))
    r = _autocorr(bits2d)
    out = power.min(axis=1)
    per = max(1, (1 << 21) // r.shape[1])  # candidates per batch, bounds memory
    for s in range(0, code_idx.size, per):
        ci, bi = code_idx[s : s + per], bin_idx[s : s + per]
        polished = _refine_min_power(r[ci], bi / n_fft, 1.0 / n_fft)
        np.minimum.at(out, ci, polished)
    return np.maximum(out, 0.0)


def _spectral_batch(bits2d: np.ndarray, pad_factor: int) -> tuple[np.ndarray, np.ndarray]:
    """min |DFT| of ``c / K`` (over all frequencies) and spectral flatness, for codes in rows."""
    k = bits2d.shape[1]
    n_fft = pad_factor * k
    spec = np.fft.rfft(bits2d.astype(np.float64), n=n_fft, axis=1)
    power = spec.real**2 + spec.imag**2
    min_dft = np.sqrt(_min_power_batch(bits2d, power, n_fft)) / k
    w = _half_weights(n_fft)
    mean_p = power @ w / n_fft
    zero = power.min(axis=1) <= _ZERO_POWER_REL * mean_p
    with np.errstate(divide="ignore"):
        log_gm = np.log(np.maximum(power, np.finfo(np.float64).tiny)) @ w / n_fft
    flat = np.where(zero, 0.0, np.exp(log_gm) / mean_p)
    return min_dft, np.minimum(flat, 1.0)


def _normal_matrices(bits2d: np.ndarray, n_signal: int) -> np.ndarray:
    """``A^T A`` (Toeplitz) of the full convolution by ``c / n_open`` for codes in rows."""
    k = bits2d.shape[1]
    n_open = bits2d.sum(axis=1, dtype=np.float64)
    # (A^T A)[i, j] = r[|i - j|] / n_open^2: the autocorrelation is its whole content.
    r = np.zeros((bits2d.shape[0], max(n_signal, k)))
    r[:, :k] = _autocorr(bits2d) / (n_open * n_open)[:, None]
    idx = np.abs(np.arange(n_signal)[:, None] - np.arange(n_signal)[None, :])
    return r[:, idx]


def _noise_amplification_batch(bits2d: np.ndarray, n_signal: int) -> np.ndarray:
    out = np.empty(bits2d.shape[0])
    per = max(1, int(2**23 // (n_signal * n_signal)))  # ~64 MiB of matrices at a time
    for s in range(0, bits2d.shape[0], per):
        # A full convolution by a nonzero kernel has full column rank: A^T A is never singular.
        inv = np.linalg.inv(_normal_matrices(bits2d[s : s + per], n_signal))
        out[s : s + per] = np.sqrt(np.maximum(np.trace(inv, axis1=1, axis2=2), 0.0) / n_signal)
    return out


def noise_amplification(bits: CodeLike, *, n_signal: int | None = None) -> float:
    """Least-squares noise amplification of deblurring a 1-D signal blurred by the code.

    ``A`` is the full convolution matrix (``(n + K - 1) x n``) of a length-``n`` signal with the
    kernel ``c / n_open``, so every row that sees the whole code sums to 1 and a static scene keeps
    its brightness. White noise of unit variance on the measurement comes out of the least-squares
    inverse with per-sample RMS ``sqrt(trace((A^T A)^-1) / n)``, the returned value. A one-chip code
    gives exactly 1; a box exposure grows with ``n`` because only the signal ends constrain its
    spectral zeros. Two caveats: the light lost by closed chips is not counted (compare codes at
    equal ``light_fraction``), and with a short signal the ends carry much information, so sparse
    codes such as ``10000001`` (a spectral zero, min |DFT| 0) score well (1.71 at ``n = 16``
    against 3.12 for ``11100101``); a longer ``n_signal`` penalises spectral zeros more.

    Args:
        bits: the code.
        n_signal: signal length ``n``; default ``NOISE_SIGNAL_FACTOR * K`` (twice the code length).

    Returns:
        The RMS noise gain.

    Raises:
        CodeValidationError: invalid code or ``n_signal < 1``.

    >>> noise_amplification("1")
    1.0
    """
    c = parse_code(bits)
    n = NOISE_SIGNAL_FACTOR * c.size if n_signal is None else n_signal
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise CodeValidationError(f"n_signal must be a whole number >= 1; got {n_signal!r}.")
    return float(_noise_amplification_batch(c[None, :], int(n))[0])


def reversal_asymmetry(bits: CodeLike) -> float:
    """How differently the code blurs forward and backward motion, in [0, 1].

    Motion in the opposite direction blurs with the reversed code, and for linear motion a shift of
    the kernel is only a shift of the image. So the score is the smallest squared distance between
    the code and any shift of its reverse, relative to the energy of the code:
    ``min_s |c - shift_s(reverse(c))|^2 / (2 n_open) = 1 - max_s (c * c)[s] / n_open`` (``*`` is
    the full convolution, which is the cross-correlation of ``c`` with its reverse). It is exactly
    0 when the reverse is a shifted copy (every palindrome), and 1 would mean the code never
    overlaps its reverse. Magnitude-spectrum metrics are blind to this: a code and its reverse have
    the same |DFT|.

    Args:
        bits: the code.

    Returns:
        The asymmetry score.

    Raises:
        CodeValidationError: invalid code.

    >>> reversal_asymmetry("1101011"), round(reversal_asymmetry("11100101"), 3)
    (0.0, 0.2)
    """
    c = parse_code(bits).astype(np.int64)
    return float(1.0 - np.convolve(c, c).max() / c.sum())


#: Below this min |DFT| (of ``code / K``) the coded blur erases spatial frequencies: it cannot
#: be inverted (``11111111``: 0; ``1101001110110001``: 0.0003; Raskar's 52-chip code: 0.026).
MIN_INVERTIBLE_DFT = 0.005


def invertibility_warning(bits: CodeLike) -> str | None:
    """A sentence when a code's blur cannot be inverted (min |DFT| below
    :data:`MIN_INVERTIBLE_DFT`), else None.

    >>> invertibility_warning("11100101") is None
    True
    >>> invertibility_warning("11111111").split(":")[0]
    'Code 11111111 has min |DFT| 0.0000 (below 0.005)'
    """
    m = code_metrics(bits)
    if m.min_dft >= MIN_INVERTIBLE_DFT:
        return None
    text = "".join(str(int(b)) for b in parse_code(bits))
    return (f"Code {text} has min |DFT| {m.min_dft:.4f} (below {MIN_INVERTIBLE_DFT:g}): its "
            "motion blur erases some spatial frequencies, so it cannot be inverted and "
            "reconstructions will ring or stay blurred. Choose another code (`blurvid-rig code "
            f"--search {m.n_chips}` finds good ones).")


def code_metrics(bits: CodeLike, pad_factor: int = DEFAULT_PAD_FACTOR) -> CodeMetrics:
    """All quality metrics of a code.

    Definitions (K chips, ``c`` the 0/1 code, ``n_fft = pad_factor * K``):

    * ``light_fraction = n_open / K``.
    * ``min_dft = min_k |DFT_nfft(c / K)[k]|``: the code divided by its number of chips (BDINR's
      blur normalisation), zero-padded to ``n_fft`` points. At ``pad_factor = 8`` the grid minimum
      is within about 0.1 % of the minimum over all frequencies for short codes. This gives 0.11411
      for ``11100101`` (RECON.md: 0.114; dividing by ``n_open`` instead would give 0.183) and
      0.02546 for Raskar's 52-chip code (true minimum 0.025456). RECON.md quotes 0.0256 for that
      code, which no converged grid gives: only some coarse grids do (n_fft = 15, 17, 21, 25, 26
      or 30 times K), and power-of-two grids of 256 to 2048 points give 0.02555, the likely source
      of the rounded figure.
    * ``spectral_flatness``: geometric / arithmetic mean of ``|DFT_nfft(c)|^2`` over all ``n_fft``
      bins (the normalisation cancels). 1 means a flat spectrum. A spectrum with an exact zero
      (power below 1e-20 of the mean, e.g. a box code) gives 0.
    * ``noise_amplification``: see :func:`noise_amplification` (signal of ``2 K`` samples, kernel
      ``c / n_open``).
    * ``reversal_asymmetry``: see :func:`reversal_asymmetry`.

    Args:
        bits: the code, in any form :func:`parse_code` accepts.
        pad_factor: DFT grid oversampling, ``n_fft = pad_factor * K`` (>= 1).

    Returns:
        The metrics.

    Raises:
        CodeValidationError: invalid code or ``pad_factor``.

    >>> m = code_metrics("11100101")
    >>> round(m.min_dft, 3), m.light_fraction, m.n_open
    (0.114, 0.625, 5)
    """
    return _metrics(parse_code(bits), _check_pad_factor(pad_factor))


def _metrics(c: np.ndarray, pad_factor: int, noise_amp: float | None = None) -> CodeMetrics:
    min_dft, flat = _spectral_batch(c[None, :], pad_factor)
    k = int(c.size)
    n_open = int(c.sum())
    if noise_amp is None:
        noise_amp = float(_noise_amplification_batch(c[None, :], NOISE_SIGNAL_FACTOR * k)[0])
    return CodeMetrics(
        n_chips=k,
        n_open=n_open,
        light_fraction=n_open / k,
        min_dft=float(min_dft[0]),
        spectral_flatness=float(flat[0]),
        noise_amplification=noise_amp,
        reversal_asymmetry=reversal_asymmetry(c),
        sha256=code_sha256(c),
    )


def describe_code(bits: CodeLike, *, name: str = "", pad_factor: int = DEFAULT_PAD_FACTOR) -> str:
    """A few human-readable lines about a code, for the CLI's ``code``/``info``/``demo`` output.

    Args:
        bits: the code.
        name: optional name shown on the first line.
        pad_factor: DFT grid oversampling, as in :func:`code_metrics`.

    Returns:
        Lines joined with ``\\n``, without a trailing newline. Codes longer than 64 chips are
        wrapped 64 chips to a line.

    Raises:
        CodeValidationError: invalid code or ``pad_factor``.

    >>> print(describe_code("11100101", name="bdinr8").splitlines()[0])
    bdinr8: 11100101
    """
    m = code_metrics(bits, pad_factor=pad_factor)
    text = code_string(bits)
    rows = [text[i : i + 64] for i in range(0, len(text), 64)]
    head = f"{name}: " if name else "code: "
    lines = [head + rows[0]] + [" " * len(head) + r for r in rows[1:]]
    lines += [
        f"chips: {m.n_chips}, open: {m.n_open}, light fraction: {100 * m.light_fraction:.1f} %",
        f"min |DFT|: {m.min_dft:.4f} (code/K, over all frequencies), "
        f"spectral flatness: {m.spectral_flatness:.3f}",
        f"noise amplification (least squares): {m.noise_amplification:.2f}, "
        f"reversal asymmetry: {m.reversal_asymmetry:.3f}"
        + (" (motion direction is ambiguous)" if m.reversal_asymmetry == 0 else ""),
        f"sha256: {m.sha256}",
    ]
    return "\n".join(lines)


# --- Search ------------------------------------------------------------------------------------


class SearchScreen:
    """Fast float32 screening scores of :func:`search_codes` (higher is better), for codes of
    one length.

    ``"min_dft"``: min ``|DFT|^2`` on the ``pad_factor * n_chips`` grid; ``"flatness"``:
    ``n_fft * log`` of the spectral flatness; ``"noise_amplification"``: minus the long-signal
    proxy ``sum_k w_k / |DFT[k]|^2`` (the exact float64 values rank the survivors).

    Args:
        n_chips: K, the length of the codes scored.
        objective: one of :data:`OBJECTIVES`.
        pad_factor: DFT grid oversampling.

    Shape:
        - call: codes ``(N, K)`` of 0/1 -> scores ``(N,)`` float32
    """

    def __init__(self, n_chips: int, objective: str, pad_factor: int) -> None:
        self.k = n_chips
        self.objective = objective
        self.n_fft = pad_factor * n_chips
        self.w = _half_weights(self.n_fft).astype(np.float32)
        self.use_matmul = n_chips <= 64
        if self.use_matmul:
            f = np.arange(self.n_fft // 2 + 1) / self.n_fft
            phase = 2 * np.pi * np.outer(np.arange(n_chips), f)
            self.cos = np.cos(phase).astype(np.float32)
            self.sin = np.sin(phase).astype(np.float32)

    def __call__(self, bits2d: np.ndarray) -> np.ndarray:
        b = bits2d.astype(np.float32)
        if self.use_matmul:
            re = b @ self.cos
            im = b @ self.sin
        else:
            spec = np.fft.rfft(b, n=self.n_fft, axis=1)
            re, im = spec.real, spec.imag
        power = re * re + im * im
        if self.objective == "min_dft":
            return power.min(axis=1)
        with np.errstate(divide="ignore", over="ignore"):
            if self.objective == "flatness":
                # n_fft * log(flatness); sum_k w P equals n_fft * n_open (Parseval).
                return np.log(power) @ self.w - self.n_fft * np.log(power @ self.w / self.n_fft)
            return -((1.0 / power) @ self.w)  # circulant proxy of the noise amplification


def _canonical_mask(bits2d: np.ndarray) -> np.ndarray:
    """True for the member of each reversal pair whose '0'/'1' string is the larger one."""
    rev = bits2d[:, ::-1]
    diff = bits2d != rev
    first = diff.argmax(axis=1)
    return ~diff.any(axis=1) | (bits2d[np.arange(bits2d.shape[0]), first] == 1)


def _exact_values(bits2d: np.ndarray, objective: str, pad_factor: int) -> np.ndarray:
    """Exact objective values in float64 (the numbers :func:`code_metrics` reports)."""
    if objective == "noise_amplification":
        return _noise_amplification_batch(bits2d, NOISE_SIGNAL_FACTOR * bits2d.shape[1])
    min_dft, flat = _spectral_batch(bits2d, pad_factor)
    return min_dft if objective == "min_dft" else flat


class _Pool:
    """The best ``size`` codes seen so far by screening score."""

    def __init__(self, n_chips: int, size: int, dedupe: bool) -> None:
        self.size = size
        self.dedupe = dedupe
        self.bits = np.zeros((0, n_chips), dtype=np.uint8)
        self.score = np.zeros(0, dtype=np.float32)

    def add(self, bits2d: np.ndarray, score: np.ndarray) -> None:
        if bits2d.shape[0] > self.size:
            keep = np.argpartition(-score, self.size - 1)[: self.size]
            bits2d, score = bits2d[keep], score[keep]
        bits = np.concatenate([self.bits, bits2d])
        score = np.concatenate([self.score, score])
        if self.dedupe:
            _, first = np.unique(np.packbits(bits, axis=1), axis=0, return_index=True)
            bits, score = bits[first], score[first]
        if bits.shape[0] > self.size:
            keep = np.argpartition(-score, self.size - 1)[: self.size]
            bits, score = bits[keep], score[keep]
        self.bits, self.score = bits, score


def _check_search_args(
    n_chips: int,
    n_open: int | None,
    objective: str,
    top: int,
    exhaustive_max: int,
    n_random: int,
    pad_factor: int,
) -> None:
    def whole(v: object) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    if not whole(n_chips) or not 1 <= n_chips <= MAX_CHIPS:
        raise CodeValidationError(
            f"n_chips must be a whole number from 1 to {MAX_CHIPS}; got {n_chips!r}."
        )
    if objective not in OBJECTIVES:
        raise CodeValidationError(
            f"Unknown search objective {objective!r}; choose one of {', '.join(OBJECTIVES)}."
        )
    if n_open is not None:
        lo = 1 if n_chips == 1 else 2
        if not whole(n_open) or not lo <= n_open <= n_chips:
            raise CodeValidationError(
                f"n_open={n_open!r} is impossible for {n_chips} chips with the first and last "
                f"chip open; choose a number from {lo} to {n_chips}, or None for any."
            )
    counts = (("top", top, 1), ("n_random", n_random, 1), ("exhaustive_max", exhaustive_max, 0))
    for label, v, lo in counts:
        if not whole(v) or v < lo:
            raise CodeValidationError(f"{label} must be a whole number >= {lo}; got {v!r}.")
    if exhaustive_max > EXHAUSTIVE_LIMIT:
        raise CodeValidationError(
            f"exhaustive_max={exhaustive_max} is too large: exhaustive search over more than "
            f"{EXHAUSTIVE_LIMIT} chips would take hours; use at most {EXHAUSTIVE_LIMIT} and let "
            "longer codes be sampled at random."
        )
    _check_pad_factor(pad_factor)


def _exhaustive_chunks(n_chips: int, n_open: int | None, chunk: int) -> Iterator[np.ndarray]:
    """Yield every code of ``n_chips`` chips with the first and last chip open, in chunks."""
    if n_chips <= 2:
        yield np.ones((1, n_chips), dtype=np.uint8)
        return
    inner = n_chips - 2
    shifts = np.arange(inner, dtype=np.int64)
    for start in range(0, 1 << inner, chunk):
        m = np.arange(start, min(start + chunk, 1 << inner), dtype=np.int64)
        mid = ((m[:, None] >> shifts) & 1).astype(np.uint8)
        if n_open is not None:
            mid = mid[mid.sum(axis=1) == n_open - 2]
        out = np.ones((mid.shape[0], n_chips), dtype=np.uint8)
        out[:, 1:-1] = mid
        yield out


def _random_chunks(
    n_chips: int, n_open: int | None, n_random: int, seed: int, chunk: int
) -> Iterator[np.ndarray]:
    """Yield ``n_random`` random codes with the first and last chip open, in chunks."""
    rng = np.random.default_rng(seed)
    inner = n_chips - 2
    for start in range(0, n_random, chunk):
        n = min(chunk, n_random - start)
        if n_open is None:
            mid = rng.integers(0, 2, size=(n, inner), dtype=np.uint8)
        else:
            mid = np.zeros((n, inner), dtype=np.uint8)
            if n_open > 2:
                pick = np.argpartition(rng.random((n, inner)), n_open - 3, axis=1)[:, : n_open - 2]
                np.put_along_axis(mid, pick, np.uint8(1), axis=1)
        out = np.ones((n, n_chips), dtype=np.uint8)
        out[:, 1:-1] = mid
        yield out


def search_codes(
    n_chips: int,
    *,
    n_open: int | None = None,
    objective: str = "min_dft",
    top: int = 10,
    exhaustive_max: int = 24,
    n_random: int = 200_000,
    seed: int = 0,
    require_asymmetric: bool = False,
    collapse_reversed: bool = True,
    pad_factor: int = DEFAULT_PAD_FACTOR,
) -> list[tuple[np.ndarray, CodeMetrics]]:
    """Search binary codes of ``n_chips`` chips for the best value of an objective.

    Only codes whose first and last chips are open are considered (a closed chip at either end
    only shortens the exposure). Up to ``exhaustive_max`` chips, or when there are no more such
    codes than ``n_random``, every one is tried (all ``2**(n_chips - 2)``, vectorised in chunks);
    otherwise ``n_random`` codes are drawn at random (``seed``; duplicates are merged).
    Candidates are screened in float32, then the best are re-scored with the exact float64 metric
    of :func:`code_metrics` and sorted by it; ties are broken by the '0'/'1' string, larger first.
    For ``"min_dft"`` and ``"flatness"`` the best ``max(16 * top, 512)`` are re-scored (fewer
    beyond 256 chips, at least ``2 * top``); the screen differs from the exact value by float32
    rounding and, for ``min_dft``, by the polishing of the grid minimum (which can only lower a
    value), so the result is the optimum over the candidates unless a code outside that margin has
    a deep dip between grid points. For ``"noise_amplification"``
    the screen is the long-signal proxy ``mean_k 1 / |DFT(c / n_open)[k]|^2`` and as many codes are
    re-scored as a fixed compute budget allows: every candidate up to 20 chips, about 90 000 at 24
    chips, only ``top`` near 1024 chips. Where the budget does not cover every candidate, codes
    whose low noise gain relies on the ends of the short test signal (spectral near-zeros, e.g.
    ``1000...0001``) are screened out, so that result is a heuristic; fixing ``n_open`` compares
    codes at equal light and avoids the sparse codes the ``c / n_open`` normalisation favours.

    Args:
        n_chips: code length, 1 to ``MAX_CHIPS``.
        n_open: if given, only codes with exactly this many open chips.
        objective: ``"min_dft"`` (higher is better), ``"flatness"`` (spectral flatness, higher is
            better) or ``"noise_amplification"`` (lower is better).
        top: number of codes returned.
        exhaustive_max: longest code searched exhaustively (at most ``EXHAUSTIVE_LIMIT``).
        n_random: number of random codes drawn beyond ``exhaustive_max``.
        seed: random seed of the sampling.
        require_asymmetric: drop codes with ``reversal_asymmetry == 0``; with both end chips open
            these are exactly the palindromes.
        collapse_reversed: a code and its reverse have identical spectral and noise metrics; keep
            only the one with the larger '0'/'1' string (e.g. ``11100101``, not ``10100111``).
        pad_factor: DFT grid oversampling, as in :func:`code_metrics`.

    Returns:
        Up to ``top`` pairs ``(code, metrics)``, best first (fewer if fewer codes qualify).

    Raises:
        CodeValidationError: an argument out of range or an unknown objective.

    >>> best, metrics = search_codes(8, top=1)[0]
    >>> metrics.min_dft >= code_metrics("11100101").min_dft
    True
    """
    _check_search_args(n_chips, n_open, objective, top, exhaustive_max, n_random, pad_factor)
    exhaustive = n_chips <= max(exhaustive_max, 2) or 2 ** (n_chips - 2) <= n_random
    pool = _Pool(n_chips, _pool_size(n_chips, objective, top), dedupe=not exhaustive)
    screen = SearchScreen(n_chips, objective, pad_factor)
    chunk = max(1, min(1 << 16, (1 << 22) // (n_chips * pad_factor)))
    chunks = (_exhaustive_chunks(n_chips, n_open, chunk) if exhaustive
              else _random_chunks(n_chips, n_open, n_random, seed, chunk))
    for bits2d in chunks:
        bits2d = _without_reversed(bits2d, collapse_reversed, require_asymmetric)
        if bits2d.shape[0]:
            pool.add(bits2d, screen(bits2d))
    return _ranked(pool.bits, objective, pad_factor, top)


def _pool_size(n_chips: int, objective: str, top: int) -> int:
    """How many screened codes :func:`search_codes` re-scores exactly."""
    if objective == "noise_amplification":
        n_sig = NOISE_SIGNAL_FACTOR * n_chips
        return max(top, int(_EXACT_NA_FLOPS / n_sig**3))  # as many as the budget allows
    # Spectral objectives: float32 screening vs float64 ranking needs little margin; the exact
    # stage costs ~K^2 per code, so long codes get a smaller pool.
    return max(2 * top, min(max(16 * top, 512), (1 << 25) // n_chips**2))


def _without_reversed(bits2d: np.ndarray, collapse_reversed: bool,
                      require_asymmetric: bool) -> np.ndarray:
    """The codes of ``(N, K)`` left after dropping palindromes and/or one of each reversal
    pair (see :func:`search_codes`)."""
    if not (collapse_reversed or require_asymmetric):
        return bits2d
    is_pal = ~(bits2d != bits2d[:, ::-1]).any(axis=1)
    keep = np.ones(bits2d.shape[0], dtype=bool)
    if collapse_reversed:
        keep &= _canonical_mask(bits2d)
    if require_asymmetric:
        keep &= ~is_pal
    return bits2d[keep]


def _ranked(bits2d: np.ndarray, objective: str, pad_factor: int,
            top: int) -> list[tuple[np.ndarray, CodeMetrics]]:
    """The best ``top`` codes of ``(N, K)`` by the exact objective, with their metrics."""
    if bits2d.shape[0] == 0:
        return []
    values = _exact_values(bits2d, objective, pad_factor)
    sign = -1.0 if objective == "noise_amplification" else 1.0
    # Best value first; ties by the '0'/'1' string, larger first (np.lexsort: last key primary).
    neg_bits = -bits2d.astype(np.int8)
    order = np.lexsort([neg_bits[:, j] for j in range(bits2d.shape[1] - 1, -1, -1)]
                       + [-sign * values])
    na = objective == "noise_amplification"
    return [
        (bits2d[i].copy(), _metrics(bits2d[i], pad_factor, float(values[i]) if na else None))
        for i in order[:top]
    ]
