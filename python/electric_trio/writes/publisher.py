"""The logical-replication publisher: Postgres subscribes to us and pulls client writes.

In ``ELECTRIC_WRITE_TO_PG_MODE=logical_replication`` (the default) the service speaks the server
side of Postgres's streaming replication protocol on ``LOGICAL_PUBLISHER_PORT``. Postgres's own
apply worker, for the subscription ``postgres_1`` that :meth:`LogicalPublisher.run` creates,
connects here and receives each client transaction as pgoutput (``Begin``, ``Relation``s,
``Insert``s in text form, ``Commit``), applying it with ``session_replication_role = replica``
so that the triggers of §6 merge it (server-behaviour.md §7).

No acknowledged write is lost: a transaction stays queued until Postgres reports it flushed
(the flush position of its standby status updates reaches the transaction's end LSN). A
reconnecting apply worker asks to start from its replication origin's progress, which Postgres
commits atomically with each applied transaction; everything after that position is sent again
and nothing before it, so a transaction is applied exactly once. LSNs are our own counter,
started above the origin's progress at each start.

Only Postgres's subscription gets in (the original let anyone who could reach the port stream
from it): the subscription's connection string carries a password made at each start, checked
with SCRAM-SHA-256.

What Postgres sends us (15 and 18 alike, as logged here): the backend running ``ALTER
SUBSCRIPTION … REFRESH PUBLICATION`` connects, runs ``SELECT pg_catalog.set_config(
'search_path', '', false)`` and the ``pg_publication_tables`` query, and leaves; the apply
worker runs the ``set_config``, ``IDENTIFY_SYSTEM`` and ``START_REPLICATION SLOT "postgres_1"
LOGICAL <origin's progress> (proto_version '1', publication_names '"electric_publication"')``
(protocol version 1 because our ``server_version`` is not a number), then streams, answering
keepalives with standby status updates. Its ``write`` position is the end of the last
transaction it committed: :meth:`LogicalPublisher.write` returns on it. The apply worker runs
with ``session_replication_role = replica`` and an empty ``search_path``, so foreign keys are
not checked by it: a transaction touching a table with foreign keys is tried first on our own
connection (as the direct writer runs it) and rolled back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import math
import re
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec
import trio

from .. import _native
from .._log import get_logger
from ..errors import ElectricError
from ..http._server import open_http_listeners
from ..pg import Connection, PgError, connect, format_lsn, parse_lsn
from ..pg._replication import PG_EPOCH_OFFSET_MICROS, pg_now
from .direct import client_position
from .model import ClientWrite, RowInsert, WriteRejectedError

if TYPE_CHECKING:
    from ..ddlx.history import SchemaMigration
    from ..service import Service

__all__ = ["SUBSCRIPTION", "LogicalPublisher", "PublisherStats"]

log = get_logger(__name__)

#: The subscription's name, the connector's name and the apply worker's ``application_name``.
SUBSCRIPTION = "postgres_1"
PUBLICATION = "electric_publication"
KEEPALIVE_INTERVAL = 10.0
#: Client transactions waiting for Postgres; ``write`` waits while this many are queued.
MAX_QUEUED = 10_000
_SETUP_BACKOFF_MIN = 1.0
_SETUP_BACKOFF_MAX = 10.0
#: How long a connecting client may take to send its startup packet and authenticate.
_STARTUP_TIMEOUT = 30.0
_SCRAM = "SCRAM-SHA-256"
_SCRAM_ITERATIONS = 4096
_TEXT = 25
_INT4 = 23
_OID = 26
_CHAR = 18
_BOOL = 16
_ACKS_TABLE = ("electric", "acknowledged_client_lsns")
_READY_IDLE = b"Z\x00\x00\x00\x05I"


class PublisherStats(msgspec.Struct, frozen=True):
    """What the publisher has done so far."""

    #: Transactions not yet flushed by Postgres.
    queued: int
    #: Transactions sent (a transaction sent again after a reconnection counts again).
    sent: int
    #: Transactions Postgres has committed.
    applied: int
    #: Client transactions at or below the client's position already written: skipped.
    replays: int
    #: Transactions Postgres refused.
    rejected: int
    #: The highest end LSN Postgres reported flushed.
    flushed_lsn: int
    #: The apply worker's connections that reached ``START_REPLICATION``.
    streams: int


class _Queued:
    """A client transaction with its LSNs, until Postgres has flushed it."""

    __slots__ = ("after_lsn", "applied", "end_lsn", "error", "write")

    def __init__(self, write: ClientWrite, after_lsn: int) -> None:
        self.write = write
        self.after_lsn = after_lsn
        self.end_lsn = after_lsn + len(write.inserts) + 3
        #: Postgres has committed it.
        self.applied = False
        #: Why Postgres refused it (it then leaves the queue).
        self.error: str | None = None


class _TableInfo(msgspec.Struct, frozen=True, gc=False):
    oid: int
    replica_identity: str
    #: name -> (type oid, type modifier, part of the replica identity)
    columns: dict[str, tuple[int, int, bool]]


_Relation = tuple[int, str, str, str, list[tuple[str, int, int, bool]]]


class _Refused(ElectricError):
    """A connection we end with a FATAL error (already sent)."""


class LogicalPublisher:
    """The publisher side of the ``postgres_1`` subscription; a :class:`~.model.Writer`."""

    def __init__(self, service: Service) -> None:
        self.service = service
        config = service.config
        self.host = config.logical_publisher_host or "127.0.0.1"
        #: The bound port (the real one when ``LOGICAL_PUBLISHER_PORT=0``), once listening.
        self.port = config.logical_publisher_port
        self._database = config.database
        self._password = secrets.token_hex(24)
        self._scram_salt = secrets.token_bytes(16)
        self._scram_salted = hashlib.pbkdf2_hmac(
            "sha256", self._password.encode(), self._scram_salt, _SCRAM_ITERATIONS
        )
        self._queue: deque[_Queued] = deque()
        self._lsn = 0  # the last LSN given to a queued transaction
        self._queue_changed = trio.Event()
        self._tables: dict[tuple[str, str], _TableInfo] = {}
        self._pg: Connection | None = None
        self._pg_lock = trio.Lock()
        self._refresh_lock = trio.Lock()
        self._refresh_needed = trio.Event()
        #: The tables Postgres's subscription has since our last successful REFRESH.
        self._subscribed: frozenset[tuple[str, str]] = frozenset()
        self._sessions: dict[int, _Session] = {}
        self._session_ids = itertools.count(1)
        self._streaming: _Session | None = None
        #: Per client: the highest position queued or found in ``acknowledged_client_lsns``.
        self._positions: dict[str, int] = {}
        #: The highest end LSN Postgres has committed (a status update's write position).
        self._applied_lsn = 0
        self._sent = 0
        self._applied = 0
        self._replays = 0
        self._rejected = 0
        self._flushed = 0
        self._streams = 0

    # ---- the Writer interface ----------------------------------------------------------

    async def write(self, write: ClientWrite) -> None:
        """Queues ``write`` for the apply worker and returns once Postgres has committed it;
        raises :class:`WriteRejectedError` when Postgres refuses it. A transaction at or below
        the client's position (queued before, or in ``electric.acknowledged_client_lsns``) is
        a replay and is not sent again. Waits while :data:`MAX_QUEUED` transactions are queued.
        """
        position = client_position(write.lsn)
        known = self._positions.get(write.client_id)
        if known is None:
            known = await self._acknowledged_position(write.client_id)
            known = max(known, self._positions.get(write.client_id, -1))
            self._positions[write.client_id] = known
        if position <= known:
            self._replays += 1
            log.info(
                "client transaction already written, skipped",
                client_id=write.client_id,
                lsn=write.lsn.hex(),
            )
            return
        if self._has_foreign_keys(write):
            # The apply worker's replica role skips foreign key checks: check them first.
            error = await self._try_transaction(write, foreign_keys=True)
            if error is not None:
                self._rejected += 1
                raise WriteRejectedError(error)
        while len(self._queue) >= MAX_QUEUED:
            await self._queue_changed.wait()
        q = _Queued(write, self._lsn)
        self._queue.append(q)
        self._lsn = q.end_lsn
        self._positions[write.client_id] = position
        self._wake()
        while not q.applied:
            if q.error is not None:
                raise WriteRejectedError(q.error)
            await self._queue_changed.wait()

    def _has_foreign_keys(self, write: ClientWrite) -> bool:
        history = self.service.migrations
        if history is None:
            return False
        for insert in write.inserts:
            table = history.schema.table(insert.schema, insert.table)
            if table is not None and table.foreign_keys:
                return True
        return False

    async def _acknowledged_position(self, client_id: str) -> int:
        delay = _SETUP_BACKOFF_MIN
        while True:
            try:
                async with self._pg_lock:
                    conn = await self._connection()
                    row = await conn.fetchrow(
                        "SELECT lsn FROM electric.acknowledged_client_lsns WHERE client_id = $1",
                        client_id,
                    )
                return -1 if row is None else client_position(row[0])
            except (OSError, trio.BrokenResourceError, PgError) as e:
                if isinstance(e, PgError) and e.sqlstate is not None:
                    raise
                log.warning("cannot read a client's position; retrying", error=str(e))
                await self._drop_pg()
                await trio.sleep(delay)
                delay = min(delay * 2, _SETUP_BACKOFF_MAX)

    @property
    def streaming(self) -> bool:
        """Whether Postgres's apply worker is connected and streaming from us."""
        return self._streaming is not None

    def stats(self) -> PublisherStats:
        return PublisherStats(
            queued=len(self._queue),
            sent=self._sent,
            applied=self._applied,
            replays=self._replays,
            rejected=self._rejected,
            flushed_lsn=self._flushed,
            streams=self._streams,
        )

    def _wake(self) -> None:
        self._queue_changed.set()
        self._queue_changed = trio.Event()

    # ---- running -----------------------------------------------------------------------

    @property
    def conninfo(self) -> str:
        """The subscription's connection string (it holds the password: do not log it)."""
        timeout = max(1, math.ceil(self._database.connect_timeout))
        return (
            f"host={_conninfo_value(self.host)} port={self.port} dbname=electric"
            f" connect_timeout={timeout} password={self._password}"
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listens, sets the subscription up (create, enable, refresh), then serves the apply
        worker until cancelled. ``task_status.started()`` once Postgres has been told where we
        are and the subscription is enabled."""
        config = self.service.config
        listeners = await open_http_listeners(
            config.logical_publisher_port, use_ipv6=config.use_ipv6
        )
        self.port = listeners[0].socket.getsockname()[1]
        log.info("logical publisher listening", port=self.port, host=self.host)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            try:
                await self._setup()
                if self.service.migrations is not None:
                    self.service.migrations.on_applied(self._migrations_applied)
                task_status.started()
                await self._refresh_on_demand()
            finally:
                if self._pg is not None:
                    with trio.CancelScope(shield=True):
                        await self._pg.aclose()

    async def _setup(self) -> None:
        """Creates (or points at us) the subscription, enables and refreshes it; retried with
        a 1-10 s backoff while Postgres refuses."""
        delay = _SETUP_BACKOFF_MIN
        while True:
            try:
                await self._create_subscription()
                await self._refresh()
                return
            except (PgError, OSError, trio.BrokenResourceError) as e:
                log.warning(
                    "cannot set up the subscription; retrying",
                    subscription=SUBSCRIPTION,
                    error=str(e),
                    retry_in=delay,
                )
                await self._drop_pg()
                await trio.sleep(delay)
                delay = min(delay * 2, _SETUP_BACKOFF_MAX)

    async def _create_subscription(self) -> None:
        async with self._pg_lock:
            await self._create_subscription_locked()

    async def _create_subscription_locked(self) -> None:
        conn = await self._connection()
        conninfo = _sql_literal(self.conninfo)
        try:
            await conn.execute(
                f'CREATE SUBSCRIPTION "{SUBSCRIPTION}" CONNECTION {conninfo}'
                f' PUBLICATION "{PUBLICATION}" WITH (connect = false)'
            )
            log.info("created the subscription", subscription=SUBSCRIPTION)
        except PgError as e:
            if e.sqlstate != "42710":  # duplicate_object
                raise
            # The password changes at each start, and the host or port may have too.
            await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" CONNECTION {conninfo}')
        # A subscription's apply worker commits with synchronous_commit = off by default, and
        # the walsender decodes only flushed WAL: each client write then waited for the WAL
        # writer (wal_writer_delay, 200 ms) before coming back to its client, which held 50
        # writing clients to about 250 transactions/s (benches/writes) instead of about 1,000.
        await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" SET (synchronous_commit = on)')
        # Start our LSNs above whatever Postgres has applied from us before (a restart).
        progress = await self._origin_progress(conn)
        if progress > self._lsn:
            self._renumber(progress)
        # ENABLE wakes Postgres's launcher even when the subscription is enabled already; on
        # PostgreSQL 15 a wake-up within wal_retrieve_retry_interval (5 s) of the last apply
        # worker start waits a whole interval again: after a restart of ours, the worker (which
        # failed while we were away) came back up to 5 s later than without it.
        enabled = await conn.fetchval(
            "SELECT subenabled FROM pg_catalog.pg_subscription WHERE subname = $1 AND subdbid ="
            " (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
            SUBSCRIPTION,
        )
        if not enabled:
            await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" ENABLE')

    async def _origin_progress(self, conn: Connection) -> int:
        """The end LSN of the last transaction Postgres applied from us (0 if none)."""
        try:
            value = await conn.fetchval(
                "SELECT s.remote_lsn::text FROM pg_catalog.pg_replication_origin_status s"
                " JOIN pg_catalog.pg_subscription sub ON s.external_id = 'pg_' || sub.oid"
                " WHERE sub.subname = $1 AND sub.subdbid ="
                " (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
                SUBSCRIPTION,
            )
        except PgError as e:
            log.warning("cannot read the subscription's progress", error=e.message)
            return 0
        return parse_lsn(value) if value else 0

    def _renumber(self, after: int) -> None:
        """Gives the queued transactions new LSNs after ``after``, in order."""
        lsn = after
        for q in self._queue:
            q.after_lsn = lsn
            q.end_lsn = lsn + len(q.write.inserts) + 3
            lsn = q.end_lsn
        self._lsn = lsn

    async def _refresh(self, unless_subscribed: set[tuple[str, str]] | None = None) -> None:
        """``ALTER SUBSCRIPTION … REFRESH PUBLICATION``: Postgres asks us (on a connection of
        its own) which tables we publish and subscribes to new ones. Nothing to do when the
        subscription already has every table of ``unless_subscribed``."""
        async with self._refresh_lock:
            if unless_subscribed is not None and unless_subscribed <= self._subscribed:
                return
            tables = frozenset(self._published_tables())
            async with self._pg_lock:
                conn = await self._connection()
                await conn.execute(
                    f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" REFRESH PUBLICATION'
                    " WITH (copy_data = false)"
                )
            self._subscribed = tables
            log.info("refreshed the subscription", subscription=SUBSCRIPTION, tables=len(tables))

    def _migrations_applied(self, migrations: list[SchemaMigration]) -> None:
        self._tables.clear()  # column types may have changed
        self._refresh_needed.set()

    async def _refresh_on_demand(self) -> None:
        """REFRESH after each batch of migrations (retried with a backoff while it fails)."""
        while True:
            await self._refresh_needed.wait()
            self._refresh_needed = trio.Event()
            await self._refresh_until_done()

    async def _refresh_until_done(
        self, unless_subscribed: set[tuple[str, str]] | None = None
    ) -> None:
        delay = _SETUP_BACKOFF_MIN
        while True:
            try:
                await self._refresh(unless_subscribed)
                return
            except (PgError, OSError, trio.BrokenResourceError) as e:
                log.warning("cannot refresh the subscription; retrying", error=str(e))
                await self._drop_pg()
                await trio.sleep(delay)
                delay = min(delay * 2, _SETUP_BACKOFF_MAX)

    async def _connection(self) -> Connection:
        from ..service import connect_params

        if self._pg is None or self._pg.closed:
            self._pg = await connect(connect_params(self._database))
        return self._pg

    async def _drop_pg(self) -> None:
        if self._pg is not None:
            pg, self._pg = self._pg, None
            with trio.CancelScope(shield=True):
                await pg.aclose()

    # ---- what we publish ---------------------------------------------------------------

    def _published_tables(self) -> list[tuple[str, str]]:
        """Electrified tables, their shadow tables and ``electric.acknowledged_client_lsns``."""
        tables: list[tuple[str, str]] = []
        history = self.service.migrations
        if history is not None:
            for t in history.schema.tables:
                tables.append((t.schema, t.name))
                tables.append(("electric", f"shadow__{t.schema}__{t.name}"))
        tables.append(_ACKS_TABLE)
        return tables

    async def _table_info(self, schema: str, table: str, columns: tuple[str, ...]) -> _TableInfo:
        """The table's oid and its columns' types, from Postgres (cached until a migration)."""
        info = self._tables.get((schema, table))
        if info is not None and all(c in info.columns for c in columns):
            return info
        async with self._pg_lock:
            rows = await self._query_table(schema, table)
        if not rows:
            raise ElectricError(f'table "{schema}"."{table}" does not exist in Postgres')
        info = _TableInfo(
            oid=int(rows[0][0]),
            replica_identity=str(rows[0][1]),
            columns={str(r[2]): (int(r[3]), int(r[4]), bool(r[5])) for r in rows},
        )
        self._tables[(schema, table)] = info
        return info

    async def _query_table(self, schema: str, table: str) -> list[Any]:
        delay = _SETUP_BACKOFF_MIN
        while True:
            try:
                conn = await self._connection()
                return await conn.fetch(
                    "SELECT c.oid::int8, c.relreplident::text, a.attname::text,"
                    " a.atttypid::int8, a.atttypmod,"
                    " c.relreplident = 'f' OR coalesce(a.attnum = ANY(i.indkey), false)"
                    " FROM pg_catalog.pg_class c"
                    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
                    " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
                    " LEFT JOIN pg_catalog.pg_index i"
                    "  ON i.indexrelid = pg_catalog.pg_get_replica_identity_index(c.oid)"
                    " WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0"
                    " AND NOT a.attisdropped ORDER BY a.attnum",
                    schema,
                    table,
                )
            except (OSError, trio.BrokenResourceError, PgError) as e:
                if isinstance(e, PgError) and e.sqlstate is not None:
                    raise
                log.warning("cannot read a table's columns; retrying", error=str(e))
                await self._drop_pg()
                await trio.sleep(delay)
                delay = min(delay * 2, _SETUP_BACKOFF_MAX)

    async def _relation(self, insert: RowInsert) -> _Relation:
        info = await self._table_info(insert.schema, insert.table, insert.columns)
        columns = [(c, *info.columns[c]) for c in insert.columns]
        return (info.oid, insert.schema, insert.table, info.replica_identity, columns)

    async def _ensure_subscribed(self, write: ClientWrite) -> None:
        """Postgres silently skips changes of tables its subscription lacks: refresh first."""
        missing = {(i.schema, i.table) for i in write.inserts} - self._subscribed
        if missing:
            await self._refresh_until_done(missing)
            missing -= self._subscribed
            if missing:
                log.error(
                    "client write to tables we do not publish; Postgres will skip those rows",
                    tables=sorted(f"{s}.{t}" for s, t in missing),
                )

    # ---- connections -------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        session = _Session(self, stream, next(self._session_ids))
        try:
            await session.run()
        except _Refused:
            pass
        except trio.TooSlowError:
            log.info("a publisher connection did not start in time", session=session.id)
        except (ElectricError, *_CONNECTION_ERRORS) as e:
            log.debug("publisher connection ended", session=session.id, error=str(e))
        except BaseExceptionGroup as group:
            if not all(isinstance(e, (ElectricError, *_CONNECTION_ERRORS)) for e in _leaves(group)):
                raise
            log.info("publisher connection ended", session=session.id, error=str(group))
        finally:
            if self._streaming is session:
                self._streaming = None
            self._sessions.pop(session.id, None)
            with trio.CancelScope(shield=True):
                await stream.aclose()

    def _progress(self, applied: int, flushed: int) -> None:
        """Postgres has committed everything up to ``applied`` and flushed it up to
        ``flushed``: flushed transactions are safe and leave the queue."""
        woken = False
        if applied > self._applied_lsn:
            self._applied_lsn = applied
            for q in self._queue:
                if q.end_lsn > applied:
                    break
                if not q.applied:
                    q.applied = True
                    self._applied += 1
                    woken = True
        if flushed > self._flushed:
            self._flushed = flushed
        while self._queue and self._queue[0].applied and self._queue[0].end_lsn <= flushed:
            self._queue.popleft()
            woken = True
        if woken:
            self._wake()

    async def _stream_lost(self, sent_lsn: int) -> None:
        """The apply worker's stream ended with transactions sent but not committed: the
        apply worker may have failed on the oldest one. Find out whether Postgres refuses it:
        then it leaves the queue and its writer gets the error; otherwise (the worker was
        stopped, the connection lost) the next stream sends it again."""
        head = next((q for q in self._queue if not q.applied), None)
        if head is None or head.end_lsn > sent_lsn:
            return
        error = await self._try_transaction(head.write)
        if error is None:
            return
        log.error(
            "Postgres refuses a client transaction; it is dropped",
            client_id=head.write.client_id,
            lsn=head.write.lsn.hex(),
            error=error,
        )
        head.error = error
        self._queue.remove(head)
        self._rejected += 1
        # The client's position goes back to what Postgres has: a replay is tried again.
        self._positions.pop(head.write.client_id, None)
        self._wake()

    async def _try_transaction(
        self, write: ClientWrite, *, foreign_keys: bool = False
    ) -> str | None:
        """Runs ``write`` as the apply worker would (replica role, empty search path,
        constraints checked), then rolls it back; returns Postgres's error, or None when it
        goes through. With ``foreign_keys`` it runs as the direct writer does instead: the
        replica role only for Electric's triggers, so foreign keys are checked too."""
        role = "electric.session_replication_role" if foreign_keys else "session_replication_role"
        statements = [
            "BEGIN",
            f"SET LOCAL {role} = replica",
            "SET LOCAL search_path = ''",  # the apply worker runs with an empty search path
        ]
        for i in write.inserts:
            if foreign_keys and (i.schema, i.table) == _ACKS_TABLE:
                continue  # its upsert trigger fires for the builtin replica role only
            columns = ", ".join(_ident(c) for c in i.columns)
            values = ", ".join("NULL" if v is None else _sql_literal(v) for v in i.values)
            statements.append(
                f"INSERT INTO {_ident(i.schema)}.{_ident(i.table)} ({columns}) VALUES ({values})"
            )
        statements.append("SET CONSTRAINTS ALL IMMEDIATE")
        async with self._pg_lock:
            try:
                conn = await self._connection()
                try:
                    await conn.execute(";".join(statements))
                finally:
                    with trio.CancelScope(shield=True):
                        await conn.execute("ROLLBACK")
            except PgError as e:
                if e.sqlstate is None or e.sqlstate.startswith(("08", "57", "40", "53", "55")):
                    return None  # the connection or the moment, not the transaction
                return f"{e.message} (SQLSTATE {e.sqlstate})"
            except (OSError, trio.BrokenResourceError) as e:
                log.warning("cannot check a transaction", error=str(e))
                await self._drop_pg()
        return None

    def _check_start(self, lsn: int) -> None:
        """A stream starts after ``lsn``, Postgres's progress: queued transactions that end at
        or before it are applied and are not sent again (they leave the queue with the next
        flush report). If ``lsn`` is ahead of our counter (someone moved the origin), the queue
        is renumbered after it, to be sent from its start."""
        if lsn > self._lsn:
            log.warning(
                "the subscriber is ahead of our LSNs; sending the whole queue again",
                requested=format_lsn(lsn),
                ours=format_lsn(self._lsn),
            )
            self._renumber(lsn)


class _Session:
    """One connection from Postgres: the startup, the simple queries, then the stream."""

    def __init__(self, publisher: LogicalPublisher, stream: trio.SocketStream, sid: int) -> None:
        self.publisher = publisher
        self.stream = stream
        self.id = sid
        self.secret = secrets.token_bytes(4)
        self.reader = _native.FrontendReader()
        self.params: dict[str, str] = {}
        self.send_lock = trio.Lock()
        self.cancel_scope: trio.CancelScope | None = None
        #: The end LSN of the last transaction sent in this stream.
        self.sent_lsn = 0
        self.sent_relations: dict[tuple[str, str], _Relation] = {}

    async def send(self, data: bytes) -> None:
        async with self.send_lock:
            await self.stream.send_all(data)

    async def _recv(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise trio.BrokenResourceError("the client closed the connection")
        self.reader.feed(data)

    async def _next(self) -> tuple[Any, ...]:
        while True:
            msg = self.reader.next()
            if msg is not None:
                return msg
            await self._recv()

    async def _fatal(self, code: str, message: str) -> NoReturn:
        await self.send(
            _native.encode_query_error(
                [("S", "FATAL"), ("V", "FATAL"), ("C", code), ("M", message)]
            )
        )
        raise _Refused(message)

    async def _error(self, code: str, message: str) -> None:
        await self.send(
            _native.encode_query_error(
                [("S", "ERROR"), ("V", "ERROR"), ("C", code), ("M", message)], ready="I"
            )
        )

    # ---- startup -------------------------------------------------------------------------

    async def run(self) -> None:
        with trio.fail_after(_STARTUP_TIMEOUT):
            if not await self._startup():
                return
        while True:
            msg = await self._next()
            tag = msg[0]
            if tag == "Q":
                await self._query(msg[1])
            elif tag == "X":
                return
            else:
                await self._fatal("08P01", f"unexpected message {tag!r} from the subscriber")

    async def _startup(self) -> bool:
        """The startup exchange; False for a CancelRequest (its connection then ends)."""
        while True:
            msg = self.reader.next_startup()
            if msg is None:
                await self._recv()
                continue
            kind = msg[0]
            if kind in ("ssl", "gssenc"):
                await self.send(b"N")
                continue
            if kind == "cancel":
                self._cancel(msg[1], msg[2])
                return False
            self.params = dict(msg[2])
            break
        if self.params.get("replication") != "database":
            await self._fatal(
                "08004",
                "Electric requires connections from Postgres to include the"
                " `replication=database` option",
            )
        await self._authenticate()
        app = self.params.get("application_name", "")
        if app != SUBSCRIPTION or self.publisher.service.migrations is None:
            await self._fatal(
                "08004", f"Electric replication is not ready, missing schema for {app}"
            )
        out = [_native.encode_auth_request(0)]
        for name, value in (
            ("application_name", app),
            ("client_encoding", self.params.get("client_encoding", "UTF8")),
            ("server_encoding", "UTF8"),
            ("server_version", f"electric-{_native.__version__}"),
            ("standard_conforming_strings", "on"),
            ("TimeZone", "Etc/UTC"),
            ("integer_datetimes", "on"),
        ):
            out.append(_native.encode_parameter_status(name, value))
        out.append(_native.encode_backend_key_data(self.id, self.secret))
        out.append(_READY_IDLE)
        await self.send(b"".join(out))
        self.publisher._sessions[self.id] = self
        log.debug("subscriber connected", session=self.id, application_name=app)
        return True

    async def _authenticate(self) -> None:
        """SCRAM-SHA-256 with the password of the subscription's connection string."""
        publisher = self.publisher
        scram = _ScramServer(publisher._scram_salt, publisher._scram_salted, _SCRAM_ITERATIONS)
        await self.send(_native.encode_auth_request(10, _SCRAM.encode()))
        msg = await self._next()
        if msg[0] != "p":
            await self._fatal("08P01", "expected a SASL response")
        mechanism, first = _native.parse_sasl_initial_response(msg[1])
        if mechanism != _SCRAM or first is None:
            await self._fatal("28000", f"unsupported SASL mechanism {mechanism}")
        server_first = scram.first(first)
        if server_first is None:
            await self._fatal("08P01", "malformed SCRAM client-first-message")
        await self.send(_native.encode_auth_request(11, server_first.encode()))
        msg = await self._next()
        if msg[0] != "p":
            await self._fatal("08P01", "expected a SASL response")
        server_final = scram.final(msg[1])
        if server_final is None:
            await self._fatal(
                "28P01", "password authentication failed for the logical replication publisher"
            )
        await self.send(_native.encode_auth_request(12, server_final.encode()))

    def _cancel(self, process_id: int, secret: bytes) -> None:
        target = self.publisher._sessions.get(process_id)
        if target is not None and secrets.compare_digest(target.secret, secret):
            log.info("cancel request for a subscriber connection", session=process_id)
            if target.cancel_scope is not None:
                target.cancel_scope.cancel()

    # ---- queries -------------------------------------------------------------------------

    async def _query(self, sql: str) -> None:
        text = _normalize(sql)
        log.debug("subscriber query", session=self.id, query=text)
        word = text.split(" ", 1)[0].upper()
        if text == "SELECT pg_catalog.set_config('search_path', '', false)":
            await self.send(
                _native.encode_query_result([("set_config", _TEXT)], [[""]], "SELECT 1")
            )
        elif "FROM pg_catalog.pg_publication_tables" in text:
            await self._publication_tables(text)
        elif word == "IDENTIFY_SYSTEM":
            row: list[str | None] = [
                "electric-trio",
                "1",
                "0/1",
                self.params.get("database") or self.params.get("user"),
            ]
            await self.send(
                _native.encode_query_result(
                    [
                        ("systemid", _TEXT),
                        ("timeline", _INT4),
                        ("xlogpos", _TEXT),
                        ("dbname", _TEXT),
                    ],
                    [row],
                    "IDENTIFY_SYSTEM",
                )
            )
        elif word in ("BEGIN", "COMMIT", "DROP_REPLICATION_SLOT"):
            await self.send(_native.encode_query_result(None, [], word))
        elif word == "CREATE_REPLICATION_SLOT":
            await self._error("0A000", "Electric replication does not support snapshot exporting")
        elif word == "START_REPLICATION":
            await self._start_replication(text)
        elif "FROM pg_catalog.pg_class c" in text:
            await self._pg_class(text)
        elif "FROM pg_catalog.pg_attribute a" in text:
            await self._pg_attribute(text)
        else:
            log.warning("unsupported query from the subscriber", session=self.id, query=text)
            await self._error("0A000", f"Electric replication does not support: {text[:200]}")

    async def _publication_tables(self, text: str) -> None:
        names = re.findall(r"'((?:[^']|'')*)'", text.split(" IN ", 1)[-1])
        tables = self.publisher._published_tables() if PUBLICATION in names else []
        await self.send(
            _native.encode_query_result(
                [("schemaname", 19), ("tablename", 19)],
                [[s, t] for s, t in tables],
                f"SELECT {len(tables)}",
            )
        )

    async def _pg_class(self, text: str) -> None:
        m = re.search(r"n\.nspname = '([^']+)' AND c\.relname = '([^']+)'", text)
        rows: list[list[str | None]] = []
        if m is not None and (m[1], m[2]) in self.publisher._published_tables():
            info = await self.publisher._table_info(m[1], m[2], ())
            rows.append([str(info.oid), info.replica_identity, "r"])
        await self.send(
            _native.encode_query_result(
                [("oid", _OID), ("relreplident", _CHAR), ("relkind", _CHAR)],
                rows,
                f"SELECT {len(rows)}",
            )
        )

    async def _pg_attribute(self, text: str) -> None:
        m = re.search(r"a\.attrelid = (\d+)", text)
        rows: list[list[str | None]] = []
        if m is not None:
            oid = int(m[1])
            for schema, table in self.publisher._published_tables():
                info = await self.publisher._table_info(schema, table, ())
                if info.oid == oid:
                    # With REPLICA IDENTITY FULL there is no identity index: NULL, as Postgres
                    full = info.replica_identity == "f"
                    rows = [
                        [name, str(type_oid), None if full else "t" if key else "f"]
                        for name, (type_oid, _, key) in info.columns.items()
                    ]
                    break
        await self.send(
            _native.encode_query_result(
                [("attname", 19), ("atttypid", _OID), ("?column?", _BOOL)],
                rows,
                f"SELECT {len(rows)}",
            )
        )

    # ---- streaming -----------------------------------------------------------------------

    async def _start_replication(self, text: str) -> None:
        m = re.match(r"START_REPLICATION SLOT (\S+) LOGICAL (\S+)(?: \((.*)\))?$", text)
        if m is None:
            await self._error("42601", "syntax error in START_REPLICATION")
            return
        options = dict(re.findall(r"(\w+) '((?:[^']|'')*)'", m[3] or ""))
        publications = [
            p.strip().strip('"') for p in options.get("publication_names", "").split(",")
        ]
        if PUBLICATION not in publications:
            await self._error("42704", f'publication "{",".join(publications)}" does not exist')
            return
        publisher = self.publisher
        start = parse_lsn(m[2])
        previous = publisher._streaming
        if previous is not None and previous.cancel_scope is not None:
            log.info("a new subscriber stream replaces the previous one", session=self.id)
            previous.cancel_scope.cancel()
        publisher._streaming = self
        publisher._streams += 1
        log.info(
            "Starting replication to the subscriber",
            session=self.id,
            slot=m[1].strip('"'),
            start=format_lsn(start),
            queued=len(publisher._queue),
        )
        publisher._check_start(start)
        publisher._progress(start, 0)  # Postgres's origin: what it has committed from us
        self.sent_lsn = start
        self.sent_relations.clear()
        await self.send(_native.encode_copy_both_response())
        try:
            with trio.CancelScope() as scope:
                self.cancel_scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._stream_out)
                    await self._stream_in()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = _connection_error(group)
            if error is None:
                raise
            await publisher._stream_lost(self.sent_lsn)
            raise error from None
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            await publisher._stream_lost(self.sent_lsn)
            raise
        finally:
            self.cancel_scope = None
            if publisher._streaming is self:
                publisher._streaming = None
        if scope.cancelled_caught:
            # Replaced by a newer stream or cancelled: this connection is done.
            raise trio.BrokenResourceError("stream replaced or cancelled")
        await self.send(
            _native.encode_copy_done()
            + _native.encode_query_result(None, [], "COPY 0", ready=None)
            + _native.encode_query_result(None, [], "START_REPLICATION")
        )

    async def _stream_in(self) -> None:
        """Reads the subscriber's status updates until it ends the copy (CopyDone)."""
        publisher = self.publisher
        while True:
            msg = await self._next()
            tag = msg[0]
            if tag == "d":
                parsed = _native.parse_replication_message(msg[1])
                if parsed[0] == "r":
                    _, write, flush, apply, _time, reply = parsed
                    log.debug(
                        "standby status",
                        session=self.id,
                        write=format_lsn(write),
                        flush=format_lsn(flush),
                        apply=format_lsn(apply),
                    )
                    # With no commit waiting for its flush the apply worker reports what it
                    # received as written and flushed; either way all of it is committed.
                    publisher._progress(min(write, self.sent_lsn), min(flush, self.sent_lsn))
                    if reply:
                        await self._keepalive()
            elif tag == "c":
                return
            elif tag == "X":
                raise trio.BrokenResourceError("the subscriber terminated the connection")
            else:
                await self._fatal("08P01", f"unexpected message {tag!r} during replication")

    async def _keepalive(self, reply_requested: bool = False) -> None:
        await self.send(_native.encode_keepalive(self.sent_lsn, pg_now(), reply_requested))

    async def _stream_out(self) -> None:
        """Sends queued transactions after ``sent_lsn``, and a keepalive every 10 s."""
        publisher = self.publisher
        await self._keepalive()
        deadline = trio.current_time() + KEEPALIVE_INTERVAL
        while True:
            pending = [q for q in publisher._queue if q.after_lsn >= self.sent_lsn]
            if not pending:
                changed = publisher._queue_changed
                with trio.move_on_at(deadline):
                    await changed.wait()
                if trio.current_time() >= deadline:
                    await self._keepalive()
                    deadline = trio.current_time() + KEEPALIVE_INTERVAL
                continue
            for q in pending:
                await publisher._ensure_subscribed(q.write)
                if q.after_lsn < self.sent_lsn or q.error is not None:
                    break  # renumbered or dropped meanwhile: start over
                await self.send(await self._encode(q))
                self.sent_lsn = q.end_lsn
                publisher._sent += 1
            # The answer says what the apply worker has committed: the writers are waiting.
            await self._keepalive(reply_requested=True)
            deadline = trio.current_time() + KEEPALIVE_INTERVAL

    async def _encode(self, q: _Queued) -> bytes:
        relations: list[_Relation] = []
        inserts: list[tuple[int, list[str | None]]] = []
        for insert in q.write.inserts:
            relation = await self.publisher._relation(insert)
            key = (insert.schema, insert.table)
            if self.sent_relations.get(key) != relation:
                self.sent_relations[key] = relation
                relations.append(relation)
            inserts.append((relation[0], list(insert.values)))
        frames, _commit, end = _native.encode_pgoutput_transaction(
            q.after_lsn,
            q.write.commit_timestamp_ms * 1000 - PG_EPOCH_OFFSET_MICROS,
            pg_now(),
            relations,
            inserts,
        )
        assert end == q.end_lsn
        return frames


class _ScramServer:
    """The server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as Postgres does it: the user
    name in the client's messages is ignored (libpq sends none), no channel binding."""

    def __init__(
        self, salt: bytes, salted_password: bytes, iterations: int, nonce: str | None = None
    ) -> None:
        self._server_nonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self._salt = salt
        self._salted = salted_password
        self._iterations = iterations
        self._gs2 = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""

    def first(self, client_first: bytes) -> str | None:
        """The server-first-message, or None for a malformed client-first-message."""
        try:
            text = client_first.decode()
        except UnicodeDecodeError:
            return None
        parts = text.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y"):
            return None  # "p=..." asks for channel binding, which we did not offer
        self._gs2 = f"{parts[0]},{parts[1]},"
        self._client_first_bare = parts[2]
        attrs = dict(a.split("=", 1) for a in parts[2].split(",") if "=" in a)
        client_nonce = attrs.get("r")
        if not client_nonce:
            return None
        self._nonce = client_nonce + self._server_nonce
        salt = base64.b64encode(self._salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self._iterations}"
        return self._server_first

    def final(self, client_final: bytes) -> str | None:
        """The server-final-message, or None when the proof is wrong or the message bad."""
        try:
            text = client_final.decode()
            without_proof, _, proof_b64 = text.rpartition(",p=")
            attrs = dict(a.split("=", 1) for a in without_proof.split(",") if "=" in a)
            proof = base64.b64decode(proof_b64, validate=True)
        except (UnicodeDecodeError, ValueError):
            return None
        if attrs.get("r") != self._nonce:
            return None
        if attrs.get("c") != base64.b64encode(self._gs2.encode()).decode():
            return None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_key = hmac.digest(self._salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        if len(proof) != len(signature):
            return None
        recovered = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(recovered).digest(), stored_key):
            return None
        server_key = hmac.digest(self._salted, b"Server Key", "sha256")
        return "v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()


def _normalize(sql: str) -> str:
    """The query with trailing ``;`` dropped and runs of whitespace outside quotes made one
    space (the subscriber's queries span lines)."""
    parts = re.split(r"('(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")", sql.strip().rstrip(";").strip())
    return "".join(p if i % 2 else re.sub(r"\s+", " ", p) for i, p in enumerate(parts)).strip()


_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


def _connection_error(error: BaseException) -> BaseException | None:
    """The connection error ``error`` stands for when every exception in it is one."""
    if isinstance(error, BaseExceptionGroup):
        leaves = [_connection_error(e) for e in error.exceptions]
        if not leaves or any(leaf is None for leaf in leaves):
            return None
        return leaves[0]
    return error if isinstance(error, _CONNECTION_ERRORS) else None


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]


def _conninfo_value(value: str) -> str:
    """A libpq connection string value, quoted when it needs to be."""
    if value and not any(c in value for c in " '\\\t\n"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
