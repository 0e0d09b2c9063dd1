"""Contract tests that every :class:`~hw.base.Camera` and :class:`~hw.base.Shutter` must pass.

Use them by subclassing in a ``test_*.py`` module and providing a factory for an unopened device::

    class TestMyCamera(CameraContract):
        def make_camera(self) -> Camera:
            return MyCamera(...)

The tests use only the public API of the ABCs and values any real device supports (Mono8, an ROI
aligned to 16 px, software trigger, modest exposure and frame rate), so the simulated twins, the
GenICam camera on a GenTL simulator and the Arduino shutter in simavr can share them. A class may
override the tunables below (e.g. a longer ``frame_timeout_s`` for a slow transport).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np
import pytest

from common.codes import CHIP_US_MAX, CHIP_US_MIN, MAX_CHIPS
from hw.base import Camera, Shutter
from hw.errors import AcquisitionTimeout, IncompatibleStateError, UnsupportedFeatureError
from hw.types import (
    CameraInfo,
    CameraSettings,
    Frame,
    Roi,
    ShutterCode,
    ShutterInfo,
    ShutterStatus,
)

_SCALARS = (bool, int, float, str)


class CameraContract:
    """Behaviour every camera driver must show. Subclasses implement :meth:`make_camera`."""

    #: Longest wait for a frame that should come (software trigger, free run).
    frame_timeout_s: float = 5.0
    #: Timeout used to check that a missing frame raises AcquisitionTimeout in about that time.
    short_timeout_s: float = 0.3
    #: Allowed lateness of an AcquisitionTimeout beyond its timeout.
    timeout_slack_s: float = 1.0
    #: Free-run rate used by the frame-id test.
    free_run_hz: float = 50.0

    def make_camera(self) -> Camera:
        """Return a new, unopened camera."""
        raise NotImplementedError("A CameraContract subclass must implement make_camera().")

    # -- fixtures --------------------------------------------------------------------------------
    @pytest.fixture
    def camera(self) -> Iterator[Camera]:
        cam = self.make_camera()
        try:
            yield cam
        finally:
            cam.close()

    @pytest.fixture
    def cam(self, camera: Camera) -> Camera:
        camera.open()
        return camera

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def software_triggered(cam: Camera, **changes: object) -> CameraSettings:
        return cam.apply_settings(
            cam.settings.replace(
                trigger_mode="On",
                trigger_source="Software",
                exposure_mode="Timed",
                exposure_us=2000.0,
                **changes,
            )
        )

    def check_frame(self, frame: Frame, settings: CameraSettings) -> None:
        assert isinstance(frame, Frame)
        img = frame.image
        assert isinstance(img, np.ndarray)
        assert img.shape == (settings.roi.height, settings.roi.width)
        assert img.dtype == settings.dtype
        assert int(img.max()) <= settings.saturation_dn
        assert img.flags.writeable
        assert frame.frame_id >= 0
        assert frame.exposure_us > 0

    # -- lifetime --------------------------------------------------------------------------------
    def test_context_manager_opens_and_closes(self, camera: Camera) -> None:
        assert not camera.is_open
        with camera as c:
            assert c is camera
            assert camera.is_open
        assert not camera.is_open
        camera.close()  # closing twice is harmless
        camera.open()
        camera.open()  # opening twice is harmless
        assert camera.is_open

    def test_close_while_acquiring_stops(self, cam: Camera) -> None:
        cam.start()
        cam.close()
        assert not cam.is_acquiring
        assert not cam.is_open

    def test_methods_need_an_open_camera(self, camera: Camera) -> None:
        with pytest.raises(IncompatibleStateError):
            _ = camera.info
        with pytest.raises(IncompatibleStateError):
            _ = camera.settings
        with pytest.raises(IncompatibleStateError):
            camera.apply_settings(CameraSettings())
        with pytest.raises(IncompatibleStateError):
            camera.start()
        with pytest.raises(IncompatibleStateError):
            camera.node_map_snapshot()

    # -- identity and settings -------------------------------------------------------------------
    def test_info_fields(self, cam: Camera) -> None:
        info = cam.info
        assert isinstance(info, CameraInfo)
        for name in ("vendor", "model", "serial_number"):
            value = getattr(info, name)
            assert isinstance(value, str) and value.strip(), name
        assert isinstance(info.sensor_width, int) and info.sensor_width > 0
        assert isinstance(info.sensor_height, int) and info.sensor_height > 0
        assert info.pixel_size_um > 0
        assert info.driver in ("genicam", "simulated")
        assert info.to_dict()["serial_number"] == info.serial_number

    def test_settings_hold_a_resolved_roi_inside_the_sensor(self, cam: Camera) -> None:
        s, info = cam.settings, cam.info
        assert isinstance(s, CameraSettings)
        assert s.roi.width > 0 and s.roi.height > 0
        assert s.roi.offset_x + s.roi.width <= info.sensor_width
        assert s.roi.offset_y + s.roi.height <= info.sensor_height

    def test_settings_round_trip(self, cam: Camera) -> None:
        info = cam.info
        w = max(16, (info.sensor_width // 2) // 16 * 16)
        h = max(16, (info.sensor_height // 2) // 16 * 16)
        target = cam.settings.replace(
            exposure_us=5000.0,
            gain_db=2.0,
            pixel_format="Mono8",
            roi=Roi(
                offset_x=16 if info.sensor_width >= w + 16 else 0, offset_y=0, width=w, height=h
            ),
            trigger_mode="On",
            trigger_source="Software",
            exposure_mode="Timed",
            frame_rate_hz=20.0,
        )
        held = cam.apply_settings(target)
        assert isinstance(held, CameraSettings)
        assert cam.settings == held
        assert held.pixel_format == "Mono8"
        assert held.roi == target.roi
        assert (held.trigger_mode, held.trigger_source, held.exposure_mode) == (
            "On",
            "Software",
            "Timed",
        )
        assert held.exposure_us == pytest.approx(5000.0, rel=0.02)
        assert held.gain_db == pytest.approx(2.0, abs=0.2)
        assert cam.apply_settings(held) == held  # applying what it holds changes nothing

    def test_roi_outside_the_sensor_is_rejected(self, cam: Camera) -> None:
        info = cam.info
        before = cam.settings
        bad = before.replace(
            roi=Roi(offset_x=info.sensor_width - 16, offset_y=0, width=64, height=16)
        )
        with pytest.raises(UnsupportedFeatureError) as err:
            cam.apply_settings(bad)
        assert "ROI" in str(err.value)
        assert cam.settings == before

    def test_apply_settings_while_acquiring_raises(self, cam: Camera) -> None:
        self.software_triggered(cam)
        cam.start()
        with pytest.raises(IncompatibleStateError):
            cam.apply_settings(cam.settings)
        cam.stop()
        cam.apply_settings(cam.settings)  # fine again once stopped

    def test_node_map_snapshot_is_flat_and_scalar(self, cam: Camera) -> None:
        s = self.software_triggered(cam)
        snap = cam.node_map_snapshot()
        assert isinstance(snap, dict) and snap
        for key, value in snap.items():
            assert isinstance(key, str) and key
            assert isinstance(value, _SCALARS), f"{key} = {value!r} is not a scalar"
        assert snap["Width"] == s.roi.width
        assert snap["Height"] == s.roi.height
        assert snap["PixelFormat"] == s.pixel_format
        assert snap["TriggerMode"] == "On"

    # -- acquisition -----------------------------------------------------------------------------
    def test_fetch_while_not_acquiring_raises(self, cam: Camera) -> None:
        with pytest.raises(IncompatibleStateError):
            cam.fetch(timeout_s=0.1)

    def test_fetch_needs_a_positive_timeout(self, cam: Camera) -> None:
        self.software_triggered(cam)
        cam.start()
        for bad in (0.0, -1.0, math.nan):
            with pytest.raises(ValueError):
                cam.fetch(timeout_s=bad)

    def test_fetch_times_out_in_about_the_timeout(self, cam: Camera) -> None:
        self.software_triggered(cam)
        cam.start()
        t0 = time.monotonic()
        with pytest.raises(AcquisitionTimeout) as err:
            cam.fetch(timeout_s=self.short_timeout_s)
        elapsed = time.monotonic() - t0
        assert 0.9 * self.short_timeout_s <= elapsed <= self.short_timeout_s + self.timeout_slack_s
        assert len(str(err.value)) > 20  # a sentence saying what was waited for

    def test_software_trigger_gives_one_frame(self, cam: Camera) -> None:
        s = self.software_triggered(cam)
        cam.start()
        before = time.time_ns()
        cam.software_trigger()
        frame = cam.fetch(timeout_s=self.frame_timeout_s)
        self.check_frame(frame, s)
        assert before <= frame.host_time_ns <= time.time_ns()
        with pytest.raises(AcquisitionTimeout):
            cam.fetch(timeout_s=self.short_timeout_s)  # one trigger, one frame

    def test_software_trigger_needs_software_trigger_mode(self, cam: Camera) -> None:
        cam.apply_settings(cam.settings.replace(trigger_mode="Off"))
        cam.start()
        with pytest.raises(IncompatibleStateError):
            cam.software_trigger()

    def test_free_run_frame_ids_increase(self, cam: Camera) -> None:
        s = cam.apply_settings(
            cam.settings.replace(
                trigger_mode="Off", exposure_us=2000.0, frame_rate_hz=self.free_run_hz
            )
        )
        cam.start()
        frames = [cam.fetch(timeout_s=self.frame_timeout_s) for _ in range(4)]
        for f in frames:
            self.check_frame(f, s)
        ids = [f.frame_id for f in frames]
        assert all(b > a for a, b in zip(ids, ids[1:], strict=False)), ids
        stamps = [f.camera_timestamp_ns for f in frames]
        assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False)), stamps

    def test_frames_own_their_images(self, cam: Camera) -> None:
        self.software_triggered(cam)
        cam.start()
        cam.software_trigger()
        f1 = cam.fetch(timeout_s=self.frame_timeout_s)
        keep = f1.image.copy()
        cam.software_trigger()
        f2 = cam.fetch(timeout_s=self.frame_timeout_s)
        assert not np.shares_memory(f1.image, f2.image)
        assert np.array_equal(f1.image, keep)
        assert f2.frame_id > f1.frame_id

    def test_stop_then_start_again(self, cam: Camera) -> None:
        s = self.software_triggered(cam)
        cam.start()
        cam.stop()
        assert not cam.is_acquiring
        cam.stop()  # stopping twice is harmless
        cam.start()
        cam.software_trigger()
        self.check_frame(cam.fetch(timeout_s=self.frame_timeout_s), s)


class ShutterContract:
    """Behaviour every shutter controller driver must show. Subclasses implement make_shutter."""

    def make_shutter(self) -> Shutter:
        """Return a new, unopened shutter controller."""
        raise NotImplementedError("A ShutterContract subclass must implement make_shutter().")

    @pytest.fixture
    def shutter(self) -> Iterator[Shutter]:
        sh = self.make_shutter()
        try:
            yield sh
        finally:
            sh.close()

    @pytest.fixture
    def sh(self, shutter: Shutter) -> Shutter:
        shutter.open()
        return shutter

    @staticmethod
    def code_for(info: ShutterInfo, bits: str = "11100101") -> ShutterCode:
        """A code with a chip duration the controller accepts (1 ms when allowed)."""
        chip_us = min(max(1000.0, info.chip_us_min), info.chip_us_max)
        return ShutterCode.parse(bits, float(math.ceil(chip_us)))

    # -- lifetime --------------------------------------------------------------------------------
    def test_context_manager_opens_and_closes(self, shutter: Shutter) -> None:
        assert not shutter.is_open
        with shutter as s:
            assert s is shutter
            assert shutter.is_open
        assert not shutter.is_open
        shutter.close()
        shutter.open()
        assert shutter.is_open

    def test_methods_need_an_open_shutter(self, shutter: Shutter) -> None:
        code = ShutterCode.parse("101", 1000.0)
        with pytest.raises(IncompatibleStateError):
            _ = shutter.info
        with pytest.raises(IncompatibleStateError):
            shutter.load_code(code)
        with pytest.raises(IncompatibleStateError):
            shutter.arm()
        with pytest.raises(IncompatibleStateError):
            shutter.status()
        with pytest.raises(IncompatibleStateError):
            shutter.fire()

    def test_info_fields(self, sh: Shutter) -> None:
        info = sh.info
        assert isinstance(info, ShutterInfo)
        assert isinstance(info.controller, str) and info.controller.strip()
        assert isinstance(info.port, str) and info.port.strip()
        assert isinstance(info.firmware_version, str) and info.firmware_version.strip()
        assert 0 < info.chip_us_min <= info.chip_us_max
        assert info.max_chips >= 8

    def test_status_before_any_code(self, sh: Shutter) -> None:
        assert sh.code is None
        assert not sh.is_armed
        st = sh.status()
        assert isinstance(st, ShutterStatus)
        assert st.state in ("idle", "loaded", "armed", "playing")
        assert st.trigger_count >= 0

    # -- codes -----------------------------------------------------------------------------------
    def test_load_code_is_verified_by_echo(self, sh: Shutter) -> None:
        code = self.code_for(sh.info)
        st = sh.load_code(code)
        assert st.echo_verified
        assert st.code_sha256 == code.sha256
        assert st.n_chips == code.n_chips
        assert st.chip_us == pytest.approx(code.chip_us)
        assert st.state == "loaded"
        assert sh.code == code
        again = sh.status()
        assert again.code_sha256 == code.sha256 and again.echo_verified

    def test_loading_another_code_replaces_it(self, sh: Shutter) -> None:
        first, second = self.code_for(sh.info, "1101"), self.code_for(sh.info, "1110010")
        sh.load_code(first)
        st = sh.load_code(second)
        assert st.code_sha256 == second.sha256 == sh.status().code_sha256
        assert sh.code == second

    def test_chip_duration_out_of_range_is_rejected(self, sh: Shutter) -> None:
        info = sh.info
        good = self.code_for(info)
        sh.load_code(good)
        rejected = 0
        if info.chip_us_min > CHIP_US_MIN:
            with pytest.raises(UnsupportedFeatureError):
                sh.load_code(ShutterCode.parse("101", max(CHIP_US_MIN, info.chip_us_min / 2)))
            rejected += 1
        if info.chip_us_max < CHIP_US_MAX:
            with pytest.raises(UnsupportedFeatureError):
                sh.load_code(ShutterCode.parse("101", min(CHIP_US_MAX, info.chip_us_max * 2)))
            rejected += 1
        if info.max_chips < MAX_CHIPS:
            with pytest.raises(UnsupportedFeatureError):
                sh.load_code(self.code_for(info, "1" * (info.max_chips + 1)))
            rejected += 1
        assert rejected or (info.chip_us_min, info.chip_us_max) == (CHIP_US_MIN, CHIP_US_MAX)
        assert sh.status().code_sha256 == good.sha256  # a refused code changes nothing

    # -- arming and firing -----------------------------------------------------------------------
    def test_arm_without_a_code_raises(self, sh: Shutter) -> None:
        with pytest.raises(IncompatibleStateError):
            sh.arm()
        assert not sh.is_armed

    def test_fire_while_disarmed_raises(self, sh: Shutter) -> None:
        sh.load_code(self.code_for(sh.info))
        with pytest.raises(IncompatibleStateError):
            sh.fire()
        sh.arm()
        sh.fire()
        sh.disarm()
        assert not sh.is_armed
        assert sh.status().state == "loaded"
        with pytest.raises(IncompatibleStateError):
            sh.fire()

    def test_load_while_armed_raises(self, sh: Shutter) -> None:
        code = self.code_for(sh.info)
        sh.load_code(code)
        sh.arm()
        with pytest.raises(IncompatibleStateError):
            sh.load_code(self.code_for(sh.info, "1011"))
        assert sh.status().code_sha256 == code.sha256

    def test_trigger_counter_increments(self, sh: Shutter) -> None:
        sh.load_code(self.code_for(sh.info))
        sh.arm()
        assert sh.is_armed
        assert sh.status().state in ("armed", "playing")
        count0 = sh.status().trigger_count
        indices = [sh.fire() for _ in range(3)]
        assert [b - a for a, b in zip(indices, indices[1:], strict=False)] == [1, 1]
        assert sh.status().trigger_count == count0 + 3

    def test_close_disarms(self, sh: Shutter) -> None:
        sh.load_code(self.code_for(sh.info))
        sh.arm()
        sh.close()
        assert not sh.is_armed
        assert not sh.is_open
