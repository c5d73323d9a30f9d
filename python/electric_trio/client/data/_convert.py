"""Python values <-> SQLite storage, per Postgres column type (client-behaviour.md §3).

The storage forms are the official client's, so that rows written by either client (or arriving
by sync) read back the same: bool as 0/1, float4 rounded to single precision, NaN as the text
``'NaN'``, date ``YYYY-MM-DD``, time ``HH:MM:SS.mmm``, timestamp ``YYYY-MM-DD HH:MM:SS.mmm``
(wall time), timestamptz the same in UTC with a ``Z``, json as JSON text, bytea as a blob.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import struct
import uuid
from typing import Any, Final

__all__ = ["JSON_NULL", "JsonNull", "from_sqlite", "to_sqlite"]


class JsonNull:
    """The JSON value ``null`` in a json/jsonb column (``None`` is SQL NULL)."""

    _instance: JsonNull | None = None

    def __new__(cls) -> JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "JSON_NULL"

    def __reduce__(self) -> str:
        return "JSON_NULL"


JSON_NULL: Final = JsonNull()

_INTS = frozenset({"int2", "int4", "int8", "smallint", "integer", "int", "bigint"})
_FLOAT4 = frozenset({"float4", "real"})
_FLOATS = frozenset({"float4", "real", "float8", "double precision"})
_JSON = frozenset({"json", "jsonb"})
_BOOL = frozenset({"bool", "boolean"})
_UTC = dt.UTC


def _fround(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def _millis(time: dt.time | dt.datetime) -> str:
    return f"{time.hour:02d}:{time.minute:02d}:{time.second:02d}.{time.microsecond // 1000:03d}"


def _as_datetime(value: Any, pg_type: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    raise TypeError(f"a {pg_type} column takes a datetime, not {type(value).__name__}")


def to_sqlite(value: Any, pg_type: str) -> Any:
    """``value`` as stored in a SQLite column of Postgres type ``pg_type``.

    Raises :class:`TypeError`/:class:`ValueError` for a value the type cannot hold.
    """
    if value is None:
        return None
    if pg_type in _BOOL:
        if not isinstance(value, bool | int):
            raise TypeError(f"a bool column takes a bool, not {type(value).__name__}")
        return 1 if value else 0
    if pg_type in _INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"an {pg_type} column takes an int, not {type(value).__name__}")
        return value
    if pg_type in _FLOATS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"a {pg_type} column takes a float, not {type(value).__name__}")
        number = float(value)
        if math.isnan(number):
            return "NaN"
        return _fround(number) if pg_type in _FLOAT4 else number
    if pg_type in _JSON:
        if value is JSON_NULL:
            return "null"
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if pg_type == "bytea":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"a bytea column takes bytes, not {type(value).__name__}")
        return bytes(value)
    if pg_type == "date":
        if isinstance(value, str):
            value = dt.date.fromisoformat(value)
        if isinstance(value, dt.datetime):
            value = value.date()
        if not isinstance(value, dt.date):
            raise TypeError(f"a date column takes a date, not {type(value).__name__}")
        return value.isoformat()
    if pg_type in ("time", "timetz"):
        if isinstance(value, str):
            value = dt.time.fromisoformat(value)
        if pg_type == "timetz" and isinstance(value, dt.datetime | dt.time) and value.tzinfo:
            if isinstance(value, dt.time):
                value = dt.datetime.combine(dt.date(1970, 1, 1), value)
            value = value.astimezone(_UTC)
        if not isinstance(value, dt.time | dt.datetime):
            raise TypeError(f"a {pg_type} column takes a time, not {type(value).__name__}")
        return _millis(value)
    if pg_type == "timestamp":
        stamp = _as_datetime(value, pg_type)
        return f"{stamp.date().isoformat()} {_millis(stamp)}"
    if pg_type == "timestamptz":
        stamp = _as_datetime(value, pg_type)
        # a naive datetime is taken as UTC
        stamp = stamp.replace(tzinfo=_UTC) if stamp.tzinfo is None else stamp.astimezone(_UTC)
        return f"{stamp.date().isoformat()} {_millis(stamp)}Z"
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"a {pg_type} column takes a str, not {type(value).__name__}")
    return value


def _parse_datetime(text: str) -> dt.datetime:
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return dt.datetime.fromisoformat(text)


def from_sqlite(value: Any, pg_type: str) -> Any:
    """The Python value of ``value`` read from a SQLite column of Postgres type ``pg_type``."""
    if value is None:
        return None
    if pg_type in _BOOL:
        if isinstance(value, str):  # as Postgres spells it, from a raw write
            return value in ("t", "true", "1")
        return bool(value)
    if pg_type in _FLOATS:
        if isinstance(value, str):
            return float(value.replace("Infinity", "inf").replace("Inf", "inf"))
        number = float(value)
        return _fround(number) if pg_type in _FLOAT4 else number
    if pg_type in _INTS:
        return int(value)
    if pg_type in _JSON:
        if value == "null":
            return JSON_NULL
        return json.loads(value)
    if pg_type == "bytea":
        return bytes(value) if not isinstance(value, str) else bytes.fromhex(value)
    if pg_type == "date":
        return dt.date.fromisoformat(str(value)[:10])
    if pg_type == "time":
        return dt.time.fromisoformat(str(value))
    if pg_type == "timetz":
        stamp = _parse_datetime(f"1970-01-01T{value}")
        stamp = stamp.replace(tzinfo=_UTC) if stamp.tzinfo is None else stamp.astimezone(_UTC)
        return stamp.timetz()
    if pg_type == "timestamp":
        return _parse_datetime(str(value)).replace(tzinfo=None)
    if pg_type == "timestamptz":
        stamp = _parse_datetime(str(value))
        return stamp.replace(tzinfo=_UTC) if stamp.tzinfo is None else stamp.astimezone(_UTC)
    return value
