"""The local store: the client's SQLite database, as the official client keeps it
(client-behaviour.md §1-§7). Blocking code on one ``sqlite3`` connection in autocommit mode;
:class:`~electric_trio.client._client.ElectricClient` runs it in a worker thread under a lock.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal

from ..satellite import messages as m
from ._errors import CorruptDatabaseError, SchemaMismatchError
from ._values import (
    SqlValue,
    b64,
    iso_ms,
    json_to_sql,
    jsonify,
    ms_of_iso,
    pk_json,
    sql_to_json,
    unb64,
)
from .schema import Column, DbSchema, ForeignKey, Migration, TableSchema
from .triggers import INITIAL_MIGRATION_VERSION, initial_migration_statements, triggers_for

NS = "main"
_VERSION = re.compile(r"^[0-9_]+")
_INTERNAL = ("_electric_", "sqlite_")
_MAX_PARAMS = 32766
_KIND_OPTYPE = {"insert": "UPSERT", "update": "UPSERT", "delete": "DELETE", "gone": "GONE"}


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


#: PG types the triggers' ``json_object`` keeps as text (JSON numbers would round them).
_TEXT_IN_JSON = frozenset({"int8", "bigint", "float4", "float8", "real", "double precision"})


def _shadow_params(
    items: Iterable[tuple[Sequence[SqlValue], Sequence[str]]], at: Sequence[int]
) -> Iterable[list[SqlValue]]:
    """Per row: the primary-key values (positions ``at``), then the tags as JSON."""
    texts: dict[tuple[str, ...], str] = {}
    for values, tags in items:
        key = tuple(tags)
        text = texts.get(key)
        if text is None:
            text = texts[key] = jsonify(list(key))
        out: list[SqlValue] = [values[i] if i < len(values) else None for i in at]
        out.append(text)
        yield out


#: The page cache (KiB) a delivery of data gets at least.
_DATA_CACHE_KIB = 16000

#: A row of data: table, column names, the values in that order, shadow tags.
DataRow = tuple[str, tuple[str, ...], Sequence[SqlValue], Sequence[str]]


@dataclass
class TableInfo:
    """What the store knows of one table: columns (name, PG type) in order, primary key."""

    name: str
    columns: list[tuple[str, str]]
    pk: list[str]
    nullable: dict[str, bool] = field(default_factory=dict)

    def pg_type(self, column: str) -> str:
        for name, t in self.columns:
            if name == column:
                return t
        return "text"


@dataclass
class IncomingChange:
    table: str
    kind: Literal["insert", "update", "delete", "gone"]
    new: dict[str, SqlValue] | None
    old: dict[str, SqlValue] | None
    tags: list[str]


@dataclass
class IncomingTx:
    commit_timestamp: int
    lsn: bytes
    origin: str | None
    is_migration: bool
    transaction_id: int | None
    additional_data_ref: int
    ops: list[IncomingChange | m.SatOpMigrate]


@dataclass
class OutChange:
    table: str
    optype: str
    new: dict[str, Any] | None
    old: dict[str, Any] | None
    tags: list[str]


@dataclass
class OutTx:
    max_rowid: int
    commit_timestamp: int
    changes: list[OutChange]


@dataclass
class _Local:
    changes: dict[str, tuple[SqlValue, int]] = field(default_factory=dict)
    optype: str = "UPSERT"
    tag: str | None = None
    clear_tags: list[str] = field(default_factory=list)
    last_ts: int | None = None


@dataclass
class _Incoming:
    table: str
    full_row: dict[str, SqlValue]
    changes: dict[str, SqlValue]
    optype: str
    tags: list[str]


def table_of_migrate(t: m.SatOpMigrateTable) -> TableSchema:
    return TableSchema(
        name=t.name,
        columns=tuple(
            Column(c.name, c.pg_type.name if c.pg_type else c.sqlite_type.lower())
            for c in t.columns
        ),
        primary_key=tuple(t.pks),
        foreign_keys=tuple(
            ForeignKey(tuple(f.fk_cols), f.pk_table, tuple(f.pk_cols)) for f in t.fks
        ),
    )


class LocalStore:
    """The client's SQLite state. Every method is blocking; call one at a time."""

    def __init__(self, conn: sqlite3.Connection, schema: DbSchema, where: str) -> None:
        self.conn = conn
        self.schema = schema
        self.where = where
        self.tables: dict[str, TableInfo] = {}
        self.client_id = ""
        self._last_snapshot_ms = 0
        self._data_fk = False
        self._data_cache: int | None = None
        self._data_tables: set[str] = set()

    # ---- opening ------------------------------------------------------------------------

    def open(self, client_id: str | None = None) -> None:
        """Creates or checks the internal tables, applies missing bundled migrations, loads the
        client id. Raises :class:`CorruptDatabaseError` or :class:`SchemaMismatchError`."""
        c = self.conn
        try:
            names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:
            raise CorruptDatabaseError(f"{self.where}: not a usable SQLite database ({e})") from e
        try:
            c.execute("PRAGMA integrity_check(1)").fetchone()
        except sqlite3.DatabaseError as e:
            raise CorruptDatabaseError(f"{self.where}: the SQLite database is corrupt ({e})") from e
        internal = {"_electric_migrations", "_electric_meta", "_electric_oplog", "_electric_shadow"}
        present = internal & names
        if present and present != internal:
            missing = ", ".join(sorted(internal - present))
            raise CorruptDatabaseError(
                f"{self.where}: the local database lacks the client's tables {missing};"
                " it was not created by an Electric client or was damaged"
            )
        bundle = [Migration(INITIAL_MIGRATION_VERSION, tuple(initial_migration_statements(NS)))]
        bundle += list(self.schema.migrations)
        for mig in bundle:
            if not _VERSION.match(mig.version):
                raise SchemaMismatchError(
                    f"migration version {mig.version!r} of the schema bundle is not a version"
                    " (digits and underscores)"
                )
        applied = (
            [r[0] for r in c.execute('SELECT version FROM "_electric_migrations" ORDER BY id')]
            if present
            else []
        )
        for i, (a, b) in enumerate(zip(applied, bundle, strict=False)):
            if a != b.version:
                raise SchemaMismatchError(
                    f"UNKNOWN_SCHEMA_VSN: {self.where} has migration {a!r} at position {i} where"
                    f" the schema's bundle has {b.version!r}: the generated client no longer"
                    " matches this local database (regenerate it, or use a new database file)"
                )
        for mig in bundle[len(applied) :]:
            self._apply_migration(mig.version, mig.statements)
        self._load_tables()
        stored = self.meta("clientId")
        if client_id is not None:
            self.client_id = client_id
            if stored != client_id:
                self.set_meta("clientId", client_id)
        elif stored:
            self.client_id = str(stored)
        else:
            self.client_id = str(uuid.uuid4())
            self.set_meta("clientId", self.client_id)

    def _apply_migration(self, version: str, statements: Iterable[str]) -> None:
        c = self.conn
        c.execute("BEGIN")
        try:
            for stmt in statements:
                c.execute(stmt)
            c.execute(
                'INSERT INTO "_electric_migrations" (version, applied_at) VALUES (?, ?)',
                (version, str(int(time.time() * 1000))),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _load_tables(self) -> None:
        """Table descriptions: the schema's, else the local table's declared types."""
        self.tables.clear()
        for name, t in self.schema.tables.items():
            self.tables[name] = TableInfo(
                name,
                [(col.name, col.pg_type) for col in t.columns],
                list(t.primary_key),
                {col.name: col.nullable for col in t.columns},
            )
        for (name,) in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        ).fetchall():
            if name.startswith(_INTERNAL) or name in self.tables:
                continue
            self.tables[name] = self._table_from_sqlite(name)
        # the schema may list columns the local table does not have yet, or the reverse
        for name, info in list(self.tables.items()):
            local = self._columns(name)
            if local and [n for n, _ in info.columns] != [n for n, _, _, _ in local]:
                types = dict(info.columns)
                info.columns = [(n, types.get(n, d.lower() or "text")) for n, d, _, _ in local]
                info.nullable = {n: not nn for n, _, nn, _ in local}

    def _columns(self, table: str) -> list[tuple[str, str, bool, int]]:
        return [
            (r[0], r[1], bool(r[2]), int(r[3]))
            for r in self.conn.execute(
                'SELECT name, type, "notnull", pk FROM pragma_table_info(?)', (table,)
            )
        ]

    def _table_from_sqlite(self, name: str) -> TableInfo:
        cols = self._columns(name)
        types = {"INTEGER": "int8", "REAL": "float8", "BLOB": "bytea", "TEXT": "text"}
        return TableInfo(
            name,
            [(n, types.get(d.upper(), "text")) for n, d, _, _ in cols],
            [n for n, _, _, pk in sorted(cols, key=lambda c: c[3]) if pk],
            {n: not nn for n, _, nn, _ in cols},
        )

    def learn_relation(self, relation: m.SatRelation) -> None:
        """A server ``SatRelation``: its PG types replace the table's."""
        info = self.tables.get(relation.table_name)
        if info is None:
            info = TableInfo(relation.table_name, [], [])
            self.tables[relation.table_name] = info
        info.columns = [(c.name, c.type) for c in relation.columns]
        info.nullable = {c.name: c.is_nullable for c in relation.columns}
        pks = [c.name for c in relation.columns if c.primary_key]
        if pks:
            info.pk = pks

    # ---- meta ---------------------------------------------------------------------------

    def meta(self, key: str) -> Any:
        row = self.conn.execute(
            'SELECT value FROM "_electric_meta" WHERE key = ?', (key,)
        ).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: object) -> None:
        self.conn.execute(
            'INSERT INTO "_electric_meta" (key, value) VALUES (?, ?)'
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def lsn(self) -> bytes:
        return unb64(self.meta("lsn"))

    def schema_version(self) -> str | None:
        row = self.conn.execute(
            'SELECT version FROM "_electric_migrations" WHERE version != ?'
            " ORDER BY version DESC LIMIT 1",
            (INITIAL_MIGRATION_VERSION,),
        ).fetchone()
        return None if row is None else str(row[0])

    def applied_versions(self) -> set[str]:
        return {r[0] for r in self.conn.execute('SELECT version FROM "_electric_migrations"')}

    # ---- snapshot and outgoing ----------------------------------------------------------

    def snapshot(self) -> set[str]:
        """Timestamps the pending oplog entries as one local transaction and updates the shadow
        tags (§4). Returns the tables it touched (empty: nothing pending)."""
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            tables = self.snapshot_within()
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return tables

    def snapshot_within(self) -> set[str]:
        """:meth:`snapshot` inside the caller's transaction, so that a local write and its
        snapshot commit together."""
        c = self.conn
        now = max(int(time.time() * 1000), self._last_snapshot_ms + 1)
        ts = iso_ms(now)
        tag = f"{self.client_id}@{now}"
        rows = c.execute(
            'UPDATE "_electric_oplog" SET timestamp = ? WHERE rowid IN (SELECT rowid FROM'
            ' "_electric_oplog" WHERE timestamp IS NULL ORDER BY rowid)'
            " RETURNING tablename",
            (ts,),
        ).fetchall()
        if not rows:
            return set()
        self._last_snapshot_ms = now
        c.execute(
            'UPDATE "_electric_oplog" AS op SET clearTags = (SELECT CASE'
            " WHEN s.tags = '[]' OR s.tags = '' THEN '[\"' || ? || '\"]'"
            " ELSE '[\"' || ? || '\",' || substring(s.tags, 2) END"
            ' FROM "_electric_shadow" AS s WHERE s.namespace = op.namespace'
            " AND s.tablename = op.tablename AND s.primaryKey = op.primaryKey)"
            ' WHERE op.timestamp = ? AND EXISTS (SELECT 1 FROM "_electric_shadow" AS s'
            " WHERE s.namespace = op.namespace AND s.tablename = op.tablename"
            " AND s.primaryKey = op.primaryKey)",
            (tag, tag, ts),
        )
        c.execute(
            'INSERT OR REPLACE INTO "_electric_shadow" (namespace, tablename, primaryKey,'
            ' tags) SELECT namespace, tablename, primaryKey, ? FROM "_electric_oplog" AS op'
            " WHERE timestamp = ? GROUP BY namespace, tablename, primaryKey"
            " HAVING rowid = max(rowid) AND optype != 'DELETE'",
            (jsonify([tag]), ts),
        )
        c.execute(
            "WITH _to_be_deleted (rowid) AS (SELECT shadow.rowid"
            ' FROM "_electric_oplog" AS op INNER JOIN "_electric_shadow" AS shadow'
            " ON shadow.namespace = op.namespace AND shadow.tablename = op.tablename"
            " AND shadow.primaryKey = op.primaryKey WHERE op.timestamp = ?"
            " GROUP BY op.namespace, op.tablename, op.primaryKey"
            " HAVING op.rowid = max(op.rowid) AND op.optype = 'DELETE')"
            ' DELETE FROM "_electric_shadow" WHERE rowid IN _to_be_deleted',
            (ts,),
        )
        return {r[0] for r in rows}

    def pending(self, after_rowid: int) -> list[OutTx]:
        """Timestamped oplog entries after ``after_rowid``, one transaction per timestamp."""
        txs: list[OutTx] = []
        current_ts: str | None = None
        for rowid, table, optype, new, old, ts, clear in self.conn.execute(
            "SELECT rowid, tablename, optype, newRow, oldRow, timestamp, clearTags FROM"
            ' "_electric_oplog" WHERE timestamp IS NOT NULL AND rowid > ? ORDER BY rowid',
            (after_rowid,),
        ):
            change = OutChange(
                table,
                optype,
                None if new is None else json.loads(new),
                None if old is None else json.loads(old),
                json.loads(clear) if clear else [],
            )
            if ts != current_ts or not txs:
                txs.append(OutTx(rowid, ms_of_iso(ts), []))
                current_ts = ts
            txs[-1].max_rowid = rowid
            txs[-1].changes.append(change)
        return txs

    def relation_columns(self, table: str) -> list[tuple[str, str, bool]]:
        """The columns an outgoing ``SatRelation`` lists: (name, type, is_nullable)."""
        info = self.tables.get(table)
        local = self._columns(table)
        if info is not None and info.columns:
            nullable = {n: not nn for n, _, nn, _ in local}
            return [
                (n, t, info.nullable.get(n, nullable.get(n, True)) and n not in info.pk)
                for n, t in info.columns
            ]
        return [(n, d, not nn) for n, d, nn, _ in local]

    # ---- incoming -----------------------------------------------------------------------

    def _fk_off(self) -> bool:
        """Turns foreign-key enforcement off for a downstream write (the official client's
        default ``foreignKeyChecksDownstream = disabled``); returns whether it was on."""
        on = bool(self.conn.execute("PRAGMA foreign_keys").fetchone()[0])
        if on:
            self.conn.execute("PRAGMA foreign_keys = OFF")
        return on

    def _fk_restore(self, was_on: bool) -> None:
        if was_on:
            self.conn.execute("PRAGMA foreign_keys = ON")

    def _flags(self, tables: Iterable[str], flag: int) -> None:
        for t in tables:
            self.conn.execute(
                'UPDATE "_electric_trigger_settings" SET flag = ? WHERE namespace = ?'
                " AND tablename = ?",
                (flag, NS, t),
            )

    def _pk_of(self, table: str, row: dict[str, SqlValue]) -> str:
        info = self.tables[table]
        return pk_json({k: sql_to_json(info.pg_type(k), row.get(k)) for k in info.pk})

    def apply_transaction(self, tx: IncomingTx) -> set[str]:
        """Applies a server transaction (§5): GC of our echoed entries, merge, DDL, LSN.
        Returns the tables it changed."""
        c = self.conn
        self.snapshot()
        touched: set[str] = set()
        versions = {op.version for op in tx.ops if isinstance(op, m.SatOpMigrate) and op.version}
        skip = bool(versions) and versions <= self.applied_versions()
        fk = self._fk_off()
        c.execute("BEGIN IMMEDIATE")
        try:
            if tx.origin is not None and tx.origin == self.client_id:
                c.execute(
                    'DELETE FROM "_electric_oplog" WHERE timestamp = ?',
                    (iso_ms(tx.commit_timestamp),),
                )
            if not skip:
                created: set[str] = set()
                chunk: list[IncomingChange] = []
                for op in tx.ops:
                    if isinstance(op, IncomingChange):
                        chunk.append(op)
                        continue
                    touched |= self._apply_dml(chunk, tx)
                    chunk = []
                    created |= self._apply_ddl(op)
                touched |= self._apply_dml(chunk, tx)
                self._flags(touched | created, 1)
                touched |= created
                for v in sorted(versions - self.applied_versions()):
                    c.execute(
                        'INSERT INTO "_electric_migrations" (version, applied_at) VALUES (?, ?)',
                        (v, str(int(time.time() * 1000))),
                    )
            self.set_meta("lsn", b64(tx.lsn))
            self.set_meta("seenAdditionalData", "")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        finally:
            self._fk_restore(fk)
        return touched

    def _apply_ddl(self, op: m.SatOpMigrate) -> set[str]:
        for stmt in op.stmts:
            self.conn.execute(stmt.sql)
        if op.table is None:
            return set()
        kinds = {s.type for s in op.stmts}
        if kinds & {m.SatOpMigrateType.CREATE_TABLE, m.SatOpMigrateType.ALTER_ADD_COLUMN}:
            schema = table_of_migrate(op.table)
            for trigger in triggers_for(schema, NS):
                self.conn.execute(trigger)
            self.tables[schema.name] = TableInfo(
                schema.name,
                [(col.name, col.pg_type) for col in schema.columns],
                list(schema.primary_key),
                {col.name: col.name not in schema.primary_key for col in schema.columns},
            )
            self._flags([schema.name], 0)
            return {schema.name}
        return set()

    def _local_entries(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Local]:
        out: dict[tuple[str, str], _Local] = {}
        for table, pk, optype, new, old, ts, clear in self.conn.execute(
            "SELECT tablename, primaryKey, optype, newRow, oldRow, timestamp, clearTags FROM"
            ' "_electric_oplog" WHERE timestamp IS NOT NULL ORDER BY rowid'
        ):
            if (table, pk) not in keys:
                continue
            info = self.tables.get(table)
            if info is None:
                continue
            at = ms_of_iso(ts)
            entry = out.setdefault((table, pk), _Local())
            new_row = json.loads(new) if new else {}
            old_row = json.loads(old) if old else {}
            for col, value in new_row.items():
                if old is None or old_row.get(col) != value:
                    entry.changes[col] = (json_to_sql(info.pg_type(col), value), at)
            entry.optype = "DELETE" if optype == "DELETE" else "UPSERT"
            entry.tag = None if optype == "DELETE" else f"{self.client_id}@{at}"
            tags = json.loads(clear) if clear else []
            if entry.last_ts == at:
                entry.clear_tags = list(tags)
            else:
                entry.clear_tags = entry.clear_tags + [t for t in tags if t not in entry.clear_tags]
            entry.last_ts = at
        return out

    def _apply_dml(self, changes: Sequence[IncomingChange], tx: IncomingTx) -> set[str]:
        if not changes:
            return set()
        incoming: dict[tuple[str, str], _Incoming] = {}
        for ch in changes:
            if ch.table not in self.tables:
                continue
            row = ch.new if ch.kind in ("insert", "update") else ch.old
            row = row or {}
            key = (ch.table, self._pk_of(ch.table, row))
            if ch.kind == "insert":
                diff = dict(row)
            elif ch.kind == "update":
                old = ch.old or {}
                diff = {k: v for k, v in row.items() if k not in old or old[k] != v}
            else:
                diff = {}
            seen = incoming.get(key)
            if seen is None:
                incoming[key] = _Incoming(
                    ch.table, dict(row), diff, _KIND_OPTYPE[ch.kind], list(ch.tags)
                )
            else:
                seen.optype = _KIND_OPTYPE[ch.kind]
                seen.changes.update(diff)
                seen.full_row.update(diff)
        local = self._local_entries(set(incoming))
        tables = {t for t, _ in incoming}
        self._flags(tables, 0)
        origin = tx.origin or ""
        for (table, pk), inc in incoming.items():
            loc = local.get((table, pk))
            row = dict(inc.full_row)
            if loc is None:
                tags = inc.tags
                optype = "DELETE" if inc.optype in ("DELETE", "GONE") else "UPSERT"
            else:
                for col, (value, at) in loc.changes.items():
                    if col not in inc.changes:
                        row[col] = value
                    elif at > tx.commit_timestamp or (
                        at == tx.commit_timestamp and self.client_id > origin
                    ):
                        row[col] = value
                if inc.optype == "GONE":
                    tags = []
                else:
                    tags = [t for t in inc.tags if t not in loc.clear_tags]
                    if loc.tag is not None and loc.tag not in tags:
                        tags.append(loc.tag)
                optype = "UPSERT" if tags else "DELETE"
            self._write(table, pk, row, optype, tags)
        return tables

    def _write(
        self, table: str, pk: str, row: dict[str, SqlValue], optype: str, tags: list[str]
    ) -> None:
        c = self.conn
        info = self.tables[table]
        keys = info.pk
        if optype == "DELETE":
            where = " AND ".join(f"{q(k)} = ?" for k in keys)
            c.execute(f"DELETE FROM {q(table)} WHERE {where}", [row.get(k) for k in keys])
            c.execute(
                'DELETE FROM "_electric_shadow" WHERE namespace = ? AND tablename = ?'
                " AND primaryKey = ?",
                (NS, table, pk),
            )
            return
        cols = list(row)
        marks = ", ".join("?" for _ in cols)
        rest = [k for k in cols if k not in keys]
        sql = f"INSERT INTO {q(table)} ({', '.join(q(k) for k in cols)}) VALUES ({marks})"
        if rest:
            conflict = ", ".join(q(k) for k in keys)
            sets = ", ".join(f"{q(k)} = excluded.{q(k)}" for k in rest)
            sql += f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}"
        else:
            sql = sql.replace("INSERT INTO", "INSERT OR IGNORE INTO", 1)
        c.execute(sql, [row[k] for k in cols])
        c.execute(
            'INSERT OR REPLACE INTO "_electric_shadow" (namespace, tablename, primaryKey, tags)'
            " VALUES (?, ?, ?, ?)",
            (NS, table, pk, jsonify(tags)),
        )

    def apply_data(
        self,
        rows: Sequence[tuple[str, dict[str, SqlValue], list[str]]],
        lsn: bytes | None,
        additional_ref: int | None = None,
        subscriptions: str | None = None,
    ) -> set[str]:
        """:meth:`apply_rows` of rows given by column name."""
        data: list[DataRow] = []
        for table, row, tags in rows:
            names = tuple(row)
            data.append((table, names, [row[k] for k in names], tags))
        return self.apply_rows(data, lsn, additional_ref, subscriptions)

    def _pk_sql(self, table: str) -> str:
        """The shadow key of a row from its primary-key values bound in name order, computed by
        SQLite as the oplog triggers compute ``primaryKey``."""
        info = self.tables[table]
        pairs = []
        for k in sorted(info.pk):
            t = info.pg_type(k).lower()
            value = "cast(? as TEXT)" if t in _TEXT_IN_JSON else "hex(?)" if t == "bytea" else "?"
            pairs.append(f"'{k.replace(chr(39), chr(39) * 2)}', {value}")
        return f"json_patch('{{}}', json_object({', '.join(pairs)}))"

    def apply_rows(
        self,
        rows: Sequence[DataRow],
        lsn: bytes | None,
        additional_ref: int | None = None,
        subscriptions: str | None = None,
    ) -> set[str]:
        """Subscription or additional data (§7) in one transaction: :meth:`begin_data`,
        :meth:`load_rows`, :meth:`finish_data`. Returns the tables."""
        self.begin_data()
        try:
            self.load_rows(rows)
        except BaseException:
            self.abort_data()
            raise
        return self.finish_data(lsn, additional_ref, subscriptions)

    def begin_data(self) -> None:
        """Opens the transaction of a delivery of data (foreign-key checks off until it ends)."""
        self._data_fk = self._fk_off()
        self._data_tables = set()
        # a page cache of at least 16 MB while the rows go in (better-sqlite3's default, SQLite's
        # is 2 MB): two B-trees keyed by random keys grow here
        c = self.conn
        cache = int(c.execute("PRAGMA cache_size").fetchone()[0])
        page = int(c.execute("PRAGMA page_size").fetchone()[0])
        kib = -cache if cache < 0 else cache * page // 1024
        self._data_cache = cache if kib < _DATA_CACHE_KIB else None
        if self._data_cache is not None:
            c.execute(f"PRAGMA cache_size = -{_DATA_CACHE_KIB}")
        c.execute("BEGIN IMMEDIATE")

    def load_rows(self, rows: Sequence[DataRow]) -> None:
        """Rows of the open delivery: inserted unless present (``OR IGNORE``), shadow tags
        set."""
        c = self.conn
        groups: dict[tuple[str, tuple[str, ...]], list[tuple[Sequence[SqlValue], Sequence[str]]]]
        groups = {}
        for table, names, values, tags in rows:
            if table in self.tables:
                groups.setdefault((table, names), []).append((values, tags))
        new = {t for t, _ in groups} - self._data_tables
        self._flags(new, 0)
        self._data_tables |= new
        for (table, cols), items in groups.items():
            per = max(1, _MAX_PARAMS // max(1, len(cols)))
            head = f"INSERT OR IGNORE INTO {q(table)} ({', '.join(q(k) for k in cols)}) VALUES "
            one = "(" + ", ".join("?" for _ in cols) + ")"
            for i in range(0, len(items), per):
                batch = items[i : i + per]
                c.execute(
                    head + ", ".join(one for _ in batch),
                    list(chain.from_iterable(v for v, _ in batch)),
                )
            where = {k: i for i, k in enumerate(cols)}
            at = [where.get(k, len(cols)) for k in sorted(self.tables[table].pk)]
            c.executemany(
                'INSERT OR REPLACE INTO "_electric_shadow" (namespace, tablename,'
                f" primaryKey, tags) VALUES ('{NS}', {_sql_text(table)},"
                f" {self._pk_sql(table)}, ?)",
                _shadow_params(items, at),
            )

    def finish_data(
        self,
        lsn: bytes | None,
        additional_ref: int | None = None,
        subscriptions: str | None = None,
    ) -> set[str]:
        """Commits the delivery with the LSN (and the subscriptions state) stored. Returns the
        tables it wrote."""
        c = self.conn
        tables = self._data_tables
        try:
            self._flags(tables, 1)
            if subscriptions is not None:
                self.set_meta("subscriptions", subscriptions)
            if lsn is not None:
                self.set_meta("lsn", b64(lsn))
            if additional_ref is not None:
                seen = str(self.meta("seenAdditionalData") or "")
                refs = [r for r in seen.split(",") if r] + [str(additional_ref)]
                self.set_meta("seenAdditionalData", ",".join(refs))
            c.execute("COMMIT")
        except BaseException:
            self.abort_data()
            raise
        self._data_done()
        return tables

    def abort_data(self) -> None:
        """Rolls the open delivery back."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        self._data_done()

    def _data_done(self) -> None:
        self._fk_restore(self._data_fk)
        if self._data_cache is not None:
            self.conn.execute(f"PRAGMA cache_size = {self._data_cache}")
            self._data_cache = None

    def apply_gone(
        self, rows: Sequence[tuple[str, dict[str, SqlValue]]], lsn: bytes, subscriptions: str
    ) -> set[str]:
        """A GONE batch (§7): rows and their shadow entries deleted, no conflict resolution."""
        c = self.conn
        tables = {t for t, _ in rows if t in self.tables}
        fk = self._fk_off()
        c.execute("BEGIN IMMEDIATE")
        try:
            self._flags(tables, 0)
            for table, row in rows:
                if table not in self.tables:
                    continue
                pk = self._pk_of(table, row)
                keys = self.tables[table].pk
                where = " AND ".join(f"{q(k)} = ?" for k in keys)
                c.execute(f"DELETE FROM {q(table)} WHERE {where}", [row.get(k) for k in keys])
                c.execute(
                    'DELETE FROM "_electric_shadow" WHERE namespace = ? AND tablename = ?'
                    " AND primaryKey = ?",
                    (NS, table, pk),
                )
            self._flags(tables, 1)
            self.set_meta("lsn", b64(lsn))
            self.set_meta("subscriptions", subscriptions)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        finally:
            self._fk_restore(fk)
        return tables

    def reset(self, tables: Iterable[str]) -> None:
        """Forgets the server position and the synced rows of ``tables`` (the official client's
        reset after an out-of-sync error); local writes not yet sent stay in the oplog."""
        c = self.conn
        names = [t for t in tables if t in self.tables]
        fk = self._fk_off()
        c.execute("BEGIN IMMEDIATE")
        try:
            self._flags(names, 0)
            for t in names:
                c.execute(f"DELETE FROM {q(t)}")
                c.execute('DELETE FROM "_electric_shadow" WHERE tablename = ?', (t,))
            self._flags(names, 1)
            c.execute("UPDATE \"_electric_meta\" SET value = NULL WHERE key = 'lsn'")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        finally:
            self._fk_restore(fk)
