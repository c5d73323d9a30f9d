"""The electrified schema across migrations: updates, JSON storage, errors."""

from __future__ import annotations

import json

import msgspec
import pytest

from electric_trio.ddlx.migration import (
    MigrateForeignKey,
    MigrateStmt,
    StmtType,
    apply_migration,
)
from electric_trio.ddlx.schema import (
    CheckConstraint,
    Column,
    ColumnType,
    EnumType,
    ForeignKey,
    Index,
    IndexColumn,
    Schema,
    SchemaMismatchError,
    Table,
    UnsupportedDDLError,
    schema_from_json,
    schema_to_json,
)

V1 = [
    "CREATE TYPE public.status AS ENUM ('open', 'closed');",
    """
    CREATE TABLE public.projects (
        id uuid PRIMARY KEY,
        name text NOT NULL,
        status status NOT NULL
    );
    """,
    "CREATE INDEX projects_name_idx ON public.projects (name);",
]
V2 = [
    """
    CREATE TABLE issues (
        id uuid NOT NULL,
        project_id uuid NOT NULL REFERENCES projects (id),
        title varchar NOT NULL,
        created_at timestamptz,
        CONSTRAINT issues_pkey PRIMARY KEY (id)
    );
    """,
    "ALTER TABLE issues ADD COLUMN priority int2, ADD COLUMN data jsonb;",
    "CREATE UNIQUE INDEX ON issues (project_id, lower(title) DESC) WHERE created_at IS NOT NULL;",
]
V3 = [
    "ALTER TABLE projects ADD COLUMN owner_id uuid REFERENCES projects;",
    "DROP INDEX projects_name_idx;",
]


def build() -> tuple[Schema, Schema, Schema]:
    s1, _ = apply_migration(Schema(), "1", V1)
    s2, _ = apply_migration(s1, "2", V2)
    s3, _ = apply_migration(s2, "3", V3)
    return s1, s2, s3


def test_migrations_in_sequence() -> None:
    s1, s2, s3 = build()
    assert s1.enums == (EnumType("public", "status", ("open", "closed")),)
    projects = s1.table("public", "projects")
    assert projects == Table(
        schema="public",
        name="projects",
        columns=(
            Column("id", ColumnType("uuid"), not_null=True),
            Column("name", ColumnType("text"), not_null=True),
            Column("status", ColumnType("status"), not_null=True),
        ),
        primary_key=("id",),
        indexes=(Index("projects_name_idx", (IndexColumn("name"),)),),
    )
    assert s1.enum_type("status") == s1.enum_type("public.status") == s1.enums[0]

    issues = s2.table("public", "issues")
    assert issues is not None
    assert issues.column_names == (
        "id",
        "project_id",
        "title",
        "created_at",
        "priority",
        "data",
    )
    assert [c.not_null for c in issues.columns] == [True, True, True, False, False, False]
    assert issues.primary_key == ("id",)
    assert issues.foreign_keys == (
        ForeignKey("issues_project_id_fkey", ("project_id",), "public", "projects", ("id",)),
    )
    assert issues.indexes == (
        Index(
            name="issues_project_id_lower_idx",
            columns=(
                IndexColumn(name="project_id"),
                IndexColumn(expression="lower(title)", descending=True, nulls_first=True),
            ),
            unique=True,
            where="created_at IS NOT NULL",
        ),
    )

    projects = s3.table("public", "projects")
    assert projects is not None
    assert projects.column_names == ("id", "name", "status", "owner_id")
    # REFERENCES without columns: the referenced table's primary key
    assert projects.foreign_keys == (
        ForeignKey("projects_owner_id_fkey", ("owner_id",), "public", "projects", ("id",)),
    )
    assert projects.indexes == ()
    # earlier versions are values, untouched by later migrations
    assert s1.table("public", "projects") is not None
    assert s1.table("public", "issues") is None
    assert len(s2.tables) == 2


def test_ops_of_a_migration() -> None:
    s1, _ = apply_migration(Schema(), "1", V1)
    _, ops = apply_migration(s1, "2", V2)
    assert [(op.version, op.statement_index) for op in ops] == [("2", 0), ("2", 1), ("2", 2)]
    create, alter, index = ops
    # the table sent with CREATE TABLE is the table after the whole migration
    assert create.table is not None
    assert [c.name for c in create.table.columns][-2:] == ["priority", "data"]
    assert create.table.fks == (MigrateForeignKey(("project_id",), "projects", ("id",)),)
    assert [s.type for s in alter.sqlite] == [StmtType.ALTER_ADD_COLUMN] * 2
    assert index.sqlite == (
        MigrateStmt(
            StmtType.CREATE_INDEX,
            'CREATE UNIQUE INDEX "issues_project_id_lower_idx" ON "issues" '
            '("project_id" ASC, lower("title") DESC) WHERE "created_at" IS NOT NULL;\n',
        ),
    )
    _, ops = apply_migration(apply_migration(s1, "2", V2)[0], "3", V3)
    # DROP INDEX is applied but not sent
    assert [op.statement_index for op in ops] == [0]


def test_enum_and_table_in_one_statement_give_one_op_each() -> None:
    text = "CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE m (id int8 PRIMARY KEY, v mood);"
    _, ops = apply_migration(Schema(), "1", [text])
    assert [op.statement_index for op in ops] == [0, 0]
    assert ops[0].enum_type is not None
    assert ops[0].table is None
    assert ops[1].table is not None
    assert ops[1].enum_type is None


def test_no_op_alter_commands_beside_add_column() -> None:
    schema, _ = apply_migration(Schema(), "1", ["CREATE TABLE t (id int8 PRIMARY KEY);"])
    statement = "ALTER TABLE t ENABLE ALWAYS TRIGGER foo, ADD COLUMN v text, OWNER TO bob;"
    schema, (op,) = apply_migration(schema, "2", [statement])
    assert op.sqlite == (
        MigrateStmt(StmtType.ALTER_ADD_COLUMN, 'ALTER TABLE "t" ADD COLUMN "v" TEXT;\n'),
    )
    assert op.postgresql == (
        MigrateStmt(StmtType.ALTER_ADD_COLUMN, "ALTER TABLE t ADD COLUMN v text"),
    )
    _, ops = apply_migration(schema, "3", ["ALTER TABLE t DISABLE TRIGGER ALL"])
    assert ops == []


def test_if_not_exists_and_if_exists() -> None:
    schema, _ = apply_migration(Schema(), "1", ["CREATE TABLE t (id int8 PRIMARY KEY, v text);"])
    again, ops = apply_migration(
        schema,
        "2",
        [
            "CREATE TABLE IF NOT EXISTS t (id int8 PRIMARY KEY, w text);",
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS v text;",
            "ALTER TABLE IF EXISTS missing ADD COLUMN x text;",
            "CREATE INDEX t_v ON t (v); CREATE INDEX IF NOT EXISTS t_v ON t (v);",
        ],
    )
    table = again.table("public", "t")
    assert table is not None
    assert table.column_names == ("id", "v")
    assert [i.name for i in table.indexes] == ["t_v"]
    # the CREATE … IF NOT EXISTS statements still reach clients, where they are no-ops too
    assert [op.statement_index for op in ops] == [0, 3]


def test_unnamed_indexes_are_named_like_postgres() -> None:
    schema, ops = apply_migration(
        Schema(),
        "1",
        [
            "CREATE TABLE t (id int8 PRIMARY KEY, a text, b text);",
            "CREATE INDEX ON t (a);",
            "CREATE INDEX ON t (a);",
            "CREATE INDEX ON t (a, b);",
            "CREATE INDEX ON t ((a || b));",
        ],
    )
    table = schema.table("public", "t")
    assert table is not None
    assert [i.name for i in table.indexes] == ["t_a_idx", "t_a_idx1", "t_a_b_idx", "t_expr_idx"]
    assert table.indexes[3].columns == (IndexColumn(expression="a || b"),)
    assert ops[2].sqlite[0].sql == 'CREATE INDEX "t_a_idx1" ON "t" ("a" ASC);\n'


def test_foreign_keys_kept_in_the_originals_order() -> None:
    schema, _ = apply_migration(
        Schema(),
        "1",
        [
            "CREATE TABLE p (id int8 PRIMARY KEY);",
            "CREATE TABLE c (id int8 PRIMARY KEY, z int8 REFERENCES p (id));",
            "ALTER TABLE c ADD COLUMN a int8 REFERENCES p (id);",
        ],
    )
    table = schema.table("public", "c")
    assert table is not None
    assert [fk.columns for fk in table.foreign_keys] == [("a",), ("z",)]


def test_schema_mismatches() -> None:
    schema, _ = apply_migration(Schema(), "1", ["CREATE TABLE t (id int8 PRIMARY KEY, v text);"])
    for statement in [
        "CREATE TABLE t (id int8 PRIMARY KEY);",
        "ALTER TABLE nope ADD COLUMN x text;",
        "ALTER TABLE t ADD COLUMN v text;",
        "CREATE INDEX ON nope (x);",
        "CREATE INDEX i ON t (v); CREATE INDEX i ON t (v);",
    ]:
        with pytest.raises(SchemaMismatchError):
            apply_migration(schema, "2", [statement])
    # a table in another schema is another table
    other, _ = apply_migration(schema, "2", ["CREATE TABLE other.t (id int8 PRIMARY KEY);"])
    assert {(t.schema, t.name) for t in other.tables} == {("public", "t"), ("other", "t")}


def test_failed_migration_leaves_the_schema_alone() -> None:
    schema, _ = apply_migration(Schema(), "1", ["CREATE TABLE t (id int8 PRIMARY KEY);"])
    before = schema_to_json(schema)
    with pytest.raises(UnsupportedDDLError):
        apply_migration(schema, "2", ["ALTER TABLE t ADD COLUMN v text;", "DROP TABLE t;"])
    assert schema_to_json(schema) == before


def test_unknown_index_drop_is_ignored() -> None:
    schema, _ = apply_migration(Schema(), "1", ["CREATE TABLE t (id int8 PRIMARY KEY);"])
    same, ops = apply_migration(schema, "2", ["DROP INDEX IF EXISTS public.nothing, other;"])
    assert same == schema
    assert ops == []


def test_enum_redefinition_replaces() -> None:
    schema, _ = apply_migration(Schema(), "1", ["CREATE TYPE e AS ENUM ('a');"])
    schema, _ = apply_migration(schema, "2", ["CREATE TYPE public.e AS ENUM ('b', 'c');"])
    assert schema.enums == (EnumType("public", "e", ("b", "c")),)
    assert schema.enum_type("other.e") is None


# --- JSON storage ----------------------------------------------------------------------------


def test_json_round_trip() -> None:
    *_, schema = build()
    schema = schema.with_table_oid("public", "issues", 16402)
    data = schema_to_json(schema)
    assert schema_from_json(data) == schema
    assert schema_from_json(data.decode()) == schema
    doc = json.loads(data)
    assert set(doc) == {"tables", "enums"}
    issues = next(t for t in doc["tables"] if t["name"] == "issues")
    assert issues["oid"] == 16402
    assert issues["columns"][2] == {
        "name": "title",
        "type": {"name": "varchar", "array": [], "size": []},
        "not_null": True,
        "default": None,
    }
    assert schema.table_by_oid(16402) is schema.table("public", "issues")


def test_json_round_trip_of_every_field() -> None:
    schema = Schema(
        tables=(
            Table(
                schema="public",
                name="t",
                oid=1,
                columns=(
                    Column("id", ColumnType("int8"), not_null=True),
                    Column("tags", ColumnType("varchar", (-1, 3), (20,)), default="'{}'"),
                ),
                checks=(CheckConstraint("c", "CHECK ((id > 0))"),),
                primary_key=("id",),
                foreign_keys=(
                    ForeignKey(
                        "fk",
                        ("id",),
                        "public",
                        "u",
                        ("id",),
                        on_delete="CASCADE",
                        on_update="SET_NULL",
                        match="FULL",
                        deferrable=True,
                        initially_deferred=True,
                    ),
                ),
                indexes=(
                    Index(
                        "i",
                        (IndexColumn(expression="lower(tags)", descending=True),),
                        unique=True,
                        including=("id",),
                        where="id > 0",
                        using="gin",
                        oid=2,
                    ),
                ),
            ),
        ),
        enums=(EnumType("public", "e", ("x", "y")),),
    )
    assert schema_from_json(schema_to_json(schema)) == schema
    assert schema_from_json(b"{}") == Schema()


def test_json_of_another_shape_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError):
        schema_from_json(b'{"tables": [{"name": "t"}]}')


def test_with_table_oid_of_unknown_table() -> None:
    with pytest.raises(SchemaMismatchError):
        Schema().with_table_oid("public", "t", 1)
