"""The fanout benchmark's floor: a bare trio-websocket server broadcasting one frame's bytes.

``python -m benches._fanout_floor`` listens on 127.0.0.1 (an ephemeral port), accepts every
WebSocket upgrade (echoing the ``electric.*`` subprotocol), reads and drops what clients send
(their acknowledgements), and prints ``{"event": "listening", "port": ..., "pid": ...}``. Then
it takes one JSON command per line on stdin:

``broadcast``: ``strategy, count, rate, frame`` (base64). Sends the frame ``count`` times to every
connected client with ``send_message``, its begin's commit timestamp set to the time the
message was due (paced at ``rate`` messages per second, or as fast as it goes with ``rate``
null: then the time it was sent), so that clients measure latency as against the service.
With ``first``, only the first ``first`` connections accepted get it (the others stay idle).
Strategy ``writers``: one writer task per connection fed by a channel of 30 messages (the
service's window), the broadcaster waiting when a channel is full; ``broadcaster``: one loop
awaiting ``send_message`` on every connection in turn. Answers ``{"event": "broadcasted"}``.

Strategy ``prebuilt`` is not a floor but the write path recommended for the service, measured
here beside it: the WebSocket frame (header + payload) is built once per message and written
with one non-blocking ``os.write`` to each connection's socket in a plain loop, no await per
client; a socket that takes only part of it gets the rest, and what follows, from a drain task
of its own (``send_all``), and the loop waits when such a backlog reaches 30 messages. It goes
under trio-websocket, which is sound here because nothing else writes during a broadcast (the
clients send no pings); the service would do it under each connection's send lock.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from ._fanout_wire import server_frame_header, with_commit_timestamp

#: Messages queued per connection with the writer-task strategy (the service's window).
QUEUE = 30


class Client:
    """A connection, with its TCP stream for the ``prebuilt`` strategy."""

    def __init__(self, ws: WebSocketConnection, stream: trio.SocketStream) -> None:
        self.ws = ws
        self.stream = stream
        self.fd = stream.socket.fileno()
        #: Frames the socket has not taken yet (None: none, write directly).
        self.backlog: collections.deque[bytes] | None = None
        self.drained = trio.Event()


class Floor:
    def __init__(self) -> None:
        self.clients: dict[WebSocketConnection, Client] = {}

    async def handler(self, stream: trio.SocketStream) -> None:
        # What serve_websocket does per connection, keeping the stream at hand.
        async with trio.open_nursery() as nursery:
            request = await wrap_server_stream(nursery, stream)
            offered = [p for p in request.proposed_subprotocols if p.startswith("electric.")]
            ws = await request.accept(subprotocol=offered[0] if offered else None)
            self.clients[ws] = Client(ws, stream)
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed:
                pass
            finally:
                self.clients.pop(ws, None)
                nursery.cancel_scope.cancel()

    async def prebuilt(
        self, clients: list[Client], count: int, message: Callable[[int], tuple[float, bytes]]
    ) -> None:
        async def drain(client: Client) -> None:
            backlog = client.backlog
            assert backlog is not None
            try:
                while backlog:
                    await client.stream.send_all(backlog[0])
                    backlog.popleft()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            client.backlog = None
            client.drained.set()
            client.drained = trio.Event()

        async with trio.open_nursery() as nursery:
            for i in range(count):
                due, data = message(i)
                await trio.sleep_until(trio.current_time() + max(0.0, due - time.time()))
                wire = server_frame_header(len(data)) + data
                for client in clients:
                    if client.backlog is not None:
                        client.backlog.append(wire)
                        if len(client.backlog) >= QUEUE:
                            await client.drained.wait()
                        continue
                    try:
                        sent = os.write(client.fd, wire)
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        continue
                    if sent < len(wire):
                        client.backlog = collections.deque([wire[sent:]])
                        nursery.start_soon(drain, client)
                # Let the readers (acknowledgements) and drain tasks run between messages.
                await trio.lowlevel.checkpoint()

    async def broadcast(
        self, strategy: str, count: int, rate: float | None, frame: bytes, first: int | None = None
    ) -> None:
        clients = list(self.clients)[:first]
        start = time.time()

        def message(i: int) -> tuple[float, bytes]:
            due = start + i / rate if rate else time.time()
            return due, with_commit_timestamp(frame, int(due * 1000))

        if strategy == "prebuilt":
            await self.prebuilt(list(self.clients.values())[:first], count, message)
            return
        if strategy == "broadcaster":
            for i in range(count):
                due, data = message(i)
                await trio.sleep_until(trio.current_time() + max(0.0, due - time.time()))
                for ws in clients:
                    try:
                        await ws.send_message(data)
                    except ConnectionClosed:
                        pass
            return
        if strategy != "writers":
            raise ValueError(f"unknown strategy {strategy!r}")

        async def writer(
            ws: WebSocketConnection, receive: trio.MemoryReceiveChannel[bytes]
        ) -> None:
            async with receive:
                async for data in receive:
                    try:
                        await ws.send_message(data)
                    except ConnectionClosed:
                        return

        async with trio.open_nursery() as nursery:
            channels: list[trio.MemorySendChannel[bytes]] = []
            for ws in clients:
                send, receive = trio.open_memory_channel[bytes](QUEUE)
                channels.append(send)
                nursery.start_soon(writer, ws, receive)
            for i in range(count):
                due, data = message(i)
                await trio.sleep_until(trio.current_time() + max(0.0, due - time.time()))
                for channel in channels:
                    try:
                        await channel.send(data)
                    except trio.BrokenResourceError:
                        pass
            for channel in channels:
                await channel.aclose()


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def _commands(floor: Floor) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buf = b""
    while data := await stdin.receive_some(65536):
        buf += data
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if not line.strip():
                continue
            command = json.loads(line)
            if command["cmd"] == "broadcast":
                await floor.broadcast(
                    command["strategy"],
                    command["count"],
                    command.get("rate"),
                    base64.b64decode(command["frame"]),
                    command.get("first"),
                )
                _emit("broadcasted", clients=len(floor.clients))
            elif command["cmd"] == "clients":
                _emit("clients", clients=len(floor.clients))


async def _main() -> None:
    floor = Floor()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, floor.handler, 0, host="127.0.0.1"))
        _emit("listening", port=listeners[0].socket.getsockname()[1], pid=os.getpid())
        await _commands(floor)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(_main)
