"""The DDLX statements the proxy understands (server-behaviour.md §4), read from the text of one
statement that the Postgres parser refused at an ``ELECTRIC`` token.

A small tokenizer and a recursive-descent parser for the whole grammar of §4::

    ALTER TABLE t ENABLE|DISABLE ELECTRIC | ELECTRIC ENABLE|DISABLE t
    ELECTRIC GRANT perm ON t TO role [USING a/b/…] [CHECK (expr)]
    ELECTRIC REVOKE perm ON t FROM role
    ELECTRIC ASSIGN role TO col_ref [IF (expr)]
    ELECTRIC UNASSIGN role FROM col_ref
    ELECTRIC SQLITE 'statements'

Each command becomes the ``CALL electric.<procedure>(…)`` statements that do its work (one per
privilege for GRANT and REVOKE), kept here as data: the procedure and its named arguments.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Call", "DdlxCommand", "DdlxSyntaxError", "looks_like_ddlx", "parse_ddlx"]

#: A procedure argument: text, NULL (None) or a text array (a tuple).
Value = str | tuple[str, ...] | None
Table = tuple[str, str]

DEFAULT_SCHEMA = "public"
#: The scope of a GRANT / REVOKE whose role has none.
GLOBAL_SCOPE = "__global__"

# Words the grammar reserves: never read as a bare identifier (quote them to use them as names),
# as in the original's tokenizer.
_KEYWORDS = frozenset(
    "ALL ALTER AND ASSIGN CHECK DELETE DISABLE ELECTRIC ENABLE FROM GRANT IF INSERT IS NOT NULL "
    "ON OR PRIVILEGES READ REVOKE SELECT SQLITE TABLE TO UNASSIGN UPDATE USING WRITE".split()
)
_PRIVILEGES = {
    "SELECT": ("select",),
    "INSERT": ("insert",),
    "UPDATE": ("update",),
    "DELETE": ("delete",),
    "ALL": ("select", "insert", "update", "delete"),
    "READ": ("select",),
    "WRITE": ("insert", "update", "delete"),
}
_BINARY_OPS = frozenset({"=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/"})
_WORD_OPS = frozenset({"AND", "OR", "IS"})

# ELECTRIC as a token outside quotes: what tells a DDLX statement from a plain syntax error.
_ELECTRIC_TOKEN = re.compile(r"\bELECTRIC\b", re.IGNORECASE)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*|/\*.*?\*/)
  | (?P<qident>"(?:[^"]|"")*")
  | (?P<string>'(?:[^']|'')*')
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*)
  | (?P<op><>|<=|>=|!=|[.,():=<>+\-*/;])
    """,
    re.VERBOSE | re.DOTALL,
)


class DdlxSyntaxError(ValueError):
    """A statement with ``ELECTRIC`` in it that the DDLX grammar refuses; the message says
    why (the proxy sends it as the error's detail)."""


@dataclass(frozen=True)
class Call:
    """One ``CALL electric.<procedure>(…)``: arguments by name (a None name: positional)."""

    procedure: str
    args: tuple[tuple[str | None, Value], ...]

    @property
    def named(self) -> dict[str | None, Value]:
        return dict(self.args)

    def sql(self, quote: Callable[[str], str]) -> str:
        """The statement, with every string written by ``quote`` (a dollar-quoted literal)."""
        parts = []
        for name, value in self.args:
            text = _value_sql(value, quote)
            parts.append(text if name is None else f"{name} => {text}")
        return f"CALL electric.{self.procedure}({', '.join(parts)})"


def _value_sql(value: Value, quote: Callable[[str], str]) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, tuple):
        return f"ARRAY[{', '.join(quote(v) for v in value)}]::text[]"
    return quote(value)


@dataclass(frozen=True)
class DdlxCommand:
    #: ``ENABLE``, ``DISABLE``, ``GRANT``, ``REVOKE``, ``ASSIGN``, ``UNASSIGN`` or ``SQLITE``.
    action: str
    #: ``(schema, table)`` the command is about (none for SQLITE).
    table: Table | None = None
    #: The procedure calls that carry it out, in order.
    calls: tuple[Call, ...] = ()

    @property
    def tag(self) -> str:
        """The command tag the client gets (empty for SQLITE, as in the original)."""
        return "" if self.action == "SQLITE" else f"ELECTRIC {self.action}"

    @property
    def flag(self) -> str:
        """The ``ELECTRIC_FEATURES`` flag that allows this command (DISABLE and SQLITE have none
        of their own and fall back to ``__default__``, which is off)."""
        if self.action in ("GRANT", "REVOKE", "ASSIGN", "UNASSIGN"):
            return f"proxy_ddlx_{self.action.lower()}"
        return "__default__"

    def sql(self, quote: Callable[[str], str]) -> list[str]:
        return [call.sql(quote) for call in self.calls]


def looks_like_ddlx(sql: str) -> bool:
    return _ELECTRIC_TOKEN.search(sql) is not None


def sql_table(table: Table) -> str:
    """``"schema"."table"``: how the procedures receive a table."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in table)


# ---- tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # word, qident, string, number, op, end
    value: str  # word: as written; qident/string: unquoted; number/op: as written
    pos: int

    @property
    def keyword(self) -> str | None:
        if self.kind == "word" and self.value.upper() in _KEYWORDS:
            return self.value.upper()
        return None

    def shown(self) -> str:
        if self.kind == "end":
            return "end of statement"
        if self.kind == "string":
            return "'" + self.value.replace("'", "''") + "'"
        if self.kind == "qident":
            return '"' + self.value.replace('"', '""') + '"'
        return f'"{self.value}"'


def _lower(word: str) -> str:
    """Postgres folds unquoted names to lower case in ASCII only (in UTF-8 databases)."""
    return word.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _tokens(sql: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(sql):
        m = _TOKEN.match(sql, pos)
        if m is None:
            if sql.startswith("/*", pos):
                raise DdlxSyntaxError("unterminated /* comment")
            if sql[pos] in "'\"":
                what = "quoted string" if sql[pos] == "'" else "quoted identifier"
                raise DdlxSyntaxError(f"unterminated {what} at position {pos + 1}")
            raise DdlxSyntaxError(f"syntax error at or near {sql[pos]!r}")
        kind = m.lastgroup
        text = m.group()
        if kind == "tag":
            kind = "dollar"
        if kind == "space":
            pass
        elif kind == "qident":
            if text == '""':
                raise DdlxSyntaxError("zero-length delimited identifier")
            out.append(_Token("qident", text[1:-1].replace('""', '"'), pos))
        elif kind == "string":
            out.append(_Token("string", text[1:-1].replace("''", "'"), pos))
        elif kind == "dollar":
            end = sql.find(text, m.end())
            if end < 0:
                raise DdlxSyntaxError(f"unterminated dollar-quoted string at position {pos + 1}")
            out.append(_Token("string", sql[m.end() : end], pos))
            pos = end + len(text)
            continue
        else:
            assert kind is not None
            out.append(_Token(kind, text, pos))
        pos = m.end()
    out.append(_Token("end", "", len(sql)))
    return out


# ---- the parser ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Role:
    """A role as written: a string (``'admin'``, ``'projects:admin'``) or a column path."""

    name: str | None = None
    column: tuple[str, ...] = ()


class _Parser:
    def __init__(self, sql: str) -> None:
        self.tokens = _tokens(sql)
        self.i = 0

    # -- token helpers --

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def error(self, token: _Token | None = None) -> DdlxSyntaxError:
        return DdlxSyntaxError(f"syntax error at or near {(token or self.tok).shown()}")

    def advance(self) -> _Token:
        token = self.tok
        if token.kind != "end":
            self.i += 1
        return token

    def at(self, *keywords: str) -> bool:
        return self.tok.keyword in keywords

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.value in ops

    def accept(self, keyword: str) -> bool:
        if self.at(keyword):
            self.i += 1
            return True
        return False

    def accept_op(self, op: str) -> bool:
        if self.at_op(op):
            self.i += 1
            return True
        return False

    def expect(self, keyword: str) -> None:
        if not self.accept(keyword):
            raise self.error()

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            raise self.error()

    def at_identifier(self) -> bool:
        return self.tok.kind == "qident" or (self.tok.kind == "word" and self.tok.keyword is None)

    def identifier(self) -> str:
        token = self.tok
        if token.kind == "qident":
            self.i += 1
            return token.value
        if token.kind == "word" and token.keyword is None:
            self.i += 1
            return _lower(token.value)
        raise self.error()

    def dotted(self, most: int) -> list[str]:
        parts = [self.identifier()]
        while self.at_op(".") and len(parts) < most:
            self.i += 1
            parts.append(self.identifier())
        return parts

    def table(self) -> Table:
        parts = self.dotted(2)
        return (parts[0], parts[1]) if len(parts) == 2 else (DEFAULT_SCHEMA, parts[0])

    def end(self) -> None:
        self.accept_op(";")
        if self.tok.kind != "end":
            raise self.error()

    # -- statements --

    def statement(self) -> DdlxCommand:
        if self.accept("ALTER"):
            self.expect("TABLE")
            if self.tok.kind == "word" and self.tok.value.upper() == "ONLY":
                self.i += 1
            table = self.table()
            action = self.tok.keyword
            if action not in ("ENABLE", "DISABLE"):
                raise self.error()
            self.i += 1
            self.expect("ELECTRIC")
            self.end()
            return _table_command(action, table)
        self.expect("ELECTRIC")
        action = self.tok.keyword
        if action in ("ENABLE", "DISABLE"):
            self.i += 1
            table = self.table()
            self.end()
            return _table_command(action, table)
        if action in ("GRANT", "REVOKE"):
            self.i += 1
            return self.grant(action)
        if action in ("ASSIGN", "UNASSIGN"):
            self.i += 1
            return self.assign(action)
        if action == "SQLITE":
            self.i += 1
            if self.tok.kind != "string":
                raise self.error()
            text = self.advance().value
            self.end()
            return DdlxCommand("SQLITE", None, (Call("sqlite", (("sql", text),)),))
        raise self.error()

    def grant(self, action: str) -> DdlxCommand:
        keyword = self.tok.keyword
        if keyword not in _PRIVILEGES:
            raise self.error()
        self.i += 1
        privileges = _PRIVILEGES[keyword]
        columns: tuple[str, ...] = ("*",)
        if self.accept_op("("):
            names = [self.identifier()]
            while self.accept_op(","):
                names.append(self.identifier())
            self.expect_op(")")
            columns = tuple(names)
        self.expect("ON")
        table = self.table()
        self.expect("TO" if action == "GRANT" else "FROM")
        scope, role = self.scoped_role()
        if role.name is None:
            raise DdlxSyntaxError(
                f"the role of ELECTRIC {action} must be a quoted role name such as 'admin', "
                f"not {'.'.join(role.column)}"
            )
        role_scope, role_name = _split_role(role.name)
        scope = scope or role_scope
        scope_name = GLOBAL_SCOPE if scope is None else sql_table(scope)
        using: str | None = None
        check: str | None = None
        if action == "GRANT":
            if self.accept("USING"):
                path = []
                if self.at_identifier():
                    path.append(self.identifier())
                    while self.accept_op("/"):
                        path.append(self.identifier())
                using = "/".join(path) or None
            if self.accept("CHECK"):
                check = self.parenthesised()
        self.end()
        calls = []
        for privilege in privileges:
            args: list[tuple[str | None, Value]] = [
                ("privilege_name", privilege),
                ("on_table_name", sql_table(table)),
                ("role_name", role_name),
                ("columns", columns),
                ("scope_name", scope_name),
            ]
            if action == "GRANT":
                args += [("using_path", using), ("check_fn", check)]
            calls.append(Call(action.lower(), tuple(args)))
        return DdlxCommand(action, table, tuple(calls))

    def assign(self, action: str) -> DdlxCommand:
        scope, role = self.scoped_role()
        self.expect("TO" if action == "ASSIGN" else "FROM")
        target = self.dotted(3)
        if len(target) < 2:
            raise DdlxSyntaxError(
                f"ELECTRIC {action} needs the user column as table.column or "
                f"schema.table.column, not {target[0]}"
            )
        table: Table = (target[0], target[1]) if len(target) == 3 else (DEFAULT_SCHEMA, target[0])
        user_column = target[-1]
        role_name: str | None = None
        role_column: str | None = None
        if role.name is not None:
            role_scope, role_name = _split_role(role.name)
            scope = scope or role_scope
        else:
            *where, role_column = role.column
            if where:
                role_table = (where[0], where[1]) if len(where) == 2 else (DEFAULT_SCHEMA, where[0])
                if role_table != table:
                    raise DdlxSyntaxError(
                        f"the role column {'.'.join(role.column)} must be a column of the "
                        f"table of the user column, {sql_table(table)}"
                    )
        if_fn = None
        if action == "ASSIGN" and self.accept("IF"):
            if_fn = self.parenthesised()
        self.end()
        args: list[tuple[str | None, Value]] = [
            ("assign_table_full_name", sql_table(table)),
            ("scope", None if scope is None else sql_table(scope)),
            ("user_column_name", user_column),
            ("role_name_string", role_name),
            ("role_column_name", role_column),
        ]
        if action == "ASSIGN":
            args.append(("if_fn", if_fn))
        return DdlxCommand(action, table, (Call(action.lower(), tuple(args)),))

    def scoped_role(self) -> tuple[Table | None, _Role]:
        """``role`` | ``scope:role`` | ``(scope, role)``; a NULL scope is None."""
        if self.accept_op("("):
            scope = self.scope()
            self.expect_op(",")
            role = self.role()
            self.expect_op(")")
            return scope, role
        if self.tok.kind == "string":
            return None, self.role()
        if self.at("NULL") or self.at_identifier():
            start = self.i
            if self.accept("NULL"):
                parts = None
            else:
                parts = self.dotted(3)
            if self.accept_op(":"):
                if parts is not None and len(parts) > 2:
                    raise self.error(self.tokens[start])
                return _scope_table(parts), self.role()
            if parts is None:
                raise self.error()
            return None, _Role(column=tuple(parts))
        raise self.error()

    def scope(self) -> Table | None:
        if self.accept("NULL"):
            return None
        return _scope_table(self.dotted(2))

    def role(self) -> _Role:
        if self.tok.kind == "string":
            return _Role(name=self.advance().value)
        return _Role(column=tuple(self.dotted(3)))

    # -- expressions, kept as text --

    def parenthesised(self) -> str:
        self.expect_op("(")
        text = self.expr()
        self.expect_op(")")
        return text

    def expr(self) -> str:
        parts = [self.unary()]
        while True:
            if self.tok.kind == "op" and self.tok.value in _BINARY_OPS:
                parts.append(self.advance().value)
            elif self.tok.keyword in _WORD_OPS:
                parts.append(self.advance().value.upper())
            else:
                return " ".join(parts)
            parts.append(self.unary())

    def unary(self) -> str:
        if self.accept("NOT"):
            return f"NOT {self.unary()}"
        if self.accept_op("-"):
            return f"-{self.unary()}"
        if self.accept_op("("):
            inner = self.expr()
            self.expect_op(")")
            return f"({inner})"
        token = self.tok
        if self.accept("NULL"):
            return "NULL"
        if token.kind == "string":
            self.i += 1
            return "'" + token.value.replace("'", "''") + "'"
        if token.kind == "number":
            self.i += 1
            return token.value
        if self.at_identifier():
            names = [self.name_text()]
            while self.accept_op("."):
                names.append(self.name_text())
            text = ".".join(names)
            if self.accept_op("("):
                args = []
                if not self.at_op(")"):
                    args.append(self.expr())
                    while self.accept_op(","):
                        args.append(self.expr())
                self.expect_op(")")
                return f"{text}({', '.join(args)})"
            return text
        raise self.error()

    def name_text(self) -> str:
        """An identifier as SQL text: folded if it was bare, still quoted if it was quoted."""
        token = self.tok
        name = self.identifier()
        if token.kind == "qident":
            return '"' + name.replace('"', '""') + '"'
        return name


def _table_command(action: str, table: Table) -> DdlxCommand:
    return DdlxCommand(action, table, (Call(action.lower(), ((None, sql_table(table)),)),))


def _scope_table(parts: list[str] | None) -> Table | None:
    if parts is None:
        return None
    return (parts[0], parts[1]) if len(parts) == 2 else (DEFAULT_SCHEMA, parts[0])


def _split_role(text: str) -> tuple[Table | None, str]:
    """``'scope:role'`` → (the scope table, role); ``'role'`` → (None, role)."""
    scope_text, colon, role = text.partition(":")
    if not colon:
        if not text:
            raise DdlxSyntaxError(f"invalid role assignment {text!r}: the role name is empty")
        return None, text
    if not scope_text or not role:
        raise DdlxSyntaxError(f"invalid role assignment {text!r}: scope and role must be named")
    parser = _Parser(scope_text)
    try:
        parts = parser.dotted(2)
        if parser.tok.kind != "end":
            raise parser.error()
    except DdlxSyntaxError as e:
        raise DdlxSyntaxError(f"invalid scope in role assignment {text!r}: {e}") from None
    return _scope_table(parts), role


def parse_ddlx(sql: str) -> DdlxCommand:
    """The DDLX command in ``sql`` (one statement); raises :class:`DdlxSyntaxError`."""
    return _Parser(sql).statement()
