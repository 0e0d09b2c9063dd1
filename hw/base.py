"""Abstract devices: :class:`Camera` and :class:`Shutter`.

Public methods check the device state, then call a ``_do_*`` hook; implementations override only
the hooks. Every device is a context manager (``with SimCamera() as cam: ...``). Every wait takes
a timeout.
"""

from __future__ import annotations

import abc
import threading
from typing import Any

from hw.errors import IncompatibleStateError, UnsupportedFeatureError
from hw.types import CameraInfo, CameraSettings, Frame, ShutterCode, ShutterInfo, ShutterStatus


class Device(abc.ABC):
    """Open/close lifetime shared by every device."""

    def __init__(self) -> None:
        self._open = False
        self._lock = threading.RLock()

    @property
    def is_open(self) -> bool:
        return self._open

    def open(self) -> None:
        with self._lock:
            if self._open:
                return
            self._do_open()
            self._open = True

    def close(self) -> None:
        with self._lock:
            if not self._open:
                return
            try:
                self._do_close()
            finally:
                self._open = False

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _require_open(self, what: str) -> None:
        if not self._open:
            raise IncompatibleStateError(
                f"Cannot {what}: {type(self).__name__} is not open. "
                "Open it first (use it in a `with` block)."
            )

    @abc.abstractmethod
    def _do_open(self) -> None: ...

    @abc.abstractmethod
    def _do_close(self) -> None: ...


class Camera(Device):
    """A camera that returns :class:`Frame` objects.

    States: closed -> open (idle) -> acquiring. Settings can change only while idle.
    """

    def __init__(self) -> None:
        super().__init__()
        self._acquiring = False

    # -- identity and settings -------------------------------------------------------------------
    @property
    def info(self) -> CameraInfo:
        self._require_open("read the camera info")
        return self._do_info()

    @property
    def settings(self) -> CameraSettings:
        self._require_open("read the camera settings")
        return self._do_get_settings()

    def apply_settings(self, settings: CameraSettings) -> CameraSettings:
        """Apply settings while idle; returns the settings the camera actually holds afterwards."""
        self._require_open("change settings")
        if self._acquiring:
            raise IncompatibleStateError(
                "Cannot change camera settings while acquiring; stop acquisition first."
            )
        return self._do_apply_settings(settings)

    def node_map_snapshot(self) -> dict[str, Any]:
        """Every readable feature of the camera as name -> value (recorded in each capture file)."""
        self._require_open("read the node map")
        return self._do_node_map_snapshot()

    # -- acquisition -----------------------------------------------------------------------------
    @property
    def is_acquiring(self) -> bool:
        return self._acquiring

    def start(self) -> None:
        with self._lock:
            self._require_open("start acquisition")
            if self._acquiring:
                return
            self._do_start()
            self._acquiring = True

    def stop(self) -> None:
        with self._lock:
            if not self._acquiring:
                return
            try:
                self._do_stop()
            finally:
                self._acquiring = False

    def fetch(self, timeout_s: float) -> Frame:
        """Wait at most ``timeout_s`` for the next frame.

        Raises:
            IncompatibleStateError: not acquiring.
            AcquisitionTimeout: no frame within ``timeout_s`` (says what was waited for).
            DeviceDisconnected: the camera went away.
        """
        if not self._acquiring:
            raise IncompatibleStateError(
                "Cannot fetch a frame: the camera is not acquiring; call start()."
            )
        if not timeout_s > 0:
            raise ValueError(
                f"timeout_s must be > 0, got {timeout_s!r}; waits without a timeout can hang."
            )
        return self._do_fetch(timeout_s)

    def software_trigger(self) -> None:
        if not self._acquiring:
            raise IncompatibleStateError(
                "Cannot trigger: the camera is not acquiring; call start()."
            )
        s = self.settings
        if s.trigger_mode != "On" or s.trigger_source != "Software":
            raise IncompatibleStateError(
                "A software trigger needs trigger_mode='On' and trigger_source='Software'; "
                f"the camera has trigger_mode={s.trigger_mode!r}, "
                f"trigger_source={s.trigger_source!r}."
            )
        self._do_software_trigger()

    def close(self) -> None:
        self.stop()
        super().close()

    # -- hooks -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def _do_info(self) -> CameraInfo: ...

    @abc.abstractmethod
    def _do_get_settings(self) -> CameraSettings: ...

    @abc.abstractmethod
    def _do_apply_settings(self, settings: CameraSettings) -> CameraSettings: ...

    @abc.abstractmethod
    def _do_node_map_snapshot(self) -> dict[str, Any]: ...

    @abc.abstractmethod
    def _do_start(self) -> None: ...

    @abc.abstractmethod
    def _do_stop(self) -> None: ...

    @abc.abstractmethod
    def _do_fetch(self, timeout_s: float) -> Frame: ...

    def _do_software_trigger(self) -> None:
        raise UnsupportedFeatureError(f"{type(self).__name__} has no software trigger.")


class Shutter(Device):
    """A shutter controller that plays a :class:`ShutterCode` chip by chip and triggers the camera.

    States: idle (no code) -> loaded (code verified by echo) -> armed (waits for ``fire()`` or an
    external trigger). ``load_code`` verifies the controller's echo of hash and timing and raises
    ``ProtocolError`` on a mismatch, so a wrong code never records.
    """

    def __init__(self) -> None:
        super().__init__()
        self._code: ShutterCode | None = None
        self._armed = False

    @property
    def info(self) -> ShutterInfo:
        self._require_open("read the shutter info")
        return self._do_info()

    @property
    def code(self) -> ShutterCode | None:
        return self._code

    @property
    def is_armed(self) -> bool:
        return self._armed

    def load_code(self, code: ShutterCode) -> ShutterStatus:
        with self._lock:
            self._require_open("load a code")
            if self._armed:
                raise IncompatibleStateError(
                    "Cannot load a code while armed; disarm the shutter first."
                )
            info = self._do_info()
            if not info.chip_us_min <= code.chip_us <= info.chip_us_max:
                raise UnsupportedFeatureError(
                    f"{info.controller} shutter supports chips of "
                    f"{info.chip_us_min:g}..{info.chip_us_max:g} us; "
                    f"the code asks for {code.chip_us:g} us."
                )
            if code.n_chips > info.max_chips:
                raise UnsupportedFeatureError(
                    f"{info.controller} shutter holds at most {info.max_chips} chips; "
                    f"the code has {code.n_chips}."
                )
            # Forget the previous code first: if this load fails (e.g. the echo does not match), the
            # controller's content is unknown, so arm() must refuse until a load succeeds.
            self._code = None
            status = self._do_load_code(code)
            self._code = code
            return status

    def arm(self) -> None:
        with self._lock:
            self._require_open("arm")
            if self._code is None:
                raise IncompatibleStateError(
                    "Cannot arm: no code is loaded; call load_code() first."
                )
            self._do_arm()
            self._armed = True

    def disarm(self) -> None:
        with self._lock:
            if not self._armed:
                return
            try:
                self._do_disarm()
            finally:
                self._armed = False

    def fire(self) -> int:
        """Play the loaded code once and raise the camera trigger; returns the trigger index."""
        with self._lock:
            if not self._armed:
                raise IncompatibleStateError(
                    "Cannot fire: the shutter is not armed; call arm() first."
                )
            return self._do_fire()

    def status(self) -> ShutterStatus:
        self._require_open("read the shutter status")
        return self._do_status()

    def close(self) -> None:
        self.disarm()
        super().close()

    @abc.abstractmethod
    def _do_info(self) -> ShutterInfo: ...

    @abc.abstractmethod
    def _do_load_code(self, code: ShutterCode) -> ShutterStatus: ...

    @abc.abstractmethod
    def _do_arm(self) -> None: ...

    @abc.abstractmethod
    def _do_disarm(self) -> None: ...

    @abc.abstractmethod
    def _do_fire(self) -> int: ...

    @abc.abstractmethod
    def _do_status(self) -> ShutterStatus: ...
