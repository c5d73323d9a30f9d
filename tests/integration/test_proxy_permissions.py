"""DDLX permission commands through the migrations proxy (server-behaviour.md §4): with their
``ELECTRIC_FEATURES`` flags on, GRANT / REVOKE / ASSIGN / UNASSIGN run the electric procedures
and answer with their command tags; off, they are refused with EX001; statements the grammar
refuses answer 00000 "Invalid ELECTRIC statement" with the parser's message as the detail. The
session stays usable after every error, on the simple and the extended protocol."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import trio
from test_proxy import Running, db, out, run_psql, running, start, sync

from electric_trio.pg import PgError, connect

__all__ = ["db", "running"]

ALL_FLAGS = (
    "proxy_ddlx_grant=true:proxy_ddlx_revoke=true:proxy_ddlx_assign=true:"
    "proxy_ddlx_unassign=true:__default__=true"
)

SCHEMA = """
CREATE TABLE users (id text PRIMARY KEY, name text);
CREATE TABLE projects (id text PRIMARY KEY, title text);
CREATE TABLE members (
    id text PRIMARY KEY,
    project_id text REFERENCES projects (id),
    user_id text REFERENCES users (id),
    role text,
    active bool
);
CREATE TABLE issues (id text PRIMARY KEY, project_id text REFERENCES projects (id), body text);
INSERT INTO users VALUES ('u1', 'one'), ('u2', 'two');
INSERT INTO projects VALUES ('p1', 'first');
INSERT INTO members VALUES ('m1', 'p1', 'u1', 'owner', true);
"""


@pytest.fixture
async def flagged(db: str, nursery: trio.Nursery) -> Running:
    return await start(nursery, db, ELECTRIC_FEATURES=ALL_FLAGS)


async def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await connect(url) as conn:
        return [tuple(r) for r in await conn.fetch(sql)]


GRANTS = (
    "SELECT privilege, on_table, role, column_name, scope, using_path, check_fn"
    " FROM electric.grants ORDER BY 1, 2, 3, 4, 5"
)


async def test_grant_and_revoke_write_electric_grants(flagged: Running) -> None:
    setup = await run_psql(flagged.dsn(), SCHEMA + "ALTER TABLE issues ENABLE ELECTRIC;")
    assert setup.returncode == 0, out(setup)

    def script() -> list[str | None]:
        tags = []
        with psycopg.connect(flagged.dsn(), autocommit=True) as conn:
            for sql in (
                "ELECTRIC GRANT ALL ON issues TO 'projects:member' USING project_id",
                "ELECTRIC GRANT UPDATE (body) ON public.issues TO (projects, 'editor')"
                " CHECK (body <> 'x' AND NOT body IS NULL)",
                "electric grant read on Issues to 'reader'",
            ):
                cur = conn.execute(sql)
                tags.append(cur.statusmessage)
        return tags

    assert await sync(script) == ["ELECTRIC GRANT"] * 3
    scope = '"public"."projects"'
    table = '"public"."issues"'
    assert await rows(flagged.db_url, GRANTS) == [
        ("delete", table, "member", "*", scope, "project_id", None),
        ("insert", table, "member", "*", scope, "project_id", None),
        ("select", table, "member", "*", scope, "project_id", None),
        ("select", table, "reader", "*", "__global__", None, None),
        ("update", table, "editor", "body", scope, None, "body <> 'x' AND NOT body IS NULL"),
        ("update", table, "member", "*", scope, "project_id", None),
    ]

    # REVOKE: the privileges named, all columns when none are named
    proc = await run_psql(
        flagged.dsn(),
        "ELECTRIC REVOKE WRITE ON issues FROM 'projects:member';\n"
        "ELECTRIC REVOKE UPDATE (body) ON issues FROM projects:'editor';\n",
    )
    assert proc.returncode == 0, out(proc)
    assert out(proc).count("ELECTRIC REVOKE") == 2
    assert await rows(flagged.db_url, GRANTS) == [
        ("select", table, "member", "*", scope, "project_id", None),
        ("select", table, "reader", "*", "__global__", None, None),
    ]


async def test_grant_on_the_extended_protocol_and_in_a_transaction(flagged: Running) -> None:
    setup = await run_psql(flagged.dsn(), SCHEMA)
    assert setup.returncode == 0, out(setup)

    def script() -> str | None:
        with psycopg.connect(flagged.dsn()) as conn:  # a transaction
            cur = conn.execute("ELECTRIC GRANT INSERT ON issues TO 'admin'", prepare=True)
            tag = cur.statusmessage
            conn.execute("INSERT INTO users VALUES ('u3', 'three')")
            conn.rollback()  # rolls the grant back too
            cur = conn.execute("ELECTRIC GRANT DELETE ON issues TO 'admin'", prepare=True)
            conn.commit()
        return tag

    assert await sync(script) == "ELECTRIC GRANT"
    assert await rows(flagged.db_url, "SELECT privilege FROM electric.grants") == [("delete",)]
    assert await rows(flagged.db_url, "SELECT count(*) FROM users WHERE id = 'u3'") == [(0,)]


async def test_grant_errors_from_postgres_leave_the_session_usable(flagged: Running) -> None:
    setup = await run_psql(flagged.dsn(), SCHEMA)
    assert setup.returncode == 0, out(setup)

    def script() -> list[str | None]:
        codes = []
        with psycopg.connect(flagged.dsn(), autocommit=True) as conn:
            for sql in (
                "ELECTRIC GRANT ALL ON nowhere TO 'admin'",
                "ELECTRIC GRANT UPDATE (nothing) ON issues TO 'admin'",
                "ELECTRIC ASSIGN 'admin' TO issues.body",  # no foreign key to a user table
            ):
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(sql)
                codes.append(info.value.sqlstate)
                assert conn.execute("SELECT 1").fetchone() == (1,)
        return codes

    assert await sync(script) == ["42P01", "42703", "42P16"]
    assert await rows(flagged.db_url, "SELECT count(*) FROM electric.grants") == [(0,)]


ROLES = "SELECT role, user_id, scope_table, scope_id FROM electric.roles ORDER BY user_id, role"


async def test_assign_keeps_roles_in_step_and_unassign_removes_them(flagged: Running) -> None:
    setup = await run_psql(flagged.dsn(), SCHEMA + "ALTER TABLE members ENABLE ELECTRIC;")
    assert setup.returncode == 0, out(setup)
    scope = '"public"."projects"'
    proc = await run_psql(
        flagged.dsn(),
        "ELECTRIC ASSIGN (projects, members.role) TO members.user_id IF (NEW.active);\n"
        "ELECTRIC ASSIGN 'member' TO public.members.user_id;\n",
    )
    assert proc.returncode == 0, out(proc)
    assert out(proc).count("ELECTRIC ASSIGN") == 2
    assert await rows(
        flagged.db_url,
        "SELECT table_name, scope_table, user_column, role_name, role_column, if_fn"
        " FROM electric.assignments ORDER BY role_name",
    ) == [
        ('"public"."members"', scope, "user_id", "__none__", "role", "new.active"),
        ('"public"."members"', "__none__", "user_id", "member", "__none__", None),
    ]
    # the existing row got its roles at once
    assert await rows(flagged.db_url, ROLES) == [
        ("member", "u1", None, None),
        ("owner", "u1", scope, "p1"),
    ]
    async with await connect(flagged.db_url) as conn:
        await conn.execute("INSERT INTO members VALUES ('m2', 'p1', 'u2', 'viewer', false)")
        await conn.execute("UPDATE members SET role = 'admin' WHERE id = 'm1'")
    assert await rows(flagged.db_url, ROLES) == [
        ("admin", "u1", scope, "p1"),
        ("member", "u1", None, None),
        ("member", "u2", None, None),  # the IF only applies to the scoped assignment
    ]
    async with await connect(flagged.db_url) as conn:
        await conn.execute("UPDATE members SET active = true WHERE id = 'm2'")
        await conn.execute("DELETE FROM members WHERE id = 'm1'")
    assert await rows(flagged.db_url, ROLES) == [
        ("member", "u2", None, None),
        ("viewer", "u2", scope, "p1"),
    ]

    proc = await run_psql(
        flagged.dsn(), "ELECTRIC UNASSIGN (projects, members.role) FROM members.user_id;"
    )
    assert proc.returncode == 0, out(proc)
    assert "ELECTRIC UNASSIGN" in out(proc)
    assert await rows(flagged.db_url, ROLES) == [("member", "u2", None, None)]
    assert await rows(flagged.db_url, "SELECT count(*) FROM electric.assignments") == [(1,)]
    async with await connect(flagged.db_url) as conn:  # no trigger left behind
        await conn.execute("INSERT INTO members VALUES ('m3', 'p1', 'u1', 'owner', true)")
    assert await rows(flagged.db_url, ROLES) == [
        ("member", "u1", None, None),
        ("member", "u2", None, None),
    ]


async def test_disable_and_sqlite_with_the_default_flag(flagged: Running) -> None:
    setup = await run_psql(flagged.dsn(), SCHEMA + "ALTER TABLE issues ENABLE ELECTRIC;")
    assert setup.returncode == 0, out(setup)

    def script() -> list[str | None]:
        with psycopg.connect(flagged.dsn(), autocommit=True) as conn:
            return [
                conn.execute("ALTER TABLE issues DISABLE ELECTRIC").statusmessage,
                conn.execute("ELECTRIC SQLITE 'CREATE INDEX x ON y (z);'").statusmessage,
            ]

    assert await sync(script) == ["ELECTRIC DISABLE", None]  # SQLITE: an empty tag
    # DISABLE does nothing (as in the original): the table stays electrified
    assert await rows(flagged.db_url, "SELECT table_name FROM electric.electrified") == [
        ("issues",)
    ]


async def test_flags_off_refuse_with_ex001(running: Running) -> None:
    setup = await run_psql(running.dsn(), SCHEMA)
    assert setup.returncode == 0, out(setup)

    def script() -> list[tuple[str | None, str]]:
        seen = []
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            for sql in (
                "ELECTRIC GRANT ALL ON issues TO 'admin'",
                "ELECTRIC REVOKE ALL ON issues FROM 'admin'",
                "ELECTRIC ASSIGN 'admin' TO members.user_id",
                "ELECTRIC UNASSIGN 'admin' FROM members.user_id",
                "ALTER TABLE issues DISABLE ELECTRIC",
                "ELECTRIC SQLITE 'x'",
            ):
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(sql)
                seen.append((info.value.sqlstate, info.value.diag.message_primary or ""))
                assert conn.execute("SELECT 1").fetchone() == (1,)
        return seen

    assert await sync(script) == [
        ("EX001", "ELECTRIC GRANT is currently unsupported"),
        ("EX001", "ELECTRIC REVOKE is currently unsupported"),
        ("EX001", "ELECTRIC ASSIGN is currently unsupported"),
        ("EX001", "ELECTRIC UNASSIGN is currently unsupported"),
        ("EX001", "ELECTRIC DISABLE is currently unsupported"),
        ("EX001", " is currently unsupported"),
    ]
    assert await rows(running.db_url, "SELECT count(*) FROM electric.grants") == [(0,)]


@pytest.mark.parametrize("prepare", [False, True], ids=["simple", "extended"])
async def test_parse_errors_answer_00000_with_the_parser_message(
    flagged: Running, prepare: bool
) -> None:
    def script() -> list[tuple[str | None, str | None, str | None]]:
        seen = []
        with psycopg.connect(flagged.dsn(), autocommit=True) as conn:
            for sql in (
                "ELECTRIC GRANT SELECT, INSERT ON t TO 'admin'",
                "ELECTRIC GRANT ALL PRIVILEGES ON t TO 'admin'",
                "ELECTRIC GRANT ALL ON t TO admin",
                "ELECTRIC ASSIGN ':admin' TO users.id",
            ):
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(sql, prepare=prepare)
                diag = info.value.diag
                seen.append((info.value.sqlstate, diag.message_primary, diag.message_detail))
                assert conn.execute("SELECT 1").fetchone() == (1,)
        return seen

    seen = await sync(script)
    assert [s[:2] for s in seen] == [("00000", "Invalid ELECTRIC statement")] * 4
    assert [s[2] for s in seen] == [
        'syntax error at or near ","',
        'syntax error at or near "PRIVILEGES"',
        "the role of ELECTRIC GRANT must be a quoted role name such as 'admin', not admin",
        "invalid role assignment ':admin': scope and role must be named",
    ]


async def test_psql_shows_the_parse_error(flagged: Running) -> None:
    proc = await run_psql(flagged.dsn(), "ELECTRIC GRANT ALL PRIVILEGES ON t TO 'a';")
    text = out(proc)
    assert proc.returncode != 0
    assert "ERROR:  Invalid ELECTRIC statement" in text
    assert 'DETAIL:  syntax error at or near "PRIVILEGES"' in text
    assert "DO $" not in text


async def test_a_syntax_error_elsewhere_is_postgres_own(flagged: Running) -> None:
    """Only a statement the Postgres parser gives up on at ELECTRIC is DDLX: a plain syntax
    error that merely mentions the word gets Postgres's own error."""

    def script() -> tuple[str | None, str | None]:
        with psycopg.connect(flagged.dsn(), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.SyntaxError) as info:
                conn.execute("SELECT * FROM electric WHERE")
            assert conn.execute("SELECT 1").fetchone() == (1,)
            return info.value.sqlstate, info.value.diag.message_primary

    assert await sync(script) == ("42601", "syntax error at end of input")


async def test_assign_runs_with_the_callers_rights(flagged: Running) -> None:
    """The functions an assignment generates evaluate its IF expression on every write: a role
    that merely owns a table cannot create one by calling the procedure directly."""
    setup = await run_psql(flagged.dsn(), SCHEMA)
    assert setup.returncode == 0, out(setup)
    async with await connect(flagged.db_url) as conn:
        await conn.execute(
            "CREATE ROLE et_mallory; GRANT USAGE ON SCHEMA electric TO et_mallory;"
            " GRANT REFERENCES ON users TO et_mallory;"
            " CREATE TABLE mine (id text PRIMARY KEY, user_id text REFERENCES users (id));"
            " ALTER TABLE mine OWNER TO et_mallory"
        )
        try:
            await conn.execute("BEGIN; SET LOCAL ROLE et_mallory")
            with pytest.raises(PgError) as info:
                await conn.execute(
                    "CALL electric.assign('\"public\".\"mine\"', NULL, 'user_id', 'admin',"
                    " NULL, 'true')"
                )
            assert info.value.sqlstate == "42501", info.value
            await conn.execute("ROLLBACK")
        finally:
            await conn.execute(
                "DROP TABLE mine; REVOKE ALL ON SCHEMA electric FROM et_mallory;"
                " REVOKE ALL ON users FROM et_mallory; DROP ROLE et_mallory"
            )
    assert await rows(flagged.db_url, "SELECT count(*) FROM electric.assignments") == [(0,)]
