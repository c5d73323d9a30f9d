"""Shape subscriptions: validation, layer trees and the data queries (satellite-protocol.md §7.6,
server-behaviour.md §8).

A subscription request becomes, per shape request, a tree of :class:`LayerPlan`: the selected
table with its where clause, the explicit includes (one-to-many or many-to-one by the foreign
key named), and the automatic many-to-one layers that bring the rows every included row
references, so the client's foreign keys always hold. Where clauses are compiled by the Rust
shape filter, which also writes the initial query's WHERE fragment with parameters, so the
query and the live stream apply the same filter.

:func:`fetch_layers` reads a layer tree's rows from Postgres inside one REPEATABLE READ
snapshot, with the magic write that gives the snapshot its insertion point in the stream: the
caller splices the rows in before the first transaction whose xid is at least the snapshot's
xmin, so nothing is lost or doubled between the data and the live stream.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field

import trio

from .. import _native
from ..ddlx.schema import Schema, Table
from ..errors import ElectricError
from ..pg import Connection
from .messages import (
    SatShapeDefSelect,
    SatSubsError,
    SatSubsErrorShapeReqError,
    SatSubsErrorShapeReqErrorCode,
    SatSubsReq,
)
from .stream import OWNER_COLUMN, column_defs

__all__ = [
    "LayerPlan",
    "RowStream",
    "RowStreamError",
    "RowStreamStalledError",
    "Rows",
    "SubscriptionPlan",
    "add_rows",
    "fetch_layers",
    "plan_subscription",
    "stream_data",
    "streamable",
    "xid_at_least",
]

_ReqCode = SatSubsErrorShapeReqErrorCode
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_ID_BYTES = 128
MAX_TABLE_NAME = 64


@dataclass
class LayerPlan:
    """One layer of a shape: rows of ``table`` passing ``where``, hanging on the parent layer's
    rows through ``fk`` (columns of this table when ``holds_fk``, else of the parent's table,
    aligned with the referenced primary key)."""

    table: Table
    where: str
    filter: _native.ShapeFilter
    fk: tuple[str, ...] = ()
    holds_fk: bool = False
    automatic: bool = False
    children: list[LayerPlan] = field(default_factory=list)
    #: Set once the layer is in the client's graph.
    layer_id: int | None = None

    def walk(self) -> list[LayerPlan]:
        """This layer and every layer under it, parents first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out


@dataclass
class SubscriptionPlan:
    id: str
    #: ``(request id, root layer)`` in request order.
    requests: list[tuple[str, LayerPlan]]
    #: The request as the client sent it (stored to resume the subscription after a restart).
    request: SatSubsReq | None = None
    #: The xmin of the snapshot its data came from.
    xmin: int = 0

    def layers(self) -> list[LayerPlan]:
        return [layer for _, root in self.requests for layer in root.walk()]


class _RequestError(Exception):
    def __init__(self, code: SatSubsErrorShapeReqErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(message: str, *requests: SatSubsErrorShapeReqError) -> SatSubsError:
    return SatSubsError(message=message, shape_request_error=requests)


def plan_subscription(
    request: SatSubsReq, schema: Schema, active: Callable[[str], bool]
) -> SubscriptionPlan | SatSubsError:
    """The layer trees of ``request``, or the error the client gets (§7.6 step 2)."""
    sub_id = request.subscription_id
    if len(sub_id.encode()) > MAX_ID_BYTES:
        return _error("ID too long")
    if active(sub_id):
        return _error(
            "Cannot establish multiple subscriptions with the same ID: "
            f"subscription {sub_id} is already active"
        )
    if not request.shape_requests:
        return _error("Subscription must include at least one shape request")
    if not _UUID.fullmatch(sub_id):
        return _error("Subscription ID should be a valid UUID")
    ids = [r.request_id for r in request.shape_requests]
    if len(set(ids)) != len(ids):
        return _error("Duplicated request ids are not allowed")
    plans: list[tuple[str, LayerPlan]] = []
    errors: list[SatSubsErrorShapeReqError] = []
    for shape in request.shape_requests:
        try:
            selects = shape.shape_definition.selects if shape.shape_definition else ()
            if not selects:
                raise _RequestError(_ReqCode.EMPTY_SHAPE_DEFINITION, "Empty shape definition")
            if len(selects) > 1:
                raise _RequestError(
                    _ReqCode.INVALID_INCLUDE_TREE,
                    "A shape definition must have exactly one top-level select",
                )
            plans.append((shape.request_id, _layer_tree(selects[0], schema, ())))
        except _RequestError as e:
            errors.append(
                SatSubsErrorShapeReqError(
                    code=e.code, message=e.message, request_id=shape.request_id
                )
            )
    if errors:
        return _error("Could not establish a subscription due to errors on requests", *errors)
    return SubscriptionPlan(sub_id, plans, request)


def _table(schema: Schema, name: str) -> Table:
    if not name or len(name.encode()) > MAX_TABLE_NAME:
        raise _RequestError(_ReqCode.TABLE_NOT_FOUND, f"Invalid table name {name!r}")
    table = schema.table("public", name)
    if table is None:
        raise _RequestError(
            _ReqCode.TABLE_NOT_FOUND, f"Unknown table {name!r}: not an electrified table"
        )
    return table


def _compile(schema: Schema, table: Table, where: str) -> _native.ShapeFilter:
    try:
        columns = column_defs(schema, table)
        return _native.ShapeFilter.compile(
            where,
            [(n, oid) for n, oid, _ in columns],
            {n: labels for n, _, labels in columns if labels is not None},
        )
    except _native.ShapeFilterError as e:
        raise _RequestError(_ReqCode.INVALID_WHERE_CLAUSE, str(e)) from None


def _aligned(
    fk_columns: Sequence[str], ref_columns: Sequence[str], target: Table
) -> tuple[str, ...]:
    """The FK's columns in the order of the referenced table's primary key."""
    by_ref = dict(zip(ref_columns, fk_columns, strict=True))
    if set(by_ref) != set(target.primary_key):
        raise _RequestError(
            _ReqCode.INVALID_INCLUDE_TREE,
            f"The foreign key ({', '.join(fk_columns)}) does not reference the primary key "
            f"of {target.name!r}",
        )
    return tuple(by_ref[c] for c in target.primary_key)


_Path = tuple[tuple[str, str, tuple[str, ...]], ...]


def _layer_tree(
    select: SatShapeDefSelect,
    schema: Schema,
    path: _Path,
    link: tuple[tuple[str, ...], bool] = ((), False),
    parent: Table | None = None,
) -> LayerPlan:
    table = _table(schema, select.tablename)
    layer = LayerPlan(
        table=table,
        where=select.where,
        filter=_compile(schema, table, select.where),
        fk=link[0],
        holds_fk=link[1],
    )
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for include in select.include:
        if include.select is None:
            raise _RequestError(_ReqCode.INVALID_INCLUDE_TREE, "An include must have a select")
        child_table = _table(schema, include.select.tablename)
        cols = tuple(include.foreign_key)
        relationship = (child_table.name, cols)
        if relationship in seen:
            raise _RequestError(
                _ReqCode.INVALID_INCLUDE_TREE,
                f"The relationship to {child_table.name!r} through ({', '.join(cols)}) is "
                "included twice",
            )
        seen.add(relationship)
        child = _link(table, child_table, cols)
        sub = _layer_tree(
            include.select, schema, (*path, (table.name, child_table.name, cols)), child, table
        )
        layer.children.append(sub)
    _add_automatic_parents(layer, schema, path, parent)
    return layer


def _link(parent: Table, child: Table, cols: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """How ``child`` rows hang on ``parent`` rows through FK columns ``cols``."""
    for fk in child.foreign_keys:
        if fk.ref_table == parent.name and fk.ref_schema == parent.schema and fk.columns == cols:
            return _aligned(fk.columns, fk.ref_columns, parent), True
    for fk in parent.foreign_keys:
        if fk.ref_table == child.name and fk.ref_schema == child.schema and fk.columns == cols:
            return _aligned(fk.columns, fk.ref_columns, child), False
    raise _RequestError(
        _ReqCode.INVALID_INCLUDE_TREE,
        f"No foreign key ({', '.join(cols)}) between {parent.name!r} and {child.name!r}",
    )


def _add_automatic_parents(
    layer: LayerPlan, schema: Schema, path: _Path, parent: Table | None = None
) -> None:
    """Many-to-one layers for every foreign key of the layer's table not already included,
    recursively, so that every row the client gets has the rows it references (the key that
    makes a layer's rows children of its parent layer's rows points at rows already there)."""
    explicit = {c.fk for c in layer.children if not c.holds_fk}
    for fk in layer.table.foreign_keys:
        target = schema.table(fk.ref_schema, fk.ref_table)
        if target is None:
            continue
        try:
            cols = _aligned(fk.columns, fk.ref_columns, target)
        except _RequestError:
            continue
        step = (layer.table.name, target.name, cols)
        via_parent = (
            layer.holds_fk
            and parent is not None
            and (
                target.name,
                cols,
            )
            == (parent.name, layer.fk)
        )
        if cols in explicit or step in path or via_parent:
            continue
        auto = LayerPlan(
            table=target,
            where="",
            filter=_compile(schema, target, ""),
            fk=cols,
            holds_fk=False,
            automatic=True,
        )
        _add_automatic_parents(auto, schema, (*path, step))
        layer.children.append(auto)


# ---- data queries ---------------------------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _type_name(table: Table, column: str) -> str:
    col = table.column(column)
    return _ident(col.type.name) if col is not None else "text"


#: The tags of a row as its shadow row holds them (NULL for a row written before the table was
#: electrified): :data:`Rows` puts them in the protocol's form, once per run of rows with the same
#: tags. Made per row in SQL (an ``unnest`` and the epoch in milliseconds), they took most of
#: Postgres's time for the read: 2.6-3.8 s of backend CPU for 1,000,000 rows with shadow rows,
#: 1.6-1.9 s as they are.
_TAGS = "shadow._tags"

Row = tuple[list[str], list[str | None]]
#: A layer's rows as read: tags then every column as text, kept in Rust.
Rows = _native.ShapeRows


class RowStream:
    """The rows of a layer read while they are sent: the COPY's batches, each a
    :data:`Rows` of its own, through a bounded channel from the read (which waits while the
    channel is full) to the sender. Neither the whole result is ever held, nor does the
    sending wait for Postgres to have produced the last row before the first goes out."""

    def __init__(
        self,
        columns: int,
        begun: trio.Event,
        batches: int = 8,
        give_up: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.columns = columns
        #: Set once the first rows are in the channel, or the read ended.
        self.begun = begun
        #: Returns when a read waiting for the sender to take its rows should stop waiting
        #: (then :meth:`put` raises :class:`RowStreamStalledError`).
        self._give_up = give_up
        self._send, self._receive = trio.open_memory_channel[Rows](batches)
        #: Rows put in the channel so far, and taken from it.
        self.read = 0
        self.taken = 0
        #: Why the read stopped before its end (set before the channel closes).
        self.error: str | None = None
        self._first: Rows | None = None

    def __len__(self) -> int:
        return self.taken

    async def put(self, batch: Rows) -> None:
        self.read += len(batch)
        try:
            self._send.send_nowait(batch)
        except trio.WouldBlock:
            if self._give_up is None:
                await self._send.send(batch)
            else:
                await self._put_unless_given_up(batch)
        self.begun.set()

    async def _put_unless_given_up(self, batch: Rows) -> None:
        assert self._give_up is not None
        give_up = self._give_up
        sent = False

        async def watch(scope: trio.CancelScope) -> None:
            await give_up()
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, nursery.cancel_scope)
            await self._send.send(batch)
            sent = True
            nursery.cancel_scope.cancel()
        if not sent:
            raise RowStreamStalledError("the client took none of its subscription's rows in time")

    def close(self, error: str | None = None) -> None:
        """Ends the rows: all of them read, or (``error``) the read failed."""
        if error is not None and self.error is None:
            self.error = error
        self._send.close()
        self.begun.set()

    async def started(self) -> bool:
        """Waits for the first rows (or the end); False when the read failed before any."""
        try:
            self._first = await self._receive.receive()
        except trio.EndOfChannel:
            return self.error is None
        return True

    async def batches(self) -> AsyncGenerator[Rows, None]:
        """The rows, batch by batch; raises :class:`RowStreamError` when the read failed."""
        if self._first is not None:
            first, self._first = self._first, None
            self.taken += len(first)
            yield first
        async for batch in self._receive:
            self.taken += len(batch)
            yield batch
        if self.error is not None:
            raise RowStreamError(self.error)


class RowStreamError(Exception):
    """The read of a :class:`RowStream` failed after some of its rows were sent."""


class RowStreamStalledError(ElectricError):
    """A :class:`RowStream`'s read gave up: its rows were not taken in time (the client did
    not read them) while another read waited for the connection."""


def layer_query(
    layer: LayerPlan, key_columns: Sequence[str], keys: Sequence[Sequence[str]], user_id: str | None
) -> tuple[str, list[object]]:
    """The query of ``layer``'s rows (tags, then every column as text): those passing its where
    clause, whose ``key_columns`` take one of ``keys`` (when given), and that the user may see."""
    table = layer.table
    this = f"{_ident(table.schema)}.{_ident(table.name)}"
    shadow = f"electric.{_ident(f'shadow__{table.schema}__{table.name}')}"
    join = " AND ".join(f"shadow.{_ident(c)} = this.{_ident(c)}" for c in table.primary_key)
    params: list[object] = []
    conditions: list[str] = []
    if key_columns:
        arrays = []
        for i, col in enumerate(key_columns):
            params.append([k[i] for k in keys])
            arrays.append(f"${len(params)}::text[]::{_type_name(table, col)}[]")
        cols = ", ".join(f"this.{_ident(c)}" for c in key_columns)
        conditions.append(f"({cols}) IN (SELECT * FROM unnest({', '.join(arrays)}))")
    sql, filter_params = layer.filter.to_sql("this", len(params) + 1)
    if layer.where.strip():
        conditions.append(sql)
        params.extend(value for value, _ in filter_params)
    if table.column(OWNER_COLUMN) is not None:
        params.append(user_id or "")
        owner = f"this.{_ident(OWNER_COLUMN)}"
        conditions.append(f"({owner} IS NULL OR {owner} = '' OR {owner} = ${len(params)})")
    columns = ", ".join(f"this.{_ident(c.name)}::text" for c in table.columns)
    where = " AND ".join(conditions) if conditions else "true"
    query = (
        f"SELECT {_TAGS}, {columns} FROM {this} AS this LEFT JOIN {shadow} AS shadow ON {join}"
        f" WHERE {where}"
    )
    return query, params


#: A ``$n`` parameter of a query, outside quoted identifiers and string literals.
_PARAM = re.compile(r"\"(?:[^\"]|\"\")*\"|'(?:[^']|'')*'|\$(\d+)")


def _literal(value: object) -> str:
    """``value`` (text, NULL or a list of texts) as an SQL literal, whatever the server's
    ``standard_conforming_strings``."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if isinstance(value, list):
        if not value:
            return "'{}'::text[]"
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::text[]"
    raise TypeError(f"no literal for {type(value).__name__}")


def inline_params(sql: str, params: Sequence[object]) -> str:
    """``sql`` with its ``$n`` parameters replaced by literals (a ``COPY`` takes none)."""

    def replace(match: re.Match[str]) -> str:
        n = match.group(1)
        return match.group(0) if n is None else _literal(params[int(n) - 1])

    return _PARAM.sub(replace, sql)


async def _read_layer(
    conn: Connection,
    layer: LayerPlan,
    key_columns: Sequence[str],
    keys: Sequence[Sequence[str]],
    user_id: str | None,
    out: list[tuple[LayerPlan, Rows]],
    stream: RowStream | None = None,
) -> None:
    names = [c.name for c in layer.table.columns]
    if key_columns and not keys:
        if stream is None:
            out.append((layer, _native.ShapeRows(len(names))))
        return
    sql, params = layer_query(layer, key_columns, keys, user_id)
    if stream is not None:
        # One batch of rows per read from the socket, handed over as they arrive.
        async with (
            conn.copy_out(f"COPY ({inline_params(sql, params)}) TO STDOUT") as copy,
            aclosing(copy.batches()) as batches,  # closed at once when the put gives up
        ):
            async for batch in batches:
                part = _native.ShapeRows(len(names))
                part.extend(batch)
                await stream.put(part)
        return
    rows = _native.ShapeRows(len(names))
    out.append((layer, rows))
    # One COPY, its rows kept in Rust as they arrive (no Python object per value).
    async with conn.copy_out(f"COPY ({inline_params(sql, params)}) TO STDOUT") as copy:
        async for batch in copy.batches():
            rows.extend(batch)
    for child in layer.children:
        if child.holds_fk:
            # Children of these rows: their FK takes one of these rows' primary keys.
            pk_at = [names.index(c) for c in layer.table.primary_key]
            child_keys = {tuple(v or "" for v in r) for r in rows.values(pk_at)}
            await _read_layer(conn, child, child.fk, sorted(child_keys), user_id, out)
        else:
            # The rows these rows reference: their primary key is one of these FK values.
            fk_at = [names.index(c) for c in child.fk]
            refs = {tuple(r) for r in rows.values(fk_at) if all(v is not None for v in r)}
            parent_keys = sorted(tuple(v or "" for v in k) for k in refs)
            await _read_layer(conn, child, child.table.primary_key, parent_keys, user_id, out)


def xid_at_least(xid: int, xmin: int) -> bool:
    """Whether the 32-bit ``xid`` of a transaction is at or after the 64-bit ``xmin``."""
    diff = (xid - (xmin & 0xFFFFFFFF)) & 0xFFFFFFFF
    return diff < 0x80000000


#: The magic write: a transaction that reaches the stream at or after a snapshot's xmin.
MAGIC_WRITE = (
    "UPDATE electric.transaction_marker SET content = jsonb_build_object("
    "'xid', pg_current_xact_id(), 'caused_by', $1::text) WHERE id = 'magic write'"
)


async def fetch_layers(
    conn: Connection,
    magic_write: Callable[[str], Awaitable[object]],
    starts: Sequence[tuple[LayerPlan, Sequence[str], Sequence[Sequence[str]]]],
    user_id: str | None,
    caused_by: str,
    on_xmin: Callable[[int], None],
    stream: RowStream | None = None,
) -> list[tuple[LayerPlan, Rows]]:
    """Reads the rows of each ``(layer, key columns, keys)`` start and the layers under them in
    one snapshot on ``conn`` (idle, outside a transaction); with ``stream`` (a single start
    with no layer under it, see :func:`streamable`), its rows go there as they are read, the
    list returned is empty and the snapshot stays open until the last of them was taken
    (or the channel refused them); ``on_xmin`` gets the snapshot's xmin
    as soon as it is known, before ``magic_write(caused_by)`` runs :data:`MAGIC_WRITE` on
    another connection, which makes sure a transaction at or after it comes through the stream.
    (Given after the magic write, the xmin could arrive after the magic transaction had already
    streamed past the waiting delivery, which then waited for the next write: on an idle
    database, forever.)"""
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    # The snapshot is taken by this first query; the magic write comes after it, so its
    # transaction id is at least the snapshot's xmin.
    xmin = int(await conn.fetchval("SELECT pg_snapshot_xmin(pg_current_snapshot())::text"))
    on_xmin(xmin)
    await magic_write(caused_by)
    out: list[tuple[LayerPlan, Rows]] = []
    for layer, key_columns, keys in starts:
        await _read_layer(conn, layer, key_columns, keys, user_id, out, stream)
    await conn.execute("COMMIT")
    return out


def streamable(starts: Sequence[tuple[LayerPlan, Sequence[str], Sequence[Sequence[str]]]]) -> bool:
    """Whether the rows of ``starts`` can be sent while they are read (a :class:`RowStream`):
    one layer with none under it (no later query needs its rows' keys)."""
    return len(starts) == 1 and not starts[0][0].children


#: Rows a graph takes (and frames) per call before other tasks get to run: a 1,000,000-row
#: shape added or encoded in one call held the event loop for seconds (the other clients
#: stalled, the service's Postgres connections timed out).
ROWS_PER_STEP = 2048


async def add_rows(graph: _native.ShapeGraph, layer: int, rows: Rows, resend: bool) -> None:
    """``graph.add_rows`` of a layer's rows in parts, with a checkpoint between them (the caller
    keeps other tasks off ``graph`` meanwhile). The move-ins it returns are not kept: the rows
    of a delivery's layers are all read in one snapshot beforehand."""
    for start in range(0, len(rows), ROWS_PER_STEP):
        graph.add_rows(layer, rows, resend, start, start + ROWS_PER_STEP)
        await trio.lowlevel.checkpoint()


async def stream_data(
    graph: _native.ShapeGraph,
    layers: Sequence[tuple[int, Rows | RowStream]],
    resend: bool,
    send: Callable[[bytes], Awaitable[None]],
) -> int:
    """Adds each ``(layer, rows)`` to ``graph`` in parts and sends the subscription data as it
    is made: ``send`` gets WebSocket-framed ``SatOpLog`` messages (the frames ``take_data``
    makes), a part at a time, so that neither the rows' ops nor their frames are ever all
    held, and other tasks run between parts. The relations of the layers must
    have been sent (``graph.layer_relations``). Returns how many ops were sent. The move-ins
    the graph returns are not kept, as in :func:`add_rows`. A :class:`RowStream`'s rows are
    added batch by batch as the read brings them (:class:`RowStreamError` when it fails)."""

    async def add(layer: int, rows: Rows) -> None:
        for start in range(0, len(rows), ROWS_PER_STEP):
            data, _ = graph.add_rows_framed(layer, rows, resend, start, start + ROWS_PER_STEP)
            if data:
                await send(data)
            else:
                await trio.lowlevel.checkpoint()

    for layer, rows in layers:
        if isinstance(rows, RowStream):
            async with aclosing(rows.batches()) as batches:  # closed at once if cut short
                async for batch in batches:
                    await add(layer, batch)
        else:
            await add(layer, rows)
    data, ops = graph.finish_framed()
    if data:
        await send(data)
    return ops
