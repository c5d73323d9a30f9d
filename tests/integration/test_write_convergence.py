"""Convergence under random interleavings (issue 5's property): Hypothesis draws a sequence of
writes on a few rows by two official clients (electric-sql 0.12.1 in Node, each sometimes
offline) and by Postgres itself; once everyone is back online, both clients' local rows and
Postgres's rows must become equal. In each mode of ``test_client_writes``.

``CONVERGENCE_EXAMPLES`` (30) sets how many examples run per mode.

Starting a service and two Node clients takes seconds, so they are started once per mode, in a
Trio loop on a thread of their own, and each example (driven from Hypothesis's synchronous test
body through ``trio.from_thread``) works on rows of its own (ids prefixed by the example's
number)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_client_writes import ITEMS, migrate, mode, start_service

from _loop_thread import LoopHarness, run_on_thread
from electric_trio.pg import Connection, connect
from official_client import OfficialClient, describe_schema, open_official_client

__all__ = ["mode"]  # fixture used by name

pytestmark = pytest.mark.slow  # the PostgreSQL 15 pass leaves it out

Actor = Literal["a", "b", "pg"]
Column = Literal["title", "n"]


class Upsert(msgspec.Struct, frozen=True):
    actor: Actor
    row: int
    title: str
    n: int


class Update(msgspec.Struct, frozen=True):
    actor: Actor
    row: int
    column: Column
    value: str | int


class Delete(msgspec.Struct, frozen=True):
    actor: Actor
    row: int


class Offline(msgspec.Struct, frozen=True):
    client: Literal["a", "b"]


class Online(msgspec.Struct, frozen=True):
    client: Literal["a", "b"]


Op = Upsert | Update | Delete | Offline | Online

ROWS = 3
actors = st.sampled_from(["a", "b", "pg"])
rows = st.integers(0, ROWS - 1)
titles = st.sampled_from(["x", "y", "z"])
numbers = st.integers(0, 9)
ops = st.one_of(
    st.builds(Upsert, actors, rows, titles, numbers),
    st.builds(Update, actors, rows, st.just("title"), titles),
    st.builds(Update, actors, rows, st.just("n"), numbers),
    st.builds(Delete, actors, rows),
    st.builds(Offline, st.sampled_from(["a", "b"])),
    st.builds(Online, st.sampled_from(["a", "b"])),
)

Rows = list[tuple[str, str | None, int | None]]


class Harness(LoopHarness):
    """The service, Postgres and two official clients, in a Trio loop on a thread."""

    def __init__(self, database_url: str, mode: str, tmp: Path) -> None:
        super().__init__(database_url)
        self.mode = mode
        self.tmp = tmp
        self.examples = itertools.count()
        self.pg: Connection | None = None
        self.clients: dict[str, OfficialClient] = {}
        self.online = {"a": True, "b": True}

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            service = await start_service(nursery, self.url, self.mode, migrations_api=True)
            async with await connect(self.url) as pg:
                self.pg = pg
                await migrate(service, pg, *ITEMS)
                assert service.migrations is not None
                url = f"http://127.0.0.1:{service.http_port}"
                async with (
                    open_official_client("a") as a,
                    open_official_client("b") as b,
                ):
                    for name, client in (("a", a), ("b", b)):
                        await client.open(
                            db=self.tmp / f"{name}.db",
                            schema=describe_schema(service.migrations.schema),
                            migrations_url=url,
                            url=url,
                            user_id="alice",
                        )
                        await client.connect()
                        await client.sync("items", within=20)
                        self.clients[name] = client
                    self.started()
                    await trio.sleep_forever()

    def example(self, ops: list[Op]) -> tuple[Rows, Rows, Rows]:
        """Runs one example; returns the rows of Postgres, a and b once all is quiet."""
        return self.in_loop(self._example, f"e{next(self.examples)}_", ops)

    async def _example(self, prefix: str, ops: list[Op]) -> tuple[Rows, Rows, Rows]:
        assert self.pg is not None
        # every row starts in Postgres and at both clients, so updates and deletes bite
        for row in range(ROWS):
            await self.pg.execute("INSERT INTO items VALUES ($1, 'x', 0)", f"{prefix}{row}")
        await self._seen_by_both(f"{prefix}{ROWS - 1}")
        for op in ops:
            await self._apply(prefix, op)
        for name in ("a", "b"):
            await self._set_online(name, True)
        # Quiescence: each client's oplog empties once Postgres has echoed all its writes back;
        # a marker written in Postgres after that reaches each client after everything before.
        for name in ("a", "b"):
            await self.clients[name].wait_rows(
                "SELECT count(*) AS pending FROM _electric_oplog",
                until=lambda rows: rows == [{"pending": 0}],
                within=30,
            )
        await self.pg.execute("INSERT INTO items VALUES ($1, 'marker', 0)", f"{prefix}marker")
        await self._seen_by_both(f"{prefix}marker")
        return await self._rows(prefix)

    async def _seen_by_both(self, key: str) -> None:
        for name in ("a", "b"):
            await self.clients[name].wait_rows(
                "SELECT id FROM items WHERE id = ?", key, until=lambda rows: rows != [], within=30
            )

    async def _set_online(self, name: str, online: bool) -> None:
        if self.online[name] == online:
            return
        if online:
            await self.clients[name].connect()
        else:
            await self.clients[name].disconnect()
        self.online[name] = online

    async def _apply(self, prefix: str, op: Op) -> None:
        assert self.pg is not None
        match op:
            case Offline(client=name):
                await self._set_online(name, False)
            case Online(client=name):
                await self._set_online(name, True)
            case Upsert(actor="pg", row=row, title=title, n=n):
                await self.pg.execute(
                    "INSERT INTO items VALUES ($1, $2, $3)"
                    " ON CONFLICT (id) DO UPDATE SET title = excluded.title, n = excluded.n",
                    f"{prefix}{row}",
                    title,
                    n,
                )
            case Update(actor="pg", row=row, column=column, value=value):
                await self.pg.execute(
                    f"UPDATE items SET {column} = $2 WHERE id = $1", f"{prefix}{row}", value
                )
            case Delete(actor="pg", row=row):
                await self.pg.execute("DELETE FROM items WHERE id = $1", f"{prefix}{row}")
            case Upsert(actor=name, row=row, title=title, n=n):
                await self.clients[name].exec(
                    "INSERT INTO items (id, title, n) VALUES (?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET title = excluded.title, n = excluded.n",
                    f"{prefix}{row}",
                    title,
                    n,
                )
            case Update(actor=name, row=row, column=column, value=value):
                await self.clients[name].exec(
                    f"UPDATE items SET {column} = ? WHERE id = ?", value, f"{prefix}{row}"
                )
            case Delete(actor=name, row=row):
                await self.clients[name].exec("DELETE FROM items WHERE id = ?", f"{prefix}{row}")

    async def _rows(self, prefix: str) -> tuple[Rows, Rows, Rows]:
        assert self.pg is not None
        pattern = f"{prefix}_"  # the example's rows, not its marker
        pg = [
            (r[0], r[1], r[2])
            for r in await self.pg.fetch(
                "SELECT id, title, n FROM items WHERE id LIKE $1 ORDER BY id", pattern
            )
        ]
        local: list[Rows] = []
        for name in ("a", "b"):
            found = await self.clients[name].query(
                "SELECT id, title, n FROM items WHERE id LIKE ? ORDER BY id", pattern
            )
            local.append([(r["id"], r["title"], r["n"]) for r in found])
        return pg, local[0], local[1]


@pytest.fixture
def harness(pg_server: Any, mode: str, node_client_dir: Path, tmp_path: Path) -> Iterator[Harness]:
    yield from run_on_thread(
        pg_server, "et_conv", lambda url: Harness(url, mode, tmp_path), ready_within=180
    )


@settings(
    max_examples=int(os.environ.get("CONVERGENCE_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # the same examples on every CI run; CONVERGENCE_RANDOM=1 explores new ones
    derandomize=os.environ.get("CONVERGENCE_RANDOM") != "1",
)
@given(ops=st.lists(ops, min_size=1, max_size=10))
def test_clients_and_postgres_converge(harness: Harness, ops: list[Op]) -> None:
    pg, a, b = harness.example(ops)
    assert a == pg, f"client a differs from Postgres after {ops}"
    assert b == pg, f"client b differs from Postgres after {ops}"
