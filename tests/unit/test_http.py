"""The HTTP server and router, in process, over real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

import h11
import pytest
import trio
import trio_websocket

from electric_trio.http import (
    HttpLimits,
    HttpServer,
    PgStatus,
    Request,
    Response,
    Router,
    add_status_routes,
    serve_http,
)
from electric_trio.http._router import normalize_path


class Client:
    """A raw HTTP/1.1 client on one connection."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def request(
        self, method: str, target: str, headers: list[tuple[str, str]] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        all_headers = [("host", "test"), *(headers or [])]
        data = self.h11.send(h11.Request(method=method, target=target, headers=all_headers))
        data += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)
        return await self.response()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        status = 0
        headers: dict[str, str] = {}
        body = b""
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                return status, headers, body
            else:
                raise AssertionError(f"unexpected {event!r}")


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


class App:
    def __init__(self) -> None:
        self.router = Router()
        self.status: PgStatus = "starting"
        self.upgraded: list[tuple[Request, bytes]] = []
        add_status_routes(self.router, lambda: self.status)
        self.router.add("/echo", self.echo, methods=("POST",))
        self.router.add("/boom", self.boom)
        self.router.add("/ws", self.not_upgraded, upgrade=self.upgrade)

    async def echo(self, request: Request) -> Response:
        return Response(status=200, body=request.body, content_type="application/octet-stream")

    async def boom(self, request: Request) -> Response:
        raise RuntimeError("handler bug")

    async def not_upgraded(self, request: Request) -> Response:
        return Response.text(400, "Bad request")

    async def upgrade(self, request: Request, stream: trio.abc.Stream) -> None:
        # Read back what the stream replays: the whole request, then the bytes that follow.
        data = b""
        while not data.endswith(b"PING"):
            data += await stream.receive_some(3)  # small reads split the replay too
        self.upgraded.append((request, data))
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\nPONG")


@pytest.fixture
async def app() -> App:
    return App()


@pytest.fixture
async def server(app: App, nursery: trio.Nursery) -> HttpServer:
    limits = HttpLimits(max_header_bytes=4096, max_body_bytes=1000, header_timeout=0.5)
    started: HttpServer = await nursery.start(
        partial(serve_http, app.router, 0, host="127.0.0.1", limits=limits)
    )
    return started


@pytest.fixture
async def client(server: HttpServer) -> AsyncIterator[Client]:
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        yield Client(stream)


def test_normalize_path() -> None:
    assert normalize_path("/") == "/"
    assert normalize_path("") == "/"
    assert normalize_path("//proxy") == "/proxy"
    assert normalize_path("/api/status/") == "/api/status"
    assert normalize_path("/api//status") == "/api/status"


def test_router_refuses_duplicates_and_empty_routes() -> None:
    router = Router()

    async def handler(request: Request) -> Response:
        raise AssertionError

    router.add("/a", handler)
    with pytest.raises(ValueError, match="already routed"):
        router.add("/a/", handler)
    with pytest.raises(ValueError, match="needs a handler"):
        router.add("/b")


async def test_status_answers(app: App, client: Client) -> None:
    assert await client.request("GET", "/api/status") == (
        503,
        {
            "server": "electric-trio",
            "content-length": "37",
            "content-type": "text/plain; charset=utf-8",
        },
        b"Initializing connection to Posgres...",
    )
    app.status = "ready"
    status, _, body = await client.request("GET", "/api/status")
    assert (status, body) == (200, b"Connection to Postgres is up!")
    app.status = "failed"
    status, _, body = await client.request("GET", "/api/status")
    assert (status, body) == (503, b"Database connection failure.")


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/api/status/more"),
        ("GET", "/api"),
        ("GET", "/"),
        ("GET", "/nothing?x=1"),
        ("POST", "/api/status"),
        ("GET", "/echo"),
    ],
)
async def test_not_found(client: Client, method: str, target: str) -> None:
    status, _, body = await client.request(method, target)
    assert (status, body) == (404, b"Not found")


async def test_empty_segments_and_query_are_ignored_for_matching(app: App, client: Client) -> None:
    app.status = "ready"
    for target in ("//api/status", "/api/status/", "/api/status?x=1&y"):
        status, _, _ = await client.request("GET", target)
        assert status == 200, target


async def test_head(app: App, client: Client) -> None:
    app.status = "ready"
    status, headers, body = await client.request("HEAD", "/api/status")
    assert (status, headers["content-length"], body) == (200, "29", b"")
    # The connection is still in step: the next response is read correctly.
    status, _, body = await client.request("GET", "/api/status")
    assert (status, body) == (200, b"Connection to Postgres is up!")


async def test_keep_alive_and_pipelining(app: App, server: HttpServer) -> None:
    app.status = "ready"
    request = b"GET /api/status HTTP/1.1\r\nhost: x\r\n\r\n"
    async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
        await stream.send_all(
            request * 2 + request.replace(b"host: x", b"host: x\r\nconnection: close")
        )
        data = await read_until_closed(stream)
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert data.count(b"Connection to Postgres is up!") == 3


async def test_request_body(client: Client) -> None:
    data = client.h11.send(
        h11.Request(method="POST", target="/echo", headers=[("host", "x"), ("content-length", "5")])
    )
    data += client.h11.send(h11.Data(data=b"hello")) or b""
    data += client.h11.send(h11.EndOfMessage()) or b""
    await client.stream.send_all(data)
    assert (await client.response())[::2] == (200, b"hello")


async def test_body_too_large(client: Client) -> None:
    await client.stream.send_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\n\r\n" + b"x" * 2000
    )
    data = await read_until_closed(client.stream)
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in data


async def test_headers_too_large(client: Client) -> None:
    await client.stream.send_all(
        b"GET /api/status HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 5000 + b"\r\n\r\n"
    )
    assert (await read_until_closed(client.stream)).startswith(b"HTTP/1.1 431 ")


async def test_malformed_request_gets_400_and_others_are_still_served(
    app: App, server: HttpServer, client: Client
) -> None:
    app.status = "ready"
    async with await trio.open_tcp_stream("127.0.0.1", server.port) as bad:
        await bad.send_all(b"THIS IS NOT HTTP\r\n\r\n")
        data = await read_until_closed(bad)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert data.endswith(b"\r\n\r\nBad request")
    status, _, _ = await client.request("GET", "/api/status")
    assert status == 200


async def test_handler_error_gives_500_and_the_server_goes_on(app: App, client: Client) -> None:
    status, _, body = await client.request("GET", "/boom")
    assert (status, body) == (500, b"Internal server error")


async def test_idle_connection_is_closed_after_the_header_timeout(client: Client) -> None:
    assert await read_until_closed(client.stream) == b""


async def test_incomplete_head_gets_408(client: Client) -> None:
    await client.stream.send_all(b"GET /api/status HTTP/1.1\r\nhost:")
    assert (await read_until_closed(client.stream)).startswith(b"HTTP/1.1 408 ")


async def test_upgrade_takes_over_the_stream(app: App, client: Client) -> None:
    head = (
        b"GET //ws?client=1 HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\n"
        b"upgrade: websocket\r\n\r\n"
    )
    await client.stream.send_all(head + b"PING")
    data = await read_until_closed(client.stream)
    assert data == b"HTTP/1.1 101 Switching Protocols\r\n\r\nPONG"
    ((request, replayed),) = app.upgraded
    assert replayed == head + b"PING"
    assert (request.path, request.query, request.upgrade) == ("/ws", "client=1", "websocket")


async def test_route_without_upgrade_header_goes_to_the_plain_handler(client: Client) -> None:
    status, _, body = await client.request("GET", "/ws")
    assert (status, body) == (400, b"Bad request")


async def test_request_accessors() -> None:
    request = Request(
        method="GET",
        target="/api/migrations?dialect=sqlite&version=",
        path="/api/migrations",
        query="dialect=sqlite&version=",
        headers=(("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")),
        http_version="1.1",
    )
    assert request.query_params() == {"dialect": ["sqlite"], "version": [""]}
    assert request.header("Upgrade") == "WebSocket"
    assert request.header("missing") is None
    assert request.upgrade == "websocket"


async def test_listens_on_all_interfaces_with_a_dual_stack_fallback(nursery: trio.Nursery) -> None:
    server: HttpServer = await nursery.start(partial(serve_http, Router(), 0, use_ipv6=True))
    ((host, port),) = server.addresses
    assert host in ("::", "0.0.0.0")
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        status, _, _ = await Client(stream).request("GET", "/")
        assert status == 404
    ipv4: HttpServer = await nursery.start(partial(serve_http, Router(), 0, use_ipv6=False))
    assert ipv4.addresses == (("0.0.0.0", ipv4.port),)


async def test_a_websocket_library_can_take_over_an_upgrade(nursery: trio.Nursery) -> None:
    """The seam for /ws and /proxy: trio-websocket does the handshake on the replayed request."""

    async def shout(request: Request, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as ws_nursery:
            ws_request = await trio_websocket.wrap_server_stream(ws_nursery, stream)
            ws = await ws_request.accept()
            await ws.send_message((await ws.get_message()).upper())
            await ws.aclose()

    router = Router()
    router.add("/ws", upgrade=shout)
    server: HttpServer = await nursery.start(partial(serve_http, router, 0, host="127.0.0.1"))
    async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}//ws") as ws:
        await ws.send_message("hello")
        assert await ws.get_message() == "HELLO"
