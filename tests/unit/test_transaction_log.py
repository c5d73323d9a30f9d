"""The in-memory transaction log: ordering, trimming by WAL distance, waiting readers."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from electric_trio.replication._log import TransactionLog


@dataclass(frozen=True)
class Txn:
    end_lsn: int


def test_read_after_and_resumable_range() -> None:
    log: TransactionLog[Txn] = TransactionLog(max_wal_distance=1000)
    assert not log.is_resumable(0)
    log.append([Txn(100), Txn(200)])
    log.append([Txn(300)])
    assert [t.end_lsn for t in log.read_after(0)] == [100, 200, 300]
    assert [t.end_lsn for t in log.read_after(200)] == [300]
    assert [t.end_lsn for t in log.read_after(150, limit=1)] == [200]
    assert log.read_after(300) == []
    assert log.is_resumable(100)
    assert log.is_resumable(300)
    assert not log.is_resumable(99)
    assert not log.is_resumable(301)


def test_trims_by_wal_distance_not_count() -> None:
    log: TransactionLog[Txn] = TransactionLog(max_wal_distance=250)
    log.append([Txn(lsn) for lsn in range(100, 1100, 100)])
    # Newest is 1000: everything at or after 750 stays.
    assert log.first_lsn == 800
    assert len(log) == 3
    assert not log.is_resumable(700)
    assert [t.end_lsn for t in log.read_after(0)] == [800, 900, 1000]


def test_many_appends_compact_without_losing_order() -> None:
    log: TransactionLog[Txn] = TransactionLog(max_wal_distance=10_000)
    for lsn in range(1, 50_001):
        log.append([Txn(lsn * 10)])
    assert log.first_lsn == 490_000
    assert log.last_lsn == 500_000
    assert len(log) == 1001
    assert log.appended == 50_000
    assert [t.end_lsn for t in log.read_after(499_970)] == [499_980, 499_990, 500_000]


class Held:
    def __init__(self, end_lsn: int) -> None:
        self.end_lsn = end_lsn


def test_trimmed_transactions_are_let_go_at_once() -> None:
    """The log's memory is its bound's, not twice it: a trimmed transaction (and its rows)
    is freed when it leaves the window, not when the lists are next compacted."""
    log: TransactionLog[Held] = TransactionLog(max_wal_distance=1000)
    refs = []
    for lsn in range(100, 3100, 100):
        txn = Held(lsn)
        refs.append(weakref.ref(txn))
        log.append([txn])
        del txn
        alive = [t.end_lsn for r in refs if (t := r()) is not None]
        assert alive == [t.end_lsn for t in log.read_after(0)]
    assert len(log) == 11
    assert [t.end_lsn for t in log.read_after(1950)] == list(range(2000, 3100, 100))


def test_rejects_out_of_order_positions() -> None:
    log: TransactionLog[Txn] = TransactionLog(max_wal_distance=1000)
    log.append([Txn(100)])
    with pytest.raises(ValueError, match="not after"):
        log.append([Txn(100)])


async def test_wait_after_wakes_on_append(autojump_clock: trio.testing.MockClock) -> None:
    log: TransactionLog[Txn] = TransactionLog(max_wal_distance=1000)
    log.append([Txn(100)])
    woke: list[int] = []

    async def reader() -> None:
        await log.wait_after(100)
        woke.append(log.read_after(100)[0].end_lsn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.sleep(5)
        assert woke == []
        log.append([Txn(150)])
    assert woke == [150]


def test_a_position_the_replay_has_yet_to_reach_is_replaying() -> None:
    """After a restart the reader replays the slot's window (from 100 up to the WAL flushed
    at its start, 500): positions in it are ahead of the replay, not behind the window."""
    log: TransactionLog[Txn] = TransactionLog(max_wal_distance=10_000)
    log.replay_from, log.replay_to = 100, 500
    assert log.replaying(300)
    assert not log.replaying(100)  # before the slot: never coming again
    assert not log.replaying(600)  # past what was flushed: no earlier run sent it
    log.append([Txn(200)])
    assert log.replaying(300)
    assert not log.is_resumable(300)
    log.append([Txn(300)])
    assert not log.replaying(300)
    assert log.is_resumable(300)
