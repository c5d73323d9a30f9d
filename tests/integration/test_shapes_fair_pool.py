# ruff: noqa: F811 (the fixtures come from test_satellite_protocol)
"""Clients that subscribe and then stop reading do not keep the other clients' data from them.

A shape's rows are read while they are sent, on one of a few Postgres connections the clients
share: a subscriber that does not take its rows gives its connection up once another client's
read waits for one (and is cut off with an error), one client holds at most its share of the
connections, and a client's subscriptions still waiting for their data are bounded (one more
is answered with an error at once). Real sockets, a raw client, real Postgres.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from msgspec.structs import replace
from test_satellite_protocol import (  # noqa: F401 (fixtures)
    SETTINGS,
    Client,
    client,
    db,
    migration_sql,
    sql,
    start_service,
    wait_versions,
)

from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSubsystem
from electric_trio.satellite.session import CLOSE_PROTOCOL_ERROR
from electric_trio.service import Service

#: Rows of ``big``: far more than the sockets' buffers and the read's channel hold (~8 MB).
BIG_ROWS = 60_000


def shape(table: str) -> m.SatSubsReq:
    return m.SatSubsReq(
        subscription_id=str(uuid.uuid4()),
        shape_requests=(
            m.SatShapeReq(
                request_id="r0",
                shape_definition=m.SatShapeDef(selects=(m.SatShapeDefSelect(tablename=table),)),
            ),
        ),
    )


async def subscribe(c: Client, table: str) -> m.SatSubsResp:
    body = m.rpc_response_body(await c.call("subscribe", shape(table)))
    assert isinstance(body, m.SatSubsResp)
    return body


@asynccontextmanager
async def small_window_client(service: Service, client_id: str) -> AsyncIterator[Client]:
    """A started client whose socket takes little at a time: once it stops reading, the
    service's writes to it block at once (not after megabytes of kernel buffers)."""
    async with client(service, rcvbuf=4096) as c:
        await c.connect(client_id)
        resp = await c.start_replication(schema_version="1")  # no migration to ack
        assert resp.err is None
        yield c


async def tables(service: Service, db: str) -> None:
    """``big`` (its rows inserted before it is electrified) and ``small`` (one row)."""
    await sql(
        db,
        "CREATE TABLE big (id int8 PRIMARY KEY, v text);"
        " INSERT INTO big SELECT i, repeat('x', 120) FROM generate_series(1, "
        f"{BIG_ROWS}) i;"
        " CREATE TABLE small (id int8 PRIMARY KEY, v text);"
        " INSERT INTO small VALUES (1, 'for the reading client')",
    )
    await sql(
        db,
        "BEGIN; CALL electric.migration_version('1'); CALL electric.electrify('big');"
        " CALL electric.electrify('small'); COMMIT",
    )
    await wait_versions(service, 1)


async def data_of(c: Client) -> list[m.FrameMessage]:
    """The frames up to the end of the next subscription's data."""
    frames: list[m.FrameMessage] = []
    while not frames or not isinstance(frames[-1], m.SatSubsDataEnd):
        frames.append(await c.recv())
    return frames


def two_data_connections(stall_timeout: float) -> SatelliteSubsystem:
    """A Satellite server with two connections for shape data, at most one per client, a
    subscription refused after waiting 5 s for one, and a read whose rows its client has not
    taken for ``stall_timeout`` seconds giving its connection up to a waiting one."""
    return SatelliteSubsystem(
        replace(
            SETTINGS,
            data_connections=2,
            data_connections_per_client=1,
            data_queue_timeout=5.0,
            data_stall_timeout=stall_timeout,
        )
    )


async def test_subscribers_that_stop_reading_leave_the_others_their_data(
    db: str, nursery: trio.Nursery
) -> None:
    # Two connections for shape data, one per client; a client that waited 5 s for one
    # would be refused ("Internal error while checking data availability").
    satellite = two_data_connections(stall_timeout=0.5)
    service = await start_service(nursery, db, satellite)
    await tables(service, db)
    async with (
        small_window_client(service, "stalled_1") as s1,
        small_window_client(service, "stalled_2") as s2,
        small_window_client(service, "reader_1") as c1,
        small_window_client(service, "reader_2") as c2,
    ):
        # Both stalled clients get their subscription answered, then read none of its data:
        # their reads hold both connections.
        for s in (s1, s2):
            assert (await subscribe(s, "big")).err is None
        assert satellite.server is not None
        pool = satellite.server.data_pool
        with trio.fail_after(30):
            while pool.stalled < 2:  # noqa: ASYNC110 (the sockets' state, no event to wait on)
                await trio.sleep(0.05)
        # Two other clients subscribe at once: each still gets its subscription and its data.
        received: dict[str, list[tuple[bytes, ...]]] = {}

        async def read(c: Client, name: str) -> None:
            resp = await subscribe(c, "small")
            assert resp.err is None, resp.err
            received[name] = [
                op.insert.row_data.values
                for f in await data_of(c)
                if isinstance(f, m.SatOpLog)
                for op in f.ops
                if op.insert is not None
            ]

        async with trio.open_nursery() as readers:
            readers.start_soon(read, c1, "reader_1")
            readers.start_soon(read, c2, "reader_2")
        row = (b"1", b"for the reading client")
        assert received == {"reader_1": [row], "reader_2": [row]}
        # The stalled clients, reading again, find out their data was cut short: an error,
        # the connection closed, no end of the subscription's data.
        for s in (s1, s2):
            got = await s.expect_close(CLOSE_PROTOCOL_ERROR, within=30)
            errors = [f for f in got if isinstance(f, m.SatErrorResp)]
            assert [e.error_type for e in errors] == [m.SatErrorRespErrorCode.REPLICATION_FAILED]
            assert not any(isinstance(f, m.SatSubsDataEnd) for f in got)


async def test_pending_subscriptions_are_bounded(db: str, nursery: trio.Nursery) -> None:
    # A window of one transaction: a client that acknowledges nothing stops its stream at the
    # second, and its subscriptions wait for their data behind it.
    satellite = SatelliteSubsystem(replace(SETTINGS, unacked_window=1, max_pending_subscriptions=2))
    service = await start_service(nursery, db, satellite)
    await sql(db, migration_sql("1", "small"))
    await wait_versions(service, 1)
    async with small_window_client(service, "no_acks") as c:
        assert (await subscribe(c, "small")).err is None
        await data_of(c)
        await sql(db, "INSERT INTO small VALUES (1, 'a')")
        await sql(db, "INSERT INTO small VALUES (2, 'b')")
        while not isinstance(await c.recv(), m.SatOpLog):  # the first; never acknowledged
            pass
        for _ in range(2):
            assert (await subscribe(c, "small")).err is None
        refused = await subscribe(c, "small")
        assert refused.err is not None
        assert refused.err.message == "Too many subscriptions waiting for their data"


async def test_one_client_holds_at_most_its_share(db: str, nursery: trio.Nursery) -> None:
    # Two connections, one per client, and no giving up: only the share keeps one for others.
    satellite = two_data_connections(stall_timeout=1000.0)
    service = await start_service(nursery, db, satellite)
    await tables(service, db)
    async with (
        small_window_client(service, "greedy") as greedy,
        small_window_client(service, "reader") as c,
    ):
        assert (await subscribe(greedy, "big")).err is None  # read and never taken
        await greedy.request("subscribe", shape("big"))  # waits for greedy's own share
        resp = await subscribe(c, "small")
        assert resp.err is None, resp.err
        assert any(isinstance(f, m.SatOpLog) for f in await data_of(c))
