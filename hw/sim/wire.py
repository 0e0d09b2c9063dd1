"""A simulated trigger wire from any shutter controller to the simulated camera.

On a bench the controller's CAM_TRIG output is wired to the camera's Line1. When the controller is
real (an Arduino on a USB port, or the real firmware running in simavr) but the camera is
simulated, :class:`SimTriggerWire` stands in for that wire: it is a :class:`~hw.base.Shutter` that
passes every call to the controller and, each time a playback has been fired, raises the simulated
camera's Line1 with the code the controller verified and the trigger index it reported.

Example::

    board = ArduinoShutter("/dev/ttyACM0")
    wire = SimTriggerWire(board)
    camera = SimCamera(SimScene.default(256, 256), wire)   # the camera listens on the wire
    with camera, wire:
        wire.load_code(ShutterCode.parse("11100101", 1000)); wire.arm()
        index = wire.fire()          # the controller plays the code; the camera renders it
"""

from __future__ import annotations

from hw.base import Shutter
from hw.sim.shutter import SimClock, TriggerEvent, TriggerOutput
from hw.types import ShutterCode, ShutterInfo, ShutterStatus


class SimTriggerWire(TriggerOutput, Shutter):
    """A shutter controller whose camera trigger output drives simulated cameras.

    Args:
        controller: the real controller driver (not opened yet; the wire opens and closes it).
        clock: the simulated clock the cameras share (a new one when None).
        gap_s: simulated time between the end of one code and the next trigger.
    """

    def __init__(
        self, controller: Shutter, *, clock: SimClock | None = None, gap_s: float = 0.002
    ) -> None:
        super().__init__()
        self.controller = controller
        self._clock = clock if clock is not None else SimClock()
        self.gap_s = float(gap_s)

    @property
    def clock(self) -> SimClock:
        return self._clock

    # -- hooks: the controller does the work ---------------------------------------------------
    def _do_open(self) -> None:
        self.controller.open()

    def _do_close(self) -> None:
        self.controller.close()

    def _do_info(self) -> ShutterInfo:
        return self.controller.info

    def _do_load_code(self, code: ShutterCode) -> ShutterStatus:
        return self.controller.load_code(code)

    def _do_arm(self) -> None:
        self.controller.arm()

    def _do_disarm(self) -> None:
        self.controller.disarm()

    def _do_fire(self) -> int:
        index = self.controller.fire()
        code = self.controller.code
        assert code is not None  # fire() needs an armed controller, arming needs a code
        event = TriggerEvent(index, code, self._clock.reserve(code.period_us * 1e-6 + self.gap_s))
        self._emit(event)
        return index

    def _do_status(self) -> ShutterStatus:
        return self.controller.status()
