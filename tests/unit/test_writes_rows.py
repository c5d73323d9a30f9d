"""The rows a client change becomes (server-behaviour.md §6): tags in Postgres text form, the
shadow row's columns and values, the acknowledged-position row; and the SQL the direct writer
sends for them."""

from __future__ import annotations

import pytest

from electric_trio._native import ClientRowCodec, ValueDecodeError
from electric_trio.ddlx.schema import Column, ColumnType, Table
from electric_trio.writes import ClientWrite
from electric_trio.writes.direct import batch_sql, transaction_sql
from electric_trio.writes.rows import (
    InvalidTagError,
    ack_row,
    change_rows,
    observed_tags_literal,
    shadow_columns,
    tag_literal,
)

TABLE = Table(
    schema="public",
    name="items",
    columns=(
        Column("title", ColumnType("text")),
        Column("id", ColumnType("int8"), True),
        Column("n", ColumnType("int4")),
    ),
    primary_key=("id",),
)


def test_tags() -> None:
    assert tag_literal(1686009600000, "client_1_1") == '("2023-06-06 00:00:00.000+00","client_1_1")'
    assert tag_literal(1, None) == '("1970-01-01 00:00:00.001+00",)'
    assert tag_literal(0, 'a"b\\c') == '("1970-01-01 00:00:00.000+00","a\\"b\\\\c")'
    with pytest.raises(InvalidTagError):
        tag_literal(10**18, "c")


def test_observed_tags_postgres_is_a_null_source() -> None:
    assert observed_tags_literal([]) == "{}"
    assert observed_tags_literal(["postgres_1@1686009600000", "a@b@2"]) == (
        '{"(\\"2023-06-06 00:00:00.000+00\\",)","(\\"1970-01-01 00:00:00.002+00\\",\\"a@b\\")"}'
    )
    for bad in ("nope", "c@", "c@1.5", "c@-1"):
        with pytest.raises(InvalidTagError):
            observed_tags_literal([bad])


def test_shadow_columns_follow_the_table() -> None:
    assert shadow_columns(TABLE) == (
        "_tags",
        "_last_modified",
        "_is_a_delete_operation",
        "_tag",
        "_observed_tags",
        "_modified_columns_bit_mask",
        "_resolved",
        "_currently_reordering",
        "__reordered_title",
        "__reordered_n",
        "_tag_title",
        "id",
        "_tag_n",
    )


def test_change_rows() -> None:
    main, shadow = change_rows(TABLE, "delete", ("t", "7", None), "TAG", "{}", [False, False])
    assert (main.schema, main.table, main.columns, main.values) == (
        "public",
        "items",
        ("title", "id", "n"),
        ("t", "7", None),
    )
    assert (shadow.schema, shadow.table) == ("electric", "shadow__public__items")
    assert dict(zip(shadow.columns, shadow.values, strict=True)) == {
        "_tags": None,
        "_last_modified": None,
        "_is_a_delete_operation": "t",
        "_tag": "TAG",
        "_observed_tags": "{}",
        "_modified_columns_bit_mask": "{f,f}",
        "_resolved": None,
        "_currently_reordering": None,
        "__reordered_title": None,
        "__reordered_n": None,
        "_tag_title": None,
        "id": "7",
        "_tag_n": None,
    }


def test_transaction_sql() -> None:
    lsn = b"\x00\x00\x00\x02"
    main, shadow = change_rows(TABLE, "insert", ("it's", "7", None), "TAG", "{}", [True, True])
    sql = transaction_sql(ClientWrite("c'1", lsn, 0, (ack_row("c'1", lsn), main, shadow)))
    lines = sql.splitlines()
    assert lines[0] == "BEGIN;"
    assert lines[1] == (
        'INSERT INTO "electric"."acknowledged_client_lsns" AS t ("client_id", "lsn")'
        " VALUES ('c''1', '\\x00000002') ON CONFLICT (client_id) DO UPDATE SET lsn = excluded.lsn;"
    )
    assert lines[2] == (
        'INSERT INTO "public"."items" ("title", "id", "n") VALUES (\'it\'\'s\', \'7\', NULL);'
    )
    assert lines[3].startswith('INSERT INTO "electric"."shadow__public__items" ("_tags", ')
    assert lines[-1] == "COMMIT"


def test_batch_sql_waits_for_one_flush_at_its_end() -> None:
    """Transactions sent together: each its own BEGIN ... COMMIT; all but the last commit
    without waiting for the WAL flush, the last one waits (and its flush covers the others),
    so the query returns only once all of them are durable."""
    writes = []
    for n in (1, 2, 3):
        lsn = n.to_bytes(4, "big")
        main, shadow = change_rows(TABLE, "insert", ("t", str(n), None), "TAG", "{}", [True] * 2)
        writes.append(ClientWrite(f"c{n}", lsn, 0, (ack_row(f"c{n}", lsn), main, shadow)))
    transactions = batch_sql(writes).split(";\nBEGIN;\n")
    assert len(transactions) == 3
    no_wait = "SET LOCAL synchronous_commit = off;"
    assert [no_wait in t.splitlines() for t in transactions] == [True, True, False]
    assert all(t.endswith("COMMIT") for t in transactions)
    assert batch_sql(writes[-1:]) == transaction_sql(writes[-1])


def test_client_row_codec() -> None:
    codec = ClientRowCodec([("int8", None), ("bytea", None), ("colour", ["red"])])
    assert len(codec) == 3
    assert codec.to_pg_text(b"\x20", [b"-1", b"\x01", b""]) == ["-1", "\\x01", None]
    with pytest.raises(ValueDecodeError) as info:
        codec.to_pg_text(b"\x00", [b"1", b"", b"blue"])
    assert getattr(info.value, "column", None) == 2
    with pytest.raises(ValueDecodeError):
        codec.to_pg_text(b"", [b"1", b"", b"red"])
    with pytest.raises(ValueError, match="unsupported type"):
        ClientRowCodec([("numeric", None)])
