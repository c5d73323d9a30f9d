"""Local writes through ``client.conn``: the write and its oplog snapshot commit together, other
statements still run, and an application's own transaction is snapshotted once it commits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from electric_trio.client import electrify
from electric_trio.client.schema import Column, DbSchema, Migration, TableSchema
from electric_trio.client.triggers import triggers_for

ITEMS = TableSchema(
    name="items", columns=(Column("id", "text", False), Column("n", "int4")), primary_key=("id",)
)
SCHEMA = DbSchema(
    tables={"items": ITEMS},
    migrations=(
        Migration(
            "20240101000000",
            (
                "CREATE TABLE items (id TEXT PRIMARY KEY NOT NULL, n INTEGER)",
                *triggers_for(ITEMS, "main"),
            ),
        ),
    ),
)
OPLOG = "SELECT primaryKey, timestamp IS NOT NULL AS stamped FROM _electric_oplog ORDER BY rowid"


async def test_a_write_and_its_snapshot_are_one_transaction(tmp_path: Path) -> None:
    async with await electrify(tmp_path / "a.db", SCHEMA) as client:
        with client.notifier.subscribe() as changes:
            assert await client.conn.execute("INSERT INTO items VALUES ('a', 1)") == 1
            assert changes.receive_nowait() == {"items"}
        assert await client.conn.query(OPLOG) == [{"primaryKey": '{"id":"a"}', "stamped": 1}]
        shadow = await client.conn.query("SELECT primaryKey, tags FROM _electric_shadow")
        assert shadow[0]["primaryKey"] == '{"id":"a"}'
        assert shadow[0]["tags"].startswith(f'["{client.client_id}@')
        # a failing write leaves nothing behind, nor an open transaction
        with pytest.raises(sqlite3.IntegrityError):
            await client.conn.execute("INSERT INTO items VALUES ('a', 2)")
        assert len(await client.conn.query(OPLOG)) == 1
        # statements that may not run inside a transaction still do
        await client.conn.execute("PRAGMA user_version = 7")
        assert await client.conn.query("PRAGMA user_version") == [{"user_version": 7}]
        await client.conn.execute("VACUUM")


async def test_an_applications_own_transaction_is_snapshotted_once_committed(
    tmp_path: Path,
) -> None:
    async with await electrify(tmp_path / "a.db", SCHEMA) as client:
        await client.conn.execute("BEGIN")
        await client.conn.execute("INSERT INTO items VALUES ('b', 2)")
        assert await client.conn.query(OPLOG) == [{"primaryKey": '{"id":"b"}', "stamped": 0}]
        await client.conn.execute("COMMIT")
        assert await client.conn.query(OPLOG) == [{"primaryKey": '{"id":"b"}', "stamped": 1}]
        # a rolled-back transaction leaves no oplog entry behind
        await client.conn.execute("BEGIN")
        await client.conn.execute("INSERT INTO items VALUES ('c', 3)")
        await client.conn.execute("ROLLBACK")
        assert len(await client.conn.query(OPLOG)) == 1
