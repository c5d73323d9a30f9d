"""What the replication reader hands on, against a real Postgres with the electric schema:
user-table changes with their tags, the writer and time of client writes, migrations, referenced
records (server-behaviour.md §6 "Outbound tags", §8)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio

from _databases import create_database, drop_database
from electric_trio._native import ElectricTransaction
from electric_trio.ddlx import install_electric_schema
from electric_trio.pg import Connection, ConnectParams, connect, parse_lsn
from electric_trio.replication import (
    ReaderSettings,
    ReaderStatus,
    TransactionLog,
    serve_replication,
)

T = TypeVar("T")

UTC = dt.UTC
PG_EPOCH_UNIX_MS = 946_684_800_000

SETUP = """
CREATE TABLE items (id int8 PRIMARY KEY, v text);
CREATE TABLE noise (id int8 PRIMARY KEY, v text);
CREATE TABLE parent (id int8 PRIMARY KEY, name text);
CREATE TABLE child (id int8 PRIMARY KEY, parent_id int8 REFERENCES parent (id));
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE all_types (
    id int8 PRIMARY KEY,
    b bool, ba bytea, d date, f4 float4, f8 float8, i2 int2, i4 int4, jb jsonb, t text,
    tm time, ts timestamp, tstz timestamptz, u uuid, vc varchar, m mood
);
CALL electric.electrify('items');
CALL electric.electrify('parent');
CALL electric.electrify('child');
CALL electric.electrify('all_types');
"""


@pytest.fixture(scope="module")
def db(pg_server: Any) -> Iterator[str]:
    """A fresh database for the module, with the electric schema and electrified tables."""

    async def create() -> str:
        name = await create_database(pg_server.url, "et_fold")
        async with await connect(pg_server.database_url(name)) as c:
            await install_electric_schema(c)
            await c.execute(SETUP)
        return name

    name = trio.run(create)
    url = pg_server.database_url(name)
    yield url
    trio.run(drop_database, pg_server.url, url, name)


async def stream(
    url: str, count: int, work: Callable[[Connection], Awaitable[T]]
) -> tuple[T, list[ElectricTransaction]]:
    """Runs ``work`` while the replication reader streams; returns its result and the
    ``count`` transactions it committed, as the reader logged them."""
    txlog: TransactionLog[ElectricTransaction] = TransactionLog(max_wal_distance=1 << 40)
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[ReaderStatus]) -> None:
            with scope:
                params = ConnectParams.from_url(url)
                await serve_replication(params, txlog, ReaderSettings(), task_status=task_status)

        await nursery.start(run)
        async with await connect(url) as c:
            # the reader replays the slot's window: keep what this work committed
            start = parse_lsn(await c.fetchval("SELECT pg_current_wal_lsn()::text"))
            result = await work(c)
        with trio.fail_after(60):
            while len(txlog.read_after(start, limit=10**9)) < count:
                await txlog.wait_after(txlog.last_lsn or 0)
        scope.cancel()
    txns = txlog.read_after(start, limit=10**9)
    assert len(txns) == count
    return result, txns


def unix_ms(txn: ElectricTransaction) -> int:
    """The transaction's (folded) commit timestamp in ms since the Unix epoch."""
    assert txn.commit_timestamp % 1000 == 0, "a tag time, in ms"
    return txn.commit_timestamp // 1000 + PG_EPOCH_UNIX_MS


async def tx_ms(c: Connection) -> int:
    """The open transaction's CURRENT_TIMESTAMP(3), the time of its Postgres-side tags."""
    ms = await c.fetchval("SELECT (extract(epoch FROM CURRENT_TIMESTAMP(3)) * 1000)::int8")
    assert isinstance(ms, int)
    return ms


async def test_postgres_writes_carry_postgres_tags(db: str) -> None:
    async def work(c: Connection) -> int:
        await c.execute("BEGIN")
        ms = await tx_ms(c)
        await c.execute(
            "INSERT INTO items VALUES (1, 'a'), (2, 'b'); INSERT INTO noise VALUES (1, 'x');"
            "UPDATE items SET v = 'a2' WHERE id = 1"
        )
        await c.execute("COMMIT")
        await c.execute("UPDATE items SET v = 'b2' WHERE id = 2")
        await c.execute("DELETE FROM items WHERE id = 1")
        return ms

    ms, (mixed, update, delete) = await stream(db, 3, work)

    # only the electrified table's changes, each tagged with the transaction's time, which is
    # also the transaction's commit timestamp now
    tag = [f"postgres_1@{ms}"]
    assert mixed.changes() == [
        ("insert", "public", "items", {"id": 1, "v": "a"}, None, tag),
        ("insert", "public", "items", {"id": 2, "v": "b"}, None, tag),
        ("update", "public", "items", {"id": 1, "v": "a2"}, {"id": 1, "v": "a"}, tag),
    ]
    assert mixed.relations == [("public", "items")]
    assert len(mixed) == 3
    assert unix_ms(mixed) == ms
    assert mixed.origin == "postgres_1"

    assert update.changes() == [
        (
            "update",
            "public",
            "items",
            {"id": 2, "v": "b2"},
            {"id": 2, "v": "b"},
            [f"postgres_1@{unix_ms(update)}"],
        )
    ]
    assert update.origin == "postgres_1"
    assert unix_ms(update) >= ms

    assert delete.changes() == [("delete", "public", "items", None, {"id": 1, "v": "a2"}, [])]
    assert delete.origin == "postgres_1"
    for t in (mixed, update, delete):
        assert (t.ddl, t.marker, t.electrified, t.referenced) == ([], None, [], [])


async def test_a_migration_yields_its_ddl(db: str) -> None:
    async def work(c: Connection) -> None:
        await c.execute(
            "BEGIN; CALL electric.migration_version('20240101');"
            " CREATE TABLE later (id int8 PRIMARY KEY, v text);"
            " CALL electric.electrify('later'); COMMIT"
        )
        # an insertion point, as the subscription code writes it
        await c.execute(
            "UPDATE electric.transaction_marker SET content = jsonb_build_object("
            "'xid', pg_current_xact_id(), 'caused_by', 'subscription:s1')"
            " WHERE id = 'magic write'"
        )

    _, (migration, magic) = await stream(db, 2, work)
    assert len(migration) == 0
    assert migration.changes() == []
    [(txid, txts, query)] = migration.ddl
    assert txid & 0xFFFF_FFFF == migration.xid
    # the migration's start time, microseconds since the Unix epoch, before its commit
    commit_us = migration.commit_timestamp + PG_EPOCH_UNIX_MS * 1000
    assert 0 <= commit_us - txts < 60_000_000
    assert query.startswith("CREATE TABLE public.later (")
    assert migration.electrified == [("public", "later")]
    assert migration.marker is None

    assert len(magic) == 0
    assert magic.marker is not None
    assert json.loads(magic.marker) == {"xid": str(magic.xid), "caused_by": "subscription:s1"}


async def test_a_child_brings_its_parent_as_a_referenced_record(db: str) -> None:
    async def work(c: Connection) -> None:
        await c.execute("INSERT INTO parent VALUES (1, 'p')")
        await c.execute("INSERT INTO child VALUES (1, 1)")

    _, (parent, child) = await stream(db, 2, work)
    assert parent.referenced == []
    assert child.changes() == [
        (
            "insert",
            "public",
            "child",
            {"id": 1, "parent_id": 1},
            None,
            [f"postgres_1@{unix_ms(child)}"],
        )
    ]
    assert child.referenced == [
        ("public", "parent", ["1"], {"id": "1", "name": "p"}, [f"postgres_1@{unix_ms(parent)}"])
    ]


async def test_a_client_write_comes_back_with_its_origin_and_time(db: str) -> None:
    client_ms = 1_704_067_200_123  # 2024-01-01 00:00:00.123 UTC

    async def work(c: Connection) -> None:
        # as the direct writer applies a client transaction (server-behaviour.md §7)
        await c.execute(
            "BEGIN; SET LOCAL electric.session_replication_role = replica;"
            "INSERT INTO electric.acknowledged_client_lsns AS t VALUES ('client_a', '\\x00000001')"
            " ON CONFLICT (client_id) DO UPDATE SET lsn = excluded.lsn;"
            "INSERT INTO items (id, v) VALUES (100, 'from a client');"
            "INSERT INTO electric.shadow__public__items"
            " (id, _tag, _is_a_delete_operation, _observed_tags, _modified_columns_bit_mask)"
            " VALUES (100, '(\"2024-01-01 00:00:00.123+00\",client_a)', false, '{}', '{t}');"
            "COMMIT"
        )

    _, (txn,) = await stream(db, 1, work)
    assert txn.origin == "client_a"
    assert unix_ms(txn) == client_ms
    assert txn.changes() == [
        (
            "insert",
            "public",
            "items",
            {"id": 100, "v": "from a client"},
            None,
            [f"client_a@{client_ms}"],
        )
    ]
    assert txn.relations == [("public", "items")]


# Every column type electrify() accepts (§4.1): SQL literal -> the decoded value.
ALL_TYPES: dict[str, tuple[str, Any]] = {
    "id": ("9223372036854775807", 9223372036854775807),
    "b": ("true", True),
    "ba": ("'\\x00ff10'", b"\x00\xff\x10"),
    "d": ("'2024-02-29'", dt.date(2024, 2, 29)),
    "f4": ("'1.5'", 1.5),
    "f8": ("'-1.25e+300'", -1.25e300),
    "i2": ("-32768", -32768),
    "i4": ("2147483647", 2147483647),
    "jb": ("""'{"a": [1, 2.5, null], "b": "\u00e9"}'""", {"a": [1, 2.5, None], "b": "\u00e9"}),
    "t": ("""'it''s "quoted", \u00e9'""", 'it\'s "quoted", \u00e9'),
    "tm": ("'13:14:15.5'", dt.time(13, 14, 15, 500000)),
    "ts": ("'2024-01-02 03:04:05.000006'", dt.datetime(2024, 1, 2, 3, 4, 5, 6)),
    "tstz": ("'2024-01-01 01:00:00+02'", dt.datetime(2023, 12, 31, 23, 0, tzinfo=UTC)),
    "u": (
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ),
    "vc": ("'varchar'", "varchar"),
    "m": ("'happy'", "happy"),
}


async def test_every_allowed_column_type_round_trips(db: str) -> None:
    columns = ", ".join(ALL_TYPES)
    values = ", ".join(sql for sql, _ in ALL_TYPES.values())

    async def work(c: Connection) -> None:
        await c.execute(
            f"INSERT INTO all_types ({columns}) VALUES ({values}), "
            f"(1, {', '.join(['NULL'] * (len(ALL_TYPES) - 1))})"
        )

    _, (txn,) = await stream(db, 1, work)
    [(_, _, _, full, _, tags), (_, _, _, nulls, _, _)] = txn.changes()
    assert full == {name: value for name, (_, value) in ALL_TYPES.items()}
    assert nulls == {name: (1 if name == "id" else None) for name in ALL_TYPES}
    assert tags == [f"postgres_1@{unix_ms(txn)}"]
