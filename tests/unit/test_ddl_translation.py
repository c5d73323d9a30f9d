"""Captured Postgres DDL -> the SQLite and Postgres dialects clients receive.

Expected strings marked "upstream" are copied from the original service's own tests at commit
e0365c6c2 (components/electric/test/electric/postgres/dialect/sqlite_test.exs,
.../postgres/replication_test.exs, .../electric/plug_test.exs); like those tests, every SQLite
statement produced here is also executed in SQLite to prove it runs.
"""

from __future__ import annotations

import sqlite3

import pytest

from electric_trio.ddlx.dialect import postgres_type, sqlite_type, translate_to_sqlite
from electric_trio.ddlx.migration import (
    Dialect,
    MigrateColumn,
    MigrateEnumType,
    MigrateForeignKey,
    MigrateOp,
    MigrateStmt,
    MigrateTable,
    PgColumnType,
    StmtType,
    apply_migration,
)
from electric_trio.ddlx.schema import (
    ColumnType,
    DDLError,
    Schema,
    TranslationError,
    UnsupportedDDLError,
)
from electric_trio.errors import ElectricError


def to_sqlite(sql: str) -> list[str]:
    """Translate, then run every statement in a fresh SQLite database (in order)."""
    statements = translate_to_sqlite(sql)
    db = sqlite3.connect(":memory:")
    try:
        for statement in statements:
            db.executescript(statement)
    finally:
        db.close()
    return statements


def migrate(*statements: str, schema: Schema | None = None) -> list[MigrateOp]:
    _, ops = apply_migration(schema or Schema(), "1", statements)
    return ops


def one_op(statement: str, schema: Schema | None = None) -> MigrateOp:
    (op,) = migrate(statement, schema=schema)
    return op


# --- column types ----------------------------------------------------------------------------

# upstream "column type mapping": the original's type families, scalar, array and sized
INTEGER_TYPES = ["smallint", "int2", "integer", "int", "int4", "bigint", "int8"]
FLOAT_TYPES = ["decimal", "numeric", "real", "float", "float4", "double precision", "float8"]
FLOAT_TYPES += ["money"]
TEXT_TYPES = ["character varying", "varchar", "character", "char", "text", "bpchar"]
DATETIME_TYPES = ["date", "timetz", "time", "time without time zone", "time with time zone"]
DATETIME_TYPES += ["timestamptz", "timestamp", "timestamp without time zone"]
DATETIME_TYPES += ["timestamp with time zone"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (INTEGER_TYPES, "INTEGER"),
        (FLOAT_TYPES, "REAL"),
        (TEXT_TYPES, "TEXT"),
        (["bytea"], "BLOB"),
        (DATETIME_TYPES, "TEXT"),
        (["boolean", "bool"], "INTEGER"),
        (["uuid"], "TEXT"),
        (["json", "jsonb"], "TEXT_JSON"),
        (["colour", "public.colour", "interval"], "TEXT"),
        (["serial", "serial4", "serial8"], "INTEGER"),
    ],
)
def test_sqlite_type_families(names: list[str], expected: str) -> None:
    for name in names:
        assert sqlite_type(ColumnType(name)) == expected
        assert sqlite_type(ColumnType(name, array=(-1,))) == "TEXT_JSON"


def test_sqlite_type_keeps_modifiers() -> None:
    for name in TEXT_TYPES:
        assert sqlite_type(ColumnType(name, size=(23,))) == "TEXT(23)"
    assert sqlite_type(ColumnType("timestamp", size=(3,))) == "TEXT(3)"
    assert sqlite_type(ColumnType("numeric", size=(10, 2))) == "REAL(10, 2)"
    assert sqlite_type(ColumnType("varchar", array=(-1,), size=(5,))) == "TEXT_JSON"


def test_postgres_type() -> None:
    assert postgres_type(ColumnType("int8")) == "int8"
    assert postgres_type(ColumnType("varchar", size=(255,))) == "varchar(255)"
    assert postgres_type(ColumnType("int4", array=(-1, 3))) == "int4[][3]"
    assert postgres_type(ColumnType("public.colour")) == "public.colour"


# Every column type electrification accepts (server-behaviour.md §4.1), as users spell it:
# (spelling, PgColumnType.name, sqlite type)
ALLOWED_TYPES = [
    ("bool", "bool", "INTEGER"),
    ("boolean", "bool", "INTEGER"),
    ("bytea", "bytea", "BLOB"),
    ("date", "date", "TEXT"),
    ("float4", "float4", "REAL"),
    ("real", "float4", "REAL"),
    ("float8", "float8", "REAL"),
    ("double precision", "float8", "REAL"),
    ("int2", "int2", "INTEGER"),
    ("smallint", "int2", "INTEGER"),
    ("int4", "int4", "INTEGER"),
    ("integer", "int4", "INTEGER"),
    ("int8", "int8", "INTEGER"),
    ("bigint", "int8", "INTEGER"),
    ("jsonb", "jsonb", "TEXT_JSON"),
    ("text", "text", "TEXT"),
    ("time", "time", "TEXT"),
    ("timestamp", "timestamp", "TEXT"),
    ("timestamp without time zone", "timestamp", "TEXT"),
    ("timestamptz", "timestamptz", "TEXT"),
    ("timestamp with time zone", "timestamptz", "TEXT"),
    ("uuid", "uuid", "TEXT"),
    ("varchar", "varchar", "TEXT"),
    ("character varying", "varchar", "TEXT"),
    ("colour", "colour", "TEXT"),  # an enum
    ("public.colour", "public.colour", "TEXT"),
]
ENUM = "CREATE TYPE public.colour AS ENUM ('red', 'green', 'blue');"


@pytest.mark.parametrize(("spelling", "pg_name", "sqlite"), ALLOWED_TYPES)
def test_allowed_type_in_create_table(spelling: str, pg_name: str, sqlite: str) -> None:
    create = f"CREATE TABLE public.t (id uuid PRIMARY KEY, v {spelling} NOT NULL);"
    enum_op, op = migrate(ENUM, create)
    assert enum_op.enum_type == MigrateEnumType("colour", ("red", "green", "blue"))
    assert op.sqlite == (
        MigrateStmt(
            StmtType.CREATE_TABLE,
            f'CREATE TABLE "t" (\n  "id" TEXT NOT NULL,\n  "v" {sqlite} NOT NULL,\n'
            '  CONSTRAINT "t_pkey" PRIMARY KEY ("id")\n);\n',
        ),
    )
    assert op.postgresql == (MigrateStmt(StmtType.CREATE_TABLE, create.rstrip(";")),)
    assert op.table is not None
    assert op.table.columns[1] == MigrateColumn("v", sqlite, PgColumnType(pg_name))
    sqlite3.connect(":memory:").executescript(op.sqlite[0].sql)


@pytest.mark.parametrize(("spelling", "pg_name", "sqlite"), ALLOWED_TYPES)
def test_allowed_type_in_add_column(spelling: str, pg_name: str, sqlite: str) -> None:
    schema, _ = apply_migration(Schema(), "1", [ENUM, "CREATE TABLE t (id uuid PRIMARY KEY);"])
    alter = f"ALTER TABLE t ADD COLUMN v {spelling}"
    op = one_op(alter, schema)
    assert op.sqlite == (
        MigrateStmt(StmtType.ALTER_ADD_COLUMN, f'ALTER TABLE "t" ADD COLUMN "v" {sqlite};\n'),
    )
    assert op.postgresql == (MigrateStmt(StmtType.ALTER_ADD_COLUMN, alter),)
    assert op.table is not None
    assert op.table.columns[-1] == MigrateColumn("v", sqlite, PgColumnType(pg_name))


def test_pg_column_type_carries_arrays_and_sizes() -> None:
    op = one_op("CREATE TABLE t (id int8 PRIMARY KEY, a int4[][3], b varchar(20), c timestamp(3));")
    assert op.table is not None
    assert [c.pg_type for c in op.table.columns[1:]] == [
        PgColumnType("int4", (-1, 3), ()),
        PgColumnType("varchar", (), (20,)),
        PgColumnType("timestamp", (), (3,)),
    ]
    assert [c.sqlite_type for c in op.table.columns[1:]] == ["TEXT_JSON", "TEXT(20)", "TEXT(3)"]


# --- CREATE TABLE (upstream sqlite_test.exs) --------------------------------------------------


def test_create_table_maps_column_types() -> None:
    sql = """
    CREATE TABLE i (
      id smallint PRIMARY KEY,
      i1 smallint,
      i2 int[],
      i3 uuid,
      i4 timestamp without time zone,
      i5 jsonb,
      i6 bigint,
      i7 float8
    );
    """
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "i1" INTEGER,\n'
        '  "i2" TEXT_JSON,\n'
        '  "i3" TEXT,\n'
        '  "i4" TEXT,\n'
        '  "i5" TEXT_JSON,\n'
        '  "i6" INTEGER,\n'
        '  "i7" REAL,\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_if_not_exists() -> None:
    assert to_sqlite("CREATE TABLE IF NOT EXISTS i (id smallint PRIMARY KEY);") == [
        'CREATE TABLE IF NOT EXISTS "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_ignores_schema() -> None:
    assert to_sqlite('CREATE TABLE "myschema"."i" (id smallint PRIMARY KEY);') == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_primary_key() -> None:
    sql = 'CREATE TABLE "i" (id int8 PRIMARY KEY, name varchar(256) NOT NULL);'
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "name" TEXT(256) NOT NULL,\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_composite_and_named_primary_key() -> None:
    sql = "CREATE TABLE t (a text, b int8, CONSTRAINT my_pk PRIMARY KEY (b, a));"
    assert to_sqlite(sql) == [
        'CREATE TABLE "t" (\n'
        '  "a" TEXT NOT NULL,\n'
        '  "b" INTEGER NOT NULL,\n'
        '  CONSTRAINT "my_pk" PRIMARY KEY ("b", "a")\n'
        ");\n"
    ]


def test_create_table_foreign_keys() -> None:
    sql = """
    CREATE TABLE "i" (
      id int8 PRIMARY KEY,
      j_id int8 REFERENCES j (id) ON DELETE CASCADE ON UPDATE SET DEFAULT,
      j_id2 int8 REFERENCES j (id),
      name varchar(256) NOT NULL
    );
    """
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "j_id" INTEGER,\n'
        '  "j_id2" INTEGER,\n'
        '  "name" TEXT(256) NOT NULL,\n'
        '  CONSTRAINT "i_j_id_fkey" FOREIGN KEY ("j_id") REFERENCES "j" ("id") '
        "ON DELETE CASCADE ON UPDATE SET DEFAULT,\n"
        '  CONSTRAINT "i_j_id2_fkey" FOREIGN KEY ("j_id2") REFERENCES "j" ("id"),\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_foreign_keys_sorted_by_columns_not_position() -> None:
    # the original's Erlang term order: FKs by their columns, before the PK, whatever the order
    # they were written in
    sql = """
    CREATE TABLE t (
      id int8 PRIMARY KEY,
      zz int8,
      aa int8,
      CONSTRAINT t_zz_fkey FOREIGN KEY (zz) REFERENCES z (id) DEFERRABLE,
      FOREIGN KEY (aa) REFERENCES "A" ON DELETE SET NULL
    );
    """
    assert to_sqlite(sql) == [
        'CREATE TABLE "t" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "zz" INTEGER,\n'
        '  "aa" INTEGER,\n'
        '  CONSTRAINT "t_aa_fkey" FOREIGN KEY ("aa") REFERENCES "A" ON DELETE SET NULL,\n'
        '  CONSTRAINT "t_zz_fkey" FOREIGN KEY ("zz") REFERENCES "z" ("id"),\n'
        '  CONSTRAINT "t_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_check_constraints() -> None:
    sql = """
    CREATE TABLE "i" (
      id int8 PRIMARY KEY,
      c1 int8 CONSTRAINT "not_zero" CHECK (c1 > 0),
      c2 int8 CONSTRAINT "percent" CHECK ((c2 >= 0) AND (c2 <= 100)),
      c3 text CONSTRAINT "starts" CHECK (substring(c3 from 1 for 3) == 'his'),
      CONSTRAINT "makes_sense" CHECK ((c1 + c2) < 100)
    );
    """
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "c1" INTEGER,\n'
        '  "c2" INTEGER,\n'
        '  "c3" TEXT,\n'
        '  CONSTRAINT "makes_sense" CHECK ((("c1" + "c2") < 100)),\n'
        '  CONSTRAINT "not_zero" CHECK (("c1" > 0)),\n'
        '  CONSTRAINT "starts" CHECK ((substring("c3", 1, 3) == \'his\')),\n'
        '  CONSTRAINT "percent" CHECK ((("c2" >= 0) AND ("c2" <= 100))),\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_unique_column_constraint() -> None:
    sql = 'CREATE TABLE "i" (id int8 PRIMARY KEY, c1 int8 UNIQUE NULLS NOT DISTINCT);'
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "c1" INTEGER,\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id"),\n'
        '  CONSTRAINT "i_c1_key" UNIQUE ("c1")\n'
        ");\n"
    ]


def test_create_table_unique_table_constraint() -> None:
    sql = """
    CREATE TABLE "i" (id int8 primary key, c1 int8, c2 int8, UNIQUE NULLS NOT DISTINCT (c1, c2));
    """
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "c1" INTEGER,\n'
        '  "c2" INTEGER,\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id"),\n'
        '  CONSTRAINT "i_c1_c2_key" UNIQUE ("c1", "c2")\n'
        ");\n"
    ]


def test_create_table_defaults() -> None:
    sql = r"""
    CREATE TABLE "i" (
      id int8 PRIMARY KEY,
      c1 int8 DEFAULT 13,
      c2 boolean DEFAULT true,
      c3 boolean DEFAULT false,
      c4 varchar (35) DEFAULT 'something',
      c5 float4 DEFAULT 3.14,
      c6 json DEFAULT '{"this":"thing"}',
      c7 bytea DEFAULT '\x2F',
      c8 int8 DEFAULT '13'::int8,
      c9 timestamptz DEFAULT CURRENT_TIMESTAMP
    );
    """
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "c1" INTEGER DEFAULT 13,\n'
        '  "c2" INTEGER DEFAULT 1,\n'
        '  "c3" INTEGER DEFAULT 0,\n'
        "  \"c4\" TEXT(35) DEFAULT 'something',\n"
        '  "c5" REAL DEFAULT 3.14,\n'
        '  "c6" TEXT_JSON DEFAULT \'{"this":"thing"}\',\n'
        "  \"c7\" BLOB DEFAULT x'2F',\n"
        "  \"c8\" INTEGER DEFAULT (CAST('13' AS INTEGER)),\n"
        '  "c9" TEXT DEFAULT current_timestamp,\n'
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_default_and_not_null_in_the_originals_order() -> None:
    # upstream "SERIAL primary keys": DEFAULT sorts before NOT NULL; serial maps to INTEGER
    sql = "CREATE TABLE i (id SERIAL, k INTEGER DEFAULT '0' NOT NULL, PRIMARY KEY (id));"
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        "  \"k\" INTEGER DEFAULT '0' NOT NULL,\n"
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_generated_columns() -> None:
    sql = """
    CREATE TABLE "i" (
      id int8 primary key,
      v1 text,
      v2 text,
      v3 text,
      vv1 text generated always as (v1 || v2) STORED,
      vv2 text generated always as (concat(upper(v1), trim(LEADING 'x' FROM v2), v3)) STORED
    );
    """
    assert to_sqlite(sql) == [
        'CREATE TABLE "i" (\n'
        '  "id" INTEGER NOT NULL,\n'
        '  "v1" TEXT,\n'
        '  "v2" TEXT,\n'
        '  "v3" TEXT,\n'
        '  "vv1" TEXT GENERATED ALWAYS AS ("v1" || "v2") STORED,\n'
        '  "vv2" TEXT GENERATED ALWAYS AS (coalesce(upper("v1"), \'\') || '
        "coalesce(ltrim(\"v2\", 'x'), '') || coalesce(\"v3\", '')) STORED,\n"
        '  CONSTRAINT "i_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_create_table_quotes_identifiers() -> None:
    # e2e 05.06 (camelCase names); a quote inside a name is doubled (the original did not)
    sql = 'CREATE TABLE public."camelCase" (id TEXT PRIMARY KEY, "userId" TEXT, "a""b" int4);'
    assert to_sqlite(sql) == [
        'CREATE TABLE "camelCase" (\n'
        '  "id" TEXT NOT NULL,\n'
        '  "userId" TEXT,\n'
        '  "a""b" INTEGER,\n'
        '  CONSTRAINT "camelCase_pkey" PRIMARY KEY ("id")\n'
        ");\n"
    ]


def test_long_constraint_names_are_shortened_like_postgres() -> None:
    table = "t" * 60
    (sql,) = to_sqlite(
        f"CREATE TABLE {table} (id int8 PRIMARY KEY, {'c' * 40} int8 REFERENCES p (id));"
    )
    # makeObjectName: 63 bytes, the longer of the two names shortened first
    assert f'CONSTRAINT "{"t" * 29}_{"c" * 28}_fkey"' in sql
    assert f'CONSTRAINT "{"t" * 58}_pkey"' in sql


# --- ALTER TABLE … ADD COLUMN ------------------------------------------------------------------


def test_add_column_with_default() -> None:
    sql = """
    CREATE TABLE i (id INTEGER PRIMARY KEY);
    ALTER TABLE i ADD COLUMN c11 varchar (35) DEFAULT 'something';
    """
    assert to_sqlite(sql)[1] == (
        'ALTER TABLE "i" ADD COLUMN "c11" TEXT(35) DEFAULT \'something\';\n'
    )


def test_add_column_with_check() -> None:
    sql = """
    CREATE TABLE i (id INTEGER PRIMARY KEY);
    ALTER TABLE i ADD COLUMN c3 text
        CONSTRAINT "starts" CHECK (substring(c3 from 1 for 3) == 'his');
    """
    assert to_sqlite(sql)[1] == (
        'ALTER TABLE "i" ADD COLUMN "c3" TEXT CONSTRAINT "starts" '
        "CHECK ((substring(\"c3\", 1, 3) == 'his'));\n"
    )


def test_add_column_with_foreign_key() -> None:
    sql = """
    CREATE TABLE i (id int8 PRIMARY KEY, val text);
    CREATE TABLE j (id int8 PRIMARY KEY);
    ALTER TABLE i ADD COLUMN j_id int8 REFERENCES j (id) ON DELETE CASCADE ON UPDATE SET DEFAULT;
    """
    assert to_sqlite(sql)[2] == (
        'ALTER TABLE "i" ADD COLUMN "j_id" INTEGER CONSTRAINT "i_j_id_fkey" REFERENCES "j" ("id") '
        "ON DELETE CASCADE ON UPDATE SET DEFAULT;\n"
    )


def test_add_column_not_null_and_null() -> None:
    sql = """
    CREATE TABLE i (id int8 PRIMARY KEY);
    ALTER TABLE i ADD COLUMN a text NOT NULL DEFAULT '', ADD COLUMN b text NULL;
    """
    assert to_sqlite(sql)[1:] == [
        'ALTER TABLE "i" ADD COLUMN "a" TEXT NOT NULL DEFAULT \'\';\n',
        'ALTER TABLE "i" ADD COLUMN "b" TEXT;\n',
    ]


def test_compound_alter_table_becomes_one_statement_per_column() -> None:
    sql = """
    CREATE TABLE i (id int8 PRIMARY KEY);
    ALTER TABLE i ADD COLUMN value text, ADD COLUMN size integer DEFAULT 1;
    """
    assert to_sqlite(sql)[1:] == [
        'ALTER TABLE "i" ADD COLUMN "value" TEXT;\n',
        'ALTER TABLE "i" ADD COLUMN "size" INTEGER DEFAULT 1;\n',
    ]


def test_alter_table_if_exists_drops_if_exists_in_sqlite() -> None:
    sql = "CREATE TABLE i (id int8 PRIMARY KEY); ALTER TABLE IF EXISTS i ADD COLUMN v text;"
    assert to_sqlite(sql)[1] == 'ALTER TABLE "i" ADD COLUMN "v" TEXT;\n'


@pytest.mark.parametrize(
    "column", ["id uuid PRIMARY KEY", "id uuid UNIQUE", "id int8 GENERATED ALWAYS AS IDENTITY"]
)
def test_add_column_sqlite_cannot_express(column: str) -> None:
    # upstream "raises when trying to add pk" / "… unique constraint"
    with pytest.raises(TranslationError):
        translate_to_sqlite(f"ALTER TABLE i ADD COLUMN {column};")


# --- CREATE INDEX ----------------------------------------------------------------------------

INDEX_TABLE = "CREATE TABLE i (id int8 PRIMARY KEY, val1 int, val2 varchar);\n"


@pytest.mark.parametrize(
    ("index", "expected"),
    [
        (
            "CREATE INDEX CONCURRENTLY i_idx ON i (val1 DESC, val2);",
            'CREATE INDEX "i_idx" ON "i" ("val1" DESC, "val2" ASC);\n',
        ),
        (
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS i_idx ON i (val1 DESC, val2 ASC);",
            'CREATE INDEX IF NOT EXISTS "i_idx" ON "i" ("val1" DESC, "val2" ASC);\n',
        ),
        (
            "CREATE UNIQUE INDEX i_idx ON i (val1 DESC, val2 ASC);",
            'CREATE UNIQUE INDEX "i_idx" ON "i" ("val1" DESC, "val2" ASC);\n',
        ),
        (
            "CREATE UNIQUE INDEX i_idx ON i (val1 DESC, val2 ASC) WHERE val1 IS NOT NULL;",
            'CREATE UNIQUE INDEX "i_idx" ON "i" ("val1" DESC, "val2" ASC) '
            'WHERE "val1" IS NOT NULL;\n',
        ),
        (
            "CREATE UNIQUE INDEX i_idx1 ON i (val1 DESC, val2 ASC) WHERE val2 IS NULL;",
            'CREATE UNIQUE INDEX "i_idx1" ON "i" ("val1" DESC, "val2" ASC) WHERE "val2" IS NULL;\n',
        ),
        (
            "CREATE UNIQUE INDEX i_idx2 ON i (val1 DESC, val2 ASC) WHERE val1 > 0 AND val2 != '';",
            'CREATE UNIQUE INDEX "i_idx2" ON "i" ("val1" DESC, "val2" ASC) '
            'WHERE (("val1" > 0) AND ("val2" <> \'\'));\n',
        ),
        (
            "CREATE INDEX i_idx ON i (upper(val2) ASC);",
            'CREATE INDEX "i_idx" ON "i" (upper("val2") ASC);\n',
        ),
        (
            'CREATE INDEX i_idx ON i (val2 COLLATE "en_GB.utf8");',
            'CREATE INDEX "i_idx" ON "i" ("val2" ASC);\n',
        ),
        (
            "CREATE INDEX ON public.i USING btree (val1 NULLS FIRST) INCLUDE (val2);",
            'CREATE INDEX "i_val1_val2_idx" ON "i" ("val1" ASC);\n',
        ),
    ],
)
def test_create_index(index: str, expected: str) -> None:
    # upstream describe "CREATE INDEX" (all but the last, an unnamed index)
    assert to_sqlite(INDEX_TABLE + index)[1] == expected


# --- ops: what SatOpMigrate carries (upstream replication_test.exs) ---------------------------


def test_create_table_op_both_dialects() -> None:
    schema, (op,) = apply_migration(
        Schema(), "20230405134615", ["CREATE TABLE public.fish (id int8 PRIMARY KEY);"]
    )
    assert op == MigrateOp(
        version="20230405134615",
        statement_index=0,
        sqlite=(
            MigrateStmt(
                StmtType.CREATE_TABLE,
                'CREATE TABLE "fish" (\n  "id" INTEGER NOT NULL,\n'
                '  CONSTRAINT "fish_pkey" PRIMARY KEY ("id")\n);\n',
            ),
        ),
        postgresql=(
            MigrateStmt(StmtType.CREATE_TABLE, "CREATE TABLE public.fish (id int8 PRIMARY KEY)"),
        ),
        table=MigrateTable(
            name="fish",
            columns=(MigrateColumn("id", "INTEGER", PgColumnType("int8")),),
            fks=(),
            pks=("id",),
        ),
        relation=("public", "fish"),
    )
    front = """
    CREATE TABLE teeth.front (
        id int8 PRIMARY KEY,
        frog_id int8 NOT NULL REFERENCES fish (id)
    );
    """
    _, (op,) = apply_migration(schema, "20230405134616", [front])
    assert op.sqlite == (
        MigrateStmt(
            StmtType.CREATE_TABLE,
            'CREATE TABLE "front" (\n  "id" INTEGER NOT NULL,\n  "frog_id" INTEGER NOT NULL,\n'
            '  CONSTRAINT "front_frog_id_fkey" FOREIGN KEY ("frog_id") REFERENCES "fish" ("id"),\n'
            '  CONSTRAINT "front_pkey" PRIMARY KEY ("id")\n);\n',
        ),
    )
    assert op.table == MigrateTable(
        name="front",
        columns=(
            MigrateColumn("id", "INTEGER", PgColumnType("int8")),
            MigrateColumn("frog_id", "INTEGER", PgColumnType("int8")),
        ),
        fks=(MigrateForeignKey(("frog_id",), "fish", ("id",)),),
        pks=("id",),
    )
    assert op.relation == ("teeth", "front")


def test_multiple_add_columns_op() -> None:
    schema, _ = apply_migration(Schema(), "1", ["CREATE TABLE public.fish (id int8 PRIMARY KEY);"])
    alter = (
        "ALTER TABLE fish ADD COLUMN value jsonb DEFAULT '{}', "
        "ADD COLUMN ts timestamp DEFAULT current_timestamp;"
    )
    _, (op,) = apply_migration(schema, "2", [alter])
    assert op.sqlite == (
        MigrateStmt(
            StmtType.ALTER_ADD_COLUMN,
            'ALTER TABLE "fish" ADD COLUMN "value" TEXT_JSON DEFAULT \'{}\';\n',
        ),
        MigrateStmt(
            StmtType.ALTER_ADD_COLUMN,
            'ALTER TABLE "fish" ADD COLUMN "ts" TEXT DEFAULT current_timestamp;\n',
        ),
    )
    # each sub-command alone, deparsed (the original repeated the whole statement for each)
    assert op.postgresql == (
        MigrateStmt(
            StmtType.ALTER_ADD_COLUMN, "ALTER TABLE fish ADD COLUMN value jsonb DEFAULT '{}'"
        ),
        MigrateStmt(
            StmtType.ALTER_ADD_COLUMN,
            "ALTER TABLE fish ADD COLUMN ts timestamp DEFAULT CURRENT_TIMESTAMP",
        ),
    )
    assert op.table == MigrateTable(
        name="fish",
        columns=(
            MigrateColumn("id", "INTEGER", PgColumnType("int8")),
            MigrateColumn("value", "TEXT_JSON", PgColumnType("jsonb")),
            MigrateColumn("ts", "TEXT", PgColumnType("timestamp")),
        ),
        fks=(),
        pks=("id",),
    )


def test_create_index_op_has_no_table() -> None:
    schema, _ = apply_migration(
        Schema(), "1", ["CREATE TABLE public.fish (id int8 PRIMARY KEY, available boolean);"]
    )
    _, (op,) = apply_migration(
        schema, "2", ["CREATE INDEX fish_available_index ON public.fish (avilable);"]
    )
    assert op.sqlite == (
        MigrateStmt(
            StmtType.CREATE_INDEX,
            'CREATE INDEX "fish_available_index" ON "fish" ("avilable" ASC);\n',
        ),
    )
    assert op.postgresql == (
        MigrateStmt(
            StmtType.CREATE_INDEX, "CREATE INDEX fish_available_index ON public.fish (avilable)"
        ),
    )
    assert op.table is None
    assert op.enum_type is None
    assert op.relation is None


def test_enum_ops() -> None:
    schema, (op,) = apply_migration(
        Schema(), "20240418002800", ["CREATE TYPE public.colour AS ENUM ('red', 'green',  'blue');"]
    )
    assert op.sqlite == ()
    assert op.stmts("postgresql") == (
        MigrateStmt(
            StmtType.CREATE_ENUM_TYPE, "CREATE TYPE public.colour AS ENUM ('red', 'green',  'blue')"
        ),
    )
    assert op.enum_type == MigrateEnumType("colour", ("red", "green", "blue"))
    assert op.table is None
    wall = "CREATE TABLE public.wall (id int8 PRIMARY KEY,finish  public.colour);"
    _, (op,) = apply_migration(schema, "20240418002801", [wall])
    assert op.stmts("sqlite") == (
        MigrateStmt(
            StmtType.CREATE_TABLE,
            'CREATE TABLE "wall" (\n  "id" INTEGER NOT NULL,\n  "finish" TEXT,\n'
            '  CONSTRAINT "wall_pkey" PRIMARY KEY ("id")\n);\n',
        ),
    )
    assert op.stmts("postgresql") == (
        MigrateStmt(
            StmtType.CREATE_TABLE,
            "CREATE TABLE public.wall (id int8 PRIMARY KEY,finish  public.colour)",
        ),
    )
    assert op.table is not None
    assert op.table.columns[1] == MigrateColumn("finish", "TEXT", PgColumnType("public.colour"))


# upstream plug_test.exs: /api/migrations for four versions, both dialects
PLUG_MIGRATIONS = [
    (
        "0001",
        [
            "CREATE TABLE a (id uuid PRIMARY KEY, value text NOT NULL); "
            "CREATE INDEX a_idx ON a (value);",
            "CREATE TABLE b (id uuid PRIMARY KEY, value text NOT NULL);",
        ],
    ),
    ("0002", ["CREATE TABLE c (id uuid PRIMARY KEY, value text NOT NULL);"]),
    (
        "0003",
        [
            "CREATE TABLE d (id uuid PRIMARY KEY, value text NOT NULL);",
            "ALTER TABLE d ADD COLUMN is_valid boolean;",
        ],
    ),
    ("0004", ["CREATE TABLE e (id uuid PRIMARY KEY, value text NOT NULL);"]),
]


def migration_sql(ops: list[MigrateOp], dialect: Dialect) -> str:
    # server-behaviour.md §9: right-trimmed, ';' added when missing, joined with a blank line
    stmts = [s.sql.rstrip() for op in ops for s in op.stmts(dialect)]
    return "\n\n".join(s if s.endswith(";") else s + ";" for s in stmts)


def simple_table(name: str) -> str:
    return (
        f'CREATE TABLE "{name}" (\n  "id" TEXT NOT NULL,\n  "value" TEXT NOT NULL,\n'
        f'  CONSTRAINT "{name}_pkey" PRIMARY KEY ("id")\n);'
    )


def test_migrations_api_content() -> None:
    schema = Schema()
    sqlite: dict[str, str] = {}
    postgresql: dict[str, str] = {}
    counts: dict[str, int] = {}
    for version, statements in PLUG_MIGRATIONS:
        schema, ops = apply_migration(schema, version, statements)
        assert {op.version for op in ops} == {version}
        sqlite[version] = migration_sql(ops, "sqlite")
        postgresql[version] = migration_sql(ops, "postgresql")
        counts[version] = len(ops)
    assert counts == {"0001": 2, "0002": 1, "0003": 2, "0004": 1}
    assert sqlite == {
        "0001": simple_table("a")
        + '\n\nCREATE INDEX "a_idx" ON "a" ("value" ASC);\n\n'
        + simple_table("b"),
        "0002": simple_table("c"),
        "0003": simple_table("d") + '\n\nALTER TABLE "d" ADD COLUMN "is_valid" INTEGER;',
        "0004": simple_table("e"),
    }
    assert postgresql == {
        "0001": "CREATE TABLE a (id uuid PRIMARY KEY, value text NOT NULL);\n\n"
        "CREATE INDEX a_idx ON a (value);\n\n"
        "CREATE TABLE b (id uuid PRIMARY KEY, value text NOT NULL);",
        "0002": "CREATE TABLE c (id uuid PRIMARY KEY, value text NOT NULL);",
        "0003": "CREATE TABLE d (id uuid PRIMARY KEY, value text NOT NULL);\n\n"
        "ALTER TABLE d ADD COLUMN is_valid boolean;",
        "0004": "CREATE TABLE e (id uuid PRIMARY KEY, value text NOT NULL);",
    }


def test_first_plug_op_carries_table_and_index() -> None:
    _, ops = apply_migration(Schema(), "0001", PLUG_MIGRATIONS[0][1])
    assert [s.type for s in ops[0].sqlite] == [StmtType.CREATE_TABLE, StmtType.CREATE_INDEX]
    assert [s.sql for s in ops[0].postgresql] == [
        "CREATE TABLE a (id uuid PRIMARY KEY, value text NOT NULL)",
        "CREATE INDEX a_idx ON a (value)",
    ]
    assert ops[0].table == MigrateTable(
        name="a",
        columns=(
            MigrateColumn("id", "TEXT", PgColumnType("uuid")),
            MigrateColumn("value", "TEXT", PgColumnType("text")),
        ),
        fks=(),
        pks=("id",),
    )


# --- unsupported DDL -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE fish",
        "ALTER TABLE fish DROP COLUMN value",
        "ALTER TABLE fish ALTER COLUMN value TYPE int8",
        "ALTER TABLE fish ADD CONSTRAINT u UNIQUE (value)",
        "ALTER TABLE fish RENAME TO frog",
        "CREATE VIEW v AS SELECT 1",
        "ALTER INDEX i RENAME TO j",
        "CREATE SUBSCRIPTION \"postgres_2\" CONNECTION 'host=electric_1 port=5433 dbname=test' "
        'PUBLICATION "all_tables" WITH (connect = false)',
        'ALTER SUBSCRIPTION "postgres_1" ENABLE',
        "INSERT INTO fish VALUES (1)",
        "CREATE TABLE x (LIKE fish)",
        "CREATE TABLE x (id int8 PRIMARY KEY) INHERITS (fish)",
        "CREATE TABLE x (id int8, EXCLUDE USING gist (id WITH =))",
        "CREATE TABLE x (id fish.id%TYPE)",
        "CREATE TABL x (id int8)",
    ],
)
def test_unsupported_statements_raise(statement: str) -> None:
    with pytest.raises(UnsupportedDDLError) as info:
        apply_migration(Schema(), "1", [statement])
    assert statement.strip() in str(info.value)
    assert info.value.statement == statement
    assert isinstance(info.value, DDLError)
    assert isinstance(info.value, ElectricError)


def test_unsupported_statement_among_supported_ones_is_named() -> None:
    sql = "CREATE TABLE a (id int8 PRIMARY KEY); DROP TABLE b;"
    with pytest.raises(UnsupportedDDLError, match="unsupported statement DropStmt") as info:
        translate_to_sqlite(sql)
    assert str(info.value).endswith(" in: DROP TABLE b")
