"""Simulated twins of the rig's devices: a moving scene, a camera rendering coded blur, a shutter.

>>> from hw.sim import make_sim_rig
>>> cam, sh = make_sim_rig(width=64, height=48)
>>> cam.scene.shape
(48, 64)
"""

from hw.sim.camera import SimCamera, SimFaults, SimGroundTruth, SimSensor, make_sim_rig
from hw.sim.replay import ReplayCamera
from hw.sim.scene import Motion, SimScene, Sprite
from hw.sim.shutter import SimClock, SimShutter, TriggerEvent
from hw.sim.wire import SimTriggerWire

__all__ = [
    "Motion",
    "ReplayCamera",
    "SimCamera",
    "SimClock",
    "SimFaults",
    "SimGroundTruth",
    "SimScene",
    "SimSensor",
    "SimShutter",
    "SimTriggerWire",
    "Sprite",
    "TriggerEvent",
    "make_sim_rig",
]
