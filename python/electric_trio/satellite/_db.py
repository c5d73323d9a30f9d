"""The few Postgres connections the Satellite sessions share for their queries."""

from __future__ import annotations

from typing import Any

import trio

from ..errors import ElectricError
from ..pg import (
    Connection,
    ConnectionLostError,
    ConnectParams,
    PgAuthError,
    PgConnectError,
    PgError,
    connect,
)

__all__ = ["PostgresUnavailableError", "SessionDatabase"]


class PostgresUnavailableError(ElectricError):
    """A session's query could not reach Postgres."""


class _Link:
    """One connection of the pool, opened on first use and after a loss; one query at a
    time, in the order they were asked for (a FIFO lock)."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
        self.lock = trio.Lock()


class SessionDatabase:
    """A few connections for the sessions' queries (``connections`` of them, each opened on
    first use and after a loss).

    A query with a ``key`` (a client id) always goes to the same connection, so one client's
    writes are applied in the order they were made; one without goes to an idle connection
    if there is one. With one connection every session's query waited for every other's
    commit (its WAL flush): connecting clients queued behind each other's bookkeeping.
    """

    def __init__(self, params: ConnectParams, timeout: float, connections: int = 4) -> None:
        self._params = params
        self._timeout = timeout
        self._links = [_Link() for _ in range(max(1, connections))]
        self._closed = False

    def _link(self, key: str | None) -> _Link:
        links = self._links
        if key is not None:
            return links[hash(key) % len(links)]
        return next((link for link in links if not link.lock.locked()), links[0])

    async def fetch(self, sql: str, *args: Any, key: str | None = None) -> list[tuple[Any, ...]]:
        link = self._link(key)
        async with link.lock:
            # A connection lost since the last query gets one second chance on a new one.
            for attempt in (1, 2):
                fresh = link.conn is None
                try:
                    with trio.fail_after(self._timeout):
                        if link.conn is None:
                            # Shielded (and bounded): a session that goes away meanwhile must
                            # not cancel a connect half-way, which would leak its socket.
                            with trio.CancelScope(shield=True):
                                conn = await connect(self._params)
                            if self._closed:
                                await conn.aclose()
                                raise PostgresUnavailableError("the service is stopping")
                            link.conn = conn
                        return await link.conn.fetch(sql, *args)
                except (PgError, OSError, trio.TooSlowError) as e:
                    if isinstance(e, PgError) and not _connection_problem(e, link.conn):
                        raise
                    await self._drop(link)
                    if fresh or attempt == 2:
                        raise PostgresUnavailableError(f"Postgres is unavailable: {e}") from e
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Closes the connections once the queries in progress (if any) are done, or after
        the query timeout."""
        self._closed = True
        with trio.move_on_after(self._timeout):
            for link in self._links:
                async with link.lock:
                    await self._drop(link)
        for link in self._links:
            try:
                await self._drop(link)
            except trio.BusyResourceError:
                pass  # a query still running: its connection goes with the process

    async def _drop(self, link: _Link) -> None:
        conn, link.conn = link.conn, None
        if conn is not None:
            await conn.aclose()


def _connection_problem(error: PgError, conn: Connection | None) -> bool:
    """Whether ``error`` means the connection failed (rather than the query): lost, refused,
    ended by the server (FATAL, e.g. 57P01 at a restart or an administrator's command)."""
    return (
        isinstance(error, ConnectionLostError | PgConnectError | PgAuthError)
        or error.severity in ("FATAL", "PANIC")
        or (error.sqlstate or "").startswith(("08", "57"))
        or conn is None
        or conn.closed
    )
