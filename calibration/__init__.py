"""blurvid-rig: calibration."""
