"""Migrations captured in Postgres become schema versions with client ops, kept across restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from _databases import fresh_database
from electric_trio.ddlx import install_electric_schema
from electric_trio.ddlx.history import MigrationHistory
from electric_trio.ddlx.migration import StmtType
from electric_trio.pg import ConnectParams, connect
from electric_trio.replication import ReaderSettings, TransactionLog, serve_replication


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    async with fresh_database(pg_server, "et_hist") as url:
        async with await connect(url) as c:
            await install_electric_schema(c)
        yield url


async def migrate(url: str, version: str, table: str) -> None:
    async with await connect(url) as c:
        await c.execute(
            f"BEGIN; CALL electric.migration_version('{version}');"
            f" CREATE TABLE {table} (id uuid PRIMARY KEY, title text NOT NULL, n int4);"
            f" CALL electric.electrify('{table}'); COMMIT"
        )


async def run_reader_until(url: str, history: MigrationHistory, versions: int) -> list[Any]:
    """Runs the reader with the history hooked in until it holds ``versions`` migrations."""
    txlog: TransactionLog[Any] = TransactionLog(1 << 30)
    async with await connect(url) as conn, trio.open_nursery() as nursery:

        async def apply(txns: Any) -> None:
            await history.process(conn, [t for t in txns if t.ddl])

        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[Any]) -> None:
            with scope:
                await serve_replication(
                    ConnectParams.from_url(url),
                    txlog,
                    ReaderSettings(),
                    before_append=apply,
                    task_status=task_status,
                )

        await nursery.start(run)
        with trio.fail_after(60):
            while len(history.migrations) < versions:
                await txlog.wait_after(txlog.last_lsn or 0)
        scope.cancel()
    return txlog.read_after(0, limit=10**6)


async def test_captured_migrations_become_versions_with_ops(db: str) -> None:
    history = MigrationHistory()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_reader_until, db, history, 2)
        await trio.sleep(0.5)
        await migrate(db, "20240101000000", "projects")
        await migrate(db, "20240102000000", "issues")
    assert [m.version for m in history.migrations] == ["20240101000000", "20240102000000"]
    first = history.migrations[0]
    assert [op.sqlite[0].type for op in first.ops] == [StmtType.CREATE_TABLE]
    assert 'CREATE TABLE "projects"' in first.ops[0].sqlite[0].sql
    assert first.ops[0].table is not None
    assert [c.name for c in first.ops[0].table.columns] == ["id", "title", "n"]
    assert first.ops[0].table.pks == ("id",)
    assert first.end_lsn is not None
    assert history.for_transaction(first.end_lsn) == [first]
    assert [m.version for m in history.after("20240101000000")] == ["20240102000000"]
    assert history.after("unknown") == []
    assert history.schema.table("public", "issues") is not None
    # Each version's schema is saved, and a restarted service rebuilds the same history.
    async with await connect(db) as c:
        saved = await c.fetch("SELECT version FROM electric.schema ORDER BY id")
        assert saved == [("20240101000000",), ("20240102000000",)]
        reloaded = await MigrationHistory.load(c)
    assert [m.version for m in reloaded.migrations] == ["20240101000000", "20240102000000"]
    assert reloaded.schema == history.schema
    assert [op.sqlite for op in reloaded.migrations[1].ops] == [
        op.sqlite for op in history.migrations[1].ops
    ]


async def test_replayed_migrations_are_not_applied_twice(db: str) -> None:
    history = MigrationHistory()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_reader_until, db, history, 1)
        await trio.sleep(0.5)
        await migrate(db, "20240101000000", "projects")
    async with await connect(db) as c:
        reloaded = await MigrationHistory.load(c)
    # Written while the service is down; after the restart the slot replays its window, so the
    # first migration is seen again and skipped.
    await migrate(db, "20240102000000", "issues")
    txns = await run_reader_until(db, reloaded, 2)
    assert sum(1 for t in txns if t.ddl) == 2
    assert [m.version for m in reloaded.migrations] == ["20240101000000", "20240102000000"]
    async with await connect(db) as c:
        assert await c.fetchval("SELECT count(*) FROM electric.schema") == 2
