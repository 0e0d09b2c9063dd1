"""Linear forward operators of the coded-exposure camera (thin ``nn.Module`` s over ``functional``).

Brightness convention (project-wide):
    The latent video ``v[t]`` is in the units of the raw, dark-subtracted frame: ``v[t]`` is what
    the camera would record if the scene stood still at time t. With ``normalize="open"`` (the
    default) a coded exposure is ``y = sum_k c_k v_k / sum_k c_k`` (``c`` the nominal binary
    code), so a static scene seen through an ideal code reproduces itself. ``normalize="chips"``
    divides by the number of chips K (BDINR's convention) and ``normalize="none"`` keeps the plain
    sum over chips. Normalisation is always a constructor argument and is shown in ``repr``.

    With a measured effective code (transmittance < 1, leakage, sub-step profile) the normaliser
    still comes from the nominal code, so the light the real shutter loses shows up as a dimmer
    measurement, as it does in the camera.

Time sampling:
    A code of K chips is integrated with S sub-steps per chip; the operator acts on T = K * S
    samples, sample ``t = k * S + s`` being sub-step s of chip k, centred at
    ``(t + 0.5) * chip_us / S`` microseconds after the start of the exposure.

Shapes: ``x`` is ``(B, T, H, W)``, ``y`` is ``(B, H, W)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from recon.functional import (
    ArrayLike,
    CodeLike,
    Normalize,
    code_bits,
    code_weights,
    coded_sum,
    coded_sum_adjoint,
    mask_weights,
)

__all__ = ["LinearOperator", "CodedExposure"]


class LinearOperator(nn.Module):
    """A linear map ``A`` with its adjoint; ``forward`` is ``A``.

    Subclasses implement :meth:`A` and :meth:`A_adjoint` and keep every per-capture parameter in
    a buffer, so ``.to(device)`` moves the whole operator.
    """

    def A(self, x: Tensor) -> Tensor:
        """Apply the forward operator.

        Args:
            x: input of the operator's domain.

        Returns:
            ``A x``.

        Raises:
            NotImplementedError: in the base class.
        """
        raise NotImplementedError

    def A_adjoint(self, y: Tensor) -> Tensor:
        """Apply the adjoint operator.

        Args:
            y: input of the operator's range.

        Returns:
            ``A^T y``.

        Raises:
            NotImplementedError: in the base class.
        """
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`A` (so the operator composes as a module).

        Args:
            x: input of the operator's domain.

        Returns:
            ``A x``.
        """
        return self.A(x)

    def _device(self) -> torch.device:
        for t in self.buffers():
            return t.device
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def adjointness_error(
        self,
        shape: Sequence[int],
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> float:
        """Relative error of the adjoint identity ``<A x, y> = <x, A^T y>`` on random vectors.

        ``x`` (of ``shape``) and ``y`` (of the shape of ``A x``) are standard normal, drawn on the
        generator's device (CPU without one) and moved to the operator's device. The result is
        ``|<A x, y> - <x, A^T y>| / max(|<A x, y>|, |<x, A^T y>|)``: about the dtype's epsilon
        times ``sqrt(numel)`` for a correct operator, of order 1 for a wrong adjoint (a wrong
        scale factor ``a`` gives ``|1 - a| / max(1, |a|)``).

        Args:
            shape: shape of the operator's input, e.g. ``(B, T, H, W)``.
            dtype: floating dtype of the test vectors (float64 for a strict test).
            generator: random generator, for a reproducible test.

        Returns:
            The relative error (0 when both inner products are exactly 0, e.g. a zero operator).

        Shape:
            - x: ``shape``
        """
        gen_device = generator.device if generator is not None else torch.device("cpu")
        dev = self._device()
        x = torch.randn(tuple(shape), dtype=dtype, generator=generator, device=gen_device).to(dev)
        ax = self.A(x)
        y = torch.randn(ax.shape, dtype=dtype, generator=generator, device=gen_device).to(dev)
        aty = self.A_adjoint(y)
        lhs = torch.vdot(ax.reshape(-1), y.reshape(-1))
        rhs = torch.vdot(x.reshape(-1), aty.reshape(-1))
        diff = float((lhs - rhs).abs())
        scale = max(float(lhs.abs()), float(rhs.abs()))
        return 0.0 if scale == 0.0 else diff / scale


class CodedExposure(LinearOperator):
    """Coded (flutter-shutter or DMD) exposure: one frame integrated through a code.

    Build it either from a global code (every pixel sees the same shutter) or from per-pixel
    binary masks ``M[k, i, j]`` (DMD coding); exactly one of ``bits`` and ``masks`` is given.
    ``A`` maps a latent video ``x`` of T = K * S samples to the measurement
    ``y = sum_t w[t] x[:, t]`` (weights per pixel for masks), see the module docstring for the
    brightness convention.

    Args:
        bits: nominal binary code of K chips (``'0'/'1'`` string, sequence, ndarray or tensor).
        masks: per-pixel binary masks, ``(K, H, W)``, instead of ``bits``.
        sub_steps: S, time samples per chip (>= 1).
        transmittance: measured per-chip transmittance of open chips in [0, 1], scalar or
            ``(K,)`` (global code only).
        leakage: measured transmittance of closed chips in [0, 1], scalar or ``(K,)`` (global code
            only).
        sub_profile: measured transmittance of each sub-step, ``(K * S,)``; overrides
            ``transmittance`` and ``leakage`` (global code only).
        normalize: ``"open"`` (default), ``"chips"`` or ``"none"``.
        dtype: floating dtype of the stored weights (inputs of another dtype are served by
            casting the weights).
        device: device of the stored weights.

    Raises:
        ValueError: neither or both of ``bits`` and ``masks``; effective-code arguments with
            masks; any invalid code, mask, length or option (see ``recon.functional``).

    Shape:
        - x: ``(B, T, H, W)``, T = K * S (H, W fixed by the masks when masks are used)
        - y: ``(B, H, W)``

    >>> op = CodedExposure("11100101", sub_steps=2)
    >>> op.n_chips, op.sub_steps, op.n_samples
    (8, 2, 16)
    >>> round(op(torch.ones(1, 16, 2, 2))[0, 0, 0].item(), 6)
    1.0
    """

    weights: Tensor
    bits: Tensor | None
    #: chip duration in microseconds when built by :meth:`from_capture` (else None).
    chip_us: float | None = None
    #: the nominal code as a tuple of 0/1 when built by :meth:`from_capture` (else None).
    code: tuple[int, ...] | None = None

    def __init__(
        self,
        bits: CodeLike | None = None,
        *,
        masks: np.ndarray | Tensor | None = None,
        sub_steps: int = 1,
        transmittance: ArrayLike | None = None,
        leakage: ArrayLike = 0.0,
        sub_profile: ArrayLike | None = None,
        normalize: Normalize = "open",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if (bits is None) == (masks is None):
            raise ValueError(
                "CodedExposure needs exactly one of bits= (a global code) and masks= "
                "(per-pixel masks of shape (K, H, W))."
            )
        self.normalize: str = normalize
        self._sub_steps = sub_steps
        self._effective = False
        if masks is not None:
            if transmittance is not None or sub_profile is not None or _nonzero(leakage):
                raise ValueError(
                    "transmittance=, leakage= and sub_profile= describe a global shutter; they "
                    "are not supported together with per-pixel masks."
                )
            w = mask_weights(masks, sub_steps, normalize, dtype=dtype, device=device)
            self._n_chips = w.shape[0] // sub_steps
            self.register_buffer("bits", None)
        else:
            assert bits is not None
            w = code_weights(
                bits,
                sub_steps=sub_steps,
                transmittance=transmittance,
                leakage=leakage,
                sub_profile=sub_profile,
                normalize=normalize,
                dtype=dtype,
                device=device,
            )
            c = code_bits(bits)
            self._n_chips = c.numel()
            self._effective = (
                transmittance is not None or sub_profile is not None or _nonzero(leakage)
            )
            self.register_buffer("bits", c.to(device=w.device))
        self.register_buffer("weights", w)

    @classmethod
    def from_capture(
        cls,
        bits: CodeLike,
        *,
        chip_us: float | None,
        sub_steps: int = 1,
        weights: Tensor | None = None,
        masks: np.ndarray | Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> CodedExposure:
        """The physics of one capture, built once and handed to every frame's solver.

        Args:
            bits: the nominal code the controller played (K chips).
            chip_us: chip duration in microseconds (None where it is not known, e.g. a live
                preview: no solver needs it, it only dates the frames).
            sub_steps: S of ``weights``.
            weights: the calibration's measured effective code as per-sub-step weights
                ``(K * S,)`` (e.g. from ``code_weights(bits, sub_steps=S, sub_profile=...)``);
                None for the ideal code.
            masks: per-pixel transmittance on the sensor ``(K, H, W)`` (a DMD capture), instead of
                a global code.
            device: where the weights live.

        Returns:
            The operator, with ``chip_us`` and the nominal ``code`` attached.

        Raises:
            ValueError: weights of the wrong length, negative or all zero; a bad code or masks.
        """
        c = code_bits(bits)
        if masks is not None:
            op = cls(masks=masks, dtype=torch.float32, device=device)
        else:
            op = cls(c, sub_steps=sub_steps, dtype=torch.float32, device=device)
            if weights is not None:
                w = torch.as_tensor(weights).detach().to(dtype=torch.float64).flatten()
                if w.numel() != c.numel() * sub_steps:
                    raise ValueError(f"weights must hold K * S = {c.numel() * sub_steps} values "
                                     f"({c.numel()} chips x {sub_steps} sub-steps); got "
                                     f"{w.numel()}.")
                if bool((w < 0).any()) or float(w.sum()) <= 0 or not bool(w.isfinite().all()):
                    raise ValueError("weights must be finite, non-negative and not all zero.")
                op.weights = w.to(dtype=torch.float32, device=op.weights.device)
                op._effective = True
        op.chip_us = None if chip_us is None else _positive("chip_us", chip_us)
        op.code = tuple(int(b) for b in c.tolist())
        return op

    @property
    def time_weights(self) -> Tensor:
        """Per-sample weights of a global code as float64 on the CPU (the blur's time profile).

        Raises:
            ValueError: the operator is per-pixel.
        """
        if self.per_pixel:
            raise ValueError("A per-pixel (mask) operator has no global time profile.")
        return self.weights.detach().to(device="cpu", dtype=torch.float64)

    @property
    def effective(self) -> bool:
        """Whether the weights are a measured effective code rather than the ideal one."""
        return self._effective

    # ------------------------------------------------------------------ description

    @property
    def n_chips(self) -> int:
        """K, the number of chips of the code."""
        return self._n_chips

    @property
    def sub_steps(self) -> int:
        """S, the number of time samples per chip."""
        return self._sub_steps

    @property
    def n_samples(self) -> int:
        """T = K * S, the number of time samples of the latent video."""
        return self._n_chips * self._sub_steps

    @property
    def per_pixel(self) -> bool:
        """True when built from per-pixel masks."""
        return self.weights.dim() == 3

    @property
    def frame_shape(self) -> tuple[int, int] | None:
        """``(H, W)`` fixed by the masks, or None for a global code (any frame size)."""
        if self.per_pixel:
            return (int(self.weights.shape[1]), int(self.weights.shape[2]))
        return None

    def chip_times(self, chip_us: float) -> Tensor:
        """Centre time of every sample, in seconds after the start of the exposure.

        Args:
            chip_us: duration of one chip in microseconds (> 0).

        Returns:
            float64 tensor on the operator's device.

        Raises:
            ValueError: ``chip_us`` not a positive finite number.

        Shape:
            - output: ``(T,)``
        """
        dt_s = _positive("chip_us", chip_us) * 1e-6 / self._sub_steps
        t = torch.arange(self.n_samples, dtype=torch.float64, device=self.weights.device)
        return (t + 0.5) * dt_s

    def time_s(self, chip_us: float) -> float:
        """Duration of the whole exposure (K chips) in seconds.

        Args:
            chip_us: duration of one chip in microseconds (> 0).

        Returns:
            ``K * chip_us * 1e-6``.

        Raises:
            ValueError: ``chip_us`` not a positive finite number.
        """
        return self._n_chips * _positive("chip_us", chip_us) * 1e-6

    def extra_repr(self) -> str:
        """Summary shown by ``repr``: code or mask size, sub-steps, normalisation."""
        if self.per_pixel:
            kind = f"masks=(K={self.n_chips}, H={self.weights.shape[1]}, W={self.weights.shape[2]})"
        else:
            assert self.bits is not None
            code = "".join(str(int(b)) for b in self.bits.tolist())
            kind = f"code='{code}', effective={self._effective}"
        return (
            f"{kind}, sub_steps={self.sub_steps}, n_samples={self.n_samples}, "
            f"normalize='{self.normalize}'"
        )

    # ------------------------------------------------------------------ operator

    def _expected(self) -> str:
        fs = self.frame_shape
        hw = "H, W" if fs is None else f"H={fs[0]}, W={fs[1]}"
        return f"T={self.n_samples} ({self.n_chips} chips x {self.sub_steps} sub-steps), {hw}"

    def _check_tensor(self, name: str, v: Tensor) -> None:
        if not isinstance(v, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(v).__name__}.")
        if not v.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got dtype {v.dtype}.")
        if v.device != self.weights.device:
            raise ValueError(
                f"{name} is on {v.device} but the operator's weights are on "
                f"{self.weights.device}; move one of them (e.g. op.to({name}.device))."
            )

    def A(self, x: Tensor) -> Tensor:
        """Integrate a latent video through the code.

        Args:
            x: latent video, floating point, on the operator's device.

        Returns:
            The coded measurement, dtype of ``x``.

        Raises:
            TypeError: ``x`` is not a floating-point tensor.
            ValueError: wrong shape or device.

        Shape:
            - x: ``(B, T, H, W)``
            - output: ``(B, H, W)``
        """
        self._check_tensor("x", x)
        fs = self.frame_shape
        if x.dim() != 4 or x.shape[1] != self.n_samples or (fs is not None and x.shape[2:] != fs):
            raise ValueError(
                f"CodedExposure.A expects x of shape (B, T, H, W) with {self._expected()}; "
                f"got {tuple(x.shape)}."
            )
        return coded_sum(x, self.weights)

    def A_adjoint(self, y: Tensor) -> Tensor:
        """Back-project a measurement onto every time sample (adjoint of :meth:`A`).

        Args:
            y: coded measurement, floating point, on the operator's device.

        Returns:
            The video ``x[:, t] = w[t] * y``, dtype of ``y``.

        Raises:
            TypeError: ``y`` is not a floating-point tensor.
            ValueError: wrong shape or device.

        Shape:
            - y: ``(B, H, W)``
            - output: ``(B, T, H, W)``
        """
        self._check_tensor("y", y)
        fs = self.frame_shape
        if y.dim() != 3 or (fs is not None and y.shape[1:] != fs):
            hw = "H, W" if fs is None else f"H={fs[0]}, W={fs[1]}"
            raise ValueError(
                f"CodedExposure.A_adjoint expects y of shape (B, H, W) with {hw}; "
                f"got {tuple(y.shape)}."
            )
        return coded_sum_adjoint(y, self.weights)


def _nonzero(value: ArrayLike) -> bool:
    if isinstance(value, Tensor):
        return bool((value != 0).any())
    return bool(np.any(np.asarray(value) != 0))


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive, finite number; got {value!r}.")
    return v
