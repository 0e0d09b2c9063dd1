"""blurvid-rig: recon."""
