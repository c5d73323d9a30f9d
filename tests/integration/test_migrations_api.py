"""``GET /api/migrations`` of the service in process, after migrations made in Postgres."""

from __future__ import annotations

import base64
import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import h11
import pytest
import trio

from _databases import fresh_database
from electric_trio.config import Config
from electric_trio.pg import connect
from electric_trio.satellite.messages import SatOpMigrate, SatOpMigrateType, decode_message
from electric_trio.service import Service, serve
from official_client import OfficialClientFactory, describe_schema

if TYPE_CHECKING:
    from conftest import PgServer

V1 = "20230504114018"
V2 = "20230608134524"
V3 = "20230701000000"


@pytest.fixture
async def db(pg_server: PgServer) -> AsyncIterator[str]:
    """A fresh database; its replication slots and itself are dropped afterwards."""
    async with fresh_database(pg_server, "et_migapi") as url:
        yield url


def make_config(url: str) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
        }
    )


@asynccontextmanager
async def running_service(url: str, *, ready: bool = True) -> AsyncIterator[Service]:
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(
            partial(serve, make_config(url), handle_signals=False)
        )
        if ready:
            with trio.fail_after(60):
                await service.wait_ready()
        try:
            yield service
        finally:
            nursery.cancel_scope.cancel()


async def get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    """``GET target``: status, headers (lower-case names) and body."""
    conn = h11.Connection(h11.CLIENT)
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        request = h11.Request(
            method="GET", target=target, headers=[("host", "test"), ("connection", "close")]
        )
        await stream.send_all(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body


def unzip(body: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name).decode() for name in zf.namelist()}


def ops_of(metadata: str) -> list[SatOpMigrate]:
    parsed = json.loads(metadata)
    assert list(parsed) == ["format", "ops", "protocol_version", "version"]
    assert parsed["format"] == "SatOpMigrate"
    assert parsed["protocol_version"] == "Electric.Satellite"
    return [decode_message(SatOpMigrate, base64.b64decode(op)) for op in parsed["ops"]]


async def migrate(url: str, script: str) -> None:
    async with await connect(url) as conn:
        await conn.execute(script)


async def make_migrations(url: str) -> None:
    """Two migrations made directly on Postgres (capture path B): a table with an index, then a
    table referencing it."""
    await migrate(
        url,
        f"BEGIN; CALL electric.migration_version('{V1}');"
        " CREATE TABLE items (id text PRIMARY KEY, title text NOT NULL, n int4);"
        " CALL electric.electrify('items');"
        " CREATE INDEX items_title_idx ON items (title);"
        " CALL electric.capture_ddl('CREATE INDEX items_title_idx ON items (title)');"
        " COMMIT",
    )
    await migrate(
        url,
        f"BEGIN; CALL electric.migration_version('{V2}');"
        " CREATE TABLE tags (id uuid PRIMARY KEY, item_id text REFERENCES items (id));"
        " CALL electric.electrify('tags');"
        " COMMIT",
    )


async def wait_versions(service: Service, count: int) -> None:
    with trio.fail_after(30):
        while service.migrations is None or len(service.migrations.migrations) < count:  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_not_ready_then_none_then_both_dialects(db: str) -> None:
    async with running_service(db, ready=False) as service:
        port = service.http_port
        # before the replication subsystem has loaded the history: /api/status's answer
        status, headers, body = await get(port, "/api/migrations?dialect=sqlite")
        assert (status, body) == (503, b"Initializing connection to Posgres...")
        assert (await get(port, "/api/migrations?dialect=x"))[0] == 403
        with trio.fail_after(60):
            await service.wait_ready()

        # no migration yet: 204, empty body, no content type
        for target in ("/api/migrations?dialect=sqlite", "/api/migrations?dialect=postgresql"):
            status, headers, body = await get(port, target)
            assert (status, body) == (204, b"")
            assert "content-type" not in headers

        await make_migrations(db)
        await wait_versions(service, 2)

        status, headers, body = await get(port, "/api/migrations?dialect=sqlite")
        assert status == 200
        assert headers["content-type"] == "application/zip"
        files = unzip(body)
        assert list(files) == [
            f"{V1}/migration.sql",
            f"{V1}/metadata.json",
            f"{V2}/migration.sql",
            f"{V2}/metadata.json",
        ]
        sql1 = files[f"{V1}/migration.sql"]
        assert sql1.startswith('CREATE TABLE "items" (\n  "id" TEXT NOT NULL,\n')
        assert sql1.endswith(');\n\nCREATE INDEX "items_title_idx" ON "items" ("title" ASC);')
        assert files[f"{V2}/migration.sql"] == (
            'CREATE TABLE "tags" (\n'
            '  "id" TEXT NOT NULL,\n'
            '  "item_id" TEXT,\n'
            '  CONSTRAINT "tags_item_id_fkey" FOREIGN KEY ("item_id") REFERENCES "items" ("id"),\n'
            '  CONSTRAINT "tags_pkey" PRIMARY KEY ("id")\n'
            ");"
        )
        ops = ops_of(files[f"{V1}/metadata.json"])
        assert [op.version for op in ops] == [V1, V1]
        assert [[s.type for s in op.stmts] for op in ops] == [
            [SatOpMigrateType.CREATE_TABLE],
            [SatOpMigrateType.CREATE_INDEX],
        ]
        assert ops[0].table is not None
        assert ops[0].table.name == "items"
        assert [(c.name, c.sqlite_type) for c in ops[0].table.columns] == [
            ("id", "TEXT"),
            ("title", "TEXT"),
            ("n", "INTEGER"),
        ]
        assert ops[0].table.pks == ("id",)
        assert ops[1].table is None
        assert json.loads(files[f"{V1}/metadata.json"])["version"] == V1
        (tags_op,) = ops_of(files[f"{V2}/metadata.json"])
        assert tags_op.table is not None
        assert [(fk.fk_cols, fk.pk_table, fk.pk_cols) for fk in tags_op.table.fks] == [
            (("item_id",), "items", ("id",))
        ]
        assert [c.pg_type.name for c in tags_op.table.columns if c.pg_type] == ["uuid", "text"]

        status, headers, body = await get(port, "/api/migrations?dialect=postgresql")
        assert (status, headers["content-type"]) == (200, "application/zip")
        pg = unzip(body)
        assert list(pg) == list(files)
        pg1 = pg[f"{V1}/migration.sql"].split("\n\n")
        assert len(pg1) == 2
        assert pg1[0].startswith("CREATE TABLE ")
        assert pg1[0].endswith(";")
        assert pg1[1] == "CREATE INDEX items_title_idx ON items (title);"
        assert pg[f"{V2}/migration.sql"].startswith("CREATE TABLE ")
        pg_ops = ops_of(pg[f"{V1}/metadata.json"])
        assert [s.sql for op in pg_ops for s in op.stmts] == [
            part.removesuffix(";") for part in pg1
        ]
        assert pg_ops[0].table == ops[0].table  # the same description in both dialects


async def test_version_filter_and_bad_requests(db: str) -> None:
    async with running_service(db) as service:
        port = service.http_port
        await make_migrations(db)
        await wait_versions(service, 2)
        base = "/api/migrations?dialect=sqlite"
        _, _, everything = await get(port, base)
        assert (await get(port, base + "&version="))[2] == everything
        # a trailing slash is the same route
        assert (await get(port, "/api/migrations/?dialect=sqlite"))[2] == everything

        status, _, body = await get(port, f"{base}&version={V1}")
        assert status == 200
        assert list(unzip(body)) == [f"{V2}/migration.sql", f"{V2}/metadata.json"]
        status, _, body = await get(port, f"/api/migrations?version={V1}&dialect=postgresql")
        assert status == 200
        assert list(unzip(body)) == [f"{V2}/migration.sql", f"{V2}/metadata.json"]

        for version in (V2, "20990101000000", "nope"):
            status, headers, body = await get(port, f"{base}&version={version}")
            assert (status, body) == (204, b""), version

        # a migration made while the service runs shows up after the latest known one
        await migrate(
            db,
            f"BEGIN; CALL electric.migration_version('{V3}');"
            " ALTER TABLE items ADD COLUMN note text;"
            " CALL electric.capture_ddl('ALTER TABLE items ADD COLUMN note text');"
            " COMMIT",
        )
        await wait_versions(service, 3)
        status, _, body = await get(port, f"{base}&version={V2}")
        assert status == 200
        files = unzip(body)
        assert files[f"{V3}/migration.sql"] == 'ALTER TABLE "items" ADD COLUMN "note" TEXT;'
        (op,) = ops_of(files[f"{V3}/metadata.json"])
        assert [s.type for s in op.stmts] == [SatOpMigrateType.ALTER_ADD_COLUMN]
        assert op.table is not None
        assert [c.name for c in op.table.columns] == ["id", "title", "n", "note"]

        for target, error in (
            ("/api/migrations", "missing required parameter 'dialect'"),
            (f"/api/migrations?version={V1}", "missing required parameter 'dialect'"),
            ("/api/migrations?dialect=mysql", 'unsupported dialect "mysql"'),
            ("/api/migrations?dialect=", 'unsupported dialect ""'),
        ):
            status, headers, body = await get(port, target)
            assert status == 403, target
            assert headers["content-type"] == "application/json"
            assert json.loads(body) == {"error": error}
        assert (await get(port, "/api/migrations?dialect=x"))[2] == (
            b'{"error":"unsupported dialect \\"x\\""}'
        )
        # anything below the route is not found
        assert (await get(port, "/api/migrations/x?dialect=sqlite"))[:3:2] == (404, b"Not found")


async def test_same_zip_after_a_restart(db: str) -> None:
    async with running_service(db) as service:
        await make_migrations(db)
        await wait_versions(service, 2)
        before = [
            (await get(service.http_port, f"/api/migrations?dialect={d}"))[2]
            for d in ("sqlite", "postgresql")
        ]
    # the restarted service rebuilds its history from electric.schema
    async with running_service(db) as service:
        assert service.migrations is not None
        assert [m.version for m in service.migrations.migrations] == [V1, V2]
        after = [
            (await get(service.http_port, f"/api/migrations?dialect={d}"))[2]
            for d in ("sqlite", "postgresql")
        ]
    assert after == before


async def test_the_official_client_opens_with_our_migrations(
    db: str, official_client: OfficialClientFactory
) -> None:
    """The official client's own zip handling (the generator's parseMetadata + makeMigration)
    accepts the zip and applies both migrations with their triggers."""
    async with running_service(db) as service:
        await make_migrations(db)
        await wait_versions(service, 2)
        assert service.migrations is not None
        client = await official_client()
        opened = await client.open(
            db=official_client.db_path("a"),
            schema=describe_schema(service.migrations.schema),
            migrations_url=f"http://127.0.0.1:{service.http_port}",
        )
        assert opened["applied"] == [V1, V2]
        indexes = await client.query(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'items'"
            " AND sql IS NOT NULL"
        )
        assert [i["name"] for i in indexes] == ["items_title_idx"]
        # triggers came from the table descriptions in metadata.json, FK compensation included
        await client.call("create", table="items", data={"id": "i", "title": "t"})
        await client.call("create", table="tags", data={"id": str(uuid.uuid4()), "item_id": "i"})
        oplog = await client.query("SELECT tablename, optype FROM _electric_oplog ORDER BY rowid")
        assert [(o["tablename"], o["optype"]) for o in oplog] == [
            ("items", "INSERT"),
            ("items", "COMPENSATION"),
            ("tags", "INSERT"),
        ]
