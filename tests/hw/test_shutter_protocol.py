"""The shutter-controller protocol (firmware/PROTOCOL.md) as tables of exact bytes."""

from __future__ import annotations

import binascii
import hashlib
import random
import re
import struct
from pathlib import Path

import pytest

from common.codes import code_sha256
from hw import shutter_protocol as sp
from hw.errors import CodeError, ProtocolError

T = sp.MsgType

# -- CRC -------------------------------------------------------------------------------------------


def test_crc_check_value() -> None:
    assert sp.crc16_ccitt_false(b"123456789") == 0x29B1
    assert sp.crc16_ccitt_false(b"") == 0xFFFF


def _crc16_bitwise(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE bit by bit, as PROTOCOL.md defines it (poly 0x1021, MSB first)."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def test_crc_equals_binascii_crc_hqx_and_the_bitwise_definition() -> None:
    rng = random.Random(16)
    for n in [*range(0, 40), 137, 138, 160, 1000, *(rng.randrange(2000) for _ in range(100))]:
        data = rng.randbytes(n)
        init = 0xFFFF if n % 3 else rng.randrange(0x10000)  # also a running value
        want = _crc16_bitwise(data, init)
        assert binascii.crc_hqx(data, init) == want
        assert sp.crc16_ccitt_false(data, init) == want
        assert sp.crc16_ccitt_false(bytearray(data), init) == want
        assert sp.crc16_ccitt_false(memoryview(data), init) == want
    for name, mtype, seq, body, wire in _protocol_examples():  # the CRCs of PROTOCOL.md's table
        packet = sp.cobs_decode(wire[:-1])
        (crc,) = struct.unpack("<H", packet[-2:])
        head = bytes([mtype, seq]) + body
        assert crc == _crc16_bitwise(head) == binascii.crc_hqx(head, 0xFFFF), name
        assert sp.crc16_ccitt_false(head) == crc, name


def test_crc_matches_an_independent_implementation_and_continues() -> None:
    rng = random.Random(1)
    for n in (1, 2, 7, 64, 138):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert sp.crc16_ccitt_false(data) == _crc16_bitwise(data)
        assert sp.crc16_ccitt_false(data[n // 2 :], sp.crc16_ccitt_false(data[: n // 2])) == (
            sp.crc16_ccitt_false(data)
        )


# -- COBS ------------------------------------------------------------------------------------------
RUN_254 = bytes(range(1, 255))
COBS_VECTORS = [  # (decoded, encoded): the examples of the COBS literature
    (b"", "01"),
    (b"\x00", "01 01"),
    (b"\x00\x00", "01 01 01"),
    (b"\x00\x11\x00", "01 02 11 01"),
    (b"\x11\x22\x00\x33", "03 11 22 02 33"),
    (b"\x11\x22\x33\x44", "05 11 22 33 44"),
    (b"\x11\x00\x00\x00", "02 11 01 01 01"),
    (RUN_254, "ff" + RUN_254.hex()),
    (b"\x00" + RUN_254, "01 ff" + RUN_254.hex()),
    (RUN_254 + b"\xff", "ff" + RUN_254.hex() + "02 ff"),
    (bytes(range(2, 256)) + b"\x00", "ff" + bytes(range(2, 256)).hex() + "01 01"),
    (bytes(range(3, 256)) + b"\x00\x01", "fe" + bytes(range(3, 256)).hex() + "02 01"),
]


@pytest.mark.parametrize(("decoded", "encoded"), COBS_VECTORS)
def test_cobs_vectors(decoded: bytes, encoded: str) -> None:
    assert sp.cobs_encode(decoded) == bytes.fromhex(encoded)
    assert sp.cobs_decode(bytes.fromhex(encoded)) == decoded


def test_cobs_decoder_also_accepts_a_trailing_empty_block_after_254_bytes() -> None:
    assert sp.cobs_decode(b"\xff" + RUN_254 + b"\x01") == RUN_254


@pytest.mark.parametrize("n", [0, 1, 2, 137, 138, 253, 254, 255, 256, 507, 508, 509, 510, 800])
@pytest.mark.parametrize("fill", ["random", "zeros", "ones", "sparse"])
def test_cobs_round_trips(n: int, fill: str) -> None:
    rng = random.Random(n)
    data = {
        "random": bytes(rng.randrange(256) for _ in range(n)),
        "zeros": bytes(n),
        "ones": b"\x01" * n,
        "sparse": bytes(0 if rng.random() < 0.01 else rng.randrange(1, 256) for _ in range(n)),
    }[fill]
    enc = sp.cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + 1 + len(data) // 254
    assert sp.cobs_decode(enc) == data


@pytest.mark.parametrize("bad", ["03 11", "02 11 00 01", "ff 01", "00"])
def test_cobs_rejects_invalid_frames(bad: str) -> None:
    with pytest.raises(ProtocolError, match="Invalid COBS"):
        sp.cobs_decode(bytes.fromhex(bad))


# -- packets and frames: exact bytes ---------------------------------------------------------------
FRAMES = [  # (type, seq, body, wire bytes); CRC cross-checked with binascii.crc_hqx
    (T.GET_INFO, 1, b"", "05 01 01 1f 3e 00"),
    (T.GET_STATUS, 2, b"", "05 02 02 2f 5b 00"),
    (T.ARM, 0xFF, b"", "05 05 ff 0a fc 00"),
    (T.PING, 7, b"hi", "07 0a 07 68 69 f7 16 00"),
    (T.PING, 3, b"\x00", "03 0a 03 03 0e 5e 00"),
    (
        T.LOAD_CODE,
        5,
        bytes.fromhex("08 00 40 42 0f 00 e5"),
        "04 03 05 08 04 40 42 0f 04 e5 03 fd 00",
    ),
    (T.ERROR, 0, bytes([0x01, 0, 0, 0]), "02 7f 02 01 01 01 03 3b f8 00"),
]


@pytest.mark.parametrize(("msg_type", "seq", "body", "wire"), FRAMES)
def test_frames_exact_bytes(msg_type: int, seq: int, body: bytes, wire: str) -> None:
    packet = bytes([msg_type, seq]) + body
    assert sp.encode_packet(msg_type, seq, body) == packet + struct.pack(
        "<H", _crc16_bitwise(packet)
    )
    assert sp.encode_frame(msg_type, seq, body) == bytes.fromhex(wire)
    assert sp.FrameReceiver().feed(bytes.fromhex(wire)) == [sp.Packet(msg_type, seq, body)]


def test_largest_packet_and_frame_sizes() -> None:
    body = sp.load_code_body("1" * 1024, 1_000_000)
    packet = sp.encode_packet(T.LOAD_CODE, 1, body)
    assert len(packet) == sp.MAX_PACKET_BYTES == 138
    assert len(sp.encode_frame(T.LOAD_CODE, 1, body)) <= 140
    with pytest.raises(ValueError, match="at most 138"):
        sp.encode_packet(T.PING, 1, bytes(135))


def test_decode_packet_checks_length_and_crc() -> None:
    good = sp.encode_packet(T.PING, 9, b"abc")
    assert sp.decode_packet(good) == sp.Packet(T.PING, 9, b"abc")
    with pytest.raises(ProtocolError, match="CRC mismatch"):
        sp.decode_packet(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ProtocolError, match="shorter than 4"):
        sp.decode_packet(good[:3])


def test_reply_types_and_names() -> None:
    assert sp.reply_type(T.LOAD_CODE) == T.STATUS_LOAD_CODE == 0x83
    assert {sp.reply_type(t) for t in (2, 3, 4, 5, 6, 8, 9)} == sp.STATUS_REPLY_TYPES
    assert sp.message_name(0x42) == "0x42" and sp.message_name(0xC1) == "DONE"
    assert all(sp.ERROR_HELP[c].endswith(".") for c in sp.ErrorCode)
    assert sp.error_name(0x0A) == "E_BUSY" and "0x99" in sp.error_help(0x99)


# -- the receiver rules ----------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def codes(items: list) -> list[str]:
    return [i.code.name if isinstance(i, sp.FrameError) else i.name for i in items]


def test_receiver_ignores_empty_frames_and_splits_anywhere() -> None:
    wire = b"\x00\x00" + sp.encode_frame(T.PING, 1, b"a") + b"\x00" + sp.encode_frame(T.ARM, 2)
    rx = sp.FrameReceiver()
    out = []
    for b in wire:  # one byte at a time
        out += rx.feed(bytes([b]))
    assert out == [sp.Packet(T.PING, 1, b"a"), sp.Packet(T.ARM, 2)]
    assert not rx.collecting


def test_receiver_resyncs_after_garbage() -> None:
    good = sp.encode_frame(T.PING, 4, b"ok")
    rx = sp.FrameReceiver()
    # garbage that is not COBS, garbage that decodes to a short packet, a flipped bit
    damaged = bytearray(good)
    damaged[3] ^= 0x10
    out = rx.feed(b"\x05\x99\x00" + b"\x02\x11\x00" + bytes(damaged) + good)
    assert codes(out) == ["E_FRAMING", "E_CRC", "E_CRC", "PING"]
    assert out[-1] == sp.Packet(T.PING, 4, b"ok")
    assert all(isinstance(e.raw, bytes) and e.message for e in out[:3])


def test_receiver_too_long_discards_up_to_the_next_delimiter() -> None:
    rx = sp.FrameReceiver()
    good = sp.encode_frame(T.GET_INFO, 8)
    out = rx.feed(b"\x01" * 161)
    assert codes(out) == ["E_TOO_LONG"]
    assert rx.feed(b"\x01" * 500) == []  # still discarding, reported once
    assert rx.feed(good) == []  # the rest of the long frame, up to its 0x00
    assert rx.feed(good) == [sp.Packet(T.GET_INFO, 8)]


def test_receiver_accepts_160_bytes() -> None:
    rx = sp.FrameReceiver()
    assert codes(rx.feed(b"\x01" * 160 + b"\x00")) == ["E_CRC"]  # a frame, not E_TOO_LONG
    assert codes(rx.feed(b"\x01" * 161 + b"\x00")) == ["E_TOO_LONG"]
    assert rx.feed(sp.encode_frame(T.ARM, 1)) == [sp.Packet(T.ARM, 1)]


def test_receiver_drops_a_half_frame_after_50_ms() -> None:
    clock = FakeClock()
    rx = sp.FrameReceiver(clock=clock)
    frame = sp.encode_frame(T.PING, 5, b"xyz")
    assert rx.feed(frame[:3]) == []
    clock.t = 0.049
    assert rx.poll() == [] and rx.feed(frame[3:5]) == []  # gaps below 50 ms are fine
    clock.t = 0.098
    assert rx.feed(frame[5:]) == [sp.Packet(T.PING, 5, b"xyz")]
    assert rx.feed(frame[:4]) == []
    clock.t = 0.150
    (err,) = rx.poll()
    assert err.code == sp.ErrorCode.E_TIMEOUT and err.raw == frame[:4]
    assert rx.poll() == [] and not rx.collecting
    assert rx.feed(frame) == [sp.Packet(T.PING, 5, b"xyz")]


def test_receiver_timeout_is_noticed_when_the_next_bytes_arrive() -> None:
    clock = FakeClock()
    rx = sp.FrameReceiver(clock=clock)
    frame = sp.encode_frame(T.ARM, 6)
    rx.feed(frame[:2])
    clock.t = 1.0
    assert codes(rx.feed(frame)) == ["E_TIMEOUT", "ARM"]


def test_idle_receiver_never_times_out() -> None:
    clock = FakeClock()
    rx = sp.FrameReceiver(clock=clock)
    rx.feed(sp.encode_frame(T.ARM, 1))
    clock.t = 10.0
    assert rx.poll() == []


# -- bodies ----------------------------------------------------------------------------------------
def test_bit_order_of_load_code() -> None:
    assert sp.pack_bits("11100101") == b"\xe5"  # the example of PROTOCOL.md
    assert sp.pack_bits("1") == b"\x80"  # unused bits are 0
    bits = tuple(random.Random(2).randrange(2) for _ in range(1021))
    assert sp.unpack_bits(sp.pack_bits(bits), 1021) == bits
    body = sp.load_code_body("1" + "0" * 1023, 262_140_000)
    assert body[:6] == struct.pack("<HI", 1024, 262_140_000) and len(body) == 6 + 128


@pytest.mark.parametrize(
    ("bits", "chip_ns", "match"),
    [
        ("", 1_000_000, "1 to 1024"),
        ("1" * 1025, 1_000_000, "1 to 1024"),
        ("0000", 1_000_000, "no open chip"),
        ([1, 2], 1_000_000, "0 \\(closed\\) or 1"),
        ("101", 1_000_250, "1000 us or 1000.5 us"),
    ],
)
def test_load_code_body_refuses(bits, chip_ns: int, match: str) -> None:
    with pytest.raises(CodeError, match=match):
        sp.load_code_body(bits, chip_ns)


def test_configure_body_layout_and_ranges() -> None:
    body = sp.configure_body(
        mode=1,
        repeats=300,
        period_ns=5_000_000,
        lead_ns=200_000,
        trigger_style=1,
        pulse_ns=50_000,
        start_source=1,
        flags=0,
    )
    assert body == bytes.fromhex("01 2c01 404b4c00 400d0300 01 50c30000 01 00")
    for bad, match in [
        ({"mode": 3}, "mode"),
        ({"repeats": 0}, "repeats"),
        ({"lead_ns": 9_999}, "lead_ns"),
        ({"lead_ns": 32_768_000}, "lead_ns"),
        ({"trigger_style": 1, "pulse_ns": 200_000}, "pulse_ns"),
        ({"pulse_ns": 999}, "pulse_ns"),
        ({"flags": 2}, "flags"),
        ({"period_ns": 2**32}, "period_ns"),
    ]:
        with pytest.raises(ValueError, match=match):
            sp.configure_body(**bad)


def test_ping_body_limit() -> None:
    assert sp.ping_body(bytes(32)) == bytes(32)
    with pytest.raises(ValueError, match="at most 32"):
        sp.ping_body(bytes(33))


def test_info_layout() -> None:
    body = (
        b"BVSH" + bytes([1, 1, 2, 3, 1]) + struct.pack("<HIIIHHI", 1024, 10_000, 262_140_000,
        32_767_500, 500, 4_000, 16_000_000) + bytes([4, 1, 0])
    )  # fmt: skip
    info = sp.DeviceInfo.from_body(body)
    assert len(body) == sp.DeviceInfo.SIZE == 34
    assert info.firmware_version == "1.2.3" and info.board_name.startswith("ATmega328P")
    assert info.reset_causes == ("brown-out",) and info.eeprom_restored
    assert info.to_body() == body
    assert sp.info_problem(body) is None


def test_status_layout() -> None:
    sha = hashlib.sha256(b"11100101").digest()
    body = (
        bytes([2, 0x0A]) + struct.pack("<IHIBI", 7, 8, 1_000_000, 8, 2000) + sha
        + struct.pack("<BHIIBIBB", 1, 3, 9_000_000, 100_000, 0, 10_000, 0, 1) + bytes([1, 0])
    )  # fmt: skip
    st = sp.DeviceStatus.from_body(body)
    assert len(body) == sp.DeviceStatus.SIZE == 69
    assert (st.state_name, st.last_error, st.trigger_count, st.n_chips) == ("armed", 10, 7, 8)
    assert (st.chip_ns, st.prescaler, st.chip_ticks) == (1_000_000, 8, 2000)
    assert st.code_sha256 == code_sha256([1, 1, 1, 0, 0, 1, 0, 1])
    assert (st.mode, st.repeats, st.period_ns, st.lead_ns) == (1, 3, 9_000_000, 100_000)
    assert (st.pulse_ns, st.flags, st.eeprom_valid) == (10_000, 1, True)
    assert st.to_body() == body


def test_small_reply_layouts() -> None:
    assert sp.FiredReply.from_body(bytes.fromhex("05000000 0100")) == sp.FiredReply(5, 1)
    done = sp.DoneEvent.from_body(bytes.fromhex("05000000 03000000 01"))
    assert (done.first_trigger_index, done.played, done.result_name) == (5, 3, "aborted")
    err = sp.ErrorReply.from_body(bytes.fromhex("06 04 1200"))
    assert (err.name, err.request_name, err.detail, err.frame_level) == ("E_LENGTH", "CONFIGURE",
                                                                        18, False)  # fmt: skip
    assert "detail 18" in err.describe() and "flash" in err.describe()
    assert sp.ErrorReply(sp.ErrorCode.E_CRC, 0).frame_level


@pytest.mark.parametrize(
    ("parser", "size"),
    [
        (sp.DeviceInfo.from_body, 34),
        (sp.DeviceStatus.from_body, 69),
        (sp.FiredReply.from_body, 6),
        (sp.DoneEvent.from_body, 9),
        (sp.ErrorReply.from_body, 4),
    ],
)
def test_parsers_check_the_exact_length(parser, size: int) -> None:
    for n in (0, size - 1, size + 1):
        with pytest.raises(ProtocolError, match=f"must be {size} bytes.*sent {n}"):
            parser(bytes(n))


def test_info_problem_names_what_was_found() -> None:
    assert "instead of b'BVSH'" in sp.info_problem(b"\x00" * 34)
    v2 = sp.DeviceInfo(protocol_version=2, fw_major=2, fw_minor=1).to_body()
    assert "firmware 2.1.0 with protocol version 2" in sp.info_problem(v2)
    assert "protocol version" in sp.info_problem(b"BVSH")


# -- chip timing -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("chip_us", "valid"),
    [
        (10, True),
        (9.5, False),
        (10.5, True),
        (10.25, False),
        (1000, True),
        (1000.0000001, False),
        (32767.5, True),
        (32768, True),
        (32768.5, False),
        (32770, False),
        (32772, True),
        (262140, True),
        (262144, False),
        (0.1 * 3 * 10000, True),  # 3000.0000000000005: float noise, not a different value
    ],
)
def test_chip_representability(chip_us: float, valid: bool) -> None:
    assert sp.is_chip_us_representable(chip_us) is valid
    assert (sp.chip_us_problem(chip_us) is None) is valid
    if valid:
        assert sp.is_chip_ns_valid(sp.chip_ns_for(chip_us))


@pytest.mark.parametrize(
    ("chip_us", "nearest"),
    [
        (1000.3, (1000.0, 1000.5)),
        (1, (10.0,)),
        (32767.7, (32767.5, 32768.0)),
        (32770, (32768.0, 32772.0)),
        (300000, (262140.0,)),
        (40000, (40000.0,)),
    ],
)
def test_nearest_valid_chip_durations(chip_us: float, nearest: tuple[float, ...]) -> None:
    assert sp.nearest_valid_chip_us(chip_us) == nearest
    message = sp.chip_us_problem(chip_us)
    if len(nearest) > 1 or nearest[0] != chip_us:
        assert message is not None
        assert message.endswith("Use " + " or ".join(f"{v:g} us" for v in nearest) + ".")


def test_timer_settings() -> None:
    assert sp.timer_setting(10_000) == (8, 20)
    assert sp.timer_setting(32_767_500) == (8, 65535)
    assert sp.timer_setting(32_768_000) == (64, 8192)
    assert sp.timer_setting(262_140_000) == (64, 65535)
    with pytest.raises(CodeError):
        sp.timer_setting(10_100)
    assert sp.chip_ns_for(0.5) == 500
    with pytest.raises(CodeError):
        sp.chip_ns_for(float("nan"))


# -- the examples table of firmware/PROTOCOL.md ----------------------------------------------------
def _protocol_examples() -> list[tuple[str, int, int, bytes, bytes]]:
    text = (Path(__file__).resolve().parents[2] / "firmware" / "PROTOCOL.md").read_text()
    section = text[text.index("## Examples (exact bytes)") :]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not re.fullmatch(r"[0-9a-f]{2}", cells[1]):
            continue
        name, mtype, seq, body, wire = cells
        rows.append((name, int(mtype, 16), int(seq), bytes.fromhex(body), bytes.fromhex(wire)))
    return rows


def test_protocol_md_examples_match_the_encoder() -> None:
    rows = _protocol_examples()
    assert len(rows) >= 7, "the examples table of firmware/PROTOCOL.md was not found"
    for name, mtype, seq, body, wire in rows:
        assert sp.encode_frame(mtype, seq, body) == wire, name
        (packet,) = sp.FrameReceiver().feed(wire)
        assert (packet.type, packet.seq, packet.body) == (mtype, seq, body), name
