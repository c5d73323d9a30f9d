"""The Postgres connections of shape data reads (a subscription's initial data, a move-in's
rows), shared fairly between the clients.

A read holds its connection, and its snapshot, until its last row is read; a streamed
subscription's rows are read while they are sent, so a client that does not read holds a
connection as long as it does not. Three bounds keep a few such clients from taking the
data of every other one:

- a client holds at most ``per_client`` of the connections at once (its further reads wait
  for one of its own to end, not in the common queue);
- a read whose rows its client has not taken for a while gives its connection up as soon as
  another read waits for one (:meth:`DataPool.wanted`, used by the session's
  :class:`~.shapes.RowStream`);
- the session answers a subscription beyond its client's pending bound with an error at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

import trio

from ..pg import Connection, ConnectParams, connect

__all__ = ["DataPool"]


class _Share:
    """One client's part of the pool: its reads holding or waiting for a connection."""

    __slots__ = ("slots", "users")

    def __init__(self, size: int) -> None:
        self.slots = trio.Semaphore(size)
        self.users = 0


class DataPool:
    """``size`` connections (opened on first use, kept while healthy), at most ``per_client``
    of them held by one client; the common queue is first come, first served."""

    def __init__(self, params: ConnectParams, size: int, per_client: int) -> None:
        self._params = params
        self._slots = trio.Semaphore(max(1, size))
        self._per_client = max(1, min(per_client, size))
        self._shares: dict[Hashable, _Share] = {}
        self._free: list[Connection] = []
        self._closed = False
        self._waiting = 0
        self._wanted = trio.Event()
        self._stalled = 0

    @property
    def waiting(self) -> int:
        """Reads waiting for a connection (their client's share allowing them one)."""
        return self._waiting

    @property
    def stalled(self) -> int:
        """Reads in :meth:`wanted`: stalled by their client, ready to give their connection up."""
        return self._stalled

    async def wanted(self) -> None:
        """Returns once a read waits for a connection (at once if one does)."""
        self._stalled += 1
        try:
            while not self._waiting:
                await self._wanted.wait()
        finally:
            self._stalled -= 1

    @asynccontextmanager
    async def connection(self, owner: Hashable) -> AsyncIterator[Connection]:
        """A connection for a read of ``owner`` (a client's session); a connection that failed
        or was interrupted is closed, not reused."""
        share = self._shares.get(owner)
        if share is None:
            share = self._shares[owner] = _Share(self._per_client)
        share.users += 1
        try:
            async with share.slots:
                await self._acquire()
                try:
                    conn = self._free.pop() if self._free else await connect(self._params)
                    healthy = False
                    try:
                        yield conn
                        healthy = not conn.closed
                    finally:
                        if healthy and not self._closed:
                            self._free.append(conn)
                        else:
                            with trio.CancelScope(shield=True):
                                await conn.aclose()
                finally:
                    self._slots.release()
        finally:
            share.users -= 1
            if not share.users:
                del self._shares[owner]

    async def _acquire(self) -> None:
        try:
            self._slots.acquire_nowait()
            return
        except trio.WouldBlock:
            pass
        self._waiting += 1
        self._wanted.set()
        self._wanted = trio.Event()
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1

    async def aclose(self) -> None:
        """Closes the idle connections; those in use are closed when their read ends."""
        self._closed = True
        while self._free:
            await self._free.pop().aclose()
