"""The Satellite endpoint at the protocol level, with a raw Python WebSocket client: the upgrade
checks, the RPC layer and its errors, authentication, startReplication both ways, the first sync
of migrations, live migrations, echoes of the client's writes, acknowledgements and the window
of 30 transactions (satellite-protocol.md §1-§3, §7)."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from _databases import fresh_database
from electric_trio.config import Config
from electric_trio.pg import connect
from electric_trio.replication import ReplicationSubsystem
from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSettings, SatelliteSubsystem
from electric_trio.service import Service, serve
from official_client import insecure_token

Code = m.SatErrorRespErrorCode
ReplicationCode = m.SatInStartReplicationRespReplicationErrorCode
MAX_FRAME = 64 * 1024
SETTINGS = SatelliteSettings(
    max_frame_len=MAX_FRAME, duplicate_client_wait=0.3, close_timeout=2.0, ping_interval=20.0
)


def make_config(url: str) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
            "ELECTRIC_INSTANCE_ID": "test-instance",
        }
    )


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    """A fresh database per test: the service installs the electric schema in it."""
    async with fresh_database(pg_server, "et_sat") as url:
        yield url


async def start_service(
    nursery: trio.Nursery, url: str, satellite: SatelliteSubsystem | None = None
) -> Service:
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(url),
            subsystems=[ReplicationSubsystem(), satellite or SatelliteSubsystem(SETTINGS)],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    return service


@pytest.fixture
def satellite() -> SatelliteSubsystem:
    return SatelliteSubsystem(SETTINGS)


@pytest.fixture
async def service(db: str, nursery: trio.Nursery, satellite: SatelliteSubsystem) -> Service:
    return await start_service(nursery, db, satellite)


# ---- a raw client -------------------------------------------------------------------------


class Client:
    """A raw Satellite client: frames through the codec, RPC calls with ids from 1."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        #: Frames received while waiting for something else.
        self.inbox: list[m.FrameMessage] = []

    async def send(self, message: m.FrameMessage) -> None:
        await self.ws.send_message(m.encode(message))

    async def recv(self, within: float = 10) -> m.FrameMessage:
        if self.inbox:
            return self.inbox.pop(0)
        with trio.fail_after(within):
            data = await self.ws.get_message()
        assert isinstance(data, bytes)
        return m.decode(data)

    async def request(self, method: str, body: m.ProtoMessage) -> int:
        request_id = next(self.ids)
        await self.send(
            m.SatRpcRequest(method=method, request_id=request_id, message=m.encode_message(body))
        )
        return request_id

    async def response(self, method: str, request_id: int) -> m.SatRpcResponse:
        """The response to our call; other frames go to the inbox."""
        kept: list[m.FrameMessage] = []
        try:
            while True:
                message = await self.recv()
                if isinstance(message, m.SatRpcResponse) and (
                    message.method,
                    message.request_id,
                ) == (method, request_id):
                    return message
                kept.append(message)
        finally:
            self.inbox[:0] = kept

    async def call(self, method: str, body: m.ProtoMessage) -> m.SatRpcResponse:
        return await self.response(method, await self.request(method, body))

    async def expect_close(self, code: int, within: float = 10) -> list[m.FrameMessage]:
        """The frames received until the server closes with ``code``."""
        frames = list(self.inbox)
        self.inbox.clear()
        with trio.fail_after(within):
            while (data := await self._message_or_close()) is not None:
                frames.append(m.decode(data))
        assert self.ws.closed is not None
        assert self.ws.closed.code == code, self.ws.closed
        return frames

    async def _message_or_close(self) -> bytes | None:
        try:
            data = await self.ws.get_message()
        except ConnectionClosed:
            return None
        assert isinstance(data, bytes)
        return data

    async def authenticate(self, client_id: str, user: str = "alice") -> m.SatRpcResponse:
        return await self.call(
            "authenticate", m.SatAuthReq(id=client_id, token=insecure_token(sub=user))
        )

    async def server_request(self, method: str) -> m.SatRpcRequest:
        """The next request the server makes of us (other frames go to the inbox)."""
        kept: list[m.FrameMessage] = []
        try:
            while True:
                message = await self.recv()
                if isinstance(message, m.SatRpcRequest) and message.method == method:
                    return message
                kept.append(message)
        finally:
            self.inbox[:0] = kept

    async def connect(self, client_id: str, user: str = "alice") -> m.SatRpcRequest:
        """Authenticates and answers the server's startReplication; returns that request."""
        reply = await self.authenticate(client_id, user)
        assert reply.message is not None, reply
        start = await self.server_request("startReplication")
        await self.send(
            m.SatRpcResponse(
                method="startReplication",
                request_id=start.request_id,
                message=m.encode_message(m.SatInStartReplicationResp()),
            )
        )
        return start

    async def start_replication(self, **fields: Any) -> m.SatInStartReplicationResp:
        reply = await self.call("startReplication", m.SatInStartReplicationReq(**fields))
        body = m.rpc_response_body(reply)
        assert isinstance(body, m.SatInStartReplicationResp)
        return body

    async def transactions(self, count: int, within: float = 10) -> list[m.FrameMessage]:
        """Frames up to and including ``count`` SatOpLog frames."""
        frames: list[m.FrameMessage] = []
        seen = 0
        while seen < count:
            frame = await self.recv(within)
            frames.append(frame)
            seen += isinstance(frame, m.SatOpLog)
        return frames

    async def nothing_for(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            frame = await self.recv(seconds + 1)
            raise AssertionError(f"unexpected {frame}")


@asynccontextmanager
async def client(
    service: Service, subprotocol: str = "electric.0.12", *, rcvbuf: int | None = None
) -> AsyncIterator[Client]:
    """A raw client over a WebSocket of its own; ``rcvbuf``: its socket's receive buffer
    (small, the service's writes to it block soon after it stops reading)."""
    # Our own TCP stream: trio-websocket's client leaves its socket open after a close the
    # server started.
    if rcvbuf is None:
        stream = await trio.open_tcp_stream("127.0.0.1", service.http_port)
    else:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", service.http_port))
        stream = trio.SocketStream(sock)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(
                nursery,
                stream,
                "127.0.0.1",
                "/ws",
                subprotocols=[subprotocol],
                max_message_size=16 * 1024 * 1024,
            )
            try:
                yield Client(ws)
            finally:
                with trio.move_on_after(2):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


async def http(port: int, head: str) -> tuple[int, bytes]:
    """Sends a request head, returns the status and body of the answer."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(head.encode())
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), body


def upgrade_head(*protocols: str, key: bool = True) -> str:
    lines = [
        "GET /ws HTTP/1.1",
        "host: localhost",
        "upgrade: websocket",
        "connection: Upgrade",
        "sec-websocket-version: 13",
    ]
    if key:
        lines.append("sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==")
    lines += [f"sec-websocket-protocol: {p}" for p in protocols]
    return "\r\n".join(lines) + "\r\n\r\n"


async def sql(url: str, statements: str) -> None:
    async with await connect(url) as c:
        await c.execute(statements)


def migration_sql(version: str, table: str, columns: str = "id int8 PRIMARY KEY, v text") -> str:
    return (
        f"BEGIN; CALL electric.migration_version('{version}');"
        f" CREATE TABLE {table} ({columns}); CALL electric.electrify('{table}'); COMMIT;"
    )


def client_write_sql(client_id: str, ids: Iterable[int]) -> str:
    """Client transactions as the writer applies them (server-behaviour.md §7): each comes back
    from the log with the client's id as its origin."""
    return "".join(
        "BEGIN; SET LOCAL electric.session_replication_role = replica;"
        f"INSERT INTO electric.acknowledged_client_lsns AS t VALUES ('{client_id}', '\\x{i:08x}')"
        " ON CONFLICT (client_id) DO UPDATE SET lsn = excluded.lsn;"
        f"INSERT INTO items (id, v) VALUES ({i}, 'from a client');"
        "INSERT INTO electric.shadow__public__items"
        " (id, _tag, _is_a_delete_operation, _observed_tags, _modified_columns_bit_mask)"
        f" VALUES ({i}, '(\"2024-01-01 00:00:00.123+00\",{client_id})', false, '{{}}', '{{t}}');"
        "COMMIT;"
        for i in ids
    )


async def wait_versions(service: Service, count: int) -> None:
    """Until the history has ``count`` versions (they are applied before their transaction
    enters the log)."""
    assert service.migrations is not None
    assert service.txlog is not None
    with trio.fail_after(30):
        while len(service.migrations.migrations) < count:
            await service.txlog.wait_after(service.txlog.last_lsn or 0)


async def wait_log_after(service: Service, lsn: int, count: int = 1) -> None:
    assert service.txlog is not None
    with trio.fail_after(30):
        while len(service.txlog.read_after(lsn, 10**6)) < count:
            await service.txlog.wait_after(service.txlog.last_lsn or 0)


def oplogs(frames: Iterable[m.FrameMessage]) -> list[m.SatOpLog]:
    return [f for f in frames if isinstance(f, m.SatOpLog)]


# ---- the upgrade (§1) ---------------------------------------------------------------------


async def test_the_subprotocol_is_echoed(service: Service) -> None:
    async with client(service) as c:
        assert c.ws.subprotocol == "electric.0.12"
    async with client(service, "electric.0.10") as c:
        assert c.ws.subprotocol == "electric.0.10"


REQUIRES = b"this server requires >= 0.10.0 and <= 0.12.1"


@pytest.mark.parametrize(
    ("protocols", "body"),
    [
        ((), b"Missing satellite websocket subprotocol"),
        (("other",), b"Missing satellite websocket subprotocol"),
        (("electric.0.12", "electric.0.11"), b"Missing satellite websocket subprotocol"),
        (("electric.0.12, other",), b"Missing satellite websocket subprotocol"),
        (("electric.zero",), b"Missing satellite websocket subprotocol"),
        (("electric.0.9",), b"Cannot connect satellite version 0.9.0: " + REQUIRES),
        (("electric.0.13",), b"Cannot connect satellite version 0.13.0: " + REQUIRES),
    ],
)
async def test_refused_subprotocols(
    service: Service, protocols: tuple[str, ...], body: bytes
) -> None:
    assert await http(service.http_port, upgrade_head(*protocols)) == (400, body)


async def test_refused_upgrades(service: Service) -> None:
    port = service.http_port
    assert await http(port, upgrade_head("electric.0.12", key=False)) == (400, b"Bad request")
    plain = "GET /ws HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    assert await http(port, plain) == (400, b"Bad request")


async def test_503_until_the_service_is_ready(db: str, nursery: trio.Nursery) -> None:
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(db),
            subsystems=[ReplicationSubsystem(), SatelliteSubsystem(SETTINGS)],
            handle_signals=False,
        )
    )
    status, body = await http(service.http_port, upgrade_head("electric.0.12"))
    assert (status, body) == (503, b"Postgres connection is not ready: starting...")
    with trio.fail_after(60):
        await service.wait_ready()
    async with client(service) as c:
        assert (await c.authenticate("a")).message is not None


# ---- authentication and the RPC layer (§3, §7.1) --------------------------------------------


async def test_authenticate_then_the_servers_start_replication(service: Service) -> None:
    async with client(service) as c:
        reply = await c.authenticate("client-1")
        assert reply.error is None
        assert m.rpc_response_body(reply) == m.SatAuthResp(id="test-instance")
        start = await c.server_request("startReplication")
        assert start.request_id == 0  # the server counts its calls from 0
        assert m.rpc_request_body(start) == m.SatInStartReplicationReq(lsn=b"")
        # renewal: same id, a valid token of the same user
        renewed = await c.authenticate("client-1")
        assert m.rpc_response_body(renewed) == m.SatAuthResp(id="test-instance")


async def test_refused_renewals(service: Service) -> None:
    async with client(service) as c:
        await c.connect("client-r", user="alice")
        reply = await c.authenticate("client-r", user="bob")
        assert reply.error == m.SatErrorResp(error_type=Code.INVALID_REQUEST)
        await c.expect_close(1007)
    async with client(service) as c:
        await c.connect("client-r2")
        reply = await c.authenticate("other-id")
        assert reply.error == m.SatErrorResp(error_type=Code.INVALID_REQUEST)
        await c.expect_close(1007)


async def assert_still_served(c: Client) -> None:
    """A connected client keeps working while others are cut off."""
    resp = await c.call("unsubscribe", m.SatUnsubsReq(subscription_ids=("x",)))
    assert resp.message == b""


async def test_bad_tokens_and_ids(service: Service) -> None:
    async with client(service) as bystander:
        await bystander.connect("bystander")
        async with client(service) as c:
            reply = await c.call("authenticate", m.SatAuthReq(id="c", token="not a token"))
            assert reply.error == m.SatErrorResp(error_type=Code.AUTH_REQUIRED)
            assert reply.message is None
            assert await c.expect_close(1007) == []
        async with client(service) as c:
            # a token without a user id
            reply = await c.call("authenticate", m.SatAuthReq(id="c", token=insecure_token()))
            assert reply.error == m.SatErrorResp(error_type=Code.AUTH_REQUIRED)
            await c.expect_close(1007)
        for auth in (m.SatAuthReq(id="", token=insecure_token(sub="a")), m.SatAuthReq(id="c")):
            async with client(service) as c:
                reply = await c.call("authenticate", auth)
                assert reply.error is not None
                assert reply.error.error_type == Code.INVALID_REQUEST
                await c.expect_close(1007)
        await assert_still_served(bystander)


async def test_rpc_before_authentication(service: Service) -> None:
    async with client(service) as c:
        reply = await c.call("startReplication", m.SatInStartReplicationReq())
        assert reply.error == m.SatErrorResp(error_type=Code.AUTH_REQUIRED)
        await c.expect_close(1007)
    async with client(service) as c:
        await c.send(m.SatOpLogAck(transaction_id=1, lsn=b"1"))
        assert await c.expect_close(1007) == [m.SatErrorResp(error_type=Code.AUTH_REQUIRED)]


async def test_duplicate_client_ids(service: Service) -> None:
    async with client(service) as first:
        await first.connect("dup")
        async with client(service) as second:
            with trio.fail_after(5):
                reply = await second.authenticate("dup")
            assert reply.error is not None
            assert reply.error.error_type == Code.INVALID_REQUEST
            await second.expect_close(1007)
        await assert_still_served(first)
        async with client(service) as third:
            # the first one leaves while the third waits: the third gets in
            async with trio.open_nursery() as nursery:
                nursery.start_soon(first.ws.aclose)
                reply = await third.authenticate("dup")
            assert reply.message is not None


async def test_malformed_frames_close_only_their_connection(service: Service) -> None:
    async with client(service) as bystander:
        await bystander.connect("bystander")
        bad_frames = [
            bytes([99]) + b"\x0a\x00",  # unknown type byte
            bytes([1]),  # a reserved type byte
            bytes([21]) + b"\x0a\xff\xff",  # an RPC request cut short
            b"",  # no type byte at all
        ]
        for frame in bad_frames:
            async with client(service) as c:
                await c.ws.send_message(frame)
                assert await c.expect_close(1007) == [m.SatErrorResp()]
        async with client(service) as c:
            await c.ws.send_message("text")
            [error] = await c.expect_close(1007)
            assert isinstance(error, m.SatErrorResp)
            assert error.error_type == Code.INVALID_REQUEST
        async with client(service) as c:
            await c.connect("big")
            await c.ws.send_message(bytes([9]) + b"\x00" * MAX_FRAME)
            [error] = await c.expect_close(1009)
            assert error == m.SatErrorResp(
                error_type=Code.INVALID_REQUEST,
                message=f"frame of {MAX_FRAME + 1} bytes is over the limit of {MAX_FRAME} bytes",
            )
        await assert_still_served(bystander)


async def test_unknown_methods_and_bad_payloads(service: Service) -> None:
    async with client(service) as bystander:
        await bystander.connect("bystander")
        async with client(service) as c:
            await c.connect("c")
            reply = await c.call("dropEverything", m.SatInStopReplicationReq())
            assert reply.error is not None
            assert reply.error.error_type == Code.INVALID_REQUEST
            assert reply.method == "dropEverything"
            await c.expect_close(1007)
        async with client(service) as c:
            await c.send(m.SatRpcRequest(method="authenticate", request_id=1, message=b"\xff"))
            reply = await c.response("authenticate", 1)
            assert reply.error is not None
            assert reply.error.error_type == Code.INVALID_REQUEST
            await c.expect_close(1007)
        async with client(service) as c:
            await c.connect("c2")
            await c.send(m.SatSubsDataBegin(subscription_id="s"))
            [error] = await c.expect_close(1007)
            assert isinstance(error, m.SatErrorResp)
            assert error.error_type == Code.INVALID_REQUEST
        async with client(service) as c:
            start = await c.connect("c3")
            # the client refuses our startReplication: INVALID_REQUEST and a close (§3)
            await c.send(
                m.SatRpcResponse(
                    method="startReplication",
                    request_id=start.request_id,
                    error=m.SatErrorResp(error_type=Code.REPLICATION_FAILED),
                )
            )
            assert await c.expect_close(1007) == [m.SatErrorResp(error_type=Code.INVALID_REQUEST)]
        async with client(service) as c:
            start = await c.connect("c4")
            # an answer to no call of ours
            await c.send(
                m.SatRpcResponse(
                    method="startReplication", request_id=start.request_id + 5, message=b""
                )
            )
            assert await c.expect_close(1007) == [m.SatErrorResp(error_type=Code.INVALID_REQUEST)]
        await assert_still_served(bystander)


async def test_empty_responses_carry_a_message(service: Service) -> None:
    async with client(service) as c:
        await c.connect("c")
        reply = await c.call("unsubscribe", m.SatUnsubsReq())
        assert (reply.message, reply.error) == (b"", None)
        reply = await c.call("stopReplication", m.SatInStopReplicationReq())
        assert (reply.message, reply.error) == (b"", None)
        # the wire form: field 3 present with zero bytes
        assert m.encode(reply).endswith(b"\x1a\x00")


# ---- startReplication from the client (§7.2, §7.9) ------------------------------------------


async def test_first_sync_sends_the_migrations(db: str, service: Service) -> None:
    await sql(db, migration_sql("20240101000000", "items") + migration_sql("20240102", "notes"))
    await wait_versions(service, 2)
    assert service.txlog is not None
    position = service.txlog.last_lsn
    async with client(service) as c:
        await c.connect("first")
        resp = await c.start_replication(sql_dialect=m.SatInStartReplicationReqDialect.SQLITE)
        assert resp == m.SatInStartReplicationResp(unacked_window_size=30)
        frames = await c.transactions(2)
        relation, first, relation2, second = frames
        assert isinstance(relation, m.SatRelation)
        assert relation.table_name == "items"
        assert relation.schema_name == "public"
        async with await connect(db) as conn:
            oid = await conn.fetchval("SELECT 'items'::regclass::oid::int8")
            txid = await conn.fetchval(
                "SELECT txid::text::int8 FROM electric.migration_versions"
                " WHERE version = '20240101000000'"
            )
        assert relation.relation_id == oid
        assert relation.columns == (
            m.SatRelationColumn(name="id", type="int8", primary_key=True, is_nullable=False),
            m.SatRelationColumn(name="v", type="text", is_nullable=True),
        )
        assert isinstance(first, m.SatOpLog)
        begin, migrate, commit = first.ops
        assert begin.begin is not None
        assert begin.begin.is_migration
        assert begin.begin.origin == "postgres_1"
        assert begin.begin.lsn == str(position).encode()
        assert begin.begin.transaction_id == txid
        assert begin.begin.commit_timestamp > 1_700_000_000_000
        assert migrate.migrate is not None
        assert migrate.migrate.version == "20240101000000"
        assert migrate.migrate.stmts[0].sql.startswith('CREATE TABLE "items" (')
        assert migrate.migrate.table is not None
        assert migrate.migrate.table.pks == ("id",)
        assert commit.commit == m.SatOpCommit(
            commit_timestamp=begin.begin.commit_timestamp, lsn=begin.begin.lsn
        )
        assert isinstance(relation2, m.SatRelation)
        assert relation2.table_name == "notes"
        assert isinstance(second, m.SatOpLog)
        assert second.ops[1].migrate is not None
        assert second.ops[1].migrate.version == "20240102"
        await c.nothing_for(0.3)

    async with client(service) as c:
        # only what is newer than the client's schema version; the Postgres dialect
        await c.connect("second")
        await c.start_replication(
            schema_version="20240101000000", sql_dialect=m.SatInStartReplicationReqDialect.POSTGRES
        )
        [relation, log] = await c.transactions(1)
        assert isinstance(relation, m.SatRelation)
        assert isinstance(log, m.SatOpLog)
        migrate = log.ops[1].migrate
        assert migrate is not None
        assert migrate.version == "20240102"
        assert migrate.stmts[0].sql.upper().startswith("CREATE TABLE")
        assert "notes" in migrate.stmts[0].sql
        await c.nothing_for(0.3)

    async with client(service) as c:
        await c.connect("third")
        await c.start_replication(schema_version="20240102")
        await c.nothing_for(0.3)


async def test_migrations_arrive_live(db: str, service: Service) -> None:
    async with client(service) as c:
        await c.connect("live")
        await c.start_replication()
        await c.nothing_for(0.2)
        await sql(
            db,
            migration_sql("1", "items") + "BEGIN; CALL electric.migration_version('2');"
            " ALTER TABLE items ADD COLUMN n int4; CALL electric.capture_ddl("
            "'ALTER TABLE items ADD COLUMN n int4');"
            " CALL electric.alter_shadow_table('public', 'items', 'add', 'n', 'int4'); COMMIT;",
        )
        frames = await c.transactions(2)
        relation, first, relation2, second = frames
        assert isinstance(relation, m.SatRelation)
        assert [col.name for col in relation.columns] == ["id", "v"]
        assert isinstance(first, m.SatOpLog)
        begin = first.ops[0].begin
        assert begin is not None
        assert begin.is_migration
        assert first.ops[1].migrate is not None
        assert first.ops[1].migrate.version == "1"
        assert service.txlog is not None
        lsns = [t.end_lsn for t in service.txlog.read_after(0, 10**6) if t.ddl]
        assert begin.lsn == str(lsns[0]).encode()
        # ADD COLUMN: the relation again, with its new column
        assert isinstance(relation2, m.SatRelation)
        assert relation2.relation_id == relation.relation_id
        assert [col.name for col in relation2.columns] == ["id", "v", "n"]
        assert isinstance(second, m.SatOpLog)
        migrate = second.ops[1].migrate
        assert migrate is not None
        assert (migrate.version, migrate.stmts[0].type) == (
            "2",
            m.SatOpMigrateType.ALTER_ADD_COLUMN,
        )


async def test_start_replication_errors(db: str, service: Service) -> None:
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    assert service.txlog is not None
    await wait_log_after(service, 0)
    inside = service.txlog.last_lsn
    assert inside is not None

    async def refused(client_id: str, **fields: Any) -> tuple[ReplicationCode, str]:
        async with client(service) as c:
            await c.connect(client_id)
            resp = await c.start_replication(**fields)
            assert resp.err is not None
            await c.expect_close(1007)
            return resp.err.code, resp.err.message

    assert await refused("a", schema_version="0") == (
        ReplicationCode.UNKNOWN_SCHEMA_VSN,
        "Unknown schema version: 0",
    )
    for bad in (b"abc", b"-1", b"1.5", b"99999999999999999999999"):
        assert await refused("a", lsn=bad) == (
            ReplicationCode.MALFORMED_LSN,
            "Could not validate start replication request",
        )
    assert await refused("a", subscription_ids=("s",)) == (
        ReplicationCode.INVALID_POSITION,
        "Cannot resume subscriptions for a first-time client",
    )
    assert await refused("a", lsn=b"1") == (
        ReplicationCode.BEHIND_WINDOW,
        "Cannot catch up to the server's current state",
    )
    assert await refused("a", lsn=str(inside + 1_000_000).encode()) == (
        ReplicationCode.BEHIND_WINDOW,
        "Cannot catch up to the server's current state",
    )
    assert await refused(
        "a", lsn=str(inside).encode(), subscription_ids=("a7c1f0c2-0000-4000-8000-000000000000",)
    ) == (
        ReplicationCode.SUBSCRIPTION_NOT_FOUND,
        "Unknown subscription: a7c1f0c2-0000-4000-8000-000000000000",
    )
    async with client(service) as c:
        await c.connect("a")
        assert (await c.start_replication(lsn=str(inside).encode())).err is None
        # started twice on one connection
        reply = await c.call("startReplication", m.SatInStartReplicationReq())
        assert reply.error is not None
        await c.expect_close(1007)


# ---- the stream: echoes, acknowledgements, the window (§7.4, §7.5) ----------------------------


async def test_echoes_acks_and_the_window(db: str, service: Service) -> None:
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    async with client(service) as c:
        await c.connect("writer")
        await c.start_replication(schema_version="1")
        await c.nothing_for(0.2)
        await sql(db, client_write_sql("writer", range(1, 33)) + client_write_sql("other", [99]))
        frames = await c.transactions(30)
        logs = oplogs(frames)
        assert len(logs) == len(frames) == 30  # no relation: no row is sent without shapes
        for log in logs:
            begin, commit = log.ops  # echoes carry no rows the client has no shape for
            assert begin.begin is not None
            assert begin.begin.origin == "writer"
            assert begin.begin.commit_timestamp == 1_704_067_200_123
            assert not begin.begin.is_migration
            assert commit.commit is not None
        await c.nothing_for(0.5)  # the window is full
        ids = [log.ops[0].begin.transaction_id for log in logs]  # type: ignore[union-attr]
        lsns = [log.ops[0].begin.lsn for log in logs]  # type: ignore[union-attr]
        await c.send(m.SatOpLogAck(transaction_id=0, lsn=b""))  # accepted, changes nothing
        await c.nothing_for(0.2)
        # acknowledging the 5th acknowledges the 4 before it: 5 more may go
        await c.send(m.SatOpLogAck(transaction_id=ids[4], lsn=lsns[4]))
        more = oplogs(await c.transactions(2))
        assert [log.ops[0].begin.origin for log in more] == ["writer", "writer"]  # type: ignore[union-attr]
        await c.nothing_for(0.3)  # "other"'s write is not echoed to "writer"
        # the checkpoint: resuming before it is refused
        assert service.txlog is not None
    async with client(service) as c:
        start = await c.connect("writer")
        # Postgres has the client's last write: the server says where to resume from
        assert m.rpc_request_body(start) == m.SatInStartReplicationReq(lsn=bytes([0, 0, 0, 32]))
        resp = await c.start_replication(lsn=lsns[3])
        assert resp.err is not None
        assert (resp.err.code, resp.err.message) == (
            ReplicationCode.INVALID_POSITION,
            "LSN is before the already acknowledged one",
        )
        await c.expect_close(1007)
    async with client(service) as c:
        await c.connect("writer")
        assert (await c.start_replication(lsn=lsns[4])).err is None
        resumed = oplogs(await c.transactions(27))
        assert [log.ops[0].begin.lsn for log in resumed[:25]] == lsns[5:]  # type: ignore[union-attr]
        # an acknowledgement of a transaction never sent, or already acknowledged
        await c.send(m.SatOpLogAck(transaction_id=ids[2], lsn=lsns[2]))
        assert await c.expect_close(1007) == [
            m.SatErrorResp(error_type=Code.INVALID_REQUEST, message="Acknowledged unknown txn")
        ]


async def test_stop_replication_both_ways(
    db: str, service: Service, satellite: SatelliteSubsystem
) -> None:
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    async with client(service) as c:
        await c.connect("stopper")
        await c.start_replication(schema_version="1")
        reply = await c.call("stopReplication", m.SatInStopReplicationReq())
        assert reply.message == b""
        await sql(db, client_write_sql("stopper", [1]))
        await c.nothing_for(0.5)  # stopped: the echo is not sent
        # and the server stops the client's stream
        assert satellite.server is not None
        session = satellite.server.clients["stopper"]
        assert session.inbound_active
        await session.stop_inbound()
        stop = await c.server_request("stopReplication")
        assert m.rpc_request_body(stop) == m.SatInStopReplicationReq()
        assert stop.request_id == 1
        await c.send(m.SatRpcResponse(method="stopReplication", request_id=1, message=b""))
        await assert_still_served(c)  # frames are handled in order: the response was handled
        assert not session.inbound_active


# ---- keepalive (§1) -----------------------------------------------------------------------


async def test_silent_clients_are_pinged_then_closed(db: str, nursery: trio.Nursery) -> None:
    settings = SatelliteSettings(ping_interval=0.2, close_timeout=0.5)
    service = await start_service(nursery, db, SatelliteSubsystem(settings))
    async with client(service) as alive:  # trio-websocket answers pings by itself
        await alive.connect("alive")
        # a client that never answers: a raw socket after the handshake
        async with await trio.open_tcp_stream("127.0.0.1", service.http_port) as raw:
            await raw.send_all(upgrade_head("electric.0.12").encode())
            data = b""
            with trio.fail_after(5):
                while b"\r\n\r\n" not in data:
                    data += await raw.receive_some(4096)
                assert data.startswith(b"HTTP/1.1 101")
                assert b"sec-websocket-protocol: electric.0.12" in data.lower()
                data = data.partition(b"\r\n\r\n")[2]
                while len(data) < 2 or len(data) < 2 + data[1] + 2:
                    data += await raw.receive_some(4096)
            # a ping (opcode 9), then a close (opcode 8) with 1001
            assert data[0] == 0x89
            close = data[2 + data[1] :]
            with trio.fail_after(5):
                while len(close) < 2 or len(close) < 2 + close[1]:
                    close += await raw.receive_some(4096)
            assert close[0] == 0x88
            assert int.from_bytes(close[2:4], "big") == 1001
            assert close[4 : 2 + close[1]] == b"Client not responding to pings"
        await trio.sleep(0.8)
        await assert_still_served(alive)


async def test_postgres_unavailable(db: str, pg_server: Any, service: Service) -> None:
    await sql(db, migration_sql("1", "items"))
    await wait_versions(service, 1)
    async with client(service) as c:
        await c.connect("c")
        name = db.rsplit("/", 1)[1]
        async with await connect(pg_server.url) as admin:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                f" WHERE datname = '{name}' AND application_name = 'electric-trio satellite'"
            )
        try:
            # the first sync needs the migrations' times from Postgres
            await c.request("startReplication", m.SatInStartReplicationReq())
            assert await c.expect_close(1011) == [
                m.SatErrorResp(error_type=Code.INTERNAL, message="Postgres is unavailable")
            ]
        finally:
            async with await connect(pg_server.url) as admin:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
