"""Client writes into Postgres (``ELECTRIC_WRITE_TO_PG_MODE=direct_writes``).

Four figures, each against a peer measured in the same run on the same server:

* end to end: 50 raw Satellite clients, each sending 1-row transactions as fast as the echoes
  allow (the next one once the previous came back through replication), to the service running
  in its own process; committed transactions per second, against the same rows inserted by a
  plain psycopg connection per client (50 threads), one row per transaction, into the same
  electrified table (Postgres-side writes); the same in ``logical_replication`` mode is reported
  beside it;
* the direct writer alone: the same clients' transactions given to it directly (no WebSocket,
  no echo), against the same peer: what the writing costs, apart from the rest of the service;
* large transactions (``--rows`` changes, 5,000 by default) through the direct writer: its COPY
  path (pgpq binary COPY into a staging table, one ``INSERT … SELECT`` per table) against its
  row-insert path (one simple query of ``INSERT`` statements); rows per second;
* 1-row transactions through the direct writer: the row-insert path against the COPY path
  forced on them (why COPY starts at 1,000 changes); transactions per second.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
import trio

from electric_trio.ddlx import install_electric_schema
from electric_trio.ddlx.schema import Column, ColumnType, Table
from electric_trio.pg import ConnectParams, connect
from electric_trio.satellite import messages as m
from electric_trio.writes import ClientWrite
from electric_trio.writes.direct import CONNECTIONS, DirectWriter
from electric_trio.writes.rows import ack_row, change_rows, tag_literal

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

NAME = "writes"
DATABASE = "electric_bench_writes"
CLIENTS = 50
#: Transactions a client keeps sent and not yet echoed back (the official client sends its
#: whole oplog without waiting; the echo is how a client learns its write is in Postgres).
WINDOW = 8
#: The issue's target for the end-to-end figure; COPY must beat row inserts on large
#: transactions, and row inserts must beat COPY on 1-row ones.
TARGET_E2E = 0.5
TARGET_PATHS = 1.0
COLUMNS = "id int8 PRIMARY KEY, n int4, label text, x float8, flag bool, ts timestamptz"
ITEMS = Table(
    schema="public",
    name="items",
    columns=(
        Column("id", ColumnType("int8"), True),
        Column("n", ColumnType("int4")),
        Column("label", ColumnType("text")),
        Column("x", ColumnType("float8")),
        Column("flag", ColumnType("bool")),
        Column("ts", ColumnType("timestamptz")),
    ),
    primary_key=("id",),
)
#: The direct writer's figures write here; the end-to-end ones to ``items`` and the peer's.
WRITER_ITEMS = Table(
    schema="public", name="writer_items", columns=ITEMS.columns, primary_key=("id",)
)
PEER_TABLE = "items_peer"

DESCRIPTION = """\
A 6-column electrified table (int8 key, int4, text of 32 characters, float8, bool,
timestamptz). *End to end*: {clients} raw Satellite clients (WebSocket, in the benchmark's
process) each send {per_client} 1-row transactions to the service running in its own process
(`electric-trio serve`, direct_writes), each keeping up to {window} transactions sent and not
yet echoed back through Postgres's replication (the echo is how a client learns its write is in
Postgres; the official client sends its whole oplog without waiting), and, beside it, the same
clients sending each transaction only once the previous one's echo came back; the figure is
committed transactions per second; the peer is
{clients} psycopg connections (one thread each) inserting the same rows, one per transaction,
into an electrified table of the same shape. *Direct writer alone*: the same {clients} clients'
1-row transactions given straight to the direct writer (its {connections} connections, no
WebSocket, no echo), against the same psycopg peer. *Large*: one client transaction of {rows:,}
inserts given to the direct writer, its COPY path (pgpq binary COPY into a staging table, one
`INSERT ... SELECT` per table) against its row-insert path (`INSERT` statements in one simple
query). *Small*: {small} 1-row transactions given to the direct writer one after the other, the
row-insert path against the COPY path forced on them. Every transaction runs the conflict
resolution triggers (a client write is a main-row insert parked in the shadow row, then a shadow
insert that resolves it). A warm-up run per side, then best of {repeat} runs per side,
alternating which side goes first. Client and server share the machine (2 cores here).
"""


#: The parts ``--only`` can name.
PARTS = ("e2e", "lr", "writer")


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--only", choices=PARTS, action="append")
    extra.add_argument("--profile")
    known, rest = extra.parse_known_args(argv)
    args = parse_args(
        rest,
        prog="python -m benches writes",
        description="Client writes: end to end against psycopg, COPY against row inserts.",
        rows_help="changes in the large transaction",
        quick_rows=2_000,
        full_rows=5_000,
    )
    # --only e2e|lr|writer (repeatable): those parts alone (end to end in direct_writes, in
    # logical_replication, the direct writer's figures), never recorded; --profile DIR: py-spy
    # records the service process of each end-to-end run into DIR (its figures are then not
    # comparable with the others').
    args.only = tuple(known.only or PARTS)
    args.profile = known.profile
    if known.only:
        args.record = False
    return args


def _database_url(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(dbname)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_keys = itertools.count(1)


def _row(key: int) -> tuple[str, ...]:
    return (str(key), str(key % 1000), f"{key:032x}", str(key / 7), "t", "2024-01-01 00:00:00+00")


def _client_write(client: str, lsn: int, changes: int) -> ClientWrite:
    """A client transaction of ``changes`` inserts into ``writer_items``."""
    ms = 1_700_000_000_000 + lsn
    tag = tag_literal(ms, client)
    raw = lsn.to_bytes(4, "big")
    rows = []
    for _ in range(changes):
        row = _row(next(_keys))
        rows.extend(change_rows(WRITER_ITEMS, "insert", row, tag, "{}", [True] * 5))
    return ClientWrite(client, raw, ms, (ack_row(client, raw), *rows))


# -- the direct writer: COPY against row inserts ----------------------------------------------


async def _writer_rates(
    url: str, args: argparse.Namespace, progress: Progress
) -> dict[str, dict[str, list[float]]]:
    params = ConnectParams.from_url(url)
    writers = {
        "copy": DirectWriter(params, copy_threshold=1),
        "rows": DirectWriter(params, copy_threshold=None),
    }
    lsns = itertools.count(1)
    small = max(50, args.rows // 10)

    async def large(path: str) -> float:
        write = _client_write(f"large-{path}", next(lsns), args.rows)
        gc.collect()
        start = time.perf_counter()
        await writers[path].write(write)
        return args.rows / (time.perf_counter() - start)

    async def small_run(path: str) -> float:
        writes = [_client_write(f"small-{path}", next(lsns), 1) for _ in range(small)]
        gc.collect()
        start = time.perf_counter()
        for write in writes:
            await writers[path].write(write)
        return small / (time.perf_counter() - start)

    figures: dict[str, Callable[[str], Awaitable[float]]] = {"large": large, "small": small_run}
    rates: dict[str, dict[str, list[float]]] = {f: {"copy": [], "rows": []} for f in figures}
    try:
        for figure, run in figures.items():
            for path in ("copy", "rows"):
                rate = await run(path)
                progress.step(f"warm-up {figure} {path}: {rate:,.0f}/s")
        for i in range(args.repeat):
            for figure, run in figures.items():
                order = ("copy", "rows") if i % 2 == 0 else ("rows", "copy")
                got = {path: await run(path) for path in order}
                for path, rate in got.items():
                    rates[figure][path].append(rate)
                progress.step(
                    f"run {i + 1}/{args.repeat} {figure}: COPY {got['copy']:,.0f}/s,"
                    f" rows {got['rows']:,.0f}/s"
                )
    finally:
        for writer in writers.values():
            await writer.aclose()
    return rates


async def _writer_concurrent(
    url: str, args: argparse.Namespace, progress: Progress
) -> tuple[list[float], list[float]]:
    """The direct writer alone (no WebSocket, no echo): the 1-row transactions of ``CLIENTS``
    clients given to it at once, against as many psycopg connections doing the same."""
    per_client = 20 if args.quick else 60
    runs = itertools.count()

    async def ours() -> float:
        run = next(runs)
        writer = DirectWriter(ConnectParams.from_url(url))
        writes = [
            [_client_write(f"concurrent-{run}-{i}", lsn, 1) for lsn in range(1, per_client + 1)]
            for i in range(CLIENTS)
        ]
        ends: list[float] = []

        async def client(mine: list[ClientWrite]) -> None:
            for write in mine:
                await writer.write(write)
            ends.append(time.perf_counter())

        gc.collect()
        start = time.perf_counter()
        try:
            async with trio.open_nursery() as nursery:
                for mine in writes:
                    nursery.start_soon(client, mine)
        finally:
            await writer.aclose()
        return CLIENTS * per_client / (max(ends) - start)

    got: dict[str, list[float]] = {"ours": [], "psycopg": []}
    for i in range(args.repeat + 1):
        order = ("ours", "psycopg") if i % 2 == 0 else ("psycopg", "ours")
        rates = {}
        for side in order:
            if side == "ours":
                rates[side] = await ours()
            else:
                rates[side] = await trio.to_thread.run_sync(
                    _e2e_peer, url, per_client, "writer_peer"
                )
        label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
        progress.step(
            f"{label} direct writer, {CLIENTS} clients: ours {rates['ours']:,.0f} tx/s,"
            f" psycopg {rates['psycopg']:,.0f} tx/s"
        )
        if i:
            for side, rate in rates.items():
                got[side].append(rate)
    return got["ours"], got["psycopg"]


# -- end to end: Satellite clients against psycopg connections ---------------------------------


def _token(client: str) -> str:
    import base64
    import json

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'sub': client})}."


class _LeanSocket:
    """The benchmark's side of a Satellite WebSocket, kept lean (the clients share the machine
    with the service and Postgres): the upgrade written by hand, frames masked with a zero key
    (valid WebSocket: the payload goes as is), frames queued by :meth:`queue` sent in one write
    by :meth:`flush`, server frames cut from the stream without a protocol object."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._out: list[bytes] = []

    @classmethod
    async def connect(cls, port: int) -> _LeanSocket:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        lean = cls(stream)
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: electric.0.12\r\n\r\n"
        )
        while b"\r\n\r\n" not in lean._buffer:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("the service closed the connection during the upgrade")
            lean._buffer += data
        head, _, rest = bytes(lean._buffer).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"upgrade refused: {head[:100]!r}")
        lean._buffer = bytearray(rest)
        return lean

    def queue(self, message: m.FrameMessage, opcode: int = 0x2) -> None:
        payload = m.encode(message) if opcode == 0x2 else b""
        self._queue_raw(payload, opcode)

    def _queue_raw(self, payload: bytes, opcode: int) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        self._out.append(head + b"\0\0\0\0" + payload)

    async def flush(self) -> None:
        if self._out:
            data, self._out = b"".join(self._out), []
            await self._stream.send_all(data)

    async def send(self, message: m.FrameMessage) -> None:
        self.queue(message)
        await self.flush()

    async def receive(self) -> m.FrameMessage:
        """The next server message (pings answered on the way)."""
        while True:
            payload = self._next_frame()
            if payload is None:
                data = await self._stream.receive_some(65536)
                if not data:
                    raise ConnectionError("the service closed the connection")
                self._buffer += data
                continue
            opcode, body = payload
            if opcode == 0x2:
                return m.decode(body)
            if opcode == 0x9:
                self._queue_raw(body, 0xA)
                await self.flush()
            elif opcode == 0x8:
                code = int.from_bytes(body[:2], "big") if len(body) >= 2 else None
                raise ConnectionError(f"the service closed the connection: {code} {body[2:]!r}")

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        n = buf[1] & 0x7F
        start = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n, start = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n, start = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < start + n:
            return None
        opcode = buf[0] & 0x0F  # the service sends no fragmented messages
        body = bytes(buf[start : start + n])
        del buf[: start + n]
        return opcode, body

    async def aclose(self) -> None:
        """A close handshake (bounded), then the TCP connection closed."""
        with trio.move_on_after(5):
            try:
                self._queue_raw((1000).to_bytes(2, "big"), 0x8)
                await self.flush()
                while True:
                    await self.receive()
            except (ConnectionError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await self._stream.aclose()


async def _satellite_client(
    port: int,
    client: str,
    count: int,
    window: int,
    ready: trio.Event,
    go: trio.Event,
    done: list[float],
    setup: trio.Semaphore,
) -> None:
    await setup.acquire()  # a few connect at a time: startReplication is answered within 2.5 s
    ws = await _LeanSocket.connect(port)
    try:
        auth = m.SatAuthReq(id=client, token=_token(client))
        await ws.send(
            m.SatRpcRequest(method="authenticate", request_id=1, message=m.encode_message(auth))
        )
        started = False
        while not started:
            msg = await ws.receive()
            if isinstance(msg, m.SatRpcRequest) and msg.method == "startReplication":
                ws.queue(
                    m.SatRpcResponse(
                        method="startReplication",
                        request_id=msg.request_id,
                        message=m.encode_message(m.SatInStartReplicationResp()),
                    ),
                )
                start = m.SatInStartReplicationReq()
                await ws.send(
                    m.SatRpcRequest(
                        method="startReplication", request_id=2, message=m.encode_message(start)
                    ),
                )
            elif isinstance(msg, m.SatRpcResponse) and msg.method == "startReplication":
                started = True
        columns = tuple(
            m.SatRelationColumn(name=c.name, type="TEXT", is_nullable=c.name != "id")
            for c in ITEMS.columns
        )
        await ws.send(m.SatRelation(schema_name="public", table_name="items", columns=columns))
        setup.release()
        ready.set()
        await go.wait()
        sent = echoed = 0
        while echoed < count:
            # up to ``window`` transactions sent and not yet echoed back (the echo is the ack);
            # what is due (acknowledgements, transactions) goes out in one write
            while sent < count and sent - echoed < window:
                sent += 1
                values = tuple(v.encode() for v in _row(next(_keys)))
                ms = int(time.time() * 1000)
                row = m.SatOpRow(nulls_bitmask=b"\x00", values=values)
                begin = m.SatOpBegin(commit_timestamp=ms, lsn=sent.to_bytes(4, "big"))
                ops = (
                    m.SatTransOp(begin=begin),
                    m.SatTransOp(insert=m.SatOpInsert(relation_id=0, row_data=row)),
                    m.SatTransOp(commit=m.SatOpCommit()),
                )
                ws.queue(m.SatOpLog(ops=ops))
            await ws.flush()
            msg = await ws.receive()
            if isinstance(msg, m.SatOpLog) and msg.ops and msg.ops[0].begin is not None:
                begin = msg.ops[0].begin
                if begin.transaction_id is not None:  # every transaction is acknowledged
                    ws.queue(m.SatOpLogAck(transaction_id=begin.transaction_id, lsn=begin.lsn))
                if begin.origin == client:
                    echoed += 1
        await ws.flush()
        done.append(time.perf_counter())
    finally:
        await ws.aclose()


async def _e2e_ours(port: int, per_client: int, run: int, window: int) -> float:
    ready = [trio.Event() for _ in range(CLIENTS)]
    go = trio.Event()
    done: list[float] = []
    setup = trio.Semaphore(10)
    async with trio.open_nursery() as nursery:
        for i in range(CLIENTS):
            nursery.start_soon(
                _satellite_client,
                port,
                f"bench-{run}-{window}-{i}",
                per_client,
                window,
                ready[i],
                go,
                done,
                setup,
            )
        for event in ready:
            await event.wait()
        start = time.perf_counter()
        go.set()
    return CLIENTS * per_client / (max(done) - start)


def _e2e_peer(url: str, per_client: int, table: str = PEER_TABLE) -> float:
    barrier = threading.Barrier(CLIENTS + 1)
    ends: list[float] = []
    keys = [[next(_keys) for _ in range(per_client)] for _ in range(CLIENTS)]

    def worker(mine: list[int]) -> None:
        with psycopg.connect(url) as conn:
            barrier.wait()
            for key in mine:
                with conn.transaction():
                    conn.execute(
                        f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s, %s)",
                        _row(key),
                    )
            ends.append(time.perf_counter())

    threads = [threading.Thread(target=worker, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return CLIENTS * per_client / (max(ends) - start)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()


def _postgres_cpu(postmaster: int) -> float:
    """CPU seconds of a Postgres server: the postmaster, its live processes and those it
    reaped (backends that ended)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(int(x) for x in _stat(postmaster)[11:15])
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = _stat(int(name))
            except OSError:
                continue  # ended meanwhile
            if int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def _start_service(url: str, port: int, mode: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "HTTP_PORT": str(port),
        "PG_PROXY_PORT": str(_free_port()),
        "PG_PROXY_PASSWORD": "bench",
        "AUTH_MODE": "insecure",
        "ELECTRIC_WRITE_TO_PG_MODE": mode,
        "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
        "LOGICAL_PUBLISHER_PORT": str(_free_port()),
        "LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from electric_trio.cli import main; sys.exit(main())",
            "serve",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def _start_profiler(pid: int, directory: str, mode: str) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid`` into ``directory``/service-``mode``.txt (collapsed
    stacks; only samples holding the GIL: time in system calls, or waiting for the CPU there,
    left out)."""
    os.makedirs(directory, exist_ok=True)
    out = os.path.join(directory, f"service-{mode}.txt")
    spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return subprocess.Popen(
        [spy, "record", "--gil", "--format", "raw", "-p", str(pid), "-o", out],
        stdout=subprocess.DEVNULL,
    )


async def _e2e(
    db_url: str, args: argparse.Namespace, progress: Progress, mode: str
) -> dict[str, Any]:
    """Rates of the end-to-end runs: ``window`` (each client keeps up to ``WINDOW``
    transactions awaiting their echo), ``serial`` (one at a time) and ``peer`` (psycopg)."""
    per_client = 20 if args.quick else 60
    port = _free_port()
    proc = _start_service(db_url, port, mode)
    rates: dict[str, list[float]] = {"window": [], "serial": [], "peer": []}
    cpu: list[float] = []
    client_cpu: dict[str, list[float]] = {"window": [], "peer": []}
    pg_cpu: dict[str, list[float]] = {"window": [], "peer": []}
    profiler: subprocess.Popen[bytes] | None = None
    try:
        await wait_ready(port, proc)
        if args.profile:
            profiler = _start_profiler(proc.pid, args.profile, mode)
        async with await connect(db_url) as c:
            await c.execute(
                "BEGIN; CALL electric.migration_version('1');"
                f" CREATE TABLE items ({COLUMNS}); CALL electric.electrify('items');"
                f" CREATE TABLE {PEER_TABLE} ({COLUMNS}); CALL electric.electrify('{PEER_TABLE}');"
                " COMMIT"
            )
            # the backend's parent, read while the backend lives
            postmaster = int(_stat(int(await c.fetchval("SELECT pg_backend_pid()")))[1])
        await trio.sleep(1)  # the service applies the migration
        sides = ["window", "serial", "peer"]
        for i in range(args.repeat + 1):
            got: dict[str, float] = {}
            for side in sides[i % 3 :] + sides[: i % 3]:  # each side goes first in turn
                gc.collect()
                before = _cpu_seconds(proc.pid)
                own = time.process_time()
                pg = _postgres_cpu(postmaster)
                if side == "peer":
                    got[side] = await trio.to_thread.run_sync(_e2e_peer, db_url, per_client)
                else:
                    window = WINDOW if side == "window" else 1
                    got[side] = await _e2e_ours(port, per_client, i, window)
                if side == "serial":
                    continue
                n = CLIENTS * per_client
                if side == "window":
                    cpu.append((_cpu_seconds(proc.pid) - before) / n)
                client_cpu[side].append((time.process_time() - own) / n)
                pg_cpu[side].append((_postgres_cpu(postmaster) - pg) / n)
            label = "warm-up" if i == 0 else f"run {i}/{args.repeat}"
            progress.step(
                f"{label} end to end, {mode}: ours {got['window']:,.0f} tx/s"
                f" (one at a time {got['serial']:,.0f}), psycopg {got['peer']:,.0f} tx/s;"
                f" CPU ms per transaction: service {cpu[-1] * 1e3:.2f},"
                f" benchmark clients {client_cpu['window'][-1] * 1e3:.2f},"
                f" Postgres {pg_cpu['window'][-1] * 1e3:.2f}"
                f" (psycopg side: clients {client_cpu['peer'][-1] * 1e3:.2f},"
                f" Postgres {pg_cpu['peer'][-1] * 1e3:.2f})"
            )
            if i:
                for side in sides:
                    rates[side].append(got[side])
    finally:
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
        proc.terminate()
        proc.wait(timeout=30)
    return {
        **rates,
        "per_client": per_client,
        "cpu": min(cpu),
        "client_cpu": min(client_cpu["window"]),
        "pg_cpu": min(pg_cpu["window"]),
        "peer_client_cpu": min(client_cpu["peer"]),
        "peer_pg_cpu": min(pg_cpu["peer"]),
    }


async def _drop_database(url: str, name: str) -> None:
    db_url = _database_url(url, name)
    async with await connect(url) as admin:
        if await admin.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name):
            async with await connect(db_url) as c:
                # logical_replication mode leaves its subscription, which holds the database
                if await c.fetchval(
                    "SELECT count(*) FROM pg_subscription WHERE subname = 'postgres_1'"
                    " AND subdbid = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                ):
                    await c.execute(
                        "ALTER SUBSCRIPTION postgres_1 DISABLE;"
                        " ALTER SUBSCRIPTION postgres_1 SET (slot_name = NONE);"
                        " DROP SUBSCRIPTION postgres_1"
                    )
        await admin.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            f" WHERE database = '{name}' AND NOT active"
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def _bench(url: str, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    db_url = _database_url(url, DATABASE)
    lr_database = f"{DATABASE}_lr"
    for name in (DATABASE, lr_database):
        await _drop_database(url, name)
    async with await connect(url) as admin:
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        await admin.execute(f"CREATE DATABASE {lr_database}")
        server_version = str(await admin.fetchval("SHOW server_version"))
    lr: dict[str, Any] | str | None = None
    paths = concurrent = e2e = None
    try:
        async with await connect(db_url) as c:
            await install_electric_schema(c)
            await c.execute(
                f"CREATE TABLE writer_items ({COLUMNS}); CALL electric.electrify('writer_items');"
                f" CREATE TABLE writer_peer ({COLUMNS}); CALL electric.electrify('writer_peer')"
            )
        if "writer" in args.only:
            progress.step("direct writer: COPY against row inserts")
            paths = await _writer_rates(db_url, args, progress)
            progress.step(f"direct writer: {CLIENTS} clients at once against psycopg")
            concurrent = await _writer_concurrent(db_url, args, progress)
        if "e2e" in args.only:
            progress.step(f"end to end: {CLIENTS} clients against {CLIENTS} psycopg connections")
            e2e = await _e2e(db_url, args, progress, "direct_writes")
        if "lr" in args.only:
            try:
                lr = await _e2e(
                    _database_url(url, lr_database), args, progress, "logical_replication"
                )
            except Exception as e:  # reported, not fatal: the publisher is another issue's part
                lr = f"not measured: {type(e).__name__}: {e}"
                progress.step(f"logical_replication mode {lr}")
    finally:
        for name in (DATABASE, lr_database):
            await _drop_database(url, name)
    return {
        "paths": paths,
        "e2e": e2e,
        "lr": lr,
        "concurrent": concurrent,
        "server_version": server_version,
        "small": max(50, args.rows // 10),
    }


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    with postgres(progress) as target:
        results = trio.run(_bench, target.url, args, progress)
    paths, e2e, lr = results["paths"], results["e2e"], results["lr"]
    measurements: list[Measurement] = []
    facts_more: dict[str, str] = {}
    per_client = 20 if args.quick else 60
    if e2e is not None:
        per_client = e2e["per_client"]
        measurements += [
            Measurement(
                figure=f"end to end, {CLIENTS} clients, 1-row transactions, up to {WINDOW}"
                " awaiting their echo (peer: psycopg)",
                unit="tx/s",
                ours=tuple(e2e["window"]),
                peer=tuple(e2e["peer"]),
                target=TARGET_E2E,
            ),
            Measurement(
                figure=f"end to end, {CLIENTS} clients, one transaction at a time each (peer:"
                " psycopg; beside, not judged)",
                unit="tx/s",
                ours=tuple(e2e["serial"]),
                peer=tuple(e2e["peer"]),
                target=0.0,
            ),
        ]
    if paths is not None:
        measurements += [
            Measurement(
                figure=f"direct writer alone, {CLIENTS} clients, 1-row transactions"
                " (peer: psycopg)",
                unit="tx/s",
                ours=tuple(results["concurrent"][0]),
                peer=tuple(results["concurrent"][1]),
                target=TARGET_E2E,
            ),
            Measurement(
                figure=f"direct writer, {args.rows:,}-row transactions: COPY (peer: row inserts)",
                unit="rows/s",
                ours=tuple(paths["large"]["copy"]),
                peer=tuple(paths["large"]["rows"]),
                target=TARGET_PATHS,
            ),
            Measurement(
                figure="direct writer, 1-row transactions: row inserts (peer: COPY forced)",
                unit="tx/s",
                ours=tuple(paths["small"]["rows"]),
                peer=tuple(paths["small"]["copy"]),
                target=TARGET_PATHS,
            ),
        ]
    if isinstance(lr, str):
        facts_more["End to end in logical_replication mode (beside the figure, not judged)"] = lr
    elif lr is not None:
        lr_ours, lr_peer = lr["window"], lr["peer"]
        facts_more["End to end in logical_replication mode (beside the figure, not judged)"] = (
            f"best {max(lr_ours):,.0f} tx/s (runs {', '.join(f'{x:,.0f}' for x in lr_ours)}),"
            f" psycopg in the same runs best {max(lr_peer):,.0f} tx/s"
            f" ({max(lr_ours) / max(lr_peer):.2f}x); service CPU {lr['cpu'] * 1e3:.2f} ms per"
            f" transaction (the benchmark's clients {lr['client_cpu'] * 1e3:.2f} ms)"
        )
    facts |= facts_more
    facts |= {
        "PostgreSQL": f"{results['server_version']} ({target.description})",
        "Peer": f"psycopg {psycopg.__version__} (end to end); the direct writer's other path",
    }
    if e2e is not None:
        facts["CPU per end-to-end transaction (least of the runs)"] = (
            f"service {e2e['cpu'] * 1e3:.2f} ms, the benchmark's clients"
            f" {e2e['client_cpu'] * 1e3:.2f} ms, Postgres {e2e['pg_cpu'] * 1e3:.2f} ms;"
            f" psycopg side: clients {e2e['peer_client_cpu'] * 1e3:.2f} ms,"
            f" Postgres {e2e['peer_pg_cpu'] * 1e3:.2f} ms"
        )
    report = Report(
        name=NAME,
        title="Client writes (direct_writes): end to end against psycopg, COPY against inserts",
        description=DESCRIPTION.format(
            clients=CLIENTS,
            connections=CONNECTIONS,
            window=WINDOW,
            per_client=per_client,
            rows=args.rows,
            small=results["small"],
            repeat=args.repeat,
        ),
        peer="peer",
        measurements=tuple(measurements),
        command=command_line([NAME, *argv]),
        settings=f"{args.rows:,}-row large transactions, best of {args.repeat} runs per side",
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
