"""``electric-trio generate`` against the service after real migrations made through the
migrations proxy: the Python module type-checks (mypy --strict, ruff), its tables work on a
SQLite file with the bundled migrations and triggers, ``--watch`` follows a new migration,
introspection works through the proxy tunnel, and bad input gives one clear line."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import ModuleType

import pytest
import trio
from test_proxy import Running, db, make_config
from test_proxy_tunnel import start_tunnelled

from _ports import free_port
from electric_trio.client.data import SqliteExecutor
from electric_trio.client.triggers import initial_migration_statements
from electric_trio.pg import connect
from electric_trio.proxy import ProxySubsystem, run_tunnel
from electric_trio.service import Service, default_subsystems, serve

__all__ = ["db"]

CLI = str(Path(sys.executable).parent / "electric-trio")
ROOT = Path(__file__).resolve().parents[2]

MIGRATION_1 = [
    "CREATE TYPE colour AS ENUM ('red', 'green')",
    'CREATE TABLE lists (id uuid PRIMARY KEY, name text NOT NULL, "class" text)',
    "ALTER TABLE lists ENABLE ELECTRIC",
    "CREATE TABLE items (id text PRIMARY KEY, title text NOT NULL, n int8, f float4,"
    " done bool, due date, at timestamptz, meta jsonb, raw bytea, c colour,"
    " list_id uuid REFERENCES lists (id))",
    "ALTER TABLE items ENABLE ELECTRIC",
]


async def start_full(nursery: trio.Nursery, url: str) -> Running:
    """The whole service (client writes included), its proxy on an ephemeral port."""
    proxy = ProxySubsystem(port=0)
    subsystems = [proxy if isinstance(s, ProxySubsystem) else s for s in default_subsystems()]
    service: Service = await nursery.start(
        partial(serve, make_config(url), subsystems=subsystems, handle_signals=False)
    )
    with trio.fail_after(60):
        await service.wait_ready()
    return Running(service, proxy, url)


async def migrate(running: Running, statements: Sequence[str]) -> None:
    """Each statement through the migrations proxy (electrified DDL becomes a migration)."""
    async with await connect(running.dsn()) as conn:
        for statement in statements:
            await conn.execute(statement)


async def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    with trio.fail_after(60):
        done = await trio.run_process(
            [CLI, *args], capture_stdout=True, capture_stderr=True, check=False, cwd=cwd
        )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def wait_versions(running: Running, count: int) -> None:
    with trio.fail_after(30):
        while (m := running.service.migrations) is None or len(m.migrations) < count:  # noqa: ASYNC110
            await trio.sleep(0.05)


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def check_types(path: Path, cache: Path) -> None:
    """mypy --strict and ruff (as a project that installs electric-trio would run them)."""
    checks = [
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(path)],
        [
            str(Path(sys.executable).parent / "ruff"),
            "check",
            "--isolated",
            "--target-version",
            "py311",
            "--line-length",
            "88",
            "--select",
            "E,F,W,I,B,UP,RUF",
            str(path),
        ],
    ]
    for command in checks:
        with trio.fail_after(120):
            done = await trio.run_process(
                command, capture_stdout=True, capture_stderr=True, check=False, cwd=path.parent
            )
        assert done.returncode == 0, (command[2], done.stdout.decode(), done.stderr.decode())


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mypy_cache")


async def test_python_module_after_real_migrations(
    db: str, nursery: trio.Nursery, tmp_path: Path, mypy_cache: Path
) -> None:
    running = await start_full(nursery, db)
    await migrate(running, MIGRATION_1)
    await wait_versions(running, 2)
    out = tmp_path / "app_client.py"
    service = f"http://127.0.0.1:{running.service.http_port}"
    done = await cli("generate", "--service", service, "--proxy", running.dsn(), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "fetching migrations from" in done.stderr
    assert "reading nullability from Postgres through the proxy" in done.stderr
    assert f"wrote {out}: 2 tables" in done.stderr
    await check_types(out, mypy_cache)

    module = load(out)
    schema = module.schema
    assert list(schema.tables) == ["lists", "items"]
    items = schema.table("items")
    assert [(c.name, c.pg_type, c.nullable) for c in items.columns][:4] == [
        ("id", "text", False),
        ("title", "text", False),
        ("n", "int8", True),
        ("f", "float4", True),
    ]
    assert [(r.field, r.table, r.many, r.name) for r in items.relations] == [
        ("lists", "lists", False, "ItemsToLists")
    ]
    assert [(r.field, r.table, r.many) for r in schema.table("lists").relations] == [
        ("items", "items", True)
    ]
    assert [m.version for m in schema.migrations] == [m.version for m in module.migrations]
    assert len(schema.migrations) == 2
    assert module.Items.__annotations__["c"] == "typing.Literal['red', 'green'] | None"

    # The bundle builds a local database whose typed tables write through the oplog triggers.
    path = tmp_path / "local.db"
    with sqlite3.connect(path) as conn:
        for statement in initial_migration_statements():
            conn.execute(statement)
        for migration in schema.migrations:
            for statement in migration.statements:
                conn.execute(statement)
    executor = SqliteExecutor(path)
    app = module.Electric(executor)
    lst = await app.lists.create(module.Lists(id="6f1c1b9e-7c1a-4bd5-9d6e-35b0a1e9ae01", name="a"))
    assert lst.class_ is None
    await app.items.create({"id": "i1", "title": "t", "list_id": lst.id, "done": True})
    found = await app.lists.find_unique(where={"id": lst.id}, include={"items": True})
    assert [(i.id, i.done) for i in found.items] == [("i1", True)]
    executor.close()
    with sqlite3.connect(path) as conn:
        ops = conn.execute("SELECT tablename, optype FROM _electric_oplog")
        assert sorted(ops.fetchall()) == [
            ("items", "INSERT"),
            ("lists", "COMPENSATION"),
            ("lists", "INSERT"),
        ]


async def test_watch_writes_again_after_a_new_migration(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await start_full(nursery, db)
    out = tmp_path / "watched.py"
    service = f"http://127.0.0.1:{running.service.http_port}"
    async with trio.open_nursery() as inner:
        process: trio.Process = await inner.start(
            partial(
                trio.run_process,
                [CLI, "generate", "--service", service, "--out", str(out), "--watch", "100"],
                stderr=subprocess.PIPE,
                check=False,
            )
        )
        try:
            with trio.fail_after(20):
                while not out.exists():  # noqa: ASYNC110 - a file written by another process
                    await trio.sleep(0.05)
            assert "schema = client_schema.DbSchema(\n    tables={\n    }," in out.read_text()
            await migrate(running, ["CREATE TABLE notes (id text PRIMARY KEY, body text)",
                                    "ALTER TABLE notes ENABLE ELECTRIC"])  # fmt: skip
            with trio.fail_after(20):
                while "class Notes(msgspec.Struct" not in out.read_text():  # noqa: ASYNC110
                    await trio.sleep(0.05)
            await migrate(running, ["ALTER TABLE notes ADD COLUMN pinned bool"])
            with trio.fail_after(20):
                while "pinned: bool | None = None" not in out.read_text():  # noqa: ASYNC110
                    await trio.sleep(0.05)
        finally:
            process.terminate()
    assert process.stderr is not None


async def test_introspection_through_the_proxy_tunnel(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    running = await start_tunnelled(nursery, db)
    service = f"http://127.0.0.1:{running.service.http_port}"
    local: int = await nursery.start(partial(run_tunnel, service, 0))
    await migrate(running, ["CREATE TABLE t (id text PRIMARY KEY, a text NOT NULL, b int4)",
                            "ALTER TABLE t ENABLE ELECTRIC"])  # fmt: skip
    await wait_versions(running, 1)
    out = tmp_path / "tunnelled.py"
    done = await cli(
        "generate", "--service", service, "--proxy", running.dsn(port=local), "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    columns = load(out).schema.table("t").columns
    assert [(c.name, c.nullable) for c in columns] == [("id", False), ("a", False), ("b", True)]
    # a refused password is one line, and nothing is written
    out.unlink()
    bad = running.dsn(password="wrong")
    done = await cli("generate", "--service", service, "--proxy", bad, "--out", str(out))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("electric-trio: error: introspection through the proxy failed: ")
    assert not out.exists()


async def serve_once(answer: bytes, task_status: trio.TaskStatus[int]) -> None:
    """A TCP server that answers every connection with ``answer`` and closes it."""

    async def handle(stream: trio.SocketStream) -> None:
        with trio.move_on_after(5):
            await stream.receive_some(65536)
            await stream.send_all(answer)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


def http_answer(status: str, body: bytes, content_type: str = "application/zip") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def test_bad_input_gives_one_line_and_a_failure(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    corrupt = await nursery.start(serve_once, http_answer("200 OK", b"PK\x03\x04 not a zip"))
    broken = await nursery.start(serve_once, http_answer("500 Oops", b"boom", "text/plain"))
    garbage = await nursery.start(serve_once, b"\x00\x01 not http at all\r\n\r\n")
    cases = {
        "ftp://127.0.0.1/": "bad service URL 'ftp://127.0.0.1/': expected http(s)://host[:port]",
        "http://127.0.0.1:99999": "bad service URL",
        f"http://127.0.0.1:{free_port()}": "cannot reach the service at 127.0.0.1:",
        f"http://127.0.0.1:{broken}": "got status 500 (boom)",
        f"http://127.0.0.1:{corrupt}": "corrupt migrations zip",
        f"http://127.0.0.1:{garbage}": "did not answer HTTP",
    }
    out = tmp_path / "never.py"
    for service, message in cases.items():
        done = await cli("generate", "--service", service, "--out", str(out))
        assert done.returncode == 1, (service, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("electric-trio: error: "), (service, done.stderr)
        assert message in lines[-1], (service, done.stderr)
        assert "Traceback" not in done.stderr
    assert not out.exists()
    done = await cli("generate", "--service", "http://127.0.0.1:1", "--watch", "0")
    assert done.returncode == 2
