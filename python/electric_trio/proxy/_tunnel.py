"""``electric-trio proxy-tunnel``: a local TCP port whose every connection is carried over its
own WebSocket to the service's ``/proxy`` (client-behaviour.md §11)."""

from __future__ import annotations

import ssl
from urllib.parse import SplitResult, urlsplit, urlunsplit

import trio
from trio_websocket import ConnectionClosed, HandshakeError, wrap_client_stream

from .._log import get_logger
from ._server import WS_QUEUE, WS_RECEIVE_BYTES, pipe_websocket

__all__ = ["run_tunnel", "tunnel_url"]

log = get_logger(__name__)

CONNECT_TIMEOUT = 10.0


def tunnel_url(service: str) -> str:
    """``http(s)://host:port`` -> ``ws(s)://host:port/proxy``; raises ValueError otherwise."""
    parts = urlsplit(service)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"Invalid URL scheme {parts.scheme!r} in ELECTRIC_SERVICE: {service}")
    path = parts.path.rstrip("/") + "/proxy"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "wss" else 80)


async def run_tunnel(
    service: str,
    local_port: int,
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listens on ``host:local_port`` (0 = any free port, given to ``task_status.started``)."""
    url = tunnel_url(service)
    parts = urlsplit(url)
    resource = parts.path or "/"
    listeners = await trio.open_tcp_listeners(local_port, host=host)
    port = listeners[0].socket.getsockname()[1]
    log.info("proxy tunnel listening", port=port, service=url)

    async def handle(tcp: trio.SocketStream) -> None:
        # The WebSocket's own TCP stream is opened and closed here, not by open_websocket_url:
        # trio-websocket leaves it open when its handshake is cancelled (a ResourceWarning).
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                upstream = await trio.open_tcp_stream(parts.hostname or "", port_of(parts))
            stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = upstream
            if parts.scheme == "wss":
                stream = trio.SSLStream(
                    upstream, ssl.create_default_context(), server_hostname=parts.hostname
                )
            async with stream, trio.open_nursery() as nursery:
                with trio.fail_after(CONNECT_TIMEOUT):
                    ws = await wrap_client_stream(
                        nursery,
                        stream,
                        parts.netloc,
                        resource,
                        message_queue_size=WS_QUEUE,
                        receive_buffer_size=WS_RECEIVE_BYTES,
                    )
                try:
                    await pipe_websocket(ws, tcp)
                finally:
                    with trio.move_on_after(CONNECT_TIMEOUT) as cleanup:
                        cleanup.shield = True
                        await ws.aclose()
                    nursery.cancel_scope.cancel()
        except* (trio.TooSlowError, HandshakeError, ConnectionClosed, OSError) as group:
            errors = "; ".join(str(e) or type(e).__name__ for e in group.exceptions)
            log.warning("proxy tunnel cannot open the WebSocket", url=url, error=errors)
        finally:
            await trio.aclose_forcefully(tcp)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(port)
