"""The camera and the shutter controller of a rig, made from plain choices.

:func:`make_devices` is the one place that turns "which camera, which shutter controller, how to
reach them" into device objects. Callers do not use it directly: they describe the rig with a
:class:`blurvid_rig.config.DeviceSpec` and open it with :func:`blurvid_rig.config.open_devices`,
which passes the spec's fields here. This module imports no other module of ``blurvid_rig``.

The devices come back unopened (``open_devices`` opens them); only the simulated AVR of
``shutter="simavr"`` is started here, and it lives as long as the ``stack`` given.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from hw.base import Camera, Shutter
from hw.errors import RigError

__all__ = ["make_devices"]


def make_devices(
    stack: contextlib.ExitStack,
    *,
    camera: str = "sim",
    shutter: str = "sim",
    cti: str | None = None,
    serial: str | None = None,
    index: int | None = None,
    port: str | None = None,
    firmware: str | None = None,
    width: int = 512,
    height: int = 512,
    seed: int = 0,
) -> tuple[Camera, Shutter]:
    """The (unopened) camera and shutter controller of a rig.

    Args:
        stack: owns what must outlive this call (the simulated AVR of ``shutter="simavr"``).
        camera: ``"sim"`` (the simulated camera) or ``"genicam"``.
        shutter: ``"sim"``, ``"arduino"`` (on ``port``), ``"simavr"`` (the real firmware in a
            simulated ATmega328P) or ``"dmd"`` (a DLPC900; simulated with the simulated camera).
        cti: GenTL producer(s) of a GenICam camera; empty: the environment's.
        serial: serial number of the GenICam camera; else ``index`` (default 0) picks it.
        index: index of the GenICam camera when no ``serial`` is given.
        port: serial port of the Arduino controller.
        firmware: firmware ``.elf`` for ``"simavr"``; empty: the one built in this checkout.
        width: sensor width of the simulated camera.
        height: sensor height of the simulated camera.
        seed: seed of the simulated scene and noise.

    Returns:
        ``(camera, shutter)``. With the simulated camera and a real controller, ``shutter`` is a
        simulated trigger wire in front of the controller, which triggers the camera after each
        playback.

    Raises:
        RigError: a combination that cannot work, or a missing port or firmware (the sentence says
            what to give).
    """
    if camera == "sim":
        return _sim_camera_and_shutter(stack, shutter, port, firmware, width, height, seed)
    from hw.genicam_camera import GenICamCamera

    if shutter == "sim":
        raise RigError(
            "A GenICam camera needs a real shutter controller: --shutter arduino --port PORT, "
            "--shutter dmd (a DLPC900 on USB), or --shutter simavr to test with the firmware in "
            "simavr."
        )
    cam_index = None if serial else (index if index is not None else 0)
    cam = GenICamCamera(serial=serial or None, index=cam_index, cti=cti or None)
    if shutter == "dmd":
        from hw.dmd_shutter import Dlpc900Shutter

        return cam, Dlpc900Shutter()
    return cam, _controller(stack, shutter, port, firmware)


def _controller(
    stack: contextlib.ExitStack, shutter: str, port: str | None, firmware: str | None
) -> Shutter:
    """The Arduino controller on ``port``, or the real firmware in simavr."""
    from hw.arduino_shutter import ArduinoShutter

    if shutter == "arduino":
        if not port:
            raise RigError(
                "--shutter arduino needs the controller's serial port: --port /dev/ttyACM0 (list "
                "the ports with `blurvid-rig ports`)."
            )
        return ArduinoShutter(port)
    from hw.sim.avr import REPO_ROOT, SimulatedArduino

    elf = Path(firmware) if firmware else REPO_ROOT / "firmware/build/blurvid_shutter.elf"
    if not elf.is_file():
        raise RigError(
            f"The shutter firmware {elf} is not built: run `make -C firmware all sim` "
            "(needs gcc-avr, avr-libc, arduino-core-avr, libsimavr-dev, libelf-dev)."
        )
    board = stack.enter_context(SimulatedArduino(elf))
    return ArduinoShutter(board.port)


def _sim_camera_and_shutter(
    stack: contextlib.ExitStack,
    shutter: str,
    port: str | None,
    firmware: str | None,
    width: int,
    height: int,
    seed: int,
) -> tuple[Camera, Shutter]:
    """The simulated camera and the shutter controller asked for with ``shutter``.

    ``sim``: the simulated controller. ``arduino``: the controller on ``port``. ``simavr``: the
    real firmware in a simulated ATmega328P (started here, stopped with ``stack``). With a real
    controller the simulated camera is triggered through a simulated wire after each playback.
    """
    from hw.sim import SimCamera, SimScene, SimTriggerWire, make_sim_rig

    if shutter == "sim":
        return make_sim_rig(width=width, height=height, seed=seed)
    if shutter == "dmd":  # the real DLPC900 driver, talking to a simulated controller
        from hw.sim.dlpc900 import make_sim_dlpc900_rig

        return make_sim_dlpc900_rig(width, height, seed=seed)
    wire = SimTriggerWire(_controller(stack, shutter, port, firmware))
    scene = SimScene.default(width, height, seed=seed)
    cam = SimCamera(scene, wire, sensor_width=width, sensor_height=height, seed=seed)
    return cam, wire
