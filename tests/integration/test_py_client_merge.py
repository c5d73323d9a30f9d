"""The local store's merge of incoming transactions with pending local writes
(client-behaviour.md §5-§6), on SQLite alone: per-column last-writer-wins, add-wins against a
delete that did not observe a local write, GONE beats local state, echoes garbage-collect the
oplog, snapshots keep the observed tags."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from electric_trio.client._store import IncomingChange, IncomingTx, LocalStore
from electric_trio.client.schema import Column, DbSchema, ForeignKey, Migration, TableSchema
from electric_trio.client.triggers import triggers_for

ITEMS = TableSchema(
    "items",
    (Column("id", "text", False), Column("a", "text"), Column("b", "int8")),
    ("id",),
)
SCHEMA = DbSchema(
    tables={"items": ITEMS},
    migrations=(
        Migration(
            "1",
            ("CREATE TABLE items (id TEXT PRIMARY KEY, a TEXT, b INTEGER)", *triggers_for(ITEMS)),
        ),
    ),
)
PG = "postgres_1"


@pytest.fixture
def store() -> LocalStore:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    s = LocalStore(conn, SCHEMA, "memory")
    s.open("client-a")
    return s


def now_ms() -> int:
    return int(time.time() * 1000)


def tx(ts: int, *changes: IncomingChange, origin: str = PG, lsn: int = 1) -> IncomingTx:
    return IncomingTx(ts, str(lsn).encode(), origin, False, lsn, 0, list(changes))


def row(store: LocalStore, key: str) -> tuple[object, ...] | None:
    found: tuple[object, ...] | None = store.conn.execute(
        "SELECT id, a, b FROM items WHERE id = ?", (key,)
    ).fetchone()
    return found


def shadow(store: LocalStore, key: str) -> list[str] | None:
    found = store.conn.execute(
        "SELECT tags FROM _electric_shadow WHERE primaryKey = ?",
        (json.dumps({"id": key}, separators=(",", ":")),),
    ).fetchone()
    return None if found is None else list(json.loads(found[0]))


def test_remote_rows_apply_without_entering_the_oplog(store: LocalStore) -> None:
    t = now_ms()
    store.apply_transaction(
        tx(t, IncomingChange("items", "insert", {"id": "x", "a": "1", "b": 2**60}, None, ["p@1"]))
    )
    assert row(store, "x") == ("x", "1", 2**60)
    assert shadow(store, "x") == ["p@1"]
    assert store.conn.execute("SELECT count(*) FROM _electric_oplog").fetchone() == (0,)
    assert store.lsn() == b"1"


def test_concurrent_updates_merge_per_column(store: LocalStore) -> None:
    t = now_ms()
    base = {"id": "x", "a": "old", "b": 1}
    store.apply_transaction(tx(t - 10_000, IncomingChange("items", "insert", base, None, ["p@1"])))
    store.conn.execute("UPDATE items SET a = 'local' WHERE id = 'x'")
    store.snapshot()
    # an older remote write of column a loses, its write of column b wins
    store.apply_transaction(
        tx(
            t - 5_000,
            IncomingChange("items", "update", {"id": "x", "a": "remote", "b": 7}, base, ["p@2"]),
        )
    )
    assert row(store, "x") == ("x", "local", 7)
    tags = shadow(store, "x")
    assert tags is not None
    assert "p@2" in tags
    assert any(tag.startswith("client-a@") for tag in tags)
    # a newer remote write of a wins
    store.apply_transaction(
        tx(
            now_ms() + 60_000,
            IncomingChange(
                "items", "update", {"id": "x", "a": "newest", "b": 7}, {**base, "b": 7}, ["p@3"]
            ),
        )
    )
    assert row(store, "x") == ("x", "newest", 7)


def test_a_local_write_survives_a_delete_that_did_not_see_it(store: LocalStore) -> None:
    t = now_ms()
    base = {"id": "x", "a": "old", "b": 1}
    store.apply_transaction(tx(t - 10_000, IncomingChange("items", "insert", base, None, ["p@1"])))
    store.conn.execute("UPDATE items SET a = 'mine' WHERE id = 'x'")
    store.snapshot()
    # the remote delete observed only p@1
    store.apply_transaction(tx(t - 5_000, IncomingChange("items", "delete", None, base, [])))
    assert row(store, "x") == ("x", "mine", 1)
    # a delete that observed our write (the server's tags then carry no tag of ours) removes it
    echo_tag = f"client-a@{t}"
    store.conn.execute("DELETE FROM _electric_oplog")
    store.conn.execute(
        "UPDATE _electric_shadow SET tags = ? WHERE tablename = 'items'", (json.dumps([echo_tag]),)
    )
    store.apply_transaction(tx(t, IncomingChange("items", "delete", None, base, [])))
    assert row(store, "x") is None
    assert shadow(store, "x") is None


def test_gone_beats_local_changes(store: LocalStore) -> None:
    t = now_ms()
    store.apply_transaction(
        tx(
            t - 1000,
            IncomingChange("items", "insert", {"id": "x", "a": "1", "b": 1}, None, ["p@1"]),
        )
    )
    store.conn.execute("UPDATE items SET a = 'local' WHERE id = 'x'")
    store.snapshot()
    store.apply_transaction(tx(t, IncomingChange("items", "gone", None, {"id": "x"}, [])))
    assert row(store, "x") is None


def test_an_echo_garbage_collects_its_oplog_entries(store: LocalStore) -> None:
    store.conn.execute("INSERT INTO items VALUES ('y', 'a', 1)")
    store.snapshot()
    pending = store.pending(0)
    assert len(pending) == 1
    assert pending[0].changes[0].optype == "INSERT"
    ts = pending[0].commit_timestamp
    echo = tx(
        ts,
        IncomingChange("items", "insert", {"id": "y", "a": "a", "b": 1}, None, [f"client-a@{ts}"]),
        origin="client-a",
    )
    store.apply_transaction(echo)
    assert store.pending(0) == []
    assert row(store, "y") == ("y", "a", 1)
    assert shadow(store, "y") == [f"client-a@{ts}"]


def test_a_snapshot_records_the_tags_it_observed(store: LocalStore) -> None:
    t = now_ms()
    store.apply_transaction(
        tx(
            t - 1000,
            IncomingChange("items", "insert", {"id": "x", "a": "1", "b": 1}, None, ["p@1"]),
        )
    )
    store.conn.execute("UPDATE items SET b = 2 WHERE id = 'x'")
    store.conn.execute("INSERT INTO items VALUES ('z', NULL, NULL)")
    assert store.snapshot() == {"items"}
    [out] = store.pending(0)
    tag = f"client-a@{out.commit_timestamp}"
    update, insert = out.changes
    assert (update.optype, update.new, update.old) == (
        "UPDATE",
        {"id": "x", "a": "1", "b": "2"},
        {"id": "x", "a": "1", "b": "1"},
    )
    assert update.tags == [tag, "p@1"]
    assert (insert.optype, insert.tags) == ("INSERT", [])
    assert shadow(store, "z") == [tag]
    store.conn.execute("DELETE FROM items WHERE id = 'z'")
    store.snapshot()
    assert shadow(store, "z") is None


def test_downstream_writes_do_not_trip_the_apps_foreign_keys() -> None:
    """An app may turn foreign keys on; data from the service arrives in any order."""
    parents = TableSchema("parents", (Column("id", "text", False),), ("id",))
    kids = TableSchema(
        "kids",
        (Column("id", "text", False), Column("parent_id", "text")),
        ("id",),
        (ForeignKey(("parent_id",), "parents", ("id",)),),
    )
    ddl = (
        "CREATE TABLE parents (id TEXT PRIMARY KEY)",
        "CREATE TABLE kids (id TEXT PRIMARY KEY, parent_id TEXT REFERENCES parents (id))",
    )
    schema = DbSchema(
        tables={"parents": parents, "kids": kids},
        migrations=(Migration("1", (*ddl, *triggers_for(parents), *triggers_for(kids))),),
    )
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    s = LocalStore(conn, schema, "memory")
    s.open("client-a")
    s.apply_data([("kids", {"id": "k", "parent_id": "p"}, ["p@1"])], b"1")
    s.apply_data([("parents", {"id": "p"}, ["p@1"])], b"2")
    assert conn.execute("SELECT id, parent_id FROM kids").fetchall() == [("k", "p")]
    assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO kids VALUES ('k2', 'nobody')")
