"""CALL electric.electrify(...): validation (§4.1), effects, captured DDL and versions (§5)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import pytest
import trio

from electric_trio.ddlx import install_electric_schema
from electric_trio.pg import Connection, PgError, connect


@pytest.fixture
async def conn(pg_url: str) -> AsyncIterator[Connection]:
    """A connection to a fresh database with the electric schema installed."""
    name = f"ddlx_{uuid.uuid4().hex[:12]}"
    async with await connect(pg_url) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            async with await connect(pg_url.rsplit("/", 1)[0] + "/" + name) as c:
                await install_electric_schema(c)
                c.notices.clear()
                yield c
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def state(conn: Connection) -> tuple[object, ...]:
    """Everything electrify() may change, to check that a rejection changed nothing."""
    return (
        await conn.fetch("SELECT schema_name, table_name FROM electric.electrified ORDER BY 1, 2"),
        await conn.fetch("SELECT query FROM electric.ddl_commands ORDER BY id"),
        await conn.fetch("SELECT version FROM electric.migration_versions ORDER BY 1"),
        await conn.fetch("SELECT schemaname, tablename FROM pg_publication_tables ORDER BY 1, 2"),
        await conn.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'electric'::regnamespace"
            " AND (relname LIKE 'shadow%' OR relname LIKE 'tombstone%') ORDER BY 1"
        ),
        await conn.fetch(
            "SELECT relname, relreplident::text FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1"
        ),
        await conn.fetch("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"),
    )


async def rejected(
    conn: Connection, setup: str, call: str = "CALL electric.electrify('t')"
) -> PgError:
    """Runs ``setup``, then ``call``, which must fail and change nothing."""
    await conn.execute(setup)
    before = await state(conn)
    with pytest.raises(PgError) as info:
        await conn.execute(call)
    assert await state(conn) == before
    return info.value


# ---- validation, in order ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "name"),
    [
        ("CREATE TABLE base (id int8 PRIMARY KEY); CREATE VIEW t AS SELECT * FROM base", "t"),
        ("CREATE TABLE t (id int8 PRIMARY KEY) PARTITION BY RANGE (id)", "t"),
        ("CREATE SEQUENCE t", "t"),
        ("CREATE MATERIALIZED VIEW t AS SELECT 1 AS id", "t"),
    ],
)
async def test_rejects_what_is_not_an_ordinary_table(
    conn: Connection, setup: str, name: str
) -> None:
    error = await rejected(conn, setup)
    assert error.message == f"public.{name} is not an ordinary table"
    assert error.sqlstate == "42809"


async def test_rejects_an_unknown_table(conn: Connection) -> None:
    error = await rejected(conn, "SELECT 1", "CALL electric.electrify('nope')")
    assert error.sqlstate == "42P01"


async def test_rejects_a_table_outside_public(conn: Connection) -> None:
    error = await rejected(
        conn,
        "CREATE SCHEMA other; CREATE TABLE other.t (id int8 PRIMARY KEY)",
        "CALL electric.electrify('other', 't')",
    )
    assert "Cannot electrify other.t" in error.message
    assert "public schema" in error.message
    # the test switch of the original lifts the rule
    await conn.execute(
        "SET electric.__schema_validation_enabled = false; CALL electric.electrify('other', 't')"
    )
    assert await conn.fetchval("SELECT to_regclass('electric.shadow__other__t')") is not None


async def test_rejects_unsupported_types_all_listed_in_one_error(conn: Connection) -> None:
    error = await rejected(
        conn,
        "CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);"
        "CREATE TABLE t (id int8 PRIMARY KEY, ok text, n numeric, arr int4[], j json,"
        " c char(3), vc varchar(10), tz timetz, i interval, d posint, cidr_col cidr)",
    )
    assert error.sqlstate == "0A000"
    assert error.message.startswith("Cannot electrify public.t because")
    offenders = re.findall(r"^    (\S+) (.+)$", error.message, re.MULTILINE)
    assert offenders == [
        ("n", "numeric"),
        ("arr", "integer[]"),
        ("j", "json"),
        ("c", "character(3)"),
        ("vc", "character varying(10)"),
        ("tz", "time with time zone"),
        ("i", "interval"),
        ("d", "public.posint"),
        ("cidr_col", "cidr"),
    ]


async def test_accepts_every_supported_type(conn: Connection) -> None:
    await conn.execute(
        "CREATE TYPE mood AS ENUM ('happy', 'so_so', 'Sad2');"
        "CREATE TABLE t (id uuid PRIMARY KEY, a bool, b bytea, c date, d float4, e float8,"
        " f int2, g int4, h int8, i jsonb, j text, k time, l timestamp, m timestamptz,"
        " n varchar, o mood, p timestamp(3), q time(0));"
        "CALL electric.electrify('t')"
    )
    assert await conn.fetchval("SELECT count(*) FROM electric.electrified") == 1


async def test_rejects_an_enum_with_a_label_that_is_not_an_identifier(conn: Connection) -> None:
    error = await rejected(
        conn,
        "CREATE TYPE bad AS ENUM ('ok', 'not ok', '1st');"
        "CREATE TABLE t (id int8 PRIMARY KEY, e bad)",
    )
    assert "e public.bad" in error.message
    assert "'not ok', '1st'" in error.message
    assert "'ok'" not in error.message


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("x text DEFAULT 'a'", "default"),
        ("x int8 GENERATED ALWAYS AS (id * 2) STORED", "generated"),
        ("x int8 GENERATED BY DEFAULT AS IDENTITY", "identity"),
        ("x timestamptz DEFAULT now()", "default"),
    ],
)
async def test_rejects_columns_with_defaults(conn: Connection, column: str, kind: str) -> None:
    error = await rejected(conn, f"CREATE TABLE t (id int8 PRIMARY KEY, {column})")
    assert error.sqlstate == "0A000"
    assert "DEFAULT" in error.message
    assert f"x ({kind})" in error.message


async def test_rejects_a_table_without_primary_key(conn: Connection) -> None:
    error = await rejected(conn, "CREATE TABLE t (id int8 NOT NULL, v text)")
    assert error.message == "Cannot electrify public.t because it doesn't have a PRIMARY KEY."


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ("v text UNIQUE", "t_v_key (UNIQUE on v)"),
        ("v int4 CHECK (v > 0)", "t_v_check (CHECK on v)"),
        ("a int4, b int4, CONSTRAINT pair UNIQUE (a, b)", "pair (UNIQUE on a, b)"),
        ("v text, CONSTRAINT always CHECK (true)", "always (CHECK)"),
    ],
)
async def test_rejects_unique_and_check_constraints(
    conn: Connection, columns: str, expected: str
) -> None:
    error = await rejected(conn, f"CREATE TABLE t (id int8 PRIMARY KEY, {columns})")
    assert error.sqlstate == "0A000"
    assert expected in error.message


async def test_constraint_check_can_be_switched_off_but_not_the_primary_key_check(
    conn: Connection,
) -> None:
    await conn.execute("SET electric.__constraint_validation_enabled = false")
    error = await rejected(
        conn, "CREATE TABLE nopk (v text UNIQUE)", "CALL electric.electrify('nopk')"
    )
    assert "PRIMARY KEY" in error.message
    await conn.execute(
        "CREATE TABLE t (id int8 PRIMARY KEY, v text UNIQUE); CALL electric.electrify('t')"
    )
    ddl = await conn.fetchval(
        "SELECT query FROM electric.ddl_commands WHERE query LIKE 'CREATE TABLE%'"
    )
    assert "CONSTRAINT t_v_key UNIQUE (v)" in ddl


async def test_accepts_not_null_and_foreign_keys(conn: Connection) -> None:
    await conn.execute(
        "CREATE TABLE parent (id int8 PRIMARY KEY, name text NOT NULL);"
        "CREATE TABLE t (id int8 NOT NULL PRIMARY KEY, v text NOT NULL,"
        " parent_id int8 NOT NULL REFERENCES parent (id) ON DELETE CASCADE);"
        "CALL electric.electrify('parent'); CALL electric.electrify('t')"
    )
    if conn.server_version >= 180000:
        # PostgreSQL 18 records NOT NULL as constraints, which the original refused
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_constraint"
                " WHERE conrelid = 't'::regclass AND contype = 'n'"
            )
            == 3
        )
    assert await conn.fetchval("SELECT count(*) FROM electric.electrified") == 2


async def test_rejects_column_names_that_clash_with_the_shadow_table(conn: Connection) -> None:
    error = await rejected(conn, 'CREATE TABLE t ("_tags" text PRIMARY KEY, v text)')
    assert "_tags" in error.message
    error = await rejected(
        conn, 'CREATE TABLE t2 ("_tag_v" text PRIMARY KEY, v text)', "CALL electric.electrify('t2')"
    )
    assert "_tag_v" in error.message
    error = await rejected(
        conn,
        f"CREATE TABLE t3 (id int8 PRIMARY KEY, {'x' * 60} text)",
        "CALL electric.electrify('t3')",
    )
    assert "x" * 60 in error.message


async def test_rejects_a_table_name_too_long_for_its_shadow_table(conn: Connection) -> None:
    name = "t" * 48  # shadow__public__ + 48 = 64 bytes
    error = await rejected(
        conn, f"CREATE TABLE {name} (id int8 PRIMARY KEY)", f"CALL electric.electrify('{name}')"
    )
    assert error.sqlstate == "42622"
    fits = "u" * 47
    await conn.execute(
        f"CREATE TABLE {fits} (id int8 PRIMARY KEY); CALL electric.electrify('{fits}')"
    )
    await conn.execute(f"INSERT INTO {fits} VALUES (1); DELETE FROM {fits}")
    # the tombstone table's name is hashed to fit (Postgres would have truncated it)
    tombstone = await conn.fetchval(
        "SELECT relname FROM pg_class WHERE relname LIKE 'tombstone__public__u%'"
    )
    assert len(tombstone) == 63
    assert await conn.fetchval(f'SELECT count(*) FROM electric."{tombstone}"') == 1


# ---- the effects ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        "CALL electric.electrify('Items')",
        "CALL electric.electrify('public', 'Items')",
        "CALL electric.electrify('public.\"Items\"')",
        'CALL electric.enable(\'"public"."Items"\')',
    ],
)
async def test_call_forms(conn: Connection, call: str) -> None:
    await conn.execute('CREATE TABLE "Items" (id text PRIMARY KEY, v text)')
    await conn.execute(call)
    assert await conn.fetch("SELECT schema_name, table_name, oid FROM electric.electrified") == [
        ("public", "Items", await conn.fetchval("SELECT '\"Items\"'::regclass::oid"))
    ]
    assert [n.message for n in conn.notices] == ['Electrify table public."Items"']


async def test_unqualified_name_follows_the_search_path(conn: Connection) -> None:
    await conn.execute(
        "CREATE SCHEMA app; CREATE TABLE app.t (id int8 PRIMARY KEY);SET search_path = app, public"
    )
    error = await rejected(conn, "SELECT 1")
    assert "Cannot electrify app.t" in error.message


async def test_electrify_is_idempotent(conn: Connection) -> None:
    await conn.execute("CREATE TABLE t (id text PRIMARY KEY, v text); CALL electric.electrify('t')")
    before = await state(conn)
    conn.notices.clear()
    await conn.execute("CALL electric.electrify('public', 't')")
    assert [n.message for n in conn.notices] == ["table public.t is already electrified"]
    assert await state(conn) == before


async def test_relkind_is_checked_before_the_already_electrified_notice(conn: Connection) -> None:
    error = await rejected(conn, "CREATE VIEW t AS SELECT 1 AS id")
    assert "not an ordinary table" in error.message


async def test_effects(conn: Connection) -> None:
    await conn.execute(
        "CREATE TYPE colour AS ENUM ('red', 'green');"
        "CREATE TYPE size AS ENUM ('s', 'm');"
        "CREATE TABLE t (id uuid PRIMARY KEY, name text NOT NULL, c colour, s size, c2 colour,"
        ' "_private" int4);'
        "CREATE INDEX t_name_idx ON t (name); CREATE INDEX t_c_idx ON t (c, s);"
        "INSERT INTO t (id, name) VALUES (gen_random_uuid(), 'before');"
        "CALL electric.electrify('t')"
    )
    ddl = await conn.fetch("SELECT txid, txts, query FROM electric.ddl_commands ORDER BY id")
    assert [r[2] for r in ddl] == [
        "CREATE TYPE public.colour AS ENUM ('red', 'green');",
        "CREATE TYPE public.size AS ENUM ('s', 'm');",
        "CREATE TABLE public.t (\n"
        "    id uuid NOT NULL,\n"
        "    name text NOT NULL,\n"
        "    c public.colour,\n"
        "    s public.size,\n"
        "    c2 public.colour,\n"
        "    _private integer,\n"
        "    CONSTRAINT t_pkey PRIMARY KEY (id)\n"
        ");",
        "CREATE INDEX t_c_idx ON public.t USING btree (c, s);",
        "CREATE INDEX t_name_idx ON public.t USING btree (name);",
    ]
    # one migration: every statement shares the transaction's key, with one default version
    assert len({(r[0], r[1]) for r in ddl}) == 1
    versions = await conn.fetch(
        "SELECT txid, txts, version, priority FROM electric.migration_versions"
    )
    assert len(versions) == 1
    assert (versions[0][0], versions[0][1]) == (ddl[0][0], ddl[0][1])
    assert re.fullmatch(r"\d{14}_\d{3}", versions[0][2])
    assert versions[0][3] == 0

    assert (
        await conn.fetchval("SELECT relreplident::text FROM pg_class WHERE oid = 't'::regclass")
        == "f"
    )
    assert (
        await conn.fetchval(
            "SELECT relreplident::text FROM pg_class"
            " WHERE oid = 'electric.shadow__public__t'::regclass"
        )
        == "f"
    )
    members = [
        tuple(r)
        for r in await conn.fetch(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE tablename LIKE '%t'"
        )
    ]
    assert ("public", "t") in members
    assert ("electric", "shadow__public__t") in members
    assert ("electric", "tombstone__public__t") not in members
    # rows that predate electrification get no shadow rows
    assert await conn.fetchval("SELECT count(*) FROM electric.shadow__public__t") == 0


async def columns(conn: Connection, table: str) -> list[tuple[str, str, bool]]:
    return [
        tuple(r)
        for r in await conn.fetch(
            "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull FROM pg_attribute"
            " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            table,
        )
    ]


async def primary_key(conn: Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT a.attname::text FROM pg_index i,"
        " unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = $1::regclass AND a.attnum = k.attnum"
        " WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord",
        table,
    )
    return [r[0] for r in rows]


async def test_shadow_and_tombstone_columns(conn: Connection) -> None:
    await conn.execute(
        "CREATE TYPE colour AS ENUM ('red');"
        "CREATE TABLE t (a text NOT NULL, v varchar, id int8, c colour NOT NULL, d date,"
        " PRIMARY KEY (id, a));"
        "CALL electric.electrify('t')"
    )
    assert await columns(conn, "electric.shadow__public__t") == [
        ("_tags", "electric.tag[]", False),
        ("_last_modified", "bigint", False),
        ("_is_a_delete_operation", "boolean", False),
        ("_tag", "electric.tag", False),
        ("_observed_tags", "electric.tag[]", False),
        ("_modified_columns_bit_mask", "boolean[]", False),
        ("_resolved", "boolean", False),
        ("_currently_reordering", "boolean", False),
        ("__reordered_v", "character varying", False),
        ("__reordered_c", "colour", False),
        ("__reordered_d", "date", False),
        ("a", "text", True),
        ("_tag_v", "electric.tag", False),
        ("id", "bigint", True),
        ("_tag_c", "electric.tag", False),
        ("_tag_d", "electric.tag", False),
    ]
    assert await primary_key(conn, "electric.shadow__public__t") == ["id", "a"]
    assert await columns(conn, "electric.tombstone__public__t") == await columns(conn, "t")
    assert await primary_key(conn, "electric.tombstone__public__t") == ["id", "a"]
    defaults = dict(
        await conn.fetch(
            "SELECT a.attname::text, pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d"
            " JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
            " WHERE d.adrelid = 'electric.shadow__public__t'::regclass"
        )
    )
    assert defaults == {"_tags": "'{}'::electric.tag[]", "_is_a_delete_operation": "false"}


async def test_triggers(conn: Connection) -> None:
    await conn.execute(
        "CREATE TABLE p (id int8 PRIMARY KEY);"
        "CREATE TABLE t (id int8 PRIMARY KEY, p_id int8 REFERENCES p (id));"
        "CALL electric.electrify('p'); CALL electric.electrify('t')"
    )

    async def triggers(table: str) -> dict[str, str]:
        rows = await conn.fetch(
            "SELECT tgname::text, tgenabled::text FROM pg_trigger"
            " WHERE tgrelid = $1::regclass AND NOT tgisinternal",
            table,
        )
        return dict(rows)

    assert await triggers("t") == {
        "as_first__save_deleted_rows_to_tombstone_table": "A",
        "postgres_write__upsert_generate_shadow_rows": "O",
        "postgres_write__delete_generate_shadow_rows": "O",
        "satellite_write__save_operation_for_reordering": "A",
        "send_self_and_references_on_insert": "A",
        "send_self_and_references_on_update": "A",
    }
    # p has no foreign key, so nothing to report after its writes
    assert "send_self_and_references_on_insert" not in await triggers("p")
    assert await triggers("electric.shadow__public__t") == {
        "postgres_write__write_resolved_tags": "O",
        "satellite_write__upsert_rows": "A",
        "satellite_write__resolve_observed_tags": "A",
    }
    deferred = await conn.fetchrow(
        "SELECT tgdeferrable, tginitdeferred FROM pg_trigger"
        " WHERE tgname = 'postgres_write__write_resolved_tags'"
        " AND tgrelid = 'electric.shadow__public__t'::regclass"
    )
    assert deferred == (True, True)


SEND_SELF_TRIGGERS_OF_T = (
    "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'send_self%' AND tgrelid = 't'::regclass"
)


async def test_child_electrified_before_its_parent_gets_its_triggers_later(
    conn: Connection,
) -> None:
    await conn.execute(
        "CREATE TABLE p (id int8 PRIMARY KEY);"
        "CREATE TABLE t (id int8 PRIMARY KEY, p_id int8 REFERENCES p (id));"
        "CALL electric.electrify('t')"
    )
    assert not await conn.fetchval(SEND_SELF_TRIGGERS_OF_T)
    await conn.execute("CALL electric.electrify('p')")
    assert await conn.fetchval(SEND_SELF_TRIGGERS_OF_T) == 2


async def test_electrify_inside_a_transaction_rolls_back_with_it(conn: Connection) -> None:
    await conn.execute("CREATE TABLE t (id int8 PRIMARY KEY)")
    before = await state(conn)
    await conn.execute("BEGIN; CALL electric.electrify('t'); ROLLBACK")
    assert await state(conn) == before


# ---- migration versions and capture (§5) ---------------------------------------------------


async def test_explicit_version(conn: Connection) -> None:
    await conn.execute(
        "BEGIN;"
        "CALL electric.migration_version('20240101000000');"
        "CREATE TABLE t (id text PRIMARY KEY, v text);"
        "CREATE TABLE u (id text PRIMARY KEY);"
        "CALL electric.electrify('t');"
        "CALL electric.electrify('u');"
        "COMMIT"
    )
    versions = await conn.fetch(
        "SELECT txid, txts, version, priority FROM electric.migration_versions"
    )
    assert [(v[2], v[3]) for v in versions] == [("20240101000000", 32767)]
    ddl = await conn.fetch("SELECT txid, txts, query FROM electric.ddl_commands ORDER BY id")
    assert [r[2].split(" (")[0] for r in ddl] == ["CREATE TABLE public.t", "CREATE TABLE public.u"]
    assert {(r[0], r[1]) for r in ddl} == {(versions[0][0], versions[0][1])}


async def test_default_version_is_the_transaction_time_in_utc(conn: Connection) -> None:
    await conn.execute("SET TimeZone = 'Pacific/Auckland'")
    row = await conn.fetchrow(
        "BEGIN; CREATE TABLE t (id text PRIMARY KEY); CALL electric.electrify('t');"
        "SELECT (SELECT version FROM electric.migration_versions),"
        " to_char(transaction_timestamp() AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS_MS')"
    )
    await conn.execute("COMMIT")
    assert row is not None
    assert row[0] == row[1]
    assert re.fullmatch(r"\d{14}_\d{3}", row[0])


async def test_version_priorities(conn: Connection) -> None:
    await conn.execute("BEGIN")
    await conn.execute("CALL electric.assign_migration_version('1111', 1)")

    async def version() -> tuple[str, int]:
        row = await conn.fetchrow("SELECT version, priority FROM electric.migration_versions")
        assert row is not None
        return row[0], row[1]

    assert await version() == ("1111", 1)
    await conn.execute("CALL electric.assign_migration_version('2222', 2)")
    assert await version() == ("2222", 2)
    await conn.execute("CALL electric.assign_migration_version('3333', 2)")  # a tie keeps the first
    assert await version() == ("2222", 2)
    await conn.execute("CALL electric.assign_default_version()")  # a version exists: no-op
    assert await version() == ("2222", 2)
    await conn.execute("CALL electric.migration_version('4444')")
    assert await version() == ("4444", 32767)
    assert await conn.fetchval("SELECT electric.tx_has_assigned_version()")
    await conn.execute("COMMIT")
    assert not await conn.fetchval("SELECT electric.tx_has_assigned_version()")


async def test_capture_ddl(conn: Connection) -> None:
    await conn.execute(
        "BEGIN;"
        "CALL electric.capture_ddl('CREATE INDEX i ON t (v)');"
        "CALL electric.capture_ddl('CREATE INDEX i ON t (v)');"  # same text, same tx: once
        "CALL electric.capture_ddl();"  # the statement being run
        "COMMIT"
    )
    ddl = [r[0] for r in await conn.fetch("SELECT query FROM electric.ddl_commands ORDER BY id")]
    assert ddl[0] == "CREATE INDEX i ON t (v)"
    assert len(ddl) == 2
    assert "CALL electric.capture_ddl();" in ddl[1]
    assert await conn.fetchval("SELECT count(*) FROM electric.migration_versions") == 1
    # a large statement is fine (the unique key holds its hash, not its text)
    big = "-- " + "x" * 100_000 + "\nALTER TABLE t ADD COLUMN w text"
    await conn.execute("CALL electric.capture_ddl($1)", big)
    assert await conn.fetchval("SELECT count(*) FROM electric.ddl_commands") == 3


async def test_a_version_names_one_migration_only(conn: Connection) -> None:
    await conn.execute("CALL electric.migration_version('v1')")
    with pytest.raises(PgError) as info:
        await conn.execute("CALL electric.migration_version('v1')")
    assert info.value.sqlstate == "23505"


async def test_alter_shadow_table(conn: Connection) -> None:
    await conn.execute(
        "CREATE TYPE colour AS ENUM ('red');"
        "CREATE TABLE t (id text PRIMARY KEY, v text); CALL electric.electrify('t');"
        "ALTER TABLE t ADD COLUMN c colour;"
        "CALL electric.alter_shadow_table('public', 't', 'add', 'c', 'colour')"
    )
    shadow = await columns(conn, "electric.shadow__public__t")
    assert shadow[-2:] == [
        ("__reordered_c", "colour", False),
        ("_tag_c", "electric.tag", False),
    ]
    assert (await columns(conn, "electric.tombstone__public__t"))[-1] == (
        "c",
        "colour",
        False,
    )
    # the regenerated functions know the column
    await conn.execute("INSERT INTO t VALUES ('a', 'x', 'red')")
    await conn.execute("UPDATE t SET c = NULL")
    row = await conn.fetchrow(
        "SELECT (_tag_c).timestamp IS NOT NULL, _modified_columns_bit_mask"
        " FROM electric.shadow__public__t"
    )
    assert row == (True, [])
    await conn.execute("DELETE FROM t")
    assert await conn.fetch("SELECT * FROM electric.tombstone__public__t") == [("a", "x", None)]


async def test_disable_and_sqlite_do_nothing(conn: Connection) -> None:
    await conn.execute("CREATE TABLE t (id text PRIMARY KEY); CALL electric.electrify('t')")
    before = await state(conn)
    await conn.execute("CALL electric.disable('t'); CALL electric.sqlite('CREATE TABLE x (y)')")
    assert await state(conn) == before


async def test_concurrent_electrify_of_one_table(conn: Connection, pg_url: str) -> None:
    await conn.execute("CREATE TABLE t (id text PRIMARY KEY)")
    database = await conn.fetchval("SELECT current_database()")
    url = pg_url.rsplit("/", 1)[0] + "/" + database
    async with await connect(url) as other:
        await conn.execute("BEGIN; CALL electric.electrify('t')")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other.execute, "CALL electric.electrify('t')")
            with trio.fail_after(10):  # until other waits for the table
                while True:
                    await conn.execute("SELECT pg_stat_clear_snapshot()")
                    waiting = await conn.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE pid = $1 AND wait_event_type = 'Lock'",
                        other.backend_pid,
                    )
                    if waiting:
                        break
                    await trio.sleep(0.01)
            await conn.execute("COMMIT")
        assert [n.message for n in other.notices] == ["table public.t is already electrified"]
    assert await conn.fetchval("SELECT count(*) FROM electric.electrified") == 1
