"""Network faults at a chosen byte: a TCP relay (ours, beside :mod:`faults`) that counts what it
forwards each way and can cut every connection it carries once a given number of bytes more
has gone one way, mid-frame if that is where the count falls."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

__all__ = ["DOWN", "UP", "NetRelay", "open_net_relay", "vm_hwm_kib"]

#: From the target to the connecting side (e.g. service -> client).
DOWN = "down"
#: From the connecting side to the target (e.g. client -> service).
UP = "up"


class NetRelay:
    """Forwards each connection on :attr:`port` to ``target``; :meth:`cut_after` arms a cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self.cuts = 0
        #: Bytes forwarded so far, by direction.
        self.forwarded = {DOWN: 0, UP: 0}
        self._armed: dict[str, int] = {}
        #: Set when the armed cut happened (a new event per :meth:`cut_after`).
        self.fired = trio.Event()
        self._scopes: set[trio.CancelScope] = set()

    def cut(self) -> int:
        """Resets every connection now; returns how many there were."""
        n = len(self._scopes)
        for scope in list(self._scopes):
            scope.cancel()
        if n:
            self.cuts += 1
        return n

    def cut_after(self, direction: str, nbytes: int) -> trio.Event:
        """Cuts every connection once ``nbytes`` more bytes went ``direction``; returns the
        event set when it did."""
        self._armed[direction] = self.forwarded[direction] + nbytes
        self.fired = trio.Event()
        return self.fired

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, direction: str) -> None:
        while data := await src.receive_some(65536):
            limit = self._armed.get(direction)
            if limit is not None and self.forwarded[direction] + len(data) >= limit:
                del self._armed[direction]  # (before the send: other connections run meanwhile)
                head = data[: limit - self.forwarded[direction]]
                self.forwarded[direction] += len(head)
                if head:
                    with trio.move_on_after(1):
                        await dst.send_all(head)
                self.cut()
                self.fired.set()
                return
            await dst.send_all(data)
            self.forwarded[direction] += len(data)

    async def _handle(self, left: trio.SocketStream) -> None:
        self.accepted += 1
        right: trio.SocketStream | None = None
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                right = await trio.open_tcp_stream(*self.target)
                async with trio.open_nursery() as nursery:

                    async def pump(src: trio.SocketStream, dst: trio.SocketStream, d: str) -> None:
                        try:
                            await self._pump(src, dst, d)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(pump, left, right, UP)
                    nursery.start_soon(pump, right, left, DOWN)
            except OSError:
                pass
            finally:
                self._scopes.discard(scope)
                _abort(left)
                if right is not None:
                    _abort(right)


def _abort(stream: trio.SocketStream) -> None:
    """Closes with a reset (SO_LINGER 0), as a network failure looks to the peer."""
    try:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    stream.socket.close()


@asynccontextmanager
async def open_net_relay(target_host: str, target_port: int) -> AsyncIterator[NetRelay]:
    """A relay listening on an ephemeral port of 127.0.0.1 for the block's duration."""
    relay = NetRelay(target_host, target_port)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, relay._handle, 0, host="127.0.0.1"))
        relay.port = listeners[0].socket.getsockname()[1]
        try:
            yield relay
        finally:
            relay.cut()
            nursery.cancel_scope.cancel()


def vm_hwm_kib(pid: int) -> int:
    """The peak resident memory of process ``pid`` (``VmHWM`` of ``/proc/<pid>/status``), KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise LookupError(f"no VmHWM for {pid}")
