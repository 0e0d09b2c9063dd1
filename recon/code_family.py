"""The code family of the learned reconstruction: the codes it is trained on, and those held out.

:data:`CODE_FAMILY` (a :class:`CodeFamily`) says which codes are in the family (8 to 32 chips, 40 %
to 70 % open) and which of them are held out for evaluation; :func:`sample_code` draws training
codes, :func:`is_in_family` answers with a sentence (the engine and the GUI ask it before using a
learned model), :data:`UNSEEN_CODES` are the held-out codes the evaluation uses. Next to
:mod:`recon.codes`, which it builds on; it renders nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from common.codes import CodeValidationError, code_string
from recon.codes import KNOWN_CODES
from recon.functional import CodeLike, code_bits

__all__ = ["CODE_FAMILY", "UNSEEN_CODES", "CodeFamily", "is_in_family", "sample_code"]


def _pct(x: float) -> str:
    return f"{round(100 * x, 1):g} %"


def _canonical(s: str) -> str:
    return min(s, s[::-1])


@dataclass(frozen=True)
class CodeFamily:
    """Binary codes the learned reconstruction is trained on.

    A code is in the family if it has ``min_chips`` to ``max_chips`` chips and an open fraction
    within ``[min_open_fraction, max_open_fraction]`` (so at least one open and one closed chip).
    A fixed ``1/holdout_modulus`` of the family is held out for evaluation: a code is held out if
    the SHA-256 of the smaller of its '0'/'1' string and its reverse, read as a number, is a
    multiple of ``holdout_modulus`` (a code and its reverse are held out together); the anchor
    code is never held out. Training draws the anchor with probability ``anchor_probability``.
    """

    min_chips: int = 8
    max_chips: int = 32
    min_open_fraction: float = 0.4
    max_open_fraction: float = 0.7
    anchor: str = KNOWN_CODES["bdinr8"]
    anchor_probability: float = 0.2
    holdout_modulus: int = 16

    def open_range(self, n_chips: int) -> tuple[int, int]:
        """Smallest and largest number of open chips allowed for ``n_chips`` chips."""
        return (math.ceil(self.min_open_fraction * n_chips - 1e-9),
                math.floor(self.max_open_fraction * n_chips + 1e-9))

    def is_held_out(self, bits: CodeLike) -> bool:
        """Whether a code is one of the held-out evaluation codes (by the hash rule above)."""
        s = code_string(code_bits(bits).numpy().astype(np.uint8))
        if _canonical(s) == _canonical(self.anchor):
            return False
        digest = hashlib.sha256(_canonical(s).encode("ascii")).hexdigest()
        return int(digest[:16], 16) % self.holdout_modulus == 0

    def check(self, bits: CodeLike) -> tuple[bool, str]:
        """Whether a code is in the family, and a sentence saying why (or why not)."""
        try:
            c = code_bits(bits)
        except (ValueError, TypeError, CodeValidationError) as e:
            return False, f"This is not a binary code: {e}"
        k, n = c.numel(), int(c.sum())
        lo, hi = self.min_open_fraction, self.max_open_fraction
        span = f"{self.min_chips} to {self.max_chips} chips, {_pct(lo)} to {_pct(hi)} open"
        if not self.min_chips <= k <= self.max_chips:
            return False, (f"The code has {k} chips, outside the family's {self.min_chips} to "
                           f"{self.max_chips}; use a code of {self.min_chips} to {self.max_chips} "
                           "chips.")
        if n == 0:
            return False, (f"The code has no open chip, so it records no light; the family needs "
                           f"{_pct(lo)} to {_pct(hi)} of the chips open.")
        if n == k:
            return False, (f"The code is open on all {k} chips (a box exposure, whose blur cannot "
                           f"be inverted); the family needs {_pct(lo)} to {_pct(hi)} of the chips "
                           "open.")
        n_lo, n_hi = self.open_range(k)
        if not n_lo <= n <= n_hi:
            return False, (f"The code is open on {n} of {k} chips ({_pct(n / k)}), outside the "
                           f"family's {_pct(lo)} to {_pct(hi)}; open or close chips so that "
                           f"{n_lo} to {n_hi} of the {k} are open.")
        s = code_string(c.numpy().astype(np.uint8))
        msg = f"The code ({k} chips, {n} open = {_pct(n / k)}) is inside the family ({span})."
        if s == self.anchor:
            msg += (f" It is the anchor code, drawn in training with probability "
                    f"{_pct(self.anchor_probability)}.")
        elif self.is_held_out(s):
            msg += " It is a held-out evaluation code: training never samples it."
        return True, msg

    def sample(self, generator: torch.Generator,
               lengths: Sequence[int] | None = None) -> tuple[int, ...]:
        """Draw a training code: the anchor, or a random code of the family that is not held out.

        The anchor is drawn with probability ``anchor_probability`` when its length is among
        ``lengths``; otherwise the length is uniform over ``lengths``, the number of open chips
        uniform over the allowed range, their places uniform.

        Args:
            generator: the random generator (CPU).
            lengths: allowed code lengths (default: the whole family).

        Returns:
            The code as a tuple of 0/1.

        Raises:
            ValueError: ``lengths`` empty or outside the family.
        """
        lens = list(range(self.min_chips, self.max_chips + 1) if lengths is None else lengths)
        if not lens or any(not self.min_chips <= int(k) <= self.max_chips for k in lens):
            raise ValueError(f"lengths must be a non-empty set of code lengths within "
                             f"{self.min_chips} to {self.max_chips}; got {list(lens)!r}.")
        anchor = tuple(int(ch) for ch in self.anchor)
        if len(anchor) in lens and float(torch.rand((), generator=generator)) < \
                self.anchor_probability:
            return anchor
        while True:
            k = int(lens[int(torch.randint(len(lens), (), generator=generator))])
            n_lo, n_hi = self.open_range(k)
            n = int(torch.randint(n_lo, n_hi + 1, (), generator=generator))
            bits = [0] * k
            for j in torch.randperm(k, generator=generator)[:n].tolist():
                bits[j] = 1
            if not self.is_held_out(bits):
                return tuple(bits)


#: The training code family (8 to 32 chips, 40 % to 70 % open, anchor ``11100101`` at 20 %).
CODE_FAMILY = CodeFamily()

#: Held-out codes of the family for evaluation, never drawn by :func:`sample_code`: for 12 to 32
#: chips, the two held-out codes (up to reversal) of largest min |DFT| among those found by
#: ``recon.codes.search_codes(K, n_open=n, top=400, require_asymmetric=True, n_random=100_000,
#: exhaustive_max=20, seed=K)`` over the family's open counts (first and last chip open, no
#: palindromes); for 8 chips, where no such code is held out, the two best held-out codes of all.
UNSEEN_CODES: tuple[str, ...] = (
    "01011100", "11101010",
    "110100010001", "111011010101",
    "1110001111011011", "1100010010110101",
    "11000111110010010101", "11100111101010010011",
    "111100010110111101110101", "111011110010011010100101",
    "11100000111011000010101101111101", "11110110100101000111000000110011",
)


def sample_code(generator: torch.Generator,
                lengths: Sequence[int] = range(8, 33)) -> tuple[int, ...]:
    """Draw a training code from :data:`CODE_FAMILY` (see :meth:`CodeFamily.sample`).

    Args:
        generator: the random generator (CPU).
        lengths: allowed code lengths, within 8 to 32.

    Returns:
        The code as a tuple of 0/1.

    Raises:
        ValueError: ``lengths`` empty or outside the family.

    >>> code = sample_code(torch.Generator().manual_seed(0))
    >>> is_in_family(code)[0]
    True
    """
    return CODE_FAMILY.sample(generator, lengths)


def is_in_family(bits: CodeLike) -> tuple[bool, str]:
    """Whether a code is in the training family, with a sentence saying why or why not.

    Args:
        bits: the code (a '0'/'1' string, a sequence, ndarray or tensor of 0/1).

    Returns:
        ``(inside, reason)``.

    >>> is_in_family("1101")
    (False, "The code has 4 chips, outside the family's 8 to 32; use a code of 8 to 32 chips.")
    """
    return CODE_FAMILY.check(bits)
