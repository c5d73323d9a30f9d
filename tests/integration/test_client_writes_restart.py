"""Exactly once across a crash: the service killed with SIGKILL after a client transaction was
sent and before its echo, then restarted, leaves one copy in Postgres and tells the client where
to resume; a client that resends anyway is not written twice. The service runs in its own
process (``electric-trio serve``), in each mode of ``test_client_writes``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
import trio
from test_client_writes import (  # the same fixtures and raw client
    ENTRIES,
    ENTRIES_REL,
    JUNE_6,
    UUID1,
    UUID2,
    acked,
    client,
    db,
    entries,
    insert,
    mode,
    pg,
)

from electric_trio.pg import Connection

__all__ = ["db", "mode", "pg"]  # fixtures used by name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Service:
    """The service in a process of its own."""

    def __init__(self, url: str, mode: str) -> None:
        self.http_port = _free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "HTTP_PORT": str(self.http_port),
            "PG_PROXY_PORT": str(_free_port()),
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": mode,
            "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
            "LOGICAL_PUBLISHER_PORT": str(_free_port()),
            "LOG_LEVEL": "warning",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from electric_trio.cli import main; sys.exit(main())",
                "serve",
            ],
            env=self.env,
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    async def ready(self) -> None:
        assert self.proc is not None
        with trio.fail_after(60):
            while True:
                assert self.proc.poll() is None, "the service exited"
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", self.http_port)
                except OSError:
                    await trio.sleep(0.1)
                    continue
                async with stream:
                    await stream.send_all(b"GET /api/status HTTP/1.1\r\nhost: x\r\n\r\n")
                    head = await stream.receive_some(4096)
                if head.startswith(b"HTTP/1.1 200"):
                    return
                await trio.sleep(0.1)


@pytest.fixture
def service_process(db: str, mode: str) -> Iterator[_Service]:
    service = _Service(db, mode)
    try:
        yield service
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.terminate()
            service.proc.wait(timeout=30)


async def test_a_killed_service_leaves_one_copy(service_process: _Service, pg: Connection) -> None:
    service = service_process
    service.start()
    await service.ready()
    await pg.execute(f"BEGIN; CALL electric.migration_version('1'); {ENTRIES} COMMIT")
    with trio.fail_after(30):
        while not await pg.fetchval(  # noqa: ASYNC110 (Postgres state, no event to wait on)
            "SELECT count(*) FROM electric.schema WHERE version = '1'"
        ):
            await trio.sleep(0.05)
    async with client(service, "client_1_1", stream=False) as c:
        await c.send(ENTRIES_REL)
        await c.write(1, JUNE_6, insert(0, UUID1, "sent before the crash", None))
        with trio.fail_after(30):
            while not await acked(pg, "client_1_1"):  # noqa: ASYNC110 (committed, not echoed)
                await trio.sleep(0.02)
        service.kill()
    xmin = await pg.fetchval("SELECT xmin::text FROM entries")
    service.start()
    await service.ready()
    async with client(service, "client_1_1") as c:
        # the restarted service knows what Postgres has: the client resumes after it
        assert c.start is not None
        assert c.start.lsn == b"\x00\x00\x00\x01"
        # a client that resends it anyway is not written twice
        await c.send(ENTRIES_REL)
        await c.write(1, JUNE_6, insert(0, UUID1, "sent before the crash", None))
        await c.write(2, JUNE_6 + 1, insert(0, UUID2, "after the restart", None))
        # (the apply worker of logical_replication reconnects on its own schedule)
        assert (await c.echo(within=60)).commit_timestamp == JUNE_6 + 1
    assert await entries(pg) == [
        (UUID1, "sent before the crash", None),
        (UUID2, "after the restart", None),
    ]
    assert await pg.fetchval(f"SELECT xmin::text FROM entries WHERE id = '{UUID1}'") == xmin
    assert await acked(pg, "client_1_1") == b"\x00\x00\x00\x02"
