"""Column values between the three forms the client handles: the wire (``SatOpRow`` bytes,
satellite-protocol.md §6.6), SQLite (client-behaviour.md §3) and the oplog's JSON (the triggers'
``json_object``: int8 and floats as text, bytea as upper-case hex)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..satellite import messages as m

_INTS = frozenset({"int2", "int4", "int8", "integer", "bigint", "smallint", "int"})
_FLOATS = frozenset({"float4", "float8", "real", "double precision"})
_BIG = frozenset({"int8", "bigint"})

SqlValue = None | int | float | str | bytes


def _t(pg_type: str) -> str:
    return pg_type.lower()


def from_wire(pg_type: str, raw: bytes) -> SqlValue:
    """A non-NULL wire value as the client stores it in SQLite."""
    t = _t(pg_type)
    if t == "bool":
        return 1 if raw == b"t" else 0
    if t in _INTS:
        return int(raw)
    if t in _FLOATS:
        text = raw.decode()
        low = text.lower()
        if low == "nan":
            return "NaN"
        if low in ("infinity", "inf"):
            return math.inf
        if low in ("-infinity", "-inf"):
            return -math.inf
        return float(text)
    if t == "bytea":
        return bytes(raw)
    return raw.decode()


def _float_text(value: object) -> str:
    if isinstance(value, str):
        low = value.lower()
        if low in ("inf", "infinity"):
            return "Infinity"
        if low in ("-inf", "-infinity"):
            return "-Infinity"
        if low == "nan":
            return "NaN"
        return repr(float(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return str(value)


def to_wire(pg_type: str, value: object) -> bytes:
    """A non-NULL value (SQLite or oplog-JSON form) as wire bytes."""
    t = _t(pg_type)
    if t == "bool":
        truthy = value not in (0, "0", "f", "false", False)
        return b"t" if truthy else b"f"
    if t in _INTS:
        return str(int(value)).encode()  # type: ignore[call-overload]
    if t in _FLOATS:
        return _float_text(value).encode()
    if t == "bytea":
        if isinstance(value, bytes):
            return value
        return bytes.fromhex(str(value))
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def json_to_sql(pg_type: str, value: object) -> SqlValue:
    """An oplog-JSON value back in SQLite form."""
    if value is None:
        return None
    t = _t(pg_type)
    if t in _BIG and isinstance(value, str):
        return int(value)
    if t in _FLOATS and isinstance(value, str):
        low = value.lower()
        if low == "nan":
            return "NaN"
        if low in ("inf", "infinity"):
            return math.inf
        if low in ("-inf", "-infinity"):
            return -math.inf
        return float(value)
    if t == "bytea" and isinstance(value, str):
        return bytes.fromhex(value)
    if isinstance(value, int | float | str | bytes):
        return value
    return json.dumps(value)


def sql_to_json(pg_type: str, value: SqlValue) -> object:
    """A SQLite value in the oplog-JSON form the triggers would write (primary keys)."""
    if value is None:
        return None
    t = _t(pg_type)
    if t in _BIG or t in _FLOATS:
        if isinstance(value, float) and value.is_integer() and t in _FLOATS:
            return repr(value)
        return str(value)
    if t == "bytea" and isinstance(value, bytes):
        return value.hex().upper()
    return value


def pk_json(pk: Mapping[str, object]) -> str:
    """The oplog's ``primaryKey`` text: keys sorted, compact, NULLs dropped (``json_patch``)."""
    return json.dumps(
        {k: v for k, v in sorted(pk.items()) if v is not None},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _wire_float(raw: bytes) -> SqlValue:
    value = float(raw)  # also "Infinity", "-Infinity" and "NaN"
    return value if value == value else "NaN"


def _wire_bool(raw: bytes) -> SqlValue:
    return 1 if raw == b"t" else 0


def _wire_text(raw: bytes) -> SqlValue:
    return raw.decode()


def wire_converter(pg_type: str) -> Callable[[bytes], SqlValue]:
    """:func:`from_wire` for one type, chosen once (the per-row path)."""
    t = _t(pg_type)
    if t == "bool":
        return _wire_bool
    if t in _INTS:
        return int
    if t in _FLOATS:
        return _wire_float
    if t == "bytea":
        return bytes
    return _wire_text


class RowDecoder:
    """The rows of one relation: column names and a converter per column, made once per
    ``SatRelation`` rather than per row."""

    __slots__ = ("_converters", "names", "table")

    def __init__(self, table: str, columns: Sequence[tuple[str, str]]) -> None:
        self.table = table
        self.names = tuple(name for name, _ in columns)
        self._converters = tuple(wire_converter(t) for _, t in columns)

    def values(self, row: m.SatOpRow | None) -> list[SqlValue]:
        """The row's values in column order, in SQLite form (NULL and absent: ``None``)."""
        if row is None:
            return [None] * len(self.names)
        raw = row.values
        mask = int.from_bytes(row.nulls_bitmask, "big")
        if len(raw) == len(self._converters) and not mask:
            return [convert(v) for convert, v in zip(self._converters, raw, strict=True)]
        top = 8 * len(row.nulls_bitmask) - 1
        out: list[SqlValue] = []
        for i, convert in enumerate(self._converters):
            if i >= len(raw) or (0 <= top - i and (mask >> (top - i)) & 1):
                out.append(None)
            else:
                out.append(convert(raw[i]))
        return out

    def row(self, row: m.SatOpRow | None) -> dict[str, SqlValue]:
        """The row by column name (absent columns left out)."""
        if row is None:
            return {}
        out = dict(zip(self.names, self.values(row), strict=True))
        for name in self.names[len(row.values) :]:
            del out[name]
        return out


def decode_row(columns: Sequence[tuple[str, str]], row: m.SatOpRow | None) -> dict[str, SqlValue]:
    """A ``SatOpRow`` by column name in SQLite form; ``columns`` are (name, pg type)."""
    return RowDecoder("", columns).row(row)


def encode_row(columns: Sequence[tuple[str, str]], values: Mapping[str, object]) -> m.SatOpRow:
    """A ``SatOpRow`` of ``values`` (absent or None: NULL) in ``columns`` order."""
    mask = bytearray((len(columns) + 7) // 8)
    out: list[bytes] = []
    for i, (name, pg_type) in enumerate(columns):
        v = values.get(name)
        if v is None:
            mask[i // 8] |= 0x80 >> (i % 8)
            out.append(b"")
        else:
            out.append(to_wire(pg_type, v))
    return m.SatOpRow(nulls_bitmask=bytes(mask), values=tuple(out))


def iso_ms(ms: int) -> str:
    """JavaScript's ``new Date(ms).toISOString()``."""
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def ms_of_iso(text: str) -> int:
    at = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(at.timestamp() * 1000)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: object) -> bytes:
    if text is None or text == "" or text == b"":
        return b""
    if isinstance(text, bytes):
        text = text.decode()
    return base64.b64decode(str(text))


def jsonify(value: Any) -> str:
    """Compact JSON as JavaScript's ``JSON.stringify``."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
