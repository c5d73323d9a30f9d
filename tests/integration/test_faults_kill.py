"""kill -9 of the service (in a process of its own) while it streams Postgres's writes to two
official clients and while they write, three times; after each restart the clients reconnect
by themselves and resume without a reset (the same subscriptions, local rows never wiped, no
unhandled error but the client's own REPLICATION_NOT_STARTED race), and at the end each client
holds exactly Postgres's rows, every client write applied once (an audit trigger in Postgres
counts the writes, which the primary key alone would hide)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import trio
from test_client_writes import db, pg
from test_client_writes_restart import _Service
from test_satellite_official_client import make_config

from _ports import free_port
from electric_trio.ddlx.history import MigrationHistory
from electric_trio.pg import Connection, parse_lsn
from electric_trio.service import Service, serve
from official_client import OfficialClient, OfficialClientError, describe_schema

__all__ = ["db", "pg"]  # fixtures used by name

KILLS = 3
ITEMS = (
    "BEGIN; CALL electric.migration_version('20240101000000');"
    " CREATE TABLE items (id text PRIMARY KEY, title text, n int4);"
    " CALL electric.electrify('items'); COMMIT"
)
# Every row written to items, recorded by Postgres itself (ALWAYS: whatever the session's
# replication role): the primary key hides a write applied twice, an audit row does not.
AUDIT = (
    "CREATE TABLE items_audit (id text NOT NULL, op text NOT NULL,"
    " xid xid8 NOT NULL DEFAULT pg_current_xact_id());"
    " CREATE FUNCTION items_audit() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN INSERT INTO public.items_audit (id, op) VALUES (NEW.id, TG_OP); RETURN NULL; END $$;"
    " CREATE TRIGGER items_audit AFTER INSERT OR UPDATE ON items"
    " FOR EACH ROW EXECUTE FUNCTION items_audit();"
    " ALTER TABLE items ENABLE ALWAYS TRIGGER items_audit"
)


@pytest.fixture
def service_process(db: str) -> Iterator[_Service]:
    service = _Service(db, "direct_writes")
    service.env["LOG_LEVEL"] = "info"  # (shown with a failure: resumes and refusals)
    service.env["HTTP_PORT"] = str(free_port())  # kept across restarts: clients reconnect
    service.http_port = int(service.env["HTTP_PORT"])
    try:
        yield service
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait(timeout=30)


async def local(client: OfficialClient) -> dict[str, tuple[Any, Any]]:
    rows = await client.query("SELECT id, title, n FROM items")
    return {r["id"]: (r["title"], r["n"]) for r in rows}


async def remote(pg: Connection) -> dict[str, tuple[Any, Any]]:
    return {r[0]: (r[1], r[2]) for r in await pg.fetch("SELECT id, title, n FROM items")}


# Slow (PG 18 pass only) for now. Its PostgreSQL 15 failure was a real service bug, fixed: a
# client resuming while the restarted service replayed its window was told BEHIND_WINDOW and
# reset. Another remains under heavy load (load 8-16: 5 runs of 15 on PG 15, 3 of 20 on
# PG 18): right after a restart a client's startReplication (once its authenticate) goes
# unanswered for 3 s (not diagnosed), the official client gives up on the call without
# closing, and it neither replicates nor reconnects again: its writes never reach Postgres
# (or it reports UNEXPECTED_STATE, client closed).
@pytest.mark.slow
async def test_kill_9_while_streaming_and_writing(
    service_process: _Service, pg: Connection, official_client: Any
) -> None:
    rng = random.Random(9)
    service = service_process
    service.start()
    await service.ready()
    await pg.execute(ITEMS)
    with trio.fail_after(30):
        while not await pg.fetchval(  # noqa: ASYNC110 (Postgres state, no event to wait on)
            "SELECT count(*) FROM electric.schema WHERE version = '20240101000000'"
        ):
            await trio.sleep(0.05)
    await pg.execute(AUDIT)
    schema = (await MigrationHistory.load(pg)).schema
    url = f"http://127.0.0.1:{service.http_port}"
    backoff = {"numOfAttempts": 1000, "maxDelay": 300, "startingDelay": 100}
    clients: list[OfficialClient] = []
    for name in ("a", "b"):
        c = await official_client()
        await c.open(
            db=official_client.db_path(name),
            schema=describe_schema(schema),
            migrations_url=url,
            url=url,
            user_id="alice",
            backoff=backoff,
        )
        await c.connect()
        await c.sync("items", within=30)
        clients.append(c)
    subscriptions = await subscription_ids(pg)
    written: dict[str, int] = {}  # client writes: id -> count of successful creates
    pg_written = 0
    stop = trio.Event()
    shrank: list[tuple[str, int, int]] = []  # a reset client would lose its local rows

    async def watch(c: OfficialClient, name: str) -> None:
        seen = 0
        while not stop.is_set():
            n = len(await local(c))
            if n < seen:
                shrank.append((name, seen, n))
            seen = max(seen, n)
            await trio.sleep(0.05)

    async def client_writer(c: OfficialClient, name: str) -> None:
        i = 0
        while not stop.is_set():
            key = f"{name}{i}"
            try:
                # A local write: it succeeds while the service is down and goes out later.
                await c.call("create", table="items", data={"id": key, "title": name, "n": i})
            except OfficialClientError:
                continue
            written[key] = written.get(key, 0) + 1
            i += 1
            await trio.sleep(rng.uniform(0.01, 0.1))

    async def pg_writer() -> None:
        nonlocal pg_written
        while not stop.is_set():
            await pg.execute(
                f"INSERT INTO items VALUES ('pg{pg_written}', 'pg', {pg_written});"
                f" UPDATE items SET n = n + 1000 WHERE id = 'pg{pg_written // 2}'"
            )
            pg_written += 1
            await trio.sleep(rng.uniform(0.01, 0.05))

    async with trio.open_nursery() as nursery:
        for c, name in zip(clients, ("a", "b"), strict=True):
            nursery.start_soon(client_writer, c, name)
            nursery.start_soon(watch, c, name)
        nursery.start_soon(pg_writer)
        for _ in range(KILLS):
            await trio.sleep(rng.uniform(0.5, 2.0))
            service.kill()
            await trio.sleep(rng.uniform(0.1, 1.0))
            service.start()
            await service.ready()
        await trio.sleep(1.0)
        stop.set()

    # No reset: the same subscriptions, no local row ever wiped (a client told BEHIND_WINDOW
    # clears its data: so did one resuming while the restarted service was still replaying
    # its window), and nothing went wrong in either client.
    assert shrank == []
    assert await subscription_ids(pg) == subscriptions
    for c in clients:
        # (the client's own race: a write it queued just before the connection dropped is
        # pushed by a timer and throws; it goes out again after the reconnection)
        others = [e for e in c.unhandled() if e["error"].get("code") != "REPLICATION_NOT_STARTED"]
        assert others == []
    # Everything each client wrote reached Postgres once; both clients hold Postgres's rows.
    try:
        expected = await _settled(pg, written)
    except trio.TooSlowError:
        for c in clients:  # which client's writes stopped, and what it last said
            print(c.name, _difference(await remote(pg), await local(c)))
            print(c.name, [e for e in c.events if e["event"] == "connectivity"][-5:])
            print(c.stderr()[-3000:])
        raise
    for c in clients:
        with trio.move_on_after(90):
            while await local(c) != expected:  # noqa: ASYNC110 (a query, no event)
                await trio.sleep(0.2)
        assert (c.name, _difference(await local(c), expected)) == (c.name, "")
    assert all(n == 1 for n in written.values())
    audit = await pg.fetch("SELECT id, op, count(*) FROM items_audit GROUP BY id, op")
    applied = {(key, op): n for key, op, n in audit}
    assert {key: applied.get((key, "INSERT"), 0) for key in written} == dict.fromkeys(written, 1)
    assert [key for key, op in applied if op == "UPDATE" and key in written] == []
    assert pg_written > 20
    assert len(written) > 20
    print(f"{KILLS} kills, {pg_written} Postgres writes, {len(written)} client writes")


def _difference(got: dict[str, Any], expected: dict[str, Any]) -> str:
    """What a client lacks, has too much of or holds differently (empty when nothing)."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    return "; ".join(
        f"{what} {len(keys)}: {keys[:10]}"
        for what, keys in (("missing", missing), ("extra", extra), ("different", differ))
        if keys
    )


async def subscription_ids(pg: Connection) -> set[str]:
    rows = await pg.fetch("SELECT subscription_id FROM electric.client_shape_subscriptions")
    return {r[0] for r in rows}


async def _settled(pg: Connection, written: dict[str, int]) -> dict[str, tuple[Any, Any]]:
    """Postgres's rows once every client write is there."""
    with trio.fail_after(90):
        while True:
            rows = await remote(pg)
            if set(written) <= set(rows):
                return rows
            await trio.sleep(0.2)


ROWS_PAST_CACHE = 200


async def test_a_client_away_longer_than_the_cache_resyncs_cleanly(
    db: str, nursery: trio.Nursery, official_client: Any, pg: Connection
) -> None:
    """An official client disconnected while more WAL than ``ELECTRIC_TXN_CACHE_SIZE`` went
    by is refused with BEHIND_WINDOW when it comes back; it clears its local data, subscribes
    again and holds Postgres's rows."""
    # The cache is a WAL distance: besides the test's rows, the WAL holds the service's own
    # writes and full-page images, so a cache only a little larger than those can trim the
    # transactions that follow the client's resubscription before they are sent (the client
    # is then closed as behind a second time; seen in CI with 256K): 1M, and 3 MB of rows.
    config = make_config(db, ELECTRIC_TXN_CACHE_SIZE="1M")
    service: Service = await nursery.start(partial(serve, config, handle_signals=False))
    with trio.fail_after(60):
        await service.wait_ready()
    await pg.execute(ITEMS)
    with trio.fail_after(30):
        while not await pg.fetchval(  # noqa: ASYNC110 (Postgres state, no event to wait on)
            "SELECT count(*) FROM electric.schema WHERE version = '20240101000000'"
        ):
            await trio.sleep(0.05)
    assert service.migrations is not None
    schema = describe_schema(service.migrations.schema)
    url = f"http://127.0.0.1:{service.http_port}"
    await pg.execute("INSERT INTO items VALUES ('before', 'x', 0)")
    clients = {}
    for name in ("away",):
        c = await official_client()
        await c.open(
            db=official_client.db_path(name),
            schema=schema,
            migrations_url=url,
            url=url,
            user_id="alice",
        )
        await c.connect()
        await c.sync("items", within=30)
        clients[name] = c
    away = clients["away"]
    await away.disconnect()
    big = "(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 1000))"
    for i in range(ROWS_PAST_CACHE):  # 32 kB of hex each (TOAST compresses it by half)
        await pg.execute(f"INSERT INTO items VALUES ('w{i}', {big}, {i})")
    await pg.execute("DELETE FROM items WHERE id = 'before'")
    expected = await remote(pg)
    assert len(expected) == ROWS_PAST_CACHE
    try:
        await away.connect()
    except OfficialClientError:
        pass  # the refusal may surface here; the client resyncs by itself
    await away.sync("items", within=60)  # as an application does after a reset

    with trio.fail_after(60):
        while await local(away) != expected:  # noqa: ASYNC110 (a query, no event)
            await trio.sleep(0.2)
    # the client was reset (BEHIND_WINDOW) and subscribed again: a second server subscription
    servers = {
        e["status"]["serverId"]
        for e in away.events
        if e["event"] == "shape_status" and e["status"] is not None
    }
    assert len(servers) == 2


async def test_a_restarted_service_is_ready_once_its_window_is_replayed(
    db: str, pg: Connection
) -> None:
    """After a restart the service replays the slot's window into its log; it says it is
    ready (and takes clients) only once the transactions it streamed before are back in the
    log. Earlier, a client resuming at once was told BEHIND_WINDOW and reset: the kill -9 test
    above saw it against PostgreSQL 15."""
    config = make_config(db)
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(partial(serve, config, handle_signals=False))
        with trio.fail_after(60):
            await service.wait_ready()
        await pg.execute(ITEMS)
        for i in range(20):  # 20 transactions of 200 changes: about 1 MB of WAL to replay
            values = ", ".join(f"('k{i}_{j}', repeat('x', 500), {j})" for j in range(100))
            await pg.execute(
                f"INSERT INTO items VALUES {values}; "
                + "; ".join(f"UPDATE items SET n = n + 1 WHERE id = 'k{i}_{j}'" for j in range(99))
            )
        end = await pg.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        assert service.txlog is not None
        with trio.fail_after(60):
            while (service.txlog.last_lsn or 0) < parse_lsn(end) - 4096:  # noqa: ASYNC110 (polled)
                await trio.sleep(0.05)
        streamed = service.txlog.last_lsn
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        service = await nursery.start(partial(serve, config, handle_signals=False))
        with trio.fail_after(60):
            while service.status() != "ready":  # noqa: ASYNC110 (what a client sees, polled)
                await trio.sleep(0.005)
        assert service.txlog is not None
        assert (service.txlog.last_lsn or 0) >= (streamed or 0)
        nursery.cancel_scope.cancel()
