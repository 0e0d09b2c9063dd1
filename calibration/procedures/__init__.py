"""Calibration procedures: Qt-free generators that take frames, yield progress, return a result.

Each procedure is a generator function: iterate it (or hand it to
:func:`~calibration.procedures.base.run`) and it yields
:class:`~calibration.procedures.base.Progress` while it works and returns its result
(``StopIteration.value``); closing it (``gen.close()``, which ``run`` does on cancel) stops it
between frames, and the camera and shutter are put back as they were. They drive the devices
directly through the :class:`~hw.base` contracts, so the same code calibrates the simulated rig
and a real one:

* the camera is triggered by the shutter controller on Line1 and exposes for a timed window from
  the trigger (``exposure_mode='Timed'``);
* the shutter plays an all-open code covering that window (so an LC shutter is open), or the test
  codes of the timing procedure;
* what is in front of the camera comes from a :class:`~calibration.bench.Bench`.

One module per job (this package re-exports nothing):

==================  ===============================================================================
``base``            :class:`Rig`, :class:`Progress`, :func:`run`, the errors, the frame session
``sensor``          :func:`dark_frames`, :func:`flat_field`, :func:`photon_transfer`
``shutter_timing``  :func:`shutter_timing` and the fit of the shutter model
``geometry``        :func:`geometry` (checkerboard views)
``dmd_mapping``     :func:`dmd_mapping`, :class:`DmdProjector`
``plan``            :class:`Plan` and :func:`calibrate_all`, which runs the planned steps in order
==================  ===============================================================================
"""
