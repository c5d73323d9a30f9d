"""The typed data access (``electric_trio.client.data``) on a real SQLite file: every operation,
the storage forms of client-behaviour.md §3, includes both ways and live queries."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from electric_trio.client.data import (
    JSON_NULL,
    Database,
    InvalidArgumentError,
    RecordNotFoundError,
    SqliteExecutor,
    Table,
)
from electric_trio.client.schema import Column, DbSchema, ForeignKey, Relation, TableSchema

DDL = """
CREATE TABLE "lists" ("id" TEXT NOT NULL PRIMARY KEY, "name" TEXT NOT NULL);
CREATE TABLE "items" (
  "id" TEXT NOT NULL PRIMARY KEY, "list_id" TEXT REFERENCES "lists" ("id"), "title" TEXT NOT NULL,
  "n" INTEGER, "big" INTEGER, "f4" REAL, "f8" REAL, "done" INTEGER, "due" TEXT, "at" TEXT,
  "at_tz" TEXT, "tm" TEXT, "meta" TEXT_JSON, "raw" BLOB, "u" TEXT);
"""

SCHEMA = DbSchema(
    tables={
        "lists": TableSchema(
            name="lists",
            columns=(Column("id", "text", False), Column("name", "text", False)),
            primary_key=("id",),
            relations=(Relation("items", "items", "id", "list_id", True, "ItemsToLists"),),
        ),
        "items": TableSchema(
            name="items",
            columns=(
                Column("id", "text", False),
                Column("list_id", "text"),
                Column("title", "text", False),
                Column("n", "int4"),
                Column("big", "int8"),
                Column("f4", "float4"),
                Column("f8", "float8"),
                Column("done", "bool"),
                Column("due", "date"),
                Column("at", "timestamp"),
                Column("at_tz", "timestamptz"),
                Column("tm", "time"),
                Column("meta", "jsonb"),
                Column("raw", "bytea"),
                Column("u", "uuid"),
            ),
            primary_key=("id",),
            foreign_keys=(ForeignKey(("list_id",), "lists", ("id",)),),
            relations=(Relation("lists", "lists", "list_id", "id", False, "ItemsToLists"),),
        ),
    }
)


class List(msgspec.Struct, kw_only=True):
    id: str
    name: str
    items: list[Item] | msgspec.UnsetType = msgspec.UNSET


class Item(msgspec.Struct, kw_only=True):
    id: str
    title: str
    list_id: str | None = None
    n: int | None = None
    big: int | None = None
    f4: float | None = None
    f8: float | None = None
    done: bool | None = None
    due: dt.date | None = None
    at: dt.datetime | None = None
    at_tz: dt.datetime | None = None
    tm: dt.time | None = None
    meta: Any = None
    raw: bytes | None = None
    u: str | None = None
    lists: List | msgspec.UnsetType | None = msgspec.UNSET


class Env(msgspec.Struct):
    db: Database
    executor: SqliteExecutor
    lists: Table[List]
    items: Table[Item]
    path: Path


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    path = tmp_path / "app.db"
    executor = SqliteExecutor(path)
    await executor.executescript(DDL)
    db = Database(executor, SCHEMA)
    yield Env(db, executor, Table(db, "lists", List), Table(db, "items", Item), path)
    executor.close()


def stored(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, params).fetchall()


async def seed(env: Env) -> None:
    await env.lists.create_many([{"id": "l1", "name": "home"}, {"id": "l2", "name": "work"}])
    await env.items.create_many(
        [
            {"id": "a", "title": "Apples", "n": 1, "list_id": "l1", "done": True},
            {"id": "b", "title": "bananas", "n": 2, "list_id": "l1", "done": False},
            {"id": "c", "title": "cherries 100%", "n": 3, "list_id": "l2"},
            {"id": "d", "title": "dates_x", "n": None},
        ]
    )


async def test_create_returns_the_row_and_stores_the_official_forms(env: Env) -> None:
    row = await env.items.create(
        Item(
            id="x",
            title="t",
            n=7,
            big=2**60,
            f4=0.1,
            f8=math.nan,
            done=True,
            due=dt.date(2024, 5, 1),
            at=dt.datetime(2024, 5, 1, 12, 30, 15, 123456),
            at_tz=dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            tm=dt.time(9, 5, 7, 250000),
            meta={"a": [1, None]},
            raw=b"\x00\xff",
            u="6f1c1b9e-7c1a-4bd5-9d6e-35b0a1e9ae01",
        )
    )
    assert stored(env.path, "SELECT * FROM items") == [
        ("x", None, "t", 7, 2**60, pytest.approx(0.10000000149011612, abs=0), "NaN", 1,
         "2024-05-01", "2024-05-01 12:30:15.123", "2024-05-01 12:00:00.000Z", "09:05:07.250",
         '{"a":[1,null]}', b"\x00\xff", "6f1c1b9e-7c1a-4bd5-9d6e-35b0a1e9ae01")
    ]  # fmt: skip
    assert row.f4 == 0.10000000149011612
    assert math.isnan(row.f8 or 0)
    assert row.done is True
    assert row.due == dt.date(2024, 5, 1)
    assert row.at == dt.datetime(2024, 5, 1, 12, 30, 15, 123000)
    assert row.at_tz == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert row.tm == dt.time(9, 5, 7, 250000)
    assert (row.meta, row.raw, row.big) == ({"a": [1, None]}, b"\x00\xff", 2**60)
    # JSON null is not SQL NULL
    json_null = await env.items.create({"id": "y", "title": "t", "meta": JSON_NULL})
    assert json_null.meta is JSON_NULL
    assert stored(env.path, "SELECT meta FROM items WHERE id = 'y'") == [("null",)]


async def test_values_written_by_sync_in_postgres_text_read_back(env: Env) -> None:
    await env.executor.execute(
        "INSERT INTO items (id, title, at_tz, done, tm) VALUES (?, ?, ?, ?, ?)",
        ["p", "t", "2024-01-02 03:04:05.678+02", 1, "10:11:12"],
    )
    row = await env.items.find_unique(where={"id": "p"})
    assert row is not None
    assert row.at_tz == dt.datetime(2024, 1, 2, 1, 4, 5, 678000, tzinfo=dt.UTC)
    assert (row.done, row.tm) == (True, dt.time(10, 11, 12))


async def test_find_with_filters(env: Env) -> None:
    await seed(env)

    async def ids(**kwargs: Any) -> list[str]:
        return [r.id for r in await env.items.find_many(order_by={"id": "asc"}, **kwargs)]

    assert await ids(where={"n": 2}) == ["b"]
    assert await ids(where={"n": None}) == ["d"]
    assert await ids(where={"n": {"gt": 1, "lte": 3}}) == ["b", "c"]
    assert await ids(where={"n": {"gte": 2}}) == ["b", "c"]
    assert await ids(where={"n": {"lt": 2}}) == ["a"]
    assert await ids(where={"n": {"not": 2}}) == ["a", "c"]
    assert await ids(where={"n": {"not": None}}) == ["a", "b", "c"]
    assert await ids(where={"id": {"in": ["a", "d", "zz"]}}) == ["a", "d"]
    assert await ids(where={"id": {"not_in": ["a", "d"]}}) == ["b", "c"]
    assert await ids(where={"id": {"in": []}}) == []
    assert await ids(where={"title": {"contains": "an"}}) == ["b"]
    # % and _ are literal characters, not wildcards
    assert await ids(where={"title": {"contains": "0%"}}) == ["c"]
    assert await ids(where={"title": {"ends_with": "_x"}}) == ["d"]
    assert await ids(where={"title": {"starts_with": "apple"}}) == ["a"]  # LIKE: ASCII case
    assert await ids(where={"done": True}) == ["a"]
    assert await ids(where={"OR": [{"n": 1}, {"id": "d"}]}) == ["a", "d"]
    assert await ids(where={"AND": [{"n": {"gt": 1}}, {"list_id": "l1"}]}) == ["b"]
    assert await ids(where={"NOT": {"list_id": "l1"}}) == ["c"]  # NULL list_id: unknown
    assert await ids(where={"OR": []}) == []
    # injection attempts stay values
    assert await ids(where={"title": "x' OR 1=1 --"}) == []


async def test_order_take_skip_first_unique_count(env: Env) -> None:
    await seed(env)
    rows = await env.items.find_many(order_by=[{"list_id": "desc"}, {"n": "asc"}])
    assert [r.id for r in rows] == ["c", "a", "b", "d"]
    page = await env.items.find_many(order_by={"id": "desc"}, take=2, skip=1)
    assert [r.id for r in page] == ["c", "b"]
    assert [r.id for r in await env.items.find_many(order_by={"id": "asc"}, skip=3)] == ["d"]
    first = await env.items.find_first(where={"list_id": "l1"}, order_by={"n": "desc"})
    assert first is not None
    assert first.id == "b"
    assert await env.items.find_first(where={"n": 99}) is None
    found = await env.items.find_unique(where={"id": "c"})
    assert found is not None
    assert found.title == "cherries 100%"
    assert await env.items.find_unique(where={"id": "zz"}) is None
    assert await env.items.count(where={"list_id": "l1"}) == 2
    with pytest.raises(InvalidArgumentError, match="primary key"):
        await env.items.find_unique(where={"title": "x"})
    with pytest.raises(InvalidArgumentError, match="no column 'nope'"):
        await env.items.find_many(where={"nope": 1})
    with pytest.raises(InvalidArgumentError, match="unknown filter 'like'"):
        await env.items.find_many(where={"title": {"like": "%"}})
    with pytest.raises(InvalidArgumentError, match="asc"):
        await env.items.find_many(order_by={"id": "sideways"})
    with pytest.raises(InvalidArgumentError, match=r"items\.n"):
        await env.items.find_many(where={"n": "three"})


async def test_include_both_directions(env: Env) -> None:
    await seed(env)
    lists = await env.lists.find_many(
        order_by={"id": "asc"},
        include={"items": {"order_by": {"n": "desc"}, "include": {"lists": True}}},
    )
    assert [(li.id, [i.id for i in li.items or []]) for li in lists] == [
        ("l1", ["b", "a"]),
        ("l2", ["c"]),
    ]
    nested = lists[0].items
    assert isinstance(nested, list)
    assert isinstance(nested[0].lists, List)
    assert nested[0].lists.name == "home"
    taken = await env.lists.find_unique(
        where={"id": "l1"}, include={"items": {"where": {"done": False}}}
    )
    assert taken is not None
    assert [i.id for i in taken.items or []] == ["b"]
    items = await env.items.find_many(order_by={"id": "asc"}, include={"lists": True})
    assert [None if i.lists is None else i.lists.id for i in items] == ["l1", "l1", "l2", None]  # type: ignore[union-attr]
    plain = await env.items.find_first()
    assert plain is not None
    assert plain.lists is msgspec.UNSET
    with pytest.raises(InvalidArgumentError, match="no relation"):
        await env.items.find_many(include={"tags": True})


async def test_update_upsert_delete(env: Env) -> None:
    await seed(env)
    updated = await env.items.update(where={"id": "a"}, data={"title": "A2", "done": False})
    assert (updated.title, updated.done) == ("A2", False)
    assert stored(env.path, "SELECT title, done FROM items WHERE id = 'a'") == [("A2", 0)]
    with pytest.raises(RecordNotFoundError):
        await env.items.update(where={"id": "nope"}, data={"title": "x"})
    assert await env.items.update_many(where={"list_id": "l1"}, data={"n": 10}) == 2
    assert stored(env.path, "SELECT count(*) FROM items WHERE n = 10") == [(2,)]
    made = await env.items.upsert(
        where={"id": "e"}, create={"id": "e", "title": "eggs"}, update={"title": "no"}
    )
    assert made.title == "eggs"
    again = await env.items.upsert(
        where={"id": "e"}, create={"id": "e", "title": "no"}, update={"title": "EGGS"}
    )
    assert again.title == "EGGS"
    deleted = await env.items.delete(where={"id": "e"})
    assert deleted.title == "EGGS"
    with pytest.raises(RecordNotFoundError):
        await env.items.delete(where={"id": "e"})
    assert await env.items.delete_many(where={"n": 10}) == 2
    assert await env.items.delete_many() == 2
    assert await env.items.count() == 0


async def test_create_many_skip_duplicates_and_errors(env: Env) -> None:
    await seed(env)
    count = await env.lists.create_many(
        [{"id": "l1", "name": "dup"}, {"id": "l3", "name": "new"}], skip_duplicates=True
    )
    assert count == 1
    with pytest.raises(sqlite3.IntegrityError):
        await env.lists.create_many([{"id": "l1", "name": "dup"}])
    with pytest.raises(InvalidArgumentError, match="no column 'colour'"):
        await env.lists.create({"id": "l9", "name": "x", "colour": "red"})
    with pytest.raises(InvalidArgumentError, match=r"lists\.name"):
        await env.lists.create({"id": "l9", "name": 5})
    # many rows in several statements (beyond the parameter budget of one)
    many = [{"id": f"m{i}", "name": str(i)} for i in range(1200)]
    assert await env.lists.create_many(many) == 1200


async def test_raw_and_untyped_tables(env: Env) -> None:
    await seed(env)
    rows = await env.db.raw("SELECT id, done FROM items WHERE n > ? ORDER BY id", [1])
    assert rows == [{"id": "b", "done": 0}, {"id": "c", "done": None}]
    generic = env.db.table("items")
    row = await generic.find_unique(where={"id": "a"})
    assert row is not None
    assert row.done is True
    assert await env.db.raw_execute("DELETE FROM items WHERE id = ?", ["d"]) == 1


async def test_live_query_yields_now_then_after_changes(env: Env) -> None:
    await seed(env)
    results: list[list[str]] = []
    async with env.lists.live_many(
        order_by={"id": "asc"}, include={"items": {"order_by": {"id": "asc"}}}
    ) as live:
        assert live.tables == {"lists", "items"}
        first = await live.__anext__()
        results.append([i.id for li in first for i in li.items or []])
        # a change to an included table
        await env.items.create({"id": "z", "title": "zed", "list_id": "l2"})
        second = await live.__anext__()
        results.append([i.id for li in second for i in li.items or []])
        # a burst of changes gives one result
        for i in range(5):
            await env.lists.create({"id": f"b{i}", "name": "burst"})
        third = await live.__anext__()
        assert len(third) == 7
        # a table the query does not read wakes nothing
        env.executor.notifier.notify({"other"})
        with trio.move_on_after(0.2) as scope:
            await live.__anext__()
        assert scope.cancelled_caught
        await env.db.raw_execute("UPDATE lists SET name = 'x' WHERE id = 'b0'")
        fourth = await live.__anext__()
        assert [li.name for li in fourth if li.id == "b0"] == ["x"]
    assert results == [["a", "b", "c"], ["a", "b", "c", "z"]]


async def test_live_raw_and_async_for(env: Env) -> None:
    await seed(env)
    seen: list[int] = []
    first = trio.Event()
    live = env.db.live_raw('SELECT count(*) AS n FROM "items"')
    assert live.tables == {"items"}
    async with trio.open_nursery() as nursery:

        async def consume() -> None:
            async for rows in live:
                seen.append(rows[0]["n"])
                first.set()
                if len(seen) == 2:
                    break
            await live.aclose()

        nursery.start_soon(consume)
        with trio.fail_after(5):
            await first.wait()
            await env.items.delete(where={"id": "a"})
    assert seen == [4, 3]


class ChannelNotifier:
    """A notifier whose subscriptions are bare memory channels (no ``receive_nowait`` on the
    iterator), as the Satellite client's are."""

    def __init__(self) -> None:
        self.sends: list[trio.MemorySendChannel[frozenset[str]]] = []

    def notify(self, tables: set[str]) -> None:
        for send in self.sends:
            send.send_nowait(frozenset(tables))

    def subscribe(self) -> AsyncIterator[frozenset[str]]:
        send, receive = trio.open_memory_channel[frozenset[str]](100)
        self.sends.append(send)

        class Stream:
            def __aiter__(self) -> Stream:
                return self

            async def __anext__(self) -> frozenset[str]:
                return await receive.receive()

        return Stream()


async def test_live_query_folds_a_burst_without_receive_nowait(tmp_path: Path) -> None:
    notifier = ChannelNotifier()
    executor = SqliteExecutor(tmp_path / "a.db", notifier)
    await executor.executescript(DDL)
    lists = Table(Database(executor, SCHEMA), "lists", List)
    async with lists.live_many() as live:
        assert await live.__anext__() == []
        for i in range(5):
            await lists.create({"id": f"l{i}", "name": "x"})
        with trio.fail_after(5):
            assert len(await live.__anext__()) == 5
        with trio.move_on_after(0.2) as scope:
            await live.__anext__()
        assert scope.cancelled_caught
    executor.close()
