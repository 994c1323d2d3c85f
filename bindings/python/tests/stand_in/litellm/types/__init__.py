"""STAND-IN package marker (see tests/stand_in/README.md)."""
