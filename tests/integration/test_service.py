"""The service in process against the test Postgres: status, reconnection, startup failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING

import msgspec
import psycopg
import pytest
import trio
from psycopg import sql

from electric_trio import service as service_module
from electric_trio.config import Config, DatabaseConfig
from electric_trio.http import PgStatus
from electric_trio.pg import Connection
from electric_trio.pg import _connection as pg_connection
from electric_trio.service import PostgresConnector, Service, StartupError, serve
from faults import Relay, open_relay

if TYPE_CHECKING:
    from conftest import PgServer

TEST_DATABASE = "electric_test"


def make_config(url: str) -> Config:
    return Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
        }
    )


async def get_status(port: int) -> tuple[int, bytes]:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(b"GET /api/status HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def admin(url: str, statement: sql.Composable) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "HEALTH_CHECK_INTERVAL", 0.05)
    monkeypatch.setattr(service_module, "RECONNECT_BACKOFF_MIN", 0.05)
    monkeypatch.setattr(service_module, "RECONNECT_BACKOFF_MAX", 0.2)


async def test_status_follows_the_connection(pg_url: str, nursery: trio.Nursery) -> None:
    service: Service = await nursery.start(
        partial(serve, make_config(pg_url), subsystems=(), handle_signals=False)
    )
    await service.wait_ready()
    assert service.postgres.state == "ready"
    assert await get_status(service.http_port) == (200, b"Connection to Postgres is up!")


async def test_ready_only_once_replication_streams(pg_url: str, nursery: trio.Nursery) -> None:
    """With every subsystem: the schema is installed and the slot streams before 200."""
    service: Service = await nursery.start(
        partial(serve, make_config(pg_url), handle_signals=False)
    )
    assert await get_status(service.http_port) == (503, b"Initializing connection to Posgres...")
    with trio.fail_after(60):
        await service.wait_ready()
    assert await get_status(service.http_port) == (200, b"Connection to Postgres is up!")
    assert service.txlog is not None
    with psycopg.connect(pg_url, autocommit=True) as conn:
        slots = conn.execute(
            "SELECT slot_name, temporary FROM pg_replication_slots"
            " WHERE database = current_database() ORDER BY slot_name"
        ).fetchall()
    assert slots == [
        ("electric_replication_out_electric_test", False),
        ("electric_replication_out_electric_test_rc", True),
    ]


async def test_first_connection_failure_stops_the_service() -> None:
    config = make_config("postgresql://nobody:pw@127.0.0.1:1/db")
    with pytest.RaisesGroup(
        pytest.RaisesExc(StartupError, match=r"^cannot connect .*127\.0\.0\.1:1")
    ):
        await serve(config, handle_signals=False)


@pytest.mark.usefixtures("fast_reconnect")
async def test_lost_connection_goes_back_to_starting_then_ready(
    pg_server: PgServer, pg_url: str, pg_roles: dict[str, str | None], nursery: trio.Nursery
) -> None:
    role = "et_scram"
    url = pg_server.database_url(TEST_DATABASE, user=role, password=pg_roles[role])
    service: Service = await nursery.start(
        partial(serve, make_config(url), subsystems=(), handle_signals=False)
    )
    await service.postgres.wait_ready()
    ident = sql.Identifier(role)
    try:
        # Refuse new sessions (SQLSTATE 53300, not an auth error), then end the current one.
        await trio.to_thread.run_sync(
            admin, pg_url, sql.SQL("ALTER ROLE {} CONNECTION LIMIT 0").format(ident)
        )
        await trio.to_thread.run_sync(
            admin,
            pg_url,
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}"
            ).format(sql.Literal(role)),
        )
        with trio.fail_after(15):
            await service.postgres.wait_state("starting")
        assert await get_status(service.http_port) == (
            503,
            b"Initializing connection to Posgres...",
        )
    finally:
        await trio.to_thread.run_sync(
            admin, pg_url, sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(ident)
        )
    with trio.fail_after(15):
        await service.postgres.wait_state("ready")
    assert await get_status(service.http_port) == (200, b"Connection to Postgres is up!")


@pytest.mark.usefixtures("fast_reconnect")
async def test_refused_credentials_on_reconnection_show_as_failure(
    pg_server: PgServer, pg_url: str, pg_roles: dict[str, str | None], nursery: trio.Nursery
) -> None:
    role = "et_scram"
    password = pg_roles[role]
    url = pg_server.database_url(TEST_DATABASE, user=role, password=password)
    service: Service = await nursery.start(
        partial(serve, make_config(url), subsystems=(), handle_signals=False)
    )
    await service.postgres.wait_ready()
    ident = sql.Identifier(role)
    await trio.to_thread.run_sync(
        admin, pg_url, sql.SQL("ALTER ROLE {} PASSWORD 'changed'").format(ident)
    )
    await trio.to_thread.run_sync(
        admin,
        pg_url,
        sql.SQL("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {}").format(
            sql.Literal(role)
        ),
    )
    with trio.fail_after(15):
        await service.postgres.wait_state("failed")
    assert await get_status(service.http_port) == (503, b"Database connection failure.")
    await trio.to_thread.run_sync(
        admin,
        pg_url,
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, sql.Literal(password)),
    )
    with trio.fail_after(15):
        await service.postgres.wait_state("ready")


class RecordingConnector(PostgresConnector):
    """Remembers every state it went through."""

    def __init__(self, database: DatabaseConfig) -> None:
        super().__init__(database)
        self.states: list[PgStatus] = []
        self.connects = 0
        #: Set when a second connection starts opening.
        self.reconnecting = trio.Event()

    async def _connect(self) -> Connection:
        self.connects += 1
        if self.connects == 2:
            self.reconnecting.set()
        return await super()._connect()

    def _set_state(self, state: PgStatus) -> None:
        if state != self.state or not self.states:
            self.states.append(state)
        super()._set_state(state)


@asynccontextmanager
async def connector_through_relay(
    pg_url: str, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, connect_timeout: float
) -> AsyncIterator[tuple[Relay, RecordingConnector]]:
    """A running connector whose connections go through a relay the test can stall; its
    health checks time out after 0.3 s."""
    monkeypatch.setattr(service_module, "HEALTH_CHECK_TIMEOUT", 0.3)
    # (a timed-out check's cancel request goes through the stalled relay too)
    monkeypatch.setattr(pg_connection, "_CANCEL_GRACE", 0.5)
    database = make_config(pg_url).database
    async with open_relay(database.host, database.port) as relay:
        connector = RecordingConnector(
            msgspec.structs.replace(database, port=relay.port, connect_timeout=connect_timeout)
        )
        await nursery.start(connector.run)
        yield relay, connector


@pytest.mark.usefixtures("fast_reconnect")
async def test_a_late_health_check_is_not_an_outage(
    pg_url: str, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that gets no answer in time (here: its connection's bytes held by a relay; in
    production: the event loop or the machine too busy to read it) is followed by a new
    connection; when that one answers, the status never left ready (no 503s for clients)."""
    async with connector_through_relay(pg_url, nursery, monkeypatch, 30.0) as (relay, connector):
        relay.stall()
        with trio.fail_after(30):
            await connector.reconnecting.wait()  # the check timed out
        relay.resume()
        await trio.sleep(1.0)  # 20 health-check intervals on the new connection
        assert connector.states == ["ready"]
        assert connector.connects == 2
        assert relay.live == 1


@pytest.mark.usefixtures("fast_reconnect")
async def test_health_check_with_no_answer_at_all_is_an_outage(
    pg_url: str, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with connector_through_relay(pg_url, nursery, monkeypatch, 0.5) as (relay, connector):
        relay.stall()
        with trio.fail_after(30):
            await connector.wait_state("starting")
        relay.cut()
        relay.resume()
        with trio.fail_after(30):
            await connector.wait_state("ready")
        assert connector.states == ["ready", "starting", "ready"]


async def test_replication_connection_lost_restarts_the_reader(
    pg_url: str, nursery: trio.Nursery
) -> None:
    """A killed walsender stops the reader, not the service: it reconnects and streams again."""
    from electric_trio.replication import ReplicationSubsystem

    replication = ReplicationSubsystem()
    service: Service = await nursery.start(
        partial(serve, make_config(pg_url), subsystems=[replication], handle_signals=False)
    )
    with trio.fail_after(60):
        await service.wait_ready()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE database = current_database() AND temporary AND active"
        ).fetchall()
    assert killed == [(True,)]
    with trio.fail_after(30):
        while replication.streaming:  # noqa: ASYNC110 - a flag of the subsystem
            await trio.sleep(0.05)
        assert await get_status(service.http_port) == (
            503,
            b"Initializing connection to Posgres...",
        )
        while not replication.streaming:  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert await get_status(service.http_port) == (200, b"Connection to Postgres is up!")
