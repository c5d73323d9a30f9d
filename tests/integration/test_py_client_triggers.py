"""The Python client's local SQL is the official client's: the trigger statements and built-in
migration '0' compared byte for byte with electric-sql@0.12.1's own generator run in Node, and the
triggers doing their job in SQLite."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from electric_trio.client.schema import Column, ForeignKey, TableSchema
from electric_trio.client.triggers import (
    CompoundForeignKeyError,
    initial_migration_statements,
    triggers_for,
)

_SCRIPT = """
import { generateTriggersForTable } from './node_modules/electric-sql/dist/satellite/process.js';
import builder from './node_modules/electric-sql/dist/migrators/query-builder/sqliteBuilder.js';
import { buildInitialMigration } from './node_modules/electric-sql/dist/migrators/schema.js';
import { readFileSync } from 'node:fs';
const tables = JSON.parse(readFileSync(0, 'utf8'));
console.log(JSON.stringify({
  tables: tables.map(t => generateTriggersForTable(t, builder).map(s => s.sql)),
  initial: buildInitialMigration(builder).migrations[0].statements,
}));
"""

TABLES = [
    TableSchema(
        name="items",
        columns=(
            Column("id", "text", False),
            Column("f", "float8"),
            Column("r", "float4"),
            Column("big", "int8"),
            Column("blob", "bytea"),
            Column("n", "int4"),
            Column("when", "timestamptz"),
            Column("parent_id", "uuid"),
        ),
        primary_key=("id",),
        foreign_keys=(ForeignKey(("parent_id",), "parents", ("pid",)),),
    ),
    TableSchema(
        name="pairs",
        columns=(Column("b", "int8", False), Column("a", "text", False), Column("v", "jsonb")),
        primary_key=("b", "a"),
    ),
    TableSchema(
        name="parents",
        columns=(Column("pid", "uuid", False), Column("name", "text")),
        primary_key=("pid",),
    ),
    TableSchema(
        name="kids",
        columns=(
            Column("id", "int4", False),
            Column("p", "int8"),
            Column("q", "text"),
        ),
        primary_key=("id",),
        foreign_keys=(
            ForeignKey(("p",), "nums", ("id",)),
            ForeignKey(("q",), "parents", ("name",)),
        ),
    ),
]


def _migrate_table(t: TableSchema) -> dict[str, object]:
    """The table as SatOpMigrate carries it (what the official client generates triggers from)."""
    return {
        "name": t.name,
        "columns": [{"name": c.name, "pgType": {"name": c.pg_type}} for c in t.columns],
        "pks": list(t.primary_key),
        "fks": [
            {"fkCols": list(fk.columns), "pkTable": fk.parent, "pkCols": list(fk.parent_columns)}
            for fk in t.foreign_keys
        ],
    }


@pytest.fixture(scope="module")
def official(node_client_dir: Path) -> dict[str, list[list[str]] | list[str]]:
    script = node_client_dir / "_py_client_triggers.mjs"
    script.write_text(_SCRIPT)
    try:
        done = subprocess.run(
            ["node", str(script)],
            input=json.dumps([_migrate_table(t) for t in TABLES]),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            cwd=node_client_dir,
        )
    finally:
        script.unlink()
    result: dict[str, list[list[str]] | list[str]] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("index", range(len(TABLES)), ids=[t.name for t in TABLES])
def test_triggers_match_the_official_generator(
    official: dict[str, list[list[str]]], index: int
) -> None:
    assert triggers_for(TABLES[index]) == official["tables"][index]


def test_initial_migration_matches_the_official_one(official: dict[str, list[str]]) -> None:
    assert initial_migration_statements() == official["initial"]


def test_compound_foreign_keys_are_refused() -> None:
    table = TableSchema(
        name="c",
        columns=(Column("a", "text"), Column("b", "text")),
        primary_key=("a",),
        foreign_keys=(ForeignKey(("a", "b"), "p", ("x", "y")),),
    )
    with pytest.raises(CompoundForeignKeyError, match="compound foreign keys"):
        triggers_for(table)


def test_triggers_record_writes_in_the_oplog() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    for stmt in initial_migration_statements():
        db.execute(stmt)
    db.execute("CREATE TABLE parents (pid TEXT PRIMARY KEY, name TEXT)")
    db.execute(
        'CREATE TABLE items (id TEXT PRIMARY KEY, f REAL, r REAL, big INTEGER, blob BLOB, n INTEGER, "when" TEXT, parent_id TEXT)'  # noqa: E501
    )
    for stmt in triggers_for(TABLES[2]) + triggers_for(TABLES[0]):
        db.execute(stmt)
    db.execute("INSERT INTO parents VALUES ('p1', 'P')")
    db.execute(
        "INSERT INTO items VALUES ('a', 1.5, 0.25, 9007199254740993, x'00ff', 3, NULL, 'p1')"
    )
    db.execute("UPDATE items SET n = 4 WHERE id = 'a'")
    with pytest.raises(sqlite3.IntegrityError, match="column id as it belongs to the primary"):
        db.execute("UPDATE items SET id = 'b' WHERE id = 'a'")
    db.execute("DELETE FROM items WHERE id = 'a'")
    rows = db.execute(
        "SELECT tablename, optype, primaryKey, newRow, oldRow, timestamp FROM _electric_oplog"
        " ORDER BY rowid"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("parents", "INSERT", '{"pid":"p1"}'),
        # SQLite fires the triggers of one statement newest first: compensation, then the op
        ("parents", "COMPENSATION", '{"pid":"p1"}'),
        ("items", "INSERT", '{"id":"a"}'),
        ("parents", "COMPENSATION", '{"pid":"p1"}'),
        ("items", "UPDATE", '{"id":"a"}'),
        ("items", "DELETE", '{"id":"a"}'),
    ]
    inserted = json.loads(rows[2][3])
    assert inserted == {
        "big": "9007199254740993",
        "blob": "00FF",
        "f": "1.5",
        "id": "a",
        "n": 3,
        "parent_id": "p1",
        "r": "0.25",
        "when": None,
    }
    assert rows[2][4] is None
    assert rows[5][3] is None
    assert json.loads(rows[5][4])["n"] == 4
    assert all(r[5] is None for r in rows)
    # flag 0 (how incoming writes are applied): nothing is recorded
    db.execute("UPDATE _electric_trigger_settings SET flag = 0 WHERE tablename = 'items'")
    db.execute("INSERT INTO items (id) VALUES ('z')")
    assert db.execute("SELECT count(*) FROM _electric_oplog").fetchone() == (6,)
