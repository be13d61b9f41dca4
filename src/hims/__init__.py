"""AROCORD-HIMS: Healthcare Information Management System."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("arocord-hims")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+source"
