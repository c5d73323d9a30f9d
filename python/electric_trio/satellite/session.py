"""One client connection of the Satellite protocol: frames in, RPCs answered, the log streamed.

A :class:`Session` owns a nursery with three tasks: the reader (decodes each frame and handles it
in order: RPC calls and responses, acknowledgements, the client's own data), the keepalive
(WebSocket pings), and, once the client has started replication, the stream of transactions
from the log (:mod:`.stream`), at most ``unacked_window`` of them unacknowledged.

Every way out goes through :meth:`Session.close`: it pushes the error frames the protocol
prescribes, closes the WebSocket with its code and cancels the session's nursery; nothing is
raised for a misbehaving client. An exception that escapes is a bug of ours: the server turns it
into an empty ``SatErrorResp`` and close 1011 for this connection alone.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from .. import _native
from ..ddlx.migration import Dialect
from ..pg import ConnectionLostError, PgError
from . import _graph_store
from ._db import PostgresUnavailableError
from ._wire import adopt, can_write_now, frame, send_framed, send_frames, write_now, write_rest
from .auth import AuthFailure, AuthResult
from .inbound import Inbound
from .messages import (
    FrameMessage,
    ProtoMessage,
    SatAuthReq,
    SatAuthResp,
    SatelliteFrameError,
    SatErrorResp,
    SatErrorRespErrorCode,
    SatInStartReplicationReq,
    SatInStartReplicationReqDialect,
    SatInStartReplicationResp,
    SatInStartReplicationRespReplicationError,
    SatInStartReplicationRespReplicationErrorCode,
    SatInStopReplicationReq,
    SatInStopReplicationResp,
    SatOpLog,
    SatOpLogAck,
    SatRelation,
    SatRpcRequest,
    SatRpcResponse,
    SatShapeDataBegin,
    SatShapeDataEnd,
    SatSubsDataBegin,
    SatSubsDataEnd,
    SatSubsDataError,
    SatSubsError,
    SatSubsReq,
    SatSubsResp,
    SatUnsubsDataBegin,
    SatUnsubsDataEnd,
    SatUnsubsReq,
    SatUnsubsResp,
    decode,
    encode,
    encode_message,
    rpc_request_body,
    rpc_response_body,
)
from .shapes import (
    LayerPlan,
    Rows,
    RowStream,
    RowStreamError,
    RowStreamStalledError,
    SubscriptionPlan,
    add_rows,
    fetch_layers,
    plan_subscription,
    stream_data,
    streamable,
    xid_at_least,
)
from .stream import Outbound, Outgoing, RefCounter

if TYPE_CHECKING:
    from .server import SatelliteServer

__all__ = ["CLOSE_PROTOCOL_ERROR", "CLOSE_SERVER_ERROR", "Session", "parse_lsn"]

log = logging.getLogger("electric_trio.satellite")

#: Close code after a fatal protocol error (the error frames are pushed first).
CLOSE_PROTOCOL_ERROR = 1007
#: Close code after a fault of ours.
CLOSE_SERVER_ERROR = 1011
#: Close code for a frame over the size limit (RFC 6455 "Message Too Big").
CLOSE_TOO_BIG = 1009
# The original asked for 1005, which RFC 6455 forbids on the wire; 1001 is "going away".
CLOSE_UNRESPONSIVE = 1001

_Code = SatErrorRespErrorCode
_ReplicationCode = SatInStartReplicationRespReplicationErrorCode
_MAX_LSN = 2**64 - 1
# Transactions read from the log per batch.
_BATCH = 100
#: The longest a startReplication waits for the replay to reach the client's position: the
#: official client gives up on a call after 3 s and then stays connected without replicating.
_REPLAY_WAIT = 2.0
#: How long a startReplication may take before it is answered with an INTERNAL error (and a
#: close): the official client gives up on its call after 3 s.
_START_REPLICATION_DEADLINE = 2.5


def parse_lsn(raw: bytes) -> int | None:
    """A server position as the client echoes it: decimal ASCII of a 64-bit integer."""
    if not raw or len(raw) > 20 or not raw.isdigit():
        return None
    value = int(raw)
    return value if value <= _MAX_LSN else None


class _ReportingLock:
    """A :class:`trio.Lock` that calls ``changed`` once taken and once given back: the
    server's fan-out keeps the sessions it may write to at once from such reports."""

    __slots__ = ("_changed", "_lock")

    def __init__(self, changed: Callable[[], object]) -> None:
        self._lock = trio.Lock()
        self._changed = changed

    def locked(self) -> bool:
        return self._lock.locked()

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        self._changed()

    async def __aexit__(self, *exc_info: object) -> None:
        self._lock.release()
        self._changed()


class _Window:
    """Transactions sent and not yet acknowledged, at most ``size`` of them; ``changed`` is
    called when a full window gets room, and when it is cleared."""

    def __init__(self, size: int, changed: Callable[[], object] = lambda: None) -> None:
        self.size = size
        self._unacked: deque[int] = deque()
        self._changed = trio.Event()
        self._room = changed

    def __len__(self) -> int:
        return len(self._unacked)

    async def wait_room(self) -> None:
        while len(self._unacked) >= self.size:
            await self._changed.wait()

    def sent(self, transaction_id: int) -> None:
        self._unacked.append(transaction_id)

    def ack(self, transaction_id: int) -> bool:
        """Acknowledges ``transaction_id`` and every one sent before it; False when it is not
        among the unacknowledged ones."""
        if transaction_id not in self._unacked:
            return False
        was_full = len(self._unacked) >= self.size
        while self._unacked.popleft() != transaction_id:
            pass
        self._changed.set()
        self._changed = trio.Event()
        if was_full:
            self._room()
        return True

    def clear(self) -> None:
        self._unacked.clear()
        self._changed.set()
        self._changed = trio.Event()
        self._room()


class _Delivery:
    """Rows read from one snapshot, to be spliced into the stream before the first
    transaction whose xid is at least the snapshot's xmin: a subscription's data, or the
    additional data of a move-in."""

    def __init__(
        self, subscription: SubscriptionPlan | None = None, ref: int = 0, resend: bool = False
    ) -> None:
        self.subscription = subscription
        self.ref = ref
        #: Data the client lost: every row is sent, had it the row or not.
        self.resend = resend
        self.xmin: int | None = None
        self.xmin_known = trio.Event()
        #: Set once the read has a connection (reads wait their turn for one).
        self.connected = trio.Event()
        self.rows: list[tuple[LayerPlan, Rows | RowStream]] | None = None
        self.error: str | None = None
        #: Set once the rows are read, or (streamed) once the first of them are.
        self.ready = trio.Event()
        self.scope = trio.CancelScope()


#: ``(layer, keys)`` pairs of rows to fetch for a move-in.
MoveIns = list[tuple[int, list[list[str]]]]

#: A relation as the graph reports it: ``(oid, schema, table, [(column, type oid), ...])``.
RelationForm = tuple[int, str, str, list[tuple[str, int]]]


_msgpack = msgspec.msgpack.Encoder()


class PendingMoveIns(msgspec.Struct, frozen=True):
    """A client's unacknowledged move-ins as stored with its checkpoint: layers by their
    stable labels (``<subscription>/<n>``, as the graph names them), not by graph ids."""

    next_ref: int
    #: ref -> (position of its transaction, ``(layer label, keys)`` pairs).
    refs: dict[int, tuple[int, list[tuple[str, list[list[str]]]]]]


class GoneBatch(msgspec.Struct, frozen=True):
    """The GONE batch of one unsubscribe: kept until the client acknowledges it, to be sent
    again to a client that resumes still listing the subscriptions (it missed the batch)."""

    ids: tuple[str, ...]
    #: Encoded ``SatOpLog`` frames of ``gone`` ops.
    frames: tuple[bytes, ...]
    #: Every relation the frames use.
    relations: tuple[RelationForm, ...]


#: The distinct sets of :attr:`ClientShapes.tables`, shared by the clients that have them.
_TABLE_SETS: dict[frozenset[tuple[str, str]], frozenset[tuple[str, str]]] = {}


class ClientShapes:
    """What a client's shapes are, kept by the server between its connections (and stored in
    Postgres across restarts): its sent-rows graph and its delivered subscriptions."""

    def __init__(self, user_id: str | None) -> None:
        self.user_id = user_id
        self.graph = _native.ShapeGraph(user_id)
        #: Delivered subscriptions by id, in the order they were made.
        self.subscriptions: dict[str, SubscriptionPlan] = {}
        #: The layer plans by graph layer id.
        self.layers: dict[int, LayerPlan] = {}
        #: The graph's stable label of each layer id (``<subscription>/<n>``).
        self.labels: dict[int, str] = {}
        #: The position of the last transaction the graph has seen.
        self.position = 0
        #: Where the graph's store in Postgres stands (it is stored as it changes).
        self.stored = _graph_store.StoredGraph()
        self.refs = RefCounter()
        #: Move-ins whose additional data the client has not acknowledged:
        #: ref -> (position of their transaction, ``(layer, keys)`` pairs).
        self.pending_additional: dict[int, tuple[int, tuple[tuple[int, list[list[str]]], ...]]] = {}
        #: Unsubscribed subscriptions whose GONE batch the client has not acknowledged.
        self.unsubscribed: dict[str, GoneBatch] = {}
        #: The tables of the graph's layers: a transaction changing none of them (and not the
        #: client's own) changes nothing in the graph and sends nothing (the fan-out skips it).
        self.tables: frozenset[tuple[str, str]] = frozenset()

    def _layers_changed(self) -> None:
        tables = frozenset((lp.table.schema, lp.table.name) for lp in self.layers.values())
        self.tables = _TABLE_SETS.setdefault(tables, tables)  # one copy per distinct set

    def add_layers(self, plan: SubscriptionPlan) -> None:
        """Adds the layers of ``plan`` to the graph (its tables described already)."""
        graph = self.graph
        count = 0

        def register(layer: LayerPlan, parent: int | None) -> None:
            nonlocal count
            layer.layer_id = graph.add_layer(
                plan.id,
                layer.table.schema,
                layer.table.name,
                layer.where,
                parent,
                list(layer.fk),
                layer.holds_fk,
            )
            self.layers[layer.layer_id] = layer
            self.labels[layer.layer_id] = f"{plan.id}/{count}"  # the graph's own naming
            count += 1
            for child in layer.children:
                register(child, layer.layer_id)

        for _, root in plan.requests:
            register(root, None)
        self._layers_changed()

    def remove(self, subscription_id: str) -> None:
        """Drops a subscription: its layers leave the graph (gone rows are queued there)."""
        self.subscriptions.pop(subscription_id, None)
        self.graph.remove_subscription(subscription_id)
        kept = {id(layer) for plan in self.subscriptions.values() for layer in plan.layers()}
        for layer_id in [i for i, layer in self.layers.items() if id(layer) not in kept]:
            del self.layers[layer_id]
            self.labels.pop(layer_id, None)
        self._layers_changed()

    def export_move_ins(self) -> PendingMoveIns:
        return PendingMoveIns(
            next_ref=self.refs.next,
            refs={
                ref: (
                    position,
                    [(self.labels[i], keys) for i, keys in move_ins if i in self.labels],
                )
                for ref, (position, move_ins) in self.pending_additional.items()
            },
        )

    def import_move_ins(self, stored: PendingMoveIns) -> None:
        ids = {label: i for i, label in self.labels.items()}
        self.refs.next = max(self.refs.next, stored.next_ref)
        for ref, (position, move_ins) in stored.refs.items():
            found = tuple((ids[label], keys) for label, keys in move_ins if label in ids)
            if found:
                self.pending_additional[ref] = (position, found)


class Session:
    """The server side of one WebSocket connection.

    For the shape engineer: :attr:`changes` is the :class:`~.stream.ChangeFilter` deciding which
    row changes this client sees (replace it at any time: it is read at each transaction, behind
    the ownership filter of :attr:`user_id`); :meth:`send` writes frames in order with the
    stream (it waits for the transaction being sent to finish); :meth:`unknown_subscription` is
    where resumed subscription ids are checked.
    """

    def __init__(self, server: SatelliteServer, ws: WebSocketConnection, remote: str) -> None:
        self.server = server
        self.settings = server.settings
        self.ws = ws
        self.remote = remote
        #: Set once authenticated.
        self.client_id: str | None = None
        self.user_id: str | None = None
        self.auth: AuthResult | None = None
        #: The client's shapes (its graph and subscriptions), set once authenticated.
        self.shapes: ClientShapes | None = None
        #: Subscriptions whose data is still coming, by id.
        self._pending_subs: dict[str, _Delivery] = {}
        self._deliveries: list[_Delivery] = []
        #: Held while a transaction is turned into frames and sent, and while a GONE batch is.
        self._graph_lock = _ReportingLock(self._ready_changed)
        #: The position of the last transaction streamed to the client.
        self._position = 0
        #: GONE batches of unsubscriptions to send again once replication starts (resume).
        self._gone_again: list[GoneBatch] = []
        #: When the client's graph is stored next, at an acknowledgement.
        self._store_due = -float("inf")
        #: The client answered our ``startReplication``: its transactions may come in.
        self.inbound_active = False
        self.outbound: Outbound | None = None
        #: The client's own transactions (its relations and oplog frames).
        self.inbound = Inbound(self)
        self.window = _Window(self.settings.unacked_window, self._ready_changed)
        self._request_ids = 0
        self._calls: dict[tuple[str, int], None] = {}
        self._streaming = False
        self._stopping = False
        self._stream_done = trio.Event()
        self._wait_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._send_lock = _ReportingLock(self._ready_changed)
        self._heard = True
        self._pings = 0
        self._closing = False
        self._scope = trio.CancelScope()
        #: Set by the server's fan-out when this (caught up) session must stream by itself.
        self._wake = trio.Event()
        #: The tables the server's fan-out has this session parked on (see ``server.park``).
        self._parked_on: frozenset[tuple[str, str]] = frozenset()
        #: What the fan-out passes to Rust for this session while it is parked (see
        #: ``server.park``): its graph, client id, additional-data refs, socket's fileno.
        self._fanout_target: tuple[_native.ShapeGraph, str, RefCounter, Callable[[], int]] | None
        self._fanout_target = None
        adopt(ws, self.settings.send_timeout, self._ready_changed)

    # ---- lifetime ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serves the connection until the client leaves or :meth:`close` is called."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._guarded, self._keepalive)
                    await self._guarded(self._read_frames)
                    nursery.cancel_scope.cancel()
        finally:
            if self.client_id is not None:
                if self.shapes is not None:
                    self.server.client_shapes[self.client_id] = self.shapes
                    if self.shapes.subscriptions:
                        with (
                            trio.CancelScope(shield=True),
                            trio.move_on_after(self.settings.close_timeout),
                        ):
                            await self._store_checkpoint()
                self.server.unregister(self.client_id, self)

    async def _guarded(self, task: Callable[[], Awaitable[None]]) -> None:
        """Runs a task of the session; a connection closed under it ends the session."""
        try:
            await task()
        except ConnectionClosed:
            self._scope.cancel()

    async def close(
        self, code: int, reason: str, *frames: FrameMessage, log_level: int = logging.INFO
    ) -> None:
        """Pushes ``frames``, closes the WebSocket with ``code`` and ends the session."""
        if self._closing:
            return
        self._closing = True
        self._ready_changed()
        log.log(
            log_level,
            "closing satellite connection client_id=%s remote=%s code=%s reason=%s",
            self.client_id,
            self.remote,
            code,
            reason,
        )
        with trio.move_on_after(self.settings.close_timeout):
            try:
                for frame in frames:
                    await self.ws.send_message(encode(frame))
            except ConnectionClosed:
                pass
            await self.ws.aclose(code, reason)
        self._scope.cancel()

    async def send(self, frame: bytes) -> None:
        """Writes one frame, after the transaction being streamed (if any)."""
        async with self._send_lock:
            await send_frames(self.ws, (frame,))

    # ---- frames in -----------------------------------------------------------------------

    async def _read_frames(self) -> None:
        limit = self.settings.max_frame_len
        while not self._closing:
            data = await self.ws.get_message()
            self._heard = True
            if isinstance(data, str):
                await self.close(
                    CLOSE_PROTOCOL_ERROR,
                    "Text frames are not supported",
                    SatErrorResp(
                        error_type=_Code.INVALID_REQUEST,
                        message="the protocol uses binary frames only",
                    ),
                )
                return
            if len(data) > limit:
                await self.close(
                    CLOSE_TOO_BIG,
                    "Message too big",
                    SatErrorResp(
                        error_type=_Code.INVALID_REQUEST,
                        message=f"frame of {len(data)} bytes is over the limit of {limit} bytes",
                    ),
                )
                return
            try:
                message = decode(data, max_len=limit)
            except SatelliteFrameError as e:
                # An unknown type byte or an undecodable message (§2): an empty SatErrorResp.
                log.info("undecodable frame client_id=%s error=%s", self.client_id, e)
                await self.close(CLOSE_PROTOCOL_ERROR, "Malformed message", SatErrorResp())
                return
            await self._dispatch(message)

    async def _dispatch(self, message: FrameMessage) -> None:
        if isinstance(message, SatRpcRequest):
            await self._on_request(message)
        elif isinstance(message, SatErrorResp):
            log.info(
                "client error client_id=%s type=%s message=%s",
                self.client_id,
                message.error_type.name,
                message.message,
            )
            await self.close(1000, "Client error")
        elif self.client_id is None:
            await self.close(
                CLOSE_PROTOCOL_ERROR,
                "Not authenticated",
                SatErrorResp(error_type=_Code.AUTH_REQUIRED),
            )
        elif isinstance(message, SatRpcResponse):
            await self._on_response(message)
        elif isinstance(message, SatOpLogAck):
            await self._on_ack(message)
        elif isinstance(message, SatRelation | SatOpLog):
            await self.inbound.receive(message)
        else:
            await self.close(
                CLOSE_PROTOCOL_ERROR,
                "Unexpected message",
                SatErrorResp(
                    error_type=_Code.INVALID_REQUEST,
                    message=f"unexpected {message.PROTO_NAME} from a client",
                ),
            )

    # ---- RPC -----------------------------------------------------------------------------

    async def _respond(self, request: SatRpcRequest, message: ProtoMessage) -> None:
        response = SatRpcResponse(
            method=request.method,
            request_id=request.request_id,
            message=encode_message(message),  # present even when empty (§3)
        )
        await self.send(encode(response))

    async def _fail_call(
        self,
        request: SatRpcRequest,
        code: SatErrorRespErrorCode,
        reason: str,
        message: str | None = None,
    ) -> None:
        """Answers ``request`` with an RPC error and closes the connection."""
        response = SatRpcResponse(
            method=request.method,
            request_id=request.request_id,
            error=SatErrorResp(error_type=code, message=message),
        )
        await self.close(CLOSE_PROTOCOL_ERROR, reason, response)

    async def call(self, method: str, message: ProtoMessage) -> None:
        """Sends our own RPC request; the client's answer is handled by the reader."""
        request_id = self._request_ids
        self._request_ids += 1
        self._calls[(method, request_id)] = None
        request = SatRpcRequest(
            method=method, request_id=request_id, message=encode_message(message)
        )
        await self.send(encode(request))

    async def _on_request(self, request: SatRpcRequest) -> None:
        try:
            body = rpc_request_body(request)
        except SatelliteFrameError as e:
            await self._fail_call(request, _Code.INVALID_REQUEST, "Invalid request", str(e))
            return
        if self.client_id is None and not isinstance(body, SatAuthReq):
            await self._fail_call(request, _Code.AUTH_REQUIRED, "Not authenticated")
            return
        if isinstance(body, SatAuthReq):
            await self._authenticate(request, body)
        elif isinstance(body, SatInStartReplicationReq):
            await self._start_replication(request, body)
        elif isinstance(body, SatInStopReplicationReq):
            await self._stop_replication(request)
        elif isinstance(body, SatSubsReq):
            await self._subscribe(request, body)
        elif isinstance(body, SatUnsubsReq):
            await self._unsubscribe(request, body)

    async def _on_response(self, response: SatRpcResponse) -> None:
        key = (response.method, response.request_id)
        if key not in self._calls or response.message is None:
            # An answer to no call of ours, or an error (e.g. REPLICATION_FAILED): §3.
            await self.close(
                CLOSE_PROTOCOL_ERROR,
                "Unexpected response",
                SatErrorResp(error_type=_Code.INVALID_REQUEST),
            )
            return
        del self._calls[key]
        try:
            rpc_response_body(response)
        except SatelliteFrameError:
            await self.close(
                CLOSE_PROTOCOL_ERROR,
                "Malformed response",
                SatErrorResp(error_type=_Code.INVALID_REQUEST),
            )
            return
        if response.method == "startReplication":
            self.inbound_active = True
        elif response.method == "stopReplication":
            self.inbound_active = False

    # ---- authentication (§7.1) -------------------------------------------------------------

    async def _authenticate(self, request: SatRpcRequest, auth: SatAuthReq) -> None:
        authenticator = self.server.authenticator
        instance = SatAuthResp(id=self.server.instance_id)
        if self.client_id is not None:  # renewal
            renewed: AuthResult | AuthFailure
            if auth.id != self.client_id:
                renewed = AuthFailure(error_type="INVALID_REQUEST", reason="client id changed")
            else:
                assert self.user_id is not None
                renewed = authenticator.renew(auth.token, self.user_id)
            if isinstance(renewed, AuthFailure):
                log.info("refused renewal client_id=%s: %s", self.client_id, renewed.reason)
                await self._fail_call(request, _Code.INVALID_REQUEST, "Authentication failed")
                return
            self.auth = renewed
            await self._respond(request, instance)
            return
        if not auth.id:
            await self._fail_call(
                request, _Code.INVALID_REQUEST, "Invalid request", "client id is empty"
            )
            return
        result = authenticator.authenticate(auth.token)
        if isinstance(result, AuthFailure):
            log.info("refused client_id=%s remote=%s: %s", auth.id, self.remote, result.reason)
            await self._fail_call(
                request, SatErrorRespErrorCode(result.error_code), "Authentication failed"
            )
            return
        if not await self.server.register(auth.id, self):
            await self._fail_call(
                request,
                _Code.INVALID_REQUEST,
                "Duplicate client",
                "another connection with this client id is open",
            )
            return
        self.client_id, self.user_id, self.auth = auth.id, result.user_id, result
        kept = self.server.client_shapes.get(auth.id)
        self.shapes = (
            kept
            if kept is not None and kept.user_id == result.user_id
            else ClientShapes(result.user_id)
        )
        log.info("client connected client_id=%s user_id=%s", auth.id, result.user_id)
        await self._respond(request, instance)
        await self._start_inbound()

    async def _start_inbound(self) -> None:
        """Our ``startReplication`` call: the client may send transactions after the last one
        Postgres has (§7.3)."""
        assert self.client_id is not None
        try:
            lsn = await self.server.acknowledged_client_lsn(self.client_id)
        except PostgresUnavailableError as e:
            await self._postgres_unavailable(e)
            return
        await self.call("startReplication", SatInStartReplicationReq(lsn=lsn))

    async def _postgres_unavailable(self, error: PostgresUnavailableError) -> None:
        """§7.10: the client gets INTERNAL "Postgres is unavailable" and a close."""
        log.warning("Postgres query failed client_id=%s: %s", self.client_id, error)
        await self.close(
            CLOSE_SERVER_ERROR,
            "Postgres is unavailable",
            SatErrorResp(error_type=_Code.INTERNAL, message="Postgres is unavailable"),
            log_level=logging.WARNING,
        )

    async def stop_inbound(self) -> None:
        """Our ``stopReplication`` call: the client stops sending its transactions."""
        await self.call("stopReplication", SatInStopReplicationReq())

    # ---- replication out (§7.2, §7.4, §7.5) ------------------------------------------------

    def unknown_subscription(self, ids: tuple[str, ...]) -> str | None:
        """The first of ``ids`` this client has no delivered subscription for (one it
        unsubscribed from without acknowledging the GONE batch still counts)."""
        shapes = self.shapes
        if shapes is None:
            return ids[0] if ids else None
        return next(
            (i for i in ids if i not in shapes.subscriptions and i not in shapes.unsubscribed),
            None,
        )

    async def _start_replication(
        self, request: SatRpcRequest, start: SatInStartReplicationReq
    ) -> None:
        if self._streaming:
            await self._fail_call(
                request,
                _Code.INVALID_REQUEST,
                "Invalid request",
                "replication is already started",
            )
            return
        # The official client waits 3 s for the answer and, past that, stays connected without
        # replicating or reconnecting: an answer that cannot be ready in time is an INTERNAL
        # error and a close instead, after which the client reconnects with its backoff.
        with trio.move_on_after(_START_REPLICATION_DEADLINE) as deadline:
            ready = await self._prepare_replication(request, start)
        if deadline.cancelled_caught:
            log.warning(
                "startReplication not ready in time client_id=%s deadline_s=%s",
                self.client_id,
                _START_REPLICATION_DEADLINE,
            )
            response = SatRpcResponse(
                method=request.method,
                request_id=request.request_id,
                error=SatErrorResp(
                    error_type=_Code.INTERNAL,
                    message="the service could not start replication in time",
                ),
            )
            await self.close(CLOSE_SERVER_ERROR, "Start replication timed out", response)
            return
        if ready is None:
            return
        outbound, lsn, initial = ready
        log.info(
            "replication started client_id=%s from=%s initial_transactions=%d",
            self.client_id,
            lsn,
            len(initial),
        )
        self.outbound = outbound
        self._streaming, self._stopping = True, False
        self._stream_done = trio.Event()
        self.window.clear()
        await self._respond(
            request, SatInStartReplicationResp(unacked_window_size=self.window.size)
        )
        for batch in self._gone_again:
            await self._send_gone_batch(batch, lsn)
        self._gone_again = []
        assert self._nursery is not None
        self._nursery.start_soon(self._guarded, partial(self._stream, lsn, initial))

    async def _prepare_replication(
        self, request: SatRpcRequest, start: SatInStartReplicationReq
    ) -> tuple[Outbound, int, list[Outgoing]] | None:
        """What streaming from the client's position needs, or None when the request was
        refused (answered, and the connection closed where the spec says so)."""
        assert self.client_id is not None
        server = self.server
        history, txlog = server.history, server.txlog
        code: SatInStartReplicationRespReplicationErrorCode | None = None
        text = ""
        lsn = parse_lsn(start.lsn)
        if lsn is not None and not await self._wait_for_replay(lsn):
            # An INTERNAL error: the client reconnects with its backoff and tries again.
            response = SatRpcResponse(
                method=request.method,
                request_id=request.request_id,
                error=SatErrorResp(
                    error_type=_Code.INTERNAL,
                    message="the service is still replaying its replication window",
                ),
            )
            await self.close(CLOSE_SERVER_ERROR, "Replay in progress", response)
            return None
        if lsn is not None and self.unknown_subscription(start.subscription_ids) is not None:
            # Not known here since the service started: the client's stored state, if any.
            try:
                stored = await server.load_client_shapes(self.client_id, self.user_id)
            except PostgresUnavailableError as e:
                await self._postgres_unavailable(e)
                return None
            if stored is not None:
                self.shapes = stored
        if start.schema_version is not None and not any(
            m.version == start.schema_version for m in history.migrations
        ):
            code, text = _ReplicationCode.UNKNOWN_SCHEMA_VSN, "Unknown schema version: "
            text += start.schema_version
        elif start.lsn and lsn is None:
            code, text = (
                _ReplicationCode.MALFORMED_LSN,
                "Could not validate start replication request",
            )
        elif lsn is None:
            if start.subscription_ids:
                code = _ReplicationCode.INVALID_POSITION
                text = "Cannot resume subscriptions for a first-time client"
            else:
                server.forget(self.client_id)
                self._nursery_soon(server.forget_stored, self.client_id)
                self.shapes = ClientShapes(self.user_id)
        elif not txlog.is_resumable(lsn):
            server.forget(self.client_id)
            self._nursery_soon(server.forget_stored, self.client_id)
            code, text = (
                _ReplicationCode.BEHIND_WINDOW,
                "Cannot catch up to the server's current state",
            )
        elif (unknown := self.unknown_subscription(start.subscription_ids)) is not None:
            code, text = _ReplicationCode.SUBSCRIPTION_NOT_FOUND, f"Unknown subscription: {unknown}"
        elif lsn < server.checkpoints.get(self.client_id, 0):
            code = _ReplicationCode.INVALID_POSITION
            text = "LSN is before the already acknowledged one"
        if code is not None:
            await self._refuse_replication(request, code, text)
            return None

        dialect: Dialect = (
            "postgresql"
            if start.sql_dialect == SatInStartReplicationReqDialect.POSTGRES
            else "sqlite"
        )
        assert self.shapes is not None
        outbound = Outbound(
            client_id=self.client_id,
            dialect=dialect,
            history=history,
            graph=self.shapes.graph,
            table_oid=server.table_oid,
            migration_times=server.migration_times,
            refs=self.shapes.refs,
        )
        await outbound.describe_tables(
            (layer.table.schema, layer.table.name) for layer in self.shapes.layers.values()
        )
        if lsn is not None and not self._align_shapes(lsn, start.subscription_ids):
            await self._refuse_replication(
                request,
                _ReplicationCode.BEHIND_WINDOW,
                "Cannot catch up to the server's current state",
            )
            return None
        if lsn is not None and not await self._requery_additional(
            lsn, start.observed_transaction_data
        ):
            response = SatRpcResponse(
                method=request.method,
                request_id=request.request_id,
                error=SatErrorResp(error_type=_Code.REPLICATION_FAILED),
            )
            await self.close(CLOSE_PROTOCOL_ERROR, "Move-in data unavailable", response)
            return None
        initial: list[Outgoing] = []
        if lsn is None:
            # First sync: the migrations the client lacks, at the log's current position.
            lsn = txlog.last_lsn or 0
            try:
                initial = await outbound.initial_migrations(start.schema_version, lsn)
            except PostgresUnavailableError as e:
                await self._postgres_unavailable(e)
                return None
        return outbound, lsn, initial

    async def _wait_for_replay(self, lsn: int) -> bool:
        """Right after a restart the reader is still replaying the slot's window into the
        log: a client resuming at a position the replay has yet to reach waits for it (told
        BEHIND_WINDOW, it would drop its local data and resync). False when the replay did
        not get there within ``_REPLAY_WAIT``."""
        txlog = self.server.txlog
        if not txlog.replaying(lsn):
            return True
        log.info(
            "client waits for the replay client_id=%s lsn=%s log_at=%s",
            self.client_id,
            lsn,
            txlog.last_lsn,
        )
        resets = txlog.resets
        with trio.move_on_after(_REPLAY_WAIT):
            while txlog.replaying(lsn) and resets == txlog.resets:
                await txlog.wait_after(txlog.last_lsn or 0)
        log.info("replay wait over client_id=%s log_at=%s", self.client_id, txlog.last_lsn)
        return resets != txlog.resets or not txlog.replaying(lsn)

    async def _requery_additional(self, lsn: int, observed: Sequence[int]) -> bool:
        """Reads again the move-ins of transactions the client has (at or before ``lsn``) whose
        additional data it does not report as applied; False when a read cannot start in time.
        Move-ins of later transactions are dropped: those transactions come again."""
        shapes = self.shapes
        assert shapes is not None
        for ref, (position, move_ins) in sorted(shapes.pending_additional.items()):
            if position > lsn or ref in observed:
                del shapes.pending_additional[ref]
                continue
            delivery = self._start_move_in(ref, move_ins, resend=True)
            await self._wait_xmin(delivery)
            if delivery.xmin is None:
                return False
        return True

    async def _refuse_replication(
        self,
        request: SatRpcRequest,
        code: SatInStartReplicationRespReplicationErrorCode,
        text: str,
    ) -> None:
        log.info(
            "refused startReplication client_id=%s code=%s: %s", self.client_id, code.name, text
        )
        error = SatInStartReplicationRespReplicationError(code=code, message=text)
        response = SatRpcResponse(
            method=request.method,
            request_id=request.request_id,
            message=encode_message(SatInStartReplicationResp(err=error)),
        )
        await self.close(CLOSE_PROTOCOL_ERROR, "Replication refused", response)

    def _align_shapes(self, lsn: int, subscription_ids: Sequence[str]) -> bool:
        """Brings the client's graph to position ``lsn``, where it resumes: subscriptions it no
        longer lists are dropped, later steps undone or earlier ones replayed from the log
        (without sending anything). False when the log no longer has what to replay."""
        shapes = self.shapes
        assert shapes is not None
        graph = shapes.graph
        for sub_id in [s for s in shapes.subscriptions if s not in subscription_ids]:
            shapes.remove(sub_id)
            self._nursery_soon(self.server.forget_subscriptions, self.client_id, (sub_id,))
        # An unsubscribed subscription the client no longer lists: it applied the GONE batch.
        # One it still lists: it missed the batch, which goes again once replication starts.
        applied = [s for s in shapes.unsubscribed if s not in subscription_ids]
        for sub_id in applied:
            del shapes.unsubscribed[sub_id]
        if applied:
            self._nursery_soon(self.server.forget_unsubscribed, self.client_id, applied)
        self._gone_again = list({id(b): b for b in shapes.unsubscribed.values()}.values())
        if lsn < shapes.position:
            graph.rollback(lsn)
        elif lsn > shapes.position and shapes.subscriptions:
            txlog = self.server.txlog
            if not txlog.is_resumable(shapes.position):
                return False
            position = shapes.position
            while position < lsn:
                batch = txlog.read_after(position, _BATCH)
                if not batch:
                    break
                for txn in batch:
                    if txn.end_lsn > lsn:
                        break
                    graph.begin_step(txn.end_lsn)
                    graph.process(txn)
                    position = txn.end_lsn
                else:
                    continue
                break
        graph.take_data()  # gones of dropped subscriptions: the client has none of them
        # the relations that discarded data used were not sent on this connection either
        graph.reset_relations()
        shapes.position = lsn
        return True

    async def _stop_replication(self, request: SatRpcRequest) -> None:
        # Stopping a stream that is not running is a no-op (the original crashed, close 1011).
        self._stopping = True
        self._ready_changed()
        if self._streaming:
            if self._wait_scope is not None:
                self._wait_scope.cancel()
            await self._stream_done.wait()
        await self._respond(request, SatInStopReplicationResp())

    async def _until_stopped(self, waiting: Callable[[], Awaitable[None]]) -> bool:
        """Awaits ``waiting()`` unless replication is stopped first (then False). Only waits
        are interrupted, never a frame being written."""
        with trio.CancelScope() as scope:
            self._wait_scope = scope
            try:
                if not self._stopping:
                    await waiting()
            finally:
                self._wait_scope = None
        return not (scope.cancelled_caught or self._stopping)

    async def _stream(self, position: int, initial: list[Outgoing]) -> None:
        """Sends ``initial``, then every transaction of the log after ``position``."""
        self._position = position
        txlog = self.server.txlog
        outbound = self.outbound
        assert outbound is not None
        resets = txlog.resets
        try:
            for outgoing in initial:
                if not await self._send_transaction(outgoing):
                    return
            while True:
                if txlog.trimmed_lsn > position or resets != txlog.resets:
                    # Transactions after ``position`` left the cache before we sent them, or
                    # the log was cleared (a gap in the stream).
                    await self.close(
                        CLOSE_PROTOCOL_ERROR,
                        "Client fell behind",
                        SatErrorResp(
                            error_type=_Code.REPLICATION_FAILED,
                            message="the client fell behind the server's transaction cache",
                        ),
                    )
                    return
                batch = txlog.read_after(position, _BATCH)
                if not batch:
                    # Caught up: the server's fan-out sends the next transactions while it
                    # can, and wakes this task when it cannot.
                    self._wake = trio.Event()
                    self.server.park(self)
                    try:
                        if not await self._until_stopped(self._wake.wait):
                            return
                    finally:
                        self.server.unpark(self)
                    position = self._position
                    continue
                for txn in batch:
                    async with self._graph_lock:
                        if not await self._deliver_due(txn.xid, position):
                            return
                        try:
                            outgoing_txn = await outbound.transaction(txn)
                        except PostgresUnavailableError as e:
                            await self._postgres_unavailable(e)
                            return
                        position = self._position = txn.end_lsn
                        if self.shapes is not None:
                            self.shapes.position = position
                        if outgoing_txn is None:
                            continue
                        if not await self._send_transaction(outgoing_txn):
                            return
                        if outgoing_txn.move_ins and self.shapes is not None:
                            ref = outgoing_txn.additional_ref
                            pending = (outgoing_txn.lsn, outgoing_txn.move_ins)
                            self.shapes.pending_additional[ref] = pending
                            self._start_move_in(ref, outgoing_txn.move_ins)
        finally:
            self._streaming = False
            self._stream_done.set()

    def wake(self) -> None:
        """The fan-out leaves the next transactions to this session's own task."""
        self._wake.set()

    def _ready_changed(self) -> None:
        """Something :meth:`can_stream_now` reads changed (a lock taken or given back, the
        window's room, stopping, closing): the server's fan-out updates its ready set."""
        self.server.ready_changed(self)

    def can_stream_now(self) -> bool:
        """Whether the server's fan-out may send this caught-up session's next transaction
        at once (:meth:`streamed_now`): nothing of its own to wait for or to send first. The
        fan-out does not ask per transaction: it is told of every change
        (:meth:`_ready_changed`) and keeps the sessions for which this is false."""
        return not (
            self.outbound is None
            or self.shapes is None
            or self._stopping
            or self._closing
            or self._deliveries
            or self._graph_lock.locked()
            or self._send_lock.locked()
            or len(self.window._unacked) >= self.window.size
            or self._nursery is None
            or not can_write_now(self.ws)
        )

    def streamed_now(
        self,
        end: int,
        xid: int,
        wire: bytes | None,
        extra: tuple[list[tuple[int, str, str, list[tuple[str, int]]]], MoveIns] | None,
        written: int = -1,
    ) -> None:
        """Sends what the fan-out made of the transaction ``xid`` ending at ``end`` for this
        session (after :meth:`can_stream_now`): its frame (WebSocket framing included, the
        same bytes for every client with the same changes), with the relations it introduces,
        and starts its move-ins. ``written``: what the fan-out already wrote of ``wire`` to the
        socket (the rest goes out from a task), or -1 when it wrote nothing (it is written
        here, after the relations)."""
        shapes = self.shapes
        assert shapes is not None
        self._position = shapes.position = end
        if wire is None:
            return
        nursery = self._nursery
        assert nursery is not None
        data = wire
        if extra is not None:
            outbound = self.outbound
            assert outbound is not None
            relations, move_ins = extra
            announced = outbound.relation_frames(relations)
            if announced:
                data = b"".join([*map(frame, announced), wire])
            if move_ins:
                ref = shapes.refs.next
                shapes.refs.next += 1
                shapes.pending_additional[ref] = (end, tuple(move_ins))
                self._start_move_in(ref, move_ins)
        window = self.window
        window._unacked.append(xid)
        if len(window._unacked) >= window.size:
            self.server.ready_changed(self)
        if written == -1:
            write_now(self.ws, data, nursery.start_soon)
        else:
            write_rest(self.ws, data, written, nursery.start_soon)

    async def _send_transaction(self, outgoing: Outgoing) -> bool:
        """Sends one transaction once the window has room; False when replication stopped."""
        if self._stopping:
            return False
        if len(self.window) >= self.window.size and not await self._until_stopped(
            self.window.wait_room
        ):
            return False
        self.window.sent(outgoing.transaction_id)
        async with self._send_lock:
            await send_frames(self.ws, outgoing.frames)
        return True

    async def _on_ack(self, ack: SatOpLogAck) -> None:
        assert self.client_id is not None
        if ack.transaction_id == 0:
            return  # always accepted, the window unchanged (§7.5)
        lsn = parse_lsn(ack.lsn)
        if lsn is None:
            reason, message = "Malformed acknowledgement", "Malformed LSN in acknowledgement"
        elif not self.window.ack(ack.transaction_id):
            reason, message = "Unknown transaction", "Acknowledged unknown txn"
        else:
            self.server.checkpoint(self.client_id, lsn)
            if self.shapes is not None:
                for ref in ack.additional_data_source_ids:
                    self.shapes.pending_additional.pop(ref, None)
                gone = [i for i in ack.gone_subscription_ids if i in self.shapes.unsubscribed]
                for sub_id in gone:
                    del self.shapes.unsubscribed[sub_id]
                if gone:
                    self._nursery_soon(self.server.forget_unsubscribed, self.client_id, gone)
                self.shapes.graph.acknowledge(lsn)
                self._checkpoint_due()
            return
        await self.close(
            CLOSE_PROTOCOL_ERROR,
            reason,
            SatErrorResp(error_type=_Code.INVALID_REQUEST, message=message),
        )

    # ---- shape subscriptions (§7.6-7.8) ------------------------------------------------------

    async def _subscribe(self, request: SatRpcRequest, body: SatSubsReq) -> None:
        shapes = self.shapes
        assert shapes is not None
        sub_id = body.subscription_id
        plan = plan_subscription(
            body,
            self.server.history.schema,
            lambda i: i in shapes.subscriptions or i in self._pending_subs,
        )
        if isinstance(plan, SatSubsError):
            if plan.message == "ID too long":
                sub_id = sub_id[1:129] + "..."
            log.info(
                "refused subscription client_id=%s id=%s: %s %s",
                self.client_id,
                body.subscription_id,
                plan.message,
                [e.message for e in plan.shape_request_error],
            )
            await self._respond(request, SatSubsResp(subscription_id=sub_id, err=plan))
            return
        if len(self._pending_subs) >= self.settings.max_pending_subscriptions:
            # Each holds a read (a connection of the shared pool, or its rows) until its data
            # is sent: a client that subscribes without end must not hold them all.
            log.info(
                "refused subscription client_id=%s id=%s: %d pending",
                self.client_id,
                sub_id,
                len(self._pending_subs),
            )
            error = SatSubsError(message="Too many subscriptions waiting for their data")
            await self._respond(request, SatSubsResp(subscription_id=sub_id, err=error))
            return
        delivery = _Delivery(subscription=plan)
        starts: list[tuple[LayerPlan, Sequence[str], Sequence[Sequence[str]]]] = [
            (root, (), ()) for _, root in plan.requests
        ]
        self._pending_subs[sub_id] = delivery
        self._add_delivery(delivery)
        assert self._nursery is not None
        self._nursery.start_soon(self._fetch, delivery, starts, f"subscription:{sub_id}")
        await self._wait_xmin(delivery)
        if delivery.xmin is None:
            delivery.scope.cancel()
            self._drop_delivery(delivery)
            error = SatSubsError(message="Internal error while checking data availability")
            await self._respond(request, SatSubsResp(subscription_id=sub_id, err=error))
            return
        log.info(
            "subscription client_id=%s id=%s shapes=%d xmin=%d",
            self.client_id,
            sub_id,
            len(plan.requests),
            delivery.xmin,
        )
        await self._respond(request, SatSubsResp(subscription_id=sub_id))

    def _nursery_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Runs ``fn(*args)`` in the session's nursery (bookkeeping writes to Postgres)."""
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _wait_xmin(self, delivery: _Delivery) -> None:
        """Waits for a read's snapshot: ``data_start_timeout`` once it has a connection (the
        original's limit), and at most ``data_queue_timeout`` for a connection."""
        with trio.move_on_after(self.settings.data_queue_timeout):
            await delivery.connected.wait()
        if delivery.connected.is_set():
            with trio.move_on_after(self.settings.data_start_timeout):
                await delivery.xmin_known.wait()

    def _add_delivery(self, delivery: _Delivery) -> None:
        self._deliveries.append(delivery)
        # Due at a transaction of any table: the server's fan-out must see each one.
        self.server.repark(self)

    def _drop_delivery(self, delivery: _Delivery) -> None:
        if delivery in self._deliveries:
            self._deliveries.remove(delivery)
            self._ready_changed()
        if delivery.subscription is not None:
            self._pending_subs.pop(delivery.subscription.id, None)

    async def _fetch(
        self,
        delivery: _Delivery,
        starts: list[tuple[LayerPlan, Sequence[str], Sequence[Sequence[str]]]],
        caused_by: str,
    ) -> None:
        """Reads a delivery's rows; the stream sends them at their insertion point."""

        def on_xmin(xmin: int) -> None:
            delivery.xmin = xmin
            delivery.xmin_known.set()

        # A subscription of one layer is sent while it is read (the read waits for the
        # sending): the rows of a large shape are never all held.
        stream = None
        if delivery.subscription is not None and streamable(starts):
            stream = RowStream(
                len(starts[0][0].table.columns), begun=delivery.ready, give_up=self._data_stalled
            )
            delivery.rows = [(starts[0][0], stream)]
        failure: str | None = "the read was cancelled"
        try:
            with delivery.scope:
                for attempt in (1, 2):
                    try:
                        async with self.server.data_connection(self) as conn:
                            delivery.connected.set()
                            rows = await fetch_layers(
                                conn,
                                self.server.magic_write,
                                starts,
                                self.user_id,
                                caused_by,
                                on_xmin,
                                stream,
                            )
                            if stream is None:
                                delivery.rows = list(rows)
                        failure = None
                    except (
                        PgError,
                        OSError,
                        trio.BrokenResourceError,
                        PostgresUnavailableError,
                    ) as e:
                        if (
                            attempt == 1
                            and isinstance(e, ConnectionLostError)
                            and (stream is None or not stream.read)
                        ):
                            continue  # a pooled connection that died while idle: once more
                        log.warning(
                            "cannot read shape data client_id=%s caused_by=%s: %s",
                            self.client_id,
                            caused_by,
                            e,
                        )
                        delivery.error = failure = str(e)
                    except RowStreamStalledError as e:
                        log.info(
                            "shape data read given up client_id=%s caused_by=%s: %s",
                            self.client_id,
                            caused_by,
                            e,
                        )
                        delivery.error = failure = str(e)
                    break
        finally:
            if stream is not None:
                stream.close(failure)
            delivery.ready.set()

    async def _data_stalled(self) -> None:
        """Returns once a read of ours has waited ``data_stall_timeout`` seconds for us to take
        its rows and another read waits for a connection."""
        await trio.sleep(self.settings.data_stall_timeout)
        await self.server.data_pool.wanted()

    async def _deliver_due(self, xid: int, position: int) -> bool:
        """Sends the deliveries whose insertion point is transaction ``xid`` (waiting for their
        rows); False when replication stopped meanwhile."""
        for delivery in list(self._deliveries):
            if delivery.xmin is None or not xid_at_least(xid, delivery.xmin):
                continue
            if not await self._until_stopped(delivery.ready.wait):
                return False
            self._drop_delivery(delivery)
            await self._send_delivery(delivery, position)
        return True

    async def _send_delivery(self, delivery: _Delivery, position: int) -> None:
        shapes, outbound = self.shapes, self.outbound
        assert shapes is not None
        assert outbound is not None
        graph = shapes.graph
        plan = delivery.subscription
        streams = [rows for _, rows in delivery.rows or () if isinstance(rows, RowStream)]
        if streams and not await streams[0].started():
            delivery.error = streams[0].error  # failed before its first row: nothing sent
        if delivery.error is not None or delivery.rows is None:
            if plan is not None:
                failed = SatSubsDataError(
                    subscription_id=plan.id,
                    message="Could not retrieve initial data for subscription",
                )
                await self.send(encode(failed))
                return
            await self.close(
                CLOSE_PROTOCOL_ERROR,
                "Move-in failed",
                SatErrorResp(
                    error_type=_Code.REPLICATION_FAILED, message="could not read move-in data"
                ),
            )
            return
        if plan is not None:
            # The subscription's layers join the graph at its insertion point.
            await outbound.describe_tables(
                {(layer.table.schema, layer.table.name) for layer in plan.layers()}
            )

            plan.xmin = delivery.xmin or 0
            shapes.add_layers(plan)
        layers: list[tuple[int, Rows | RowStream]] = []
        for layer, rows in delivery.rows:
            assert layer.layer_id is not None
            layers.append((layer.layer_id, rows))
        if plan is None:
            for layer_id, rows in layers:
                assert not isinstance(rows, RowStream)  # move-ins are read whole
                await add_rows(graph, layer_id, rows, delivery.resend)  # in parts
            frames, relations = graph.take_data(additional_ref=delivery.ref)
            async with self._send_lock:
                await send_frames(self.ws, outbound.relation_frames(relations) + frames)
            return
        # The data is streamed: each part of the rows added to the graph, framed in Rust and
        # written before the next (neither the ops nor the frames of a large shape are held).
        ids = [request_id for request_id, _ in plan.requests]
        head = outbound.relation_frames(graph.layer_relations([i for i, _ in layers]))
        head.append(encode(SatSubsDataBegin(subscription_id=plan.id, lsn=str(position).encode())))
        for request_id in reversed(ids[:-1]):
            head.append(encode(SatShapeDataBegin(request_id=request_id)))
            head.append(encode(SatShapeDataEnd()))
        head.append(encode(SatShapeDataBegin(request_id=ids[-1])))
        shapes.subscriptions[plan.id] = plan

        async def send(data: bytes) -> None:
            await send_framed(self.ws, data)
            # The rows sent so far are stored while the next are sent (the graph's change log
            # of a large shape is never all held).
            if graph.log_len() >= _graph_store.PIECE_BYTES and not shapes.stored.lock.locked():
                self._nursery_soon(self._store_checkpoint)

        cut_short: str | None = None
        try:
            async with self._send_lock:
                await send_frames(self.ws, head)
                ops = await stream_data(graph, layers, delivery.resend, send)
                tail = [] if ops else [encode(SatOpLog())]
                tail += [encode(SatShapeDataEnd()), encode(SatSubsDataEnd())]
                await send_frames(self.ws, tail)
            log.info(
                "subscription data sent client_id=%s id=%s rows=%d ops=%d",
                self.client_id,
                plan.id,
                sum(len(rows) for _, rows in layers),
                ops,
            )
        except RowStreamError as e:
            cut_short = str(e)
        finally:
            # Stored once the data is out: the graph's export and its write would hold the
            # event loop for seconds of a large shape, between the data's frames.
            if cut_short is None:
                self._nursery_soon(self._store_subscription, plan)
        if cut_short is not None:
            # The read failed with part of the data sent: the subscription is forgotten (its
            # rows leave the graph, never stored) and the client, which got no
            # SatSubsDataEnd, is cut off to subscribe again on its next connection.
            shapes.remove(plan.id)
            graph.take_data()
            await self.close(
                CLOSE_PROTOCOL_ERROR,
                "Subscription data failed",
                SatErrorResp(
                    error_type=_Code.REPLICATION_FAILED,
                    message="could not read the subscription's data",
                ),
            )

    def _start_move_in(
        self,
        ref: int,
        move_ins: Sequence[tuple[int, list[list[str]]]],
        resend: bool = False,
    ) -> _Delivery:
        """Fetches the rows of a move-in, sent later as additional data ``ref``."""
        shapes = self.shapes
        assert shapes is not None
        assert self._nursery is not None
        starts: list[tuple[LayerPlan, Sequence[str], Sequence[Sequence[str]]]] = []
        for layer_id, keys in move_ins:
            layer = shapes.layers.get(layer_id)
            if layer is None:
                continue
            columns = layer.fk if layer.holds_fk else layer.table.primary_key
            starts.append((layer, columns, keys))
        delivery = _Delivery(ref=ref, resend=resend)
        self._add_delivery(delivery)
        self._nursery.start_soon(self._fetch, delivery, starts, f"tx_subquery:{ref}")
        return delivery

    async def _unsubscribe(self, request: SatRpcRequest, body: SatUnsubsReq) -> None:
        shapes = self.shapes
        assert shapes is not None
        delivered = False
        for sub_id in body.subscription_ids:
            pending = self._pending_subs.get(sub_id)
            if pending is not None:
                pending.scope.cancel()
                self._drop_delivery(pending)
            if sub_id in shapes.subscriptions:
                delivered = True
        if not delivered:
            await self._respond(request, SatUnsubsResp())  # unknown ids are ignored
            return
        async with self._graph_lock:
            self.server.settle(self)  # parked: the batch goes at the fan-out's position
            for sub_id in body.subscription_ids:
                shapes.remove(sub_id)
            # Every relation the gone ops use (the outbound still sends only the new ones), so
            # the batch can be sent again on another connection.
            shapes.graph.reset_relations()
            frames, relations = shapes.graph.take_data()
            batch = GoneBatch(
                ids=tuple(body.subscription_ids),
                frames=tuple(frames or ()),
                relations=tuple(relations),
            )
            for sub_id in batch.ids:
                shapes.unsubscribed[sub_id] = batch
            # Stored before the client hears of it, and awaited (a task of the session's
            # nursery would be cancelled with the connection): once answered, the unsubscribe
            # and its batch survive the client leaving, and a restart of the service.
            assert self.client_id is not None
            await self.server.forget_subscriptions(self.client_id, body.subscription_ids)
            await self.server.store_unsubscribed(self.client_id, batch, self._position)
            await self._store_checkpoint()
            await self._respond(request, SatUnsubsResp())
            await self._send_gone_batch(batch, self._position)

    async def _send_gone_batch(self, batch: GoneBatch, position: int) -> None:
        out = self.outbound.relation_frames(batch.relations) if self.outbound else []
        out.append(
            encode(SatUnsubsDataBegin(subscription_ids=batch.ids, lsn=str(position).encode()))
        )
        out.extend(batch.frames or [encode(SatOpLog())])
        out.append(encode(SatUnsubsDataEnd()))
        async with self._send_lock:
            await send_frames(self.ws, out)

    async def _store_subscription(self, plan: SubscriptionPlan) -> None:
        assert self.client_id is not None
        await self.server.store_subscription(self.client_id, plan)
        await self._store_checkpoint()

    def _checkpoint_due(self) -> None:
        """Stores the client's graph when the last stored one is old enough (a client with no
        subscription has nothing to resume: the acknowledgement of its migrations, as each
        client connects, stored an empty graph the subscription's store then overwrote)."""
        now = trio.current_time()
        if now < self._store_due:
            return
        if self.shapes is None or not self.shapes.subscriptions:
            return
        self._stored(now)
        self._nursery_soon(self._store_checkpoint)

    def _stored(self, now: float) -> None:
        """The next store is due between half and all of ``checkpoint_interval`` from now:
        clients that get the same transactions acknowledge them together, and with a fixed
        interval their stores fell due at the same acknowledgement (hundreds of graphs written
        in one burst, the transactions after it waiting); drawn, they spread out."""
        interval = self.settings.checkpoint_interval
        self._store_due = now + interval * (0.5 + 0.5 * random.random())

    async def _store_checkpoint(self) -> None:
        """Stores what changed in the client's graph since the last store (with how to take
        it back to any position the client has not acknowledged yet): see
        :mod:`._graph_store`."""
        shapes = self.shapes
        if shapes is None or self.client_id is None:
            return
        # Any store counts for the interval (the first acknowledgement, right after a new
        # subscription's store, would otherwise write it again).
        self._stored(trio.current_time())
        self.server.settle(self)  # parked: the position the fan-out has brought it to
        await _graph_store.store(
            self.server.bookkeeper,
            self.server.db,
            self.client_id,
            shapes.stored,
            shapes.graph,
            shapes.position,
            _msgpack.encode(shapes.export_move_ins()),
            subscribed=bool(shapes.subscriptions),
        )

    # ---- keepalive (§1) ------------------------------------------------------------------

    async def _keepalive(self) -> None:
        """Every interval: a connection silent since the last tick gets a WebSocket ping; one
        still silent a whole interval later is closed."""
        interval = self.settings.ping_interval
        while True:
            await trio.sleep(interval)
            if self._heard:
                self._heard = False
                continue
            self._pings += 1
            with trio.move_on_after(interval):
                await self.ws.ping(self._pings.to_bytes(4, "big"))
                self._heard = True
            if self._heard:
                self._heard = False
                continue
            await self.close(CLOSE_UNRESPONSIVE, "Client not responding to pings")
            return
