"""The fanout benchmark's clients: many WebSocket connections in one plain-Python process.

``python -m benches._fanout_clients`` takes one JSON command per line on stdin and answers with
JSON lines on stdout. It runs no framework: one level-triggered ``epoll`` loop over stdin and
every socket, the handshake of each connection written as a generator fed with the frames it
receives (decoded with the service's codec), and on the hot path only the frame header and the
``SatOpLog`` begin are read (:mod:`._fanout_wire`), every socket into one receive buffer, and
the frames written carry a zero masking key (no per-byte masking work). Every connection
answers pings, so idle connections stay open while the process waits for commands.

Commands (``group`` names a set of connections):

- ``connect``: ``group, port, n, kind ("electric" | "plain"), concurrency, prefix``. Electric
  connections authenticate with an insecure token, answer the server's ``startReplication``,
  start replication from scratch and subscribe to ``table`` (``shapes`` subscriptions, 1 by
  default; with more, or a ``where``, each is ``where AND this.v <> 'x<i>'``, all the same
  rows); plain ones stop after the upgrade.
  Answer: ``{"event": "connected", ...}`` once every connection is live.
- ``measure``: ``group, count, ack_every, capture``. Answer ``armed`` at once, then ``measured``
  once every connection of the group has received ``count`` transactions (or on ``report``),
  with the latency histogram (receipt time - begin commit time), the first commit time, the
  last receipt time and this process's CPU time over the span. With ``capture``, the first
  ``SatOpLog`` frame received comes along (base64).
- ``close``: ``group``; answer ``closed``.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import select
import socket
import sys
import time
import uuid
from collections.abc import Generator
from typing import Any

from electric_trio.satellite import messages as m

from ._fanout_wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    SAT_OP_LOG,
    ZERO_MASK,
    Histogram,
    client_frame,
    insecure_token,
    oplog_begin,
    parse_frames,
)

SUBPROTOCOL = "electric.0.12"
SUBSCRIBE_ATTEMPTS = 5
#: The most one receive takes from a socket.
RECEIVE_SIZE = 1 << 18

Handshake = Generator[None, bytes, None]


class ClientError(Exception):
    pass


class Conn:
    __slots__ = (
        "buf",
        "client_id",
        "count",
        "fragments",
        "group",
        "handshake",
        "http_done",
        "last_lsn",
        "last_txid",
        "out",
        "since_ack",
        "sock",
    )

    def __init__(self, sock: socket.socket, group: Group, client_id: str) -> None:
        self.sock = sock
        self.group = group
        self.client_id = client_id
        self.buf = b""
        self.out = b""
        self.http_done = False
        self.handshake: Handshake | None = None
        self.fragments: list[bytes] = []
        self.count = 0
        self.since_ack = 0
        self.last_txid = 0
        self.last_lsn = b""


class Group:
    def __init__(self, command: dict[str, Any]) -> None:
        self.name: str = command["group"]
        self.port: int = command["port"]
        self.n: int = command["n"]
        self.kind: str = command["kind"]
        self.table: str = command.get("table", "items")
        self.shapes: int = command.get("shapes", 1)
        self.where: str = command.get("where", "")
        self.concurrency: int = command.get("concurrency", 32)
        self.prefix: str = command.get("prefix", "c")
        self.conns: list[Conn] = []
        self.started = 0
        self.live = 0
        self.connecting_since = time.perf_counter()
        # measuring
        self.target = 0
        self.ack_every = 10
        self.done = 0
        self.hist = Histogram()
        self.first_commit = 0
        self.last_receipt = 0.0
        self.cpu_start = 0.0
        self.capture = False
        self.captured: bytes | None = None
        self.errors: list[str] = []
        self.retries = 0
        #: Per transaction: [transaction id, commit time (ms), deliveries, worst latency (ms),
        #: first and last receipt (s)]: which transactions make the tail.
        self.per_txn: dict[tuple[int, int], list[float]] = {}


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Clients:
    def __init__(self) -> None:
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.groups: dict[str, Group] = {}
        self.stdin_buf = b""
        self.running = True
        # One receive buffer for every socket: ``recv(n)`` would allocate n bytes per call
        # and shrink them (at 256 KiB, a mapping of its own and back: tens of µs per message).
        self._rbuf = bytearray(RECEIVE_SIZE)
        self._rview = memoryview(self._rbuf)

    # ---- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        self.ep.register(stdin, select.EPOLLIN)
        while self.running:
            for fd, events in self.ep.poll(1.0):
                if fd == stdin:
                    self._stdin()
                    continue
                conn = self.conns.get(fd)
                if conn is None:
                    continue
                try:
                    if events & select.EPOLLOUT:
                        self._writable(conn)
                    if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self._readable(conn)
                except (OSError, ClientError, ValueError) as e:
                    self._drop(conn, f"{conn.client_id}: {e!r}")

    def _stdin(self) -> None:
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            self.running = False
            return
        self.stdin_buf += data
        while b"\n" in self.stdin_buf:
            line, _, self.stdin_buf = self.stdin_buf.partition(b"\n")
            if line.strip():
                self._command(json.loads(line))

    def _command(self, command: dict[str, Any]) -> None:
        match command["cmd"]:
            case "connect":
                group = Group(command)
                self.groups[group.name] = group
                for _ in range(min(group.concurrency, group.n)):
                    self._open(group)
            case "measure":
                group = self.groups[command["group"]]
                group.target = command["count"]
                group.ack_every = command.get("ack_every", 10)
                group.capture = command.get("capture", False)
                group.captured = None
                group.done = 0
                group.hist = Histogram()
                group.per_txn = {}
                group.first_commit = 0
                group.last_receipt = 0.0
                group.cpu_start = time.process_time()
                for conn in group.conns:
                    conn.count = 0
                _emit("armed", group=group.name)
            case "report":
                self._report(self.groups[command["group"]])
            case "close":
                group = self.groups.pop(command["group"])
                for conn in group.conns:
                    self._close(conn)
                _emit("closed", group=group.name)

    def _report(self, group: Group) -> None:
        target = group.target
        group.target = 0
        _emit(
            "measured",
            group=group.name,
            complete=group.done,
            connections=len(group.conns),
            received=sum(c.count for c in group.conns),
            expected=target * len(group.conns),
            hist=group.hist.to_json(),
            first_commit_ms=group.first_commit,
            last_receipt=group.last_receipt,
            cpu=time.process_time() - group.cpu_start,
            frame=base64.b64encode(group.captured).decode() if group.captured else None,
            errors=group.errors[:10],
            per_txn=list(group.per_txn.values()),
        )

    # ---- connections ---------------------------------------------------------------------

    def _open(self, group: Group) -> None:
        index = group.started
        group.started += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        err = sock.connect_ex(("127.0.0.1", group.port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        conn = Conn(sock, group, f"{group.prefix}-{index}")
        request = (
            "GET /ws HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: websocket\r\n"
            "connection: Upgrade\r\nsec-websocket-version: 13\r\n"
            f"sec-websocket-key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            f"sec-websocket-protocol: {SUBPROTOCOL}\r\n\r\n"
        )
        conn.out = request.encode()
        group.conns.append(conn)
        self.conns[sock.fileno()] = conn
        self.ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def _live(self, conn: Conn) -> None:
        group = conn.group
        group.live += 1
        if group.started < group.n:
            self._open(group)
        elif group.live == group.n:
            _emit(
                "connected",
                group=group.name,
                n=group.live,
                seconds=time.perf_counter() - group.connecting_since,
                retries=group.retries,
            )

    def _send(self, conn: Conn, opcode: int, payload: bytes) -> None:
        data = client_frame(opcode, payload, ZERO_MASK)
        if conn.out:
            conn.out += data
            return
        sent = conn.sock.send(data)
        if sent < len(data):
            conn.out = data[sent:]
            self.ep.modify(conn.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def _writable(self, conn: Conn) -> None:
        if conn.out:
            sent = conn.sock.send(conn.out)
            conn.out = conn.out[sent:]
        if not conn.out:
            self.ep.modify(conn.sock.fileno(), select.EPOLLIN)

    def _close(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self.conns.pop(fd, None)
            self.ep.unregister(fd)
        conn.sock.close()

    def _drop(self, conn: Conn, error: str) -> None:
        conn.group.errors.append(error)
        self._close(conn)
        _emit("error", group=conn.group.name, message=error)

    def _readable(self, conn: Conn) -> None:
        size = conn.sock.recv_into(self._rbuf)
        now = time.time()
        if not size:
            raise ClientError("the server closed the connection")
        data = bytes(self._rview[:size])
        if conn.buf:
            data = conn.buf + data
        start = 0
        if not conn.http_done:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                conn.buf = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 101 " not in status + b" ":
                raise ClientError(f"upgrade refused: {data[:end].decode(errors='replace')}")
            conn.http_done = True
            start = end + 4
            if conn.group.kind == "electric":
                conn.handshake = self._handshake(conn)
                next(conn.handshake)
            else:
                self._live(conn)
        frames, used = parse_frames(data, start)
        conn.buf = data[used:]
        for fin, opcode, payload in frames:
            if opcode in (OP_BINARY, OP_CONTINUATION):
                if not fin or conn.fragments:
                    conn.fragments.append(payload)
                    if not fin:
                        continue
                    payload = b"".join(conn.fragments)
                    conn.fragments.clear()
                self._message(conn, payload, now)
            elif opcode == OP_PING:
                self._send(conn, OP_PONG, payload)
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                raise ClientError(f"closed by the server: {code} {payload[2:]!r}")

    def _message(self, conn: Conn, payload: bytes, now: float) -> None:
        if conn.handshake is not None:
            try:
                conn.handshake.send(payload)
            except StopIteration:
                conn.handshake = None
                self._live(conn)
            return
        if not payload or payload[0] != SAT_OP_LOG:
            return
        begin = oplog_begin(payload)
        if begin is None:
            return
        group = conn.group
        conn.last_txid = begin.transaction_id
        conn.last_lsn = begin.lsn
        conn.since_ack += 1
        if group.target:
            conn.count += 1
            latency = now * 1000.0 - begin.commit_timestamp
            group.hist.add(latency)
            # The floor sends one frame, its commit time rewritten: that tells its messages apart.
            key = (begin.transaction_id, begin.commit_timestamp)
            txn = group.per_txn.get(key)
            if txn is None:
                group.per_txn[key] = [
                    begin.transaction_id,
                    begin.commit_timestamp,
                    1,
                    latency,
                    now,
                    now,
                ]
            else:
                txn[2] += 1
                txn[5] = now
                if latency > txn[3]:
                    txn[3] = latency
            if not group.first_commit or begin.commit_timestamp < group.first_commit:
                group.first_commit = begin.commit_timestamp
            if group.capture and group.captured is None:
                group.captured = payload
            if conn.count == group.target:
                group.done += 1
                group.last_receipt = max(group.last_receipt, now)
        if conn.since_ack >= group.ack_every or conn.count == group.target:
            self._ack(conn)
        if group.target and group.done == len(group.conns):
            self._report(group)

    def _ack(self, conn: Conn) -> None:
        conn.since_ack = 0
        if conn.last_txid:
            ack = m.SatOpLogAck(
                ack_timestamp=int(time.time() * 1000),
                lsn=conn.last_lsn,
                transaction_id=conn.last_txid,
            )
            self._send(conn, OP_BINARY, m.encode(ack))

    # ---- the Satellite handshake ---------------------------------------------------------

    def _handshake(self, conn: Conn) -> Handshake:
        """Authenticate, answer the server's startReplication, start replication, subscribe
        to the whole table and wait for its data; the frames come in through ``send``."""

        def request(request_id: int, method: str, body: m.ProtoMessage) -> None:
            message = m.SatRpcRequest(
                method=method, request_id=request_id, message=m.encode_message(body)
            )
            self._send(conn, OP_BINARY, m.encode(message))

        def response(method: str) -> Generator[None, bytes, m.SatRpcResponse]:
            while True:
                message = m.decode((yield))
                if isinstance(message, m.SatRpcResponse) and message.method == method:
                    if message.error is not None:
                        raise ClientError(f"{method} failed: {message.error}")
                    return message
                self._during_handshake(conn, message)

        token = insecure_token(sub="bench")
        request(1, "authenticate", m.SatAuthReq(id=conn.client_id, token=token))
        yield from response("authenticate")
        while True:
            message = m.decode((yield))
            if isinstance(message, m.SatRpcRequest) and message.method == "startReplication":
                break
            self._during_handshake(conn, message)
        reply = m.SatRpcResponse(
            method="startReplication",
            request_id=message.request_id,
            message=m.encode_message(m.SatInStartReplicationResp()),
        )
        self._send(conn, OP_BINARY, m.encode(reply))
        request(2, "startReplication", m.SatInStartReplicationReq())
        started = m.rpc_response_body((yield from response("startReplication")))
        if not isinstance(started, m.SatInStartReplicationResp) or started.err is not None:
            raise ClientError(f"startReplication refused: {started}")
        group = conn.group
        for index in range(group.shapes):
            yield from self._subscribe(conn, index)

    def _subscribe(self, conn: Conn, index: int) -> Handshake:
        """One subscription, and its data."""

        def request(request_id: int, method: str, body: m.ProtoMessage) -> None:
            message = m.SatRpcRequest(
                method=method, request_id=request_id, message=m.encode_message(body)
            )
            self._send(conn, OP_BINARY, m.encode(message))

        def response(method: str) -> Generator[None, bytes, m.SatRpcResponse]:
            while True:
                message = m.decode((yield))
                if isinstance(message, m.SatRpcResponse) and message.method == method:
                    if message.error is not None:
                        raise ClientError(f"{method} failed: {message.error}")
                    return message
                self._during_handshake(conn, message)

        group = conn.group
        where = group.where
        if group.shapes > 1 or where:
            where = f"{where or 'true'} AND this.v <> 'x{index}'"
        shape = m.SatShapeDef(selects=(m.SatShapeDefSelect(tablename=group.table, where=where),))
        for attempt in range(SUBSCRIBE_ATTEMPTS):
            subscription = m.SatSubsReq(
                subscription_id=str(uuid.uuid4()),
                shape_requests=(m.SatShapeReq(request_id="r0", shape_definition=shape),),
            )
            request(3 + index * SUBSCRIBE_ATTEMPTS + attempt, "subscribe", subscription)
            subscribed = m.rpc_response_body((yield from response("subscribe")))
            if not isinstance(subscribed, m.SatSubsResp):
                raise ClientError(f"subscribe answered with {subscribed}")
            if subscribed.err is None:
                break
            # The service gives a subscription's snapshot 1 s to start; a busy machine can
            # miss that while hundreds of clients connect: try again, as an application would.
            if "data availability" not in subscribed.err.message:
                raise ClientError(f"subscribe refused: {subscribed}")
            conn.group.retries += 1
        else:
            raise ClientError(f"subscribe refused {SUBSCRIBE_ATTEMPTS} times: {subscribed}")
        while True:
            payload = yield
            # The shape's data (SatOpLog frames without a begin) need no decoding here.
            if payload[:1] == bytes((SAT_OP_LOG,)) and oplog_begin(payload) is None:
                continue
            message = m.decode(payload)
            if isinstance(message, m.SatSubsDataEnd):
                return
            if isinstance(message, m.SatSubsDataError):
                raise ClientError(f"subscription data failed: {message}")
            self._during_handshake(conn, message)

    def _during_handshake(self, conn: Conn, message: m.FrameMessage) -> None:
        """Transactions before the subscription (the migrations) are acknowledged like any."""
        if isinstance(message, m.SatOpLog) and message.ops and message.ops[0].begin:
            begin = message.ops[0].begin
            conn.last_txid = begin.transaction_id or 0
            conn.last_lsn = begin.lsn
            self._ack(conn)
        elif isinstance(message, m.SatErrorResp):
            raise ClientError(f"server error: {message}")


def main() -> int:
    Clients().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
