"""The ``/proxy`` WebSocket tunnel (server-behaviour.md §9) with our ``electric-trio
proxy-tunnel`` and the official ``electric-sql proxy-tunnel`` (client-behaviour.md §11) in front
of it, and ``/metrics``."""

from __future__ import annotations

import os
import socket
import sys
from functools import partial
from pathlib import Path

import psycopg
import pytest
import trio
from test_proxy import PASSWORD, Running, db, make_config, migrations, out, run_psql, sync

from electric_trio.http.metrics import MetricsApi
from electric_trio.http.migrations import MigrationsApi
from electric_trio.proxy import ProxySubsystem, run_tunnel
from electric_trio.replication import ReplicationSubsystem
from electric_trio.service import Service, serve
from official_client import ensure_node_client

__all__ = ["db"]  # the fixture, re-used


async def start_tunnelled(nursery: trio.Nursery, url: str, proxy_port: str = "http") -> Running:
    proxy = ProxySubsystem(port=0)
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(url, PG_PROXY_PORT=proxy_port),
            subsystems=[ReplicationSubsystem(), MigrationsApi(), MetricsApi(), proxy],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    return Running(service, proxy, url)


@pytest.fixture
async def tunnelled(db: str, nursery: trio.Nursery) -> Running:
    return await start_tunnelled(nursery, db)


async def http(port: int, request: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(request)
    data = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = [
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    break
    await stream.aclose()
    return data


UPGRADE = (
    b"GET //proxy HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


async def test_proxy_path_without_tunnel_is_404(db: str, nursery: trio.Nursery) -> None:
    proxy = ProxySubsystem(port=0)
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(db),
            subsystems=[ReplicationSubsystem(), proxy],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    for request in (b"GET /proxy HTTP/1.1\r\nHost: x\r\n\r\n", UPGRADE):
        reply = await http(service.http_port, request)
        assert reply.startswith(b"HTTP/1.1 404")
        assert reply.endswith(b"Migrations proxy is not configured to accept WebSocket connections")


async def test_proxy_path_plain_request_is_400(tunnelled: Running) -> None:
    reply = await http(tunnelled.service.http_port, b"GET /proxy HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400")
    assert reply.endswith(b"Bad request")


async def test_our_tunnel_carries_psql_and_psycopg(
    tunnelled: Running, nursery: trio.Nursery
) -> None:
    service_url = f"http://127.0.0.1:{tunnelled.service.http_port}"
    local: int = await nursery.start(partial(run_tunnel, service_url, 0))
    script = """
CREATE TABLE items (id uuid PRIMARY KEY, value text NOT NULL);
ALTER TABLE items ENABLE ELECTRIC;
ALTER TABLE items ADD COLUMN n int8;
\\d items
"""
    proc = await run_psql(tunnelled.dsn(port=local), script)
    assert proc.returncode == 0, out(proc)
    assert "ELECTRIC ENABLE" in out(proc)

    def check() -> None:
        # two connections at once: one WebSocket each
        with (
            psycopg.connect(tunnelled.dsn(port=local)) as a,
            psycopg.connect(tunnelled.dsn(port=local)) as b,
        ):
            a.execute("INSERT INTO items VALUES (gen_random_uuid(), %s, %s)", ("x", 1))
            a.commit()
            assert b.execute("SELECT value, n FROM items").fetchall() == [("x", 1)]
            with pytest.raises(psycopg.Error) as info:
                b.execute("ALTER TABLE items DROP COLUMN value")
            assert info.value.sqlstate == "EX010"

    await sync(check)
    statements = [s for _, stmts in await migrations(tunnelled.db_url) for s in stmts]
    assert "ALTER TABLE items ADD COLUMN n int8" in statements


async def test_our_tunnel_cli(tunnelled: Running) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    service_url = f"http://127.0.0.1:{tunnelled.service.http_port}"
    async with trio.open_nursery() as nursery:
        process = await nursery.start(
            partial(
                trio.run_process,
                [
                    str(Path(sys.executable).parent / "electric-trio"),
                    "proxy-tunnel",
                    "--service",
                    service_url,
                    "--local-port",
                    str(local),
                ],
                stdout=trio.lowlevel.FdStream(os.dup(sys.stderr.fileno())),
                check=False,
            )
        )
        try:
            await wait_for_port(local)
            proc = await run_psql(tunnelled.dsn(port=local), "SELECT 40 + 2 AS answer;")
            assert proc.returncode == 0, out(proc)
            assert "42" in out(proc)
        finally:
            process.terminate()


async def wait_for_port(port: int) -> None:
    with trio.fail_after(30):
        while True:
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.1)
                continue
            await stream.aclose()
            return


async def test_official_tunnel_carries_psql(db: str, nursery: trio.Nursery) -> None:
    node_dir = await trio.to_thread.run_sync(ensure_node_client)
    tunnelled = await start_tunnelled(nursery, db, proxy_port="http:0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
    main_js = node_dir / "node_modules" / "electric-sql" / "dist" / "cli" / "main.js"
    async with trio.open_nursery() as inner:
        process = await inner.start(
            partial(
                trio.run_process,
                [
                    "node",
                    str(main_js),
                    "proxy-tunnel",
                    "--service",
                    f"http://127.0.0.1:{tunnelled.service.http_port}",
                    "--local-port",
                    str(local),
                ],
                cwd=str(node_dir),
                stdout=trio.lowlevel.FdStream(os.dup(sys.stderr.fileno())),
                check=False,
            )
        )
        try:
            await wait_for_port(local)
            script = """
BEGIN;
CALL electric.migration_version('20240601000000');
CREATE TABLE tunnelled (id uuid PRIMARY KEY, v text);
ALTER TABLE tunnelled ENABLE ELECTRIC;
COMMIT;
SELECT count(*) FROM tunnelled;
"""
            proc = await run_psql(tunnelled.dsn(port=local), script)
            assert proc.returncode == 0, out(proc)
        finally:
            process.terminate()
    assert [v for v, _ in await migrations(tunnelled.db_url)] == ["20240601000000"]


async def test_metrics(tunnelled: Running) -> None:
    def open_session() -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(tunnelled.dsn())

    conn = await sync(open_session)
    try:
        reply = await http(tunnelled.service.http_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        conn.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"text/plain; version=0.0.4" in head
    values = {
        line.split()[0]: float(line.split()[1])
        for line in body.decode().splitlines()
        if line and not line.startswith("#")
    }
    assert values["electric_proxy_sessions"] == 1
    assert values["electric_proxy_sessions_total"] >= 1
    assert values["electric_transactions_from_postgres_total"] >= 0
    assert values["electric_slot_retained_wal_bytes"] >= 0
    assert values["electric_replication_lag_bytes"] >= 0
    assert "electric_replication_lag_seconds" in values
    assert PASSWORD not in body.decode()


async def test_tunnel_closes_its_websocket_socket_when_stopped_mid_handshake() -> None:
    """A tunnel stopped while the service has not answered the upgrade closes the TCP
    connection it opened (it leaked it, and pytest turned the ResourceWarning into a failure)."""
    accepted = trio.Event()
    peer_closed = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        accepted.set()
        async with stream:
            while await stream.receive_some(65536):
                pass  # reads the upgrade request, never answers
        peer_closed.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, silent, 0)
        silent_port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as tunnel_scope:
            local: int = await tunnel_scope.start(
                partial(run_tunnel, f"http://127.0.0.1:{silent_port}", 0)
            )
            client = await trio.open_tcp_stream("127.0.0.1", local)
            with trio.fail_after(10):
                await accepted.wait()
            tunnel_scope.cancel_scope.cancel()
        with trio.fail_after(10):
            await peer_closed.wait()  # the tunnel's upstream socket was closed, not dropped
        assert await client.receive_some(10) == b""  # and the local connection too
        await client.aclose()
        nursery.cancel_scope.cancel()
