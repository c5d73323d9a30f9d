"""The service: one Trio root nursery supervising every long-running task (DESIGN.md).

Today the nursery runs the HTTP server and the Postgres connector; later subsystems
(replication, the Satellite WebSocket server, the writer, the migrations proxy) plug in as
:class:`Subsystem` objects passed to :func:`serve`. A failure in the nursery ends the process
with a clear error; an external supervisor restarts it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import trio

from . import __version__
from ._log import get_logger
from .config import Config, DatabaseConfig
from .ddlx.install import SESSION_SETTINGS
from .errors import ElectricError
from .http import HttpServer, PgStatus, Router, add_status_routes, serve_http
from .pg import Connection, ConnectParams, PgAuthError, PgConnectError, PgError, connect

if TYPE_CHECKING:
    from .ddlx.history import MigrationHistory
    from .replication import TransactionLog
    from .writes import Writer

__all__ = ["PostgresConnector", "Service", "StartupError", "Subsystem", "serve"]

log = get_logger(__name__)

RECONNECT_BACKOFF_MIN = 1.0
RECONNECT_BACKOFF_MAX = 10.0
#: How often an idle connection is checked with ``SELECT 1``, and how long the check may take.
HEALTH_CHECK_INTERVAL = 5.0
HEALTH_CHECK_TIMEOUT = 5.0
#: How often :meth:`Service.wait_ready` looks at the readiness gates again.
_GATE_POLL = 0.02
# What talking to Postgres may raise; anything else is a bug and ends the service.
_CONNECTION_ERRORS = (ElectricError, OSError, trio.TooSlowError, trio.BrokenResourceError)


class StartupError(ElectricError):
    """The service cannot start (Postgres unreachable, credentials refused...); the message is
    one line meant for the user."""


def connect_params(database: DatabaseConfig) -> ConnectParams:
    """The Postgres client's parameters for ``database``, with Electric's session settings."""
    return ConnectParams(
        host=database.host,
        port=database.port,
        user=database.user,
        password=database.password,
        database=database.dbname,
        sslmode=database.sslmode,
        connect_timeout=database.connect_timeout,
        # Electric's session settings (§1) go in the startup packet: no extra round trip.
        options=dict(SESSION_SETTINGS),
    )


def describe_pg_error(error: BaseException, database: DatabaseConfig) -> str:
    """One line saying what went wrong talking to Postgres, with no secret in it."""
    where = f"Postgres at {database.describe()}"
    if isinstance(error, PgConnectError):
        text = error.message  # already names host:port and the reason
    elif isinstance(error, PgAuthError):
        text = f"{where} refused the login of user {database.user!r}: {error.message}"
    elif isinstance(error, PgError):
        code = f" (SQLSTATE {error.sqlstate})" if error.sqlstate else ""
        text = f"{where}: {error.message}{code}"
    elif isinstance(error, trio.TooSlowError):
        text = f"{where} did not answer in time"
    else:
        text = f"{where}: {error}"
    return " ".join(text.split())


class PostgresConnector:
    """Keeps a connection to Postgres open and knows its state for ``/api/status``.

    ``starting`` until connected, ``ready`` while the connection answers, back to ``starting``
    (reconnecting with a 1-10 s backoff) when it is lost, ``failed`` while Postgres refuses
    our credentials or database on reconnection. The first connection is special: if it fails,
    :meth:`run` raises :class:`StartupError` and the service stops.
    """

    def __init__(self, database: DatabaseConfig) -> None:
        self.database = database
        self.params = connect_params(database)
        self.state: PgStatus = "starting"
        self._changed = trio.Event()

    async def wait_state(self, *states: PgStatus) -> None:
        """Returns as soon as the state is one of ``states``."""
        while self.state not in states:
            await self._changed.wait()

    async def wait_ready(self) -> None:
        """Returns once a connection is up."""
        await self.wait_state("ready")

    def _set_state(self, state: PgStatus) -> None:
        if state != self.state:
            self.state = state
            self._changed.set()
            self._changed = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connects (``task_status.started()`` once connected), then supervises the connection
        until cancelled."""
        try:
            conn = await self._connect()
        except _CONNECTION_ERRORS as e:
            self._set_state("failed")
            raise StartupError(describe_pg_error(e, self.database)) from None
        self._set_state("ready")
        log.info("connected to Postgres", database=self.database.describe())
        task_status.started()
        delay = RECONNECT_BACKOFF_MIN
        while True:
            try:
                async with conn:
                    await self._watch(conn)
            except trio.TooSlowError as e:
                # No answer in time: the network or Postgres is gone, or this process (a long
                # step holding the event loop) or the machine was too busy to read the answer.
                # A new connection tells them apart; clients see no outage for a busy moment.
                try:
                    conn = await self._connect()
                except _CONNECTION_ERRORS:
                    log.warning(
                        "lost the connection to Postgres; reconnecting",
                        error=describe_pg_error(e, self.database),
                    )
                else:
                    log.info("Postgres health check was late; replaced its connection")
                    continue
            except _CONNECTION_ERRORS as e:
                log.warning(
                    "lost the connection to Postgres; reconnecting",
                    error=describe_pg_error(e, self.database),
                )
            self._set_state("starting")
            while True:
                await trio.sleep(delay)
                try:
                    conn = await self._connect()
                    break
                except _CONNECTION_ERRORS as e:
                    if isinstance(e, PgAuthError) or getattr(e, "sqlstate", None) == "3D000":
                        self._set_state("failed")  # fixing this needs a person, not a retry
                    delay = min(delay * 2, RECONNECT_BACKOFF_MAX)
                    log.warning(
                        "cannot reconnect to Postgres",
                        error=describe_pg_error(e, self.database),
                        retry_in=delay,
                    )
            delay = RECONNECT_BACKOFF_MIN
            self._set_state("ready")
            log.info("reconnected to Postgres", database=self.database.describe())

    async def _connect(self) -> Connection:
        conn = await connect(self.params)
        try:
            with trio.fail_after(HEALTH_CHECK_TIMEOUT):
                await conn.execute("SELECT 1")
        except BaseException:
            await conn.aclose()
            raise
        return conn

    async def _watch(self, conn: Connection) -> None:
        """Returns or raises when ``conn`` stops answering."""
        while True:
            await trio.sleep(HEALTH_CHECK_INTERVAL)
            with trio.fail_after(HEALTH_CHECK_TIMEOUT):
                await conn.execute("SELECT 1")


class Service:
    """What :func:`serve` hands to ``task_status.started``: the running service's parts."""

    def __init__(self, config: Config, router: Router, postgres: PostgresConnector) -> None:
        self.config = config
        self.router = router
        self.postgres = postgres
        self.http: HttpServer | None = None
        #: Committed transactions from Postgres (set by the replication subsystem).
        self.txlog: TransactionLog[Any] | None = None
        #: The electrified schema and its migrations (set by the replication subsystem).
        self.migrations: MigrationHistory | None = None
        #: Where accepted client transactions go (set by the writes subsystem).
        self.writer: Writer | None = None
        self._gates: list[Callable[[], bool]] = []
        self._started = trio.Event()

    async def wait_ready(self) -> None:
        """Returns once every subsystem has started, Postgres is connected and every readiness
        gate is open: when ``/api/status`` says ready (e.g. after a restart, once the reader
        has replayed the slot's window)."""
        await self._started.wait()
        while True:
            await self.postgres.wait_ready()
            if self.status() == "ready":
                return
            # The gates are predicates of subsystems' state (some open on a deadline), with no
            # event to wait on: look again shortly.
            await trio.sleep(_GATE_POLL)

    def add_readiness_gate(self, gate: Callable[[], bool]) -> None:
        """``/api/status`` says ready only while Postgres is connected and every gate is true."""
        self._gates.append(gate)

    def status(self) -> PgStatus:
        """The state ``/api/status`` reports: ready once every subsystem has started (the
        writer among them: a client let in before it had its transactions dropped), Postgres
        is connected and every readiness gate is open."""
        state = self.postgres.state
        if state == "ready" and not (self._started.is_set() and all(g() for g in self._gates)):
            return "starting"
        return state

    @property
    def http_port(self) -> int:
        """The port the HTTP server is bound to (the real one when ``HTTP_PORT=0``)."""
        if self.http is None:
            raise RuntimeError("the HTTP server is not listening yet")
        return self.http.port


class Subsystem(Protocol):
    """A long-running part of the service (replication, satellite, writer, proxy...).

    ``install`` runs before the HTTP server listens: add routes there (``/ws``, ``/proxy``,
    ``/api/migrations``, ``/metrics``). ``run`` is started, in the order given to
    :func:`serve`, once Postgres is reachable, and calls ``task_status.started()`` when ready.
    """

    name: str

    def install(self, service: Service) -> None: ...

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


def default_subsystems() -> list[Subsystem]:
    """The parts of a full service, in start order."""
    from .http.metrics import MetricsApi
    from .http.migrations import MigrationsApi
    from .proxy import ProxySubsystem
    from .replication import ReplicationSubsystem
    from .satellite.server import SatelliteSubsystem
    from .writes.subsystem import WritesSubsystem

    return [
        ReplicationSubsystem(),
        MigrationsApi(),
        SatelliteSubsystem(),
        WritesSubsystem(),
        ProxySubsystem(),
        MetricsApi(),
    ]


async def serve(
    config: Config,
    *,
    subsystems: Sequence[Subsystem] | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Service] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Runs the service until cancelled or, with ``handle_signals``, until SIGINT or SIGTERM
    (then it returns normally after logging ``shutting down``).

    ``task_status.started`` gets the :class:`Service` once the HTTP port listens (Postgres may
    still be connecting: ``await service.postgres.wait_ready()``). Raises (inside an
    ``ExceptionGroup``, as Trio nurseries do) :class:`StartupError` when the first connection
    to Postgres fails.
    """
    if subsystems is None:
        subsystems = default_subsystems()
    router = Router()
    postgres = PostgresConnector(config.database)
    service = Service(config, router, postgres)
    add_status_routes(router, service.status)
    for subsystem in subsystems:
        subsystem.install(service)

    log.info(
        "starting electric-trio",
        version=__version__,
        database=config.database.describe(),
        http_port=config.http_port,
    )
    log.debug("configuration", **config.describe())
    async with trio.open_nursery() as nursery:
        if handle_signals:
            nursery.start_soon(shutdown_on_signal, nursery.cancel_scope)
        service.http = await nursery.start(
            partial(serve_http, router, config.http_port, use_ipv6=config.use_ipv6)
        )
        task_status.started(service)
        await nursery.start(postgres.run)
        # In DESIGN.md's order once Postgres is reachable: replication (slot reader ->
        # transaction log), shapes, satellite (/ws), writes, proxy (+ /proxy tunnel).
        for subsystem in subsystems:
            await nursery.start(subsystem.run, service)
            log.info("started", subsystem=subsystem.name)
        service._started.set()
        # Said once /api/status says it too (after a restart, the replay gate opens later).
        await service.wait_ready()
        log.info("electric-trio is ready", http_port=service.http_port)
    log.info("stopped")


async def shutdown_on_signal(cancel_scope: trio.CancelScope) -> None:
    """Cancels ``cancel_scope`` at the first SIGINT or SIGTERM, logging ``shutting down``."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("shutting down", signal=signal.Signals(signum).name)
            cancel_scope.cancel()
            return
