"""The replication reader against a real Postgres: transactions into the log, bounded WAL,
restart without loss or repeats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import trio

from _databases import fresh_database
from electric_trio.pg import ConnectParams, connect, parse_lsn
from electric_trio.replication import (
    ReaderSettings,
    ReaderStatus,
    TransactionLog,
    main_slot_name,
    serve_replication,
)


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    """A fresh database (slot names derive from it), with a published and an unpublished table."""
    async with fresh_database(pg_server, "et_repl") as url:
        async with await connect(url) as c:
            await c.execute(
                "CREATE TABLE items (id int8 PRIMARY KEY, v text);"
                "CREATE TABLE noise (id serial PRIMARY KEY, filler text);"
                "CREATE PUBLICATION electric_publication FOR TABLE items"
            )
        yield url


async def start_reader(
    nursery: trio.Nursery,
    url: str,
    txlog: TransactionLog[Any],
    options: dict[str, str] | None = None,
    **settings: Any,
) -> tuple[ReaderStatus, trio.CancelScope]:
    scope = trio.CancelScope()
    params = msgspec.structs.replace(ConnectParams.from_url(url), options=options or {})

    async def run(task_status: trio.TaskStatus[ReaderStatus]) -> None:
        with scope:
            await serve_replication(
                params,
                txlog,
                ReaderSettings(**settings),
                task_status=task_status,
            )

    status: ReaderStatus = await nursery.start(run)
    return status, scope


async def wait_for_changes(txlog: TransactionLog[Any], count: int) -> list[Any]:
    with trio.fail_after(60):
        while sum(len(t) for t in txlog.read_after(0, limit=10**9)) < count:
            await txlog.wait_after(txlog.last_lsn or 0)
    return txlog.read_after(0, limit=10**9)


async def test_committed_transactions_reach_the_log(db: str) -> None:
    txlog: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with trio.open_nursery() as nursery:
        status, scope = await start_reader(nursery, db, txlog)
        assert status.main_slot == main_slot_name(db.rsplit("/", 1)[1])
        async with await connect(db) as c:
            await c.execute("BEGIN; INSERT INTO items VALUES (1, 'a'), (2, 'b'); COMMIT")
            await c.execute("INSERT INTO noise (filler) VALUES ('not published')")
            await c.execute("UPDATE items SET v = 'c' WHERE id = 2")
        txns = await wait_for_changes(txlog, 3)
        scope.cancel()
    changes = [c for t in txns for c in t.changes()]
    assert [(kind, table, new) for kind, _, table, new, _, _ in changes] == [
        ("insert", "items", {"id": 1, "v": "a"}),
        ("insert", "items", {"id": 2, "v": "b"}),
        ("update", "items", {"id": 2, "v": "c"}),
    ]
    assert all(t.end_lsn > status.start_lsn for t in txns)


async def test_a_streamed_transaction_commits_and_a_small_one_follows_without_more_traffic(
    db: str,
) -> None:
    """With read coalescing (on by default), while a large transaction is partly received the
    reader lets the socket gather bytes before reading again (a low-water mark on it, for at
    most ``coalesce`` seconds): the commit of a transaction streamed while open, and a
    one-row transaction after it, each far smaller than that mark, still arrive with no
    further traffic to wake the reader."""
    rows = 3_000
    txlog: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with await connect(db) as writer, trio.open_nursery() as nursery:
        # A small decoding memory makes Postgres stream the transaction while it is open.
        status, scope = await start_reader(
            nursery, db, txlog, options={"logical_decoding_work_mem": "64kB"}, coalesce=0.001
        )
        await writer.execute("BEGIN")
        await writer.execute(
            "INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, $1::int) g", rows
        )
        with trio.fail_after(30):
            while status.received_bytes < 64_000:  # noqa: ASYNC110 - a counter, no event
                await trio.sleep(0.05)
        # The reader now waits inside the open transaction; nothing more of it comes.
        await trio.sleep(0.1)
        await writer.execute("COMMIT")
        await writer.execute("INSERT INTO items VALUES ($1::int8, 'last')", rows + 1)
        # Far less than the reader's status interval (10 s): no traffic of its own either.
        with trio.fail_after(5):
            txns = await wait_for_changes(txlog, rows + 1)
        scope.cancel()
    assert [len(t) for t in txns] == [rows, 1]
    ids = [new["id"] for t in txns for _, _, _, new, _, _ in t.changes()]
    assert ids == list(range(1, rows + 2))


async def test_keepalives_that_ask_for_a_reply_keep_a_quiet_stream_open(db: str) -> None:
    # The walsender ends a stream whose reader has not answered within wal_sender_timeout; it
    # asks for an answer at half of it. No periodic status update helps here (every 60 s).
    txlog: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with trio.open_nursery() as nursery:
        _, scope = await start_reader(
            nursery, db, txlog, options={"wal_sender_timeout": "1s"}, status_interval=60.0
        )
        await trio.sleep(3)
        async with await connect(db) as c:
            await c.execute("INSERT INTO items VALUES (1, 'after a quiet while')")
        txns = await wait_for_changes(txlog, 1)
        scope.cancel()
    assert [new["id"] for t in txns for _, _, _, new, _, _ in t.changes()] == [1]


async def test_retained_wal_stays_bounded_without_published_writes(db: str) -> None:
    window = 1 << 20
    txlog: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with trio.open_nursery() as nursery:
        status, scope = await start_reader(
            nursery,
            db,
            txlog,
            resumable_wal_window=window,
            advance_interval=0.2,
            status_interval=0.2,
        )
        async with await connect(db) as c:
            # About 16 MiB of WAL that no shape will ever see.
            for _ in range(16):
                await c.execute(
                    "INSERT INTO noise (filler)"
                    " SELECT repeat('x', 1000) FROM generate_series(1, 1000)"
                )
            await c.execute("SELECT pg_switch_wal()")
            current = parse_lsn(await c.fetchval("SELECT pg_current_wal_lsn()::text"))
            with trio.fail_after(60):
                while True:
                    rows = await c.fetch(
                        "SELECT slot_name, confirmed_flush_lsn::text FROM pg_replication_slots"
                        " WHERE database = current_database()"
                    )
                    lag = {name: current - parse_lsn(lsn) for name, lsn in rows}
                    if lag[status.main_slot] <= window and lag[status.temp_slot] <= window:
                        break
                    await trio.sleep(0.1)  # polling Postgres's own view
        scope.cancel()
    assert len(txlog) == 0


async def test_restart_resumes_from_the_slot_without_loss_or_repeat(db: str) -> None:
    first: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with trio.open_nursery() as nursery:
        _, scope = await start_reader(nursery, db, first)
        async with await connect(db) as c:
            await c.execute("INSERT INTO items VALUES (1, 'before')")
        await wait_for_changes(first, 1)
        scope.cancel()
    async with await connect(db) as c:
        # Written while the service is down.
        await c.execute("INSERT INTO items VALUES (2, 'while down')")
        await c.execute("INSERT INTO items VALUES (3, 'while down')")
    second: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with trio.open_nursery() as nursery:
        _, scope = await start_reader(nursery, db, second)
        async with await connect(db) as c:
            await c.execute("INSERT INTO items VALUES (4, 'after')")
        txns = await wait_for_changes(second, 4)
        scope.cancel()
    ids = [new["id"] for t in txns for _, _, _, new, _, _ in t.changes()]
    # The resumable window is replayed (1 again, as the original did), each exactly once.
    assert ids == [1, 2, 3, 4]
    lsns = [t.end_lsn for t in txns]
    assert lsns == sorted(set(lsns))


async def test_restart_in_the_middle_of_a_streamed_transaction(db: str) -> None:
    rows = 50_000
    first: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with await connect(db) as writer:
        async with trio.open_nursery() as nursery:
            # A small decoding memory makes Postgres stream the transaction while it is open.
            status, scope = await start_reader(
                nursery, db, first, options={"logical_decoding_work_mem": "64kB"}
            )
            await writer.execute("BEGIN")
            await writer.execute(
                "INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, $1::int) g", rows
            )
            # Postgres streams the open transaction to the reader; stop the reader mid-way.
            with trio.fail_after(30):
                while status.received_bytes < 500_000:  # noqa: ASYNC110 - a counter, no event
                    await trio.sleep(0.05)
            scope.cancel()
        await writer.execute("COMMIT")
    assert len(first) == 0  # nothing half-done reached the log
    second: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with trio.open_nursery() as nursery:
        _, scope = await start_reader(nursery, db, second)
        txns = await wait_for_changes(second, rows)
        scope.cancel()
    assert len(txns) == 1
    ids = [new["id"] for _, _, _, new, _, _ in txns[0].changes()]
    assert ids == list(range(1, rows + 1))


async def test_a_dropped_main_slot_is_recreated_at_start(db: str) -> None:
    txlog: TransactionLog[Any] = TransactionLog(max_wal_distance=1 << 30)
    async with trio.open_nursery() as nursery:
        status, scope = await start_reader(nursery, db, txlog)
        scope.cancel()
    async with await connect(db) as c:
        await c.execute("SELECT pg_drop_replication_slot($1)", status.main_slot)
        assert (
            await c.fetchval(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", status.main_slot
            )
            == 0
        )
    async with trio.open_nursery() as nursery:
        again, scope = await start_reader(nursery, db, txlog)
        async with await connect(db) as c:
            await c.execute("INSERT INTO items VALUES (7, 'after the drop')")
            assert (
                await c.fetchval(
                    "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
                    again.main_slot,
                )
                == 1
            )
        txns = await wait_for_changes(txlog, 1)
        scope.cancel()
    assert [new["id"] for t in txns for _, _, _, new, _, _ in t.changes()] == [7]
