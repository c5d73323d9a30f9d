"""A soak run (issue 8): mixed load and faults against 200 clients for ``--minutes`` (30), then
the convergence check; not part of ``python -m benches`` without a name, nor of CI.

``python -m benches soak [--minutes M] [--clients N] [--keys fixed|growing] [--no-restarts]
[--no-pg-writes] [--no-client-writes] [--no-reconnects] [--no-bad-inputs] [--probe DIR
[--probe-frames 0] [--probe-trim]]``. It first builds HEAD (its Python
package and, without LTO, its Rust extension, in the temporary directory) and runs again on
that build, so that the other engineers' uncommitted edits and whatever extension they last
built stay out of the soak; ``ELECTRIC_*`` variables of its environment reach the service
(e.g. ``ELECTRIC_TXN_CACHE_SIZE``). The service runs as ``electric-trio serve`` in its own
process (AUTH_MODE=insecure, direct writes) on an embedded PostgreSQL (fsync on) whose port
stays the same across its restarts. Table ``items (id text,
grp int4, v int4)`` is electrified; an audit trigger (ENABLE ALWAYS) records every INSERT and
UPDATE of it in Postgres. ``--clients`` Python clients (:mod:`electric_trio.client`, each with
its own SQLite file, all in this process) each subscribe to the shape ``this.grp = K`` (K = the
client's number modulo GROUPS). During the run, at once:

- Postgres writes: one transaction every 0.25 s of 1-5 changes of random groups: with
  ``--keys fixed`` (the default: the data keeps its size, so memory that grows is a leak)
  upserts and deletes among ``--pg-keys`` (400) keys, rows moving between groups; with
  ``--keys growing`` upserts of keys from a range growing with the run;
- client writes: one every 0.5 s by a random connected client in its own group: fixed keys,
  an INSERT, UPDATE or DELETE of one of its CLIENT_KEYS keys; growing, an INSERT of a new key;
- reconnects: every 20 s, 10 random clients disconnect and connect again 1-3 s later (resume);
- bad inputs: every 15 s, a garbage HTTP request and a WebSocket with a malformed frame;
- service restarts: every ``--restart-every`` seconds (180; a quarter of a run shorter than 12
  minutes, 30 at least), SIGTERM and kill -9 in turn (the
  same ports; clients reconnect by themselves);
- Postgres fast restart (``pg_ctl stop -m fast``, start) at 40 % and 80 % of the run.

Then the load stops and every client must hold exactly Postgres's rows of its shape (waited for
at most 300 s), each client INSERT or UPDATE must appear once in the audit. The service's
VmRSS is sampled every 2 s, plotted to ``benches/plots/soak_rss.png`` and judged by
:func:`benches._soak_rss.verdict` (the slope over the last two thirds, the ratio of the last
third to the first). ``--probe DIR`` runs the service with tracemalloc and has it dump a
snapshot and the sizes of its long-lived state every ``--probe-every`` seconds; the growth
between each process's second and last probe is printed (a leak hunt: use it with
``--no-restarts`` and fewer clients). A leak's cause is split by leaving parts of the load out
(``--no-pg-writes``, ``--no-client-writes``, ``--no-reconnects``, ``--no-bad-inputs``); the
probe tells live native memory (malloc's bytes in use, the native objects alive) from
fragmentation (``--probe-trim``: what ``malloc_trim`` gives back) and from Python's own
(pymalloc's arenas, seen with ``--probe-frames 0`` only: tracemalloc hides them).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from electric_trio.client import (
    ElectricClient,
    ElectricConfig,
    Status,
    SubscriptionError,
    open_electric,
)
from electric_trio.client.schema import Column, DbSchema, Migration, TableSchema
from electric_trio.client.triggers import triggers_for
from electric_trio.ddlx.migration import apply_migration
from electric_trio.ddlx.schema import Schema
from electric_trio.pg import Connection, connect, parse_lsn

from . import _soak_rss as rss
from ._fanout_wire import insecure_token
from ._harness import (
    REPO_ROOT,
    Measurement,
    Progress,
    Report,
    command_line,
    machine_facts,
    wait_ready,
    write_section,
)

NAME = "soak"
DATABASE = "electric_soak"
VERSION = "20240101000000"
GROUPS = 20
#: Fixed keys: how many rows each client writes (its own keys).
CLIENT_KEYS = 3
DDL = "CREATE TABLE items (id text PRIMARY KEY, grp int4 NOT NULL, v int4 NOT NULL)"
MIGRATE = (
    f"BEGIN; CALL electric.migration_version('{VERSION}'); {DDL};"
    " CALL electric.electrify('items'); COMMIT"
)
AUDIT = (
    "CREATE TABLE items_audit (id text NOT NULL, op text NOT NULL, v int4 NOT NULL);"
    " CREATE FUNCTION items_audit() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN INSERT INTO public.items_audit (id, op, v) VALUES (NEW.id, TG_OP, NEW.v);"
    " RETURN NULL; END $$;"
    " CREATE TRIGGER items_audit AFTER INSERT OR UPDATE ON items"
    " FOR EACH ROW EXECUTE FUNCTION items_audit();"
    " ALTER TABLE items ENABLE ALWAYS TRIGGER items_audit"
)
PLOT = REPO_ROOT / "benches" / "plots" / "soak_rss.png"
CONVERGE_WITHIN = 300.0
#: The transaction log's bound, a distance in the WAL (see --txn-cache-size).
TXN_CACHE_SIZE = "8M"


#: The service's process when the soak probes it (``--probe DIR``): tracemalloc on (unless
#: ``--probe-frames 0``), and at each SIGUSR1 a JSON of the sizes of the service's long-lived
#: state (every dict, list, set or log attribute of its transaction logs, Satellite servers,
#: client shapes, sessions and write lanes; the live objects by type, the native ones apart)
#: and of where its resident memory is (VmRSS by kind of mapping, malloc's figures and arenas,
#: pymalloc's arenas), with a tracemalloc snapshot, written to DIR. With
#: ``ELECTRIC_SOAK_PROBE_TRIM=1`` each probe ends with ``malloc_trim(0)`` and records the RSS
#: it gave back (free heap memory still resident: fragmentation, not live data).
PROBE = """
import collections, ctypes, gc, json, os, re, signal, sys, tempfile, time, tracemalloc, weakref
from electric_trio.replication._log import TransactionLog
from electric_trio.satellite.server import SatelliteServer
from electric_trio.satellite.session import ClientShapes, Session
from electric_trio.writes import direct
out = os.environ["ELECTRIC_SOAK_PROBE"]
frames = int(os.environ.get("ELECTRIC_SOAK_PROBE_FRAMES", "8"))
trim = os.environ.get("ELECTRIC_SOAK_PROBE_TRIM") == "1"
if frames:
    tracemalloc.start(frames)
kept = collections.defaultdict(weakref.WeakSet)
for cls in (TransactionLog, SatelliteServer, ClientShapes, Session, direct._Lane):
    def init(self, *a, _init=cls.__init__, _name=cls.__name__, **k):
        _init(self, *a, **k)
        kept[_name].add(self)
    cls.__init__ = init
def sizes(obj):
    found = {}
    for name, value in vars(obj).items():
        if isinstance(value, (dict, list, set, frozenset, TransactionLog)):
            found[name] = len(value)
    return found
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc_trim.argtypes = [ctypes.c_size_t]
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
def mallinfo2():
    return libc.mallinfo2()
def mib(x):
    return round(x / 2**20, 2)
def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
def mappings():
    # resident MiB by kind of mapping: the brk heap, anonymous (malloc's other arenas, large
    # blocks, pymalloc's arenas, thread stacks), our extension, other files
    kinds = collections.Counter()
    name = ""
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                name = head[5] if len(head) > 5 else ""
            elif head[0] == "Rss:":
                kind = ("heap" if name == "[heap]" else "anon" if not name
                        else "_native" if "_native" in name else "stack" if name == "[stack]"
                        else "other" if name.startswith("[") else "files")
                kinds[kind] += int(head[1])
    return {k: round(v / 1024, 1) for k, v in sorted(kinds.items())}
def malloc_arenas():
    # malloc_info's XML: each arena's (heap id) size and free bytes, MiB
    with tempfile.TemporaryFile() as f:
        fp = libc.fdopen(os.dup(f.fileno()), b"w")
        libc.malloc_info(0, fp)
        libc.fclose(fp)
        f.seek(0)
        xml = f.read().decode()
    found = []
    for heap in re.findall(r'<heap nr="\\d+">(.*?)</heap>', xml, re.S):
        total = re.search(r'<system type="current" size="(\\d+)"', heap)
        rest = re.search(r'<total type="rest" count="\\d+" size="(\\d+)"', heap)
        found.append([mib(int(total.group(1))) if total else None,
                      mib(int(rest.group(1))) if rest else None])
    return found
def pymalloc():
    # sys._debugmallocstats() writes to the C stderr: its arenas and bytes in use
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    def field(label):
        m = re.search(r"^# " + re.escape(label) + r"\\s*=\\s*([\\d,]+)", text, re.M)
        return int(m.group(1).replace(",", "")) if m else None
    arenas = field("arenas allocated current")
    return {"arenas": arenas, "bytes in allocated blocks MiB": mib(field(
        "bytes in allocated blocks") or 0), "bytes in available blocks MiB": mib(field(
        "bytes in available blocks") or 0)}
seq = [0]
def probe(signum, frame):
    seq[0] += 1
    stem = os.path.join(out, f"{os.getpid()}-{seq[0]:03d}")
    began = time.perf_counter()
    unreachable = gc.collect()  # what is left is reachable (the service's collector runs seldom)
    objects = gc.get_objects()
    collected = [unreachable, round(time.perf_counter() - began, 4), len(objects)]
    if frames:
        tracemalloc.take_snapshot().dump(stem + ".tm")
    state = {n: [sizes(o) for o in objs] for n, objs in kept.items() if n != "Session"}
    state["Session"] = len(kept["Session"])
    current = {id(c) for server in kept["SatelliteServer"] for c in server.clients.values()}
    stale = [c for c in kept["Session"] if id(c) not in current]
    state["stale sessions"] = len(stale)
    if stale:  # what holds the oldest one (two levels of referrers)
        def held(obj, depth):
            found = []
            for r in gc.get_referrers(obj):
                if r is stale or r is objects or type(r).__name__ == "frame":
                    continue
                name = type(r).__qualname__
                if depth and isinstance(r, (dict, list, set, tuple)):
                    name += " <- " + "|".join(held(r, depth - 1)[:4])
                found.append(name)
            return found
        state["stale session held by"] = held(stale[0], 1)[:12]
    del stale
    state["ClientShapes"] = len(kept["ClientShapes"])
    logs = list(kept["TransactionLog"])
    state["txlog_wal_span"] = [(t.last_lsn or 0) - (t.first_lsn or 0) for t in logs]
    if frames:
        state["traced"] = tracemalloc.get_traced_memory()
    state["gc: collected, seconds, tracked objects"] = collected
    state["VmRSS MiB"] = [rss_kb() // 1024]
    state["RSS MiB by mapping"] = mappings()
    info = mallinfo2()  # malloc's own figures, summed over its arenas (Rust allocates there)
    state["malloc MiB: in use, free in heap, mmapped, arena"] = [
        mib(x) for x in (info.uordblks, info.fordblks, info.hblkhd, info.arena)
    ]
    state["malloc arenas MiB: size, free"] = malloc_arenas()
    state["pymalloc"] = pymalloc()
    types = collections.Counter(type(o).__qualname__ for o in objects)
    native = collections.Counter(
        type(o).__qualname__ for o in objects
        if type(o).__module__ == "electric_trio._native"
    )
    del objects
    state["native objects"] = dict(sorted(native.items()))
    state["types"] = dict(types.most_common(40))
    if trim:
        before = rss_kb()
        libc.malloc_trim(0)
        state["malloc_trim gave back MiB"] = round((before - rss_kb()) / 1024, 1)
        state["VmRSS MiB after malloc_trim"] = rss_kb() // 1024
    with open(stem + ".json", "w") as f:
        json.dump(state, f)
signal.signal(signal.SIGUSR1, probe)
from electric_trio.cli import main
sys.exit(main())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _schema() -> DbSchema:
    schema, ops = apply_migration(Schema(), VERSION, [DDL])
    ddl = tuple(s.sql for op in ops for s in op.sqlite)
    table = next(t for t in schema.tables if t.name == "items")
    items = TableSchema(
        name="items",
        columns=tuple(Column(c.name, c.type.name, not c.not_null) for c in table.columns),
        primary_key=table.primary_key,
    )
    bundle = Migration(version=VERSION, statements=ddl + tuple(triggers_for(items)))
    return DbSchema(tables={"items": items}, migrations=(bundle,))


class _ResetCounter(logging.Handler):
    """Counts the clients' "cannot resume, resyncing" warnings (a reset loses no data but is a
    full resync)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "resyncing" in record.getMessage():
            self.count += 1


@dataclasses.dataclass
class Soak:
    args: argparse.Namespace
    db_url: str
    pg: Any
    progress: Progress
    tmp: Path
    http_port: int = dataclasses.field(default_factory=_free_port)
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    start: float = dataclasses.field(default_factory=time.monotonic)
    samples: list[rss.Sample] = dataclasses.field(default_factory=list)
    events: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    clients: list[ElectricClient] = dataclasses.field(default_factory=list)
    client_writes: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    """(key, v) of each client INSERT or UPDATE (v is unique to the write)."""
    stop_load: trio.Event = dataclasses.field(default_factory=trio.Event)
    pausing: int = 0
    """While non-zero, Postgres is down (its writers wait)."""

    def now(self) -> float:
        return time.monotonic() - self.start

    def fault(self, kind: str) -> None:
        self.faults[kind] += 1
        self.events.append((self.now(), kind))
        self.progress.step(f"fault: {kind} ({self.faults[kind]})")

    # -- the service ----------------------------------------------------------------------

    def start_service(self) -> None:
        self.env = self.env or {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "HTTP_PORT": str(self.http_port),
            "PG_PROXY_PORT": str(_free_port()),
            "PG_PROXY_PASSWORD": "soak",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
            "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
            "LOGICAL_PUBLISHER_PORT": str(_free_port()),
            "LOG_LEVEL": "warning",
            "ELECTRIC_TXN_CACHE_SIZE": self.args.txn_cache_size,
            # HEAD's code and extension, built when the soak started (others edit the tree)
            "PYTHONPATH": os.environ.get(BUILT, ""),
        }
        if self.args.probe is not None:
            self.env["ELECTRIC_SOAK_PROBE"] = str(self.args.probe)
            self.env["ELECTRIC_SOAK_PROBE_FRAMES"] = str(self.args.probe_frames)
            if self.args.probe_trim:
                self.env["ELECTRIC_SOAK_PROBE_TRIM"] = "1"
            code = PROBE
        else:
            code = "import sys; from electric_trio.cli import main; sys.exit(main())"
        log = open(self.args.service_log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve"],
            env=self.env,
            stdout=log,
            stderr=log,
        )

    async def restart_service(self, how: signal.Signals) -> None:
        assert self.proc is not None
        self.fault("kill -9" if how == signal.SIGKILL else "SIGTERM")
        self.proc.send_signal(how)
        await trio.to_thread.run_sync(self.proc.wait, 60)
        self.start_service()
        assert self.proc is not None
        await wait_ready(self.http_port, self.proc)

    async def sample_rss(self) -> None:
        next_probe = self.args.probe_every
        while True:
            proc = self.proc
            if proc is not None and proc.poll() is None:
                mib = _rss_mib(proc.pid)
                if mib is not None:
                    self.samples.append(rss.Sample(self.now(), proc.pid, mib))
                if self.args.probe is not None and self.now() >= next_probe:
                    next_probe += self.args.probe_every
                    proc.send_signal(signal.SIGUSR1)
            await trio.sleep(2.0)

    # -- load -----------------------------------------------------------------------------

    async def pg_writes(self) -> None:
        n = 0
        conn: Connection | None = None
        while not self.stop_load.is_set():
            await trio.sleep(0.25)
            if self.pausing:
                if conn is not None:
                    await _close(conn)
                    conn = None
                continue
            try:
                if conn is None:
                    conn = await connect(self.db_url)
                sql, n = self.pg_transaction(n)
                await conn.execute(sql)
                self.counts["postgres transactions"] += 1
            except Exception as e:  # Postgres restarting: the write is retried later
                self.counts["postgres writes failed (Postgres down)"] += 1
                self.progress.step(f"postgres write failed: {type(e).__name__}: {e}"[:160])
                if conn is not None:
                    await _close(conn)
                conn = None
                await trio.sleep(1)
        if conn is not None:
            await _close(conn)

    def pg_transaction(self, n: int) -> tuple[str, int]:
        """One Postgres transaction of 1-5 changes (SQL, the value counter after it). Fixed
        keys: upserts (to a random group: rows move between shapes) and deletes among
        ``--pg-keys`` keys, so the data keeps its size; growing keys: upserts of keys drawn
        from a range that grows with the run."""
        upserts: dict[str, str] = {}
        deletes: set[str] = set()
        for _ in range(random.randint(1, 5)):
            n += 1
            if self.args.keys == "fixed":
                key = f"pg-{random.randrange(self.args.pg_keys)}"
                if random.random() < 0.2:
                    upserts.pop(key, None)
                    deletes.add(key)
                    continue
            else:
                key = f"pg-{random.randrange(max(n // 2, 1))}"
            deletes.discard(key)
            upserts[key] = f"('{key}', {random.randrange(GROUPS)}, {n})"
        statements = []
        if upserts:
            statements.append(
                "INSERT INTO items (id, grp, v) VALUES "
                + ", ".join(upserts.values())
                + " ON CONFLICT (id) DO UPDATE SET grp = excluded.grp, v = excluded.v"
            )
        if deletes:
            listed = ", ".join(f"'{k}'" for k in sorted(deletes))
            statements.append(f"DELETE FROM items WHERE id IN ({listed})")
        return "BEGIN; " + "; ".join(statements) + "; COMMIT", n

    async def client_write_loop(self) -> None:
        n = 0
        while not self.stop_load.is_set():
            await trio.sleep(0.5)
            ready = [(i, c) for i, c in enumerate(self.clients) if c.status == Status.CONNECTED]
            if not ready:
                continue
            i, client = random.choice(ready)
            n += 1
            if self.args.keys == "fixed":
                # Each client writes its own CLIENT_KEYS keys: an INSERT where it has no row,
                # else an UPDATE (3 in 4) or a DELETE.
                key = f"c{i}-{random.randrange(CLIENT_KEYS)}"
                found = await client.conn.query("SELECT v FROM items WHERE id = ?", [key])
                if found and random.random() < 0.25:
                    await client.conn.execute("DELETE FROM items WHERE id = ?", [key])
                    self.counts["client transactions"] += 1
                    continue
                if found:
                    await client.conn.execute("UPDATE items SET v = ? WHERE id = ?", [n, key])
                    self.client_writes.append((key, n))
                    self.counts["client transactions"] += 1
                    continue
            else:
                key = f"c{i}-{n}"
            await client.conn.execute(
                "INSERT INTO items (id, grp, v) VALUES (?, ?, ?)", [key, i % GROUPS, n]
            )
            self.client_writes.append((key, n))
            self.counts["client transactions"] += 1

    async def reconnects(self, token: str) -> None:
        async def bounce(client: ElectricClient) -> None:
            await client.disconnect()
            await trio.sleep(random.uniform(1, 3))
            await _connect(client, token)

        while not self.stop_load.is_set():
            await trio.sleep(20)
            async with trio.open_nursery() as nursery:
                for client in random.sample(self.clients, min(10, len(self.clients))):
                    self.faults["client disconnect/reconnect"] += 1
                    nursery.start_soon(bounce, client)

    async def bad_inputs(self) -> None:
        garbage = [
            b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            b"\x16\x03\x01\x00\xff" + os.urandom(64),
            b"POST /api/status HTTP/1.1\r\ncontent-length: 99999999999\r\n\r\n",
        ]
        while not self.stop_load.is_set():
            await trio.sleep(15)
            for data in garbage:
                with trio.move_on_after(5):
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", self.http_port)
                        async with stream:
                            await stream.send_all(data)
                            await stream.receive_some(4096)
                    except (OSError, trio.BrokenResourceError):
                        pass
                self.counts["bad inputs tried"] += 1
            with trio.move_on_after(5):
                try:
                    from trio_websocket import open_websocket

                    async with open_websocket(
                        "127.0.0.1",
                        self.http_port,
                        "/ws",
                        use_ssl=False,
                        subprotocols=["electric.0.12"],
                    ) as ws:
                        await ws.send_message(b"\x00" + os.urandom(40))
                        await ws.send_message("not a binary frame")
                        await ws.get_message()
                except Exception:
                    pass
                self.counts["bad inputs tried"] += 2

    async def faults_loop(self) -> None:
        total = self.args.minutes * 60
        pg_restarts = [0.4 * total, 0.8 * total]
        next_restart = self.args.restart_every
        kinds = [signal.SIGTERM, signal.SIGKILL]
        if not self.args.restart_every:
            return  # --no-restarts
        while not self.stop_load.is_set():
            await trio.sleep(1)
            t = self.now()
            if pg_restarts and t >= pg_restarts[0]:
                pg_restarts.pop(0)
                await self.restart_postgres()
            if t >= next_restart:
                next_restart += self.args.restart_every
                await self.restart_service(kinds[0])
                kinds.reverse()

    async def restart_postgres(self) -> None:
        self.fault("postgres restart")
        self.pausing += 1
        try:
            await trio.sleep(0.5)
            await trio.to_thread.run_sync(self.pg.stop)
            await trio.sleep(1)
            await trio.to_thread.run_sync(self.pg.start)
        finally:
            self.pausing -= 1

    # -- the end --------------------------------------------------------------------------

    async def converge(self) -> tuple[int, int, list[str]]:
        """(rows compared, rows equal, what differs), once equal or after CONVERGE_WITHIN."""
        deadline = trio.current_time() + CONVERGE_WITHIN
        while True:
            async with await connect(self.db_url) as c:
                rows = await c.fetch("SELECT id, grp, v FROM items")
            by_group: dict[int, set[tuple[str, int, int]]] = collections.defaultdict(set)
            for r in rows:
                by_group[int(r[1])].add((str(r[0]), int(r[1]), int(r[2])))
            compared = equal = 0
            problems: list[str] = []
            for i, client in enumerate(self.clients):
                got = {
                    (str(r["id"]), int(r["grp"]), int(r["v"]))
                    for r in await client.conn.query("SELECT id, grp, v FROM items")
                }
                want = by_group[i % GROUPS]
                compared += len(want)
                equal += len(want & got)
                if got != want:
                    problems.append(
                        f"client {i} ({client.status.name}): {len(want - got)} missing or"
                        f" stale, {len(got - want)} extra, e.g. {sorted(want ^ got)[:2]}"
                    )
            if not problems or trio.current_time() > deadline:
                return compared, equal, problems
            await trio.sleep(2)

    async def wal_lsn(self) -> int:
        """Postgres's current WAL position (the log's bound is a distance in the WAL)."""
        async with await connect(self.db_url) as c:
            return parse_lsn(str(await c.fetchval("SELECT pg_current_wal_lsn()::text")))

    async def audit(self) -> tuple[int, list[str]]:
        """(client writes applied exactly once, the others described): each client INSERT or
        UPDATE set a value of v no other write sets, so it must be in the audit once."""
        async with await connect(self.db_url) as c:
            rows = await c.fetch(
                "SELECT id, v, count(*) FROM items_audit WHERE id LIKE 'c%' GROUP BY id, v"
            )
        seen = {(str(r[0]), int(r[1])): int(r[2]) for r in rows}
        once = 0
        bad: list[str] = []
        for key, v in self.client_writes:
            times = seen.get((key, v), 0)
            if times == 1:
                once += 1
            else:
                bad.append(f"{key} v={v}: {times} times in the audit")
        return once, bad


#: Where the soak builds the extension of HEAD (kept between runs: later builds are quick).
SOAK_TARGET = Path(tempfile.gettempdir()) / "electric-soak-target"
#: Set (to the directory of HEAD's package and extension) once the soak runs from HEAD's build.
BUILT = "ELECTRIC_SOAK_PYTHONPATH"


def _build_head(progress: Progress) -> Path:
    """HEAD's Python package with its Rust extension built from HEAD, in a directory of the
    temporary one named after the commit: neither the other engineers' uncommitted edits nor
    the extension they last built (which need not match HEAD's Python) reach the soak. The
    build skips the release profile's LTO (a soak judges loss and leaks, not speed)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest = Path(tempfile.gettempdir()) / f"electric-soak-head-{commit}"
    if (dest / "electric_trio" / "_native.abi3.so").exists():
        return dest
    with tempfile.TemporaryDirectory(prefix="electric-soak-src-") as src_name:
        src = Path(src_name)
        archive = subprocess.run(
            ["git", "archive", commit, "Cargo.toml", "Cargo.lock", "rust", "proto", "python"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        progress.step(f"building the extension of HEAD ({commit}) in {SOAK_TARGET}")
        subprocess.run(
            ["cargo", "build", "--quiet", "--release", "-p", "electric-trio-native"],
            cwd=src,
            env={
                **os.environ,
                "CARGO_TARGET_DIR": str(SOAK_TARGET),
                "CARGO_PROFILE_RELEASE_LTO": "false",
                "CARGO_PROFILE_RELEASE_CODEGEN_UNITS": "16",
            },
            check=True,
        )
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(src / "python", dest)
    for so in (dest / "electric_trio").glob("_native*.so"):
        so.unlink()
    shutil.copy2(
        SOAK_TARGET / "release" / "lib_native.so", dest / "electric_trio" / "_native.abi3.so"
    )
    return dest


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


async def _close(conn: Connection) -> None:
    try:
        await conn.aclose()
    except Exception:
        pass


async def _connect(client: ElectricClient, token: str) -> None:
    for _ in range(20):
        try:
            await client.connect(token)
            return
        except Exception:
            await trio.sleep(2)


async def _run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from electric_trio.pg.embedded import EmbeddedPostgres

    token = insecure_token(sub="soak")
    resets = _ResetCounter()
    logging.getLogger("electric_trio").addHandler(resets)
    with tempfile.TemporaryDirectory(prefix="electric-soak-") as tmp_name:
        tmp = Path(tmp_name)
        progress.step("starting an embedded PostgreSQL (fsync on)")
        with EmbeddedPostgres(tmp / "pg", port=_free_port(), fast=False) as pg:
            async with await connect(pg.url) as admin:
                await admin.execute(f"CREATE DATABASE {DATABASE}")
                version = str(await admin.fetchval("SHOW server_version"))
            db_url = pg.database_url(DATABASE)
            soak = Soak(args, db_url, pg, progress, tmp)
            soak.start_service()
            assert soak.proc is not None
            try:
                await wait_ready(soak.http_port, soak.proc)
                async with await connect(db_url) as c:
                    await c.execute(MIGRATE)
                    await c.execute(AUDIT)
                await trio.sleep(2)
                result = await _soak(soak, args, token, progress)
            finally:
                if soak.proc is not None and soak.proc.poll() is None:
                    soak.proc.terminate()
                    soak.proc.wait(timeout=60)
            result["postgres"] = version
            result["resets"] = resets.count
            return result


async def _soak(
    soak: Soak, args: argparse.Namespace, token: str, progress: Progress
) -> dict[str, Any]:
    schema = _schema()
    config = ElectricConfig(
        url=f"http://127.0.0.1:{soak.http_port}",
        timeout=30.0,
        connect_attempts=1000,
        backoff_start=0.5,
        backoff_max=5.0,
    )
    result: dict[str, Any] = {}
    async with trio.open_nursery() as outer:
        outer.start_soon(soak.sample_rss)
        progress.step(f"opening {args.clients} clients, each subscribed to its group")
        limiter = trio.CapacityLimiter(10)
        ready = trio.Event()
        done = trio.Event()
        index: dict[int, ElectricClient] = {}

        async def hold(i: int) -> None:
            async with open_electric(soak.tmp / f"client-{i}.db", schema, config) as client:
                async with limiter:
                    await _connect(client, token)
                    for attempt in range(10):
                        try:
                            handle = await client.sync("items", where=f"this.grp = {i % GROUPS}")
                            with trio.fail_after(300):
                                await handle.synced()
                            break
                        except SubscriptionError:
                            # refused when its snapshot takes over 1 s (a loaded machine), as
                            # the original does: an application subscribes again
                            if attempt == 9:
                                raise
                            soak.counts["subscriptions refused at the start (retried)"] += 1
                            await trio.sleep(1)
                index[i] = client
                if len(index) == args.clients:
                    ready.set()
                await done.wait()

        async with trio.open_nursery() as clients:
            for i in range(args.clients):
                clients.start_soon(hold, i)
            await ready.wait()
            soak.clients = [index[i] for i in range(args.clients)]
            progress.step(f"{args.clients} clients synced; load and faults for {args.minutes} min")
            load_start = soak.now()
            wal_start = await soak.wal_lsn()
            async with trio.open_nursery() as load:
                if not args.no_pg_writes:
                    load.start_soon(soak.pg_writes)
                if not args.no_client_writes:
                    load.start_soon(soak.client_write_loop)
                if not args.no_reconnects:
                    load.start_soon(soak.reconnects, token)
                if not args.no_bad_inputs:
                    load.start_soon(soak.bad_inputs)
                load.start_soon(soak.faults_loop)
                end = load_start + args.minutes * 60
                while soak.now() < end:
                    await trio.sleep(30)
                    progress.step(
                        f"{(soak.now() - load_start) / 60:.1f} min: {dict(soak.counts)};"
                        f" faults {dict(soak.faults)}; RSS"
                        f" {soak.samples[-1].mib if soak.samples else 0:.0f} MiB"
                    )
                soak.stop_load.set()
            wal_bytes = await soak.wal_lsn() - wal_start
            progress.step("load stopped; reconnecting any disconnected client, then comparing")
            for client in soak.clients:
                if client.status in (Status.DISCONNECTED, Status.ERROR):
                    await _connect(client, token)
            compared, equal, problems = await soak.converge()
            once, bad = await soak.audit()
            result.update(
                compared=compared,
                equal=equal,
                problems=problems,
                once=once,
                bad=bad,
                seconds=soak.now() - load_start,
                wal_bytes=wal_bytes,
            )
            done.set()
        outer.cancel_scope.cancel()
    result.update(
        counts=dict(soak.counts),
        faults=dict(soak.faults),
        samples=soak.samples,
        events=soak.events,
        client_writes=len(soak.client_writes),
    )
    return result


DESCRIPTION = """\
A soak, not a speed test: {minutes:g} minutes of mixed load and faults against {clients} Python
clients (`electric_trio.client`, each its own SQLite file, all in the driver's process), each
subscribed to the shape `items WHERE this.grp = K` ({groups} groups), served by `electric-trio
serve` (direct writes) in its own process on an embedded PostgreSQL (fsync on). Keys: {keys}.
Load: a Postgres transaction every 0.25 s (1-5 changes of random groups), a client write every
0.5 s by a random connected client, 10 clients disconnected and reconnected (resuming) every 20
s, 5 bad inputs every 15 s (garbage HTTP, a TLS hello on the plain port, a huge content-length,
a malformed binary frame and a text frame on an open WebSocket). Faults: the service stopped
every {restart:g} s, SIGTERM and kill -9 in turn (restarted on the same ports; the clients
reconnect by themselves), and Postgres fast-restarted at 40 % and 80 % of the run. Then the
load stops and every client's rows must equal Postgres's rows of its shape (waited for up to
{conv:g} s), and every client write must appear once in an audit table filled by an ENABLE
ALWAYS trigger (each INSERT or UPDATE of a client sets a value of v of its own, which must be
in the audit once). *Ours* is what the clients hold, the *peer* what Postgres holds. Memory:
the service's VmRSS every 2 s (plot: `benches/plots/soak_rss.png`, one segment per service
process); the rule, over the samples taken {warmup:g} s or more after their process started: a
leak if the least-squares slope over the run's last two thirds is above {slope:g} MiB/min, or
the median of the last third is above the first third's by more than {ratio:.2f}x. The machine
was shared with other engineers' builds and tests during the run (load in the facts): a soak
judges loss and leaks, not speed.
"""


KEYS = {
    "fixed": "fixed (the data keeps its size): Postgres upserts (moving rows between groups)"
    " and deletes among {pg_keys} keys, each client INSERTs, UPDATEs (3 in 4 when it has the"
    " row) or DELETEs {client_keys} keys of its own",
    "growing": "growing (new rows all the time): Postgres upserts of keys drawn from a range"
    " that grows with the run, client INSERTs of new keys",
}


def probe_report(directory: Path, top: int = 15) -> str:
    """For each service process probed at least three times: its memory at each probe (RSS,
    by mapping, malloc's and pymalloc's figures, the transaction log), then the growth of its
    state, of its objects by type and of its Python allocations (tracemalloc, when on)
    between its second probe and its last."""
    import json
    import tracemalloc

    lines = [f"Probes in {directory}:"]
    by_pid: dict[str, list[Path]] = collections.defaultdict(list)
    for path in sorted(directory.glob("*.json")):
        by_pid[path.stem.split("-")[0]].append(path)
    for pid, paths in by_pid.items():
        if len(paths) < 3:
            continue
        states = [json.loads(p.read_text()) for p in paths]
        lines.append(f"process {pid}, each probe: RSS | by mapping | malloc in use, free |")
        lines.append("  pymalloc arenas | log transactions, WAL span | native objects | trim")
        for path, st in zip(paths, states, strict=True):
            malloc = st.get("malloc MiB: in use, free in heap, mmapped, arena") or [None] * 2
            log = st.get("TransactionLog") or [{}]
            lines.append(
                f"  {path.stem}: {st.get('VmRSS MiB')} | {st.get('RSS MiB by mapping')} |"
                f" {malloc[0]}, {malloc[1]} | {(st.get('pymalloc') or {}).get('arenas')} |"
                f" {log[0].get('_txns')}, {st.get('txlog_wal_span')} |"
                f" {st.get('native objects')} | {st.get('malloc_trim gave back MiB')}"
            )
        first, last = paths[1], paths[-1]
        a, b = states[1], states[-1]
        lines.append(f"process {pid}: {first.stem} -> {last.stem}")
        for key in sorted(b):
            if a.get(key) != b[key] and key != "types":
                lines.append(f"  {key}: {a.get(key)} -> {b[key]}")
        types = [
            (b["types"].get(t, 0) - a["types"].get(t, 0), t)
            for t in set(a["types"]) | set(b["types"])
        ]
        grown = [f"{t} {d:+,}" for d, t in sorted(types, reverse=True)[:8] if d]
        lines.append("  live objects by type: " + ", ".join(grown))
        if not (first.with_suffix(".tm").exists() and last.with_suffix(".tm").exists()):
            continue
        diff = tracemalloc.Snapshot.load(str(last.with_suffix(".tm"))).compare_to(
            tracemalloc.Snapshot.load(str(first.with_suffix(".tm"))), "traceback"
        )
        for stat in diff[:top]:
            lines.append(
                f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7,} blocks"
                f" ({stat.size / 1024:,.0f} KiB)"
            )
            for frame in list(stat.traceback)[-4:]:
                lines.append(f"      {frame.filename.split('site-packages/')[-1]}:{frame.lineno}")
    return "\n".join(lines)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benches soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--restart-every", type=float, help="seconds (default 180)")
    parser.add_argument(
        "--no-restarts",
        action="store_true",
        help="no restart of the service or of Postgres (for --probe)",
    )
    parser.add_argument(
        "--keys",
        choices=("fixed", "growing"),
        default="fixed",
        help="fixed (default): upserts, deletes and reinserts over a fixed set of keys, the data"
        " keeps its size; growing: new keys all the time (the data grows with the run)",
    )
    parser.add_argument("--pg-keys", type=int, default=400, help="fixed keys' Postgres rows")
    parser.add_argument(
        "--txn-cache-size",
        default=os.environ.get("ELECTRIC_TXN_CACHE_SIZE", TXN_CACHE_SIZE),
        help=f"the service's ELECTRIC_TXN_CACHE_SIZE (default {TXN_CACHE_SIZE}: the soak writes"
        " 1-3 MiB of WAL a minute, so the log reaches its bound in the run's first minutes;"
        " with the service's 256M it would grow for hours)",
    )
    parser.add_argument(
        "--probe",
        type=Path,
        help="a directory: the service runs with tracemalloc and, every --probe-every seconds,"
        " dumps a snapshot and the sizes of its long-lived state there; the growth between"
        " each process's second and last probe is printed",
    )
    parser.add_argument("--probe-every", type=float, default=60.0)
    parser.add_argument(
        "--probe-frames",
        type=int,
        default=8,
        help="tracemalloc's frames per allocation (0: no tracemalloc, whose own bookkeeping"
        " is in malloc's figures)",
    )
    parser.add_argument(
        "--probe-trim",
        action="store_true",
        help="each probe ends with malloc_trim(0), recording the RSS it gave back (heap memory"
        " free but still resident: fragmentation rather than live data)",
    )
    # To split a leak's cause: each part of the load can be left out.
    parser.add_argument("--no-pg-writes", action="store_true", help="no Postgres transactions")
    parser.add_argument("--no-client-writes", action="store_true", help="no client writes")
    parser.add_argument(
        "--no-reconnects", action="store_true", help="clients stay connected the whole run"
    )
    parser.add_argument("--no-bad-inputs", action="store_true", help="no bad input tried")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--plot", type=Path, default=PLOT, help=f"the RSS plot (default {PLOT})")
    parser.add_argument(
        "--service-log", type=Path, default=Path(tempfile.gettempdir()) / "soak-service.log"
    )
    args, _ = parser.parse_known_args(argv)  # (--quick and --record from the runner: ignored)
    if args.no_restarts:
        args.restart_every = 0.0
    elif args.restart_every is None:
        args.restart_every = min(180.0, max(args.minutes * 60 / 4, 30.0))
    if args.probe is not None:
        args.probe.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    if BUILT not in os.environ:
        # Run again on HEAD's build: the clients (this process) and the service alike.
        built = str(_build_head(progress))
        path = os.pathsep.join(p for p in (built, os.environ.get("PYTHONPATH")) if p)
        argv0 = [sys.executable, "-m", "benches", NAME, *argv]
        os.execve(sys.executable, argv0, {**os.environ, BUILT: built, "PYTHONPATH": path})
    facts = machine_facts()
    result = trio.run(_run, args, progress)
    samples: list[rss.Sample] = result["samples"]
    rss.plot(args.plot, samples, result["events"])
    warmup = min(rss.WARMUP_S, args.restart_every / 3) if args.restart_every else rss.WARMUP_S
    judged = rss.verdict(samples, warmup)
    steady = rss.steady(samples, warmup)
    slopes = rss.process_slopes(samples, warmup)
    counts, faults = result["counts"], result["faults"]
    lost = result["compared"] - result["equal"]
    measurements = (
        Measurement(
            "rows compared, clients vs Postgres",
            "rows",
            ours=(float(result["equal"]),),
            peer=(float(result["compared"]),),
            target=1.0,
        ),
        Measurement(
            "client writes applied exactly once",
            "writes",
            ours=(float(result["once"]),),
            peer=(float(result["client_writes"]),),
            target=1.0,
        ),
        Measurement(
            "service RSS, last third vs first third",
            "MiB",
            ours=(judged.last_mib,),
            peer=(judged.first_mib,),
            target=rss.MAX_RATIO,
            higher_is_better=False,
            peer_name="first third",
        ),
    )
    report = Report(
        name=NAME,
        title=f"{args.minutes:g} min of load and faults against {args.clients} clients",
        description=DESCRIPTION.format(
            minutes=args.minutes,
            clients=args.clients,
            groups=GROUPS,
            restart=args.restart_every,
            conv=CONVERGE_WITHIN,
            warmup=warmup,
            ratio=rss.MAX_RATIO,
            slope=rss.MAX_SLOPE,
            keys=KEYS[args.keys].format(pg_keys=args.pg_keys, client_keys=CLIENT_KEYS),
        ),
        peer="Postgres",
        measurements=measurements,
        command=command_line(["soak", *argv]),
        settings=f"--minutes {args.minutes:g} --clients {args.clients} --keys {args.keys}"
        f" --pg-keys {args.pg_keys} --restart-every {args.restart_every:g}",
        facts={
            "Transactions processed": f"{counts.get('postgres transactions', 0):,} Postgres,"
            f" {counts.get('client transactions', 0):,} client",
            "Faults injected": ", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none",
            "Postgres writes refused while it restarted (retried, not lost)": str(
                counts.get("postgres writes failed (Postgres down)", 0)
            ),
            "Bad inputs tried": str(counts.get("bad inputs tried", 0)),
            "Rows compared": f"{result['compared']:,} ({args.clients} clients), {lost} differ"
            f" after the wait; client writes applied once {result['once']:,} of"
            f" {result['client_writes']:,}",
            "Nothing lost": "yes"
            if not result["problems"] and not result["bad"]
            else f"NO: {'; '.join([*result['problems'], *result['bad']][:5])}",
            "Client resets (cannot resume: full resync)": str(result["resets"]),
            "Service memory": f"RSS median {judged.first_mib:.0f} MiB (first third) -> "
            f"{judged.last_mib:.0f} MiB (last third), {judged.samples} steady samples,"
            f" ({judged.ratio:.3f}x, limit {rss.MAX_RATIO:.2f}x); slope over the last two"
            f" thirds {judged.slope:+.3f} MiB/min (limit {rss.MAX_SLOPE:+.2f});"
            f" leak: {'YES' if judged.leaked else 'no'} (plot: {args.plot});"
            f" first steady {steady[0].mib:.0f}, peak {max(s.mib for s in steady):.0f}, last"
            f" {steady[-1].mib:.0f} MiB; slope over the run"
            f" {rss.slope_mib_per_min(steady):+.2f} MiB/min, within each process (median of"
            f" {len(slopes)}) {statistics.median(slopes) if slopes else 0.0:+.2f} MiB/min",
            "WAL written during the load": f"{result['wal_bytes'] / 2**20:.1f} MiB"
            f" ({result['wal_bytes'] / 2**20 / args.minutes:.2f} MiB/min; the"
            " transaction log keeps the transactions of the last ELECTRIC_TXN_CACHE_SIZE bytes"
            " of WAL)",
            "Service settings": ", ".join(
                [
                    f"ELECTRIC_TXN_CACHE_SIZE={args.txn_cache_size}",
                    *(
                        f"{k}={os.environ[k]}"
                        for k in sorted(os.environ)
                        if k.startswith("ELECTRIC_") and k not in (BUILT, "ELECTRIC_TXN_CACHE_SIZE")
                    ),
                ]
            ),
            "Code under test": f"HEAD's build {Path(os.environ.get(BUILT, '?')).name}"
            " (its Python package and extension; the commit line below is the tree's)",
            "PostgreSQL": f"{result['postgres']} (embedded, fsync on)",
            **facts,
            "Load average after the run (1, 5, 15 min)": ", ".join(
                f"{x:.2f}" for x in os.getloadavg()
            ),
        },
    )
    print(report.to_text())
    if args.probe is not None:
        print(probe_report(args.probe))
    if not args.no_record:
        write_section(NAME, report.to_markdown())
        print("wrote the soak section of benches/RESULTS.md", file=sys.stderr)
    ok = report.passed and not judged.leaked and not result["problems"] and not result["bad"]
    return 0 if ok else 1
