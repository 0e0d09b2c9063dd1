"""The shutter transmittance model: exact integrals, ideal case, partial openings."""

from __future__ import annotations

import numpy as np
import pytest

from hw.optics import ShutterOptics
from hw.sim import SimScene, SimSensor, make_sim_rig
from hw.types import ShutterCode


def test_ideal_optics_give_the_bits():
    o = ShutterOptics()
    assert o.is_ideal
    bits = (1, 1, 0, 1, 0, 0, 1)
    np.testing.assert_allclose(o.effective_code(bits, 100.0, 3), np.repeat(bits, 3), atol=1e-12)


def test_integral_matches_fine_sampling():
    o = ShutterOptics(leakage=0.03, open_transmittance=0.9, latency_us=20, rise_us=60, fall_us=30,
                      close_latency_us=10)
    bits = (0, 1, 0, 1, 1, 0, 1)
    exact = o.integrate([0.0, 170.0, 333.0, 900.0], bits, 80.0)
    t = np.linspace(0, 900, 900_001)
    tr = o.transmittance(t, bits, 80.0)
    for a, b, v in zip([0, 170, 333], [170, 333, 900], exact, strict=True):
        m = (t >= a) & (t <= b)
        assert np.trapezoid(tr[m], t[m]) == pytest.approx(v, rel=1e-4)


def test_short_chips_open_partly_and_the_definitions_hold():
    o = ShutterOptics(leakage=0.02, latency_us=30, rise_us=50, fall_us=40)
    t = np.linspace(0, 1000, 100_001)
    tr = o.transmittance(t, (1, 1, 1, 1, 0, 0, 0, 0), 100.0)
    t10 = t[np.argmax(tr >= 0.02 + 0.098)]
    t90 = t[np.argmax(tr >= 0.02 + 0.882)]
    assert t10 == pytest.approx(30, abs=0.02) and t90 - t10 == pytest.approx(50, abs=0.02)
    # a single 20 us chip never opens fully
    assert o.transmittance(t, (1,), 20.0).max() < 0.5
    with pytest.raises(ValueError, match="before its command edge"):
        ShutterOptics(latency_us=1.0, rise_us=50.0)
    with pytest.raises(ValueError, match="leakage"):
        ShutterOptics(leakage=0.5, open_transmittance=0.4)


def test_sim_camera_integrates_the_shutter():
    """A static scene through a leaky slow shutter: the frame scales with the effective code."""
    o = ShutterOptics(leakage=0.02, latency_us=30, rise_us=50, fall_us=40)
    scene = SimScene.static(np.random.default_rng(0).random((32, 32), dtype=np.float32))
    cam, sh = make_sim_rig(scene=scene, sensor=SimSensor(noise=False), shutter_kw={"optics": o})
    code = ShutterCode.parse("11100101", 100)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(
            trigger_mode="On", trigger_source="Line1", exposure_mode="TriggerWidth"))
        sh.load_code(code)
        sh.arm()
        cam.start()
        sh.fire()
        f = cam.fetch(timeout_s=2.0)
        gt = cam.ground_truth(f.frame_id)
    eff = o.effective_code(code.bits, 100.0, 1)
    np.testing.assert_allclose(gt.chip_weights, eff, atol=1e-9)
    assert np.abs(f.image.astype(np.float64) - gt.expected_frame()).max() <= 1.0


def test_a_close_command_acting_before_the_open_ramp_keeps_the_shutter_closed():
    # slow, late opening and fast, early closing: a 100 us chip never opens
    o = ShutterOptics(latency_us=300, rise_us=400, fall_us=40, close_latency_us=20)
    assert o.integrate([0, 1e4], (1,), 100.0)[0] == pytest.approx(0.0, abs=1e-9)
    # a long chip opens, then closes
    total = o.integrate([0, 1e5], (1,), 5000.0)[0]
    assert 4000 < total < 5500
