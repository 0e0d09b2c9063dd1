"""Geometry calibration: intrinsics and lens distortion from checkerboard views."""

from __future__ import annotations

import cv2
import numpy as np

from calibration.bench import Board
from calibration.model import GeometryResult
from calibration.procedures.base import CalibrationFailed, FrameSession, Procedure, Progress, Rig


def _to_u8(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)


def geometry(
    rig: Rig, *, board: Board | None = None, n_views: int = 12, exposure_us: float = 5000.0,
    fix_k3: bool = True,
) -> Procedure[GeometryResult]:
    """Detect a checkerboard in ``n_views`` poses and fit intrinsics and distortion
    (``cv2.calibrateCamera``); views where the board is not found are skipped and reported."""
    board = board or Board()
    pattern = (board.cols, board.rows)
    objp = board.object_points()
    obj_pts, img_pts, found = [], [], []
    size: tuple[int, int] = (0, 0)
    with FrameSession(rig) as s:
        for v in range(n_views):
            rig.bench.setup(
                "checkerboard",
                f"Hold the checkerboard ({board.cols}x{board.rows} inner corners) in view at a "
                f"new tilt and position (view {v + 1} of {n_views}), then continue.",
                view=v,
            )
            s.set(exposure_us)
            img = s.grab()
            h, w = img.shape
            size = (w, h)
            u8 = _to_u8(img)
            flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
            ok, corners = cv2.findChessboardCorners(u8, pattern, flags=flags)
            if ok:
                crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
                corners = cv2.cornerSubPix(u8, corners, (5, 5), (-1, -1), crit)
                obj_pts.append(objp)
                img_pts.append(corners)
            found.append(ok)
            yield Progress((v + 1) / n_views,
                           f"geometry: view {v + 1}: board {'found' if ok else 'NOT found'}")
    if len(img_pts) < 4:
        raise CalibrationFailed(
            f"The checkerboard was found in {len(img_pts)} of {n_views} views; at least 4 are "
            "needed. Light the board evenly, keep it whole in view and in focus."
        )
    flags = cv2.CALIB_FIX_K3 if fix_k3 else 0
    rms, k, dist, rvecs, tvecs = cv2.calibrateCamera(obj_pts, img_pts, size, None, None,
                                                     flags=flags)
    per_view = []
    for o, im, r, t in zip(obj_pts, img_pts, rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(o, r, t, k, dist)
        per_view.append(float(np.sqrt(np.mean(np.sum((proj - im) ** 2, axis=-1)))))
    return GeometryResult(
        camera_matrix=np.asarray(k, np.float64), dist=np.asarray(dist, np.float64).ravel()[:5],
        rms_px=float(rms), per_view_rms_px=np.asarray(per_view), image_size=size,
        board=pattern, square_mm=board.square_mm,
        corners=np.stack([c.reshape(-1, 2) for c in img_pts]).astype(np.float32),
    )
