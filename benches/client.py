"""The Python client (issue 7): initial sync against the official client, local writes against
plain SQLite.

* Initial sync: a 7-column electrified table of ``--rows`` rows (100,000 by default) in Postgres,
  served by ``electric-trio serve`` in its own process. Each side, in a fresh process with a fresh
  SQLite file, opens its client with the schema and migrations bundled (as generated code has
  them), connects, and then subscribes to the whole table; the timer runs from the subscribe
  call until the shape is synced (every row in the local SQLite). *Ours*: ``client.sync(...)``
  then ``await handle.synced()`` of ``electric_trio.client`` in a child process
  (``benches/_client_py.py``); *peer*: ``db.items.sync()`` and its ``synced`` promise of the
  official ``electric-sql@0.12.1`` client on better-sqlite3 in Node (``tests/node/driver.mjs``).
  Both are timed from this process around the command (one pipe round trip each). Peak memory is
  each process's ``VmHWM`` after the sync. Afterwards both local tables must give the same
  aggregate fingerprint (count, sums, min/max, lengths). Beside it, the service's part: a raw
  WebSocket client that subscribes and reads the frames without decoding them.
* Local writes: 1-row transactions, an ``INSERT`` each, through ``client.conn.execute`` (the oplog
  triggers fire and, in the same transaction, the client's snapshot timestamps the entry and sets
  its shadow tag), against the same inserts into an identical table without triggers through a plain
  ``sqlite3`` connection in autocommit, with SQLite's default settings and in WAL mode; one
  transaction of many rows, ``client.conn.executemany`` against ``sqlite3``'s ``executemany``; and
  the triggers alone (plain inserts on the client's file). The client is not connected (the writes
  stay in its oplog): only the local cost is measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import trio

from electric_trio.client import ElectricConfig, open_electric
from electric_trio.client.schema import Column, DbSchema, Migration, TableSchema
from electric_trio.client.triggers import triggers_for
from electric_trio.ddlx.migration import apply_migration
from electric_trio.ddlx.schema import Schema
from electric_trio.pg import connect

from ._fanout_profile import summarize
from ._harness import (
    REPO_ROOT,
    Measurement,
    Progress,
    Report,
    command_line,
    machine_facts,
    postgres,
    wait_ready,
    write_section,
)
from ._satellite_sync import DDL as _DDL
from ._satellite_sync import FILL as _FILL
from ._satellite_sync import profiled, raw_sync, status_kib, wait_replicated
from .writes import _database_url, _drop_database, _free_port, _start_service

NAME = "client"
DATABASE = "electric_bench_client"
VERSION = "20240101000000"
TABLE = "items"
DDL = _DDL.format(table=TABLE, last="owner")
#: The rows (the sync benchmark's): the owner NULL in one row of ten.
FILL = _FILL.format(table=TABLE)
FINGERPRINT = (
    "SELECT count(*) AS count, sum(n) AS sum_n, round(sum(amount), 2) AS sum_amount,"
    " sum(done) AS sum_done, min(id) AS min_id, max(id) AS max_id, min(created) AS min_created,"
    " max(created) AS max_created, sum(length(title)) AS titles, sum(length(owner)) AS owners,"
    f" count(owner) AS owned FROM {TABLE}"
)
INSERT = (
    f"INSERT INTO {TABLE} (id, title, n, amount, done, created, owner) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
#: The issue's target: our initial sync at least as fast as the official client's, and (beside)
#: a peak memory no larger.
TARGET_SYNC = 1.0
TARGET_MEMORY = 1.0
TOKEN_USER = "bench"

DESCRIPTION = """\
A 7-column electrified table (uuid key, text of 7 to 35 characters, int4, float8, bool,
timestamptz, text NULL in one row of ten) of {rows:,} rows in Postgres, served by
`electric-trio serve` in its own process. *Initial sync*: each side, in a fresh process with a
fresh SQLite file, opens its client with the schema and migrations bundled (as generated code has
them), connects, then subscribes to the whole table; the timer runs from the subscribe call until
the shape is synced (every row in the local SQLite), measured in the benchmark's process around
the command (one pipe round trip each side). *Ours*: `client.sync("{table}")` then
`await handle.synced()` of `electric_trio.client` in a child process; *peer*: the official
`electric-sql@0.12.1` client (`db.{table}.sync()` and its `synced` promise) on better-sqlite3 in
Node. After each run both local tables must give the same aggregate fingerprint. Beside, not
judged: the service's part, a raw WebSocket client that subscribes and reads the frames without
decoding them. Peak memory:
each process's `VmHWM` once synced. *Local writes* (the client not connected: they stay in
its oplog), each against the same rows written through a plain `sqlite3` connection in
autocommit into an identical table without triggers, same transactions: {single:,} `INSERT`s, one
row per transaction, through `client.conn.execute` (the oplog trigger and the client's snapshot,
which timestamps the entry and sets its shadow tag, in one transaction) with SQLite's defaults
(rollback journal, `synchronous = FULL`: a commit waits for the disk); {writes:,} such inserts
with both files in WAL mode and `synchronous = NORMAL` (the app opens the connection it gives
`electrify`), where the commit no longer hides the client's own cost; {writes:,} rows in one
transaction (`client.conn.executemany`); and, to isolate the triggers, {writes:,} one-row inserts
through a plain `sqlite3` connection to the client's file (triggers fire, no snapshot), WAL.
A warm-up run per side, then best of
{repeat} runs per side, alternating which side goes first. Client, service and Postgres share the
machine.
"""


# -- the official client ----------------------------------------------------------------------


def _official() -> ModuleType:
    """``tests/official_client.py``, loaded by path (the driver of the Node client)."""
    name = "official_client"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tests" / "official_client.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- schemas ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Schemas:
    ddlx: Schema
    """The service's view, from which the official client's DbSchema is described."""
    ours: DbSchema
    """What ``electric-trio generate`` writes: tables and the migrations bundle."""
    sqlite_ddl: tuple[str, ...]
    """The table's SQLite DDL, without triggers (the plain peer's table)."""


def _schemas() -> Schemas:
    schema, ops = apply_migration(Schema(), VERSION, [DDL])
    ddl = tuple(s.sql for op in ops for s in op.sqlite)
    table = next(t for t in schema.tables if t.name == TABLE)
    ours = TableSchema(
        name=TABLE,
        columns=tuple(Column(c.name, c.type.name, not c.not_null) for c in table.columns),
        primary_key=table.primary_key,
    )
    bundle = Migration(version=VERSION, statements=ddl + tuple(triggers_for(ours)))
    return Schemas(schema, DbSchema(tables={TABLE: ours}, migrations=(bundle,)), ddl)


def _normalize(row: dict[str, Any]) -> dict[str, Any]:
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in row.items()}


# -- memory -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SyncRun:
    seconds: float
    rss_before_kib: int
    """VmRSS once connected, before the subscribe call."""
    hwm_kib: int
    """VmHWM once synced: the process's peak."""
    fingerprint: dict[str, Any]
    inner_seconds: float | None = None
    """Ours: the time measured inside the client's process."""


# -- our side: a child process ----------------------------------------------------------------


class _Child:
    """``benches/_client_py.py`` in its own process, JSON lines both ways."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise RuntimeError(f"our client's process exited ({self.process.poll()})")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"our client's process: {reply['error']}")
        return reply

    async def request(self, **message: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps(message) + "\n").encode())
        return await self.line()


async def _sync_ours(schema_path: Path, db: Path, url: str, profile: Path | None = None) -> SyncRun:
    token = _official().insecure_token(sub=TOKEN_USER)
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "benches._client_py", str(schema_path), str(db), url, token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    child = _Child(process)
    try:
        await child.line()  # connected
        before = status_kib(process.pid, "VmRSS")
        async with profiled(process.pid, profile):
            start = time.perf_counter()
            reply = await child.request(cmd="sync", table=TABLE)
            seconds = time.perf_counter() - start
        hwm = status_kib(process.pid, "VmHWM")
        rows = (await child.request(cmd="query", sql=FINGERPRINT))["rows"]
        return SyncRun(seconds, before, hwm, _normalize(rows[0]), reply["seconds"])
    finally:
        assert process.stdin is not None
        await process.stdin.aclose()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- the peer: the official client in Node ----------------------------------------------------


async def _sync_official(schemas: Schemas, db: Path, url: str, limit: float) -> SyncRun:
    official = _official()
    async with official.open_official_client("official") as ts:
        await ts.open(
            db=db,
            schema=official.describe_schema(schemas.ddlx),
            migrations_url=url,
            url=url,
            user_id=TOKEN_USER,
            within=60,
        )
        await ts.connect(within=60)
        pid = ts.process.pid
        before = status_kib(pid, "VmRSS")
        start = time.perf_counter()
        await ts.sync(TABLE, within=limit)
        seconds = time.perf_counter() - start
        hwm = status_kib(pid, "VmHWM")
        rows = await ts.query(FINGERPRINT, within=120)
        return SyncRun(seconds, before, hwm, _normalize(rows[0]))


# -- the service's part: a raw WebSocket client that does not decode the data ----------------


async def _sync_floor(port: int) -> tuple[float, int]:
    """Seconds from the subscribe request until the last frame of the subscription data, and the
    bytes of its frames, for a raw Satellite client that only reads each frame's type byte:
    what the service and the socket take, the part of the sync neither client can shorten."""
    token = _official().insecure_token(sub=TOKEN_USER)
    return await raw_sync(port, TABLE, token, f"floor-{uuid.uuid4()}", VERSION)


# -- the service and the data -----------------------------------------------------------------


async def _fill(db_url: str, rows: int, progress: Progress) -> str:
    """The table, electrified, then its rows; waits until the service's replication has read
    past them. Returns the Postgres version."""
    async with await connect(db_url) as c:
        await c.execute(
            f"BEGIN; CALL electric.migration_version('{VERSION}'); {DDL};"
            f" CALL electric.electrify('{TABLE}'); COMMIT"
        )
        step = 20_000
        for first in range(1, rows + 1, step):
            await c.execute(FILL, first, min(rows, first + step - 1))
        progress.step(f"{rows:,} rows in Postgres; waiting for the service to read them")
        await wait_replicated(c)
        return str(await c.fetchval("SHOW server_version"))


# -- local writes -----------------------------------------------------------------------------


def _write_rows(count: int, offset: int) -> list[tuple[Any, ...]]:
    return [
        (
            f"00000000-0000-4000-8000-{offset + i:012d}",
            f"local {offset + i}",
            i,
            i * 0.5,
            i % 2,
            "2024-06-01 00:00:00.000Z",
            None if i % 10 == 0 else "me",
        )
        for i in range(count)
    ]


@dataclasses.dataclass(frozen=True)
class WriteFigure:
    """One local-write figure: how many rows, how they are written, with which SQLite settings."""

    name: str
    rows: int
    how: str
    """``single`` (a transaction per row), ``batch`` (one transaction), ``raw`` (one-row
    autocommit inserts through a plain ``sqlite3`` connection to the client's file: triggers on,
    no snapshot, the triggers' own cost)."""
    wal: bool
    """``journal_mode = WAL, synchronous = NORMAL`` on both sides (a commit does not wait for the
    disk), else SQLite's defaults (rollback journal, ``synchronous = FULL``)."""


def write_figures(rows: int, single_rows: int) -> tuple[WriteFigure, ...]:
    return (
        WriteFigure("single", single_rows, "single", wal=False),
        WriteFigure("single-wal", rows, "single", wal=True),
        WriteFigure("batch", rows, "batch", wal=False),
        WriteFigure("raw-wal", rows, "raw", wal=True),
    )


def _sqlite(path: Path, wal: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


async def _writes(
    schemas: Schemas,
    figures: Sequence[WriteFigure],
    repeat: int,
    tmp: Path,
    progress: Progress,
) -> dict[str, dict[str, list[float]]]:
    """Rows per second of each side, per figure."""
    results: dict[str, dict[str, list[float]]] = {
        f.name: {"ours": [], "plain": []} for f in figures
    }
    runs = iter(range(1_000_000))

    async def ours(figure: WriteFigure) -> float:
        path = tmp / f"writes-ours-{next(runs)}.db"
        rows = _write_rows(figure.rows, 0)
        conn = _sqlite(path, figure.wal)
        try:
            async with open_electric(conn, schemas.ours, ElectricConfig()) as client:
                gc.collect()
                start = time.perf_counter()
                if figure.how == "single":
                    for row in rows:
                        await client.conn.execute(INSERT, row)
                elif figure.how == "batch":
                    await client.conn.executemany(INSERT, rows)
                else:
                    raw = _sqlite(path, figure.wal)
                    try:
                        for row in rows:
                            raw.execute(INSERT, row)
                    finally:
                        raw.close()
                rate = figure.rows / (time.perf_counter() - start)
                (pending,) = await client.conn.query("SELECT count(*) AS n FROM _electric_oplog")
                assert pending["n"] == figure.rows, pending
        finally:
            conn.close()
        return rate

    def plain(figure: WriteFigure) -> float:
        path = tmp / f"writes-plain-{next(runs)}.db"
        conn = _sqlite(path, figure.wal)
        try:
            for stmt in schemas.sqlite_ddl:
                conn.execute(stmt)
            rows = _write_rows(figure.rows, 0)
            gc.collect()
            start = time.perf_counter()
            if figure.how == "batch":
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(INSERT, rows)
                conn.execute("COMMIT")
            else:
                for row in rows:
                    conn.execute(INSERT, row)
            return figure.rows / (time.perf_counter() - start)
        finally:
            conn.close()

    for i in range(repeat + 1):
        for figure in figures:
            order = ("ours", "plain") if i % 2 == 0 else ("plain", "ours")
            got = {}
            for side in order:
                got[side] = await ours(figure) if side == "ours" else plain(figure)
            label = "warm-up" if i == 0 else f"run {i}/{repeat}"
            progress.step(
                f"{label} writes {figure.name}: ours {got['ours']:,.0f} rows/s,"
                f" plain {got['plain']:,.0f} rows/s"
            )
            if i:
                for side, rate in got.items():
                    results[figure.name][side].append(rate)
    return results


# -- the benchmark ----------------------------------------------------------------------------


@dataclasses.dataclass
class Results:
    ours: list[SyncRun] = dataclasses.field(default_factory=list)
    official: list[SyncRun] = dataclasses.field(default_factory=list)
    writes: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    server_version: str = ""
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)
    profile: str = ""
    floor: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    """The raw client's (seconds, bytes of the subscription data frames), every timed run."""


async def _bench(url: str, args: argparse.Namespace, progress: Progress) -> Results:
    results = Results()
    schemas = _schemas()
    with tempfile.TemporaryDirectory(prefix="electric-bench-client-") as tmp_name:
        tmp = Path(tmp_name)
        if args.writes:
            progress.step(f"local writes: {args.writes:,} rows per run")
            figures = write_figures(args.writes, args.single_writes)
            results.writes = await _writes(schemas, figures, args.repeat, tmp, progress)
        if not args.rows:
            return results
        _official().ensure_node_client()
        schema_path = tmp / "schema.json"
        schema_path.write_bytes(msgspec.json.encode(schemas.ours))
        db_url = _database_url(url, DATABASE)
        await _drop_database(url, DATABASE)
        async with await connect(url) as admin:
            await admin.execute(f"CREATE DATABASE {DATABASE}")
        port = _free_port()
        service = _start_service(db_url, port, "direct_writes")
        service_url = f"http://127.0.0.1:{port}"
        try:
            await wait_ready(port, service)
            results.server_version = await _fill(db_url, args.rows, progress)
            runs = iter(range(1_000_000))
            for i in range(args.repeat + 1):
                order = ("ours", "official") if i % 2 == 0 else ("official", "ours")
                got: dict[str, SyncRun] = {}
                for side in order:
                    db = tmp / f"{side}-{next(runs)}.db"
                    gc.collect()
                    # a run is bounded: a shape that never syncs fails the benchmark, named
                    limit = max(120.0, args.rows / 500)
                    with trio.move_on_after(limit + 60) as scope:
                        if side == "ours":
                            profile = args.profile / "ours.txt" if args.profile and i == 1 else None
                            got[side] = await _sync_ours(schema_path, db, service_url, profile)
                        else:
                            got[side] = await _sync_official(schemas, db, service_url, limit)
                    if scope.cancelled_caught:
                        raise RuntimeError(
                            f"{side}: the shape of {args.rows:,} rows was not synced within"
                            f" {limit + 60:.0f} s (run {i}, {'warm-up' if i == 0 else 'timed'})"
                        )
                    db.unlink(missing_ok=True)
                    db.with_name(db.name + "-journal").unlink(missing_ok=True)
                with trio.fail_after(limit):
                    floor = await _sync_floor(port)
                ours, official = got["ours"], got["official"]
                if ours.fingerprint != official.fingerprint or ours.fingerprint["count"] != (
                    args.rows
                ):
                    raise RuntimeError(
                        f"the local tables differ: ours {ours.fingerprint},"
                        f" official {official.fingerprint} ({args.rows:,} rows expected)"
                    )
                results.fingerprint = ours.fingerprint
                label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
                progress.step(
                    f"{label} sync: ours {args.rows / ours.seconds:,.0f} rows/s"
                    f" ({ours.seconds:.2f} s, {ours.hwm_kib / 1024:.0f} MiB peak),"
                    f" official {args.rows / official.seconds:,.0f} rows/s"
                    f" ({official.seconds:.2f} s, {official.hwm_kib / 1024:.0f} MiB peak);"
                    f" raw WebSocket floor {floor[0]:.2f} s"
                )
                if i:
                    results.ours.append(ours)
                    results.official.append(official)
                    results.floor.append(floor)
        finally:
            service.terminate()
            service.wait(timeout=30)
            await _drop_database(url, DATABASE)
        if args.profile:
            raw = args.profile / "ours.txt"
            total, inclusive, own = summarize(raw.read_text().splitlines(), top=30)
            lines = [f"{total} samples of our client during sync run 1 (py-spy raw: {raw})"]
            lines += ["inclusive:"] + [f"  {share:6.1%}  {name}" for name, share in inclusive]
            lines += ["self:"] + [f"  {share:6.1%}  {name}" for name, share in own]
            (args.profile / "summary.txt").write_text("\n".join(lines) + "\n")
            print("\n".join(lines), file=sys.stderr, flush=True)
            results.profile = ", ".join(f"{name} {share:.0%}" for name, share in own[:8])
    return results


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benches client",
        description="The Python client: initial sync against the official client, local writes"
        " against plain SQLite.",
    )
    parser.add_argument("--rows", type=int, help="rows in the shape (default 100,000; 0: none)")
    parser.add_argument("--writes", type=int, help="rows per local-write run (default 5,000)")
    parser.add_argument(
        "--single-writes",
        type=int,
        help="rows of the 1-row-transaction run with SQLite's default settings (default 200)",
    )
    parser.add_argument("--repeat", type=int, help="timed runs per side (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="10,000 rows, 1,000 writes, 2 runs per side"
    )
    parser.add_argument("--profile", type=Path, help="py-spy our client in sync run 1, into DIR")
    parser.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        help="write the section of benches/RESULTS.md (default: yes, except with --quick)",
    )
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = 10_000 if args.quick else 100_000
    if args.writes is None:
        args.writes = 1_000 if args.quick else 5_000
    if args.single_writes is None:
        args.single_writes = 100 if args.quick else 200
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    if args.record is None:
        args.record = not args.quick
    if args.rows < 0 or args.writes < 0 or args.repeat < 1 or not (args.rows or args.writes):
        parser.error("--rows and --writes must not be negative (nor both 0), --repeat at least 1")
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def _mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    with postgres(progress) as target:
        results = trio.run(_bench, target.url, args, progress)
    measurements: list[Measurement] = []
    memory_ok = True
    if results.ours:
        measurements.append(
            Measurement(
                figure=f"initial sync of {args.rows:,} rows (peer: official client)",
                unit="rows/s",
                ours=tuple(args.rows / r.seconds for r in results.ours),
                peer=tuple(args.rows / r.seconds for r in results.official),
                target=TARGET_SYNC,
            )
        )
        ours_peak = min(r.hwm_kib for r in results.ours)
        official_peak = min(r.hwm_kib for r in results.official)
        memory_ratio = official_peak / ours_peak
        memory_ok = memory_ratio >= TARGET_MEMORY
        floor_best = min(f[0] for f in results.floor)
        facts |= {
            "Peak memory (VmHWM once synced, least of the runs; target: ours no larger)": (
                f"ours {_mib(ours_peak)}, official {_mib(official_peak)} (official/ours"
                f" {memory_ratio:.2f}, {'pass' if memory_ok else 'FAIL'})"
            ),
            "Peak memory, every run": (
                "ours "
                + ", ".join(_mib(r.hwm_kib) for r in results.ours)
                + "; official "
                + ", ".join(_mib(r.hwm_kib) for r in results.official)
            ),
            "Memory grown during the sync (VmHWM - VmRSS before subscribing), every run": (
                "ours "
                + ", ".join(_mib(r.hwm_kib - r.rss_before_kib) for r in results.ours)
                + "; official "
                + ", ".join(_mib(r.hwm_kib - r.rss_before_kib) for r in results.official)
            ),
            "Ours, timed inside its process (s), every run": ", ".join(
                f"{r.inner_seconds:.2f}" for r in results.ours if r.inner_seconds is not None
            ),
            "The service's part (not judged): a raw WebSocket client that subscribes and"
            " reads the frames without decoding them, timed from the subscribe request to the"
            " last frame, after both clients in each run": (
                f"best {floor_best:.2f} s ({args.rows / floor_best:,.0f} rows/s), every run "
                + ", ".join(f"{f[0]:.2f}" for f in results.floor)
                + f" s; {results.floor[0][1]:,} bytes of frames"
            ),
            "Each client's time beyond that floor, best runs": (
                f"ours {min(r.seconds for r in results.ours) - floor_best:.2f} s, official"
                f" {min(r.seconds for r in results.official) - floor_best:.2f} s"
            ),
            "Local table fingerprint, the same on both sides": json.dumps(results.fingerprint),
            "PostgreSQL": f"{results.server_version} ({target.description})",
            "Peer": "electric-sql 0.12.1 in Node "
            + subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
            + " (tests/node/driver.mjs), better-sqlite3",
        }
    labels = {
        "single": "1-row transactions, conn.execute, SQLite defaults",
        "single-wal": "1-row transactions, conn.execute, WAL",
        "batch": "rows in one transaction, conn.executemany, SQLite defaults",
        "raw-wal": "1-row transactions, triggers alone (raw sqlite3), WAL",
    }
    for figure in write_figures(args.writes, args.single_writes):
        got = results.writes.get(figure.name)
        if got:
            measurements.append(
                Measurement(
                    figure=f"writes: {figure.rows:,} {labels[figure.name]} (not judged)",
                    unit="rows/s",
                    ours=tuple(got["ours"]),
                    peer=tuple(got["plain"]),
                    target=0.0,
                )
            )
    facts["SQLite"] = sqlite3.sqlite_version + " (Python's sqlite3)"
    if results.profile:
        facts["Our client's profile, top self time (py-spy, sync run 1)"] = results.profile
    report = Report(
        name=NAME,
        title="the Python client: initial sync against the official client, local writes",
        description=DESCRIPTION.format(
            rows=args.rows,
            table=TABLE,
            writes=args.writes,
            single=args.single_writes,
            repeat=args.repeat,
        ),
        peer="peer",
        measurements=tuple(measurements),
        command=command_line([NAME, *argv]),
        settings=f"{args.rows:,} rows in the shape, {args.writes:,} rows per write run,"
        f" best of {args.repeat} runs per side",
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--quick or --no-record)")
    return 0 if report.passed and memory_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
