"""ReplayCamera: the camera contract, Line1 frames and their stamps, pacing, the bounded buffer."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hw.errors import AcquisitionTimeout
from hw.sim import ReplayCamera, SimShutter
from hw.types import Roi, ShutterCode
from tests.hw.contracts import CameraContract

CODE = ShutterCode.parse("11100101", 100)  # 0.8 ms


class TestReplayCameraContract(CameraContract):
    def make_camera(self) -> ReplayCamera:
        return ReplayCamera(sensor_width=128, sensor_height=96, seed=2)


def line1_rig(
    frame_rate_hz: float = 1000.0, pixel_format: str = "Mono16", code: ShutterCode = CODE, **kw
) -> tuple[ReplayCamera, SimShutter]:
    """An opened, acquiring replay camera triggered on Line1 by a simulated shutter."""
    sh = SimShutter()
    kw.setdefault("sensor_width", 64)
    kw.setdefault("sensor_height", 48)
    cam = ReplayCamera(sh, **kw)
    cam.open()
    sh.open()
    cam.apply_settings(
        cam.settings.replace(
            trigger_mode="On",
            trigger_source="Line1",
            exposure_mode="TriggerWidth",
            exposure_us=code.period_us,
            pixel_format=pixel_format,
            frame_rate_hz=frame_rate_hz,
        )
    )
    sh.load_code(code)
    sh.arm()
    cam.start()
    return cam, sh


def test_line1_frames_carry_the_trigger_and_replay_the_source_frames() -> None:
    src = [np.full((16, 24), v, dtype=np.uint16) for v in (100, 2000, 65535)]
    cam, sh = line1_rig(frames=src, sensor_width=None, sensor_height=None)
    try:
        frames = []
        for _ in range(4):
            index = sh.fire()
            f = cam.fetch(timeout_s=2.0)
            assert f.trigger_index == index
            frames.append(f)
        assert [f.frame_id for f in frames] == [0, 1, 2, 3]
        for f in frames:
            assert f.code_sha256 == CODE.sha256
            assert f.exposure_us == CODE.period_us
            assert f.image.dtype == np.uint16 and f.image.shape == (16, 24)
            assert np.array_equal(f.image, src[f.frame_id % 3])  # bit for bit in Mono16
        assert not np.shares_memory(frames[0].image, frames[3].image)
        frames[0].image[:] = 7  # a fresh array: the next replay of it is untouched
        sh.fire()
        assert int(cam.fetch(timeout_s=2.0).image[0, 0]) == 2000  # frame 4 shows src[1]
        sh.fire()
        sh.fire()
        assert int(cam.fetch(timeout_s=2.0).image[0, 0]) == 65535
        assert int(cam.fetch(timeout_s=2.0).image[0, 0]) == 100
        assert cam.info.model == "ReplayCamera" and cam.info.sensor_width == 24
        snap = cam.node_map_snapshot()
        assert snap["TriggerSource"] == "Line1" and snap["ExposureMode"] == "TriggerWidth"
        assert snap["ResultingFrameRate"] == pytest.approx(1000.0)
    finally:
        cam.close()
        sh.close()


def test_frames_come_no_faster_than_the_frame_rate() -> None:
    rate, n = 100.0, 8
    cam, sh = line1_rig(frame_rate_hz=rate)
    try:
        t0 = time.monotonic()
        stamps = []
        for _ in range(n):
            sh.fire()  # fired as fast as the host goes: the camera paces the frames
            stamps.append(cam.fetch(timeout_s=2.0).camera_timestamp_ns)
        elapsed = time.monotonic() - t0
        assert elapsed >= (n - 1) / rate
        gaps = np.diff(stamps)
        assert np.all(gaps >= 1e9 / rate - 1), gaps  # on the camera clock: one period apart
    finally:
        cam.close()
        sh.close()


def test_an_exposure_longer_than_the_period_limits_the_rate() -> None:
    long_code = ShutterCode.parse("1101", 5000)  # 20 ms
    cam, sh = line1_rig(frame_rate_hz=1000.0, code=long_code)
    try:
        assert cam.node_map_snapshot()["ResultingFrameRate"] == pytest.approx(50.0)
        sh.fire()
        sh.fire()
        a, b = cam.fetch(timeout_s=2.0), cam.fetch(timeout_s=2.0)
        assert b.camera_timestamp_ns - a.camera_timestamp_ns >= 20_000_000 - 1
    finally:
        cam.close()
        sh.close()


def test_a_full_buffer_loses_frames_and_the_ids_show_the_gap() -> None:
    cam, sh = line1_rig(frame_rate_hz=10_000.0, buffer_frames=3)
    try:
        for _ in range(7):
            sh.fire()
        assert cam.dropped_frames == 4
        assert [cam.fetch(timeout_s=2.0).frame_id for _ in range(3)] == [0, 1, 2]
        with pytest.raises(AcquisitionTimeout, match="Line1"):
            cam.fetch(timeout_s=0.05)
        index = sh.fire()
        f = cam.fetch(timeout_s=2.0)
        assert (f.frame_id, f.trigger_index) == (7, index)
    finally:
        cam.close()
        sh.close()


def test_bit_depth_and_roi_follow_the_settings() -> None:
    src = [np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 256]
    sh = SimShutter()
    with ReplayCamera(sh, src) as cam, sh:
        s = cam.apply_settings(
            cam.settings.replace(
                trigger_mode="On",
                trigger_source="Software",
                pixel_format="Mono12",
                roi=Roi(4, 2, 8, 8),
            )
        )
        cam.start()
        cam.software_trigger()
        img = cam.fetch(timeout_s=2.0).image
        assert img.shape == (8, 8) and img.dtype == s.dtype
        assert np.array_equal(img, src[0][2:10, 4:12] >> 4)
        assert cam.missed_triggers == 0
        sh.load_code(CODE)
        sh.arm()
        sh.fire()  # the camera listens to Software, not Line1
        assert cam.missed_triggers == 1


def test_bad_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="same shape"):
        ReplayCamera(None, [np.zeros((16, 16), np.uint16), np.zeros((16, 8), np.uint16)])
    with pytest.raises(ValueError, match="integer"):
        ReplayCamera(None, [np.zeros((16, 16), np.float32)])
    with pytest.raises(ValueError, match="sensor"):
        ReplayCamera(None, [np.zeros((16, 16), np.uint16)], sensor_width=32)
