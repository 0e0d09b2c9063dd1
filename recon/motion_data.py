"""Scenes with known motion for the motion estimator: per-pixel velocity truth and test strata.

:func:`velocity_map` gives, for a scene of :mod:`recon.scenes`, the velocity (pixels over the
exposure) of the layer seen at each pixel at mid-exposure; :func:`stratum_scene` draws a scene of
one of the strata the motion estimator is trained and judged on (:data:`STRATA`): global pans with
and without acceleration, one or several objects moving over a still background, an object that
turns and zooms (non-rigid motion in the image), and a still scene.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from recon.scenes import Layer, Scene, SceneSampler, fill_layer_grid, sprite_window

__all__ = ["STRATA", "stratum_scene", "tile_targets", "velocity_map"]

#: Motion strata: ``pan`` (the background translates), ``pan_accel`` (with acceleration),
#: ``object`` (one object over a still background), ``objects`` (2-3 objects in different
#: directions over a still background), ``nonrigid`` (an object that also turns and zooms, over
#: a slowly panning background), ``still`` (nothing moves).
STRATA: tuple[str, ...] = ("pan", "pan_accel", "object", "objects", "nonrigid", "still")


def velocity_map(scene: Scene) -> Tensor:
    """Velocity of the layer seen at each pixel at mid-exposure.

    Layers are composited back to front with their alpha at ``t = 1/2`` (so a half-covered pixel
    gets the blend of the two velocities); the velocity of a layer is its displacement over the
    exposure (``Layer.velocity_px``; acceleration bends the path but not the displacement, turning
    and zooming are ignored).

    Returns:
        ``(2, H, W)`` float32, ``(dx, dy)``.
    """
    hh, ww = scene.size_hw
    xs = np.arange(ww) - (ww - 1) / 2
    ys = np.arange(hh) - (hh - 1) / 2
    t = np.array([0.5])
    out = torch.empty(2, hh, ww)
    out[0] = float(scene.layers[0].velocity_px[0])
    out[1] = float(scene.layers[0].velocity_px[1])
    for layer in scene.layers[1:]:
        assert layer.alpha is not None
        y0, y1, x0, x1 = sprite_window(layer, scene.shake, t, (hh, ww))
        if y0 >= y1 or x0 >= x1:
            continue
        g = torch.empty(1, y1 - y0, x1 - x0, 2)
        fill_layer_grid(g, layer, scene.shake, t, xs[x0:x1], ys[y0:y1])
        a = F.grid_sample(layer.alpha.float()[None, None], g, mode="bilinear",
                          padding_mode="zeros", align_corners=False)[0, 0]
        for d in range(2):
            reg = out[d, y0:y1, x0:x1]
            reg.mul_(1 - a).add_(a * float(layer.velocity_px[d]))
    return out


def tile_targets(vmap: Tensor, f: int, tile: int) -> tuple[Tensor, Tensor]:
    """Per-tile mean velocity (working px) and weight (uniformity of the motion in the tile).

    Args:
        vmap: ``(2, H, W)`` full-resolution velocity map.
        f: working-scale reduction.
        tile: tile side at the working scale.

    Returns:
        ``(2, th, tw)`` velocities and ``(th, tw)`` weights in ``(0, 1]``.
    """
    k = f * tile
    h, w = (vmap.shape[1] // k) * k, (vmap.shape[2] // k) * k
    v = vmap[:, :h, :w] / f
    m = F.avg_pool2d(v[None], k)[0]
    var = (F.avg_pool2d(v.square()[None], k)[0] - m.square()).sum(0).clamp(min=0)
    return m, torch.exp(-var / 1.0)


def _direction(rng: np.random.Generator) -> np.ndarray:
    a = rng.uniform(0, 2 * math.pi)
    return np.array([math.cos(a), math.sin(a)])


def _still(layer: Layer) -> Layer:
    return replace(layer, velocity_px=(0.0, 0.0), accel_px=(0.0, 0.0), spin_rad=0.0,
                   log_zoom=0.0)


def stratum_scene(sampler: SceneSampler, stratum: str, seed: int, index: int,
                  motion_px: tuple[float, float]) -> Scene:
    """A scene of one stratum, reproducible from ``(seed, index)``.

    Textures and sprite shapes come from ``sampler`` (its photo split); the motion is replaced:
    the moving layers get a speed drawn uniformly in ``motion_px`` (pixels over the exposure) in
    a uniform direction. Camera shake is removed (it would move "still" backgrounds).

    Args:
        sampler: draws the textures (``max_motion_px`` must cover ``motion_px``).
        stratum: one of :data:`STRATA`.
        seed: stream seed.
        index: scene number in the stream.
        motion_px: ``(lo, hi)`` of the speed of the moving layers.

    Returns:
        The scene, ``motion_px`` set to the largest moving layer's speed.

    Raises:
        ValueError: unknown stratum.
    """
    if stratum not in STRATA:
        raise ValueError(f"Unknown stratum {stratum!r}; use one of {STRATA}.")
    base = sampler.sample(seed, index, motion_px=0.0)
    rng = np.random.default_rng([int(seed), int(index), 77])
    lo, hi = motion_px
    bg = _still(base.layers[0])
    sprites = [_still(s) for s in base.layers[1:]]
    while len(sprites) < 3:  # the sampler draws 1-3 sprites; some strata need more
        extra = sampler.sample(seed + 1 + len(sprites), index, motion_px=0.0)
        sprites.append(_still(extra.layers[-1]))
    speed = float(rng.uniform(lo, hi))
    if stratum in ("pan", "pan_accel"):
        v = speed * _direction(rng)
        acc = (speed * rng.uniform(0.5, 1.5) * _direction(rng) if stratum == "pan_accel"
               else np.zeros(2))
        bg = replace(bg, velocity_px=(float(v[0]), float(v[1])),
                     accel_px=(float(acc[0]), float(acc[1])))
        layers = [bg]
    elif stratum == "still":
        layers = [bg] + sprites[: int(rng.integers(0, 3))]
        speed = 0.0
    elif stratum in ("object", "nonrigid"):
        v = speed * _direction(rng)
        s = sprites[0]
        if stratum == "nonrigid":
            r = 0.5 * s.scale * max(s.texture.shape)
            s = replace(s, spin_rad=float(rng.choice([-1, 1]) * rng.uniform(0.3, 0.8) * speed
                                          / max(r, 8.0)),
                        log_zoom=float(rng.uniform(-0.3, 0.3) * speed / max(r, 8.0)))
            pan = rng.uniform(0.0, 0.2) * speed * _direction(rng)
            bg = replace(bg, velocity_px=(float(pan[0]), float(pan[1])))
        s = replace(s, velocity_px=(float(v[0]), float(v[1])))
        layers = [bg, s]
    else:  # objects
        n = int(rng.integers(2, 4))
        a0 = rng.uniform(0, 2 * math.pi)
        layers = [bg]
        for j in range(n):
            sp = speed if j == 0 else float(rng.uniform(lo, hi))
            a = a0 + j * 2 * math.pi / n + rng.uniform(-0.3, 0.3)
            layers.append(replace(sprites[j], velocity_px=(sp * math.cos(a), sp * math.sin(a))))
    return Scene(base.size_hw, tuple(layers), split=base.split, motion_px=speed)
