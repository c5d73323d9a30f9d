"""The embedded PostgreSQL launcher: settings, TLS, pg_hba.conf, restarts and the command line."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from electric_trio.pg import embedded
from electric_trio.pg.embedded import EmbeddedPostgres, EmbeddedPostgresError

if TYPE_CHECKING:
    from conftest import PgServer


def _scalar(url: str, query: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def launcher_hba(pg_server: PgServer) -> None:
    """Skip when ``DATABASE_URL`` names a server that our launcher did not configure."""
    if pg_server.embedded is not None:
        return
    rule = _scalar(
        pg_server.url,
        "SELECT count(*) FROM pg_hba_file_rules"
        " WHERE type = 'hostnossl' AND 'et_ssl' = ANY(user_name)",
    )
    if rule == 0:
        pytest.skip("DATABASE_URL names a server not started by electric_trio.pg.embedded")


def _connects(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def test_superuser_password(pg_server: PgServer) -> None:
    assert _scalar(pg_server.url, "SELECT current_user") == "postgres"
    wrong = pg_server.database_url("postgres", user=pg_server.user, password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)


def test_logical_replication_settings(pg_server: PgServer) -> None:
    assert _scalar(pg_server.url, "SHOW wal_level") == "logical"
    assert int(str(_scalar(pg_server.url, "SHOW max_replication_slots"))) >= 32
    assert int(str(_scalar(pg_server.url, "SHOW max_wal_senders"))) >= 32
    assert _scalar(pg_server.url, "SHOW listen_addresses") == "127.0.0.1"


def test_ssl_setting_matches_build(pg_server: PgServer) -> None:
    assert _scalar(pg_server.url, "SHOW ssl") == ("on" if pg_server.tls else "off")


def test_tls_server_accepts_sslmode_require(tls_server: PgServer) -> None:
    assert _scalar(tls_server.url, "SHOW ssl") == "on"
    url = tls_server.url + "?sslmode=require"
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    assert _scalar(url, query) is True


def test_ssl_true_requires_a_build_with_openssl(tmp_path: Path, pg_server: PgServer) -> None:
    supported = EmbeddedPostgres(tmp_path / "data", bindir=pg_server.bindir).ssl
    pg = EmbeddedPostgres(tmp_path / "data", bindir=pg_server.bindir, fast=True, ssl=True)
    if not supported:
        with pytest.raises(EmbeddedPostgresError, match="built without"):
            pg.start()
        return
    with pg:
        assert (tmp_path / "data" / "server.key").stat().st_mode & 0o077 == 0
        url = pg.url + "?sslmode=require"
        assert _scalar(url, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is True


@pytest.mark.usefixtures("launcher_hba")
@pytest.mark.parametrize(
    ("role", "method"),
    [
        ("et_trust", "none"),
        ("et_clear", "password"),
        ("et_md5", "md5"),
        ("et_scram", "scram-sha-256"),
    ],
)
def test_hba_method(
    pg_server: PgServer, pg_roles: dict[str, str | None], role: str, method: str
) -> None:
    url = pg_server.database_url("postgres", user=role, password=pg_roles[role])
    # libpq refuses any other authentication method than the one the rule should pick.
    assert _connects(f"{url}?sslmode=disable&require_auth={method}")
    if method != "none":
        wrong = pg_server.database_url("postgres", user=role, password="wrong")
        assert not _connects(f"{wrong}?sslmode=disable")


@pytest.mark.usefixtures("launcher_hba")
def test_hba_ssl_only_role(pg_server: PgServer, pg_roles: dict[str, str | None]) -> None:
    url = pg_server.database_url("postgres", user="et_ssl", password=pg_roles["et_ssl"])
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(url + "?sslmode=disable", connect_timeout=10)


def test_hba_ssl_only_role_over_tls(tls_server: PgServer) -> None:
    with psycopg.connect(tls_server.url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS et_ssl")
        conn.execute("CREATE ROLE et_ssl LOGIN PASSWORD 'ssl-pw'")
    url = tls_server.database_url("postgres", user="et_ssl", password="ssl-pw")
    assert _connects(url + "?sslmode=require")
    assert not _connects(url + "?sslmode=disable")


def test_restart_keeps_data(tmp_path: Path, pg_server: PgServer) -> None:
    pg = EmbeddedPostgres(tmp_path / "data", bindir=pg_server.bindir, fast=True)
    with pytest.raises(EmbeddedPostgresError):
        _ = pg.port
    with pg:
        pg.start()  # idempotent
        assert pg.running
        assert pg.version == pg_server.version
        assert pg.url == f"postgresql://postgres:postgres@127.0.0.1:{pg.port}/postgres"
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v text)")
            conn.execute("INSERT INTO kept VALUES ('survives')")
        pg.stop()
        pg.stop()  # idempotent
        assert not pg.running
        assert not (tmp_path / "data" / "postmaster.pid").exists()
        pg.start()
        assert _scalar(pg.database_url("postgres"), "SELECT v FROM kept") == "survives"
    assert not pg.running


def test_port_in_use(tmp_path: Path, pg_server: PgServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        pg = EmbeddedPostgres(tmp_path / "data", bindir=pg_server.bindir, port=port, fast=True)
        with pytest.raises(EmbeddedPostgresError, match=f"port {port}"):
            pg.start()
    assert not pg.running


def test_port_taken_after_picking_it_is_picked_again(
    tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1]]
        pick = embedded._free_port
        monkeypatch.setattr(embedded, "_free_port", lambda: ports.pop() if ports else pick())
        with EmbeddedPostgres(tmp_path / "data", bindir=pg_server.bindir, fast=True) as pg:
            assert not ports
            assert pg.port != taken.getsockname()[1]
            assert _scalar(pg.url, "SELECT 1") == 1


def test_start_failure_shows_the_log(tmp_path: Path, pg_server: PgServer) -> None:
    pg = EmbeddedPostgres(tmp_path / "data", bindir=pg_server.bindir, fast=True)
    with pg:
        pass
    with (tmp_path / "data" / "postgresql.auto.conf").open("a") as f:
        f.write("shared_buffers = 'lots'\n")
    with pytest.raises(EmbeddedPostgresError, match="shared_buffers") as info:
        pg.start()
    assert "exited with code" in str(info.value)
    assert not pg.running


@pytest.fixture
def entry_point(tmp_path: Path, pg_server: PgServer) -> Iterator[subprocess.Popen[str]]:
    """``python -m electric_trio.pg.embedded`` on ``tmp_path / "data"``."""
    command = [sys.executable, "-m", "electric_trio.pg.embedded", "--fast"]
    command += ["--data-dir", str(tmp_path / "data")]
    if pg_server.bindir is not None:
        command += ["--bindir", str(pg_server.bindir)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()


def _read_url(process: subprocess.Popen[str], timeout: float = 60.0) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while selector.select(deadline - time.monotonic()):
            line = process.stdout.readline()
            assert line, f"the launcher exited with code {process.wait()}"
            if line.startswith("DATABASE_URL="):
                return line.removeprefix("DATABASE_URL=").strip()
    pytest.fail("no DATABASE_URL line within the timeout")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_entry_point_prints_url_and_stops_on_signal(
    tmp_path: Path, entry_point: subprocess.Popen[str], sig: signal.Signals
) -> None:
    url = _read_url(entry_point)
    assert _scalar(url, "SHOW wal_level") == "logical"
    pid = int((tmp_path / "data" / "postmaster.pid").read_text().split()[0])
    entry_point.send_signal(sig)
    assert entry_point.wait(timeout=30) == 0
    assert not (tmp_path / "data" / "postmaster.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_stale_postmaster_of_a_killed_run_is_stopped(
    tmp_path: Path, entry_point: subprocess.Popen[str], pg_server: PgServer
) -> None:
    url = _read_url(entry_point)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
    pid = int((tmp_path / "data" / "postmaster.pid").read_text().split()[0])
    entry_point.kill()  # the launcher dies, its server lives on
    entry_point.wait()
    os.kill(pid, 0)
    with EmbeddedPostgres(tmp_path / "data", bindir=pg_server.bindir, fast=True) as pg:
        assert _scalar(pg.url, "SELECT count(*) FROM kept") == 0
        assert int((tmp_path / "data" / "postmaster.pid").read_text().split()[0]) != pid
