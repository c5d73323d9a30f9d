"""The migrations proxy's relay with pipelined requests: plain queries that the relay passes
without reading them (in Rust) interleaved with statements migration mode rewrites or refuses,
and a request sent in the same packet as the startup message. Both relays (threads, Trio)."""

from __future__ import annotations

import struct

import trio
from test_proxy import PASSWORD, Running, db, migrations, running

from electric_trio import _native
from electric_trio.pg import connect

__all__ = ["db", "running"]


def messages(data: bytes) -> list[tuple[str, bytes]]:
    out, at = [], 0
    while at < len(data):
        (length,) = struct.unpack_from("!i", data, at + 1)
        out.append((chr(data[at]), data[at + 5 : at + 1 + length]))
        at += 1 + length
    return out


async def answers(stream: trio.SocketStream, ready: int) -> list[tuple[str, bytes]]:
    """Reads until ``ready`` ReadyForQuery messages have come; every message, in order."""
    data = b""
    with trio.fail_after(20):
        while True:
            chunk = await stream.receive_some(65536)
            assert chunk, data
            data += chunk
            try:
                got = messages(data)
            except struct.error:
                continue  # a message cut short: read on
            if sum(tag == "Z" for tag, _ in got) >= ready and data.endswith(got[-1][1]):
                return got


def summary(got: list[tuple[str, bytes]]) -> list[str]:
    """CommandComplete tags, error SQLSTATEs and transaction statuses, in order."""
    out = []
    for tag, body in got:
        if tag == "C":
            out.append(body.rstrip(b"\0").decode())
        elif tag == "E":
            fields = {f[:1]: f[1:] for f in body.split(b"\0") if f}
            out.append("error " + fields[b"C"].decode())
        elif tag == "Z":
            out.append("Z" + body.decode())
    return out


async def pipelined(running: Running, requests: list[bytes]) -> list[str]:
    """Creates table ``t`` (electrified), then sends ``requests`` at once on a new connection
    to the proxy; the summary of every answer, once each request's ReadyForQuery came."""
    async with await connect(running.dsn()) as conn:
        await conn.execute("CREATE TABLE t (id uuid PRIMARY KEY, b text)")
        await conn.execute("ALTER TABLE t ENABLE ELECTRIC")
    stream = await trio.open_tcp_stream("127.0.0.1", running.port)
    try:
        await stream.send_all(
            _native.encode_startup([("user", "postgres"), ("password", PASSWORD)])
        )
        await answers(stream, 1)
        await stream.send_all(b"".join(requests))
        return summary(await answers(stream, len(requests)))
    finally:
        await stream.aclose()


async def test_request_in_the_startup_packet_is_read(running: Running) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", running.port)
    try:
        startup = _native.encode_startup([("user", "postgres"), ("password", PASSWORD)])
        sql = "CREATE TABLE early (id uuid PRIMARY KEY, v text); ALTER TABLE early ENABLE ELECTRIC"
        await stream.send_all(startup + _native.encode_query(sql))
        got = summary(await answers(stream, 2))
    finally:
        await stream.aclose()
    assert got == ["ZI", "CREATE TABLE", "ELECTRIC ENABLE", "ZI"]
    assert any("early" in s for _, stmts in await migrations(running.db_url) for s in stmts)


async def test_plain_queries_pipelined_between_rewritten_and_refused(running: Running) -> None:
    requests = [
        "SELECT 1",
        "ALTER TABLE t ADD COLUMN c text",  # captured: the tag is put back
        "SELECT 2;",
        "BEGIN",
        "ALTER TABLE t DROP COLUMN b",  # refused (EX010): the transaction fails
        "SELECT 3",  # refused by Postgres: the transaction is aborted
        "ROLLBACK",
        "select count(*) from t",
        "ALTER TABLE t ADD COLUMN d int8",
    ]
    got = await pipelined(running, [_native.encode_query(sql) for sql in requests])
    assert got == [
        *("SELECT 1", "ZI"),
        *("ALTER TABLE", "ZI"),
        *("SELECT 1", "ZI"),
        *("BEGIN", "ZT"),
        *("error EX010", "ZE"),
        *("error 25P02", "ZE"),
        *("ROLLBACK", "ZI"),
        *("SELECT 1", "ZI"),
        *("ALTER TABLE", "ZI"),
    ]
    captured = [s for _, stmts in await migrations(running.db_url) for s in stmts]
    assert "ALTER TABLE t ADD COLUMN c text" in captured
    assert "ALTER TABLE t ADD COLUMN d int8" in captured


def batch(*statements: str) -> bytes:
    """One extended-protocol batch: Parse, Bind, Describe and Execute of each, then one Sync."""
    return b"".join(_native.encode_extended_query(sql, [], [])[:-5] for sql in statements) + (
        _native.encode_sync()
    )


async def test_plain_batches_pipelined_with_rewritten_statements(running: Running) -> None:
    batches = [
        batch("SELECT 1"),
        batch("SELECT 2", "ALTER TABLE t ADD COLUMN c text", "SELECT 3"),
        batch("select 4"),
        batch("ALTER TABLE t DROP COLUMN b"),  # refused (EX010)
        batch("SELECT 5", "SELECT 6"),
    ]
    got = await pipelined(running, batches)
    assert got == [
        *("SELECT 1", "ZI"),
        *("SELECT 1", "ALTER TABLE", "SELECT 1", "ZI"),
        *("SELECT 1", "ZI"),
        *("error EX010", "ZI"),
        *("SELECT 1", "SELECT 1", "ZI"),
    ]
    captured = [s for _, stmts in await migrations(running.db_url) for s in stmts]
    assert "ALTER TABLE t ADD COLUMN c text" in captured
