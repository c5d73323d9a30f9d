"""The unmodified official client (electric-sql 0.12.1 in Node) against the service: it connects
and authenticates (insecure and secure mode), is refused a bad token with AUTH_REQUIRED, and its
local SQLite gets the migrations made in Postgres after the ones it was built with, at its first
sync and live."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import jwt
import pytest
import trio

from _databases import fresh_database
from electric_trio.config import Config
from electric_trio.pg import connect
from electric_trio.service import Service, serve
from official_client import OfficialClientError, OfficialClientFactory, describe_schema

HS_KEY = "a-test-key-of-at-least-32-bytes-for-HS256"


def make_config(url: str, **env: str) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
            **env,
        }
    )


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    """A fresh database per test, with a first migration (``items``) in it."""
    async with fresh_database(pg_server, "et_satc") as url:
        yield url


async def start(nursery: trio.Nursery, config: Config) -> Service:
    service: Service = await nursery.start(partial(serve, config, handle_signals=False))
    with trio.fail_after(60):
        await service.wait_ready()
    return service


async def migrate(url: str, version: str, table: str) -> None:
    async with await connect(url) as c:
        await c.execute(
            f"BEGIN; CALL electric.migration_version('{version}');"
            f" CREATE TABLE {table} (id text PRIMARY KEY, title text, n int4);"
            f" CALL electric.electrify('{table}'); COMMIT"
        )


async def wait_versions(service: Service, count: int) -> None:
    assert service.migrations is not None
    assert service.txlog is not None
    with trio.fail_after(30):
        while len(service.migrations.migrations) < count:
            await service.txlog.wait_after(service.txlog.last_lsn or 0)


def url_of(service: Service) -> str:
    return f"http://127.0.0.1:{service.http_port}"


async def tables(client: Any) -> set[str]:
    rows = await client.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row["name"] for row in rows}


async def test_connects_and_authenticates_in_insecure_mode(
    db: str, nursery: trio.Nursery, official_client: OfficialClientFactory
) -> None:
    service = await start(nursery, make_config(db))
    await migrate(db, "20240101000000", "items")
    await wait_versions(service, 1)
    assert service.migrations is not None
    client = await official_client()
    opened = await client.open(
        db=official_client.db_path("a"),
        schema=describe_schema(service.migrations.schema),
        migrations_url=url_of(service),
        url=url_of(service),
        user_id="alice",
    )
    assert opened["applied"] == ["20240101000000"]
    status = await client.connect()
    assert status == {"status": "connected", "reason": None, "connected": True}
    await client.wait_event("connectivity", lambda e: e["status"] == "connected")
    # the client is known to the server and answered its startReplication
    await client.call("create", table="items", data={"id": "i1", "title": "local", "n": 1})
    await client.disconnect()
    assert (await client.status())["status"] == "disconnected"
    # and connects again (same client id: the first connection is gone)
    status = await client.connect()
    assert status["connected"]
    assert client.unhandled() == []


async def test_a_bad_token_gives_auth_required(
    db: str, nursery: trio.Nursery, official_client: OfficialClientFactory
) -> None:
    config = make_config(db, AUTH_MODE="secure", AUTH_JWT_ALG="HS256", AUTH_JWT_KEY=HS_KEY)
    service = await start(nursery, config)
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 600}
    client = await official_client()
    await client.open(db=official_client.db_path("b"), url=url_of(service))
    forged = jwt.encode(claims, "another-key-of-at-least-32-bytes-long!!", algorithm="HS256")
    with pytest.raises(OfficialClientError) as info:
        await client.connect(token=forged)
    assert (info.value.code, info.value.name) == ("AUTH_REQUIRED", "SatErrorResp")
    # the right signature is let in
    status = await client.connect(token=jwt.encode(claims, HS_KEY, algorithm="HS256"))
    assert status["connected"]


async def test_first_sync_applies_newer_migrations_then_live_ones(
    db: str, nursery: trio.Nursery, official_client: OfficialClientFactory
) -> None:
    service = await start(nursery, make_config(db))
    await migrate(db, "20240101000000", "items")
    await wait_versions(service, 1)
    assert service.migrations is not None
    client = await official_client()
    opened = await client.open(
        db=official_client.db_path("c"),
        schema=describe_schema(service.migrations.schema),
        migrations_url=url_of(service),
        url=url_of(service),
        user_id="alice",
    )
    assert opened["applied"] == ["20240101000000"]
    assert "notes" not in await tables(client)

    # made after the client was built: it gets it at its first sync
    await migrate(db, "20240102000000", "notes")
    await wait_versions(service, 2)
    await client.connect()
    await client.wait_rows(
        "SELECT version FROM _electric_migrations WHERE version <> '0' ORDER BY version",
        until=lambda rows: [r["version"] for r in rows] == ["20240101000000", "20240102000000"],
    )
    assert "notes" in await tables(client)
    await client.exec("INSERT INTO notes (id, title, n) VALUES ('n1', 'x', 1) RETURNING *")

    # and while connected
    await migrate(db, "20240103000000", "tasks")
    await client.wait_rows(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tasks'",
        until=lambda rows: len(rows) == 1,
    )
    assert (await client.status())["connected"]

    # reconnecting resumes from the position of the last transaction it applied
    await client.disconnect()
    await migrate(db, "20240104000000", "labels")
    status = await client.connect()
    assert status["connected"]
    await client.wait_rows(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'labels'",
        until=lambda rows: len(rows) == 1,
    )
    assert client.unhandled() == []
