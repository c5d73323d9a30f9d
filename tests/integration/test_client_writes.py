"""Client writes into Postgres through the service, at the protocol level with a raw client: the
merge rules of server-behaviour.md §6 as the upstream scenarios exercise them (B 02.04-02.05,
E 05.01-05.06, F 06.01, C 03.12), validation of what clients send (satellite-protocol.md §6.5,
§6.6, §7.3), and exactly-once writing across reconnections.

One suite for both ways of writing: the ``mode`` fixture's params are the values of
``ELECTRIC_WRITE_TO_PG_MODE`` it runs in.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from _databases import fresh_database
from electric_trio.config import Config
from electric_trio.http.migrations import MigrationsApi
from electric_trio.pg import Connection, connect
from electric_trio.replication import ReplicationSubsystem
from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSettings, SatelliteSubsystem
from electric_trio.service import Service, serve
from electric_trio.writes.direct import APPLICATION_NAME
from electric_trio.writes.subsystem import WritesSubsystem
from official_client import describe_schema, insecure_token

Code = m.SatErrorRespErrorCode
SETTINGS = SatelliteSettings(duplicate_client_wait=0.5, close_timeout=2.0)
#: 2023-06-06T00:00:00Z, the commit time of the upstream scenarios' client transactions.
JUNE_6 = 1_686_009_600_000
DAY_MS = 86_400_000
UUID1 = "8d5ea7fb-4a9e-4ad0-9b25-6e6f2a0e4c01"
UUID2 = "8d5ea7fb-4a9e-4ad0-9b25-6e6f2a0e4c02"


@pytest.fixture(params=["direct_writes", "logical_replication"])
def mode(request: pytest.FixtureRequest) -> str:
    """``ELECTRIC_WRITE_TO_PG_MODE``: every test of this module runs in each."""
    value: str = request.param
    return value


def make_config(url: str, mode: str) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": mode,
            "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
            "LOGICAL_PUBLISHER_PORT": "0",
            "ELECTRIC_INSTANCE_ID": "test-instance",
        }
    )


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    """A fresh database per test: the service installs the electric schema in it."""
    async with fresh_database(pg_server, "et_cw") as url:
        yield url


async def start_service(
    nursery: trio.Nursery, url: str, mode: str, *, migrations_api: bool = False
) -> Service:
    """The service in ``mode``, ready; with the migrations API (``/api/migrations``) when
    asked for."""
    api = [MigrationsApi()] if migrations_api else []
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(url, mode),
            subsystems=[
                ReplicationSubsystem(),
                *api,
                SatelliteSubsystem(SETTINGS),
                WritesSubsystem(),
            ],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    return service


@pytest.fixture
async def pg(db: str) -> AsyncIterator[Connection]:
    """A plain connection to the test database (Postgres-side writes and checks)."""
    async with await connect(db) as conn:
        yield conn


ENTRIES = (
    "CREATE TABLE entries (id uuid PRIMARY KEY, content varchar NOT NULL, content_b text);"
    " CALL electric.electrify('entries');"
)


#: The official client's scenarios' table: (version, DDL) for ``migrate``.
ITEMS = (
    "20240101000000",
    "CREATE TABLE items (id text PRIMARY KEY, title text, n int4);"
    " CALL electric.electrify('items');",
)


async def migrate(service: Service, pg: Connection, version: str, ddl: str) -> None:
    """One migration, applied directly; returns once the service's schema has it."""
    await pg.execute(f"BEGIN; CALL electric.migration_version('{version}'); {ddl} COMMIT")
    assert service.migrations is not None
    assert service.txlog is not None
    with trio.fail_after(30):
        while not any(v.version == version for v in service.migrations.migrations):
            await service.txlog.wait_after(service.txlog.last_lsn or 0)


@pytest.fixture
async def service(db: str, mode: str, nursery: trio.Nursery, pg: Connection) -> Service:
    """The service with ``entries`` (the upstream scenarios' table) electrified."""
    service = await start_service(nursery, db, mode)
    await migrate(service, pg, "1", ENTRIES)
    return service


# ---- a raw client -------------------------------------------------------------------------


def row(*values: str | bytes | None) -> m.SatOpRow:
    """A SatOpRow: one value per column, None for NULL (§6.5)."""
    mask = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v is None:
            mask[i // 8] |= 0x80 >> (i % 8)
    return m.SatOpRow(
        nulls_bitmask=bytes(mask),
        values=tuple(
            b"" if v is None else v if isinstance(v, bytes) else v.encode() for v in values
        ),
    )


def insert(rel: int, *values: str | None, tags: Sequence[str] = ()) -> m.SatTransOp:
    return m.SatTransOp(
        insert=m.SatOpInsert(relation_id=rel, row_data=row(*values), tags=tuple(tags))
    )


def update(
    rel: int, new: Sequence[str | None], old: Sequence[str | None], tags: Sequence[str] = ()
) -> m.SatTransOp:
    return m.SatTransOp(
        update=m.SatOpUpdate(
            relation_id=rel, row_data=row(*new), old_row_data=row(*old), tags=tuple(tags)
        )
    )


def delete(rel: int, *old: str | None, tags: Sequence[str] = ()) -> m.SatTransOp:
    return m.SatTransOp(
        delete=m.SatOpDelete(relation_id=rel, old_row_data=row(*old), tags=tuple(tags))
    )


def compensation(rel: int, *pk_row: str | None, tags: Sequence[str] = ()) -> m.SatTransOp:
    return m.SatTransOp(
        compensation=m.SatOpCompensation(relation_id=rel, pk_data=row(*pk_row), tags=tuple(tags))
    )


def begin(lsn: int, ts: int) -> m.SatTransOp:
    return m.SatTransOp(begin=m.SatOpBegin(commit_timestamp=ts, lsn=lsn.to_bytes(4, "big")))


COMMIT = m.SatTransOp(commit=m.SatOpCommit())


def relation(rel: int, table: str, *columns: tuple[str, str, bool]) -> m.SatRelation:
    """The client's relation: (name, type, is_nullable) per column (the client leaves
    ``primaryKey`` unset)."""
    return m.SatRelation(
        schema_name="public",
        table_name=table,
        relation_id=rel,
        columns=tuple(m.SatRelationColumn(name=n, type=t, is_nullable=nl) for n, t, nl in columns),
    )


ENTRIES_REL = relation(
    0, "entries", ("id", "TEXT", False), ("content", "TEXT", False), ("content_b", "TEXT", True)
)


class Client:
    """A raw Satellite client: frames through the codec, RPC calls with ids from 1."""

    def __init__(self, ws: WebSocketConnection, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.ids = itertools.count(1)
        self.inbox: list[m.FrameMessage] = []
        #: The server's startReplication request of this connection.
        self.start: m.SatInStartReplicationReq | None = None

    async def send(self, *messages: m.FrameMessage) -> None:
        for message in messages:
            await self.ws.send_message(m.encode(message))

    async def recv(self, within: float = 15) -> m.FrameMessage:
        if self.inbox:
            return self.inbox.pop(0)
        with trio.fail_after(within):
            data = await self.ws.get_message()
        assert isinstance(data, bytes)
        return m.decode(data)

    async def call(self, method: str, body: m.ProtoMessage) -> m.SatRpcResponse:
        request_id = next(self.ids)
        await self.send(
            m.SatRpcRequest(method=method, request_id=request_id, message=m.encode_message(body))
        )
        kept: list[m.FrameMessage] = []
        try:
            while True:
                message = await self.recv()
                if isinstance(message, m.SatRpcResponse) and message.request_id == request_id:
                    return message
                kept.append(message)
        finally:
            self.inbox[:0] = kept

    async def connect(self, *, stream: bool = True) -> None:
        """Authenticates, answers the server's startReplication and (``stream``) starts the
        server's stream, so that echoes arrive."""
        reply = await self.call(
            "authenticate", m.SatAuthReq(id=self.client_id, token=insecure_token(sub="alice"))
        )
        assert reply.message is not None, reply
        while True:
            message = await self.recv()
            if isinstance(message, m.SatRpcRequest) and message.method == "startReplication":
                break
            self.inbox.append(message)
        start = m.rpc_request_body(message)
        assert isinstance(start, m.SatInStartReplicationReq)
        self.start = start
        await self.send(
            m.SatRpcResponse(
                method="startReplication",
                request_id=message.request_id,
                message=m.encode_message(m.SatInStartReplicationResp()),
            )
        )
        if stream:
            reply = await self.call("startReplication", m.SatInStartReplicationReq())
            body = m.rpc_response_body(reply)
            assert isinstance(body, m.SatInStartReplicationResp)
            assert body.err is None, body

    async def write(self, lsn: int, ts: int, *ops: m.SatTransOp) -> None:
        """One client transaction in one frame."""
        await self.send(m.SatOpLog(ops=(begin(lsn, ts), *ops, COMMIT)))

    async def echo(self, within: float = 15) -> m.SatOpBegin:
        """The begin of the next transaction of ours the server streams back (others are
        acknowledged and skipped)."""
        with trio.fail_after(within):
            while True:
                frame = await self.recv(within=math.inf)  # bounded by ``within`` above
                if not isinstance(frame, m.SatOpLog) or frame.ops[0].begin is None:
                    continue
                b = frame.ops[0].begin
                if b.transaction_id is not None:
                    await self.send(m.SatOpLogAck(transaction_id=b.transaction_id, lsn=b.lsn))
                if b.origin == self.client_id:
                    return b

    async def expect_close(self, code: int, within: float = 15) -> list[m.FrameMessage]:
        """The frames received until the server closes with ``code``."""
        frames = list(self.inbox)
        self.inbox.clear()
        with trio.fail_after(within):
            while True:
                try:
                    data = await self.ws.get_message()
                except ConnectionClosed:
                    break
                assert isinstance(data, bytes)
                frames.append(m.decode(data))
        assert self.ws.closed is not None
        assert self.ws.closed.code == code, self.ws.closed
        return frames


@asynccontextmanager
async def client(service: Service, client_id: str, *, stream: bool = True) -> AsyncIterator[Client]:
    """A connected client (see :meth:`Client.connect`)."""
    tcp = await trio.open_tcp_stream("127.0.0.1", service.http_port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery, tcp, "127.0.0.1", "/ws", subprotocols=["electric.0.12"]
            )
            try:
                c = Client(ws, client_id)
                await c.connect(stream=stream)
                yield c
            finally:
                with trio.move_on_after(2):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await tcp.aclose()


# ---- Postgres side ------------------------------------------------------------------------


async def entries(pg: Connection) -> list[tuple[Any, ...]]:
    rows = await pg.fetch("SELECT id::text, content, content_b FROM entries ORDER BY id")
    return [tuple(r) for r in rows]


async def pg_tag(pg: Connection, table: str, key: str, column: str = "_tag") -> str:
    """A row's shadow tag (or ``_tag_<col>``) in Satellite form, ``origin@ms``.

    Waits a little for the row: an echo streams once its commit is flushed to the WAL, a
    moment before Postgres makes the commit visible to other sessions (seen in
    logical_replication mode, where the apply worker commits)."""
    with trio.move_on_after(10):
        while (  # noqa: ASYNC110 (Postgres state, no event to wait on)
            value := await pg.fetchrow(
                f"SELECT coalesce(({column}).source_id, 'postgres_1'),"
                f" (extract(epoch FROM ({column}).timestamp) * 1000)::int8"
                f" FROM electric.shadow__public__{table} WHERE id = $1::uuid",
                key,
            )
        ) is None:
            await trio.sleep(0.02)
    assert value is not None
    return f"{value[0]}@{value[1]}"


async def acked(pg: Connection, client_id: str) -> bytes | None:
    value = await pg.fetchval(
        "SELECT lsn FROM electric.acknowledged_client_lsns WHERE client_id = $1", client_id
    )
    return None if value is None else bytes(value)


def ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


# ---- B: a client write reaches Postgres and comes back (02.04, 02.05) -----------------------


async def test_insert_reaches_postgres_and_echoes_with_the_clients_time(
    service: Service, pg: Connection
) -> None:
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL)
        await c.write(1, JUNE_6, insert(0, UUID1, "sentinel value", None))
        echo = await c.echo()
        assert (echo.origin, echo.commit_timestamp) == ("client_1_1", JUNE_6)
    assert await entries(pg) == [(UUID1, "sentinel value", None)]
    tag = await pg.fetchrow(
        "SELECT (_tag).timestamp, (_tag).source_id FROM electric.shadow__public__entries"
    )
    assert tag is not None
    assert tuple(tag) == (dt.datetime(2023, 6, 6, tzinfo=dt.UTC), "client_1_1")
    assert await acked(pg, "client_1_1") == b"\x00\x00\x00\x01"


async def test_delete_that_observed_the_postgres_insert(service: Service, pg: Connection) -> None:
    await pg.execute(f"INSERT INTO entries VALUES ('{UUID1}', 'sentinel value', NULL)")
    observed = await pg_tag(pg, "entries", UUID1)
    assert observed.startswith("postgres_1@")
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL)
        now = ms(dt.datetime.now(dt.UTC))
        await c.write(1, now, delete(0, UUID1, "sentinel value", None, tags=[observed]))
        await c.echo()
    assert await entries(pg) == []
    tombstone = await pg.fetch("SELECT content FROM electric.tombstone__public__entries")
    assert [tuple(r) for r in tombstone] == [("sentinel value",)]


# ---- E: conflict resolution (05.01-05.06) -----------------------------------------------------


async def test_an_update_older_than_the_postgres_write_loses(
    service: Service, pg: Connection
) -> None:
    await pg.execute(f"INSERT INTO entries VALUES ('{UUID1}', 'sentinel value', NULL)")
    observed = await pg_tag(pg, "entries", UUID1)
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL)
        await c.write(
            1,
            JUNE_6,
            update(
                0,
                [UUID1, "updated on client", None],
                [UUID1, "sentinel value", None],
                tags=[observed],
            ),
        )
        echo = await c.echo()
        assert echo.commit_timestamp == JUNE_6
    assert await entries(pg) == [(UUID1, "sentinel value", None)]


async def test_concurrent_updates_of_different_columns_merge(
    service: Service, pg: Connection
) -> None:
    await pg.execute(f"INSERT INTO entries VALUES ('{UUID1}', 'sentinel value', NULL)")
    observed = await pg_tag(pg, "entries", UUID1)
    now = ms(dt.datetime.now(dt.UTC))
    old = [UUID1, "sentinel value", None]
    async with client(service, "client_1_1") as c1, client(service, "client_2_1") as c2:
        await c1.send(ENTRIES_REL)
        await c2.send(ENTRIES_REL)
        await c1.write(
            1, now + 1, update(0, [UUID1, "updated on client 1", None], old, tags=[observed])
        )
        await c2.write(
            1,
            now + 2,
            update(0, [UUID1, "sentinel value", "updated on client 2"], old, tags=[observed]),
        )
        await c1.echo()
        await c2.echo()
    assert await entries(pg) == [(UUID1, "updated on client 1", "updated on client 2")]


async def test_postgres_wins_against_a_future_dated_client_write(
    service: Service, pg: Connection, db: str
) -> None:
    await pg.execute(f"INSERT INTO entries VALUES ('{UUID1}', 'sentinel value', NULL)")
    observed = await pg_tag(pg, "entries", UUID1)
    future = ms(dt.datetime.now(dt.UTC)) + DAY_MS
    async with await connect(db) as other:
        await other.execute("BEGIN; SELECT 1")  # the Postgres transaction starts first
        async with client(service, "client_1_1") as c:
            await c.send(ENTRIES_REL)
            await c.write(
                1,
                future,
                update(
                    0,
                    [UUID1, "client value", None],
                    [UUID1, "sentinel value", None],
                    tags=[observed],
                ),
            )
            await c.echo()
        assert await entries(pg) == [(UUID1, "client value", None)]
        await other.execute(f"UPDATE entries SET content = 'postgres value' WHERE id = '{UUID1}'")
        await other.execute("COMMIT")
    assert await entries(pg) == [(UUID1, "postgres value", None)]
    source, at = (await pg_tag(pg, "entries", UUID1, "_tag_content")).split("@")
    assert source == "postgres_1"  # a NULL source: Postgres's own write
    assert int(at) >= future


async def test_an_update_that_missed_a_delete_resurrects_the_row(
    service: Service, pg: Connection
) -> None:
    await pg.execute(f"INSERT INTO entries VALUES ('{UUID1}', 'sentinel value', NULL)")
    observed = await pg_tag(pg, "entries", UUID1)
    await pg.execute(f"UPDATE entries SET content = 'updated value' WHERE id = '{UUID1}'")
    await pg.execute(f"DELETE FROM entries WHERE id = '{UUID1}'")
    assert await entries(pg) == []
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL)
        await c.write(
            1,
            ms(dt.datetime.now(dt.UTC)),
            update(
                0,
                [UUID1, "sentinel value", "new value"],
                [UUID1, "sentinel value", None],
                tags=[observed],
            ),
        )
        echo = await c.echo()
        assert echo.origin == "client_1_1"
    assert await entries(pg) == [(UUID1, "updated value", "new value")]


PARENT_CHILD = (
    "CREATE TABLE items (id uuid PRIMARY KEY, content text NOT NULL);"
    " CREATE TABLE other_items (id uuid PRIMARY KEY, content text NOT NULL,"
    "  item_id uuid REFERENCES items (id));"
    " CALL electric.electrify('items'); CALL electric.electrify('other_items');"
)
ITEMS_REL = relation(1, "items", ("id", "TEXT", False), ("content", "TEXT", False))
OTHER_REL = relation(
    2, "other_items", ("id", "TEXT", False), ("content", "TEXT", False), ("item_id", "TEXT", True)
)


async def test_parent_insert_compensation_and_child_in_one_transaction(
    service: Service, pg: Connection
) -> None:
    await migrate(service, pg, "2", PARENT_CHILD)
    async with client(service, "client_1_1") as c:
        await c.send(ITEMS_REL, OTHER_REL)
        await c.write(
            1,
            ms(dt.datetime.now(dt.UTC)),
            insert(1, UUID1, "parent"),
            compensation(1, UUID1, None),
            insert(2, UUID2, "child", UUID1),
        )
        await c.echo()
    assert [tuple(r) for r in await pg.fetch("SELECT id::text, content FROM items")] == [
        (UUID1, "parent")
    ]
    assert [
        tuple(r) for r in await pg.fetch("SELECT id::text, item_id::text FROM other_items")
    ] == [(UUID2, UUID1)]


async def test_compensation_recreates_a_parent_deleted_meanwhile(
    service: Service, pg: Connection
) -> None:
    await migrate(service, pg, "2", PARENT_CHILD)
    async with client(service, "client_1_1") as c:
        await c.send(ITEMS_REL, OTHER_REL)
        await c.write(1, ms(dt.datetime.now(dt.UTC)), insert(1, UUID1, "hello world"))
        await c.echo()
        client_tag = await pg_tag(pg, "items", UUID1)
        # Postgres deletes the parent; the client, offline, did not see it
        await pg.execute(f"DELETE FROM items WHERE id = '{UUID1}'")
        await c.write(
            2,
            ms(dt.datetime.now(dt.UTC)) + 10,
            # the client's compensation trigger fires before its oplog trigger
            compensation(1, UUID1, None, tags=[client_tag]),
            insert(2, UUID2, "child", UUID1),
        )
        await c.echo()
    # (the echo may come a moment before the commit is visible here: see pg_tag)
    assert await pg_rows(pg, "SELECT id::text, content FROM items", 1) == [(UUID1, "hello world")]
    assert await pg_rows(pg, "SELECT id FROM other_items", 1)


async def test_quoted_table_and_column_names(service: Service, pg: Connection) -> None:
    await migrate(
        service,
        pg,
        "2",
        'CREATE TABLE "camelCase" (id text PRIMARY KEY, "userId" text);'
        " CALL electric.electrify('public.\"camelCase\"');",
    )
    rel = relation(3, "camelCase", ("id", "TEXT", False), ("userId", "TEXT", True))
    now = ms(dt.datetime.now(dt.UTC))
    async with client(service, "client_1_1") as c:
        await c.send(rel)
        await c.write(1, now, insert(3, "a", "u1"))
        assert (await c.echo()).origin == "client_1_1"
        await c.write(2, now + 5, update(3, ["a", "u2"], ["a", "u1"], tags=[f"client_1_1@{now}"]))
        assert (await c.echo()).commit_timestamp == now + 5
    # (the echo may come a moment before the commit is visible here: see pg_tag)
    with trio.move_on_after(10):
        while [  # noqa: ASYNC110 (Postgres state, no event to wait on)
            tuple(r) for r in await pg.fetch('SELECT * FROM "camelCase"')
        ] != [("a", "u2")]:
            await trio.sleep(0.02)
    assert [tuple(r) for r in await pg.fetch('SELECT * FROM "camelCase"')] == [("a", "u2")]
    tags = await pg.fetchval(
        'SELECT array_agg((t).source_id) FROM electric."shadow__public__camelCase",'
        " unnest(_tags) AS t"
    )
    assert tags == ["client_1_1"]


# "by", "loop", "while" and "strict" are words PL/pgSQL reserves but SQL does not, "user" is
# reserved in SQL, "position" is a column-name keyword, "new" the name of a PL/pgSQL variable
# (and a key: the generated code compares keys unqualified); the foreign key makes every write
# of a child report its parent (the generated fk-chain functions).
SAY_HI = '"say ""hi"""'  # the column say "hi"
KEYWORDS = (
    'CREATE TABLE "by" (by text PRIMARY KEY, position text, "user" text, "userId" text,'
    f" {SAY_HI} text);"
    ' CREATE TABLE loop (new text PRIMARY KEY, "while" text REFERENCES "by" (by), strict int4);'
    " CALL electric.electrify('by'); CALL electric.electrify('loop');"
)
BY_REL = relation(
    6,
    "by",
    ("by", "TEXT", False),
    ("position", "TEXT", True),
    ("user", "TEXT", True),
    ("userId", "TEXT", True),
    ('say "hi"', "TEXT", True),
)
LOOP_REL = relation(
    7, "loop", ("new", "TEXT", False), ("while", "TEXT", True), ("strict", "INTEGER", True)
)


async def test_keywords_and_quotes_in_table_and_column_names(
    service: Service, pg: Connection
) -> None:
    await migrate(service, pg, "2", KEYWORDS)
    # Postgres-side writes: every trigger of both tables
    await pg.execute(
        "INSERT INTO \"by\" VALUES ('p', 'pos', 'u', 'uid', 'hi'), ('gone', '1', '2', '3', '4');"
        f" UPDATE \"by\" SET {SAY_HI} = 'hi there', position = 'pos 2' WHERE by = 'p';"
        " DELETE FROM \"by\" WHERE by = 'gone';"
        " INSERT INTO loop VALUES ('l', 'p', 1); UPDATE loop SET strict = 2"
    )
    observed = await pg.fetchval(
        "SELECT coalesce((_tag).source_id, 'postgres_1') || '@'"
        " || (extract(epoch FROM (_tag).timestamp) * 1000)::int8"
        " FROM electric.shadow__public__by WHERE by = 'p'"
    )
    now = ms(dt.datetime.now(dt.UTC))
    async with client(service, "client_1_1") as c:
        await c.send(BY_REL, LOOP_REL)
        await c.write(
            1,
            now,
            insert(6, "c", "1", "2", "3", 'say "hi"'),
            compensation(6, "p", None, None, None, None, tags=[observed]),
            insert(7, "m", "p", "7"),
        )
        assert (await c.echo()).origin == "client_1_1"
        await c.write(
            2,
            now + 1,
            # one column of each row: the others keep their values
            update(
                6,
                ["p", "pos 2", "u", "uid", "hi from the client"],
                ["p", "pos 2", "u", "uid", "hi there"],
                tags=[observed],
            ),
            update(6, ["c", "1", "2", "3 bis", 'say "hi"'], ["c", "1", "2", "3", 'say "hi"']),
            update(7, ["l", "c", "2"], ["l", "p", "2"], tags=[observed]),
            delete(7, "m", "p", "7", tags=[f"client_1_1@{now}"]),
        )
        assert (await c.echo()).commit_timestamp == now + 1
    expected = [
        ("c", "1", "2", "3 bis", 'say "hi"'),
        ("p", "pos 2", "u", "uid", "hi from the client"),
    ]
    # (the echo may come a moment before the commit is visible here: see pg_tag)
    with trio.move_on_after(10):
        while [  # noqa: ASYNC110 (Postgres state, no event to wait on)
            tuple(r) for r in await pg.fetch('SELECT * FROM "by" ORDER BY by')
        ] != expected:
            await trio.sleep(0.02)
    assert [tuple(r) for r in await pg.fetch('SELECT * FROM "by" ORDER BY by')] == expected
    assert [tuple(r) for r in await pg.fetch("SELECT * FROM loop")] == [("l", "c", 2)]
    tombstones = await pg.fetch("SELECT * FROM electric.tombstone__public__loop")
    assert [tuple(r) for r in tombstones] == [("m", "p", 7)]
    tags = await pg.fetchrow(
        'SELECT ("_tag_say ""hi""").source_id, (_tag_position).source_id'
        " FROM electric.shadow__public__by WHERE by = 'p'"
    )
    assert tags is not None
    assert tuple(tags) == ("client_1_1", None)


# ---- F: validation (06.01 and the values of §6.6) --------------------------------------------


async def test_a_primary_key_update_is_refused_and_nothing_written(
    service: Service, pg: Connection
) -> None:
    await migrate(
        service,
        pg,
        "2",
        "CREATE TABLE composite (id1 int4, id2 text, v text, PRIMARY KEY (id1, id2));"
        " CALL electric.electrify('composite');",
    )
    rel = relation(
        4, "composite", ("id1", "INTEGER", False), ("id2", "TEXT", False), ("v", "TEXT", True)
    )
    now = ms(dt.datetime.now(dt.UTC))
    async with client(service, "client_1_1") as c:
        await c.send(rel)
        await c.write(1, now, insert(4, "1", "a", "x"))
        await c.echo()
        await c.write(
            2,
            now + 1,
            update(4, ["1", "a", "y"], ["1", "a", "x"], tags=[f"client_1_1@{now}"]),
            update(4, ["2", "a", "y"], ["1", "a", "y"], tags=[f"client_1_1@{now}"]),
        )
        frames = await c.expect_close(1007)
    errors = [f for f in frames if isinstance(f, m.SatErrorResp)]
    assert len(errors) == 1
    assert (errors[0].error_type, errors[0].lsn) == (Code.INVALID_REQUEST, b"\x00\x00\x00\x02")
    assert [tuple(r) for r in await pg.fetch("SELECT * FROM composite")] == [(1, "a", "x")]
    assert await acked(pg, "client_1_1") == b"\x00\x00\x00\x01"


@pytest.mark.parametrize(
    ("ops", "reason"),
    [
        ([insert(0, "not-a-uuid", "c", None)], "invalid value in entries column id"),
        ([insert(0, UUID1, None, None)], "NULL in NOT NULL column content"),
        ([insert(9, UUID1, "c", None)], "unknown relation id 9"),
        ([insert(0, UUID1, "c")], "values for 3 columns"),
        ([insert(0, UUID1, "c\x00", None)], "NUL"),
        ([insert(0, UUID1, "c", None, tags=["no-time"])], "malformed tag"),
        ([delete(0, UUID1, "c", None), insert(5, "x")], "not electrified"),
    ],
)
async def test_invalid_transactions_are_refused_with_their_lsn(
    service: Service, pg: Connection, ops: list[m.SatTransOp], reason: str
) -> None:
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL, relation(5, "not_there", ("id", "TEXT", False)))
        await c.write(7, JUNE_6, *ops)
        frames = await c.expect_close(1007)
    errors = [f for f in frames if isinstance(f, m.SatErrorResp)]
    assert len(errors) == 1
    assert (errors[0].error_type, errors[0].lsn) == (Code.INVALID_REQUEST, b"\x00\x00\x00\x07")
    assert reason in (errors[0].message or "")
    assert await entries(pg) == []
    assert await acked(pg, "client_1_1") is None


async def test_values_of_every_type_reach_postgres(service: Service, pg: Connection) -> None:
    await migrate(
        service,
        pg,
        "2",
        "CREATE TYPE colour AS ENUM ('red', 'green');"
        " CREATE TABLE typed (id int8 PRIMARY KEY, b bool, i2 int2, i4 int4, f4 float4,"
        "  f8 float8, t text, u uuid, d date, tm time, ts timestamp, tz timestamptz, j jsonb,"
        "  bin bytea, c colour);"
        " CALL electric.electrify('typed');",
    )
    names = "id b i2 i4 f4 f8 t u d tm ts tz j bin c".split()
    rel = relation(6, "typed", *((n, "TEXT", n != "id") for n in names))
    values: list[str | bytes | None] = [
        "9007199254740993",
        "t",
        "-32768",
        "2147483647",
        "1.5",
        "-Infinity",
        "it's \\ fine",
        UUID1.upper(),
        "0001-01-01",
        "23:59:59.999999",
        "2023-09-21 14:39:53.001",
        "2023-09-21 14:39:53.001Z",
        '{"a": [1, null]}',
        b"\x00\xff'",
        "green",
    ]
    async with client(service, "client_1_1") as c:
        await c.send(rel)
        await c.send(
            m.SatOpLog(
                ops=(
                    begin(1, JUNE_6),
                    m.SatTransOp(insert=m.SatOpInsert(relation_id=6, row_data=row(*values))),
                    COMMIT,
                )
            )
        )
        await c.echo()
    got = await pg.fetchrow(
        "SELECT id, b, i2, i4, f4, f8, t, u::text, d::text, tm::text, ts::text,"
        " tz = '2023-09-21 14:39:53.001+00', j::text, bin, c::text FROM typed"
    )
    assert got is not None
    assert tuple(got) == (
        9007199254740993,
        True,
        -32768,
        2147483647,
        1.5,
        float("-inf"),
        "it's \\ fine",
        UUID1,
        "0001-01-01",
        "23:59:59.999999",
        "2023-09-21 14:39:53.001",
        True,
        '{"a": [1, null]}',
        b"\x00\xff'",
        "green",
    )


# ---- receiving: frames, empty transactions, before startReplication ------------------------


async def test_a_transaction_over_several_frames(service: Service, pg: Connection) -> None:
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL)
        await c.send(m.SatOpLog(ops=(begin(1, JUNE_6), insert(0, UUID1, "one", None))))
        await c.send(m.SatOpLog(ops=(insert(0, UUID2, "two", None),)))
        await c.send(m.SatOpLog(ops=(COMMIT, begin(2, JUNE_6 + 1))))
        await c.send(m.SatOpLog(ops=(COMMIT,)))  # no changes: dropped
        await c.write(3, JUNE_6 + 2, delete(0, UUID2, "two", None, tags=[f"client_1_1@{JUNE_6}"]))
        assert (await c.echo()).commit_timestamp == JUNE_6
        assert (await c.echo()).commit_timestamp == JUNE_6 + 2
    assert await entries(pg) == [(UUID1, "one", None)]
    assert await acked(pg, "client_1_1") == b"\x00\x00\x00\x03"


async def test_transactions_before_the_client_answered_are_ignored(
    service: Service, pg: Connection
) -> None:
    tcp = await trio.open_tcp_stream("127.0.0.1", service.http_port)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(
            nursery, tcp, "127.0.0.1", "/ws", subprotocols=["electric.0.12"]
        )
        c = Client(ws, "client_1_1")
        reply = await c.call(
            "authenticate", m.SatAuthReq(id="client_1_1", token=insecure_token(sub="a"))
        )
        assert reply.message is not None
        await c.send(ENTRIES_REL)
        await c.write(1, JUNE_6, insert(0, UUID1, "early", None))
        # the server's own request is not answered yet: a later write goes through once it is
        start = c.inbox.pop() if c.inbox else await c.recv()
        assert isinstance(start, m.SatRpcRequest)
        await c.send(
            m.SatRpcResponse(
                method="startReplication",
                request_id=start.request_id,
                message=m.encode_message(m.SatInStartReplicationResp()),
            )
        )
        await c.call("startReplication", m.SatInStartReplicationReq())
        await c.write(2, JUNE_6 + 1, insert(0, UUID2, "later", None))
        await c.echo()
        await ws.aclose()
        nursery.cancel_scope.cancel()
    await tcp.aclose()
    assert await entries(pg) == [(UUID2, "later", None)]


# ---- exactly once (03.12 and replays) -----------------------------------------------------


async def test_acknowledged_client_lsns(service: Service, pg: Connection) -> None:
    now = ms(dt.datetime.now(dt.UTC))
    async with client(service, "client_1") as c1:
        assert c1.start is not None
        assert c1.start.lsn == b""
        await c1.send(ENTRIES_REL)
        await c1.write(1, now, insert(0, UUID1, "from client 1", None))
        await c1.echo()
    assert await acked(pg, "client_1") == b"\x00\x00\x00\x01"
    ids = [f"8d5ea7fb-4a9e-4ad0-9b25-6e6f2a0e4c1{i}" for i in range(3)]
    async with client(service, "client_2") as c2:
        await c2.send(ENTRIES_REL)
        for lsn, key in enumerate(ids, 1):
            await c2.write(lsn, now + lsn, insert(0, key, "from client 2", None))
        for _ in ids:
            await c2.echo()
    assert await acked(pg, "client_2") == b"\x00\x00\x00\x03"
    async with client(service, "client_1") as c1:
        # the server asks the client to resume after what Postgres has
        assert c1.start is not None
        assert c1.start.lsn == b"\x00\x00\x00\x01"
        await c1.send(ENTRIES_REL)
        await c1.write(2, now + 10, insert(0, UUID2, "again from client 1", None))
        await c1.echo()
    assert await acked(pg, "client_1") == b"\x00\x00\x00\x02"
    assert len(await entries(pg)) == 5


@pytest.mark.parametrize("mode", ["direct_writes"])
async def test_a_transaction_not_written_in_time_closes_the_connection(
    service: Service, pg: Connection
) -> None:
    """Postgres holding a queued client transaction past ``close_timeout`` (here a lock on
    the client's acknowledged position): the connection is closed (1011), so nothing the
    client sends after it is written before it; once reconnected the client sends it again
    and it is written once."""
    now = ms(dt.datetime.now(dt.UTC))
    async with client(service, "c") as c:
        await c.send(ENTRIES_REL)
        await c.write(1, now, insert(0, UUID1, "first", None))
        await c.echo()
        await pg.execute("BEGIN")
        await pg.fetch(
            "SELECT 1 FROM electric.acknowledged_client_lsns WHERE client_id = 'c' FOR UPDATE"
        )
        await c.write(2, now + 1, insert(0, UUID2, "second", None))
        frames = await c.expect_close(1011, within=SETTINGS.close_timeout + 10)
        await pg.execute("ROLLBACK")
    assert any(isinstance(f, m.SatErrorResp) and f.error_type == Code.INTERNAL for f in frames)
    assert await acked(pg, "c") == b"\x00\x00\x00\x01"
    async with client(service, "c") as c:
        assert c.start is not None
        assert c.start.lsn == b"\x00\x00\x00\x01"
        await c.send(ENTRIES_REL)
        await c.write(2, now + 1, insert(0, UUID2, "second", None))
        await c.echo()
    assert await entries(pg) == [(UUID1, "first", None), (UUID2, "second", None)]
    assert await acked(pg, "c") == b"\x00\x00\x00\x02"


async def test_a_replayed_transaction_is_not_written_again(
    service: Service, pg: Connection
) -> None:
    now = ms(dt.datetime.now(dt.UTC))
    first = insert(0, UUID1, "first", None)
    second = update(0, [UUID1, "second", None], [UUID1, "first", None], tags=[f"c@{now}"])
    async with client(service, "c") as c:
        await c.send(ENTRIES_REL)
        await c.write(1, now, first)
        await c.write(2, now + 1, second)
        await c.echo()
        await c.echo()
    xmin = await pg.fetchval("SELECT xmin::text FROM entries")
    async with client(service, "c") as c:
        # a client that resends what the server already has (e.g. its ack was lost)
        await c.send(ENTRIES_REL)
        await c.write(1, now, first)
        await c.write(2, now + 1, second)
        await c.write(3, now + 2, delete(0, UUID2, "x", None))  # a new one: written
        await c.echo()
    assert await entries(pg) == [(UUID1, "second", None)]
    assert await pg.fetchval("SELECT xmin::text FROM entries") == xmin  # untouched
    assert await acked(pg, "c") == b"\x00\x00\x00\x03"


async def test_the_writer_reconnects_without_losing_or_doubling(
    service: Service, pg: Connection, mode: str
) -> None:
    now = ms(dt.datetime.now(dt.UTC))
    async with client(service, "c") as c:
        await c.send(ENTRIES_REL)
        await c.write(1, now, insert(0, UUID1, "before", None))
        await c.echo()
        if mode == "direct_writes":
            killed = await pg.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                APPLICATION_NAME,
            )
            assert killed == 1
        await c.write(2, now + 1, insert(0, UUID2, "after", None))
        await c.echo()
    assert await entries(pg) == [(UUID1, "before", None), (UUID2, "after", None)]
    assert await acked(pg, "c") == b"\x00\x00\x00\x02"


async def test_a_transaction_postgres_refuses_closes_the_connection(
    service: Service, pg: Connection
) -> None:
    await migrate(service, pg, "2", PARENT_CHILD)
    async with client(service, "client_1_1") as c:
        await c.send(OTHER_REL)
        # a child whose parent exists nowhere: the foreign key fails in Postgres
        await c.write(1, JUNE_6, insert(2, UUID2, "orphan", UUID1))
        frames = await c.expect_close(1007)
    errors = [f for f in frames if isinstance(f, m.SatErrorResp)]
    assert len(errors) == 1
    assert (errors[0].error_type, errors[0].lsn) == (Code.INVALID_REQUEST, b"\x00\x00\x00\x01")
    assert "foreign key" in (errors[0].message or "")
    assert await pg.fetchval("SELECT count(*) FROM other_items") == 0
    assert await acked(pg, "client_1_1") is None


# ---- the official client (electric-sql 0.12.1 in Node) --------------------------------------


async def pg_rows(pg: Connection, sql: str, count: int) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` once there are ``count`` of them (client writes land asynchronously)."""
    with trio.fail_after(15):
        while len(rows := [tuple(r) for r in await pg.fetch(sql)]) != count:  # noqa: ASYNC110
            await trio.sleep(0.05)
    return rows


async def test_official_client_writes_reach_postgres_once(
    db: str, mode: str, nursery: trio.Nursery, pg: Connection, official_client: Any
) -> None:
    service = await start_service(nursery, db, mode, migrations_api=True)
    await migrate(service, pg, *ITEMS)
    assert service.migrations is not None
    url = f"http://127.0.0.1:{service.http_port}"
    client = await official_client()
    opened = await client.open(
        db=official_client.db_path("a"),
        schema=describe_schema(service.migrations.schema),
        migrations_url=url,
        url=url,
        user_id="alice",
    )
    client_id = opened["client_id"]
    await client.connect()
    # no shape subscription: the client writes to the table its migrations created
    await client.call("create", table="items", data={"id": "i1", "title": "local", "n": 1})
    assert await pg_rows(pg, "SELECT * FROM items", 1) == [("i1", "local", 1)]
    # the write came back with the client's id as origin: the client trimmed its oplog
    await client.wait_rows(
        "SELECT count(*) AS n FROM _electric_oplog", until=lambda rows: rows[0]["n"] == 0
    )
    position = await acked(pg, client_id)
    assert position is not None
    await client.call("update", table="items", where={"id": "i1"}, data={"n": 2})
    assert await pg_rows(pg, "SELECT * FROM items WHERE n = 2", 1) == [("i1", "local", 2)]
    await client.wait_rows(
        "SELECT count(*) AS n FROM _electric_oplog", until=lambda rows: rows[0]["n"] == 0
    )
    # offline writes are sent once the client is back, and only once
    await client.disconnect()
    await client.call("create", table="items", data={"id": "i2", "title": "offline", "n": 3})
    await client.connect()
    assert await pg_rows(pg, "SELECT * FROM items ORDER BY id", 2) == [
        ("i1", "local", 2),
        ("i2", "offline", 3),
    ]
    await client.wait_rows(
        "SELECT count(*) AS n FROM _electric_oplog", until=lambda rows: rows[0]["n"] == 0
    )
    last = await acked(pg, client_id)
    assert last is not None
    assert int.from_bytes(last, "big") > int.from_bytes(position, "big")
    # a reconnection resends nothing: Postgres keeps one copy and the same position
    await client.disconnect()
    await client.connect()
    await client.call("create", table="items", data={"id": "i3", "title": "marker", "n": 4})
    assert len(await pg_rows(pg, "SELECT * FROM items", 3)) == 3
    assert await pg.fetchval("SELECT count(*) FROM electric.shadow__public__items") == 3
    assert client.unhandled() == []
