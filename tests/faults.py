"""Fault injection for the tests: a TCP relay of ours between two endpoints that can cut every
connection it carries, or stall them, at a moment the test chooses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

__all__ = ["Relay", "open_relay"]


class Relay:
    """Forwards each connection on :attr:`port` to ``(host, port)``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: Connections accepted in all.
        self.accepted = 0
        #: Times :meth:`cut` closed live connections.
        self.cuts = 0
        #: While set, bytes are held (neither side's data goes through).
        self.stalled = False
        self._resumed = trio.Event()
        self._scopes: set[trio.CancelScope] = set()

    @property
    def live(self) -> int:
        """Connections carried now."""
        return len(self._scopes)

    def cut(self) -> int:
        """Closes every connection now (both sides see a reset or EOF); returns how many."""
        n = len(self._scopes)
        for scope in list(self._scopes):
            scope.cancel()
        if n:
            self.cuts += 1
        return n

    def stall(self) -> None:
        self.stalled = True
        self._resumed = trio.Event()

    def resume(self) -> None:
        self.stalled = False
        self._resumed.set()

    async def _handle(self, left: trio.SocketStream) -> None:
        self.accepted += 1
        right: trio.SocketStream | None = None
        try:
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                right = await trio.open_tcp_stream(*self.target)
                async with trio.open_nursery() as nursery:

                    async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                        try:
                            while data := await src.receive_some(65536):
                                if self.stalled:
                                    await self._resumed.wait()
                                await dst.send_all(data)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(pump, left, right)
                    nursery.start_soon(pump, right, left)
        except OSError:
            pass
        finally:
            self._scopes.discard(scope)
            _abort(left)
            if right is not None:
                _abort(right)


def _abort(stream: trio.SocketStream) -> None:
    """Closes with a reset (SO_LINGER 0), as a network failure looks to the peer."""
    import socket
    import struct

    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    stream.socket.close()


@asynccontextmanager
async def open_relay(target_host: str, target_port: int) -> AsyncIterator[Relay]:
    """A relay listening on an ephemeral port of 127.0.0.1 for the block's duration."""
    relay = Relay(target_host, target_port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, relay._handle, 0, host="127.0.0.1"))
        relay.port = listeners[0].socket.getsockname()[1]
        try:
            yield relay
        finally:
            relay.cut()
            nursery.cancel_scope.cancel()
