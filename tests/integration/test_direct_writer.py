"""The direct writer on its own: the COPY path of large transactions leaves Postgres exactly as
row inserts do (the triggers fire per row, main rows before their shadow rows, keys repeated in
a transaction and children after their parents), replays are skipped, a refused transaction
leaves nothing behind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio

from electric_trio.ddlx import install_electric_schema
from electric_trio.ddlx.schema import Column, ColumnType, Table
from electric_trio.pg import ConnectParams, connect
from electric_trio.writes import ClientWrite, RowInsert, WriteRejectedError
from electric_trio.writes.direct import DirectWriter, WriteAbandonedError
from electric_trio.writes.rows import ack_row, change_rows, observed_tags_literal, tag_literal

ITEMS = Table(
    schema="public",
    name="items",
    columns=(Column("id", ColumnType("text"), True), Column("title", ColumnType("text"))),
    primary_key=("id",),
)
OTHER = Table(
    schema="public",
    name="other_items",
    columns=(
        Column("id", ColumnType("text"), True),
        Column("item_id", ColumnType("text")),
        Column("n", ColumnType("int4")),
    ),
    primary_key=("id",),
)
SCHEMA = (
    "CREATE TABLE items (id text PRIMARY KEY, title text);"
    " CREATE TABLE other_items (id text PRIMARY KEY, item_id text REFERENCES items (id), n int4);"
    " CALL electric.electrify('items'); CALL electric.electrify('other_items');"
)
T = 1_700_000_000_000
CREATE_PARENT = "INSERT INTO items VALUES ('p', 'parent')"


@pytest.fixture
async def databases(pg_url: str) -> AsyncIterator[list[str]]:
    """Two fresh databases with the electric schema and the tables."""
    names = [f"dw_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    base = pg_url.rsplit("/", 1)[0]
    async with await connect(pg_url) as admin:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
            async with await connect(f"{base}/{name}") as c:
                await install_electric_schema(c)
                await c.execute(SCHEMA)
        try:
            yield [f"{base}/{name}" for name in names]
        finally:
            for name in names:
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def write(lsn: int, ts: int, *changes: tuple[RowInsert, RowInsert]) -> ClientWrite:
    raw = lsn.to_bytes(4, "big")
    rows = [r for pair in changes for r in pair]
    return ClientWrite("client", raw, ts, (ack_row("client", raw), *rows))


def change(
    table: Table,
    kind: Any,
    row: Sequence[str | None],
    ts: int,
    observed: Sequence[str] = (),
    modified: Sequence[bool] | None = None,
) -> tuple[RowInsert, RowInsert]:
    width = len(table.columns) - 1
    if modified is None:
        modified = [kind == "insert"] * width
    return change_rows(
        table, kind, row, tag_literal(ts, "client"), observed_tags_literal(observed), modified
    )


def scenario() -> list[ClientWrite]:
    big = [change(ITEMS, "insert", (f"bulk{i:05}", f"bulk {i}"), T) for i in range(40)]
    return [
        write(
            1,
            T,
            change(ITEMS, "insert", ("a", "first"), T),
            change(ITEMS, "insert", ("b", "first"), T),
            change(ITEMS, "insert", ("c", "first"), T),
            change(OTHER, "insert", ("x", "a", "1"), T),
            *big,
        ),
        write(
            2,
            T + 1,
            change(ITEMS, "update", ("a", "second"), T + 1, [f"client@{T}"], [True]),
            change(ITEMS, "delete", ("b", "first"), T + 1, [f"client@{T}"]),
            change(ITEMS, "compensation", ("c", None), T + 1, [f"client@{T}"]),
            change(OTHER, "insert", ("y", "c", "2"), T + 1),
            # the same key twice in one transaction, and a child after its parent
            change(ITEMS, "update", ("a", "third"), T + 1, [f"client@{T + 1}"], [True]),
            change(ITEMS, "insert", ("d", "new"), T + 1),
            change(OTHER, "insert", ("z", "d", "3"), T + 1),
            change(OTHER, "update", ("x", "a", "10"), T + 1, [f"client@{T}"], [False, True]),
            # an old update loses its column
            change(ITEMS, "update", ("c", "stale"), T - 5, [], [True]),
        ),
    ]


async def state(url: str) -> dict[str, list[tuple[Any, ...]]]:
    async with await connect(url) as c:
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in ("items", "other_items"):
            out[table] = [tuple(r) for r in await c.fetch(f"SELECT * FROM {table} ORDER BY id")]
            shadow = await c.fetch(
                f"SELECT to_jsonb(s) - '_last_modified' FROM electric.shadow__public__{table} s"
                " ORDER BY id"
            )
            out[f"shadow {table}"] = [tuple(r) for r in shadow]
            out[f"tombstone {table}"] = [
                tuple(r)
                for r in await c.fetch(
                    f"SELECT * FROM electric.tombstone__public__{table} ORDER BY id"
                )
            ]
        out["acked"] = [
            tuple(r) for r in await c.fetch("SELECT * FROM electric.acknowledged_client_lsns")
        ]
        return out


async def run(url: str, copy_threshold: int | None) -> DirectWriter:
    writer = DirectWriter(ConnectParams.from_url(url), copy_threshold=copy_threshold)
    try:
        for w in scenario():
            await writer.write(w)
        await writer.write(scenario()[1])  # a replay: skipped
    finally:
        await writer.aclose()
    return writer


async def test_copy_leaves_postgres_as_row_inserts_do(databases: list[str]) -> None:
    rows_url, copy_url = databases
    by_rows = await run(rows_url, None)
    by_copy = await run(copy_url, 1)
    expected = await state(rows_url)
    assert await state(copy_url) == expected
    assert expected["items"][:4] == [
        ("a", "third"),
        ("bulk00000", "bulk 0"),
        ("bulk00001", "bulk 1"),
        ("bulk00002", "bulk 2"),
    ]
    assert ("b", "first") not in expected["items"]
    assert ("c", "first") in expected["items"]
    assert expected["other_items"] == [("x", "a", 10), ("y", "c", 2), ("z", "d", 3)]
    assert expected["tombstone items"] == [("b", "first")]
    for writer in (by_rows, by_copy):
        stats = writer.statistics
        assert (stats.transactions, stats.replays) == (2, 1)


async def test_a_refused_copy_transaction_leaves_nothing(databases: list[str]) -> None:
    url = databases[0]
    writer = DirectWriter(ConnectParams.from_url(url), copy_threshold=1)
    try:
        orphan = write(1, T, change(OTHER, "insert", ("x", "nowhere", "1"), T))
        with pytest.raises(WriteRejectedError, match="foreign key"):
            await writer.write(orphan)
        # the connection is usable again, and the transaction can be written once its parent is
        await writer.write(write(2, T, change(ITEMS, "insert", ("nowhere", "p"), T)))
        await writer.write(write(3, T, change(OTHER, "insert", ("x", "nowhere", "1"), T)))
    finally:
        await writer.aclose()
    got = await state(url)
    assert got["other_items"] == [("x", "nowhere", 1)]
    assert got["acked"] == [("client", b"\x00\x00\x00\x03")]


async def test_copy_with_quoted_names_enums_and_bytes(databases: list[str]) -> None:
    url = databases[0]
    async with await connect(url) as c:
        await c.execute(
            "CREATE TYPE colour AS ENUM ('red', 'green');"
            ' CREATE TABLE "camelCase" ("Id" text PRIMARY KEY, "userId" text, c colour, b bytea,'
            "  j jsonb, at timestamptz);"
            " CALL electric.electrify('public.\"camelCase\"')"
        )
    table = Table(
        schema="public",
        name="camelCase",
        columns=(
            Column("Id", ColumnType("text"), True),
            Column("userId", ColumnType("text")),
            Column("c", ColumnType("colour")),
            Column("b", ColumnType("bytea")),
            Column("j", ColumnType("jsonb")),
            Column("at", ColumnType("timestamptz")),
        ),
        primary_key=("Id",),
    )
    row = ("k", "it's", "green", "\\x00ff", '{"a": [1]}', "2024-01-01 00:00:00.5+00")
    writer = DirectWriter(ConnectParams.from_url(url), copy_threshold=1)
    try:
        await writer.write(write(1, T, change(table, "insert", row, T)))
    finally:
        await writer.aclose()
    async with await connect(url) as c:
        got = await c.fetchrow(
            'SELECT "Id", "userId", c::text, b, j::text, at = \'2024-01-01 00:00:00.5+00\''
            ' FROM "camelCase"'
        )
        assert got is not None
        assert tuple(got) == ("k", "it's", "green", b"\x00\xff", '{"a": [1]}', True)
        tags = await c.fetchval(
            'SELECT (_tag_c).source_id FROM electric."shadow__public__camelCase"'
        )
        assert tags == "client"


def client_write(client: str, lsn: int, key: str, parent: str) -> ClientWrite:
    raw = lsn.to_bytes(4, "big")
    tag = tag_literal(T, client)
    rows = change_rows(OTHER, "insert", (key, parent, str(lsn)), tag, "{}", [True, True])
    return ClientWrite(client, raw, T, (ack_row(client, raw), *rows))


async def test_concurrent_clients_on_one_connection(databases: list[str]) -> None:
    """Transactions of many clients waiting for one connection are sent together; one refused
    among them is rejected alone, the others are each committed once, in each client's order."""
    url = databases[0]
    async with await connect(url) as c:
        await c.execute(CREATE_PARENT)
    writer = DirectWriter(ConnectParams.from_url(url), connections=1)
    rejected: list[str] = []

    async def client(n: int) -> None:
        for lsn in (1, 2, 3):
            parent = "nowhere" if (n, lsn) == (5, 2) else "p"
            try:
                await writer.write(client_write(f"c{n}", lsn, f"k{n}-{lsn}", parent))
            except WriteRejectedError:
                rejected.append(f"c{n}-{lsn}")
        await writer.write(client_write(f"c{n}", 2, "never", "p"))  # a replay: skipped

    try:
        async with trio.open_nursery() as nursery:
            for n in range(12):
                nursery.start_soon(client, n)
    finally:
        await writer.aclose()
    got = await state(url)
    assert rejected == ["c5-2"]
    assert got["other_items"] == sorted(
        (f"k{n}-{lsn}", "p", lsn) for n in range(12) for lsn in (1, 2, 3) if (n, lsn) != (5, 2)
    )
    assert sorted(got["acked"]) == sorted((f"c{n}", b"\x00\x00\x00\x03") for n in range(12))
    stats = writer.statistics
    assert (stats.transactions, stats.replays) == (35, 12)


async def test_queued_transactions_of_one_client(databases: list[str]) -> None:
    """A client's transactions queued at once are written in order; after a refused one none
    of its later ones is written, while another client's go on."""
    url = databases[0]
    async with await connect(url) as c:
        await c.execute(CREATE_PARENT)
    writer = DirectWriter(ConnectParams.from_url(url), connections=1)
    outcomes: dict[str, str] = {}

    async def complete(name: str, item: Any) -> None:
        try:
            await writer.complete(item)
            outcomes[name] = "written"
        except WriteRejectedError:
            outcomes[name] = "refused"
        except WriteAbandonedError:
            outcomes[name] = "abandoned"

    try:
        async with trio.open_nursery() as nursery:
            for lsn in range(1, 6):
                for client in ("a", "b"):
                    parent = "nowhere" if (client, lsn) == ("a", 3) else "p"
                    item = writer.enqueue(client_write(client, lsn, f"{client}{lsn}", parent))
                    nursery.start_soon(complete, f"{client}{lsn}", item)
    finally:
        await writer.aclose()
    assert outcomes == {
        **{f"b{lsn}": "written" for lsn in range(1, 6)},
        "a1": "written",
        "a2": "written",
        "a3": "refused",
        "a4": "abandoned",
        "a5": "abandoned",
    }
    got = await state(url)
    assert [r[0] for r in got["other_items"]] == ["a1", "a2", "b1", "b2", "b3", "b4", "b5"]
    assert sorted(got["acked"]) == [("a", b"\x00\x00\x00\x02"), ("b", b"\x00\x00\x00\x05")]
