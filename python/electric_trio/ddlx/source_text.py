"""CHECK constraints and column defaults of a ``CREATE TABLE`` as text, cut from the statement.

The CREATE TABLE statements the service captures come from ``electric.__table_ddl()``, which
writes every constraint with ``pg_get_constraintdef()``: cut from there, a CHECK reads exactly as
Postgres reports it. Defaults are cut as written (electrify refuses columns that have one, so
they only come from DDL captured by hand).
"""

from __future__ import annotations

from typing import Any

import pglast
from pglast import ast
from pglast.enums import ConstrType
from pglast.parser import ParseError, scan

__all__ = ["column_defaults", "table_checks"]

# Tokens that end a column's DEFAULT expression (the next column constraint).
_CONSTRAINT_WORDS = frozenset(
    {
        "NOT",
        "NULL_P",
        "CONSTRAINT",
        "CHECK",
        "PRIMARY",
        "UNIQUE",
        "REFERENCES",
        "COLLATE",
        "GENERATED",
        "DEFAULT",
        "DEFERRABLE",
        "INITIALLY",
    }
)
# ... or the column: a comma or the closing parenthesis.
_DEFAULT_ENDS = _CONSTRAINT_WORDS | {"ASCII_44", "ASCII_41"}


def _create(sql: str) -> ast.CreateStmt | None:
    try:
        stmts = pglast.parse_sql(sql)
    except ParseError:
        return None
    node = stmts[0].stmt if len(stmts) == 1 else None
    return node if isinstance(node, ast.CreateStmt) else None


def _tokens_from(sql: str, start: int) -> list[Any]:
    return [t for t in scan(sql) if t.start >= start]


def _check_text(sql: str, con: Any) -> str | None:
    tokens = _tokens_from(sql, con.location)
    i = next((k for k, t in enumerate(tokens) if t.name == "CHECK"), None)
    if i is None or i + 1 >= len(tokens) or tokens[i + 1].name != "ASCII_40":
        return None
    depth = 0
    for t in tokens[i + 1 :]:
        if t.name == "ASCII_40":
            depth += 1
        elif t.name == "ASCII_41":
            depth -= 1
            if depth == 0:
                text = "CHECK " + sql[tokens[i + 1].start : t.end + 1]
                if con.is_no_inherit:
                    text += " NO INHERIT"
                if con.skip_validation:
                    text += " NOT VALID"
                return text
    return None


def table_checks(sql: str) -> tuple[tuple[str, str], ...]:
    """(name, definition) of each CHECK constraint of the CREATE TABLE ``sql``, in statement
    order; an unnamed one gets the name Postgres would give a column's (``<table>_<col>_check``)
    or a table's (``<table>_check``)."""
    stmt = _create(sql)
    if stmt is None:
        return ()
    table = stmt.relation.relname if stmt.relation is not None else ""
    found: list[tuple[int, str, str]] = []
    for element in stmt.tableElts or ():
        if isinstance(element, ast.ColumnDef):
            pairs = [(c, f"{table}_{element.colname}_check") for c in element.constraints or ()]
        elif isinstance(element, ast.Constraint):
            pairs = [(element, f"{table}_check")]
        else:
            continue
        for con, fallback in pairs:
            if con.contype != ConstrType.CONSTR_CHECK:
                continue
            text = _check_text(sql, con)
            if text is not None:
                found.append((con.location, con.conname or fallback[:63], text))
    return tuple((name, text) for _, name, text in sorted(found))


def column_defaults(sql: str) -> dict[str, str]:
    """Column name -> its DEFAULT expression as written, for the CREATE TABLE ``sql``."""
    stmt = _create(sql)
    if stmt is None:
        return {}
    out: dict[str, str] = {}
    for element in stmt.tableElts or ():
        if not isinstance(element, ast.ColumnDef):
            continue
        for con in element.constraints or ():
            if con.contype != ConstrType.CONSTR_DEFAULT:
                continue
            tokens = _tokens_from(sql, con.location)[1:]  # after DEFAULT
            depth, first, last = 0, None, None
            for t in tokens:
                if depth == 0 and t.name in _DEFAULT_ENDS:
                    break
                if t.name == "ASCII_40":
                    depth += 1
                elif t.name == "ASCII_41":
                    depth -= 1
                first = t.start if first is None else first
                last = t.end
            if first is not None and last is not None and element.colname:
                out[element.colname] = sql[first : last + 1]
    return out
