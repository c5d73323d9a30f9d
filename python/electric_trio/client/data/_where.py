"""Where trees, orderings and limits of the data access, compiled to parameterised SQLite.

A where tree is a mapping: ``{"column": value}`` (equality, ``None`` is ``IS NULL``),
``{"column": {"gt": 1, "lte": 9}}`` (operators, all must hold), ``{"AND": [...]}``,
``{"OR": [...]}``, ``{"NOT": {...}}``. Values are converted to their storage form by the
column's type and always travel as parameters; names are checked against the schema and quoted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...errors import ElectricError
from ..schema import TableSchema
from ._convert import to_sqlite

__all__ = [
    "DataError",
    "InvalidArgumentError",
    "RecordNotFoundError",
    "compile_order",
    "compile_where",
    "quote",
]


class DataError(ElectricError):
    """An error of the typed data access."""


class InvalidArgumentError(DataError, ValueError):
    """A where tree, ordering, include or row that does not fit the table."""


class RecordNotFoundError(DataError, LookupError):
    """``update``/``delete`` of a unique record that does not exist."""


def quote(name: str) -> str:
    """``name`` as a double-quoted SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


# snake_case names, and the official client's (Prisma's) camelCase ones
_OPERATORS = {
    "equals": "equals",
    "not": "not",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "in": "in",
    "not_in": "not_in",
    "notIn": "not_in",
    "contains": "contains",
    "starts_with": "starts_with",
    "startsWith": "starts_with",
    "ends_with": "ends_with",
    "endsWith": "ends_with",
}
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _like_pattern(value: Any, prefix: str, suffix: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"a text filter takes a str, not {type(value).__name__}")
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return prefix + escaped + suffix


class _Compiler:
    def __init__(self, table: TableSchema) -> None:
        self.table = table
        self.params: list[Any] = []

    def value(self, column: str, value: Any) -> str:
        pg_type = self.table.column(column).pg_type
        try:
            self.params.append(to_sqlite(value, pg_type))
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"{self.table.name}.{column}: {exc}") from None
        return "?"

    def tree(self, where: Mapping[str, Any]) -> str:
        if not isinstance(where, Mapping):
            raise InvalidArgumentError(f"a where clause is a mapping, not {type(where).__name__}")
        parts = [self.entry(key, value) for key, value in where.items()]
        return " AND ".join(parts) if parts else "1"

    def trees(self, value: Any, key: str) -> list[str]:
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, Sequence) or isinstance(items, str):
            raise InvalidArgumentError(f"{key} takes a where clause or a list of them")
        return [f"({self.tree(item)})" for item in items]

    def entry(self, key: str, value: Any) -> str:
        if key == "AND":
            parts = self.trees(value, key)
            return "(" + " AND ".join(parts) + ")" if parts else "1"
        if key == "OR":
            parts = self.trees(value, key)
            return "(" + " OR ".join(parts) + ")" if parts else "0"
        if key == "NOT":
            parts = self.trees(value, key)
            return "NOT (" + " AND ".join(parts) + ")" if parts else "1"
        if key not in {c.name for c in self.table.columns}:
            raise InvalidArgumentError(f"table {self.table.name!r} has no column {key!r}")
        if isinstance(value, Mapping) and self.table.column(key).pg_type not in ("json", "jsonb"):
            return self.filters(key, value)
        if isinstance(value, Mapping) and value and all(k in _OPERATORS for k in value):
            return self.filters(key, value)
        return self.equals(key, value)

    def equals(self, column: str, value: Any) -> str:
        if value is None:
            return f"{quote(column)} IS NULL"
        return f"{quote(column)} = {self.value(column, value)}"

    def filters(self, column: str, filters: Mapping[str, Any]) -> str:
        parts = []
        for name, operand in filters.items():
            op = _OPERATORS.get(name)
            if op is None:
                raise InvalidArgumentError(f"unknown filter {name!r} on {self.table.name}.{column}")
            parts.append(self.operator(column, op, operand))
        return "(" + " AND ".join(parts) + ")" if parts else "1"

    def operator(self, column: str, op: str, operand: Any) -> str:
        q = quote(column)
        if op == "equals":
            return self.equals(column, operand)
        if op == "not":
            if isinstance(operand, Mapping):
                return f"NOT {self.filters(column, operand)}"
            if operand is None:
                return f"{q} IS NOT NULL"
            return f"{q} != {self.value(column, operand)}"
        if op in _COMPARISONS:
            return f"{q} {_COMPARISONS[op]} {self.value(column, operand)}"
        if op in ("in", "not_in"):
            if not isinstance(operand, Sequence) or isinstance(operand, str | bytes):
                raise InvalidArgumentError(f"{op} on {self.table.name}.{column} takes a list")
            if not operand:
                return "0" if op == "in" else "1"
            marks = ", ".join(self.value(column, v) for v in operand)
            return f"{q} {'IN' if op == 'in' else 'NOT IN'} ({marks})"
        prefix, suffix = {"contains": ("%", "%"), "starts_with": ("", "%"), "ends_with": ("%", "")}[
            op
        ]
        self.params.append(_like_pattern(operand, prefix, suffix))
        return f"{q} LIKE ? ESCAPE '\\'"


def compile_where(table: TableSchema, where: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """The SQL condition of ``where`` on ``table`` (``"1"`` when empty) and its parameters."""
    compiler = _Compiler(table)
    sql = compiler.tree(where) if where else "1"
    return sql, compiler.params


def compile_order(
    table: TableSchema, order_by: Mapping[str, str] | Sequence[Mapping[str, str]] | None
) -> str:
    """``ORDER BY ...`` for ``{"col": "asc"|"desc"}`` or a list of them (``""`` when none)."""
    if not order_by:
        return ""
    items = [order_by] if isinstance(order_by, Mapping) else list(order_by)
    terms = []
    for item in items:
        for column, direction in item.items():
            if column not in {c.name for c in table.columns}:
                raise InvalidArgumentError(f"table {table.name!r} has no column {column!r}")
            if not isinstance(direction, str) or direction.lower() not in ("asc", "desc"):
                raise InvalidArgumentError(f"order of {column!r} is 'asc' or 'desc'")
            terms.append(f"{quote(column)} {direction.upper()}")
    return " ORDER BY " + ", ".join(terms)
