"""electric-trio: the ElectricSQL (Satellite) sync service on Trio, with a Rust core."""

from ._native import __version__ as __version__
from .errors import ElectricError as ElectricError

__all__ = ["ElectricError", "__version__"]
