"""The client schema (:mod:`electric_trio.client.schema`) from the service's migrations.

Tables, columns with their Postgres types, keys and foreign keys come from the table
descriptions the migrations carry (``SatOpMigrate.table``, the latest description of a table
wins). Nullability comes from Postgres when the caller has introspected it, else from the SQLite
DDL of the migrations (run in an in-memory SQLite: ``NOT NULL`` and primary-key columns).
Relations are named as the official generator (Prisma) names them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from ..client.schema import Column, DbSchema, ForeignKey, Migration, Relation, TableSchema
from ..client.triggers import triggers_for
from ..errors import ElectricError
from ..satellite.messages import SatOpMigrateTable
from ._fetch import FetchedMigration, GenerateError

__all__ = ["build_schema", "enum_types", "model_name", "table_schema"]


def model_name(table: str) -> str:
    """The official generator's model name: the table name with its first letter upper-cased."""
    return table[:1].upper() + table[1:]


def table_schema(table: SatOpMigrateTable, not_null: frozenset[str] = frozenset()) -> TableSchema:
    """A table description of the migrations as a :class:`TableSchema` (no relations)."""
    columns = tuple(
        Column(
            name=c.name,
            pg_type=(c.pg_type.name if c.pg_type is not None else c.sqlite_type).lower(),
            nullable=c.name not in not_null and c.name not in table.pks,
        )
        for c in table.columns
    )
    fks = tuple(
        ForeignKey(columns=fk.fk_cols, parent=fk.pk_table, parent_columns=fk.pk_cols)
        for fk in table.fks
    )
    return TableSchema(name=table.name, columns=columns, primary_key=table.pks, foreign_keys=fks)


def _sqlite_not_null(migrations: Sequence[FetchedMigration]) -> dict[str, frozenset[str]]:
    """Per table, the columns the SQLite DDL of the migrations declares NOT NULL."""
    db = sqlite3.connect(":memory:")
    try:
        for migration in migrations:
            for op in migration.ops:
                for stmt in op.stmts:
                    try:
                        db.execute(stmt.sql)
                    except sqlite3.Error as exc:
                        sql = stmt.sql[:60]
                        raise GenerateError(
                            f"migration {migration.version}: SQLite refuses {sql!r}: {exc}"
                        ) from None
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            t: frozenset(
                r[1] for r in db.execute("SELECT * FROM pragma_table_info(?)", (t,)) if r[3]
            )
            for t in tables
        }
    finally:
        db.close()


def enum_types(migrations: Sequence[FetchedMigration]) -> dict[str, tuple[str, ...]]:
    """Every enum type the migrations create, with its values."""
    return {
        op.enum_type.name: op.enum_type.values
        for m in migrations
        for op in m.ops
        if op.enum_type is not None
    }


def _migration(migration: FetchedMigration) -> Migration:
    """The bundle entry as the official generator makes it: every statement, then the triggers
    of each table the ops describe (the first description of a table)."""
    statements = [stmt.sql for op in migration.ops for stmt in op.stmts]
    seen: set[str] = set()
    for op in migration.ops:
        if op.table is None or op.table.name in seen:
            continue
        seen.add(op.table.name)
        try:
            statements += triggers_for(table_schema(op.table))
        except ElectricError as exc:
            raise GenerateError(f"migration {migration.version}: {exc}") from None
    return Migration(version=migration.version, statements=tuple(statements))


def _relations(tables: dict[str, TableSchema]) -> dict[str, list[Relation]]:
    relations: dict[str, list[Relation]] = {name: [] for name in tables}
    taken: dict[str, set[str]] = {name: {c.name for c in t.columns} for name, t in tables.items()}

    def field(table: str, wanted: str, fallback: str) -> str:
        name = wanted if wanted not in taken[table] else fallback
        while name in taken[table]:
            name += "_"
        taken[table].add(name)
        return name

    for table in tables.values():
        count: dict[str, int] = {}
        for fk in table.foreign_keys:
            if len(fk.columns) != 1 or fk.parent not in tables:
                continue
            parent, column = fk.parent, fk.columns[0]
            parent_column = fk.parent_columns[0] if fk.parent_columns else "id"
            count[parent] = count.get(parent, 0) + 1
            a, b = sorted([model_name(table.name), model_name(parent)])
            name = f"{a}To{b}"
            child_field, parent_field = parent, table.name
            if count[parent] > 1:
                name = f"{table.name}_{column}To{model_name(parent)}"
                child_field, parent_field = f"{parent}_{column}", f"{table.name}_{column}"
            child_field = field(table.name, child_field, f"{parent}_{column}")
            parent_field = field(parent, parent_field, f"other_{table.name}_{column}")
            relations[table.name].append(
                Relation(child_field, parent, column, parent_column, False, name)
            )
            relations[parent].append(
                Relation(parent_field, table.name, parent_column, column, True, name)
            )
    return relations


def build_schema(
    migrations: Sequence[FetchedMigration],
    not_null: Mapping[str, frozenset[str]] | None = None,
) -> DbSchema:
    """The schema after ``migrations``. ``not_null``: per table, its NOT NULL columns as
    Postgres says (from ``--proxy``); for a table it does not name, the SQLite DDL of the
    migrations decides."""
    descriptions: dict[str, SatOpMigrateTable] = {}
    for migration in migrations:
        for op in migration.ops:
            if op.table is not None:
                descriptions[op.table.name] = op.table
    nulls = _sqlite_not_null(migrations)
    if not_null is not None:
        nulls.update({name: not_null[name] for name in descriptions if name in not_null})
    tables = {
        name: table_schema(t, nulls.get(name, frozenset())) for name, t in descriptions.items()
    }
    relations = _relations(tables)
    return DbSchema(
        tables={
            name: TableSchema(
                name=t.name,
                columns=t.columns,
                primary_key=t.primary_key,
                foreign_keys=t.foreign_keys,
                relations=tuple(relations[name]),
            )
            for name, t in tables.items()
        },
        migrations=tuple(_migration(m) for m in migrations),
    )
