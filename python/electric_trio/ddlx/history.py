"""The migration history: captured DDL from the WAL turned into schema versions.

The replication reader hands every transaction that carries captured DDL (``ddl_commands``
inserts) to :meth:`MigrationHistory.process` before the transaction enters the log, so anything
reading the log finds the migration's client ops ready. Each version's schema is saved in
``electric.schema``; at startup the history is rebuilt from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import msgspec
import trio

from .._log import get_logger
from ..pg import Connection
from .migration import MigrateOp, apply_migration
from .schema import DDLError, Schema, schema_to_json

log = get_logger(__name__)


class _HasDdl(Protocol):
    @property
    def ddl(self) -> Sequence[tuple[int, int, str]]: ...

    @property
    def end_lsn(self) -> int: ...


class SchemaMigration(msgspec.Struct, frozen=True, gc=False):
    """One migration: a Postgres transaction of captured DDL, with its version."""

    version: str
    #: The full transaction id (xid8) of the migration transaction: orders migrations.
    txid: int
    statements: tuple[str, ...]
    #: What clients get (``SatOpMigrate``), one op per captured statement.
    ops: tuple[MigrateOp, ...]
    #: The commit end LSN of its transaction when it was seen in the WAL in this run.
    end_lsn: int | None = None


class MigrationHistory:
    """The electrified schema, its current version and every migration that led to it."""

    def __init__(self) -> None:
        self.schema = Schema()
        self.migrations: list[SchemaMigration] = []
        self._by_lsn: dict[int, list[SchemaMigration]] = {}
        self._on_applied: list[Callable[[list[SchemaMigration]], None]] = []

    def on_applied(self, callback: Callable[[list[SchemaMigration]], None]) -> None:
        """Calls ``callback`` with each non-empty batch of migrations :meth:`process` applied."""
        self._on_applied.append(callback)

    @property
    def version(self) -> str | None:
        return self.migrations[-1].version if self.migrations else None

    @classmethod
    async def load(cls, conn: Connection) -> MigrationHistory:
        """Rebuilds the history saved in ``electric.schema``, in transaction order."""
        history = cls()
        rows = await conn.fetch(
            "SELECT s.version, s.migration_ddl, mv.txid::text"
            " FROM electric.schema s JOIN electric.migration_versions mv USING (version)"
            " ORDER BY mv.txid, s.id"
        )
        for version, statements, txid in rows:
            history._apply(version, int(txid), statements or [], end_lsn=None)
        return history

    def _apply(
        self, version: str, txid: int, statements: Sequence[str], *, end_lsn: int | None
    ) -> SchemaMigration:
        schema, ops = apply_migration(self.schema, version, statements)
        migration = SchemaMigration(version, txid, tuple(statements), tuple(ops), end_lsn)
        self.schema = schema
        self.migrations.append(migration)
        if end_lsn is not None:
            self._by_lsn.setdefault(end_lsn, []).append(migration)
        return migration

    async def process(self, conn: Connection, txns: Iterable[Any]) -> list[SchemaMigration]:
        """Applies the migrations carried by ``txns`` (those with ``ddl``), in order.

        A migration whose version is not after the current one (string order, as the
        original) was applied before, e.g. replayed after a restart: it is skipped.
        """
        applied: list[SchemaMigration] = []
        for txn in txns:
            if not txn.ddl:
                continue
            for (txid, txts), statements in _group(txn.ddl):
                version = await _version_of(conn, txid, txts)
                if version is None:
                    log.error(
                        "captured DDL without a migration version; not sent to clients",
                        txid=txid,
                        statements=statements,
                    )
                    continue
                if self.version is not None and version <= self.version:
                    continue
                for statement in statements:
                    log.info(f"Applying migration {version}: {statement}")
                try:
                    migration = self._apply(version, txid, statements, end_lsn=txn.end_lsn)
                except DDLError as e:
                    log.error(
                        "migration cannot be applied to the schema", version=version, error=str(e)
                    )
                    continue
                await conn.execute(
                    "INSERT INTO electric.schema (version, schema, migration_ddl)"
                    " VALUES ($1, $2::text::jsonb, $3::text[]) ON CONFLICT DO NOTHING",
                    version,
                    schema_to_json(self.schema).decode(),
                    list(statements),
                )
                log.info(f"Saved schema version {version}")
                applied.append(migration)
        if applied:
            for callback in self._on_applied:
                callback(applied)
        return applied

    def for_transaction(self, end_lsn: int) -> list[SchemaMigration]:
        """The migrations carried by the transaction at ``end_lsn`` (seen in this run)."""
        return self._by_lsn.get(end_lsn, [])

    def after(self, version: str | None) -> list[SchemaMigration]:
        """The migrations after ``version`` (all of them for None or an empty version).

        An unknown version gives none, as the original's ``/api/migrations`` did.
        """
        if not version:
            return list(self.migrations)
        for i, m in enumerate(self.migrations):
            if m.version == version:
                return self.migrations[i + 1 :]
        return []


async def _version_of(conn: Connection, txid: int, txts: int) -> str | None:
    """The version of the migration transaction ``(txid, txts)``.

    Logical decoding can hand a transaction over a moment before its commit is visible to other
    sessions (the commit record is flushed before the commit is published): until it is, look
    again.
    """
    for _ in range(200):
        row = await conn.fetchrow(
            "SELECT (SELECT version FROM electric.migration_versions"
            " WHERE txid = $1::text::xid8 AND txts = $2),"
            " pg_catalog.pg_visible_in_snapshot($1::text::xid8, pg_catalog.pg_current_snapshot())",
            str(txid),
            txts,
        )
        assert row is not None
        if row[0] is not None or row[1]:
            return None if row[0] is None else str(row[0])
        await trio.sleep(0.01)
    return None


def _group(ddl: Sequence[tuple[int, int, str]]) -> list[tuple[tuple[int, int], list[str]]]:
    groups: dict[tuple[int, int], list[str]] = {}
    for txid, txts, query in ddl:
        groups.setdefault((txid, txts), []).append(query)
    return list(groups.items())
