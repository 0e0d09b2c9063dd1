"""Coded batches of synthetic scenes with ground truth: training batches and the fixed sets.

:func:`coded_batch` codes given scenes of :mod:`recon.scenes` (``K * S`` instantaneous views,
averaged per chip, integrated, noise added); :func:`make_batch` draws a training batch;
:func:`fixed_set` gives the validation and test sets, stratified by motion
(:data:`MOTION_STRATA`) and noise (:data:`NOISE_STRATA`) and regenerated bit for bit from seeds.

Time and brightness conventions are those of :mod:`recon.data`: chip ``k`` of a K-chip code covers
``[k/K, (k+1)/K]``; its ground truth is the view averaged over that interval (here the mean of
``sub_steps`` views at the centres of equal sub-intervals); the coded frame is
``y = sum_k c_k v_k / sum_k c_k``, then noise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from recon.codes import KNOWN_CODES
from recon.functional import CodeLike, code_bits
from recon.noise import SensorModel
from recon.photos import PhotoLibrary, default_photos
from recon.scenes import Scene, SceneSampler, motion_extent_px, render_batch

__all__ = [
    "MOTION_STRATA", "NOISE_STRATA", "CodedBatch", "FixedSet", "coded_batch", "fixed_set",
    "make_batch", "motion_class",
]

# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CodedBatch:
    """Coded frames with their ground truth.

    Attributes:
        y: coded frames ``sum_k c_k v_k / sum_k c_k`` plus noise, ``(B, 1, H, W)``.
        y_clean: the same before noise, ``(B, 1, H, W)``.
        chips: ground truth, the view averaged over each chip, ``(B, K, H, W)``.
        sub: the instantaneous views, ``(B, K * S, H, W)``; ``sub[:, k * S + s]`` is at
            ``sub_times[k * S + s] = (k * S + s + 1/2) / (K * S)``.
        sub_times: ``(K * S,)`` times of ``sub`` (float64).
        bits: the code.
        sub_steps: ``S``.
        sigma: noise standard deviation per sample on the ``[0, 1]`` scale, ``(B,)`` (with a
            sensor model: the standard deviation at mid-grey).
        motion_px: :func:`~recon.scenes.motion_extent_px` per sample, ``(B,)``.
        camera_px: the motion extent of the background alone per sample, ``(B,)``.
        n_sprites: sprites per sample, ``(B,)`` int64.
        stratum: ``"<motion>/sigma=<s>"`` per sample for the fixed sets, ``""`` otherwise.
        scenes: the scenes (all parameters and texture sources).
    """

    y: Tensor
    y_clean: Tensor
    chips: Tensor
    sub: Tensor
    sub_times: Tensor
    bits: tuple[int, ...]
    sub_steps: int
    sigma: Tensor
    motion_px: Tensor
    camera_px: Tensor
    n_sprites: Tensor
    stratum: tuple[str, ...]
    scenes: tuple[Scene, ...]

    def to(self, device: torch.device | str) -> CodedBatch:
        """The batch with its tensors on ``device``."""
        return replace(self, **{k: getattr(self, k).to(device) for k in (
            "y", "y_clean", "chips", "sub", "sub_times", "sigma", "motion_px", "camera_px",
            "n_sprites")})


def _sub_times(k: int, sub_steps: int) -> np.ndarray:
    n = k * sub_steps
    return (np.arange(n) + 0.5) / n


def coded_batch(scenes: Sequence[Scene], bits: CodeLike, *, sub_steps: int = 4,
                sigma: float | Sequence[float] = 0.0, noise_seed: int | Sequence[int] = 0,
                sensor: SensorModel | None = None,
                stratum: Sequence[str] | None = None,
                device: torch.device | str = "cpu") -> CodedBatch:
    """Code given scenes: render ``K * S`` views, average them per chip, integrate, add noise.

    ``device`` renders there (see :func:`~recon.scenes.render_batch`); the Gaussian noise is drawn
    on the CPU from the seeds either way, and a sensor model needs the CPU.

    Args:
        scenes: scenes of one size.
        bits: the code of K chips.
        sub_steps: S >= 4 instantaneous views per chip.
        sigma: Gaussian noise standard deviation, one for all or one per scene.
        noise_seed: seed of the noise, one for all or one per scene.
        sensor: optional Poisson-Gaussian sensor model instead (see :func:`make_batch`).
        stratum: optional label per scene.

    Returns:
        The batch.

    Raises:
        ValueError: a bad code or ``sub_steps``, or per-scene lists of the wrong length.

    Shape:
        - y, y_clean: ``(B, 1, H, W)``; chips: ``(B, K, H, W)``; sub: ``(B, K * S, H, W)``
    """
    c = _check_batch_args(bits, sub_steps)
    n = len(scenes)
    sig = [float(sigma)] * n if isinstance(sigma, int | float) else [float(v) for v in sigma]
    seeds = [int(noise_seed)] * n if isinstance(noise_seed, int) else [int(v) for v in noise_seed]
    labels = [""] * n if stratum is None else list(stratum)
    if not (len(sig) == len(seeds) == len(labels) == n):
        raise ValueError(f"sigma, noise_seed and stratum need one value per scene ({n}).")
    if any(not (v >= 0 and math.isfinite(v)) for v in sig):
        raise ValueError(f"sigma must be finite and >= 0; got {sig!r}.")
    return _coded_batch(scenes, c, sub_steps, sig, seeds, labels, sensor, device)


def _coded_batch(scenes: Sequence[Scene], bits: tuple[int, ...], sub_steps: int,
                 sigmas: Sequence[float], noise_seeds: Sequence[int],
                 strata: Sequence[str], sensor: SensorModel | None,
                 device: torch.device | str = "cpu") -> CodedBatch:
    k = len(bits)
    t = _sub_times(k, sub_steps)
    sub = render_batch(scenes, t, device)
    b, _, hh, ww = sub.shape
    chips = sub.view(b, k, sub_steps, hh, ww).mean(dim=2)
    c = torch.tensor(bits, dtype=torch.float32, device=sub.device)
    y_clean = ((c.view(1, k, 1, 1) * chips).sum(dim=1) / c.sum()).unsqueeze(1)
    noisy = []
    sig_out = []
    for i in range(b):
        gen = torch.Generator().manual_seed(int(noise_seeds[i]))
        if sensor is None:
            s = float(sigmas[i])
            noise = torch.randn(y_clean[i].shape, generator=gen).to(sub.device)
            noisy.append(y_clean[i] + s * noise)
            sig_out.append(s)
        else:
            white = sensor.max_dn - sensor.dark_offset_dn
            raw = sensor.apply(y_clean[i] * white, generator=gen)
            noisy.append((raw - sensor.dark_offset_dn) / white)
            sig_out.append(math.sqrt(float(sensor.expected_variance_dn(0.5 * white))) / white)
    return CodedBatch(
        y=torch.stack(noisy), y_clean=y_clean, chips=chips, sub=sub,
        sub_times=torch.from_numpy(t), bits=tuple(bits), sub_steps=sub_steps,
        sigma=torch.tensor(sig_out, dtype=torch.float32),
        motion_px=torch.tensor([s.motion_px for s in scenes], dtype=torch.float32),
        camera_px=torch.tensor([motion_extent_px(replace(s, layers=s.layers[:1]))
                                for s in scenes], dtype=torch.float32),
        n_sprites=torch.tensor([len(s.layers) - 1 for s in scenes], dtype=torch.int64),
        stratum=tuple(strata), scenes=tuple(scenes),
    )


def _check_batch_args(bits: CodeLike, sub_steps: int) -> tuple[int, ...]:
    c = tuple(int(v) for v in code_bits(bits).tolist())
    if sum(c) == 0:
        raise ValueError("The code has no open chip, so the exposure records nothing.")
    if isinstance(sub_steps, bool) or not isinstance(sub_steps, int) or sub_steps < 4:
        raise ValueError(f"sub_steps must be an integer >= 4 (the chip average needs several "
                         f"views of moving content); got {sub_steps!r}.")
    return c


def make_batch(batch_size: int, size: int | tuple[int, int], bits: CodeLike, *,
               sub_steps: int = 4, sigma: tuple[float, float] = (0.0, 0.01),
               generator: torch.Generator, photos: PhotoLibrary | None,
               split: str = "train", max_motion_px: float = 48.0,
               sensor: SensorModel | None = None) -> CodedBatch:
    """A random training batch of coded frames with ground truth (one code for the batch).

    Scenes come from :class:`~recon.scenes.SceneSampler` (seeded per sample from ``generator``).
    Noise: white Gaussian with a standard deviation drawn uniformly from ``sigma`` per sample, not
    clipped (the model of BDINR and of the fixed sets); or, with ``sensor``, the Poisson-Gaussian
    model of :class:`recon.noise.SensorModel` with ``y = 1`` at the top of the ADC range (shot
    noise, read noise, quantisation and clipping), mapped back to ``[0, 1]``.

    Args:
        batch_size: B (>= 1).
        size: ``H = W`` or ``(H, W)``.
        bits: the code of K chips (see :func:`recon.code_family.sample_code`).
        sub_steps: S >= 4 instantaneous views per chip.
        sigma: ``(lo, hi)`` range of the Gaussian noise standard deviation.
        generator: CPU random generator; the same state gives the same batch.
        photos: photographs, or ``None`` for dead-leaves textures only.
        split: photo split (``"train"`` for training).
        max_motion_px: top motion extent per exposure.
        sensor: optional sensor model replacing the Gaussian noise.

    Returns:
        The batch.

    Raises:
        ValueError: a bad code, ``sub_steps < 4``, a bad sigma range or batch size.

    Shape:
        - y, y_clean: ``(B, 1, H, W)``; chips: ``(B, K, H, W)``; sub: ``(B, K * S, H, W)``
    """
    c = _check_batch_args(bits, sub_steps)
    lo, hi = float(sigma[0]), float(sigma[1])
    if not (0 <= lo <= hi and math.isfinite(hi)):
        raise ValueError(f"sigma must be a range (lo, hi) with 0 <= lo <= hi; got {sigma!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size!r}.")
    sampler = SceneSampler(photos, size, split=split, max_motion_px=max_motion_px)
    seeds = torch.randint(0, 2**62, (batch_size,), generator=generator).tolist()
    sigmas = (lo + (hi - lo) * torch.rand(batch_size, generator=generator, dtype=torch.float64))
    scenes = [sampler.sample(s, 0) for s in seeds]
    return _coded_batch(scenes, c, sub_steps, sigmas.tolist(), [s ^ 0x5A5A for s in seeds],
                        [""] * batch_size, sensor)


# ---------------------------------------------------------------------------------------------
# Fixed validation and test sets
# ---------------------------------------------------------------------------------------------

#: Motion strata: name -> (lo, hi) of :func:`~recon.scenes.motion_extent_px` in pixels per exposure.
MOTION_STRATA: dict[str, tuple[float, float]] = {
    "slow": (0.0, 8.0), "medium": (8.0, 24.0), "fast": (24.0, 48.0),
}
#: Noise strata: Gaussian standard deviations on the ``[0, 1]`` scale.
NOISE_STRATA: tuple[float, ...] = (0.002, 0.01)
_SET_SEEDS = {"val": 0x7A1_5EED, "test": 0x7E57_5EED}


def motion_class(motion_px: float) -> str:
    """The motion stratum of an extent: ``"slow"``, ``"medium"``, ``"fast"`` or ``"beyond"``.

    >>> [motion_class(x) for x in (0.0, 8.0, 8.5, 30.0, 60.0)]
    ['slow', 'slow', 'medium', 'fast', 'beyond']
    """
    for name, (_, hi) in MOTION_STRATA.items():
        if motion_px <= hi:
            return name
    return "beyond"


_SET_DEFAULT_N = {"val": 8, "test": 16}


@dataclass(frozen=True)
class FixedSet:
    """A fixed evaluation set, rendered on demand, bit for bit the same on every call.

    Sample ``i`` belongs to stratum ``strata[i]``; its scene depends only on the set's name and
    ``i`` (not on the code, so several codes can be compared on identical scenes).

    Attributes:
        name: ``"val"`` or ``"test"``.
        size_hw: ``(H, W)``.
        bits: the code.
        sub_steps: S.
        photos: the photo library (its ``name`` split provides the textures).
        strata: label per sample.
        motion_ranges: ``(lo, hi)`` motion range per sample.
        sigmas: noise standard deviation per sample.
    """

    name: str
    size_hw: tuple[int, int]
    bits: tuple[int, ...]
    sub_steps: int
    photos: PhotoLibrary
    strata: tuple[str, ...]
    motion_ranges: tuple[tuple[float, float], ...]
    sigmas: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.strata)

    def scene(self, index: int) -> Scene:
        """The scene of sample ``index``."""
        sampler = SceneSampler(self.photos, self.size_hw, split=self.name)
        return sampler.sample(_SET_SEEDS[self.name], index, motion_px=self.motion_ranges[index])

    def batch(self, indices: Sequence[int]) -> CodedBatch:
        """Render the samples ``indices`` as one batch (each sample independent of the others)."""
        idx = [int(i) for i in indices]
        if not idx or any(not 0 <= i < len(self) for i in idx):
            raise ValueError(f"indices must be a non-empty list within 0..{len(self) - 1}.")
        scenes = [self.scene(i) for i in idx]
        seeds = [_SET_SEEDS[self.name] * 1_000_003 + i for i in idx]
        return _coded_batch(scenes, self.bits, self.sub_steps, [self.sigmas[i] for i in idx],
                            seeds, [self.strata[i] for i in idx], None)

    def batches(self, batch_size: int = 8) -> Iterator[CodedBatch]:
        """All samples in order, ``batch_size`` at a time."""
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))


def fixed_set(name: str, size: int | tuple[int, int] = 128, n_per_stratum: int | None = None,
              code: CodeLike = KNOWN_CODES["bdinr8"], *, sub_steps: int = 4,
              photos: PhotoLibrary | None = None) -> FixedSet:
    """The fixed validation or test set, stratified by motion and noise.

    Strata: motion slow (extent <= 8 px per exposure), medium (8 to 24), fast (24 to 48), each
    with Gaussian noise sigma 0.002 and 0.01; ``n_per_stratum`` samples each, the extent drawn
    uniformly within the motion range. Textures come from the ``name`` split of the photos and of
    the dead-leaves bank, which training never uses.

    Args:
        name: ``"val"`` or ``"test"``.
        size: ``H = W`` or ``(H, W)`` (128 by default; 256 for a final test at a larger size).
        n_per_stratum: samples per stratum (default 8 for val, 16 for test).
        code: the code (default ``11100101``); :data:`recon.code_family.UNSEEN_CODES` hold codes
            training never saw.
        sub_steps: S >= 4.
        photos: the photo library (default :func:`recon.photos.default_photos`).

    Returns:
        The set; render it with :meth:`FixedSet.batch` or :meth:`FixedSet.batches`.

    Raises:
        ValueError: unknown name, bad code, sub_steps or count.
        recon.photos.PhotoLibraryError: no photo installed (the message names the apt packages).
    """
    if name not in _SET_SEEDS:
        raise ValueError(f"Unknown fixed set {name!r}; use 'val' or 'test'.")
    c = _check_batch_args(code, sub_steps)
    n = _SET_DEFAULT_N[name] if n_per_stratum is None else int(n_per_stratum)
    if n < 1:
        raise ValueError(f"n_per_stratum must be >= 1; got {n_per_stratum!r}.")
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    strata, ranges, sigmas = [], [], []
    for motion, rng in MOTION_STRATA.items():
        for s in NOISE_STRATA:
            for _ in range(n):
                strata.append(f"{motion}/sigma={s:g}")
                ranges.append(rng)
                sigmas.append(s)
    return FixedSet(name=name, size_hw=hw, bits=c, sub_steps=sub_steps,
                    photos=photos if photos is not None else default_photos(),
                    strata=tuple(strata), motion_ranges=tuple(ranges), sigmas=tuple(sigmas))
