"""The one Postgres connection the Satellite sessions share for their few queries."""

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


class SessionDatabase:
    """One connection for the sessions' few queries, opened on first use and after a loss."""

    def __init__(self, params: ConnectParams, timeout: float) -> None:
        self._params = params
        self._timeout = timeout
        self._conn: Connection | None = None
        self._closed = False
        self._lock = trio.Lock()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._lock:
            # A connection lost since the last query gets one second chance on a new one.
            for attempt in (1, 2):
                fresh = self._conn is None
                try:
                    with trio.fail_after(self._timeout):
                        if self._conn is None:
                            # Shielded (and bounded): a session that goes away meanwhile must
                            # not cancel a connect half-way, which would leak its socket.
                            with trio.CancelScope(shield=True):
                                conn = await connect(self._params)
                            if self._closed:
                                await conn.aclose()
                                raise PostgresUnavailableError("the service is stopping")
                            self._conn = conn
                        return await self._conn.fetch(sql, *args)
                except (PgError, OSError, trio.TooSlowError) as e:
                    if isinstance(e, PgError) and not _connection_problem(e, self._conn):
                        raise
                    await self._drop()
                    if fresh or attempt == 2:
                        raise PostgresUnavailableError(f"Postgres is unavailable: {e}") from e
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Closes the connection once the query in progress (if any) is done, or after the
        query timeout."""
        self._closed = True
        with trio.move_on_after(self._timeout):
            async with self._lock:
                await self._drop()
                return
        try:
            await self._drop()
        except trio.BusyResourceError:
            pass  # a query still running: its connection goes with the process

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
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
