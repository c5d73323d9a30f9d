"""The migrations proxy with real clients (server-behaviour.md §4-5, §10): psql, psycopg 3 (simple
and extended protocol), password checks, DDLX, capture and versions, the EXnnn refusals, and bad
input that must not take the proxy down."""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from _databases import fresh_database
from electric_trio.config import Config
from electric_trio.http.migrations import MigrationsApi
from electric_trio.pg import connect
from electric_trio.pg.embedded import default_bindir
from electric_trio.proxy import ProxySubsystem
from electric_trio.replication import ReplicationSubsystem
from electric_trio.service import Service, StartupError, serve

PASSWORD = "proxy-secret"
_counter = itertools.count()


def psql_path() -> str:
    for candidate in (default_bindir() / "psql", Path("/usr/lib/postgresql/15/bin/psql")):
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("no psql binary found")


def make_config(url: str, **extra: str) -> Config:
    env = {
        "DATABASE_URL": url,
        "HTTP_PORT": "0",
        "PG_PROXY_PORT": "0",
        "PG_PROXY_PASSWORD": PASSWORD,
        "AUTH_MODE": "insecure",
        "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
        "ELECTRIC_INSTANCE_ID": "test-instance",
    }
    env.update(extra)
    return Config.from_env(env)


@pytest.fixture
async def db(pg_server: Any) -> AsyncIterator[str]:
    """A fresh database per test: the service installs the electric schema in it."""
    async with fresh_database(pg_server, "et_proxy") as url:
        yield url


@dataclass
class Running:
    service: Service
    proxy: ProxySubsystem
    db_url: str

    @property
    def port(self) -> int:
        assert self.proxy.port is not None
        return self.proxy.port

    def dsn(self, user: str = "postgres", password: str = PASSWORD, port: int | None = None) -> str:
        return (
            f"postgresql://{user}:{password}@127.0.0.1:{port or self.port}/anything?sslmode=disable"
        )


async def start(
    nursery: trio.Nursery, url: str, *, relay_in_threads: bool = True, **extra: str
) -> Running:
    proxy = ProxySubsystem(port=0, relay_in_threads=relay_in_threads)
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(url, **extra),
            subsystems=[ReplicationSubsystem(), MigrationsApi(), proxy],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    return Running(service, proxy, url)


@pytest.fixture(params=["threads", "trio"])
async def running(db: str, nursery: trio.Nursery, request: pytest.FixtureRequest) -> Running:
    """The proxy with either relay: threads between plain sockets, Trio tasks (TLS upstreams)."""
    return await start(nursery, db, relay_in_threads=request.param == "threads")


async def run_psql(dsn: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    env.pop("PGPASSWORD", None)
    with trio.fail_after(60):
        return await trio.run_process(
            [psql_path(), dsn, "-X", "-v", "ON_ERROR_STOP=1", *args],
            stdin=script.encode(),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env,
        )  # type: ignore[return-value]


def out(proc: Any) -> str:
    return bytes(proc.stdout).decode() + bytes(proc.stderr).decode()


async def sync(fn: Any, *args: Any) -> Any:
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(fn, *args)


async def migrations(url: str) -> list[tuple[str, list[str]]]:
    """(version, captured statements) per migration, from Postgres."""
    async with await connect(url) as conn:
        rows = await conn.fetch(
            "SELECT v.version, array_agg(d.query ORDER BY d.id) FROM electric.migration_versions v"
            " JOIN electric.ddl_commands d USING (txid, txts) GROUP BY v.txid, v.version"
            " ORDER BY v.txid"
        )
    return [(r[0], list(r[1])) for r in rows]


# ---- psql: simple protocol ---------------------------------------------------------------------


async def test_psql_script_creates_electrifies_and_alters(running: Running) -> None:
    script = """
CREATE TABLE items (id uuid PRIMARY KEY, value text NOT NULL);
ALTER TABLE items ENABLE ELECTRIC;
CREATE TABLE plain (id int PRIMARY KEY);
ALTER TABLE items ADD COLUMN amount int8;
CREATE INDEX items_value_idx ON items (value);
\\d items
"""
    proc = await run_psql(running.dsn(), script)
    text = out(proc)
    assert proc.returncode == 0, text
    assert "ELECTRIC ENABLE" in text
    assert "ALTER TABLE" in text
    assert "CREATE INDEX" in text
    assert "amount" in text  # \d shows the new column
    assert "Migration affecting electrified table" in text
    found = await migrations(running.db_url)
    statements = [s for _, stmts in found for s in stmts]
    assert any(s.startswith("CREATE TABLE") and "items" in s for s in statements)
    assert "ALTER TABLE items ADD COLUMN amount int8" in statements
    assert "CREATE INDEX items_value_idx ON items (value)" in statements
    assert not any("plain" in s for s in statements)
    # each psql statement ran in its own transaction: three migrations
    assert len(found) == 3
    assert all(v[:14].isdigit() for v, _ in found)
    # the shadow table got the new column
    async with await connect(running.db_url) as conn:
        cols = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = 'electric' AND table_name = 'shadow__public__items'"
        )
    assert "_tag_amount" in {c[0] for c in cols}


async def test_explicit_version_in_a_transaction(running: Running) -> None:
    script = """
BEGIN;
CALL electric.migration_version('20240101000000_1');
CREATE TABLE things (id uuid PRIMARY KEY, name text);
ELECTRIC ENABLE things;
COMMIT;
"""
    proc = await run_psql(running.dsn(), script)
    assert proc.returncode == 0, out(proc)
    found = await migrations(running.db_url)
    assert [v for v, _ in found] == ["20240101000000_1"]


DISALLOWED = [
    ("ALTER TABLE t DROP COLUMN b", "EX010"),
    ("ALTER TABLE t RENAME COLUMN b TO c", "EX008"),
    ("ALTER TABLE t RENAME TO t2", "EX002"),
    ("ALTER TABLE t ADD COLUMN c text DEFAULT 'x'", "EX006"),
    ("ALTER TABLE t ADD COLUMN c numeric", "EX005"),
    ("ALTER TABLE t ADD COLUMN c varchar(10)", "EX005"),
    ("ALTER TABLE t ADD COLUMN c int UNIQUE", "EX011"),
    ("ALTER TABLE t ALTER COLUMN b TYPE varchar", "EX009"),
    ("ALTER TABLE t ALTER COLUMN b SET NOT NULL", "EX007"),
    ("DROP TABLE t", "EX004"),
    ("DO $$ BEGIN END $$", "EX000"),
    ("ELECTRIC GRANT ALL ON t TO 'admin'", "EX001"),
]


async def test_disallowed_ddl_is_refused_on_electrified_tables_only(running: Running) -> None:
    setup = """
CREATE TABLE t (id uuid PRIMARY KEY, b text);
ALTER TABLE t ENABLE ELECTRIC;
CREATE TABLE p (id uuid PRIMARY KEY, b text);
"""
    proc = await run_psql(running.dsn(), setup)
    assert proc.returncode == 0, out(proc)

    def check() -> None:
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            for sql, code in DISALLOWED:
                with pytest.raises(psycopg.Error) as info:
                    conn.execute(sql)
                assert info.value.sqlstate == code, (sql, info.value)
                # the session stays usable
                assert conn.execute("SELECT 1").fetchone() == (1,)
                if code in ("EX000", "EX001"):
                    continue
                conn.execute(re.sub(r"\bt\b", "p", sql))  # fine on a plain table
                conn.execute("DROP TABLE IF EXISTS p, p2")
                conn.execute("CREATE TABLE p (id uuid PRIMARY KEY, b text)")

    await sync(check)


async def test_psql_shows_the_refusal_and_nothing_of_the_rewrite(running: Running) -> None:
    script = """
CREATE TABLE t (id uuid PRIMARY KEY, b text);
ALTER TABLE t ENABLE ELECTRIC;
ALTER TABLE t DROP COLUMN b;
"""
    proc = await run_psql(running.dsn(), script)
    text = out(proc)
    assert proc.returncode != 0
    assert 'ERROR:  Cannot drop column "b" of electrified table "public"."t"' in text
    assert "PL/pgSQL" not in text
    assert "DO $" not in text
    assert "NOTICE:  Electrify table" in text or "ELECTRIC ENABLE" in text


async def test_refusal_inside_a_transaction_aborts_it(running: Running) -> None:
    script = """
CREATE TABLE t (id uuid PRIMARY KEY, b text);
ALTER TABLE t ENABLE ELECTRIC;
"""
    proc = await run_psql(running.dsn(), script)
    assert proc.returncode == 0, out(proc)

    def check() -> None:
        with psycopg.connect(running.dsn()) as conn:
            conn.execute("CREATE TABLE other (id int PRIMARY KEY)")
            with pytest.raises(psycopg.Error) as info:
                conn.execute("ALTER TABLE t DROP COLUMN b")
            assert info.value.sqlstate == "EX010"
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
            conn.rollback()
            assert conn.execute("SELECT to_regclass('other')").fetchone() == (None,)

    await sync(check)


async def test_multi_statement_query_with_a_refusal_runs_nothing(running: Running) -> None:
    proc = await run_psql(
        running.dsn(), "CREATE TABLE t (id uuid PRIMARY KEY, b text);\nELECTRIC ENABLE t;\n"
    )
    assert proc.returncode == 0, out(proc)

    def check() -> None:
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            with pytest.raises(psycopg.Error) as info:
                conn.execute("CREATE TABLE x (id int PRIMARY KEY); ALTER TABLE t DROP COLUMN b")
            assert info.value.sqlstate == "EX010"
            assert conn.execute("SELECT to_regclass('x')").fetchone() == (None,)

    await sync(check)


# ---- psycopg: extended protocol ----------------------------------------------------------------


async def test_psycopg_parameters_and_prepared_ddl(running: Running) -> None:
    def check() -> None:
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id uuid PRIMARY KEY, b text)")
            conn.execute("ALTER TABLE t ENABLE ELECTRIC")
            conn.execute(
                "INSERT INTO t (id, b) VALUES (%s, %s)",
                ("00000000-0000-0000-0000-000000000001", "one"),
            )
            row = conn.execute(
                "SELECT b FROM t WHERE id = %s", ("00000000-0000-0000-0000-000000000001",)
            ).fetchone()
            assert row == ("one",)
            # DDL through the extended protocol (prepare=True forces Parse/Bind/Execute)
            cur = conn.execute("ALTER TABLE t ADD COLUMN c int4", prepare=True)
            assert cur.statusmessage == "ALTER TABLE"
            with pytest.raises(psycopg.Error) as info:
                conn.execute("DROP TABLE t", prepare=True)
            assert info.value.sqlstate == "EX100"
            with pytest.raises(psycopg.Error) as info:
                conn.execute("ALTER TABLE t DROP COLUMN b", prepare=True)
            assert info.value.sqlstate == "EX010"
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)

    await sync(check)
    statements = [s for _, stmts in await migrations(running.db_url) for s in stmts]
    assert "ALTER TABLE t ADD COLUMN c int4" in statements


# ---- authentication ------------------------------------------------------------------------


async def test_wrong_password_is_28P01(running: Running) -> None:
    def check() -> None:
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(running.dsn(password="wrong"))
        assert 'Password authentication failed for user "postgres"' in str(info.value)

    await sync(check)
    proc = await run_psql(running.dsn(password="wrong"), "SELECT 1")
    assert proc.returncode != 0
    assert "Password authentication failed" in out(proc)


async def test_password_in_startup_and_md5(running: Running) -> None:
    # psycopg/libpq answers the md5 challenge; a raw client puts the password in the startup.
    def check() -> None:
        with psycopg.connect(running.dsn(user="alice")) as conn:
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)

    await sync(check)
    stream = await trio.open_tcp_stream("127.0.0.1", running.port)
    from electric_trio import _native

    await stream.send_all(
        _native.encode_startup([("user", "bob"), ("database", "x"), ("password", PASSWORD)])
    )
    reader = _native.BackendReader()
    with trio.fail_after(10):
        while True:
            reader.feed(await stream.receive_some(65536))
            msg = reader.next()
            while msg is not None and msg[0] != "Z":
                assert msg[0] != "E", msg
                msg = reader.next()
            if msg is not None:
                break
    await stream.aclose()


async def test_disconnect_mid_transaction_leaves_nothing(running: Running) -> None:
    def begin() -> None:
        conn = psycopg.connect(running.dsn())
        conn.execute("CREATE TABLE half (id int PRIMARY KEY)")
        conn.execute("INSERT INTO half VALUES (1)")
        # drop the socket without COMMIT or Terminate
        sock = socket.socket(fileno=conn.pgconn.socket)
        sock.shutdown(socket.SHUT_RDWR)
        sock.detach()
        conn.pgconn.finish()

    await sync(begin)
    async with await connect(running.db_url) as conn:
        with trio.fail_after(10):
            while await conn.fetchval(  # noqa: ASYNC110 (Postgres state, no event to wait on)
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'electric-trio proxy' AND state <> 'idle'"
            ):
                await trio.sleep(0.05)
        assert await conn.fetchval("SELECT to_regclass('half')") is None


# ---- bad input ---------------------------------------------------------------------------------


async def raw_session(port: int) -> tuple[trio.SocketStream, bytes]:
    from electric_trio import _native

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(
        _native.encode_startup([("user", "u"), ("database", "d"), ("password", PASSWORD)])
    )
    data = b""
    with trio.fail_after(10):
        while not data.endswith(b"Z\x00\x00\x00\x05I"):
            data += await stream.receive_some(65536)
    return stream, data


async def read_until_closed_or(stream: trio.SocketStream, marker: bytes) -> bytes:
    data = b""
    with trio.fail_after(10):
        while marker not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00\x00\x03",  # startup length too short
        b"\x00\x00\x00\x08\x00\x09\x00\x00",  # protocol 9.0
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not Postgres at all
        b"\x00\x00\x00\x10\x00\x03\x00\x00user\x00u",  # no terminator
    ],
)
async def test_malformed_startup_gets_an_error_or_a_close(running: Running, payload: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", running.port)
    await stream.send_all(payload)
    await stream.send_eof() if hasattr(stream, "send_eof") else None
    data = await read_until_closed_or(stream, b"\x00\x00")
    assert data == b"" or data.startswith(b"E")
    await stream.aclose()
    await proxy_still_works(running)


async def proxy_still_works(running: Running) -> None:
    def check() -> None:
        with psycopg.connect(running.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

    await sync(check)


async def test_garbage_and_oversized_messages_after_startup(running: Running) -> None:
    other = await sync(psycopg.connect, running.dsn())
    try:
        stream, _ = await raw_session(running.port)
        await stream.send_all(b"Q\x7f\xff\xff\xff" + b"x" * 100)  # oversized
        data = await read_until_closed_or(stream, b"08P01")
        assert b"08P01" in data
        await stream.aclose()
        stream, _ = await raw_session(running.port)
        await stream.send_all(b"Q\x00\x00\x00\x02")  # length below 4
        data = await read_until_closed_or(stream, b"08P01")
        assert b"08P01" in data
        await stream.aclose()
        stream, _ = await raw_session(running.port)
        await stream.send_all(b"Q\x00\x00\x00\x08abcd")  # no NUL terminator in the query
        data = await read_until_closed_or(stream, b"08P01")
        assert b"08P01" in data
        await stream.aclose()
        # the session opened before is unaffected
        assert (await sync(lambda: other.execute("SELECT 2").fetchone())) == (2,)
    finally:
        other.close()
    await proxy_still_works(running)


async def test_sql_the_parser_rejects_gets_postgres_error(running: Running) -> None:
    def check() -> None:
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.SyntaxError):
                conn.execute("SELEC 1")
            with pytest.raises(psycopg.Error) as info:
                conn.execute("ALTER TABLE x ENABLE ELECTRIC NOW")
            assert info.value.sqlstate == "00000"  # an invalid DDLX statement (§4)
            assert info.value.diag.message_primary == "Invalid ELECTRIC statement"
            assert conn.execute("SELECT 3").fetchone() == (3,)

    await sync(check)


async def test_transparent_user_passes_everything(running: Running) -> None:
    proc = await run_psql(
        running.dsn(),
        "CREATE TABLE t (id uuid PRIMARY KEY, b text);\nALTER TABLE t ENABLE ELECTRIC;\n",
    )
    assert proc.returncode == 0, out(proc)

    def check() -> None:
        with psycopg.connect(running.dsn(user="transparent"), autocommit=True) as conn:
            conn.execute("ALTER TABLE t DROP COLUMN b")  # not checked in transparent mode

    await sync(check)


async def test_cancel_request_reaches_postgres(running: Running) -> None:
    def check() -> None:
        with psycopg.connect(running.dsn()) as conn:
            # libpq sends the CancelRequest to the proxy with the key it got at startup
            timer = threading.Timer(0.5, conn.cancel_safe)
            timer.start()
            try:
                with pytest.raises(psycopg.errors.QueryCanceled):
                    conn.execute("SELECT pg_sleep(30)")
            finally:
                timer.cancel()
            conn.rollback()
            assert conn.execute("SELECT 1").fetchone() == (1,)

    await sync(check)


async def test_prisma_shadow_database(running: Running, pg_server: Any) -> None:
    shadow = f"prisma_migrate_shadow_db_{os.getpid()}_{next(_counter)}"
    async with await connect(pg_server.url) as admin:
        await admin.execute(f'CREATE DATABASE "{shadow}"')
    try:
        dsn = running.dsn().replace("/anything?", f"/{shadow}?")

        def check() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                assert conn.execute("SELECT current_database()").fetchone() == (shadow,)
                # no electric schema there: DDLX only answers with its tag
                conn.execute("CREATE TABLE t (id uuid PRIMARY KEY)")
                cur = conn.execute("ALTER TABLE t ENABLE ELECTRIC")
                assert cur.statusmessage == "ELECTRIC ENABLE"
                conn.execute("ALTER TABLE t ADD COLUMN n numeric DEFAULT 1")  # unchecked

        await sync(check)
    finally:
        async with await connect(pg_server.url) as admin:
            await admin.execute(f'DROP DATABASE "{shadow}" WITH (FORCE)')


async def test_proxy_port_in_use_is_a_startup_error(db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = make_config(db, PG_PROXY_PORT=str(port))
        with pytest.RaisesGroup(
            pytest.RaisesExc(StartupError, match=f"cannot listen on PG_PROXY_PORT {port}"),
            flatten_subgroups=True,
        ):
            with trio.fail_after(60):
                await serve(config, subsystems=[ProxySubsystem()], handle_signals=False)


async def test_tracing_logs_statements_and_rewrites(
    db: str, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    traced = await start(nursery, db, PROXY_TRACING_ENABLE="true")
    caplog.set_level("INFO", logger="electric_trio.proxy")
    proc = await run_psql(
        traced.dsn(), "CREATE TABLE t (id uuid PRIMARY KEY);\nALTER TABLE t ENABLE ELECTRIC;\n"
    )
    assert proc.returncode == 0, out(proc)
    traces = [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "proxy trace"]
    assert any(t["sql"].startswith("CREATE TABLE t") and not t["rewritten_to"] for t in traces)
    assert any("electric.enable" in (t["rewritten_to"] or "") for t in traces)


async def test_ecto_and_prisma_versions(running: Running) -> None:
    def check() -> None:
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE schema_migrations (version int8 PRIMARY KEY, inserted_at timestamp)"
            )
            conn.execute(
                "CREATE TABLE _prisma_migrations (id text PRIMARY KEY, checksum text,"
                " migration_name text, started_at timestamptz)"
            )
            # Ecto: the migration and its schema_migrations row (extended protocol, the version
            # as a binary int8) in one transaction
            with conn.transaction():
                conn.execute("CREATE TABLE ecto_items (id uuid PRIMARY KEY)")
                conn.execute("ALTER TABLE ecto_items ENABLE ELECTRIC")
                conn.execute(
                    "INSERT INTO schema_migrations (version, inserted_at) VALUES (%b, now())",
                    (20240301000000,),
                )
            # Prisma: its _prisma_migrations row first, outside any transaction, then the
            # migration
            conn.execute(
                'INSERT INTO "_prisma_migrations" ("id", "checksum", "migration_name",'
                ' "started_at") VALUES (%s, %s, %s, now())',
                ("x", "c", "20240302000000_init"),
            )
            with conn.transaction():
                conn.execute("CREATE TABLE prisma_items (id uuid PRIMARY KEY)")
                conn.execute("ALTER TABLE prisma_items ENABLE ELECTRIC")

    await sync(check)
    assert [v for v, _ in await migrations(running.db_url)] == ["20240301000000", "20240302000000"]
