"""Exactly once across a crash: the service killed with SIGKILL after a client transaction was
sent and before its echo, then restarted, leaves one copy in Postgres and tells the client where
to resume; a client that resends anyway is not written twice. The service runs in its own
process (``electric-trio serve``), in each mode of ``test_client_writes``; when the test fails,
it prints the log of both runs of the service, what Postgres says of the subscription and
Postgres's own log lines of the test (its apply worker's reconnections)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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

from _ports import free_port
from electric_trio.pg import Connection, PgError

__all__ = ["db", "mode", "pg"]  # fixtures used by name


class _Service:
    """The service in a process of its own."""

    def __init__(self, url: str, mode: str, logs: Path | None = None) -> None:
        #: Where each run's output goes (``service-<n>.log``); None: the test's own output.
        self.logs = logs
        self.runs: list[Path] = []
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "HTTP_PORT": str(self.http_port),
            "PG_PROXY_PORT": str(free_port()),
            "PG_PROXY_PASSWORD": "proxy",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": mode,
            "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
            "LOGICAL_PUBLISHER_PORT": str(free_port()),
            "LOG_LEVEL": "info",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts a run of the service, its output kept in a file of its own (with ``logs``)."""
        command = [
            sys.executable,
            "-c",
            "import sys; from electric_trio.cli import main; sys.exit(main())",
            "serve",
        ]
        if self.logs is None:
            self.proc = subprocess.Popen(command, env=self.env)
            return
        log = self.logs / f"service-{len(self.runs) + 1}.log"
        self.runs.append(log)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def print_logs(self) -> None:
        for i, log in enumerate(self.runs, 1):
            print(f"---- the service's log, run {i} ({log}) ----")
            print(log.read_text(errors="replace"))
        if self.proc is not None:
            print(f"---- the last run's exit code: {self.proc.poll()} ----")

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
def service_process(db: str, mode: str, tmp_path: Path) -> Iterator[_Service]:
    service = _Service(db, mode, tmp_path)
    try:
        yield service
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.terminate()
            service.proc.wait(timeout=30)


class _PostgresLog:
    """The server log of our launcher (``postgres.log`` in the data directory), from the
    test's start: the apply worker's connections and errors are only there."""

    def __init__(self, path: Path | None, offset: int) -> None:
        self.path = path
        self.offset = offset

    @classmethod
    async def open(cls, pg: Connection) -> _PostgresLog:
        try:
            path = Path(str(await pg.fetchval("SHOW data_directory"))) / "postgres.log"
            return cls(path, path.stat().st_size)
        except (OSError, PgError):
            return cls(None, 0)  # another server's layout, or no right to read it

    def print_new(self) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                text = f.read().decode(errors="replace")
        except OSError as e:
            print(f"(cannot read {self.path}: {e})")
            return
        print(f"---- Postgres's log during the test ({self.path}) ----")
        print(text[-65536:])


async def _print_subscription_state(pg: Connection) -> None:
    print("---- Postgres's view of the subscription ----")
    for sql in (
        "SELECT subname, subenabled, subconninfo ~ 'port=' AS has_port FROM pg_subscription",
        "SELECT * FROM pg_stat_subscription",
        "SELECT * FROM pg_replication_origin_status",
        "SELECT pid, backend_type, application_name, state, wait_event, backend_start::text"
        " FROM pg_stat_activity WHERE backend_type LIKE 'logical replication%'"
        " OR backend_type = 'walsender'",
        "SELECT * FROM electric.acknowledged_client_lsns",
    ):
        try:
            with trio.fail_after(5):
                print(sql, *await pg.fetch(sql), sep="\n  ")
        except (PgError, trio.TooSlowError) as e:
            print(sql, f"  failed: {e}", sep="\n")


async def test_a_killed_service_leaves_one_copy(service_process: _Service, pg: Connection) -> None:
    service = service_process
    pg_log = await _PostgresLog.open(pg)
    try:
        await _kill_and_restart(service, pg)
    except BaseException:
        service.print_logs()
        await _print_subscription_state(pg)
        pg_log.print_new()
        raise


async def _kill_and_restart(service: _Service, pg: Connection) -> None:
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
