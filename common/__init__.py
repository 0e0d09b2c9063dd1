"""blurvid-rig: common, the leaf package that ``hw`` and ``recon`` both import.

numpy and the standard library only; it imports none of the project's other packages (an
import-linter contract in pyproject.toml keeps it so). :mod:`common.codes`: exposure codes
(parsing, validation, limits, the code's SHA-256). :mod:`common.dead_leaves`: the dead-leaves
texture.
"""
