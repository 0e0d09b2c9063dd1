"""blurvid-rig: hw."""
