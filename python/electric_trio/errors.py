"""The exceptions of electric-trio; every one derives from :class:`ElectricError`.

The root and the codec errors are defined by the native extension (so that Rust errors surface
as these classes) and re-exported here.
"""

from __future__ import annotations

from ._native import ElectricError as ElectricError
from ._native import InternalError as InternalError
from ._native import PgOutputError as PgOutputError
from ._native import ProtocolError as ProtocolError
from ._native import ShapeEvaluationError as ShapeEvaluationError
from ._native import ShapeFilterError as ShapeFilterError
from ._native import ValueDecodeError as ValueDecodeError

__all__ = [
    "ConfigError",
    "ElectricError",
    "InternalError",
    "PgOutputError",
    "ProtocolError",
    "ShapeEvaluationError",
    "ShapeFilterError",
    "ValueDecodeError",
]


class ConfigError(ElectricError):
    """Invalid or missing configuration; the message lists every offending setting."""
