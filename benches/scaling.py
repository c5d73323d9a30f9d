"""Scaling curves (issue 9): delivery latency and server memory against connected clients and
against shapes per client, and initial sync time against shape size, plotted to PNG.

The machinery is the fanout benchmark's (:mod:`.fanout`): the service as ``electric-trio serve``
in its own process, the client processes of :mod:`._fanout_clients` (one ``epoll`` loop each,
reading only frame headers and the begins of ``SatOpLog`` frames), the bare trio-websocket
floor of :mod:`._fanout_floor` as the latency peer, and a writer committing 10-row transactions
into ``items``.

* Clients: ``--active`` clients subscribed to ``items`` stay connected while idle clients,
  subscribed to ``idle_items`` (a table nobody writes), are added up to each point of
  ``--idle``. At each point: the service's VmRSS, then ``--rate`` transactions per second for
  ``--seconds`` seconds, latency = receipt - commit time over every delivery to the active
  clients. The floor holds the same number of plain WebSocket connections (the active ones
  first) and broadcasts the service's frame, at the same rate, to the active ones only.
* Shapes: ``--active`` clients each with ``S`` subscriptions to ``items`` (each a where
  clause matching every new row, none of the old ones) for each ``S`` of ``--shapes``; the
  same paced run against the floor's ``--active`` connections; the service's RSS with them
  connected.
* Initial sync: a table ``bulk`` grown to each size of ``--sync-rows``; one client subscribes
  to the whole of it; the time from its connection to the end of the shape's data
  (``SatSubsDataEnd``), against the 200,000 rows/s target.

``--curves`` runs some of the three only (e.g. ``--curves shapes --no-record`` to measure the
shapes curve alone).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio

from electric_trio.pg import Connection, connect

from . import _plot
from ._fanout_wire import Histogram
from ._harness import (
    Measurement,
    Progress,
    Report,
    command_line,
    machine_facts,
    parse_args,
    postgres,
    wait_ready,
    write_section,
)
from ._satellite_sync import profiled, wait_replicated
from .fanout import (
    ClientPool,
    JsonProcess,
    Writer,
    _child,
    _database_url,
    _free_port,
    _service_command,
    rss_kib,
)

NAME = "scaling"
DATABASE = "electric_bench_scaling"
PLOTS = Path(__file__).resolve().with_name("plots")
MEMORY_LIMIT_MIB = 1024.0
SYNC_TARGET = 200_000.0
#: Clients per second connecting and subscribing (issue 9): 10,000 clients reconnecting after a
#: restart of the service are all back within 100 s.
CONNECT_TARGET = 100.0
#: Connections in their handshake (and subscription) at once, per client process: clients
#: connect on their own, not 8 at a time; the service, not the bench's queue, sets the pace.
CONNECTING = 64
#: Seconds between the transactions committed while Satellite clients connect (see Clients).
HEARTBEAT = 0.1
#: The floor strategy the latency curves are set against (see benches/_fanout_floor.py).
FLOOR = "broadcaster"
#: The curves, in the order they run.
CURVES = ("clients", "shapes", "sync")

DESCRIPTION = """\
The service (`electric-trio serve`, AUTH_MODE=insecure, direct writes, on an embedded
PostgreSQL with fsync on) with the fan-out benchmark's client processes ({procs} of them, one
`epoll` loop each) and its floor, a bare trio-websocket server broadcasting the same `SatOpLog`
frame (strategy *{floor}*). *Clients*: {active} active clients subscribed to `items` while idle
clients subscribed to `idle_items` (never written) are added up to {idle}; at each point the
service's VmRSS, then {rate:g} transactions of 10 rows per second for {seconds:g} s, latency =
receipt - commit time over every delivery to the active clients; the floor holds as many plain
connections and broadcasts to its {active} first ones at the same rate. *Shapes*: {active}
clients with {shapes} subscriptions each to `items` (where clauses matching every new row), the
same paced run against the floor's {active} connections; memory is the service's VmRSS with them
connected. *Initial sync*: one client subscribes to a table `bulk` (int8 key, text, int4,
float8) of {sync_rows} rows (inserted into the electrified table, so each row has a shadow
row with its own tags; the table and its shadow table then vacuumed, so that no autovacuum of
the insert's dead shadow rows runs during the sync; timed once the service's replication has
read them); the time from its connection to the shape's `SatSubsDataEnd`, {sync_repeat} run(s)
per size (the best judged, every run listed), against 200,000 rows/s (the sync benchmark
times the same service on a 7-column table without shadow rows: its description says what each
costs). While Satellite clients
connect, a 1-row update of an electrified table nobody subscribes to is committed every
{heartbeat:g} s: the service sends a subscription's data at the first transaction after its
snapshot, so on an idle database it would wait for the next write. Every process shares the
machine's cores.
"""


def _points(text: str) -> tuple[int, ...]:
    points = tuple(int(p.replace("_", "")) for p in text.split(","))
    if not points or min(points) < 1 or list(points) != sorted(points):
        raise argparse.ArgumentTypeError("points are increasing positive integers, e.g. 1,10,100")
    return points


def _curves(text: str) -> tuple[str, ...]:
    curves = tuple(c.strip() for c in text.split(",") if c.strip())
    if not curves or not set(curves) <= set(CURVES):
        raise argparse.ArgumentTypeError(f"curves are some of {','.join(CURVES)}")
    return curves


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--idle", type=_points)
    extra.add_argument("--active", type=int)
    extra.add_argument("--shapes", type=_points)
    extra.add_argument("--sync-rows", type=_points)
    extra.add_argument("--sync-repeat", type=int)
    extra.add_argument("--rate", type=float, default=5.0)
    extra.add_argument("--seconds", type=float)
    extra.add_argument("--client-processes", type=int)
    extra.add_argument("--connecting", type=int, default=CONNECTING)
    extra.add_argument("--plots", type=Path)
    extra.add_argument("--curves", type=_curves, default=CURVES)
    extra.add_argument("--profile", type=Path)
    known, rest = extra.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(
            "scaling options: --idle N,N,... (100,1000,5000,10000; 100,200 with --quick),"
            " --active N (100; 50 with --quick), --shapes S,S,... (1,10,100; 1,5),"
            " --sync-rows N,... (10000,100000,1000000; 10000), --sync-repeat N (timed syncs per"
            " size, the best judged: 2; 1), --rate TXN_PER_S (5),"
            " --seconds S (6; 2), --client-processes N (2; 1), --connecting N (connections in"
            f" their handshake at once per client process, {CONNECTING}), --plots DIR"
            " (benches/plots when recording, else a temporary directory), --curves"
            f" C,... (which curves run: {','.join(CURVES)}), --profile DIR (py-spy --native of"
            " the service during each shapes point's paced run: DIR/shapes-S.txt, raw)"
        )
    args = parse_args(
        rest,
        prog="python -m benches scaling",
        description="Latency and memory against clients and shapes; initial sync against size.",
        rows_help="(unused: see --idle, --shapes, --sync-rows)",
        quick_rows=1,
        full_rows=1,
    )
    quick = args.quick
    defaults = {
        "idle": (100, 200) if quick else (100, 1000, 5000, 10000),
        "active": 50 if quick else 100,
        "shapes": (1, 5) if quick else (1, 10, 100),
        "sync_rows": (10_000,) if quick else (10_000, 100_000, 1_000_000),
        "sync_repeat": 1 if quick else 2,
        "seconds": 2.0 if quick else 6.0,
        "client_processes": 1 if quick else 2,
    }
    for key, value in vars(known).items():
        setattr(args, key, defaults[key] if value is None and key in defaults else value)
    # The points of a curve not run: none.
    for curve, key in zip(CURVES, ("idle", "shapes", "sync_rows"), strict=True):
        if curve not in args.curves:
            setattr(args, key, ())
    return args


def _raise_open_files(needed: int) -> str:
    """Raise the soft limit of open files (inherited by the children) to what is needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        limit = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"needs {needed:,} open files; the hard limit is {hard:,}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        soft = limit
    return f"{soft:,} (hard {hard:,})"


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a latency curve."""

    x: int
    ours: Histogram
    floor: Histogram
    ours_kib: int
    floor_kib: int | None


@dataclasses.dataclass
class Results:
    clients: list[Point] = dataclasses.field(default_factory=list)
    shapes: list[Point] = dataclasses.field(default_factory=list)
    #: Per size of shape, the seconds of each run.
    sync: list[tuple[int, tuple[float, ...]]] = dataclasses.field(default_factory=list)
    connect_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Idle clients added at each point: (how many, seconds ours, seconds the floor's).
    connects: list[tuple[int, float, float]] = dataclasses.field(default_factory=list)
    server_version: str = ""
    #: Seconds until the service had ended the sessions of every client of the curve, closed.
    close_seconds: float = 0.0
    frame_len: int = 0
    handshake: float = 0.0


async def _drop_database(admin: Connection) -> None:
    await admin.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        f" WHERE database = '{DATABASE}' AND NOT active"
    )
    await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


async def _bench(url: str, args: argparse.Namespace, progress: Progress) -> Results:
    results = Results()
    async with await connect(url) as admin:
        await _drop_database(admin)
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        results.server_version = str(await admin.fetchval("SHOW server_version"))
    try:
        async with trio.open_nursery() as nursery:
            await _run(nursery, _database_url(url, DATABASE), args, progress, results)
            nursery.cancel_scope.cancel()
    finally:
        async with await connect(url) as admin:
            with trio.move_on_after(20):
                while await admin.fetchval(  # noqa: ASYNC110 (Postgres state, no event)
                    f"SELECT count(*) FROM pg_replication_slots WHERE database = '{DATABASE}'"
                    " AND active"
                ):
                    await trio.sleep(0.1)
            await _drop_database(admin)
    return results


async def _satellite_clients(port: int) -> int:
    """The service's ``electric_satellite_clients`` gauge (clients connected on ``/ws``)."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("electric_satellite_clients "):
            return int(float(line.split()[1]))
    raise RuntimeError("no electric_satellite_clients in /metrics")


async def _sessions_ended(port: int, within: float) -> float:
    """Seconds until the service has ended every Satellite session (its clients closed)."""
    start = time.perf_counter()
    with trio.move_on_after(within):
        while await _satellite_clients(port):  # noqa: ASYNC110 (the service's state, no event)
            await trio.sleep(0.5)
        return time.perf_counter() - start
    raise RuntimeError(f"the service still had sessions {within:.0f} s after their clients closed")


class Clients:
    """The client processes, with connect commands that name a table, shapes and a where.

    While Satellite clients connect, a transaction every HEARTBEAT seconds goes through the
    replication stream: the service sends a subscription's data at the first transaction after
    its snapshot, so on an idle database a subscription would wait for the next write.
    """

    def __init__(self, pool: ClientPool, db_url: str, connecting: int = CONNECTING) -> None:
        self.pool = pool
        self.db_url = db_url
        self.connecting = connecting

    async def _heartbeat(self) -> None:
        async with await connect(self.db_url) as conn:
            while True:
                await trio.sleep(HEARTBEAT)
                await conn.execute("UPDATE heartbeat SET n = n + 1 WHERE id = 1")

    async def connect(
        self, group: str, port: int, n: int, kind: str, within: float, **extra: object
    ) -> float:
        if kind != "electric":
            return await self._connect(group, port, n, kind, within, **extra)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeat)
            seconds = await self._connect(group, port, n, kind, within, **extra)
            nursery.cancel_scope.cancel()
        return seconds

    async def _connect(
        self, group: str, port: int, n: int, kind: str, within: float, **extra: object
    ) -> float:
        start = time.perf_counter()
        procs = self.pool.procs
        for i, (proc, share) in enumerate(zip(procs, self.pool.shares(n), strict=True)):
            if share:
                await proc.send(
                    cmd="connect",
                    group=group,
                    port=port,
                    n=share,
                    kind=kind,
                    concurrency=self.connecting,
                    prefix=f"{group}-{os.getpid()}-{i}-{time.monotonic_ns()}",
                    **extra,
                )
        for proc, share in zip(procs, self.pool.shares(n), strict=True):
            if share:
                try:
                    await proc.event("connected", within)
                except trio.TooSlowError:
                    raise RuntimeError(
                        f"{group}: {n:,} {kind} connections not all live (handshake and"
                        f" subscriptions) within {within:.0f} s"
                    ) from None
        return time.perf_counter() - start

    async def close(self, group: str, n: int) -> None:
        for proc, share in zip(self.pool.procs, self.pool.shares(n), strict=True):
            if share:
                await proc.send(cmd="close", group=group)
                await proc.event("closed", 30)


async def _run(
    nursery: trio.Nursery,
    db_url: str,
    args: argparse.Namespace,
    progress: Progress,
    results: Results,
) -> None:
    http_port = _free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        HTTP_PORT=str(http_port),
        PG_PROXY_PORT=str(_free_port()),
        PG_PROXY_PASSWORD="bench-proxy",
        AUTH_MODE="insecure",
        ELECTRIC_WRITE_TO_PG_MODE="direct_writes",
        ELECTRIC_INSTANCE_ID="bench-scaling",
        LOG_LEVEL=os.environ.get("ELECTRIC_BENCH_LOG_LEVEL", "warning"),
    )
    log_path = Path(tempfile.gettempdir()) / f"electric-bench-scaling-{os.getpid()}.log"
    progress.step(f"starting the service on port {http_port}, log in {log_path}")
    log = log_path.open("wb")
    service: trio.Process = await nursery.start(_child(_service_command(), env, log))
    await wait_ready(http_port, service)
    pool = ClientPool(
        [
            await JsonProcess.start(
                nursery, f"clients {i}", [sys.executable, "-m", "benches._fanout_clients"]
            )
            for i in range(args.client_processes)
        ]
    )
    clients = Clients(pool, db_url, args.connecting)
    rate, count = args.rate, max(1, round(args.rate * args.seconds))
    async with await connect(db_url) as c:
        await c.execute(
            "BEGIN; CALL electric.migration_version('1');"
            " CREATE TABLE items (id int8 PRIMARY KEY, v text);"
            " CREATE TABLE idle_items (id int8 PRIMARY KEY, v text);"
            " CREATE TABLE bulk (id int8 PRIMARY KEY, v text, n int4, x float8);"
            " CREATE TABLE heartbeat (id int4 PRIMARY KEY, n int8);"
            " CALL electric.electrify('heartbeat');"
            " CALL electric.electrify('items'); CALL electric.electrify('idle_items');"
            " CALL electric.electrify('bulk'); COMMIT;"
        )
        await c.execute("INSERT INTO heartbeat VALUES (1, 0)")
        with trio.fail_after(30):
            while True:
                try:
                    await clients.connect("probe", http_port, 1, "electric", 10)
                    break
                except RuntimeError:
                    await trio.sleep(0.3)
        await clients.close("probe", 1)
        await trio.sleep(1.0)
        writer = Writer(c)

        active = args.active
        results.connect_seconds["active"] = await clients.connect(
            "active", http_port, active, "electric", 60 + active / 5
        )
        await pool.arm("active", 1, capture=True)
        await writer.commit()
        warm = await pool.measured("active", 60)
        assert warm.frame is not None
        frame = base64.b64encode(warm.frame).decode()
        results.frame_len = len(warm.frame)
        progress.step(f"{active} active clients connected; SatOpLog of {len(warm.frame)} bytes")

        floor_proc = await JsonProcess.start(
            nursery, "floor", [sys.executable, "-m", "benches._fanout_floor"]
        )
        listening = await floor_proc.event("listening", 30)
        floor_pid, floor_port = int(listening["pid"]), int(listening["port"])
        await clients.connect("floor-active", floor_port, active, "plain", 300)

        async def ours_paced(group: str, n: int, profile: Path | None = None) -> Histogram:
            await pool.arm(group, count)
            async with profiled(service.pid, profile, native=True):
                await writer.paced(count, rate)
                hist = (await pool.measured(group, 60 + count * n / 500)).hist
            return hist

        async def floor_paced() -> Histogram:
            await pool.arm("floor-active", count)
            await floor_proc.send(
                cmd="broadcast", strategy=FLOOR, count=count, rate=rate, frame=frame, first=active
            )
            delivery = await pool.measured("floor-active", 60 + count * active / 500)
            await floor_proc.event("broadcasted", 30)
            return delivery.hist

        # -- latency and memory against connected clients
        connected = 0
        for n in args.idle:
            group = f"idle-{n}"
            more = n - connected
            seconds = await clients.connect(
                group, http_port, more, "electric", 60 + more / 10, table="idle_items"
            )
            floor_seconds = await clients.connect(
                f"floor-{group}", floor_port, more, "plain", 60 + more / 50
            )
            results.connect_seconds[group] = seconds
            results.connects.append((more, seconds, floor_seconds))
            connected = n
            await trio.sleep(2.0)
            ours_kib, floor_kib = rss_kib(service.pid), rss_kib(floor_pid)
            ours = await ours_paced("active", active)
            floor = await floor_paced()
            results.clients.append(Point(n, ours, floor, ours_kib, floor_kib))
            progress.step(
                f"{n:,} idle + {active} active: RSS ours {ours_kib / 1024:,.0f} MiB, floor"
                f" {floor_kib / 1024:,.0f} MiB; p50/p99 ours {ours.percentile(50):.1f}/"
                f"{ours.percentile(99):.1f} ms, floor {floor.percentile(50):.1f}/"
                f"{floor.percentile(99):.1f} ms ({more:,} connected in {seconds:.1f} s,"
                f" {more / seconds:,.0f}/s; floor {more / floor_seconds:,.0f}/s)"
            )
        previous = 0
        for n in args.idle:
            await clients.close(f"idle-{n}", n - previous)
            await clients.close(f"floor-idle-{n}", n - previous)
            previous = n
        await clients.close("active", active)
        # The service ends the sessions (each storing its client's state) after the clients
        # went: the next clients would connect while it is busy with that.
        results.close_seconds = await _sessions_ended(http_port, 120 + connected / 20)
        progress.step(
            f"the service ended the sessions of {connected + active:,} closed clients in"
            f" {results.close_seconds:.1f} s"
        )

        # -- latency and memory against shapes per client
        m = active
        for shapes in args.shapes:
            group = f"shapes-{shapes}"
            await trio.sleep(1.0)
            where = f"this.id >= {writer.next_id}"
            seconds = await clients.connect(
                group, http_port, m, "electric", 120 + m * shapes / 10, shapes=shapes, where=where
            )
            results.connect_seconds[group] = seconds
            await trio.sleep(2.0)
            ours_kib = rss_kib(service.pid)
            profile = None if args.profile is None else args.profile / f"{group}.txt"
            ours = await ours_paced(group, m, profile)
            floor = await floor_paced()
            results.shapes.append(Point(shapes, ours, floor, ours_kib, None))
            progress.step(
                f"{m} clients x {shapes} shapes: RSS ours {ours_kib / 1024:,.0f} MiB; p50/p99"
                f" ours {ours.percentile(50):.1f}/{ours.percentile(99):.1f} ms, floor"
                f" {floor.percentile(50):.1f}/{floor.percentile(99):.1f} ms (connected in"
                f" {seconds:.1f} s)"
            )
            await clients.close(group, m)

        # -- initial sync against shape size (first the handshake alone: an empty shape)
        if args.sync_rows:
            results.handshake = await clients.connect(
                "sync-empty", http_port, 1, "electric", 60, table="idle_items"
            )
            await clients.close("sync-empty", 1)
        filled = 0
        for rows in args.sync_rows:
            await c.execute(
                f"INSERT INTO bulk SELECT i, 'row ' || i || ' ' || md5(i::text), (i % 1000)::int4,"
                f" i / 7.0 FROM generate_series({filled + 1}::int8, {rows}::int8) i"
            )
            filled = rows
            # The rows went through replication (the table is electrified): the sync is timed
            # once the service has read them, on a vacuumed table, as the sync benchmark does.
            # Its shadow table too (each row inserted has a shadow row, whose tags the insert's
            # commit rewrites): else autovacuum, due after the insert, may run during the timed
            # sync (one such first 1M-row sync wrote 225 MB of WAL, later ones 13.5 MB).
            await c.execute("VACUUM ANALYZE bulk")
            await c.execute("VACUUM ANALYZE electric.shadow__public__bulk")
            await wait_replicated(c)
            runs = []
            for run in range(args.sync_repeat):
                seconds = await clients.connect(
                    f"sync-{rows}-{run}", http_port, 1, "electric", 60 + rows / 5000, table="bulk"
                )
                await clients.close(f"sync-{rows}-{run}", 1)
                runs.append(seconds)
                progress.step(
                    f"initial sync of {rows:,} rows, run {run + 1}/{args.sync_repeat}:"
                    f" {seconds:.2f} s ({rows / seconds:,.0f} rows/s)"
                )
                # The next run once the service has stored this client's state (it does as
                # the session ends).
                await _sessions_ended(http_port, 120 + rows / 5000)
            results.sync.append((rows, tuple(runs)))
        for proc in [*pool.procs, floor_proc]:
            assert proc.process.stdin is not None
            await proc.process.stdin.aclose()
        service.terminate()
        with trio.move_on_after(10):
            await service.wait()


def _plots(results: Results, args: argparse.Namespace, where: Path) -> list[Path]:
    def mib(kib: int | None) -> float:
        return (kib or 0) / 1024

    a = results.clients
    s = results.shapes
    plots = [
        _plot.latency_and_memory(
            where / "scaling-clients.png",
            title=f"{args.active} active clients + idle clients, {args.rate:g} txn/s of 10 rows",
            xlabel="idle clients connected",
            x=[p.x for p in a],
            ours_p50=[p.ours.percentile(50) for p in a],
            ours_p99=[p.ours.percentile(99) for p in a],
            peer_p50=[p.floor.percentile(50) for p in a],
            peer_p99=[p.floor.percentile(99) for p in a],
            peer_name=f"trio-websocket floor ({FLOOR})",
            ours_mib=[mib(p.ours_kib) for p in a],
            peer_mib=[mib(p.floor_kib) for p in a],
            limit_mib=MEMORY_LIMIT_MIB,
            limit_name="limit at 10,000 idle: 1 GiB",
        )
        if a
        else None,
        _plot.latency_and_memory(
            where / "scaling-shapes.png",
            title=f"{args.active} clients, shapes per client, {args.rate:g} txn/s",
            xlabel="shapes (subscriptions) per client",
            x=[p.x for p in s],
            ours_p50=[p.ours.percentile(50) for p in s],
            ours_p99=[p.ours.percentile(99) for p in s],
            peer_p50=[p.floor.percentile(50) for p in s],
            peer_p99=[p.floor.percentile(99) for p in s],
            peer_name=f"floor, {args.active} connections",
            ours_mib=[mib(p.ours_kib) for p in s],
        )
        if s
        else None,
        _plot.initial_sync(
            where / "scaling-sync.png",
            rows=[r for r, _ in results.sync],
            seconds=[min(t) for _, t in results.sync],
            target_rows_per_s=SYNC_TARGET,
        )
        if results.sync
        else None,
    ]
    return [p for p in plots if p is not None]


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    # Per process: the service and the floor hold every connection once; each client
    # process its share of both sides' connections.
    connections = max(args.idle, default=0) + args.active
    needed = max(connections, 2 * connections // args.client_processes) + 1024
    open_files = _raise_open_files(needed)
    progress.step(f"open files limit {open_files}")
    with postgres(progress) as target:
        results = trio.run(_bench, target.url, args, progress)
    p99 = "p99 delivery latency, ms"
    measurements: list[Measurement] = []
    if results.clients:
        biggest = results.clients[-1]
        # The largest number added at once (the later point of equal ones: more already
        # connected).
        most_added = max(n for n, _, _ in results.connects)
        added, connect_s, floor_connect_s = [c for c in results.connects if c[0] == most_added][-1]
        connect_rate, floor_rate = added / connect_s, added / floor_connect_s
        measurements += [
            Measurement(
                figure=f"clients connected + subscribed per s, {added:,} at once (peer: 100/s"
                f" target; floor {floor_rate:,.0f} upgrades/s, ours/floor"
                f" {connect_rate / floor_rate:.2f})",
                unit="clients/s",
                ours=(connect_rate,),
                peer=(CONNECT_TARGET,),
                target=1.0,
            ),
            Measurement(
                figure=f"{p99}, {biggest.x:,} idle + {args.active} active (peer: floor)",
                unit="ms",
                ours=(biggest.ours.percentile(99),),
                peer=(biggest.floor.percentile(99),),
                target=1.0,
                higher_is_better=False,
            ),
            Measurement(
                figure=f"server MiB, {biggest.x:,} idle + {args.active} active (peer: 1 GiB limit)",
                unit="MiB",
                ours=(biggest.ours_kib / 1024,),
                peer=(MEMORY_LIMIT_MIB,),
                target=1.0,
                higher_is_better=False,
            ),
        ]
    if results.shapes:
        most = results.shapes[-1]
        measurements.append(
            Measurement(
                figure=f"{p99}, {args.active} clients x {most.x} shapes (peer: floor)",
                unit="ms",
                ours=(most.ours.percentile(99),),
                peer=(most.floor.percentile(99),),
                target=1.0,
                higher_is_better=False,
            )
        )
    if results.sync:
        rows, runs = results.sync[-1]
        measurements.append(
            Measurement(
                figure=f"initial sync of {rows:,} rows, rows/s (peer: 200,000 rows/s target)",
                unit="rows/s",
                ours=tuple(rows / t for t in runs),
                peer=(SYNC_TARGET,),
                target=1.0,
            )
        )
    where = args.plots or (PLOTS if args.record else Path(tempfile.mkdtemp(prefix="scaling-")))
    plots = _plots(results, args, where)
    progress.step(f"plots: {', '.join(str(p) for p in plots)}")

    def curve(points: list[Point], unit: str) -> str:
        return "; ".join(
            f"{p.x:,} {unit}: ours {p.ours.percentile(50):.1f} / {p.ours.percentile(99):.1f} ms,"
            f" floor {p.floor.percentile(50):.1f} / {p.floor.percentile(99):.1f} ms,"
            f" ours {p.ours_kib / 1024:,.0f} MiB"
            + (f", floor {p.floor_kib / 1024:,.0f} MiB" if p.floor_kib is not None else "")
            for p in points
        )

    facts |= {
        "PostgreSQL": f"{results.server_version} (embedded, fsync on)",
        "Peers": f"trio-websocket 0.12 floor (strategy {FLOOR}) for latency; 1 GiB at 10,000"
        " idle clients; 200,000 rows/s for initial sync",
        "Against idle clients (p50 / p99, RSS)": curve(results.clients, "idle"),
        "Against shapes per client (p50 / p99, RSS)": curve(results.shapes, "shapes"),
        "Initial sync": "; ".join(
            f"{r:,} rows "
            + ", ".join(f"{t:.2f} s ({r / t:,.0f} rows/s)" for t in runs)
            + (
                " (the first is the service's first sync of that many rows)"
                if len(runs) > 1
                else ""
            )
            for r, runs in results.sync
        ),
        "Connection + subscription of an empty shape (included in the initial sync times)": (
            f"{results.handshake:.2f} s"
        ),
        f"Connect (+ subscribe) times ({args.connecting} at a time per client process)": ", ".join(
            f"{k} {v:.1f} s" for k, v in results.connect_seconds.items()
        ),
        "Connect rate, idle clients added at each point (ours: WebSocket upgrade, authenticate,"
        " startReplication both ways, subscribe, the shape's data; floor: the upgrade only)": (
            "; ".join(
                f"{n:,}: ours {n / t:,.0f}/s, floor {n / f:,.0f}/s, ours/floor {f / t:.2f}"
                for n, t, f in results.connects
            )
        ),
        "Sessions of the curve's clients ended by the service after they closed": (
            f"{max(args.idle, default=0) + args.active:,} in {results.close_seconds:.1f} s"
        ),
        "Open files limit": open_files,
        "Frame": f"{results.frame_len} bytes (SatOpLog of 10 inserts)",
    }
    report = Report(
        name=NAME,
        title="latency and memory against clients and shapes; initial sync against size",
        description=DESCRIPTION.format(
            procs=args.client_processes,
            floor=FLOOR,
            active=args.active,
            idle=", ".join(f"{n:,}" for n in args.idle),
            rate=args.rate,
            seconds=args.seconds,
            shapes=", ".join(map(str, args.shapes)),
            sync_rows=", ".join(f"{n:,}" for n in args.sync_rows),
            sync_repeat=args.sync_repeat,
            heartbeat=HEARTBEAT,
        ),
        peer="peer",
        measurements=tuple(measurements),
        command=command_line([NAME, *argv]),
        settings=(
            f"idle {','.join(map(str, args.idle))} + {args.active} active; shapes"
            f" {','.join(map(str, args.shapes))} x {args.active} clients; sync rows"
            f" {','.join(map(str, args.sync_rows))}; {args.rate:g} txn/s for {args.seconds:g} s"
        ),
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        links = "\n".join(
            f"![{p.stem}]({p.relative_to(PLOTS.parent).as_posix()})"
            for p in plots
            if p.is_relative_to(PLOTS.parent)
        )
        write_section(NAME, report.to_markdown() + "\n\nPlots:\n\n" + links)
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--quick or --no-record)")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
