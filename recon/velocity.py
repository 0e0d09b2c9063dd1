"""Estimation of a global linear velocity, sign included, from one coded frame.

Holds :func:`estimate_velocity` and its result :class:`VelocityEstimate`, and the spectral model
behind them: :class:`Spectrum` (Gaussian marginal likelihood of a blurred power-law image plus
white noise; also used by :func:`recon.classical.reconstruct_global` to fit the noise level), the
periodic + smooth decomposition and the sparsity test that resolves the direction.
:func:`estimate_velocity` and :class:`VelocityEstimate` are re-exported by :mod:`recon.classical`.
Conventions as in :mod:`recon.psf_deconv`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from recon.fft_ops import check_positive, grad, grad_power, otf
from recon.functional import CodeLike
from recon.psf_deconv import Velocity, motion_psf, motion_psf_batch, time_weights

__all__ = [
    "Spectrum",
    "VelocityEstimate",
    "direction_sparsity",
    "estimate_velocity",
    "periodic_component",
    "spectrum_scores",
]


@dataclass(frozen=True)
class VelocityEstimate:
    """Result of :func:`estimate_velocity`.

    Attributes:
        dx: horizontal displacement over the exposure, pixels.
        dy: vertical displacement over the exposure, pixels.
        score: negative log-likelihood per frequency of the chosen blur (lower is better).
        direction_margin: how much sparser (relative gradient L1 / L2) the deconvolution with the
            chosen direction is than with the reverse; near 0 the direction is ambiguous (a
            palindromic code, or too little structure along the motion).
        noise_sigma: noise standard deviation fitted with the chosen blur (or the given one).
        candidates: rows ``(dx, dy, score, level)`` of every candidate searched, finest level
            first, best first within a level (scores compare within a level only; the signs of
            candidates are not resolved, only ``dx, dy`` are).
    """

    dx: float
    dy: float
    score: float
    direction_margin: float
    noise_sigma: float
    candidates: Tensor

    @property
    def velocity(self) -> Velocity:
        """``(dx, dy)`` in pixels over the exposure."""
        return (self.dx, self.dy)


# ---------------------------------------------------------------------------------------------
# Blur and noise estimation
# ---------------------------------------------------------------------------------------------


def _periodic_component(u: Tensor) -> Tensor:
    """Periodic part of ``(..., H, W)`` images (Moisan's periodic + smooth decomposition).

    Removes the jumps between opposite borders that otherwise put a bright cross in the spectrum.
    """
    h, w = u.shape[-2:]
    v = torch.zeros_like(u)
    v[..., 0, :] += u[..., -1, :] - u[..., 0, :]
    v[..., -1, :] += u[..., 0, :] - u[..., -1, :]
    v[..., :, 0] += u[..., :, -1] - u[..., :, 0]
    v[..., :, -1] += u[..., :, 0] - u[..., :, -1]
    fy = torch.fft.fftfreq(h, device=u.device, dtype=u.dtype).unsqueeze(1)
    fx = torch.fft.rfftfreq(w, device=u.device, dtype=u.dtype).unsqueeze(0)
    den = 2 * torch.cos(2 * math.pi * fy) + 2 * torch.cos(2 * math.pi * fx) - 4
    den[0, 0] = 1.0
    s = torch.fft.rfft2(v) / den
    s[..., 0, 0] = 0.0
    return u - torch.fft.irfft2(s, s=(h, w))


class Spectrum:
    """Gaussian model of one image's power spectrum: ``a |H(f)|^2 / |2 pi f|^(2 g) + sigma^2``.

    The latent image has a power-law spectrum of unknown scale ``a`` and exponent ``g`` (fitted:
    dead leaves and photographs fall faster than ``1/f^2`` near Nyquist, and with ``g = 1`` fixed
    a static image looks slightly blurred), ``H`` is a candidate blur, the noise is white. The
    negative log-likelihood, with ``a``, ``g``, ``sigma^2`` fitted by Fisher scoring, scores a blur
    without deconvolving: unlike the fit of a sharp image, the marginal likelihood does not favour
    "no blur". It sees only ``|H|``, so it cannot tell a velocity from its reverse.

    Args:
        y: the image (a coded frame, dark-subtracted).
        noise_sigma: the noise standard deviation, or ``None`` to fit it with each blur.

    Shape:
        - y: ``(H, W)``; ``hw = (H, W)``
        - :meth:`fit`: ``|H|^2`` ``(C, H, W // 2 + 1)`` -> four ``(C,)`` tensors
    """

    def __init__(self, y: Tensor, noise_sigma: float | None) -> None:
        h, w = y.shape[-2:]
        self.hw = (h, w)
        self.power = torch.fft.rfft2(_periodic_component(y)).abs().square() / (h * w)
        wts = torch.full((h, w // 2 + 1), 2.0, device=y.device, dtype=y.dtype)
        wts[:, 0] = 1.0
        if w % 2 == 0:
            wts[:, -1] = 1.0
        wts[0, 0] = 0.0  # the mean carries no information about the blur
        self.wts = wts / wts.sum()
        fy = torch.fft.fftfreq(h, device=y.device, dtype=y.dtype).unsqueeze(1)
        fx = torch.fft.rfftfreq(w, device=y.device, dtype=y.dtype).unsqueeze(0)
        f2 = (2 * math.pi) ** 2 * (fx.square() + fy.square())
        f2[0, 0] = 1.0
        self.log_f2 = f2.log()
        self.a0 = float((self.power * f2 * self.wts).sum())
        self.s2_fixed = None if noise_sigma is None else float(noise_sigma) ** 2
        self.s2_0 = float(torch.quantile(self.power[self.wts > 0].float(), 0.01))

    def fit(self, h2: Tensor, iters: int = 8) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """NLL per frequency and fitted ``a, sigma^2, g`` for each ``|H|^2`` of ``(C, h, w')``.

        Fisher scoring on ``(a, sigma^2, g)``. With ``u = wts / s^2``, ``L = log|2 pi f|^2`` and
        the derivatives of the model ``s`` (``b = |H|^2 e^(-g L)``, ``1`` and ``-a b L``), the
        Fisher information is made of sums of ``u, u b, u b^2`` times ``1, L, L^2``, and the
        score of sums of ``r = (power - s) u = power u - a u b - sigma^2 u`` times ``1, b, b L``:
        one matrix product of ``(u, u b, u b^2)`` with ``(1, L, L^2, power, power L)`` per
        iteration gives them all (combined in float64).
        """
        c = h2.shape[0]
        h2 = h2.reshape(c, -1)
        n = h2.shape[1]
        log_f2, wts, power = (x.reshape(n) for x in (self.log_f2, self.wts, self.power))
        basis = torch.stack([torch.ones_like(log_f2), log_f2, log_f2.square(), power,
                             power * log_f2], dim=1)
        dev = h2.device
        # Flat indices into the (u, ub, ub^2) x (1, L, L^2, P, PL) sums, row * 5 + column.
        i_info = torch.tensor([10, 5, 11, 5, 0, 6, 11, 6, 12], device=dev)
        i_data, i_ab, i_s2 = (torch.tensor(i, device=dev) for i in ([8, 3, 9], [10, 5, 11],
                                                                     [5, 0, 6]))
        ones = torch.ones(c, device=dev, dtype=torch.float64)
        eye = torch.eye(3, device=dev, dtype=torch.float64)
        a = torch.full((c,), self.a0, device=dev, dtype=h2.dtype)
        s2 = torch.full_like(a, self.s2_0 if self.s2_fixed is None else self.s2_fixed)
        g = torch.ones_like(a)
        terms = h2.new_empty(c, 3, n)  # u, u b, u b^2

        def model(a: Tensor, s2: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
            base = h2 * torch.exp(-g.unsqueeze(1) * log_f2)
            return base, torch.addcmul(s2.unsqueeze(1), a.unsqueeze(1), base)

        for _ in range(iters):
            base, s = model(a, s2, g)
            u = torch.div(wts, s.square(), out=terms[:, 0])
            torch.mul(u, base, out=terms[:, 1])
            torch.mul(terms[:, 1], base, out=terms[:, 2])
            m = torch.matmul(terms, basis).double().flatten(1)  # (C, 15)
            ad, s2d = a.double().unsqueeze(1), s2.double().unsqueeze(1)
            score = m[:, i_data] - ad * m[:, i_ab] - s2d * m[:, i_s2]  # sums of r b, r, r b L
            na = -ad[:, 0]
            score[:, 2] *= na
            coef = torch.stack([ones, ones, na, ones, ones, na, na, na, na.square()], dim=1)
            info = (m[:, i_info] * coef).view(c, 3, 3)
            if self.s2_fixed is not None:  # freeze sigma^2: identity row and column, zero score
                info[:, 1, :], info[:, :, 1], score[:, 1] = 0.0, 0.0, 0.0
                info[:, 1, 1] = 1.0
            info = info + 1e-12 * info.diagonal(dim1=-2, dim2=-1).abs().amax(-1).view(-1, 1, 1) \
                * eye
            step = torch.linalg.solve(info, score).to(h2.dtype)
            a = torch.maximum(a + step[:, 0], a * 0.1)
            s2 = torch.maximum(s2 + step[:, 1], s2 * 0.1).clamp(min=1e-20)
            g = (g + step[:, 2]).clamp(0.5, 2.5)
        _, s = model(a, s2, g)
        nll = ((power / s + s.log()) * wts).sum(-1)
        return nll, a, s2, g

    def grad_energy(self, a: float, g: float) -> float:
        """Mean squared gradient ``mean|grad x|^2`` of a latent image with the fitted spectrum."""
        g2 = grad_power(self.hw, self.log_f2.device, self.log_f2.dtype)
        return float((a * torch.exp(-g * self.log_f2) * g2 * self.wts).sum())

    def score(self, w: Tensor, cands: list[Velocity]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """:meth:`fit` for the PSFs of candidate velocities, in chunks of 32."""
        out = []
        for i in range(0, len(cands), 32):
            psfs = motion_psf_batch(w, cands[i: i + 32], dtype=self.power.dtype,
                                    device=self.power.device)
            # |H|^2 ignores where the kernel sits in the periodic grid: no centring roll needed.
            h_ri = torch.view_as_real(torch.fft.rfft2(psfs, s=self.hw))
            out.append(self.fit(h_ri.square().sum(-1)))
        nll, a, s2, g = (torch.cat(parts) for parts in zip(*out, strict=True))
        return nll, a, s2, g


def _sparsity(y: Tensor, w: Tensor, v: Velocity, nsr: float) -> float:
    """Gradient L1 / L2 of the periodic Wiener deconvolution of ``y`` for velocity ``v``."""
    hw = (y.shape[-2], y.shape[-1])
    k_hat = otf(motion_psf(w, v, dtype=y.dtype, device=y.device).unsqueeze(0), hw)[0]
    filt = k_hat.conj() / (k_hat.abs().square() + nsr * grad_power(hw, y.device, y.dtype))
    filt[0, 0] = 1.0
    g = grad(torch.fft.irfft2(torch.fft.rfft2(y) * filt, s=hw))
    return float(g.square().sum(dim=0).sqrt().sum() / g.square().sum().sqrt())


def estimate_velocity(
    y: Tensor,
    code: CodeLike,
    *,
    max_px: float,
    sub_steps: int = 1,
    weights: Tensor | None = None,
    noise_sigma: float | None = None,
    angle_step_deg: float | None = None,
    max_size: int = 256,
) -> VelocityEstimate:
    """Estimate a global linear velocity, sign included, from one coded frame.

    1. Axis and length: the Gaussian marginal likelihood of the spectrum under "power-law image,
       blurred by the candidate PSF, plus white noise", scale, exponent and noise fitted per
       candidate (``Spectrum``): no deconvolution, no bias to short blurs. Coarse grid (angles in
       ``[0, 180)``, lengths up to ``max_px``, on a ``max(128, 3 max_px)`` px crop), then two
       refinements at 1/4 and 1/16 of the steps.
    2. Sign: a velocity and its reverse give PSFs of equal ``|H|``, so their Wiener deconvolutions
       differ only in phase: the true direction gives compact edges, the reverse smears them into
       ripples (for a non-palindromic code). The sparser gradients (lower L1 / L2) win.

    Args:
        y: the coded frame; a centred crop of at most ``max_size`` pixels a side is used.
        code: binary code of K chips, in time order.
        max_px: largest displacement over the exposure to consider, pixels (> 0, at most half the
            crop side).
        sub_steps: S of ``weights``.
        weights: measured per-sub-step weights ``(K * S,)``; default the ideal code.
        noise_sigma: noise standard deviation in the units of ``y``; default: fitted.
        angle_step_deg: coarse angular step in degrees (default ``min(6, 1.5 rad / max_px)``).
        max_size: side of the centred crop used.

    Returns:
        The estimate.

    Raises:
        ValueError: ``y`` not 2-D, a malformed code, or bad search parameters.

    Shape:
        - y: ``(H, W)``
    """
    if y.dim() != 2 or not y.is_floating_point():
        raise ValueError(f"y must be one floating-point (H, W) image; got {tuple(y.shape)}.")
    w = time_weights(code, sub_steps, weights)
    crop = _centre(y, int(max_size))
    max_px = check_positive("max_px", max_px)
    if max_px > min(crop.shape) / 2:
        raise ValueError(f"max_px={max_px:g} is more than half the {tuple(crop.shape)} crop; "
                         "use a larger image or max_size, or a smaller max_px.")
    # Coded blurs have fine spectral ripples: a blur of L px rotated by more than ~1/L rad already
    # fits worse than a short spurious blur, so the coarse angles must be that fine.
    step = (check_positive("angle_step_deg", angle_step_deg) if angle_step_deg is not None
            else min(6.0, math.degrees(1.5 / max_px)))
    specs = (Spectrum(_centre(crop, max(128, math.ceil(3 * max_px))), noise_sigma),
             Spectrum(crop, noise_sigma))
    (dx, dy), i, (nll, a, s2, g), candidates = _search_axis_and_length(specs, w, step, max_px)
    margin = 0.0
    if math.hypot(dx, dy) > 0:
        nsr = float(s2[i]) / max(specs[1].grad_energy(float(a[i]), float(g[i])), 1e-30)
        dx, dy, margin = _choose_sign(crop, w, (dx, dy), nsr)
    return VelocityEstimate(dx=dx + 0.0, dy=dy + 0.0, score=float(nll[i]), direction_margin=margin,
                            noise_sigma=math.sqrt(float(s2[i])), candidates=candidates)


def _centre(img: Tensor, side: int) -> Tensor:
    """The centred crop of ``img`` ``(H, W)``, at most ``side`` pixels a side."""
    h, wd = img.shape
    ch, cw = min(h, side), min(wd, side)
    return img[(h - ch) // 2: (h - ch) // 2 + ch, (wd - cw) // 2: (wd - cw) // 2 + cw]


def _search_axis_and_length(specs: tuple[Spectrum, Spectrum], w: Tensor, step: float,
                            max_px: float) -> tuple[tuple[float, float], int,
                                                    tuple[Tensor, Tensor, Tensor, Tensor], Tensor]:
    """Step 1 of :func:`estimate_velocity`: the coarse grid (angles ``step`` degrees apart,
    scored on ``specs[0]``), then two refinements at 1/4 and 1/16 of the steps (on ``specs[1]``).

    Returns:
        The best velocity of the finest level, its index there, that level's fitted ``(nll,
        scale, noise power, exponent)`` per candidate, and every candidate as rows ``(dx, dy,
        nll, level)``, finest level first, best first within a level.
    """
    l_step = max(1.0, max_px / 20)
    thetas = torch.arange(0.0, 180.0, step).tolist()
    lengths = [0.0] + torch.arange(l_step, max_px + 1e-9, l_step).tolist()
    rows = []
    for level in range(3):
        cands = [(ln * math.cos(math.radians(t)), ln * math.sin(math.radians(t)))
                 for t in thetas for ln in lengths if ln > 0 or t == thetas[0]]
        nll, a, s2, g = specs[min(level, 1)].score(w, cands)
        rows.append(torch.cat([torch.tensor(cands, dtype=nll.dtype, device=nll.device),
                               nll.unsqueeze(1), torch.full_like(nll, level).unsqueeze(1)], 1))
        rows[-1] = rows[-1][nll.argsort()]
        i = int(nll.argmin())
        dx, dy = cands[i]
        th0, l0 = math.degrees(math.atan2(dy, dx)), math.hypot(dx, dy)
        step, l_step = step / 4, l_step / 4
        thetas = [th0 + j * step for j in range(-4, 5)]
        lengths = [l0 + j * l_step for j in range(-4, 5) if 0 <= l0 + j * l_step <= max_px * 1.05]
    return (dx, dy), i, (nll, a, s2, g), torch.cat(rows[::-1]).cpu()


def _choose_sign(crop: Tensor, w: Tensor, v: tuple[float, float],
                 nsr: float) -> tuple[float, float, float]:
    """Step 2 of :func:`estimate_velocity`: ``v`` or its reverse, whichever Wiener-deconvolves
    ``crop`` to sparser gradients, and the relative margin of the choice."""
    dx, dy = v
    p = _periodic_component(crop)
    fwd, rev = _sparsity(p, w, (dx, dy), nsr), _sparsity(p, w, (-dx, -dy), nsr)
    if rev < fwd:
        dx, dy, fwd, rev = -dx, -dy, rev, fwd
    return dx, dy, (rev - fwd) / fwd


def periodic_component(u: Tensor) -> Tensor:
    """Periodic part of ``(..., H, W)`` images (Moisan's periodic + smooth decomposition): the
    image without the jumps between opposite borders that put a bright cross in its spectrum."""
    return _periodic_component(u)


def spectrum_scores(y: Tensor, weights: Tensor, velocities: list[Velocity],
                    noise_sigma: float | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Spectral negative log-likelihood of each candidate velocity for one frame.

    The model of :func:`estimate_velocity` (power-law image, blurred, white noise; scale,
    exponent and noise fitted per candidate). Lower is better; blind to the sign.

    Args:
        y: the frame ``(H, W)`` (float64 preferred).
        weights: per-sub-step code weights ``(K * S,)``.
        velocities: candidates ``(dx, dy)``.
        noise_sigma: noise standard deviation, fitted when None.

    Returns:
        ``nll, a, sigma^2, g`` per candidate, each ``(C,)``.
    """
    return Spectrum(y, noise_sigma).score(weights.detach().to("cpu", torch.float64),
                                          list(velocities))


def direction_sparsity(y: Tensor, weights: Tensor, velocity: Velocity,
                       noise_sigma: float | None = None) -> tuple[float, float]:
    """Gradient L1 / L2 of the deconvolution with ``velocity`` and with its reverse.

    The true direction of a non-palindromic code gives the sparser (lower) value.

    Args:
        y: the frame ``(H, W)``.
        weights: per-sub-step code weights ``(K * S,)``.
        velocity: ``(dx, dy)``.
        noise_sigma: noise level, fitted with that blur when None.

    Returns:
        ``(forward, reverse)``.
    """
    w = weights.detach().to("cpu", torch.float64)
    spec = Spectrum(y, noise_sigma)
    _, a, s2, g = spec.score(w, [velocity])
    nsr = float(s2[0]) / max(spec.grad_energy(float(a[0]), float(g[0])), 1e-30)
    p = _periodic_component(y)
    return (_sparsity(p, w, velocity, nsr),
            _sparsity(p, w, (-velocity[0], -velocity[1]), nsr))
