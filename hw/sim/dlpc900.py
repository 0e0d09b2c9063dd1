"""A simulated DLPC900 that speaks the USB-HID bytes of :mod:`hw.dlpc900_protocol`.

:class:`SimDlpc900` is what the driver's HID transport talks to in tests: it takes 65-byte
writes (report id 0 + 64 bytes) and answers 64-byte reads, parses every command message, keeps
the controller's state (display mode, pattern LUT, uploaded images, trigger settings, error code,
status bits) and refuses what the real controller refuses (unknown command, LUT data outside
pattern-on-the-fly mode, out-of-range exposure, an image index > 17...) by setting the error bit
and the Read Error Code. Decoding is written from the guide's tables, independently of the
encoder, so the tests check the driver's bytes against the documented layout.

On "start" (0x1A24 = 2) with a repeat count of 1 it plays the LUT once: its Trigger Out 2 fires
at the first pattern, and every callback connected with :meth:`connect_trigger` (a simulated
camera) receives a :class:`~hw.sim.shutter.TriggerEvent`: the global code when every pattern is
all-on or all-off, else the per-pixel masks mapped onto the sensor. When the first LUT entry
waits for a trigger, "start" only readies the sequence; each edge on TRIG_IN_1
(:meth:`trigger_in`, of the polarity set by Trigger In 1, 0x1A35) plays it once, after the
programmed delay, and the sequence stays running for the next edge unless the repeat count is 1.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from hw import dlpc900_protocol as dp
from hw.optics import warp_masks
from hw.sim.shutter import SimClock, TriggerEvent, TriggerOutput
from hw.types import ShutterCode


class SimDlpc900(TriggerOutput):
    """Simulated DLPC900 (DLP6500, 1920x1080 by default) behind a USB-HID interface.

    Args:
        dmd_shape: mirrors ``(rows, columns)``.
        sensor_shape: the camera's ``(height, width)`` (for per-pixel masks).
        dmd_to_camera: 3x3 mapping of DMD (x, y) to sensor pixels (default identity).
        clock: simulated clock shared with the cameras.
        dual: two controllers (DLP9000): each image arrives as a left half (master commands)
            and a right half (slave commands 0x1A2C / 0x1A2D).
    """

    def __init__(self, dmd_shape: tuple[int, int] = (1080, 1920),
                 sensor_shape: tuple[int, int] | None = None,
                 dmd_to_camera: np.ndarray | None = None, clock: SimClock | None = None,
                 gap_s: float = 0.002, dual: bool = False) -> None:
        super().__init__()
        self.dmd_shape = (int(dmd_shape[0]), int(dmd_shape[1]))
        self.sensor_shape = tuple(sensor_shape) if sensor_shape is not None else self.dmd_shape
        self.dmd_to_camera = np.eye(3) if dmd_to_camera is None else np.asarray(dmd_to_camera)
        self.clock = clock or SimClock()
        self.gap_s = float(gap_s)
        self.unplugged = False
        self._lock = threading.Lock()
        self._incoming = bytearray()
        self._outgoing: deque[bytes] = deque()
        self.mode = dp.MODE_VIDEO
        self.lut: dict[int, dp.LutEntry] = {}
        self.lut_entries = 0
        self.repeat = 0
        self.images: dict[int, np.ndarray] = {}
        self.dual = bool(dual)
        self._halves: dict[int, dict[int, np.ndarray]] = {0: {}, 1: {}}
        self._uploads: dict[int, tuple[int, int, bytearray] | None] = {0: None, 1: None}
        self.trigger_out: dict[int, bytes] = {1: b"\x00\x00\x00\x00\x00", 2: b"\x00" * 5}
        self.trigger_in1 = b"\x00\x00\x00"  # delay (us, u16) and polarity, as last written
        self.waiting_trigger = False
        self.running = False
        self.error = 0
        self.hw_status = dp.HW_INIT_OK | (dp.HW_SLAVE_PRESENT if dual else 0)
        self.played = 0
        self.log: list[dp.Message] = []

    # -- the HID interface ------------------------------------------------------------------
    def write(self, report: bytes) -> int:
        """Take one output report (report id 0 + 64 bytes)."""
        if self.unplugged:
            raise OSError("DLPC900 not connected")
        if len(report) != dp.REPORT_SIZE + 1 or report[0] != 0:
            raise OSError(f"HID output reports are 65 bytes starting with report id 0; got "
                          f"{len(report)} bytes")
        with self._lock:
            self._incoming += report[1:]
            if len(self._incoming) >= 4:
                need = dp.reports_needed(bytes(self._incoming[:4])) * dp.REPORT_SIZE
                if len(self._incoming) >= need:
                    stream, self._incoming = bytes(self._incoming[:need]), bytearray()
                    self._handle(dp.parse_message(stream))
        return len(report)

    def read(self, size: int = dp.REPORT_SIZE, timeout_ms: int = 1000) -> bytes:
        """The next input report (64 bytes, no report id), or b"" when none is pending."""
        if self.unplugged:
            raise OSError("DLPC900 not connected")
        with self._lock:
            return self._outgoing.popleft() if self._outgoing else b""

    def close(self) -> None:
        """The host closed the HID handle (the controller keeps its state)."""
        with self._lock:
            self._incoming.clear()
            self._outgoing.clear()

    # -- commands ---------------------------------------------------------------------------
    def _fail(self, code: int) -> None:
        self.error = code

    def _answer(self, msg: dp.Message, data: bytes = b"", error: bool = False) -> None:
        if msg.wants_reply:
            self._outgoing.append(dp.reply(msg.flags, msg.seq, data, error))

    def _handle(self, msg: dp.Message) -> None:
        self.log.append(msg)
        cmd, data = msg.cmd, msg.data
        if msg.is_read:
            value = self._read(cmd, data)
            if value is None:
                self._fail(3)
                self._answer(msg, b"", error=True)
            else:
                self._answer(msg, value)
            return
        ok = self._write(cmd, data)
        if not ok and self.error == 0:
            self._fail(6)
        self._answer(msg, b"", error=not ok)

    def _read(self, cmd: int, data: bytes) -> bytes | None:
        if cmd == dp.CMD_ERROR_CODE:
            code, self.error = self.error, 0
            return bytes([code])
        if cmd == dp.CMD_ERROR_TEXT:
            return dp.ERROR_CODES.get(self.error, "undefined").encode().ljust(128, b"\0")
        if cmd == dp.CMD_FIRMWARE_VERSION:
            return (b"".join(v.to_bytes(4, "little") for v in (0x06000000, 0x06000000, 0, 0)))
        if cmd == dp.CMD_HW_STATUS:
            return bytes([self.hw_status])
        if cmd == dp.CMD_SYSTEM_STATUS:
            return b"\x01"
        if cmd == dp.CMD_MAIN_STATUS:
            return bytes([dp.MAIN_SEQ_RUNNING if self.running else dp.MAIN_PARKED])
        if cmd == dp.CMD_DISPLAY_MODE:
            return bytes([self.mode])
        if cmd == dp.CMD_LUT_CONFIG:
            return dp.lut_config(max(self.lut_entries, 1), self.repeat)
        if cmd in (dp.CMD_TRIGGER_OUT1, dp.CMD_TRIGGER_OUT2):
            return self.trigger_out[1 if cmd == dp.CMD_TRIGGER_OUT1 else 2]
        if cmd == dp.CMD_TRIGGER_IN1:
            return self.trigger_in1
        return None

    def _write(self, cmd: int, data: bytes) -> bool:
        if cmd == dp.CMD_DISPLAY_MODE and len(data) == 1 and data[0] <= 3:
            if self.running:
                self._fail(5)
                return False
            self.mode = data[0]
            return True
        if cmd == dp.CMD_PATTERN_START_STOP and len(data) == 1 and data[0] <= 2:
            return self._start_stop(data[0])
        uploads = (dp.CMD_BMP_INIT, dp.CMD_BMP_DATA, dp.CMD_BMP_INIT_SLAVE, dp.CMD_BMP_DATA_SLAVE)
        if self.running and cmd in (dp.CMD_LUT_DEFINE, dp.CMD_LUT_CONFIG, dp.CMD_TRIGGER_OUT1,
                                    dp.CMD_TRIGGER_OUT2, dp.CMD_TRIGGER_IN1, *uploads):
            self._fail(5)  # stop the sequence first
            return False
        if cmd == dp.CMD_LUT_DEFINE and len(data) == 12:
            if self.mode != dp.MODE_ON_THE_FLY:
                self._fail(5)
                return False
            e = dp.LutEntry.from_bytes(data)
            if e.bit_depth == 1 and not dp.MIN_EXPOSURE_US <= e.exposure_us <= dp.MAX_TIME_US:
                self._fail(14)
                return False
            if e.index >= dp.MAX_LUT_ENTRIES:
                self._fail(15)
                return False
            self.lut[e.index] = e
            return True
        if cmd == dp.CMD_LUT_CONFIG and len(data) == 6:
            n = int.from_bytes(data[0:2], "little") & 0x7FF
            if not 1 <= n <= dp.MAX_LUT_ENTRIES:
                self._fail(15)
                return False
            self.lut_entries, self.repeat = n, int.from_bytes(data[2:6], "little")
            return True
        if cmd in uploads:
            ctrl = 1 if cmd in (dp.CMD_BMP_INIT_SLAVE, dp.CMD_BMP_DATA_SLAVE) else 0
            if ctrl and not self.dual:
                self._fail(7)  # no slave controller
                return False
            if cmd in (dp.CMD_BMP_INIT, dp.CMD_BMP_INIT_SLAVE):
                return self._bmp_init(ctrl, data)
            return self._bmp_data(ctrl, data)
        if cmd in (dp.CMD_TRIGGER_OUT1, dp.CMD_TRIGGER_OUT2) and len(data) == 5:
            self.trigger_out[1 if cmd == dp.CMD_TRIGGER_OUT1 else 2] = bytes(data)
            return True
        if cmd == dp.CMD_TRIGGER_IN1 and len(data) == 3:
            if data[2] > 1:  # byte 2: 0 rising, 1 falling edge
                self._fail(6)
                return False
            self.trigger_in1 = bytes(data)
            return True
        self._fail(3)
        return False

    def _bmp_init(self, ctrl: int, data: bytes) -> bool:
        if len(data) != 6:
            return False
        index = int.from_bytes(data[0:2], "little") & 0x1F
        size = int.from_bytes(data[2:6], "little")
        if index >= dp.MAX_IMAGES or self.mode != dp.MODE_ON_THE_FLY:
            self._fail(17 if index >= dp.MAX_IMAGES else 5)
            return False
        self._uploads[ctrl] = (index, size, bytearray())
        return True

    def _bmp_data(self, ctrl: int, data: bytes) -> bool:
        upload = self._uploads[ctrl]
        n = int.from_bytes(data[0:2], "little") & 0x3FF if len(data) >= 2 else -1
        if upload is None or n != len(data) - 2 or n > dp.BMP_CHUNK:
            self._fail(6)
            return False
        index, size, buf = upload
        buf += data[2:]
        if len(buf) < size:
            return True
        self._uploads[ctrl] = None
        try:
            img = dp.parse_splash(bytes(buf))
        except Exception:
            self._fail(9)
            return False
        rows, cols = self.dmd_shape
        if img.shape[:2] != (rows, cols // 2 if self.dual else cols):
            self._fail(16)
            return False
        self._halves[ctrl][index] = img
        halves = [self._halves[c].get(index) for c in ((0, 1) if self.dual else (0,))]
        if all(x is not None for x in halves):
            self.images[index] = np.concatenate(halves, axis=1)
        return True

    # -- playing ----------------------------------------------------------------------------
    def _start_stop(self, what: int) -> bool:
        if what != dp.START:
            self.running = self.waiting_trigger = False
            return True
        entries = [self.lut.get(i) for i in range(self.lut_entries)]
        if self.mode != dp.MODE_ON_THE_FLY or not entries or None in entries:
            self._fail(16)
            return False
        if any(e.image not in self.images for e in entries):
            self._fail(7)
            return False
        if entries[0] is not None and entries[0].wait_trigger:  # TRIG_IN_1 starts each pass
            self.running = self.waiting_trigger = True
            return True
        if self.repeat != 1:  # repeating forever: the rig uses one pass per trigger
            self.running = True
            return True
        self._play([e for e in entries if e is not None])
        return True

    def trigger_in(self, falling: bool = False) -> bool:
        """An edge on TRIG_IN_1 (rising unless ``falling``); returns whether it started a pass.

        Only a running sequence whose first pattern waits for the trigger reacts, and only to
        the edge Trigger In 1 selects.
        """
        with self._lock:
            if self.unplugged or not (self.running and self.waiting_trigger):
                return False
            if bool(self.trigger_in1[2] & 1) != bool(falling):
                return False
            delay_us = self.trigger_in1[0] | (self.trigger_in1[1] << 8)
            self._play([self.lut[i] for i in range(self.lut_entries)], delay_us)
            if self.repeat == 1:
                self.running = self.waiting_trigger = False
            return True

    def _play(self, entries: list[dp.LutEntry], delay_us: int = 0) -> None:
        planes = np.stack([dp.unpack_plane(self.images[e.image], e.bit) for e in entries])
        chip_us = entries[0].exposure_us + entries[0].dark_us
        uniform = np.all(planes.reshape(len(planes), -1).all(axis=1)
                         | ~planes.reshape(len(planes), -1).any(axis=1))
        bits = tuple(int(p.all()) for p in planes)
        if uniform and any(bits):  # a global code (all dark: masks of zeros below)
            code = ShutterCode(bits, float(chip_us), name="dmd")
            masks = None
        else:
            code = ShutterCode((1,) * len(planes), float(chip_us), name="dmd-masks")
            masks = warp_masks(planes, self.dmd_to_camera, self.sensor_shape)
        index = self.played
        self.played += 1
        t0 = self.clock.reserve((delay_us + code.period_us) * 1e-6 + self.gap_s) + delay_us * 1e-6
        if entries[0].trigger_out2:
            self._emit(TriggerEvent(index, code, t0, masks=masks))


def make_sim_dlpc900_rig(width: int = 256, height: int = 256, seed: int = 0, scene=None,
                         dmd_shape: tuple[int, int] | None = None,
                         dmd_to_camera: np.ndarray | None = None, **camera_kw):
    """A simulated camera triggered by the real DMD driver (:class:`~hw.dmd_shutter.Dlpc900Shutter`)
    talking to a :class:`SimDlpc900` (default: one mirror per sensor pixel).

    Returns ``(camera, shutter)``, neither opened.
    """
    from hw.dmd_shutter import Dlpc900Shutter
    from hw.sim.camera import SimCamera
    from hw.sim.scene import SimScene

    dmd_shape = dmd_shape or (height, width)
    sim = SimDlpc900(dmd_shape, (height, width), dmd_to_camera)
    shutter = Dlpc900Shutter(lambda: sim, dmd_shape, port="sim://dlpc900")
    shutter.dmd_to_camera = sim.dmd_to_camera
    scene = scene if scene is not None else SimScene.default(width, height, seed=seed)
    camera = SimCamera(scene, sim, sensor_width=width, sensor_height=height, seed=seed,
                       **camera_kw)
    return camera, shutter
