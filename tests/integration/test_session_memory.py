"""Finished sessions leave the server's memory while clients come and go (issue 8: the soak's
service kept every finished session, each a cycle of objects with its WebSocket and buffers,
until Python's seldom-run full collection)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
from test_satellite_protocol import (
    SETTINGS,
    client,
    migration_sql,
    sql,
    start_service,
    wait_versions,
)

from _databases import fresh_database
from electric_trio.satellite.server import SatelliteServer, SatelliteSubsystem
from electric_trio.satellite.session import Session
from electric_trio.service import Service


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    async with fresh_database(pg_server, "et_sessmem") as url:
        yield url


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    """As in the service, where the full collection runs after hundreds of millions of
    allocations: here, never by itself."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def come_and_go(service: Service, server: SatelliteServer, client_id: str) -> Session:
    async with client(service) as c:
        await c.connect(client_id)
        await c.start_replication(schema_version="1")
        session = server.clients[client_id]
    with trio.fail_after(10):
        while client_id in server.clients:  # noqa: ASYNC110 (the server's own state)
            await trio.sleep(0.01)
    return session


@pytest.mark.usefixtures("no_automatic_collection")
async def test_finished_sessions_are_freed(db: str, nursery: trio.Nursery) -> None:
    satellite = SatelliteSubsystem(SETTINGS)
    service = await start_service(nursery, db, satellite)
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    server = satellite.server
    assert server is not None
    server.collector.minimum = 3
    server.collector.spacing = 0.0  # (spaced by their cost: tests/unit/test_session_collector)
    async with client(service) as staying:
        await staying.connect("staying")
        finished = [weakref.ref(await come_and_go(service, server, f"c{i}")) for i in range(6)]
        await trio.sleep(0.2)
        # Two collections, each after three sessions finished: none of the first five is left
        # (the sixth one was still this test's when the server collected), and the client
        # still connected keeps its session.
        assert server.collector.collections == 2
        assert [ref() for ref in finished[:5]] == [None] * 5
        assert set(server.clients) == {"staying"}
        await staying.start_replication(schema_version="1")
    # Each finished client's shapes stay for its resumption.
    assert {f"c{i}" for i in range(6)} <= set(server.client_shapes)
