"""The electric schema installed at startup: migrations, routines, publication (§2, §3)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from _databases import fresh_database
from electric_trio.ddlx import install_electric_schema, migrations, prepare_session
from electric_trio.pg import Connection, PgError, connect

PUBLISHED_ELECTRIC_TABLES = [
    "electric.ddl_commands",
    "electric.electrified",
    "electric.transaction_marker",
    "electric.acknowledged_client_lsns",
    "electric.grants",
    "electric.roles",
    "electric.assignments",
]


@pytest.fixture
async def db_url(pg_server: Any) -> AsyncIterator[str]:
    """A fresh, empty database for one test."""
    async with fresh_database(pg_server, "ddlx") as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[Connection]:
    async with await connect(db_url) as c:
        yield c


async def published(conn: Connection) -> list[str]:
    rows = await conn.fetch(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_publication_tables"
        " WHERE pubname = 'electric_publication' ORDER BY 1"
    )
    return [r[0] for r in rows]


async def test_installs_on_an_empty_database(conn: Connection) -> None:
    applied = await install_electric_schema(conn)
    assert applied == [str(m.version) for m in migrations()]
    assert conn.transaction_status == "I"
    recorded = await conn.fetch("SELECT version FROM electric.schema_migrations ORDER BY 1")
    assert [r[0] for r in recorded] == [m.version for m in migrations()]

    tables = await conn.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'electric'::regnamespace"
        " AND c.relkind = 'r' ORDER BY 1"
    )
    assert [r[0] for r in tables] == sorted(
        [
            "acknowledged_client_lsns",
            "assignments",
            "client_actions",
            "client_additional_data",
            "client_checkpoint_logs",
            "client_checkpoints",
            "client_shape_subscriptions",
            "client_unsub_points",
            "ddl_commands",
            "electrified",
            "grants",
            "migration_versions",
            "roles",
            "schema",
            "schema_migrations",
            "transaction_marker",
        ]
    )
    for routine in [
        "electrify",
        "enable",
        "disable",
        "capture_ddl",
        "assign_migration_version",
        "migration_version",
        "assign_default_version",
        "alter_shadow_table",
    ]:
        kind = await conn.fetchval(
            "SELECT prokind::text FROM pg_proc"
            " WHERE pronamespace = 'electric'::regnamespace AND proname = $1",
            routine,
        )
        assert kind == "p", routine
    # No event triggers in this version.
    assert await conn.fetchval("SELECT count(*) FROM pg_event_trigger") == 0
    assert sorted(await published(conn)) == sorted(PUBLISHED_ELECTRIC_TABLES)


async def test_second_install_is_a_no_op(conn: Connection) -> None:
    await install_electric_schema(conn)
    inserted = await conn.fetch("SELECT version, inserted_at FROM electric.schema_migrations")
    cluster_id = await conn.fetchval(
        "SELECT content FROM electric.transaction_marker WHERE id = 'cluster_id'"
    )
    assert await install_electric_schema(conn) == []
    assert await conn.fetch("SELECT version, inserted_at FROM electric.schema_migrations") == (
        inserted
    )
    assert (
        await conn.fetchval(
            "SELECT content FROM electric.transaction_marker WHERE id = 'cluster_id'"
        )
        == cluster_id
    )
    # "already exists, skipping" is not reported on every start
    assert not [n for n in conn.notices if "already exists" in n.message]


async def test_concurrent_installs_both_succeed(db_url: str) -> None:
    results: list[list[str]] = []

    async def install() -> None:
        async with await connect(db_url) as c:
            results.append(await install_electric_schema(c))

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(install)
    assert sorted(results, key=len) == [[], [], [str(m.version) for m in migrations()]]


async def test_prepare_session_sets_the_electric_settings(conn: Connection) -> None:
    await conn.execute("SET DateStyle = 'SQL, MDY'; SET TimeZone = 'Europe/Paris'")
    await prepare_session(conn)
    row = await conn.fetchrow(
        "SELECT current_setting('bytea_output'), current_setting('DateStyle'),"
        " current_setting('TimeZone'), current_setting('extra_float_digits')"
    )
    assert row == ("hex", "ISO, DMY", "UTC", "1")


async def test_failed_install_leaves_nothing_behind(conn: Connection) -> None:
    # A table in the way of the first migration: the whole install rolls back.
    await conn.execute("CREATE SCHEMA electric; CREATE TABLE electric.migration_versions (x int)")
    with pytest.raises(PgError) as info:
        await install_electric_schema(conn)
    assert "already exists" in info.value.message
    assert any("ddlx/sql/migrations/" in note for note in info.value.__notes__)
    assert conn.transaction_status == "I"
    assert await conn.fetchval("SELECT to_regclass('electric.schema_migrations')") is None
    assert await conn.fetchval("SELECT count(*) FROM pg_publication") == 0


async def test_dropped_publication_is_recreated_with_all_its_tables(conn: Connection) -> None:
    await install_electric_schema(conn)
    await conn.execute(
        "CREATE TABLE items (id text PRIMARY KEY, v text);"
        "CREATE TABLE other (id int8 PRIMARY KEY);"
        "CALL electric.electrify('items'); CALL electric.electrify('other')"
    )
    everything = sorted(
        [
            *PUBLISHED_ELECTRIC_TABLES,
            "public.items",
            "public.other",
            "electric.shadow__public__items",
            "electric.shadow__public__other",
        ]
    )
    assert sorted(await published(conn)) == everything

    await conn.execute("DROP PUBLICATION electric_publication")
    assert await install_electric_schema(conn) == []
    assert sorted(await published(conn)) == everything


async def test_install_adds_missing_members_to_an_existing_publication(
    conn: Connection,
) -> None:
    await install_electric_schema(conn)
    await conn.execute(
        "CREATE TABLE items (id text PRIMARY KEY, v text); CALL electric.electrify('items');"
        "ALTER PUBLICATION electric_publication DROP TABLE public.items,"
        " electric.transaction_marker"
    )
    await install_electric_schema(conn)
    members = await published(conn)
    assert "public.items" in members
    assert "electric.transaction_marker" in members


async def test_dropped_electrified_table_does_not_break_the_publication(
    conn: Connection,
) -> None:
    await install_electric_schema(conn)
    await conn.execute(
        "CREATE TABLE items (id text PRIMARY KEY); CALL electric.electrify('items');"
        "DROP TABLE items; DROP PUBLICATION electric_publication"
    )
    await install_electric_schema(conn)
    assert "electric.shadow__public__items" in await published(conn)


async def test_install_regenerates_the_functions_of_electrified_tables(
    conn: Connection,
) -> None:
    await install_electric_schema(conn)
    await conn.execute("CREATE TABLE items (id text PRIMARY KEY); CALL electric.electrify('items')")
    fn = "electric.create_shadow_row_from_upsert___public__items()"
    await conn.execute(
        f"CREATE OR REPLACE FUNCTION {fn} RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'stale'; END $$"
    )
    await install_electric_schema(conn)
    await conn.execute("INSERT INTO items VALUES ('a')")
    assert await conn.fetchval("SELECT count(*) FROM electric.shadow__public__items") == 1


async def test_transaction_marker_rows(conn: Connection) -> None:
    await install_electric_schema(conn)
    rows = dict(await conn.fetch("SELECT id, content::text FROM electric.transaction_marker"))
    assert rows["magic write"] == "{}"
    assert uuid.UUID(rows["cluster_id"].strip('"'))
    assert len(rows) == 2


async def test_migration_tables_columns(conn: Connection) -> None:
    await install_electric_schema(conn)

    async def columns(table: str) -> list[tuple[str, str, bool, str | None]]:
        return [
            tuple(r)
            for r in await conn.fetch(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
                " pg_get_expr(d.adbin, d.adrelid)"
                " FROM pg_attribute a LEFT JOIN pg_attrdef d"
                "   ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
                " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped"
                " ORDER BY a.attnum",
                table,
            )
        ]

    assert await columns("electric.migration_versions") == [
        ("txid", "xid8", True, "electric.current_xact_id()"),
        ("txts", "bigint", True, "electric.current_xact_ts()"),
        ("version", "character varying(255)", True, None),
        ("inserted_at", "timestamp with time zone", True, "transaction_timestamp()"),
        ("priority", "smallint", True, "0"),
    ]
    ddl = await columns("electric.ddl_commands")
    assert [c[:3] for c in ddl] == [
        ("id", "bigint", True),
        ("txid", "xid8", True),
        ("txts", "bigint", True),
        ("query", "text", True),
        ("query_hash", "bytea", True),
    ]
    assert await columns("electric.acknowledged_client_lsns") == [
        ("client_id", "text", True, None),
        ("lsn", "bytea", True, None),
    ]
    assert await columns("electric.schema_migrations") == [
        ("version", "bigint", True, None),
        ("inserted_at", "timestamp without time zone", True, "LOCALTIMESTAMP"),
    ]


async def test_acknowledged_client_lsn_trigger_upserts_in_replica_role(
    conn: Connection,
) -> None:
    await install_electric_schema(conn)
    assert (
        await conn.fetchval(
            "SELECT tgenabled::text FROM pg_trigger WHERE tgname = 'upsert_acknowledged_client_lsn'"
        )
        == "R"
    )
    # The logical-replication apply worker can only INSERT: a second row for a client updates.
    await conn.execute(
        "SET session_replication_role = replica;"
        "INSERT INTO electric.acknowledged_client_lsns VALUES ('c1', '\\x00000001');"
        "INSERT INTO electric.acknowledged_client_lsns VALUES ('c1', '\\x00000002');"
        "SET session_replication_role = origin"
    )
    assert await conn.fetch("SELECT client_id, lsn FROM electric.acknowledged_client_lsns") == [
        ("c1", b"\x00\x00\x00\x02")
    ]
    # Outside the replica role it is a plain table.
    with pytest.raises(PgError) as info:
        await conn.execute("INSERT INTO electric.acknowledged_client_lsns VALUES ('c1', '\\x03')")
    assert info.value.sqlstate == "23505"


async def test_tag_ordering(conn: Connection) -> None:
    await install_electric_schema(conn)
    # Ascending: time first; at equal times clients by name, then Postgres (NULL source).
    tags = [
        "('2024-01-01 00:00:00+00',a)",
        "('2024-01-01 00:00:00+00',b)",
        "('2024-01-01 00:00:00+00',)",
        "('2024-01-01 00:00:01+00',a)",
    ]
    for i, low in enumerate(tags):
        for j, high in enumerate(tags):
            row = await conn.fetchrow(
                "SELECT $1::electric.tag OPERATOR(electric.<) $2::electric.tag,"
                " $1::electric.tag OPERATOR(electric.<=) $2::electric.tag,"
                " $1::electric.tag OPERATOR(electric.=) $2::electric.tag,"
                " $1::electric.tag OPERATOR(electric.<>) $2::electric.tag,"
                " $1::electric.tag OPERATOR(electric.>=) $2::electric.tag,"
                " $1::electric.tag OPERATOR(electric.>) $2::electric.tag,"
                " electric.tag_operator_cmp($1, $2),"
                # the composite order Postgres uses for GREATEST/ORDER BY agrees
                " $1::electric.tag < $2::electric.tag",
                low,
                high,
            )
            expected = (i < j, i <= j, i == j, i != j, i >= j, i > j, (i > j) - (i < j), i < j)
            assert row == expected, (low, high)
    with pytest.raises(PgError) as info:
        await conn.execute("SELECT '(,a)'::electric.tag")
    assert info.value.sqlstate == "23514"  # a tag needs a timestamp
