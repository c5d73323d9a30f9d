"""Idle clients: what the service keeps of a client subscribed to a table nobody writes while
other tables are written (issue 9's 10,000 idle clients)."""

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
from test_shapes_protocol import ops, request, select, started, subscribe, until

from electric_trio.pg import connect
from electric_trio.satellite import messages as m
from electric_trio.service import Service


async def _stored_graph(url: str, client_id: str, position: int) -> bytes:
    """The client's sent-rows graph as stored when its connection ended (at ``position``):
    its base and the pieces of its change log stored since."""
    async with await connect(url) as conn:
        with trio.fail_after(20):
            while True:
                rows = await conn.fetch(
                    "SELECT c.sent_rows_graph, l.pg_wal_pos, l.changes"
                    " FROM electric.client_checkpoints c"
                    " JOIN electric.client_checkpoint_logs l USING (client_id)"
                    " WHERE client_id = $1 ORDER BY l.seq",
                    client_id,
                )
                if rows and int(rows[-1][1]) >= position:
                    return bytes(rows[0][0][13:]) + b"".join(bytes(r[2]) for r in rows)
                await trio.sleep(0.05)


async def _idle_then_one_row(
    svc: Service, url: str, client_id: str, row: int, other_writes: int
) -> bytes:
    """A client subscribed to ``idle_items`` while ``other_writes`` transactions go to
    ``items``, then gets one row of ``idle_items``; its stored graph once it has left."""
    known: dict[int, m.SatRelation] = {}
    async with client(svc) as c:
        await started(svc, c, client_id)
        assert (await subscribe(c, request(select("idle_items")))).err is None
        ops(await until(c, m.SatSubsDataEnd), known)
        async with await connect(url) as conn:
            for i in range(other_writes):  # one transaction each
                await conn.execute(f"INSERT INTO items VALUES ({row * 1000 + i}, 'x')")
            await conn.execute(f"INSERT INTO idle_items VALUES ({row}, 'y')")
        with trio.fail_after(20):
            frames = await until(c, m.SatOpLog)
        # Nothing of the other table, and the row of its own.
        assert ops(frames, known) == [("insert", "idle_items", str(row))]
        begin = next(f.ops[0].begin for f in frames if isinstance(f, m.SatOpLog))
        assert begin is not None
    return await _stored_graph(url, client_id, int(begin.lsn))


async def test_an_idle_client_keeps_nothing_per_transaction_of_other_tables(
    service: Service,  # noqa: F811 (fixture)
    db: str,  # noqa: F811 (fixture)
) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, migration_sql("2", "idle_items"))
    await wait_versions(service, 2)
    quiet = await _idle_then_one_row(service, db, "quiet", 1, other_writes=0)
    await sql(db, "DELETE FROM idle_items")
    busy = await _idle_then_one_row(service, db, "busy", 2, other_writes=40)
    # Each transaction it saw used to leave a step in its graph's journal (kept until an
    # acknowledgement, stored with its checkpoint): 10,000 idle clients grew without bound.
    assert len(busy) == len(quiet)
