# ruff: noqa: F811 (the fixtures come from test_satellite_protocol)
"""A one-layer subscription's rows are sent while its COPY is read (issue 9): a read that fails
after part of them went out cuts the client off with an error rather than ending the data as
if it were whole, forgets the subscription, and the service keeps serving everyone else."""

from __future__ import annotations

import pytest
from test_satellite_protocol import (  # noqa: F401 (fixtures)
    client,
    db,
    migration_sql,
    satellite,
    service,
    sql,
    wait_versions,
)
from test_shapes_protocol import ops, request, select, started, subscribe

from electric_trio.pg import connect
from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSubsystem
from electric_trio.satellite.session import CLOSE_PROTOCOL_ERROR
from electric_trio.service import Service

ROWS = 100_000


async def test_a_read_that_fails_midway_cuts_the_client_off(
    service: Service,
    db: str,
    satellite: SatelliteSubsystem,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # About 40 MB of rows: far more than the sockets and the read's channel hold while the
    # client reads nothing, so the COPY is still running when its backend is killed.
    await sql(
        db,
        "CREATE TABLE big (id int8 PRIMARY KEY, v text);"
        f" INSERT INTO big SELECT i, repeat('x', 400) FROM generate_series(1, {ROWS}) i",
    )
    await sql(
        db, "BEGIN; CALL electric.migration_version('1'); CALL electric.electrify('big'); COMMIT"
    )
    await sql(db, migration_sql("2", "small"))
    await wait_versions(service, 2)

    async with client(service) as a, await connect(db) as admin:
        await started(service, a, "a")
        assert (await subscribe(a, request(select("big")))).err is None
        known: dict[int, m.SatRelation] = {}
        rows = 0
        while not rows:
            frame = await a.recv()
            assert not isinstance(frame, m.SatSubsDataEnd)
            rows += len(ops([frame], known))
        # The data is flowing and a stops reading: the COPY waits for the sending. Its backend
        # goes away.
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE query LIKE 'COPY (SELECT%big%' AND pid <> pg_backend_pid()"
        )
        assert killed == 1
        frames = await a.expect_close(CLOSE_PROTOCOL_ERROR, within=30)
        rows += len(ops(frames, known))
        assert not any(isinstance(f, m.SatSubsDataEnd) for f in frames)
        errors = [f for f in frames if isinstance(f, m.SatErrorResp)]
        assert [e.error_type for e in errors] == [m.SatErrorRespErrorCode.REPLICATION_FAILED]
        assert 0 < rows < ROWS

    # The subscription was forgotten (not stored, not in the graph); the service serves the
    # next client, whose data is whole.
    async with client(service) as b:
        await started(service, b, "b")
        assert (await subscribe(b, request(select("big", "this.id <= 1000")))).err is None
        known = {}
        rows = 0
        while not isinstance(frame := await b.recv(), m.SatSubsDataEnd):
            rows += len(ops([frame], known))
        assert rows == 1000
    assert satellite.server is not None
    kept = satellite.server.client_shapes["a"]
    assert len(kept.graph) == 0
    assert not kept.subscriptions
    assert "cannot read shape data client_id=a" in caplog.text
