"""A large client transaction (over the direct writer's COPY threshold) through the service: it
is received, written once and echoed like a small one, and its updates resolve per column."""

from __future__ import annotations

import uuid

from test_client_writes import (
    ENTRIES_REL,
    JUNE_6,
    acked,
    client,
    db,
    insert,
    mode,
    pg,
    service,
    update,
)

from electric_trio.pg import Connection
from electric_trio.service import Service
from electric_trio.writes.direct import COPY_THRESHOLD

__all__ = ["db", "mode", "pg", "service"]  # fixtures used by name


async def test_a_large_transaction(service: Service, pg: Connection) -> None:
    count = COPY_THRESHOLD + 200
    keys = [str(uuid.UUID(int=i + 1)) for i in range(count)]
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL)
        await c.write(1, JUNE_6, *(insert(0, k, f"content {i}", None) for i, k in enumerate(keys)))
        assert (await c.echo(within=60)).commit_timestamp == JUNE_6
        tag = f"client_1_1@{JUNE_6}"
        await c.write(
            2,
            JUNE_6 + 1,
            *(
                update(0, [k, f"content {i}", "b"], [k, f"content {i}", None], tags=[tag])
                for i, k in enumerate(keys)
            ),
        )
        assert (await c.echo(within=60)).commit_timestamp == JUNE_6 + 1
    assert await pg.fetchval("SELECT count(*) FROM entries WHERE content_b = 'b'") == count
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM electric.shadow__public__entries"
            " WHERE (_tag_content).timestamp < (_tag_content_b).timestamp"
            " AND cardinality(_tags) = 1"
        )
        == count
    )
    assert await acked(pg, "client_1_1") == b"\x00\x00\x00\x02"
