# ruff: noqa: F811 (the db fixture comes from test_satellite_official_client)
"""Shapes with the official electric-sql@0.12.1 client (scenarios.md C 03.06, 03.08, 03.21).

The unmodified TypeScript client in Node syncs shapes from our service: rows written before the
subscription come with its data, later Postgres writes stream live through the where clause, an
include tree follows foreign keys both ways with move-in and move-out, and a client that
reconnects resumes its subscription without subscribing again.
"""

from __future__ import annotations

from typing import Any

import trio
from test_satellite_official_client import db, make_config, start, url_of, wait_versions  # noqa: F401
from test_satellite_protocol import sql

from _ports import free_port
from electric_trio.pg import connect
from electric_trio.service import Service
from official_client import OfficialClient, OfficialClientFactory, describe_schema

PROJECTS = (
    "BEGIN; CALL electric.migration_version('20240101000000');"
    " CREATE TABLE projects (id text PRIMARY KEY, content text NOT NULL);"
    " CREATE TABLE issues (id text PRIMARY KEY, project_id text REFERENCES projects (id),"
    " title text);"
    " CREATE TABLE comments (id text PRIMARY KEY, issue_id text REFERENCES issues (id),"
    " body text);"
    " CALL electric.electrify('projects'); CALL electric.electrify('issues');"
    " CALL electric.electrify('comments'); COMMIT;"
)


async def opened(
    service: Service, official_client: OfficialClientFactory, name: str, **config: Any
) -> OfficialClient:
    assert service.migrations is not None
    client = await official_client()
    await client.open(
        db=official_client.db_path(name),
        schema=describe_schema(service.migrations.schema),
        migrations_url=url_of(service),
        url=url_of(service),
        user_id="alice",
        **config,
    )
    await client.connect()
    return client


async def ids(client: OfficialClient, table: str) -> list[str]:
    return [r["id"] for r in await client.query(f"SELECT id FROM {table} ORDER BY id")]


async def test_rows_before_sync_come_with_the_shape_then_live_through_the_where_clause(
    db: str, nursery: trio.Nursery, official_client: OfficialClientFactory
) -> None:
    service = await start(nursery, make_config(db))
    await sql(
        db,
        "BEGIN; CALL electric.migration_version('20240101000000');"
        " CREATE TABLE items (id text PRIMARY KEY, content text NOT NULL);"
        " CALL electric.electrify('items'); COMMIT;",
    )
    await sql(db, "INSERT INTO items VALUES ('a', 'sentinel a'), ('b', 'other')")
    await wait_versions(service, 1)
    client = await opened(service, official_client, "w")
    assert await ids(client, "items") == []
    await client.sync("items", where="this.content LIKE 'sentinel%'")
    assert await ids(client, "items") == ["a"]
    await sql(db, "INSERT INTO items VALUES ('c', 'sentinel c'), ('d', 'not this')")
    await client.wait_rows(
        "SELECT id FROM items ORDER BY id", until=lambda rows: [r["id"] for r in rows] == ["a", "c"]
    )
    # A row that stops matching leaves the client.
    await sql(db, "UPDATE items SET content = 'moved away' WHERE id = 'a'")
    await client.wait_rows(
        "SELECT id FROM items ORDER BY id", until=lambda rows: [r["id"] for r in rows] == ["c"]
    )
    assert client.unhandled() == []


async def test_include_tree_with_move_in_and_move_out(
    db: str, nursery: trio.Nursery, official_client: OfficialClientFactory
) -> None:
    service = await start(nursery, make_config(db))
    await sql(db, PROJECTS)
    await sql(
        db,
        "INSERT INTO projects VALUES ('p1', 'Project 1'), ('p2', 'Project 2');"
        "INSERT INTO issues VALUES ('i1', 'p1', 'a'), ('i2', 'p2', 'b');"
        "INSERT INTO comments VALUES ('c1', 'i1', 'x'), ('c2', 'i2', 'y');",
    )
    await wait_versions(service, 1)
    client = await opened(service, official_client, "t")
    await client.sync(
        "projects",
        where={"content": "Project 1"},
        include={"issues": {"include": {"comments": True}}},
    )
    assert await ids(client, "projects") == ["p1"]
    assert await ids(client, "issues") == ["i1"]
    assert await ids(client, "comments") == ["c1"]
    # Move issue 2 into project 1: it comes in with its comment.
    await sql(db, "UPDATE issues SET project_id = 'p1' WHERE id = 'i2'")
    await client.wait_rows(
        "SELECT id FROM comments ORDER BY id",
        until=lambda rows: [r["id"] for r in rows] == ["c1", "c2"],
    )
    assert await ids(client, "issues") == ["i1", "i2"]
    # And out again: both leave.
    await sql(db, "UPDATE issues SET project_id = 'p2' WHERE id = 'i2'")
    await client.wait_rows(
        "SELECT id FROM comments ORDER BY id", until=lambda rows: [r["id"] for r in rows] == ["c1"]
    )
    assert await ids(client, "issues") == ["i1"]
    assert await ids(client, "projects") == ["p1"]
    assert client.unhandled() == []


async def test_a_reconnecting_client_resumes_its_subscription(
    db: str, nursery: trio.Nursery, official_client: OfficialClientFactory
) -> None:
    service = await start(nursery, make_config(db))
    await sql(
        db,
        "BEGIN; CALL electric.migration_version('20240101000000');"
        " CREATE TABLE items (id text PRIMARY KEY, content text NOT NULL);"
        " CALL electric.electrify('items'); COMMIT;",
    )
    await sql(db, "INSERT INTO items VALUES ('a', 'one')")
    await wait_versions(service, 1)
    client = await opened(service, official_client, "r")
    await client.sync("items")
    assert await ids(client, "items") == ["a"]
    await client.disconnect()
    await sql(db, "INSERT INTO items VALUES ('b', 'while away')")
    await client.connect()
    # No new sync call: the subscription resumes and the missed row arrives.
    await client.wait_rows(
        "SELECT id FROM items ORDER BY id", until=lambda rows: [r["id"] for r in rows] == ["a", "b"]
    )
    assert client.unhandled() == []


async def subscription_ids(url: str) -> set[str]:
    async with await connect(url) as conn:
        rows = await conn.fetch("SELECT subscription_id FROM electric.client_shape_subscriptions")
    return {r[0] for r in rows}


async def test_clients_catch_up_after_a_service_restart_without_resetting(
    db: str, official_client: OfficialClientFactory
) -> None:
    port = str(free_port())
    async with trio.open_nursery() as first:
        service = await start(first, make_config(db, HTTP_PORT=port))
        await sql(db, PROJECTS)
        await sql(
            db,
            "INSERT INTO projects VALUES ('p1', 'Project 1'), ('p2', 'Project 2');"
            "INSERT INTO issues VALUES ('i1', 'p1', 'a'), ('i2', 'p2', 'b');",
        )
        await wait_versions(service, 1)
        backoff = {"numOfAttempts": 100, "maxDelay": 300, "startingDelay": 100}
        one = await opened(service, official_client, "one", backoff=backoff)
        two = await opened(service, official_client, "two", backoff=backoff)
        await one.sync("issues", where={"title": "a"})  # pulls project p1 along
        await two.sync("projects", include={"issues": True})
        assert (await ids(one, "issues"), await ids(one, "projects")) == (["i1"], ["p1"])
        assert await ids(two, "issues") == ["i1", "i2"]
        before = await subscription_ids(db)
        assert len(before) == 2
        first.cancel_scope.cancel()
    # Written while the service is down.
    await sql(
        db,
        "INSERT INTO projects VALUES ('p3', 'Project 3');"
        "INSERT INTO issues VALUES ('i3', 'p3', 'a');"
        "UPDATE issues SET title = 'moved' WHERE id = 'i1'",
    )
    async with trio.open_nursery() as second:
        await start(second, make_config(db, HTTP_PORT=port))
        await one.wait_rows(
            "SELECT id FROM issues ORDER BY id",
            until=lambda rows: [r["id"] for r in rows] == ["i3"],
            within=30,
        )
        # Project 1 left with issue 1, the only row that held it there.
        assert await ids(one, "projects") == ["p3"]
        await two.wait_rows(
            "SELECT id FROM issues ORDER BY id",
            until=lambda rows: [r["id"] for r in rows] == ["i1", "i2", "i3"],
            within=30,
        )
        # Neither client was reset: no unhandled error, and live changes keep coming.
        await sql(db, "INSERT INTO issues VALUES ('i4', 'p1', 'a')")
        await one.wait_rows(
            "SELECT id FROM issues ORDER BY id",
            until=lambda rows: [r["id"] for r in rows] == ["i3", "i4"],
        )
        assert await ids(one, "projects") == ["p1", "p3"]
        # A reset client would have subscribed again under new ids.
        assert await subscription_ids(db) == before
        assert one.unhandled() == []
        assert two.unhandled() == []
        second.cancel_scope.cancel()
