# ruff: noqa: F811 (the db fixture comes from test_satellite_protocol)
"""Many clients at once: their state writes combined (one statement for many clients, each
client's writes still in its order), and a whole crowd that subscribed, then reconnects at
once after a service restart, each getting its startReplication answered and its stored
shapes back."""

from __future__ import annotations

from typing import Any

import trio
from test_satellite_protocol import (  # noqa: F401 (fixtures)
    client,
    db,
    migration_sql,
    sql,
    start_service,
    wait_versions,
)
from test_shapes_protocol import ack, request, select, started, subscribe, until

from electric_trio.pg import connect
from electric_trio.satellite import _bookkeeping as bk
from electric_trio.satellite import messages as m
from electric_trio.satellite._db import SessionDatabase
from electric_trio.satellite._graph_store import PIECE
from electric_trio.service import connect_params

CLIENTS = 40


async def test_writes_of_many_clients_share_statements_in_each_clients_order(
    db: str, nursery: trio.Nursery
) -> None:
    service = await start_service(nursery, db)
    keeper = bk.Bookkeeper(SessionDatabase(connect_params(service.config.database), 5.0, 1))
    try:
        writes: list[tuple[bk.Kind, str, list[tuple[Any, ...]]]] = []
        for i in range(30):
            c = f"c{i}"
            writes += [
                (bk.SUBSCRIPTION, c, [(c, "old", "1", b"r")]),
                (bk.CHECKPOINT, c, [(c, 5, b"g0", b"m")]),
                (PIECE, c, [(c, 1, 0, 6, b"p1", b"m")]),
                (bk.FORGET_STORED, c, [(c,)]),  # starts over: the three above go
                (bk.SUBSCRIPTION, c, [(c, "s1", "7", b"r1")]),
                (bk.SUBSCRIPTION, c, [(c, "s2", "8", b"r2")]),
                (bk.CHECKPOINT, c, [(c, 10, b"g1", b"m")]),
                (PIECE, c, [(c, 2, 0, 10, b"p2", b"m")]),
                (bk.CHECKPOINT, c, [(c, 11, b"g\x00\\\x22", b"m")]),
                (bk.UNSUBSCRIBED, c, [(c, "s1", 11, b"gone"), (c, "s2", 11, b"gone")]),
                (bk.FORGET_UNSUBSCRIBED, c, [(c, "s2")]),
                (bk.FORGET_SUBSCRIPTIONS, c, [(c, "s1")]),
            ]
        async with trio.open_nursery() as n:
            # Each client's writes in its order, the clients' interleaved.
            per_client = len(writes) // 30
            for step in range(per_client):
                for i in range(30):
                    n.start_soon(keeper.write, *writes[i * per_client + step])
                    await trio.lowlevel.checkpoint()
        assert keeper.writes == len(writes)
        assert keeper.statements < len(writes) / 5
        async with await connect(db) as conn:
            subs = await conn.fetch(
                "SELECT client_id, subscription_id, min_txid::text, ord, shape_requests"
                " FROM electric.client_shape_subscriptions ORDER BY client_id"
            )
            checkpoints = await conn.fetch(
                "SELECT client_id, pg_wal_pos, sent_rows_graph FROM electric.client_checkpoints"
            )
            unsub = await conn.fetch(
                "SELECT client_id, subscription_id, wal_pos, gone_batch"
                " FROM electric.client_unsub_points"
            )
            pieces = await conn.fetch(
                "SELECT client_id, lineage FROM electric.client_checkpoint_logs"
            )
        assert sorted(pieces) == sorted((f"c{i}", 2) for i in range(30))
        assert sorted(subs) == sorted((f"c{i}", "s2", "8", 2, b"r2") for i in range(30))
        assert sorted(checkpoints) == sorted((f"c{i}", 11, b"g\x00\\\x22") for i in range(30))
        assert sorted(unsub) == sorted((f"c{i}", "s1", 11, b"gone") for i in range(30))
    finally:
        await keeper.aclose()


async def test_a_crowd_reconnecting_after_a_restart_resumes(db: str) -> None:
    subs = [request(select("items")) for _ in range(CLIENTS)]
    positions: dict[int, bytes] = {}

    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, migration_sql("1", "items"))
        await sql(db, "INSERT INTO items VALUES (1, 'a')")
        await wait_versions(service, 1)
        subscribed = trio.Event()
        ready = 0

        async def first_visit(i: int) -> None:
            nonlocal ready
            async with client(service) as c:
                await started(service, c, f"crowd-{i}")
                assert (await subscribe(c, subs[i])).err is None
                await until(c, m.SatSubsDataEnd)
                ready += 1
                if ready == CLIENTS:
                    subscribed.set()
                frames = await until(c, m.SatOpLog)
                while not any(
                    op.insert is not None
                    for f in frames
                    if isinstance(f, m.SatOpLog)
                    for op in f.ops
                ):
                    frames = await until(c, m.SatOpLog)
                positions[i] = await ack(c, frames)
                await trio.sleep(0.3)  # the acknowledgement reaches the service

        async with trio.open_nursery() as crowd:
            for i in range(CLIENTS):
                crowd.start_soon(first_visit, i)
            with trio.fail_after(60):
                await subscribed.wait()
            await sql(db, "INSERT INTO items VALUES (2, 'b')")
        first.cancel_scope.cancel()

    async with await connect(db) as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM electric.client_shape_subscriptions"
            " WHERE client_id LIKE 'crowd-%'"
        )
    assert stored == CLIENTS
    await sql(db, "INSERT INTO items VALUES (3, 'while the service was down')")

    async with trio.open_nursery() as second:
        service = await start_service(second, db)
        resumed: list[int] = []

        async def back(i: int) -> None:
            async with client(service) as c:
                await c.connect(f"crowd-{i}")
                resp = await c.start_replication(
                    lsn=positions[i], subscription_ids=(subs[i].subscription_id,)
                )
                assert resp.err is None, resp
                frames = await until(c, m.SatOpLog)
                inserted = [
                    op.insert.row_data
                    for f in frames
                    if isinstance(f, m.SatOpLog)
                    for op in f.ops
                    if op.insert is not None
                ]
                assert len(inserted) == 1, frames
                resumed.append(i)

        with trio.fail_after(60):
            async with trio.open_nursery() as crowd:
                for i in range(CLIENTS):
                    crowd.start_soon(back, i)
        assert sorted(resumed) == list(range(CLIENTS))
        second.cancel_scope.cancel()
