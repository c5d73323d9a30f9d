"""What the typed data access runs on: an async SQL executor with a change notifier.

:class:`Executor` is the interface; the Satellite client (``electric_trio.client``) provides one
over its SQLite connection, and :class:`SqliteExecutor` is a plain one over a SQLite file or
``sqlite3`` connection, for an app without sync and for tests.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence, Set
from typing import Any, Protocol, TypeVar, runtime_checkable

import trio

__all__ = [
    "ClientExecutor",
    "ClientLike",
    "Executor",
    "Notifier",
    "SqliteExecutor",
    "Subscription",
    "TableNotifier",
]

T = TypeVar("T")


@runtime_checkable
class Notifier(Protocol):
    """Tells listeners which tables changed.

    ``subscribe()`` must listen from the moment it returns (not from the first ``__anext__``),
    and its iterator must survive a cancelled ``__anext__`` (a Trio memory channel does both).
    When it also has ``receive_nowait`` (raising ``trio.WouldBlock``), live queries use it to
    fold a burst of notifications into one new result.
    """

    def notify(self, tables: set[str]) -> None: ...

    def subscribe(self) -> AsyncIterator[Set[str]]: ...


@runtime_checkable
class Executor(Protocol):
    """Runs SQL with positional ``?`` parameters on one SQLite database.

    ``query`` returns the rows as dicts (column name -> value) and also runs writes that have a
    ``RETURNING`` clause (committed like ``execute``'s); ``execute`` returns the number of rows
    changed. ``notifier`` is told after each write of the data access.
    """

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    @property
    def notifier(self) -> Notifier: ...


class Subscription:
    """One listener of a :class:`TableNotifier`: the tables changed since its last receive,
    merged into one set (so a listener that falls behind holds one set, not a queue)."""

    def __init__(self, owner: TableNotifier) -> None:
        self._owner = owner
        self._pending: set[str] = set()
        self._event = trio.Event()
        self._closed = False

    def _add(self, tables: Iterable[str]) -> None:
        self._pending.update(tables)
        self._event.set()

    def receive_nowait(self) -> set[str]:
        """The tables changed so far; ``trio.WouldBlock`` when none."""
        if not self._pending:
            if self._closed:
                raise trio.EndOfChannel
            raise trio.WouldBlock
        pending, self._pending = self._pending, set()
        self._event = trio.Event()
        return pending

    async def receive(self) -> set[str]:
        """Waits for a change; returns every table changed since the last call."""
        while True:
            try:
                result = self.receive_nowait()
            except trio.WouldBlock:
                await self._event.wait()
                continue
            await trio.lowlevel.checkpoint()
            return result

    def close(self) -> None:
        """Stops listening (idempotent)."""
        self._closed = True
        self._owner._subscriptions.discard(self)
        self._event.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> set[str]:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class TableNotifier:
    """A :class:`Notifier` in memory: every subscription sees every ``notify`` after it."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def notify(self, tables: set[str]) -> None:
        if tables:
            for subscription in list(self._subscriptions):
                subscription._add(tables)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscriptions.add(subscription)
        return subscription


class SqliteExecutor:
    """An :class:`Executor` over one SQLite database, without sync.

    ``database`` is a path or an open ``sqlite3.Connection`` (opened with
    ``check_same_thread=False``: statements run in a worker thread, one at a time). Each
    statement is committed when it leaves a transaction open.
    """

    def __init__(
        self,
        database: str | os.PathLike[str] | sqlite3.Connection,
        notifier: Notifier | None = None,
    ) -> None:
        if isinstance(database, sqlite3.Connection):
            self.connection = database
            self._owned = False
        else:
            self.connection = sqlite3.connect(
                database, check_same_thread=False, isolation_level=None
            )
            self._owned = True
        self._notifier: Notifier = notifier if notifier is not None else TableNotifier()
        self._lock = trio.Lock()

    @property
    def notifier(self) -> Notifier:
        return self._notifier

    def _run(self, sql: str, params: Sequence[Any], rows: bool) -> tuple[list[dict[str, Any]], int]:
        cursor = self.connection.execute(sql, tuple(params))
        try:
            result: list[dict[str, Any]] = []
            if rows and cursor.description is not None:
                names = [d[0] for d in cursor.description]
                result = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            else:
                cursor.fetchall()
            count = cursor.rowcount
        finally:
            cursor.close()
        if self.connection.in_transaction:
            self.connection.commit()
        return result, count

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self._lock:
            rows, _ = await trio.to_thread.run_sync(self._run, sql, params, True)
        return rows

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock:
            _, count = await trio.to_thread.run_sync(self._run, sql, params, False)
        return count

    async def executescript(self, script: str) -> None:
        """Runs several statements (no parameters), e.g. a migration."""
        async with self._lock:
            await trio.to_thread.run_sync(self.connection.executescript, script)

    def close(self) -> None:
        """Closes the connection if this executor opened it."""
        if self._owned:
            self.connection.close()


class LocalSql(Protocol):
    """The SQL side of the Satellite client (``client.conn``)."""

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def run(
        self, fn: Callable[[sqlite3.Connection], T], *, transaction: bool = True
    ) -> T: ...


class ClientLike(Protocol):
    """What :class:`ClientExecutor` needs of the Satellite client: ``conn`` and ``notifier``."""

    @property
    def conn(self) -> LocalSql: ...

    @property
    def notifier(self) -> Notifier: ...


_WRITES = ("insert", "update", "delete", "replace", "with")


class ClientExecutor:
    """An :class:`Executor` over the Satellite client
    (:class:`electric_trio.client.ElectricClient`): reads run through ``client.conn.query``,
    writes through ``client.conn.run`` (in a transaction, followed by the client's oplog
    snapshot, which sends them to the service and notifies the tables written).
    :class:`~electric_trio.client.data.Database` wraps a client in one by itself."""

    def __init__(self, client: ClientLike) -> None:
        self.client = client

    @property
    def notifier(self) -> Notifier:
        """The client's own notifier (its snapshot after a write also tells it; live queries
        fold the two notifications into one result)."""
        return self.client.notifier

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        if not sql.lstrip().lower().startswith(_WRITES):
            return await self.client.conn.query(sql, params)

        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cursor = conn.execute(sql, tuple(params))
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        return await self.client.conn.run(run)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self.client.conn.execute(sql, params)
