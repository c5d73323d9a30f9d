"""Hypothesis against the live migrations proxy: random and malformed startup packets (wrong
lengths, protocol versions, SSL/GSS/cancel requests, missing terminators) and random messages
after a successful login. Whatever comes in, the proxy answers with well-formed Postgres
messages (an ErrorResponse, or the SSL refusal and authentication request of a normal start) or
closes, never lets anyone in without the password, and keeps serving a well-behaved client.

One service for the module, in a Trio loop on a thread (tests/_loop_thread.py).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_proxy import PASSWORD, Running, start

from _loop_thread import LoopHarness, run_on_thread
from electric_trio import _native
from electric_trio.errors import ProtocolError

T = TypeVar("T")

CASES = settings(
    max_examples=int(os.environ.get("BAD_INPUT_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("BAD_INPUT_RANDOM") != "1",
)


class Harness(LoopHarness):
    running: Running | None = None

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self.running = await start(nursery, self.url)
            self.started()
            await trio.sleep_forever()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Runs ``fn(*args)`` in the service's loop, then checks a client still gets answers."""
        result = self.in_loop(fn, *args)
        assert self.running is not None
        with psycopg.connect(self.running.dsn(), connect_timeout=10) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        return result


@pytest.fixture(scope="module")
def harness(pg_server: Any) -> Iterator[Harness]:
    yield from run_on_thread(pg_server, "et_bad_proxy", Harness)


def untagged(body: bytes, length: int | None = None) -> bytes:
    n = len(body) + 4 if length is None else length
    return n.to_bytes(4, "big", signed=True) + body


CODES = st.sampled_from(
    [196608, 196610, 80877103, 80877104, 80877102, 131072, 0, -1, 2**31 - 1, 1234 << 16 | 5678]
)
PARAMS = st.lists(
    st.tuples(
        st.sampled_from([b"user", b"database", b"options", b"replication", b"password", b"x"]),
        st.binary(max_size=12),
    ),
    max_size=3,
).map(lambda ps: b"".join(k + b"\x00" + v + b"\x00" for k, v in ps))
STARTUP = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda code, params, end, length: untagged(
            code.to_bytes(4, "big", signed=True) + params + end, length
        ),
        CODES,
        PARAMS,
        st.sampled_from([b"\x00", b"", b"\x00\x00"]),
        st.one_of(st.none(), st.integers(-5, 100), st.just(2**31 - 1)),
    ),
)


def parse_reply(data: bytes) -> list[str]:
    """The tags of what the proxy sent: an optional one-byte SSL/GSS answer, then messages."""
    tags = []
    if data[:1] in (b"N", b"S") and (len(data) == 1 or data[1:2] in (b"E", b"R", b"N")):
        tags.append(data[:1].decode().lower())  # the one-byte answer to SSLRequest/GSSENCRequest
        data = data[1:]
    reader = _native.BackendReader()
    reader.feed(data)
    while (msg := reader.next()) is not None:
        tags.append(msg[0])
    assert reader.buffered == 0, f"a cut message: {data!r}"
    return tags


async def exchange(harness: Harness, data: bytes) -> bytes:
    """Sends ``data`` and EOF; everything the proxy sends until it closes."""
    assert harness.running is not None
    stream = await trio.open_tcp_stream("127.0.0.1", harness.running.port)
    reply = b""
    try:
        await stream.send_all(data)
        await stream.send_eof()
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                reply += chunk
    except trio.BrokenResourceError:
        pass  # the proxy closed first
    finally:
        await stream.aclose()
    return reply


@CASES
@given(first=STARTUP, second=st.one_of(st.just(b""), STARTUP))
def test_malformed_startups(harness: Harness, first: bytes, second: bytes) -> None:
    tags = parse_reply(harness.call(exchange, harness, first + second))
    assert "Z" not in tags, "logged in without the password"
    assert set(tags) <= {"s", "n", "R", "E"}, tags
    assert tags.count("E") <= 1
    if "E" in tags:
        assert tags[-1] == "E"


async def after_login(harness: Harness, data: bytes) -> bytes:
    assert harness.running is not None
    stream = await trio.open_tcp_stream("127.0.0.1", harness.running.port)
    reply = b""
    try:
        await stream.send_all(
            _native.encode_startup([("user", "u"), ("database", "d"), ("password", PASSWORD)])
        )
        with trio.fail_after(10):
            while not reply.endswith(b"Z\x00\x00\x00\x05I"):
                reply += await stream.receive_some(65536)
        reply = b""
        await stream.send_all(data)
        await stream.send_eof()
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                reply += chunk
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()
    return reply


MESSAGE = st.builds(
    lambda tag, body, length: (
        bytes([tag])
        + (len(body) + 4 if length is None else length).to_bytes(4, "big", signed=True)
        + body
    ),
    st.sampled_from(b"QPBEDCSHFcdfpX!\x00\xff"),
    st.one_of(st.binary(max_size=30), st.just(b"SELECT 1\x00"), st.just(b"\x00\x00\x00")),
    st.one_of(st.none(), st.integers(-3, 60), st.just(2**31 - 1)),
)


@pytest.mark.slow  # (the proxy's parsing: the PostgreSQL 15 pass leaves it out)
@CASES
@given(messages=st.lists(MESSAGE, min_size=1, max_size=4))
def test_random_messages_after_login(harness: Harness, messages: list[bytes]) -> None:
    reply = harness.call(after_login, harness, b"".join(messages))
    try:
        parse_reply(reply)
    except ProtocolError as e:
        raise AssertionError(f"the proxy sent something that is not Postgres: {reply!r}") from e
