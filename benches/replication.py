"""Decoding a captured pgoutput stream: the Rust decoder against pypgoutput and a struct decoder.

Part (a) of the replication benchmark. A stream of ``--rows`` inserts into a 6-column table
(int8, int4, text, float8, bool, timestamptz), in transactions of 10,000 rows, is captured once
from PostgreSQL (protocol version 1, so that every decoder can read it) as the CopyData
payloads our replication client received, in the batches it received them. Then, on the same
bytes in the same process:

* ours: ``PgOutputDecoder.decode(batch)`` for each batch, typed values kept in Rust; also
  ``ElectricDecoder.decode(batch)``, the same with Electric's bookkeeping folded in (what the
  service does; this table is not electrified, so the fold passes every row through with no
  tags); and, for the record, ``PgOutputDecoder`` followed by ``Transaction.changes()`` that
  builds every row as a dict of Python values;
* pypgoutput: its message classes (``pypgoutput.decoders.Begin/Relation/Insert/Commit``) fed
  the data of each XLogData, each insert's tuple mapped to a dict of column name to value as its
  ``map_tuple_to_dict`` does (values stay ``str``). Its reader (``LogicalReplicationReader``)
  cannot be fed captured bytes: it owns a psycopg2 replication connection in a subprocess and
  looks up every column's type in the database, so only its decoding functions are timed;
* struct: a straightforward pure-Python decoder written here with ``struct.unpack_from`` that
  leaves values as ``bytes``.

Each decoder keeps what it decoded until the run ends. A warm-up run per side, then best of
``--repeat`` timed runs per side, alternating the order.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import shlex
import struct
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

from electric_trio import _native
from electric_trio.pg import connect

from ._harness import (
    Measurement,
    Progress,
    Report,
    machine_facts,
    parse_args,
    postgres,
    write_section,
)

NAME = "replication-decode"
TABLE = "electric_bench_replication"
PUBLICATION = "electric_bench_replication_pub"
SLOT = "electric_bench_replication_slot"
ROWS_PER_TRANSACTION = 10_000
SENTINEL = "electric-bench:end"
TARGET_RATE = 2_000_000
TARGET_VS_PYPGOUTPUT = 25.0

DESCRIPTION = """\
{rows:,} inserts into a 6-column table (int8, int4, text of about 16 characters, float8, bool,
timestamptz) in transactions of {per_txn:,} rows, captured once from PostgreSQL with
`proto_version '1'` ({payloads:,} CopyData payloads, {size:,} bytes, in the {batches:,} batches our
replication client received) and decoded from memory by each side. *Ours*:
`PgOutputDecoder.decode(batch)` per batch, values typed and kept in Rust. *pypgoutput*
{pypgoutput_version}: its `decoders.Begin/Relation/Insert/Commit` on the data of each XLogData
and each insert's tuple mapped to a `{{column: value}}` dict as its `map_tuple_to_dict` does
(values stay `str`); its reader cannot be fed captured bytes (it owns a psycopg2 replication
connection and queries the database for column types), so only its decoding is timed.
*struct*: a pure-Python decoder written in the benchmark with `struct.unpack_from`, values left
as `bytes`. The third figure is `ElectricDecoder.decode(batch)`, the service's path: the same
decoding with Electric's bookkeeping folded in (no shadow rows here: the fold's pass-through
cost). The last figure adds `Transaction.changes()` to ours, which builds every row as a dict of
typed Python values. Absolute target: ours at least {target:,} rows/s. A warm-up run per
side, then best of {repeat} runs per side, alternating which side goes first.
"""

Batches = list[list[bytes]]


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    return parse_args(
        argv,
        prog="python -m benches replication",
        description="Decode a captured pgoutput stream: Rust against pypgoutput and struct.",
        rows_help="row changes in the stream",
        quick_rows=200_000,
    )


# -- the stream -------------------------------------------------------------------------------


def _is_sentinel(payload: bytes) -> bool:
    return payload[25:27] == b"M\x00" and SENTINEL.encode() in payload


async def _capture(url: str, rows: int, progress: Progress) -> tuple[Batches, str]:
    """Writes the rows and returns the payloads of the slot's stream, as received."""
    async with await connect(url) as c:
        version = str(await c.fetchval("SHOW server_version"))
        await c.execute(
            f"DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE IF EXISTS {TABLE};"
            f"CREATE TABLE {TABLE} (id int8 PRIMARY KEY, n int4, label text, x float8,"
            f" flag bool, ts timestamptz);"
            f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}"
        )
    try:
        async with await connect(url, replication="database") as repl:
            created = await repl.fetchrow(
                f'CREATE_REPLICATION_SLOT "{SLOT}" TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT'
            )
            assert created is not None
            progress.step(f"writing {rows:,} rows in transactions of {ROWS_PER_TRANSACTION:,}")
            async with await connect(url) as c:
                for first in range(1, rows + 1, ROWS_PER_TRANSACTION):
                    last = min(first + ROWS_PER_TRANSACTION - 1, rows)
                    await c.execute(
                        f"INSERT INTO {TABLE} SELECT g, g % 100000,"
                        " 'label ' || md5(g::text)::char(10), g * 0.25, g % 3 = 0,"
                        " '2024-01-01 00:00:00+00'::timestamptz"
                        f" + g * interval '1 second' FROM generate_series({first}, {last}) g"
                    )
                await c.execute(f"SELECT pg_logical_emit_message(false, '{SENTINEL}', '')")
            progress.step("capturing the slot's stream")
            stream = await repl.start_replication(
                f'START_REPLICATION SLOT "{SLOT}" LOGICAL {created[1]}'
                f" (proto_version '1', messages 'true', publication_names '{PUBLICATION}')"
            )
            batches: Batches = []
            with trio.fail_after(600):
                while True:
                    batch = await stream.receive_raw_batch()
                    end = next((i for i, p in enumerate(batch) if _is_sentinel(p)), None)
                    batches.append(batch[:end])
                    if end is not None:
                        break
                    if any(p[:1] == b"k" and p[-1:] == b"\x01" for p in batch):
                        await stream.send_status()
            await stream.stop()
    finally:
        async with await connect(url) as c:
            await c.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}; DROP TABLE {TABLE}")
    return [b for b in batches if b], version


# -- the decoders -----------------------------------------------------------------------------


Decoded = tuple[int, object]
"""Rows decoded, and what was kept (released by the caller, after the clock stops)."""


def ours(batches: Batches) -> Decoded:
    """The service's path: whole transactions, typed rows kept in Rust."""
    decoder = _native.PgOutputDecoder()
    kept: list[_native.Transaction] = []
    for batch in batches:
        kept += decoder.decode(batch)
    return sum(len(t) for t in kept), kept


def ours_folded(batches: Batches) -> Decoded:
    """The service's path: decoded and folded, rows kept in Rust."""
    decoder = _native.ElectricDecoder()
    kept: list[_native.ElectricTransaction] = []
    for batch in batches:
        kept += decoder.decode(batch)
    return sum(len(t) for t in kept), kept


def ours_to_python(batches: Batches) -> Decoded:
    """Ours, then every row built as Python objects (what a per-row Python consumer pays)."""
    decoder = _native.PgOutputDecoder()
    rows: list[Any] = []
    for batch in batches:
        for t in decoder.decode(batch):
            rows += t.changes()
    return len(rows), rows


def pypgoutput_decoders(batches: Batches) -> Decoded:
    """pypgoutput's message classes on the data of each XLogData."""
    from pypgoutput import decoders  # type: ignore[import-untyped]

    relations: dict[int, list[str]] = {}
    rows: list[dict[str, Any]] = []
    for batch in batches:
        for payload in batch:
            if payload[0] != 0x77:  # keepalive
                continue
            data = payload[25:]
            tag = data[0]
            if tag == 0x49:  # I
                insert = decoders.Insert(data)
                names = relations[insert.relation_id]
                # pypgoutput.reader.map_tuple_to_dict, without its pydantic schema object.
                rows.append(
                    {names[i]: col.col_data for i, col in enumerate(insert.new_tuple.column_data)}
                )
            elif tag == 0x42:  # B
                decoders.Begin(data)
            elif tag == 0x43:  # C
                decoders.Commit(data)
            elif tag == 0x52:  # R
                relation = decoders.Relation(data)
                relations[relation.relation_id] = [c.name for c in relation.columns]
    return len(rows), rows


def struct_decoder(batches: Batches) -> Decoded:
    """A straightforward pure-Python pgoutput decoder; values stay bytes."""
    unpack_from = struct.unpack_from
    relations: dict[int, tuple[str, str, list[tuple[str, int]]]] = {}
    transactions: list[tuple[int, int, list[tuple[int, tuple[bytes | None, ...]]]]] = []
    changes: list[tuple[int, tuple[bytes | None, ...]]] = []
    xid = 0
    for batch in batches:
        for p in batch:
            if p[0] != 0x77:  # keepalive
                continue
            tag = p[25]
            if tag == 0x49:  # I: relation id, 'N', column count, columns
                (relid, n) = unpack_from(">IxH", p, 26)
                pos = 33
                values: list[bytes | None] = []
                for _ in range(n):
                    kind = p[pos]
                    if kind == 0x74:  # t
                        (length,) = unpack_from(">i", p, pos + 1)
                        pos += 5
                        values.append(p[pos : pos + length])
                        pos += length
                    else:  # n (NULL) or u (unchanged TOAST)
                        values.append(None)
                        pos += 1
                changes.append((relid, tuple(values)))
            elif tag == 0x42:  # B: final LSN, commit timestamp, xid
                (_, _, xid) = unpack_from(">QqI", p, 26)
                changes = []
            elif tag == 0x43:  # C: flags, commit LSN, end LSN, timestamp
                (_, _, end_lsn, _) = unpack_from(">BQQq", p, 26)
                transactions.append((xid, end_lsn, changes))
            elif tag == 0x52:  # R: id, namespace, name, identity, columns
                (relid,) = unpack_from(">I", p, 26)
                end = p.index(0, 30)
                namespace = p[30:end].decode()
                name_end = p.index(0, end + 1)
                name = p[end + 1 : name_end].decode()
                (ncols,) = unpack_from(">h", p, name_end + 2)
                pos = name_end + 4
                columns = []
                for _ in range(ncols):
                    col_end = p.index(0, pos + 1)
                    (type_oid,) = unpack_from(">I", p, col_end + 1)
                    columns.append((p[pos + 1 : col_end].decode(), type_oid))
                    pos = col_end + 9
                relations[relid] = (namespace, name, columns)
    return sum(len(c) for _, _, c in transactions), transactions


def _check_same_rows(batches: Batches) -> None:
    """The three decoders agree on the first and last rows."""
    decoder = _native.PgOutputDecoder()
    txns = [t for b in batches for t in decoder.decode(b)]
    first = txns[0].changes(0, 1)[0][3]
    last = txns[-1].changes(len(txns[-1]) - 1)[0][3]
    assert first is not None
    assert last is not None
    inserts = [p[25:] for b in batches for p in b if p[:1] == b"w" and p[25:26] == b"I"]
    from pypgoutput import decoders

    for ours_row, data in ((first, inserts[0]), (last, inserts[-1])):
        theirs = [c.col_data for c in decoders.Insert(data).new_tuple.column_data]
        if [str(ours_row["id"]), ours_row["label"]] != [theirs[0], theirs[2]]:
            raise AssertionError(f"ours {ours_row!r} differs from pypgoutput {theirs!r}")


# -- the run ----------------------------------------------------------------------------------

FIGURES: dict[str, tuple[str, str, str, float]] = {
    "pypgoutput": (
        "decode, typed values kept in Rust / pypgoutput",
        "ours",
        "pypgoutput",
        TARGET_VS_PYPGOUTPUT,
    ),
    "struct": (
        "decode, typed values kept in Rust / struct (bytes values)",
        "ours",
        "struct",
        1.0,
    ),
    "folded": (
        "decode + fold (ElectricDecoder), rows kept in Rust / pypgoutput",
        "ours+fold",
        "pypgoutput",
        TARGET_VS_PYPGOUTPUT,
    ),
    "python": (
        "decode + changes() as Python objects / pypgoutput",
        "ours+python",
        "pypgoutput",
        1.0,
    ),
}
"""Figure: (label, our side, peer side, least ratio that passes)."""


def _measure(batches: Batches, rows: int, repeat: int, progress: Progress) -> list[Measurement]:
    sides: dict[str, Callable[[Batches], Decoded]] = {
        "ours": ours,
        "ours+fold": ours_folded,
        "ours+python": ours_to_python,
        "pypgoutput": pypgoutput_decoders,
        "struct": struct_decoder,
    }
    rates: dict[str, list[float]] = {side: [] for side in sides}

    def run(side: str, *, timed: bool) -> float:
        gc.collect()
        start = time.perf_counter()
        got, kept = sides[side](batches)
        seconds = time.perf_counter() - start
        del kept
        if got != rows:
            raise AssertionError(f"{side} decoded {got:,} rows, not {rows:,}")
        if timed:
            rates[side].append(rows / seconds)
        return rows / seconds

    for side in sides:
        progress.step(f"warm-up {side}: {run(side, timed=False):,.0f} rows/s")
    for i in range(repeat):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))
        got = {side: run(side, timed=True) for side in order}
        progress.step(
            f"run {i + 1}/{repeat}: " + ", ".join(f"{s} {got[s]:,.0f}" for s in order) + " rows/s"
        )
    return [
        Measurement(
            figure=label,
            unit="rows/s",
            ours=tuple(rates[ours_side]),
            peer=tuple(rates[peer]),
            target=target,
        )
        for label, ours_side, peer, target in FIGURES.values()
    ]


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    try:
        pypgoutput_version = importlib.metadata.version("pypgoutput")
    except importlib.metadata.PackageNotFoundError:
        print("pypgoutput is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    with postgres(progress) as target:
        batches, server_version = trio.run(_capture, target.url, args.rows, progress)
    payloads = sum(len(b) for b in batches)
    size = sum(len(p) for b in batches for p in b)
    progress.step(f"captured {payloads:,} payloads, {size:,} bytes, {len(batches):,} batches")
    _check_same_rows(batches)
    measurements = _measure(batches, args.rows, args.repeat, progress)
    best = measurements[0].best_ours
    absolute = "pass" if best >= TARGET_RATE else "FAIL"
    facts = {
        **machine_facts(),
        "PostgreSQL": f"{server_version} ({target.description})",
        "Peers": f"pypgoutput {pypgoutput_version} (decoders only); struct decoder in "
        "benches/replication.py",
        "Absolute target": f"ours >= {TARGET_RATE:,} rows/s: {best:,.0f} rows/s, {absolute}",
    }
    report = Report(
        name=NAME,
        title="pgoutput decoding: Rust decoder against pypgoutput and a struct decoder",
        description=DESCRIPTION.format(
            rows=args.rows,
            per_txn=ROWS_PER_TRANSACTION,
            payloads=payloads,
            size=size,
            batches=len(batches),
            pypgoutput_version=pypgoutput_version,
            target=TARGET_RATE,
            repeat=args.repeat,
        ),
        peer="peer",
        measurements=tuple(measurements),
        # Runs as ``python -m benches replication`` once listed in benches/__init__.py.
        command=shlex.join(["python", "-m", "benches.replication", *argv]),
        settings=f"{args.rows:,} rows, best of {args.repeat} runs per side",
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--quick; --record to write it)")
    return 0 if report.passed and best >= TARGET_RATE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
