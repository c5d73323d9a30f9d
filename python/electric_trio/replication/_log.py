"""The transaction log: committed transactions kept in memory, indexed by LSN.

This is the seam between the replication reader and everything that serves clients (see
DESIGN.md): append, read after a position, trim, wait for more. It knows nothing about clients,
so a second process could later provide the same interface from a distributed log.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import trio


class Logged(Protocol):
    """What the log needs of a transaction: its position."""

    @property
    def end_lsn(self) -> int: ...


T = TypeVar("T", bound=Logged)


class TransactionLog(Generic[T]):
    """Transactions in commit order, bounded by a WAL-byte distance.

    After each append, entries more than ``max_wal_distance`` bytes of WAL behind the newest
    one are dropped (``ELECTRIC_TXN_CACHE_SIZE``: a distance in the WAL, not a memory size, as
    in the original). A position is resumable when it lies within the kept range.
    """

    def __init__(self, max_wal_distance: int) -> None:
        self.max_wal_distance = max_wal_distance
        self._lsns: list[int] = []
        self._txns: list[T] = []
        self._start = 0  # index of the first live entry (trimmed entries are compacted lazily)
        self._lot = trio.lowlevel.ParkingLot()
        #: Total transactions ever appended (a counter for metrics).
        self.appended = 0
        #: Times :meth:`clear` was called (the fan-out stops at such a gap).
        self.resets = 0
        #: The position of the newest transaction trimmed from the log (0: none): a reader
        #: before it has missed transactions.
        self.trimmed_lsn = 0
        #: Set by the reader at each start: the slot position it reads from and the WAL
        #: position flushed then. Every transaction that ended between the two is still to
        #: come while the reader replays them (after a restart of the service).
        self.replay_from = 0
        self.replay_to = 0
        #: Called after each append, in the appender's task (the satellite fan-out serves a new
        #: transaction at once when it is waiting for one).
        self.on_append: Callable[[], object] | None = None

    def __len__(self) -> int:
        return len(self._txns) - self._start

    @property
    def first_lsn(self) -> int | None:
        return self._lsns[self._start] if len(self) else None

    @property
    def last_lsn(self) -> int | None:
        return self._lsns[-1] if len(self) else None

    def append(self, txns: Sequence[T]) -> None:
        """Adds committed transactions (in commit order) and wakes waiting readers."""
        if not txns:
            return
        for txn in txns:
            lsn = txn.end_lsn
            if self._lsns and lsn <= self._lsns[-1]:
                raise ValueError(
                    f"transaction at LSN {lsn:X} is not after the last one ({self._lsns[-1]:X})"
                )
            self._lsns.append(lsn)
            self._txns.append(txn)
        self.appended += len(txns)
        self._trim()
        self._lot.unpark_all()
        if self.on_append is not None:
            self.on_append()

    def clear(self) -> None:
        """Forgets every transaction: the log starts again at the next append, and readers
        whose position lies before it are behind the window (they must resync). For a gap in
        the stream (the replication slot was lost)."""
        self._lsns.clear()
        self._txns.clear()
        self._start = 0
        self.resets += 1
        self._lot.unpark_all()

    def _trim(self) -> None:
        horizon = self._lsns[-1] - self.max_wal_distance
        start = bisect.bisect_left(self._lsns, horizon, lo=self._start)
        start = min(start, len(self._lsns) - 1)
        if start > self._start:
            self.trimmed_lsn = self._lsns[start - 1]
            # Trimmed transactions are let go at once (each holds its rows): only the
            # positions wait for the compaction below, which kept up to as many trimmed
            # transactions as live ones (twice the cache's memory).
            txns: list[Any] = self._txns
            txns[self._start : start] = [None] * (start - self._start)
        self._start = start
        # The lists are compacted once the trimmed part is half of them (amortized O(1)).
        if self._start * 2 > len(self._lsns):
            del self._lsns[: self._start]
            del self._txns[: self._start]
            self._start = 0

    def is_resumable(self, lsn: int) -> bool:
        """True when a reader at ``lsn`` can continue without missing a transaction."""
        first, last = self.first_lsn, self.last_lsn
        return first is not None and last is not None and first <= lsn <= last

    def replaying(self, lsn: int) -> bool:
        """True when the transaction at ``lsn`` is yet to be replayed into the log: a reader
        at ``lsn`` is not behind the window, only ahead of the replay."""
        return self.replay_from < lsn <= self.replay_to and (self.last_lsn or 0) < lsn

    def read_after(self, lsn: int, limit: int = 1000) -> list[T]:
        """Up to ``limit`` transactions whose position is greater than ``lsn``."""
        i = bisect.bisect_right(self._lsns, lsn, lo=self._start)
        return self._txns[i : i + limit]

    async def wait_after(self, lsn: int) -> None:
        """Returns once a transaction after ``lsn`` is in the log, or the log was cleared."""
        resets = self.resets
        while (self.last_lsn is None or self.last_lsn <= lsn) and resets == self.resets:
            await self._lot.park()
