# ruff: noqa: F811 (the fixtures come from test_satellite_protocol)
"""The tags of a subscription's initial rows: the read takes each row's tags as its shadow row
holds them and the service puts them in Satellite form, which must be what the live stream
gave for the same row (a client resolves conflicts by them)."""

from __future__ import annotations

import datetime

from test_satellite_protocol import (  # noqa: F401 (fixtures)
    client,
    db,
    migration_sql,
    satellite,
    service,
    sql,
    wait_versions,
)
from test_shapes_protocol import request, select, started, subscribe, until

from electric_trio.satellite import messages as m
from electric_trio.service import Service


def insert_tags(frames: list[m.FrameMessage]) -> dict[str, tuple[str, ...]]:
    """The tags of every insert in ``frames``, by the row's first value."""
    return {
        op.insert.row_data.values[0].decode(): tuple(op.insert.tags)
        for f in frames
        if isinstance(f, m.SatOpLog)
        for op in f.ops
        if op.insert is not None
    }


async def test_initial_tags_are_the_live_ones(service: Service, db: str) -> None:
    await sql(
        db,
        "CREATE TABLE before (id text PRIMARY KEY, v text); INSERT INTO before VALUES ('o', 'x')",
    )
    await sql(
        db,
        migration_sql("1", "items", "id text PRIMARY KEY, v text").replace(
            "COMMIT", "CALL electric.electrify('before'); COMMIT"
        ),
    )
    await wait_versions(service, 1)
    # A client's write as the writer applies it (test_satellite_protocol.client_write_sql): its
    # tag names the client, an id that needs quoting in the tag's text, at an offset.
    client_write = (
        "BEGIN; SET LOCAL electric.session_replication_role = replica;"
        "INSERT INTO items (id, v) VALUES ('b', 'from a client');"
        "INSERT INTO electric.shadow__public__items"
        " (id, _tag, _is_a_delete_operation, _observed_tags, _modified_columns_bit_mask)"
        ' VALUES (\'b\', \'("2024-03-04 10:36:07.8915+05:30","client ""x"", y")\', false,'
        " '{}', '{t}'); COMMIT;"
    )
    async with client(service) as live:
        await started(service, live, "live")
        assert (await subscribe(live, request(select("items")))).err is None
        await until(live, m.SatSubsDataEnd)
        await sql(db, "INSERT INTO items VALUES ('a', 'one')")
        live_tags = insert_tags(await until(live, m.SatOpLog))
        await sql(db, client_write)
        live_tags |= insert_tags(await until(live, m.SatOpLog))
    assert set(live_tags) == {"a", "b"}
    ms = int(datetime.datetime(2024, 3, 4, 5, 6, 7, 891000, datetime.UTC).timestamp() * 1000)
    assert live_tags["b"] == (f'client "x", y@{ms}',)
    async with client(service) as late:
        await started(service, late, "late")
        assert (await subscribe(late, request(select("items"), select("before")))).err is None
        initial = insert_tags(await until(late, m.SatSubsDataEnd))
    assert initial["a"] == live_tags["a"]
    assert initial["b"] == live_tags["b"]
    # A row written before its table was electrified has no shadow row: Postgres's epoch tag.
    assert initial["o"] == ("postgres_1@0",)
