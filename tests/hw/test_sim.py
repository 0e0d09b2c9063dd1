"""Simulated devices: the device contracts, the physics of the frames, and the fault knobs."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from hw.errors import (
    AcquisitionTimeout,
    DeviceDisconnected,
    IncompatibleStateError,
    ProtocolError,
    UnsupportedFeatureError,
)
from hw.sim import (
    Motion,
    SimCamera,
    SimClock,
    SimFaults,
    SimScene,
    SimSensor,
    SimShutter,
    Sprite,
    TriggerEvent,
    make_sim_rig,
)
from hw.types import CameraSettings, Roi, ShutterCode
from tests.hw.contracts import CameraContract, ShutterContract

CODE8 = ShutterCode.parse("11100101", 1000)
#: A sensor without noise or fixed patterns (deterministic frames).
QUIET = SimSensor(noise=False)


# -- contracts -------------------------------------------------------------------------------------
class TestSimCameraContract(CameraContract):
    def make_camera(self) -> SimCamera:
        return SimCamera(SimScene.default(128, 96, seed=3), seed=3)


class TestSimShutterContract(ShutterContract):
    def make_shutter(self) -> SimShutter:
        return SimShutter()


class TestSimShutterWithLatencyContract(ShutterContract):
    def make_shutter(self) -> SimShutter:
        return SimShutter(latency_s=0.002)


# -- helpers ---------------------------------------------------------------------------------------
def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.1, 0.9, size=(h, w)).astype(np.float32)


def coded_rig(
    scene: SimScene,
    code: ShutterCode = CODE8,
    exposure_mode: str = "TriggerWidth",
    pixel_format: str = "Mono12",
    **cam_kw: object,
) -> tuple[SimCamera, SimShutter]:
    """An opened, acquiring rig in coded (Line1) mode with ``code`` loaded and armed."""
    cam, sh = make_sim_rig(scene=scene, **cam_kw)
    cam.open()
    sh.open()
    cam.apply_settings(
        cam.settings.replace(
            trigger_mode="On",
            trigger_source="Line1",
            exposure_mode=exposure_mode,
            exposure_us=code.period_us,
            pixel_format=pixel_format,
        )
    )
    sh.load_code(code)
    sh.arm()
    cam.start()
    return cam, sh


def close_all(*devices: object) -> None:
    for d in devices:
        d.close()  # type: ignore[attr-defined]


def shot(cam: SimCamera, sh: SimShutter) -> np.ndarray:
    sh.fire()
    return cam.fetch(timeout_s=2.0).image.astype(np.float64)


# -- the coded capture flow ------------------------------------------------------------------------
def test_coded_capture_flow_tags_frames_with_trigger_and_code() -> None:
    cam, sh = make_sim_rig(width=64, height=48)
    with cam, sh:
        cam.apply_settings(
            cam.settings.replace(
                trigger_mode="On", trigger_source="Line1", exposure_mode="TriggerWidth"
            )
        )
        sh.load_code(CODE8)
        sh.arm()
        cam.start()
        frames = []
        for _ in range(3):
            idx = sh.fire()
            f = cam.fetch(timeout_s=2.0)
            assert f.trigger_index == idx
            assert f.code_sha256 == CODE8.sha256
            assert f.exposure_us == CODE8.period_us
            assert f.image.shape == (48, 64) and f.image.dtype == np.uint16
            frames.append(f)
        assert [f.trigger_index for f in frames] == [0, 1, 2]
        assert [f.frame_id for f in frames] == [0, 1, 2]
        dt = np.diff([f.camera_timestamp_ns for f in frames])
        assert np.all(dt >= CODE8.period_us * 1000)  # each fire shows a later scene time
        assert sh.status().trigger_count == 3
        assert cam.missed_triggers == 0


def test_triggers_outside_line1_acquisition_are_missed() -> None:
    cam, sh = make_sim_rig(width=32, height=32)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(trigger_mode="On", trigger_source="Line1"))
        sh.load_code(CODE8)
        sh.arm()
        sh.fire()  # camera not started yet
        assert cam.missed_triggers == 1
        cam.start()
        with pytest.raises(AcquisitionTimeout, match="shutter armed and firing"):
            cam.fetch(timeout_s=0.1)


# -- physics ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "code",
    [
        ShutterCode.parse("1", 4000),
        CODE8,
        ShutterCode(tuple(np.random.default_rng(5).integers(0, 2, 52).tolist()) + (1,), 500),
    ],
    ids=["one-chip", "8-chip", "53-chip"],
)
def test_static_scene_through_any_code_equals_the_box_exposure(code: ShutterCode) -> None:
    scene = SimScene.static(textured(40, 56))
    cam, sh = coded_rig(scene, code, sensor=QUIET)
    try:
        coded = shot(cam, sh)
        cam.stop()
        cam.apply_settings(
            cam.settings.replace(trigger_mode="On", trigger_source="Software", exposure_us=7000.0)
        )
        cam.start()
        cam.software_trigger()
        box = cam.fetch(timeout_s=2.0)
        # Same brightness whatever the code; only the dark current (exposure-dependent) may differ.
        dark_diff = cam.dark_dn(code.period_us) - cam.dark_dn(7000.0)
        assert np.abs(coded - box.image - dark_diff).max() <= 1.0
        expected = np.rint(scene.render(0.0) * cam.full_scale_dn() + cam.dark_dn(7000.0))
        assert np.abs(box.image - expected).max() <= 1.0
    finally:
        close_all(cam, sh)


def test_moving_point_leaves_a_streak_shaped_like_the_code() -> None:
    # A Gaussian spot moving right by exactly 4 px per chip: chip k lights x0 + 4k .. x0 + 4k + 4.
    bits = "1101001110001011"
    code = ShutterCode.parse(bits, 1000)
    h, w, x0, y0 = 17, 96, 12.0, 8.0
    yy, xx = np.mgrid[0:h, 0:w]
    spot = np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 0.6**2)).astype(np.float32)
    scene = SimScene.translating(spot, (4000.0, 0.0), border="constant")
    cam, sh = coded_rig(scene, code, pixel_format="Mono16", sensor=QUIET, render_sub_steps=16)
    try:
        img = shot(cam, sh)
        gt = cam.ground_truth(0)
        signal = img - gt.dark_dn
        profile = signal.sum(axis=0)
        centres = [int(x0 + 4 * k + 2) for k in range(code.n_chips)]
        at = profile[centres] / profile[centres].max()
        expect = np.array([int(b) for b in bits], dtype=float)
        assert np.abs(at - expect).max() < 0.15, np.round(at, 2)
        # Flux is conserved: the streak holds the light of the spot seen through the code.
        static = spot.sum() * cam.full_scale_dn()
        assert signal.sum() == pytest.approx(static, rel=0.01)
        # Nothing before the start or after the end of the code.
        assert profile[: int(x0) - 3].max() < 1.0
        assert profile[int(x0 + 4 * code.n_chips) + 3 :].max() < 1.0
    finally:
        close_all(cam, sh)


def test_noise_free_frame_is_the_code_weighted_mean_of_the_chip_frames() -> None:
    code = ShutterCode.parse("10110011100010110101", 1500)
    cam, sh = coded_rig(SimScene.default(80, 64, seed=7, speed_px_per_s=900.0), code, sensor=QUIET)
    try:
        sh.fire()
        f = cam.fetch(timeout_s=2.0)
        gt = cam.ground_truth(f.frame_id)
        k = code.n_chips
        assert gt.chip_frames.shape == (k, 64, 80) and gt.chip_frames.dtype == np.float32
        assert gt.code == code
        np.testing.assert_array_equal(gt.chip_weights, code.bits)
        chip_s = code.chip_us * 1e-6
        assert gt.chip_t_s[0] == pytest.approx(f.camera_timestamp_ns * 1e-9 + chip_s / 2)
        np.testing.assert_allclose(np.diff(gt.chip_t_s), chip_s)
        # The scene moves during the exposure, so the chips differ.
        assert np.abs(gt.chip_frames[0] - gt.chip_frames[-1]).max() > 50
        c = np.asarray(code.bits, dtype=np.float64)
        expected = gt.dark_dn + np.tensordot(c, gt.chip_frames, axes=(0, 0)) / c.sum()
        assert np.abs(f.image - expected).max() <= 0.51
        assert np.abs(f.image - gt.expected_frame()).max() <= 0.51
    finally:
        close_all(cam, sh)


def test_timed_exposure_shorter_than_the_code_loses_the_late_chips() -> None:
    code = ShutterCode.parse("11011101", 1000)
    cam, sh = coded_rig(
        SimScene.default(48, 40, seed=2, speed_px_per_s=2000.0),
        code,
        exposure_mode="Timed",
        sensor=QUIET,
    )
    try:
        cam.stop()
        cam.apply_settings(cam.settings.replace(exposure_us=4000.0))  # chips 0..3 only
        cam.start()
        sh.fire()
        f = cam.fetch(timeout_s=2.0)
        assert f.exposure_us == 4000.0
        gt = cam.ground_truth(f.frame_id)
        np.testing.assert_array_equal(gt.chip_weights, [1, 1, 0, 1, 0, 0, 0, 0])
        expected = gt.dark_dn + gt.chip_frames[[0, 1, 3]].sum(axis=0) / code.n_open
        assert np.abs(f.image - expected).max() <= 0.51
    finally:
        close_all(cam, sh)


def test_box_exposure_ground_truth_is_an_all_open_code() -> None:
    cam = SimCamera(SimScene.default(40, 32, seed=1, speed_px_per_s=3000.0), sensor=QUIET)
    with cam:
        cam.apply_settings(
            cam.settings.replace(trigger_mode="On", trigger_source="Software", exposure_us=6000.0)
        )
        cam.start()
        cam.software_trigger()
        f = cam.fetch(timeout_s=2.0)
        assert f.trigger_index == -1 and f.code_sha256 == ""
        gt = cam.ground_truth(f.frame_id)
        assert gt.code.n_chips == 6 and gt.code.n_open == 6
        assert gt.code.period_us == pytest.approx(6000.0)
        assert np.abs(f.image - gt.expected_frame()).max() <= 0.51


def flat_camera(
    level: float, pixel_format: str = "Mono12", **kw: object
) -> tuple[SimCamera, SimShutter]:
    scene = SimScene.static(np.full((128, 128), level, np.float32))
    return coded_rig(scene, CODE8, pixel_format=pixel_format, **kw)


def test_noise_statistics_match_shot_and_read_noise_theory() -> None:
    cam, sh = flat_camera(0.5, sensor=SimSensor(prnu=0.0, dsnu_e=0.0, dark_current_e_per_s=0.0))
    try:
        img = shot(cam, sh)
        e = cam.gain_e_per_dn()
        assert e == pytest.approx(10_500 / 4095)
        signal = 0.5 * cam.full_scale_dn()
        var = signal / e + (cam.read_noise_e / e) ** 2 + 1 / 12
        assert img.mean() == pytest.approx(signal, abs=0.5)
        assert img.var() == pytest.approx(var, rel=0.05)
    finally:
        close_all(cam, sh)


def test_fixed_pattern_noise_is_fixed_and_temporal_noise_is_not() -> None:
    cam, sh = flat_camera(0.5, sensor=SimSensor(prnu=0.02, dsnu_e=3.0))
    try:
        a, b = shot(cam, sh), shot(cam, sh)
        e = cam.gain_e_per_dn()
        signal = 0.5 * cam.full_scale_dn()
        temporal = signal / e + (cam.read_noise_e / e) ** 2 + 1 / 12
        fixed = (0.02 * signal) ** 2 + (3.0 / e) ** 2
        assert ((a - b) ** 2).mean() / 2 == pytest.approx(temporal, rel=0.05)
        assert a.var() == pytest.approx(temporal + fixed, rel=0.06)
        # The sum of two frames keeps the pattern: it correlates with a third frame.
        c = shot(cam, sh)
        r = np.corrcoef((a + b).ravel(), c.ravel())[0, 1]
        r_theory = 2 * fixed / np.sqrt((4 * fixed + 2 * temporal) * (fixed + temporal))
        assert r == pytest.approx(r_theory, abs=0.03)
    finally:
        close_all(cam, sh)


def test_dark_frames_show_dsnu_and_dark_current() -> None:
    cam, sh = flat_camera(
        0.0, sensor=SimSensor(prnu=0.0, dsnu_e=5.0, read_noise_e=0.0, dark_current_e_per_s=0.0)
    )
    try:
        cam.stop()
        cam.apply_settings(cam.settings.replace(black_level_dn=100.0))
        cam.start()
        a, b = shot(cam, sh), shot(cam, sh)
        np.testing.assert_array_equal(a, b)  # no light, no read noise: only the fixed pattern
        e = cam.gain_e_per_dn()
        assert a.mean() == pytest.approx(100.0, abs=0.1)
        assert a.std() == pytest.approx(np.sqrt((5.0 / e) ** 2 + 1 / 12), rel=0.05)
        cam.dark_current_e_per_s = 50_000.0  # 400 e- in the 8 ms code
        dark = shot(cam, sh)
        assert cam.dark_dn(8000.0) == pytest.approx(100.0 + 400.0 / e)
        assert dark.mean() == pytest.approx(cam.dark_dn(8000.0), abs=0.5)
        assert (dark - a).var() == pytest.approx(400.0 / e**2 + 1 / 6, rel=0.06)  # dark shot noise
    finally:
        close_all(cam, sh)


def test_low_light_shot_noise_is_poisson() -> None:
    # About 4 electrons per pixel: below the Gaussian threshold, so a true Poisson law is drawn.
    quiet = SimSensor(
        signal_dn=4.0 * 65535 / 10_500, prnu=0.0, dsnu_e=0.0, read_noise_e=0.0,
        dark_current_e_per_s=0.0,
    )  # fmt: skip
    cam, sh = flat_camera(1.0, pixel_format="Mono16", sensor=quiet)
    try:
        img = shot(cam, sh)
        electrons = img * cam.gain_e_per_dn()
        # Mono16 has ~6 DN per electron, so the DN image shows the integer electron counts.
        counts = np.rint(electrons)
        assert np.abs(electrons - counts).max() < 0.1
        assert counts.mean() == pytest.approx(4.0, rel=0.05)
        assert counts.var() == pytest.approx(4.0, rel=0.08)
        assert np.mean(counts == 0) == pytest.approx(np.exp(-4.0), abs=0.01)
    finally:
        close_all(cam, sh)


def test_gain_scales_the_signal_and_the_conversion_gain() -> None:
    cam, sh = flat_camera(0.2, sensor=QUIET)
    try:
        full0, e0 = cam.full_scale_dn(), cam.gain_e_per_dn()
        assert shot(cam, sh).mean() == pytest.approx(0.2 * full0, abs=0.6)
        cam.stop()
        cam.apply_settings(cam.settings.replace(gain_db=6.0))
        cam.start()
        g = 10 ** (6 / 20)
        assert cam.full_scale_dn() == pytest.approx(full0 * g)
        assert cam.gain_e_per_dn() == pytest.approx(e0 / g)
        assert shot(cam, sh).mean() == pytest.approx(0.2 * full0 * g, abs=0.6)
    finally:
        close_all(cam, sh)


@pytest.mark.parametrize(
    ("fmt", "dtype", "sat"),
    [
        ("Mono8", np.uint8, 255),
        ("Mono10", np.uint16, 1023),
        ("Mono12", np.uint16, 4095),
        ("Mono16", np.uint16, 65535),
    ],
)
def test_quantisation_and_clipping(fmt: str, dtype: type, sat: int) -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (8, 1))
    scene = SimScene.static(ramp)
    sensor = SimSensor(noise=False, signal_dn=1.5 * sat, dark_current_e_per_s=0.0)
    cam, sh = coded_rig(scene, CODE8, sensor=sensor)
    try:
        cam.stop()
        cam.apply_settings(cam.settings.replace(pixel_format=fmt, black_level_dn=sat / 100))
        cam.start()
        sh.fire()
        img = cam.fetch(timeout_s=2.0).image
        assert img.dtype == dtype
        expected = ramp * 1.5 * sat + sat / 100
        clipped = expected >= sat
        assert clipped.any() and (~clipped).any()
        assert np.all(img[clipped] == sat)
        np.testing.assert_array_equal(img[~clipped], np.rint(expected[~clipped]))
        assert img.min() == round(sat / 100)
    finally:
        close_all(cam, sh)


def test_roi_crop_equals_the_matching_crop_of_the_full_frame() -> None:
    def capture(roi: Roi) -> np.ndarray:
        cam, sh = coded_rig(SimScene.default(96, 80, seed=4, speed_px_per_s=1500.0), sensor=QUIET)
        try:
            cam.stop()
            cam.apply_settings(cam.settings.replace(roi=roi))
            cam.start()
            return shot(cam, sh)
        finally:
            close_all(cam, sh)

    full = capture(Roi())
    part = capture(Roi(offset_x=24, offset_y=16, width=40, height=32))
    assert part.shape == (32, 40)
    assert np.abs(part - full[16:48, 24:64]).max() <= 1.0


def test_ground_truth_is_cropped_to_the_roi_and_bounded() -> None:
    cam, sh = coded_rig(SimScene.default(64, 48, seed=0), sensor=QUIET, history_frames=3)
    try:
        cam.stop()
        cam.apply_settings(cam.settings.replace(roi=Roi(8, 4, 32, 16)))
        cam.start()
        ids = []
        for _ in range(5):
            sh.fire()
            ids.append(cam.fetch(timeout_s=2.0).frame_id)
        assert cam.ground_truth(ids[-1]).chip_frames.shape == (8, 16, 32)
        with pytest.raises(KeyError, match="only the last 3 frames"):
            cam.ground_truth(ids[0])
    finally:
        close_all(cam, sh)


def test_frames_are_deterministic_for_a_seed_and_thread_independent() -> None:
    def run(in_thread: bool) -> list[np.ndarray]:
        cam, sh = coded_rig(SimScene.default(48, 40, seed=9), seed=9)
        out: list[np.ndarray] = []
        try:
            for _ in range(2):
                sh.fire()
            if in_thread:
                t = threading.Thread(
                    target=lambda: out.extend(cam.fetch(2.0).image for _ in range(2))
                )
                t.start()
                t.join()
            else:
                out.extend(cam.fetch(2.0).image for _ in range(2))
            return out
        finally:
            close_all(cam, sh)

    a, b = run(False), run(True)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])


# -- free run --------------------------------------------------------------------------------------
def test_free_run_paces_frames_and_drops_on_overflow() -> None:
    cam = SimCamera(SimScene.default(32, 32, seed=1), buffer_frames=2)
    with cam:
        cam.apply_settings(cam.settings.replace(frame_rate_hz=200.0, exposure_us=1000.0))
        cam.start()
        f0, f1 = cam.fetch(1.0), cam.fetch(1.0)
        assert (f0.frame_id, f1.frame_id) == (0, 1)
        assert f1.camera_timestamp_ns - f0.camera_timestamp_ns == 5_000_000
        assert f0.trigger_index == -1 and f0.exposure_us == 1000.0
        time.sleep(0.12)  # ~24 frames come due, only 2 fit in the output queue
        ids = [cam.fetch(1.0).frame_id for _ in range(3)]
        assert ids[1] == ids[0] + 1 and ids[2] > ids[1] + 5  # a gap shows the lost frames
        assert cam.dropped_frames >= 5


def test_frame_period_is_at_least_the_exposure() -> None:
    cam = SimCamera(SimScene.default(32, 32, seed=1))
    with cam:
        cam.apply_settings(cam.settings.replace(frame_rate_hz=1000.0, exposure_us=20_000.0))
        assert cam.node_map_snapshot()["ResultingFrameRate"] == pytest.approx(50.0)


# -- fault knobs -----------------------------------------------------------------------------------
def test_drop_rate_leaves_gaps_in_frame_ids() -> None:
    cam, sh = coded_rig(
        SimScene.default(32, 32), faults=SimFaults(drop_rate=0.5), buffer_frames=64, seed=2
    )
    try:
        for _ in range(30):
            sh.fire()
        ids = []
        with pytest.raises(AcquisitionTimeout):
            while True:
                ids.append(cam.fetch(timeout_s=0.1).frame_id)
        assert 5 < len(ids) < 25
        assert ids == sorted(ids) and ids[-1] <= 29
        assert cam.dropped_frames == 30 - len(ids)
        assert np.diff(ids).max() > 1
    finally:
        close_all(cam, sh)


def test_full_output_queue_drops_new_frames() -> None:
    cam, sh = coded_rig(SimScene.default(32, 32), buffer_frames=3)
    try:
        indices = [sh.fire() for _ in range(5)]
        got = [cam.fetch(1.0) for _ in range(3)]
        assert [f.trigger_index for f in got] == indices[:3]
        sh.fire()
        assert cam.fetch(1.0).frame_id == 5  # frames 3 and 4 were lost
        assert cam.dropped_frames == 2
    finally:
        close_all(cam, sh)


def test_stall_makes_fetch_time_out() -> None:
    cam, sh = coded_rig(SimScene.default(32, 32), faults=SimFaults(stall_after_n=2))
    try:
        for _ in range(3):
            sh.fire()
        cam.fetch(1.0)
        cam.fetch(1.0)
        with pytest.raises(AcquisitionTimeout, match="stall_after_n=2"):
            cam.fetch(timeout_s=0.1)
    finally:
        close_all(cam, sh)


def test_camera_disconnect_raises_until_reopened() -> None:
    cam, sh = coded_rig(SimScene.default(32, 32), faults=SimFaults(disconnect_after_n=1))
    try:
        sh.fire()
        cam.fetch(1.0)
        sh.fire()
        with pytest.raises(DeviceDisconnected, match="disconnected"):
            cam.fetch(1.0)
        with pytest.raises(DeviceDisconnected):
            cam.fetch(1.0)
        cam.close()  # always possible
        cam.open()
        cam.start()
        sh.fire()
        assert cam.fetch(1.0).trigger_index == 2
    finally:
        close_all(cam, sh)


def test_fetch_latency_delays_frames_and_can_time_out() -> None:
    cam, sh = coded_rig(SimScene.default(32, 32), faults=SimFaults(fetch_latency_s=0.05))
    try:
        sh.fire()
        t0 = time.monotonic()
        cam.fetch(1.0)
        assert time.monotonic() - t0 >= 0.05
        sh.fire()
        with pytest.raises(AcquisitionTimeout, match="fetch_latency_s"):
            cam.fetch(timeout_s=0.03)
    finally:
        close_all(cam, sh)


def test_stop_wakes_a_waiting_fetch() -> None:
    cam, sh = coded_rig(SimScene.default(32, 32))
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            cam.fetch(timeout_s=5.0)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    try:
        t = threading.Thread(target=wait)
        t.start()
        time.sleep(0.05)
        t0 = time.monotonic()
        cam.stop()
        t.join(2.0)
        assert time.monotonic() - t0 < 1.0
        assert len(errors) == 1 and isinstance(errors[0], IncompatibleStateError)
    finally:
        close_all(cam, sh)


def test_corrupt_echo_refuses_the_code_and_blocks_arming() -> None:
    with SimShutter() as sh:
        sh.load_code(CODE8)
        sh.corrupt_echo = True
        with pytest.raises(ProtocolError, match="echoed"):
            sh.load_code(ShutterCode.parse("1011", 1000))
        assert sh.code is None  # the previously good code is no longer trusted
        assert not sh.status().echo_verified
        with pytest.raises(IncompatibleStateError):
            sh.arm()
        sh.corrupt_echo = False
        assert sh.load_code(CODE8).echo_verified
        sh.arm()


def test_shutter_disconnect_raises_until_reopened() -> None:
    with SimShutter(disconnect_after_n=2) as sh:
        sh.load_code(CODE8)
        sh.arm()
        assert [sh.fire(), sh.fire()] == [0, 1]
        with pytest.raises(DeviceDisconnected, match="USB"):
            sh.fire()
        with pytest.raises(DeviceDisconnected):
            sh.status()
        sh.close()
        sh.open()
        assert sh.code is None and sh.status().trigger_count == 0
        sh.load_code(CODE8)
        sh.arm()
        assert sh.fire() == 0


def test_shutter_latency_and_whole_microsecond_chips() -> None:
    with SimShutter(latency_s=0.02) as sh:
        t0 = time.monotonic()
        sh.load_code(CODE8)
        assert time.monotonic() - t0 >= 0.02
        with pytest.raises(UnsupportedFeatureError, match="whole microseconds"):
            sh.load_code(ShutterCode.parse("101", 1000.5))
        with pytest.raises(UnsupportedFeatureError):
            sh.load_code(ShutterCode.parse("101", 5))  # below the firmware's 10 us


def test_trigger_events_advance_simulated_time() -> None:
    clock = SimClock(1.0)
    events: list[TriggerEvent] = []
    with SimShutter(clock=clock, gap_s=0.003) as sh:
        sh.connect_trigger(events.append)
        sh.connect_trigger(events.append)  # connecting twice calls once
        sh.load_code(CODE8)
        sh.arm()
        sh.fire()
        sh.fire()
        sh.disconnect_trigger(events.append)
        sh.fire()
    assert [e.trigger_index for e in events] == [0, 1]
    assert events[0].t_start_s == 1.0
    assert events[1].t_start_s == pytest.approx(1.0 + 0.008 + 0.003)
    assert events[0].code == CODE8
    assert clock.now_s() == pytest.approx(1.0 + 3 * 0.011)


# -- settings, identity, node map ------------------------------------------------------------------
def test_info_node_map_and_settings_validation() -> None:
    cam = SimCamera(SimScene.default(64, 48), seed=5)
    with cam:
        info = cam.info
        assert f"{info.vendor}/{info.model}/{info.serial_number}" == "blurvid-rig/SimCamera/SIM-5"
        assert (info.sensor_width, info.sensor_height, info.driver) == (64, 48, "simulated")
        assert info.pixel_size_um == 3.45
        assert cam.settings.roi == Roi(0, 0, 64, 48)
        snap = cam.node_map_snapshot()
        keys = (
            "Width Height OffsetX OffsetY PixelFormat ExposureTime Gain TriggerMode TriggerSource "
            "ExposureMode AcquisitionFrameRate DeviceVendorName DeviceModelName DeviceSerialNumber "
            "SensorWidth SensorHeight BlackLevel"
        ).split()
        assert set(keys) <= set(snap), set(keys) - set(snap)
        held = cam.apply_settings(cam.settings.replace(roi=Roi(offset_x=10, offset_y=8)))
        assert held.roi == Roi(10, 8, 54, 40)  # zero size = up to the sensor edge
        for bad in (
            CameraSettings(roi=Roi(offset_x=64)),
            CameraSettings(exposure_us=1e9),
            CameraSettings(gain_db=40.0),
            CameraSettings(frame_rate_hz=1e6),
            CameraSettings(pixel_format="Mono8", black_level_dn=200.0),
        ):
            with pytest.raises(UnsupportedFeatureError):
                cam.apply_settings(bad)
        assert cam.settings == held


def test_constructor_rejects_a_scene_of_another_size() -> None:
    with pytest.raises(ValueError, match="size of the sensor"):
        SimCamera(SimScene.default(64, 48), sensor_width=128)
    with pytest.raises(ValueError):
        SimCamera(SimScene.default(64, 48), faults=SimFaults(drop_rate=2.0))
    for bad in ({"prnu": -0.1}, {"signal_dn": 0.0}, {"full_well_e": float("nan")},
                {"vignetting": 1.0}, {"linear_exposure_ref_us": -1.0}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            SimSensor(**bad)
    with pytest.raises(ValueError, match="fetch_latency_s"):
        SimFaults(fetch_latency_s=-1.0)


def test_make_sim_rig_defaults() -> None:
    cam, sh = make_sim_rig(width=40, height=24, seed=3, sensor=QUIET)
    assert cam.shutter is sh and cam.clock is sh.clock
    assert cam.scene.shape == (24, 40) and not cam.noise
    assert not cam.is_open and not sh.is_open


# -- scene -----------------------------------------------------------------------------------------
def test_default_scene_renders_radiance_and_moves() -> None:
    s = SimScene.default(96, 64, seed=0)
    a, b = s.render(0.0), s.render(0.02)
    assert a.shape == (64, 96) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.05
    assert np.abs(a - b).max() > 0.1
    assert not s.is_static
    np.testing.assert_array_equal(s.render(0.0), a)  # deterministic
    np.testing.assert_array_equal(SimScene.default(96, 64, seed=0).render(0.013), s.render(0.013))
    assert not np.array_equal(SimScene.default(96, 64, seed=1).render(0.0), a)


def test_default_sprites_move_a_few_to_tens_of_pixels_per_exposure() -> None:
    s = SimScene.default(256, 256, seed=0)
    for sp in s.sprites:
        speed = float(np.hypot(*sp.motion.v_px_per_s))
        assert speed * 0.008 >= 1.0  # 8 chips x 1 ms
        assert speed * 0.052 <= 40.0  # 52 chips x 1 ms


def test_translating_scene_moves_by_its_velocity() -> None:
    img = textured(32, 48, seed=1)
    s = SimScene.translating(img, (500.0, -250.0))  # periodic borders
    np.testing.assert_allclose(s.render(0.0), img, atol=1e-6)
    # After 8 ms: 4 px right, 2 px up.
    np.testing.assert_allclose(s.render(0.008), np.roll(img, (-2, 4), axis=(0, 1)), atol=1e-5)
    half = SimScene.translating(img, (500.0, 0.0)).render(0.001)  # half a pixel to the right
    np.testing.assert_allclose(half[:, 1:], 0.5 * (img[:, :-1] + img[:, 1:]), atol=1e-5)
    moved = SimScene.translating(img, (0.0, 0.0), acceleration_px_per_s2=(0.0, 2e5)).render(0.01)
    np.testing.assert_allclose(moved, np.roll(img, 10, axis=0), atol=1e-5)  # a t^2 / 2 = 10 px


def test_render_weighted_is_linear_and_regions_are_crops() -> None:
    s = SimScene.default(80, 60, seed=2, shake_px=1.5)
    a = s.render_weighted([0.001, 0.004, 0.009], [0.2, 0.3, 0.5])
    b = 0.2 * s.render(0.001) + 0.3 * s.render(0.004) + 0.5 * s.render(0.009)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(
        s.render_mean(0.0, 0.01, 4),
        s.render_weighted([0.00125, 0.00375, 0.00625, 0.00875], [0.25] * 4),
        atol=1e-6,
    )
    full = s.render(0.0123)
    np.testing.assert_allclose(
        s.render(0.0123, region=(10, 5, 30, 20)), full[5:25, 10:40], atol=1e-5
    )
    np.testing.assert_allclose(s.render(0.0123, region=Roi(10, 5, 0, 0)), full[5:, 10:], atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        s.render(0.0, region=(70, 0, 20, 10))
    with pytest.raises(ValueError):
        s.render_mean(0.1, 0.0)


def test_sprite_compositing_and_motion() -> None:
    bg = np.full((40, 40), 0.2, np.float32)
    tex = np.full((9, 9), 0.9, np.float32)
    alpha = np.zeros((9, 9), np.float32)
    alpha[1:-1, 1:-1] = 1.0
    alpha[4, 4] = 0.5
    sp = Sprite(tex, alpha, Motion(p0_px=(10.0, 12.0), v_px_per_s=(100.0, 0.0)), wrap=False)
    s = SimScene(bg, [sp])
    img = s.render(0.1)  # centre at (20, 12)
    assert img[12, 19] == pytest.approx(0.9)
    assert img[12, 20] == pytest.approx(0.5 * 0.9 + 0.5 * 0.2)
    assert img[0, 0] == pytest.approx(0.2)
    assert img[12, 10] == pytest.approx(0.2)  # moved away from its start
    m = Motion(
        p0_px=(1.0, 2.0),
        v_px_per_s=(3.0, 4.0),
        a_px_per_s2=(2.0, 0.0),
        angle0_deg=10.0,
        omega_deg_per_s=90.0,
        scale0=2.0,
        scale_rate_per_s=0.5,
    )
    assert m.position(2.0) == (1.0 + 6.0 + 4.0, 2.0 + 8.0)
    assert m.angle_deg(1.0) == 100.0 and m.scale(2.0) == 4.0
    assert not m.is_static and Motion().is_static
    with pytest.raises(ValueError):
        Motion(scale0=0.0)
    with pytest.raises(ValueError):
        Sprite(tex, alpha[:3])


def test_wrapping_sprite_comes_back() -> None:
    bg = np.zeros((20, 40), np.float32)
    sp = Sprite(
        np.ones((5, 5), np.float32),
        np.ones((5, 5), np.float32),
        Motion(p0_px=(20.0, 10.0), v_px_per_s=(100.0, 0.0)),
        wrap=True,
    )
    s = SimScene(bg, [sp])
    img = s.render(1.0)  # unwrapped x = 120, far outside the 40 px frame
    assert img.sum() == pytest.approx(25.0, abs=0.5)
    margin = 0.5 * np.hypot(5, 5) + 2.0  # the torus extends the frame by the sprite's size
    x = (120.0 + margin) % (40.0 + 2 * margin) - margin
    cols = img.sum(axis=0)
    assert float((cols * np.arange(40)).sum() / cols.sum()) == pytest.approx(x, abs=0.05)
    assert 5 < x < 35


# Rendering speed at 1024x1024 is a benchmark, not a test: bench/bench_capture.py (render only).
