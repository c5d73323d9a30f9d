"""The public face of the client: :func:`electrify`, :func:`open_electric`,
:class:`ElectricClient`, shapes, status and change notifications."""

from __future__ import annotations

import contextlib
import enum
import itertools
import json
import logging
import math
import random
import re
import sqlite3
import ssl as ssl_module
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import msgspec
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, wrap_client_stream

from ..satellite import messages as m
from ._errors import (
    AuthError,
    ClientClosedError,
    ClientError,
    ConnectionFailedError,
    CorruptDatabaseError,
    ProtocolViolationError,
    SchemaMismatchError,
    SubscriptionError,
)
from ._satellite import (
    MAX_FRAME,
    Delivery,
    OutOfSyncError,
    RetryableError,
    Session,
    first_error,
)
from ._store import DataRow, IncomingTx, LocalStore
from ._values import RowDecoder, SqlValue, jsonify
from .schema import DbSchema

T = TypeVar("T")

log = logging.getLogger("electric_trio.client")

PROTOCOL = "electric.0.12"

#: Statements that change rows: :meth:`LocalDb.execute` runs them and their snapshot as one
#: transaction (anything else, ``PRAGMA`` or ``VACUUM`` say, may not run inside one).
_DML = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|WITH)\b", re.IGNORECASE)


_CONNECTION_ERRORS = (
    RetryableError,
    ConnectionClosed,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)


class Status(enum.Enum):
    """Connectivity of a client: ``CONNECTED`` once replication runs both ways."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class ElectricConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach the service and how patient to be.

    ``url``: the service's HTTP(S) address (``/ws`` is appended); ``timeout``: seconds an RPC
    may take; ``connect_attempts``, ``backoff_start``, ``backoff_max``: reconnection with
    exponential backoff and full jitter (the official client's 50, 1 s, 10 s);
    ``poll_interval``: seconds between oplog polls (for writes made outside
    :attr:`ElectricClient.conn`);
    ``push_throttle``: pause between pushes; ``ack_interval``: the acknowledgement timer;
    ``client_id``: a fixed client id instead of the one generated and stored on first start.
    """

    url: str = "http://localhost:5133"
    timeout: float = 10.0
    connect_attempts: int = 50
    backoff_start: float = 1.0
    backoff_max: float = 10.0
    poll_interval: float = 2.0
    push_throttle: float = 0.04
    ack_interval: float = 60.0
    client_id: str | None = None


class ChangeStream:
    """An async iterator of sets of table names, one per change notification; see
    :meth:`Notifier.subscribe`. Close it (``aclose`` or ``with``) when done."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._send, self._receive = trio.open_memory_channel[frozenset[str]](math.inf)
        notifier._streams.add(self._send)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> frozenset[str]:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def receive_nowait(self) -> frozenset[str]:
        """The next queued notification; ``trio.WouldBlock`` when there is none."""
        return self._receive.receive_nowait()

    def close(self) -> None:
        self._notifier._streams.discard(self._send)
        self._send.close()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Notifier:
    """Change notifications of one client.

    :meth:`notify` is called with the tables changed after every applied remote transaction,
    subscription data, GONE batch and local snapshot; :meth:`subscribe` returns a
    :class:`ChangeStream` registered at once (no notification after the call is missed)::

        with client.notifier.subscribe() as changes:
            async for tables in changes:
                ...
    """

    def __init__(self) -> None:
        self._streams: set[trio.MemorySendChannel[frozenset[str]]] = set()

    def notify(self, tables: Iterable[str]) -> None:
        names = frozenset(tables)
        if not names:
            return
        for stream in list(self._streams):
            try:
                stream.send_nowait(names)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._streams.discard(stream)

    def subscribe(self) -> ChangeStream:
        return ChangeStream(self)


class LocalDb:
    """SQL on the client's SQLite connection (``client.conn``), one statement or function at a
    time in a worker thread. Writes to electrified tables go through the oplog triggers; after
    each write the client snapshots the oplog (notifying the changed tables and waking the
    pusher)."""

    def __init__(self, client: ElectricClient) -> None:
        self._client = client

    async def query(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """Rows as dicts (column name -> SQLite value). Does not snapshot."""

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute(sql, params)
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

        return await self._client._run(run, self._client._raw)

    async def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        """Runs one statement and snapshots; returns ``rowcount``. A data change (``INSERT``,
        ``UPDATE``, ``DELETE``, ``REPLACE``, ``WITH``) and its snapshot commit as one
        transaction; any other statement runs in autocommit, followed by the snapshot."""
        wrap = _DML.match(sql) is not None
        return await self._write(lambda conn: conn.execute(sql, params).rowcount, wrap)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> int:
        """One statement for many parameter sets in one transaction, then a snapshot."""
        rows = list(rows)
        return await self.run(lambda conn: conn.executemany(sql, rows).rowcount)

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool = True) -> T:
        """``fn(connection)`` in a worker thread, inside ``BEGIN``/``COMMIT`` with the snapshot
        of its writes (rolled back if it raises), or, with ``transaction=False``, in autocommit
        followed by the snapshot."""
        return await self._write(fn, transaction)

    async def _write(self, fn: Callable[[sqlite3.Connection], T], wrap: bool) -> T:
        """One worker-thread call: ``fn`` and the snapshot (in one transaction if ``wrap`` and
        the connection is not inside one the application began: that one's writes are
        snapshotted after it commits, by the next write or the poll)."""
        client = self._client
        store = client.store

        def call(conn: sqlite3.Connection) -> tuple[T, set[str]]:
            if conn.in_transaction or not wrap:
                result = fn(conn)
                # inside the application's transaction (a BEGIN of its own): after its COMMIT
                return result, set() if conn.in_transaction else store.snapshot()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                tables = store.snapshot_within()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result, tables

        result, tables = await client._run(call, client._raw)
        client._wrote(tables)
        return result


@dataclass
class _Sub:
    id: str
    key: str
    requests: list[m.SatShapeReq]
    tables: set[str]
    state: str = "pending"  # pending | requested | active | failed | unsubscribed
    synced: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None
    #: the shape's own identity (``key`` is the caller's key when one was given, else this)
    shape: str = ""
    #: earlier subscriptions of the same key this one replaces once its data is in
    overshadows: list[str] = field(default_factory=list)
    replaced: trio.Event | None = None
    #: its rows were removed (GONE batch), or it never had any
    gone: bool = False


class ShapeHandle:
    """A shape subscription: ``await synced()`` until its data is local, ``await
    unsubscribe()`` to drop it."""

    def __init__(self, client: ElectricClient, sub: _Sub) -> None:
        self._client = client
        self._sub = sub

    @property
    def id(self) -> str:
        return self._sub.id

    @property
    def key(self) -> str:
        """The ``key`` given to :meth:`ElectricClient.sync`, else the shape's own."""
        return self._sub.key

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(self._sub.tables)

    async def synced(self) -> None:
        """Returns once the shape's initial data is in the local database; raises
        :class:`SubscriptionError` if the service refused or failed it."""
        await self._sub.synced.wait()
        if self._sub.error is not None:
            raise self._sub.error
        await self._client._replaced(self._sub)
        if self._sub.error is not None:
            raise self._sub.error

    async def unsubscribe(self) -> None:
        await self._client._unsubscribe(self._sub)


def _ws_address(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise ConnectionFailedError(
            f"bad service URL {url!r}: expected http(s)://host[:port] or ws(s)://host[:port]"
        )
    ssl = parts.scheme in ("https", "wss") or "ssl=true" in parts.query
    try:
        port = parts.port or (443 if ssl else 80)
    except ValueError as e:
        raise ConnectionFailedError(f"bad service URL {url!r}: {e}") from None
    return parts.hostname, port, ssl


class ElectricClient:
    """An electrified SQLite database and its Satellite client.

    Use as ``async with client:`` (or through :func:`open_electric`): the connection runs in a
    nursery the client owns and nothing outlives the block.
    """

    def __init__(
        self,
        raw: sqlite3.Connection,
        store: LocalStore,
        schema: DbSchema,
        config: ElectricConfig,
        owns_connection: bool,
    ) -> None:
        self._raw = raw
        self.store = store
        self.schema = schema
        self.config = config
        self._owns = owns_connection
        self._lock = trio.Lock()
        self._request_ids = itertools.count(1)
        self.notifier = Notifier()
        self.conn = LocalDb(self)
        self._status = Status.DISCONNECTED
        self.error: BaseException | None = None
        self._watchers: set[trio.MemorySendChannel[Status]] = set()
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._loop_scope: trio.CancelScope | None = None
        self._settled = trio.Event()
        self._session: Session | None = None
        self._token: str | None = None
        self._subs: dict[str, _Sub] = {}
        self._rel_ids: dict[str, int] = {}
        self._server_relations: dict[int, m.SatRelation] = {}
        self._server_decoders: dict[int, RowDecoder] = {}
        self._closed = False
        self._load_subscriptions()

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self.store.client_id

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.disconnect()
        for sub in self._subs.values():
            if not sub.synced.is_set():
                sub.error = ClientClosedError("the client closed before the shape was synced")
                sub.synced.set()
            if sub.replaced is not None and not sub.replaced.is_set():
                sub.error = ClientClosedError("the client closed before the shape was synced")
                sub.replaced.set()
        stack, self._stack, self._nursery = self._stack, None, None
        try:
            if stack is not None:
                return await stack.__aexit__(exc_type, exc, tb)
            return None
        finally:
            self._closed = True
            if self._owns:
                self._raw.close()

    @property
    def status(self) -> Status:
        return self._status

    def _set_status(self, status: Status) -> None:
        if status == self._status:
            return
        self._status = status
        for w in list(self._watchers):
            try:
                w.send_nowait(status)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._watchers.discard(w)

    async def status_changes(self) -> AsyncGenerator[Status, None]:
        """The current status, then every change (an async generator; ``aclose`` it or leave
        the loop to stop watching)."""
        send, receive = trio.open_memory_channel[Status](math.inf)
        self._watchers.add(send)
        try:
            yield self._status
            async for status in receive:
                yield status
        finally:
            self._watchers.discard(send)
            send.close()

    async def connect(self, token: str | None = None) -> None:
        """Connects (token required the first time) and returns once replication runs; the
        client then stays connected, reconnecting with backoff when the connection drops.
        Raises :class:`AuthError`, :class:`ConnectionFailedError`,
        :class:`SchemaMismatchError` when the first connection cannot be made."""
        if self._nursery is None:
            raise ClientClosedError("use the client as `async with client:` before connecting")
        if token is not None:
            self._token = token
        if self._token is None:
            raise AuthError("connect() needs a token the first time")
        _ws_address(self.config.url)
        if self._loop_scope is None:
            self._settled = trio.Event()
            self.error = None
            self._loop_scope = trio.CancelScope()
            self._nursery.start_soon(self._connection_loop, self._loop_scope)
        await self._settled.wait()
        if self._status == Status.CONNECTING:
            async with contextlib.aclosing(self.status_changes()) as statuses:
                async for status in statuses:
                    if status in (Status.CONNECTED, Status.ERROR, Status.DISCONNECTED):
                        break
        if self._status != Status.CONNECTED and self.error is not None:
            raise self.error

    async def disconnect(self) -> None:
        """Closes the connection; no reconnection until :meth:`connect` is called again."""
        scope, self._loop_scope = self._loop_scope, None
        if scope is not None:
            scope.cancel()
        self._session = None
        if self._status != Status.ERROR:
            self._set_status(Status.DISCONNECTED)
        self._settled.set()

    async def _connection_loop(self, scope: trio.CancelScope) -> None:
        with scope:
            attempt = 0
            last: BaseException | None = None
            while True:
                self._set_status(Status.CONNECTING)
                try:
                    await self._connect_once()
                except (AuthError, SchemaMismatchError, ConnectionFailedError) as e:
                    self._fail(e)
                    return
                except OutOfSyncError as e:
                    log.warning("the service cannot resume this client, resyncing: %s", e)
                    last = e
                    await self._reset_after_out_of_sync()
                    continue
                except (
                    RetryableError,
                    ProtocolViolationError,
                    OSError,
                    HandshakeError,
                    ConnectionClosed,
                    trio.TooSlowError,
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                ) as e:
                    log.info("connection to %s lost or failed: %r", self.config.url, e)
                    last = e
                finally:
                    self._session = None
                if self._status == Status.CONNECTED:
                    attempt = 0
                attempt += 1
                if attempt >= self.config.connect_attempts:
                    self._fail(
                        ConnectionFailedError(
                            f"could not connect to the service at {self.config.url} after"
                            f" {attempt} attempts: {last}"
                        )
                    )
                    return
                self._set_status(Status.CONNECTING)
                delay = min(self.config.backoff_max, self.config.backoff_start * 2 ** (attempt - 1))
                await trio.sleep(random.uniform(0, delay))

    def _fail(self, error: BaseException) -> None:
        self.error = error
        self._loop_scope = None
        self._set_status(Status.ERROR)
        self._settled.set()

    async def _connect_once(self) -> None:
        host, port, ssl = _ws_address(self.config.url)
        assert self._token is not None

        def connected() -> None:
            self.error = None
            self._set_status(Status.CONNECTED)
            self._settled.set()

        try:
            with trio.fail_after(self.config.timeout):
                tcp = await trio.open_tcp_stream(host, port)
            stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = tcp
            if ssl:
                stream = trio.SSLStream(
                    tcp, ssl_module.create_default_context(), server_hostname=host
                )
            async with stream, trio.open_nursery() as nursery:
                with trio.fail_after(self.config.timeout):
                    ws = await wrap_client_stream(
                        nursery,
                        stream,
                        host,
                        "/ws",
                        subprotocols=[PROTOCOL],
                        max_message_size=MAX_FRAME,
                    )
                try:
                    session = Session(self, ws, self._token)
                    self._session = session
                    await session.run(connected)
                finally:
                    with trio.move_on_after(1) as cleanup:
                        cleanup.shield = True
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            error = first_error(group)
            if isinstance(error, ConnectionRejected):
                self._rejected(error)
            raise error from None
        except ConnectionRejected as e:
            self._rejected(e)

    def _rejected(self, e: ConnectionRejected) -> None:
        body = (e.body or b"").decode(errors="replace").strip()
        if e.status_code == 503:
            raise RetryableError(f"service not ready: {body}") from None
        raise ConnectionFailedError(
            f"the service at {self.config.url} refused the WebSocket upgrade of /ws:"
            f" HTTP {e.status_code} {body}"
        ) from None

    # ---- the store ----------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await trio.to_thread.run_sync(fn, *args)

    async def _snapshot(self) -> None:
        tables = await self._run(self.store.snapshot)
        self.notifier.notify(tables)

    def _wrote(self, tables: set[str]) -> None:
        """A local write and its snapshot committed: notify, wake the pusher."""
        self.notifier.notify(tables)
        session = self._session
        if tables and session is not None:
            session.push_wanted.set()

    def _relation_id(self, table: str) -> int:
        return self._rel_ids.setdefault(table, len(self._rel_ids))

    def _resume_state(self) -> tuple[bytes, str | None, list[str], list[int]]:
        store = self.store
        seen = str(store.meta("seenAdditionalData") or "")
        return (
            store.lsn(),
            store.schema_version(),
            [s.id for s in self._subs.values() if s.state in ("active", "unsubscribing")],
            [int(r) for r in seen.split(",") if r],
        )

    async def _transaction(self, tx: IncomingTx) -> None:
        tables = await self._run(self.store.apply_transaction, tx)
        self.notifier.notify(tables)

    async def _additional_data(
        self, ref: int, rows: list[tuple[str, dict[str, SqlValue], list[str]]]
    ) -> None:
        tables = await self._run(self.store.apply_data, rows, None, ref, None)
        self.notifier.notify(tables)

    async def _load_subscription_data(
        self, delivery: Delivery, chunks: trio.MemoryReceiveChannel[list[DataRow]]
    ) -> None:
        """Writes a delivery's rows chunk by chunk as they arrive, in one transaction under the
        store's lock, committed once all are in (rolled back if the delivery fails)."""
        store = self.store
        tables: set[str] = set()
        async with self._lock:
            await trio.to_thread.run_sync(store.begin_data)
            try:
                async for raw in chunks:
                    await trio.to_thread.run_sync(store.load_rows, raw)
                if delivery.aborted:
                    await trio.to_thread.run_sync(store.abort_data)
                else:
                    sub = self._subs.get(delivery.subscription_id)
                    if sub is not None and sub.state != "unsubscribed":
                        sub.state = "active"
                    tables = await trio.to_thread.run_sync(
                        store.finish_data, delivery.lsn, None, self._subscriptions_json()
                    )
            except BaseException:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(store.abort_data)
                raise
        if not delivery.aborted:
            self._subscription_delivered(delivery.subscription_id, tables)
        delivery.done.set()

    def _subscription_delivered(self, sub_id: str, tables: set[str]) -> None:
        self.notifier.notify(tables)
        sub = self._subs.get(sub_id)
        if sub is not None:
            sub.synced.set()
            if sub.overshadows and self._nursery is not None:
                # not from the reader, which must stay free to read the responses
                self._nursery.start_soon(self._drop_overshadowed, sub)

    def _subscription_failed(self, sub_id: str, error: BaseException) -> None:
        sub = self._subs.get(sub_id)
        if sub is not None:
            sub.state = "failed"
            sub.error = error
            sub.synced.set()

    async def _gone_batch(
        self, sub_ids: Sequence[str], rows: list[tuple[str, dict[str, SqlValue]]], lsn: bytes
    ) -> None:
        for sid in sub_ids:
            sub = self._subs.get(sid)
            if sub is not None:
                sub.state = "unsubscribed"
                sub.gone = True
        tables = await self._run(self.store.apply_gone, rows, lsn, self._subscriptions_json())
        self.notifier.notify(tables)
        self._overshadowed_gone()

    async def _reset_after_out_of_sync(self) -> None:
        tables: set[str] = set()
        for sub in self._subs.values():
            if sub.state in ("active", "requested"):
                tables |= sub.tables
                sub.state = "pending"
        await self._run(self.store.reset, tables)
        await self._run(self.store.set_meta, "subscriptions", self._subscriptions_json())
        self.notifier.notify(tables)

    # ---- subscriptions ------------------------------------------------------------------

    def _subscriptions_json(self) -> str:
        active = {
            s.id: {
                "key": s.key,
                "shape": s.shape,
                "overshadows": s.overshadows,
                "tables": sorted(s.tables),
                "requests": [msgspec.to_builtins(r) for r in s.requests],
                "unsubscribing": s.state == "unsubscribing",
            }
            for s in self._subs.values()
            if s.state in ("active", "unsubscribing")
        }
        # the official client's keys stay present (and empty) so that it can open the file:
        # it then knows no shapes of ours and requests its own
        return jsonify(
            {"known": {}, "unfulfilled": {}, "active": {}, "unsubscribes": [], "python": active}
        )

    def _load_subscriptions(self) -> None:
        raw = self.store.meta("subscriptions")
        if not raw:
            return
        try:
            data = json.loads(raw)
            active = data.get("python", {}) if isinstance(data, dict) else {}
        except (ValueError, AttributeError):
            return  # the official client's own format: its shapes are requested again
        if not isinstance(active, dict):
            return
        for sid, info in active.items():
            if not isinstance(info, dict) or "key" not in info or "tables" not in info:
                continue  # not ours (the official client's shape state)
            try:
                requests = msgspec.convert(info.get("requests", []), list[m.SatShapeReq])
            except msgspec.ValidationError:
                requests = []
            state = "unsubscribing" if info.get("unsubscribing") else "active"
            sub = _Sub(sid, str(info["key"]), requests, set(info["tables"]), state=state)
            sub.shape = str(info.get("shape") or sub.key)
            sub.overshadows = [str(x) for x in info.get("overshadows") or []]
            sub.synced.set()
            self._subs[sid] = sub

    def _select(
        self, table: str, where: str | None, include: Mapping[str, Any] | None, tables: set[str]
    ) -> m.SatShapeDefSelect:
        tables.add(table)
        relations: list[m.SatShapeDefRelation] = []
        if include:
            described = self.schema.tables.get(table)
            for name, spec in include.items():
                if not spec:
                    continue
                rel = (
                    next((r for r in described.relations if r.field == name), None)
                    if (described)
                    else None
                )
                if rel is None:
                    raise SubscriptionError(f"table {table!r} has no relation {name!r} to include")
                fk = (rel.to_column,) if rel.many else (rel.from_column,)
                inner = spec if isinstance(spec, Mapping) else {}
                relations.append(
                    m.SatShapeDefRelation(
                        foreign_key=fk,
                        select=self._select(
                            rel.table, inner.get("where"), inner.get("include"), tables
                        ),
                    )
                )
        return m.SatShapeDefSelect(tablename=table, where=where or "", include=tuple(relations))

    async def sync(
        self,
        table: str,
        *,
        where: str | None = None,
        include: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> ShapeHandle:
        """Subscribes to a shape: ``table`` rows matching ``where`` (a shape where clause such
        as ``"this.done = false"``), with ``include``d related rows (``{relation field: True or
        {"where": ..., "include": ...}}``, fields of the schema's relations). Returns at once
        (also offline: the request goes out once connected); ``await handle.synced()``.

        An identical shape already subscribed under the same ``key`` (or without one) returns
        the same subscription. A different shape under a ``key`` in use replaces that key's
        subscription, as the official client's ``sync({..., key})`` does: the new shape is
        requested, and once its data is in, the previous one is unsubscribed (its rows that no
        other shape holds go); ``synced()`` returns after both."""
        tables: set[str] = set()
        select = self._select(table, where, include, tables)
        shape = jsonify(msgspec.to_builtins(select))
        name = shape if key is None else key
        latest: _Sub | None = None
        for sub in self._subs.values():
            if sub.key == name and sub.state in ("pending", "requested", "active"):
                latest = sub
        if latest is not None and latest.shape == shape:
            return ShapeHandle(self, latest)
        request = m.SatShapeReq(
            request_id=str(uuid.uuid4()), shape_definition=m.SatShapeDef(selects=(select,))
        )
        sub = _Sub(str(uuid.uuid4()), name, [request], tables, shape=shape)
        if latest is not None:
            sub.overshadows = [latest.id, *latest.overshadows]
        self._subs[sub.id] = sub
        session = self._session
        if session is not None and session.ready.is_set():
            try:
                await self._request(session, sub)
            except _CONNECTION_ERRORS:
                sub.state = "pending"  # requested again once reconnected
        return ShapeHandle(self, sub)

    async def _drop_overshadowed(self, sub: _Sub) -> None:
        """Unsubscribes the subscriptions ``sub`` replaces; those not yet delivered are
        dropped at once (no GONE batch to wait for), the others once their GONE batch is in."""
        for sid in list(sub.overshadows):
            old = self._subs.get(sid)
            if old is None or old.gone or old.state == "failed":
                continue
            if old.state in ("pending", "requested") and not old.synced.is_set():
                old.error = SubscriptionError(
                    f"replaced by a newer subscription with the key {old.key!r}"
                )
                old.synced.set()
            if old.state == "pending":
                old.state = "unsubscribed"
                old.gone = True
                continue
            if old.state == "active":
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await self._unsubscribe(old)  # once connected again if this fails
            else:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await self._unsubscribe(old)
                old.state = "unsubscribed"
                old.gone = True
        self._overshadowed_gone()

    def _overshadowed_gone(self) -> None:
        for sub in self._subs.values():
            if sub.overshadows:
                sub.overshadows = [
                    sid
                    for sid in sub.overshadows
                    if sid in self._subs
                    and not self._subs[sid].gone
                    and self._subs[sid].state != "failed"
                ]
                if not sub.overshadows and sub.replaced is not None:
                    sub.replaced.set()

    async def _replaced(self, sub: _Sub) -> None:
        """Waits until the subscriptions ``sub`` replaces are gone."""
        if sub.overshadows:
            if sub.replaced is None:
                sub.replaced = trio.Event()
            self._overshadowed_gone()
            await sub.replaced.wait()

    async def _request(self, session: Session, sub: _Sub) -> None:
        reply = await session.call(
            "subscribe", m.SatSubsReq(subscription_id=sub.id, shape_requests=tuple(sub.requests))
        )
        if isinstance(reply, m.SatErrorResp):
            raise RetryableError(f"subscribe failed: {reply.error_type.name}")
        assert isinstance(reply, m.SatSubsResp)
        if reply.err is not None:
            details = "; ".join(
                f"{e.code.name}: {e.message}" for e in reply.err.shape_request_error
            )
            self._subscription_failed(
                sub.id,
                SubscriptionError(
                    f"the service refused the shape on {sorted(sub.tables)}: {reply.err.message}"
                    + (f" ({details})" if details else "")
                ),
            )
            return
        if sub.state == "pending":
            sub.state = "requested"

    async def _resubscribe(self, session: Session) -> None:
        for sub in list(self._subs.values()):
            if sub.state == "unsubscribing":  # unsubscribed while offline: its GONE batch follows
                await session.call("unsubscribe", m.SatUnsubsReq(subscription_ids=(sub.id,)))
                sub.state = "unsubscribed"
                continue
            if sub.state == "pending" or (sub.state == "requested" and sub.requests):
                if not sub.requests:
                    continue
                sub.state = "pending"
                await self._request(session, sub)

    async def _unsubscribe(self, sub: _Sub) -> None:
        """Unsubscribes now, or (offline) once connected again: the service then sends the GONE
        batch that removes the shape's rows."""
        was = sub.state
        sub.state = "unsubscribed"
        session = self._session
        if was == "active":
            sub.state = "unsubscribing"
        if was in ("active", "requested") and session is not None and session.ready.is_set():
            try:
                await session.call("unsubscribe", m.SatUnsubsReq(subscription_ids=(sub.id,)))
                sub.state = "unsubscribed"
            except _CONNECTION_ERRORS:
                pass
        await self._run(self.store.set_meta, "subscriptions", self._subscriptions_json())


def _open_store(
    target: str | Path | sqlite3.Connection, schema: DbSchema, config: ElectricConfig
) -> tuple[sqlite3.Connection, LocalStore, bool]:
    if isinstance(target, sqlite3.Connection):
        conn, owns, where = target, False, "the given SQLite connection"
        try:
            conn.isolation_level = None  # the client issues BEGIN/COMMIT itself
        except sqlite3.ProgrammingError as e:
            raise ClientError(
                f"{where}: the client runs SQLite in a worker thread; open the connection with"
                f" check_same_thread=False ({e})"
            ) from e
    else:
        where = str(target)
        try:
            conn = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise CorruptDatabaseError(f"{where}: cannot open the SQLite database ({e})") from e
        owns = True
    store = LocalStore(conn, schema, where)
    try:
        store.open(config.client_id)
    except sqlite3.ProgrammingError as e:
        raise ClientError(
            f"{where}: the client runs SQLite in a worker thread; open the connection with"
            f" check_same_thread=False ({e})"
        ) from e
    except ClientError:
        if owns:
            conn.close()
        raise
    except sqlite3.DatabaseError as e:
        if owns:
            conn.close()
        raise CorruptDatabaseError(f"{where}: {e}") from e
    return conn, store, owns


async def electrify(
    target: str | Path | sqlite3.Connection,
    schema: DbSchema,
    config: ElectricConfig | None = None,
) -> ElectricClient:
    """Opens (creating if needed) the local database at ``target`` (a path, or a ``sqlite3``
    connection made with ``check_same_thread=False``), applies the internal migration and the
    schema's bundled migrations, and returns the client (use it as ``async with client:``)."""
    config = config or ElectricConfig()
    conn, store, owns = await trio.to_thread.run_sync(_open_store, target, schema, config)
    return ElectricClient(conn, store, schema, config, owns)


@asynccontextmanager
async def open_electric(
    target: str | Path | sqlite3.Connection,
    schema: DbSchema,
    config: ElectricConfig | None = None,
    *,
    token: str | None = None,
) -> AsyncIterator[ElectricClient]:
    """:func:`electrify`, then the client's nursery for the block; connects first when a
    ``token`` is given."""
    client = await electrify(target, schema, config)
    async with client:
        if token is not None:
            await client.connect(token)
        yield client
