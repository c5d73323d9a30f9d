"""The migrations proxy's listener, its catalogue look-ups, the ``/proxy`` WebSocket tunnel and
the service subsystem that runs them."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from .. import _native
from .._log import get_logger
from ..ddlx.schema import Schema
from ..errors import ElectricError
from ..http import Request, Response
from ..pg import Connection, ConnectParams, connect
from ._analyse import Table
from ._session import ProxySession

if TYPE_CHECKING:
    from ..config import Config
    from ..service import Service

__all__ = ["Catalog", "ProxyServer", "ProxySubsystem", "pipe_websocket"]

log = get_logger(__name__)

NOT_CONFIGURED = "Migrations proxy is not configured to accept WebSocket connections"
WS_HANDSHAKE_TIMEOUT = 10.0
#: The tunnel carries bulk data (a COPY): read the socket in large pieces and queue a few
#: messages (trio-websocket reads 4 KiB at a time and queues one message by default).
WS_RECEIVE_BYTES = 256 * 1024
WS_QUEUE = 16
_FEATURE_FLAGS = (
    "proxy_ddlx_grant",
    "proxy_ddlx_revoke",
    "proxy_ddlx_assign",
    "proxy_ddlx_unassign",
    "__default__",  # DDLX DISABLE and SQLITE (§4)
)


class Catalog:
    """Answers which tables are electrified and which table an index is on, from one shared
    connection (committed state; a session adds what it electrified in its own transaction)."""

    def __init__(self, params: ConnectParams) -> None:
        self._params = msgspec.structs.replace(params, application_name="electric-trio proxy")
        self._conn: Connection | None = None
        self._lock = trio.Lock()

    async def lookup(
        self, tables: Collection[Table], indexes: Collection[tuple[str | None, str]]
    ) -> tuple[set[Table], dict[tuple[str | None, str], Table]]:
        if not tables and not indexes:
            return set(), {}
        async with self._lock:
            for attempt in (1, 2):
                try:
                    return await self._lookup(tables, indexes)
                except ElectricError:
                    await self.aclose()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _lookup(
        self, tables: Collection[Table], indexes: Collection[tuple[str | None, str]]
    ) -> tuple[set[Table], dict[tuple[str | None, str], Table]]:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self._params)
        conn = self._conn
        electrified: set[Table] = set()
        # Without the electric schema (not installed yet) nothing is electrified.
        if await conn.fetchval("SELECT to_regclass('electric.electrified') IS NOT NULL"):
            rows = await conn.fetch("SELECT schema_name, table_name FROM electric.electrified")
            electrified = {(row[0], row[1]) for row in rows}
        index_tables: dict[tuple[str | None, str], Table] = {}
        for schema, name in indexes:
            qualified = f'"{schema}"."{name}"' if schema else f'"{name}"'
            row = await conn.fetchrow(
                "SELECT n.nspname, c.relname FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE i.indexrelid = to_regclass($1)",
                qualified,
            )
            if row is not None:
                index_tables[(schema, name)] = (row[0], row[1])
        return electrified, index_tables

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.aclose()
            self._conn = None


class ProxyServer:
    """The Postgres-protocol listener: one :class:`ProxySession` per client connection."""

    def __init__(
        self,
        *,
        password: str,
        upstream_params: ConnectParams,
        features: Iterable[str] = (),
        relay_in_threads: bool = True,
        tracing: bool = False,
        schema: Callable[[], Schema] = Schema,
    ) -> None:
        self.password = password
        #: The electrified schema now: what the ``prisma`` user's introspection sees.
        self.schema = schema
        #: ``PROXY_TRACING_ENABLE``: log every statement and its rewrite.
        self.tracing = tracing
        #: Relay between plain sockets in threads (see ProxySession); False: Trio tasks only.
        self.relay_in_threads = relay_in_threads
        self.upstream_params = upstream_params
        self.features = frozenset(features)
        self.catalog = Catalog(upstream_params)
        #: The relay's threads wait on sockets rather than compute: no limit of their own.
        self.relay_threads = trio.CapacityLimiter(math.inf)
        #: The bound port (the real one when asked for port 0), once listening.
        self.port: int | None = None
        #: Sessions past authentication: open now, and since start.
        self.sessions_active = 0
        self.sessions_total = 0

    async def forward_cancel(self, process_id: int, secret_key: bytes) -> None:
        """Passes a client's CancelRequest on to Postgres: the client got the upstream backend's
        own key data, so only a client that holds it can cancel that backend's query."""
        params = self.upstream_params
        try:
            with trio.fail_after(params.connect_timeout):
                if params.host.startswith("/"):
                    stream: trio.abc.Stream = await trio.open_unix_socket(
                        f"{params.host}/.s.PGSQL.{params.port}"
                    )
                else:
                    stream = await trio.open_tcp_stream(params.host, params.port)
                async with stream:
                    await stream.send_all(_native.encode_cancel_request(process_id, secret_key))
                    await stream.receive_some(1)  # Postgres closes once it has it
        except (trio.TooSlowError, OSError, trio.BrokenResourceError) as e:
            log.info("could not pass a cancel request on", error=str(e))

    def session_started(self, session: ProxySession) -> None:
        self.sessions_total += 1

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serves on ``listeners`` (from ``trio.open_tcp_listeners``) until cancelled."""
        self.port = listeners[0].socket.getsockname()[1]
        log.info("migrations proxy listening", port=self.port)
        try:
            await trio.serve_listeners(
                self._handle, listeners, task_status=_Started(task_status, self.port)
            )
        finally:
            await self.catalog.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            peer = stream.socket.getpeername()
            remote = f"{peer[0]}:{peer[1]}"
        except OSError:
            remote = "?"
        session = ProxySession(self, stream, remote)
        self.sessions_active += 1
        try:
            await session.run()
        except Exception:
            log.exception("proxy session failed", remote=remote)
        finally:
            self.sessions_active -= 1
            await trio.aclose_forcefully(stream)


class _Started:
    """Hands ``serve_listeners``' started value (the listeners) on as the bound port."""

    def __init__(self, task_status: trio.TaskStatus[int], port: int) -> None:
        self._task_status = task_status
        self._port = port

    def started(self, value: object = None) -> None:
        self._task_status.started(self._port)


async def pipe_websocket(ws: WebSocketConnection, tcp: trio.abc.Stream) -> None:
    """Carries bytes between ``ws`` (binary messages) and ``tcp`` until either side ends."""

    async def ws_to_tcp(cancel: trio.CancelScope) -> None:
        try:
            while True:
                message = await ws.get_message()
                data = message.encode() if isinstance(message, str) else message
                await tcp.send_all(data)
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        cancel.cancel()

    async def tcp_to_ws(cancel: trio.CancelScope) -> None:
        try:
            while True:
                data = await tcp.receive_some(65536)
                if not data:
                    break
                await ws.send_message(bytes(data))
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws_to_tcp, nursery.cancel_scope)
        nursery.start_soon(tcp_to_ws, nursery.cancel_scope)
    with trio.move_on_after(2):
        await ws.aclose()
    await trio.aclose_forcefully(tcp)


class ProxySubsystem:
    """``PG_PROXY_PORT``: the migrations proxy; with ``PG_PROXY_PORT=http[:<port>]`` also the
    ``/proxy`` WebSocket tunnel on the HTTP port."""

    name = "proxy"

    def __init__(self, port: int | None = None, *, relay_in_threads: bool = True) -> None:
        #: Overrides the configured port (tests use 0).
        self._port = port
        self._relay_in_threads = relay_in_threads
        self.server: ProxyServer | None = None
        self._config: Config | None = None

    @property
    def port(self) -> int | None:
        """The port the proxy listens on, once started."""
        return None if self.server is None else self.server.port

    def install(self, service: Service) -> None:
        self._config = service.config
        service.router.add(
            "/proxy",
            self._not_an_upgrade,
            upgrade=self._upgrade,
            methods=("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"),
        )
        # /metrics finds the proxy here.
        setattr(service, "proxy", self)  # noqa: B010

    async def _not_an_upgrade(self, request: Request) -> Response:
        assert self._config is not None
        if not self._config.pg_proxy_http_tunnel:
            return Response.text(404, NOT_CONFIGURED)
        return Response.text(400, "Bad request")

    async def _upgrade(self, request: Request, stream: trio.abc.Stream) -> None:
        assert self._config is not None
        if not self._config.pg_proxy_http_tunnel or self.port is None:
            await _send_http(stream, Response.text(404, NOT_CONFIGURED))
            return
        async with trio.open_nursery() as nursery:
            try:
                with trio.fail_after(WS_HANDSHAKE_TIMEOUT):
                    ws_request = await wrap_server_stream(
                        nursery,
                        stream,
                        message_queue_size=WS_QUEUE,
                        receive_buffer_size=WS_RECEIVE_BYTES,
                    )
                    ws = await ws_request.accept()
            except (trio.TooSlowError, ConnectionClosed, trio.BrokenResourceError, OSError) as e:
                log.info("proxy tunnel handshake failed", remote=request.remote, error=str(e))
                nursery.cancel_scope.cancel()
                return
            try:
                tcp = await trio.open_tcp_stream("127.0.0.1", self.port)
            except OSError as e:
                log.warning("proxy tunnel cannot reach the proxy", error=str(e))
                await ws.aclose(1011, "proxy unreachable")
                nursery.cancel_scope.cancel()
                return
            await pipe_websocket(ws, tcp)
            nursery.cancel_scope.cancel()

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from ..service import StartupError, connect_params

        config = service.config
        self.server = ProxyServer(
            password=config.pg_proxy_password,
            upstream_params=connect_params(config.database),
            features=[f for f in _FEATURE_FLAGS if config.features.enabled(f)],
            relay_in_threads=self._relay_in_threads,
            tracing=config.proxy_tracing_enable,
            schema=lambda: service.migrations.schema if service.migrations else Schema(),
        )
        port = config.pg_proxy_port if self._port is None else self._port
        try:
            listeners = await trio.open_tcp_listeners(port)
        except OSError as e:
            raise StartupError(
                f"the migrations proxy cannot listen on PG_PROXY_PORT {port}: {e.strerror or e}"
            ) from None
        async with trio.open_nursery() as nursery:
            await nursery.start(self.server.serve, listeners)
            task_status.started()


async def _send_http(stream: trio.abc.Stream, response: Response) -> None:
    head = (
        f"HTTP/1.1 {response.status} Not Found\r\n"
        f"content-type: {response.content_type}\r\n"
        f"content-length: {len(response.body)}\r\n"
        "connection: close\r\n\r\n"
    )
    with trio.move_on_after(5):
        try:
            await stream.send_all(head.encode("latin-1") + response.body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
