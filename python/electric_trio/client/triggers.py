"""The SQLite statements of the local store, character for character as ``electric-sql@0.12.1``
writes them, so that a database built by either client can be opened by the other.

:func:`triggers_for` gives a table's oplog, primary-key and FK-compensation triggers;
:func:`initial_migration_statements` gives the built-in migration ``'0'`` (internal tables).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import ElectricError
from .schema import TableSchema

__all__ = [
    "INITIAL_MIGRATION_VERSION",
    "CompoundForeignKeyError",
    "initial_migration_statements",
    "quote_qualified",
    "triggers_for",
]

INITIAL_MIGRATION_VERSION = "0"
"""Version of the built-in migration that creates the internal tables."""


class CompoundForeignKeyError(ElectricError):
    """A table has a foreign key over more than one column; the official client cannot compensate
    those, and neither do we."""


def _esc(name: str) -> str:
    return name.replace('"', '""')


def quote_qualified(namespace: str, table: str) -> str:
    """``"namespace"."table"`` with embedded double quotes doubled."""
    return f'"{_esc(namespace)}"."{_esc(table)}"'


def _json_pairs(columns: Iterable[str], types: Mapping[str, str], target: str | None = None) -> str:
    """``'col', <expr>`` pairs, columns sorted by name, numbers that JSON would round kept as
    text and bytea as hex (the official client's ``joinColsForJSON``)."""

    def expr(col: str) -> str:
        ref = f'"{col}"' if target is None else f'{target}."{col}"'
        match types.get(col):
            case "FLOAT4" | "REAL" | "DOUBLE PRECISION" | "FLOAT8" | "INT8" | "BIGINT":
                return f"cast({ref} as TEXT)"
            case "BYTEA":
                return f"CASE WHEN {ref} IS NOT NULL THEN hex({ref}) ELSE NULL END"
            case _:
                return ref

    return ", ".join(f"'{col}', {expr(col)}" for col in sorted(columns))


def _flag_guard(namespace: str, table: str) -> str:
    return (
        "WHEN 1 = (SELECT flag from _electric_trigger_settings "
        f"WHERE namespace = '{namespace}' AND tablename = '{table}')"
    )


def _oplog_trigger(
    op: str, namespace: str, table: str, pks: str, new_rows: str, old_rows: str
) -> list[str]:
    name = f"{op.lower()}_{namespace}_{table}_into_oplog"
    new_record = "NULL" if op == "DELETE" else f"json_object({new_rows})"
    old_record = "NULL" if op == "INSERT" else f"json_object({old_rows})"
    return [
        f"DROP TRIGGER IF EXISTS {name};",
        f"CREATE TRIGGER {name}\n"
        f"   AFTER {op} ON {quote_qualified(namespace, table)}\n"
        f"   {_flag_guard(namespace, table)}\n"
        "BEGIN\n"
        "  INSERT INTO _electric_oplog (namespace, tablename, optype, primaryKey, newRow, oldRow,"
        " timestamp)\n"
        f"  VALUES ('{namespace}', '{table}', '{op}', json_patch('{{}}', json_object({pks})),"
        f" {new_record}, {old_record}, NULL);\n"
        "END;",
    ]


def _compensation_trigger(
    op: str, namespace: str, table: str, child: str, parent: str, parent_col: str, pairs: str
) -> list[str]:
    name = f"compensation_{op.lower()}_{namespace}_{table}_{child}_into_oplog"
    return [
        f"DROP TRIGGER IF EXISTS {name};",
        f"CREATE TRIGGER {name}\n"
        f"  AFTER {op} ON {quote_qualified(namespace, table)}\n"
        f"  {_flag_guard(namespace, table)} AND\n"
        "       1 = (SELECT value from _electric_meta WHERE key = 'compensations')\n"
        "BEGIN\n"
        "  INSERT INTO _electric_oplog (namespace, tablename, optype, primaryKey, newRow, oldRow,"
        " timestamp)\n"
        f"  SELECT '{namespace}', '{parent}', 'COMPENSATION', json_patch('{{}}',"
        f" json_object({pairs})), json_object({pairs}), NULL, NULL\n"
        f'  FROM {quote_qualified(namespace, parent)} WHERE "{parent_col}" = new."{child}";\n'
        "END;",
    ]


def triggers_for(table: TableSchema, namespace: str = "main") -> list[str]:
    """Every trigger statement of ``table``, in the official client's order: the trigger-settings
    row, the primary-key guard, the INSERT/UPDATE/DELETE oplog triggers and, per single-column
    foreign key, the INSERT/UPDATE compensation triggers. Each trigger is a ``DROP TRIGGER IF
    EXISTS`` then a ``CREATE TRIGGER``, so the list can be re-run after ``ADD COLUMN``.

    Raises :class:`CompoundForeignKeyError` for a foreign key over several columns.
    """
    name = table.name
    types = {c.name: c.pg_type.upper() for c in table.columns}
    columns = [c.name for c in table.columns]
    pk = list(table.primary_key)
    guard = f"update_ensure_{namespace}_{name}_primarykey"
    cases = "\n".join(
        f'      WHEN old."{col}" != new."{col}" THEN\n'
        f"      \t\tRAISE (ABORT, 'cannot change the value of column {col} as it belongs to the"
        " primary key')"
        for col in sorted(pk)
    )
    statements = [
        "INSERT OR IGNORE INTO _electric_trigger_settings (namespace, tablename, flag)"
        f" VALUES ('{namespace}', '{name}', 1);",
        f"DROP TRIGGER IF EXISTS {guard};",
        f"CREATE TRIGGER {guard}\n"
        f"  BEFORE UPDATE ON {quote_qualified(namespace, name)}\n"
        "BEGIN\n"
        "  SELECT\n"
        "    CASE\n"
        f"{cases}\n"
        "    END;\n"
        "END;",
    ]
    new_pks = _json_pairs(pk, types, "new")
    old_pks = _json_pairs(pk, types, "old")
    new_rows = _json_pairs(columns, types, "new")
    old_rows = _json_pairs(columns, types, "old")
    statements += _oplog_trigger("INSERT", namespace, name, new_pks, new_rows, old_rows)
    statements += _oplog_trigger("UPDATE", namespace, name, new_pks, new_rows, old_rows)
    statements += _oplog_trigger("DELETE", namespace, name, old_pks, new_rows, old_rows)
    for fk in table.foreign_keys:
        if len(fk.columns) != 1 or len(fk.parent_columns) != 1:
            raise CompoundForeignKeyError(
                f"table {name!r}: foreign key {fk.columns} -> {fk.parent}{fk.parent_columns}:"
                " Satellite does not yet support compound foreign keys."
            )
        child, parent_col = fk.columns[0], fk.parent_columns[0]
        pairs = _json_pairs([parent_col], {parent_col: types.get(child, "")})
        for op in ("INSERT", "UPDATE"):
            statements += _compensation_trigger(
                op, namespace, name, child, fk.parent, parent_col, pairs
            )
    return statements


def initial_migration_statements(namespace: str = "main") -> list[str]:
    """The statements of built-in migration ``'0'``: oplog, meta, migrations, trigger settings and
    shadow tables, and the seeded meta rows."""
    ns = namespace
    oplog = quote_qualified(ns, "_electric_oplog")
    meta = quote_qualified(ns, "_electric_meta")
    migrations = quote_qualified(ns, "_electric_migrations")
    settings = quote_qualified(ns, "_electric_trigger_settings")
    shadow = quote_qualified(ns, "_electric_shadow")
    return [
        f"CREATE TABLE IF NOT EXISTS {oplog} (\n"
        '  "rowid" INTEGER PRIMARY KEY AUTOINCREMENT,\n'
        '  "namespace" TEXT NOT NULL,\n'
        '  "tablename" TEXT NOT NULL,\n'
        '  "optype" TEXT NOT NULL,\n'
        '  "primaryKey" TEXT NOT NULL,\n'
        '  "newRow" TEXT,\n'
        '  "oldRow" TEXT,\n'
        '  "timestamp" TEXT,  "clearTags" TEXT DEFAULT \'[]\' NOT NULL\n'
        ");",
        f"CREATE INDEX IF NOT EXISTS {ns}._electric_table_pk_reference"
        " ON _electric_oplog (namespace, tablename, primaryKey)",
        f"CREATE INDEX IF NOT EXISTS {ns}._electric_timestamp ON _electric_oplog (timestamp)",
        f'CREATE TABLE IF NOT EXISTS {meta} (\n  "key" TEXT PRIMARY KEY,\n  "value" BLOB\n);',
        f"CREATE TABLE IF NOT EXISTS {migrations} (\n"
        '  "id" INTEGER PRIMARY KEY AUTOINCREMENT,\n'
        '  "version" TEXT NOT NULL UNIQUE,\n'
        '  "applied_at" TEXT NOT NULL\n'
        ");",
        f"INSERT INTO {meta} (key, value) VALUES ('compensations', 1), ('lsn', ''),"
        " ('clientId', ''), ('subscriptions', ''), ('seenAdditionalData', '');",
        f"DROP TABLE IF EXISTS {settings};",
        f'CREATE TABLE {settings} ("namespace" TEXT, "tablename" TEXT, "flag" INTEGER,'
        ' PRIMARY KEY ("namespace", "tablename"));',
        f"CREATE TABLE {shadow} (\n"
        '  "namespace" TEXT NOT NULL,\n'
        '  "tablename" TEXT NOT NULL,\n'
        '  "primaryKey" TEXT NOT NULL,\n'
        '  "tags" TEXT NOT NULL,\n'
        '  PRIMARY KEY ("namespace", "tablename", "primaryKey"));',
    ]
