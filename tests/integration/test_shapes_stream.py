# ruff: noqa: F811 (the fixtures come from test_satellite_protocol)
"""A one-layer subscription's rows are sent while its COPY is read (issue 9): a read that fails
after part of them went out cuts the client off with an error rather than ending the data as
if it were whole, forgets the subscription, and the service keeps serving everyone else. The
rows sent are stored as they go (pieces of the graph's change log), and a restarted service
resumes the client from them."""

from __future__ import annotations

import pytest
import trio
from test_satellite_protocol import (  # noqa: F401 (fixtures)
    client,
    db,
    migration_sql,
    satellite,
    service,
    sql,
    start_service,
    wait_versions,
)
from test_shapes_protocol import (
    ack,
    big_table,
    ops,
    request,
    resumed_after_restart,
    select,
    started,
    subscribe,
    until,
)

from electric_trio.pg import connect
from electric_trio.satellite import _graph_store
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
    await big_table(service, db, ROWS, "repeat('x', 400)")

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


async def test_rows_stored_while_sent_resume_after_a_restart(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 20_000
    # A piece of log stored every few hundred rows: stores come between the parts of the
    # data being sent.
    monkeypatch.setattr(_graph_store, "PIECE_BYTES", 8 << 10)
    known: dict[int, m.SatRelation] = {}
    sub = request(select("items"))
    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, migration_sql("1", "items"))
        # Rows of 300 bytes: the sockets fill, and stores run while the service waits to send.
        await sql(
            db, f"INSERT INTO items SELECT i, repeat('x', 300) FROM generate_series(1, {rows}) i"
        )
        await wait_versions(service, 1)
        async with client(service) as c:
            await started(service, c)
            assert (await subscribe(c, sub)).err is None
            assert len(ops(await until(c, m.SatSubsDataEnd), known)) == rows
            await sql(db, f"INSERT INTO items VALUES ({rows + 1}, 'live')")
            frames = await until(c, m.SatOpLog)
            assert ops(frames, known) == [("insert", "items", str(rows + 1))]
            lsn = await ack(c, frames)
        first.cancel_scope.cancel()
    async with await connect(db) as conn:
        (base,) = await conn.fetch(
            "SELECT sent_rows_graph FROM electric.client_checkpoints WHERE client_id = 'c1'"
        )
        pieces = await conn.fetch(
            "SELECT seq, octet_length(changes) FROM electric.client_checkpoint_logs"
            " WHERE client_id = 'c1' ORDER BY seq"
        )
    # The base is the empty graph the client started from; the rows are in the pieces, stored
    # as they were sent, never as an export of the whole graph.
    assert bytes(base[0]).startswith(_graph_store.MAGIC)
    assert bytes(base[0]).endswith(_graph_store.EMPTY_EXPORT)
    assert len(bytes(base[0])) == len(_graph_store.MAGIC) + 8 + len(_graph_store.EMPTY_EXPORT)
    assert [seq for seq, _ in pieces] == list(range(len(pieces)))
    # Stored while the data went out: in several pieces (not one at the end, then the live
    # row's).
    sizes = [size for _, size in pieces]
    assert len(sizes) >= 3
    assert max(sizes) < 0.8 * sum(sizes)
    await sql(db, f"DELETE FROM items WHERE id IN (1, {rows // 2}, {rows}, {rows + 1})")
    async with resumed_after_restart(db, lsn, sub) as c:
        # The restored graph has every row: each delete reaches the client (one of a row
        # it lacked would not).
        got = ops(await until(c, m.SatOpLog), known)
        assert sorted(got) == sorted(
            ("delete", "items", str(i)) for i in (1, rows // 2, rows, rows + 1)
        )


async def test_a_client_leaving_as_its_data_ends_leaves_its_rows_stored(
    service: Service, db: str
) -> None:
    rows = 40_000
    await sql(db, migration_sql("1", "items"))
    await sql(db, f"INSERT INTO items SELECT i, 'x' FROM generate_series(1, {rows}) i")
    await wait_versions(service, 1)
    async with client(service) as c:
        await started(service, c)
        assert (await subscribe(c, request(select("items")))).err is None
        await until(c, m.SatSubsDataEnd)
    # It left at once: the store of its data (a piece of 500 KB) was under way as its session
    # ended, and the store as it left came after.
    async with await connect(db) as conn:
        with trio.fail_after(20):
            while True:
                pieces = await conn.fetch(
                    "SELECT seq, octet_length(changes) FROM electric.client_checkpoint_logs"
                    " WHERE client_id = 'c1' ORDER BY seq"
                )
                if sum(size for _, size in pieces) > rows * 10:
                    break
                await trio.sleep(0.1)
    # No piece missing before another (a load stops at a gap: the rows would be lost).
    assert [seq for seq, _ in pieces] == list(range(len(pieces)))
