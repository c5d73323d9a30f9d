"""Python values to Postgres parameters (text format), with the type OID to declare.

Results go the other way in the Rust core (``electric_trio._native``), which decodes the text
form of each column by its type OID.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Sequence
from typing import Any

from ..errors import ElectricError

UNKNOWN = 0
BOOL = 16
BYTEA = 17
INT8 = 20
TEXT = 25
JSON = 114
FLOAT8 = 701
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
INTERVAL = 1186
TIMETZ = 1266
NUMERIC = 1700
UUID = 2950
JSONB = 3802

_ARRAY_OF = {
    BOOL: 1000,
    BYTEA: 1001,
    INT8: 1016,
    TEXT: 1009,
    UNKNOWN: 1009,
    JSON: 199,
    JSONB: 3807,
    FLOAT8: 1022,
    DATE: 1182,
    TIME: 1183,
    TIMESTAMP: 1115,
    TIMESTAMPTZ: 1185,
    INTERVAL: 1187,
    TIMETZ: 1270,
    NUMERIC: 1231,
    UUID: 2951,
}

_INT8_MIN, _INT8_MAX = -(2**63), 2**63 - 1


class Json:
    """Wraps a value to be sent as ``jsonb`` (dicts are sent as jsonb without wrapping)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class ParameterError(ElectricError, TypeError):
    """A query parameter of a type we cannot send."""


def _scalar(value: Any) -> tuple[int, str]:
    # bool before int: bool is a subclass of int.
    if isinstance(value, bool):
        return BOOL, "t" if value else "f"
    if isinstance(value, int):
        if _INT8_MIN <= value <= _INT8_MAX:
            return INT8, str(value)
        return NUMERIC, str(value)
    if isinstance(value, str):
        return UNKNOWN, value
    if isinstance(value, float):
        if value != value:
            return FLOAT8, "NaN"
        if value in (float("inf"), float("-inf")):
            return FLOAT8, "Infinity" if value > 0 else "-Infinity"
        return FLOAT8, repr(value)
    if isinstance(value, decimal.Decimal):
        return NUMERIC, str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return BYTEA, "\\x" + bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return UUID, str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return TIMESTAMP, value.isoformat(sep=" ")
        return TIMESTAMPTZ, value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return DATE, value.isoformat()
    if isinstance(value, dt.time):
        return (TIME if value.tzinfo is None else TIMETZ), value.isoformat()
    if isinstance(value, dt.timedelta):
        return (
            INTERVAL,
            f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds",
        )
    if isinstance(value, Json):
        return JSONB, json.dumps(value.value)
    if isinstance(value, dict):
        return JSONB, json.dumps(value)
    raise ParameterError(f"cannot send a parameter of type {type(value).__name__}")


def _array_element(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _array(values: Sequence[Any]) -> tuple[int, str]:
    oid = UNKNOWN
    parts: list[str] = []
    for v in values:
        if v is None:
            parts.append("NULL")
            continue
        if isinstance(v, list | tuple):
            elem_array_oid, text = _array(v)
            parts.append(text)
            if elem_array_oid != UNKNOWN:
                oid = elem_array_oid
            continue
        elem_oid, text = _scalar(v)
        if oid not in (UNKNOWN, elem_oid) and {oid, elem_oid} == {INT8, NUMERIC}:
            elem_oid = NUMERIC
        elif oid not in (UNKNOWN, elem_oid):
            raise ParameterError(f"array mixes element types {oid} and {elem_oid}")
        oid = elem_oid
        parts.append(_array_element(text))
    literal = "{" + ",".join(parts) + "}"
    array_oid = oid if oid in _ARRAY_OF.values() else _ARRAY_OF.get(oid, 1009)
    return array_oid, literal


def encode_params(params: Sequence[Any]) -> tuple[list[int], list[bytes | None]]:
    """Type OIDs and text-format bytes for a query's parameters (``None`` is NULL).

    ``str`` is sent untyped so that Postgres infers the type from the query, as psql would.
    """
    oids: list[int] = []
    values: list[bytes | None] = []
    for p in params:
        if p is None:
            oids.append(UNKNOWN)
            values.append(None)
        elif isinstance(p, list | tuple):
            oid, text = _array(p)
            oids.append(oid)
            values.append(text.encode())
        else:
            oid, text = _scalar(p)
            oids.append(oid)
            values.append(text.encode())
    return oids, values
