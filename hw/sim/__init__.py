"""blurvid-rig: hw/sim."""
