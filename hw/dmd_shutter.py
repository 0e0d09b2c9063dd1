"""DMD shutter on a TI DLPC900 (DLP LightCrafter 6500 / 9000) over USB HID (``hidapi``).

The DMD is used in pattern-on-the-fly mode with 1-bit patterns, one per chip, each shown for
the chip duration (exposure = chip, dark time 0):

* **global mode** (:meth:`Dlpc900Shutter.load_code`): the flutter code as all-on / all-off
  patterns (two bit planes of one uploaded image);
* **per-pixel mode** (:meth:`Dlpc900Shutter.load_masks`): a stack of binary masks ``M[k, y, x]``,
  24 per uploaded image.

The LUT is configured to play once per start (repeat count 1); :meth:`fire` starts it, and the
DMD's **Trigger Out 2**, enabled on the first pattern only, triggers the camera, whose exposure
must cover the whole sequence (timed exposure >= the code period). Commands and bytes:
``docs/dlpc900_protocol.md`` and :mod:`hw.dlpc900_protocol`.

**External start** (``start_source="external"``, or :meth:`Dlpc900Shutter.set_start_source`):
the first pattern waits for an edge on the DMD's TRIG_IN_1 (Trigger In 1, 0x1A35, sets its delay
and edge), the LUT repeats forever, and :meth:`arm` starts the sequence so that every edge plays
the code once while armed; :meth:`fire` is then refused, since the external line leads. The
DLPC900 has no counter of external starts, so ``trigger_count`` counts host fires only.

Verification: the controller cannot echo the patterns back. After loading, the driver reads back
the display mode and the LUT configuration (entry count and repeat), the Read Error Code (0 =
every command was accepted) and the hardware status (no sequencer error); ``echo_verified`` is
true only when all of them match. Any refused command raises :class:`~hw.errors.ProtocolError`
with the controller's own error text.

The simulated twin is :class:`hw.sim.dlpc900.SimDlpc900` (it parses these bytes).
"""

from __future__ import annotations

import dataclasses
import struct
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from hw import dlpc900_protocol as dp
from hw.base import Shutter
from hw.errors import (
    DeviceDisconnected,
    IncompatibleStateError,
    InitialiseError,
    ProtocolError,
    UnsupportedFeatureError,
)
from hw.types import ShutterCode, ShutterInfo, ShutterStatus, check_dmd_masks, masks_sha256


class HidTransport(Protocol):
    """What the driver needs of a HID device (``hid.device`` of hidapi has these methods)."""

    def write(self, report: bytes) -> int: ...

    def read(self, size: int, timeout_ms: int = 0) -> bytes: ...

    def close(self) -> None: ...


def hidapi_transport(path: bytes | None = None) -> Callable[[], HidTransport]:
    """A factory opening the DLPC900 through hidapi (the first one, or the one at ``path``)."""

    def open_device() -> HidTransport:
        try:
            import hid
        except ImportError as e:  # pragma: no cover - hidapi is a dependency
            raise InitialiseError("The DMD driver needs hidapi: pip install hidapi") from e
        dev = hid.device()
        try:
            if path is not None:
                dev.open_path(path)
            else:
                dev.open(dp.VID, dp.PID)
        except OSError as e:
            raise InitialiseError(
                f"No DLPC900 found (USB {dp.VID:04x}:{dp.PID:04x}): {e}. Check the USB cable and "
                "power, and that your user may open it (a udev rule for hidraw)."
            ) from e
        return dev

    return open_device


def find_dlpc900() -> list[dict]:
    """The DLPC900 controllers hidapi sees (dicts with ``path``, ``serial_number``...)."""
    try:
        import hid
    except ImportError:  # pragma: no cover
        return []
    return list(hid.enumerate(dp.VID, dp.PID))


class Dlpc900Shutter(Shutter):
    """A DLPC900-driven DMD as shutter (see the module docstring).

    Args:
        transport: opens the HID device (default: hidapi, the first DLPC900).
        dmd_shape: mirrors ``(rows, columns)`` of the DMD (DLP6500: 1080 x 1920).
        timeout_s: how long to wait for each reply.
        dual: two controllers, each driving half of the DMD (DLP9000); default: a DMD 2560
            mirrors wide.
        start_source: ``"host"`` (:meth:`fire`) or ``"external"`` (an edge on TRIG_IN_1).
        trigger_in_delay_us: external start: from the edge to the first pattern, 0..65535 us.
        trigger_in_falling: external start on the falling edge instead of the rising one.
    """

    def __init__(
        self,
        transport: Callable[[], HidTransport] | None = None,
        dmd_shape: tuple[int, int] = (1080, 1920),
        *,
        timeout_s: float = 1.0,
        port: str = "usb:0451:c900",
        dual: bool | None = None,
        start_source: str = "host",
        trigger_in_delay_us: int = 0,
        trigger_in_falling: bool = False,
    ) -> None:
        super().__init__()
        self._trigger_in = self._check_start(start_source, trigger_in_delay_us,
                                             trigger_in_falling)
        self._factory = transport or hidapi_transport()
        self.dmd_shape = (int(dmd_shape[0]), int(dmd_shape[1]))
        self.dual = self.dmd_shape[1] == 2560 if dual is None else bool(dual)
        if self.dual and self.dmd_shape[1] % 2:
            raise ValueError(f"A two-controller DMD has an even width; got {self.dmd_shape}.")
        self.timeout_s = float(timeout_s)
        self._port = port
        self._dev: HidTransport | None = None
        self._io = threading.Lock()
        self._seq = 0
        self._firmware = ""
        self._masks: np.ndarray | None = None
        self._masks_sha = ""
        self._loaded: tuple[str, float, int] | None = None
        self._verified = False
        self._fired = 0
        self._last_upload: tuple[list[dp.LutEntry], np.ndarray, ShutterCode] | None = None

    # -- transport --------------------------------------------------------------------------
    def _send(self, cmd: int, data: bytes = b"", *, read: bool = False, reply: bool = True
              ) -> bytes:
        dev = self._dev
        if dev is None:
            raise DeviceDisconnected("The DMD controller is not open.")
        with self._io:
            self._seq = (self._seq + 1) & 0xFF
            msg = dp.message(cmd, data, read=read, reply=reply, seq=self._seq)
            try:
                for r in dp.reports(msg):
                    dev.write(b"\x00" + r)
                if not (read or reply):
                    return b""
                raw = dev.read(dp.REPORT_SIZE, int(self.timeout_s * 1000))
            except OSError as e:
                raise DeviceDisconnected(
                    f"The DMD controller stopped answering ({e}); check its USB cable and power, "
                    "then close and open it again."
                ) from e
            if not raw:
                raise ProtocolError(
                    f"The DMD controller did not answer command 0x{cmd:04X} within "
                    f"{self.timeout_s:g} s."
                )
            flags, seq, payload = dp.parse_reply(bytes(raw))
        if flags & dp.FLAG_ERROR:
            code = self._error_code()
            raise ProtocolError(
                f"The DMD controller refused command 0x{cmd:04X}: "
                f"{dp.ERROR_CODES.get(code, f'error {code}')} (code {code})."
            )
        if seq != self._seq:
            raise ProtocolError(f"The DMD controller answered sequence {seq}, not {self._seq}.")
        return payload

    def _error_code(self) -> int:
        try:
            data = self._send(dp.CMD_ERROR_CODE, read=True)
        except ProtocolError:
            return 255
        return data[0] if data else 0

    def _read(self, cmd: int) -> bytes:
        return self._send(cmd, read=True)

    # -- Shutter hooks ----------------------------------------------------------------------
    def _do_open(self) -> None:
        self._dev = self._factory()
        try:
            hw = self._read(dp.CMD_HW_STATUS)
            if not hw or not hw[0] & dp.HW_INIT_OK:
                raise InitialiseError(
                    "The DLPC900 reports that it did not initialise (hardware status bit 0 "
                    "clear); power-cycle the EVM."
                )
            if hw[0] & dp.HW_INCOMPATIBLE:
                raise InitialiseError("The DLPC900 reports an incompatible controller and DMD.")
            if self.dual and not hw[0] & dp.HW_SLAVE_PRESENT:
                raise InitialiseError(
                    "This DMD needs two DLPC900 controllers (DLP9000) but the slave controller "
                    "does not answer; check the EVM, or open it as a single-controller DMD.")
            fw = self._read(dp.CMD_FIRMWARE_VERSION)
            if len(fw) >= 4:
                v = struct.unpack_from("<I", fw, 0)[0]
                self._firmware = f"{v >> 24}.{(v >> 16) & 0xFF}.{v & 0xFFFF}"
            self._send(dp.CMD_PATTERN_START_STOP, bytes([dp.STOP]))
        except BaseException:
            self._close_device()
            raise
        self._loaded, self._verified, self._fired = None, False, 0

    def _close_device(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None:
            try:
                dev.close()
            except OSError:
                pass

    def _do_close(self) -> None:
        try:
            if self._dev is not None:
                self._send(dp.CMD_PATTERN_START_STOP, bytes([dp.STOP]))
        except (ProtocolError, DeviceDisconnected):
            pass
        finally:
            self._close_device()

    def _do_info(self) -> ShutterInfo:
        return ShutterInfo(
            controller="dmd",
            port=self._port,
            firmware_version=self._firmware,
            chip_us_min=float(dp.MIN_EXPOSURE_US),
            chip_us_max=float(dp.MAX_TIME_US),
            max_chips=dp.MAX_LUT_ENTRIES,
        )

    @staticmethod
    def _check_start(source: str, delay_us: int, falling: bool) -> tuple[str, int, bool]:
        if source not in ("host", "external"):
            raise ValueError(f"start_source is 'host' or 'external'; got {source!r}.")
        dp.trigger_in1(delay_us, falling)  # range check, with its sentence
        return source, int(delay_us), bool(falling)

    @property
    def start_source(self) -> str:
        """``"host"`` (:meth:`fire`) or ``"external"`` (an edge on the DMD's TRIG_IN_1)."""
        return self._trigger_in[0]

    def set_start_source(self, source: str, *, delay_us: int = 0,
                         falling_edge: bool = False) -> None:
        """Choose what starts a playback: ``"host"`` (:meth:`fire`) or ``"external"`` (an edge
        on TRIG_IN_1, ``delay_us`` before the first pattern). A sequence already loaded is
        uploaded again with the new setting.

        Raises:
            IncompatibleStateError: while armed (disarm first).
            ValueError: an unknown source or a delay outside 0..65535 us.
        """
        new = self._check_start(source, delay_us, falling_edge)
        with self._lock:
            if self._armed:
                raise IncompatibleStateError(
                    "Cannot change the start source while armed; disarm the DMD first.")
            self._trigger_in = new
            last = self._last_upload
            if self._dev is not None and last is not None and self._loaded is not None:
                self._upload(*last)

    @property
    def masks(self) -> np.ndarray | None:
        return self._masks

    @property
    def masks_sha256(self) -> str:
        return self._masks_sha

    def _do_load_code(self, code: ShutterCode) -> ShutterStatus:
        if code.chip_us != round(code.chip_us):
            raise UnsupportedFeatureError(
                f"The DMD times patterns in whole microseconds; {code.chip_us:g} us is not one."
            )
        h, w = self.dmd_shape
        planes = np.stack([np.ones((h, w), bool), np.zeros((h, w), bool)])
        entries = [
            dp.LutEntry(index=k, exposure_us=int(code.chip_us), image=0, bit=0 if b else 1,
                        trigger_out2=(k == 0))
            for k, b in enumerate(code.bits)
        ]
        self._masks, self._masks_sha = None, ""
        return self._upload(entries, planes, code)

    def load_masks(self, masks: np.ndarray, chip_us: float) -> ShutterStatus:
        """Per-pixel mode: one binary pattern per chip (``(K, rows, columns)`` of the DMD).

        Raises:
            ValueError: wrong shape or not binary.
            UnsupportedFeatureError: more than 400 patterns, or a chip below 105 us.
        """
        m = check_dmd_masks(masks, self.dmd_shape, dp.MAX_LUT_ENTRIES)
        code = ShutterCode((1,) * len(m), float(chip_us), name="dmd-masks")
        with self._lock:
            self._require_open("load masks")
            if self._armed:
                raise IncompatibleStateError("Cannot load masks while armed; disarm first.")
            if not dp.MIN_EXPOSURE_US <= chip_us <= dp.MAX_TIME_US or chip_us != round(chip_us):
                raise UnsupportedFeatureError(
                    f"DLPC900 patterns last whole microseconds from {dp.MIN_EXPOSURE_US} us; "
                    f"{chip_us:g} us was asked.")
            entries = [
                dp.LutEntry(index=k, exposure_us=int(chip_us), image=k // 24, bit=k % 24,
                            trigger_out2=(k == 0))
                for k in range(len(m))
            ]
            self._code = None
            planes = np.array(m, dtype=bool)  # our own copy: the record and the re-upload share it
            status = self._upload(entries, planes, code)
            self._code = code
            self._masks = planes
            self._masks_sha = masks_sha256(planes)
            return status

    def _upload(self, entries: list[dp.LutEntry], planes: np.ndarray,
                code: ShutterCode) -> ShutterStatus:
        self._loaded, self._verified, self._last_upload = None, False, None
        source, delay_us, falling = self._trigger_in
        external = source == "external"
        repeat = 0 if external else 1  # external: every edge plays it once, while armed
        entries = [dataclasses.replace(e, wait_trigger=external and e.index == 0)
                   for e in entries]
        self._send(dp.CMD_PATTERN_START_STOP, bytes([dp.STOP]))
        self._send(dp.CMD_DISPLAY_MODE, bytes([dp.MODE_ON_THE_FLY]))
        self._send(dp.CMD_TRIGGER_IN1, dp.trigger_in1(delay_us, falling))
        for e in entries:
            self._send(dp.CMD_LUT_DEFINE, e.to_bytes())
        self._send(dp.CMD_LUT_CONFIG, dp.lut_config(len(entries), repeat))
        images = dp.pack_planes(planes)
        half = self.dmd_shape[1] // 2
        for index in reversed(range(len(images))):  # the guide's order: last image first
            parts = ([(images[index][:, :half], dp.CMD_BMP_INIT, dp.CMD_BMP_DATA),
                      (images[index][:, half:], dp.CMD_BMP_INIT_SLAVE, dp.CMD_BMP_DATA_SLAVE)]
                     if self.dual else [(images[index], dp.CMD_BMP_INIT, dp.CMD_BMP_DATA)])
            for img, init, put in parts:  # a DLP9000: left half to the master, right to the slave
                blob = dp.splash(np.ascontiguousarray(img))
                self._send(init, dp.bmp_init(index, len(blob)))
                for chunk in dp.bmp_chunks(blob):
                    self._send(put, chunk, reply=False)
        # read back what can be read back
        mode = self._read(dp.CMD_DISPLAY_MODE)
        n, got_repeat = struct.unpack("<HI", self._read(dp.CMD_LUT_CONFIG)[:6])
        trig = dp.parse_trigger_in1(self._read(dp.CMD_TRIGGER_IN1))
        err = self._error_code()
        hw = self._read(dp.CMD_HW_STATUS)[0]
        ok = (mode[:1] == bytes([dp.MODE_ON_THE_FLY]) and (n & 0x7FF) == len(entries)
              and got_repeat == repeat and trig == (delay_us, falling) and err == 0
              and not hw & (dp.HW_SEQ_ERROR | dp.HW_SEQ_ABORT))
        if not ok:
            raise ProtocolError(
                f"The DMD controller did not confirm the sequence (mode {mode.hex()}, "
                f"{n & 0x7FF} of {len(entries)} patterns, repeat {got_repeat} for {repeat}, "
                f"Trigger In 1 {trig} for {(delay_us, falling)}, error "
                f"{dp.ERROR_CODES.get(err, err)}, hardware status 0x{hw:02x}); load it again."
            )
        self._loaded = (code.sha256, code.chip_us, code.n_chips)
        self._verified = True
        self._last_upload = (entries, planes, code)
        return self._status_now(running=False)

    def _do_arm(self) -> None:
        if self._loaded is None:
            raise ProtocolError("The DMD holds no confirmed sequence; load the code again.")
        if self.start_source == "external":  # ready: the first pattern waits for TRIG_IN_1
            self._send(dp.CMD_PATTERN_START_STOP, bytes([dp.START]))
            main = self._read(dp.CMD_MAIN_STATUS)
            if not main or not main[0] & dp.MAIN_SEQ_RUNNING:
                self._send(dp.CMD_PATTERN_START_STOP, bytes([dp.STOP]))
                raise ProtocolError(
                    "The DMD controller did not start its sequence to wait for TRIG_IN_1 "
                    f"(main status 0x{main[0] if main else 0:02x}); load the code again.")

    def _do_disarm(self) -> None:
        if self._dev is not None:
            try:
                self._send(dp.CMD_PATTERN_START_STOP, bytes([dp.STOP]))
            except (ProtocolError, DeviceDisconnected):
                pass

    def _do_fire(self) -> int:
        if self.start_source == "external":
            raise IncompatibleStateError(
                "The DMD starts on its TRIG_IN_1 line (start_source 'external'), so fire() is "
                "refused; pulse that line, or set_start_source('host') to fire from here.")
        self._send(dp.CMD_PATTERN_START_STOP, bytes([dp.START]))
        index = self._fired
        self._fired += 1
        return index

    def _status_now(self, running: bool) -> ShutterStatus:
        loaded = self._loaded
        if self.start_source == "external" and self._armed:
            running = False  # the sequencer runs while it waits for TRIG_IN_1: armed
        state = "playing" if running else (
            "armed" if self._armed else "loaded" if loaded else "idle")
        return ShutterStatus(
            state=state,
            code_sha256=loaded[0] if loaded else "",
            n_chips=loaded[2] if loaded else 0,
            chip_us=loaded[1] if loaded else 0.0,
            trigger_count=self._fired,
            echo_verified=self._verified and loaded is not None,
        )

    def _do_status(self) -> ShutterStatus:
        main = self._read(dp.CMD_MAIN_STATUS)
        return self._status_now(running=bool(main and main[0] & dp.MAIN_SEQ_RUNNING))

