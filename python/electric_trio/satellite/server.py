"""The Satellite WebSocket endpoint: ``/ws`` on the HTTP port (satellite-protocol.md §1).

:class:`SatelliteSubsystem` routes ``/ws`` and, once started, serves every upgrade with a
:class:`SatelliteServer`: the HTTP checks (service ready, a valid WebSocket upgrade, a supported
``electric.<major>.<minor>`` subprotocol) answered with the original's status codes and texts,
then the WebSocket handshake and a :class:`~.session.Session`, all inside one nursery per
connection: whatever happens on one connection ends that connection only.

The server also holds what sessions share: the client ids connected now (a client id connects
once), the position each client acknowledged, and one Postgres connection for the few queries
sessions make (the acknowledged client LSN, table OIDs, migration times).
"""

from __future__ import annotations

import gc
import logging
import re
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from trio_websocket import ConnectionClosed, wrap_server_stream

from .. import _native
from ..http import Request, Response
from ..pg import Connection, ConnectParams
from . import _bookkeeping as bk
from . import _graph_store
from ._collect import SessionCollector
from ._data_pool import DataPool
from ._db import PostgresUnavailableError, SessionDatabase
from ._wire import socket_fileno
from .auth import Authenticator
from .messages import (
    MAX_FRAME_LEN,
    SatErrorResp,
    SatSubsReq,
    decode_message,
    encode,
    encode_message,
)
from .session import CLOSE_SERVER_ERROR, ClientShapes, GoneBatch, PendingMoveIns, Session
from .shapes import MAGIC_WRITE, SubscriptionPlan, plan_subscription
from .stream import OWNER_COLUMN, describe_tables

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..ddlx.history import MigrationHistory
    from ..replication import TransactionLog
    from ..service import Service
    from ..writes import Writer

__all__ = [
    "PROTOCOL_PREFIX",
    "SATELLITE_VERSION",
    "SatelliteServer",
    "SatelliteSettings",
    "SatelliteSubsystem",
    "check_upgrade",
]

log = logging.getLogger("electric_trio.satellite")
_msgpack = msgspec.msgpack.Encoder()
_gone_batch_decoder = msgspec.msgpack.Decoder(GoneBatch)
_move_ins_decoder = msgspec.msgpack.Decoder(PendingMoveIns)
#: A client's stored rows: its checkpoint, its subscriptions, its unsubscribe points.
_Stored = tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]

PROTOCOL_PREFIX = "electric."
#: The protocol version this server speaks: that of the official client electric-sql 0.12.1.
#: Clients from 0.10 up to it are accepted.
SATELLITE_VERSION = "0.12.1"
_MIN_VERSION = (0, 10, 0)
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_REASONS = {400: "Bad Request", 503: "Service Unavailable"}
#: The ``application_name`` of the sessions' Postgres connection.
APPLICATION_NAME = "electric-trio satellite"


class SatelliteSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the Satellite endpoint behaves (the defaults are the original's)."""

    #: Seconds between keepalive checks: a silent client is pinged, then closed one interval
    #: later if still silent.
    ping_interval: float = 20.0
    #: Largest frame accepted from a client, in bytes: a longer one is answered with
    #: ``SatErrorResp{INVALID_REQUEST}`` and close 1009. The WebSocket layer buffers at most
    #: twice this and closes 1009 by itself (no error frame) beyond that.
    max_frame_len: int = MAX_FRAME_LEN
    #: Transactions sent and not yet acknowledged before the stream pauses.
    unacked_window: int = 30
    #: Seconds a client may take no part (64 KiB) of a write of ours before it is cut off
    #: (one that keeps talking but never reads would otherwise hold that write for ever).
    send_timeout: float = 30.0
    #: How long a client id still connected elsewhere may take to go away.
    duplicate_client_wait: float = 1.0
    #: Seconds for the WebSocket handshake, and for a close to complete.
    handshake_timeout: float = 10.0
    close_timeout: float = 5.0
    #: Seconds for a Postgres query of a session (then "Postgres is unavailable").
    query_timeout: float = 5.0
    #: Seconds a shape's data read may take to get its snapshot before the subscription is
    #: refused ("Internal error while checking data availability").
    data_start_timeout: float = 1.0
    #: Connections kept for shape data reads (subscriptions and move-ins wait for one, at
    #: most ``data_queue_timeout`` seconds), at most ``data_connections_per_client`` of them
    #: held by one client.
    data_connections: int = 16
    data_connections_per_client: int = 4
    data_queue_timeout: float = 30.0
    #: Seconds a streamed subscription's read may wait for its client to take its rows before
    #: it gives its connection up to another read waiting for one (the client is then cut
    #: off with an error).
    data_stall_timeout: float = 10.0
    #: Subscriptions of one client whose data is not sent yet; one more is refused at once.
    max_pending_subscriptions: int = 16
    #: Seconds at most between two stores of a client's sent-rows graph in Postgres (at an
    #: acknowledgement; also stored when the connection ends). Each interval is drawn between
    #: half and all of this, so that clients acknowledging together do not all store at once.
    checkpoint_interval: float = 30.0


def _semver(text: str) -> tuple[int, int, int, int] | None:
    """A semantic version as a sortable key (a pre-release before its release), or None."""
    match = _SEMVER.fullmatch(text)
    if match is None:
        return None
    major, minor, patch = (int(g) for g in match.group(1, 2, 3))
    return major, minor, patch, 0 if match.group(4) else 1


def check_upgrade(request: Request, server_version: str = SATELLITE_VERSION) -> Response | str:
    """The subprotocol to answer with (``electric.<major>.<minor>`` of the client), or the
    HTTP error for an upgrade request that is not a Satellite WebSocket handshake."""
    connection = {t.strip().lower() for t in (request.header("connection") or "").split(",")}
    if (
        request.method != "GET"
        or request.http_version != "1.1"
        or (request.header("upgrade") or "").strip().lower() != "websocket"
        or "upgrade" not in connection
        or not request.header("sec-websocket-key")
        or (request.header("sec-websocket-version") or "").strip() != "13"
    ):
        return Response.text(400, "Bad request")
    # One value per header line, not split on commas (as the original): exactly one must name
    # the protocol.
    offered = [
        v for k, v in request.headers if k == "sec-websocket-protocol" and v.startswith("electric.")
    ]
    version = offered[0].removeprefix(PROTOCOL_PREFIX) if len(offered) == 1 else ""
    parsed = _semver(version + ".0") if 0 < len(version.encode()) < 20 else None
    if parsed is None:
        return Response.text(400, "Missing satellite websocket subprotocol")
    top = _semver(server_version)
    assert top is not None
    if not ((*_MIN_VERSION, 1) <= parsed and parsed[:3] <= top[:3]):
        limits = ".".join(map(str, _MIN_VERSION)), server_version.partition("-")[0]
        return Response.text(
            400,
            f"Cannot connect satellite version {version}.0: "
            f"this server requires >= {limits[0]} and <= {limits[1]}",
        )
    return f"{PROTOCOL_PREFIX}{parsed[0]}.{parsed[1]}"


async def _send_http(stream: trio.abc.Stream, response: Response) -> None:
    """Answers an upgrade request with a plain HTTP response, then the connection closes."""
    head = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, '')}\r\n"
        "server: electric-trio\r\n"
        f"content-type: {response.content_type}\r\n"
        f"content-length: {len(response.body)}\r\n"
        "connection: close\r\n\r\n"
    )
    with trio.move_on_after(5):
        try:
            await stream.send_all(head.encode("latin-1") + response.body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


#: Transactions of one append the fan-out serves in the appender's task (see
#: ``SatelliteServer._appended``).
_SERVED_AT_APPEND = 4

#: Young objects (tracked by the cyclic collector) the fan-out lets pile up before it collects
#: them itself, right after a transaction's writes (:func:`collect_young`).
YOUNG_OBJECTS = 10_000


def collect_young() -> None:
    """Runs the collection Python would run once its young generation is full, now that a
    transaction's writes are done, if that generation holds :data:`YOUNG_OBJECTS` or more.
    Left to Python, it ran when 100,000 had piled up (``cli.GC_THRESHOLD``: after 1,000 clients
    connect, most of them their sessions' objects), at whatever moment that was, often between
    a transaction's arrival and its fan-out: 50 to 145 ms (on the loaded bench machine) that
    every delivery of the transaction waited. Collected here, the young generation stays small
    (a few ms each time), and the middle one is collected with it as often as Python's
    threshold says (counted in young collections, as Python counts them); the oldest is left to
    Python's own rule and to the session collector."""
    young, middle, _ = gc.get_count()
    if young >= YOUNG_OBJECTS:
        gc.collect(1 if middle + 1 >= gc.get_threshold()[1] else 0)


class _Registration:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.gone = trio.Event()


class SatelliteServer:
    """What the sessions of one service share."""

    def __init__(
        self,
        *,
        settings: SatelliteSettings,
        authenticator: Authenticator,
        instance_id: str,
        history: MigrationHistory,
        txlog: TransactionLog[Any],
        params: ConnectParams,
    ) -> None:
        self.settings = settings
        self.authenticator = authenticator
        self.instance_id = instance_id
        self.history = history
        self.txlog = txlog
        self.db = SessionDatabase(params, settings.query_timeout)
        #: The clients' state writes, many clients' in one statement, on their own connection.
        self.bookkeeper = bk.Bookkeeper(SessionDatabase(params, settings.query_timeout, 1))
        self._acknowledged: bk.Combiner[str, bytes] = bk.Combiner(self._acknowledged_lsns)
        self._stored: bk.Combiner[str, _Stored | None] = bk.Combiner(self._load_stored)
        #: For the connections sessions open (shape data reads in their own snapshot).
        self.params = params
        #: Each client's shapes, kept between its connections (resume, §7.2).
        self.client_shapes: dict[str, ClientShapes] = {}
        #: Caught-up (parked) sessions the fan-out streams to (see :meth:`fanout`), and the
        #: same sessions indexed by what a transaction must touch to concern them: the tables
        #: of their shapes, or every transaction (``_live_every``: a subscription's data is due,
        #: no shapes yet). A transaction visits only its tables' sessions, not every idle one.
        self.live: set[Session] = set()
        self._live_tables: dict[tuple[str, str], set[Session]] = {}
        self._live_every: set[Session] = set()
        #: The parked sessions the fan-out may not write to at once (``can_stream_now`` is
        #: false: a lock held, a full window...), kept as each session reports a change
        #: (:meth:`ready_changed`): a transaction asks no question of the others.
        self._unready: set[Session] = set()
        #: The position up to which the fan-out has passed every transaction: a parked session
        #: no transaction since its own position concerned is at ``max(its position, this)``.
        self.live_position = 0
        #: The fan-out task waits for a transaction (:meth:`_appended` may serve it), and the
        #: log's resets it has seen.
        self._waiting = False
        self._resets = 0
        self.data_pool = DataPool(
            params, settings.data_connections, settings.data_connections_per_client
        )
        #: The sessions by client id (one connection per client id).
        self.clients: dict[str, Session] = {}
        self._registrations: dict[str, _Registration] = {}
        #: The last position each client acknowledged (resume validation, §7.2).
        # TODO(resume): keep it in Postgres (electric.client_checkpoints) across restarts.
        self.checkpoints: dict[str, int] = {}
        self._oids: dict[tuple[str, str], int] = {}
        #: Magic writes asked for and served (:meth:`magic_write`).
        self._magic_lock = trio.Lock()
        self._magic_asked = 0
        self._magic_done = 0
        self._migration_times: dict[str, int] = {}
        #: Frees finished sessions (reference cycles) without waiting for the collector.
        self.collector = SessionCollector()
        #: The service's writer of client transactions, looked up at each transaction (the
        #: writes subsystem starts after this one); None: client transactions are dropped.
        self.writer: Callable[[], Writer | None] = lambda: None

    # ---- clients -------------------------------------------------------------------------

    async def register(self, client_id: str, session: Session) -> bool:
        """Records ``session`` as ``client_id``'s connection; False when another connection
        of that client id is still there after ``duplicate_client_wait`` seconds."""
        current = self._registrations.get(client_id)
        if current is not None:
            with trio.move_on_after(self.settings.duplicate_client_wait):
                await current.gone.wait()
            if client_id in self._registrations:
                return False
        self._registrations[client_id] = _Registration(session)
        self.clients[client_id] = session
        return True

    def unregister(self, client_id: str, session: Session) -> None:
        current = self._registrations.get(client_id)
        if current is not None and current.session is session:
            del self._registrations[client_id]
            del self.clients[client_id]
            current.gone.set()

    def checkpoint(self, client_id: str, lsn: int) -> None:
        """Records an acknowledged position (they only move forward)."""
        if lsn > self.checkpoints.get(client_id, 0):
            self.checkpoints[client_id] = lsn

    def forget(self, client_id: str) -> None:
        """Drops what is known of a client that starts over."""
        self.checkpoints.pop(client_id, None)
        self.client_shapes.pop(client_id, None)

    # ---- client state in Postgres (resume after a restart, §7.2) ----------------------------

    async def store_subscription(self, client_id: str, plan: SubscriptionPlan) -> None:
        """Records a delivered subscription of the client."""
        if plan.request is None:
            return
        await self._bookkeeping(
            bk.SUBSCRIPTION,
            client_id,
            [(client_id, plan.id, str(plan.xmin), encode_message(plan.request))],
        )

    async def forget_subscriptions(self, client_id: str, ids: Sequence[str]) -> None:
        await self._bookkeeping(
            bk.FORGET_SUBSCRIPTIONS, client_id, [(client_id, sub_id) for sub_id in ids]
        )

    async def store_unsubscribed(self, client_id: str, batch: GoneBatch, position: int) -> None:
        """Records an unsubscribe's GONE batch until the client acknowledges it."""
        data = _msgpack.encode(batch)
        await self._bookkeeping(
            bk.UNSUBSCRIBED,
            client_id,
            [(client_id, sub_id, position, data) for sub_id in dict.fromkeys(batch.ids)],
        )

    async def forget_unsubscribed(self, client_id: str, ids: Sequence[str]) -> None:
        await self._bookkeeping(
            bk.FORGET_UNSUBSCRIBED, client_id, [(client_id, sub_id) for sub_id in ids]
        )

    async def forget_stored(self, client_id: str) -> None:
        """Drops the stored state of a client that starts over."""
        await self._bookkeeping(bk.FORGET_STORED, client_id, [(client_id,)])

    async def _bookkeeping(
        self, kind: bk.Kind, client_id: str, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """A write of the client's state, in order with the client's other writes and in one
        statement with other clients' (see :mod:`._bookkeeping`); logged when Postgres is
        unavailable."""
        try:
            await self.bookkeeper.write(kind, client_id, rows)
        except PostgresUnavailableError as e:
            log.warning("cannot store client state: %s", e)

    async def load_client_shapes(self, client_id: str, user_id: str | None) -> ClientShapes | None:
        """The client's shapes as last stored, or None. Raises
        :class:`PostgresUnavailableError`."""
        stored = await self._stored(client_id)
        if stored is None:
            return None
        checkpoint, rows, unsub_points = stored
        shapes = ClientShapes(user_id)
        schema = self.history.schema
        for sub_id, xmin, raw in rows:
            request = decode_message(SatSubsReq, bytes(raw))
            plan = plan_subscription(request, schema, lambda _id: False)
            if not isinstance(plan, SubscriptionPlan):
                log.warning(
                    "stored subscription no longer valid client_id=%s id=%s: %s",
                    client_id,
                    sub_id,
                    plan.message,
                )
                continue
            plan.xmin = int(xmin)
            await describe_tables(
                shapes.graph,
                schema,
                {(layer.table.schema, layer.table.name) for layer in plan.layers()},
                self.table_oid,
            )
            shapes.add_layers(plan)
            shapes.subscriptions[plan.id] = plan
        batches: dict[bytes, GoneBatch] = {}
        for sub_id, data in unsub_points:
            raw = bytes(data)
            if raw not in batches:
                batches[raw] = _gone_batch_decoder.decode(raw)
            shapes.unsubscribed[sub_id] = batches[raw]
        position, graph, move_ins = checkpoint
        shapes.stored, position, move_ins = await _graph_store.load(
            self.db,
            client_id,
            shapes.graph,
            bytes(graph),
            int(position),
            None if move_ins is None else bytes(move_ins),
        )
        if move_ins is not None:
            shapes.import_move_ins(_move_ins_decoder.decode(bytes(move_ins)))
        shapes.position = int(position)
        log.info(
            "client state loaded client_id=%s subscriptions=%d rows=%d position=%d",
            client_id,
            len(shapes.subscriptions),
            len(shapes.graph),
            shapes.position,
        )
        return shapes

    async def _load_stored(self, client_ids: list[str]) -> list[_Stored | None]:
        """The stored rows of every client that :meth:`load_client_shapes` asked for while
        the previous load ran: three queries for all of them (clients reconnect by the
        thousand after a restart of the service)."""
        ids = list(dict.fromkeys(client_ids))
        checkpoints = {
            str(c): (position, graph, move_ins)
            for c, position, graph, move_ins in await self.db.fetch(
                "SELECT client_id, pg_wal_pos, sent_rows_graph, pending_move_ins"
                " FROM electric.client_checkpoints WHERE client_id = ANY($1::text[])",
                ids,
            )
        }
        ids = [c for c in ids if c in checkpoints]
        subs: dict[str, list[tuple[Any, ...]]] = {c: [] for c in ids}
        unsub: dict[str, list[tuple[Any, ...]]] = {c: [] for c in ids}
        if ids:
            for c, *row in await self.db.fetch(
                "SELECT client_id, subscription_id, min_txid::text, shape_requests"
                " FROM electric.client_shape_subscriptions WHERE client_id = ANY($1::text[])"
                " ORDER BY client_id, ord",
                ids,
            ):
                subs[str(c)].append(tuple(row))
            for c, *row in await self.db.fetch(
                "SELECT client_id, subscription_id, gone_batch FROM electric.client_unsub_points"
                " WHERE client_id = ANY($1::text[]) AND gone_batch IS NOT NULL",
                ids,
            ):
                unsub[str(c)].append(tuple(row))
        return [
            (checkpoints[c], subs[c], unsub[c]) if c in checkpoints else None for c in client_ids
        ]

    # ---- Postgres ------------------------------------------------------------------------

    def data_connection(self, owner: Session) -> AbstractAsyncContextManager[Connection]:
        """A connection for a shape data read of ``owner``'s client, from a small pool shared
        fairly between the clients (:class:`~._data_pool.DataPool`)."""
        return self.data_pool.connection(owner)

    async def magic_write(self, caused_by: str) -> None:
        """The magic write (shapes.MAGIC_WRITE), or one made after this call began: one write
        serves every caller that came while the previous one was running (a write that starts
        after a caller's snapshot is all it needs), as many clients subscribing at once each
        waited for a commit of their own."""
        self._magic_asked += 1
        ticket = self._magic_asked
        async with self._magic_lock:
            if self._magic_done >= ticket:
                return
            upto = self._magic_asked
            await self.db.fetch(MAGIC_WRITE, caused_by)
            self._magic_done = max(self._magic_done, upto)

    async def acknowledged_client_lsn(self, client_id: str) -> bytes:
        """The client's last transaction Postgres has (its opaque LSN bytes; empty if none).
        Raises :class:`PostgresUnavailableError`."""
        return await self._acknowledged(client_id)

    async def _acknowledged_lsns(self, client_ids: list[str]) -> list[bytes]:
        """:meth:`acknowledged_client_lsn` of every client that asked while the previous
        query ran, in one query (clients connect by the thousand after a restart)."""
        rows = await self.db.fetch(
            "SELECT client_id, lsn FROM electric.acknowledged_client_lsns"
            " WHERE client_id = ANY($1::text[])",
            list(dict.fromkeys(client_ids)),
        )
        if rows:
            # The direct writer commits all but the last transaction of a batch without
            # waiting for the WAL flush: a position seen here may not be durable yet (its batch
            # stopped midway). A client told it is there drops what it has up to it, so the
            # WAL is flushed past it first: a commit that has an xid waits for the flush.
            await self.db.fetch("SELECT pg_current_xact_id()")
        found = {str(c): bytes(lsn) for c, lsn in rows}
        return [found.get(c, b"") for c in client_ids]

    async def table_oid(self, schema: str, name: str) -> int:
        """The OID of table ``schema.name`` (the ``relation_id`` clients see)."""
        key = (schema, name)
        oid = self._oids.get(key)
        if oid is None:
            rows = await self.db.fetch(
                "SELECT c.oid::int8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = $1 AND c.relname = $2",
                schema,
                name,
            )
            oid = int(rows[0][0]) if rows else 0
            if oid:
                self._oids[key] = oid
        return oid

    async def migration_times(self) -> dict[str, int]:
        """When each migration version was recorded, in ms since 1970 (the commit time its
        transaction gets at a client's first sync)."""
        if any(m.version not in self._migration_times for m in self.history.migrations):
            rows = await self.db.fetch(
                "SELECT version, (extract(epoch FROM inserted_at) * 1000)::int8"
                " FROM electric.migration_versions"
            )
            self._migration_times.update((str(v), int(ms)) for v, ms in rows)
        return self._migration_times

    def is_owned_table(self, schema: str, name: str) -> bool:
        """Whether the table's rows belong to users (an ``electric_user_id`` column)."""
        table = self.history.schema.table(schema, name)
        return table is not None and table.column(OWNER_COLUMN) is not None

    # ---- connections ---------------------------------------------------------------------

    async def serve_connection(
        self, request: Request, stream: trio.abc.Stream, subprotocol: str
    ) -> None:
        """The WebSocket handshake and the session, in the connection's own nursery; never
        raises for anything that happens on the connection."""
        try:
            await self._serve_connection(request, stream, subprotocol)
        except Exception:
            log.exception("satellite connection failed remote=%s", request.remote)

    async def _serve_connection(
        self, request: Request, stream: trio.abc.Stream, subprotocol: str
    ) -> None:
        remote = request.remote or "?"
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(self.settings.handshake_timeout):
                    ws_request = await wrap_server_stream(
                        nursery,
                        stream,
                        # trio-websocket closes 1009 beyond this without a word; up to it the
                        # session answers an oversized frame with an error first.
                        max_message_size=2 * self.settings.max_frame_len,
                    )
                    ws = await ws_request.accept(subprotocol=subprotocol)
            except (trio.TooSlowError, ConnectionClosed, trio.BrokenResourceError, OSError) as e:
                log.info("WebSocket handshake failed remote=%s: %s", remote, e)
                nursery.cancel_scope.cancel()
                return
            session = Session(self, ws, remote)
            try:
                await session.run()
            except Exception:
                log.exception("satellite session failed client_id=%s", session.client_id)
                with trio.move_on_after(self.settings.close_timeout):
                    try:
                        await ws.send_message(encode(SatErrorResp()))
                    except ConnectionClosed:
                        pass
                    await ws.aclose(CLOSE_SERVER_ERROR, "Failed to process message")
            with trio.move_on_after(self.settings.close_timeout):
                await ws.aclose()
            nursery.cancel_scope.cancel()
            del session
        self.collector.finished(len(self.clients))

    # ---- the fan-out ----------------------------------------------------------------------

    def park(self, session: Session) -> None:
        """Hands a caught-up session's next transactions to the fan-out (its stream task waits
        until :meth:`Session.wake`), indexed by the tables of its shapes, or among the few that
        every transaction concerns (a subscription's data is due at the next one)."""
        self.live.add(session)
        shapes = session.shapes
        if shapes is not None:
            session._fanout_target = (
                shapes.graph,
                session.client_id or "",
                shapes.refs,
                socket_fileno(session.ws),
            )
        if not session.can_stream_now():
            self._unready.add(session)
        if shapes is None or session._deliveries:
            self._live_every.add(session)
            return
        session._parked_on = tables = shapes.tables
        buckets = self._live_tables
        for table in tables:
            bucket = buckets.get(table)
            if bucket is None:
                buckets[table] = {session}
            else:
                bucket.add(session)

    def unpark(self, session: Session) -> None:
        """Takes a session back from the fan-out, at the position the fan-out has reached."""
        if session not in self.live:
            return
        self.settle(session)
        self.live.discard(session)
        self._live_every.discard(session)
        self._unready.discard(session)
        tables, session._parked_on = session._parked_on, frozenset()
        buckets = self._live_tables
        for table in tables:
            bucket = buckets.get(table)
            if bucket is not None:
                bucket.discard(session)
                if not bucket:
                    del buckets[table]

    def ready_changed(self, session: Session) -> None:
        """A session reports that what ``can_stream_now`` reads changed."""
        if session in self.live:
            if session.can_stream_now():
                self._unready.discard(session)
            else:
                self._unready.add(session)

    def repark(self, session: Session) -> None:
        """Indexes a parked session again (what concerns it changed: a delivery came)."""
        if session in self.live:
            self.unpark(session)
            self.park(session)

    def settle(self, session: Session) -> None:
        """Brings a parked session's position (and its graph's) to the fan-out's: the
        transactions in between changed none of its tables, so it gets nothing of them."""
        if session in self.live and session._position < self.live_position:
            session._position = position = self.live_position
            shapes = session.shapes
            if shapes is not None and shapes.position < position:
                shapes.position = position

    def _wake(self, session: Session) -> None:
        self.unpark(session)
        session.wake()

    async def fanout(self) -> None:
        """Streams each new transaction to the caught-up sessions it concerns, in one pass.

        A session whose stream is caught up parks (:meth:`park`); for each transaction this
        task visits the parked sessions of the tables it changes (and the few every transaction
        concerns, and the origin's), and in one Rust call processes their graphs and writes
        each frame to its socket at once, with no task switch nor Python code per client. The
        other parked sessions just stay one transaction further (:attr:`live_position`,
        :meth:`settle`). A session it cannot
        serve that way (its window is full, a subscription's data is due, a write is in
        progress, the transaction carries a migration...) is woken and streams by itself again.
        """
        txlog = self.txlog
        self.live_position = txlog.last_lsn or 0
        self._resets = txlog.resets
        txlog.on_append = self._appended
        try:
            while True:
                self._waiting = True
                try:
                    await txlog.wait_after(self.live_position)
                finally:
                    self._waiting = False
                position = self.live_position
                if self._resets != txlog.resets or txlog.trimmed_lsn > position:
                    # The log was cleared (a gap in the stream), or transactions after our
                    # position left it before we sent them: each session finds out it is
                    # behind by itself.
                    self._resets = txlog.resets
                    for session in list(self.live):
                        self._wake(session)
                    self.live_position = txlog.trimmed_lsn if txlog.trimmed_lsn > position else 0
                for txn in txlog.read_after(self.live_position, 1000):
                    self._serve(txn)
                    # The sessions' tasks run between two transactions, not after a whole
                    # batch: their clients' acknowledgements above all (a session whose window
                    # of 30 is full must stream by itself, at a far higher cost per
                    # transaction).
                    await trio.lowlevel.checkpoint()
                    if self._resets != txlog.resets:
                        break
                await trio.lowlevel.checkpoint()
        finally:
            txlog.on_append = None

    def _appended(self) -> None:
        """The log's listener, called in the replication reader's task right after it appends:
        while this task waits for a transaction, the first new one is served at once, not
        after every task already runnable has had its turn (a thousand clients'
        acknowledgements arriving together took 130-200 ms of the event loop on the loaded
        bench machine, the transaction after them waiting), and so are the next few of the same
        append (a reader held up as long reads them together). Gaps, and longer batches (a
        catch-up, which lets the clients' acknowledgements in between transactions), are left
        to the task."""
        txlog = self.txlog
        position = self.live_position
        if not self._waiting or self._resets != txlog.resets or txlog.trimmed_lsn > position:
            return
        for txn in txlog.read_after(position, _SERVED_AT_APPEND):
            self._serve(txn)

    def _serve(self, txn: _native.ElectricTransaction) -> None:
        """Fans out the transaction after :attr:`live_position` and moves past it."""
        if self.live:
            # No collection between the transaction and its last write: one of the young
            # generation (up to 100,000 objects, cli.GC_THRESHOLD) takes tens of ms (40 to
            # 250 on the loaded bench machine), every delivery of the transaction waiting; it
            # runs once the writes are done.
            collecting = gc.isenabled()
            gc.disable()
            try:
                self._fan_out(txn, self.live_position)
            finally:
                if collecting:
                    gc.enable()
                    collect_young()
        self.live_position = txn.end_lsn

    def _fan_out(self, txn: _native.ElectricTransaction, previous: int) -> None:
        if txn.ddl or self.history.for_transaction(txn.end_lsn):
            for session in list(self.live):
                self._wake(session)
            return
        concerned = set(self._live_every)
        buckets = self._live_tables
        for table in txn.relations:
            bucket = buckets.get(table)
            if bucket:
                concerned |= bucket
        origin = txn.origin
        if origin is not None:
            own = self.clients.get(origin)
            if own is not None and own in self.live:
                concerned.add(own)
        unready = concerned & self._unready
        if unready:
            concerned -= unready
        ready: list[Session] = []
        targets = []
        for session in concerned:
            if session._position > previous:
                continue  # parked ahead of the fan-out: it streamed this one itself
            target = session._fanout_target
            if target is None or session.ws._close_reason:
                unready.add(session)  # closed (by trio-websocket itself, unreported)
                continue
            ready.append(session)
            targets.append(target)
        for session in unready:
            if session._position <= previous:
                self._wake(session)
        if not ready:
            return
        columns = list(zip(*targets, strict=True))
        graphs: list[_native.ShapeGraph] = list(columns[0])
        client_ids: list[str] = list(columns[1])
        refs = [counter.next for counter in columns[2]]
        fds = [fileno() for fileno in columns[3]]
        # Each client's frame goes to its socket as soon as its graph has processed the
        # transaction (in Rust, framed once per distinct frame): the first clients have it
        # while the last graphs are processed, and no Python runs before the last write.
        frames, written, special = _native.fanout_send(txn, graphs, client_ids, refs, fds)
        extra = {i: (relations, move_ins) for i, relations, move_ins in special}
        end, xid = txn.end_lsn, txn.xid
        for i, session in enumerate(ready):
            session.streamed_now(end, xid, frames[i], extra.get(i) if extra else None, written[i])

    async def aclose(self) -> None:
        """Lets the sessions that are ending store their clients' state (bounded), then closes
        the shared connection."""
        with trio.move_on_after(self.settings.close_timeout):
            while self._registrations:
                await next(iter(self._registrations.values())).gone.wait()
        await self.data_pool.aclose()
        await self.db.aclose()
        await self.bookkeeper.aclose()


class SatelliteSubsystem:
    """``/ws``: the Satellite protocol for the official client (satellite-protocol.md)."""

    name = "satellite"

    def __init__(self, settings: SatelliteSettings | None = None) -> None:
        self.settings = settings or SatelliteSettings()
        self.server: SatelliteServer | None = None
        self._service: Service | None = None

    def install(self, service: Service) -> None:
        self._service = service
        service.router.add(
            "/ws",
            self._not_an_upgrade,
            upgrade=self._upgrade,
            methods=("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
        )
        service.add_readiness_gate(lambda: self.server is not None)

    async def _not_an_upgrade(self, request: Request) -> Response:
        return Response.text(400, "Bad request")

    async def _upgrade(self, request: Request, stream: trio.abc.Stream) -> None:
        service = self._service
        assert service is not None
        status = service.status()
        server = self.server
        if status != "ready" or server is None:
            await _send_http(
                stream, Response.text(503, f"Postgres connection is not ready: {status}...")
            )
            return
        checked = check_upgrade(request)
        if isinstance(checked, Response):
            log.debug(
                "refused a satellite upgrade remote=%s: %s", request.remote, checked.body.decode()
            )
            await _send_http(stream, checked)
            return
        await server.serve_connection(request, stream, checked)

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from ..service import connect_params

        if service.txlog is None or service.migrations is None:
            raise RuntimeError("the satellite subsystem starts after replication")
        authenticator = Authenticator(service.config.auth)
        if authenticator.key_warning:
            log.warning(authenticator.key_warning)
        server = SatelliteServer(
            settings=self.settings,
            authenticator=authenticator,
            instance_id=service.config.instance_id,
            history=service.migrations,
            txlog=service.txlog,
            params=msgspec.structs.replace(
                connect_params(service.config.database), application_name=APPLICATION_NAME
            ),
        )
        server.writer = lambda: service.writer
        self.server = server
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.fanout)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self.server = None
            with trio.CancelScope(shield=True):
                await server.aclose()
