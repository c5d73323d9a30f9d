"""The native pgoutput decoder on live replication streams (protocol 2, streaming on)."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import math
from collections.abc import Awaitable, Callable

import pytest
import trio

from electric_trio._native import PgOutputDecoder, Transaction
from electric_trio.pg import ReplicationStream, connect

_slots = itertools.count()


async def _stream(
    url: str,
    publication: str,
    workload: Callable[[], Awaitable[None]],
    done: Callable[[list[Transaction]], bool],
    *,
    work_mem: str = "64kB",
) -> list[Transaction]:
    """Starts streaming from a new temporary slot, runs ``workload`` meanwhile, and decodes
    until ``done(transactions)``; keepalives are answered and commits acknowledged."""
    slot = f"et_pgoutput_{next(_slots)}"
    decoder = PgOutputDecoder()
    got: list[Transaction] = []
    async with await connect(url, replication="database") as repl:
        await repl.execute(f"SET logical_decoding_work_mem = '{work_mem}'")
        created = await repl.fetchrow(
            f'CREATE_REPLICATION_SLOT "{slot}" TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT'
        )
        assert created is not None
        stream: ReplicationStream = await repl.start_replication(
            f"START_REPLICATION SLOT \"{slot}\" LOGICAL {created[1]} (proto_version '2',"
            f" streaming 'on', messages 'true', publication_names '{publication}')"
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(workload)
            while not done(got):
                batch = await stream.receive_raw_batch()
                txns = decoder.decode(batch)
                got += txns
                if txns:
                    stream.acknowledge(txns[-1].end_lsn)
                if decoder.take_reply_requested() or txns:
                    await stream.send_status()
        assert not decoder.in_transaction
        await stream.stop()
    return got


async def test_streamed_transaction_with_savepoints(pg_url: str) -> None:
    async with await connect(pg_url) as c:
        await c.execute(
            "DROP TABLE IF EXISTS pgo_sp; DROP PUBLICATION IF EXISTS pgo_sp_pub;"
            "CREATE TABLE pgo_sp (id int8 PRIMARY KEY, v text);"
            "CREATE PUBLICATION pgo_sp_pub FOR TABLE pgo_sp"
        )

    async def workload() -> None:
        async with await connect(pg_url) as c:
            await c.execute(
                "BEGIN;"
                "INSERT INTO pgo_sp SELECT g, 'kept' FROM generate_series(1, 3000) g;"
                "SAVEPOINT a;"
                "INSERT INTO pgo_sp SELECT g, 'rolled back' FROM generate_series(3001, 4000) g;"
                "SAVEPOINT b;"
                "INSERT INTO pgo_sp SELECT g, 'rolled back' FROM generate_series(4001, 4500) g;"
                "ROLLBACK TO SAVEPOINT a;"
                "SAVEPOINT c;"
                "INSERT INTO pgo_sp SELECT g, 'released' FROM generate_series(5001, 6000) g;"
                "RELEASE SAVEPOINT c;"
                "UPDATE pgo_sp SET v = 'updated' WHERE id = 1;"
                "DELETE FROM pgo_sp WHERE id = 2;"
                "COMMIT"
            )
            await c.execute(
                "BEGIN; INSERT INTO pgo_sp SELECT g, 'aborted' FROM generate_series(7001, 9000) g;"
                "ROLLBACK"
            )
            await c.execute("INSERT INTO pgo_sp VALUES (10000, 'last')")

    with trio.fail_after(60):
        txns = await _stream(pg_url, "pgo_sp_pub", workload, lambda t: len(t) == 2)
    big, last = txns
    assert big.streamed
    changes = big.changes()
    inserted = [c[3]["id"] for c in changes if c[0] == "insert" and c[3] is not None]
    assert inserted == [*range(1, 3001), *range(5001, 6001)]
    assert changes[-2][0::3] == ("update", {"id": 1, "v": "updated"})
    assert changes[-1][0::4] == ("delete", {"id": 2})
    assert last.changes() == [("insert", "public", "pgo_sp", {"id": 10000, "v": "last"}, None)]
    assert last.commit_lsn > big.end_lsn


ROWS = 1_000_000
PAGE = 100_000


@pytest.mark.slow
async def test_a_million_row_transaction_decodes_completely(pg_url: str) -> None:
    table = "pgo_million"
    async with await connect(pg_url) as c:
        await c.execute(
            f"DROP TABLE IF EXISTS {table}; DROP PUBLICATION IF EXISTS pgo_million_pub;"
            f"CREATE TABLE {table} (id int8 PRIMARY KEY, n int4, label text, x float8,"
            " flag bool, ts timestamptz);"
            f"CREATE PUBLICATION pgo_million_pub FOR TABLE {table}"
        )

    async def workload() -> None:
        async with await connect(pg_url) as c:
            await c.execute(
                f"INSERT INTO {table} SELECT g, g % 1000, 'label ' || g, g * 0.5, g % 3 = 0,"
                " '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second'"
                f" FROM generate_series(1, {ROWS}) g"
            )

    with trio.fail_after(600):
        [txn] = await _stream(
            pg_url, "pgo_million_pub", workload, lambda t: len(t) == 1, work_mem="16MB"
        )
    assert txn.streamed
    assert len(txn) == ROWS
    assert txn.relations == [("public", table)]

    # Count and checksum every value, a page at a time; Postgres computes the same.
    count = id_sum = n_sum = label_len = flags = 0
    labels = hashlib.md5()
    x_sum = 0.0
    ts_min = ts_max = None
    for start in range(0, ROWS, PAGE):
        for kind, _, _, row, old in txn.changes(start, start + PAGE):
            assert kind == "insert"
            assert row is not None
            assert old is None
            count += 1
            id_sum += row["id"]
            n_sum += row["n"]
            label_len += len(row["label"])
            labels.update(row["label"].encode() + b",")
            x_sum += row["x"]
            flags += row["flag"]
            ts = row["ts"]
            ts_min = ts if ts_min is None else min(ts_min, ts)
            ts_max = ts if ts_max is None else max(ts_max, ts)
    async with await connect(pg_url) as c:
        expected = await c.fetchrow(
            "SELECT count(*), sum(id), sum(n), sum(length(label)), sum(x),"
            f" count(*) FILTER (WHERE flag), min(ts), max(ts),"
            f" md5(string_agg(label || ',', '' ORDER BY id)) FROM {table}"
        )
    assert expected is not None
    assert (count, id_sum, n_sum, label_len) == tuple(expected[:4])
    assert math.isclose(x_sum, expected[4], rel_tol=1e-12)
    assert (flags, ts_min, ts_max, labels.hexdigest()) == tuple(expected[5:])
    assert ts_max == datetime.datetime(2024, 1, 12, 13, 46, 40, tzinfo=datetime.UTC)
