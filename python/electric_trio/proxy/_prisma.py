"""The migrations proxy's ``prisma`` user: Prisma's introspection queries answered from the
electrified schema alone (server-behaviour.md §10), so ``prisma db pull`` through the proxy sees
electrified tables and nothing else, and Postgres is never asked.

Prisma 4.8 and 5.2 send a fixed set of catalogue queries (version, namespaces, tables,
constraints, views, enums, columns, foreign keys, indexes, functions, extensions, sequences) with
the extended protocol. Each is recognised by the names of the columns it selects, as the original
service did, and answered with the rows Postgres would give for the electrified tables: the same
columns, types and order. Any other statement gets an empty answer (its command tag), except a
``SELECT`` prepared with the extended protocol that is none of them: that is an error
(``0A000``) rather than a guess, so a newer Prisma's query shows up instead of an empty schema.

:class:`Introspection` is sans-IO: it takes a client message and returns the bytes to answer.
"""

from __future__ import annotations

import itertools
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pglast
from pglast import ast
from pglast.enums import TransactionStmtKind, VariableSetKind
from pglast.parser import ParseError

from .. import _native
from ..ddlx.schema import Column, ColumnType, Schema, Table

__all__ = ["PARAMETERS", "QUERIES", "SERVER_VERSION", "Introspection", "Query", "match"]

#: What the ``prisma`` user is told it talks to (version(), server_version_num, ParameterStatus).
SERVER_VERSION = ("14.9", 140009)
_VERSION_STRING = f"PostgreSQL {SERVER_VERSION[0]} Electric"
#: The ParameterStatus messages sent after authentication.
PARAMETERS = {
    "server_version": SERVER_VERSION[0],
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "DateStyle": "ISO, MDY",
    "integer_datetimes": "on",
    "standard_conforming_strings": "on",
    "TimeZone": "UTC",
}

# Type oids.
BOOL, CHAR, NAME, INT8, INT2, INT4, TEXT, OID = 16, 18, 19, 20, 21, 23, 25, 26
NAME_ARRAY, TEXT_ARRAY, VARCHAR = 1003, 1009, 1043

Value = str | int | bool | None
Row = tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Field:
    """One RowDescription field: the oids and sizes Postgres reports for that catalogue column."""

    name: str
    type_oid: int
    table_oid: int = 0
    attnum: int = 0
    typlen: int = -1
    typmod: int = -1


@dataclass(frozen=True, slots=True)
class Query:
    """One introspection query: recognised by ``columns``, the names its target list gives."""

    name: str
    columns: tuple[str, ...]
    params: tuple[int, ...]
    fields: tuple[Field, ...]
    rows: Callable[[Schema, list[Any]], list[Row]]


def _f(
    name: str, type_oid: int, table: int = 0, attnum: int = 0, typlen: int = -1, typmod: int = -1
) -> Field:
    return Field(name, type_oid, table, attnum, typlen, typmod)


def _name(name: str, table: int = 0, attnum: int = 0) -> Field:
    return Field(name, NAME, table, attnum, 64)


def _bool(name: str, table: int = 0, attnum: int = 0) -> Field:
    return Field(name, BOOL, table, attnum, 1)


def _int4(name: str, table: int = 0, attnum: int = 0) -> Field:
    return Field(name, INT4, table, attnum, 4)


# Catalogue table oids in the fields Postgres 14 describes (pg_namespace, pg_class, ...).
_NSP, _CLASS, _ATTR, _CON, _TYPE, _ENUM, _INDEX = 2615, 1259, 1249, 2606, 1247, 3501, 2610
_OPCLASS, _AM, _VIEWS, _COLUMNS, _PROC, _EXT, _SEQS = 2616, 2601, 12245, 13499, 1255, 3079, 13590


# ---- the schema as the catalogue would show it -----------------------------------------------


def _tables(schema: Schema, namespaces: Sequence[str]) -> list[Table]:
    return [t for t in schema.tables if t.schema in namespaces]


def _namespace_exists(schema: Schema, namespace: str) -> bool:
    return any(t.schema == namespace for t in schema.tables)


_FORMATTED = {
    "int2": "smallint",
    "int4": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "bool": "boolean",
    "varchar": "character varying",
    "bpchar": "character",
    "timestamp": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
}
_INTEGER_BITS = {"int2": 16, "int4": 32, "int8": 64}
_FLOAT_BITS = {"float4": 24, "float8": 53}
_DATETIME = {"timestamp", "timestamptz", "time", "timetz"}
_TEXT = {"text", "varchar", "bpchar"}


def _enum_of(schema: Schema, type_: ColumnType) -> tuple[str, str] | None:
    enum = schema.enum_type(type_.name)
    return None if enum is None else (enum.schema, enum.name)


def formatted_type(schema: Schema, type_: ColumnType) -> str:
    """``format_type(atttypid, atttypmod)``."""
    enum = _enum_of(schema, type_)
    name = type_.name if enum is None else enum[1]
    base = _FORMATTED.get(name, name)
    if type_.size:
        sizes = ",".join(str(s) for s in type_.size)
        if name in ("timestamp", "timestamptz", "time", "timetz"):
            head, _, zone = base.partition(" ")
            base = f"{head}({sizes}) {zone}"
        else:
            base = f"{base}({sizes})"
    return base + ("[]" if type_.array else "")


def _column_row(schema: Schema, table: Table, column: Column, *, v5: bool) -> Row:
    """A row of ``information_schema.columns`` joined as Prisma's column query does."""
    type_ = column.type
    enum = _enum_of(schema, type_)
    name = type_.name if enum is None else enum[1]
    precision: int | None = None
    scale: int | None = None
    radix: int | None = None
    if not type_.array:
        if name in _INTEGER_BITS:
            precision, scale, radix = _INTEGER_BITS[name], 0, 2
        elif name in _FLOAT_BITS:
            precision, radix = _FLOAT_BITS[name], 2
        elif name == "numeric":
            radix = 10
            if type_.size:
                precision = type_.size[0]
                scale = type_.size[1] if len(type_.size) > 1 else 0
    datetime_precision: int | None = None
    if not type_.array:
        if name in _DATETIME:
            datetime_precision = type_.size[0] if type_.size else 6
        elif name == "date":
            datetime_precision = 0
    if type_.array:
        data_type = "ARRAY"
    elif enum is not None:
        data_type = "USER-DEFINED"
    else:
        data_type = _FORMATTED.get(name, name)
    max_length = type_.size[0] if name in ("varchar", "bpchar") and type_.size else None
    nullable = not column.not_null and column.name not in table.primary_key
    row: list[Value] = [
        table.schema,
        table.name,
        column.name,
        formatted_type(schema, type_),
        precision,
        scale,
        radix,
        datetime_precision,
        data_type,
    ]
    if v5:
        row.append("pg_catalog" if enum is None else enum[0])
    row += [
        ("_" if type_.array else "") + name,
        column.default,
        "YES" if nullable else "NO",
        "NO",
        max_length,
    ]
    if v5:
        row.append(None)
    return tuple(row)


def _columns(v5: bool) -> Callable[[Schema, list[Any]], list[Row]]:
    def rows(schema: Schema, params: list[Any]) -> list[Row]:
        tables = sorted(_tables(schema, params[0]), key=lambda t: (t.schema, t.name))
        return [_column_row(schema, t, c, v5=v5) for t in tables for c in t.columns]

    return rows


_ACTIONS = {"NO_ACTION": "a", "RESTRICT": "r", "CASCADE": "c", "SET_NULL": "n", "SET_DEFAULT": "d"}


def _foreign_keys(v5: bool) -> Callable[[Schema, list[Any]], list[Row]]:
    def rows(schema: Schema, params: list[Any]) -> list[Row]:
        namespaces = params[0]
        out: list[tuple[tuple[str, str, str, int, int], Row]] = []
        # Constraint oids are made up: distinct per foreign key, stable within one answer.
        con_ids = itertools.count(2_000_000)
        for table in schema.tables:
            for fk in table.foreign_keys:
                con_id = next(con_ids)
                parent = schema.table(fk.ref_schema, fk.ref_table)
                if table.schema not in namespaces or parent is None:
                    continue  # Prisma can only relate electrified tables
                ref_columns = fk.ref_columns or parent.primary_key
                for i, (child, ref) in enumerate(zip(fk.columns, ref_columns, strict=False)):
                    row: list[Value] = [
                        con_id,
                        child,
                        parent.name,
                        ref,
                        _ACTIONS[fk.on_delete],
                        _ACTIONS[fk.on_update],
                        parent.schema,
                        fk.name,
                        # Prisma's query names the referenced column's number "child"
                        parent.column_names.index(ref) + 1,
                        table.column_names.index(child) + 1,
                        table.name,
                        table.schema,
                    ]
                    if v5:
                        row += [fk.deferrable, fk.initially_deferred]
                    key = (table.schema, table.name, fk.name, con_id, i)
                    out.append((key, tuple(row)))
        return [row for _, row in sorted(out, key=lambda item: item[0])]

    return rows


def _opclass(schema: Schema, type_: ColumnType) -> str:
    if type_.array:
        return "array_ops"
    if type_.name in _TEXT:
        return "text_ops" if type_.name != "bpchar" else "bpchar_ops"
    if _enum_of(schema, type_) is not None:
        return "enum_ops"
    return f"{type_.name}_ops"


def _indexes(v5: bool) -> Callable[[Schema, list[Any]], list[Row]]:
    def rows(schema: Schema, params: list[Any]) -> list[Row]:
        out: list[tuple[tuple[str, str, str, int], Row]] = []

        def add(table: Table, index: str, column: str, i: int, values: tuple[Value, ...]) -> None:
            found = table.column(column)
            opclass = None if found is None else _opclass(schema, found.type)
            row = (table.schema, index, table.name, column, *values[:3], opclass, True)
            row += values[3:] if v5 else values[3:5]
            out.append(((table.schema, table.name, index, i), row))

        for table in _tables(schema, params[0]):
            # Partial and expression indexes are left out, as Prisma's own query leaves them.
            for index in table.indexes:
                if index.where is not None or any(c.name is None for c in index.columns):
                    continue
                for i, c in enumerate(index.columns):
                    assert c.name is not None
                    order = "DESC" if c.descending else "ASC"
                    nulls_first = c.nulls_first
                    values: tuple[Value, ...]
                    values = (index.unique, False, i, index.using, order, nulls_first, None, None)
                    add(table, index.name, c.name, i, values)
            if table.primary_key:
                pkey = f"{table.name}_pkey"[:63]
                for i, name in enumerate(table.primary_key):
                    add(table, pkey, name, i, (True, True, i, "btree", "ASC", False, False, False))
            for unique in table.unique_constraints:
                for i, name in enumerate(unique.columns):
                    values = (True, False, i, "btree", "ASC", False, False, False)
                    add(table, unique.name, name, i, values)
        return [row for _, row in sorted(out, key=lambda item: item[0])]

    return rows


def _enum_rows(schema: Schema, namespaces: Sequence[str]) -> list[tuple[str, str, str]]:
    enums = [e for e in schema.enums if e.schema in namespaces]
    # ORDER BY enumsortorder: each enum's labels are numbered 1, 2, ... in declaration order
    ordered = sorted(
        (
            (i, n, e.name, label, e.schema)
            for n, e in enumerate(enums)
            for i, label in enumerate(e.labels)
        ),
    )
    return [(name, label, namespace) for _, _, name, label, namespace in ordered]


def _none(schema: Schema, params: list[Any]) -> list[Row]:
    return []


def _checks(schema: Schema, params: list[Any]) -> list[Row]:
    """CHECK constraints (contype ``c``), ORDER BY namespace, table_name, contype, name."""
    rows: list[Row] = [
        (t.schema, t.name, c.name, "c", c.definition, False, False)
        for t in _tables(schema, params[0])
        for c in t.checks
    ]
    return sorted(rows, key=lambda r: (str(r[0]), str(r[1]), str(r[2])))


# ---- the queries, in the order they are tried -------------------------------------------------

_ANY = (NAME_ARRAY,)

VERSION = Query(
    "version", ("version()",), (), (_f("version", TEXT),), lambda s, p: [(_VERSION_STRING,)]
)


def _query(
    name: str,
    params: tuple[int, ...],
    pairs: Sequence[tuple[str, Field]],
    rows: Callable[[Schema, list[Any]], list[Row]],
) -> Query:
    """A query from (target-list name, RowDescription field) pairs."""
    return Query(name, tuple(c for c, _ in pairs), params, tuple(f for _, f in pairs), rows)


_DESCRIPTION = ("description", _f("description", TEXT))
_DEFERRABLE = (
    ("condeferrable", _bool("condeferrable", _CON, 5)),
    ("condeferred", _bool("condeferred", _CON, 6)),
)
_ENUM_TYPES = (
    ("name", _name("name", _TYPE, 2)),
    ("value", _name("value", _ENUM, 4)),
    ("namespace", _name("namespace", _NSP, 2)),
)
_VIEWS_4_8 = (
    ("view_name", _name("view_name", _VIEWS, 2)),
    ("view_sql", _f("view_sql", TEXT, _VIEWS, 4)),
    ("namespace", _name("namespace", _VIEWS, 1)),
)
# Prisma 5.2 adds type_schema_name after data_type, and a description.
_COLUMNS_HEAD = (
    ("oid.namespace", _name("namespace", _NSP, 2)),
    ("info.table_name", _name("table_name", _COLUMNS, 3)),
    ("info.column_name", _name("column_name", _COLUMNS, 4)),
    ("formatted_type", _f("formatted_type", TEXT)),
    ("info.numeric_precision", _int4("numeric_precision", _COLUMNS, 11)),
    ("info.numeric_scale", _int4("numeric_scale", _COLUMNS, 13)),
    ("info.numeric_precision_radix", _int4("numeric_precision_radix", _COLUMNS, 12)),
    ("info.datetime_precision", _int4("datetime_precision", _COLUMNS, 14)),
    ("info.data_type", _f("data_type", VARCHAR, _COLUMNS, 8)),
)
_COLUMNS_TAIL = (
    ("full_data_type", _name("full_data_type", _COLUMNS, 28)),
    ("column_default", _f("column_default", TEXT)),
    ("info.is_nullable", _f("is_nullable", VARCHAR, _COLUMNS, 7, typmod=7)),
    ("info.is_identity", _f("is_identity", VARCHAR, _COLUMNS, 35, typmod=7)),
    ("info.character_maximum_length", _int4("character_maximum_length", _COLUMNS, 9)),
)
_FOREIGN_KEYS_4_8 = (
    ("con_id", _f("con_id", OID, _CON, 1, 4)),
    ("child_column", _name("child_column", _ATTR, 2)),
    ("parent_table", _name("parent_table", _ATTR, 2)),
    ("parent_column", _name("parent_column", _ATTR, 2)),
    ("con.confdeltype", _f("confdeltype", CHAR, _CON, 14, 1)),
    ("con.confupdtype", _f("confupdtype", CHAR, _CON, 13, 1)),
    ("referenced_schema_name", _name("referenced_schema_name", _NSP, 2)),
    ("constraint_name", _name("constraint_name", _CON, 2)),
    ("child", _f("child", INT2, typlen=2)),
    ("parent", _f("parent", INT2, typlen=2)),
    ("table_name", _name("table_name", _CLASS, 2)),
    ("namespace", _name("namespace", _NSP, 2)),
)
_INDEXES_4_8 = (
    ("namespace", _name("namespace", _NSP, 2)),
    ("index_name", _name("index_name", _CLASS, 2)),
    ("table_name", _name("table_name", _CLASS, 2)),
    ("column_name", _name("column_name", _ATTR, 2)),
    ("is_unique", _bool("is_unique", _INDEX, 5)),
    ("is_primary_key", _bool("is_primary_key", _INDEX, 6)),
    ("column_index", _int4("column_index")),
    ("opclass", _name("opclass", _OPCLASS, 3)),
    ("opcdefault", _bool("opcdefault", _OPCLASS, 8)),
    ("index_algo", _name("index_algo", _AM, 2)),
    ("column_order", _f("column_order", TEXT)),
)


def _sorted_tables(schema: Schema, params: list[Any]) -> list[Table]:
    return sorted(_tables(schema, params[0]), key=lambda t: (t.schema, t.name))


QUERIES: tuple[Query, ...] = (
    # Prisma 4.8
    _query(
        "table list 4.8",
        _ANY,
        (
            ("table_name", _name("table_name", _CLASS, 2)),
            ("namespace", _name("namespace", _NSP, 2)),
        ),
        lambda s, p: [(t.name, t.schema) for t in _sorted_tables(s, p)],
    ),
    _query("enum types 4.8", _ANY, _ENUM_TYPES, lambda s, p: list(_enum_rows(s, p[0]))),
    _query("columns 4.8", _ANY, _COLUMNS_HEAD + _COLUMNS_TAIL, _columns(v5=False)),
    _query("foreign keys 4.8", _ANY, _FOREIGN_KEYS_4_8, _foreign_keys(v5=False)),
    _query("indexes 4.8", _ANY, _INDEXES_4_8, _indexes(v5=False)),
    _query("views 4.8", _ANY, _VIEWS_4_8, _none),
    # Prisma 5.2
    _query(
        "namespace and version 5.2",
        (NAME,),
        (
            ("", _bool("exists")),
            ("", _f("version", TEXT)),
            ("numeric_version", _int4("numeric_version")),
        ),
        lambda s, p: [(_namespace_exists(s, p[0]), _VERSION_STRING, SERVER_VERSION[1])],
    ),
    _query(
        "namespaces 5.2",
        _ANY,
        (("namespace_name", _name("namespace_name", _NSP, 2)),),
        lambda s, p: [(n,) for n in sorted(set(p[0])) if _namespace_exists(s, n)],
    ),
    _query(
        "tables 5.2",
        _ANY,
        (
            ("table_name", _name("table_name", _CLASS, 2)),
            ("namespace", _name("namespace", _NSP, 2)),
            ("is_partition", _bool("is_partition")),
            ("has_subclass", _bool("has_subclass")),
            ("has_row_level_security", _bool("has_row_level_security", _CLASS, 23)),
            ("reloptions", _f("reloptions", TEXT_ARRAY, _CLASS, 32)),
            _DESCRIPTION,
        ),
        lambda s, p: [
            (t.name, t.schema, False, False, False, None, None) for t in _sorted_tables(s, p)
        ],
    ),
    _query(
        "check constraints 5.2",
        _ANY,
        (
            ("namespace", _name("namespace", _NSP, 2)),
            ("table_name", _name("table_name", _CLASS, 2)),
            ("constraint_name", _name("constraint_name", _CON, 2)),
            ("constraint_type", _f("constraint_type", CHAR, _CON, 4, 1)),
            ("constraint_definition", _f("constraint_definition", TEXT)),
            ("is_deferrable", _bool("is_deferrable", _CON, 5)),
            ("is_deferred", _bool("is_deferred", _CON, 6)),
        ),
        _checks,
    ),
    _query("views 5.2", _ANY, (*_VIEWS_4_8, _DESCRIPTION), _none),
    _query(
        "enum types 5.2",
        _ANY,
        (*_ENUM_TYPES, _DESCRIPTION),
        lambda s, p: [(*row, None) for row in _enum_rows(s, p[0])],
    ),
    _query(
        "columns 5.2",
        _ANY,
        (
            *_COLUMNS_HEAD,
            ("type_schema_name", _name("type_schema_name", _COLUMNS, 27)),
            *_COLUMNS_TAIL,
            _DESCRIPTION,
        ),
        _columns(v5=True),
    ),
    _query("foreign keys 5.2", _ANY, (*_FOREIGN_KEYS_4_8, *_DEFERRABLE), _foreign_keys(v5=True)),
    _query(
        "indexes 5.2",
        _ANY,
        (*_INDEXES_4_8, ("nulls_first", _bool("nulls_first")), *_DEFERRABLE),
        _indexes(v5=True),
    ),
    _query(
        "functions 5.2",
        _ANY,
        (
            ("name", _name("name", _PROC, 2)),
            ("namespace", _name("namespace", _NSP, 2)),
            ("definition", _f("definition", TEXT)),
        ),
        _none,
    ),
    _query(
        "extensions 5.2",
        (),
        (
            ("extension_name", _name("extension_name", _EXT, 2)),
            ("extension_version", _f("extension_version", TEXT, _EXT, 6)),
            ("extension_relocatable", _bool("extension_relocatable", _EXT, 5)),
            ("extension_schema", _name("extension_schema", _NSP, 2)),
        ),
        _none,
    ),
    _query(
        "sequences 5.2",
        _ANY,
        (
            ("sequence_name", _name("sequence_name", _SEQS, 3)),
            ("namespace", _name("namespace", _SEQS, 2)),
            ("", _f("start_value", INT8, typlen=8)),
            ("min_value", _f("min_value", INT8, typlen=8)),
            ("max_value", _f("max_value", INT8, typlen=8)),
            ("increment_by", _f("increment_by", INT8, typlen=8)),
            ("cycle", _bool("cycle")),
            ("cache_size", _f("cache_size", INT8, typlen=8)),
        ),
        _none,
    ),
)


_BY_COLUMNS = {q.columns: q for q in QUERIES}


# ---- recognising statements --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Other:
    """A statement that is not an introspection query: answered with its tag and no rows.
    ``unknown`` is the text of a SELECT that none of Prisma's introspection queries is."""

    tag: str
    unknown: str | None = None


def _target_names(stmt: ast.SelectStmt) -> tuple[str, ...]:
    names = []
    for target in stmt.targetList or ():
        if target.name:
            names.append(target.name)
        elif isinstance(target.val, ast.ColumnRef):
            names.append(".".join(getattr(f, "sval", "*") for f in target.val.fields or ()))
        else:
            names.append("")
    return tuple(names)


def _tag(stmt: Any, text: str) -> str:
    if isinstance(stmt, ast.SelectStmt):
        return "SELECT 0"
    if isinstance(stmt, ast.InsertStmt):
        return "INSERT 0 0"
    if isinstance(stmt, ast.UpdateStmt | ast.DeleteStmt):
        return f"{'UPDATE' if isinstance(stmt, ast.UpdateStmt) else 'DELETE'} 0"
    if isinstance(stmt, ast.VariableSetStmt):
        return "RESET" if stmt.kind == VariableSetKind.VAR_RESET else "SET"
    if isinstance(stmt, ast.TransactionStmt):
        kind = stmt.kind
        if kind in (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START):
            return "BEGIN"
        if kind == TransactionStmtKind.TRANS_STMT_COMMIT:
            return "COMMIT"
        if kind == TransactionStmtKind.TRANS_STMT_ROLLBACK:
            return "ROLLBACK"
    words = text.split()
    if len(words) > 1 and words[0].upper() in ("CREATE", "ALTER", "DROP"):
        return f"{words[0]} {words[1]}".upper()
    return words[0].upper() if words else ""


def match(sql: str) -> list[Query | Other]:
    """What each statement of ``sql`` is; raises ``pglast.parser.ParseError`` for SQL that does
    not parse."""
    if sql.lstrip().startswith("SELECT version()"):
        return [VERSION]
    found: list[Query | Other] = []
    for raw in pglast.parse_sql(sql):
        stmt = raw.stmt
        start = raw.stmt_location or 0
        text = sql[start : start + raw.stmt_len] if raw.stmt_len else sql[start:]
        if isinstance(stmt, ast.SelectStmt) and stmt.targetList:
            query = _BY_COLUMNS.get(_target_names(stmt))
            found.append(Other("SELECT 0", text.strip()) if query is None else query)
        else:
            found.append(Other(_tag(stmt, text.strip())))
    return found


# ---- parameter values and result values --------------------------------------------------------


def _text_array(text: str) -> list[str]:
    """The elements of a one-dimensional array literal (``{public,"a b"}``)."""
    inner = text.strip()
    if not (inner.startswith("{") and inner.endswith("}")):
        raise ValueError(f"not an array literal: {text!r}")
    out = []
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|([^,{}"]+)', inner[1:-1]):
        if m.group(1) is not None:
            out.append(re.sub(r"\\(.)", r"\1", m.group(1)))
        else:
            out.append(m.group(2).strip())
    return out


def _binary_array(data: bytes) -> list[str]:
    ndim, _, _ = struct.unpack_from("!iiI", data)
    if ndim == 0:
        return []
    if ndim != 1:
        raise ValueError("a namespace list must be one-dimensional")
    (count,) = struct.unpack_from("!i", data, 12)
    at = 20
    out = []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", data, at)
        at += 4
        if length >= 0:
            out.append(data[at : at + length].decode())
            at += length
    return out


def decode_params(
    types: Sequence[int], formats: Sequence[int], values: Sequence[bytes | None]
) -> list[Any]:
    """The bound parameters: a list of names for ``name[]``, a string otherwise."""
    out: list[Any] = []
    for i, value in enumerate(values):
        binary = (formats[i] if len(formats) > 1 else formats[0] if formats else 0) == 1
        if value is None:
            out.append([] if i < len(types) and types[i] == NAME_ARRAY else None)
        elif i < len(types) and types[i] == NAME_ARRAY:
            out.append(_binary_array(value) if binary else _text_array(value.decode()))
        else:
            out.append(value.decode())
    return out


def _encode(value: Value, type_oid: int, binary: bool) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bool):
        if binary:
            return b"\x01" if value else b"\x00"
        return b"t" if value else b"f"
    if isinstance(value, int):
        if not binary:
            return str(value).encode()
        if type_oid == INT2:
            return struct.pack("!h", value)
        if type_oid == INT8:
            return struct.pack("!q", value)
        if type_oid == OID:
            return struct.pack("!I", value)
        return struct.pack("!i", value)
    return value.encode()


def _formats(result_formats: Sequence[int], n: int) -> list[int]:
    if not result_formats:
        return [0] * n
    if len(result_formats) == 1:
        return list(result_formats) * n
    return list(result_formats)


def row_description(fields: Sequence[Field], formats: Sequence[int]) -> bytes:
    body = [struct.pack("!h", len(fields))]
    for f, fmt in zip(fields, formats, strict=True):
        body.append(f.name.encode() + b"\0")
        body.append(
            struct.pack("!IhIhih", f.table_oid, f.attnum, f.type_oid, f.typlen, f.typmod, fmt)
        )
    return _native.encode_pg_message(ord("T"), b"".join(body))


def data_rows(
    fields: Sequence[Field], formats: Sequence[int], rows: Sequence[Row]
) -> Iterator[bytes]:
    for row in rows:
        body = [struct.pack("!h", len(row))]
        for value, f, fmt in zip(row, fields, formats, strict=True):
            encoded = _encode(value, f.type_oid, fmt == 1)
            if encoded is None:
                body.append(b"\xff\xff\xff\xff")
            else:
                body.append(struct.pack("!i", len(encoded)) + encoded)
        yield _native.encode_pg_message(ord("D"), b"".join(body))


# ---- the session -------------------------------------------------------------------------------


def _error(code: str, message: str) -> bytes:
    return _native.encode_error_response(
        [("S", "ERROR"), ("V", "ERROR"), ("C", code), ("M", message)]
    )


_PARSE_COMPLETE = _native.encode_pg_message(ord("1"), b"")
_BIND_COMPLETE = _native.encode_pg_message(ord("2"), b"")
_CLOSE_COMPLETE = _native.encode_pg_message(ord("3"), b"")
_NO_DATA = _native.encode_pg_message(ord("n"), b"")
_EMPTY_QUERY = _native.encode_pg_message(ord("I"), b"")
_READY = _native.encode_ready_for_query(ord("I"))


@dataclass
class _Statement:
    what: Query | Other | None  # None: an empty statement
    param_types: tuple[int, ...]


@dataclass
class _Portal:
    statement: _Statement
    params: list[Any]
    formats: list[int] = field(default_factory=list)


class Introspection:
    """One ``prisma`` session's answers; ``schema`` gives the electrified schema when asked."""

    def __init__(self, schema: Callable[[], Schema]) -> None:
        self._schema = schema
        self._statements: dict[str, _Statement] = {}
        self._portals: dict[str, _Portal] = {}
        #: After an error in an extended-protocol batch, messages up to Sync are skipped.
        self._failed = False

    def handle(self, tag: int, body: bytes) -> bytes:
        """The answer to one client message (Terminate is the caller's)."""
        if tag == ord("S"):
            self._failed = False
            self._portals.pop("", None)
            return _READY
        if tag == ord("Q"):
            self._failed = False
            (sql,) = _native.parse_frontend(tag, body)
            return self._simple_query(sql) + _READY
        if self._failed:
            return b""
        try:
            return self._extended(tag, body)
        except (ValueError, struct.error, UnicodeDecodeError) as e:
            self._failed = True
            return _error("22P02", f"invalid parameter: {e}")

    def _simple_query(self, sql: str) -> bytes:
        if not sql.strip():
            return _EMPTY_QUERY
        try:
            found = match(sql)
        except ParseError as e:
            return _error("42601", str(e))
        out: list[bytes] = []
        for what in found:
            if isinstance(what, Query) and not what.params:
                formats = [0] * len(what.fields)
                rows = what.rows(self._schema(), [])
                out.append(row_description(what.fields, formats))
                out.extend(data_rows(what.fields, formats, rows))
                out.append(_native.encode_command_complete(f"SELECT {len(rows)}"))
            else:
                tag = what.tag if isinstance(what, Other) else "SELECT 0"
                out.append(_native.encode_command_complete(tag))
        return b"".join(out)

    def _extended(self, tag: int, body: bytes) -> bytes:
        if tag == ord("P"):
            name, sql, types = _native.parse_frontend(tag, body)
            if not sql.strip():
                self._statements[name] = _Statement(None, tuple(types))
                return _PARSE_COMPLETE
            try:
                found = match(sql)
            except ParseError as e:
                self._failed = True
                return _error("42601", str(e))
            if len(found) != 1:
                self._failed = True
                return _error("42601", "cannot insert multiple commands into a prepared statement")
            what = found[0]
            if isinstance(what, Other) and what.unknown is not None:
                self._failed = True
                return _error(
                    "0A000",
                    "electric-trio does not recognise this Prisma introspection query: "
                    + what.unknown,
                )
            types = what.params if isinstance(what, Query) else tuple(types)
            self._statements[name] = _Statement(what, types)
            return _PARSE_COMPLETE
        if tag == ord("B"):
            portal, name, param_formats, values, result_formats = _native.parse_frontend(tag, body)
            statement = self._statement(name)
            if statement is None:
                return self._missing("prepared statement", name)
            params = decode_params(statement.param_types, param_formats, values)
            self._portals[portal] = _Portal(statement, params, list(result_formats))
            return _BIND_COMPLETE
        if tag == ord("D"):
            kind, name = _native.parse_frontend(tag, body)
            if kind == "S":
                statement = self._statement(name)
                if statement is None:
                    return self._missing("prepared statement", name)
                types = statement.param_types
                description = _native.encode_pg_message(
                    ord("t"), struct.pack(f"!h{len(types)}I", len(types), *types)
                )
                return description + self._row_description(statement.what, [])
            bound = self._portals.get(name)
            if bound is None:
                return self._missing("portal", name)
            return self._row_description(bound.statement.what, bound.formats)
        if tag == ord("E"):
            portal, _ = _native.parse_frontend(tag, body)
            bound = self._portals.get(portal)
            if bound is None:
                return self._missing("portal", portal)
            query = bound.statement.what
            if query is None:
                return _EMPTY_QUERY
            if isinstance(query, Other):
                return _native.encode_command_complete(query.tag)
            formats = _formats(bound.formats, len(query.fields))
            rows = query.rows(self._schema(), bound.params)
            out = list(data_rows(query.fields, formats, rows))
            out.append(_native.encode_command_complete(f"SELECT {len(rows)}"))
            return b"".join(out)
        if tag == ord("C"):
            kind, name = _native.parse_frontend(tag, body)
            (self._statements if kind == "S" else self._portals).pop(name, None)
            return _CLOSE_COMPLETE
        if tag == ord("H"):  # Flush: everything is sent as soon as it is answered
            return b""
        self._failed = True
        return _error("08P01", f"unexpected message {chr(tag)!r} in Prisma introspection mode")

    def _statement(self, name: str) -> _Statement | None:
        return self._statements.get(name)

    def _missing(self, what: str, name: str) -> bytes:
        self._failed = True
        return _error("26000" if what != "portal" else "34000", f'{what} "{name}" does not exist')

    @staticmethod
    def _row_description(what: Query | Other | None, result_formats: Sequence[int]) -> bytes:
        if not isinstance(what, Query):
            return _NO_DATA
        return row_description(what.fields, _formats(result_formats, len(what.fields)))
