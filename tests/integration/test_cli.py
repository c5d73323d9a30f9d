"""The ``electric-trio`` command, run as a user would: a subprocess, its stderr and exit status."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import pytest
import trio
from test_client_writes import JUNE_6, client, insert, relation

from electric_trio.config import SETTINGS
from electric_trio.pg import connect
from electric_trio.pg.embedded import DEFAULT_PASSWORD
from electric_trio.satellite import messages as m

if TYPE_CHECKING:
    from conftest import PgServer
    from electric_trio.service import Service

COMMAND = str(Path(sys.executable).parent / "electric-trio")
TEST_DATABASE = "electric_test"
READY = re.compile(r'msg="electric-trio is ready" http_port=(\d+)')
START_TIMEOUT = 60


def clean_env(**settings: str) -> dict[str, str]:
    """The test's environment without any of the service's variables, plus ``settings``."""
    names = {s.env for s in SETTINGS}
    env = {k: v for k, v in os.environ.items() if k not in names}
    return {**env, **settings}


def serve_env(url: str, **settings: str) -> dict[str, str]:
    defaults = {
        "DATABASE_URL": url,
        "HTTP_PORT": "0",
        "PG_PROXY_PORT": "0",  # not the default 65432: another test run may hold it
        "PG_PROXY_PASSWORD": "proxy-secret",
        "AUTH_MODE": "insecure",
        "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
    }
    return clean_env(**{**defaults, **settings})


class Running:
    """A running ``electric-trio``; its stderr is collected as it comes."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stderr = ""
        self._new_output = trio.Event()

    async def collect(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.receive_some(65536):
            self.stderr += chunk.decode()
            self._new_output.set()
            self._new_output = trio.Event()
        self._new_output.set()

    async def wait_for_log(self, pattern: re.Pattern[str]) -> re.Match[str]:
        with trio.fail_after(START_TIMEOUT):
            while (match := pattern.search(self.stderr)) is None:
                if self.process.returncode is not None:
                    raise AssertionError(f"exited {self.process.returncode}:\n{self.stderr}")
                await self._new_output.wait()
        return match

    async def ready(self) -> int:
        """The HTTP port, once the service is connected to Postgres."""
        return int((await self.wait_for_log(READY)).group(1))

    async def wait(self) -> int:
        with trio.fail_after(30):
            return await self.process.wait()


@asynccontextmanager
async def run(args: Sequence[str], env: Mapping[str, str]) -> AsyncIterator[Running]:
    process = await trio.lowlevel.open_process(
        [COMMAND, *args], env=dict(env), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    running = Running(process)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(running.collect)
            yield running
            await running.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def run_to_end(args: Sequence[str], env: Mapping[str, str]) -> tuple[int, str]:
    with trio.fail_after(START_TIMEOUT):
        result = await trio.run_process(
            [COMMAND, *args], env=dict(env), capture_stderr=True, check=False
        )
    return result.returncode, result.stderr.decode()


async def http(port: int, raw_request: bytes) -> bytes:
    """Sends ``raw_request`` and returns everything the server sends until it closes."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(raw_request)
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return data


async def get(port: int, path: str) -> tuple[int, bytes]:
    data = await http(port, f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def assert_one_error_line(stderr: str) -> str:
    """Exactly one ``electric-trio: error:`` line, no traceback, no other error output."""
    assert "Traceback" not in stderr, stderr
    assert "level=error" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("electric-trio: error: "), stderr
    return errors[0]


# ---- serve ---------------------------------------------------------------------------------


async def test_serve_answers_status_and_stops_on_sigterm(pg_url: str) -> None:
    async with run(["serve"], serve_env(pg_url)) as service:
        port = await service.ready()
        assert await get(port, "/api/status") == (200, b"Connection to Postgres is up!")
        assert await get(port, "/api/status/other") == (404, b"Not found")
        assert await get(port, "/elsewhere") == (404, b"Not found")

        bad = await http(port, b"NOT HTTP AT ALL\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ")
        assert await get(port, "/api/status") == (200, b"Connection to Postgres is up!")

        service.process.send_signal(signal.SIGTERM)
        assert await service.wait() == 0
    assert 'msg="shutting down" signal=SIGTERM' in service.stderr
    assert "Traceback" not in service.stderr
    assert "proxy-secret" not in service.stderr
    for line in service.stderr.splitlines():
        assert re.match(r"ts=\S+ level=\w+ component=\S+ msg=", line), line


async def test_flags_override_the_environment(pg_url: str) -> None:
    env = serve_env("postgresql://nobody@127.0.0.1:1/x", HTTP_PORT="1", LOG_LEVEL="error")
    args = ["serve", "--database-url", pg_url, "--http-port", "0", "--log-level", "debug"]
    async with run(args, env) as service:
        await service.ready()
        assert "level=debug" in service.stderr
        service.process.send_signal(signal.SIGINT)
        assert await service.wait() == 0
    assert 'msg="shutting down" signal=SIGINT' in service.stderr


async def test_require_ssl(pg_server: PgServer, pg_url: str) -> None:
    env = serve_env(pg_url, DATABASE_REQUIRE_SSL="true")
    if not pg_server.tls:
        code, stderr = await run_to_end(["serve"], env)
        assert code == 1
        assert "does not support TLS" in assert_one_error_line(stderr)
        return
    async with run(["serve"], env) as service:
        assert await get(await service.ready(), "/api/status") == (
            200,
            b"Connection to Postgres is up!",
        )
        service.process.send_signal(signal.SIGTERM)
        assert await service.wait() == 0


async def test_wrong_password(pg_server: PgServer, pg_roles: dict[str, str | None]) -> None:
    url = pg_server.database_url(TEST_DATABASE, user="et_scram", password="wrong-password")
    code, stderr = await run_to_end(["serve"], serve_env(url))
    assert code == 1
    line = assert_one_error_line(stderr)
    assert "et_scram" in line
    assert "password authentication failed" in line
    assert "wrong-password" not in stderr


async def test_unreachable_host() -> None:
    code, stderr = await run_to_end(["serve"], serve_env("postgresql://u:pw@127.0.0.1:1/db"))
    assert code == 1
    line = assert_one_error_line(stderr)
    assert line.startswith("electric-trio: error: cannot connect to Postgres at 127.0.0.1:1: ")


async def test_unknown_host() -> None:
    url = "postgresql://u:pw@no-such-host.invalid:5432/db"
    code, stderr = await run_to_end(["serve"], serve_env(url))
    assert code == 1
    assert "no-such-host.invalid" in assert_one_error_line(stderr)


async def test_not_a_postgres_server(nursery: trio.Nursery) -> None:
    async def answer_garbage(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    (listener,) = await nursery.start(partial(trio.serve_tcp, answer_garbage, 0, host="127.0.0.1"))
    port = listener.socket.getsockname()[1]
    code, stderr = await run_to_end(["serve"], serve_env(f"postgresql://u:pw@127.0.0.1:{port}/db"))
    assert code == 1
    assert f"127.0.0.1:{port}" in assert_one_error_line(stderr)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:pw@localhost/db", "DATABASE_URL has invalid URL scheme: 'mysql'"),
        ("postgresql://localhost/db", "DATABASE_URL has invalid or missing username"),
        ("postgresql://u:pw@localhost/db?sslmode=sometimes", 'invalid "sslmode" value'),
        ("postgresql://u:pw@localhost:port/db", "DATABASE_URL has invalid port"),
    ],
)
async def test_malformed_database_url(url: str, message: str) -> None:
    code, stderr = await run_to_end(["serve"], serve_env(url))
    assert code == 2
    assert message in assert_one_error_line(stderr)
    assert "pw@" not in stderr


async def test_every_config_problem_is_listed() -> None:
    code, stderr = await run_to_end(["serve", "--http-port", "http"], clean_env(LOG_LEVEL="chatty"))
    assert code == 2
    assert "Traceback" not in stderr
    assert stderr.splitlines() == [
        "electric-trio: error: invalid configuration:",
        "  DATABASE_URL not set",
        "  --http-port has invalid value: 'http'. Must be a port number from 0 to 65535",
        "  LOGICAL_PUBLISHER_HOST not set (required when "
        "ELECTRIC_WRITE_TO_PG_MODE=logical_replication)",
        "  PG_PROXY_PASSWORD not set",
        "  AUTH_JWT_ALG not set (required when AUTH_MODE=secure)",
        "  AUTH_JWT_KEY not set (required when AUTH_MODE=secure)",
        "  LOG_LEVEL has invalid value: 'chatty'. Must be one of error, warning, info or debug",
    ]


async def test_usage_errors() -> None:
    code, stderr = await run_to_end([], clean_env())
    assert code == 2
    assert "usage: electric-trio" in stderr
    code, stderr = await run_to_end(["serve", "--no-such-flag"], clean_env())
    assert code == 2
    assert "unrecognized arguments: --no-such-flag" in stderr


# ---- dev -----------------------------------------------------------------------------------


def postgres_processes(data_dir: Path) -> list[int]:
    """Pids of processes whose command line names ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if str(data_dir) in cmdline and "postgres" in cmdline:
            found.append(int(entry.name))
    return found


async def test_dev_runs_on_an_embedded_postgres_and_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "electric"
    async with run(["dev", "--data-dir", str(data_dir), "--http-port", "0"], clean_env()) as dev:
        port = await dev.ready()
        assert await get(port, "/api/status") == (200, b"Connection to Postgres is up!")
        assert postgres_processes(data_dir)
        password = (data_dir / "pg_proxy_password").read_text().strip()
        assert password
        dev.process.send_signal(signal.SIGINT)
        assert await dev.wait() == 0
    assert 'msg="shutting down" signal=SIGINT' in dev.stderr
    assert "embedded PostgreSQL stopped" in dev.stderr
    assert "Traceback" not in dev.stderr
    assert password not in dev.stderr
    assert postgres_processes(data_dir) == []
    assert not (data_dir / "postgres" / "postmaster.pid").exists()


EMBEDDED = re.compile(r'msg="embedded PostgreSQL is running" port=(\d+)')


async def test_dev_takes_client_writes_by_logical_replication(tmp_path: Path) -> None:
    """The original's default way of writing: Postgres subscribes to the service."""
    args = ["dev", "--data-dir", str(tmp_path / "electric"), "--http-port", "0"]
    args += ["--logical-publisher-port", "0", "--pg-proxy-port", "0"]
    async with run(args, clean_env()) as dev:
        http_port = await dev.ready()
        pg_port = int((await dev.wait_for_log(EMBEDDED)).group(1))
        assert 'msg="writes started" mode=logical_replication' in dev.stderr
        url = f"postgresql://postgres:{DEFAULT_PASSWORD}@127.0.0.1:{pg_port}/postgres"
        async with await connect(url) as pg:
            await pg.execute(
                "BEGIN; CALL electric.migration_version('1');"
                " CREATE TABLE items (id text PRIMARY KEY, title text);"
                " CALL electric.electrify('items'); COMMIT"
            )
            # a stand-in for the Service: the raw client only needs its port
            service = cast("Service", SimpleNamespace(http_port=http_port))
            async with client(service, "client_1") as c:
                with trio.fail_after(30):  # the service has the migration once it streams it
                    while not isinstance(f := await c.recv(), m.SatOpLog) or not any(
                        op.migrate for op in f.ops
                    ):
                        pass
                await c.send(relation(0, "items", ("id", "TEXT", False), ("title", "TEXT", True)))
                await c.write(1, JUNE_6, insert(0, "a", "from the client"))
                assert (await c.echo()).origin == "client_1"
            assert [tuple(r) for r in await pg.fetch("SELECT * FROM items")] == [
                ("a", "from the client")
            ]
            assert await pg.fetchval(
                "SELECT subenabled FROM pg_subscription WHERE subname = 'postgres_1'"
            )
        dev.process.send_signal(signal.SIGINT)
        assert await dev.wait() == 0


async def test_dev_uses_database_url_when_given(tmp_path: Path, pg_url: str) -> None:
    data_dir = tmp_path / "electric"
    args = ["dev", "--data-dir", str(data_dir), "--http-port", "0", "--database-url", pg_url]
    args += ["--logical-publisher-port", "0", "--pg-proxy-port", "0"]
    try:
        async with run(args, clean_env()) as dev:
            assert await get(await dev.ready(), "/api/status") == (
                200,
                b"Connection to Postgres is up!",
            )
            # a Postgres on this machine reaches the publisher at 127.0.0.1
            assert 'msg="writes started" mode=logical_replication' in dev.stderr
            assert not (data_dir / "postgres").exists()
            dev.process.send_signal(signal.SIGTERM)
            assert await dev.wait() == 0
    finally:
        async with await connect(pg_url) as pg:
            # the subscription would go on calling the stopped service
            if await pg.fetchval(
                "SELECT count(*) FROM pg_subscription WHERE subname = 'postgres_1'"
                " AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ):
                await pg.execute(
                    "ALTER SUBSCRIPTION postgres_1 DISABLE;"
                    " ALTER SUBSCRIPTION postgres_1 SET (slot_name = NONE);"
                    " DROP SUBSCRIPTION postgres_1"
                )


async def test_dev_needs_the_publisher_host_for_a_remote_postgres(tmp_path: Path) -> None:
    url = "postgresql://postgres@db.example.com/postgres"
    code, stderr = await run_to_end(
        ["dev", "--data-dir", str(tmp_path / "electric"), "--database-url", url], clean_env()
    )
    assert code == 2
    assert stderr == (
        "electric-trio: error: LOGICAL_PUBLISHER_HOST not set"
        " (required when ELECTRIC_WRITE_TO_PG_MODE=logical_replication)\n"
    )


async def test_dev_checks_the_config_before_starting_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "electric"
    code, stderr = await run_to_end(
        ["dev", "--data-dir", str(data_dir), "--auth-mode", "secure"], clean_env()
    )
    assert code == 2
    assert stderr.splitlines()[0] == "electric-trio: error: invalid configuration:"
    assert not (data_dir / "postgres").exists()
