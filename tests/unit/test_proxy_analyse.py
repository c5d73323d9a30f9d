"""The proxy's statement analysis: what passes, what is rewritten, what is refused (§4-5)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from electric_trio import _native
from electric_trio.proxy._analyse import (
    framework_version,
    generated_version,
    parse,
    plan,
    quote,
)
from electric_trio.proxy._ddlx import DdlxSyntaxError, parse_ddlx

ITEMS = ("public", "items")
V = ("20240101000000", 0)


def planned(sql: str, *, extended: bool = False, features: tuple[str, ...] = ()) -> object:
    parsed = parse(sql, extended=extended)
    assert parsed.statements is not None
    return plan(parsed, {ITEMS}, {}, version=V, extended=extended, features=features)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "INSERT INTO items VALUES (1)",
        "BEGIN; UPDATE items SET v = 1; COMMIT",
        "CREATE TABLE other (id int PRIMARY KEY)",
        "SELEC 1",  # Postgres answers its own syntax errors
    ],
)
def test_plain_sql_is_forwarded_untouched(sql: str) -> None:
    assert parse(sql).statements is None


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("ALTER TABLE items DROP COLUMN v", "EX010"),
        ("ALTER TABLE public.items ALTER COLUMN v TYPE int8", "EX009"),
        ("ALTER TABLE items ADD CONSTRAINT c CHECK (v > 0)", "EX007"),
        ("ALTER TABLE items ALTER COLUMN v DROP DEFAULT", "EX007"),
        ("ALTER TABLE items ADD COLUMN w int4[]", "EX005"),
        ("ALTER TABLE items ADD COLUMN w numeric", "EX005"),
        ("ALTER TABLE items ADD COLUMN w timestamp(3)", "EX005"),
        ("ALTER TABLE items ADD COLUMN w text DEFAULT ''", "EX006"),
        ("ALTER TABLE items ADD COLUMN w int REFERENCES other(id)", "EX011"),
        ("ALTER TABLE items ADD COLUMN w int GENERATED ALWAYS AS IDENTITY", "EX011"),
        ("ALTER TABLE items RENAME TO things", "EX002"),
        ("ALTER TABLE items RENAME COLUMN v TO w", "EX008"),
        ("ALTER TABLE items RENAME CONSTRAINT c TO d", "EX012"),
        ("DROP TABLE items", "EX004"),
        ("DROP TABLE other, items", "EX004"),
        ("DO $$ BEGIN END $$", "EX000"),
        ("ELECTRIC GRANT ALL ON items TO 'admin'", "EX001"),
        ("ELECTRIC REVOKE READ ON items FROM 'admin'", "EX001"),
        ("ELECTRIC ASSIGN 'admin' TO users.role", "EX001"),
        ("ALTER TABLE items DISABLE ELECTRIC", "EX001"),
        ("ELECTRIC SQLITE 'x'", "EX001"),
        ("CREATE TABLE a (id int); ELECTRIC NONSENSE", "00000"),  # Invalid ELECTRIC statement
    ],
)
def test_refusals(sql: str, code: str) -> None:
    result = planned(sql)
    assert result.rejection is not None  # type: ignore[attr-defined]
    assert result.rejection.code == code  # type: ignore[attr-defined]


def test_refusal_messages_name_the_table_and_column() -> None:
    result = planned("ALTER TABLE items DROP COLUMN v")
    assert result.rejection.message == (  # type: ignore[attr-defined]
        'Cannot drop column "v" of electrified table "public"."items"'
    )
    result = planned("ELECTRIC SQLITE 'x'")
    assert result.rejection.message == " is currently unsupported"  # type: ignore[attr-defined]


def test_drop_table_on_the_extended_protocol_is_ex100() -> None:
    result = planned("DROP TABLE items", extended=True)
    assert result.rejection.code == "EX100"  # type: ignore[attr-defined]


def test_grant_with_its_flag_calls_the_procedure_once_per_privilege() -> None:
    result = planned("ELECTRIC GRANT ALL ON items TO 'admin'", features=("proxy_ddlx_grant",))
    assert result.rejection is None  # type: ignore[attr-defined]
    assert result.tags == ["ELECTRIC GRANT"]  # type: ignore[attr-defined]
    assert result.sql.count("CALL electric.grant(") == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE items ENABLE TRIGGER t",
        "ALTER TABLE items OWNER TO someone",
        "ALTER TABLE items ALTER COLUMN v SET STATISTICS 100",
        "ALTER TABLE items SET (fillfactor = 70)",
        "ALTER TABLE other DROP COLUMN v",
        "DROP TABLE other",
    ],
)
def test_allowed_and_not_captured(sql: str) -> None:
    result = planned(sql)
    assert result.rejection is None  # type: ignore[attr-defined]
    assert not result.changed  # type: ignore[attr-defined]


def test_add_column_is_captured_with_the_shadow_table() -> None:
    result = planned("ALTER TABLE items ADD COLUMN w int8 NOT NULL")
    assert result.tags == ["ALTER TABLE"]  # type: ignore[attr-defined]
    assert result.migration  # type: ignore[attr-defined]
    sql = result.sql  # type: ignore[attr-defined]
    assert sql.startswith("DO $__")
    assert "electric.capture_ddl(" in sql
    assert re.search(r"alter_shadow_table\(\$__\w+__\$public.*'add'.*int8", sql)
    assert "assign_migration_version($__" in sql


def test_ddlx_and_electrify_calls_become_enable() -> None:
    parsed = parse(
        "CREATE TABLE a (id int PRIMARY KEY); ALTER TABLE a ENABLE ELECTRIC;"
        " ELECTRIC ENABLE public.b; CALL electric.electrify('c')"
    )
    result = plan(parsed, set(), {}, version=V)
    assert result.tags == [None, "ELECTRIC ENABLE", "ELECTRIC ENABLE", "ELECTRIC ENABLE"]
    assert result.electrified == {("public", "a"), ("public", "b"), ("public", "c")}
    assert "electric.enable($__" in result.sql
    assert '"public"."a"' in result.sql


def test_a_table_electrified_earlier_in_the_same_query_counts() -> None:
    parsed = parse("ELECTRIC ENABLE a; ALTER TABLE a DROP COLUMN x")
    result = plan(parsed, set(), {}, version=V)
    assert result.rejection is not None
    assert result.rejection.code == "EX010"


def test_index_on_electrified_table_is_captured() -> None:
    assert planned("CREATE INDEX i ON items (v)").tags == ["CREATE INDEX"]  # type: ignore[attr-defined]
    parsed = parse("DROP INDEX i")
    assert parsed.indexes == {(None, "i")}
    result = plan(parsed, {ITEMS}, {(None, "i"): ITEMS}, version=V)
    assert result.tags == ["DROP INDEX"]


def test_framework_versions() -> None:
    insert = parse(
        "INSERT INTO atdatabases_migrations_applied"
        " (index, name, script, applied_at, ignored_error, obsolete) VALUES ($1,$2,$3,$4,$5,$6)",
        extended=True,
    ).framework_insert
    assert insert is not None
    assert framework_version(insert, [b"3", b"n", b"s", None, None, b"f"], [0]) == "3"
    ecto = parse(
        "INSERT INTO schema_migrations (version, inserted_at) VALUES ($1, $2)", extended=True
    ).framework_insert
    assert ecto is not None
    assert framework_version(ecto, [(20240102).to_bytes(8, "big"), None], [1, 0]) == "20240102"
    prisma = parse(
        'INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name", "started_at")'
        " VALUES ($1, $2, $3, now())",
        extended=True,
    ).framework_insert
    assert prisma is not None
    assert framework_version(prisma, [b"x", b"c", b"20230915175207_init"], []) == "20230915175207"
    # another column set, or the simple protocol: not a framework insert
    assert (
        parse("INSERT INTO schema_migrations (version) VALUES ($1)", extended=True).framework_insert
        is None
    )
    assert (
        parse(
            "INSERT INTO schema_migrations (version, inserted_at) VALUES (1, now())"
        ).framework_insert
        is None
    )


def test_generated_versions_sort_and_quotes_are_safe() -> None:
    first, second = generated_version(), generated_version()
    assert re.fullmatch(r"\d{14}_\d{6}", first)
    assert first <= second
    text = "it's $__0__$ tricky"
    quoted = quote(text)
    tag = quoted[: quoted.index("$", 1) + 1]
    assert quoted == f"{tag}{text}{tag}"


def test_ddlx_grammar() -> None:
    assert parse_ddlx('ALTER TABLE "Mixed"."Case" ENABLE ELECTRIC').table == ("Mixed", "Case")
    assert parse_ddlx("electric enable Items").table == ("public", "items")
    assert parse_ddlx("ELECTRIC ENABLE s.t;").table == ("s", "t")
    with pytest.raises(DdlxSyntaxError):
        parse_ddlx("ELECTRIC ENABLE")


def test_frame_scanner_passes_runs_and_stops() -> None:
    scanner = _native.FrameScanner(1024)
    q = _native.encode_query("SELECT 1")
    d = _native.encode_copy_data(b"row")
    scanner.feed(d + d + q[:3])
    passed, tag, body = scanner.next(b"Q")
    assert (passed, tag, body) == (d + d, -1, b"")
    scanner.feed(q[3:] + d)
    passed, tag, body = scanner.next(b"Q")
    assert (passed, tag, body) == (b"", ord("Q"), b"SELECT 1\x00")
    assert scanner.next(b"Q") == (d, -1, b"")
    scanner.feed(b"Q\x7f\xff\xff\xff")
    with pytest.raises(_native.ProtocolError):
        scanner.next(b"Q")


def test_startup_and_frontend_parsers() -> None:
    startup = _native.encode_startup([("user", "u"), ("database", "d")])
    scanner = _native.FrameScanner()
    scanner.feed(startup + _native.encode_ssl_request())
    body = scanner.next_untagged()
    assert body is not None
    assert _native.parse_startup(body) == ("startup", 196608, [("user", "u"), ("database", "d")])
    ssl = scanner.next_untagged()
    assert ssl is not None
    assert _native.parse_startup(ssl) == ("ssl",)
    with pytest.raises(_native.ProtocolError):
        _native.parse_frontend(ord("Q"), b"no terminator")
    assert _native.encode_command_complete("ALTER TABLE") == b"C\x00\x00\x00\x10ALTER TABLE\x00"


def test_statement_text_with_multibyte_characters() -> None:
    parsed = parse("SELECT 'ééé'; ALTER TABLE items ADD COLUMN \"ü\" text; ELECTRIC ENABLE ö")
    assert parsed.statements is not None
    assert [s.text for s in parsed.statements] == [
        "SELECT 'ééé'",
        'ALTER TABLE items ADD COLUMN "ü" text',
        "ELECTRIC ENABLE ö",
    ]


@given(st.binary(max_size=300), st.binary(min_size=1, max_size=8))
@settings(max_examples=300, deadline=None)
def test_frame_scanner_never_fails_but_with_protocol_errors(data: bytes, stop: bytes) -> None:
    scanner = _native.FrameScanner(64)
    scanner.feed(data)
    consumed = 0
    try:
        while True:
            passed, tag, body = scanner.next(stop)
            consumed += len(passed) + (len(body) + 5 if tag >= 0 else 0)
            if tag < 0:
                break
            assert tag in stop
            if tag in b"QPBEDCp":
                _native.parse_frontend(tag, body)
    except _native.ProtocolError:
        return
    assert consumed + scanner.buffered == len(data)


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_analysis_of_any_text_does_not_raise(sql: str) -> None:
    parsed = parse(sql.replace("\x00", ""))
    if parsed.statements is not None:
        plan(parsed, {ITEMS}, {}, version=V)
