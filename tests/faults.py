"""Fault injection for the tests: a TCP relay of ours between two endpoints that counts what it
forwards each way and can cut every connection it carries (now, or once a given number of bytes
more has gone one way, mid-frame if that is where the count falls) or stall them, at a moment
the test chooses."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

__all__ = ["DOWN", "UP", "Relay", "open_relay", "vm_hwm_kib"]

#: From the target to the connecting side (e.g. service -> client).
DOWN = "down"
#: From the connecting side to the target (e.g. client -> service).
UP = "up"


class Relay:
    """Forwards each connection on :attr:`port` to ``(target_host, target_port)``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        #: Connections accepted in all.
        self.accepted = 0
        #: Times a cut closed live connections.
        self.cuts = 0
        #: Bytes forwarded so far, by direction.
        self.forwarded = {DOWN: 0, UP: 0}
        #: While set, bytes are held (neither side's data goes through).
        self.stalled = False
        #: Set when the cut armed by :meth:`cut_after` happened (a new event per call).
        self.fired = trio.Event()
        self._armed: dict[str, int] = {}
        self._resumed = trio.Event()
        self._scopes: set[trio.CancelScope] = set()

    @property
    def live(self) -> int:
        """Connections carried now."""
        return len(self._scopes)

    def cut(self) -> int:
        """Resets every connection now (both sides see a reset or EOF); returns how many."""
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

    def stall(self) -> None:
        self.stalled = True
        self._resumed = trio.Event()

    def resume(self) -> None:
        self.stalled = False
        self._resumed.set()

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, direction: str) -> None:
        while data := await src.receive_some(65536):
            if self.stalled:
                await self._resumed.wait()
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


def vm_hwm_kib(pid: int) -> int:
    """The peak resident memory of process ``pid`` (``VmHWM`` of ``/proc/<pid>/status``), KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise LookupError(f"no VmHWM for {pid}")
