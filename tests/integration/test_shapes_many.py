"""Many shapes per client (issue 9's scaling curve): a row in several of a client's shapes
reaches it once, stays while any of them holds it, and leaves (GONE) or goes (DELETE) right,
for clients streamed by the server's fan-out together, and after a service restart."""

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
    start_service,
    wait_versions,
)
from test_shapes_protocol import ack, ops, request, select, started, subscribe, until

from electric_trio.satellite import messages as m
from electric_trio.service import Service

#: Subscriptions per client, the i-th to ``items`` where ``v <> 'x<i>'``.
SHAPES = 6


async def _subscribed(c: Client, known: dict[int, m.SatRelation]) -> list[m.SatSubsReq]:
    subs = [request(select("items", f"this.v <> 'x{i}'")) for i in range(SHAPES)]
    for sub in subs:
        assert (await subscribe(c, sub)).err is None
        ops(await until(c, m.SatSubsDataEnd), known)
    return subs


async def _unsubscribe(
    c: Client, sub: m.SatSubsReq, known: dict[int, m.SatRelation]
) -> list[tuple[str, ...]]:
    """The ops of the GONE batch of unsubscribing ``sub``."""
    await c.call("unsubscribe", m.SatUnsubsReq(subscription_ids=(sub.subscription_id,)))
    return ops(await until(c, m.SatUnsubsDataEnd), known)


async def test_a_row_in_many_shapes_comes_once_and_leaves_with_the_last(
    service: Service,  # noqa: F811 (fixture)
    db: str,  # noqa: F811 (fixture)
) -> None:
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    known_a: dict[int, m.SatRelation] = {}
    known_b: dict[int, m.SatRelation] = {}
    async with client(service) as a, client(service) as b:
        await started(service, a, "a")
        await started(service, b, "b", user="bob")
        subs = await _subscribed(a, known_a)
        await _subscribed(b, known_b)
        # In every shape of both clients: once each.
        await sql(db, "INSERT INTO items VALUES (1, 'v'), (2, 'v')")
        for c, known in ((a, known_a), (b, known_b)):
            frames = await until(c, m.SatOpLog)
            assert ops(frames, known) == [("insert", "items", "1"), ("insert", "items", "2")]
            await ack(c, frames)
        # a lets go of shape 3: its rows are still in the others (an empty GONE batch).
        assert await _unsubscribe(a, subs[3], known_a) == []
        # Out of shape 4 (and 3's clause, no longer a's): still in the rest, an update.
        await sql(db, "UPDATE items SET v = 'x4' WHERE id = 1")
        assert ops(await until(a, m.SatOpLog), known_a) == [("update", "items", "1")]
        assert ops(await until(b, m.SatOpLog), known_b) == [("update", "items", "1")]
        # A delete of a row some shapes let go of is a delete.
        await sql(db, "DELETE FROM items WHERE id = 1")
        assert ops(await until(a, m.SatOpLog), known_a) == [("delete", "items", "1")]
        assert ops(await until(b, m.SatOpLog), known_b) == [("delete", "items", "1")]
        # Row 2 in shape 0 only (a still has it there): the rest unsubscribed, nothing goes;
        # out of shape 0 too, it is gone.
        for sub in subs[1:]:
            if sub is not subs[3]:
                assert await _unsubscribe(a, sub, known_a) == []
        await sql(db, "UPDATE items SET v = 'x0' WHERE id = 2")
        assert ops(await until(a, m.SatOpLog), known_a) == [("gone", "items", "2")]
        assert ops(await until(b, m.SatOpLog), known_b) == [("update", "items", "2")]


async def test_rows_in_many_shapes_are_known_after_a_service_restart(db: str) -> None:  # noqa: F811
    known: dict[int, m.SatRelation] = {}
    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, migration_sql("1", "items"))
        await wait_versions(service, 1)
        async with client(service) as c:
            await started(service, c)
            subs = await _subscribed(c, known)
            await sql(db, "INSERT INTO items VALUES (1, 'v'), (2, 'v')")
            await sql(db, "UPDATE items SET v = 'x5' WHERE id = 2")
            frames = await until(c, m.SatOpLog)
            frames += await until(c, m.SatOpLog)
            assert ops(frames, known) == [
                ("insert", "items", "1"),
                ("insert", "items", "2"),
                ("update", "items", "2"),
            ]
            lsn = await ack(c, frames)
        first.cancel_scope.cancel()
    async with trio.open_nursery() as second:
        service = await start_service(second, db)
        async with client(service) as c:
            await c.connect("c1")
            resp = await c.start_replication(
                lsn=lsn, subscription_ids=tuple(s.subscription_id for s in subs)
            )
            assert resp.err is None
            # The restored graph knows both rows and their shapes: row 2 is in every one but
            # shape 5, row 1 in all of them.
            gone: list[tuple[str, ...]] = []
            for sub in subs:
                if sub is not subs[5]:
                    gone += await _unsubscribe(c, sub, known)
            assert gone == [("gone", "items", "2")]
            assert await _unsubscribe(c, subs[5], known) == [("gone", "items", "1")]
        second.cancel_scope.cancel()
