"""One Postgres transaction to 1,000 Satellite clients: the service against a bare trio-websocket
broadcast of the same bytes (issue 4).

Four kinds of process share the machine: the embedded PostgreSQL; the service, run as
``electric-trio serve`` in its own process (so that its memory can be read from
``/proc/PID/status``); the floor, a bare trio-websocket server (:mod:`._fanout_floor`), also a
process of its own; and the clients (:mod:`._fanout_clients`): plain-Python processes holding
the WebSocket connections in one ``epoll`` loop, reading a frame's header and its
``SatOpLog`` begin only, so that the measurement is about the servers. This process drives
Postgres writes and tells the others what to do over their stdin and stdout.

The run: the service starts on a fresh database, a table ``items (id int8, v text)`` is
electrified, the RSS of the service is read, ``--clients`` clients connect (authenticate, answer
the server's ``startReplication``, start replication, subscribe to ``items``), and the RSS is
read again; then the floor starts and the same client processes open as many plain WebSocket
connections to it (its RSS read the same way). One warm-up transaction gives the SatOpLog frame
the service sent, which the floor broadcasts from then on (its commit timestamp rewritten).

* Sustained: ``--rows`` transactions of 10 rows committed as fast as one connection can
  (the floor: that many messages as fast as it can send them), timed from the first commit
  timestamp to the receipt of the last transaction by the last client; messages/s = txn/s x
  clients. Each side ``--repeat`` times, interleaved.
* Paced: at each of ``--rates`` transactions per second for ``--seconds`` seconds (a rate
  both sides sustain, and one the floor does); latency is each
  client's receipt time minus the begin's commit timestamp (ms since 1970: Postgres's commit
  time; for the floor, the time the message was due), p50 and p99 over every delivery.

Clients acknowledge every 10 transactions (the service's window is 30), to both servers alike.
"""

from __future__ import annotations

import argparse
import base64
import collections
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import trio

import electric_trio
from electric_trio.pg import Connection, connect

from ._fanout_profile import summarize
from ._fanout_wire import Histogram, oplog_begin
from ._harness import (
    REPO_ROOT,
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
from ._satellite_sync import profiled

NAME = "fanout"
DATABASE = "electric_bench_fanout"
ROWS_PER_TRANSACTION = 10
ACK_EVERY = 10
#: Connections in their handshake at once, per client process.
CONNECTING = 8
#: Targets of issue 4: throughput at least the floor's, p99 no worse, memory per idle client.
TARGET = 1.0
MAX_KIB_PER_CLIENT = 64.0
STRATEGIES = ("writers", "broadcaster")
#: Not a floor: the write path recommended for the service, run by the floor's process.
PROTOTYPE = "prebuilt"
STRATEGY_NAMES = {
    "writers": "per-connection writer tasks",
    "broadcaster": "one broadcaster loop",
    PROTOTYPE: "one pre-built frame written to each socket",
}

DESCRIPTION = """\
One Postgres transaction of {per_txn} rows (`INSERT ... SELECT` into `items (id int8 PRIMARY
KEY, v text)`, electrified) delivered to {clients:,} connected Satellite clients, each subscribed
to the whole table, against the floor: a bare trio-websocket 0.12 server (`wrap_server_stream`
on each TCP connection, as `serve_websocket` does, and `send_message`) broadcasting the same
{frame_len}-byte `SatOpLog` frame the service sent, to the same number of connections from the
same client processes. Floor strategies: *writers*, a writer task per connection fed by a
channel of 30 messages; *broadcaster*, one loop awaiting `send_message` on each connection in
turn. *Ours*: `electric-trio serve` (AUTH_MODE=insecure, direct writes) in its own process, on
an embedded PostgreSQL with fsync on. The clients: {procs} plain-Python process(es), one `epoll`
loop each, reading only frame headers and the begin of each `SatOpLog` (into one reused
receive buffer), acknowledging every {ack} transactions to both servers (client frames with a
zero masking key). *Sustained*: {rows} transactions committed back to back by
one connection (the floor: {rows} messages sent as fast as it goes), delivered txn/s from the
first commit timestamp to the last client's receipt of the last transaction, messages/s = txn/s
x clients; best of {repeat}, interleaved. *Paced*: {rates} txn/s for {seconds:g} s each, latency =
receipt time - the begin's commit timestamp (ms resolution: Postgres's commit time; the floor's:
when the message was due). *Memory*: the server process's VmRSS before and after the clients
connect (and subscribe), divided by their number. *prebuilt* (in the facts, not a floor): the
write path recommended for the service, run by the floor's process: one WebSocket frame built
per message and one non-blocking `os.write` of it to each socket, a socket's remainder left to a
drain task of its own. Servers, clients and Postgres share the machine's cores.
"""


def _rates(text: str) -> tuple[float, ...]:
    rates = tuple(float(r) for r in text.split(","))
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates are positive numbers separated by commas")
    return rates


def _floors(text: str) -> tuple[str, ...]:
    names = () if text == "none" else tuple(text.split(","))
    for name in names:
        if name not in (*STRATEGIES, PROTOTYPE):
            raise argparse.ArgumentTypeError(f"unknown floor strategy {name!r}")
    return names


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--clients", type=int, default=1000)
    extra.add_argument("--rates", type=_rates, default=(1.0, 5.0))
    extra.add_argument("--seconds", type=float)
    extra.add_argument("--client-processes", type=int, default=1)
    extra.add_argument("--profile", type=Path)
    extra.add_argument("--floors", type=_floors, default=(*STRATEGIES, PROTOTYPE))
    extra.add_argument("--detail", action="store_true")
    known, rest = extra.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        print(
            "fanout options: --clients N (1000), --rates TXN_PER_S,... (1,5), --seconds S"
            " (6; 3 with --quick), --client-processes N (1), --profile DIR (py-spy --native of the"
            " service during a sustained run), --floors NAME,... (writers,broadcaster,prebuilt;"
            " 'none': ours alone, nothing recorded), --detail (the slowest transactions of each"
            " paced run)"
        )
    args = parse_args(
        rest,
        prog="python -m benches fanout",
        description=(
            "Postgres transaction -> 1,000 Satellite clients, against a bare trio-websocket"
            " broadcast of the same frame."
        ),
        rows_help="transactions per sustained run",
        quick_rows=20,
        full_rows=50,
    )
    if "--repeat" not in rest:
        args.repeat = 1 if args.quick else 2
    for key, value in vars(known).items():
        setattr(args, key, value)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 6.0
    if set(args.floors) != {*STRATEGIES, PROTOTYPE}:
        args.record = False  # a partial run is not a result
    return args


# -- processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class JsonProcess:
    """A child speaking JSON lines: commands on its stdin, events on its stdout."""

    def __init__(self, name: str, process: trio.Process) -> None:
        self.name = name
        self.process = process
        self._buf = b""
        self._events: collections.deque[dict[str, Any]] = collections.deque()

    @classmethod
    async def start(cls, nursery: trio.Nursery, name: str, command: list[str]) -> JsonProcess:
        return cls(name, await nursery.start(_child(command, None)))

    async def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(command).encode() + b"\n")

    async def event(self, kind: str, within: float) -> dict[str, Any]:
        """The next event of ``kind`` (errors from the child raise)."""
        assert self.process.stdout is not None
        with trio.fail_after(within):
            while True:
                while self._events:
                    event = self._events.popleft()
                    if event["event"] == "error":
                        raise RuntimeError(f"{self.name}: {event['message']}")
                    if event["event"] == kind:
                        return event
                data = await self.process.stdout.receive_some(1 << 20)
                if not data:
                    raise RuntimeError(f"{self.name} exited ({self.process.poll()})")
                self._buf += data
                *lines, self._buf = self._buf.split(b"\n")
                self._events.extend(json.loads(line) for line in lines if line.strip())


def _child(command: list[str], env: dict[str, str] | None, stderr: Any = None) -> Any:
    """``trio.run_process`` for ``nursery.start``: the child with pipes on stdin and stdout."""

    async def run(task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.run_process(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            cwd=REPO_ROOT,
            check=False,
            task_status=task_status,
        )

    return run


class ClientPool:
    """The client processes, commanded together; each holds its share of every group."""

    def __init__(self, procs: list[JsonProcess]) -> None:
        self.procs = procs

    def shares(self, n: int) -> list[int]:
        k = len(self.procs)
        return [n // k + (i < n % k) for i in range(k)]

    async def connect(
        self, group: str, port: int, n: int, kind: str, within: float
    ) -> tuple[float, int]:
        """Seconds until every connection is live, and how many subscriptions were retried."""
        start = time.perf_counter()
        for i, (proc, share) in enumerate(zip(self.procs, self.shares(n), strict=True)):
            await proc.send(
                cmd="connect",
                group=group,
                port=port,
                n=share,
                kind=kind,
                concurrency=CONNECTING,
                prefix=f"{group}-{os.getpid()}-{i}",
            )
        retries = 0
        for proc in self.procs:
            retries += (await proc.event("connected", within))["retries"]
        return time.perf_counter() - start, retries

    async def arm(self, group: str, count: int, capture: bool = False) -> None:
        for proc in self.procs:
            await proc.send(
                cmd="measure", group=group, count=count, ack_every=ACK_EVERY, capture=capture
            )
        for proc in self.procs:
            await proc.event("armed", 10)

    async def measured(self, group: str, within: float) -> Delivery:
        events = []
        try:
            for proc in self.procs:
                events.append(await proc.event("measured", within))
        except trio.TooSlowError:
            for proc in self.procs[len(events) :]:
                await proc.send(cmd="report", group=group)
                events.append(await proc.event("measured", 10))
            raise RuntimeError(
                f"{group}: not every client got every transaction in {within:.0f} s: "
                + "; ".join(f"{e['received']:,} of {e['expected']:,}" for e in events)
            ) from None
        return Delivery(
            hist=Histogram.merged(Histogram.from_json(e["hist"]) for e in events),
            first_commit=min(e["first_commit_ms"] for e in events) / 1000,
            last_receipt=max(e["last_receipt"] for e in events),
            client_cpu=sum(e["cpu"] for e in events),
            frame=next((base64.b64decode(e["frame"]) for e in events if e["frame"]), None),
            per_txn=_merge_per_txn(e.get("per_txn", []) for e in events),
        )


def _merge_per_txn(reports: Iterable[list[list[float]]]) -> list[list[float]]:
    """The client processes' per-transaction figures, as one list by commit time:
    ``[transaction id, commit time (ms), deliveries, worst latency (ms), first and last
    receipt (s)]``."""
    merged: dict[tuple[float, float], list[float]] = {}
    for report in reports:
        for txid, ts, count, worst, first, last in report:
            row = merged.get((txid, ts))
            if row is None:
                merged[(txid, ts)] = [txid, ts, count, worst, first, last]
            else:
                row[2] += count
                row[3] = max(row[3], worst)
                row[4] = min(row[4], first)
                row[5] = max(row[5], last)
    return sorted(merged.values(), key=lambda row: row[1])


@dataclasses.dataclass(frozen=True)
class Delivery:
    hist: Histogram
    first_commit: float
    last_receipt: float
    client_cpu: float
    frame: bytes | None
    per_txn: list[list[float]]

    @property
    def seconds(self) -> float:
        return self.last_receipt - self.first_commit


@dataclasses.dataclass(frozen=True)
class Run:
    """One sustained or paced run of one side."""

    txns: int
    clients: int
    seconds: float
    server_cpu: float
    client_cpu: float
    hist: Histogram
    per_txn: list[list[float]] = dataclasses.field(default_factory=list)

    @property
    def txn_per_s(self) -> float:
        return self.txns / self.seconds

    @property
    def messages_per_s(self) -> float:
        return self.txn_per_s * self.clients

    @property
    def cpu_us_per_message(self) -> float:
        return self.server_cpu * 1e6 / (self.txns * self.clients)

    @property
    def client_us_per_message(self) -> float:
        """The client processes' CPU per message received (µs)."""
        return self.client_cpu * 1e6 / (self.txns * self.clients)


# -- the service and Postgres ------------------------------------------------------------------


def _database_url(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(dbname)))


async def _drop_database(admin: Connection) -> None:
    await admin.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
        f" WHERE database = '{DATABASE}' AND NOT active"
    )
    await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


async def _http_status(port: int, path: str) -> int:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode()
        )
        data = await stream.receive_some(4096)
    return int(data.split(b" ", 2)[1]) if data else 0


def _service_command() -> list[str]:
    script = Path(sys.executable).with_name("electric-trio")
    if script.exists():
        return [str(script), "serve"]
    return [
        sys.executable,
        "-c",
        "import sys; from electric_trio.cli import main; sys.exit(main(['serve']))",
    ]


@dataclasses.dataclass
class Side:
    """One server (ours, or a floor strategy) and what was measured of it."""

    name: str
    pid: int
    group: str
    rss_before: int = 0
    rss_after: int = 0
    connect_seconds: float = 0.0
    retries: int = 0
    sustained: list[Run] = dataclasses.field(default_factory=list)
    paced: dict[float, Run] = dataclasses.field(default_factory=dict)

    def kib_per_client(self, clients: int) -> float:
        return (self.rss_after - self.rss_before) / clients


class Writer:
    """Commits the workload: transactions of 10 rows, each its own ``INSERT ... SELECT``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.next_id = 1

    async def commit(self) -> None:
        first = self.next_id
        self.next_id += ROWS_PER_TRANSACTION
        await self.conn.execute(
            f"INSERT INTO items (id, v) SELECT g, 'value ' || g FROM generate_series({first},"
            f" {first + ROWS_PER_TRANSACTION - 1}) g"
        )

    async def burst(self, count: int) -> None:
        for _ in range(count):
            await self.commit()

    async def paced(self, count: int, rate: float) -> None:
        start = trio.current_time()
        for i in range(count):
            await trio.sleep_until(start + i / rate)
            await self.commit()


# -- the run -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Results:
    ours: Side | None = None
    floor: dict[str, Side] = dataclasses.field(default_factory=dict)
    frame_len: int = 0
    server_version: str = ""
    profile: str | None = None
    client_cpu_share: list[str] = dataclasses.field(default_factory=list)
    service_log: Path = Path(os.devnull)


async def _bench(url: str, args: argparse.Namespace, progress: Progress) -> Results:
    results = Results()
    results.service_log = Path(tempfile.gettempdir()) / f"electric-bench-fanout-{os.getpid()}.log"
    async with await connect(url) as admin:
        await _drop_database(admin)
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        results.server_version = str(await admin.fetchval("SHOW server_version"))
    db_url = _database_url(url, DATABASE)
    try:
        async with trio.open_nursery() as nursery:
            await _run(nursery, db_url, args, progress, results)
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


async def _run(
    nursery: trio.Nursery,
    db_url: str,
    args: argparse.Namespace,
    progress: Progress,
    results: Results,
) -> None:
    n = args.clients
    http_port = _free_port()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=db_url,
        HTTP_PORT=str(http_port),
        PG_PROXY_PORT=str(_free_port()),
        PG_PROXY_PASSWORD="bench-proxy",
        AUTH_MODE="insecure",
        ELECTRIC_WRITE_TO_PG_MODE="direct_writes",
        ELECTRIC_INSTANCE_ID="bench-fanout",
        LOG_LEVEL="warning",
    )
    progress.step(
        f"starting the service ({' '.join(_service_command())}) on port {http_port},"
        f" log in {results.service_log}"
    )
    # Its log (warnings only) goes to a file: clients cut off at the end make it talk.
    log = results.service_log.open("wb")
    service: trio.Process = await nursery.start(_child(_service_command(), env, log))
    await wait_ready(http_port, service)
    clients = ClientPool(
        [
            await JsonProcess.start(
                nursery, f"clients {i}", [sys.executable, "-m", "benches._fanout_clients"]
            )
            for i in range(args.client_processes)
        ]
    )
    async with await connect(db_url) as c:
        await c.execute(
            "BEGIN; CALL electric.migration_version('1');"
            " CREATE TABLE items (id int8 PRIMARY KEY, v text);"
            " CALL electric.electrify('items'); COMMIT;"
        )
        # The first client to subscribe waits until the service knows the table.
        with trio.fail_after(30):
            while True:
                try:
                    await clients.procs[0].send(
                        cmd="connect",
                        group="probe",
                        port=http_port,
                        n=1,
                        kind="electric",
                        prefix=f"probe-{time.monotonic_ns()}",
                    )
                    await clients.procs[0].event("connected", 10)
                    break
                except RuntimeError:
                    await trio.sleep(0.3)
        await clients.procs[0].send(cmd="close", group="probe")
        await clients.procs[0].event("closed", 10)
        await trio.sleep(1.0)

        ours = Side("ours", service.pid, "ours")
        results.ours = ours
        ours.rss_before = rss_kib(service.pid)
        progress.step(f"service RSS {ours.rss_before:,} KiB; connecting {n:,} clients")
        ours.connect_seconds, ours.retries = await clients.connect(
            "ours", http_port, n, "electric", 300
        )
        await trio.sleep(2.0)
        ours.rss_after = rss_kib(service.pid)
        progress.step(
            f"{n:,} clients subscribed in {ours.connect_seconds:.1f} s; service RSS"
            f" {ours.rss_after:,} KiB ({ours.kib_per_client(n):.1f} KiB per client)"
        )

        writer = Writer(c)
        # Warm-up: one transaction; its frame is what the floor broadcasts.
        await clients.arm("ours", 1, capture=True)
        await writer.commit()
        warm = await clients.measured("ours", 60)
        assert warm.frame is not None
        frame = warm.frame
        results.frame_len = len(frame)
        begin = oplog_begin(frame)
        progress.step(f"warm-up delivered; SatOpLog frame of {len(frame)} bytes ({begin})")

        floor_proc = await JsonProcess.start(
            nursery, "floor", [sys.executable, "-m", "benches._fanout_floor"]
        )
        listening = await floor_proc.event("listening", 30)
        floor_pid = int(listening["pid"])
        await trio.sleep(0.5)
        floor_before = rss_kib(floor_pid)
        floor_seconds, _ = await clients.connect("floor", listening["port"], n, "plain", 300)
        await trio.sleep(2.0)
        floor_after = rss_kib(floor_pid)
        for strategy in (*STRATEGIES, PROTOTYPE):
            results.floor[strategy] = Side(
                STRATEGY_NAMES[strategy],
                floor_pid,
                "floor",
                floor_before,
                floor_after,
                floor_seconds,
            )
        progress.step(
            f"floor: {n:,} connections in {floor_seconds:.1f} s; RSS {floor_before:,} ->"
            f" {floor_after:,} KiB ({(floor_after - floor_before) / n:.1f} KiB per client)"
        )

        async def floor_run(strategy: str, count: int, rate: float | None) -> Run:
            await clients.arm("floor", count)
            cpu = cpu_seconds(floor_pid)
            await floor_proc.send(
                cmd="broadcast",
                strategy=strategy,
                count=count,
                rate=rate,
                frame=base64.b64encode(frame).decode(),
            )
            delivery = await clients.measured("floor", 60 + count * n / 2000)
            await floor_proc.event("broadcasted", 30)
            return Run(
                count,
                n,
                delivery.seconds,
                cpu_seconds(floor_pid) - cpu,
                delivery.client_cpu,
                delivery.hist,
                delivery.per_txn,
            )

        async def ours_run(count: int, rate: float | None, profile: Path | None = None) -> Run:
            await clients.arm("ours", count)
            cpu = cpu_seconds(service.pid)
            raw = None if profile is None else profile / "service.txt"
            async with profiled(service.pid, raw, native=True):
                if rate is None:
                    await writer.burst(count)
                else:
                    await writer.paced(count, rate)
                delivery = await clients.measured("ours", 60 + count * n / 500)
            return Run(
                count,
                n,
                delivery.seconds,
                cpu_seconds(service.pid) - cpu,
                delivery.client_cpu,
                delivery.hist,
                delivery.per_txn,
            )

        rows = args.rows
        for i in range(args.repeat):
            profile = args.profile if i == 0 else None
            run = await ours_run(rows, None, profile)
            ours.sustained.append(run)
            line = [
                f"ours {run.messages_per_s:,.0f} msg/s ({run.txn_per_s:.1f} txn/s,"
                f" {run.cpu_us_per_message:.1f} µs CPU/msg, clients"
                f" {run.client_us_per_message:.1f})"
            ]
            for strategy in args.floors:
                run = await floor_run(strategy, rows, None)
                results.floor[strategy].sustained.append(run)
                line.append(
                    f"{strategy} {run.messages_per_s:,.0f} msg/s"
                    f" ({run.cpu_us_per_message:.1f} µs CPU/msg, clients"
                    f" {run.client_us_per_message:.1f})"
                )
            progress.step(f"sustained {i + 1}/{args.repeat}: " + "; ".join(line))

        for rate in args.rates:
            count = max(1, round(rate * args.seconds))
            run = ours.paced[rate] = await ours_run(count, rate)
            line = [_latency("ours", run)]
            details = [_slowest("ours", run)]
            for strategy in args.floors:
                run = results.floor[strategy].paced[rate] = await floor_run(strategy, count, rate)
                line.append(_latency(strategy, run))
                details.append(_slowest(strategy, run))
            progress.step(f"paced at {rate:g} txn/s: " + "; ".join(line))
            if args.detail:
                print("\n".join(details), file=sys.stderr, flush=True)
        every = ours.sustained + [r for s in results.floor.values() for r in s.sustained]
        results.client_cpu_share = [f"{r.client_cpu / r.seconds:.2f}" for r in every]
        if args.profile is not None:
            raw = args.profile / "service.txt"
            total, inclusive, own = summarize(raw.read_text().splitlines(), top=30)
            lines = [f"{total} samples of the service during sustained run 1 (py-spy raw: {raw})"]
            lines += ["inclusive:"] + [f"  {share:6.1%}  {name}" for name, share in inclusive]
            lines += ["self:"] + [f"  {share:6.1%}  {name}" for name, share in own]
            (args.profile / "summary.txt").write_text("\n".join(lines) + "\n")
            print("\n".join(lines), file=sys.stderr, flush=True)
            results.profile = ", ".join(f"{name} {share:.0%}" for name, share in own[:8])
        for proc in [*clients.procs, floor_proc]:
            assert proc.process.stdin is not None
            await proc.process.stdin.aclose()
        service.terminate()
        with trio.move_on_after(10):
            await service.wait()


def _latency(name: str, run: Run) -> str:
    return (
        f"{name} p50 {run.hist.percentile(50):.1f} ms, p99 {run.hist.percentile(99):.1f} ms"
        f" ({run.hist.count:,} deliveries)"
    )


def _slowest(name: str, run: Run, top: int = 5) -> str:
    """The transactions of a run with the worst deliveries: when each was committed (s from
    the first), its worst latency and the spread of its receipts."""
    if not run.per_txn:
        return f"  {name}: no per-transaction figures"
    start = run.per_txn[0][1]
    worst = sorted(run.per_txn, key=lambda row: -row[3])[:top]
    return f"  {name} slowest of {len(run.per_txn)}: " + ", ".join(
        f"@{(ts - start) / 1000:.1f}s {worst_ms:.0f} ms"
        f" (first {first * 1000 - ts:.0f}, spread {(last - first) * 1000:.0f} ms, n={count:.0f})"
        for _, ts, count, worst_ms, first, last in worst
    )


def _service_code() -> str:
    where = Path(electric_trio.__file__).resolve().parent
    if where.is_relative_to(REPO_ROOT):
        return f"this checkout ({where.relative_to(REPO_ROOT)})"
    return f"electric_trio from {where} (PYTHONPATH), not this checkout"


def _p99_verdict(ours: Run, floor: Run) -> str:
    a, b = ours.hist.percentile(99), floor.hist.percentile(99)
    return f"{a:.1f} ms vs {b:.1f} ms, {'pass' if a <= b else 'FAIL'}"


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with postgres(progress) as target:
        results = trio.run(_bench, target.url, args, progress)
    ours = results.ours
    assert ours is not None
    n = args.clients
    if set(args.floors) != {*STRATEGIES, PROTOTYPE}:
        progress.step("not every floor ran: no report (see the lines above)")
        return 0
    measurements = tuple(
        Measurement(
            figure=f"sustained delivery vs {STRATEGY_NAMES[s]}, messages/s",
            unit="msg/s",
            ours=tuple(r.messages_per_s for r in ours.sustained),
            peer=tuple(r.messages_per_s for r in results.floor[s].sustained),
            target=TARGET,
        )
        for s in STRATEGIES
    )
    floors = results.floor
    kib = ours.kib_per_client(n)
    floor_kib = floors[STRATEGIES[0]].kib_per_client(n)
    latency_ok = all(
        ours.paced[rate].hist.percentile(99) <= floors[s].paced[rate].hist.percentile(99)
        for rate in args.rates
        for s in STRATEGIES
    )
    memory_ok = kib <= MAX_KIB_PER_CLIENT

    def best(side: Side) -> Run:
        return max(side.sustained, key=lambda r: r.messages_per_s)

    facts |= {
        "PostgreSQL": f"{results.server_version} (embedded, fsync on)",
        "Peer": "trio-websocket 0.12 (wsproto) server in its own process, same client processes",
        "Frame": f"{results.frame_len} bytes (type byte + SatOpLog: begin, {ROWS_PER_TRANSACTION}"
        " inserts, commit), the one the service sent in the warm-up",
        "Delivered txn/s (best)": "; ".join(
            [f"ours {best(ours).txn_per_s:.1f}"]
            + [f"{s} {best(floors[s]).txn_per_s:.1f}" for s in STRATEGIES]
        ),
    }
    for rate in args.rates:
        facts[f"Paced at {rate:g} txn/s ({rate * n:,.0f} msg/s), latency p50 / p99"] = "; ".join(
            f"{name} {run.hist.percentile(50):.1f} / {run.hist.percentile(99):.1f} ms"
            for name, run in [("ours", ours.paced[rate])]
            + [(s, floors[s].paced[rate]) for s in STRATEGIES]
        )
        facts[f"p99 at {rate:g} txn/s, ours vs floor (target: no worse)"] = "; ".join(
            f"{s}: {_p99_verdict(ours.paced[rate], floors[s].paced[rate])}" for s in STRATEGIES
        )
    facts |= {
        "Memory per idle client (VmRSS delta / clients; target <= 64 KiB)": (
            f"ours {kib:.1f} KiB ({ours.rss_before:,} -> {ours.rss_after:,} KiB),"
            f" {'pass' if memory_ok else 'FAIL'}; trio-websocket {floor_kib:.1f} KiB"
        ),
        "Server CPU per delivered message, best sustained run": "; ".join(
            [f"ours {best(ours).cpu_us_per_message:.1f} µs"]
            + [f"{s} {best(floors[s]).cpu_us_per_message:.1f} µs" for s in STRATEGIES]
        ),
        "Client processes busy (CPU / wall), every sustained run": ", ".join(
            results.client_cpu_share
        ),
        "Service code": _service_code(),
        "Connect + subscribe time": f"ours {ours.connect_seconds:.1f} s ({CONNECTING} at a time,"
        f" {ours.retries} subscriptions retried after 'Internal error while checking data"
        f" availability'); trio-websocket"
        f" {floors[STRATEGIES[0]].connect_seconds:.1f} s (upgrade only)",
    }
    proto = floors[PROTOTYPE]
    facts[
        "The recommended write path, prototyped in the floor's process (not a floor: one"
        " WebSocket frame built per message, one os.write per socket, no await per client)"
    ] = (
        f"{best(proto).messages_per_s:,.0f} msg/s"
        f" ({best(proto).messages_per_s / best(ours).messages_per_s:.1f}x ours),"
        f" {best(proto).cpu_us_per_message:.1f} µs CPU/msg; paced p50 / p99 "
        + "; ".join(
            f"{rate:g} txn/s {run.hist.percentile(50):.1f} / {run.hist.percentile(99):.1f} ms"
            for rate, run in proto.paced.items()
        )
    )
    if results.profile:
        facts["Service profile, top self time (py-spy, sustained run 1)"] = results.profile
    report = Report(
        name=NAME,
        title="one transaction to 1,000 Satellite clients, against a bare trio-websocket broadcast",
        description=DESCRIPTION.format(
            per_txn=ROWS_PER_TRANSACTION,
            clients=n,
            frame_len=results.frame_len,
            procs=args.client_processes,
            ack=ACK_EVERY,
            rows=args.rows,
            repeat=args.repeat,
            rates=" and ".join(f"{r:g}" for r in args.rates),
            seconds=args.seconds,
        ),
        peer="trio-websocket",
        measurements=measurements,
        command=command_line([NAME, *argv]),
        settings=(
            f"{n:,} clients, {args.rows} transactions per sustained run, best of {args.repeat};"
            f" paced {', '.join(f'{r:g}' for r in args.rates)} txn/s for {args.seconds:g} s each"
        ),
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--quick or --no-record)")
    return 0 if report.passed and latency_ok and memory_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
