"""Pure-Python encoding of the TI DLPC900 USB-HID commands used by :mod:`hw.dmd_shutter`.

The DLPC900 drives the DMD of the DLP LightCrafter 6500 and 9000 EVMs. This module follows TI's
*DLPC900 Programmer's Guide* (DLPU018F); ``docs/dlpc900_protocol.md`` lists every command used
here with its bytes and sources. No I/O: the driver, the simulated controller
(:mod:`hw.sim.dlpc900`) and the tests share these definitions, and the tests check them against
the worked examples printed in the guide.

Wire format (all multi-byte fields little-endian)::

    message: flags(1) seq(1) length(2) command(2) data(n)     length = 2 + n
    flags:   bit 7 read, bit 6 reply wanted, bit 5 error (in replies), bits 2:0 destination
    reply:   flags(1) seq(1) length(2) data(length)            (no command echo)

A message is at most 512 bytes and travels in 64-byte HID reports (the last one zero-padded;
hidapi writes carry a leading report id 0). Pattern-on-the-fly mode shows 1-bit patterns held
as bit planes of 24-bit images: pattern k is bit ``k % 24`` of image ``k // 24``; each image is
uploaded as a 48-byte "Spld" header plus its pixels, enhanced-RLE compressed.

>>> message(CMD_PATTERN_START_STOP, b"\\x02", reply=False).hex(" ")
'00 00 03 00 24 1a 02'
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hw.errors import ProtocolError

VID, PID = 0x0451, 0xC900
REPORT_SIZE = 64
MAX_MESSAGE = 512
#: image bytes per Pattern BMP Load (0x1A2B) command: 512 - 4 header - 2 command - 2 count
BMP_CHUNK = 504

FLAG_READ = 0x80
FLAG_REPLY = 0x40
FLAG_ERROR = 0x20

CMD_ERROR_CODE = 0x0100
CMD_ERROR_TEXT = 0x0101
CMD_FIRMWARE_VERSION = 0x0205
CMD_HW_STATUS = 0x1A0A
CMD_SYSTEM_STATUS = 0x1A0B
CMD_MAIN_STATUS = 0x1A0C
CMD_DISPLAY_MODE = 0x1A1B
CMD_TRIGGER_OUT1 = 0x1A1D
CMD_TRIGGER_OUT2 = 0x1A1E
CMD_PATTERN_START_STOP = 0x1A24
CMD_BMP_INIT = 0x1A2A
CMD_BMP_DATA = 0x1A2B
#: the same for the second (slave) controller of a DLP9000, which holds the right half
CMD_BMP_INIT_SLAVE = 0x1A2C
CMD_BMP_DATA_SLAVE = 0x1A2D
CMD_LUT_CONFIG = 0x1A31
CMD_LUT_DEFINE = 0x1A34
CMD_TRIGGER_IN1 = 0x1A35

MODE_VIDEO, MODE_PRESTORED, MODE_VIDEO_PATTERN, MODE_ON_THE_FLY = 0, 1, 2, 3
STOP, PAUSE, START = 0, 1, 2

#: DLP6500 / DLP9000 minimum exposure of a 1-bit pattern (all DMD blocks active), microseconds
MIN_EXPOSURE_US = 105
MAX_TIME_US = 0xFFFFFF
MAX_LUT_ENTRIES = 400
MAX_IMAGES = 18
LED_WHITE = 7

#: Read Error Code (0x0100) values, from the guide's table
ERROR_CODES = {
    0: "no error",
    1: "batch file checksum error",
    2: "device failure",
    3: "invalid command number",
    4: "incompatible controller and DMD",
    5: "command not allowed in the current mode",
    6: "invalid command parameter",
    7: "item referenced by the parameter not present",
    8: "out of resources (RAM or flash)",
    9: "invalid BMP compression type",
    10: "pattern bit number out of range",
    11: "pattern BMP not present in flash",
    12: "pattern dark time out of range",
    13: "signal delay parameter out of range",
    14: "pattern exposure time out of range",
    15: "pattern number out of range",
    16: "invalid pattern definition",
    17: "pattern image memory address out of range",
    255: "internal error",
}

#: Hardware Status (0x1A0A) bits
HW_INIT_OK, HW_INCOMPATIBLE, HW_RESET_ERROR, HW_SWAP_ERROR = 0x01, 0x02, 0x04, 0x08
HW_SLAVE_PRESENT, HW_SEQ_ABORT, HW_SEQ_ERROR = 0x10, 0x40, 0x80
#: Main Status (0x1A0C) bits
MAIN_PARKED, MAIN_SEQ_RUNNING = 0x01, 0x02


# -- messages ---------------------------------------------------------------------------------


def message(cmd: int, data: bytes = b"", *, read: bool = False, reply: bool = True,
            seq: int = 0) -> bytes:
    """One command message (header + command + data), at most 512 bytes."""
    if not 0 <= cmd <= 0xFFFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"command 0x{cmd:04X} or sequence {seq} out of range")
    flags = (FLAG_READ if read else 0) | (FLAG_REPLY if (reply or read) else 0)
    body = struct.pack("<H", cmd) + bytes(data)
    msg = struct.pack("<BBH", flags, seq, len(body)) + body
    if len(msg) > MAX_MESSAGE:
        raise ValueError(f"A DLPC900 message holds at most {MAX_MESSAGE} bytes; got {len(msg)}.")
    return msg


def reports(msg: bytes) -> list[bytes]:
    """The 64-byte HID reports that carry ``msg`` (the last one zero-padded)."""
    out = [msg[i : i + REPORT_SIZE] for i in range(0, len(msg), REPORT_SIZE)]
    out[-1] = out[-1] + bytes(REPORT_SIZE - len(out[-1]))
    return out


def reports_needed(first_report: bytes) -> int:
    """How many reports the message starting in ``first_report`` spans."""
    length = struct.unpack_from("<H", first_report, 2)[0]
    return -(-(4 + length) // REPORT_SIZE)


@dataclass(frozen=True)
class Message:
    """A parsed command message."""

    flags: int
    seq: int
    cmd: int
    data: bytes

    @property
    def is_read(self) -> bool:
        return bool(self.flags & FLAG_READ)

    @property
    def wants_reply(self) -> bool:
        return bool(self.flags & (FLAG_REPLY | FLAG_READ))


def parse_message(stream: bytes) -> Message:
    """Parse a command message from the concatenated reports that carry it."""
    if len(stream) < 6:
        raise ProtocolError(f"A DLPC900 message has at least 6 bytes; got {len(stream)}.")
    flags, seq, length = struct.unpack_from("<BBH", stream, 0)
    if length < 2 or 4 + length > len(stream) or 4 + length > MAX_MESSAGE:
        raise ProtocolError(f"Bad DLPC900 message length {length} for {len(stream)} bytes.")
    cmd = struct.unpack_from("<H", stream, 4)[0]
    return Message(flags, seq, cmd, bytes(stream[6 : 4 + length]))


def reply(flags: int, seq: int, data: bytes = b"", error: bool = False) -> bytes:
    """A reply report (64 bytes): the request's flags plus the error bit, and the data."""
    body = struct.pack("<BBH", (flags & ~FLAG_ERROR) | (FLAG_ERROR if error else 0), seq,
                       len(data)) + bytes(data)
    return body + bytes(max(0, REPORT_SIZE - len(body)))


def parse_reply(report: bytes) -> tuple[int, int, bytes]:
    """``(flags, seq, data)`` of a reply report."""
    if len(report) < 4:
        raise ProtocolError(f"A DLPC900 reply has at least 4 bytes; got {len(report)}.")
    flags, seq, length = struct.unpack_from("<BBH", report, 0)
    return flags, seq, bytes(report[4 : 4 + length])


# -- pattern LUT ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LutEntry:
    """One pattern of the Pattern Display LUT (0x1A34): 12 bytes on the wire."""

    index: int
    exposure_us: int
    dark_us: int = 0
    image: int = 0
    bit: int = 0
    clear: bool = True
    bit_depth: int = 1
    led: int = LED_WHITE
    wait_trigger: bool = False
    trigger_out2: bool = True

    def to_bytes(self) -> bytes:
        for name, v, hi in (("index", self.index, 511), ("exposure_us", self.exposure_us,
                            MAX_TIME_US), ("dark_us", self.dark_us, MAX_TIME_US),
                            ("image", self.image, 0x7FF), ("bit", self.bit, 23),
                            ("bit_depth", self.bit_depth - 1, 7), ("led", self.led, 7)):
            if not 0 <= int(v) <= hi:
                raise ValueError(f"LUT entry {name}={v} is out of range.")
        options = (int(self.clear) | ((self.bit_depth - 1) << 1) | (self.led << 4)
                   | (int(self.wait_trigger) << 7))
        return (struct.pack("<H", self.index) + int(self.exposure_us).to_bytes(3, "little")
                + bytes([options]) + int(self.dark_us).to_bytes(3, "little")
                + bytes([0 if self.trigger_out2 else 1])
                + struct.pack("<H", (self.image & 0x7FF) | (self.bit << 11)))

    @classmethod
    def from_bytes(cls, b: bytes) -> LutEntry:
        if len(b) != 12:
            raise ProtocolError(f"A LUT entry has 12 bytes; got {len(b)}.")
        options, word = b[5], struct.unpack_from("<H", b, 10)[0]
        return cls(
            index=struct.unpack_from("<H", b, 0)[0],
            exposure_us=int.from_bytes(b[2:5], "little"),
            dark_us=int.from_bytes(b[6:9], "little"),
            image=word & 0x7FF, bit=word >> 11, clear=bool(options & 1),
            bit_depth=((options >> 1) & 7) + 1, led=(options >> 4) & 7,
            wait_trigger=bool(options & 0x80), trigger_out2=not (b[9] & 1),
        )


def lut_config(n_entries: int, repeat: int) -> bytes:
    """Data of Pattern Display LUT Configuration (0x1A31): entries and repeat (0 = forever)."""
    if not 1 <= n_entries <= 512 or repeat < 0:
        raise ValueError(f"LUT configuration needs 1..512 entries and repeat >= 0; got "
                         f"{n_entries}, {repeat}.")
    return struct.pack("<HI", n_entries, repeat)


#: largest Trigger In 1 delay the command's 16-bit field holds, microseconds
MAX_TRIGGER_IN_DELAY_US = 0xFFFF


def trigger_in1(delay_us: int = 0, falling_edge: bool = False) -> bytes:
    """Data of Trigger In 1 (0x1A35): u16 delay (us) from the edge to the pattern, then the
    edge that starts it (0 rising, 1 falling). A LUT entry waits for it when its ``wait_trigger``
    bit is set.

    >>> trigger_in1(105, False).hex(" ")
    '69 00 00'
    """
    if not 0 <= int(delay_us) <= MAX_TRIGGER_IN_DELAY_US or int(delay_us) != delay_us:
        raise ValueError(f"Trigger In 1 delay must be a whole number of microseconds in "
                         f"0..{MAX_TRIGGER_IN_DELAY_US}; got {delay_us}.")
    return struct.pack("<HB", int(delay_us), int(bool(falling_edge)))


def parse_trigger_in1(data: bytes) -> tuple[int, bool]:
    """``(delay_us, falling_edge)`` from the 3 data bytes of Trigger In 1 (write or read)."""
    if len(data) < 3:
        raise ProtocolError(f"Trigger In 1 carries 3 bytes; got {len(data)}.")
    return int.from_bytes(data[0:2], "little"), bool(data[2] & 1)


def bmp_init(image: int, n_bytes: int) -> bytes:
    """Data of Initialize Pattern BMP Load (0x1A2A): image index and total bytes."""
    return struct.pack("<HI", image, n_bytes)


def bmp_chunks(blob: bytes) -> Iterator[bytes]:
    """Data of the Pattern BMP Load (0x1A2B) commands that carry ``blob``."""
    for i in range(0, len(blob), BMP_CHUNK):
        part = blob[i : i + BMP_CHUNK]
        yield struct.pack("<H", len(part)) + part


# -- images -----------------------------------------------------------------------------------

SPLASH_SIGNATURE = b"Spld"
COMPRESS_NONE, COMPRESS_RLE, COMPRESS_ERLE = 0, 1, 2


def pack_planes(masks: np.ndarray) -> list[np.ndarray]:
    """1-bit patterns ``(K, H, W)`` -> 24-bit images ``(H, W, 3)`` uint8 in wire byte order
    (bits 16-23, bits 8-15, bits 0-7): pattern k is bit ``k % 24`` of image ``k // 24``."""
    m = np.asarray(masks, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"masks must be (K, H, W); got {m.shape}.")
    images = []
    for start in range(0, len(m), 24):
        value = np.zeros(m.shape[1:], np.uint32)
        for b, plane in enumerate(m[start : start + 24]):
            value |= plane.astype(np.uint32) << np.uint32(b)
        rgb = np.stack([(value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF], -1)
        images.append(rgb.astype(np.uint8))
    return images


def unpack_plane(image: np.ndarray, bit: int) -> np.ndarray:
    """Bit plane ``bit`` (0-23) of a wire-order 24-bit image, as a bool ``(H, W)``."""
    v = (image[..., 0].astype(np.uint32) << 16) | (image[..., 1].astype(np.uint32) << 8) | (
        image[..., 2].astype(np.uint32))
    return ((v >> np.uint32(bit)) & 1).astype(bool)


def _count(n: int) -> bytes:
    return bytes([n]) if n < 128 else bytes([(n & 0x7F) | 0x80, n >> 7])


def erle_encode(image: np.ndarray) -> bytes:
    """Enhanced-RLE pixel data of a wire-order image ``(H, W, 3)``: runs of one pixel
    (``n, pixel``), a row equal to the previous one as ``00 01 W``, and ``00 01 00`` at the end."""
    h, w, _ = image.shape
    out = bytearray()
    prev = None
    for row in image:
        if prev is not None and np.array_equal(row, prev):
            out += b"\x00\x01" + _count(w)
        else:
            change = np.flatnonzero(np.any(row[1:] != row[:-1], axis=1)) + 1
            starts = np.concatenate([[0], change])
            ends = np.concatenate([change, [w]])
            for s, e in zip(starts, ends, strict=True):
                n = int(e - s)
                while n > 0:
                    k = min(n, 0x7FFF)
                    out += _count(k) + bytes(row[s])
                    n -= k
        prev = row
    out += b"\x00\x01\x00"
    return bytes(out)


def _read_count(data: bytes, i: int) -> tuple[int, int]:
    n = data[i]
    if n & 0x80:
        return (n & 0x7F) | (data[i + 1] << 7), i + 2
    return n, i + 1


def erle_decode(data: bytes, width: int, height: int) -> np.ndarray:
    """Inverse of :func:`erle_encode`, for every enhanced-RLE code of the guide (repeat,
    raw run, copy from the previous row, end of line, end of image)."""
    out = np.zeros((height, width, 3), np.uint8)
    y = x = 0
    i = 0
    try:
        while True:
            if y >= height:
                if data[i : i + 3] == b"\x00\x01\x00":
                    return out
                raise ProtocolError("Enhanced-RLE data runs past the last row.")
            if data[i] != 0:
                n, i = _read_count(data, i)
                px = np.frombuffer(data[i : i + 3], np.uint8)
                i += 3
                out[y, x : x + n] = px
                x += n
            elif data[i + 1] == 0:  # end of line (optional: a full row has already wrapped)
                i += 2
                if x:
                    y, x = y + 1, 0
                continue
            elif data[i + 1] == 1:
                if data[i + 2] == 0:  # end of image
                    return out
                n, i = _read_count(data, i + 2)
                out[y, x : x + n] = out[y - 1, x : x + n] if y > 0 else 0
                x += n
            else:
                n, i = _read_count(data, i + 1)
                out[y, x : x + n] = np.frombuffer(data[i : i + 3 * n], np.uint8).reshape(n, 3)
                i += 3 * n
                x += n
            if x > width:
                raise ProtocolError(f"Enhanced-RLE row {y} is longer than {width} pixels.")
            if x == width:
                y, x = y + 1, 0
    except IndexError:
        raise ProtocolError("Enhanced-RLE data ended before the end-of-image code.") from None


def splash(image: np.ndarray, compression: int = COMPRESS_ERLE) -> bytes:
    """A 24-bit image as uploaded: 48-byte header and pixel data (enhanced RLE or none)."""
    h, w, _ = image.shape
    if compression == COMPRESS_ERLE:
        pixels = erle_encode(image)
    elif compression == COMPRESS_NONE:
        pixels = np.ascontiguousarray(image, np.uint8).tobytes()
    else:
        raise ValueError("Only uncompressed (0) and enhanced RLE (2) images are written.")
    header = bytearray(48)
    header[0:4] = SPLASH_SIGNATURE
    struct.pack_into("<HHI", header, 4, w, h, len(pixels))
    header[12:20] = b"\xff" * 8
    header[24], header[25], header[26], header[29] = 1, compression, 1, 1
    return bytes(header) + pixels


def parse_splash(blob: bytes) -> np.ndarray:
    """The image ``(H, W, 3)`` of an uploaded header + pixel data (enhanced RLE or none)."""
    if len(blob) < 48 or blob[:4] != SPLASH_SIGNATURE:
        raise ProtocolError("An uploaded pattern image must start with the 48-byte 'Spld' header.")
    w, h = struct.unpack_from("<HH", blob, 4)
    compression = blob[25]
    pixels = blob[48:]
    if compression == COMPRESS_ERLE:
        return erle_decode(pixels, w, h)
    if compression == COMPRESS_NONE:
        if len(pixels) < w * h * 3:
            raise ProtocolError(
                f"Uncompressed image data is {len(pixels)} bytes; need {w * h * 3}."
            )
        return np.frombuffer(pixels[: w * h * 3], np.uint8).reshape(h, w, 3).copy()
    raise ProtocolError(f"Image compression {compression} is not supported (0 or 2).")
