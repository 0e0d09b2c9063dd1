"""Non-blind refiner: a closed-form coded deconvolution with the estimated motion, then a small
U-Net that removes what the deconvolution leaves (ringing, noise, border artefacts).

The physics does the inversion: :func:`refiner_inputs` deconvolves the coded frame with the coded
PSF of the motion found by :mod:`recon.motion` (Wiener, FFT, tapered border), and the network
(:class:`DeblurRefiner`) sees that estimate beside the coded frame, the noise level and the
motion, and predicts a correction. Trained (:mod:`recon.train_refiner`) against the true
mid-exposure image with velocities jittered around the truth, so it tolerates the estimator's
errors; the frames are that image rendered along the motion (:func:`refine_frames`).

Conventions as in :mod:`recon.classical`. Images are in units of the sensor's full scale.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recon.psf_deconv import Velocity, motion_psf, wiener_deconvolve

__all__ = [
    "DeblurRefiner",
    "RefinerModelError",
    "load_refiner",
    "refine_frames",
    "refine_sharp",
    "refiner_inputs",
    "shipped_refiner",
]

#: Where the shipped refiner lives.
WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "refiner"
REFINER_MODEL = "refiner"
#: Velocities are given to the network divided by this (pixels per exposure).
V_SCALE = 48.0
N_IN = 5


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.1))


class DeblurRefiner(nn.Module):
    """A three-level U-Net predicting a correction of a deconvolved image.

    Input channels: the deconvolution and the coded frame (both minus the frame's mean), the
    noise level (x10) and the velocity ``/ V_SCALE`` as constant planes. Output: the refined
    image (deconvolution + correction). Any frame size (padded to a multiple of 4 inside).

    Args:
        width: channels of the first level (doubled at each level below).
    """

    def __init__(self, width: int = 24) -> None:
        super().__init__()
        w = int(width)
        self.width = w
        self.enc1 = _block(N_IN, w)
        self.enc2 = _block(w, 2 * w)
        self.mid = _block(2 * w, 4 * w)
        self.up2 = nn.Conv2d(4 * w, 2 * w, 1)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.Conv2d(2 * w, w, 1)
        self.dec1 = _block(2 * w, w)
        self.out = nn.Conv2d(w, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, 5, H, W)`` -> refined image ``(B, 1, H, W)``."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        e1 = self.enc1(xp)
        e2 = self.enc2(F.avg_pool2d(e1, 2))
        m = self.mid(F.avg_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([e2, self.up2(F.interpolate(m, scale_factor=2.0))], 1))
        d1 = self.dec1(torch.cat([e1, self.up1(F.interpolate(d2, scale_factor=2.0))], 1))
        corr = self.out(d1)[..., :h, :w]
        return x[:, :1] + corr


def _nsr(y: Tensor, sigma: float) -> float:
    gx, gy = y.diff(dim=1), y.diff(dim=0)
    grad_e = float(gx.square().mean() + gy.square().mean())
    return max(3 * sigma**2 / max(grad_e, 1e-10), 1e-5)


def refiner_inputs(y: Tensor, weights: Tensor, velocity: Velocity,
                   noise_sigma: float | None = None) -> tuple[Tensor, float]:
    """The network's input for one coded frame and one motion, and the frame's mean.

    Args:
        y: the coded frame ``(H, W)``.
        weights: per-sub-step code weights (time order).
        velocity: ``(dx, dy)`` pixels over the exposure.
        noise_sigma: the noise standard deviation (estimated from ``y`` when None).

    Returns:
        ``(1, 5, H, W)`` float32 and the mean that was subtracted.
    """
    from recon.motion import estimate_noise_sigma

    y = y.float()
    sigma = estimate_noise_sigma(y) if noise_sigma is None else float(noise_sigma)
    psf = motion_psf(weights, velocity, dtype=torch.float32, device=y.device)
    xw = wiener_deconvolve(y, psf, _nsr(y, sigma), boundary="taper").float()
    m = float(y.mean())
    h, w = y.shape
    planes = torch.stack([xw - m, y - m, torch.full_like(y, 10.0 * sigma),
                          torch.full_like(y, float(velocity[0]) / V_SCALE),
                          torch.full_like(y, float(velocity[1]) / V_SCALE)])
    return planes.view(1, N_IN, h, w), m


def refine_sharp(model: DeblurRefiner, y: Tensor, weights: Tensor, velocity: Velocity,
                 noise_sigma: float | None = None) -> Tensor:
    """The refined mid-exposure image ``(H, W)`` of a coded frame moving at ``velocity``."""
    x, m = refiner_inputs(y, weights, velocity, noise_sigma)
    dev = next(model.parameters()).device
    return model(x.to(dev))[0, 0].to(y.device) + m


def refine_frames(model: DeblurRefiner, y: Tensor, weights: Tensor, velocity: Velocity,
                  times: Tensor, slot: float, noise_sigma: float | None = None) -> Tensor:
    """Frames ``(T, H, W)`` at ``times``: the refined image rendered along ``velocity``."""
    from recon.classical import render_frames

    with torch.no_grad():
        sharp = refine_sharp(model, y, weights, velocity, noise_sigma)
    return render_frames(sharp, velocity, times=times, frame_exposure=slot)


class RefinerModelError(ValueError):
    """No usable refiner (missing files, wrong checksum)."""


def shipped_refiner() -> Path | None:
    """The card of the shipped refiner, or None when none ships."""
    card = WEIGHTS_DIR / f"{REFINER_MODEL}.json"
    return card if card.exists() else None


def load_refiner(card_path: str | Path | None = None) -> tuple[DeblurRefiner, dict[str, Any]]:
    """Load a refiner from its card (default: the shipped one), checking the weights' sha256.

    Raises:
        RefinerModelError: no card, missing weights, or a checksum that does not match.
    """
    from safetensors.torch import load_file

    card_path = Path(card_path) if card_path is not None else shipped_refiner()
    if card_path is None or not card_path.exists():
        raise RefinerModelError(
            "No refiner ships in recon/models/refiner; train one with "
            "`python -m recon.train_refiner --export recon/models/refiner`.")
    card = json.loads(card_path.read_text())
    wfile = card_path.parent / card["weights"]
    if not wfile.exists():
        raise RefinerModelError(f"{wfile.name} (named by {card_path.name}) is missing.")
    digest = hashlib.sha256(wfile.read_bytes()).hexdigest()
    if digest != card["sha256"]:
        raise RefinerModelError(
            f"{wfile.name} does not match its card's sha256 ({digest[:12]} != "
            f"{card['sha256'][:12]}); the file is damaged or was replaced. Restore it (git "
            "checkout) or retrain with python -m recon.train_refiner.")
    model = DeblurRefiner(width=int(card["width"]))
    model.load_state_dict(load_file(str(wfile)))
    return model.eval(), card
