"""The generated module on the Python client against the service: the bundled migrations open
the local database, typed tables read the synced shape, a live query yields after a change made
in Postgres and after a local typed write, which reaches Postgres."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from test_generate import load, migrate, start_full, wait_versions
from test_proxy import db

from electric_trio.client import ElectricConfig, open_electric
from electric_trio.generate import generate
from electric_trio.pg import connect
from official_client import insecure_token

__all__ = ["db"]

LIST = "6f1c1b9e-7c1a-4bd5-9d6e-35b0a1e9ae01"


async def pg_rows(db: str, query: str) -> list[tuple[Any, ...]]:
    async with await connect(db) as conn:
        return [tuple(r) for r in await conn.fetch(query)]


async def test_live_query_over_the_client_follows_remote_and_local_changes(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await start_full(nursery, db)
    await migrate(
        running,
        [
            "CREATE TABLE lists (id uuid PRIMARY KEY, name text NOT NULL)",
            "ALTER TABLE lists ENABLE ELECTRIC",
            "CREATE TABLE items (id text PRIMARY KEY, title text NOT NULL, done bool,"
            " list_id uuid REFERENCES lists (id))",
            "ALTER TABLE items ENABLE ELECTRIC",
        ],
    )
    await wait_versions(running, 2)
    async with await connect(db) as conn:
        await conn.execute(
            f"INSERT INTO lists VALUES ('{LIST}', 'home');"
            f" INSERT INTO items VALUES ('a', 'apples', false, '{LIST}')"
        )
    service = f"http://127.0.0.1:{running.service.http_port}"
    generated = await generate(service, tmp_path / "app_schema.py")
    module = load(generated.path)

    config = ElectricConfig(url=service, backoff_start=0.1, backoff_max=0.5)
    async with open_electric(
        tmp_path / "local.db", module.schema, config, token=insecure_token(sub="alice")
    ) as client:
        app = module.Electric(client)
        shape = await client.sync("lists", include={"items": True})
        with trio.fail_after(15):
            await shape.synced()
        async with app.lists.live_many(include={"items": {"order_by": {"id": "asc"}}}) as live:
            assert live.tables == {"lists", "items"}

            async def results_until(expected: list[tuple[str, str, bool | None]]) -> int:
                """Takes results until one shows ``expected``; returns how many it took."""
                seen: list[Any] = []
                with trio.fail_after(15):
                    while True:
                        lists = await live.__anext__()
                        seen.append([(i.id, i.title, i.done) for li in lists for i in li.items])
                        if seen[-1] == expected:
                            return len(seen)

            assert await results_until([("a", "apples", False)]) == 1
            # a change made in Postgres reaches the live query
            async with await connect(db) as conn:
                await conn.execute(f"INSERT INTO items VALUES ('b', 'bread', NULL, '{LIST}')")
            await results_until([("a", "apples", False), ("b", "bread", None)])
            # a local typed write: the live query sees it, and so does Postgres
            await app.items.update(where={"id": "a"}, data={"done": True})
            assert await results_until([("a", "apples", True), ("b", "bread", None)]) == 1
            created = await app.items.create(module.Items(id="c", title="cheese", list_id=LIST))
            assert created.done is None
            await results_until(
                [("a", "apples", True), ("b", "bread", None), ("c", "cheese", None)]
            )
        # raw SQL on a local table the client does not sync: told by raw_execute
        await client.conn.execute("CREATE TABLE local_notes (id TEXT PRIMARY KEY)")
        async with app.live_raw(
            "SELECT count(*) AS n FROM local_notes", tables=["local_notes"]
        ) as notes:
            assert await notes.__anext__() == [{"n": 0}]
            await app.raw_execute(
                "INSERT INTO local_notes VALUES (?)", ["x"], tables=["local_notes"]
            )
            with trio.fail_after(5):
                assert await notes.__anext__() == [{"n": 1}]
        expected = [("a", True), ("b", None), ("c", None)]
        with trio.fail_after(15):
            while await pg_rows(db, "SELECT id, done FROM items ORDER BY id") != expected:  # noqa: ASYNC110 - Postgres state
                await trio.sleep(0.05)
