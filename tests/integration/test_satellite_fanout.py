"""The server's fan-out: parked clients are visited only by transactions of their shapes' tables;
one parked on a table nobody writes still gets its rows, at their positions, live and after a
reconnect."""

from __future__ import annotations

import trio
from test_satellite_protocol import (  # noqa: F401 (fixtures)
    Client,
    client,
    db,
    migration_sql,
    satellite,
    service,
    sql,
    wait_versions,
)
from test_shapes_protocol import ack, ops, request, select, started, subscribe, until

from electric_trio.pg import connect
from electric_trio.satellite import messages as m
from electric_trio.service import Service

#: Transactions per batch on the other table (within the client's window of 30).
BATCH = 25


def _lsns(frames: list[m.FrameMessage]) -> list[int]:
    return [
        int(f.ops[0].begin.lsn)
        for f in frames
        if isinstance(f, m.SatOpLog) and f.ops and f.ops[0].begin is not None
    ]


async def _other_table(
    url: str, start: int, watcher: Client, known: dict[int, m.SatRelation]
) -> int:
    """``BATCH`` transactions into ``items``, each seen by ``watcher`` (acknowledged); the
    position of the last."""
    async with await connect(url) as conn:
        for i in range(start, start + BATCH):
            await conn.execute(f"INSERT INTO items VALUES ({i}, 'x')")
    frames = await watcher.transactions(BATCH)
    assert ops(frames, known) == [("insert", "items", str(i)) for i in range(start, start + BATCH)]
    await ack(watcher, frames)
    return _lsns(frames)[-1]


async def test_a_client_parked_on_a_quiet_table_gets_its_rows_at_their_positions(
    service: Service,  # noqa: F811 (fixture)
    db: str,  # noqa: F811 (fixture)
) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, migration_sql("2", "idle_items"))
    await wait_versions(service, 2)
    quiet: dict[int, m.SatRelation] = {}
    busy: dict[int, m.SatRelation] = {}
    sub = request(select("idle_items"))
    async with client(service) as a, client(service) as b:
        await started(service, a, "a")
        await started(service, b, "b")
        assert (await subscribe(a, sub)).err is None
        ops(await until(a, m.SatSubsDataEnd), quiet)
        # b sees both tables: the same transaction has the same position for both clients.
        assert (await subscribe(b, request(select("items"), select("idle_items")))).err is None
        ops(await until(b, m.SatSubsDataEnd), busy)
        last_other = await _other_table(db, 0, b, busy)
        await sql(db, "INSERT INTO idle_items VALUES (1, 'y')")
        got = await until(a, m.SatOpLog)
        assert ops(got, quiet) == [("insert", "idle_items", "1")]
        seen_by_b = await until(b, m.SatOpLog)
        assert ops(seen_by_b, busy) == [("insert", "idle_items", "1")]
        assert _lsns(got) == _lsns(seen_by_b)
        assert _lsns(got)[0] > last_other
        position = await ack(a, got)
        await ack(b, seen_by_b)
        await _other_table(db, 100, b, busy)
    # a is away: a row of its table between transactions of the other.
    async with client(service) as b:
        await b.connect("b")
        await b.start_replication()  # b starts over (no position): new rows only
        assert (await subscribe(b, request(select("items")))).err is None
        ops(await until(b, m.SatSubsDataEnd), busy)
        await _other_table(db, 200, b, busy)
        await sql(db, "INSERT INTO idle_items VALUES (2, 'missed')")
        await _other_table(db, 300, b, busy)
        async with client(service) as a:
            await a.connect("a")
            resp = await a.start_replication(lsn=position, subscription_ids=(sub.subscription_id,))
            assert resp.err is None
            got = await until(a, m.SatOpLog)
            assert ops(got, quiet) == [("insert", "idle_items", "2")]
            await ack(a, got)
            # Parked again: more of the other table, then its own table's row, live.
            last_other = await _other_table(db, 400, b, busy)
            await sql(db, "INSERT INTO idle_items VALUES (3, 'live')")
            with trio.fail_after(10):
                got = await until(a, m.SatOpLog)
            assert ops(got, quiet) == [("insert", "idle_items", "3")]
            assert _lsns(got)[0] > last_other


async def test_a_client_whose_window_fills_gets_the_rest_in_order_once_it_acknowledges(
    service: Service,  # noqa: F811 (fixture)
    db: str,  # noqa: F811 (fixture)
) -> None:
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    async with client(service) as slow, client(service) as keen:
        for c, client_id in ((slow, "slow"), (keen, "keen")):
            await started(service, c, client_id)
            assert (await subscribe(c, request(select("items")))).err is None
            frames = await until(c, m.SatSubsDataEnd)
            ops(frames, known)
            await ack(c, frames)  # the migration's transaction
        # keen acknowledges as it goes; slow does not, and its window of 30 fills.
        async with await connect(db) as conn:
            for i in range(35):
                await conn.execute(f"INSERT INTO items VALUES ({i}, 'x')")
        keen_got: list[m.FrameMessage] = []
        for _ in range(7):
            frames = await keen.transactions(5)
            await ack(keen, frames)
            keen_got += frames
        assert ops(keen_got, known) == [("insert", "items", str(i)) for i in range(35)]
        first = await slow.transactions(30)
        await slow.nothing_for(0.3)  # the window is full
        await ack(slow, first)
        rest = await slow.transactions(5)
        assert ops(first + rest, known) == [("insert", "items", str(i)) for i in range(35)]
        await ack(slow, rest)
        # Both are served as before, one transaction at a time.
        async with await connect(db) as conn:
            for i in range(35, 40):
                await conn.execute(f"INSERT INTO items VALUES ({i}, 'x')")
                for c in (slow, keen):
                    frames = await c.transactions(1)
                    assert ops(frames, known) == [("insert", "items", str(i))]
                    await ack(c, frames)
