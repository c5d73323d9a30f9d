"""The DDLX grammar of server-behaviour.md §4, form by form: what each statement becomes (the
procedure calls and their named arguments), and the statements it refuses with a message."""

from __future__ import annotations

import re

import pytest

from electric_trio.proxy._analyse import quote
from electric_trio.proxy._ddlx import DdlxCommand, DdlxSyntaxError, parse_ddlx

GLOBAL = "__global__"
T = '"public"."t"'


def calls(sql: str) -> list[tuple[str, dict[str | None, object]]]:
    cmd = parse_ddlx(sql)
    return [(c.procedure, c.named) for c in cmd.calls]


def grant_args(
    privilege: str,
    *,
    table: str = T,
    role: str = "admin",
    columns: tuple[str, ...] = ("*",),
    scope: str = GLOBAL,
    using: str | None = None,
    check: str | None = None,
) -> tuple[str, dict[str | None, object]]:
    return (
        "grant",
        {
            "privilege_name": privilege,
            "on_table_name": table,
            "role_name": role,
            "columns": columns,
            "scope_name": scope,
            "using_path": using,
            "check_fn": check,
        },
    )


# ---- ENABLE / DISABLE --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "action", "table"),
    [
        ("ALTER TABLE things ENABLE ELECTRIC;", "ENABLE", ("public", "things")),
        ('ALTER TABLE "Private"."Items" ENABLE ELECTRIC', "ENABLE", ("Private", "Items")),
        ("alter table Private.Items enable electric", "ENABLE", ("private", "items")),
        ("ALTER TABLE ONLY s.t ENABLE ELECTRIC", "ENABLE", ("s", "t")),
        ("ELECTRIC ENABLE things", "ENABLE", ("public", "things")),
        ("ALTER TABLE things DISABLE ELECTRIC", "DISABLE", ("public", "things")),
        ("ELECTRIC DISABLE application.things;", "DISABLE", ("application", "things")),
        ('ELECTRIC ENABLE "we""ird"', "ENABLE", ("public", 'we"ird')),
    ],
)
def test_enable_and_disable(sql: str, action: str, table: tuple[str, str]) -> None:
    cmd = parse_ddlx(sql)
    assert (cmd.action, cmd.table) == (action, table)
    name = '"' + table[0].replace('"', '""') + '"."' + table[1].replace('"', '""') + '"'
    assert [(c.procedure, c.args) for c in cmd.calls] == [(action.lower(), ((None, name),))]
    assert cmd.tag == f"ELECTRIC {action}"


# ---- GRANT / REVOKE ----------------------------------------------------------------------------


def test_grant_one_call_per_privilege() -> None:
    assert calls("ELECTRIC GRANT ALL ON t TO 'admin'") == [
        grant_args(p) for p in ("select", "insert", "update", "delete")
    ]
    assert calls("ELECTRIC GRANT READ ON t TO 'admin'") == [grant_args("select")]
    assert calls("ELECTRIC GRANT WRITE ON t TO 'admin'") == [
        grant_args(p) for p in ("insert", "update", "delete")
    ]
    for word in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        assert calls(f"electric grant {word.lower()} on t to 'admin'") == [grant_args(word.lower())]


def test_grant_columns_tables_and_quoting() -> None:
    assert calls(
        'ELECTRIC GRANT UPDATE (status, "Name") ON thing."Köln_en$ts" TO \'house.admin\''
    ) == [
        grant_args(
            "update",
            table='"thing"."Köln_en$ts"',
            role="house.admin",
            columns=("status", "Name"),
        )
    ]
    # unquoted names fold to lower case in ASCII only, as Postgres folds them
    assert parse_ddlx("ELECTRIC GRANT READ ON Thing.KÖLN TO 'a'").table == ("thing", "kÖln")
    # a role in dollar quotes, with a quote in it
    assert calls("ELECTRIC GRANT READ ON t TO $r$it's$r$")[0][1]["role_name"] == "it's"


@pytest.mark.parametrize(
    "role",
    [
        "'projects:member'",
        "projects:'member'",
        "public.projects:'member'",
        "(projects, 'member')",
        "( public.projects , 'member' )",
        "'public.projects:member'",
    ],
)
def test_grant_scoped_roles(role: str) -> None:
    assert calls(f"ELECTRIC GRANT SELECT ON t TO {role}") == [
        grant_args("select", role="member", scope='"public"."projects"')
    ]


def test_grant_null_scope_is_global() -> None:
    assert calls("ELECTRIC GRANT SELECT ON t TO (NULL, 'member')") == [
        grant_args("select", role="member")
    ]
    assert calls("ELECTRIC GRANT SELECT ON t TO NULL:'member'") == [
        grant_args("select", role="member")
    ]


def test_grant_using_and_check() -> None:
    assert calls(
        "ELECTRIC GRANT UPDATE ON t TO 'projects:admin' USING issue/project_id"
        " CHECK (name = 'Paul' AND count(x, 2) >= -1.5 OR NOT \"Flag\" IS NULL)"
    ) == [
        grant_args(
            "update",
            role="admin",
            scope='"public"."projects"',
            using="issue/project_id",
            check="name = 'Paul' AND count(x, 2) >= -1.5 OR NOT \"Flag\" IS NULL",
        )
    ]
    assert calls("ELECTRIC GRANT READ ON t TO 'a' CHECK ((a + 1) * 2 <> b.c / 3)") == [
        grant_args("select", role="a", check="(a + 1) * 2 <> b.c / 3")
    ]
    assert calls("ELECTRIC GRANT READ ON t TO 'a' USING p") == [
        grant_args("select", role="a", using="p")
    ]
    assert calls("ELECTRIC GRANT READ ON t TO 'a' CHECK (a - 1 <= -2 OR b > 0.5e3)") == [
        grant_args("select", role="a", check="a - 1 <= -2 OR b > 0.5e3")
    ]
    # strings in an expression keep their quotes doubled
    check = calls("ELECTRIC GRANT READ ON t TO 'a' CHECK (x != 'it''s')")[0][1]["check_fn"]
    assert check == "x != 'it''s'"


def test_revoke() -> None:
    assert calls("ELECTRIC REVOKE UPDATE (status, name) ON s.t FROM 'projects:house.admin'") == [
        (
            "revoke",
            {
                "privilege_name": "update",
                "on_table_name": '"s"."t"',
                "role_name": "house.admin",
                "columns": ("status", "name"),
                "scope_name": '"public"."projects"',
            },
        )
    ]
    revoked = calls("ELECTRIC REVOKE ALL ON t FROM 'admin';")
    assert [args["privilege_name"] for _, args in revoked] == [
        "select",
        "insert",
        "update",
        "delete",
    ]
    assert all(args["columns"] == ("*",) and args["scope_name"] == GLOBAL for _, args in revoked)


# ---- ASSIGN / UNASSIGN -------------------------------------------------------------------------


def assign_args(
    table: str,
    user_column: str,
    *,
    scope: str | None = None,
    role_name: str | None = None,
    role_column: str | None = None,
    if_fn: str | None = None,
) -> dict[str | None, object]:
    return {
        "assign_table_full_name": table,
        "scope": scope,
        "user_column_name": user_column,
        "role_name_string": role_name,
        "role_column_name": role_column,
        "if_fn": if_fn,
    }


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "ELECTRIC ASSIGN 'admin' TO admin_users.user_id",
            assign_args('"public"."admin_users"', "user_id", role_name="admin"),
        ),
        (
            "ELECTRIC ASSIGN (NULL, 'admin') TO application.admin_users.user_id;",
            assign_args('"application"."admin_users"', "user_id", role_name="admin"),
        ),
        (
            "ELECTRIC ASSIGN user_roles.role_name TO user_roles.user_id",
            assign_args('"public"."user_roles"', "user_id", role_column="role_name"),
        ),
        (
            'ELECTRIC ASSIGN (NuLl, "App".user_roles.Role) TO "App".user_roles.User_id',
            assign_args('"App"."user_roles"', "user_id", role_column="role"),
        ),
        (
            "ELECTRIC ASSIGN (projects, project_members.role) TO project_members.user_id",
            assign_args(
                '"public"."project_members"',
                "user_id",
                scope='"public"."projects"',
                role_column="role",
            ),
        ),
        (
            "ELECTRIC ASSIGN (auth.projects, app.members.role) TO app.members.user_id",
            assign_args(
                '"app"."members"', "user_id", scope='"auth"."projects"', role_column="role"
            ),
        ),
        (
            "ELECTRIC ASSIGN 'deliveries:driver' TO deliveries.driver_id",
            assign_args(
                '"public"."deliveries"',
                "driver_id",
                scope='"public"."deliveries"',
                role_name="driver",
            ),
        ),
        (
            'ELECTRIC ASSIGN aaa:\'gzp\' TO "pTw"."cjd".twi',
            assign_args('"pTw"."cjd"', "twi", scope='"public"."aaa"', role_name="gzp"),
        ),
        (
            # a bare role column is a column of the user column's table
            "ELECTRIC ASSIGN projects:role TO members.user_id",
            assign_args(
                '"public"."members"', "user_id", scope='"public"."projects"', role_column="role"
            ),
        ),
        (
            "ELECTRIC ASSIGN 'record.reader' TO user_permissions.user_id IF ( can_read_records() )",
            assign_args(
                '"public"."user_permissions"',
                "user_id",
                role_name="record.reader",
                if_fn="can_read_records()",
            ),
        ),
        (
            "ELECTRIC ASSIGN 'a' TO m.u IF (NEW.active AND NEW.level > 2)",
            assign_args('"public"."m"', "u", role_name="a", if_fn="new.active AND new.level > 2"),
        ),
    ],
)
def test_assign(sql: str, expected: dict[str | None, object]) -> None:
    cmd = parse_ddlx(sql)
    assert cmd.action == "ASSIGN"
    assert cmd.tag == "ELECTRIC ASSIGN"
    assert [(c.procedure, c.named) for c in cmd.calls] == [("assign", expected)]


def test_unassign() -> None:
    assert calls("ELECTRIC UNASSIGN 'record.reader' FROM user_permissions.user_id;") == [
        (
            "unassign",
            {
                "assign_table_full_name": '"public"."user_permissions"',
                "scope": None,
                "user_column_name": "user_id",
                "role_name_string": "record.reader",
                "role_column_name": None,
            },
        )
    ]
    assert calls("ELECTRIC UNASSIGN (projects, members.role) FROM members.user_id")[0][1] == {
        "assign_table_full_name": '"public"."members"',
        "scope": '"public"."projects"',
        "user_column_name": "user_id",
        "role_name_string": None,
        "role_column_name": "role",
    }


# ---- SQLITE ------------------------------------------------------------------------------------


def test_sqlite() -> None:
    cmd = parse_ddlx("ELECTRIC SQLITE '-- a comment;';")
    assert (cmd.action, cmd.tag, cmd.table) == ("SQLITE", "", None)
    assert calls("ELECTRIC SQLITE '-- a comment;';") == [("sqlite", {"sql": "-- a comment;"})]
    text = "-- comment\nselect 'this';"
    assert calls(f"ELECTRIC SQLITE $sqlite${text}$sqlite$;") == [("sqlite", {"sql": text})]


# ---- what is sent ------------------------------------------------------------------------------


def test_calls_as_sql() -> None:
    cmd: DdlxCommand = parse_ddlx("ELECTRIC GRANT UPDATE (a) ON t TO 'x''y' CHECK (a = 'q')")
    plain = cmd.sql(lambda text: "'" + text.replace("'", "''") + "'")
    assert plain == [
        "CALL electric.grant(privilege_name => 'update', on_table_name => '\"public\".\"t\"', "
        "role_name => 'x''y', columns => ARRAY['a']::text[], scope_name => '__global__', "
        "using_path => NULL, check_fn => 'a = ''q''')"
    ]
    # as the proxy sends it: every string in a dollar quote of its own
    (sent,) = cmd.sql(quote)
    literals = re.findall(r"(\$__[0-9a-f]{12}__\$)(.*?)\1", sent, re.DOTALL)
    assert [text for _, text in literals] == [
        "update",
        '"public"."t"',
        "x'y",
        "a",
        "__global__",
        "a = 'q'",
    ]
    assert len({tag for tag, _ in literals}) == 6
    assert "'" not in re.sub(r"(\$__[0-9a-f]{12}__\$).*?\1", "", sent, flags=re.DOTALL)


# ---- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("ELECTRIC GRANT SELECT, INSERT ON t TO 'a'", 'syntax error at or near ","'),
        ("ELECTRIC GRANT ALL PRIVILEGES ON t TO 'a'", 'syntax error at or near "PRIVILEGES"'),
        ("ELECTRIC GRANT EXECUTE ON t TO 'a'", 'syntax error at or near "EXECUTE"'),
        ("ELECTRIC GRANT SELECT () ON t TO 'a'", 'syntax error at or near ")"'),
        ("ELECTRIC GRANT SELECT ON 't' TO 'a'", "syntax error at or near 't'"),
        ("ELECTRIC GRANT SELECT ON a.b.c TO 'a'", 'syntax error at or near "."'),
        ("ELECTRIC GRANT SELECT ON t TO 'a' CHECK (x = )", 'syntax error at or near ")"'),
        ("ELECTRIC GRANT SELECT ON t TO 'a' CHECK x = 1", 'syntax error at or near "x"'),
        ("ELECTRIC GRANT SELECT ON t TO 'a' CHECK (f(1,)", 'syntax error at or near ")"'),
        ("ELECTRIC GRANT SELECT ON t TO 'a' trailing", 'syntax error at or near "trailing"'),
        ("ELECTRIC GRANT SELECT ON select TO 'a'", 'syntax error at or near "select"'),
        (
            "ELECTRIC GRANT ALL ON t TO admin",
            "the role of ELECTRIC GRANT must be a quoted role name such as 'admin', not admin",
        ),
        (
            "ELECTRIC REVOKE ALL ON t FROM (s, t.c)",
            "the role of ELECTRIC REVOKE must be a quoted role name such as 'admin', not t.c",
        ),
        ("ELECTRIC REVOKE ALL ON t TO 'a'", 'syntax error at or near "TO"'),
        ("ELECTRIC REVOKE ALL ON t FROM 'a' USING p", 'syntax error at or near "USING"'),
        (
            "electric assign 'projects:' to users.user_id",
            "invalid role assignment 'projects:': scope and role must be named",
        ),
        (
            "electric assign '' to users.user_id",
            "invalid role assignment '': the role name is empty",
        ),
        (
            "electric assign ':' to users.user_id",
            "invalid role assignment ':': scope and role must be named",
        ),
        (
            "electric assign 'a b:admin' to users.user_id",
            "invalid scope in role assignment 'a b:admin': syntax error at or near \"b\"",
        ),
        (
            "electric assign abusers.role to users.user_id",
            "the role column abusers.role must be a column of the table of the user column, "
            '"public"."users"',
        ),
        (
            "ELECTRIC ASSIGN 'a' TO users",
            "ELECTRIC ASSIGN needs the user column as table.column or schema.table.column, "
            "not users",
        ),
        ("ELECTRIC ASSIGN a.b.c:'r' TO t.u", 'syntax error at or near "a"'),
        ("ELECTRIC ASSIGN (s, 'r' TO t.u", 'syntax error at or near "TO"'),
        ("ELECTRIC UNASSIGN 'r' FROM t.u IF (x)", 'syntax error at or near "IF"'),
        ("ELECTRIC SQLITE x", 'syntax error at or near "x"'),
        ("ELECTRIC ENABLE", "syntax error at or near end of statement"),
        ("ELECTRIC NONSENSE", 'syntax error at or near "NONSENSE"'),
        ("ALTER TABLE t ENABLE ELECTRIC extra", 'syntax error at or near "extra"'),
        ("ELECTRIC GRANT READ ON t TO 'open", "unterminated quoted string at position 29"),
        ('ELECTRIC ENABLE ""', "zero-length delimited identifier"),
        ("ELECTRIC SQLITE $x$never closed", "unterminated dollar-quoted string at position 17"),
        ("ELECTRIC ENABLE t @", "syntax error at or near '@'"),
        ("ELECTRIC ENABLE t; ELECTRIC ENABLE u", 'syntax error at or near "ELECTRIC"'),
    ],
)
def test_refusals(sql: str, message: str) -> None:
    with pytest.raises(DdlxSyntaxError) as info:
        parse_ddlx(sql)
    assert str(info.value) == message


def test_comments_and_layout_are_ignored() -> None:
    sql = """
        -- a comment
        ELECTRIC /* another */ GRANT
            READ ON t
            TO 'admin' ;
    """
    assert calls(sql) == [grant_args("select")]


def test_flags() -> None:
    assert parse_ddlx("ELECTRIC GRANT READ ON t TO 'a'").flag == "proxy_ddlx_grant"
    assert parse_ddlx("ELECTRIC REVOKE READ ON t FROM 'a'").flag == "proxy_ddlx_revoke"
    assert parse_ddlx("ELECTRIC ASSIGN 'a' TO t.u").flag == "proxy_ddlx_assign"
    assert parse_ddlx("ELECTRIC UNASSIGN 'a' FROM t.u").flag == "proxy_ddlx_unassign"
    assert parse_ddlx("ELECTRIC DISABLE t").flag == "__default__"
    assert parse_ddlx("ELECTRIC SQLITE 'x'").flag == "__default__"
