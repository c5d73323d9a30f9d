"""Requests, responses and the router that maps a path to a handler.

A route has a plain handler (``Request -> Response``), an upgrade handler (takes over the
connection's byte stream, for WebSockets), or both: a request carrying ``Upgrade`` goes to the
upgrade handler when the route has one, any other request to the plain handler. Paths are
matched exactly after empty segments are dropped (``//proxy`` and ``/api/status/`` match
``/proxy`` and ``/api/status``, as the legacy Plug router did); anything unmatched, including a
method the route does not accept, is a 404 ``Not found``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qs

import msgspec
import trio

__all__ = ["Handler", "Request", "Response", "Route", "Router", "UpgradeHandler", "normalize_path"]

TEXT_PLAIN = "text/plain; charset=utf-8"


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One HTTP request. Header names are lower case; ``path`` is normalised (see module doc)."""

    method: str
    target: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    http_version: str
    body: bytes = b""
    #: The peer's address as ``host:port``, when known.
    remote: str | None = None

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        lowered = name.lower()
        for key, value in self.headers:
            if key == lowered:
                return value
        return None

    def query_params(self) -> dict[str, list[str]]:
        """The query string, decoded; blank values are kept (``version=`` is ``[""]``)."""
        return parse_qs(self.query, keep_blank_values=True)

    @property
    def upgrade(self) -> str | None:
        """The protocol asked for by ``Connection: upgrade`` + ``Upgrade: <p>``, lower case."""
        connection = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        upgrade = self.header("upgrade")
        if "upgrade" in connection and upgrade:
            return upgrade.strip().lower()
        return None


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """A complete response; ``Content-Length`` and ``Content-Type`` are added when sent."""

    status: int
    body: bytes = b""
    content_type: str | None = TEXT_PLAIN
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status=status, body=text.encode())

    @classmethod
    def json(cls, status: int, value: object) -> Response:
        return cls(
            status=status,
            body=json.dumps(value, separators=(",", ":")).encode(),
            content_type="application/json",
        )


NOT_FOUND = Response.text(404, "Not found")

#: Answers a request.
Handler = Callable[[Request], Awaitable[Response]]
#: Owns the connection from here on. ``stream`` first replays the request bytes exactly as they
#: were received (head, and anything the client sent after it), so a WebSocket library that
#: performs the handshake itself (``trio_websocket.wrap_server_stream``, or ``wsproto`` fed from
#: the stream) works unchanged. The server closes the stream when the handler returns.
UpgradeHandler = Callable[[Request, trio.abc.Stream], Awaitable[None]]


class Route(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    methods: frozenset[str] = frozenset({"GET", "HEAD"})
    handler: Handler | None = None
    upgrade: UpgradeHandler | None = None


def normalize_path(path: str) -> str:
    """``/a//b/`` -> ``/a/b``: empty segments are dropped."""
    return "/" + "/".join(segment for segment in path.split("/") if segment)


class Router:
    """Paths to handlers. Routes are meant to be added before the server starts listening."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def add(
        self,
        path: str,
        handler: Handler | None = None,
        *,
        upgrade: UpgradeHandler | None = None,
        methods: Iterable[str] = ("GET",),
    ) -> None:
        """Routes ``path`` to ``handler`` for ``methods`` (a GET route answers HEAD too) and,
        for requests asking for a protocol upgrade, to ``upgrade``."""
        if handler is None and upgrade is None:
            raise ValueError("a route needs a handler, an upgrade handler or both")
        key = normalize_path(path)
        if key in self._routes:
            raise ValueError(f"{key} is already routed")
        allowed = {m.upper() for m in methods}
        if "GET" in allowed:
            allowed.add("HEAD")
        self._routes[key] = Route(
            path=key, methods=frozenset(allowed), handler=handler, upgrade=upgrade
        )

    def match(self, request: Request) -> Route | None:
        """The route for ``request``, or ``None`` (404)."""
        route = self._routes.get(request.path)
        if route is None:
            return None
        if request.upgrade is not None and route.upgrade is not None:
            return route
        if route.handler is None or request.method not in route.methods:
            return None
        return route
