"""``ELECTRIC_WRITE_TO_PG_MODE=direct_writes``: client transactions written on our own connections
(server-behaviour.md §7).

Its connections (``CONNECTIONS``, 4, by default; a client always uses the same one, so its
transactions keep their order while different clients' commits share Postgres's fsyncs) run with
``electric.session_replication_role = replica``, so the triggers of
electrified tables treat its inserts as client writes (the builtin role stays ``origin``: the
plain-ENABLE triggers still fire but their WHEN clauses are false). Each client transaction is
one Postgres transaction sent as one simple query, one round trip: ``BEGIN``, the upsert of the
client's row in ``electric.acknowledged_client_lsns``, per change the main-table ``INSERT`` then
the shadow ``INSERT``, ``COMMIT``. Small transactions of different clients waiting for the same
connection go together in one simple query (each still its own ``BEGIN`` … ``COMMIT``, so each
commits or fails alone): one round trip and one wake-up of the backend for all of them, and one
WAL flush: all but the last commit with ``synchronous_commit = off``, and the last one's
synchronous commit flushes the WAL past their commit records too, before the query returns (and
before logical replication, which reads flushed WAL only, can echo any of them). When one of them
is refused, Postgres stops there; those before it committed (their acknowledged positions, read
again and then flushed, say so) and the others are written again one by one.

Large transactions (``copy_threshold`` changes or more) go another way, measured faster by
``benches/writes.py``: per run of consecutive changes to one table (no key twice in a run), the
main rows and then the shadow rows are each sent by binary ``COPY`` (encoded by pgpq from Arrow)
into a temporary staging table of text arrays, then moved with one ``INSERT … SELECT … ORDER BY``
that casts each value to its column's type. The triggers fire per row in the same order as with
row inserts; what is saved is a statement (parse, plan, statement-level triggers) per row. All
main rows of a run are parked before its shadow rows resolve them, which is the same as
interleaving them as long as no key repeats within the run.

Exactly once: the acknowledged position is the idempotency record. Before writing a client's
first transaction (and after any connection loss, when it is unknown whether the last ``COMMIT``
landed) the writer reads that row; a transaction at or below it is a replay and is not written
again. A lost connection is re-opened with a 1-10 s backoff and the transaction retried; a
transaction Postgres refuses (a constraint, a value) raises :class:`WriteRejectedError`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import msgspec
import pgpq
import pyarrow as pa
import trio

from .._log import get_logger
from ..pg import Connection, ConnectionLostError, ConnectParams, PgConnectError, PgError, connect
from .model import ClientWrite, RowInsert, WriteRejectedError

__all__ = [
    "APPLICATION_NAME",
    "CONNECTIONS",
    "COPY_THRESHOLD",
    "DirectWriter",
    "DirectWriterStatistics",
    "QueuedWrite",
    "WriteAbandonedError",
    "batch_sql",
    "transaction_sql",
]

log = get_logger(__name__)

#: The ``application_name`` of the writer's connection.
APPLICATION_NAME = "electric-trio writer"
RECONNECT_BACKOFF_MIN = 1.0
RECONNECT_BACKOFF_MAX = 10.0
_ACK_TABLE = ("electric", "acknowledged_client_lsns")
_SETUP = "SET electric.session_replication_role = replica; SET standard_conforming_strings = on"
# Errors worth a retry of the same transaction: a serialization failure or a deadlock with a
# concurrent Postgres-side writer.
_RETRY_SQLSTATES = ("40001", "40P01")
#: Connections of a writer by default. Fewer connections make larger batches (one round trip
#: and one WAL flush each): measured by ``benches/writes.py`` (50 clients, 8 transactions each
#: awaiting their echo) against 16 and 2, 4 cost Postgres and the service the least CPU per
#: transaction but for 2, which held the writer alone back; a large transaction (COPY) holds up
#: the clients sharing its connection.
CONNECTIONS = 4
#: Client transactions with at least this many changes are written through COPY.
COPY_THRESHOLD = 1000
#: At most this many transactions sent together in one simple query.
_BATCH_MAX = 32
#: A transaction with an id and nothing else: its synchronous commit waits until the WAL is
#: flushed past its commit record, so past every commit before it.
_FLUSH = "BEGIN; SELECT pg_current_xact_id(); COMMIT"
_STAGE = "electric_trio_write_stage"
_STAGE_SETUP = f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (ord int4, vals text[])"
_STAGE_SCHEMA = pa.schema([("ord", pa.int32()), ("vals", pa.list_(pa.string()))])


class DirectWriterStatistics(msgspec.Struct, frozen=True):
    """What a :class:`DirectWriter` did so far."""

    transactions: int
    rows: int
    replays: int
    reconnects: int


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str | None) -> str:
    if value is None:
        return "NULL"
    return "'" + value.replace("'", "''") + "'"


class _Statements:
    """SQL text of row inserts, with the ``INSERT INTO … (columns) VALUES`` head cached."""

    def __init__(self) -> None:
        self._heads: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def head(self, row: RowInsert) -> str:
        key = (row.schema, row.table, row.columns)
        head = self._heads.get(key)
        if head is None:
            columns = ", ".join(_ident(c) for c in row.columns)
            head = f"INSERT INTO {_ident(row.schema)}.{_ident(row.table)} ({columns}) VALUES ("
            if (row.schema, row.table) == _ACK_TABLE:
                head = head.replace(" (", " AS t (", 1)
            self._heads[key] = head
        return head

    def insert(self, row: RowInsert) -> str:
        values = ", ".join(
            ["NULL" if v is None else "'" + v.replace("'", "''") + "'" for v in row.values]
        )  # _literal, inline: the writer's hottest loop
        sql = self.head(row) + values + ")"
        if (row.schema, row.table) == _ACK_TABLE:
            sql += " ON CONFLICT (client_id) DO UPDATE SET lsn = excluded.lsn"
        return sql

    def transaction(self, rows: Iterable[RowInsert], *, flush: bool = True) -> str:
        """``BEGIN`` … ``COMMIT``; with ``flush`` False its commit does not wait for the WAL
        flush (``synchronous_commit = off`` for it alone): only for a transaction a later
        synchronous commit on the same connection follows before anyone is told it is
        written."""
        begin = "BEGIN;\n" if flush else "BEGIN;\nSET LOCAL synchronous_commit = off;\n"
        return begin + "".join(self.insert(r) + ";\n" for r in rows) + "COMMIT"

    def batch(self, writes: Sequence[ClientWrite]) -> str:
        """One simple query of ``writes``, each its own transaction; only the last waits for
        the WAL flush, which makes the others durable too (their commit records come before
        its own in the WAL): one flush for the batch, not one each."""
        last = len(writes) - 1
        return ";\n".join(
            self.transaction(w.inserts, flush=i == last) for i, w in enumerate(writes)
        )


def _runs(changes: Sequence[RowInsert]) -> list[tuple[list[RowInsert], list[RowInsert]]]:
    """``changes`` (main, shadow, main, shadow…) cut into runs of one table with distinct keys:
    (main rows, shadow rows) per run."""
    runs: list[tuple[list[RowInsert], list[RowInsert]]] = []
    keys: set[tuple[str | None, ...]] = set()
    table: tuple[str, str, tuple[str, ...]] | None = None
    for main, shadow in zip(changes[::2], changes[1::2], strict=True):
        key = shadow.values[8:]  # the key columns; the others are NULL
        where = (main.schema, main.table, main.columns)
        if where != table or key in keys:
            runs.append(([], []))
            keys.clear()
            table = where
        keys.add(key)
        runs[-1][0].append(main)
        runs[-1][1].append(shadow)
    return runs


def _copy_data(rows: Sequence[RowInsert]) -> list[bytes]:
    """Binary COPY data of the staging table for ``rows``."""
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array(range(len(rows)), pa.int32()),
            pa.array([r.values for r in rows], pa.list_(pa.string())),
        ],
        schema=_STAGE_SCHEMA,
    )
    encoder = pgpq.ArrowToPostgresBinaryEncoder(batch.schema)
    return [
        bytes(encoder.write_header()),
        bytes(encoder.write_batch(batch)),
        bytes(encoder.finish()),
    ]


def transaction_sql(write: ClientWrite) -> str:
    """The one simple query that writes ``write`` (``BEGIN`` … ``COMMIT``)."""
    return _Statements().transaction(write.inserts)


def batch_sql(writes: Sequence[ClientWrite]) -> str:
    """The one simple query that writes ``writes`` together, each its own transaction."""
    return _Statements().batch(writes)


def client_position(lsn: bytes) -> int:
    """A client's position as a number (its LSN bytes, big-endian)."""
    return int.from_bytes(lsn, "big")


def _connection_problem(error: BaseException) -> bool:
    """Whether ``error`` means the connection (not the transaction) failed."""
    if isinstance(error, ConnectionLostError | PgConnectError):
        return True
    if isinstance(error, PgError):
        return error.severity in ("FATAL", "PANIC") or (error.sqlstate or "").startswith(
            ("08", "57")
        )
    return isinstance(error, OSError | trio.TooSlowError | trio.BrokenResourceError)


class DirectWriter:
    """Writes client transactions on Postgres connections of its own.

    Each client's transactions go, one at a time and in the order :meth:`write` is called, on
    one of ``connections`` connections (chosen by client id): a client's order is kept, and
    the transactions of different clients commit in parallel (their fsyncs shared by Postgres's
    group commit). Connections are opened on first use and re-opened when lost.
    """

    def __init__(
        self,
        params: ConnectParams,
        *,
        copy_threshold: int | None = COPY_THRESHOLD,
        connections: int = CONNECTIONS,
    ) -> None:
        """``copy_threshold``: transactions with at least this many changes go through COPY
        (None: never)."""
        if connections < 1:
            raise ValueError("a direct writer needs at least one connection")
        self._params = msgspec.structs.replace(params, application_name=APPLICATION_NAME)
        self.copy_threshold = copy_threshold
        self._statements = _Statements()
        self._lanes = [_Lane(self) for _ in range(connections)]
        self._closed = False
        self._transactions = self._rows = self._replays = self._reconnects = 0

    @property
    def statistics(self) -> DirectWriterStatistics:
        return DirectWriterStatistics(
            transactions=self._transactions,
            rows=self._rows,
            replays=self._replays,
            reconnects=self._reconnects,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """``task_status.started()``, then closes the connections when cancelled."""
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        for lane in self._lanes:
            await lane.drop()

    async def write(self, write: ClientWrite) -> None:
        """Commits ``write`` (unless Postgres has it already); retries over connection losses
        until it is committed or the caller is cancelled.

        Small transactions waiting for the same connection are sent together, each its own
        ``BEGIN`` … ``COMMIT``, in one simple query (one round trip for all of them); when that
        fails, each is written again on its own (the acknowledged positions tell which of them
        committed)."""
        await self.complete(self.enqueue(write))

    def enqueue(self, write: ClientWrite) -> QueuedWrite:
        """Queues ``write`` behind its client's earlier ones; :meth:`complete` then waits for
        it. A client may have several queued at once: they are written in this order, and none
        after one that is refused or given up."""
        lane = self._lanes[zlib.crc32(write.client_id.encode()) % len(self._lanes)]
        changes = (len(write.inserts) - 1) // 2
        batchable = self.copy_threshold is None or changes < self.copy_threshold
        item = QueuedWrite(write, lane, batchable)
        lane.queue.append(item)
        return item

    async def complete(self, item: QueuedWrite) -> None:
        """Writes ``item`` (and whatever of its lane's queue it can take along) unless another
        caller did; raises :class:`WriteRejectedError` when it was refused, or an earlier
        transaction of its client was."""
        if item.done:
            self.complete_done(item)
            return
        lane = item.lane
        delay = RECONNECT_BACKOFF_MIN
        try:
            async with lane.lock:
                while not item.done:
                    if item.batchable and await lane.write_batch():
                        continue
                    # On its own: first the client's earliest transaction still queued.
                    if item.done:
                        break  # committed before a failure in the batch
                    target = next(
                        q
                        for q in lane.queue
                        if not q.done and q.write.client_id == item.write.client_id
                    )
                    try:
                        await lane.write_once(target.write)
                        target.done = True
                        continue
                    except Exception as e:
                        if isinstance(e, PgError) and not _connection_problem(e):
                            await lane.rollback()
                            if e.sqlstate in _RETRY_SQLSTATES:
                                continue
                            rejected = WriteRejectedError(
                                f"{e.message} (SQLSTATE {e.sqlstate})" if e.sqlstate else e.message
                            )
                            rejected.__cause__ = e
                            target.fail(rejected)
                            continue
                        if not _connection_problem(e):
                            raise
                        await lane.drop()
                        log.warning(
                            "the direct writer lost its connection; retrying",
                            client_id=target.write.client_id,
                            error=str(e),
                            retry_in=delay,
                        )
                    await trio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_BACKOFF_MAX)
        finally:
            if not item.done:
                item.fail(None)
            try:
                lane.queue.remove(item)
            except ValueError:
                pass
        if item.error is not None:
            raise item.error

    def complete_done(self, item: QueuedWrite) -> None:
        """:meth:`complete` of an ``item`` already done (written along with another): no
        wait."""
        assert item.done
        try:
            item.lane.queue.remove(item)
        except ValueError:
            pass
        if item.error is not None:
            raise item.error


class WriteAbandonedError(Exception):
    """A queued transaction not written because an earlier one of its client was not (refused,
    or given up by its caller)."""


class QueuedWrite:
    """A transaction queued for a connection of a :class:`DirectWriter`."""

    __slots__ = ("batchable", "done", "error", "lane", "write")

    def __init__(self, write: ClientWrite, lane: _Lane, batchable: bool) -> None:
        self.write = write
        self.lane = lane
        #: Whether it may be sent together with others (cleared once a batch holding it failed).
        self.batchable = batchable
        #: Committed (or found already written), refused, or given up.
        self.done = False
        #: Why it was not written.
        self.error: WriteRejectedError | WriteAbandonedError | None = None

    def fail(self, error: WriteRejectedError | None) -> None:
        """Not written (``error`` None: given up by its caller); nor is any later transaction of
        its client queued."""
        self.done = True
        self.error = error
        later = False
        for queued in self.lane.queue:
            if queued is self:
                later = True
            elif later and not queued.done and queued.write.client_id == self.write.client_id:
                queued.done = True
                queued.error = WriteAbandonedError(
                    "an earlier transaction of the client was not written"
                )


class _Lane:
    """One connection of a :class:`DirectWriter` and what is known on it."""

    def __init__(self, writer: DirectWriter) -> None:
        self.writer = writer
        self.lock = trio.Lock()
        self.conn: Connection | None = None
        #: Each client's position known to be in Postgres (-1: none).
        self.acked: dict[str, int] = {}
        #: Column types of the tables written through COPY.
        self.types: dict[tuple[str, str], dict[str, str]] = {}
        #: Transactions waiting for this lane, in the order :meth:`DirectWriter.write` got them.
        self.queue: list[QueuedWrite] = []

    async def write_batch(self) -> bool:
        """Writes the small transactions waiting together; False (nothing done) when there are
        fewer than two. A failure leaves every transaction of the batch not known to be
        committed to be written on its own."""
        batch: list[QueuedWrite] = []
        blocked: set[str] = set()
        for queued in self.queue:
            client_id = queued.write.client_id
            if queued.done or client_id in blocked:
                continue
            if not queued.batchable:
                blocked.add(client_id)  # its later ones wait for its outcome
                continue
            batch.append(queued)
            if len(batch) == _BATCH_MAX:
                break
        if len(batch) < 2:
            return False
        writer = self.writer
        try:
            conn = await self.connection()
            for queued in batch:
                if self.acked.get(queued.write.client_id) is None:
                    await self.read_acked(conn, queued.write.client_id)
            for queued in batch:
                queued.done = self.replay(queued.write)
            batch = [q for q in batch if not q.done]
            writes = [q.write for q in batch]
            if writes:
                await conn.execute(writer._statements.batch(writes))
        except BaseException as e:
            for queued in batch:
                queued.batchable = False
                # Which of them committed is unknown until their rows are read again.
                self.acked.pop(queued.write.client_id, None)
            if not isinstance(e, PgError) and self.conn is not None:
                if self.conn.transaction_status != "I":
                    await self.drop()  # cancelled half-way: closing aborts what was begun
            elif isinstance(e, PgError) and not _connection_problem(e):
                await self.rollback()
                await self.committed_before(e, batch)
                return False  # the others written on their own, the refused one rejected
            raise
        for w in writes:
            self.acked[w.client_id] = client_position(w.lsn)
            writer._transactions += 1
            writer._rows += len(w.inserts) - 1
        for queued in batch:
            queued.done = True
        return True

    async def committed_before(self, error: PgError, batch: list[QueuedWrite]) -> None:
        """After ``error`` stopped a batch: marks done the transactions that committed before
        it (their acknowledged positions read again)."""
        conn = self.conn
        if conn is None or conn.closed or conn.transaction_status != "I":
            return
        for queued in batch:
            write = queued.write
            if client_position(write.lsn) > await self.read_acked(conn, write.client_id):
                return  # the refused one; nothing after it ran
            queued.done = True
            self.writer._transactions += 1
            self.writer._rows += len(write.inserts) - 1

    async def read_acked(self, conn: Connection, client_id: str) -> int:
        """The client's position in Postgres, once durable: a batch's transactions before its
        last commit without waiting for the flush, so one seen committed here (the batch
        failed before its end, or its outcome was lost) may not be flushed yet; the
        synchronous commit after the read flushes the WAL past it."""
        row = await conn.fetchrow(
            "SELECT lsn FROM electric.acknowledged_client_lsns WHERE client_id = $1", client_id
        )
        await conn.execute(_FLUSH)
        acked = self.acked[client_id] = -1 if row is None else client_position(row[0])
        return acked

    def replay(self, write: ClientWrite) -> bool:
        """Whether ``write`` is at or below what Postgres has of its client (logged, counted)."""
        if client_position(write.lsn) > self.acked[write.client_id]:
            return False
        self.writer._replays += 1
        log.info(
            "client transaction already written, skipped",
            client_id=write.client_id,
            lsn=write.lsn.hex(),
        )
        return True

    async def write_once(self, write: ClientWrite) -> None:
        writer = self.writer
        conn = await self.connection()
        if self.acked.get(write.client_id) is None:
            await self.read_acked(conn, write.client_id)
        if self.replay(write):
            return
        changes = (len(write.inserts) - 1) // 2
        try:
            if writer.copy_threshold is not None and changes >= writer.copy_threshold:
                await self.copy_transaction(conn, write)
            else:
                await conn.execute(writer._statements.transaction(write.inserts))
        except BaseException as e:
            # Whether the COMMIT landed is unknown until the row is read again.
            self.acked.pop(write.client_id, None)
            if not isinstance(e, PgError) and conn.transaction_status != "I":
                await self.drop()  # cancelled half-way: closing aborts what was begun
            raise
        self.acked[write.client_id] = client_position(write.lsn)
        writer._transactions += 1
        writer._rows += len(write.inserts) - 1

    async def copy_transaction(self, conn: Connection, write: ClientWrite) -> None:
        await conn.execute("BEGIN;\n" + self.writer._statements.insert(write.inserts[0]))
        for mains, shadows in _runs(write.inserts[1:]):
            for rows in (mains, shadows):
                first = rows[0]
                types = await self.column_types(conn, first)
                await conn.execute(f"TRUNCATE {_STAGE}")
                await conn.copy_in(f"COPY {_STAGE} FROM STDIN (FORMAT binary)", _copy_data(rows))
                columns = ", ".join(_ident(c) for c in first.columns)
                values = ", ".join(f"vals[{i}]::{types[c]}" for i, c in enumerate(first.columns, 1))
                await conn.execute(
                    f"INSERT INTO {_ident(first.schema)}.{_ident(first.table)} ({columns})"
                    f" SELECT {values} FROM {_STAGE} ORDER BY ord"
                )
        await conn.execute("COMMIT")

    async def column_types(self, conn: Connection, row: RowInsert) -> dict[str, str]:
        """The types of ``row``'s table's columns (read again when one is unknown: a column
        was added)."""
        key = (row.schema, row.table)
        types = self.types.get(key)
        if types is None or any(c not in types for c in row.columns):
            found = await conn.fetch(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)"
                " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0"
                " AND NOT a.attisdropped",
                row.schema,
                row.table,
            )
            types = self.types[key] = {name: type_ for name, type_ in found}
        return types

    async def connection(self) -> Connection:
        writer = self.writer
        if writer._closed:
            raise ConnectionLostError("the direct writer is closed")
        if self.conn is None or self.conn.closed:
            params = writer._params
            # Shielded and bounded: a connect cancelled half-way would leak its socket.
            with trio.CancelScope(shield=True), trio.fail_after(params.connect_timeout + 5):
                conn = await connect(params)
                try:
                    await conn.execute(f"{_SETUP}; {_STAGE_SETUP}")
                except BaseException:
                    await conn.aclose()
                    raise
            if self.conn is not None:
                writer._reconnects += 1
            self.conn = conn
            self.acked.clear()
            self.types.clear()
        return self.conn

    async def rollback(self) -> None:
        conn = self.conn
        if conn is not None and not conn.closed and conn.transaction_status != "I":
            try:
                await conn.execute("ROLLBACK")
            except Exception:
                await self.drop()

    async def drop(self) -> None:
        conn = self.conn
        self.acked.clear()
        if conn is not None:
            # keep the object: a later connect counts as a reconnect
            with trio.CancelScope(shield=True):
                await conn.aclose()
