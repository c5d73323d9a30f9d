# ruff: noqa: F811 (the db fixture comes from test_client_writes)
"""The Python client's errors: each names what is wrong, and no local data is dropped."""

from __future__ import annotations

import re
import socket
import sqlite3
import time
from pathlib import Path

import jwt
import pytest
import trio
from test_client_writes import db  # noqa: F401
from test_py_client import TOKEN, config_for, projects_service, schema_of
from test_satellite_official_client import HS_KEY

from electric_trio.client import (
    AuthError,
    ClientClosedError,
    ClientError,
    ConnectionFailedError,
    CorruptDatabaseError,
    ElectricConfig,
    SchemaMismatchError,
    Status,
    SubscriptionError,
    electrify,
    open_electric,
)
from electric_trio.client.schema import Column, DbSchema, Migration, TableSchema
from electric_trio.client.triggers import triggers_for
from electric_trio.errors import ElectricError

NOTES = TableSchema("notes", (Column("id", "text", False), Column("body", "text")), ("id",))


def notes_schema(version: str, ddl: str) -> DbSchema:
    """A one-migration bundle as the generator writes it: the DDL, then the table's triggers."""
    return DbSchema(
        tables={"notes": NOTES}, migrations=(Migration(version, (ddl, *triggers_for(NOTES))),)
    )


async def test_a_refused_token(db: str, nursery: trio.Nursery, tmp_path: Path) -> None:
    service = await projects_service(
        nursery, db, AUTH_MODE="secure", AUTH_JWT_ALG="HS256", AUTH_JWT_KEY=HS_KEY
    )
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 600}
    forged = jwt.encode(claims, "another-key-of-at-least-32-bytes-long!!", algorithm="HS256")
    async with open_electric(tmp_path / "a.db", schema_of(service), config_for(service)) as client:
        with pytest.raises(AuthError, match="refused the token") as info:
            await client.connect(forged)
        assert isinstance(info.value, ElectricError)
        assert client.status == Status.ERROR
        # the right token is let in
        await client.connect(jwt.encode(claims, HS_KEY, algorithm="HS256"))
        assert client.status == Status.CONNECTED


async def test_a_bad_url(tmp_path: Path) -> None:
    schema = DbSchema(tables={})
    config = ElectricConfig(url="ftp://example.invalid")
    async with open_electric(tmp_path / "a.db", schema, config) as client:
        with pytest.raises(
            ConnectionFailedError, match=re.escape("bad service URL 'ftp://example.invalid'")
        ):
            await client.connect(TOKEN)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ElectricConfig(
        url=f"http://127.0.0.1:{port}", connect_attempts=2, backoff_start=0.05, backoff_max=0.1
    )
    async with open_electric(tmp_path / "b.db", schema, config) as client:
        with pytest.raises(ConnectionFailedError, match=f"127.0.0.1:{port} after 2 attempts"):
            await client.connect(TOKEN)
        assert client.status == Status.ERROR


async def test_local_migrations_that_no_longer_match_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    first = notes_schema("1", "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
    async with open_electric(path, first) as client:
        await client.conn.execute("INSERT INTO notes VALUES ('n1', 'keep me')")
    other = notes_schema("2", "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT, x INTEGER)")
    with pytest.raises(SchemaMismatchError, match=r"UNKNOWN_SCHEMA_VSN.*'1' at position 1.*'2'"):
        await electrify(path, other)
    # nothing was dropped: the row and its pending oplog entry are still there
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id, body FROM notes").fetchall() == [("n1", "keep me")]
    assert conn.execute("SELECT count(*) FROM _electric_oplog").fetchone() == (1,)
    # the matching schema (and one more migration) still opens it
    longer = DbSchema(
        tables=first.tables,
        migrations=(*first.migrations, Migration("3", ("ALTER TABLE notes ADD COLUMN y TEXT",))),
    )
    async with open_electric(path, longer) as client:
        assert await client.conn.query("SELECT id, y FROM notes") == [{"id": "n1", "y": None}]


async def test_a_schema_the_service_does_not_know(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    service = await projects_service(nursery, db)
    schema = notes_schema("20990101000000", "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
    async with open_electric(tmp_path / "a.db", schema, config_for(service)) as client:
        with pytest.raises(SchemaMismatchError, match=r"UNKNOWN_SCHEMA_VSN.*'20990101000000'"):
            await client.connect(TOKEN)
        assert client.status == Status.ERROR


async def test_a_corrupt_local_database(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database file at all" * 200)
    with pytest.raises(CorruptDatabaseError, match=r"garbage\.db"):
        await electrify(garbage, DbSchema(tables={}))
    assert garbage.read_bytes().startswith(b"this is not")  # left as it was

    partial = tmp_path / "partial.db"
    async with open_electric(partial, DbSchema(tables={})):
        pass
    conn = sqlite3.connect(partial)
    conn.execute("DROP TABLE _electric_shadow")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptDatabaseError, match="lacks the client's tables _electric_shadow"):
        await electrify(partial, DbSchema(tables={}))


async def test_a_refused_shape(db: str, nursery: trio.Nursery, tmp_path: Path) -> None:
    service = await projects_service(nursery, db)
    async with open_electric(
        tmp_path / "a.db", schema_of(service), config_for(service), token=TOKEN
    ) as client:
        handle = await client.sync("projects", where="this.nope = 1")
        with trio.fail_after(15), pytest.raises(SubscriptionError, match="INVALID_WHERE_CLAUSE"):
            await handle.synced()
        # the connection is still usable
        good = await client.sync("projects")
        with trio.fail_after(15):
            await good.synced()
        assert client.status == Status.CONNECTED


async def test_a_shape_requested_offline_fails_when_the_client_closes(tmp_path: Path) -> None:
    schema = DbSchema(tables={"notes": NOTES})
    async with open_electric(tmp_path / "a.db", schema) as client:
        handle = await client.sync("notes")  # accepted offline: requested once connected
    with trio.fail_after(5), pytest.raises(ClientClosedError, match="closed before the shape"):
        await handle.synced()


async def test_a_connection_given_by_the_app(tmp_path: Path) -> None:
    schema = notes_schema("1", "CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT)")
    strict = sqlite3.connect(tmp_path / "a.db")  # check_same_thread left on
    with pytest.raises(ClientError, match="check_same_thread=False"):
        await electrify(strict, schema)
    strict.close()
    conn = sqlite3.connect(tmp_path / "b.db", check_same_thread=False)
    async with open_electric(conn, schema) as client:
        with client.notifier.subscribe() as changes:
            await client.conn.execute("INSERT INTO notes VALUES ('n1', 'x')")
            assert changes.receive_nowait() == {"notes"}
            with pytest.raises(trio.WouldBlock):
                changes.receive_nowait()
    # the app's connection stays open and sees the row and its oplog entry
    assert conn.execute("SELECT id FROM notes").fetchall() == [("n1",)]
    assert conn.execute("SELECT optype FROM _electric_oplog").fetchall() == [("INSERT",)]
    conn.close()
