"""A fresh database per test, and its clean removal: the service's slots, the ``postgres_1``
subscription of logical_replication mode, then the database itself."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import trio

from electric_trio.pg import connect

__all__ = ["create_database", "drop_database", "fresh_database"]

_counter = itertools.count()


class Server(Protocol):
    @property
    def url(self) -> str: ...

    def database_url(self, dbname: str) -> str: ...


async def create_database(admin_url: str, prefix: str) -> str:
    """Creates ``<prefix>_<pid>_<n>`` (unique across the parallel PG 18 and PG 15 passes)."""
    name = f"{prefix}_{os.getpid()}_{next(_counter)}"
    async with await connect(admin_url) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    return name


async def drop_database(admin_url: str, database_url: str, name: str) -> None:
    """Drops the database once the service's temporary slots are gone with its connections."""
    async with await connect(admin_url) as admin:
        subscribed = await admin.fetchval(
            "SELECT count(*) FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid"
            " WHERE s.subname = 'postgres_1' AND d.datname = $1",
            name,
        )
    if subscribed:
        # logical_replication mode leaves it; dropped without asking the gone publisher
        async with await connect(database_url) as c:
            await c.execute(
                "ALTER SUBSCRIPTION postgres_1 DISABLE;"
                " ALTER SUBSCRIPTION postgres_1 SET (slot_name = NONE);"
                " DROP SUBSCRIPTION postgres_1"
            )
    async with await connect(admin_url) as admin:
        with trio.fail_after(30):
            while await admin.fetchval(  # noqa: ASYNC110 (Postgres state, no event to wait on)
                "SELECT count(*) FROM pg_replication_slots WHERE database = $1 AND active", name
            ):
                await trio.sleep(0.05)
        await admin.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            f" WHERE database = '{name}'"
        )
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@asynccontextmanager
async def fresh_database(server: Server, prefix: str) -> AsyncIterator[str]:
    """Yields the URL of a new empty database, dropped afterwards."""
    name = await create_database(server.url, prefix)
    url = server.database_url(name)
    try:
        yield url
    finally:
        with trio.CancelScope(shield=True):
            await drop_database(server.url, url, name)
