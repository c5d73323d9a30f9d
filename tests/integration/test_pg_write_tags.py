"""Tags kept by the triggers of electrified tables (§6): writes made in Postgres, client writes
(replica role), and the fk_chain_touch messages of referenced records (§2, §8)."""

from __future__ import annotations

import datetime as dt
import json
import struct
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from _databases import fresh_database
from electric_trio.ddlx import install_electric_schema, prepare_session
from electric_trio.pg import Connection, PgError, connect

Tag = tuple[dt.datetime, str | None]

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def at(ms: int) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=ms)


@pytest.fixture
async def conn(pg_server: Any) -> AsyncIterator[Connection]:
    """A connection to a fresh database with the electric schema and table ``items``."""
    async with fresh_database(pg_server, "ddlx") as url, await connect(url) as c:
        await install_electric_schema(c)
        await c.execute(
            "CREATE TABLE items (id text PRIMARY KEY, a text, b int4);"
            "CALL electric.electrify('items')"
        )
        yield c


TAG_PARTS = "ARRAY(SELECT ROW((t).timestamp, (t).source_id) FROM unnest({}) AS t)"


async def shadow(conn: Connection, table: str = "items", **pk: Any) -> dict[str, Any] | None:
    """The shadow row of ``table`` with the given key, tags as (timestamp, source) tuples."""
    columns = await conn.fetch(
        "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        f"electric.shadow__public__{table}",
    )
    select = []
    for name, type_ in columns:
        if type_ == "electric.tag":
            select.append(f'("{name}").timestamp, ("{name}").source_id')
        elif type_ == "electric.tag[]":
            select.append(
                f"(SELECT array_agg(format('%s|%s', (t).timestamp, (t).source_id))"
                f' FROM unnest("{name}") AS t)'
            )
        else:
            select.append(f'"{name}"')
    where = " AND ".join(f'"{k}" = ${i}' for i, k in enumerate(pk, 1))
    row = await conn.fetchrow(
        f"SELECT {', '.join(select)} FROM electric.shadow__public__{table} WHERE {where}",
        *pk.values(),
    )
    if row is None:
        return None
    values = iter(row)
    result: dict[str, Any] = {}
    for name, type_ in columns:
        if type_ == "electric.tag":
            ts, source = next(values), next(values)
            result[name] = None if ts is None else (ts, source)
        else:
            result[name] = next(values)
    return result


async def tx_time(conn: Connection, sql: str) -> dt.datetime:
    """Runs ``sql`` in a transaction; returns the transaction's CURRENT_TIMESTAMP(3)."""
    await conn.execute("BEGIN")
    # as a number: the session's DateStyle may be one the client does not read
    ms = await conn.fetchval("SELECT (extract(epoch FROM CURRENT_TIMESTAMP(3)) * 1000)::int8")
    await conn.execute(sql)
    await conn.execute("COMMIT")
    return dt.datetime.fromtimestamp(0, dt.UTC) + dt.timedelta(milliseconds=ms)


def tags_text(*tags: Tag) -> list[str]:
    """How shadow() renders a tag array."""
    out = []
    for ts, source in tags:
        text = ts.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".") + "+00"
        out.append(f"{text}|{source or ''}")
    return out


# ---- writes made in Postgres -------------------------------------------------------------


async def test_insert_tags_every_column_with_the_transaction_time(conn: Connection) -> None:
    t = await tx_time(conn, "INSERT INTO items VALUES ('x', 'a', 1)")
    xid = await conn.fetchval("SELECT _last_modified FROM electric.shadow__public__items")
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tag"] == (t, None)  # NULL source: Postgres (postgres_1 on the wire)
    assert row["_tags"] == tags_text((t, None))
    assert row["_tag_a"] == row["_tag_b"] == (t, None)
    assert row["_is_a_delete_operation"] is False
    assert row["_resolved"] is False  # a fresh shadow row is not revisited at commit
    assert row["__reordered_a"] is None
    assert isinstance(xid, int)


async def test_update_tags_the_changed_columns(conn: Connection) -> None:
    t1 = await tx_time(conn, "INSERT INTO items VALUES ('x', 'a', 1)")
    t2 = await tx_time(conn, "UPDATE items SET b = 2")
    assert t2 > t1
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tag"] == (t2, None)
    assert row["_tags"] == tags_text((t2, None))
    assert row["_tag_a"] == (t1, None)
    assert row["_tag_b"] == (t2, None)
    assert row["_resolved"] is True
    assert row["_modified_columns_bit_mask"] == []

    # two updates of one row in one transaction: the union of the changed columns
    t3 = await tx_time(conn, "UPDATE items SET b = 3; UPDATE items SET a = 'c'")
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tag_a"] == row["_tag_b"] == row["_tag"] == (t3, None)


async def test_delete_clears_the_tags_and_fills_the_tombstone(conn: Connection) -> None:
    await tx_time(conn, "INSERT INTO items VALUES ('x', 'a', 1)")
    t2 = await tx_time(conn, "DELETE FROM items")
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tag"] == (t2, None)
    assert row["_tags"] is None or row["_tags"] == []
    assert row["_is_a_delete_operation"] is True
    assert row["_resolved"] is True
    assert await conn.fetch("SELECT * FROM electric.tombstone__public__items") == [("x", "a", 1)]

    # and a re-insert brings the row's tags back
    t3 = await tx_time(conn, "INSERT INTO items VALUES ('x', 'b', 2)")
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tags"] == tags_text((t3, None))
    assert row["_tag_a"] == row["_tag_b"] == (t3, None)
    assert row["_is_a_delete_operation"] is False


async def test_rows_from_before_electrification(conn: Connection) -> None:
    await conn.execute(
        "CREATE TABLE old (id int8 PRIMARY KEY, v text); INSERT INTO old VALUES (1, 'a'), (2, 'b');"
        "CALL electric.electrify('old');"
        "DELETE FROM old WHERE id = 1"
    )
    assert await conn.fetchval("SELECT count(*) FROM electric.shadow__public__old") == 0
    assert await conn.fetch("SELECT * FROM electric.tombstone__public__old") == [(1, "a")]
    t = await tx_time(conn, "UPDATE old SET v = 'c' WHERE id = 2")
    row = await shadow(conn, "old", id=2)
    assert row is not None
    assert row["_tags"] == tags_text((t, None))


async def test_one_transaction_one_tag(conn: Connection) -> None:
    t = await tx_time(
        conn,
        "INSERT INTO items VALUES ('x', 'a', 1), ('y', 'b', 2);"
        "SELECT pg_sleep(0.01);"
        "INSERT INTO items VALUES ('z', 'c', 3)",
    )
    for key in "xyz":
        row = await shadow(conn, id=key)
        assert row is not None
        assert row["_tag"] == (t, None)


async def test_session_settings_do_not_matter(conn: Connection) -> None:
    await conn.execute("SET DateStyle = 'SQL, MDY'; SET TimeZone = 'America/New_York'")
    await conn.execute("INSERT INTO items VALUES ('x', 'a', 1)")
    await conn.execute("SET DateStyle = 'German'")
    t = await tx_time(conn, "UPDATE items SET a = 'b'")
    await prepare_session(conn)
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tag_a"] == (t, None)


# ---- client writes (direct_writes: electric.session_replication_role = replica) -----------


def literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def tag_literal(tag: Tag) -> str:
    ts, source = tag
    return f'("{ts.isoformat()}",{source or ""})'


async def client_write(
    conn: Connection,
    row: dict[str, Any],
    tag: Tag,
    *,
    observed: Sequence[Tag] = (),
    mask: Sequence[bool] | None = None,
    delete: bool = False,
    table: str = "items",
    builtin_role: bool = False,
) -> None:
    """One client change as the direct writer applies it: the main row, then the shadow row."""
    pk = [k for k in row if k == "id"]
    non_pk = [k for k in row if k != "id"]
    mask = [not delete] * len(non_pk) if mask is None else mask
    columns = ", ".join(row)
    values = ", ".join(literal(v) for v in row.values())
    observed_literal = "{" + ",".join(json.dumps(tag_literal(t)) for t in observed) + "}"
    mask_literal = "{" + ",".join("t" if b else "f" for b in mask) + "}"
    role = (
        "SET LOCAL session_replication_role = replica"
        if builtin_role
        else "SET LOCAL electric.session_replication_role = replica"
    )
    await conn.execute(
        f"BEGIN; {role};"
        f"INSERT INTO {table} ({columns}) VALUES ({values});"
        f"INSERT INTO electric.shadow__public__{table}"
        f" ({', '.join(pk)}, _tag, _is_a_delete_operation, _observed_tags,"
        "  _modified_columns_bit_mask)"
        f" VALUES ({', '.join(literal(row[k]) for k in pk)}, {literal(tag_literal(tag))},"
        f" {literal(delete)}, {literal(observed_literal)}, {literal(mask_literal)});"
        "COMMIT"
    )


async def items(conn: Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await conn.fetch("SELECT * FROM items ORDER BY id")]


C1: Tag = (at(100), "client1")
C2: Tag = (at(200), "client2")


async def test_client_insert(conn: Connection) -> None:
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C1)
    assert await items(conn) == [("x", "a1", 1)]
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tag"] == C1
    assert row["_tags"] == tags_text(C1)
    assert row["_tag_a"] == row["_tag_b"] == C1
    assert row["_currently_reordering"] is None
    assert row["__reordered_a"] is None
    assert row["__reordered_b"] is None
    assert row["_observed_tags"] is None


async def test_client_insert_through_the_builtin_replica_role(conn: Connection) -> None:
    # logical_replication mode: Postgres's apply worker runs with session_replication_role
    # = replica, so only the ALWAYS triggers fire
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C1, builtin_role=True)
    assert await items(conn) == [("x", "a1", 1)]
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tags"] == tags_text(C1)


async def test_concurrent_updates_of_different_columns_merge(conn: Connection) -> None:
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C1)
    # two clients both saw C1; one changes a, the other b
    await client_write(conn, {"id": "x", "a": "a2", "b": 1}, C2, observed=[C1], mask=[True, False])
    c3 = (at(150), "client3")
    await client_write(conn, {"id": "x", "a": "a1", "b": 3}, c3, observed=[C1], mask=[False, True])
    assert await items(conn) == [("x", "a2", 3)]
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tags"] == tags_text(c3, C2)
    assert row["_tag_a"] == C2
    assert row["_tag_b"] == c3


async def test_an_update_in_the_past_loses_per_column(conn: Connection) -> None:
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C2)
    await client_write(conn, {"id": "x", "a": "old", "b": 9}, C1, observed=[], mask=[True, True])
    assert await items(conn) == [("x", "a1", 1)]


async def test_delete_removes_only_observed_tags(conn: Connection) -> None:
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C1)
    await client_write(conn, {"id": "x", "a": "a2", "b": 1}, C2, observed=[C1], mask=[True, False])
    # a delete that saw only C1: the row stays (add-wins), with C2's tag
    await client_write(
        conn, {"id": "x", "a": "a1", "b": 1}, (at(300), "c3"), observed=[C1], delete=True
    )
    assert await items(conn) == [("x", "a2", 1)]
    row = await shadow(conn, id="x")
    assert row is not None
    assert row["_tags"] == tags_text(C2)
    # a delete that saw C2 too removes it
    await client_write(
        conn, {"id": "x", "a": "a2", "b": 1}, (at(400), "c3"), observed=[C2], delete=True
    )
    assert await items(conn) == []
    assert await conn.fetch("SELECT * FROM electric.tombstone__public__items") == [("x", "a2", 1)]


async def test_update_that_missed_a_delete_resurrects_the_row(conn: Connection) -> None:
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C1)
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C2, observed=[C1], delete=True)
    assert await items(conn) == []
    # a concurrent update of b that had seen only C1: columns it did not write come back from
    # the tombstone
    await client_write(
        conn, {"id": "x", "a": None, "b": 5}, (at(150), "c3"), observed=[C1], mask=[False, True]
    )
    assert await items(conn) == [("x", "a1", 5)]


async def test_compensation_recreates_a_deleted_parent(conn: Connection) -> None:
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C1)
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C2, observed=[C1], delete=True)
    # client3 inserted a child of x concurrently and sends a compensation for x: the key and
    # NULLs, no column modified
    await client_write(
        conn, {"id": "x", "a": None, "b": None}, (at(150), "c3"), observed=[C1], mask=[False, False]
    )
    assert await items(conn) == [("x", "a1", 1)]


async def test_postgres_write_beats_a_future_dated_client_write(conn: Connection) -> None:
    future = (dt.datetime(2999, 1, 1, tzinfo=dt.UTC), "client1")
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, future)
    await client_write(conn, {"id": "y", "a": "a1", "b": 1}, C1)
    await tx_time(
        conn, "UPDATE items SET a = 'pg' WHERE id = 'x'; UPDATE items SET b = 2 WHERE id = 'y'"
    )
    x = await shadow(conn, id="x")
    y = await shadow(conn, id="y")
    assert x is not None
    assert y is not None
    # the column gets the future time with Postgres's (greater) NULL source
    assert x["_tag_a"] == (future[0], None)
    assert x["_tags"] == tags_text((future[0], None))
    # one tag for the whole transaction, greater than every tag it overwrote
    assert y["_tag_b"] == (future[0], None)
    # and a later client write that saw it cannot undo it
    await client_write(
        conn,
        {"id": "x", "a": "late", "b": 1},
        (at(500), "client2"),
        observed=[],
        mask=[True, False],
    )
    assert (await items(conn))[0] == ("x", "pg", 1)


async def test_postgres_delete_then_client_insert_that_did_not_see_it(conn: Connection) -> None:
    await client_write(conn, {"id": "x", "a": "a1", "b": 1}, C1)
    await tx_time(conn, "DELETE FROM items")
    assert await items(conn) == []
    # the Postgres delete removed every tag it saw; a client write that saw none of it wins
    await client_write(
        conn, {"id": "x", "a": None, "b": 7}, (at(999_999_999), "c2"), mask=[False, True]
    )
    assert await items(conn) == [("x", "a1", 7)]


# ---- referenced records: electric.fk_chain_touch ------------------------------------------


@pytest.fixture
async def tree(conn: Connection) -> Connection:
    await conn.execute(
        "CREATE TABLE g (id int8 PRIMARY KEY, ts timestamptz);"
        "CREATE TABLE p (id int8 PRIMARY KEY, g_id int8 REFERENCES g (id), name text);"
        "CREATE TABLE c (id int8 PRIMARY KEY, p_id int8 REFERENCES p (id));"
        "CALL electric.electrify('g'); CALL electric.electrify('p'); CALL electric.electrify('c');"
        "INSERT INTO g VALUES (1, '2024-05-06 07:08:09.123+00');"
        "INSERT INTO p VALUES (10, 1, 'parent'), (11, NULL, 'orphan')"
    )
    # Logical decoding reads flushed WAL only: commits must flush (the test server's
    # asynchronous commit would hide the last transactions).
    await conn.execute(
        "SET synchronous_commit = on;"
        "SELECT pg_create_logical_replication_slot('fk_touch', 'pgoutput')"
    )
    return conn


async def touches(conn: Connection) -> list[dict[str, Any]]:
    """The fk_chain_touch messages decoded from the slot since the last call."""
    rows = await conn.fetch(
        "SELECT data FROM pg_logical_slot_get_binary_changes('fk_touch', NULL, NULL,"
        " 'proto_version', '1', 'publication_names', 'electric_publication', 'messages', 'true')"
    )
    found = []
    for (data,) in rows:
        if data[:1] != b"M":
            continue
        flags = data[1]
        prefix_end = data.index(b"\x00", 10)
        prefix = data[10:prefix_end].decode()
        (length,) = struct.unpack_from(">i", data, prefix_end + 1)
        content = data[prefix_end + 5 : prefix_end + 5 + length]
        assert flags == 1  # transactional
        assert prefix == "electric.fk_chain_touch"
        found.append(json.loads(content))
    return found


async def test_child_insert_reports_its_parents(tree: Connection) -> None:
    conn = tree
    g_tags = await conn.fetchval("SELECT _tags::text FROM electric.shadow__public__g")
    p_tags = await conn.fetchval("SELECT _tags::text FROM electric.shadow__public__p WHERE id = 10")
    await touches(conn)
    await conn.execute("SET DateStyle = 'SQL, MDY'; SET TimeZone = 'Asia/Tokyo'")
    await conn.execute("INSERT INTO c VALUES (100, 10)")
    await prepare_session(conn)
    assert await touches(conn) == [
        {
            "schema": "public",
            "table": "p",
            "tags": p_tags,
            "data": {"id": "10", "g_id": "1", "name": "parent"},
            "pk": ["10"],
        },
        {
            "schema": "public",
            "table": "g",
            "tags": g_tags,
            # rendered with Electric's settings, whatever the writer's session uses
            "data": {"id": "1", "ts": "2024-05-06 07:08:09.123+00"},
            "pk": ["1"],
        },
    ]


async def test_each_parent_once_per_transaction(tree: Connection) -> None:
    conn = tree
    await touches(conn)
    await conn.execute(
        "BEGIN; INSERT INTO c VALUES (100, 10); INSERT INTO c VALUES (101, 10), (102, 10);"
        "UPDATE c SET p_id = 10; COMMIT"
    )
    assert [(m["table"], m["pk"]) for m in await touches(conn)] == [("p", ["10"]), ("g", ["1"])]
    # a new transaction reports them again
    await conn.execute("INSERT INTO c VALUES (103, 10)")
    assert [(m["table"], m["pk"]) for m in await touches(conn)] == [("p", ["10"]), ("g", ["1"])]


async def test_rows_written_by_the_transaction_are_not_reported(tree: Connection) -> None:
    conn = tree
    await touches(conn)
    await conn.execute(
        "BEGIN; INSERT INTO p VALUES (12, 1, 'new'); INSERT INTO c VALUES (100, 12); COMMIT"
    )
    # p 12 is in the transaction already; its parent g 1 is reported (by p's own trigger)
    assert [(m["table"], m["pk"]) for m in await touches(conn)] == [("g", ["1"])]
    await conn.execute("INSERT INTO c VALUES (101, NULL), (102, 11)")
    assert [(m["table"], m["pk"]) for m in await touches(conn)] == [("p", ["11"])]


async def test_parent_without_shadow_row_reports_the_epoch_tag(tree: Connection) -> None:
    conn = tree
    await conn.execute(
        "CREATE TABLE q (id int8 PRIMARY KEY); INSERT INTO q VALUES (1);"
        "CREATE TABLE r (id int8 PRIMARY KEY, q_id int8 REFERENCES q (id));"
        "CALL electric.electrify('q'); CALL electric.electrify('r')"
    )
    await touches(conn)
    await conn.execute("INSERT INTO r VALUES (1, 1)")
    [message] = await touches(conn)
    assert message["table"] == "q"
    assert message["tags"] == '{"(\\"1970-01-01 00:00:00+00\\",)"}'


async def test_client_write_of_a_child_reports_its_parents(tree: Connection) -> None:
    conn = tree
    await touches(conn)
    await conn.execute(
        "BEGIN; SET LOCAL electric.session_replication_role = replica;"
        "INSERT INTO c (id, p_id) VALUES (100, 10);"
        "INSERT INTO electric.shadow__public__c (id, _tag, _is_a_delete_operation,"
        " _observed_tags, _modified_columns_bit_mask)"
        " VALUES (100, '(\"2024-01-01 00:00:00+00\",client1)', false, '{}', '{t}');"
        "COMMIT"
    )
    assert await conn.fetch("SELECT * FROM c") == [(100, 10)]
    assert [(m["table"], m["pk"]) for m in await touches(conn)] == [("p", ["10"]), ("g", ["1"])]


async def test_writes_by_a_role_without_rights_on_the_electric_schema(
    tree: Connection, pg_url: str
) -> None:
    conn = tree
    role = f"ddlx_app_{uuid.uuid4().hex[:8]}"
    database = await conn.fetchval("SELECT current_database()")
    await conn.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD 'pw';"
        f" GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"
    )
    try:
        base = pg_url.rsplit("/", 1)[0].split("@", 1)[1]
        async with await connect(f"postgresql://{role}:pw@{base}/{database}") as app:
            await app.execute("SET synchronous_commit = on; INSERT INTO c VALUES (100, 10)")
            await app.execute("UPDATE p SET name = 'renamed' WHERE id = 10; DELETE FROM c")
            with pytest.raises(PgError) as info:
                await app.execute("SELECT * FROM electric.shadow__public__p")
            assert info.value.sqlstate == "42501"
        # the insert reports p and g; the update of p (a row with a foreign key) reports g
        assert [(m["table"], m["pk"]) for m in await touches(conn)] == [
            ("p", ["10"]),
            ("g", ["1"]),
            ("g", ["1"]),
        ]
        row = await shadow(conn, "p", id=10)
        assert row is not None
        assert row["_tag_name"] is not None
        assert await conn.fetch("SELECT * FROM electric.tombstone__public__c") == [(100, 10)]
    finally:
        await conn.execute(
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; DROP ROLE {role}"
        )
