"""blurvid-rig: blurvid_rig."""
