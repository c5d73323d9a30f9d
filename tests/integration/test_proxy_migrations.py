"""Migration tools through the proxy, end to end (scenarios.md D): Alembic running real migration
scripts and ``@databases/pg-migrations apply`` create and electrify tables; the migrations show
up in ``/api/migrations`` with the expected versions and reach a connected Satellite client as
``SatOpMigrate``."""

from __future__ import annotations

import io
import json
import os
import sys
import textwrap
import zipfile
from functools import partial
from pathlib import Path

import trio
from test_proxy import PASSWORD, Running, db, make_config, migrations
from test_proxy_tunnel import http
from test_satellite_protocol import SETTINGS, client

from electric_trio.http.metrics import MetricsApi
from electric_trio.http.migrations import MigrationsApi
from electric_trio.pg import connect
from electric_trio.proxy import ProxySubsystem
from electric_trio.replication import ReplicationSubsystem
from electric_trio.satellite import messages as m
from electric_trio.satellite.server import SatelliteSubsystem
from electric_trio.service import Service, serve
from official_client import ensure_node_client

__all__ = ["db"]


async def start_full(nursery: trio.Nursery, url: str) -> Running:
    proxy = ProxySubsystem(port=0)
    service: Service = await nursery.start(
        partial(
            serve,
            make_config(url),
            subsystems=[
                ReplicationSubsystem(),
                MigrationsApi(),
                SatelliteSubsystem(SETTINGS),
                proxy,
                MetricsApi(),
            ],
            handle_signals=False,
        )
    )
    with trio.fail_after(60):
        await service.wait_ready()
    return Running(service, proxy, url)


async def migrate_ops(c: object, count: int) -> dict[str, list[m.SatOpMigrate]]:
    """The SatOpMigrate ops of the next ``count`` migrations, by version (in arrival order)."""
    found: dict[str, list[m.SatOpMigrate]] = {}
    with trio.fail_after(30):
        while len(found) < count:
            frame = await c.recv(30)  # type: ignore[attr-defined]
            if isinstance(frame, m.SatOpLog):
                for op in frame.ops:
                    if op.migrate is not None:
                        found.setdefault(op.migrate.version, []).append(op.migrate)
    return found


async def api_migrations(port: int) -> dict[str, str]:
    reply = await http(port, b"GET /api/migrations?dialect=sqlite HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), reply
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        return {name: z.read(name).decode() for name in z.namelist()}


ALEMBIC_INI = """
[alembic]
script_location = {here}/migrations
sqlalchemy.url = {url}

[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s %(message)s
"""

ALEMBIC_ENV = """
from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
engine = engine_from_config(
    config.get_section(config.config_ini_section), prefix="sqlalchemy.", poolclass=pool.NullPool
)
with engine.connect() as connection:
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION_1 = '''
"""items"""
from alembic import op

revision = "20240101000001"
down_revision = None


def upgrade():
    op.execute("CALL electric.migration_version('20240101000001')")
    op.create_table(
        "items",
        __import__("sqlalchemy").Column("id", __import__("sqlalchemy").Text, primary_key=True),
        __import__("sqlalchemy").Column("value", __import__("sqlalchemy").Text, nullable=False),
    )
    op.execute("ALTER TABLE items ENABLE ELECTRIC")
'''

REVISION_2 = '''
"""items.amount"""
import sqlalchemy as sa
from alembic import op

revision = "20240101000002"
down_revision = "20240101000001"


def upgrade():
    op.execute("CALL electric.migration_version('20240101000002')")
    op.add_column("items", sa.Column("amount", sa.BigInteger, nullable=True))
    op.create_index("items_value_idx", "items", ["value"])
'''


async def test_alembic_migrations_reach_clients_and_the_api(db: str, nursery: trio.Nursery) -> None:
    running = await start_full(nursery, db)
    here = Path(os.environ.get("TMPDIR", "/tmp")) / f"alembic_{os.getpid()}_{id(running)}"
    (here / "migrations" / "versions").mkdir(parents=True)
    url = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{running.port}/app?sslmode=disable"
    (here / "alembic.ini").write_text(ALEMBIC_INI.format(here=here, url=url))
    (here / "migrations" / "env.py").write_text(textwrap.dedent(ALEMBIC_ENV))
    (here / "migrations" / "versions" / "r1.py").write_text(REVISION_1)
    (here / "migrations" / "versions" / "r2.py").write_text(REVISION_2)

    async with client(running.service) as c:
        await c.connect("alembic-watcher")
        await c.start_replication()
        with trio.fail_after(120):
            done = await trio.run_process(
                [
                    str(Path(sys.executable).parent / "alembic"),
                    "-c",
                    str(here / "alembic.ini"),
                    "upgrade",
                    "head",
                ],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
        assert done.returncode == 0, done.stderr.decode()
        ops = await migrate_ops(c, 2)
    assert list(ops) == ["20240101000001", "20240101000002"]
    assert ops["20240101000001"][0].stmts[0].sql.startswith('CREATE TABLE "items" (')
    second = [s.sql for op in ops["20240101000002"] for s in op.stmts]
    assert any("amount" in sql for sql in second)
    assert any(sql.startswith("CREATE INDEX") for sql in second)

    found = await migrations(db)
    assert [v for v, _ in found] == ["20240101000001", "20240101000002"]
    files = await api_migrations(running.service.http_port)
    assert sorted(files) == [
        "20240101000001/metadata.json",
        "20240101000001/migration.sql",
        "20240101000002/metadata.json",
        "20240101000002/migration.sql",
    ]
    assert (
        'ALTER TABLE "items" ADD COLUMN "amount" INTEGER' in files["20240101000002/migration.sql"]
    )
    assert json.loads(files["20240101000002/metadata.json"])["version"] == "20240101000002"


DATABASES_MIGRATION_1 = """
CREATE TABLE notes (id uuid PRIMARY KEY, body text);
ALTER TABLE notes ENABLE ELECTRIC;
"""
DATABASES_MIGRATION_2 = """
ALTER TABLE notes ADD COLUMN done bool;
"""


async def test_databases_pg_migrations_apply(db: str, nursery: trio.Nursery) -> None:
    node_dir = await trio.to_thread.run_sync(ensure_node_client)
    running = await start_full(nursery, db)
    here = Path(os.environ.get("TMPDIR", "/tmp")) / f"atdb_{os.getpid()}_{id(running)}"
    (here / "migrations").mkdir(parents=True)
    (here / "migrations" / "00001-notes.sql").write_text(DATABASES_MIGRATION_1)
    (here / "migrations" / "00002-done.sql").write_text(DATABASES_MIGRATION_2)
    url = f"postgres://postgres:{PASSWORD}@127.0.0.1:{running.port}/app?sslmode=disable"
    cli = node_dir / "node_modules" / "@databases" / "pg-migrations" / "lib" / "cli.js"
    async with client(running.service) as c:
        await c.connect("atdatabases-watcher")
        await c.start_replication()
        with trio.fail_after(120):
            done = await trio.run_process(
                [
                    "node",
                    str(cli),
                    "apply",
                    "--database",
                    url,
                    "--directory",
                    str(here / "migrations"),
                ],
                cwd=str(here),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={**os.environ, "PGSSLMODE": "disable"},
            )
        assert done.returncode == 0, (done.stdout + done.stderr).decode()
        ops = await migrate_ops(c, 2)
    # @databases records each migration's index in its own table in the same transaction:
    # that is the version (priority 4, over the proxy's generated one)
    assert list(ops) == ["1", "2"]
    assert [v for v, _ in await migrations(db)] == ["1", "2"]
    files = await api_migrations(running.service.http_port)
    assert "2/migration.sql" in files


async def metrics(port: int) -> dict[str, float]:
    reply = await http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    body = reply.partition(b"\r\n\r\n")[2].decode()
    return {
        line.split()[0]: float(line.split()[1])
        for line in body.splitlines()
        if line and not line.startswith("#")
    }


async def test_metrics_follow_clients_and_transactions(db: str, nursery: trio.Nursery) -> None:
    running = await start_full(nursery, db)
    port = running.service.http_port
    before = await metrics(port)
    assert before["electric_satellite_clients"] == 0
    async with client(running.service) as c:
        await c.connect("metrics-watcher")
        await c.start_replication()
        with trio.fail_after(30):
            while (await metrics(port))["electric_satellite_clients"] != 1:  # noqa: ASYNC110 (polled over HTTP, as a scraper would)
                await trio.sleep(0.05)
        async with await connect(db) as conn:
            await conn.execute(
                "CREATE TABLE m (id int8 PRIMARY KEY); CALL electric.electrify('m');"
                " INSERT INTO m VALUES (1)"
            )
        await migrate_ops(c, 1)
        after = await metrics(port)
    assert (
        after["electric_transactions_from_postgres_total"]
        > (before["electric_transactions_from_postgres_total"])
    )
    assert after["electric_slot_retained_wal_bytes"] >= 0
