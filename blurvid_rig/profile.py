"""Rig profiles from capture files: the code and camera settings a capture was recorded with.

A profile is a rig file (:mod:`blurvid_rig.config`: :class:`~blurvid_rig.config.RigConfig`,
read and written by :func:`~blurvid_rig.config.load_config` and
:func:`~blurvid_rig.config.save_config`); the rig window loads and saves it so that it comes back
to where the user left it. :func:`profile_from_capture` turns the metadata of any capture file
into one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from blurvid_rig.config import RigConfig


def profile_from_capture(path: str | Path, base: RigConfig | None = None) -> RigConfig:
    """``base`` (default: a fresh config) with the code and camera settings a capture file was
    recorded with; its devices and folder are kept."""
    from blurvid_rig.files.capture import CaptureFile

    base = base if base is not None else RigConfig()
    with CaptureFile.open(path) as f:
        code, cam = f.code, f.camera_settings
    return dataclasses.replace(base, bits=code.as_string(), chip_us=code.chip_us,
                               camera_settings=cam)  # fmt: skip
