# ruff: noqa: F811 (the db fixture comes from test_client_writes)
"""Network faults around the service (issue 8, item 1), each cut at a random byte of the
traffic (a seeded random: the same points in every run): between the clients (official and
ours) and the service while a large transaction streams down and while the clients send
their own; between the service and Postgres while clients write. Then the main replication
slot really invalidated by Postgres, and a client that never reads (the service's memory
stays bounded). Each case ends with the convergence check (every client holds Postgres's
rows) and the no-duplicate check (an AFTER INSERT audit trigger counts each row's
application in Postgres: once; for the raw reader, each insert received once)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import urllib.parse
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from msgspec.structs import replace
from test_client_writes import db  # noqa: F401 (drops the logical subscription too)
from test_py_client import TOKEN, schema_of
from test_satellite_official_client import make_config, url_of, wait_versions
from test_satellite_protocol import SETTINGS, Client, client, migration_sql, sql
from test_shapes_protocol import request, select, subscribe
from trio_websocket import ConnectionClosed

from electric_trio.client import ElectricClient, ElectricConfig, open_electric
from electric_trio.config import Config
from electric_trio.pg import connect
from electric_trio.pg.embedded import EmbeddedPostgres
from electric_trio.replication import ReplicationSubsystem
from electric_trio.replication._reader import ReaderSettings
from electric_trio.replication._slot import main_slot_name
from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSubsystem
from electric_trio.service import Service, default_subsystems, serve
from faults import DOWN, UP, Relay, open_relay, vm_hwm_kib
from official_client import (
    OfficialClient,
    OfficialClientError,
    OfficialClientFactory,
    describe_schema,
)

ITEMS = (
    "BEGIN; CALL electric.migration_version('20240101000000');"
    " CREATE TABLE items (id text PRIMARY KEY, title text, n int4);"
    " CALL electric.electrify('items'); COMMIT;"
)
#: Each application of an insert in Postgres, whoever made it.
AUDIT = (
    "CREATE TABLE audit (id text NOT NULL);"
    " CREATE FUNCTION audit_items() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN INSERT INTO public.audit VALUES (NEW.id); RETURN NEW; END $$;"
    " CREATE TRIGGER audit AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION audit_items();"
    " ALTER TABLE items ENABLE ALWAYS TRIGGER audit;"
)
#: The official client's reconnection: quick and unbounded (the harness's default gives up).
BACKOFF = {"numOfAttempts": 1000, "maxDelay": 300, "startingDelay": 100}
CUTS = 3

Rows = dict[str, tuple[Any, Any]]


async def pg_rows(db: str) -> Rows:
    async with await connect(db) as c:
        return {r[0]: (r[1], r[2]) for r in await c.fetch("SELECT id, title, n FROM items")}


async def official_rows(c: OfficialClient) -> Rows:
    return {r["id"]: (r["title"], r["n"]) for r in await c.query("SELECT id, title, n FROM items")}


async def python_rows(c: ElectricClient) -> Rows:
    rows = await c.conn.query("SELECT id, title, n FROM items")
    return {r["id"]: (r["title"], r["n"]) for r in rows}


async def settle(db: str, written: set[str], within: float = 60) -> Rows:
    """Postgres's rows once every client write reached it."""
    rows: Rows = {}
    with trio.move_on_after(within):
        while not written <= set(rows := await pg_rows(db)):  # noqa: ASYNC110 (a query)
            await trio.sleep(0.1)
    assert written <= set(rows), sorted(written - set(rows))[:10]
    return rows


async def converge(
    db: str, written: set[str], readers: dict[str, Any], official: OfficialClient | None = None
) -> None:
    """Every client write in Postgres, each insert applied there once, and every client
    holding exactly Postgres's rows (on failure, what ``official`` went through)."""
    expected = await settle(db, written)
    async with await connect(db) as c:
        counts = {r[0]: r[1] for r in await c.fetch("SELECT id, count(*) FROM audit GROUP BY id")}
    doubled = {k: n for k, n in counts.items() if n != 1}
    assert not doubled, doubled
    assert set(counts) == set(expected)  # nothing applied that is not there (no deletes here)
    for name, read in readers.items():
        got: Rows = {}
        with trio.move_on_after(60):
            while (got := await read()) != expected:  # noqa: ASYNC110 (a query)
                await trio.sleep(0.1)
        missing = sorted(set(expected) - set(got))[:10]
        differ = sorted(k for k in expected if k in got and got[k] != expected[k])[:10]
        if got != expected and official is not None:
            print("official client status", await official.status())
            print("official client events", [e for e in official.events if e["event"] != "log"])
        assert got == expected, (name, len(got), len(expected), missing, differ)


def server_ids(c: OfficialClient) -> set[str]:
    """The server's ids of the official client's shape subscriptions so far."""
    return {
        e["status"]["serverId"]
        for e in c.events
        if e["event"] == "shape_status" and e["status"] is not None
    }


async def fire(relay: Relay, direction: str, nbytes: int, within: float = 30) -> None:
    event = relay.cut_after(direction, nbytes)
    with trio.fail_after(within):
        await event.wait()


# Slow (out of the PG 15 pass) for now: under heavy load (load 8-10 on 2 cores, three copies
# of this test at once) the official client was twice left with none of a transaction cut
# mid-stream and nothing after it, although it reported itself connected again; its events
# showed an unhandled UNEXPECTED_STATE ("trying to send message, but client is closed")
# after the reconnection. Not diagnosed yet: the failure prints the client's events and the
# service's sessions. It passed in every run at ordinary load.
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
async def test_client_connections_cut_mid_transaction_both_ways(
    db: str,
    nursery: trio.Nursery,
    official_client: OfficialClientFactory,
    tmp_path: Path,
    seed: int,
) -> None:
    """An official and a Python client, both through a relay that resets their connections at
    a random byte: (a) of a large transaction the service streams down to them, (b) of the
    transactions they send up. Both reconnect by themselves and resume; every client write
    reaches Postgres once and both hold Postgres's rows."""
    rng = random.Random(seed)
    subsystems = default_subsystems()
    service = await start(nursery, make_config(db), subsystems)
    async with await connect(db) as pg:
        await pg.execute(ITEMS)
        await wait_versions(service, 1)
        await pg.execute(AUDIT)
    async with open_relay("127.0.0.1", service.http_port) as relay:
        url = f"http://127.0.0.1:{relay.port}"
        official = await official_client("official")
        assert service.migrations is not None
        await official.open(
            db=official_client.db_path("official"),
            schema=describe_schema(service.migrations.schema),
            migrations_url=url_of(service),
            url=url,
            user_id="alice",
            backoff=BACKOFF,
        )
        await official.connect()
        await official.sync("items", within=30)
        config = ElectricConfig(url=url, backoff_start=0.05, backoff_max=0.3)
        async with open_electric(
            tmp_path / "py.db", schema_of(service), config, token=TOKEN
        ) as python:
            with trio.fail_after(30):
                await (await python.sync("items")).synced()
            readers = {
                "official": lambda: official_rows(official),
                "python": lambda: python_rows(python),
            }

            # (a) a transaction of many rows cut on its way down, at a random byte
            async with await connect(db) as pg:
                for t in range(CUTS):
                    title = f"pg {t} " + "x" * rng.randint(50, 300)
                    await pg.execute(
                        f"BEGIN; INSERT INTO items SELECT 'pg{t}.' || i, '{title}', i"
                        f" FROM generate_series(1, {rng.randint(500, 2000)}) i;"
                        f" UPDATE items SET n = n + 1 WHERE id LIKE 'pg%' AND n % 7 = {t}; COMMIT"
                    )
                    # the two clients get ~(rows x (title + 40)) bytes each between them
                    await fire(relay, DOWN, rng.randint(1, 40_000))
            try:
                await converge(db, set(), readers, official)
            except AssertionError:
                satellite = next(x for x in subsystems if isinstance(x, SatelliteSubsystem))
                server = satellite.server
                assert server is not None
                assert service.txlog is not None
                print("log at", service.txlog.last_lsn)
                for cid, reg in server._registrations.items():
                    ss = reg.session
                    print("session", cid, ss._streaming, ss._position, len(ss.window), ss._stopping)
                raise

            # (b) the clients' own transactions cut on their way up
            written: set[str] = set()
            stop = trio.Event()

            async def official_writer() -> None:
                i = 0
                while not stop.is_set():
                    data = [{"id": f"o{i}.{j}", "title": "official", "n": j} for j in range(20)]
                    # a local write: it succeeds offline too and goes out when connected
                    await official.call("createMany", table="items", data=data)
                    written.update(d["id"] for d in data)
                    i += 1
                    await trio.sleep(rng.uniform(0.01, 0.1))

            async def python_writer() -> None:
                i = 0
                while not stop.is_set():
                    rows = [(f"p{i}.{j}", "python", j) for j in range(20)]
                    await python.conn.executemany(
                        "INSERT INTO items (id, title, n) VALUES (?, ?, ?)", rows
                    )
                    written.update(r[0] for r in rows)
                    i += 1
                    await trio.sleep(rng.uniform(0.01, 0.1))

            async with trio.open_nursery() as writers:
                writers.start_soon(official_writer)
                writers.start_soon(python_writer)
                for _ in range(CUTS):
                    await trio.sleep(rng.uniform(0.2, 0.6))
                    await fire(relay, UP, rng.randint(1, 3_000))
                await trio.sleep(0.5)
                stop.set()
            assert len(written) >= 100
            await converge(db, written, readers, official)
            # resumed each time, never reset: the official client kept its one subscription
            assert len(server_ids(official)) == 1
        assert relay.cuts == 2 * CUTS
        assert relay.accepted > 2 * 2  # the clients came back after the cuts


async def start(nursery: trio.Nursery, config: Config, subsystems: Any = None) -> Service:
    extra = {} if subsystems is None else {"subsystems": subsystems}
    service: Service = await nursery.start(partial(serve, config, handle_signals=False, **extra))
    with trio.fail_after(60):
        await service.wait_ready()
    return service


def via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:``port``."""
    parts = urllib.parse.urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{port}"))


async def wait_ready(service: Service, within: float = 60) -> None:
    with trio.fail_after(within):
        while service.status() != "ready":  # noqa: ASYNC110 (no event to wait on)
            await trio.sleep(0.05)


@pytest.mark.parametrize(
    "mode",
    # (the subscription's apply worker is slow to come back: about 25 s in all)
    ["direct_writes", pytest.param("logical_replication", marks=pytest.mark.slow)],
)
async def test_postgres_connections_cut_while_clients_write(
    db: str, pg_server: Any, nursery: trio.Nursery, tmp_path: Path, mode: str
) -> None:
    """The service's connections to Postgres (replication, queries and, with direct writes,
    the client writes) reset at a random byte of either direction while a Python client
    writes transactions and Postgres commits large ones: the client's writes are applied
    once each (one retried after a cut is not applied twice), and it converges."""
    rng = random.Random(f"pg-{mode}")
    env = {"ELECTRIC_WRITE_TO_PG_MODE": mode}
    if mode == "logical_replication":
        env |= {"LOGICAL_PUBLISHER_HOST": "127.0.0.1", "LOGICAL_PUBLISHER_PORT": "0"}
    async with open_relay(pg_server.host, pg_server.port) as relay:
        service = await start(nursery, make_config(via(db, relay.port), **env))
        async with await connect(db) as pg:
            await pg.execute(ITEMS)
            await wait_versions(service, 1)
            await pg.execute(AUDIT)
        config = ElectricConfig(url=url_of(service), backoff_start=0.05, backoff_max=0.3)
        async with open_electric(
            tmp_path / "py.db", schema_of(service), config, token=TOKEN
        ) as python:
            with trio.fail_after(30):
                await (await python.sync("items")).synced()
            written: set[str] = set()
            stop = trio.Event()

            async def python_writer() -> None:
                i = 0
                while not stop.is_set():
                    rows = [(f"p{i}.{j}", "python", j) for j in range(20)]
                    await python.conn.executemany(
                        "INSERT INTO items (id, title, n) VALUES (?, ?, ?)", rows
                    )
                    written.update(r[0] for r in rows)
                    i += 1
                    await trio.sleep(rng.uniform(0.01, 0.1))

            async def pg_writer() -> None:
                t = 0
                async with await connect(db) as pg:  # not through the relay
                    while not stop.is_set():
                        await pg.execute(
                            f"INSERT INTO items SELECT 'pg{t}.' || i, 'pg {t}', i"
                            f" FROM generate_series(1, {rng.randint(50, 400)}) i"
                        )
                        t += 1
                        await trio.sleep(rng.uniform(0.05, 0.2))

            async with trio.open_nursery() as writers:
                writers.start_soon(python_writer)
                writers.start_soon(pg_writer)
                for k in range(CUTS):
                    await wait_ready(service)
                    await trio.sleep(rng.uniform(0.1, 0.5))
                    if k % 2:
                        await fire(relay, DOWN, rng.randint(1, 50_000))
                    else:
                        await fire(relay, UP, rng.randint(1, 5_000))
                await wait_ready(service)
                await trio.sleep(0.5)
                stop.set()
            assert len(written) >= 100
            await converge(db, written, {"python": lambda: python_rows(python)})
        assert relay.cuts == CUTS


@pytest.fixture
def own_pg(tmp_path: Path, pg_server: Any) -> Iterator[EmbeddedPostgres]:
    """A Postgres of the test's own (its settings change), of the session's version."""
    with EmbeddedPostgres(tmp_path / "pgdata", bindir=pg_server.bindir, fast=True) as pg:
        yield pg


async def test_a_slot_invalidated_by_postgres_makes_clients_resync(
    own_pg: EmbeddedPostgres,
    nursery: trio.Nursery,
    official_client: OfficialClientFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Postgres invalidates the service's main slot (``max_slot_wal_keep_size`` passed while
    the slot was held back, a checkpoint: ``wal_status = 'lost'``), then the service's
    connections drop. The service logs an error naming the slot, creates it again, and its
    clients, told BEHIND_WINDOW, resync from a new snapshot: both hold Postgres's rows
    (those committed while the service had no slot too), every client write once."""
    db = own_pg.url
    async with await connect(db) as pg:
        await pg.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        await pg.execute("SELECT pg_reload_conf()")
    async with open_relay(own_pg.host, own_pg.port) as relay:
        service = await start(nursery, make_config(via(db, relay.port)))
        async with await connect(db) as pg:
            await pg.execute(ITEMS)
            await wait_versions(service, 1)
            await pg.execute(AUDIT + " INSERT INTO items VALUES ('pg0', 'before', 0)")
        assert service.migrations is not None
        official = await official_client("official")
        await official.open(
            db=official_client.db_path("official"),
            schema=describe_schema(service.migrations.schema),
            migrations_url=url_of(service),
            url=url_of(service),
            user_id="alice",
            backoff=BACKOFF,
        )
        await official.connect()
        await official.sync("items", within=30)
        config = ElectricConfig(url=url_of(service), backoff_start=0.05, backoff_max=0.3)
        async with open_electric(
            tmp_path / "py.db", schema_of(service), config, token=TOKEN
        ) as python:
            with trio.fail_after(30):
                await (await python.sync("items")).synced()
            readers = {
                "official": lambda: official_rows(official),
                "python": lambda: python_rows(python),
            }
            written = {f"p{i}" for i in range(10)}
            await python.conn.executemany(
                "INSERT INTO items (id, title, n) VALUES (?, 'python', 1)", [(k,) for k in written]
            )
            await converge(db, written, readers)

            slot = main_slot_name(own_pg.url.rpartition("/")[2])
            # The service sees nothing while the slot goes (a running service notices and
            # makes it again at once: the next test).
            relay.stall()
            async with await connect(db) as pg:
                # WAL past max_slot_wal_keep_size while the main slot stays where it is
                # (the service keeps it ELECTRIC_RESUMABLE_WAL_WINDOW behind, 2 GB)
                for i in range(4):
                    await pg.execute(f"INSERT INTO items VALUES ('wal{i}', 'x', {i})")
                    await pg.execute("SELECT pg_switch_wal()")
                status = None
                with trio.fail_after(30):
                    while status != "lost":
                        await pg.execute("CHECKPOINT")
                        status = await pg.fetchval(
                            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                            slot,
                        )
                relay.cut()  # the service's connections drop: it starts replication again
                relay.resume()
                await pg.execute("INSERT INTO items VALUES ('gap', 'no slot meanwhile', 0)")
            await wait_ready(service)
            with trio.fail_after(30):
                while not any(  # noqa: ASYNC110 (log records, no event)
                    r.levelname == "ERROR" and slot in r.getMessage() for r in caplog.records
                ):
                    await trio.sleep(0.05)
            more = {f"q{i}" for i in range(10)}
            await python.conn.executemany(
                "INSERT INTO items (id, title, n) VALUES (?, 'python', 2)", [(k,) for k in more]
            )
            async with await connect(db) as pg:
                await pg.execute("INSERT INTO items VALUES ('after', 'new slot', 0)")
                assert await pg.fetchval(
                    "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", slot
                ) in ("reserved", "extended")
            # the official client was reset (its local data cleared): an application
            # subscribes again
            with trio.fail_after(60):
                while True:
                    try:
                        await official.sync("items", within=30)
                        break
                    except OfficialClientError:
                        await trio.sleep(0.2)
            await converge(db, written | more, readers)
            assert len(server_ids(official)) == 2  # subscribed again after BEHIND_WINDOW


@pytest.mark.parametrize("how", ["dropped", "lost"])
async def test_a_slot_lost_while_the_service_streams_is_made_again_without_a_gap(
    own_pg: EmbeddedPostgres,
    nursery: trio.Nursery,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    """The main slot is dropped, or invalidated by Postgres (WAL past
    ``max_slot_wal_keep_size``, the service's temporary copy kept up), while the service
    streams: the running service logs an error naming the slot and makes it again from the
    copy it streams from; after its Postgres connections drop (it replays from the main slot,
    as after a restart), the client resumes without a resync and holds every row, those
    committed while the service was cut off included, each applied once."""
    db = own_pg.url
    async with await connect(db) as pg:
        # (4 segments: the main slot is lost, the copy the service acknowledges is not)
        await pg.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '64MB'")
        await pg.execute("SELECT pg_reload_conf()")
    subsystems = default_subsystems()
    subsystems[0] = ReplicationSubsystem(ReaderSettings(advance_interval=0.2))
    async with open_relay(own_pg.host, own_pg.port) as relay:
        service = await start(nursery, make_config(via(db, relay.port)), subsystems)
        async with await connect(db) as pg:
            await pg.execute(ITEMS)
            await wait_versions(service, 1)
            await pg.execute(AUDIT + " INSERT INTO items VALUES ('pg0', 'before', 0)")
        config = ElectricConfig(url=url_of(service), backoff_start=0.05, backoff_max=0.3)
        async with (
            open_electric(tmp_path / "py.db", schema_of(service), config, token=TOKEN) as python,
            await connect(db) as pg,
        ):
            with trio.fail_after(30):
                await (await python.sync("items")).synced()
            slot = main_slot_name(own_pg.url.rpartition("/")[2])
            written = {"pg0"}

            def noticed() -> bool:
                return any(
                    r.levelname == "ERROR" and slot in r.getMessage() for r in caplog.records
                )

            if how == "dropped":
                await pg.execute("SELECT pg_drop_replication_slot($1)", slot)
            with trio.fail_after(60):
                i = 0
                while not noticed():
                    # a row the service acknowledges, then a new WAL segment and a checkpoint
                    # (its standby snapshot moves the copy's restart position; once the main
                    # slot is 64 MB behind, the checkpoint invalidates it)
                    key = f"wal{i}"
                    await pg.execute(f"INSERT INTO items VALUES ('{key}', 'x', {i})")
                    written.add(key)
                    while key not in await python_rows(python):  # noqa: ASYNC110 (a query)
                        await trio.sleep(0.05)
                    if how == "lost":
                        await pg.execute("SELECT pg_switch_wal()")
                        await pg.execute("CHECKPOINT")
                    await trio.sleep(0.1)
                    i += 1
            with trio.fail_after(30):
                while await pg.fetchval(  # noqa: ASYNC110 (a query)
                    "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", slot
                ) not in ("reserved", "extended"):
                    await trio.sleep(0.05)
            relay.cut()  # the reader starts again from the slot made again
            await pg.execute("INSERT INTO items VALUES ('cut', 'while cut off', 0)")
            await wait_ready(service)
            await pg.execute("INSERT INTO items VALUES ('after', 'after', 0)")
            written |= {"cut", "after"}
            await converge(db, written, {"python": lambda: python_rows(python)})
            # resumed, not resynced: the client kept its rows and was never told BEHIND_WINDOW
            assert not [r for r in caplog.records if "resyncing" in r.getMessage()]


class Digests:
    """What a raw client holds of ``items (id int8, v text)``: an md5 per row (not the rows:
    the test's memory is measured), and how often each insert came."""

    def __init__(self) -> None:
        self.rows: dict[int, str] = {}
        self.inserts: dict[int, int] = {}
        self.changed = trio.Event()

    async def follow(self, c: Client) -> None:
        while True:
            try:
                frame = await c.recv(within=120)
            except ConnectionClosed:
                return
            if not isinstance(frame, m.SatOpLog):
                continue
            for op in frame.ops:
                if op.begin is not None and op.begin.transaction_id is not None:
                    await c.send(
                        m.SatOpLogAck(transaction_id=op.begin.transaction_id, lsn=op.begin.lsn)
                    )
                if op.insert is not None:
                    key = int(op.insert.row_data.values[0])
                    self.rows[key] = hashlib.md5(op.insert.row_data.values[1]).hexdigest()
                    self.inserts[key] = self.inserts.get(key, 0) + 1
            self.changed.set()
            self.changed = trio.Event()


@pytest.mark.slow  # (the service's memory, not Postgres's: the PostgreSQL 15 pass leaves it out)
async def test_a_client_that_never_reads_holds_bounded_memory(
    db: str, nursery: trio.Nursery
) -> None:
    """One client stops reading (it still talks, so it is not closed as silent) while 20 MB
    of transactions stream, 16 MB past a 2 MB transaction cache: the other client gets every
    row once; the service's memory (the peak RSS of the test process, where the service runs)
    grew by less than twice what it may hold (the cache and the reader's window of
    unacknowledged transactions), not by what went by; once the reader also stops talking it
    is closed as unresponsive. (The send timeout, the next test, is left out of the way.)"""
    satellite = SatelliteSubsystem(
        replace(SETTINGS, ping_interval=1.0, close_timeout=1.0, send_timeout=600.0)
    )
    service = await start(
        nursery, make_config(db, ELECTRIC_TXN_CACHE_SIZE="2M"), [ReplicationSubsystem(), satellite]
    )
    await sql(db, migration_sql("1", "items", "id int8 PRIMARY KEY, v text"))
    await wait_versions(service, 1)
    server = satellite.server
    assert server is not None
    row = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 1000))"  # 32 kB
    digests = Digests()
    async with client(service) as fast, client(service) as slow, await connect(db) as pg:
        for c, name in ((fast, "fast"), (slow, "slow")):
            await c.connect(name)
            assert (await c.start_replication()).err is None
            assert (await subscribe(c, request(select("items")))).err is None
        nursery.start_soon(digests.follow, fast)
        # The slow one never reads again (its WebSocket reader stops once a message waits)
        # but keeps sending: a no-op acknowledgement every half second.
        talking = trio.CancelScope()

        async def talk() -> None:
            with talking:
                while True:
                    await slow.send(m.SatOpLogAck(transaction_id=0))
                    await trio.sleep(0.5)

        nursery.start_soon(talk)

        async def commit(count: int) -> None:
            """One transaction per row, 25 per round trip; then the fast reader catches up
            (it is never more than that behind: never past the small cache)."""
            nonlocal n
            for _ in range(0, count, 25):
                await pg.execute(
                    " ".join(
                        f"BEGIN; INSERT INTO items VALUES ({k}, {row}); COMMIT;"
                        for k in range(n, n + 25)
                    )
                )
                n += 25
                with trio.fail_after(60):
                    while len(digests.rows) < n:
                        await digests.changed.wait()

        n = 0
        await commit(150)  # a warm-up: the cache full, the slow client's window too
        before = vm_hwm_kib(os.getpid())
        await commit(500)
        expected = {
            int(r[0]): r[1] for r in await pg.fetch("SELECT id, md5(v) FROM items ORDER BY id")
        }
        with trio.move_on_after(60):
            while digests.rows != expected:
                await digests.changed.wait()
        grown = vm_hwm_kib(os.getpid()) - before
        assert digests.rows == expected
        assert all(k == 1 for k in digests.inserts.values())
        assert "slow" in server._registrations  # still there: it was not silent
        bound = 2 * 1024 + SETTINGS.unacked_window * 64  # KiB: the cache, the window
        print(f"peak RSS grew {grown} KiB for {500 * 32} KiB streamed, bound {bound} KiB")
        assert grown < 2 * bound, (grown, bound)
        talking.cancel()
        with trio.fail_after(30):
            while "slow" in server._registrations:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.1)
        assert "fast" in server._registrations


@pytest.mark.slow  # (the service's buffers, not Postgres's: the PostgreSQL 15 pass leaves it out)
@pytest.mark.parametrize("what", ["transaction", "initial data"])
async def test_a_client_that_talks_but_never_reads_is_cut_off(
    db: str, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, what: str
) -> None:
    """One client stops reading but keeps talking (so the keepalive never closes it) while
    7.7 MB come its way, more than the sockets' buffers hold: one large transaction, or its
    shape's initial data. The service's write to it stalls; with a 5 s send timeout the client
    is cut off (a warning says why) instead of holding that write for ever, and the other
    client gets every row once."""
    # (5 s: under a heavy load, a reading client's process was starved of 1 s once)
    satellite = SatelliteSubsystem(replace(SETTINGS, send_timeout=5.0))
    service = await start(nursery, make_config(db), [ReplicationSubsystem(), satellite])
    await sql(db, migration_sql("1", "items", "id int8 PRIMARY KEY, v text"))
    await wait_versions(service, 1)
    server = satellite.server
    assert server is not None
    row = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 1000))"  # 32 kB
    insert = f"INSERT INTO items SELECT k, {row} FROM generate_series(1, 240) k"  # 7.7 MB
    digests = Digests()
    async with client(service) as fast, client(service) as slow, await connect(db) as pg:
        if what == "initial data":
            await pg.execute(insert)
        for c, name in ((fast, "fast"), (slow, "slow")):
            await c.connect(name)
            assert (await c.start_replication()).err is None
            assert (await subscribe(c, request(select("items")))).err is None
        nursery.start_soon(digests.follow, fast)
        talked = 0

        async def talk() -> None:
            # never reads again (its WebSocket reader stops once a message waits), but sends
            # a no-op acknowledgement every 0.2 s, until its connection is gone
            nonlocal talked
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await slow.send(m.SatOpLogAck(transaction_id=0))
                    talked += 1
                    await trio.sleep(0.2)

        nursery.start_soon(talk)
        if what == "transaction":
            await pg.execute(insert)
        with trio.fail_after(60):
            while "slow" in server._registrations:  # noqa: ASYNC110 (no event to wait on)
                await trio.sleep(0.1)
        assert talked > 1
        cut = [r.getMessage() for r in caplog.records if "client not reading" in r.getMessage()]
        assert len(cut) == 1, cut  # the slow one only
        assert "fast" in server._registrations
        expected = {
            int(r[0]): r[1] for r in await pg.fetch("SELECT id, md5(v) FROM items ORDER BY id")
        }
        with trio.move_on_after(60):
            while digests.rows != expected:
                await digests.changed.wait()
        assert digests.rows == expected
        assert all(k == 1 for k in digests.inserts.values())
        assert "fast" in server._registrations
