# ruff: noqa: F811 (the fixtures come from test_satellite_protocol)
"""Shape subscriptions over the wire, with a raw client (satellite-protocol.md §7.6-7.8).

Real Postgres, the real service, frames decoded with our codec: subscription errors, initial data
spliced into the stream, where clauses on the live stream, include trees with move-in and
GONE, unsubscribe, the ownership filter, resume with a subscription id.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
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

from electric_trio.pg import connect
from electric_trio.satellite import messages as m
from electric_trio.service import Service

ReqCode = m.SatSubsErrorShapeReqErrorCode
ReplicationCode = m.SatInStartReplicationRespReplicationErrorCode

ENTRIES = "id uuid PRIMARY KEY, content varchar NOT NULL, content_b text"
PROJECTS = (
    "BEGIN; CALL electric.migration_version('1');"
    " CREATE TABLE projects (id text PRIMARY KEY, content text NOT NULL);"
    " CREATE TABLE issues (id text PRIMARY KEY, project_id text REFERENCES projects (id),"
    " title text);"
    " CREATE TABLE comments (id text PRIMARY KEY, issue_id text REFERENCES issues (id),"
    " body text);"
    " CALL electric.electrify('projects'); CALL electric.electrify('issues');"
    " CALL electric.electrify('comments'); COMMIT;"
)


def select(table: str, where: str = "", *include: m.SatShapeDefRelation) -> m.SatShapeDefSelect:
    return m.SatShapeDefSelect(tablename=table, where=where, include=include)


def include(fk: str, sel: m.SatShapeDefSelect) -> m.SatShapeDefRelation:
    return m.SatShapeDefRelation(foreign_key=(fk,), select=sel)


def request(*selects: m.SatShapeDefSelect, sub_id: str | None = None) -> m.SatSubsReq:
    return m.SatSubsReq(
        subscription_id=sub_id or str(uuid.uuid4()),
        shape_requests=tuple(
            m.SatShapeReq(request_id=f"r{i}", shape_definition=m.SatShapeDef(selects=(s,)))
            for i, s in enumerate(selects)
        ),
    )


async def subscribe(c: Client, req: m.SatSubsReq) -> m.SatSubsResp:
    body = m.rpc_response_body(await c.call("subscribe", req))
    assert isinstance(body, m.SatSubsResp)
    return body


async def until(c: Client, kind: type[m.FrameMessage]) -> list[m.FrameMessage]:
    """Frames up to and including the next one of ``kind``."""
    frames: list[m.FrameMessage] = []
    while True:
        frame = await c.recv()
        frames.append(frame)
        if isinstance(frame, kind):
            return frames


def relations(frames: list[m.FrameMessage]) -> dict[int, m.SatRelation]:
    return {f.relation_id: f for f in frames if isinstance(f, m.SatRelation)}


def ops(frames: list[m.FrameMessage], known: dict[int, m.SatRelation]) -> list[tuple[str, ...]]:
    """``(kind, table, first value)`` of every row op in ``frames``."""
    known.update(relations(frames))
    out: list[tuple[str, ...]] = []
    for f in frames:
        if not isinstance(f, m.SatOpLog):
            continue
        for op in f.ops:
            for kind in ("insert", "update", "delete", "gone"):
                body: Any = getattr(op, kind)
                if body is None:
                    continue
                row = (
                    body.pk_data
                    if kind == "gone"
                    else (body.old_row_data if kind == "delete" else body.row_data)
                )
                table = known[body.relation_id].table_name
                out.append((kind, table, row.values[0].decode()))
    return out


async def started(service: Service, c: Client, client_id: str = "c1", user: str = "alice") -> None:
    await c.connect(client_id, user)
    resp = await c.start_replication()
    assert resp.err is None


@contextlib.asynccontextmanager
async def resumed_after_restart(
    db: str, lsn: bytes, sub: m.SatSubsReq, client_id: str = "c1"
) -> AsyncIterator[Client]:
    """A service started afresh on ``db``, and ``client_id`` resumed on it from ``lsn`` with
    ``sub``'s subscription: the restarted service must know both."""
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, db)
        async with client(service) as c:
            await c.connect(client_id)
            resp = await c.start_replication(lsn=lsn, subscription_ids=(sub.subscription_id,))
            assert resp.err is None
            yield c
        nursery.cancel_scope.cancel()


async def big_table(service: Service, db: str, rows: int, value_sql: str) -> None:
    """Table ``big`` (id int8, v text) holding ``rows`` rows whose ``v`` is ``value_sql`` (of
    ``i``, the id), inserted before it is electrified (so not in the replication stream), and
    table ``small`` electrified after it, at migration versions 1 and 2."""
    await sql(
        db,
        "CREATE TABLE big (id int8 PRIMARY KEY, v text);"
        f" INSERT INTO big SELECT i, {value_sql} FROM generate_series(1, {rows}) i",
    )
    await sql(
        db, "BEGIN; CALL electric.migration_version('1'); CALL electric.electrify('big'); COMMIT"
    )
    await sql(db, migration_sql("2", "small"))
    await wait_versions(service, 2)


async def test_subscription_errors(service: Service, db: str) -> None:
    await sql(db, migration_sql("1", "entries", ENTRIES))
    await sql(db, "INSERT INTO entries VALUES ('00000000-0000-0000-0000-000000000001', 'a', NULL)")
    await wait_versions(service, 1)
    async with client(service) as c:
        await started(service, c)
        resp = await subscribe(c, request(select("nope")))
        assert resp.err is not None
        [err] = resp.err.shape_request_error
        assert (err.code, err.request_id) == (ReqCode.TABLE_NOT_FOUND, "r0")
        resp = await subscribe(c, request(select("entries", "this.missing = 1")))
        assert resp.err is not None
        assert resp.err.shape_request_error[0].code == ReqCode.INVALID_WHERE_CLAUSE
        assert resp.err.shape_request_error[0].message.startswith("At location")
        # Where clauses never reach Postgres as text: an attempt to end the statement fails
        # to parse, and a quote in a literal stays a literal.
        resp = await subscribe(
            c, request(select("entries", "this.content = 'x'; DROP TABLE entries"))
        )
        assert resp.err is not None
        assert resp.err.shape_request_error[0].code == ReqCode.INVALID_WHERE_CLAUSE
        quoted = await subscribe(
            c, request(select("entries", "this.content = 'x'' OR true OR ''y'"))
        )
        assert quoted.err is None
        frames = await until(c, m.SatSubsDataEnd)
        assert not [op for f in frames if isinstance(f, m.SatOpLog) for op in f.ops if op.insert]
        resp = await subscribe(c, request(select("entries", "this.content")))
        assert resp.err is not None
        assert resp.err.shape_request_error[0].code == ReqCode.INVALID_WHERE_CLAUSE
        resp = await subscribe(c, request(select("entries"), sub_id="NOT-A-UUID"))
        assert resp.err is not None
        assert resp.err.message == "Subscription ID should be a valid UUID"
        resp = await subscribe(c, m.SatSubsReq(subscription_id=str(uuid.uuid4())))
        assert resp.err is not None
        assert resp.err.message == "Subscription must include at least one shape request"
        bad_include = request(select("entries", "", include("nope_id", select("entries"))))
        resp = await subscribe(c, bad_include)
        assert resp.err is not None
        assert resp.err.shape_request_error[0].code == ReqCode.INVALID_INCLUDE_TREE
        # The connection keeps working after refused subscriptions.
        ok = await subscribe(c, request(select("entries")))
        assert ok.err is None


async def test_initial_data_then_live_changes_filtered_by_where(service: Service, db: str) -> None:
    await sql(db, migration_sql("1", "entries", ENTRIES))
    await sql(
        db,
        "INSERT INTO entries VALUES ('00000000-0000-0000-0000-000000000001', 'sentinel one', NULL),"
        " ('00000000-0000-0000-0000-000000000002', 'other', NULL)",
    )
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    async with client(service) as c:
        await started(service, c)
        sub = request(select("entries", "this.content ILIKE 'sentinel%'"))
        resp = await subscribe(c, sub)
        assert resp.err is None
        assert resp.subscription_id == sub.subscription_id
        frames = await until(c, m.SatSubsDataEnd)
        begin = next(f for f in frames if isinstance(f, m.SatSubsDataBegin))
        assert begin.subscription_id == sub.subscription_id
        assert begin.lsn.isdigit()
        assert ops(frames, known) == [("insert", "entries", "00000000-0000-0000-0000-000000000001")]
        inserts = [
            op.insert for f in frames if isinstance(f, m.SatOpLog) for op in f.ops if op.insert
        ]
        [tag] = inserts[0].tags
        assert re.fullmatch(r"postgres_1@\d{13}", tag), tag
        await sql(
            db,
            "INSERT INTO entries VALUES ('00000000-0000-0000-0000-000000000003', 'other 2', NULL),"
            " ('00000000-0000-0000-0000-000000000004', 'Sentinel 2', NULL)",
        )
        frames = await until(c, m.SatOpLog)
        assert ops(frames, known) == [("insert", "entries", "00000000-0000-0000-0000-000000000004")]
        # An update that leaves the where clause is a GONE; one that enters it an insert.
        await sql(
            db,
            "UPDATE entries SET content = 'no longer' WHERE content = 'Sentinel 2';"
            "UPDATE entries SET content = 'sentinel now' WHERE content = 'other'",
        )
        got = ops(await until(c, m.SatOpLog), known)  # one transaction
        assert got == [
            ("gone", "entries", "00000000-0000-0000-0000-000000000004"),
            ("insert", "entries", "00000000-0000-0000-0000-000000000002"),
        ]
        await sql(db, "DELETE FROM entries WHERE content = 'sentinel now'")
        assert ops(await until(c, m.SatOpLog), known) == [
            ("delete", "entries", "00000000-0000-0000-0000-000000000002")
        ]


async def test_include_tree_move_in_and_move_out(service: Service, db: str) -> None:
    await sql(db, PROJECTS)
    await sql(
        db,
        "INSERT INTO projects VALUES ('p1', 'Project 1'), ('p2', 'Project 2');"
        "INSERT INTO issues VALUES ('i1', 'p1', 'a'), ('i2', 'p2', 'b');"
        "INSERT INTO comments VALUES ('c1', 'i1', 'x'), ('c2', 'i2', 'y');",
    )
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    async with client(service) as c:
        await started(service, c)
        shape = select(
            "projects",
            "this.content = 'Project 1'",
            include("project_id", select("issues", "", include("issue_id", select("comments")))),
        )
        assert (await subscribe(c, request(shape))).err is None
        frames = await until(c, m.SatSubsDataEnd)
        assert sorted(ops(frames, known)) == [
            ("insert", "comments", "c1"),
            ("insert", "issues", "i1"),
            ("insert", "projects", "p1"),
        ]
        # Moving issue 2 into project 1: it comes as an insert, with project 1 already there,
        # and its comment follows as additional data.
        await sql(db, "UPDATE issues SET project_id = 'p1' WHERE id = 'i2'")
        frames = await until(c, m.SatOpLog)
        log = frames[-1]
        assert isinstance(log, m.SatOpLog)
        begin = log.ops[0].begin
        assert begin is not None
        assert begin.additional_data_ref != 0
        assert ops(frames, known) == [("insert", "issues", "i2")]
        frames = await until(c, m.SatOpLog)
        extra = frames[-1]
        assert isinstance(extra, m.SatOpLog)
        assert extra.ops[0].additional_begin is not None
        assert extra.ops[0].additional_begin.ref == begin.additional_data_ref
        assert ops(frames, known) == [("insert", "comments", "c2")]
        # Moving it out again: the issue and its comment are gone.
        await sql(db, "UPDATE issues SET project_id = 'p2' WHERE id = 'i2'")
        assert ops(await until(c, m.SatOpLog), known) == [
            ("gone", "issues", "i2"),
            ("gone", "comments", "c2"),
        ]
        # A new comment on an issue of project 1 streams live; one of project 2 does not.
        await sql(db, "INSERT INTO comments VALUES ('c3', 'i2', 'no'), ('c4', 'i1', 'yes')")
        assert ops(await until(c, m.SatOpLog), known) == [("insert", "comments", "c4")]


async def test_referenced_parents_come_with_their_children(service: Service, db: str) -> None:
    await sql(db, PROJECTS)
    await sql(
        db,
        "INSERT INTO projects VALUES ('p1', 'Project 1'), ('p2', 'Project 2');"
        "INSERT INTO issues VALUES ('i1', 'p1', 'mine'), ('i2', 'p2', 'other');",
    )
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    async with client(service) as c:
        await started(service, c)
        assert (await subscribe(c, request(select("issues", "this.title = 'mine'")))).err is None
        frames = await until(c, m.SatSubsDataEnd)
        assert sorted(ops(frames, known)) == [
            ("insert", "issues", "i1"),
            ("insert", "projects", "p1"),
        ]
        # A new matching issue of project 2 brings project 2 along (its referenced record).
        await sql(db, "INSERT INTO issues VALUES ('i3', 'p2', 'mine')")
        got = ops(await until(c, m.SatOpLog), known)
        assert sorted(got) == [("insert", "issues", "i3"), ("insert", "projects", "p2")]


async def test_unsubscribe_sends_gone_batch(service: Service, db: str) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, "INSERT INTO items VALUES (1, 'a'), (2, 'b')")
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    async with client(service) as c:
        await started(service, c)
        sub = request(select("items"))
        assert (await subscribe(c, sub)).err is None
        ops(await until(c, m.SatSubsDataEnd), known)
        reply = await c.call("unsubscribe", m.SatUnsubsReq(subscription_ids=(sub.subscription_id,)))
        assert reply.message == b""
        frames = await until(c, m.SatUnsubsDataEnd)
        begin = next(f for f in frames if isinstance(f, m.SatUnsubsDataBegin))
        assert begin.subscription_ids == (sub.subscription_id,)
        assert sorted(ops(frames, known)) == [("gone", "items", "1"), ("gone", "items", "2")]
        # Nothing of the table streams any more.
        await sql(db, "INSERT INTO items VALUES (3, 'c')")
        await c.nothing_for(0.5)


async def test_ownership_filter(service: Service, db: str) -> None:
    await sql(
        db,
        migration_sql("1", "owned", "id int8 PRIMARY KEY, electric_user_id text, v text"),
    )
    await sql(db, "INSERT INTO owned VALUES (1, 'alice', 'a'), (2, 'bob', 'b'), (3, NULL, 'c')")
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    async with client(service) as alice:
        await started(service, alice, "ca", "alice")
        assert (await subscribe(alice, request(select("owned")))).err is None
        frames = await until(alice, m.SatSubsDataEnd)
        assert sorted(ops(frames, known)) == [("insert", "owned", "1"), ("insert", "owned", "3")]
        await sql(db, "INSERT INTO owned VALUES (4, 'bob', 'x'), (5, 'alice', 'y')")
        assert ops(await until(alice, m.SatOpLog), known) == [("insert", "owned", "5")]


async def unsubscribe_and_drop(c: Client, sub: m.SatSubsReq) -> None:
    """Unsubscribes; the connection then ends before the client reads the GONE batch."""
    reply = await c.call("unsubscribe", m.SatUnsubsReq(subscription_ids=(sub.subscription_id,)))
    assert reply.message == b""


async def gone_batch(
    c: Client, sub: m.SatSubsReq, known: dict[int, m.SatRelation] | None = None
) -> list[tuple[str, ...]]:
    """The GONE batch that comes next for ``sub``: its row ops (``known``: the relations of
    this connection so far; none on a new one, where the batch must bring its own)."""
    frames = await until(c, m.SatUnsubsDataEnd)
    begin = next(f for f in frames if isinstance(f, m.SatUnsubsDataBegin))
    assert begin.subscription_ids == (sub.subscription_id,)
    return sorted(ops(frames, {} if known is None else known))


async def test_a_gone_batch_the_client_missed_comes_again_on_resume(
    service: Service, db: str
) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, "INSERT INTO items VALUES (1, 'a'), (2, 'b')")
    await wait_versions(service, 1)
    sub = request(select("items"))
    async with client(service) as c:
        await started(service, c)
        assert (await subscribe(c, sub)).err is None
        frames = await until(c, m.SatSubsDataEnd)
        lsn = next(f for f in frames if isinstance(f, m.SatSubsDataBegin)).lsn
        await unsubscribe_and_drop(c, sub)
    # The official client keeps listing a subscription until its GONE batch is applied: the
    # resume is accepted (not SUBSCRIPTION_NOT_FOUND, which resets the client) and the batch
    # comes again before the stream.
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=lsn, subscription_ids=(sub.subscription_id,))
        assert resp.err is None
        assert await gone_batch(c, sub) == [("gone", "items", "1"), ("gone", "items", "2")]
        await sql(db, "INSERT INTO items VALUES (3, 'c')")
        await c.nothing_for(0.5)
    # Resumed without it (the batch applied): nothing is sent, and the id is forgotten.
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=lsn)
        assert resp.err is None
        await c.nothing_for(0.5)
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=lsn, subscription_ids=(sub.subscription_id,))
        assert resp.err is not None
        assert resp.err.code == ReplicationCode.SUBSCRIPTION_NOT_FOUND


async def test_an_acknowledged_gone_batch_is_not_sent_again(service: Service, db: str) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, "INSERT INTO items VALUES (1, 'a')")
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    sub = request(select("items"))
    async with client(service) as c:
        await started(service, c)
        assert (await subscribe(c, sub)).err is None
        ops(await until(c, m.SatSubsDataEnd), known)
        await sql(db, "INSERT INTO items VALUES (2, 'b')")
        frames = await until(c, m.SatOpLog)
        assert ops(frames, known) == [("insert", "items", "2")]
        await unsubscribe_and_drop(c, sub)
        gone = await gone_batch(c, sub, known)
        assert gone == [("gone", "items", "1"), ("gone", "items", "2")]
        begin = frames[-1].ops[0].begin  # type: ignore[union-attr]
        assert begin is not None
        assert begin.transaction_id
        await c.send(
            m.SatOpLogAck(
                ack_timestamp=1,
                lsn=begin.lsn,
                transaction_id=begin.transaction_id,
                gone_subscription_ids=(sub.subscription_id,),
            )
        )
        await c.nothing_for(0.3)
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=begin.lsn, subscription_ids=(sub.subscription_id,))
        assert resp.err is not None
        assert resp.err.code == ReplicationCode.SUBSCRIPTION_NOT_FOUND


async def test_a_missed_gone_batch_survives_a_service_restart(db: str) -> None:
    sub = request(select("items"))
    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, migration_sql("1", "items"))
        await sql(db, "INSERT INTO items VALUES (1, 'a')")
        await wait_versions(service, 1)
        async with client(service) as c:
            await started(service, c)
            assert (await subscribe(c, sub)).err is None
            frames = await until(c, m.SatSubsDataEnd)
            lsn = next(f for f in frames if isinstance(f, m.SatSubsDataBegin)).lsn
            await unsubscribe_and_drop(c, sub)
        first.cancel_scope.cancel()
    async with resumed_after_restart(db, lsn, sub) as c:
        assert await gone_batch(c, sub) == [("gone", "items", "1")]


async def test_a_subscription_to_an_empty_shape_survives_a_service_restart(db: str) -> None:
    """Its state holds no row, yet it is stored: the restarted service knows the
    subscription (refusing it as unknown would make the client reset its data)."""
    sub = request(select("items"))
    known: dict[int, m.SatRelation] = {}
    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, migration_sql("1", "items"))
        await wait_versions(service, 1)
        async with client(service) as c:
            await started(service, c)
            assert (await subscribe(c, sub)).err is None
            frames = await until(c, m.SatSubsDataEnd)
            ops(frames, known)
            lsn = next(f for f in frames if isinstance(f, m.SatSubsDataBegin)).lsn
        first.cancel_scope.cancel()
    await sql(db, "INSERT INTO items VALUES (1, 'while the service was down')")
    async with resumed_after_restart(db, lsn, sub) as c:
        assert ops(await until(c, m.SatOpLog), known) == [("insert", "items", "1")]


async def test_resume_with_subscription_id(service: Service, db: str) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, "INSERT INTO items VALUES (1, 'a')")
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    sub = request(select("items"))
    async with client(service) as c:
        await started(service, c)
        assert (await subscribe(c, sub)).err is None
        frames = await until(c, m.SatSubsDataEnd)
        begin = next(f for f in frames if isinstance(f, m.SatSubsDataBegin))
        ops(frames, known)
        lsn = begin.lsn
    await sql(db, "INSERT INTO items VALUES (2, 'missed')")
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=lsn, subscription_ids=(sub.subscription_id,))
        assert resp.err is None
        assert ops(await until(c, m.SatOpLog), known) == [("insert", "items", "2")]
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=lsn, subscription_ids=(str(uuid.uuid4()),))
        assert resp.err is not None
        assert (
            resp.err.code == m.SatInStartReplicationRespReplicationErrorCode.SUBSCRIPTION_NOT_FOUND
        )


@pytest.mark.parametrize("n", [3])
async def test_other_clients_keep_streaming_while_one_subscribes(
    service: Service, db: str, n: int
) -> None:
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    async with client(service) as a, client(service) as b:
        await started(service, a, "a")
        await started(service, b, "b")
        assert (await subscribe(a, request(select("items")))).err is None
        ops(await until(a, m.SatSubsDataEnd), known)
        for i in range(n):
            await sql(db, f"INSERT INTO items VALUES ({i}, 'x')")
        # b's bad subscription does not disturb a.
        assert (await subscribe(b, request(select("items", "this.nope")))).err is not None
        got: list[tuple[str, ...]] = []
        with trio.fail_after(10):
            while len(got) < n:
                got += ops(await until(a, m.SatOpLog), known)
        assert got == [("insert", "items", str(i)) for i in range(n)]


async def ack(c: Client, frames: list[m.FrameMessage]) -> bytes:
    """Acknowledges the last transaction in ``frames``; returns its position."""
    last = [f for f in frames if isinstance(f, m.SatOpLog) and f.ops and f.ops[0].begin]
    begin = last[-1].ops[0].begin
    assert begin is not None
    await c.send(
        m.SatOpLogAck(ack_timestamp=1, lsn=begin.lsn, transaction_id=begin.transaction_id or 0)
    )
    return begin.lsn


async def test_a_client_resuming_from_an_earlier_position_gets_what_followed_again(
    service: Service, db: str
) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, "INSERT INTO items VALUES (1, 'a')")
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    sub = request(select("items"))
    async with client(service) as c:
        await started(service, c)
        assert (await subscribe(c, sub)).err is None
        frames = await until(c, m.SatSubsDataEnd)
        ops(frames, known)
        begin = next(f for f in frames if isinstance(f, m.SatSubsDataBegin))
        await sql(db, "INSERT INTO items VALUES (2, 'b')")
        await sql(db, "DELETE FROM items WHERE id = 1")
        ops(await until(c, m.SatOpLog), known)
        ops(await until(c, m.SatOpLog), known)
    # The client applied neither (say it crashed): it resumes from the subscription's position.
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=begin.lsn, subscription_ids=(sub.subscription_id,))
        assert resp.err is None
        got = ops(await until(c, m.SatOpLog), known) + ops(await until(c, m.SatOpLog), known)
        assert got == [("insert", "items", "2"), ("delete", "items", "1")]


async def test_resume_after_a_service_restart(db: str, nursery: trio.Nursery) -> None:
    known: dict[int, m.SatRelation] = {}
    sub = request(select("items", "this.v <> 'out'"))
    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, migration_sql("1", "items"))
        await sql(db, "INSERT INTO items VALUES (1, 'a')")
        await wait_versions(service, 1)
        async with client(service) as c:
            await started(service, c)
            assert (await subscribe(c, sub)).err is None
            ops(await until(c, m.SatSubsDataEnd), known)
            await sql(db, "INSERT INTO items VALUES (2, 'b')")
            frames = await until(c, m.SatOpLog)
            assert ops(frames, known) == [("insert", "items", "2")]
            lsn = await ack(c, frames)
        first.cancel_scope.cancel()
    await sql(db, "INSERT INTO items VALUES (3, 'while the service was down')")
    async with resumed_after_restart(db, lsn, sub) as c:
        assert ops(await until(c, m.SatOpLog), known) == [("insert", "items", "3")]
        # The restored graph knows rows 1 and 2: moving 1 out is a GONE.
        await sql(db, "UPDATE items SET v = 'out' WHERE id = 1")
        assert ops(await until(c, m.SatOpLog), known) == [("gone", "items", "1")]


async def test_a_start_replication_that_cannot_be_answered_in_time_closes(
    db: str, nursery: trio.Nursery
) -> None:
    """The official client waits 3 s for startReplication's answer and, past that, stays
    connected without replicating: a resume the service cannot prepare in time (here its stored
    client state is locked) is answered with INTERNAL and a close, and the client's next attempt
    resumes."""
    known: dict[int, m.SatRelation] = {}
    sub = request(select("items"))
    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, migration_sql("1", "items"))
        await wait_versions(service, 1)
        async with client(service) as c:
            await started(service, c)
            assert (await subscribe(c, sub)).err is None
            ops(await until(c, m.SatSubsDataEnd), known)
            await sql(db, "INSERT INTO items VALUES (1, 'a')")
            lsn = await ack(c, await until(c, m.SatOpLog))
        first.cancel_scope.cancel()
    service = await start_service(nursery, db)
    async with await connect(db) as locker:
        # The restarted service reads the client's stored shapes: held up behind this lock.
        await locker.execute(
            "BEGIN; LOCK TABLE electric.client_checkpoints IN ACCESS EXCLUSIVE MODE"
        )
        async with client(service) as c:
            await c.connect("c1")
            reply = await c.call(
                "startReplication",
                m.SatInStartReplicationReq(lsn=lsn, subscription_ids=(sub.subscription_id,)),
            )
            assert reply.error is not None
            assert reply.error.error_type == m.SatErrorRespErrorCode.INTERNAL
            await c.expect_close(1011)
        await locker.execute("ROLLBACK")
    await sql(db, "INSERT INTO items VALUES (2, 'b')")
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=lsn, subscription_ids=(sub.subscription_id,))
        assert resp.err is None
        assert ops(await until(c, m.SatOpLog), known) == [("insert", "items", "2")]


async def test_move_in_data_the_client_did_not_apply_is_sent_again_on_resume(
    service: Service, db: str
) -> None:
    await sql(db, PROJECTS)
    await sql(
        db,
        "INSERT INTO projects VALUES ('p1', 'Project 1'), ('p2', 'Project 2');"
        "INSERT INTO issues VALUES ('i1', 'p1', 'a'), ('i2', 'p2', 'b');"
        "INSERT INTO comments VALUES ('c2', 'i2', 'y');",
    )
    await wait_versions(service, 1)
    known: dict[int, m.SatRelation] = {}
    shape = select(
        "projects",
        "this.content = 'Project 1'",
        include("project_id", select("issues", "", include("issue_id", select("comments")))),
    )
    sub = request(shape)
    async with client(service) as c:
        await started(service, c)
        assert (await subscribe(c, sub)).err is None
        ops(await until(c, m.SatSubsDataEnd), known)
        await sql(db, "UPDATE issues SET project_id = 'p1' WHERE id = 'i2'")
        frames = await until(c, m.SatOpLog)
        ops(frames, known)
        log = frames[-1]
        assert isinstance(log, m.SatOpLog)
        begin = log.ops[0].begin
        assert begin is not None
        ref = begin.additional_data_ref
        assert ref != 0
        ops(await until(c, m.SatOpLog), known)  # the additional data, "lost" by this client
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(lsn=begin.lsn, subscription_ids=(sub.subscription_id,))
        assert resp.err is None
        frames = await until(c, m.SatOpLog)
        extra = frames[-1]
        assert isinstance(extra, m.SatOpLog)
        assert extra.ops[0].additional_begin == m.SatOpAdditionalBegin(ref=ref)
        assert ops(frames, known) == [("insert", "comments", "c2")]
    # Reported as applied, it is not sent again.
    async with client(service) as c:
        await c.connect("c1")
        resp = await c.start_replication(
            lsn=begin.lsn, subscription_ids=(sub.subscription_id,), observed_transaction_data=(ref,)
        )
        assert resp.err is None
        await c.nothing_for(0.5)


async def test_move_in_data_the_client_did_not_apply_survives_a_service_restart(db: str) -> None:
    known: dict[int, m.SatRelation] = {}
    shape = select(
        "projects",
        "this.content = 'Project 1'",
        include("project_id", select("issues", "", include("issue_id", select("comments")))),
    )
    sub = request(shape)
    async with trio.open_nursery() as first:
        service = await start_service(first, db)
        await sql(db, PROJECTS)
        await sql(
            db,
            "INSERT INTO projects VALUES ('p1', 'Project 1'), ('p2', 'Project 2');"
            "INSERT INTO issues VALUES ('i1', 'p1', 'a'), ('i2', 'p2', 'b');"
            "INSERT INTO comments VALUES ('c2', 'i2', 'y');",
        )
        await wait_versions(service, 1)
        async with client(service) as c:
            await started(service, c)
            assert (await subscribe(c, sub)).err is None
            ops(await until(c, m.SatSubsDataEnd), known)
            await sql(db, "UPDATE issues SET project_id = 'p1' WHERE id = 'i2'")
            frames = await until(c, m.SatOpLog)
            ops(frames, known)
            begin = frames[-1].ops[0].begin  # type: ignore[union-attr]
            assert begin is not None
            ref = begin.additional_data_ref
            assert ref
            ops(await until(c, m.SatOpLog), known)  # the additional data, "lost" by this client
        first.cancel_scope.cancel()
    async with trio.open_nursery() as second:
        service = await start_service(second, db)
        async with client(service) as c:
            await c.connect("c1")
            resp = await c.start_replication(lsn=begin.lsn, subscription_ids=(sub.subscription_id,))
            assert resp.err is None
            frames = await until(c, m.SatOpLog)
            extra = frames[-1]
            assert isinstance(extra, m.SatOpLog)
            assert extra.ops[0].additional_begin == m.SatOpAdditionalBegin(ref=ref)
            assert ops(frames, {}) == [("insert", "comments", "c2")]
        second.cancel_scope.cancel()


async def test_a_data_query_that_fails_gives_a_subscription_data_error(
    service: Service, db: str
) -> None:
    await sql(db, migration_sql("1", "items"))
    await sql(db, "INSERT INTO items VALUES (1, 'a')")
    await wait_versions(service, 1)
    async with client(service) as c:
        await started(service, c)
        sub = request(select("items", "this.id / 0 > 1"))  # division by zero on every row
        assert (await subscribe(c, sub)).err is None
        frames = await until(c, m.SatSubsDataError)
        error = frames[-1]
        assert isinstance(error, m.SatSubsDataError)
        assert error.subscription_id == sub.subscription_id
        assert error.message == "Could not retrieve initial data for subscription"
        # The connection keeps working.
        assert (await subscribe(c, request(select("items")))).err is None
        await until(c, m.SatSubsDataEnd)
