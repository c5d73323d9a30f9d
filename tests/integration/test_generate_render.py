"""The generator's output for awkward schemas, without a service: migrations translated by our
ddlx and zipped as ``/api/migrations`` zips them. Two foreign keys to one table, a
self-reference, columns named like Python keywords or with spaces, an enum: the module still
passes mypy --strict and ruff, names relations as the official generator does, and its typed
tables read and write such columns."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_generate import check_types, load, mypy_cache

from electric_trio.client.data import SqliteExecutor
from electric_trio.ddlx.migration import MigrateOp, apply_migration
from electric_trio.ddlx.schema import Schema
from electric_trio.generate import GenerateError, render
from electric_trio.generate._fetch import FetchedMigration, read_zip
from electric_trio.http.migrations import migrations_zip

__all__ = ["mypy_cache"]


class _Migration:
    def __init__(self, version: str, ops: list[MigrateOp]) -> None:
        self.version = version
        self.ops = ops


def fetched(*migrations: tuple[str, list[str]]) -> list[FetchedMigration]:
    schema = Schema()
    made: list[Any] = []
    for version, statements in migrations:
        schema, ops = apply_migration(schema, version, statements)
        made.append(_Migration(version, ops))
    return read_zip(migrations_zip(made, "sqlite"))


MIGRATIONS = (
    (
        "1",
        [
            "CREATE TYPE mood AS ENUM ('ok', 'meh')",
            'CREATE TABLE people (id text PRIMARY KEY, "class" text NOT NULL,'
            ' "full name" text, mood mood, boss_id text REFERENCES people (id), "__x" int2,'
            ' "the date this person was last seen walking past the window" timestamptz)',
            'CREATE TABLE "table" (id text PRIMARY KEY)',
        ],
    ),
    (
        "2",
        [
            "CREATE TABLE tasks (id int4 PRIMARY KEY,"
            " owner_id text NOT NULL REFERENCES people (id),"
            " reviewer_id text REFERENCES people (id), at timestamp, t timetz, price float8)",
        ],
    ),
)


async def test_awkward_schema_module(tmp_path: Path, mypy_cache: Path) -> None:
    out = tmp_path / "awkward.py"
    out.write_text(render(fetched(*MIGRATIONS), target="python", source="test", out=out))
    await check_types(out, mypy_cache)
    module = load(out)
    people, tasks = module.schema.table("people"), module.schema.table("tasks")
    assert [(r.field, r.table, r.many, r.name) for r in tasks.relations] == [
        ("people", "people", False, "PeopleToTasks"),
        ("people_reviewer_id", "people", False, "tasks_reviewer_idToPeople"),
    ]
    assert [(r.field, r.table, r.many, r.name) for r in people.relations] == [
        ("people", "people", False, "PeopleToPeople"),
        ("other_people_boss_id", "people", True, "PeopleToPeople"),
        ("tasks", "tasks", True, "PeopleToTasks"),
        ("tasks_reviewer_id", "tasks", True, "tasks_reviewer_idToPeople"),
    ]
    assert [(c.name, c.nullable) for c in people.columns] == [
        ("id", False),
        ("class", False),
        ("full name", True),
        ("mood", True),
        ("boss_id", True),
        ("__x", True),
        ("the date this person was last seen walking past the window", True),
    ]
    assert [m.version for m in module.migrations] == ["1", "2"]

    path = tmp_path / "local.db"
    with sqlite3.connect(path) as conn:
        for migration in module.migrations:
            for statement in migration.statements[:1]:  # the tables (no oplog here)
                conn.execute(statement)
    executor = SqliteExecutor(path)
    db = module.Electric(executor)
    boss = await db.people.create(module.People(id="b", class_="x", full_name="The Boss"))
    await db.people.create({"id": "e", "class": "y", "mood": "ok", "boss_id": "b", "__x": 3})
    assert (await db.people.find_unique(where={"id": "e"})).n__x == 3
    # a table named like a method of the client class gets another attribute
    assert db.table_.name == "table"
    assert db.table("table") is db.table_
    await db.tasks.create({"id": 1, "owner_id": "e", "reviewer_id": "b", "price": 1.5})
    assert boss.full_name == "The Boss"
    assert sqlite3.connect(path).execute('SELECT "class", "full name" FROM people').fetchall()[
        0
    ] == ("x", "The Boss")
    found = await db.people.find_unique(
        where={"id": "b"}, include={"other_people_boss_id": True, "tasks_reviewer_id": True}
    )
    assert [p.id for p in found.other_people_boss_id] == ["e"]
    assert [t.id for t in found.tasks_reviewer_id] == [1]
    assert found.tasks is msgspec_unset()
    task = await db.tasks.find_first(include={"people": True, "people_reviewer_id": True})
    assert (task.people.id, task.people_reviewer_id.id) == ("e", "b")
    executor.close()


def msgspec_unset() -> Any:
    import msgspec

    return msgspec.UNSET


def test_typescript_output_names_relations_and_types() -> None:
    text = render(fetched(*MIGRATIONS), target="typescript", source="test", out=Path("x.mjs"))
    assert 'new Relation("people_reviewer_id", "reviewer_id", "id", "people",' in text
    assert 'new Relation("tasks_reviewer_id", "", "", "tasks", "tasks_reviewer_idToPeople",' in text
    assert '["at", "TIMESTAMP"], ["t", "TIMETZ"], ["price", "FLOAT8"]' in text
    assert '["id", "owner_id"]' in text  # not null
    assert "function valueSchema(type)" in text
    typed = render(fetched(*MIGRATIONS), target="typescript", source="test", out=Path("x.ts"))
    assert "function valueSchema(type: string): z.ZodTypeAny" in typed
    assert "export type Electric = ElectricClient<typeof schema>" in typed
    assert "ElectricClient" not in text


def test_migrations_sqlite_refuses_are_a_generate_error() -> None:
    broken = fetched(("1", ["CREATE TABLE a (id text PRIMARY KEY)"]))
    op = broken[0].ops[0]
    stmt = type(op.stmts[0])(type=op.stmts[0].type, sql="CREATE TABLE nonsense (")
    bad = [FetchedMigration("1", (type(op)(version="1", stmts=(stmt,), table=op.table),))]
    with pytest.raises(GenerateError, match="migration 1: SQLite refuses"):
        render(bad, target="python", source="test", out=Path("x.py"))


def test_output_path_takes_a_file_or_a_folder(tmp_path: Path) -> None:
    from electric_trio.generate._cli import output_path

    assert output_path(None, "python") == Path("electric_client.py")
    assert output_path(None, "typescript") == Path("src/generated/client/index.mjs")
    assert output_path(str(tmp_path / "app.py"), "python") == tmp_path / "app.py"
    assert output_path(str(tmp_path), "python") == tmp_path / "electric_client.py"
    # the official generator's ELECTRIC_CLIENT_PATH: a folder, perhaps not made yet
    assert output_path("src/generated/client", "typescript") == Path(
        "src/generated/client/index.mjs"
    )
    assert output_path("client.ts", "typescript") == Path("client.ts")
