"""blurvid-rig's HDF5 files: captures and reconstructions (layout: ``docs/FORMAT.md``).

Each name is imported from the module that defines it; this package re-exports nothing. From the
bottom up (a module imports only those listed before it):

- :mod:`~blurvid_rig.files.h5io`: generic HDF5 I/O: errors, schema version, units, fields,
  settings trees, safe opening of crashed files, schema checks.
- :mod:`~blurvid_rig.files.swmr`: :class:`~blurvid_rig.files.swmr.SwmrWriter`, the lifecycle every
  writer shares (``.partial`` in SWMR mode, flush cadence, finish or abort, rename).
- :mod:`~blurvid_rig.files.instrument`: a capture's instrument group (camera, shutter, code,
  frame_log columns) as NeXus fields, written and read.
- :mod:`~blurvid_rig.files.capture` (``CaptureFile``) and
  :mod:`~blurvid_rig.files.capture_writer` (``CaptureWriter``, ``make_capture_path``).
- :mod:`~blurvid_rig.files.reconstruction` (``ReconFile``, ``recon_path_for``) and
  :mod:`~blurvid_rig.files.reconstruction_writer` (``ReconWriter``, ``write_recon``).
- :mod:`~blurvid_rig.files.describe`: ``describe_file``, the ``blurvid-rig info`` summary.
"""
