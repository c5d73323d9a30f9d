"""The translated DDL runs: the Postgres dialect on a real Postgres, the SQLite one in SQLite."""

from __future__ import annotations

import sqlite3
from typing import Any

from electric_trio.ddlx.migration import apply_migration
from electric_trio.ddlx.schema import Schema
from electric_trio.pg import connect

MIGRATIONS = [
    (
        "20240101000000",
        [
            "CREATE TYPE public.status AS ENUM ('open', 'closed')",
            "CREATE TABLE public.projects (id uuid NOT NULL, name text NOT NULL, owner varchar,"
            " budget float8, CONSTRAINT projects_pkey PRIMARY KEY (id))",
            "CREATE TABLE public.issues (id uuid PRIMARY KEY, project_id uuid NOT NULL"
            " REFERENCES public.projects (id), title varchar(200), status public.status,"
            " done bool, n int2, m int4, big int8, ratio float4, due date, at time,"
            " created timestamp, updated timestamptz, body jsonb, blob bytea)",
            "CREATE INDEX issues_project_idx ON public.issues (project_id, title DESC)",
        ],
    ),
    (
        "20240102000000",
        [
            "ALTER TABLE public.issues ADD COLUMN priority int4, ADD COLUMN label text",
            "CREATE UNIQUE INDEX IF NOT EXISTS projects_name_idx ON public.projects (name)",
        ],
    ),
]


async def test_both_dialects_execute(pg_server: Any) -> None:
    schema = Schema()
    sqlite = sqlite3.connect(":memory:")
    pg_statements: list[str] = []
    for version, statements in MIGRATIONS:
        schema, ops = apply_migration(schema, version, statements)
        for op in ops:
            for stmt in op.sqlite:
                sqlite.executescript(stmt.sql)
            pg_statements.extend(stmt.sql for stmt in op.postgresql)
    tables = {r[0] for r in sqlite.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"projects", "issues"}
    columns = [r[1] for r in sqlite.execute("PRAGMA table_info(issues)")]
    assert columns[-2:] == ["priority", "label"]

    async with await connect(pg_server.url) as admin:
        await admin.execute("DROP DATABASE IF EXISTS et_dialects WITH (FORCE)")
        await admin.execute("CREATE DATABASE et_dialects")
    try:
        async with await connect(pg_server.database_url("et_dialects")) as c:
            for sql in pg_statements:
                await c.execute(sql)
            got = await c.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'issues' ORDER BY ordinal_position"
            )
            assert [r[0] for r in got][-2:] == ["priority", "label"]
            indexes = await c.fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
            )
            assert {r[0] for r in indexes} >= {"issues_project_idx", "projects_name_idx"}
    finally:
        async with await connect(pg_server.url) as admin:
            await admin.execute("DROP DATABASE et_dialects WITH (FORCE)")
