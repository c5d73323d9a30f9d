# ruff: noqa: F811 (the db fixture comes from test_client_writes)
"""The Python client's shapes beyond the first sync: unsubscribing removes the rows (GONE batch),
a foreign-key change pulls a parent in (additional data), a long stream keeps flowing (acks),
and column types round-trip both ways."""

from __future__ import annotations

import datetime as dt
import sqlite3
from functools import partial
from pathlib import Path

import pytest
import trio
from test_client_writes import db  # noqa: F401
from test_py_client import (
    PROJECTS,
    TOKEN,
    config_for,
    projects_client,
    projects_service,
    schema_of,
    synced,
    wait_pg,
    wait_rows,
)
from test_satellite_official_client import make_config, wait_versions
from test_satellite_protocol import sql

from electric_trio.client import Status, open_electric
from electric_trio.pg import connect
from electric_trio.proxy import ProxySubsystem
from electric_trio.replication import ReplicationSubsystem
from electric_trio.satellite.server import SatelliteSubsystem
from electric_trio.service import Service, serve
from electric_trio.writes.subsystem import WritesSubsystem


async def test_unsubscribe_removes_the_shapes_rows(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with projects_client(
        nursery,
        db,
        tmp_path / "a.db",
        "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two')",
    ) as client:
        one = await client.sync("projects", where="this.name = 'one'")
        two = await client.sync("projects", where="this.name = 'two'")
        assert (await client.sync("projects", where="this.name = 'one'")).id == one.id
        with trio.fail_after(15):
            await one.synced()
            await two.synced()
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p1",), ("p2",)])
        await two.unsubscribe()
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p1",)])
        # the GONE rows' shadow entries went too; the remaining shape still streams
        shadow = await client.conn.query("SELECT primaryKey FROM _electric_shadow")
        assert [r["primaryKey"] for r in shadow] == ['{"id":"p1"}']
        await sql(db, "UPDATE projects SET n = 5 WHERE id = 'p1'")
        await wait_rows(client, "SELECT id, n FROM projects", [("p1", 5)])


async def test_a_foreign_key_change_brings_the_new_parent(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with projects_client(
        nursery,
        db,
        tmp_path / "a.db",
        "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two');"
        " INSERT INTO issues VALUES ('i1', 'p1', 'an issue')",
    ) as client:
        await synced(client, "issues", include={"projects": True})
        await wait_rows(client, "SELECT id FROM projects", [("p1",)])
        await sql(db, "UPDATE issues SET project_id = 'p2' WHERE id = 'i1'")
        await wait_rows(client, "SELECT id, project_id FROM issues", [("i1", "p2")])
        await wait_rows(
            client, "SELECT id, name FROM projects ORDER BY id", [("p1", "one"), ("p2", "two")]
        )


async def test_rows_move_into_and_out_of_a_where_clause(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """An update in Postgres that makes a row match the shape brings it in; one that makes it
    stop matching removes it, with its shadow entry."""
    async with projects_client(
        nursery,
        db,
        tmp_path / "a.db",
        "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two')",
    ) as client:
        await synced(client, "projects", where="this.name = 'one'")
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p1",)])
        await sql(db, "UPDATE projects SET name = 'one', n = 2 WHERE id = 'p2'")
        await wait_rows(
            client,
            "SELECT id, name, n FROM projects ORDER BY id",
            [("p1", "one", None), ("p2", "one", 2)],
        )
        await sql(db, "UPDATE projects SET name = 'gone' WHERE id = 'p1'")
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p2",)])
        shadow = await client.conn.query("SELECT primaryKey FROM _electric_shadow")
        assert [r["primaryKey"] for r in shadow] == ['{"id":"p2"}']
        # the row that left comes back, and a later change of it streams
        await sql(db, "UPDATE projects SET name = 'one' WHERE id = 'p1'")
        await sql(db, "UPDATE projects SET n = 7 WHERE id = 'p1'")
        await wait_rows(client, "SELECT id, n FROM projects ORDER BY id", [("p1", 7), ("p2", 2)])
        # nothing went to the oplog: these rows came from the service
        assert await client.conn.query("SELECT count(*) AS n FROM _electric_oplog") == [{"n": 0}]


async def test_rows_move_into_and_out_of_an_include_tree(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A child re-parented onto a parent in the shape comes in; one moved away leaves."""
    async with projects_client(
        nursery,
        db,
        tmp_path / "a.db",
        "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two');"
        " INSERT INTO issues VALUES ('i1', 'p1', 'in'), ('i2', 'p2', 'out')",
    ) as client:
        await synced(client, "projects", where="this.name = 'one'", include={"issues": True})
        await wait_rows(client, "SELECT id FROM issues ORDER BY id", [("i1",)])
        await sql(db, "UPDATE issues SET project_id = 'p1' WHERE id = 'i2'")
        await wait_rows(
            client,
            "SELECT id, project_id, title FROM issues ORDER BY id",
            [("i1", "p1", "in"), ("i2", "p1", "out")],
        )
        await sql(db, "UPDATE issues SET project_id = 'p2' WHERE id = 'i1'")
        await wait_rows(client, "SELECT id FROM issues ORDER BY id", [("i2",)])
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p1",)])


async def test_a_keyed_sync_replaces_the_keys_shape(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """``sync(..., key=K)`` with another shape replaces K's subscription once the new data is
    in: rows only the old shape held go, rows both hold stay, the old one no longer streams."""
    service = await projects_service(nursery, db)
    await sql(
        db, "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two'), ('p3', 'three')"
    )
    async with open_electric(
        tmp_path / "a.db", schema_of(service), config_for(service), token=TOKEN
    ) as client:
        first = await synced(client, "projects", where="this.name != 'three'", key="mine")
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p1",), ("p2",)])
        same = await client.sync("projects", where="this.name != 'three'", key="mine")
        assert same.id == first.id
        second = await client.sync("projects", where="this.name != 'one'", key="mine")
        assert second.id != first.id
        assert second.key == "mine"
        with trio.fail_after(15):
            await second.synced()
        rows = await client.conn.query("SELECT id FROM projects ORDER BY id")
        assert [r["id"] for r in rows] == ["p2", "p3"]
        # only the new shape streams: p1's change does not come, p3's does
        await sql(
            db,
            "UPDATE projects SET n = 1 WHERE id = 'p1'; UPDATE projects SET n = 3 WHERE id = 'p3'",
        )
        await wait_rows(client, "SELECT id, n FROM projects ORDER BY id", [("p2", None), ("p3", 3)])
        # the key now names the new shape
        assert (await client.sync("projects", where="this.name != 'one'", key="mine")).id == (
            second.id
        )


@pytest.mark.slow  # (the client's stream: the PostgreSQL 15 pass leaves it out)
async def test_a_long_stream_keeps_flowing(db: str, nursery: trio.Nursery, tmp_path: Path) -> None:
    """More transactions than the service's unacknowledged window (30): without our acks the
    service would stop sending."""
    async with projects_client(nursery, db, tmp_path / "a.db") as client:
        await synced(client, "projects")
        statuses = client.status_changes()
        assert await statuses.__anext__() == Status.CONNECTED
        for i in range(45):
            await sql(db, f"INSERT INTO projects (id, name) VALUES ('p{i:02d}', 'n')")
        await wait_rows(client, "SELECT count(*) FROM projects", [(45,)], within=25)
        with trio.move_on_after(0.2):
            changed = await statuses.__anext__()
            raise AssertionError(f"the connection changed to {changed}")
        await statuses.aclose()


TYPES = (
    "BEGIN; CALL electric.migration_version('20240201000000');"
    " CREATE TABLE typed (id uuid PRIMARY KEY, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8,"
    " b bool, t text, d date, tm time, ts timestamp, tz timestamptz, j jsonb, by bytea);"
    " CALL electric.electrify('typed'); COMMIT;"
)
COLUMNS = "id, i2, i4, i8, f4, f8, b, t, d, tm, ts, tz, j, by"
UUID_PG = "8d5ea7fb-4a9e-4ad0-9b25-6e6f2a0e4c01"
UUID_PY = "8d5ea7fb-4a9e-4ad0-9b25-6e6f2a0e4c02"


async def test_column_types_round_trip(db: str, nursery: trio.Nursery, tmp_path: Path) -> None:
    service = await projects_service(nursery, db)
    await sql(db, TYPES)
    await wait_versions(service, 2)
    await sql(
        db,
        f"INSERT INTO typed ({COLUMNS}) VALUES ('{UUID_PG}', -3, 70000, 9007199254740993,"
        " 1.5, 'Infinity', true, 'héllo', '2024-02-29', '12:34:56.789',"
        " '2024-01-02 03:04:05.678', '2024-01-02 03:04:05.678+00', '{\"k\": [1, null]}',"
        " '\\x00ff10')",
    )
    async with open_electric(
        tmp_path / "a.db", schema_of(service), config_for(service), token=TOKEN
    ) as client:
        await synced(client, "typed")
        rows = await client.conn.query(f"SELECT {COLUMNS} FROM typed")
        assert rows == [
            {
                "id": UUID_PG,
                "i2": -3,
                "i4": 70000,
                "i8": 9007199254740993,
                "f4": 1.5,
                "f8": float("inf"),
                "b": 1,
                "t": "héllo",
                "d": "2024-02-29",
                "tm": "12:34:56.789",
                "ts": "2024-01-02 03:04:05.678",
                "tz": "2024-01-02 03:04:05.678Z",
                "j": '{"k": [1, null]}',
                "by": b"\x00\xff\x10",
            }
        ]
        await client.conn.execute(
            f"INSERT INTO typed ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                UUID_PY,
                7,
                -70000,
                -(2**62),
                0.25,
                -2.5e300,
                0,
                "",
                "1999-12-31",
                "23:59:59.999",
                "1999-12-31 23:59:59.999",
                "1999-12-31 23:59:59.999Z",
                '{"a":"b"}',
                b"",
            ],
        )
        await wait_pg(
            db,
            f"SELECT id::text, {COLUMNS.removeprefix('id, ')} FROM typed WHERE id = '{UUID_PY}'",
            [
                (
                    UUID_PY,
                    7,
                    -70000,
                    -(2**62),
                    0.25,
                    -2.5e300,
                    False,
                    "",
                    dt.date(1999, 12, 31),
                    dt.time(23, 59, 59, 999000),
                    dt.datetime(1999, 12, 31, 23, 59, 59, 999000),
                    dt.datetime(1999, 12, 31, 23, 59, 59, 999000, tzinfo=dt.UTC),
                    {"a": "b"},
                    b"",
                )
            ],
        )


async def test_a_live_migration_alters_the_local_table_and_its_triggers(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    proxy = ProxySubsystem(port=0)
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(db),
            subsystems=[ReplicationSubsystem(), SatelliteSubsystem(), WritesSubsystem(), proxy],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    await sql(db, PROJECTS)
    await wait_versions(service, 1)
    async with open_electric(
        tmp_path / "a.db", schema_of(service), config_for(service), token=TOKEN
    ) as client:
        await synced(client, "projects")
        # the migration goes through the migrations proxy, as an app's migration tool would
        name = db.rsplit("/", 1)[1].split("?")[0]
        async with await connect(f"postgresql://postgres:proxy@127.0.0.1:{proxy.port}/{name}") as c:
            await c.execute("ALTER TABLE projects ADD COLUMN color text")
        await wait_rows(client, "SELECT count(*) FROM _electric_migrations", [(3,)])
        columns = await client.conn.query("SELECT name FROM pragma_table_info('projects')")
        assert "color" in [c["name"] for c in columns]
        # the regenerated triggers carry the new column to Postgres
        await client.conn.execute(
            "INSERT INTO projects (id, name, color) VALUES ('p1', 'one', 'teal')"
        )
        await wait_pg(db, "SELECT id, color FROM projects", [("p1", "teal")])
        await sql(db, "UPDATE projects SET color = 'red' WHERE id = 'p1'")
        await wait_rows(client, "SELECT id, color FROM projects", [("p1", "red")])


async def test_shapes_requested_offline_and_resumed_after_a_restart(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    service = await projects_service(nursery, db)
    await sql(db, "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two')")
    path = tmp_path / "a.db"
    async with open_electric(path, schema_of(service), config_for(service)) as client:
        shape = await client.sync("projects")  # before connecting: sent once connected
        await client.connect(TOKEN)
        with trio.fail_after(15):
            await shape.synced()
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p1",), ("p2",)])
        first_id = shape.id
    await sql(db, "DELETE FROM projects WHERE id = 'p2'; UPDATE projects SET n = 1")
    # a new process on the same file: the subscription is still there and the stream resumes
    # from the stored position (an initial sync would not delete p2)
    async with open_electric(path, schema_of(service), config_for(service), token=TOKEN) as client:
        again = await client.sync("projects")
        assert again.id == first_id
        with trio.fail_after(5):
            await again.synced()
        await wait_rows(client, "SELECT id, n FROM projects", [("p1", 1)])


async def test_a_shape_larger_than_one_insert_batch(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """8,000 rows of 5 columns: more parameters than one SQLite statement takes (32,766)."""
    async with projects_client(
        nursery,
        db,
        tmp_path / "a.db",
        "INSERT INTO projects (id, name, n, f, done)"
        " SELECT 'p' || i, 'name ' || i, i, i / 2.0, i % 2 = 0 FROM generate_series(1, 8000) i",
    ) as client:
        shape = await client.sync("projects")
        with trio.fail_after(25):
            await shape.synced()
        rows = await client.conn.query(
            "SELECT count(*) AS c, sum(n) AS s, sum(done) AS d FROM projects"
        )
        assert rows == [{"c": 8000, "s": 8000 * 8001 // 2, "d": 4000}]
        shadow = await client.conn.query("SELECT count(*) AS c FROM _electric_shadow")
        assert shadow == [{"c": 8000}]
        assert await client.conn.query("SELECT count(*) AS c FROM _electric_oplog") == [{"c": 0}]


async def test_a_new_shape_on_a_resumed_connection(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A shape subscribed on a connection that resumed without an earlier shape: its rows come
    with their ``SatRelation`` (the service's discarding of the dropped shape's GONE data had
    marked the relation as sent; the official client then reset its state)."""
    service = await projects_service(nursery, db)
    await sql(db, "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two')")
    path = tmp_path / "a.db"
    async with open_electric(path, schema_of(service), config_for(service), token=TOKEN) as client:
        await synced(client, "projects", where="this.name = 'one'")
        await client.conn.execute("INSERT INTO projects (id, name) VALUES ('py1', 'one')")
        await wait_pg(db, "SELECT count(*) FROM projects", [(3,)])
        await wait_rows(client, "SELECT rowid FROM _electric_oplog", [])
    raw = sqlite3.connect(path)  # forget the shape (as a client that never had it would)
    raw.execute("UPDATE _electric_meta SET value = '' WHERE key = 'subscriptions'")
    raw.commit()
    raw.close()
    async with open_electric(path, schema_of(service), config_for(service), token=TOKEN) as client:
        statuses = client.status_changes()
        assert await statuses.__anext__() == Status.CONNECTED
        await synced(client, "projects", where="this.name = 'two'")
        await wait_rows(client, "SELECT id FROM projects ORDER BY id", [("p1",), ("p2",), ("py1",)])
        # the rows came on this connection (with their relation): it was not dropped
        with trio.move_on_after(0.2):
            changed = await statuses.__anext__()
            raise AssertionError(f"the connection changed to {changed}")
        await statuses.aclose()


async def test_unsubscribing_offline_removes_the_rows_once_connected(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    service = await projects_service(nursery, db)
    await sql(db, "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('p2', 'two')")
    path = tmp_path / "a.db"
    async with open_electric(path, schema_of(service), config_for(service), token=TOKEN) as client:
        keep = await client.sync("projects", where="this.name = 'one'")
        drop = await client.sync("projects", where="this.name = 'two'")
        with trio.fail_after(15):
            await keep.synced()
            await drop.synced()
    async with open_electric(path, schema_of(service), config_for(service)) as client:
        offline = await client.sync("projects", where="this.name = 'two'")  # the stored one
        assert offline.id == drop.id
        await offline.unsubscribe()
        assert await client.conn.query("SELECT id FROM projects ORDER BY id") == [
            {"id": "p1"},
            {"id": "p2"},
        ]
        await client.connect(TOKEN)
        await wait_rows(client, "SELECT id FROM projects", [("p1",)])
        await sql(db, "UPDATE projects SET n = 3")
        await wait_rows(client, "SELECT id, n FROM projects", [("p1", 3)])
