"""The logical-replication publisher against a real Postgres (server-behaviour.md §7): the
``postgres_1`` subscription is created and enabled, Postgres's apply worker pulls client
transactions from us and the triggers merge them, in order and once, across reconnections."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
import trio

from _databases import fresh_database
from electric_trio import _native
from electric_trio.config import Config
from electric_trio.pg import Connection, ConnectParams, PgError, connect
from electric_trio.replication import ReplicationSubsystem
from electric_trio.service import Service, serve
from electric_trio.writes import ClientWrite, RowInsert, WriteRejectedError
from electric_trio.writes.publisher import SUBSCRIPTION, LogicalPublisher


def make_config(url: str) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "logical_replication",
            "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
            "LOGICAL_PUBLISHER_PORT": "0",
            "ELECTRIC_INSTANCE_ID": "test-instance",
        }
    )


class PublisherSubsystem:
    """The publisher as the writes subsystem starts it in logical_replication mode."""

    name = "publisher"

    def __init__(self) -> None:
        self.publisher: LogicalPublisher | None = None

    def install(self, service: Service) -> None:
        pass

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.publisher = LogicalPublisher(service)
        await self.publisher.run(task_status=task_status)


async def drop_subscription(conn: Connection) -> None:
    """Drops ``postgres_1`` without asking the (gone) publisher to drop a slot."""
    if await conn.fetchval("SELECT count(*) FROM pg_subscription WHERE subname = $1", SUBSCRIPTION):
        await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" DISABLE')
        await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" SET (slot_name = NONE)')
        await conn.execute(f'DROP SUBSCRIPTION "{SUBSCRIPTION}"')


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    """A fresh database per test with table ``items`` electrified (migration ``1``)."""
    async with fresh_database(pg_server, "et_pub") as url:
        yield url


async def sql(url: str, statements: str) -> None:
    async with await connect(url) as c:
        await c.execute(statements)


def migration_sql(version: str, table: str, columns: str = "id int8 PRIMARY KEY, v text") -> str:
    return (
        f"BEGIN; CALL electric.migration_version('{version}');"
        f" CREATE TABLE {table} ({columns}); CALL electric.electrify('{table}'); COMMIT;"
    )


class Running:
    def __init__(self, service: Service, publisher: LogicalPublisher) -> None:
        self.service = service
        self.publisher = publisher


async def start(nursery: trio.Nursery, url: str) -> Running:
    sub = PublisherSubsystem()
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(url),
            subsystems=[ReplicationSubsystem(), sub],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    assert sub.publisher is not None
    return Running(service, sub.publisher)


def tag_text(ms: int, client_id: str) -> str:
    import datetime as dt

    ts = dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f'("{ts}+00",{client_id})'


def client_write(
    client_id: str,
    position: int,
    rows: list[dict[str, str | None]],
    *,
    ms: int = 1_700_000_000_000,
    table: str = "items",
    observed: tuple[str, ...] = (),
) -> ClientWrite:
    """A client transaction of inserts into ``table`` (primary key ``id``), as the receiving
    side hands it over: the acknowledged LSN row, then main and shadow row per change."""
    inserts = [
        RowInsert(
            "electric",
            "acknowledged_client_lsns",
            ("client_id", "lsn"),
            (client_id, "\\x" + position.to_bytes(4, "big").hex()),
        )
    ]
    for row in rows:
        non_pk = [c for c in row if c != "id"]
        inserts.append(RowInsert("public", table, tuple(row), tuple(row.values())))
        inserts.append(
            RowInsert(
                "electric",
                f"shadow__public__{table}",
                (
                    "id",
                    "_tag",
                    "_is_a_delete_operation",
                    "_observed_tags",
                    "_modified_columns_bit_mask",
                ),
                (
                    row["id"],
                    tag_text(ms, client_id),
                    "f",
                    "{" + ",".join(f'"{o}"' for o in observed) + "}",
                    "{" + ",".join("t" for _ in non_pk) + "}",
                ),
            )
        )
    return ClientWrite(client_id, position.to_bytes(4, "big"), ms, tuple(inserts))


async def migrate(running: Running, url: str, version: str, table: str) -> None:
    """Runs a migration creating and electrifying ``table``; returns once the service has it."""
    await sql(url, migration_sql(version, table))
    history = running.service.migrations
    assert history is not None
    with trio.fail_after(30):
        while history.version != version:  # noqa: ASYNC110 (the history has no event)
            await trio.sleep(0.02)


async def wait_rows(
    url: str, query: str, expected: list[tuple[Any, ...]], within: float = 30
) -> None:
    """Until ``query`` returns ``expected``."""
    async with await connect(url) as c:
        with trio.fail_after(within):
            while True:
                rows = [tuple(r) for r in await c.fetch(query)]
                if rows == expected:
                    return
                await trio.sleep(0.05)


AUDIT = (
    "CREATE TABLE audit (n serial PRIMARY KEY, id int8, v text);"
    "CREATE FUNCTION audit_items() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN INSERT INTO public.audit (id, v) VALUES (NEW.id, NEW.v); RETURN NEW; END $$;"
    "CREATE TRIGGER audit AFTER INSERT OR UPDATE ON items"
    " FOR EACH ROW EXECUTE FUNCTION public.audit_items();"
    "ALTER TABLE items ENABLE ALWAYS TRIGGER audit"
)
"""Every write of a row of ``items`` that the conflict resolution makes, in order: a client
transaction applied twice would show twice."""


async def until(condition: Callable[[], bool], within: float = 30) -> None:
    """Until ``condition()`` is true (state of the publisher or of Postgres, no event)."""
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.01)


async def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    async with await connect(url) as c:
        return [tuple(r) for r in await c.fetch(query)]


@pytest.fixture
async def running(db: str, nursery: trio.Nursery) -> Running:
    """The service in logical_replication mode with ``items`` electrified and audited."""
    running = await start(nursery, db)
    await migrate(running, db, "1", "items")
    await sql(db, AUDIT)
    return running


# ---- tests ------------------------------------------------------------------------------------


async def test_subscription_created_and_enabled(db: str, nursery: trio.Nursery) -> None:
    running = await start(nursery, db)
    await migrate(running, db, "1", "items")
    async with await connect(db) as c:
        row = await c.fetchrow(
            "SELECT subenabled, subconninfo, subsynccommit FROM pg_subscription WHERE subname = $1",
            SUBSCRIPTION,
        )
        assert row is not None
        assert row[0] is True
        assert f"port={running.publisher.port} " in row[1]
        assert "connect_timeout=5 " in row[1]
        # the applied write reaches the replication stream (and its client's echo) at once,
        # not at the WAL writer's next flush
        assert row[2] == "on"
    await running.publisher.write(
        client_write("client1", 1, [{"id": "1", "v": "hello"}], ms=1_700_000_000_123)
    )
    # write() returns once Postgres has committed it
    assert await fetch(db, "SELECT id, v FROM items") == [(1, "hello")]
    # the shadow row was resolved by the triggers: the client's tag is the row's
    assert await fetch(
        db,
        "SELECT (_tag).source_id, (_tags[1]).source_id, _currently_reordering"
        " FROM electric.shadow__public__items",
    ) == [("client1", "client1", None)]
    assert await fetch(db, "SELECT client_id, lsn FROM electric.acknowledged_client_lsns") == [
        ("client1", b"\x00\x00\x00\x01")
    ]


async def test_transactions_apply_in_order_once(db: str, running: Running) -> None:
    publisher = running.publisher
    await sql(db, f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" DISABLE')
    await until(lambda: not publisher.streaming)
    async with trio.open_nursery() as nursery:
        # queued while Postgres is away: each write waits until it is committed
        for i in range(1, 6):
            write = client_write("c", i, [{"id": "1", "v": f"v{i}"}], ms=1_700_000_000_000 + i)
            nursery.start_soon(publisher.write, write)
            await until(lambda i=i: publisher.stats().queued == i)  # type: ignore[misc]
        await sql(db, f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" ENABLE')
    assert await fetch(db, "SELECT id, v FROM audit ORDER BY n") == [
        (1, f"v{i}") for i in range(1, 6)
    ]
    assert await fetch(db, "SELECT id, v FROM items") == [(1, "v5")]
    assert await fetch(db, "SELECT lsn FROM electric.acknowledged_client_lsns") == [
        (b"\x00\x00\x00\x05",)
    ]
    assert publisher.stats().applied == 5


async def test_a_reconnecting_apply_worker_gets_nothing_twice(db: str, running: Running) -> None:
    publisher = running.publisher
    await publisher.write(client_write("c", 1, [{"id": "1", "v": "a"}]))
    # Postgres's apply worker goes away (its backend terminated) and comes back on its own
    async with await connect(db) as c:
        killed = await c.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_subscription"
            " WHERE subname = $1 AND pid IS NOT NULL",
            SUBSCRIPTION,
        )
    assert killed == 1
    await until(lambda: publisher.stats().streams >= 2)
    await publisher.write(client_write("c", 2, [{"id": "2", "v": "b"}]))
    assert await fetch(db, "SELECT id, v FROM audit ORDER BY n") == [(1, "a"), (2, "b")]
    # and while it is away, writes wait for it and arrive once it is back
    await sql(db, f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" DISABLE')
    await until(lambda: not publisher.streaming)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publisher.write, client_write("c", 3, [{"id": "3", "v": "c"}]))
        await until(lambda: publisher.stats().queued >= 1)
        await sql(db, f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" ENABLE')
    assert await fetch(db, "SELECT id, v FROM audit ORDER BY n") == [(1, "a"), (2, "b"), (3, "c")]


async def test_a_replayed_transaction_is_not_sent_again(db: str, running: Running) -> None:
    publisher = running.publisher
    first = client_write("c", 1, [{"id": "1", "v": "a"}])
    await publisher.write(first)
    await publisher.write(first)  # the client resent it (its acknowledgement was lost)
    await publisher.write(client_write("c", 2, [{"id": "2", "v": "b"}]))
    assert await fetch(db, "SELECT id, v FROM audit ORDER BY n") == [(1, "a"), (2, "b")]
    assert publisher.stats().replays == 1


async def test_a_transaction_postgres_refuses_does_not_block_the_others(
    db: str, running: Running
) -> None:
    publisher = running.publisher
    await sql(db, "ALTER TABLE items ADD CONSTRAINT v_not_bad CHECK (v <> 'bad')")
    with trio.fail_after(60), pytest.raises(WriteRejectedError, match="v_not_bad"):
        await publisher.write(client_write("c", 1, [{"id": "1", "v": "bad"}]))
    await publisher.write(client_write("c", 2, [{"id": "2", "v": "good"}]))
    assert await fetch(db, "SELECT id, v FROM items") == [(2, "good")]
    assert publisher.stats().rejected == 1


async def test_a_migration_refreshes_the_subscription(db: str, running: Running) -> None:
    await migrate(running, db, "2", "other")
    # the REFRESH follows the migration: Postgres subscribes to the new table and its shadow
    query = (
        "SELECT srrelid::regclass::text, srsubstate::text FROM pg_subscription_rel"
        " ORDER BY srrelid::regclass::text"
    )
    with trio.fail_after(30):
        while ("other", "r") not in (rels := await fetch(db, query)):  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert ("electric.shadow__public__other", "r") in rels
    await running.publisher.write(client_write("c", 1, [{"id": "7", "v": "x"}], table="other"))
    assert await fetch(db, "SELECT id, v FROM other") == [(7, "x")]


async def test_a_restarted_service_points_the_subscription_at_itself(db: str) -> None:
    async with trio.open_nursery() as nursery:
        first = await start(nursery, db)
        await migrate(first, db, "1", "items")
        await first.publisher.write(client_write("c", 1, [{"id": "1", "v": "a"}]))
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        second = await start(nursery, db)
        async with await connect(db) as c:
            conninfo = await c.fetchval(
                "SELECT subconninfo FROM pg_subscription WHERE subname = $1", SUBSCRIPTION
            )
        assert f"port={second.publisher.port} " in conninfo
        await second.publisher.write(client_write("c", 2, [{"id": "2", "v": "b"}]))
        assert await fetch(db, "SELECT id, v FROM items ORDER BY id") == [(1, "a"), (2, "b")]
        nursery.cancel_scope.cancel()


async def test_only_the_subscription_gets_in(running: Running) -> None:
    publisher = running.publisher
    password = dict(p.split("=", 1) for p in publisher.conninfo.split())["password"]

    def params(**kw: Any) -> ConnectParams:
        base: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": publisher.port,
            "user": "postgres",
            "password": password,
            "database": "electric",
            "sslmode": "disable",
            "application_name": SUBSCRIPTION,
        }
        return ConnectParams(**{**base, **kw})

    # an ordinary connection (psql, a driver) is refused
    with pytest.raises(PgError) as info:
        await connect(params())
    assert info.value.sqlstate == "08004"
    # so is a wrong password
    with pytest.raises(PgError) as info:
        await connect(params(password="guess"), replication="database")
    assert info.value.sqlstate == "28P01"
    # and an application that is not the subscription
    with pytest.raises(PgError) as info:
        await connect(params(application_name="someone"), replication="database")
    assert info.value.sqlstate == "08004"
    async with await connect(params(), replication="database") as conn:
        rows = await conn.fetch("IDENTIFY_SYSTEM")
        assert len(rows) == 1
        # Postgres never needs a slot from us (connect = false, copy_data = false)
        with pytest.raises(PgError) as info:
            await conn.execute('CREATE_REPLICATION_SLOT "s" LOGICAL pgoutput NOEXPORT_SNAPSHOT')
        assert info.value.sqlstate == "0A000"
        # the connection stays usable
        tables = await conn.fetch(
            "SELECT DISTINCT t.schemaname, t.tablename FROM pg_catalog.pg_publication_tables t"
            " WHERE t.pubname IN ('electric_publication')"
        )
        assert sorted(tuple(r) for r in tables) == [
            ("electric", "acknowledged_client_lsns"),
            ("electric", "shadow__public__items"),
            ("public", "items"),
        ]
        # a table synchronisation worker's questions about a table, answered as Postgres would
        relation = await conn.fetchrow(
            "SELECT c.oid, c.relreplident, c.relkind FROM pg_catalog.pg_class c"
            " INNER JOIN pg_catalog.pg_namespace n ON (c.relnamespace = n.oid)"
            " WHERE n.nspname = 'public' AND c.relname = 'items'"
        )
        assert relation is not None
        async with await connect(running.service.config.database.url()) as pg:
            oid = await pg.fetchval("SELECT 'public.items'::regclass::oid::int8")
            text_oid = await pg.fetchval("SELECT 'text'::regtype::oid::int8")
        assert tuple(relation) == (oid, "f", "r")  # electrified tables: REPLICA IDENTITY FULL
        columns = await conn.fetch(
            "SELECT a.attname, a.atttypid, a.attnum = ANY(i.indkey)"
            " FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_index i"
            f" ON (i.indexrelid = pg_get_replica_identity_index({oid}))"
            " WHERE a.attnum > 0::pg_catalog.int2 AND NOT a.attisdropped"
            f" AND a.attgenerated = '' AND a.attrelid = {oid} ORDER BY a.attnum"
        )
        assert [tuple(c) for c in columns] == [("id", 20, None), ("v", text_oid, None)]


async def test_a_new_column_reaches_postgres_after_its_migration(db: str, running: Running) -> None:
    publisher = running.publisher
    await publisher.write(client_write("c", 1, [{"id": "1", "v": "a"}]))
    # the migration adds a column to the table and its shadow: the apply worker gets the
    # relation again, with the new column, before the first row that has it
    await sql(
        db,
        "BEGIN; CALL electric.migration_version('2');"
        " ALTER TABLE items ADD COLUMN w text;"
        " CALL electric.alter_shadow_table('public', 'items', 'add', 'w', 'text');"
        " CALL electric.capture_ddl('ALTER TABLE items ADD COLUMN w text');"
        " COMMIT",
    )
    history = running.service.migrations
    assert history is not None
    await until(lambda: history.version == "2")
    await publisher.write(client_write("c", 2, [{"id": "2", "v": "b", "w": "new"}]))
    assert await fetch(db, "SELECT id, v, w FROM items ORDER BY id") == [
        (1, "a", None),
        (2, "b", "new"),
    ]


async def test_the_stream_decodes_as_pgoutput_and_ends_with_copy_done(running: Running) -> None:
    """A replication client of our own in place of the apply worker (it takes the stream over):
    what it receives decodes as one transaction of inserts; CopyDone ends the stream and the
    connection takes commands again."""
    publisher = running.publisher
    password = dict(p.split("=", 1) for p in publisher.conninfo.split())["password"]
    params = ConnectParams(
        host="127.0.0.1",
        port=publisher.port,
        password=password,
        database="electric",
        sslmode="disable",
        application_name=SUBSCRIPTION,
    )
    decoder = _native.PgOutputDecoder()
    async with await connect(params, replication="database") as conn:
        stream = await conn.start_replication(
            f'START_REPLICATION SLOT "{SUBSCRIPTION}" LOGICAL 0/0'
            " (proto_version '1', publication_names '\"electric_publication\"')"
        )
        await until(lambda: publisher.streaming)
        write = client_write("c", 1, [{"id": "5", "v": "five"}], ms=1_700_000_000_000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher.write, write)
            with trio.fail_after(30):
                txns: list[Any] = []
                while not txns:
                    txns = decoder.decode(await stream.receive_raw_batch())
            (txn,) = txns
            # committed on our side: what write() waits for
            await stream.send_status(txn.end_lsn)
        assert txn.commit_timestamp == 1_700_000_000_000_000 - 946_684_800_000_000
        assert [(kind, schema, table) for kind, schema, table, *_ in txn.changes()] == [
            ("insert", "electric", "acknowledged_client_lsns"),
            ("insert", "public", "items"),
            ("insert", "electric", "shadow__public__items"),
        ]
        assert txn.changes()[1][3] == {"id": 5, "v": "five"}
        await stream.stop()
        assert len(await conn.fetch("IDENTIFY_SYSTEM")) == 1


def own_client_params(publisher: LogicalPublisher) -> ConnectParams:
    """Our own replication client, with the subscription's password and name."""
    password = dict(p.split("=", 1) for p in publisher.conninfo.split())["password"]
    return ConnectParams(
        host="127.0.0.1",
        port=publisher.port,
        password=password,
        database="electric",
        sslmode="disable",
        application_name=SUBSCRIPTION,
    )


async def test_a_subscriber_ahead_of_our_lsns_gets_the_queue_after_its_position(
    running: Running,
) -> None:
    """Postgres asking to start after an LSN we have not reached (its origin moved, or an
    older run of ours got further): the queue is given LSNs after that position, so Postgres
    does not skip it as already applied."""
    publisher = running.publisher
    ahead = 5 << 32
    decoder = _native.PgOutputDecoder()
    async with await connect(own_client_params(publisher), replication="database") as conn:
        stream = await conn.start_replication(
            f'START_REPLICATION SLOT "{SUBSCRIPTION}" LOGICAL 5/0'
            " (proto_version '1', publication_names '\"electric_publication\"')"
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(publisher.write, client_write("c", 1, [{"id": "1", "v": "a"}]))
            with trio.fail_after(30):
                txns: list[Any] = []
                while not txns:
                    txns = decoder.decode(await stream.receive_raw_batch())
            (txn,) = txns
            assert txn.commit_lsn > ahead
            await stream.send_status(txn.end_lsn)
        await stream.stop()


async def test_a_cancel_request_ends_the_stream(running: Running) -> None:
    publisher = running.publisher
    async with await connect(own_client_params(publisher), replication="database") as conn:
        stream = await conn.start_replication(
            f'START_REPLICATION SLOT "{SUBSCRIPTION}" LOGICAL 0/0'
            " (proto_version '1', publication_names '\"electric_publication\"')"
        )
        await until(lambda: publisher.streaming)
        async with await trio.open_tcp_stream("127.0.0.1", publisher.port) as raw:
            await raw.send_all(_native.encode_cancel_request(conn.backend_pid, conn._secret_key))
        with trio.fail_after(30), pytest.raises(PgError):
            await drain(stream)


async def drain(stream: Any) -> None:
    """Reads the stream until it ends (with an error)."""
    while True:
        await stream.receive_raw_batch()
