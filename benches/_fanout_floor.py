"""The fanout benchmark's floor: a bare trio-websocket server broadcasting one frame's bytes.

``python -m benches._fanout_floor`` listens on 127.0.0.1 (an ephemeral port), accepts every
WebSocket upgrade (echoing the ``electric.*`` subprotocol), reads and drops what clients send
(their acknowledgements), and prints ``{"event": "listening", "port": ..., "pid": ...}``. Then
it takes one JSON command per line on stdin:

``broadcast``: ``strategy, count, rate, frame`` (base64). Sends the frame ``count`` times to every
connected client with ``send_message``, its begin's commit timestamp set to the time the
message was due (paced at ``rate`` messages per second, or as fast as it goes with ``rate``
null: then the time it was sent), so that clients measure latency as against the service.
Strategy ``writers``: one writer task per connection fed by a channel of 30 messages (the
service's window), the broadcaster waiting when a channel is full; ``broadcaster``: one loop
awaiting ``send_message`` on every connection in turn. Answers ``{"event": "broadcasted"}``.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from functools import partial
from typing import Any

import trio
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    serve_websocket,
)

from ._fanout_wire import with_commit_timestamp

#: Messages queued per connection with the writer-task strategy (the service's window).
QUEUE = 30


class Floor:
    def __init__(self) -> None:
        self.clients: set[WebSocketConnection] = set()

    async def handler(self, request: WebSocketRequest) -> None:
        offered = [p for p in request.proposed_subprotocols if p.startswith("electric.")]
        ws = await request.accept(subprotocol=offered[0] if offered else None)
        self.clients.add(ws)
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)

    async def broadcast(self, strategy: str, count: int, rate: float | None, frame: bytes) -> None:
        clients = list(self.clients)
        start = time.time()

        def message(i: int) -> tuple[float, bytes]:
            due = start + i / rate if rate else time.time()
            return due, with_commit_timestamp(frame, int(due * 1000))

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
                )
                _emit("broadcasted", clients=len(floor.clients))
            elif command["cmd"] == "clients":
                _emit("clients", clients=len(floor.clients))


async def _main() -> None:
    floor = Floor()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(serve_websocket, floor.handler, "127.0.0.1", 0, ssl_context=None)
        )
        _emit("listening", port=listeners.port, pid=os.getpid())
        await _commands(floor)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(_main)
