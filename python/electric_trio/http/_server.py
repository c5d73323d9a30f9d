"""A small HTTP/1.1 server: Trio sockets, ``h11`` for the protocol, one task per connection.

Every connection runs in its own child of the server's nursery and every error met on it
(malformed HTTP, a handler's bug, a peer that goes away) ends that connection only. Reading a
request head is bounded in time and size (this also bounds idle keep-alive connections), and so
are request bodies and writes.
"""

from __future__ import annotations

import errno
import socket as _stdlib_socket
import time
from http import HTTPStatus
from typing import Any

import h11
import msgspec
import trio

from .._log import get_logger
from ._router import NOT_FOUND, Request, Response, Router, normalize_path

__all__ = ["HttpLimits", "HttpServer", "open_http_listeners", "serve_http"]

log = get_logger(__name__)

_RECEIVE_SIZE = 64 * 1024
_SERVER_HEADER = ("server", "electric-trio")


class HttpLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on what one connection may cost."""

    #: Largest request line + headers, in bytes (431 beyond).
    max_header_bytes: int = 16 * 1024
    #: Largest request body, in bytes (413 beyond).
    max_body_bytes: int = 1024 * 1024
    #: Seconds to receive a complete request head, counted from the connection's start or the
    #: end of the previous response (so it is also the keep-alive idle timeout).
    header_timeout: float = 10.0
    #: Seconds to receive a complete request body.
    body_timeout: float = 30.0
    #: Seconds to write a response.
    send_timeout: float = 30.0


class HttpServer(msgspec.Struct, frozen=True, kw_only=True):
    """What :func:`serve_http` reports once it listens."""

    #: ``(host, port)`` of every listening socket.
    addresses: tuple[tuple[str, int], ...]

    @property
    def port(self) -> int:
        """The bound port (the same on every socket; useful with port 0)."""
        return self.addresses[0][1]


async def open_http_listeners(
    port: int, *, host: str | None = None, use_ipv6: bool = True
) -> list[trio.SocketListener]:
    """Listening sockets for ``port`` (0: any free port).

    With ``host=None`` the server listens on every interface: one dual-stack IPv6 socket
    (``::`` accepting IPv4 too) when ``use_ipv6`` is set and the machine has IPv6, else
    ``0.0.0.0``. A given ``host`` is resolved and every address bound, on one port.
    """
    if host is None:
        if use_ipv6:
            try:
                return [await _listen(trio.socket.AF_INET6, "::", port, dual_stack=True)]
            except OSError as e:
                if e.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT):
                    raise
                log.info("IPv6 is not available; listening on IPv4 only", reason=e.strerror)
        return [await _listen(trio.socket.AF_INET, "0.0.0.0", port)]
    infos = await trio.socket.getaddrinfo(
        host, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    listeners: list[trio.SocketListener] = []
    try:
        for family, _, _, _, sockaddr in infos:
            if family == trio.socket.AF_INET6 and not use_ipv6:
                continue
            bound = listeners[0].socket.getsockname()[1] if listeners else port
            listeners.append(await _listen(family, str(sockaddr[0]), bound))
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    if not listeners:
        raise OSError(errno.EADDRNOTAVAIL, f"no usable address for {host}")
    return listeners


async def _listen(
    family: int, host: str, port: int, *, dual_stack: bool = False
) -> trio.SocketListener:
    sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        if family == trio.socket.AF_INET6:
            sock.setsockopt(trio.socket.IPPROTO_IPV6, trio.socket.IPV6_V6ONLY, not dual_stack)
        await sock.bind((host, port))
        sock.listen(_stdlib_socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


async def serve_http(
    router: Router,
    port: int,
    *,
    host: str | None = None,
    use_ipv6: bool = True,
    limits: HttpLimits | None = None,
    task_status: trio.TaskStatus[HttpServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serves ``router`` on ``port`` until cancelled; ``task_status.started`` gets the
    :class:`HttpServer` (bound addresses) once the sockets listen."""
    limits = limits or HttpLimits()
    listeners = await open_http_listeners(port, host=host, use_ipv6=use_ipv6)
    addresses = tuple(
        (str(sockname[0]), int(sockname[1]))
        for sockname in (listener.socket.getsockname() for listener in listeners)
    )
    server = HttpServer(addresses=addresses)
    log.info(
        "HTTP server listening",
        port=server.port,
        addresses=",".join(f"{_host_port(h, p)}" for h, p in addresses),
    )

    async def handle(stream: trio.SocketStream) -> None:
        await _Connection(stream, router, limits).serve()

    task_status.started(server)
    await trio.serve_listeners(handle, listeners)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Closed(Exception):
    """The connection is over (peer gone, timeout, or we decided to close)."""


class _Connection:
    def __init__(self, stream: trio.SocketStream, router: Router, limits: HttpLimits) -> None:
        self.stream = stream
        self.router = router
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        try:
            peer = stream.socket.getpeername()
            self.remote: str | None = _host_port(str(peer[0]), int(peer[1]))
        except (OSError, IndexError):
            self.remote = None

    async def serve(self) -> None:
        try:
            await self._serve()
        except _Closed:
            pass
        except h11.RemoteProtocolError as e:
            log.debug("malformed HTTP request", remote=self.remote, error=str(e))
            status = e.error_status_hint if 400 <= e.error_status_hint < 500 else 400
            text = "Request header fields too large" if status == 431 else "Bad request"
            await self._send_error(Response.text(status, text))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            log.debug("HTTP connection broken", remote=self.remote, error=str(e))
        except Exception:
            log.exception("HTTP connection failed", remote=self.remote)
            await self._send_error(Response.text(500, "Internal server error"))
        finally:
            await trio.aclose_forcefully(self.stream)

    async def _serve(self) -> None:
        while True:
            # Every byte received for this request, kept until its head is parsed so that an
            # upgrade handler can be given the request exactly as it came.
            raw = bytearray(self.h11.trailing_data[0])
            timed_out = True
            with trio.move_on_after(self.limits.header_timeout):
                event = await self._next_event(raw)
                timed_out = False
            if timed_out:
                if self.h11.their_state is h11.IDLE and not self.h11.trailing_data[0]:
                    return  # an idle keep-alive connection: close quietly
                await self._send_error(Response.text(408, "Request timeout"))
                return
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}", 400)
            # h11 bounds a head still arriving; this bounds one that came in a single read.
            if len(raw) - len(self.h11.trailing_data[0]) > self.limits.max_header_bytes:
                raise h11.RemoteProtocolError("request head too large", 431)
            request = self._request(event)
            route = self.router.match(request)
            if route is not None and route.upgrade is not None and request.upgrade is not None:
                log.debug("HTTP upgrade", path=request.path, protocol=request.upgrade)
                stream = ReplayStream(self.stream, bytes(raw))
                # The connection is the handler's for as long as it lasts: HTTP's state goes.
                del raw, event
                self.h11 = _UPGRADED
                await route.upgrade(request, stream)
                raise _Closed
            body = await self._read_body()
            request = msgspec.structs.replace(request, body=body)
            started = time.monotonic()
            if route is None or route.handler is None:
                response = NOT_FOUND
            else:
                response = await route.handler(request)
            await self._respond(response, head_only=request.method == "HEAD")
            log.debug(
                "HTTP request",
                method=request.method,
                path=request.path,
                status=response.status,
                ms=round((time.monotonic() - started) * 1000, 1),
            )
            if self.h11.our_state is h11.MUST_CLOSE:
                return
            self.h11.start_next_cycle()

    def _request(self, event: h11.Request) -> Request:
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        return Request(
            method=event.method.decode("ascii", "replace").upper(),
            target=target,
            path=normalize_path(path),
            query=query,
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers
            ),
            http_version=event.http_version.decode("ascii", "replace"),
            remote=self.remote,
        )

    async def _next_event(self, raw: bytearray | None = None) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.stream.receive_some(_RECEIVE_SIZE)
            if raw is not None:
                raw += data
            self.h11.receive_data(data)

    async def _read_body(self) -> bytes:
        if self.h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=[]))
        chunks: list[bytes] = []
        size = 0
        with trio.move_on_after(self.limits.body_timeout) as scope:
            while True:
                event = await self._next_event()
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > self.limits.max_body_bytes:
                        await self._send_error(Response.text(413, "Request body too large"))
                        raise _Closed
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks)
                elif isinstance(event, h11.ConnectionClosed):
                    raise _Closed
                else:
                    raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}", 400)
        assert scope.cancelled_caught
        await self._send_error(Response.text(408, "Request timeout"))
        raise _Closed

    async def _respond(self, response: Response, *, head_only: bool = False) -> None:
        headers = [_SERVER_HEADER]
        if response.status != 204:  # RFC 9110: a 204 carries no Content-Length
            headers.append(("content-length", str(len(response.body))))
        if response.content_type is not None:
            headers.append(("content-type", response.content_type))
        headers.extend(response.headers)
        events: list[h11.Event] = [
            h11.Response(
                status_code=response.status,
                headers=headers,
                reason=_reason(response.status),
            )
        ]
        if response.body and not head_only:
            events.append(h11.Data(data=response.body))
        events.append(h11.EndOfMessage())
        await self._send(*events)

    async def _send(self, *events: h11.Event) -> None:
        data = b"".join(self.h11.send(event) or b"" for event in events)
        with trio.move_on_after(self.limits.send_timeout) as scope:
            await self.stream.send_all(data)
        if scope.cancelled_caught:
            raise _Closed

    async def _send_error(self, response: Response) -> None:
        """Sends ``response`` with ``Connection: close`` if a response can still be sent."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        closing = msgspec.structs.replace(
            response, headers=(*response.headers, ("connection", "close"))
        )
        try:
            await self._respond(closing)
        except (_Closed, h11.LocalProtocolError, trio.BrokenResourceError, OSError):
            pass


#: The HTTP state of every upgraded connection: nothing more is sent as HTTP on it.
_UPGRADED = h11.Connection(h11.SERVER)
_UPGRADED.send_failed()


class ReplayStream(trio.abc.Stream):
    """A stream that first returns ``replay`` and then reads from ``stream``; writes and close
    go straight to ``stream``."""

    def __init__(self, stream: trio.abc.Stream, replay: bytes) -> None:
        self.stream = stream
        self._replay = replay

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._replay:
            await trio.lowlevel.checkpoint()
            size = len(self._replay) if max_bytes is None else max_bytes
            data, self._replay = self._replay[:size], self._replay[size:]
            return data
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.stream.aclose()
