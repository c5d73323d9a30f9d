"""Client writes with the official client (electric-sql 0.12.1 in Node) subscribed to a shape:
one client's insert, update and delete reach Postgres and the other client, Postgres's writes
reach both, and concurrent updates of different columns by the two clients merge everywhere
(scenarios 03.03, 03.06, 03.07, E 05.02 with real clients). In each mode of
``test_client_writes``."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio
from test_client_writes import SETTINGS, db, make_config, migrate, mode, pg, pg_rows

from electric_trio.http.migrations import MigrationsApi
from electric_trio.pg import Connection
from electric_trio.replication import ReplicationSubsystem
from electric_trio.satellite.server import SatelliteSubsystem
from electric_trio.service import Service, serve
from electric_trio.writes.subsystem import WritesSubsystem
from official_client import describe_schema

__all__ = ["db", "mode", "pg"]  # fixtures used by name


async def local_rows(client: Any, expected: list[dict[str, Any]]) -> None:
    """Until the client's local ``items`` are ``expected``."""
    await client.wait_rows(
        "SELECT id, title, n FROM items ORDER BY id", until=lambda rows: rows == expected
    )


async def test_writes_reach_postgres_and_the_other_client(
    db: str, mode: str, nursery: trio.Nursery, pg: Connection, official_client: Any
) -> None:
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(db, mode),
            subsystems=[
                ReplicationSubsystem(),
                MigrationsApi(),
                SatelliteSubsystem(SETTINGS),
                WritesSubsystem(),
            ],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    await migrate(
        service,
        pg,
        "20240101000000",
        "CREATE TABLE items (id text PRIMARY KEY, title text, n int4);"
        " CALL electric.electrify('items');",
    )
    assert service.migrations is not None
    url = f"http://127.0.0.1:{service.http_port}"
    clients = []
    for name in ("a", "b"):
        client = await official_client()
        await client.open(
            db=official_client.db_path(name),
            schema=describe_schema(service.migrations.schema),
            migrations_url=url,
            url=url,
            user_id="alice",
        )
        await client.connect()
        await client.sync("items", within=20)
        clients.append(client)
    a, b = clients

    await a.call("create", table="items", data={"id": "i1", "title": "from a", "n": 1})
    assert await pg_rows(pg, "SELECT * FROM items", 1) == [("i1", "from a", 1)]
    await local_rows(b, [{"id": "i1", "title": "from a", "n": 1}])

    await b.call("update", table="items", where={"id": "i1"}, data={"n": 2})
    assert await pg_rows(pg, "SELECT * FROM items WHERE n = 2", 1) == [("i1", "from a", 2)]
    await local_rows(a, [{"id": "i1", "title": "from a", "n": 2}])

    await pg.execute("INSERT INTO items VALUES ('i2', 'from postgres', 3)")
    both = [
        {"id": "i1", "title": "from a", "n": 2},
        {"id": "i2", "title": "from postgres", "n": 3},
    ]
    await local_rows(a, both)
    await local_rows(b, both)

    # different columns of one row changed by each client while both are offline
    await a.disconnect()
    await b.disconnect()
    await a.call("update", table="items", where={"id": "i2"}, data={"title": "title by a"})
    await b.call("update", table="items", where={"id": "i2"}, data={"n": 30})
    await a.connect()
    await b.connect()
    merged = [both[0], {"id": "i2", "title": "title by a", "n": 30}]
    assert await pg_rows(pg, "SELECT * FROM items WHERE n = 30 AND title = 'title by a'", 1)
    await local_rows(a, merged)
    await local_rows(b, merged)

    await a.call("delete", table="items", where={"id": "i1"})
    assert await pg_rows(pg, "SELECT id FROM items", 1) == [("i2",)]
    await local_rows(b, merged[1:])
    assert a.unhandled() == []
    assert b.unhandled() == []
