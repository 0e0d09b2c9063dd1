"""``blurvid-rig info``: a human summary of a capture file or a reconstruction file.

The top of the file modules: it imports :mod:`blurvid_rig.files.capture` and
:mod:`blurvid_rig.files.reconstruction`, and neither imports it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blurvid_rig.files.capture import CaptureFile
from blurvid_rig.files.h5io import H5_READ_ERRORS, damaged_file_error, open_h5, py_value
from blurvid_rig.files.reconstruction import ReconFile

__all__ = ["describe_file"]


def describe_file(path: str | Path) -> str:
    """A human summary of a capture or reconstruction file (the ``blurvid-rig info`` text).

    Args:
        path: a blurvid-rig ``.h5``, ``.h5.partial`` or ``.recon.h5`` file.

    Returns:
        Several lines of text.

    Raises:
        CaptureFormatError: the file is not a readable blurvid-rig file.
    """
    path = Path(path)
    f, _ = open_h5(path)
    with f:
        try:
            kind = str(py_value(f.attrs.get("kind", "")))
        except H5_READ_ERRORS as e:
            raise damaged_file_error(path, e, "its root group") from e
    if kind == "reconstruction":
        with ReconFile.open(path) as r:
            return _describe_recon(r)
    with CaptureFile.open(path) as c:
        return _describe_capture(c)


def _describe_recon(r: ReconFile) -> str:
    n, t, h, w = r.video_shape
    p = r.process
    span = (
        f"{r.time_s[0] * 1e3:.6g} .. {r.time_s[-1] * 1e3:.6g} ms"
        if len(r.time_s)
        else "-"
    )
    params = ", ".join(f"{k}={v}" for k, v in p["parameters"].items())
    lines = [
        f"blurvid-rig reconstruction: {r.path}",
        f"  status: {r.status}" + (f" ({r.status_reason})" if r.status_reason else ""),
        f"  schema {r.schema_version}, uuid {r.uuid}",
        f"  method: {r.method} ({params or 'no parameters'})",
        f"  device: {r.device}; model: {p.get('model_id') or '(none)'}, checkpoint "
        f"sha256 {str(p.get('checkpoint_sha256') or '-')[:12]}",
        f"  source: {p.get('source_path')} (uuid {r.source_uuid})",
        f"  code used: {p.get('code')} @ {p.get('chip_duration')} us, sha256 "
        f"{str(p.get('code_sha256'))[:12]}",
        f"  video: {n} frames x {t} time samples x {w}x{h}, stored {r.storage} "
        f"(source frames {r.frame_index[:1].tolist()}..{r.frame_index[-1:].tolist()})",
        f"  time span: {span} ({t} samples)",
        f"  calibration used: {p.get('calibration_used') or 'none'}",
        f"  per-frame values: {', '.join(r.per_frame) or 'none'}",
        f"  started {r.start_time}, ended {r.end_time or '(not recorded)'}",
    ]
    return "\n".join(lines)


def _describe_capture(c: CaptureFile) -> str:
    code, cs, ci = c.code, c.camera_settings, c.camera_info
    h, w = c.frame_shape
    keys = {name: int((c.image_key == k).sum()) for k, name in enumerate(("coded", "flat", "dark"))}
    lines = [
        f"blurvid-rig capture: {c.path}",
        f"  status: {c.status}" + (f" ({c.status_reason})" if c.status_reason else ""),
        f"  schema {c.schema_version}, uuid {c.uuid}",
        f"  title: {c.title or '(none)'}",
        f"  started {c.start_time}, ended {c.end_time or '(not recorded)'}",
        f"  frames recovered: {c.n_frames} of {w}x{h} {c.dtype} "
        f"({keys['coded']} coded, {keys['flat']} flat, {keys['dark']} dark)",
        f"  recovery: {c.recovery_note}",
        f"  code: {code.name or '(unnamed)'} {code.as_string()} ({code.n_chips} chips, "
        f"{code.n_open} open), chip duration {code.chip_us:g} us, period {code.period_us:g} us, "
        f"light fraction {code.light_fraction:.3f}, sha256 {code.sha256[:12]}",
        "  code metrics: "
        + (", ".join(f"{k}={v:.4g}" for k, v in c.code_metrics.items()) or "(none)"),
        f"  shutter: {c.shutter_info.controller} on {c.shutter_info.port or '-'}, firmware "
        f"{c.shutter_info.firmware_version or '-'}, echo verified: "
        f"{'yes' if c.echo_verified else 'no'}",
        *(
            [f"  per-pixel coding: {len(c.dmd['masks'])} DMD masks of "
             f"{c.dmd['masks'].shape[2]}x{c.dmd['masks'].shape[1]} mirrors, "
             f"{100 * float(c.dmd['masks'].mean()):.0f} % open, sha256 "
             f"{str(c.dmd.get('masks_sha256', ''))[:12]}"]
            if getattr(c, "dmd", None) else []
        ),
        f"  camera: {ci.vendor} {ci.model}, serial {ci.serial_number}, driver {ci.driver}, "
        f"sensor {ci.sensor_width}x{ci.sensor_height} @ {ci.pixel_size_um:g} um",
        f"  exposure {cs.exposure_us:g} us, gain {cs.gain_db:g} dB, pixel format "
        f"{cs.pixel_format}, frame rate {cs.frame_rate_hz:g} Hz, ROI {cs.roi.width}x"
        f"{cs.roi.height}+{cs.roi.offset_x}+{cs.roi.offset_y}",
        f"  trigger: mode {cs.trigger_mode}, source {cs.trigger_source}, exposure mode "
        f"{cs.exposure_mode}",
    ]
    lines += _describe_log(c)
    cal = ", ".join(
        f"{k} {v.shape} {v.dtype}" if isinstance(v, np.ndarray) else k
        for k, v in c.calibration.items()
    )
    lines.append(f"  calibration: {cal or 'none'}")
    lines.append(f"  settings: {len(c.settings)} top-level entries, {len(c.genicam)} GenICam nodes")
    return "\n".join(lines)


def _describe_log(c: CaptureFile) -> list[str]:
    log = c.frame_log
    if c.n_frames == 0:
        return ["  frame log: empty"]
    ids = log["frame_id"]
    jumps = np.flatnonzero(np.diff(ids) != 1)
    if len(jumps) == 0:
        gaps = "no gaps"
    else:
        shown = [f"{ids[j]}->{ids[j + 1]} ({ids[j + 1] - ids[j] - 1} missing)" for j in jumps[:5]]
        more = f" and {len(jumps) - 5} more" if len(jumps) > 5 else ""
        gaps = f"{len(jumps)} gap(s) detected: " + ", ".join(shown) + more
    out = [f"  frame ids {ids[0]}..{ids[-1]}: {gaps}"]
    trig = log["trigger_index"]
    if np.all(trig >= 0):
        missing = int(np.sum(np.diff(trig) - 1))
        state = (
            "every trigger has its frame"
            if missing == 0
            else (f"{missing} trigger(s) without a frame")
        )
        out.append(f"  trigger indices {trig[0]}..{trig[-1]}: {state}")
    other = int((log["code_sha"] != c.code.sha256).sum())
    if other:
        out.append(f"  WARNING: {other} frames carry a code hash other than the file's code")
    for name in ("camera_timestamp_ns", "host_time_ns"):
        t = log[name]
        if c.n_frames > 1 and np.ptp(t) > 0:
            span = (t[-1] - t[0]) * 1e-9
            mean = span / (c.n_frames - 1)
            out.append(
                f"  {name[:-3].replace('_', ' ')}s: span {span:.6g} s, mean frame interval "
                f"{mean * 1e3:.4g} ms ({1 / mean:.4g} fps)"
            )
    return out
