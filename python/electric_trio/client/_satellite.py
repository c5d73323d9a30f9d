"""One Satellite connection of the client: authenticate, start replication both ways, apply what
the service streams, push the oplog, acknowledge (satellite-protocol.md §7,
client-behaviour.md §4-§9). :class:`~electric_trio.client._client.ElectricClient` runs one
:class:`Session` per connection attempt and reconnects."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ..satellite import messages as m
from ._errors import AuthError, ProtocolViolationError, SchemaMismatchError, SubscriptionError
from ._store import DataRow, IncomingChange, IncomingTx, OutTx
from ._values import RowDecoder, SqlValue, encode_row

if TYPE_CHECKING:
    from ._client import ElectricClient

Code = m.SatInStartReplicationRespReplicationErrorCode

#: The largest frame the client accepts from the service.
MAX_FRAME = 64 * 1024 * 1024

#: Start-replication errors after which the official client wipes its synced state and retries.
OUT_OF_SYNC = frozenset({Code.BEHIND_WINDOW, Code.INVALID_POSITION, Code.SUBSCRIPTION_NOT_FOUND})


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a failed nursery stands for: its first leaf that is not a cancellation."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for inner in e.exceptions:
                walk(inner)
        else:
            leaves.append(e)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, trio.Cancelled):
            return leaf
    return leaves[0] if leaves else group


class RetryableError(Exception):
    """The connection failed in a way a new connection may fix."""


class OutOfSyncError(RetryableError):
    """The service cannot resume from our position: reset, then retry."""


#: Rows of subscription data handed to the loader at a time, so that SQLite inserts the rows
#: received while the next ones arrive.
CHUNK = 4096


@dataclass
class Delivery:
    """Subscription data being received: chunks of rows go to the client's loader
    (:meth:`ElectricClient._load_subscription_data`) as they come."""

    subscription_id: str
    lsn: bytes
    send: trio.MemorySendChannel[list[DataRow]]
    rows: list[DataRow] = field(default_factory=list)
    in_shape: bool = False
    aborted: bool = False
    done: trio.Event = field(default_factory=trio.Event)


@dataclass
class _Gone:
    subscription_ids: tuple[str, ...]
    lsn: bytes
    rows: list[tuple[str, dict[str, SqlValue]]] = field(default_factory=list)


class Session:
    """One WebSocket connection; :meth:`run` returns or raises when it ends."""

    def __init__(self, client: ElectricClient, ws: WebSocketConnection, token: str) -> None:
        self.client = client
        self.ws = ws
        self.token = token
        self.send_lock = trio.Lock()
        self.pending: dict[tuple[str, int], trio.MemorySendChannel[m.SatRpcResponse]] = {}
        # the service's relations by id, kept by the client across connections: a resumed
        # connection may get rows of a relation described on an earlier one
        self.relations: dict[int, m.SatRelation] = client._server_relations
        self.decoders: dict[int, RowDecoder] = client._server_decoders
        self.sent_relations: dict[str, tuple[tuple[str, str, bool], ...]] = {}
        self.outbound_active = False
        self.last_sent = 0
        self.push_wanted = trio.Event()
        self.window = 30
        self.last_tx_id: int | None = None
        self.last_tx_lsn = b""
        self.last_acked: int | None = None
        self.unacked = 0
        self.seen_subs: list[str] = []
        self.seen_refs: list[int] = []
        self.seen_gone: list[str] = []
        self.tx: IncomingTx | None = None
        self.additional: tuple[int, list[tuple[str, dict[str, SqlValue], list[str]]]] | None = None
        self.delivery: Delivery | None = None
        self.nursery: trio.Nursery | None = None
        self.gone: _Gone | None = None
        self.ready = trio.Event()
        self.closed = False

    # ---- wire ---------------------------------------------------------------------------

    async def send(self, *messages: m.FrameMessage) -> None:
        async with self.send_lock:
            for message in messages:
                await self.ws.send_message(m.encode(message))

    async def call(self, method: str, body: m.ProtoMessage) -> m.ProtoMessage:
        """An RPC call; its response body (or the ``SatErrorResp`` of a failure)."""
        if self.closed:
            raise RetryableError(f"the connection closed before {method}")
        request_id = next(self.client._request_ids)
        send, receive = trio.open_memory_channel[m.SatRpcResponse](1)
        self.pending[(method, request_id)] = send
        try:
            await self.send(
                m.SatRpcRequest(
                    method=method, request_id=request_id, message=m.encode_message(body)
                )
            )
            with trio.move_on_after(self.client.config.timeout) as scope:
                try:
                    response = await receive.receive()
                except trio.EndOfChannel:
                    raise RetryableError(f"the connection closed during {method}") from None
            if scope.cancelled_caught:
                raise RetryableError(
                    f"the service did not answer {method} within {self.client.config.timeout} s"
                )
        finally:
            self.pending.pop((method, request_id), None)
        return m.rpc_response_body(response)

    # ---- the connection -----------------------------------------------------------------

    async def run(self, connected: Callable[[], None]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._reader)
                await self._handshake()
                nursery.start_soon(self._pusher)
                nursery.start_soon(self._ack_timer)
                await self.client._resubscribe(self)
                self.ready.set()
                connected()
        except BaseExceptionGroup as group:
            raise first_error(group) from None

    async def _handshake(self) -> None:
        client = self.client
        reply = await self.call("authenticate", m.SatAuthReq(id=client.client_id, token=self.token))
        if isinstance(reply, m.SatErrorResp):
            if reply.error_type in (
                m.SatErrorRespErrorCode.AUTH_REQUIRED,
                m.SatErrorRespErrorCode.AUTH_FAILED,
            ):
                raise AuthError(
                    f"the service at {client.config.url} refused the token"
                    f" ({reply.error_type.name}{': ' + reply.message if reply.message else ''})"
                )
            raise RetryableError(f"authentication failed: {reply.error_type.name} {reply.message}")
        lsn, version, subs, seen = await client._run(client._resume_state)
        if lsn:
            request = m.SatInStartReplicationReq(
                lsn=lsn,
                subscription_ids=tuple(subs),
                observed_transaction_data=tuple(seen),
                sql_dialect=m.SatInStartReplicationReqDialect.SQLITE,
            )
        else:
            request = m.SatInStartReplicationReq(
                schema_version=version, sql_dialect=m.SatInStartReplicationReqDialect.SQLITE
            )
        reply = await self.call("startReplication", request)
        if isinstance(reply, m.SatErrorResp):
            raise RetryableError(f"startReplication failed: {reply.error_type.name}")
        assert isinstance(reply, m.SatInStartReplicationResp)
        if reply.err is not None:
            code = reply.err.code
            if code == Code.UNKNOWN_SCHEMA_VSN:
                raise SchemaMismatchError(
                    f"UNKNOWN_SCHEMA_VSN: the service at {client.config.url} does not know the"
                    f" local schema version {version!r} ({reply.err.message}); the generated"
                    " client does not match the service's migrations"
                )
            if code in OUT_OF_SYNC:
                raise OutOfSyncError(f"{code.name}: {reply.err.message}")
            raise RetryableError(f"startReplication refused: {code.name} {reply.err.message}")
        if reply.unacked_window_size:
            self.window = reply.unacked_window_size

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.ws.get_message()
                if not isinstance(data, bytes):
                    raise ProtocolViolationError("the service sent a text frame")
                await self._dispatch(m.decode(data, max_len=MAX_FRAME))
        except ConnectionClosed as e:
            reason = e.reason
            if reason is not None and reason.reason == "JWT-expired":
                raise AuthError("the service closed the connection: the token expired") from None
            why = f"{reason.code} {reason.reason}" if reason is not None else "no reason"
            raise RetryableError(f"connection closed ({why})") from None
        finally:
            self.closed = True
            for waiter in list(self.pending.values()):
                waiter.close()

    async def _dispatch(self, message: m.FrameMessage) -> None:
        client = self.client
        if isinstance(message, m.SatRpcResponse):
            waiter = self.pending.get((message.method, message.request_id))
            if waiter is not None:
                waiter.send_nowait(message)
        elif isinstance(message, m.SatRpcRequest):
            await self._answer(message)
        elif isinstance(message, m.SatRelation):
            self.relations[message.relation_id] = message
            self.decoders[message.relation_id] = RowDecoder(
                message.table_name, [(c.name, c.type) for c in message.columns]
            )
            # in memory only, and not under the store's lock, which a delivery holds
            client.store.learn_relation(message)
        elif isinstance(message, m.SatOpLog):
            await self._oplog(message)
        elif isinstance(message, m.SatSubsDataBegin):
            if self.delivery is not None:
                raise ProtocolViolationError("subscription data began inside another")
            send, receive = trio.open_memory_channel[list[DataRow]](math.inf)
            self.delivery = Delivery(message.subscription_id, message.lsn, send)
            assert self.nursery is not None
            self.nursery.start_soon(client._load_subscription_data, self.delivery, receive)
        elif isinstance(message, m.SatShapeDataBegin):
            if self.delivery is None or self.delivery.in_shape:
                raise ProtocolViolationError("shape data outside subscription data")
            self.delivery.in_shape = True
        elif isinstance(message, m.SatShapeDataEnd):
            if self.delivery is None or not self.delivery.in_shape:
                raise ProtocolViolationError("shape data end without a begin")
            self.delivery.in_shape = False
        elif isinstance(message, m.SatSubsDataEnd):
            delivery, self.delivery = self.delivery, None
            if delivery is None:
                raise ProtocolViolationError("subscription data end without a begin")
            delivery.send.send_nowait(delivery.rows)
            delivery.rows = []
            delivery.send.close()
            await delivery.done.wait()
            self.seen_subs.append(delivery.subscription_id)
            await self.try_ack()
        elif isinstance(message, m.SatSubsDataError):
            delivery = self.delivery
            if delivery is not None and delivery.subscription_id == message.subscription_id:
                self.delivery = None
                delivery.aborted = True
                delivery.send.close()
                await delivery.done.wait()
            client._subscription_failed(
                message.subscription_id,
                SubscriptionError(
                    f"the service could not deliver subscription {message.subscription_id}:"
                    f" {message.message}"
                ),
            )
        elif isinstance(message, m.SatUnsubsDataBegin):
            self.gone = _Gone(message.subscription_ids, message.lsn)
        elif isinstance(message, m.SatUnsubsDataEnd):
            gone, self.gone = self.gone, None
            if gone is None:
                raise ProtocolViolationError("GONE batch end without a begin")
            await client._gone_batch(gone.subscription_ids, gone.rows, gone.lsn)
            self.seen_gone.extend(gone.subscription_ids)
            await self.try_ack()
        elif isinstance(message, m.SatErrorResp):
            raise RetryableError(
                f"the service reported {message.error_type.name}: {message.message or ''}"
            )

    async def _answer(self, request: m.SatRpcRequest) -> None:
        if request.method == "startReplication":
            body = m.rpc_request_body(request)
            assert isinstance(body, m.SatInStartReplicationReq)
            self.last_sent = int.from_bytes(body.lsn, "big") if body.lsn else 0
            self.outbound_active = True
            self.sent_relations.clear()
            reply = m.encode_message(m.SatInStartReplicationResp())
            await self.send(
                m.SatRpcResponse(
                    method=request.method, request_id=request.request_id, message=reply
                )
            )
            self.push_wanted.set()
        elif request.method == "stopReplication":
            self.outbound_active = False
            reply = m.encode_message(m.SatInStopReplicationResp())
            await self.send(
                m.SatRpcResponse(
                    method=request.method, request_id=request.request_id, message=reply
                )
            )
        else:
            await self.send(
                m.SatRpcResponse(
                    method=request.method,
                    request_id=request.request_id,
                    error=m.SatErrorResp(error_type=m.SatErrorRespErrorCode.INVALID_REQUEST),
                )
            )

    def _decoder(self, relation_id: int) -> RowDecoder:
        decoder = self.decoders.get(relation_id)
        if decoder is None:
            raise ProtocolViolationError(f"unknown relation id {relation_id}")
        return decoder

    def _row(self, relation_id: int, row: m.SatOpRow | None) -> tuple[str, dict[str, SqlValue]]:
        decoder = self._decoder(relation_id)
        return decoder.table, decoder.row(row)

    async def _oplog(self, log: m.SatOpLog) -> None:
        client = self.client
        for op in log.ops:
            if self.delivery is not None:
                if op.insert is None:
                    raise ProtocolViolationError("only inserts may come with subscription data")
                # decoded here, while the worker thread's SQLite inserts (the GIL released)
                # the previous chunk
                delivery = self.delivery
                decoder = self._decoder(op.insert.relation_id)
                delivery.rows.append(
                    (
                        decoder.table,
                        decoder.names,
                        decoder.values(op.insert.row_data),
                        op.insert.tags,
                    )
                )
                if len(delivery.rows) >= CHUNK:
                    delivery.send.send_nowait(delivery.rows)
                    delivery.rows = []
            elif self.gone is not None:
                if op.gone is None:
                    raise ProtocolViolationError("only GONE ops may come in a GONE batch")
                self.gone.rows.append(self._row(op.gone.relation_id, op.gone.pk_data))
            elif op.begin is not None:
                b = op.begin
                self.tx = IncomingTx(
                    b.commit_timestamp,
                    b.lsn,
                    b.origin,
                    b.is_migration,
                    b.transaction_id,
                    b.additional_data_ref,
                    [],
                )
            elif op.commit is not None:
                tx, self.tx = self.tx, None
                if tx is None:
                    raise ProtocolViolationError("commit without begin")
                await client._transaction(tx)
                if tx.transaction_id is not None:
                    self.last_tx_id = tx.transaction_id
                self.last_tx_lsn = tx.lsn
                self.unacked += 1
                self.seen_subs.clear()
                self.seen_refs.clear()
                self.seen_gone.clear()
                if self.unacked >= math.floor(0.7 * self.window):
                    await self.try_ack()
            elif op.additional_begin is not None:
                self.additional = (op.additional_begin.ref, [])
            elif op.additional_commit is not None:
                additional, self.additional = self.additional, None
                if additional is None:
                    raise ProtocolViolationError("additional data commit without begin")
                await client._additional_data(additional[0], additional[1])
                self.seen_refs.append(additional[0])
                await self.try_ack()
            elif self.additional is not None:
                if op.insert is None:
                    raise ProtocolViolationError("only inserts may come as additional data")
                table, row = self._row(op.insert.relation_id, op.insert.row_data)
                self.additional[1].append((table, row, list(op.insert.tags)))
            elif self.tx is None:
                raise ProtocolViolationError("a change outside a transaction")
            elif op.migrate is not None:
                self.tx.ops.append(op.migrate)
            elif op.insert is not None:
                table, new = self._row(op.insert.relation_id, op.insert.row_data)
                self.tx.ops.append(IncomingChange(table, "insert", new, None, list(op.insert.tags)))
            elif op.update is not None:
                table, new = self._row(op.update.relation_id, op.update.row_data)
                _, old = self._row(op.update.relation_id, op.update.old_row_data)
                self.tx.ops.append(IncomingChange(table, "update", new, old, list(op.update.tags)))
            elif op.delete is not None:
                table, old = self._row(op.delete.relation_id, op.delete.old_row_data)
                self.tx.ops.append(IncomingChange(table, "delete", None, old, list(op.delete.tags)))
            elif op.gone is not None:
                table, old = self._row(op.gone.relation_id, op.gone.pk_data)
                self.tx.ops.append(IncomingChange(table, "gone", None, old, []))

    # ---- acknowledgements ---------------------------------------------------------------

    async def try_ack(self) -> None:
        if self.last_tx_id is None or self.last_tx_id == self.last_acked:
            return
        await self.send(
            m.SatOpLogAck(
                ack_timestamp=int(time.time() * 1000),
                lsn=self.last_tx_lsn,
                transaction_id=self.last_tx_id,
                subscription_ids=tuple(self.seen_subs),
                additional_data_source_ids=tuple(self.seen_refs),
                gone_subscription_ids=tuple(self.seen_gone),
            )
        )
        self.last_acked = self.last_tx_id
        self.unacked = 0

    async def _ack_timer(self) -> None:
        while True:
            await trio.sleep(self.client.config.ack_interval)
            await self.try_ack()

    # ---- outgoing -----------------------------------------------------------------------

    async def _pusher(self) -> None:
        client = self.client
        while True:
            with trio.move_on_after(client.config.poll_interval):
                await self.push_wanted.wait()
            self.push_wanted = trio.Event()
            await client._snapshot()
            if self.outbound_active:
                txs = await client._run(client.store.pending, self.last_sent)
                for tx in txs:
                    if not self.outbound_active:
                        break
                    await self._send_tx(tx)
                    self.last_sent = tx.max_rowid
            await trio.sleep(client.config.push_throttle)

    async def _send_tx(self, tx: OutTx) -> None:
        client = self.client
        frames: list[m.FrameMessage] = []
        ops: list[m.SatTransOp] = [
            m.SatTransOp(
                begin=m.SatOpBegin(
                    commit_timestamp=tx.commit_timestamp, lsn=tx.max_rowid.to_bytes(4, "big")
                )
            )
        ]
        tables = sorted({change.table for change in tx.changes})
        described = await client._run(
            lambda: {t: tuple(client.store.relation_columns(t)) for t in tables}
        )
        for change in tx.changes:
            columns = described[change.table]
            rel_id = client._relation_id(change.table)
            if self.sent_relations.get(change.table) != columns:
                self.sent_relations[change.table] = columns
                frames.append(
                    m.SatRelation(
                        schema_name="public",
                        table_name=change.table,
                        relation_id=rel_id,
                        columns=tuple(
                            m.SatRelationColumn(name=n, type=t, is_nullable=nl)
                            for n, t, nl in columns
                        ),
                    )
                )
            cols = [(n, t) for n, t, _ in columns]
            tags = tuple(change.tags)
            new: dict[str, Any] = change.new or {}
            old: dict[str, Any] = change.old or {}
            if change.optype == "INSERT":
                ops.append(
                    m.SatTransOp(
                        insert=m.SatOpInsert(
                            relation_id=rel_id, row_data=encode_row(cols, new), tags=tags
                        )
                    )
                )
            elif change.optype == "UPDATE":
                ops.append(
                    m.SatTransOp(
                        update=m.SatOpUpdate(
                            relation_id=rel_id,
                            row_data=encode_row(cols, new),
                            old_row_data=encode_row(cols, old),
                            tags=tags,
                        )
                    )
                )
            elif change.optype == "DELETE":
                ops.append(
                    m.SatTransOp(
                        delete=m.SatOpDelete(
                            relation_id=rel_id, old_row_data=encode_row(cols, old), tags=tags
                        )
                    )
                )
            elif change.optype == "COMPENSATION":
                ops.append(
                    m.SatTransOp(
                        compensation=m.SatOpCompensation(
                            relation_id=rel_id, pk_data=encode_row(cols, new), tags=tags
                        )
                    )
                )
        ops.append(m.SatTransOp(commit=m.SatOpCommit()))
        frames.append(m.SatOpLog(ops=tuple(ops)))
        await self.send(*frames)
