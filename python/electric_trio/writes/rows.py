"""The rows a client change becomes (server-behaviour.md §6 "Client (Satellite) writes").

Every change is two inserts, the main table's row first, then the shadow row: the main insert is
parked by the replica-role trigger in the shadow row's ``__reordered_*`` columns, and the shadow
insert runs the resolver (per-column last-writer-wins by tag, add-wins rows, resurrection from
the tombstone). The shadow row carries only the key and what the resolver reads: the client's
tag, whether the change is a delete, the tags it observed and which columns it modified.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal, NamedTuple

from ..ddlx.schema import Table
from .model import RowInsert

__all__ = [
    "ACK_COLUMNS",
    "POSTGRES_ORIGIN",
    "ChangeKind",
    "InvalidTagError",
    "ack_row",
    "change_rows",
    "observed_tags_literal",
    "shadow_columns",
    "tag_literal",
]

#: The origin of writes made in Postgres itself: a NULL source in a tag.
POSTGRES_ORIGIN = "postgres_1"
ACK_COLUMNS = ("client_id", "lsn")

ChangeKind = Literal["insert", "update", "delete", "compensation"]

#: 10000-01-01 in seconds since 1970: Postgres's timestamptz text has four-digit years here.
_YEAR_10000 = 253_402_300_800


class InvalidTagError(ValueError):
    """A tag that is not ``<origin>@<ms since 1970>``."""


#: The last second :func:`_timestamp_text` formatted, and its text (consecutive client
#: transactions mostly fall in the same second).
_last_second: tuple[int, str] = (-1, "")


def _timestamp_text(ms: int) -> str:
    global _last_second
    seconds, millis = divmod(ms, 1000)
    if seconds != _last_second[0]:
        if not 0 <= seconds < _YEAR_10000:
            raise InvalidTagError(f"time {ms} ms is out of range")
        t = time.gmtime(seconds)
        _last_second = (
            seconds,
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
            f" {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}",
        )
    return f"{_last_second[1]}.{millis:03d}+00"


def _quote(text: str) -> str:
    """A double-quoted element of a composite or array literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tag_literal(ms: int, source: str | None) -> str:
    """An ``electric.tag`` in Postgres text form; ``source`` None is Postgres itself."""
    return f"({_quote(_timestamp_text(ms))},{'' if source is None else _quote(source)})"


def _parse_tag(tag: str) -> tuple[int, str | None]:
    origin, at, ms = tag.rpartition("@")
    if not at or not ms.isdigit() or not ms.isascii():
        raise InvalidTagError(f"malformed tag {tag[:100]!r}")
    return int(ms), None if origin == POSTGRES_ORIGIN else origin


def observed_tags_literal(tags: Sequence[str]) -> str:
    """The client's observed tags (``origin@ms``) as an ``electric.tag[]`` literal."""
    return "{" + ",".join(_quote(tag_literal(*_parse_tag(t))) for t in tags) + "}"


def shadow_columns(table: Table) -> tuple[str, ...]:
    """The shadow table's columns, as ddlx creates them (columns added later by ALTER TABLE are
    physically at the end; names are what matter)."""
    pk = set(table.primary_key)
    non_pk = [c.name for c in table.columns if c.name not in pk]
    return (
        "_tags",
        "_last_modified",
        "_is_a_delete_operation",
        "_tag",
        "_observed_tags",
        "_modified_columns_bit_mask",
        "_resolved",
        "_currently_reordering",
        *(f"__reordered_{c}" for c in non_pk),
        *(c.name if c.name in pk else f"_tag_{c.name}" for c in table.columns),
    )


class _Layout(NamedTuple):
    """What :func:`change_rows` needs of a table, worked out once per table object."""

    table: Table
    names: tuple[str, ...]
    shadow_table: str
    shadow_columns: tuple[str, ...]
    #: Per column: whether it is a key column.
    is_pk: tuple[bool, ...]


#: Layouts by ``id`` of the (long-lived, immutable) table object they were made for.
_layouts: dict[int, _Layout] = {}


def _layout(table: Table) -> _Layout:
    layout = _layouts.get(id(table))
    if layout is None or layout.table is not table:
        if len(_layouts) > 1000:
            _layouts.clear()  # schemas replaced many times over: start again
        pk = set(table.primary_key)
        names = table.column_names
        layout = _layouts[id(table)] = _Layout(
            table,
            names,
            f"shadow__{table.schema}__{table.name}",
            shadow_columns(table),
            tuple(name in pk for name in names),
        )
    return layout


def ack_row(client_id: str, lsn: bytes) -> RowInsert:
    """The ``electric.acknowledged_client_lsns`` row of a client transaction."""
    return RowInsert(
        "electric", "acknowledged_client_lsns", ACK_COLUMNS, (client_id, "\\x" + lsn.hex())
    )


def change_rows(
    table: Table,
    kind: ChangeKind,
    row: Sequence[str | None],
    tag: str,
    observed: str,
    modified: Sequence[bool],
) -> tuple[RowInsert, RowInsert]:
    """The main and shadow rows of one change. ``row`` is the full row in table order (the new
    row, the old one for a delete, key and NULLs for a compensation), ``tag`` the client's tag
    literal, ``observed`` the observed tags literal, ``modified`` one flag per non-key column."""
    layout = _layout(table)
    main = RowInsert(table.schema, table.name, layout.names, tuple(row))
    values: list[str | None] = [
        None,
        None,
        "t" if kind == "delete" else "f",
        tag,
        observed,
        "{" + ",".join("t" if m else "f" for m in modified) + "}",
        None,
        None,
    ]
    values += [None] * len(modified)
    values += [v if key else None for key, v in zip(layout.is_pk, row, strict=True)]
    shadow = RowInsert("electric", layout.shadow_table, layout.shadow_columns, tuple(values))
    return main, shadow
