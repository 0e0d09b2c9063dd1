"""Sensor noise models: Poisson-Gaussian with clipping and quantisation, and plain Gaussian.

Units: ``y_clean_dn`` is the noise-free, dark-subtracted signal in digital numbers (DN) of the raw
frame, the units of the latent video (see ``recon.operators``). The camera model turns it into a
raw frame as follows:

1. electrons ``e ~ Poisson(y_clean_dn * gain_e_per_dn)`` (shot noise), clipped at the full well;
2. ``dn = e / gain_e_per_dn + dark_offset_dn + n`` with ``n ~ N(0, (read_noise_e / gain)^2)``;
3. rounded to the nearest integer (ties to even) and clipped to ``[0, 2**bit_depth - 1]``.

Without clipping the result has mean ``y + dark_offset_dn`` and variance
``y / gain + (read_noise_e / gain)**2 + 1/12`` (the last term is the quantisation; it holds once
the noise spans a few DN). The output stays a floating tensor (dtype of the input) that holds
integer values.

Every random draw takes an optional ``torch.Generator``, which must live on the data's device;
the same seed on the same device gives the same output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SensorModel", "add_gaussian", "poisson_gaussian"]

#: Largest supported bit depth: float32 holds every integer up to 2**24 exactly.
MAX_BIT_DEPTH = 24


def _check_input(name: str, y: Tensor, generator: torch.Generator | None) -> None:
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(y).__name__}.")
    if y.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64 for noise simulation; got {y.dtype}.")
    if generator is not None and generator.device.type != y.device.type:
        raise ValueError(
            f"The generator is on {generator.device} but {name} is on {y.device}; create it with "
            f"torch.Generator(device={name}.device)."
        )


def _check_number(name: str, value: float, *, positive: bool) -> float:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        kind = "a positive" if positive else "a non-negative"
        raise ValueError(f"{name} must be {kind}, finite number; got {value!r}.")
    return v


def _check_bit_depth(bit_depth: int) -> int:
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, int):
        raise ValueError(f"bit_depth must be an integer; got {bit_depth!r}.")
    if not 1 <= bit_depth <= MAX_BIT_DEPTH:
        raise ValueError(f"bit_depth must be between 1 and {MAX_BIT_DEPTH}; got {bit_depth}.")
    return bit_depth


def poisson_gaussian(
    y_clean_dn: Tensor,
    *,
    gain_e_per_dn: float,
    read_noise_e: float,
    dark_offset_dn: float = 0.0,
    bit_depth: int = 12,
    full_well_e: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Simulate a raw frame from a clean signal: shot noise, read noise, offset, clip, quantise.

    Args:
        y_clean_dn: noise-free, dark-subtracted signal in DN (>= 0, finite), float32/float64.
        gain_e_per_dn: conversion gain, electrons per DN (> 0).
        read_noise_e: read noise standard deviation in electrons (>= 0).
        dark_offset_dn: dark (black-level) offset added in DN (>= 0).
        bit_depth: ADC bit depth, 1 to 24; the output is clipped to ``[0, 2**bit_depth - 1]``.
        full_well_e: full-well capacity in electrons (> 0); ``None`` for no full-well clipping.
        generator: random generator on the device of ``y_clean_dn``.

    Returns:
        The raw frame in DN: integer values in a tensor of the input's dtype and device.

    Raises:
        TypeError: input not a float32/float64 tensor.
        ValueError: negative or non-finite input, invalid parameters, or a generator on another
            device.

    Shape:
        - y_clean_dn: any
        - output: same as ``y_clean_dn``

    >>> g = torch.Generator().manual_seed(0)
    >>> y = poisson_gaussian(torch.full((4,), 1e6), gain_e_per_dn=1.0, read_noise_e=2.0,
    ...                      bit_depth=8, generator=g)
    >>> y.tolist()
    [255.0, 255.0, 255.0, 255.0]
    """
    _check_input("y_clean_dn", y_clean_dn, generator)
    gain = _check_number("gain_e_per_dn", gain_e_per_dn, positive=True)
    read = _check_number("read_noise_e", read_noise_e, positive=False)
    offset = _check_number("dark_offset_dn", dark_offset_dn, positive=False)
    bits = _check_bit_depth(bit_depth)
    full_well = (
        None if full_well_e is None else _check_number("full_well_e", full_well_e, positive=True)
    )
    bad = ~torch.isfinite(y_clean_dn) | (y_clean_dn < 0)
    if bool(bad.any()):
        raise ValueError(
            "y_clean_dn must be finite and >= 0 (a dark-subtracted signal in DN); "
            f"{int(bad.sum())} values are negative or not finite. Clamp it first."
        )
    electrons = torch.poisson(y_clean_dn.detach() * gain, generator=generator)
    if full_well is not None:
        electrons = electrons.clamp_max(full_well)
    dn = electrons / gain + offset
    if read > 0:
        dn = dn + (read / gain) * torch.randn(
            dn.shape, dtype=dn.dtype, device=dn.device, generator=generator
        )
    return dn.round().clamp(0.0, float(2**bits - 1))


def add_gaussian(
    y: Tensor,
    sigma: float | Tensor,
    generator: torch.Generator | None = None,
    *,
    clip: bool = False,
) -> Tensor:
    """Add white Gaussian noise of standard deviation ``sigma`` (the sigma-on-[0, 1] model).

    This is the simple model of RECON.md (BDINR trains with ``sigma ~ U[0, 0.01]`` on images in
    [0, 1]). For one sigma per batch element pass a tensor shaped to broadcast, e.g.
    ``sigma.view(-1, 1, 1)`` for ``y`` of shape ``(B, H, W)``.

    Args:
        y: clean signal, float32/float64.
        sigma: standard deviation (>= 0), a number or a tensor broadcastable to ``y``.
        generator: random generator on the device of ``y``.
        clip: clamp the result to [0, 1].

    Returns:
        ``y + sigma * n`` with ``n ~ N(0, 1)``.

    Raises:
        TypeError: ``y`` not a float32/float64 tensor.
        ValueError: negative or non-finite sigma, sigma not broadcastable to ``y``, or a
            generator on another device.

    Shape:
        - y: any
        - sigma: scalar or broadcastable to ``y``
        - output: same as ``y``
    """
    _check_input("y", y, generator)
    if isinstance(sigma, Tensor):
        s = sigma.to(dtype=y.dtype, device=y.device)
        if not bool((torch.isfinite(s) & (s >= 0)).all()):
            raise ValueError("sigma must be finite and >= 0.")
        try:
            torch.broadcast_shapes(s.shape, y.shape)
        except RuntimeError as e:
            raise ValueError(
                f"sigma of shape {tuple(s.shape)} does not broadcast to y of shape "
                f"{tuple(y.shape)}; e.g. use sigma.view(-1, 1, 1) for one sigma per image."
            ) from e
        if torch.broadcast_shapes(s.shape, y.shape) != y.shape:
            raise ValueError(
                f"sigma of shape {tuple(s.shape)} would enlarge y of shape {tuple(y.shape)}."
            )
    else:
        s = _check_number("sigma", sigma, positive=False)
    out = y + s * torch.randn(y.shape, dtype=y.dtype, device=y.device, generator=generator)
    return out.clamp(0.0, 1.0) if clip else out


@dataclass(frozen=True)
class SensorModel:
    """Parameters of a linear camera sensor, from calibration (photon transfer) or a datasheet.

    Args:
        gain_e_per_dn: conversion gain, electrons per DN (> 0).
        read_noise_e: read noise standard deviation, electrons (>= 0).
        dark_offset_dn: black-level offset, DN (>= 0).
        bit_depth: ADC bit depth (1 to 24).
        full_well_e: full-well capacity, electrons (> 0), or None.

    Raises:
        ValueError: any parameter out of range.

    >>> SensorModel(gain_e_per_dn=2.0, read_noise_e=3.0, dark_offset_dn=64.0, bit_depth=12).max_dn
    4095
    """

    gain_e_per_dn: float
    read_noise_e: float
    dark_offset_dn: float
    bit_depth: int
    full_well_e: float | None = None

    def __post_init__(self) -> None:
        _check_number("gain_e_per_dn", self.gain_e_per_dn, positive=True)
        _check_number("read_noise_e", self.read_noise_e, positive=False)
        _check_number("dark_offset_dn", self.dark_offset_dn, positive=False)
        _check_bit_depth(self.bit_depth)
        if self.full_well_e is not None:
            _check_number("full_well_e", self.full_well_e, positive=True)

    @property
    def max_dn(self) -> int:
        """Largest value the ADC outputs, ``2**bit_depth - 1``."""
        return 2**self.bit_depth - 1

    def expected_variance_dn(self, signal_dn: float | Tensor) -> float | Tensor:
        """Variance of the raw value for a clean signal, away from clipping.

        Args:
            signal_dn: clean, dark-subtracted signal in DN.

        Returns:
            ``signal / gain + (read_noise_e / gain)**2 + 1/12`` in DN^2.

        Shape:
            - signal_dn: any
            - output: same as ``signal_dn``
        """
        g = self.gain_e_per_dn
        return signal_dn / g + (self.read_noise_e / g) ** 2 + 1.0 / 12.0

    def apply(self, y_clean_dn: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Simulate the raw frame for a clean signal (see :func:`poisson_gaussian`).

        Args:
            y_clean_dn: noise-free, dark-subtracted signal in DN (>= 0), float32/float64.
            generator: random generator on the device of ``y_clean_dn``.

        Returns:
            Integer-valued raw frame in DN, in ``[0, max_dn]``.

        Raises:
            TypeError: input not a float32/float64 tensor.
            ValueError: negative or non-finite input, or a generator on another device.

        Shape:
            - y_clean_dn: any
            - output: same as ``y_clean_dn``
        """
        return poisson_gaussian(
            y_clean_dn,
            gain_e_per_dn=self.gain_e_per_dn,
            read_noise_e=self.read_noise_e,
            dark_offset_dn=self.dark_offset_dn,
            bit_depth=self.bit_depth,
            full_well_e=self.full_well_e,
            generator=generator,
        )
