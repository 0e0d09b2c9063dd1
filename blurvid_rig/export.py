"""Pictures and movies of reconstructions: contact sheets (PNG), MP4 and GIF.

All exports share one display mapping per file (fixed black/white levels from percentiles of the
whole reconstruction), so brightness does not flicker from frame to frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

EXPORT_FORMATS = ("png", "mp4", "gif")


def display_levels(
    *arrays: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5
) -> tuple[float, float]:
    """Black and white levels covering the given arrays (robust percentiles)."""
    sample = np.concatenate([np.asarray(a, dtype=np.float32).ravel()[::7] for a in arrays])
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def to_uint8(img: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    lo, hi = levels
    return (np.clip((np.asarray(img, np.float32) - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(
        np.uint8
    )


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = max(0.35, tile.shape[1] / 400)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(tile, (0, 0), (tw + 6, th + base + 6), 0, -1)
    cv2.putText(tile, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, 1, cv2.LINE_AA)
    return tile


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray]],
    labels: Sequence[Sequence[str]],
    levels: tuple[float, float],
    gap: int = 4,
    max_tile_px: int = 256,
) -> np.ndarray:
    """Tile images into one uint8 sheet; every tile gets its label in the corner.

    Args:
        rows: rows of 2-D images (all the same shape).
        labels: one label per image.
        levels: display black/white levels.
        gap: pixels between tiles.
        max_tile_px: tiles are downscaled so their longer side is at most this.
    """
    h, w = np.asarray(rows[0][0]).shape
    s = min(1.0, max_tile_px / max(h, w))
    th, tw = max(1, round(h * s)), max(1, round(w * s))
    n_cols = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (th + gap) + gap, n_cols * (tw + gap) + gap), 40, dtype=np.uint8)
    for i, (row, row_labels) in enumerate(zip(rows, labels, strict=True)):
        for j, (img, text) in enumerate(zip(row, row_labels, strict=True)):
            tile = to_uint8(img, levels)
            if s != 1.0:
                tile = cv2.resize(tile, (tw, th), interpolation=cv2.INTER_AREA)
            y0, x0 = gap + i * (th + gap), gap + j * (tw + gap)
            sheet[y0 : y0 + th, x0 : x0 + tw] = _label(tile, text)
    return sheet


def save_png(path: Path, image: np.ndarray) -> Path:
    path = Path(path)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"Could not write {path}; check that the folder exists and is writable.")
    return path


def save_video(
    path: Path, frames: Iterable[np.ndarray], levels: tuple[float, float], fps: float = 8.0
) -> Path:
    """Write frames ``(H, W)`` (an array ``(T, H, W)`` or any iterable, read once, in order) as
    MP4 (mp4v) or GIF, chosen by the file suffix.

    Small frames are upscaled (nearest) to at least 256 px so players show them at a useful size.
    MP4 frames are streamed to the file; a GIF holds every frame in memory (8 bits each).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"Unknown video format {path.suffix!r}; use .mp4 or .gif.")
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"No frames to write to {path}.")
    h, w = first.shape
    k = max(1, int(np.ceil(256 / max(h, w))))

    def frames8() -> Iterator[np.ndarray]:
        for f in itertools.chain([first], it):
            f8 = to_uint8(f, levels)
            yield f8.repeat(k, axis=0).repeat(k, axis=1) if k > 1 else f8

    h, w = h * k, w * k
    if suffix == ".gif":
        imgs = [Image.fromarray(f, mode="L") for f in frames8()]
        imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
        return path
    # mp4v needs even frame sizes
    h2, w2 = h + (h % 2), w + (w % 2)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w2, h2), isColor=False)
    if not vw.isOpened():
        raise OSError(f"OpenCV could not open an MP4 writer for {path}; export a GIF instead.")
    try:
        for f in frames8():
            if (h2, w2) != (h, w):
                f = np.pad(f, ((0, h2 - h), (0, w2 - w)), mode="edge")
            vw.write(f)
    finally:
        vw.release()
    return path
