"""Live queries: a query re-run each time a table it reads changes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Set
from typing import Any, Generic, TypeVar

import trio

from ._executor import Notifier

__all__ = ["LiveQuery", "tables_in_sql"]

T = TypeVar("T")

_SETTLE = 0.001
"""Seconds a live query waits for one more queued notification when its notifier's
subscription has no ``receive_nowait``."""

_MAX_DRAIN = 1000
"""At most this many queued notifications fold into one result (a steady stream of changes
still gives results)."""

_TOKEN = re.compile(r'"((?:[^"]|"")*)"|`([^`]*)`|\[([^\]]*)\]|([A-Za-z_][A-Za-z0-9_$]*)')


def tables_in_sql(sql: str, tables: Iterable[str]) -> set[str]:
    """The names of ``tables`` that ``sql`` mentions as identifiers (quoted or not). A table
    named only inside a string literal is not counted; over-counting only costs a re-run."""
    known = set(tables)
    found: set[str] = set()
    without_strings = re.sub(r"'(?:[^']|'')*'", "''", sql)
    for match in _TOKEN.finditer(without_strings):
        quoted, backtick, bracket, bare = match.groups()
        name = (
            quoted.replace('""', '"')
            if quoted is not None
            else backtick
            if backtick is not None
            else bracket
            if bracket is not None
            else bare
        )
        if name in known:
            found.add(name)
        elif bare is not None:  # unquoted names are case-insensitive in SQLite
            found.update(t for t in known if t.lower() == bare.lower())
    return found


class LiveQuery(Generic[T], AsyncIterator[T]):
    """An async iterator of results: the first at once, then one after each notification that
    names a table in :attr:`tables`. Notifications that arrive while a result is being read or
    waits to be taken fold into the next one. Listening starts at the first ``__anext__`` and
    stops with :meth:`aclose` (also ``async with``, or the end of an ``async for`` by
    ``break``, when the iterator is closed by its owner)."""

    def __init__(
        self, notifier: Notifier, tables: Iterable[str], run: Callable[[], Awaitable[T]]
    ) -> None:
        self.tables = frozenset(tables)
        self._notifier = notifier
        self._run = run
        self._subscription: AsyncIterator[Set[str]] | None = None
        self._closed = False

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        if self._subscription is None:
            self._subscription = self._notifier.subscribe()
            return await self._run()
        pending: Set[str] = frozenset()
        while not pending & self.tables:
            try:
                pending = await self._subscription.__anext__()
            except StopAsyncIteration:
                self._closed = True
                raise
        await self._drain()
        return await self._run()

    async def _drain(self) -> None:
        """Takes the notifications already queued, so that a burst gives one result."""
        assert self._subscription is not None
        receive_nowait: Callable[[], Any] | None = getattr(
            self._subscription, "receive_nowait", None
        )
        for _ in range(_MAX_DRAIN):
            if receive_nowait is not None:
                try:
                    receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    return
                continue
            # no way to look without waiting: a queued notification comes at once, an empty
            # queue costs this short wait
            with trio.move_on_after(_SETTLE) as scope:
                try:
                    await self._subscription.__anext__()
                except StopAsyncIteration:
                    return
            if scope.cancelled_caught:
                return

    async def aclose(self) -> None:
        """Stops listening (idempotent)."""
        self._closed = True
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        close = getattr(subscription, "close", None)
        aclose = getattr(subscription, "aclose", None)
        if close is not None:
            close()
        elif aclose is not None:
            await aclose()

    async def __aenter__(self) -> LiveQuery[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
