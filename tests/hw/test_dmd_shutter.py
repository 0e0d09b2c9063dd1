"""DLPC900 DMD driver: bytes against the programmer's guide, the simulated controller, contract."""

from __future__ import annotations

import numpy as np
import pytest

from hw import dlpc900_protocol as dp
from hw.dmd_shutter import Dlpc900Shutter
from hw.errors import (
    DeviceDisconnected,
    IncompatibleStateError,
    InitialiseError,
    ProtocolError,
)
from hw.sim.camera import SimCamera
from hw.sim.dlpc900 import SimDlpc900
from hw.sim.scene import SimScene
from hw.types import ShutterCode
from tests.hw.contracts import ShutterContract

SHAPE = (24, 32)  # a small DMD keeps the uploads short


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# -- bytes: worked examples of the DLPC900 Programmer's Guide (DLPU018F), as facts -----------


def test_messages_match_the_guides_examples():
    # a read of command 0x1100 with sequence 0x11 (guide, table 1-5)
    assert dp.message(0x1100, read=True, seq=0x11) == h("C0 11 02 00 00 11")
    # its reply carries 6 data bytes, no command echo (table 1-6)
    assert dp.parse_reply(h("C0 11 06 00 FF 01 FF 01 FF 01")) == (0xC0, 0x11, h("FF01FF01FF01"))
    # a write without reply (table 1-7)
    assert dp.message(0x1100, h("FF 01 FF 01 FF 01"), reply=False, seq=0x12) == h(
        "00 12 08 00 00 11 FF 01 FF 01 FF 01")
    # start the pattern sequence: command 0x1A24 goes low byte first
    assert dp.message(dp.CMD_PATTERN_START_STOP, b"\x02", reply=False) == h("00 00 03 00 24 1A 02")
    assert dp.message(dp.CMD_DISPLAY_MODE, b"\x03") == h("40 00 03 00 1B 1A 03")


def test_lut_entries_match_the_guides_examples():
    # pattern 0: 200 us, red LED, 1 bit, no clear, image 0 bit 0 (section 5.1)
    e0 = dp.LutEntry(index=0, exposure_us=200, led=1, clear=False)
    assert e0.to_bytes() == h("00 00 C8 00 00 10 00 00 00 00 00 00")
    # the same waiting for a trigger
    assert dp.LutEntry(index=0, exposure_us=200, led=1, clear=False,
                       wait_trigger=True).to_bytes() == h("00 00 C8 00 00 90 00 00 00 00 00 00")
    # pattern 1 of the on-the-fly example: 400 us, green, clear, image 1, bit 1
    e1 = dp.LutEntry(index=1, exposure_us=400, led=2, image=1, bit=1)
    assert e1.to_bytes() == h("01 00 90 01 00 21 00 00 00 00 01 08")
    assert dp.LutEntry.from_bytes(e1.to_bytes()) == e1
    # trigger out 2 disabled is bit 0 = 1 of byte 9
    assert dp.LutEntry(index=0, exposure_us=105, trigger_out2=False).to_bytes()[9] == 1
    assert dp.lut_config(2, 0) == h("02 00 00 00 00 00")
    assert dp.bmp_init(1, 1000) == h("01 00 E8 03 00 00")
    with pytest.raises(ValueError, match="bit=24"):
        dp.LutEntry(index=0, exposure_us=105, bit=24).to_bytes()


def test_images_pack_bit_planes_and_enhanced_rle_round_trips():
    # pattern 0 all on: every pixel is 00 00 01 on the wire (bit 0 in the third byte)
    img = dp.pack_planes(np.ones((1, 1080, 1920), bool))[0]
    assert bytes(img[0, 0]) == h("00 00 01")
    data = dp.erle_encode(img)
    assert data[:5] == h("80 0F 00 00 01")  # 1920 (2-byte count) copies of the pixel
    assert data[5:9] == h("00 01 80 0F")  # the next row: copy the previous one
    assert data.endswith(h("00 01 00")) and len(data) == 5 + 1079 * 4 + 3
    rng = np.random.default_rng(3)
    masks = rng.random((30, 40, 56)) < 0.5
    images = dp.pack_planes(masks)
    assert len(images) == 2
    for k in (0, 7, 23, 24, 29):
        back = dp.parse_splash(dp.splash(images[k // 24]))
        np.testing.assert_array_equal(dp.unpack_plane(back, k % 24), masks[k])
    # decoding also takes end-of-line codes after each row and raw runs (other encoders)
    row = h("02 00 00 01") + h("00 02 00 00 00 00 00 01") + h("00 00")
    out = dp.erle_decode(row + h("00 01 04") + h("00 01 00"), 4, 2)
    assert out[1].tolist() == out[0].tolist() and out[0, 3].tolist() == [0, 0, 1]
    with pytest.raises(ProtocolError, match="ended before"):
        dp.erle_decode(h("02 00 00 01"), 4, 2)


# -- the driver on the simulated controller ---------------------------------------------------


def _shutter(sim: SimDlpc900 | None = None) -> tuple[Dlpc900Shutter, SimDlpc900]:
    sim = sim or SimDlpc900(SHAPE)
    return Dlpc900Shutter(lambda: sim, SHAPE), sim


class TestDlpc900OnSimContract(ShutterContract):
    def make_shutter(self) -> Dlpc900Shutter:
        return _shutter()[0]


def test_global_code_becomes_on_off_patterns_and_triggers_the_camera():
    sh, sim = _shutter()
    events = []
    sim.connect_trigger(events.append)
    with sh:
        status = sh.load_code(ShutterCode.parse("1101", 200))
        assert status.echo_verified
        assert sim.mode == dp.MODE_ON_THE_FLY and sim.lut_entries == 4 and sim.repeat == 1
        assert [sim.lut[k].bit for k in range(4)] == [0, 0, 1, 0]
        assert [sim.lut[k].trigger_out2 for k in range(4)] == [True, False, False, False]
        sh.arm()
        assert sh.fire() == 0 and sh.fire() == 1
    assert [e.code.as_string() for e in events] == ["1101", "1101"]
    assert events[0].code.chip_us == 200 and events[0].masks is None


def test_masks_upload_and_play_per_pixel():
    sim = SimDlpc900(SHAPE)
    sh, _ = _shutter(sim)
    masks = np.random.default_rng(1).random((30, *SHAPE)) < 0.5
    events = []
    sim.connect_trigger(events.append)
    with sh:
        status = sh.load_masks(masks, 150)
        assert status.echo_verified and len(sh.masks_sha256) == 64
        assert sorted(sim.images) == [0, 1]
        assert (sim.lut[29].image, sim.lut[29].bit) == (1, 5)
        sh.arm()
        sh.fire()
    np.testing.assert_array_equal(events[0].masks > 0.5, masks)
    # BMP data goes without reply requests (the guide: replies corrupt compressed uploads)
    bmp = [m for m in sim.log if m.cmd == dp.CMD_BMP_DATA]
    assert bmp and not any(m.wants_reply for m in bmp)


def test_refusals_carry_the_controllers_reason():
    sh, sim = _shutter()
    with sh:
        with pytest.raises(Exception, match="105"):
            sh.load_code(ShutterCode.parse("11", 50))  # below the 1-bit minimum exposure
        sim.mode = dp.MODE_VIDEO
        sim.running = True  # a sequence someone else started
        with pytest.raises(ProtocolError, match="not allowed in the current mode"):
            sh._send(dp.CMD_LUT_CONFIG, dp.lut_config(1, 1))


def test_open_failures_and_unplugging_are_sentences():
    sim = SimDlpc900(SHAPE)
    sim.hw_status = 0
    with pytest.raises(InitialiseError, match="did not initialise"):
        Dlpc900Shutter(lambda: sim, SHAPE).open()
    sh, sim = _shutter()
    with sh:
        sh.load_code(ShutterCode.parse("101", 300))
        sh.arm()
        sim.unplugged = True
        with pytest.raises(DeviceDisconnected, match="USB cable"):
            sh.fire()


def test_camera_records_through_the_simulated_dmd():
    sim = SimDlpc900(SHAPE, SHAPE)
    sh = Dlpc900Shutter(lambda: sim, SHAPE)
    cam = SimCamera(SimScene.default(SHAPE[1], SHAPE[0], seed=2), sim, seed=2)
    with cam, sh:
        period = 4 * 500
        cam.apply_settings(cam.settings.replace(trigger_mode="On", trigger_source="Line1",
                                                exposure_mode="Timed", exposure_us=period))
        sh.load_code(ShutterCode.parse("1011", 500))
        sh.arm()
        cam.start()
        sh.fire()
        f = cam.fetch(timeout_s=2.0)
        gt = cam.ground_truth(f.frame_id)
    assert gt.code.as_string() == "1011" and f.trigger_index == 0


def test_hidapi_is_installed_and_finds_no_dmd_here():
    from hw.dmd_shutter import find_dlpc900, hidapi_transport

    assert find_dlpc900() == []  # no DLPC900 on a CI machine
    with pytest.raises(InitialiseError, match="No DLPC900 found"):
        hidapi_transport()()


def test_two_controller_dmd_gets_left_and_right_halves():
    shape = (16, 40)
    sim = SimDlpc900(shape, dual=True)
    sh = Dlpc900Shutter(lambda: sim, shape, dual=True)
    masks = np.random.default_rng(5).random((3, *shape)) < 0.5
    events = []
    sim.connect_trigger(events.append)
    with sh:
        assert sh.load_masks(masks, 200).echo_verified
        cmds = [m.cmd for m in sim.log]
        assert dp.CMD_BMP_INIT_SLAVE in cmds and dp.CMD_BMP_DATA_SLAVE in cmds
        sh.arm()
        sh.fire()
    np.testing.assert_array_equal(events[0].masks > 0.5, masks)
    # a single-controller DMD refuses slave uploads; a missing slave is an open error
    single = SimDlpc900(shape)
    with pytest.raises(InitialiseError, match="slave controller"):
        Dlpc900Shutter(lambda: single, shape, dual=True).open()


def test_trigger_in1_bytes_follow_the_guides_layout():
    # 0x1A35: u16 delay in microseconds, then the edge (0 rising, 1 falling)
    assert dp.trigger_in1(105, False) == h("69 00 00")
    assert dp.trigger_in1(0x1234, True) == h("34 12 01")
    assert dp.parse_trigger_in1(h("34 12 01")) == (0x1234, True)
    assert dp.message(dp.CMD_TRIGGER_IN1, dp.trigger_in1(0, True), reply=False) == h(
        "00 00 05 00 35 1a 00 00 01")
    with pytest.raises(ValueError, match="0..65535"):
        dp.trigger_in1(70000)
    with pytest.raises(ValueError, match="start_source"):
        Dlpc900Shutter(lambda: SimDlpc900(SHAPE), SHAPE, start_source="line")


def test_external_start_plays_once_per_trigger_in_edge():
    sim = SimDlpc900(SHAPE)
    sh = Dlpc900Shutter(lambda: sim, SHAPE, start_source="external", trigger_in_delay_us=250)
    events = []
    sim.connect_trigger(events.append)
    with sh:
        status = sh.load_code(ShutterCode.parse("1101", 200))
        assert status.echo_verified
        # the first pattern waits for TRIG_IN_1, the LUT repeats, the delay is programmed
        assert [sim.lut[k].wait_trigger for k in range(4)] == [True, False, False, False]
        assert sim.repeat == 0 and sim.trigger_in1 == h("fa 00 00")
        assert not sim.trigger_in()  # not armed: the sequence is stopped
        sh.arm()
        assert sh.status().state == "armed" and sim.running
        with pytest.raises(IncompatibleStateError, match="TRIG_IN_1"):
            sh.fire()
        assert not sim.trigger_in(falling=True)  # the wrong edge
        assert sim.trigger_in() and sim.trigger_in()  # each edge plays the code once
        sh.disarm()
        assert not sim.running and not sim.trigger_in()
        # back to host starts: the sequence is uploaded again without the wait
        sh.set_start_source("host")
        assert not sim.lut[0].wait_trigger and sim.repeat == 1
        sh.arm()
        sh.fire()
        with pytest.raises(IncompatibleStateError, match="disarm"):
            sh.set_start_source("external")
    assert [e.code.as_string() for e in events] == ["1101"] * 3
    # the second pass starts one delay after the first pass's slot ends
    assert events[1].t_start_s - events[0].t_start_s == pytest.approx(250e-6 + 800e-6 + sim.gap_s)


def test_external_start_triggers_the_camera_with_masks():
    sim = SimDlpc900(SHAPE, SHAPE)
    sh = Dlpc900Shutter(lambda: sim, SHAPE)
    cam = SimCamera(SimScene.default(SHAPE[1], SHAPE[0], seed=3), sim, seed=3)
    masks = np.random.default_rng(3).random((6, *SHAPE)) < 0.5
    events = []
    sim.connect_trigger(events.append)
    with cam, sh:
        cam.apply_settings(cam.settings.replace(trigger_mode="On", trigger_source="Line1",
                                                exposure_mode="Timed", exposure_us=6 * 300))
        sh.load_masks(masks, 300)
        sh.set_start_source("external", delay_us=10, falling_edge=True)
        assert sim.lut[0].wait_trigger and sim.trigger_in1 == h("0a 00 01")
        sh.arm()
        cam.start()
        assert sim.trigger_in(falling=True)
        f = cam.fetch(timeout_s=2.0)
        gt = cam.ground_truth(f.frame_id)
    assert gt.code.n_chips == 6 and gt.code.chip_us == 300
    np.testing.assert_array_equal(events[0].masks > 0.5, masks)
