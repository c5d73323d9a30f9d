"""The Trio Postgres client against a real server: auth, TLS, types, COPY, replication, cancel."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import uuid
from typing import Any

import pytest
import trio
import trio.lowlevel

from electric_trio.pg import (
    ConnectionLostError,
    ConnectParams,
    Json,
    Keepalive,
    PgAuthError,
    PgConnectError,
    PgError,
    XLogData,
    connect,
    format_lsn,
    parse_lsn,
)

PASSWORD = "s3cret pass"


def with_user(url: str, user: str, password: str | None, **opts: str) -> ConnectParams:
    base = ConnectParams.from_url(url)
    extra: dict[str, Any] = dict(opts)
    return ConnectParams(
        host=base.host,
        port=base.port,
        user=user,
        password=password,
        database=base.database,
        **extra,
    )


@pytest.fixture
async def conn(pg_url: str):
    async with await connect(pg_url) as c:
        yield c


async def current_auth(params: ConnectParams) -> tuple[str, bool]:
    async with await connect(params) as c:
        row = await c.fetchrow(
            "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert row is not None
        return row[0], row[1]


@pytest.mark.parametrize("user", ["et_trust", "et_clear", "et_md5", "et_scram"])
async def test_each_auth_method_logs_in(
    pg_url: str, pg_roles: dict[str, str | None], user: str
) -> None:
    params = with_user(pg_url, user, pg_roles[user], sslmode="disable")
    name, _ = await current_auth(params)
    assert name == user


@pytest.mark.parametrize("user", ["et_clear", "et_md5", "et_scram"])
async def test_wrong_password_is_refused_with_sqlstate(
    pg_url: str, pg_roles: dict[str, str | None], user: str
) -> None:
    with pytest.raises(PgAuthError) as info:
        await connect(with_user(pg_url, user, "wrong", sslmode="disable"))
    assert info.value.sqlstate == "28P01"
    assert user in info.value.message


async def test_missing_password_is_a_clear_auth_error(
    pg_url: str, pg_roles: dict[str, str | None]
) -> None:
    with pytest.raises(PgAuthError, match="password"):
        await connect(with_user(pg_url, "et_scram", None, sslmode="disable"))


async def test_tls_when_required(tls_server) -> None:
    async with await connect(tls_server.url) as c:
        await c.execute("DROP ROLE IF EXISTS et_ssl")
        await c.execute(f"CREATE ROLE et_ssl LOGIN PASSWORD '{PASSWORD}'")
    name, used_ssl = await current_auth(
        with_user(tls_server.url, "et_ssl", PASSWORD, sslmode="require")
    )
    assert (name, used_ssl) == ("et_ssl", True)
    # The server only lets et_ssl in over TLS: without it the refusal names pg_hba.conf.
    with pytest.raises(PgAuthError, match=r"pg_hba\.conf"):
        await connect(with_user(tls_server.url, "et_ssl", PASSWORD, sslmode="disable"))


async def test_database_url_sslmode_require_uses_tls(tls_server) -> None:
    async with await connect(tls_server.url + "?sslmode=require") as c:
        assert await c.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    params = ConnectParams.from_url(tls_server.url, require_ssl=True)
    assert params.sslmode == "require"
    async with await connect(params) as c:
        assert await c.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")


async def test_sslmode_require_fails_closed_without_tls() -> None:
    """A server that declines TLS is refused under sslmode=require, never used in clear."""

    async def declines_tls(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(8)  # the SSLRequest
            await stream.send_all(b"N")
            await stream.receive_some(1024)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, declines_tls, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        with pytest.raises(PgConnectError, match="does not support TLS"):
            await connect(f"postgresql://u:p@127.0.0.1:{port}/db?sslmode=require")
        nursery.cancel_scope.cancel()


async def test_unreachable_server_is_a_connect_error() -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PgConnectError, match=f"127.0.0.1:{port}"):
        await connect(f"postgresql://u:p@127.0.0.1:{port}/db")


async def test_server_errors_carry_sqlstate_detail_and_hint(conn) -> None:
    with pytest.raises(PgError) as info:
        await conn.execute("SELECT * FROM no_such_table")
    assert (info.value.sqlstate, info.value.severity) == ("42P01", "ERROR")
    assert "no_such_table" in info.value.message
    await conn.execute("CREATE TEMP TABLE u (id int PRIMARY KEY)")
    await conn.execute("INSERT INTO u VALUES (1)")
    with pytest.raises(PgError) as info:
        await conn.execute("INSERT INTO u VALUES (1)")
    assert info.value.sqlstate == "23505"
    assert info.value.detail == "Key (id)=(1) already exists."
    with pytest.raises(PgError) as info:
        await conn.execute("SELECT coalesce(1, 'x'::text)")
    assert info.value.sqlstate == "42804"
    # Still usable after errors, including inside a failed transaction.
    await conn.execute("BEGIN")
    with pytest.raises(PgError):
        await conn.execute("SELECT 1/0")
    assert conn.transaction_status == "E"
    await conn.execute("ROLLBACK")
    assert await conn.fetchval("SELECT 1") == 1


async def test_hint_is_reported(conn) -> None:
    with pytest.raises(PgError) as info:
        await conn.execute("SELECT no_such_function(1)")
    assert info.value.hint is not None
    assert "No function matches" in info.value.hint


async def test_simple_and_extended_protocol(conn) -> None:
    results = await conn.query(
        "SELECT 1 AS a; SELECT 'x' AS b, 2 AS c; CREATE TEMP TABLE t1 (x int)"
    )
    assert [(r.command, r.rows) for r in results] == [
        ("SELECT 1", [(1,)]),
        ("SELECT 1", [("x", 2)]),
        ("CREATE TABLE", []),
    ]
    assert [c.name for c in results[1].columns] == ["b", "c"]
    assert (
        await conn.execute("INSERT INTO t1 SELECT generate_series(1, $1::int)", 5) == "INSERT 0 5"
    )
    assert await conn.fetch("SELECT x FROM t1 WHERE x > $1 ORDER BY x", 3) == [(4,), (5,)]
    assert await conn.fetchval("SELECT $1::text || $2::text", "a'b", None) is None
    assert (
        await conn.fetchval("SELECT $1::text", "quote ' and \\ backslash")
        == "quote ' and \\ backslash"
    )
    assert await conn.fetchval("SELECT $1", "untyped") == "untyped"


NOW = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.UTC)

ROUND_TRIPS: list[tuple[str, Any]] = [
    ("bool", True),
    ("bool", False),
    ("int2", -32768),
    ("int4", 2147483647),
    ("int8", -(2**63)),
    ("float4", 1.5),
    ("float8", 1e-300),
    ("float8", float("inf")),
    ("numeric", decimal.Decimal("12345678901234567890.000000001")),
    ("numeric", decimal.Decimal("-0.5")),
    ("text", 'héllo, 世界 "quoted" {braces}'),
    ("varchar(20)", "short"),
    ("uuid", uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
    ("bytea", bytes(range(256))),
    ("date", dt.date(2024, 2, 29)),
    ("date", dt.date.max),
    ("time", dt.time(23, 59, 59, 999999)),
    ("timestamp", dt.datetime(1999, 12, 31, 23, 59, 59, 1)),
    ("timestamptz", NOW),
    ("json", Json({"a": [1, 2.5, None, "x"]})),
    ("jsonb", {"nested": {"k": True}}),
    ("int4[]", [1, None, 3]),
    ("int8[]", [[1, 2], [3, 4]]),
    ("text[]", ["a", "b c", 'd"e', "NULL", None, ""]),
    ("bool[]", [True, False]),
    ("float8[]", [0.1, -2.5]),
    ("numeric[]", [decimal.Decimal("1.10"), None]),
    ("uuid[]", [uuid.UUID(int=1), uuid.UUID(int=2)]),
    ("bytea[]", [b"\x00\x01", b""]),
    ("date[]", [dt.date(2020, 1, 1)]),
    ("timestamptz[]", [NOW, None]),
    ("jsonb[]", [Json({"a": 1}), Json([1])]),
]


@pytest.mark.parametrize(("pg_type", "value"), ROUND_TRIPS, ids=[t for t, _ in ROUND_TRIPS])
async def test_types_round_trip(conn, pg_type: str, value: Any) -> None:
    got = await conn.fetchval(f"SELECT $1::{pg_type}", value)
    expected = value.value if isinstance(value, Json) else value
    if pg_type == "jsonb[]":
        expected = [v.value for v in value]
    assert got == expected
    assert type(got) is type(expected)


async def test_types_decode_from_literals(conn) -> None:
    row = await conn.fetchrow(
        "SELECT '2024-01-01 01:00:00+02'::timestamptz, 'infinity'::timestamp,"
        " '10:00:00+05:30'::timetz, 'NaN'::numeric, '{{1,2},{3,4}}'::int[], NULL::int,"
        " ARRAY['2020-01-01 00:00:00+00'::timestamptz]"
    )
    assert row == (
        dt.datetime(2023, 12, 31, 23, 0, tzinfo=dt.UTC),
        dt.datetime.max,
        dt.time(10, 0, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        row[3],
        [[1, 2], [3, 4]],
        None,
        [dt.datetime(2020, 1, 1, tzinfo=dt.UTC)],
    )
    assert row[3].is_nan()


async def test_copy_both_ways_text_and_binary_100k(conn) -> None:
    n = 100_000
    await conn.execute("CREATE TEMP TABLE src (id int8 PRIMARY KEY, name text, score float8)")
    await conn.execute("CREATE TEMP TABLE dst (LIKE src)")
    lines = (f"{i}\tname {i}\\twith tab\t{i / 4}\n".encode() for i in range(n))
    assert await conn.copy_in("COPY src FROM STDIN", lines) == n
    async with conn.copy_out("COPY src TO STDOUT") as copy:
        text_rows = [row async for row in copy]
    assert len(text_rows) == n
    assert sorted(text_rows)[0] == b"0\tname 0\\twith tab\t0\n"
    async with conn.copy_out("COPY src TO STDOUT (FORMAT binary)") as copy:
        binary = await copy.read_all()
    assert binary[0].startswith(b"PGCOPY\n\xff\r\n\x00")
    assert await conn.copy_in("COPY dst FROM STDIN (FORMAT binary)", binary) == n

    async def async_chunks():
        yield b"100001\tasync\t1.5\n"
        await trio.lowlevel.checkpoint()
        yield b"100002\tasync\t2.5\n"

    assert await conn.copy_in("COPY dst FROM STDIN", async_chunks()) == 2
    same = await conn.fetchval(
        "SELECT count(*) FROM src FULL JOIN dst USING (id, name, score)"
        " WHERE src.id IS NULL OR dst.id IS NULL"
    )
    assert same == 2
    assert await conn.fetchval("SELECT name FROM dst WHERE id = 7") == "name 7\twith tab"


async def test_copy_in_failure_writes_nothing_and_keeps_the_connection(conn) -> None:
    await conn.execute("CREATE TEMP TABLE c (id int)")

    def broken():
        yield b"1\n"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        await conn.copy_in("COPY c FROM STDIN", broken())
    with pytest.raises(PgError) as info:
        await conn.copy_in("COPY c FROM STDIN", [b"not a number\n"])
    assert info.value.sqlstate == "22P02"
    assert await conn.fetchval("SELECT count(*) FROM c") == 0


async def test_copy_out_left_early_cancels_on_the_server(conn) -> None:
    async with conn.copy_out("COPY (SELECT generate_series(1, 5000000)) TO STDOUT") as copy:
        first = await copy.__anext__()
    assert first == b"1\n"
    assert await conn.fetchval("SELECT 5") == 5


async def test_cancelling_a_query_stops_it_on_the_server(conn, pg_url: str) -> None:
    with trio.move_on_after(0.5) as scope:
        await conn.execute("SELECT pg_sleep(60)")
    assert scope.cancelled_caught
    # The server is no longer running it, and the connection works.
    async with await connect(pg_url) as other:
        state = await other.fetchval(
            "SELECT state FROM pg_stat_activity WHERE pid = $1::int", conn.backend_pid
        )
    assert state == "idle"
    assert await conn.fetchval("SELECT 'alive'") == "alive"


async def test_backend_terminated_mid_query_gives_a_clean_exception(conn, pg_url: str) -> None:
    async def terminate_soon() -> None:
        async with await connect(pg_url) as other:
            # Polling the server is the only way to see that the query has started.
            while not await other.fetchval(  # noqa: ASYNC110
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE pid = $1::int AND query LIKE '%pg_sleep%'",
                conn.backend_pid,
            ):
                await trio.sleep(0.05)
            await other.execute("SELECT pg_terminate_backend($1::int)", conn.backend_pid)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(terminate_soon)
        with pytest.raises(PgError) as info:
            await conn.execute("SELECT pg_sleep(60)")
    assert info.value.sqlstate == "57P01"
    with pytest.raises(ConnectionLostError):
        await conn.execute("SELECT 1")


async def test_socket_cut_mid_query_gives_connection_lost(pg_url: str) -> None:
    """A relay we control drops the TCP connection while a query runs."""
    target = ConnectParams.from_url(pg_url)
    cut = trio.Event()

    async def relay(client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream(target.host, target.port)
        async with client, upstream, trio.open_nursery() as n:

            async def pump(a: trio.abc.Stream, b: trio.abc.Stream) -> None:
                try:
                    while data := await a.receive_some(65536):
                        await b.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

            n.start_soon(pump, client, upstream)
            n.start_soon(pump, upstream, client)
            await cut.wait()
            n.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, relay, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        params = ConnectParams(
            host="127.0.0.1",
            port=port,
            user=target.user,
            password=target.password,
            database=target.database,
            sslmode="disable",
        )
        c = await connect(params)

        async def cut_soon() -> None:
            await trio.sleep(0.3)
            cut.set()

        nursery.start_soon(cut_soon)
        with pytest.raises(ConnectionLostError, match=f"127.0.0.1:{port}"):
            await c.execute("SELECT pg_sleep(30)")
        await c.aclose()
        nursery.cancel_scope.cancel()


async def test_replication_stream_receives_a_transaction(pg_url: str) -> None:
    slot = "et_test_slot"
    async with await connect(pg_url) as c:
        await c.execute(
            "DROP TABLE IF EXISTS repl_t; CREATE TABLE repl_t (id int PRIMARY KEY, v text)"
        )
        await c.execute(
            "DROP PUBLICATION IF EXISTS et_pub; CREATE PUBLICATION et_pub FOR TABLE repl_t"
        )
        await c.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = $1",
            slot,
        )
    repl = await connect(pg_url, replication="database")
    async with repl:
        system = await repl.fetchrow("IDENTIFY_SYSTEM")
        assert system is not None
        assert len(system) == 4
        created = await repl.fetchrow(
            f'CREATE_REPLICATION_SLOT "{slot}" LOGICAL pgoutput NOEXPORT_SNAPSHOT'
        )
        assert created is not None
        assert created[0] == slot
        start = parse_lsn(created[1])
        assert format_lsn(start) == created[1]
        async with await connect(pg_url) as c:
            await c.execute("BEGIN; INSERT INTO repl_t VALUES (1, 'hello from wal'); COMMIT")
        stream = await repl.start_replication(
            f'START_REPLICATION SLOT "{slot}" LOGICAL {format_lsn(start)}'
            " (proto_version '1', publication_names 'et_pub')"
        )
        kinds: list[bytes] = []
        with trio.fail_after(30):
            async for msg in stream:
                if isinstance(msg, XLogData):
                    kinds.append(msg.data[:1])
                    if msg.data[:1] == b"I":
                        assert b"hello from wal" in msg.data
                    if msg.data[:1] == b"C":
                        stream.acknowledge(msg.wal_end)
                        await stream.send_status()
                        break
                else:
                    assert isinstance(msg, Keepalive)
        await stream.stop()
        assert kinds == [b"B", b"R", b"I", b"C"]
        # The connection serves commands again after the stream.
        await repl.execute(f'DROP_REPLICATION_SLOT "{slot}"')
