"""Turn a calibration into what reconstruction applies: dark, flat and the effective code.

Raw frames are never changed; these corrections are applied when reconstructing and recorded in
the reconstruction file (which calibration, what was applied, any warnings).

Which calibration: the one passed (``blurvid-rig recon --calibration FILE``), else the one
embedded in the capture, else none (the black level is subtracted and the nominal code used).
A calibration that does not fit the capture (other ROI, pixel format or gain) is refused with the
reason; a weaker mismatch (exposure, age) is a warning, recorded with the result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from blurvid_rig.files.capture import CaptureFile
from calibration.model import DEFAULT_MAX_AGE_DAYS, Calibration, CalibrationError
from hw.errors import RigError
from hw.types import CameraSettings, ShutterCode
from recon.functional import code_weights

log = logging.getLogger(__name__)

#: Time samples per chip of the effective code (its rise and fall need more than one).
EFFECTIVE_SUB_STEPS = 4

#: Flat-field values below this are treated as dead pixels (not divided by).
_FLAT_MIN = 0.05

#: "auto": all the calibration holds; "sensor": dark and flat only (nominal code); "none": the
#: black level only
USES = ("auto", "sensor", "none")


@dataclass
class Corrections:
    """What to subtract, divide and which code weights to use for one capture."""

    dark: np.ndarray | float
    flat: np.ndarray | None = None
    sub_steps: int = 1
    weights: torch.Tensor | None = None  # per-sub-step weights for the forward operator
    calibration_uuid: str = ""
    used: str = "black level"
    warnings: list[str] = field(default_factory=list)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Dark-subtracted, flat-corrected frame, float32."""
        y = raw.astype(np.float32) - self.dark
        if self.flat is not None:
            y = y / self.flat
        return y.astype(np.float32, copy=False)

    @property
    def mean_dark(self) -> float:
        return float(np.mean(self.dark))


def capture_exposure_us(settings: CameraSettings, code: ShutterCode) -> float:
    """How long the sensor integrated each coded frame."""
    if settings.exposure_mode == "TriggerWidth":
        return code.period_us
    return float(settings.exposure_us)


def calibration_of(capture: CaptureFile) -> Calibration | None:
    """The calibration embedded in a capture (None when it has none or an old-style dict)."""
    tree = capture.calibration or {}
    if "uuid" not in tree or "schema_version" not in tree:
        return None
    return Calibration.from_tree(tree)


def corrections_for(
    capture: CaptureFile, calibration: Calibration | None = None, use: str = "auto",
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
) -> Corrections:
    """The corrections for ``capture`` (see the module docstring).

    Raises:
        RigError: the calibration does not apply to this capture (the reason is given).
    """
    if use not in USES:
        raise RigError(f"Unknown calibration use {use!r}; one of {USES}.")
    settings = capture.camera_settings
    black = float(settings.black_level_dn)
    if use == "none":
        return Corrections(dark=black, used="black level (calibration not used)")
    if calibration is None:
        try:
            calibration = calibration_of(capture)
        except CalibrationError as e:
            raise RigError(f"{capture.path}: its embedded calibration is unreadable: {e}") from e
        if calibration is None:
            legacy = (capture.calibration or {}).get("dark")
            if isinstance(legacy, np.ndarray) and legacy.shape == capture.frame_shape:
                return Corrections(dark=legacy.astype(np.float32), used="dark frame")
            return Corrections(dark=black)
    code = capture.code
    try:
        problems = calibration.require(settings, capture.frame_shape, max_age_days=max_age_days)
    except CalibrationError as e:
        raise RigError(
            f"{e}. Reconstruct with a calibration made for this capture (--calibration FILE), "
            "or without one (--no-calibration)."
        ) from e
    warnings = [p.message for p in problems]
    for w in warnings:
        log.warning("%s: calibration %s: %s", capture.path.name, calibration.uuid[:8], w)
    out = Corrections(
        dark=black, calibration_uuid=calibration.uuid, warnings=warnings, used=""
    )
    parts = []
    if calibration.dark is not None:
        out.dark = calibration.dark.at(capture_exposure_us(settings, code))
        parts.append("dark")
    if calibration.flat is not None:
        flat = calibration.flat.flat.astype(np.float32)
        out.flat = np.where(flat > _FLAT_MIN, flat, np.float32(1.0))
        parts.append("flat")
    if calibration.shutter_timing is not None and use == "auto":
        s = EFFECTIVE_SUB_STEPS
        eff = calibration.shutter_timing.effective_code(code.bits, code.chip_us, s)
        out.sub_steps = s
        out.weights = code_weights(
            code.bits, sub_steps=s, sub_profile=np.clip(eff, 0.0, 1.0), dtype=torch.float64
        )
        parts.append("effective code")
    out.used = f"{'+'.join(parts) or 'nothing'} from calibration {calibration.uuid}"
    return out
