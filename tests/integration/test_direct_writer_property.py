"""Property: for any sequence of client transactions (inserts, updates, deletes, compensations on
a few keys, with keys repeated inside a transaction) interleaved with Postgres-side writes, the
direct writer's COPY path leaves the tables, tombstones and tags exactly as its row-insert path
does: the triggers see the same rows in the same order."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_direct_writer import ITEMS, SCHEMA

from electric_trio.ddlx import install_electric_schema
from electric_trio.pg import Connection, ConnectParams, connect
from electric_trio.writes import ClientWrite
from electric_trio.writes.direct import DirectWriter
from electric_trio.writes.rows import ack_row, change_rows, observed_tags_literal, tag_literal

KEYS = ("a", "b", "c")
T = 1_600_000_000_000  # client times in 2020: Postgres-side writes (now) are newer

change_st = st.tuples(
    st.sampled_from(["insert", "update", "delete", "compensation"]),
    st.sampled_from(KEYS),
    st.sampled_from(["x", "y", None]),
    st.integers(0, 3),  # how many of the tags seen so far it observed (the latest ones)
)
step_st = st.one_of(
    st.tuples(st.just("client"), st.integers(0, 50), st.lists(change_st, min_size=1, max_size=6)),
    st.tuples(
        st.just("postgres"),
        st.sampled_from(["insert", "update", "delete"]),
        st.sampled_from(KEYS),
    ),
)


def build(steps: list[Any]) -> list[ClientWrite | str]:
    """Client writes and Postgres statements, in order."""
    out: list[ClientWrite | str] = []
    seen: list[str] = []
    lsn = 0
    for step in steps:
        if step[0] == "postgres":
            _, kind, key = step
            out.append(
                {
                    "insert": f"INSERT INTO items VALUES ('{key}', 'pg') ON CONFLICT DO NOTHING",
                    "update": f"UPDATE items SET title = 'pg2' WHERE id = '{key}'",
                    "delete": f"DELETE FROM items WHERE id = '{key}'",
                }[kind]
            )
            continue
        _, dt, changes = step
        lsn += 1
        ts = T + lsn * 100 - dt
        rows = []
        for kind, key, title, observed in changes:
            tags = seen[len(seen) - observed :] if observed else []
            row = (key, title if kind != "compensation" else None)
            modified = [kind in ("insert", "update")]
            rows.extend(
                change_rows(
                    ITEMS,
                    kind,
                    row,
                    tag_literal(ts, "client"),
                    observed_tags_literal(tags),
                    modified,
                )
            )
        seen.append(f"client@{ts}")
        raw = lsn.to_bytes(4, "big")
        out.append(ClientWrite("client", raw, ts, (ack_row("client", raw), *rows)))
    return out


async def state(conn: Connection) -> list[Any]:
    return [
        [tuple(r) for r in await conn.fetch("SELECT * FROM items ORDER BY id")],
        [
            tuple(r)
            for r in await conn.fetch("SELECT * FROM electric.tombstone__public__items ORDER BY id")
        ],
        [
            tuple(r)
            for r in await conn.fetch(
                "SELECT id, ARRAY(SELECT coalesce((t).source_id || '@' || (t).timestamp, 'pg')"
                "  FROM unnest(_tags) AS t ORDER BY 1),"
                " coalesce((_tag_title).source_id || '@' || (_tag_title).timestamp, 'pg')"
                " FROM electric.shadow__public__items ORDER BY id"
            )
        ],
    ]


async def apply(url: str, plan: list[ClientWrite | str], copy_threshold: int | None) -> list[Any]:
    async with await connect(url) as conn:
        await conn.execute(
            "DELETE FROM other_items; DELETE FROM items;"
            " DELETE FROM electric.shadow__public__items;"
            " DELETE FROM electric.tombstone__public__items;"
            " DELETE FROM electric.acknowledged_client_lsns"
        )
        writer = DirectWriter(ConnectParams.from_url(url), copy_threshold=copy_threshold)
        try:
            for item in plan:
                if isinstance(item, str):
                    await conn.execute(item)
                else:
                    await writer.write(item)
        finally:
            await writer.aclose()
        return await state(conn)


@pytest.fixture
def urls(pg_url: str) -> Iterator[list[str]]:
    """Two fresh databases with the electric schema and the tables (a synchronous fixture:
    it lasts for all of Hypothesis's examples)."""
    names = [f"dwp_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    base = pg_url.rsplit("/", 1)[0]

    async def create() -> None:
        async with await connect(pg_url) as admin:
            for name in names:
                await admin.execute(f'CREATE DATABASE "{name}"')
                async with await connect(f"{base}/{name}") as c:
                    await install_electric_schema(c)
                    await c.execute(SCHEMA)

    async def drop() -> None:
        async with await connect(pg_url) as admin:
            for name in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    trio.run(create)
    try:
        yield [f"{base}/{name}" for name in names]
    finally:
        trio.run(drop)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step_st, min_size=1, max_size=8))
def test_copy_and_row_inserts_agree(urls: list[str], steps: list[Any]) -> None:
    plan = build(steps)
    by_rows = trio.run(apply, urls[0], plan, None)
    by_copy = trio.run(apply, urls[1], plan, 1)
    assert by_copy == by_rows
