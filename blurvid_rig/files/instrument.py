"""The instrument of a capture file: where its groups are, its frame_log columns, and the
``hw.types`` records (camera, shutter, code) written as NeXus fields and read back typed.

``docs/FORMAT.md`` documents every field. :mod:`blurvid_rig.files.capture_writer` writes these,
:mod:`blurvid_rig.files.capture` reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from blurvid_rig.files.h5io import (
    CaptureFormatError,
    check_finite,
    new_group,
    read_num,
    read_str,
    read_time_us,
    require,
    scalar_attrs,
    units_for,
    write_field,
)
from hw.errors import CodeError
from hw.types import (
    CameraInfo,
    CameraSettings,
    Roi,
    ShutterCode,
    ShutterInfo,
    ShutterStatus,
)

CAMERA = "/entry/instrument/camera"
SHUTTER = "/entry/instrument/shutter"

#: Fill value of the provenance columns: a row still holding it was never written.
UNWRITTEN = int(np.iinfo(np.int64).min)

#: frame_log columns: name -> (dtype, fill value, units). host_time_ns is written last in each
#: row, so a row whose host_time_ns still holds the fill value was never completed.
LOG_COLUMNS: dict[str, tuple[str, Any, str | None]] = {
    "frame_id": ("i8", UNWRITTEN, "1"),
    "camera_timestamp_ns": ("i8", UNWRITTEN, "ns"),
    "trigger_index": ("i8", UNWRITTEN, "1"),
    "exposure_us": ("f8", 0.0, "us"),
    "code_sha": ("S64", b"", None),
    "host_time_ns": ("i8", UNWRITTEN, "ns"),
}

#: ``image_key`` values: what each frame is.
IMAGE_KEYS = {0: "coded", 1: "flat", 2: "dark"}

ROI_FIELDS = ("offset_x", "offset_y", "width", "height")


def write_camera(
    instrument: h5py.Group, info: CameraInfo, cs: CameraSettings, nodes: Mapping[str, Any]
) -> h5py.Group:
    """Create ``camera`` (NXdetector) with CameraInfo, CameraSettings, ROI and GenICam snapshot."""
    cam = new_group(instrument, "camera", "NXdetector")
    write_field(cam, "description", f"{info.vendor} {info.model}".strip())
    write_field(cam, "vendor", info.vendor)
    write_field(cam, "model", info.model)
    write_field(cam, "serial_number", info.serial_number)
    write_field(cam, "driver", info.driver)
    write_field(cam, "sensor_width", np.int64(info.sensor_width), "pixel")
    write_field(cam, "sensor_height", np.int64(info.sensor_height), "pixel")
    if np.isfinite(info.pixel_size_um):  # unknown for cameras that do not report it
        write_field(cam, "x_pixel_size", np.float64(info.pixel_size_um), "um")
        write_field(cam, "y_pixel_size", np.float64(info.pixel_size_um), "um")
    write_field(cam, "count_time", np.float64(cs.exposure_us), "us")
    write_field(cam, "frame_rate", np.float64(cs.frame_rate_hz), "Hz")
    write_field(cam, "frame_time", np.float64(1.0 / cs.frame_rate_hz), "s")
    write_field(cam, "gain", np.float64(cs.gain_db), "dB")
    write_field(cam, "black_level", np.float64(cs.black_level_dn), "counts")
    write_field(cam, "pixel_format", cs.pixel_format)
    write_field(cam, "bit_depth_readout", np.int64(cs.bit_depth), "bit")
    write_field(cam, "saturation_value", np.int64(cs.saturation_dn), "counts")
    write_field(cam, "trigger_mode", cs.trigger_mode)
    write_field(cam, "trigger_source", cs.trigger_source)
    write_field(cam, "exposure_mode", cs.exposure_mode)
    roi = new_group(cam, "roi", "NXcollection")
    for name in ("offset_x", "offset_y", "width", "height"):
        write_field(roi, name, np.int64(getattr(cs.roi, name)), "pixel")
    scalar_attrs(new_group(cam, "genicam", "NXcollection"), nodes, "genicam_nodes")
    return cam


def write_shutter(
    instrument: h5py.Group,
    info: ShutterInfo,
    code: ShutterCode,
    status: ShutterStatus | None,
    metrics: Mapping[str, float] | None,
) -> None:
    """Create ``shutter`` (NXcollection): controller, code, metrics and the controller's status."""
    sh = new_group(instrument, "shutter", "NXcollection")
    write_field(sh, "controller", info.controller)
    write_field(sh, "port", info.port)
    write_field(sh, "firmware_version", info.firmware_version)
    write_field(sh, "chip_us_min", np.float64(info.chip_us_min), "us")
    write_field(sh, "chip_us_max", np.float64(info.chip_us_max), "us")
    write_field(sh, "max_chips", np.int64(info.max_chips), "1")
    write_field(sh, "code", code.as_array(), "1")
    write_field(sh, "code_string", code.as_string())
    write_field(sh, "chip_duration", np.float64(code.chip_us), "us")
    write_field(sh, "code_period", np.float64(code.period_us), "us")
    write_field(sh, "n_chips", np.int64(code.n_chips), "1")
    write_field(sh, "n_open", np.int64(code.n_open), "1")
    write_field(sh, "light_fraction", np.float64(code.light_fraction), "1")
    write_field(sh, "code_name", code.name)
    write_field(sh, "code_sha256", code.sha256)
    write_field(sh, "echo_verified", np.bool_(status.echo_verified if status else False))
    mg = new_group(sh, "metrics", "NXcollection")
    for name, value in (metrics or {}).items():
        check_finite(value, f"code_metrics[{name!r}]")
        write_field(mg, name, np.float64(value), units_for(name) or "1")
    if status is not None:
        sg = new_group(sh, "status", "NXcollection")
        write_field(sg, "state", status.state)
        write_field(sg, "code_sha256", status.code_sha256)
        write_field(sg, "n_chips", np.int64(status.n_chips), "1")
        write_field(sg, "chip_us", np.float64(status.chip_us), "us")
        write_field(sg, "trigger_count", np.int64(status.trigger_count), "1")
        write_field(sg, "echo_verified", np.bool_(status.echo_verified))


def read_code(sh: h5py.Group, path: Path) -> ShutterCode:
    """The stored code, checked: 1-D, only 0/1, valid chip duration, matching code_sha256."""
    bits = np.asarray(sh["code"][()])
    if bits.ndim != 1 or bits.dtype.kind not in "biu" or not np.isin(bits, (0, 1)).all():
        raise CaptureFormatError(
            f"{path}: the exposure code {sh.name}/code must be a 1-D array of 0 and 1, got "
            f"{bits.dtype} values {np.unique(bits)[:6].tolist()}; the file is damaged."
        )
    try:
        chip_us = read_time_us(sh, "chip_duration", path)
        code = ShutterCode(tuple(int(b) for b in bits), chip_us, read_str(sh, "code_name"))
    except CodeError as e:
        raise CaptureFormatError(f"{path}: the stored exposure code is invalid: {e}") from e
    stored = read_str(sh, "code_sha256")
    if stored and stored != code.sha256:
        raise CaptureFormatError(
            f"{path}: code_sha256 {stored[:12]}... does not match the stored code bits "
            f"({code.sha256[:12]}...); the code was edited or damaged, so the frames cannot be "
            "trusted to match it."
        )
    return code


def read_shutter_info(sh: h5py.Group, path: Path) -> ShutterInfo:
    """ShutterInfo from the shutter group."""
    return ShutterInfo(
        controller=read_str(sh, "controller"),
        port=read_str(sh, "port"),
        firmware_version=read_str(sh, "firmware_version"),
        chip_us_min=read_time_us(sh, "chip_us_min", path),
        chip_us_max=read_time_us(sh, "chip_us_max", path),
        max_chips=int(read_num(sh, "max_chips", path)),
    )


def read_shutter_status(sh: h5py.Group, path: Path) -> ShutterStatus | None:
    """ShutterStatus from ``shutter/status``, or None when the controller reported none."""
    if "status" not in sh:
        return None
    sg = sh["status"]
    return ShutterStatus(
        state=read_str(sg, "state"),
        code_sha256=read_str(sg, "code_sha256"),
        n_chips=int(read_num(sg, "n_chips", path)),
        chip_us=read_time_us(sg, "chip_us", path),
        trigger_count=int(read_num(sg, "trigger_count", path)),
        echo_verified=bool(read_num(sg, "echo_verified", path)),
    )


def read_camera_info(cam: h5py.Group, path: Path) -> CameraInfo:
    """CameraInfo from the camera group."""
    return CameraInfo(
        vendor=read_str(cam, "vendor"),
        model=read_str(cam, "model"),
        serial_number=read_str(cam, "serial_number"),
        sensor_width=int(read_num(cam, "sensor_width", path)),
        sensor_height=int(read_num(cam, "sensor_height", path)),
        pixel_size_um=float(read_num(cam, "x_pixel_size", path))
        if "x_pixel_size" in cam
        else float("nan"),
        driver=read_str(cam, "driver"),
    )


def read_camera_settings(cam: h5py.Group, path: Path) -> CameraSettings:
    """CameraSettings from the camera group (times converted from their units)."""
    roi = require(cam, "roi", path, "the camera ROI")
    try:
        return CameraSettings(
            exposure_us=read_time_us(cam, "count_time", path),
            gain_db=float(read_num(cam, "gain", path)),
            pixel_format=read_str(cam, "pixel_format"),
            roi=Roi(**{k: int(read_num(roi, k, path)) for k in ROI_FIELDS}),
            trigger_mode=read_str(cam, "trigger_mode"),
            trigger_source=read_str(cam, "trigger_source"),
            exposure_mode=read_str(cam, "exposure_mode"),
            frame_rate_hz=float(read_num(cam, "frame_rate", path)),
            black_level_dn=float(read_num(cam, "black_level", path)),
        )
    except ValueError as e:
        raise CaptureFormatError(f"{path}: the stored camera settings are invalid: {e}") from e
