"""``electric-trio proxy-tunnel``: a local TCP port whose every connection is carried over its
own WebSocket to the service's ``/proxy`` (client-behaviour.md §11)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

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


async def run_tunnel(
    service: str,
    local_port: int,
    *,
    host: str = "127.0.0.1",
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listens on ``host:local_port`` (0 = any free port, given to ``task_status.started``)."""
    url = tunnel_url(service)
    listeners = await trio.open_tcp_listeners(local_port, host=host)
    port = listeners[0].socket.getsockname()[1]
    log.info("proxy tunnel listening", port=port, service=url)

    async def handle(tcp: trio.SocketStream) -> None:
        try:
            async with open_websocket_url(
                url,
                message_queue_size=WS_QUEUE,
                receive_buffer_size=WS_RECEIVE_BYTES,
                connect_timeout=CONNECT_TIMEOUT,
                disconnect_timeout=CONNECT_TIMEOUT,
            ) as ws:
                await pipe_websocket(ws, tcp)
        except (trio.TooSlowError, HandshakeError, ConnectionClosed, OSError) as e:
            log.warning("proxy tunnel cannot open the WebSocket", url=url, error=str(e))
        finally:
            await trio.aclose_forcefully(tcp)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(port)
