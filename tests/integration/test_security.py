# ruff: noqa: F811 (the db, pg, mode and service fixtures come from test_client_writes)
"""Security, end to end: secure auth refuses every kind of bad token on the wire; the proxy lets
no one in without its password; a client writes only to electrified tables and sees only the
rows its ownership rule allows, live as well as initially; no secret reaches the log (at debug
level), ``/api/status`` or ``/metrics``; TLS to Postgres is used on every connection when
required.

Covered elsewhere and not repeated here: secure mode as the default (``serve`` without JWT
settings fails: test_cli), ``electric-trio dev`` staying insecure (test_cli), the JWT checks one
by one (tests/unit/test_satellite_auth.py), the proxy's wrong password (test_proxy), failing
closed against a server without TLS (test_cli, test_pg_client).
"""

from __future__ import annotations

import base64
import re
import signal
import time
import urllib.parse
from functools import partial
from types import SimpleNamespace
from typing import Any

import jwt
import psycopg
import pytest
import trio
from test_cli import get, run, serve_env
from test_client_writes import (  # noqa: F401 (fixtures)
    ENTRIES_REL,
    JUNE_6,
    UUID1,
    client,
    db,
    insert,
    mode,
    pg,
    relation,
    service,
)
from test_satellite_protocol import client as raw_client
from test_satellite_protocol import migration_sql, sql, wait_versions
from test_shapes_protocol import request, select, subscribe, until

from _databases import create_database, drop_database
from electric_trio import _native
from electric_trio.config import Config
from electric_trio.pg import Connection, connect
from electric_trio.replication import ReplicationSubsystem
from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSubsystem
from electric_trio.service import Service, serve
from official_client import insecure_token

Code = m.SatErrorRespErrorCode
HS_KEY = "Jwt-Key-for-the-security-tests-0123456789"


async def start(nursery: trio.Nursery, env: dict[str, str]) -> Service:
    config = Config.from_env(
        {
            "HTTP_PORT": "0",
            "PG_PROXY_PASSWORD": "proxy",
            "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
            **env,
        }
    )
    service: Service = await nursery.start(
        partial(
            serve,
            config,
            subsystems=[ReplicationSubsystem(), SatelliteSubsystem()],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    return service


# ---- secure auth on the wire -------------------------------------------------------------------


def hs(claims: dict[str, Any], key: str = HS_KEY, **header: Any) -> str:
    return jwt.encode(claims, key, algorithm="HS256", headers=header or None)


def unsigned(claims: dict[str, Any]) -> str:
    """``alg: none`` with the valid claims: what a forger sends."""
    return insecure_token(claims)


async def test_secure_mode_refuses_every_bad_token(pg_server: Any, nursery: trio.Nursery) -> None:
    name = await create_database(pg_server.url, "et_security")
    try:
        async with trio.open_nursery() as inner:
            service = await start(
                inner,
                {
                    "DATABASE_URL": pg_server.database_url(name),
                    "AUTH_JWT_ALG": "HS256",
                    "AUTH_JWT_KEY": HS_KEY,
                    "AUTH_JWT_ISS": "https://issuer.example",
                    "AUTH_JWT_AUD": "electric",
                },
            )
            now = int(time.time())
            good = {
                "sub": "alice",
                "iat": now,
                "exp": now + 600,
                "iss": "https://issuer.example",
                "aud": "electric",
            }
            refused = {
                "alg none": unsigned(good),
                "alg none, HS256 signature kept": unsigned(good) + hs(good).rsplit(".", 1)[1],
                "expired": hs({**good, "iat": now - 7200, "exp": now - 3600}),
                "wrong key": hs(good, "another-key-of-at-least-32-bytes-long!!"),
                "wrong issuer": hs({**good, "iss": "https://evil.example"}),
                "no issuer": hs({k: v for k, v in good.items() if k != "iss"}),
                "wrong audience": hs({**good, "aud": "someone-else"}),
                "no audience": hs({k: v for k, v in good.items() if k != "aud"}),
                "not yet valid": hs({**good, "nbf": now + 3600}),
                "tampered payload": hs(good).split(".")[0]
                + "."
                + base64.urlsafe_b64encode(b'{"sub":"root"}').decode().rstrip("=")
                + "."
                + hs(good).split(".")[2],
            }
            for what, token in refused.items():
                async with raw_client(service) as c:
                    reply = await c.call("authenticate", m.SatAuthReq(id="c", token=token))
                    assert reply.error == m.SatErrorResp(error_type=Code.AUTH_REQUIRED), what
                    assert await c.expect_close(1007) == [], what
            async with raw_client(service) as c:
                reply = await c.call("authenticate", m.SatAuthReq(id="c", token=hs(good)))
                assert reply.error is None
            inner.cancel_scope.cancel()
    finally:
        await drop_database(pg_server.url, pg_server.database_url(name), name)


# ---- the proxy's password ----------------------------------------------------------------------


async def test_the_proxy_lets_no_one_in_without_its_password(db: str) -> None:
    from test_proxy import PASSWORD
    from test_proxy import start as start_proxy

    async with trio.open_nursery() as nursery:
        running = await start_proxy(nursery, db)

        def attempts() -> list[str]:
            errors = []
            for password in ("", "wrong", PASSWORD.upper(), PASSWORD + " "):
                url = running.dsn().replace(f":{PASSWORD}@", "@")
                with pytest.raises(psycopg.OperationalError) as info:
                    psycopg.connect(url, password=password, connect_timeout=10)
                errors.append(str(info.value))
            return errors

        for error in await trio.to_thread.run_sync(attempts):
            assert "no password supplied" in error or "authentication failed" in error, error

        # a raw client that answers the password request with an empty password
        stream = await trio.open_tcp_stream("127.0.0.1", running.port)
        await stream.send_all(_native.encode_startup([("user", "postgres"), ("database", "x")]))
        reader = _native.BackendReader()
        seen: list[tuple[Any, ...]] = []
        with trio.fail_after(10):
            while not any(msg[0] in "EZ" for msg in seen):
                data = await stream.receive_some(65536)
                if not data:
                    break
                reader.feed(data)
                while (msg := reader.next()) is not None:
                    seen.append(msg)
                    if msg[0] == "R":
                        await stream.send_all(_native.encode_password(b""))
        await stream.aclose()
        assert [msg[0] for msg in seen] == ["R", "E"], seen
        assert seen[-1][1]["C"] == "28P01"

        # and with the password it works
        def ok() -> Any:
            with psycopg.connect(running.dsn(), connect_timeout=10) as conn:
                return conn.execute("SELECT 1").fetchone()

        assert await trio.to_thread.run_sync(ok) == (1,)
        nursery.cancel_scope.cancel()


# ---- writes only to electrified tables ---------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "table", "columns"),
    [
        ("public", "plain", (("id", "INTEGER", False),)),
        (
            "electric",
            "acknowledged_client_lsns",
            (("client_id", "TEXT", False), ("lsn", "BLOB", False)),
        ),
        ("pg_catalog", "pg_class", (("relname", "TEXT", False),)),
    ],
)
async def test_writes_to_tables_that_are_not_electrified_are_refused(
    service: Service,
    pg: Connection,
    schema: str,
    table: str,
    columns: tuple[tuple[str, str, bool], ...],
) -> None:
    await pg.execute("CREATE TABLE plain (id int PRIMARY KEY); INSERT INTO plain VALUES (1)")
    before = await pg.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"')
    target = m.SatRelation(
        schema_name=schema,
        table_name=table,
        relation_id=5,
        columns=tuple(m.SatRelationColumn(name=n, type=t, is_nullable=nl) for n, t, nl in columns),
    )
    values = ["2", "\x00\x00\x00\x01"][: len(columns)] if schema != "pg_catalog" else ["evil"]
    async with client(service, "client_1_1") as c:
        await c.send(ENTRIES_REL, target)
        await c.write(3, JUNE_6, insert(0, UUID1, "c", None), insert(5, *values))
        frames = await c.expect_close(1007)
    [error] = [f for f in frames if isinstance(f, m.SatErrorResp)]
    assert error.error_type == Code.INVALID_REQUEST
    assert "not electrified" in (error.message or "")
    assert await pg.fetchval(f'SELECT count(*) FROM "{schema}"."{table}"') == before
    assert await pg.fetchval("SELECT count(*) FROM entries") == 0  # nothing of the transaction


# ---- the ownership rule, live ------------------------------------------------------------------


async def test_ownership_holds_for_live_changes_whatever_the_where_clause(
    pg_server: Any, nursery: trio.Nursery
) -> None:
    name = await create_database(pg_server.url, "et_security")
    url = pg_server.database_url(name)
    try:
        async with trio.open_nursery() as inner:
            service = await start(inner, {"DATABASE_URL": url, "AUTH_MODE": "insecure"})
            await sql(
                url,
                migration_sql("1", "owned", "id int8 PRIMARY KEY, electric_user_id text, v text"),
            )
            await sql(url, "INSERT INTO owned VALUES (1, 'alice', 'a'), (2, 'bob', 'b')")
            await wait_versions(service, 1)
            async with raw_client(service) as alice:
                await alice.connect("ca", "alice")
                assert (await alice.start_replication(schema_version="1")).err is None
                where = "this.electric_user_id = 'bob' OR TRUE OR this.v IS NULL"
                assert (await subscribe(alice, request(select("owned", where)))).err is None
                initial = await until(alice, m.SatSubsDataEnd)
                ids = [
                    op.insert.row_data.values[0]
                    for f in initial
                    if isinstance(f, m.SatOpLog)
                    for op in f.ops
                    if op.insert is not None
                ]
                assert ids == [b"1"]
                # bob's rows change, are added, and one of alice's becomes bob's: alice sees
                # only her own row leave, never a value of bob's
                await sql(
                    url,
                    "BEGIN; UPDATE owned SET v = 'bob-secret' WHERE id = 2;"
                    " INSERT INTO owned VALUES (3, 'bob', 'bob-secret-2'); COMMIT;"
                    "UPDATE owned SET electric_user_id = 'bob', v = 'now-bobs' WHERE id = 1;"
                    "INSERT INTO owned VALUES (4, 'alice', 'mine')",
                )
                frames = await until(alice, m.SatOpLog)
                while not any(
                    op.insert is not None and op.insert.row_data.values[0] == b"4"
                    for f in frames
                    if isinstance(f, m.SatOpLog)
                    for op in f.ops
                ):
                    frames += await until(alice, m.SatOpLog)
                seen = b" ".join(
                    v
                    for f in frames
                    if isinstance(f, m.SatOpLog)
                    for op in f.ops
                    for body in (op.insert, op.update, op.delete, op.gone)
                    if body is not None
                    for r in (
                        getattr(body, "row_data", None),
                        getattr(body, "old_row_data", None),
                        getattr(body, "pk_data", None),
                    )
                    if r is not None
                    for v in r.values
                )
                assert b"bob-secret" not in seen
                assert b"now-bobs" not in seen
                assert b"mine" in seen
            inner.cancel_scope.cancel()
    finally:
        await drop_database(pg_server.url, pg_server.database_url(name), name)


# ---- secrets ---------------------------------------------------------------------------------


async def test_no_secret_in_the_debug_log_status_or_metrics(pg_server: Any) -> None:
    name = await create_database(pg_server.url, "et_security")
    db_password = "Db-Pa55-7d1f0c"
    proxy_password = "Proxy-Pa55-93ab"
    async with await connect(pg_server.url) as admin:
        await admin.execute("DROP ROLE IF EXISTS et_secret_owner")
        await admin.execute(f"CREATE ROLE et_secret_owner LOGIN SUPERUSER PASSWORD '{db_password}'")
    url = pg_server.database_url(name, user="et_secret_owner", password=db_password)
    env = serve_env(
        url,
        LOG_LEVEL="debug",
        PG_PROXY_PASSWORD=proxy_password,
        AUTH_MODE="secure",
        AUTH_JWT_ALG="HS256",
        AUTH_JWT_KEY=HS_KEY,
    )
    now = int(time.time())
    token = hs({"sub": "alice", "iat": now, "exp": now + 600})
    forged = hs({"sub": "alice", "iat": now, "exp": now + 600}, "forged-key-of-at-least-32-bytes!!")
    try:
        async with run(["serve"], env) as running:
            port = await running.ready()
            proxy_port = int(
                (
                    await running.wait_for_log(
                        re.compile(r'"migrations proxy listening" port=(\d+)')
                    )
                )[1]
            )
            status = await get(port, "/api/status")
            metrics = await get(port, "/metrics")
            assert status[0] == metrics[0] == 200
            target = SimpleNamespace(http_port=port)
            for t in (token, forged, unsigned({"sub": "alice"}), ""):
                async with raw_client(target) as c:  # type: ignore[arg-type]
                    await c.call("authenticate", m.SatAuthReq(id=f"c{len(t)}", token=t))

            def proxy_sessions() -> None:
                dsn = f"postgresql://postgres:{{}}@127.0.0.1:{proxy_port}/x?sslmode=disable"
                with psycopg.connect(dsn.format(proxy_password), connect_timeout=10) as conn:
                    conn.execute("SELECT 1")
                    with pytest.raises(psycopg.Error):
                        conn.execute("SELECT * FROM no_such_table")
                for wrong in (db_password, "wrong"):
                    with pytest.raises(psycopg.OperationalError):
                        psycopg.connect(dsn.format(wrong), connect_timeout=10)

            await trio.to_thread.run_sync(proxy_sessions)
            metrics_after = await get(port, "/metrics")
            running.process.send_signal(signal.SIGTERM)
            assert await running.wait() == 0
        log = running.stderr
        assert "level=debug" in log  # the debug lines were there to look at
        secrets = [db_password, proxy_password, HS_KEY, token, forged.split(".")[2]]
        secrets += [urllib.parse.quote(s, safe="") for s in secrets]
        secrets.append(base64.b64encode(HS_KEY.encode()).decode())
        for where, text in [
            ("the log", log),
            ("/api/status", status[1].decode()),
            ("/metrics", metrics[1].decode() + metrics_after[1].decode()),
        ]:
            for secret in secrets:
                assert secret not in text, f"a secret in {where}"
    finally:
        await drop_database(pg_server.url, pg_server.database_url(name), name)
        async with await connect(pg_server.url) as admin:
            await admin.execute("DROP ROLE IF EXISTS et_secret_owner")


# ---- TLS to Postgres ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["DATABASE_REQUIRE_SSL", "sslmode=require"])
async def test_every_connection_to_postgres_uses_tls_when_required(
    tls_server: Any, how: str
) -> None:
    name = await create_database(tls_server.url, "et_security")
    url = tls_server.database_url(name)
    env = {"AUTH_MODE": "insecure", "DATABASE_URL": url}
    if how == "DATABASE_REQUIRE_SSL":
        env["DATABASE_REQUIRE_SSL"] = "true"
    else:
        env["DATABASE_URL"] = url + "?sslmode=require"
    try:
        async with trio.open_nursery() as inner:
            service = await start(inner, env)
            await sql(url + "?sslmode=require", migration_sql("1", "items"))
            await wait_versions(service, 1)  # the replication stream works over TLS
            async with await connect(tls_server.url) as admin:
                rows = await admin.fetch(
                    "SELECT a.backend_type, a.application_name, s.ssl"
                    " FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                    f" WHERE a.datname = '{name}' AND a.pid <> pg_backend_pid()"
                )
            assert rows, "the service has no connection to Postgres"
            assert any(r[0] == "walsender" for r in rows), rows
            assert all(r[2] is True for r in rows), rows
            inner.cancel_scope.cancel()
    finally:
        await drop_database(tls_server.url, tls_server.database_url(name), name)
