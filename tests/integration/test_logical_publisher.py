"""The logical-replication publisher against a real Postgres (server-behaviour.md §7): the
``postgres_1`` subscription is created and enabled, Postgres's apply worker pulls client
transactions from us and the triggers merge them, in order and once, across reconnections."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
import trio

from electric_trio.config import Config
from electric_trio.pg import Connection, connect
from electric_trio.replication import ReplicationSubsystem
from electric_trio.service import Service, serve
from electric_trio.writes import ClientWrite, RowInsert
from electric_trio.writes.publisher import SUBSCRIPTION, LogicalPublisher

_counter = itertools.count()


def make_config(url: str) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "logical_replication",
            "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
            "LOGICAL_PUBLISHER_PORT": "0",
            "ELECTRIC_INSTANCE_ID": "test-instance",
        }
    )


class PublisherSubsystem:
    """The publisher as the writes subsystem starts it in logical_replication mode."""

    name = "publisher"

    def __init__(self) -> None:
        self.publisher: LogicalPublisher | None = None

    def install(self, service: Service) -> None:
        pass

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.publisher = LogicalPublisher(service)
        await self.publisher.run(task_status=task_status)


async def drop_subscription(conn: Connection) -> None:
    """Drops ``postgres_1`` without asking the (gone) publisher to drop a slot."""
    if await conn.fetchval("SELECT count(*) FROM pg_subscription WHERE subname = $1", SUBSCRIPTION):
        await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" DISABLE')
        await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" SET (slot_name = NONE)')
        await conn.execute(f'DROP SUBSCRIPTION "{SUBSCRIPTION}"')


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    """A fresh database per test with table ``items`` electrified (migration ``1``)."""
    name = f"et_pub_{os.getpid()}_{next(_counter)}"
    async with await connect(pg_server.url) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_server.database_url(name)
    yield url
    async with await connect(url) as c:
        await drop_subscription(c)
    async with await connect(pg_server.url) as admin:
        with trio.fail_after(20):
            # the service's temporary slot goes when its connection does
            while await admin.fetchval(  # noqa: ASYNC110 (Postgres state, no event to wait on)
                f"SELECT count(*) FROM pg_replication_slots WHERE database = '{name}' AND active"
            ):
                await trio.sleep(0.05)
        await admin.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            f" WHERE database = '{name}'"
        )
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def sql(url: str, statements: str) -> None:
    async with await connect(url) as c:
        await c.execute(statements)


def migration_sql(version: str, table: str, columns: str = "id int8 PRIMARY KEY, v text") -> str:
    return (
        f"BEGIN; CALL electric.migration_version('{version}');"
        f" CREATE TABLE {table} ({columns}); CALL electric.electrify('{table}'); COMMIT;"
    )


class Running:
    def __init__(self, service: Service, publisher: LogicalPublisher) -> None:
        self.service = service
        self.publisher = publisher


async def start(nursery: trio.Nursery, url: str) -> Running:
    sub = PublisherSubsystem()
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(url),
            subsystems=[ReplicationSubsystem(), sub],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    assert sub.publisher is not None
    return Running(service, sub.publisher)


def tag_text(ms: int, client_id: str) -> str:
    import datetime as dt

    ts = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f'("{ts}+00",{client_id})'


def client_write(
    client_id: str,
    position: int,
    rows: list[dict[str, str | None]],
    *,
    ms: int = 1_700_000_000_000,
    table: str = "items",
    observed: tuple[str, ...] = (),
) -> ClientWrite:
    """A client transaction of inserts into ``table`` (primary key ``id``), as the receiving
    side hands it over: the acknowledged LSN row, then main and shadow row per change."""
    inserts = [
        RowInsert(
            "electric",
            "acknowledged_client_lsns",
            ("client_id", "lsn"),
            (client_id, "\\x" + position.to_bytes(4, "big").hex()),
        )
    ]
    for row in rows:
        non_pk = [c for c in row if c != "id"]
        inserts.append(RowInsert("public", table, tuple(row), tuple(row.values())))
        inserts.append(
            RowInsert(
                "electric",
                f"shadow__public__{table}",
                (
                    "id",
                    "_tag",
                    "_is_a_delete_operation",
                    "_observed_tags",
                    "_modified_columns_bit_mask",
                ),
                (
                    row["id"],
                    tag_text(ms, client_id),
                    "f",
                    "{" + ",".join(f'"{o}"' for o in observed) + "}",
                    "{" + ",".join("t" for _ in non_pk) + "}",
                ),
            )
        )
    return ClientWrite(client_id, position.to_bytes(4, "big"), ms, tuple(inserts))


async def migrate(running: Running, url: str, version: str, table: str) -> None:
    """Runs a migration creating and electrifying ``table``; returns once the service has it."""
    await sql(url, migration_sql(version, table))
    history = running.service.migrations
    assert history is not None
    with trio.fail_after(30):
        while history.version != version:  # noqa: ASYNC110 (the history has no event)
            await trio.sleep(0.02)


async def wait_rows(
    url: str, query: str, expected: list[tuple[Any, ...]], within: float = 30
) -> None:
    """Until ``query`` returns ``expected``."""
    async with await connect(url) as c:
        with trio.fail_after(within):
            while True:
                rows = [tuple(r) for r in await c.fetch(query)]
                if rows == expected:
                    return
                await trio.sleep(0.05)


# ---- tests ------------------------------------------------------------------------------------


async def test_subscription_created_and_enabled(db: str, nursery: trio.Nursery) -> None:
    running = await start(nursery, db)
    await migrate(running, db, "1", "items")
    async with await connect(db) as c:
        row = await c.fetchrow(
            "SELECT subenabled, subconninfo FROM pg_subscription WHERE subname = $1", SUBSCRIPTION
        )
        assert row is not None
        assert row[0] is True
        assert f"port={running.publisher.port}" in row[1]
        assert "connect_timeout=5 " in row[1]
    await running.publisher.write(client_write("client1", 1, [{"id": "1", "v": "hello"}]))
    await wait_rows(db, "SELECT id, v FROM items", [(1, "hello")])
