"""Exposure codes as the whole rig reads them: parsing, validation and the SHA-256 of a code.

A code is a 1-D ``uint8`` array of chips, 1 = shutter open, 0 = closed, 1 to :data:`MAX_CHIPS`
long. The drivers (:class:`hw.types.ShutterCode`), the capture files, the code metrics of
:mod:`recon.codes` and the firmware's echo all use these definitions; the hash of a code is the
SHA-256 of its ASCII '0'/'1' string, as the shutter controller's STATUS carries it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CHIP_US_MAX",
    "CHIP_US_MIN",
    "MAX_CHIPS",
    "CodeLike",
    "CodeValidationError",
    "code_sha256",
    "code_string",
    "parse_code",
    "validate_chip_us",
]

#: Limits of a code accepted anywhere in the rig. A given controller may accept a narrower range
#: (see its ``chip_us_range``); the firmware's own limits live in firmware/PROTOCOL.md.
MAX_CHIPS = 1024
CHIP_US_MIN = 1.0
CHIP_US_MAX = 1_000_000.0

#: A code in any form :func:`parse_code` accepts.
CodeLike = str | Sequence[int] | np.ndarray


class CodeValidationError(ValueError):
    """An exposure code, a chip duration or a code-search setting is invalid.

    The message is a sentence that says what was wrong and what to do.
    """


# --- Parsing and validation --------------------------------------------------------------------


def _parse(code: CodeLike, *, require_open: bool) -> np.ndarray:
    if isinstance(code, str):
        text = "".join(code.split()).replace("_", "")
        bad = sorted(set(text) - {"0", "1"})
        if bad:
            raise CodeValidationError(
                f"Exposure code {code!r} contains the character(s) {''.join(bad)!r}; write a code "
                "with the characters 0 and 1 only (spaces and underscores may separate groups), "
                "e.g. '11100101'."
            )
        bits = np.frombuffer(text.encode("ascii"), dtype=np.uint8) - np.uint8(ord("0"))
    elif isinstance(code, bytes | bytearray):
        raise CodeValidationError(
            "An exposure code must be a '0'/'1' string or a sequence of 0/1 chips, not bytes; "
            "decode it to str first."
        )
    else:
        try:
            arr = np.asarray(code)
        except (TypeError, ValueError) as e:
            raise CodeValidationError(
                f"Could not read {code!r} as an exposure code; give a '0'/'1' string or a flat "
                "sequence of 0/1 chips."
            ) from e
        if arr.ndim != 1:
            raise CodeValidationError(
                "An exposure code must be a '0'/'1' string or a flat (1-D) sequence of 0/1 chips; "
                f"got an array of shape {arr.shape}."
            )
        if arr.size and arr.dtype.kind not in "biuf":
            raise CodeValidationError(
                f"Exposure code chips must be the numbers 0 or 1; got values of type {arr.dtype} "
                "(for text, pass one '0'/'1' string such as '11100101')."
            )
        if arr.size:
            ok = (arr == 0) | (arr == 1)
            if not ok.all():
                where = np.flatnonzero(~ok)[:5]
                shown = ", ".join(f"chip {i} = {arr[i].item()!r}" for i in where)
                raise CodeValidationError(
                    f"Exposure code chips must be 0 (closed) or 1 (open); got {shown}. "
                    "Fix those chips."
                )
        bits = arr.astype(np.uint8)
    n = int(bits.size)
    if n == 0:
        raise CodeValidationError(
            f"The exposure code is empty; give 1 to {MAX_CHIPS} chips, e.g. '11100101'."
        )
    if n > MAX_CHIPS:
        raise CodeValidationError(
            f"The exposure code has {n} chips, too long: the rig accepts 1 to {MAX_CHIPS} chips. "
            "Use a shorter code (with longer chips if the exposure must stay as long)."
        )
    if require_open and not bits.any():
        raise CodeValidationError(
            f"The exposure code has no open chip (all {n} chips are 0), so it would record no "
            "light; open at least one chip."
        )
    return np.ascontiguousarray(bits, dtype=np.uint8)


def parse_code(code: CodeLike) -> np.ndarray:
    """Check an exposure code and return it as a ``uint8`` array of 0/1 chips.

    Args:
        code: a '0'/'1' string (whitespace and underscores between chips are ignored) or a flat
            sequence / array of chips whose values are exactly 0 or 1 (ints, bools or floats).

    Returns:
        A new 1-D ``uint8`` array of 0/1 values.

    Raises:
        CodeValidationError: empty code, more than ``MAX_CHIPS`` chips, no open chip, characters
            other than 0/1, values other than 0/1, or an input that is not flat.

    >>> parse_code("1110_0101").tolist()
    [1, 1, 1, 0, 0, 1, 0, 1]
    """
    return _parse(code, require_open=True)


def validate_chip_us(chip_us: float, lo: float = CHIP_US_MIN, hi: float = CHIP_US_MAX) -> float:
    """Check a chip duration in microseconds.

    Args:
        chip_us: duration of one chip, microseconds.
        lo: smallest accepted duration, microseconds.
        hi: largest accepted duration, microseconds.

    Returns:
        ``chip_us`` as a float.

    Raises:
        CodeValidationError: ``chip_us`` is not a finite number or lies outside ``[lo, hi]``.

    >>> validate_chip_us(250)
    250.0
    """
    if isinstance(chip_us, bool) or not isinstance(chip_us, int | float | np.integer | np.floating):
        raise CodeValidationError(
            f"Chip duration chip_us={chip_us!r} is not a number; give it in microseconds, "
            "e.g. 1000."
        )
    value = float(chip_us)
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CodeValidationError(
            f"Chip duration chip_us={chip_us!r} us is out of range; choose a value between "
            f"{lo:g} and {hi:g} us."
        )
    return value


def code_string(bits: CodeLike) -> str:
    """The '0'/'1' string of a code.

    Args:
        bits: a code in any form :func:`parse_code` accepts (an all-closed code is allowed here).

    Returns:
        The chips as ASCII '0'/'1' characters.

    Raises:
        CodeValidationError: as :func:`parse_code`, except that no open chip is required.

    >>> code_string([1, 0, 1])
    '101'
    """
    return (_parse(bits, require_open=False) + np.uint8(ord("0"))).tobytes().decode("ascii")


def code_sha256(bits: CodeLike) -> str:
    """SHA-256 (hex) of a code's ASCII '0'/'1' string (the hash the shutter controller echoes).

    Args:
        bits: a code in any form :func:`parse_code` accepts (an all-closed code is allowed here).

    Returns:
        64 lowercase hex digits.

    Raises:
        CodeValidationError: as :func:`code_string`.

    >>> code_sha256("11100101")[:12]
    'e6df3e0d4150'
    """
    return hashlib.sha256(code_string(bits).encode("ascii")).hexdigest()
