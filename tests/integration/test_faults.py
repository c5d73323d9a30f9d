"""Faults the service survives (issue 8, item 1): the network between the service and Postgres
cut at random points of the transactions, a client that stops reading, the replication slot
dropped under the service. Each case ends with the convergence check: what the client holds
equals what Postgres holds, each row received once."""

from __future__ import annotations

import random
import urllib.parse
from typing import Any

import trio
from msgspec.structs import replace
from test_satellite_protocol import (
    SETTINGS,
    Client,
    client,
    db,
    migration_sql,
    sql,
    start_service,
    wait_versions,
)
from test_shapes_protocol import request, select, subscribe
from trio_websocket import ConnectionClosed

from electric_trio.pg import connect
from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSubsystem
from faults import open_relay

__all__ = ["db"]  # fixtures used by name

ITEMS = "id int8 PRIMARY KEY, v text"
CUTS = 5


def via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:``port``."""
    parts = urllib.parse.urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class Replica:
    """What a raw client holds of ``items``: rows by id, and how often each insert came."""

    def __init__(self) -> None:
        self.rows: dict[int, str | None] = {}
        self.inserts: dict[int, int] = {}
        self.transactions = 0
        self.changed = trio.Event()

    async def follow(self, c: Client) -> None:
        """Applies every transaction the server streams, acknowledging each."""
        while True:
            try:
                frame = await c.recv(within=120)
            except ConnectionClosed:
                return
            if not isinstance(frame, m.SatOpLog):
                continue
            for op in frame.ops:
                if op.begin is not None and op.begin.transaction_id is not None:
                    self.transactions += 1
                    await c.send(
                        m.SatOpLogAck(transaction_id=op.begin.transaction_id, lsn=op.begin.lsn)
                    )
                change: Any = op.insert or op.update
                if change is not None:
                    key = int(change.row_data.values[0])
                    value = change.row_data.values[1]
                    self.rows[key] = value.decode() if value else None
                    if op.insert is not None:
                        self.inserts[key] = self.inserts.get(key, 0) + 1
                if op.delete is not None:
                    self.rows.pop(int(op.delete.old_row_data.values[0]), None)
            self.changed.set()
            self.changed = trio.Event()


async def pg_items(url: str) -> dict[int, str | None]:
    async with await connect(url) as conn:
        rows = await conn.fetch("SELECT id, v FROM items ORDER BY id")
    return {int(r[0]): r[1] for r in rows}


async def converge(replica: Replica, url: str, *, within: float = 90) -> None:
    """Until the replica holds Postgres's rows; then no row came twice."""
    expected = await pg_items(url)
    with trio.move_on_after(within):
        while replica.rows != expected:
            await replica.changed.wait()
    assert replica.rows == expected, (len(replica.rows), len(expected))
    doubled = {k: n for k, n in replica.inserts.items() if n != 1}
    assert not doubled, doubled


async def test_postgres_connections_cut_at_random_points(
    pg_server: Any,
    db: str,
) -> None:
    """Every connection of the service to Postgres (replication and queries) is reset, again
    and again, while transactions are committed: the service reconnects, resumes from its slot,
    and the client gets every transaction once, with no gap."""
    rng = random.Random(8)
    async with open_relay(pg_server.host, pg_server.port) as relay, trio.open_nursery() as nursery:
        service = await start_service(nursery, via(db, relay.port))
        await sql(db, migration_sql("1", "items", ITEMS))
        await wait_versions(service, 1)
        replica = Replica()
        async with client(service) as c:
            await c.connect("c1")
            assert (await c.start_replication()).err is None
            assert (await subscribe(c, request(select("items")))).err is None
            nursery.start_soon(replica.follow, c)

            cutting = True

            async def write() -> None:
                async with await connect(db) as conn:  # not through the relay
                    t = 0
                    while cutting or t < 20:
                        values = ", ".join(f"({t * 5 + i}, 'row {t}.{i}')" for i in range(5))
                        await conn.execute(
                            f"BEGIN; INSERT INTO items VALUES {values};"
                            f" UPDATE items SET v = v || ' updated' WHERE id = {t * 5};"
                            f" DELETE FROM items WHERE id = {t * 5 + 4} AND {t} % 3 = 0; COMMIT"
                        )
                        t += 1
                        await trio.sleep(rng.uniform(0, 0.05))

            async with trio.open_nursery() as writers:
                writers.start_soon(write)
                for _ in range(CUTS):
                    with trio.fail_after(60):
                        while service.status() != "ready":  # noqa: ASYNC110 (no event)
                            await trio.sleep(0.05)
                    await trio.sleep(rng.uniform(0.05, 0.5))
                    assert relay.cut()
                    with trio.fail_after(30):  # the service notices
                        while service.status() == "ready":  # noqa: ASYNC110 (no event)
                            await trio.sleep(0.01)
                cutting = False
            await converge(replica, db)
            assert relay.cuts == CUTS
            assert relay.accepted > CUTS  # the service connected again after each cut
            assert replica.transactions >= 60
            nursery.cancel_scope.cancel()


async def test_a_slot_dropped_under_the_service_makes_clients_resync(
    pg_server: Any,
    db: str,
) -> None:
    """The main slot dropped while the service runs, then the replication connection lost:
    the transactions committed meanwhile cannot be read again. The service says so in its
    log, and a client that was streaming is told BEHIND_WINDOW (it resyncs) rather than
    continuing past the gap; a client that starts afresh converges."""
    async with open_relay(pg_server.host, pg_server.port) as relay, trio.open_nursery() as nursery:
        service = await start_service(nursery, via(db, relay.port))
        await sql(db, migration_sql("1", "items", ITEMS))
        await wait_versions(service, 1)
        async with client(service) as c:
            await c.connect("c1")
            assert (await c.start_replication()).err is None
            sub = request(select("items"))
            assert (await subscribe(c, sub)).err is None
            await sql(db, "INSERT INTO items VALUES (1, 'before')")
            [begin] = [
                op.begin
                for f in await c.transactions(1)
                if isinstance(f, m.SatOpLog)
                for op in f.ops
                if op.begin is not None
            ]
            async with await connect(db) as conn:
                slot = await conn.fetchval(
                    "SELECT slot_name FROM pg_replication_slots"
                    " WHERE database = current_database() AND NOT active"
                )
                assert slot is not None
                relay.stall()  # the service sees nothing while the slot goes
                await conn.execute(f"SELECT pg_drop_replication_slot('{slot}')")
                await conn.execute("INSERT INTO items VALUES (2, 'in the gap')")
                relay.cut()
                relay.resume()
                await conn.execute("INSERT INTO items VALUES (3, 'after')")
            frames = await c.expect_close(1007, within=60)
            errors = [f for f in frames if isinstance(f, m.SatErrorResp)]
            assert errors, frames
        with trio.fail_after(30):
            while service.status() != "ready":  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.05)
        async with client(service) as c:  # it comes back from where it was: it must resync
            await c.connect("c1")
            resp = await c.start_replication(lsn=begin.lsn, subscription_ids=(sub.subscription_id,))
            assert resp.err is not None
            assert resp.err.code == m.SatInStartReplicationRespReplicationErrorCode.BEHIND_WINDOW
        replica = Replica()
        async with client(service) as c:
            await c.connect("c2")
            assert (await c.start_replication()).err is None
            assert (await subscribe(c, request(select("items")))).err is None
            nursery.start_soon(replica.follow, c)
            await converge(replica, db)
            nursery.cancel_scope.cancel()


async def test_a_client_that_stops_reading_is_cut_off_while_others_keep_up(
    db: str,
) -> None:
    """A client stops reading its socket mid-stream, with megabytes of transactions to come:
    what the server holds for it is bounded (its window of unacknowledged transactions and
    the socket's buffer, no queue of its own), the other client gets everything, and the
    silent one is closed as unresponsive (it answers no ping)."""
    satellite = SatelliteSubsystem(replace(SETTINGS, ping_interval=1.0))
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, db, satellite)
        await sql(db, migration_sql("1", "items", ITEMS))
        await wait_versions(service, 1)
        server = satellite.server
        assert server is not None
        replica = Replica()
        async with client(service) as fast, client(service) as slow:
            for c, name in ((fast, "fast"), (slow, "slow")):
                await c.connect(name)
                assert (await c.start_replication()).err is None
                assert (await subscribe(c, request(select("items")))).err is None
            nursery.start_soon(replica.follow, fast)
            # the slow one never reads again: its WebSocket reader stops once a message waits
            big = "x" * 50_000
            async with await connect(db) as conn:
                for t in range(200):  # 10 MB in all
                    await conn.execute(f"INSERT INTO items VALUES ({t}, '{t} {big}')")
            await converge(replica, db)
            with trio.fail_after(30):
                while "slow" in server._registrations:  # noqa: ASYNC110 (no event to wait on)
                    await trio.sleep(0.1)
            assert "fast" in server._registrations
            nursery.cancel_scope.cancel()
