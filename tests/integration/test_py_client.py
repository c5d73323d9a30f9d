# ruff: noqa: F811 (the db fixture comes from test_client_writes)
"""The Python local-first client against the real service and Postgres: migrations arrive and
are applied locally, a shape syncs, Postgres changes stream in, local writes reach Postgres (in
both write modes), and a Python and the official TypeScript client converge."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from test_client_writes import db  # noqa: F401 (drops the logical subscription too)
from test_satellite_official_client import make_config, start, url_of, wait_versions
from test_satellite_protocol import sql

from electric_trio.client import ElectricClient, ElectricConfig, ShapeHandle, Status, open_electric
from electric_trio.client.schema import Column, DbSchema, ForeignKey, Relation, TableSchema
from electric_trio.ddlx.schema import Schema
from electric_trio.pg import connect
from electric_trio.service import Service
from official_client import OfficialClientFactory, describe_schema, insecure_token

PROJECTS = (
    "BEGIN; CALL electric.migration_version('20240101000000');"
    " CREATE TABLE projects (id text PRIMARY KEY, name text NOT NULL, n int8, f float8,"
    " done bool);"
    " CREATE TABLE issues (id text PRIMARY KEY, project_id text REFERENCES projects (id),"
    " title text);"
    " CALL electric.electrify('projects'); CALL electric.electrify('issues'); COMMIT;"
)


def db_schema(schema: Schema) -> DbSchema:
    """The client schema of the service's electrified tables (what the generator writes),
    without bundled migrations: the client gets them from the service at first sync."""
    tables: dict[str, TableSchema] = {}
    for t in schema.tables:
        relations: list[Relation] = []
        for fk in t.foreign_keys:
            relations.append(
                Relation(fk.ref_table, fk.ref_table, fk.columns[0], fk.ref_columns[0], False, "r")
            )
        for other in schema.tables:
            for fk in other.foreign_keys:
                if fk.ref_table == t.name:
                    relations.append(
                        Relation(
                            other.name, other.name, fk.ref_columns[0], fk.columns[0], True, "r"
                        )
                    )
        tables[t.name] = TableSchema(
            name=t.name,
            columns=tuple(Column(c.name, c.type.name, not c.not_null) for c in t.columns),
            primary_key=t.primary_key,
            foreign_keys=tuple(
                ForeignKey(fk.columns, fk.ref_table, fk.ref_columns) for fk in t.foreign_keys
            ),
            relations=tuple(relations),
        )
    return DbSchema(tables=tables)


def config_for(service: Service, **more: Any) -> ElectricConfig:
    return ElectricConfig(url=url_of(service), backoff_start=0.1, backoff_max=0.5, **more)


async def projects_service(nursery: trio.Nursery, db: str, **env: str) -> Service:
    service = await start(nursery, make_config(db, **{"PG_PROXY_PORT": "0", **env}))
    await sql(db, PROJECTS)
    await wait_versions(service, 1)
    return service


def schema_of(service: Service) -> DbSchema:
    assert service.migrations is not None
    return db_schema(service.migrations.schema)


@asynccontextmanager
async def projects_client(
    nursery: trio.Nursery, db: str, path: Path, rows: str = ""
) -> AsyncIterator[ElectricClient]:
    """A service with the projects schema, ``rows`` inserted in Postgres, and a Python client
    on the SQLite file ``path``, connected as alice."""
    service = await projects_service(nursery, db)
    if rows:
        await sql(db, rows)
    async with open_electric(path, schema_of(service), config_for(service), token=TOKEN) as client:
        yield client


async def synced(client: ElectricClient, table: str, **shape: Any) -> ShapeHandle:
    """Subscribes and waits for the shape's initial data."""
    subscription = await client.sync(table, **shape)
    with trio.fail_after(15):
        await subscription.synced()
    return subscription


async def wait_rows(
    client: ElectricClient, query: str, expected: list[tuple[Any, ...]], within: float = 15
) -> None:
    rows: list[tuple[Any, ...]] = []
    with trio.move_on_after(within):
        while True:
            rows = [tuple(r.values()) for r in await client.conn.query(query)]
            if rows == expected:
                return
            await trio.sleep(0.05)
    assert rows == expected, f"after {within} s"


async def wait_pg(db: str, query: str, expected: list[tuple[Any, ...]], within: float = 15) -> None:
    async with await connect(db) as c:
        rows: list[tuple[Any, ...]] = []
        with trio.move_on_after(within):
            while True:
                rows = [tuple(r) for r in await c.fetch(query)]
                if rows == expected:
                    return
                await trio.sleep(0.05)
        assert rows == expected, f"after {within} s"


TOKEN = insecure_token(sub="alice")


async def test_migrations_arrive_and_a_shape_syncs_then_streams_live(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    service = await projects_service(nursery, db)
    await sql(
        db,
        "INSERT INTO projects VALUES ('p1', 'one', 9007199254740993, 1.5, true);"
        " INSERT INTO projects VALUES ('p2', 'two', NULL, NULL, false);"
        " INSERT INTO issues VALUES ('i1', 'p1', 'first')",
    )
    async with open_electric(tmp_path / "a.db", schema_of(service), config_for(service)) as client:
        assert client.status == Status.DISCONNECTED
        await client.connect(TOKEN)
        assert client.status == Status.CONNECTED
        shape = await client.sync("projects", where="this.name = 'one'", include={"issues": True})
        with trio.fail_after(15):
            await shape.synced()
        assert shape.tables == {"projects", "issues"}
        await wait_rows(
            client,
            "SELECT id, name, n, f, done FROM projects",
            [("p1", "one", 9007199254740993, 1.5, 1)],
        )
        await wait_rows(client, "SELECT id, project_id, title FROM issues", [("i1", "p1", "first")])
        versions = await client.conn.query("SELECT version FROM _electric_migrations ORDER BY id")
        assert [v["version"] for v in versions] == ["0", "20240101000000"]
        # a Postgres change arrives live, with a notification
        with client.notifier.subscribe() as changes:
            await sql(db, "INSERT INTO issues VALUES ('i2', 'p1', 'second')")
            with trio.fail_after(15):
                assert "issues" in await changes.__anext__()
        await wait_rows(
            client, "SELECT id, title FROM issues ORDER BY id", [("i1", "first"), ("i2", "second")]
        )
        await sql(db, "UPDATE issues SET title = 'edited' WHERE id = 'i1'")
        await sql(db, "DELETE FROM issues WHERE id = 'i2'")
        await wait_rows(client, "SELECT id, title FROM issues", [("i1", "edited")])


@pytest.mark.parametrize("mode", ["direct_writes", "logical_replication"])
async def test_local_writes_reach_postgres(
    db: str, nursery: trio.Nursery, tmp_path: Path, mode: str
) -> None:
    env = {"ELECTRIC_WRITE_TO_PG_MODE": mode}
    if mode == "logical_replication":
        env |= {"LOGICAL_PUBLISHER_HOST": "127.0.0.1", "LOGICAL_PUBLISHER_PORT": "0"}
    service = await projects_service(nursery, db, **env)
    async with open_electric(
        tmp_path / "a.db", schema_of(service), config_for(service), token=TOKEN
    ) as client:
        shape = await client.sync("projects", include={"issues": True})
        with trio.fail_after(15):
            await shape.synced()
        await client.conn.execute(
            "INSERT INTO projects (id, name, n, f, done) VALUES (?, ?, ?, ?, ?)",
            ["p1", "local", 2**40, 0.25, 1],
        )
        await client.conn.execute(
            "INSERT INTO issues (id, project_id, title) VALUES ('i1', 'p1', 'x')"
        )
        await wait_pg(
            db,
            "SELECT id, name, n, f, done FROM projects",
            [("p1", "local", 2**40, 0.25, True)],
        )
        await wait_pg(db, "SELECT id, project_id, title FROM issues", [("i1", "p1", "x")])
        await client.conn.execute("UPDATE projects SET name = 'renamed' WHERE id = 'p1'")
        await client.conn.execute("DELETE FROM issues WHERE id = 'i1'")
        await wait_pg(db, "SELECT id, name FROM projects", [("p1", "renamed")])
        await wait_pg(db, "SELECT id FROM issues", [])
        # our echoes were garbage-collected from the oplog
        await wait_rows(client, "SELECT rowid FROM _electric_oplog", [])
        # a Postgres update of the row we wrote still comes back
        await sql(db, "UPDATE projects SET name = 'from pg' WHERE id = 'p1'")
        await wait_rows(client, "SELECT id, name FROM projects", [("p1", "from pg")])


async def test_a_python_and_the_official_client_converge(
    db: str, nursery: trio.Nursery, tmp_path: Path, official_client: OfficialClientFactory
) -> None:
    service = await projects_service(nursery, db)
    await sql(db, "INSERT INTO projects VALUES ('p0', 'pg', NULL, NULL, true)")
    assert service.migrations is not None
    ts = await official_client()
    await ts.open(
        db=official_client.db_path("ts"),
        schema=describe_schema(service.migrations.schema),
        migrations_url=url_of(service),
        url=url_of(service),
        user_id="alice",
    )
    await ts.connect()
    await ts.sync("projects", include={"issues": True})
    async with open_electric(
        tmp_path / "py.db", schema_of(service), config_for(service), token=TOKEN
    ) as py:
        shape = await py.sync("projects", include={"issues": True})
        with trio.fail_after(15):
            await shape.synced()
        await py.conn.execute("INSERT INTO projects (id, name, done) VALUES ('py1', 'from py', 0)")
        await ts.call("create", table="projects", data={"id": "ts1", "name": "from ts"})
        await py.conn.execute("UPDATE projects SET name = 'py edit' WHERE id = 'p0'")
        await py.conn.execute(
            "INSERT INTO issues (id, project_id, title) VALUES ('i1', 'ts1', 'child of ts')"
        )
        expected_projects = [("p0", "py edit"), ("py1", "from py"), ("ts1", "from ts")]
        expected_issues = [("i1", "ts1", "child of ts")]
        await wait_pg(db, "SELECT id, name FROM projects ORDER BY id", expected_projects)
        await wait_pg(db, "SELECT id, project_id, title FROM issues", expected_issues)
        await wait_rows(py, "SELECT id, name FROM projects ORDER BY id", expected_projects)
        await wait_rows(py, "SELECT id, project_id, title FROM issues", expected_issues)
        rows = await ts.wait_rows(
            "SELECT id, name FROM projects ORDER BY id",
            until=lambda rows: [(r["id"], r["name"]) for r in rows] == expected_projects,
        )
        assert len(rows) == 3
        await ts.wait_rows(
            "SELECT id, project_id, title FROM issues",
            until=lambda rows: (
                [(r["id"], r["project_id"], r["title"]) for r in rows] == expected_issues
            ),
        )


def test_the_local_file_keeps_the_official_tables(tmp_path: Path) -> None:
    """Checked without a service: names and meta rows the official client expects."""

    async def main() -> None:
        schema = DbSchema(tables={})
        async with open_electric(tmp_path / "x.db", schema, ElectricConfig()) as client:
            assert client.client_id

    trio.run(main)
    conn = sqlite3.connect(tmp_path / "x.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "_electric_oplog",
        "_electric_meta",
        "_electric_migrations",
        "_electric_shadow",
        "_electric_trigger_settings",
    } <= tables
    keys = {r[0] for r in conn.execute("SELECT key FROM _electric_meta")}
    assert {"compensations", "lsn", "clientId", "subscriptions", "seenAdditionalData"} <= keys


async def test_the_official_client_opens_a_file_the_python_client_wrote(
    db: str, nursery: trio.Nursery, tmp_path: Path, official_client: OfficialClientFactory
) -> None:
    """Same table and meta names: the official client opens the file (its migrations check
    passes, the client id is the stored one), connects from the stored position and reads the
    rows; what it writes reaches Postgres."""
    service = await projects_service(nursery, db)
    await sql(db, "INSERT INTO projects (id, name) VALUES ('p0', 'pg')")
    path = tmp_path / "shared.db"
    async with open_electric(path, schema_of(service), config_for(service), token=TOKEN) as py:
        shape = await py.sync("projects")
        with trio.fail_after(15):
            await shape.synced()
        await py.conn.execute("INSERT INTO projects (id, name) VALUES ('py1', 'from py')")
        await wait_pg(db, "SELECT id FROM projects ORDER BY id", [("p0",), ("py1",)])
        await wait_rows(py, "SELECT rowid FROM _electric_oplog", [])
        client_id = py.client_id
    assert service.migrations is not None
    ts = await official_client()
    opened = await ts.open(
        db=path,
        schema=describe_schema(service.migrations.schema),
        migrations_url=url_of(service),
        url=url_of(service),
        user_id="alice",
    )
    assert opened["client_id"] == client_id
    assert (await ts.connect())["connected"]
    rows = await ts.query("SELECT id, name FROM projects ORDER BY id")
    assert [(r["id"], r["name"]) for r in rows] == [("p0", "pg"), ("py1", "from py")]
    # its own shape (it does not know ours) syncs and streams
    await ts.sync("projects")
    await sql(db, "INSERT INTO projects (id, name) VALUES ('p1', 'live')")
    await ts.call("create", table="projects", data={"id": "ts1", "name": "from ts"})
    expected = [("p0", "pg"), ("p1", "live"), ("py1", "from py"), ("ts1", "from ts")]
    await ts.wait_rows(
        "SELECT id, name FROM projects ORDER BY id",
        until=lambda rows: [(r["id"], r["name"]) for r in rows] == expected,
    )
    await wait_pg(db, "SELECT id, name FROM projects ORDER BY id", expected)
    assert ts.unhandled() == []
