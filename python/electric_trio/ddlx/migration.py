"""Applying a captured migration to the electrified schema, and what clients are sent for it.

:func:`apply_migration` takes the statements of one migration version (the ``query`` of each
``electric.ddl_commands`` row, in order), returns the schema after them and one
:class:`MigrateOp` per captured statement that clients need: everything a ``SatOpMigrate``
carries, in both dialects. As in the original (``Electric.Postgres.Replication``):

- CREATE TABLE, CREATE INDEX, ALTER TABLE … ADD COLUMN and CREATE TYPE … AS ENUM are sent;
  DROP INDEX and no-op ALTER TABLE sub-commands change the schema (or nothing) and send nothing;
- an ALTER TABLE with several ADD COLUMNs gives one statement per column in one op;
- the table description is that of the schema *after the whole migration*;
- the SQLite dialect has no statement for an enum (only ``enum_type``), the Postgres dialect has
  the statement as written (its text, trimmed, without the final ``;``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import msgspec

from . import _parse as p
from ._term_order import term_key
from .dialect import sqlite_add_column, sqlite_create_index, sqlite_create_table, sqlite_type
from .schema import (
    DEFAULT_SCHEMA,
    CheckConstraint,
    Column,
    EnumType,
    ForeignKey,
    Index,
    IndexColumn,
    Schema,
    SchemaMismatchError,
    Table,
    UniqueConstraint,
)
from .source_text import column_defaults, table_checks

__all__ = [
    "Dialect",
    "MigrateColumn",
    "MigrateEnumType",
    "MigrateForeignKey",
    "MigrateOp",
    "MigrateStmt",
    "MigrateTable",
    "PgColumnType",
    "StmtType",
    "apply_migration",
    "describe_table",
]

Dialect = Literal["sqlite", "postgresql"]


class StmtType(enum.IntEnum):
    """``SatOpMigrate.Type``."""

    CREATE_TABLE = 0
    CREATE_INDEX = 1
    CREATE_ENUM_TYPE = 2
    ALTER_ADD_COLUMN = 6


class MigrateStmt(msgspec.Struct, frozen=True, gc=False):
    """``SatOpMigrate.Stmt``: one SQL statement in one dialect."""

    type: StmtType
    sql: str


class PgColumnType(msgspec.Struct, frozen=True, gc=False):
    """``SatOpMigrate.PgColumnType``."""

    name: str
    array: tuple[int, ...] = ()
    size: tuple[int, ...] = ()


class MigrateColumn(msgspec.Struct, frozen=True, gc=False):
    """``SatOpMigrate.Column``."""

    name: str
    sqlite_type: str
    pg_type: PgColumnType


class MigrateForeignKey(msgspec.Struct, frozen=True, gc=False):
    """``SatOpMigrate.ForeignKey``; ``pk_table`` is unqualified."""

    fk_cols: tuple[str, ...]
    pk_table: str
    pk_cols: tuple[str, ...]


class MigrateTable(msgspec.Struct, frozen=True, gc=False):
    """``SatOpMigrate.Table``: the full table, unqualified name, columns in table order."""

    name: str
    columns: tuple[MigrateColumn, ...]
    fks: tuple[MigrateForeignKey, ...]
    pks: tuple[str, ...]


class MigrateEnumType(msgspec.Struct, frozen=True, gc=False):
    """``SatOpMigrate.EnumType``; ``name`` is unqualified."""

    name: str
    values: tuple[str, ...]


class MigrateOp(msgspec.Struct, frozen=True, gc=False):
    """One ``SatOpMigrate`` in either dialect (pick with :meth:`stmts`).

    ``statement_index`` is the position in ``apply_migration``'s ``statements`` of the captured
    statement it comes from (its ``ddl_commands`` row). At most one of ``table`` and
    ``enum_type`` is set; ``relation`` is the (schema, name) of ``table``.
    """

    version: str
    statement_index: int
    sqlite: tuple[MigrateStmt, ...]
    postgresql: tuple[MigrateStmt, ...]
    table: MigrateTable | None = None
    enum_type: MigrateEnumType | None = None
    relation: tuple[str, str] | None = None

    def stmts(self, dialect: Dialect) -> tuple[MigrateStmt, ...]:
        """The statements in ``dialect``."""
        return self.sqlite if dialect == "sqlite" else self.postgresql


def apply_migration(
    schema: Schema, version: str, statements: Iterable[str]
) -> tuple[Schema, list[MigrateOp]]:
    """Apply the captured ``statements`` of migration ``version`` to ``schema``.

    Returns the new schema and the ops for clients, in statement order. Raises
    :class:`~electric_trio.ddlx.schema.UnsupportedDDLError` for a statement other than
    CREATE TABLE / CREATE INDEX / ALTER TABLE … ADD COLUMN / CREATE TYPE … AS ENUM / DROP INDEX,
    :class:`~electric_trio.ddlx.schema.SchemaMismatchError` when a statement contradicts the
    schema (an unknown table, a table or index that already exists), and
    :class:`~electric_trio.ddlx.schema.TranslationError` when SQLite cannot express it.
    ``schema`` itself is never changed.
    """
    state = _State(schema)
    captured: list[list[_Item]] = []
    for text in statements:
        captured.append([state.apply(parsed) for parsed in p.parse_statements(text)])
    new_schema = state.freeze()
    ops: list[MigrateOp] = []
    for index, items in enumerate(captured):
        sent = [item for item in items if item.type is not None]
        if not sent:
            continue
        entities = {item.entity for item in sent if item.entity is not None}
        # the original sent one op per captured statement; one that touches several tables or
        # enums (which it could not describe) becomes one op per SQL statement
        groups = [sent] if len(entities) <= 1 else [[item] for item in sent]
        for group in groups:
            ops.append(_op(new_schema, version, index, group))
    return new_schema, ops


def describe_table(table: Table) -> MigrateTable:
    """The ``SatOpMigrate.Table`` of a schema table."""
    return MigrateTable(
        name=table.name,
        columns=tuple(
            MigrateColumn(
                name=c.name,
                sqlite_type=sqlite_type(c.type),
                pg_type=PgColumnType(c.type.name, c.type.array, c.type.size),
            )
            for c in table.columns
        ),
        fks=tuple(
            MigrateForeignKey(fk.columns, fk.ref_table, fk.ref_columns) for fk in table.foreign_keys
        ),
        pks=table.primary_key,
    )


# ---------------------------------------------------------------------------------------------

_Entity = tuple[Literal["table", "enum"], str, str]


@dataclass(frozen=True, slots=True)
class _Item:
    """What one parsed statement contributes to the ops (``type`` None: nothing)."""

    type: StmtType | None
    sqlite: str | None = None
    pg: str = ""
    entity: _Entity | None = None
    enum_labels: tuple[str, ...] = ()


def _op(schema: Schema, version: str, index: int, items: list[_Item]) -> MigrateOp:
    table = enum_type = relation = None
    entity = next((i.entity for i in items if i.entity is not None), None)
    if entity is not None:
        kind, schema_name, name = entity
        if kind == "table":
            found = schema.table(schema_name, name)
            if found is None:
                raise SchemaMismatchError(f"table {schema_name}.{name} is not in the schema")
            table, relation = describe_table(found), (schema_name, name)
        else:
            labels = next(i.enum_labels for i in items if i.entity == entity)
            enum_type = MigrateEnumType(name, labels)
    return MigrateOp(
        version=version,
        statement_index=index,
        sqlite=tuple(
            MigrateStmt(i.type, i.sqlite)
            for i in items
            if i.type is not None and i.sqlite is not None
        ),
        postgresql=tuple(MigrateStmt(i.type, i.pg) for i in items if i.type is not None),
        table=table,
        enum_type=enum_type,
        relation=relation,
    )


class _State:
    """A mutable working copy of the schema while a migration is applied."""

    def __init__(self, schema: Schema) -> None:
        self.tables: dict[tuple[str, str], Table] = {(t.schema, t.name): t for t in schema.tables}
        self.enums: dict[tuple[str, str], EnumType] = {(e.schema, e.name): e for e in schema.enums}

    def freeze(self) -> Schema:
        return Schema(tables=tuple(self.tables.values()), enums=tuple(self.enums.values()))

    def apply(self, parsed: p.ParsedStatement) -> _Item:
        stmt = parsed.stmt
        if isinstance(stmt, p.CreateTable):
            return self.create_table(stmt, parsed.pg_sql)
        if isinstance(stmt, p.AddColumn):
            return self.add_column(stmt, parsed.pg_sql)
        if isinstance(stmt, p.CreateIndex):
            return self.create_index(stmt, parsed.pg_sql)
        if isinstance(stmt, p.CreateEnum):
            return self.create_enum(stmt, parsed.pg_sql)
        if isinstance(stmt, p.DropIndex):
            self.drop_index(stmt)
        return _Item(None)

    def create_table(self, stmt: p.CreateTable, pg_sql: str) -> _Item:
        key = (stmt.schema, stmt.name)
        sql = sqlite_create_table(stmt)
        if key in self.tables and not stmt.if_not_exists:
            raise SchemaMismatchError(f"table {stmt.schema}.{stmt.name} already exists")
        if key not in self.tables:
            pk = next((c.keys for c in stmt.constraints if isinstance(c, p.PrimaryKey)), ())
            defaults = column_defaults(pg_sql)
            table = Table(
                schema=stmt.schema,
                name=stmt.name,
                columns=tuple(
                    Column(c.name, c.type, c.not_null, defaults.get(c.name)) for c in stmt.columns
                ),
                checks=tuple(CheckConstraint(n, d) for n, d in table_checks(pg_sql)),
                primary_key=pk,
                unique_constraints=tuple(
                    UniqueConstraint(c.name, c.keys)
                    for c in stmt.constraints
                    if isinstance(c, p.Unique)
                ),
            )
            fks = [c for c in stmt.constraints if isinstance(c, p.ForeignKey)]
            self.tables[key] = self.with_foreign_keys(table, fks)
        return _Item(StmtType.CREATE_TABLE, sql, pg_sql, ("table", *key))

    def add_column(self, stmt: p.AddColumn, pg_sql: str) -> _Item:
        key = (stmt.schema, stmt.table)
        table = self.tables.get(key)
        if table is None:
            if stmt.table_missing_ok:
                return _Item(None)
            raise SchemaMismatchError(f"ALTER TABLE of unknown table {stmt.schema}.{stmt.table}")
        sql = sqlite_add_column(stmt)
        column = stmt.column
        if table.column(column.name) is not None:
            if stmt.if_not_exists:
                return _Item(None)
            raise SchemaMismatchError(
                f"column {column.name} of {stmt.schema}.{stmt.table} already exists"
            )
        pk = next((c.keys for c in stmt.table_constraints if isinstance(c, p.PrimaryKey)), ())
        table = msgspec.structs.replace(
            table,
            columns=(*table.columns, Column(column.name, column.type, column.not_null)),
            primary_key=table.primary_key or pk,
            unique_constraints=table.unique_constraints
            + tuple(
                UniqueConstraint(c.name, c.keys)
                for c in stmt.table_constraints
                if isinstance(c, p.Unique)
            ),
        )
        fks = [c for c in stmt.table_constraints if isinstance(c, p.ForeignKey)]
        self.tables[key] = self.with_foreign_keys(table, fks)
        return _Item(StmtType.ALTER_ADD_COLUMN, sql, pg_sql, ("table", *key))

    def with_foreign_keys(self, table: Table, fks: list[p.ForeignKey]) -> Table:
        if not fks:
            return table
        added = []
        for fk in fks:
            ref_columns = fk.pk_cols
            if not ref_columns:  # REFERENCES t: the referenced table's primary key
                if (fk.pk_schema, fk.pk_table) == (table.schema, table.name):
                    ref_columns = table.primary_key
                elif (ref := self.tables.get((fk.pk_schema, fk.pk_table))) is not None:
                    ref_columns = ref.primary_key
            added.append(
                ForeignKey(
                    name=fk.name,
                    columns=fk.fk_cols,
                    ref_schema=fk.pk_schema,
                    ref_table=fk.pk_table,
                    ref_columns=ref_columns,
                    on_delete=fk.on_delete,
                    on_update=fk.on_update,
                    match=fk.match,
                    deferrable=fk.deferrable,
                    initially_deferred=fk.initdeferred,
                )
            )
        ordered = sorted([*table.foreign_keys, *added], key=_foreign_key_order)
        return msgspec.structs.replace(table, foreign_keys=tuple(ordered))

    def create_index(self, stmt: p.CreateIndex, pg_sql: str) -> _Item:
        key = (stmt.schema, stmt.table)
        table = self.tables.get(key)
        if table is None:
            raise SchemaMismatchError(f"CREATE INDEX on unknown table {stmt.schema}.{stmt.table}")
        taken = {t.name for t in self.tables.values() if t.schema == stmt.schema}
        taken |= {
            i.name for t in self.tables.values() if t.schema == stmt.schema for i in t.indexes
        }
        name = stmt.name or p.default_index_name(stmt, taken)
        if any(i.name == name for i in table.indexes):
            if not stmt.if_not_exists:
                raise SchemaMismatchError(f"index {name} on {stmt.schema}.{stmt.table} exists")
        else:
            index = Index(
                name=name,
                columns=tuple(
                    IndexColumn(c.name, c.expr_sql, c.descending, c.nulls_first)
                    for c in stmt.columns
                ),
                unique=stmt.unique,
                including=stmt.including,
                where=stmt.where_sql,
                using=stmt.using,
            )
            self.tables[key] = msgspec.structs.replace(table, indexes=(*table.indexes, index))
        return _Item(StmtType.CREATE_INDEX, sqlite_create_index(stmt, name), pg_sql)

    def create_enum(self, stmt: p.CreateEnum, pg_sql: str) -> _Item:
        key = (stmt.schema, stmt.name)
        self.enums.pop(key, None)
        self.enums[key] = EnumType(stmt.schema, stmt.name, stmt.labels)
        return _Item(StmtType.CREATE_ENUM_TYPE, None, pg_sql, ("enum", *key), stmt.labels)

    def drop_index(self, stmt: p.DropIndex) -> None:
        # an unknown index is not an error: it is on a table that is not electrified
        for schema_name, name in stmt.names:
            target = schema_name or DEFAULT_SCHEMA
            for key, table in self.tables.items():
                if table.schema == target and any(i.name == name for i in table.indexes):
                    indexes = tuple(i for i in table.indexes if i.name != name)
                    self.tables[key] = msgspec.structs.replace(table, indexes=indexes)


def _foreign_key_order(fk: ForeignKey) -> tuple[object, ...]:
    # the order of the original's constraint list (Erlang term order, see _term_order)
    return term_key(
        p.constraint_term(
            p.ForeignKey(
                name=fk.name,
                fk_cols=fk.columns,
                pk_schema=fk.ref_schema,
                pk_table=fk.ref_table,
                pk_cols=fk.ref_columns,
                deferrable=fk.deferrable,
                initdeferred=fk.initially_deferred,
                match=fk.match,
                on_update=fk.on_update,
                on_delete=fk.on_delete,
            )
        )
    )
