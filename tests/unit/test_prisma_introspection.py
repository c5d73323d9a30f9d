"""The ``prisma`` user's answers, without a network: which query is which, and the catalogue rows
the electrified schema gives (the schema of the original service's own fixtures)."""

from __future__ import annotations

import pytest

from electric_trio.ddlx.migration import apply_migration
from electric_trio.ddlx.schema import Schema
from electric_trio.proxy import _prisma
from electric_trio.proxy._prisma import NAME_ARRAY, Other, decode_params, match
from prisma_queries import PRISMA_QUERIES

SCHEMA, _ = apply_migration(
    Schema(),
    "001",
    [
        "CREATE TYPE oses AS ENUM ('linux', 'macos', 'windows')",
        """CREATE TABLE public.interesting (
            id uuid PRIMARY KEY,
            value varchar(255),
            iii int8[][3] NOT NULL,
            big int8,
            small int2,
            nn numeric(12, 6),
            ts timestamptz,
            updated timestamptz(3),
            os oses
        )""",
        "CREATE UNIQUE INDEX interesting_idx ON public.interesting USING btree"
        " (value DESC NULLS LAST, ts)",
        "CREATE INDEX partial_idx ON public.interesting (big) WHERE big > 0",
        "CREATE INDEX expression_idx ON public.interesting (lower(value))",
    ],
)

NAMES = {
    "VersionV5_2": "version",
    "NamespaceVersionV5_2": "namespace and version 5.2",
    "NamespaceV5_2": "namespaces 5.2",
    "TypeV4_8": "enum types 4.8",
    "TableListV4_8": "table list 4.8",
    "TableV5_2": "tables 5.2",
    "ConstraintV5_2": "check constraints 5.2",
    "ViewV4_8": "views 4.8",
    "ViewV5_2": "views 5.2",
    "TypeV5_2": "enum types 5.2",
    "ColumnV4_8": "columns 4.8",
    "ColumnV5_2": "columns 5.2",
    "ForeignKeyV4_8": "foreign keys 4.8",
    "ForeignKeyV5_2": "foreign keys 5.2",
    "IndexV4_8": "indexes 4.8",
    "IndexV5_2": "indexes 5.2",
    "FunctionV5_2": "functions 5.2",
    "ExtensionV5_2": "extensions 5.2",
    "SequenceV5_2": "sequences 5.2",
}


@pytest.mark.parametrize("name", sorted(PRISMA_QUERIES))
def test_every_prisma_query_is_recognised(name: str) -> None:
    [query] = match(PRISMA_QUERIES[name])
    assert isinstance(query, _prisma.Query)
    assert query.name == NAMES[name]
    assert len(query.fields) == len(query.columns)


def test_other_statements_have_their_tags() -> None:
    assert match("SET NAMES 'UTF-8'; BEGIN; SELECT a FROM t; COMMIT") == [
        Other("SET"),
        Other("BEGIN"),
        Other("SELECT 0", "SELECT a FROM t"),
        Other("COMMIT"),
    ]


def query(name: str) -> _prisma.Query:
    [found] = match(PRISMA_QUERIES[name])
    assert isinstance(found, _prisma.Query)
    return found


def test_columns_as_information_schema_shows_them() -> None:
    rows = {row[2]: row for row in query("ColumnV5_2").rows(SCHEMA, [["public"]])}
    assert list(rows) == ["id", "value", "iii", "big", "small", "nn", "ts", "updated", "os"]
    # formatted_type, precision, scale, radix, datetime precision, data_type, udt schema, udt
    assert rows["nn"][3:11] == (
        "numeric(12,6)",
        12,
        6,
        10,
        None,
        "numeric",
        "pg_catalog",
        "numeric",
    )
    assert rows["iii"][3:11] == ("bigint[]", None, None, None, None, "ARRAY", "pg_catalog", "_int8")
    assert rows["iii"][12] == "NO"
    assert rows["updated"][3:11] == (
        "timestamp(3) with time zone",
        *(None, None, None, 3),
        "timestamp with time zone",
        *("pg_catalog", "timestamptz"),
    )
    assert rows["ts"][7] == 6
    assert rows["value"][3] == "character varying(255)"
    assert rows["value"][14] == 255
    assert rows["os"][8:11] == ("USER-DEFINED", "public", "oses")
    assert rows["id"][12] == "NO"  # the primary key
    assert rows["big"][12] == "YES"
    v4 = query("ColumnV4_8").rows(SCHEMA, [["public"]])
    id_ = ("public", "interesting", "id", "uuid", None, None, None, None, "uuid", "uuid")
    assert v4[0] == (*id_, None, "NO", "NO", None)


def test_indexes_leave_out_partial_and_expression_indexes() -> None:
    rows = query("IndexV5_2").rows(SCHEMA, [["public"]])
    assert [row[1] for row in rows] == ["interesting_idx", "interesting_idx", "interesting_pkey"]
    value, ts, pkey = rows
    assert value[3:] == (
        "value",
        True,
        False,
        0,
        "text_ops",
        True,
        "btree",
        "DESC",
        False,
        None,
        None,
    )
    assert ts[3:11] == ("ts", True, False, 1, "timestamptz_ops", True, "btree", "ASC")
    assert pkey[3:] == ("id", True, True, 0, "uuid_ops", True, "btree", "ASC", False, False, False)
    assert query("IndexV5_2").rows(SCHEMA, [["other"]]) == []


def test_enum_labels_in_order() -> None:
    assert query("TypeV4_8").rows(SCHEMA, [["public"]]) == [
        ("oses", "linux", "public"),
        ("oses", "macos", "public"),
        ("oses", "windows", "public"),
    ]


# A name[] as Prisma's driver binds it (bytes from the original service's tests).
PUBLIC = (
    bytes([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 19, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 6]) + b"public"
)
THREE = (
    bytes([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 19, 0, 0, 0, 3, 0, 0, 0, 1])
    + b"\0\0\0\x06public\0\0\0\x07private\0\0\0\x04blue"
)
EMPTY = bytes([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 19, 0, 0, 0, 0, 0, 0, 0, 1])
NO_DIMENSIONS = bytes([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 19])


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        (PUBLIC, 1, ["public"]),
        (THREE, 1, ["public", "private", "blue"]),
        (EMPTY, 1, []),
        (NO_DIMENSIONS, 1, []),
        (b"{public}", 0, ["public"]),
        (b'{public,"a \\"b\\"",c}', 0, ["public", 'a "b"', "c"]),
        (b"{}", 0, []),
    ],
)
def test_namespace_lists(value: bytes, fmt: int, expected: list[str]) -> None:
    assert decode_params([NAME_ARRAY], [fmt], [value]) == [expected]


# A table as electrify() captures it (every constraint as pg_get_constraintdef() writes it),
# with CHECK constraints (allowed when constraint validation is off) and, as DDL captured by hand
# could give, column defaults.
CHECKED, _ = apply_migration(
    Schema(),
    "002",
    [
        """CREATE TABLE public.checked (
    id text NOT NULL,
    count integer DEFAULT 0,
    label text DEFAULT 'none, yet'::text NOT NULL,
    created timestamp with time zone DEFAULT now(),
    number integer,
    CONSTRAINT checked_pkey PRIMARY KEY (id),
    CONSTRAINT combined CHECK (((number + count) < 200)),
    CONSTRAINT count_check CHECK (((count < 100) AND (count > 10)))
);""",
        """CREATE TABLE public.another (
    id text NOT NULL CONSTRAINT "A check" CHECK ((id <> ''::text)),
    CONSTRAINT another_pkey PRIMARY KEY (id)
);""",
    ],
)


def test_check_constraints_as_pg_get_constraintdef_gives_them() -> None:
    rows = query("ConstraintV5_2").rows(CHECKED, [["public"]])
    assert rows == [
        ("public", "another", "A check", "c", "CHECK ((id <> ''::text))", False, False),
        ("public", "checked", "combined", "c", "CHECK (((number + count) < 200))", False, False),
        (
            "public",
            "checked",
            "count_check",
            "c",
            "CHECK (((count < 100) AND (count > 10)))",
            False,
            False,
        ),
    ]
    assert query("ConstraintV5_2").rows(CHECKED, [["other"]]) == []
    assert query("ConstraintV5_2").rows(SCHEMA, [["public"]]) == []


@pytest.mark.parametrize("name", ["ColumnV4_8", "ColumnV5_2"])
def test_column_defaults(name: str) -> None:
    found = query(name)
    at = found.columns.index("column_default")
    rows = {(row[1], row[2]): row[at] for row in found.rows(CHECKED, [["public"]])}
    assert rows == {
        ("another", "id"): None,
        ("checked", "id"): None,
        ("checked", "count"): "0",
        ("checked", "label"): "'none, yet'::text",
        ("checked", "created"): "now()",
        ("checked", "number"): None,
    }
