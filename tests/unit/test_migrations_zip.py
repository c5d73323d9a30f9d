"""The ``/api/migrations`` zip built from a migration history (server-behaviour.md §9)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Sequence

import pytest

from electric_trio.ddlx.history import MigrationHistory, SchemaMigration
from electric_trio.ddlx.migration import Dialect, apply_migration
from electric_trio.ddlx.schema import Schema
from electric_trio.http import Request, Response
from electric_trio.http.migrations import (
    DIALECTS,
    migration_metadata,
    migration_sql,
    migrations_response,
    migrations_zip,
    sat_op_migrate,
)
from electric_trio.satellite.messages import (
    SatOpMigrate,
    SatOpMigrateColumn,
    SatOpMigrateEnumType,
    SatOpMigrateForeignKey,
    SatOpMigratePgColumnType,
    SatOpMigrateStmt,
    SatOpMigrateTable,
    SatOpMigrateType,
    decode_message,
)

ITEMS = "CREATE TABLE items (\n  id uuid PRIMARY KEY,\n  title text NOT NULL,\n  n int4\n);\n\n"
ITEMS_INDEX = "CREATE INDEX items_title_idx ON items (title)"
TAGS = "CREATE TABLE tags (id text PRIMARY KEY, item_id uuid REFERENCES items (id))"


def make_history(*migrations: tuple[str, Sequence[str]]) -> MigrationHistory:
    """A history of ``(version, statements)`` migrations, as the replication reader builds it."""
    history = MigrationHistory()
    for txid, (version, statements) in enumerate(migrations, start=700):
        history.schema, ops = apply_migration(history.schema, version, statements)
        history.migrations.append(SchemaMigration(version, txid, tuple(statements), tuple(ops)))
    return history


@pytest.fixture
def history() -> MigrationHistory:
    return make_history(
        ("20230504114018", [ITEMS, ITEMS_INDEX]),
        ("20230608134524", [TAGS]),
    )


def request(query: str) -> Request:
    return Request(
        method="GET",
        target=f"/api/migrations?{query}",
        path="/api/migrations",
        query=query,
        headers=(),
        http_version="1.1",
    )


def unzip(body: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name).decode() for name in zf.namelist()}


# --- migration.sql -----------------------------------------------------------------------------


def test_migration_sql_sqlite(history: MigrationHistory) -> None:
    assert migration_sql(history.migrations[0].ops, "sqlite") == (
        'CREATE TABLE "items" (\n'
        '  "id" TEXT NOT NULL,\n'
        '  "title" TEXT NOT NULL,\n'
        '  "n" INTEGER,\n'
        '  CONSTRAINT "items_pkey" PRIMARY KEY ("id")\n'
        ");"
        "\n\n"
        'CREATE INDEX "items_title_idx" ON "items" ("title" ASC);'
    )


def test_migration_sql_postgresql(history: MigrationHistory) -> None:
    # the statements as captured, right-trimmed, with the `;` they lacked
    assert migration_sql(history.migrations[0].ops, "postgresql") == (
        "CREATE TABLE items (\n  id uuid PRIMARY KEY,\n  title text NOT NULL,\n  n int4\n);"
        "\n\n"
        "CREATE INDEX items_title_idx ON items (title);"
    )


def test_migration_sql_of_an_enum() -> None:
    history = make_history(("1", ["CREATE TYPE colour AS ENUM ('red', 'green')"]))
    ops = history.migrations[0].ops
    assert migration_sql(ops, "sqlite") == ""  # SQLite gets only the enum_type
    assert migration_sql(ops, "postgresql") == "CREATE TYPE colour AS ENUM ('red', 'green');"


# --- SatOpMigrate ------------------------------------------------------------------------------


def test_sat_op_migrate_carries_every_field(history: MigrationHistory) -> None:
    op = history.migrations[1].ops[0]
    assert sat_op_migrate(op, "sqlite") == SatOpMigrate(
        version="20230608134524",
        stmts=(
            SatOpMigrateStmt(
                type=SatOpMigrateType.CREATE_TABLE,
                sql='CREATE TABLE "tags" (\n'
                '  "id" TEXT NOT NULL,\n'
                '  "item_id" TEXT,\n'
                '  CONSTRAINT "tags_item_id_fkey" FOREIGN KEY ("item_id") '
                'REFERENCES "items" ("id"),\n'
                '  CONSTRAINT "tags_pkey" PRIMARY KEY ("id")\n'
                ");\n",
            ),
        ),
        table=SatOpMigrateTable(
            name="tags",
            columns=(
                SatOpMigrateColumn(
                    name="id", sqlite_type="TEXT", pg_type=SatOpMigratePgColumnType(name="text")
                ),
                SatOpMigrateColumn(
                    name="item_id",
                    sqlite_type="TEXT",
                    pg_type=SatOpMigratePgColumnType(name="uuid"),
                ),
            ),
            fks=(SatOpMigrateForeignKey(fk_cols=("item_id",), pk_table="items", pk_cols=("id",)),),
            pks=("id",),
        ),
    )
    assert sat_op_migrate(op, "postgresql").stmts == (
        SatOpMigrateStmt(type=SatOpMigrateType.CREATE_TABLE, sql=TAGS),
    )


def test_sat_op_migrate_index_has_no_table(history: MigrationHistory) -> None:
    op = sat_op_migrate(history.migrations[0].ops[1], "postgresql")
    assert op.table is None
    assert op.enum_type is None
    assert op.stmts == (SatOpMigrateStmt(type=SatOpMigrateType.CREATE_INDEX, sql=ITEMS_INDEX),)


def test_sat_op_migrate_enum_and_sizes() -> None:
    history = make_history(
        (
            "1",
            [
                "CREATE TYPE colour AS ENUM ('red', 'green')",
                "CREATE TABLE t (id int8 PRIMARY KEY, c colour, v varchar(10))",
                "ALTER TABLE t ADD COLUMN w text",
            ],
        )
    )
    enum_op, table_op, add_op = history.migrations[0].ops
    sqlite_enum = sat_op_migrate(enum_op, "sqlite")
    assert sqlite_enum.stmts == ()
    assert sqlite_enum.enum_type == SatOpMigrateEnumType(name="colour", values=("red", "green"))
    assert sat_op_migrate(enum_op, "postgresql").stmts[0].type == (
        SatOpMigrateType.CREATE_ENUM_TYPE
    )
    table = sat_op_migrate(table_op, "sqlite").table
    assert table is not None
    assert [(c.name, c.sqlite_type, c.pg_type) for c in table.columns] == [
        ("id", "INTEGER", SatOpMigratePgColumnType(name="int8")),
        ("c", "TEXT", SatOpMigratePgColumnType(name="colour")),
        ("v", "TEXT(10)", SatOpMigratePgColumnType(name="varchar", size=(10,))),
        ("w", "TEXT", SatOpMigratePgColumnType(name="text")),  # the table after the migration
    ]
    add = sat_op_migrate(add_op, "sqlite")
    assert add.stmts == (
        SatOpMigrateStmt(
            type=SatOpMigrateType.ALTER_ADD_COLUMN, sql='ALTER TABLE "t" ADD COLUMN "w" TEXT;\n'
        ),
    )
    assert add.table == table


# --- metadata.json -----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_metadata_form_and_ops(history: MigrationHistory, dialect: Dialect) -> None:
    migration = history.migrations[0]
    text = migration_metadata(migration.version, migration.ops, dialect)
    metadata = json.loads(text)
    assert list(metadata) == ["format", "ops", "protocol_version", "version"]
    assert metadata["format"] == "SatOpMigrate"
    assert metadata["protocol_version"] == "Electric.Satellite"
    assert metadata["version"] == "20230504114018"
    assert text == json.dumps(metadata, separators=(",", ":"))  # compact
    assert text.startswith('{"format":"SatOpMigrate","ops":["')
    assert text.endswith('"],"protocol_version":"Electric.Satellite","version":"20230504114018"}')
    decoded = [decode_message(SatOpMigrate, base64.b64decode(op)) for op in metadata["ops"]]
    assert decoded == [sat_op_migrate(op, dialect) for op in migration.ops]
    assert [op.version for op in decoded] == ["20230504114018"] * 2


# --- the zip -----------------------------------------------------------------------------------


def test_zip_layout(history: MigrationHistory) -> None:
    body = migrations_zip(history.migrations, "sqlite")
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == [
        "20230504114018/migration.sql",
        "20230504114018/metadata.json",
        "20230608134524/migration.sql",
        "20230608134524/metadata.json",
    ]
    for info in infos:
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert info.external_attr >> 16 == 0o100644
        assert not info.is_dir()
    files = unzip(body)
    assert files["20230504114018/migration.sql"] == migration_sql(
        history.migrations[0].ops, "sqlite"
    )
    assert files["20230608134524/metadata.json"] == migration_metadata(
        "20230608134524", history.migrations[1].ops, "sqlite"
    )
    # the same history gives the same bytes
    assert migrations_zip(history.migrations, "sqlite") == body
    assert migrations_zip(history.migrations, "postgresql") != body


def test_zip_keeps_a_migration_without_client_ops() -> None:
    history = make_history(
        ("1", [ITEMS, ITEMS_INDEX]),
        ("2", ["DROP INDEX items_title_idx"]),
    )
    files = unzip(migrations_zip(history.migrations, "sqlite"))
    assert files["2/migration.sql"] == ""
    assert json.loads(files["2/metadata.json"])["ops"] == []


# --- the handler -------------------------------------------------------------------------------


async def answer(query: str, history: MigrationHistory | None) -> Response:
    return await migrations_response(request(query), history)


async def test_all_migrations_without_or_with_an_empty_version(history: MigrationHistory) -> None:
    for query in ("dialect=sqlite", "dialect=sqlite&version=", "version=&dialect=sqlite"):
        response = await answer(query, history)
        assert response.status == 200
        assert response.content_type == "application/zip"
        assert response.body == migrations_zip(history.migrations, "sqlite")


async def test_version_filter(history: MigrationHistory) -> None:
    response = await answer("dialect=postgresql&version=20230504114018", history)
    assert response.status == 200
    assert list(unzip(response.body)) == [
        "20230608134524/migration.sql",
        "20230608134524/metadata.json",
    ]
    assert unzip(response.body)["20230608134524/migration.sql"] == TAGS + ";"


@pytest.mark.parametrize("version", ["20230608134524", "20240101000000", "2023"])
async def test_nothing_after_the_version_is_204(history: MigrationHistory, version: str) -> None:
    response = await answer(f"dialect=sqlite&version={version}", history)
    assert response == Response(status=204, body=b"", content_type=None)


async def test_empty_history_is_204() -> None:
    response = await answer("dialect=postgresql", MigrationHistory())
    assert (response.status, response.body, response.content_type) == (204, b"", None)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "missing required parameter 'dialect'"),
        ("version=1", "missing required parameter 'dialect'"),
        ("dialect=mysql", 'unsupported dialect "mysql"'),
        ("dialect=", 'unsupported dialect ""'),
        ("dialect=SQLite", 'unsupported dialect "SQLite"'),
        ("dialect=a%22b%5Cc%0A", 'unsupported dialect "a\\"b\\\\c\\n"'),
    ],
)
async def test_bad_dialect_is_403(history: MigrationHistory, query: str, error: str) -> None:
    response = await answer(query, history)
    assert response.status == 403
    assert response.content_type == "application/json"
    assert json.loads(response.body) == {"error": error}


async def test_bad_dialect_exact_body(history: MigrationHistory) -> None:
    response = await answer("dialect=x", history)
    assert response.body == b'{"error":"unsupported dialect \\"x\\""}'
    response = await answer("", history)
    assert response.body == b'{"error":"missing required parameter \'dialect\'"}'


async def test_the_last_of_a_repeated_parameter_counts(history: MigrationHistory) -> None:
    assert (await answer("dialect=x&dialect=sqlite", history)).status == 200
    assert (await answer("dialect=sqlite&dialect=x", history)).status == 403
    response = await answer("dialect=sqlite&version=20230504114018&version=", history)
    assert len(unzip(response.body)) == 4


async def test_not_ready_is_503() -> None:
    response = await answer("dialect=sqlite", None)
    assert response == Response.text(503, "Initializing connection to Posgres...")
    failed = await migrations_response(request("dialect=sqlite"), None, lambda: "failed")
    assert failed == Response.text(503, "Database connection failure.")
    # a bad request is still a bad request
    assert (await answer("dialect=x", None)).status == 403


def test_schema_is_untouched_by_building(history: MigrationHistory) -> None:
    before = history.schema
    migrations_zip(history.migrations, "postgresql")
    assert history.schema is before
    assert isinstance(before, Schema)
