"""DMD -> camera mapping: dots projected by the DMD onto a card, found in the camera's frames and
identified by a binary code of their index, give the homography (or affine map) from DMD
mirrors to sensor pixels."""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from calibration.model import DmdMapping
from calibration.procedures.base import (
    CalibrationFailed,
    FrameSession,
    Procedure,
    Progress,
    Rig,
    robust_sigma,
)
from hw.base import Shutter
from hw.types import Roi


class Projector(Protocol):
    """Shows a binary pattern on the DMD (``pattern[y, x]``, True = mirror on) and holds it.

    A projector that is also the rig's shutter sets ``is_shutter = True``: the pattern is then
    what the shutter plays during each exposure (see :class:`DmdProjector`)."""

    @property
    def shape(self) -> tuple[int, int]: ...

    def show(self, pattern: np.ndarray) -> None: ...


class DmdProjector:
    """The rig's DMD shutter used as projector: each pattern is loaded as a one-pattern mask
    stack of ``chip_us``, played once per exposure, so the camera sees the lit card through it."""

    is_shutter = True

    def __init__(self, shutter: Shutter, chip_us: float = 2000.0) -> None:
        if not hasattr(shutter, "load_masks"):
            raise ValueError(f"{shutter.info.controller} is not a DMD; it cannot project dots.")
        self.shutter = shutter
        self.chip_us = float(chip_us)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.shutter.dmd_shape)  # type: ignore[attr-defined]

    def show(self, pattern: np.ndarray) -> None:
        self.shutter.disarm()
        self.shutter.load_masks(np.asarray(pattern, bool)[None], self.chip_us)  # type: ignore


def dot_grid(shape: tuple[int, int], grid: tuple[int, int], radius: int) -> np.ndarray:
    """Centres ``(N, 2)`` (x, y) of a ``cols`` x ``rows`` grid of dots inside a DMD of ``shape``."""
    h, w = shape
    cols, rows = grid
    xs = np.linspace(0.12 * w, 0.88 * w, cols)
    ys = np.linspace(0.12 * h, 0.88 * h, rows)
    gx, gy = np.meshgrid(xs, ys)
    centres = np.round(np.stack([gx.ravel(), gy.ravel()], -1))
    if radius * 2 + 2 > min(np.diff(xs).min(initial=w), np.diff(ys).min(initial=h)):
        raise ValueError(f"Dots of radius {radius} overlap on a {cols}x{rows} grid; use fewer.")
    return centres


def _dots_image(shape: tuple[int, int], centres: np.ndarray, radius: int) -> np.ndarray:
    img = np.zeros(shape, np.uint8)
    for x, y in centres:
        cv2.circle(img, (int(x), int(y)), int(radius), 1, -1)
    return img.astype(bool)


def dmd_mapping(
    rig: Rig, projector: Projector, *, grid: tuple[int, int] = (8, 6), radius: int | None = None,
    exposure_us: float = 10_000.0, model: str = "homography",
) -> Procedure[DmdMapping]:
    """Fit the DMD -> camera mapping from projected dots.

    Frame 0 shows every dot (their camera positions are the centroids of the bright blobs);
    frames 1..B show the dots whose index + 1 has bit b set, so each blob reads its own index
    (a binary structured-light code: no ordering assumptions, any rotation or flip). The mapping
    is a homography (or an affine map) fitted with RANSAC; its residual is reported.
    """
    if model not in ("homography", "affine"):
        raise ValueError(f"model must be 'homography' or 'affine', got {model!r}.")
    if radius is None:  # a quarter of the dot spacing, at most 6 mirrors
        h, w = projector.shape
        spacing = min(0.76 * w / max(grid[0] - 1, 1), 0.76 * h / max(grid[1] - 1, 1))
        radius = int(max(1, min(6, spacing // 4)))
    centres = dot_grid(projector.shape, grid, radius)
    rig.bench.setup("flat", "Put a matte white card where the scene will be (the DMD's dots "
                            "are imaged on it), then continue.")
    frames, roi = yield from _project_dots(rig, projector, centres, radius, exposure_us)
    src, dst = _identify_dots(frames, centres)
    return _fit_mapping(src, dst, model, roi, len(centres), tuple(projector.shape))


def _project_dots(
    rig: Rig, projector: Projector, centres: np.ndarray, radius: int, exposure_us: float
) -> Procedure[tuple[list[np.ndarray], Roi]]:
    """Frames of no dot, all dots, then the dots of each bit of their index + 1; and the ROI
    they were taken with."""
    n = len(centres)
    n_bits = int(np.ceil(np.log2(n + 1)))
    frames = []
    with FrameSession(rig) as s:
        roi = s.base.roi
        s.set(exposure_us)
        patterns = [np.ones(n, bool)] + [((np.arange(n) + 1) >> b) & 1 == 1 for b in range(n_bits)]
        if getattr(projector, "is_shutter", False):
            projector.chip_us = float(exposure_us)  # type: ignore[attr-defined]
        try:
            for i, on in enumerate([np.zeros(n, bool)] + patterns):
                projector.show(_dots_image(projector.shape, centres[on], radius))
                if getattr(projector, "is_shutter", False):
                    s.adopt_loaded(exposure_us)
                frames.append(s.grab())
                yield Progress((i + 1) / (n_bits + 2),
                               f"DMD mapping: pattern {i + 1} of {n_bits + 2}")
        finally:  # never leave dots on the DMD (cancel, timeout)
            projector.show(np.zeros(projector.shape, bool))
    return frames, roi


def _identify_dots(frames: list[np.ndarray], centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The dots found in the frames of :func:`_project_dots` and identified by their bits:
    ``(DMD points, camera points)``, ``(N, 2)`` each (x, y)."""
    n = len(centres)
    dark, allon, bits = frames[0], frames[1], frames[2:]
    diff = allon - dark
    thr = 0.5 * float(np.percentile(diff, 99.5))
    if thr <= 5 * max(robust_sigma(dark), 0.5):
        raise CalibrationFailed(
            "The projected dots are not visible in the camera: is the DMD lit and imaged on "
            "the card, and is it in focus?"
        )
    n_lab, labels, stats, cents = cv2.connectedComponentsWithStats(
        (diff > thr).astype(np.uint8), connectivity=8)
    cam_pts, dmd_pts = [], []
    for lab in range(1, n_lab):
        if stats[lab, cv2.CC_STAT_AREA] < 3:
            continue
        mask = labels == lab
        wts = diff[mask]
        ys, xs = np.nonzero(mask)
        cx, cy = float(np.sum(xs * wts) / wts.sum()), float(np.sum(ys * wts) / wts.sum())
        code = 0
        for b, f in enumerate(bits):
            if float(np.mean((f - dark)[mask])) > 0.5 * float(np.mean(diff[mask])):
                code |= 1 << b
        idx = code - 1
        if 0 <= idx < n:
            cam_pts.append((cx, cy))
            dmd_pts.append(centres[idx])
    if len(cam_pts) < 6:
        raise CalibrationFailed(
            f"Only {len(cam_pts)} of {n} dots were found and identified; at least 6 are needed. "
            "Light the DMD evenly, focus it on the card, and keep it in the camera's view."
        )
    return np.asarray(dmd_pts, np.float64), np.asarray(cam_pts, np.float64)


def _fit_mapping(
    src: np.ndarray, dst: np.ndarray, model: str, roi: Roi, n_projected: int,
    dmd_shape: tuple[int, int],
) -> DmdMapping:  # fmt: skip
    """The DMD -> frame mapping fitted with RANSAC, stored in full-sensor pixels."""
    if model == "homography":
        h, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 2.0)
    else:
        a, inliers = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0)
        h = None if a is None else np.vstack([a, [0.0, 0.0, 1.0]])
    if h is None or inliers is None or int(np.count_nonzero(inliers)) < 6:
        raise CalibrationFailed(
            "The dots found do not determine the mapping (too few, or all in a line): put the "
            "whole DMD field in the camera's view."
        )
    proj = cv2.perspectiveTransform(src[:, None, :], h)[:, 0, :]
    err = np.sqrt(np.sum((proj - dst) ** 2, axis=1))
    ok = inliers.ravel().astype(bool)
    # the dots were found in frame pixels; the mapping is stored in full-sensor pixels
    to_sensor = np.array([[1.0, 0.0, roi.offset_x], [0.0, 1.0, roi.offset_y], [0.0, 0.0, 1.0]])
    return DmdMapping(
        matrix=to_sensor @ h, model=model, rms_px=float(np.sqrt(np.mean(err[ok] ** 2))),
        n_dots=int(ok.sum()), n_projected=n_projected, dmd_shape=dmd_shape,
        dmd_points=src, camera_points=dst,
    )
