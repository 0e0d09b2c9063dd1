"""The one error tree of blurvid-rig.

Every error a user can see is a :class:`RigError` whose message is a sentence that says what
failed and what to do about it. Errors from libraries are chained (``raise X from e``), never
swallowed.

::

    RigError
    └── DeviceError
        ├── IncompatibleStateError   a method was called in a state that does not allow it
        ├── InitialiseError          a device could not be found, opened or configured
        ├── UnsupportedFeatureError  the device cannot do what was asked
        ├── ProtocolError            a reply was malformed, or an echo did not match what was sent
        ├── AcquisitionTimeout       a wait (frame, reply, trigger) ran past its timeout
        └── DeviceDisconnected       the device went away mid-operation
    CodeError (also ValueError)      an exposure code or chip duration is invalid
"""

from __future__ import annotations


class RigError(Exception):
    """Base of every error raised by blurvid-rig."""


class DeviceError(RigError):
    """A device failed or refused an operation."""


class IncompatibleStateError(DeviceError):
    """A method was called in a device state that does not allow it (e.g. ``fire()`` while
    disarmed)."""


class InitialiseError(DeviceError):
    """A device could not be found, opened or configured."""


class UnsupportedFeatureError(DeviceError):
    """The device does not support the requested feature or value."""


class ProtocolError(DeviceError):
    """A reply from a device was malformed, or an echo did not match what was sent."""


class AcquisitionTimeout(DeviceError):
    """A wait for a frame, a reply or a trigger ran past its timeout."""


class DeviceDisconnected(DeviceError):
    """The device went away (unplugged, powered off, cable fault) during an operation."""


class CodeError(RigError, ValueError):
    """An exposure code or its chip timing is invalid."""
