"""The Postgres client (``electric_trio.pg``) against psycopg 3's C implementation.

Two figures, both in rows per second, on a 6-column table (int8, int4, text, float8, bool,
timestamptz) read whole by both clients over the same server in the same run:

* fetch: ``await conn.fetch(SELECT)`` against ``cursor.execute(SELECT).fetchall()``; both run
  the same query text through the simple protocol and decode every value into Python objects;
* COPY: ``COPY table TO STDOUT`` in text format, read to the end by both, touching every row
  (its length is summed; both totals must match).

Each side gets an untimed warm-up run per figure, then ``--repeat`` timed runs alternating which
side goes first; the best run of each side is the figure.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
import trio

from electric_trio.pg import Connection, connect

from ._harness import (
    Measurement,
    Progress,
    Report,
    command_line,
    machine_facts,
    parse_args,
    postgres,
    write_section,
)

NAME = "pgwire"
TARGET = 0.8
TABLE = "electric_bench_pgwire"
SELECT = f"SELECT id, n, label, x, flag, ts FROM {TABLE}"
COPY = f"COPY {TABLE} TO STDOUT (FORMAT text)"
Timing = tuple[float, int, int]
"""What a timed operation returns: seconds, rows read, bytes of COPY data read (0 for fetch)."""
FIGURES = {"fetch": "fetch all rows, decoded", "copy": "COPY out, text format"}

DESCRIPTION = """\
{rows:,} rows of a 6-column table (int8, int4, text of 32 characters, float8, bool,
timestamptz). *fetch*: `await conn.fetch(q)` against psycopg's `cursor.execute(q).fetchall()`,
the same query text, both over the simple protocol in text format, every value decoded to a
Python object. *COPY*: `COPY ... TO STDOUT (FORMAT text)` read to the end, ours by
`copy.batches()`, psycopg by `for block in cursor.copy(...)`, each summing the length of every
row. Before timing, both clients must decode a 1,000-row sample to equal values and receive the
same COPY bytes; every run must read all the rows, and both sides the same number of COPY
bytes. A warm-up run per side, then best of {repeat} runs per side, alternating which side goes
first. Client and server share the machine.
"""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    return parse_args(
        argv,
        prog="python -m benches pgwire",
        description="Fetch and COPY out a 6-column table: electric_trio.pg against psycopg 3.",
        rows_help="rows in the table",
        quick_rows=200_000,
    )


def _psycopg_impl() -> str:
    impl = psycopg.pq.__impl__
    if impl not in ("binary", "c"):
        raise SystemExit(
            f"psycopg uses its {impl!r} implementation; the peer must be the C one: "
            "pip install 'psycopg[binary]'"
        )
    return impl


def _create_table(peer: psycopg.Connection[Any], rows: int) -> None:
    peer.execute(f"DROP TABLE IF EXISTS {TABLE}")
    peer.execute(
        f"""CREATE TABLE {TABLE} (
            id int8 PRIMARY KEY,
            n int4 NOT NULL,
            label text NOT NULL,
            x float8 NOT NULL,
            flag bool NOT NULL,
            ts timestamptz NOT NULL
        )"""
    )
    peer.execute(
        f"""INSERT INTO {TABLE}
            SELECT i, (i * 7919) %% 1000003, md5(i::text), i / 7.0, i %% 3 = 0,
                   timestamptz '2024-01-01 00:00:00+00' + i * interval '1.5 second'
            FROM generate_series(1::int8, %s::int8) AS i""",
        (rows,),
    )
    # Set hint bits and the visibility map now, so that no timed read writes pages.
    peer.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")


def _scalar(peer: psycopg.Connection[Any], sql: str) -> Any:
    row = peer.execute(sql).fetchone()
    assert row is not None
    return row[0]


# -- the four timed operations ----------------------------------------------------------------


async def _ours_fetch(conn: Connection) -> Timing:
    start = time.perf_counter()
    rows = await conn.fetch(SELECT)
    return time.perf_counter() - start, len(rows), 0


def _peer_fetch(peer: psycopg.Connection[Any]) -> Timing:
    with peer.cursor() as cur:
        start = time.perf_counter()
        rows = cur.execute(SELECT).fetchall()
        return time.perf_counter() - start, len(rows), 0


async def _ours_copy(conn: Connection) -> Timing:
    rows = size = 0
    start = time.perf_counter()
    async with conn.copy_out(COPY) as copy:
        async for batch in copy.batches():
            rows += len(batch)
            for row in batch:
                size += len(row)
    return time.perf_counter() - start, rows, size


def _peer_copy(peer: psycopg.Connection[Any]) -> Timing:
    rows = size = 0
    with peer.cursor() as cur:
        start = time.perf_counter()
        with cur.copy(COPY) as copy:
            for block in copy:
                rows += 1
                size += len(block)
        return time.perf_counter() - start, rows, size


async def _check_same_values(conn: Connection, peer: psycopg.Connection[Any]) -> None:
    """Both clients decode a sample to equal values and receive the same COPY bytes."""
    sample = f"{SELECT} ORDER BY id LIMIT 1000"
    ours = await conn.fetch(sample)
    theirs = peer.execute(sample).fetchall()
    if ours != theirs:
        diff = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
        raise AssertionError(f"row {diff} differs: ours {ours[diff]!r}, psycopg {theirs[diff]!r}")
    copy_sample = f"COPY ({sample}) TO STDOUT (FORMAT text)"
    async with conn.copy_out(copy_sample) as copy:
        our_bytes = b"".join(await copy.read_all())
    with peer.cursor() as cur, cur.copy(copy_sample) as pcopy:
        their_bytes = b"".join(bytes(block) for block in pcopy)
    if our_bytes != their_bytes:
        raise AssertionError("the COPY sample differs between the clients")


async def _measure(
    url: str, peer: psycopg.Connection[Any], args: argparse.Namespace, progress: Progress
) -> tuple[list[Measurement], dict[str, str]]:
    # psycopg runs synchronously inside this Trio task: nothing else runs meanwhile, so each
    # side has the process to itself while it is timed.
    conn = await connect(url)
    async with conn:
        await _check_same_values(conn, peer)
        ssl_query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        tls = {"ours": await conn.fetchval(ssl_query), "psycopg": _scalar(peer, ssl_query)}

        async def ours_fetch() -> Timing:
            return await _ours_fetch(conn)

        async def ours_copy() -> Timing:
            return await _ours_copy(conn)

        async def peer_fetch() -> Timing:
            return _peer_fetch(peer)

        async def peer_copy() -> Timing:
            return _peer_copy(peer)

        sides: dict[str, dict[str, Callable[[], Awaitable[Timing]]]] = {
            "fetch": {"ours": ours_fetch, "psycopg": peer_fetch},
            "copy": {"ours": ours_copy, "psycopg": peer_copy},
        }
        rates: dict[tuple[str, str], list[float]] = {}
        sizes: dict[str, set[int]] = {}

        async def run(figure: str, side: str, *, timed: bool) -> float:
            gc.collect()
            seconds, rows, size = await sides[figure][side]()
            if rows != args.rows:
                raise AssertionError(f"{figure}/{side} read {rows} rows, not {args.rows}")
            sizes.setdefault(figure, set()).add(size)
            rate = rows / seconds
            if timed:
                rates.setdefault((figure, side), []).append(rate)
            return rate

        for figure in FIGURES:
            for side in ("ours", "psycopg"):
                rate = await run(figure, side, timed=False)
                progress.step(f"warm-up {figure} {side}: {rate:,.0f} rows/s")
        for i in range(args.repeat):
            for figure in FIGURES:
                order = ("ours", "psycopg") if i % 2 == 0 else ("psycopg", "ours")
                got = {side: await run(figure, side, timed=True) for side in order}
                progress.step(
                    f"run {i + 1}/{args.repeat} {figure}: ours {got['ours']:,.0f} rows/s, "
                    f"psycopg {got['psycopg']:,.0f} rows/s ({', '.join(order)})"
                )
    for figure, seen in sizes.items():
        if len(seen) != 1:
            raise AssertionError(f"{figure}: the clients read different byte counts {seen}")
    measurements = [
        Measurement(
            figure=label,
            unit="rows/s",
            ours=tuple(rates[figure, "ours"]),
            peer=tuple(rates[figure, "psycopg"]),
            target=TARGET,
        )
        for figure, label in FIGURES.items()
    ]
    return measurements, {side: "on" if on else "off" for side, on in tls.items()}


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    impl = _psycopg_impl()
    progress.step(f"peer: psycopg {psycopg.__version__}, implementation {impl!r}")
    with postgres(progress) as target:
        with psycopg.connect(target.url, autocommit=True) as peer:
            server_version = _scalar(peer, "SHOW server_version")
            progress.step(f"PostgreSQL {server_version}; creating {TABLE}, {args.rows:,} rows")
            _create_table(peer, args.rows)
            try:
                measurements, tls = trio.run(_measure, target.url, peer, args, progress)
            finally:
                peer.execute(f"DROP TABLE IF EXISTS {TABLE}")
    libpq = f"{psycopg.pq.version() // 10000}.{psycopg.pq.version() % 100}"
    facts |= {
        "PostgreSQL": f"{server_version} ({target.description})",
        "Peer": f"psycopg {psycopg.__version__}, pq implementation {impl!r}, libpq {libpq}",
        "TLS": f"ours {tls['ours']}, psycopg {tls['psycopg']}",
    }
    report = Report(
        name=NAME,
        title="electric_trio.pg against psycopg 3 (C)",
        description=DESCRIPTION.format(rows=args.rows, repeat=args.repeat),
        peer="psycopg",
        measurements=tuple(measurements),
        command=command_line(),
        settings=f"{args.rows:,} rows, best of {args.repeat} runs per side",
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--record writes it)")
    return 0 if report.passed else 1
