"""Postgres restarted under the service while transactions stream, with a fast and with an
immediate shutdown (crash recovery): the service reconnects with its backoff, resumes from its
slot, and a client streaming all along gets every transaction once, with no gap. The test runs
a Postgres of its own (the session's is shared); marked slow to keep it out of the PG 15 pass,
which would only run the same embedded server again."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from test_faults import ITEMS, Replica, converge
from test_satellite_protocol import client, migration_sql, sql, start_service, wait_versions
from test_shapes_protocol import request, select, subscribe

from _ports import free_port
from electric_trio.pg import PgError, connect
from electric_trio.pg.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(tmp_path / "data", port=free_port(), fast=True) as pg:
        yield pg


def _stop(pg: EmbeddedPostgres, how: str) -> None:
    if how == "fast":
        pg.stop()
        return
    process = pg._process
    assert process is not None
    os.kill(process.pid, signal.SIGQUIT)  # immediate shutdown: recovery at the next start
    process.wait(timeout=60)
    pg.stop()


@pytest.mark.parametrize("how", ["fast", "immediate"])
async def test_postgres_restarted_under_load(own_pg: EmbeddedPostgres, how: str) -> None:
    db = own_pg.url
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, db)
        await sql(db, migration_sql("1", "items", ITEMS))
        await wait_versions(service, 1)
        replica = Replica()
        async with client(service) as c:
            await c.connect("c1")
            assert (await c.start_replication()).err is None
            assert (await subscribe(c, request(select("items")))).err is None
            nursery.start_soon(replica.follow, c)
            stop = trio.Event()
            committed = 0

            async def write() -> None:
                nonlocal committed
                t = 0
                while not stop.is_set():
                    try:
                        async with await connect(db) as conn:
                            while not stop.is_set():
                                values = ", ".join(f"({t * 3 + i}, 'r{t}')" for i in range(3))
                                await conn.execute(
                                    f"BEGIN; INSERT INTO items VALUES {values};"
                                    f" UPDATE items SET v = 'u' WHERE id = {t * 3}; COMMIT"
                                )
                                committed += 1
                                t += 1
                                await trio.sleep(0.01)
                    except (PgError, OSError):
                        t += 1  # that transaction may or may not have committed
                        await trio.sleep(0.2)

            async with trio.open_nursery() as writers:
                writers.start_soon(write)
                for _ in range(2):
                    await trio.sleep(1.0)
                    before = committed
                    await trio.to_thread.run_sync(_stop, own_pg, how)
                    await trio.to_thread.run_sync(own_pg.start)
                    with trio.fail_after(60):
                        while committed < before + 20:  # noqa: ASYNC110 (no event to wait on)
                            await trio.sleep(0.1)
                stop.set()
            await converge(replica, db)
            assert committed > 40
            nursery.cancel_scope.cancel()
