"""The client's half of replication: its ``SatRelation`` and ``SatOpLog`` frames (§7.3).

One :class:`Inbound` per session. Relations are kept as the client sent them (its own relation
ids) and matched by schema and table name against the electrified schema when a transaction uses
them. A transaction (``begin`` … ``commit``, possibly over several frames) is validated change
by change as it arrives: only electrified tables, every column of the table present, values of
the columns' types (decoded and converted to Postgres text in Rust), no NULL where the client or
the table says NOT NULL (compensations excepted), no change of a primary key. An accepted
transaction with changes becomes one :class:`~electric_trio.writes.ClientWrite` handed to the
service's writer. The direct writer gets it queued (in order, up to 32 a client) and the session
reads on meanwhile, so a client's transactions sent without waiting for their echo go to Postgres
together; the logical publisher gets one at a time, the session reading no further frame until it
has it. A rejected one closes the connection with ``SatErrorResp{INVALID_REQUEST, lsn}`` (1007)
and nothing of it is written (nor of the client's transactions queued after it). A transaction
at or below the client's position in ``electric.acknowledged_client_lsns`` (read at its first
transaction of the connection) is a replay and is skipped; the writers check
again, for the transaction whose commit was in doubt.

Transactions are accepted only once the client answered our ``startReplication``; before that
they are ignored, as the original did. Without a writer (a service run without the writes
subsystem) they are dropped unacknowledged, so the client keeps them in its oplog.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

import msgspec
import trio

from .._native import ClientRowCodec, ValueDecodeError
from ..ddlx.schema import Schema, Table
from ..writes.direct import DirectWriter, QueuedWrite, WriteAbandonedError
from ..writes.model import ClientWrite, RowInsert, Writer, WriteRejectedError
from ..writes.rows import (
    ChangeKind,
    InvalidTagError,
    ack_row,
    change_rows,
    observed_tags_literal,
    tag_literal,
)
from ._db import PostgresUnavailableError
from .messages import (
    SatErrorResp,
    SatErrorRespErrorCode,
    SatOpLog,
    SatOpRow,
    SatRelation,
    SatTransOp,
)

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Inbound"]

log = logging.getLogger("electric_trio.satellite")

_CLOSE_PROTOCOL_ERROR = 1007
_CLOSE_SERVER_ERROR = 1011
#: At most this many of a client's transactions queued for the direct writer at once.
_QUEUED_MAX = 32


class _Invalid(Exception):
    """A client transaction that fails validation; the message says why."""


class _Relation(msgspec.Struct, frozen=True, gc=False):
    """A client relation matched to an electrified table."""

    table: Table
    codec: ClientRowCodec
    #: For each table column, its index among the client's columns.
    order: tuple[int, ...]
    #: Per table column: whether NULL is refused (the client's or the table's NOT NULL).
    not_null: tuple[bool, ...]
    #: Table indexes of the key columns, and of the others.
    pk: tuple[int, ...]
    non_pk: tuple[int, ...]


def _resolve(relation: SatRelation, schema: Schema) -> _Relation:
    table = schema.table(relation.schema_name, relation.table_name)
    if table is None:
        raise _Invalid(f"table {relation.schema_name}.{relation.table_name} is not electrified")
    position = {c.name: i for i, c in enumerate(relation.columns)}
    if len(position) != len(relation.columns):
        raise _Invalid(f"relation {table.name} names a column twice")
    unknown = set(position) - set(table.column_names)
    if unknown:
        raise _Invalid(f"table {table.name} has no column {sorted(unknown)[0]}")
    missing = [name for name in table.column_names if name not in position]
    if missing:
        raise _Invalid(f"relation {table.name} lacks column {missing[0]}")
    types: list[tuple[str, list[str] | None]] = []
    for client_column in relation.columns:
        column = table.column(client_column.name)
        assert column is not None
        enum = schema.enum_type(column.type.name)
        types.append((column.type.name, list(enum.labels) if enum is not None else None))
    try:
        codec = ClientRowCodec(types)
    except ValueError as e:
        raise _Invalid(f"table {table.name}: {e}") from None
    order = tuple(position[name] for name in table.column_names)
    pk = set(table.primary_key)
    return _Relation(
        table=table,
        codec=codec,
        order=order,
        not_null=tuple(
            c.not_null or not relation.columns[position[c.name]].is_nullable for c in table.columns
        ),
        pk=tuple(i for i, c in enumerate(table.columns) if c.name in pk),
        non_pk=tuple(i for i, c in enumerate(table.columns) if c.name not in pk),
    )


class _Transaction:
    """A client transaction being received."""

    def __init__(self, lsn: bytes, commit_timestamp_ms: int, tag: str) -> None:
        self.lsn = lsn
        self.commit_timestamp_ms = commit_timestamp_ms
        self.tag = tag
        self.inserts: list[RowInsert] = []


class Inbound:
    """Receives one client's relations and transactions."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._relations: dict[int, SatRelation] = {}
        self._resolved: dict[int, _Relation] = {}
        self._schema: Schema | None = None
        self._txn: _Transaction | None = None
        #: The client's position Postgres has or is given (read at its first transaction; -1:
        #: none).
        self._written: int | None = None
        #: Room for transactions queued and not yet committed.
        self._room = trio.Semaphore(_QUEUED_MAX)
        #: Transactions queued for the direct writer, in order, each with the time after which
        #: it is given up; one task (:meth:`_drain`) waits for them while there are any.
        self._pending: deque[tuple[QueuedWrite, float]] = deque()
        self._draining = False

    async def receive(self, message: SatRelation | SatOpLog) -> None:
        """Handles one frame from the client, in order with the others."""
        if isinstance(message, SatRelation):
            self._relations[message.relation_id] = message
            self._resolved.pop(message.relation_id, None)
            return
        if not self.session.inbound_active:
            self._txn = None  # a transaction cut by a stop is sent again after a start
            log.info(
                "client transaction before replication started, ignored client_id=%s",
                self.session.client_id,
            )
            return
        for op in message.ops:
            try:
                done = self._op(op)
            except _Invalid as e:
                await self._reject(str(e))
                return
            if done is not None and not await self._write(done):
                return  # the connection is closing

    # ---- assembling and validating -------------------------------------------------------

    def _op(self, op: SatTransOp) -> _Transaction | None:
        """Adds ``op`` to the transaction; returns the transaction it completes."""
        txn = self._txn
        if op.begin is not None:
            if txn is not None:
                raise _Invalid("begin inside a transaction")
            if not op.begin.lsn:
                raise _Invalid("begin without an lsn")
            ms = op.begin.commit_timestamp
            assert self.session.client_id is not None
            try:
                tag = tag_literal(ms, self.session.client_id)
            except InvalidTagError as e:
                self._txn = _Transaction(op.begin.lsn, ms, "")
                raise _Invalid(str(e)) from None
            self._txn = _Transaction(op.begin.lsn, ms, tag)
            return None
        if txn is None:
            raise _Invalid("a change or commit outside a transaction")
        if op.commit is not None:
            self._txn = None
            return txn
        if op.insert is not None:
            self._change(
                txn, "insert", op.insert.relation_id, op.insert.row_data, None, op.insert.tags
            )
        elif op.update is not None:
            update = op.update
            if update.old_row_data is None:  # the old clients' form of a compensation
                self._change(
                    txn, "compensation", update.relation_id, update.row_data, None, update.tags
                )
            else:
                self._change(
                    txn,
                    "update",
                    update.relation_id,
                    update.row_data,
                    update.old_row_data,
                    update.tags,
                )
        elif op.delete is not None:
            self._change(
                txn, "delete", op.delete.relation_id, op.delete.old_row_data, None, op.delete.tags
            )
        elif op.compensation is not None:
            c = op.compensation
            self._change(txn, "compensation", c.relation_id, c.pk_data, None, c.tags)
        else:
            raise _Invalid("a client cannot send migrate, gone or additional data operations")
        return None

    def _relation(self, relation_id: int) -> _Relation:
        schema = self.session.server.history.schema
        if schema is not self._schema:
            self._resolved.clear()
            self._schema = schema
        resolved = self._resolved.get(relation_id)
        if resolved is None:
            relation = self._relations.get(relation_id)
            if relation is None:
                raise _Invalid(f"unknown relation id {relation_id}")
            resolved = self._resolved[relation_id] = _resolve(relation, schema)
        return resolved

    def _row(self, relation: _Relation, row: SatOpRow | None, *, nulls: bool) -> list[str | None]:
        """The row in table order as Postgres text."""
        table = relation.table
        if row is None:
            raise _Invalid(f"a change of {table.name} without its row")
        try:
            client_order = relation.codec.to_pg_text(row.nulls_bitmask, list(row.values))
        except ValueDecodeError as e:
            column: int | None = getattr(e, "column", None)
            where = ""
            if column is not None:
                where = f" column {table.columns[relation.order.index(column)].name}:"
            raise _Invalid(f"invalid value in {table.name}{where} {e}") from None
        values = [client_order[i] for i in relation.order]
        if not nulls:
            for i, value in enumerate(values):
                if value is None and relation.not_null[i]:
                    raise _Invalid(f"NULL in NOT NULL column {table.columns[i].name}")
        for i in relation.pk:
            if values[i] is None:
                raise _Invalid(f"NULL in primary key column {table.columns[i].name}")
        return values

    def _change(
        self,
        txn: _Transaction,
        kind: ChangeKind,
        relation_id: int,
        row: SatOpRow | None,
        old_row: SatOpRow | None,
        tags: tuple[str, ...],
    ) -> None:
        relation = self._relation(relation_id)
        values = self._row(relation, row, nulls=kind == "compensation")
        if kind == "insert":
            modified = [True] * len(relation.non_pk)
        elif kind == "update":
            old = self._row(relation, old_row, nulls=False)
            for i in relation.pk:
                if old[i] != values[i]:
                    name = relation.table.columns[i].name
                    raise _Invalid(
                        f"primary key column {name} of {relation.table.name} cannot be updated"
                    )
            modified = [old[i] != values[i] for i in relation.non_pk]
        else:
            modified = [False] * len(relation.non_pk)
        if kind == "compensation":
            # Only the key counts: the main row is the key and NULLs (§6).
            keep = set(relation.pk)
            values = [v if i in keep else None for i, v in enumerate(values)]
        try:
            observed = observed_tags_literal(tags)
        except InvalidTagError as e:
            raise _Invalid(str(e)) from None
        txn.inserts.extend(change_rows(relation.table, kind, values, txn.tag, observed, modified))

    # ---- outcomes ------------------------------------------------------------------------

    async def _reject(self, reason: str) -> None:
        txn, self._txn = self._txn, None
        session = self.session
        log.warning(
            "client transaction failed write validation client_id=%s lsn=%s: %s",
            session.client_id,
            txn.lsn.hex() if txn is not None else None,
            reason,
        )
        await session.close(
            _CLOSE_PROTOCOL_ERROR,
            "Invalid transaction",
            SatErrorResp(
                error_type=SatErrorRespErrorCode.INVALID_REQUEST,
                lsn=txn.lsn if txn is not None else None,
                message=reason,
            ),
        )

    async def _write(self, txn: _Transaction) -> bool:
        """Hands ``txn`` to the writer; False when the connection was closed instead."""
        session = self.session
        client_id = session.client_id
        assert client_id is not None
        if not txn.inserts:
            return True  # transactions with no changes are dropped (§7)
        writer: Writer | None = session.server.writer()
        if writer is None:
            log.info("no writer: client transaction dropped client_id=%s", client_id)
            return True
        position = int.from_bytes(txn.lsn, "big")
        if self._written is None:
            try:
                acked = await session.server.acknowledged_client_lsn(client_id)
            except PostgresUnavailableError as e:
                log.warning("Postgres query failed client_id=%s: %s", client_id, e)
                await session.close(
                    _CLOSE_SERVER_ERROR,
                    "Postgres is unavailable",
                    SatErrorResp(
                        error_type=SatErrorRespErrorCode.INTERNAL,
                        message="Postgres is unavailable",
                    ),
                    log_level=logging.WARNING,
                )
                return False
            self._written = int.from_bytes(acked, "big") if acked else -1
        if position <= self._written:
            # A replay of what Postgres has (the client resends after a lost echo).
            log.info(
                "client transaction already written, skipped client_id=%s lsn=%s",
                client_id,
                txn.lsn.hex(),
            )
            return True
        write = ClientWrite(
            client_id=client_id,
            lsn=txn.lsn,
            commit_timestamp_ms=txn.commit_timestamp_ms,
            inserts=(ack_row(client_id, txn.lsn), *txn.inserts),
        )
        if isinstance(writer, DirectWriter) and session._nursery is not None:
            # Queued in order and awaited by the session's drain task: the next frames are read
            # (and their transactions queued, to go to Postgres together) meanwhile.
            try:
                self._room.acquire_nowait()  # no trip through the scheduler when there is room
            except trio.WouldBlock:
                await self._room.acquire()
            item = writer.enqueue(write)
            self._written = position
            self._pending.append((item, trio.current_time() + session.settings.close_timeout))
            if not self._draining:
                self._draining = True
                session._nursery_soon(self._drain, writer)
            return True
        try:
            await writer.write(write)
        except WriteRejectedError as e:
            self._txn = txn
            await self._reject(f"Postgres refused the transaction: {e}")
            return False
        self._written = position
        return True

    async def _drain(self, writer: DirectWriter) -> None:
        """Waits for the queued transactions in order; a refused one closes the connection.
        Shielded, each for at most ``close_timeout`` after it was queued: what the client sent
        before it left is still written. One task for all of them: the first one's wait
        usually writes the others too (they go to Postgres together), which are then done.
        One given up while the client is still connected (Postgres away that long) closes the
        connection too: the client's later ones must not be written without it (it sends them
        all again once reconnected)."""
        refused: tuple[QueuedWrite, WriteRejectedError] | None = None
        gave_up = False
        try:
            with trio.CancelScope(shield=True):
                while self._pending:
                    item, deadline = self._pending[0]
                    try:
                        if item.done:
                            writer.complete_done(item)
                        else:
                            with trio.CancelScope(deadline=deadline) as scope:
                                await writer.complete(item)
                            gave_up = gave_up or scope.cancelled_caught
                    except WriteRejectedError as e:
                        refused = (item, e)  # the client's later ones are abandoned
                    except WriteAbandonedError:
                        pass  # an earlier one was refused: the connection is closing
                    finally:
                        self._pending.popleft()
                        self._room.release()
        finally:
            self._draining = False
        if refused is not None:
            write, error = refused[0].write, refused[1]
            self._txn = _Transaction(write.lsn, write.commit_timestamp_ms, "")
            await self._reject(f"Postgres refused the transaction: {error}")
        elif gave_up:
            log.warning(
                "client transaction not written in time client_id=%s", self.session.client_id
            )
            await self.session.close(
                _CLOSE_SERVER_ERROR,
                "Postgres is unavailable",
                SatErrorResp(
                    error_type=SatErrorRespErrorCode.INTERNAL,
                    message="Postgres is unavailable",
                ),
                log_level=logging.WARNING,
            )
