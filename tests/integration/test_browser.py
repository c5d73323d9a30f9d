"""The example web app (examples/todo-web) in headless Chromium against the service.

The official electric-sql@0.12.1 client runs in the page on wa-sqlite (IndexedDB), built by Vite
and served as static files; Debian's chromium is driven by playwright-core (tests/browser). The
todos table is created and electrified through the migrations proxy with psql, from the app's own
migration file. Two pages and Postgres converge; a page taken offline keeps working and syncs
once back; a reload keeps the local data and resumes from its stored position; the app's filter
is the shape's where clause; a wrong service URL or a refused token shows an error in the page;
examples/todo-py (our Python client) and the page see each other's changes.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import trio
from test_client_writes import db  # drops the logical-replication subscription too
from test_proxy import psql_path
from test_satellite_official_client import HS_KEY, make_config, url_of, wait_versions

from electric_trio.pg import connect
from electric_trio.proxy import ProxySubsystem
from electric_trio.service import Service, default_subsystems, serve

__all__ = ["db"]

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "browser"
APP_DIR = ROOT / "examples" / "todo-web"
MIGRATION = APP_DIR / "db" / "migrations" / "20240601000000_create_todos.sql"
GENERATED = APP_DIR / "src" / "generated" / "client" / "index.ts"
CLI = str(Path(sys.executable).parent / "electric-trio")
TODO_PY = ROOT / "examples" / "todo-py" / "todo.py"
PROXY_PASSWORD = "proxy-secret"

# The todos on a page, as the user sees them: [[title, done], ...] in list order.
TODOS_JS = (
    "[...document.querySelectorAll('#todos li')].map(li =>"
    " [li.querySelector('.title').textContent, li.querySelector('.toggle').checked])"
)


# --- setup -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web_app() -> Path:
    """The built app (``dist/``) once chromium, playwright-core and the app's packages are
    installed and the build is current (tests/browser/install.sh; a no-op when nothing changed)."""
    done = subprocess.run(
        ["bash", str(BROWSER_DIR / "install.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        pytest.fail(f"tests/browser/install.sh failed:\n{done.stdout}\n{done.stderr}")
    return APP_DIR / "dist"


class BrowserError(Exception):
    pass


class Browser:
    """tests/browser/driver.mjs: one headless Chromium, one browser context per named page."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.url = ""
        self._ids = iter(range(1, 1 << 30))
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._ready = trio.Event()
        self.stderr_tail: deque[str] = deque(maxlen=100)

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        try:
            async for chunk in self.process.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if message.get("event") == "ready":
                        self._ready.set()
                    elif (channel := self._waiting.pop(message.get("id"), None)) is not None:
                        channel.send_nowait(message)
        finally:
            self._ready.set()
            for channel in self._waiting.values():
                channel.close()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr_tail.extend(chunk.decode(errors="replace").splitlines())

    async def call(self, cmd: str, *, within: float = 15.0, **params: Any) -> Any:
        request_id = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[request_id] = send
        line = json.dumps(
            {"id": request_id, "cmd": cmd, "timeout_ms": int(within * 1000), **params}
        )
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")
        reply: dict[str, Any] | None = None
        with trio.move_on_after(within + 5):
            async for message in receive:
                reply = message
                break
        if reply is None:
            self._waiting.pop(request_id, None)
            stderr = "\n".join(self.stderr_tail)
            raise BrowserError(f"no reply to {cmd}; driver stderr:\n{stderr}")
        if "error" in reply:
            raise BrowserError(reply["error"])
        return reply["result"]

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self.process.stdin is not None:
                with trio.move_on_after(1):
                    await self.process.stdin.aclose()
            with trio.move_on_after(8):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def browser(web_app: Path, nursery: trio.Nursery) -> AsyncIterator[Browser]:
    """Chromium with a fresh profile (in a new short temporary folder: the profile's socket path
    must stay under 108 bytes, which pytest's tmp dirs exceed), the app served at ``.url``."""
    profile_root = Path(tempfile.mkdtemp(prefix="et-chromium-"))
    process = await trio.lowlevel.open_process(
        ["node", str(BROWSER_DIR / "driver.mjs")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=BROWSER_DIR,
        env={**os.environ, "TMPDIR": str(profile_root)},
    )
    driver = Browser(process)
    nursery.start_soon(driver._read_stdout)
    nursery.start_soon(driver._read_stderr)
    try:
        with trio.fail_after(30):
            await driver._ready.wait()
        started = await driver.call("start", dist=str(web_app), within=30)
        driver.url = started["url"]
        yield driver
    finally:
        await driver.aclose()
        shutil.rmtree(profile_root, ignore_errors=True)


@dataclass
class Stack:
    service: Service
    db: str

    @property
    def url(self) -> str:
        return url_of(self.service)


# Client writes as `electric-trio dev` makes them: Postgres subscribes to the service.
DEV_WRITES = {
    "ELECTRIC_WRITE_TO_PG_MODE": "logical_replication",
    "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
    "LOGICAL_PUBLISHER_PORT": "0",
}


async def start_stack(nursery: trio.Nursery, db: str, **env: str) -> Stack:
    """The service in secure auth mode on ``db`` (client writes direct unless ``env`` says
    otherwise), the app's migration applied through its migrations proxy with psql."""
    config = make_config(
        db,
        AUTH_MODE="secure",
        AUTH_JWT_ALG="HS256",
        AUTH_JWT_KEY=HS_KEY,
        PG_PROXY_PORT="0",
        PG_PROXY_PASSWORD=PROXY_PASSWORD,
        **env,
    )
    subsystems = default_subsystems()
    proxy = next(s for s in subsystems if isinstance(s, ProxySubsystem))
    service: Service = await nursery.start(
        partial(serve, config, subsystems=subsystems, handle_signals=False)
    )
    with trio.fail_after(60):
        await service.wait_ready()
    dsn = f"postgresql://postgres:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}/todos?sslmode=disable"
    with trio.fail_after(60):
        done = await trio.run_process(
            [psql_path(), dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(MIGRATION)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    await wait_versions(service, 1)
    return Stack(service, db)


def ts_schema(module: str) -> list[str]:
    """The migrations and table schemas of a generated TypeScript module, as written."""
    return [
        module[start : module.index(end, start)]
        for start, end in (
            (module.index("export const migrations = "), "\nexport "),
            (module.index("export const tableSchemas = "), "\nexport "),
        )
    ]


def py_schema(path: Path) -> Any:
    """The ``schema`` (DbSchema with its migrations) of a generated Python module."""
    spec = importlib.util.spec_from_file_location(f"generated_{path.stem}_{id(path)}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.schema


def token(user: str, key: str = HS_KEY) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, key, algorithm="HS256")


# --- page helpers ------------------------------------------------------------------------------


async def open_page(browser: Browser, name: str, service_url: str, tok: str) -> None:
    await browser.call("page", name=name)
    query = urlencode({"service": service_url, "token": tok, "db": f"todos-{name}.db"})
    await browser.call("goto", name=name, url=f"{browser.url}?{query}")


async def wait_js(browser: Browser, name: str, expr: str, within: float = 20.0) -> Any:
    """Waits until ``expr`` is truthy in the page; on time-out the page's state is in the error."""
    try:
        return await browser.call("wait", name=name, expr=expr, within=within)
    except BrowserError as e:
        state = await browser.call("eval", name=name, expr="document.body.innerText")
        console = await browser.call("console", name=name)
        raise BrowserError(f"{e}\n--- page {name} ---\n{state}\n--- console ---\n{console}") from e


async def wait_synced(browser: Browser, name: str, filter: str = "all") -> None:
    await wait_js(
        browser,
        name,
        "document.body.dataset.state === 'connected'"
        " && document.getElementById('sync').dataset.state === 'synced'"
        f" && document.getElementById('sync').dataset.filter === {json.dumps(filter)}",
    )


async def todos(browser: Browser, name: str) -> list[tuple[str, bool]]:
    return [(t, d) for t, d in await browser.call("eval", name=name, expr=TODOS_JS)]


async def wait_todos(browser: Browser, name: str, expected: list[tuple[str, bool]]) -> None:
    want = json.dumps([[t, d] for t, d in expected], separators=(",", ":"), ensure_ascii=False)
    await wait_js(browser, name, f"JSON.stringify({TODOS_JS}) === {json.dumps(want)}")


async def add(browser: Browser, name: str, title: str) -> None:
    await browser.call("fill", name=name, selector="#title", value=title)
    await browser.call("press", name=name, selector="#title", key="Enter")


def item(title: str) -> str:
    return f"#todos li:has(.title:text-is({json.dumps(title)}))"


async def toggle(browser: Browser, name: str, title: str) -> None:
    await browser.call("click", name=name, selector=f"{item(title)} .toggle")


async def delete(browser: Browser, name: str, title: str) -> None:
    await browser.call("click", name=name, selector=f"{item(title)} .delete")


# --- Postgres helpers --------------------------------------------------------------------------


async def pg_todos(db: str) -> list[tuple[str, bool]]:
    async with await connect(db) as c:
        rows = await c.fetch("SELECT title, done FROM todos ORDER BY created_at, id")
    return [(r[0], r[1]) for r in rows]


async def wait_pg(
    db: str, until: Callable[[list[tuple[str, bool]]], bool], within: float = 20.0
) -> list[tuple[str, bool]]:
    rows: list[tuple[str, bool]] = []
    with trio.move_on_after(within):
        while True:
            rows = await pg_todos(db)
            if until(rows):
                return rows
            await trio.sleep(0.1)
    raise AssertionError(f"Postgres never got there; last: {rows}")


async def pg_insert(db: str, title: str, done: bool = False) -> None:
    async with await connect(db) as c:
        await c.execute("INSERT INTO todos VALUES (gen_random_uuid(), $1, $2, now())", title, done)


# --- tests -------------------------------------------------------------------------------------


async def test_two_pages_and_postgres_converge(
    db: str,
    nursery: trio.Nursery,
    browser: Browser,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = await start_stack(nursery, db, **DEV_WRITES)
    # the app's migrations and table schemas are what the generator writes for this service
    # (the rest of the module may change in form without making the app's copy stale)
    generated = tmp_path / "index.ts"
    out = str(generated)
    with trio.fail_after(60):
        done = await trio.run_process(
            [CLI, "generate", "--target", "typescript", "--service", stack.url, "--out", out],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert ts_schema(generated.read_text()) == ts_schema(GENERATED.read_text()), (
        f"{GENERATED} is stale: regenerate it (see the README)"
    )
    await pg_insert(db, "from postgres")
    await open_page(browser, "a", stack.url, token("alice"))
    await open_page(browser, "b", stack.url, token("bob"))
    await wait_synced(browser, "a")
    await wait_synced(browser, "b")
    # the row Postgres had before comes with the shape's initial data
    assert await todos(browser, "a") == [("from postgres", False)]
    assert await todos(browser, "b") == [("from postgres", False)]

    await add(browser, "a", "buy milk")
    await wait_todos(browser, "a", [("from postgres", False), ("buy milk", False)])
    await add(browser, "b", "walk the dog")
    both = [("from postgres", False), ("buy milk", False), ("walk the dog", False)]
    await wait_todos(browser, "a", both)
    await wait_todos(browser, "b", both)
    await wait_pg(db, lambda rows: rows == both)

    # toggles and deletes from each page
    await toggle(browser, "b", "buy milk")
    await delete(browser, "a", "walk the dog")
    after = [("from postgres", False), ("buy milk", True)]
    await wait_todos(browser, "a", after)
    await wait_todos(browser, "b", after)
    await wait_pg(db, lambda rows: rows == after)

    # and a Postgres write reaches both pages live
    async with await connect(db) as c:
        await c.execute("UPDATE todos SET done = true WHERE title = 'from postgres'")
    done = [("from postgres", True), ("buy milk", True)]
    await wait_todos(browser, "a", done)
    await wait_todos(browser, "b", done)

    screenshot = tmp_path / "todo-web-synced.png"
    await browser.call("screenshot", name="a", path=str(screenshot))
    assert screenshot.stat().st_size > 0
    with capsys.disabled():
        print(f"\nscreenshot of the synced app: {screenshot} (kept with pytest --basetemp=DIR)")


async def test_an_offline_page_keeps_working_and_syncs_once_back_online(
    db: str, nursery: trio.Nursery, browser: Browser
) -> None:
    stack = await start_stack(nursery, db)
    await pg_insert(db, "shared")
    await open_page(browser, "a", stack.url, token("alice"))
    await open_page(browser, "b", stack.url, token("bob"))
    await wait_synced(browser, "a")
    await wait_synced(browser, "b")

    await browser.call("offline", name="a", offline=True)
    await wait_js(browser, "a", "document.body.dataset.state === 'offline'")
    await wait_js(browser, "a", "window.todoApp.electric.isConnected === false")
    # local writes go on while offline
    await add(browser, "a", "written offline")
    await toggle(browser, "a", "shared")
    await wait_todos(browser, "a", [("shared", True), ("written offline", False)])
    # meanwhile the other page writes; Postgres has that one, not the offline page's
    await add(browser, "b", "while a was away")
    await wait_pg(db, lambda rows: ("while a was away", False) in rows)
    assert await pg_todos(db) == [("shared", False), ("while a was away", False)]
    assert await todos(browser, "a") == [("shared", True), ("written offline", False)]

    await browser.call("offline", name="a", offline=False)
    await wait_js(browser, "a", "document.body.dataset.state === 'connected'")
    everything = [("shared", True), ("written offline", False), ("while a was away", False)]
    # order by created_at: "while a was away" was made after "written offline"
    await wait_pg(db, lambda rows: sorted(rows) == sorted(everything))
    await wait_todos(browser, "a", everything)
    await wait_todos(browser, "b", everything)


async def test_a_reload_keeps_the_local_data_and_resumes_without_a_new_sync(
    db: str, nursery: trio.Nursery, browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="electric_trio.satellite")
    stack = await start_stack(nursery, db)
    await pg_insert(db, "from postgres")
    await open_page(browser, "a", stack.url, token("alice"))
    await wait_synced(browser, "a")
    await add(browser, "a", "local one")
    await wait_pg(db, lambda rows: len(rows) == 2)
    rows = [("from postgres", False), ("local one", False)]
    await wait_todos(browser, "a", rows)

    def messages(prefix: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]

    assert len(messages("subscription client_id=")) == 1
    started = messages("replication started")
    assert len(started) == 1
    client_id = started[0].split("client_id=")[1].split()[0]

    await browser.call("reload", name="a")
    await wait_js(browser, "a", "document.body.dataset.ready === 'true'")
    # the rows were in the local database (IndexedDB) before the page connected again
    assert await browser.call("eval", name="a", expr="window.todoApp.rowsAtStart") == 2
    await wait_synced(browser, "a")
    assert await todos(browser, "a") == rows
    # the same client resumed from its stored position, and its shape was not requested again
    started = messages("replication started")
    assert len(started) == 2
    resumed = started[1]
    assert f"client_id={client_id} " in resumed
    position = int(resumed.split("from=")[1].split()[0])
    assert position > 0
    assert resumed.endswith("initial_transactions=0")
    assert len(messages("subscription client_id=")) == 1
    # and the stream goes on
    await pg_insert(db, "after the reload")
    await wait_todos(browser, "a", [*rows, ("after the reload", False)])


async def test_the_filter_is_the_shape_where_clause(
    db: str, nursery: trio.Nursery, browser: Browser
) -> None:
    stack = await start_stack(nursery, db)
    await pg_insert(db, "open one")
    await pg_insert(db, "done one", done=True)
    await open_page(browser, "a", stack.url, token("alice"))
    await wait_synced(browser, "a")
    await wait_todos(browser, "a", [("open one", False), ("done one", True)])
    local_rows = "window.todoApp.electric.db.rawQuery({sql: 'SELECT title FROM todos ORDER BY 1'})"

    await browser.call("select", name="a", selector="#filter", value="open")
    await wait_synced(browser, "a", "open")
    await wait_todos(browser, "a", [("open one", False)])
    # the done row left the local database, not only the list
    await wait_js(browser, "a", f"{local_rows}.then(r => r.length === 1)")
    # a row that starts matching moves in; one that does not match never comes
    await pg_insert(db, "done elsewhere", done=True)
    async with await connect(db) as c:
        await c.execute("UPDATE todos SET done = false WHERE title = 'done one'")
    await wait_todos(browser, "a", [("open one", False), ("done one", False)])
    titles = await browser.call(
        "eval", name="a", expr=f"{local_rows}.then(r => r.map(x => x.title))"
    )
    assert titles == ["done one", "open one"]


async def test_a_wrong_service_url_or_a_refused_token_shows_an_error(
    db: str, nursery: trio.Nursery, browser: Browser
) -> None:
    stack = await start_stack(nursery, db)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens there once closed
    nowhere = f"http://127.0.0.1:{closed_port}"
    not_electric = browser.url.rstrip("/")  # an HTTP server, the app's own
    forged = token("alice", key="another-key-of-at-least-32-bytes-long!!")
    pages = {
        "nowhere": (nowhere, token("alice"), f"cannot sync with {nowhere}"),
        "not-electric": (not_electric, token("alice"), f"cannot sync with {not_electric}"),
        "refused": (stack.url, forged, "the service refused the connection"),
    }
    # all three retry at once
    for name, (url, tok, _) in pages.items():
        await open_page(browser, name, url, tok)
    for name, (_, _, expected) in pages.items():
        await wait_js(browser, name, "!document.getElementById('error').hidden", within=40)
        assert await browser.call("eval", name=name, expr="document.body.dataset.state") == "error"
        message = await browser.call(
            "eval", name=name, expr="document.getElementById('error-message').textContent"
        )
        assert expected in message
    # the app still works locally
    await add(browser, "nowhere", "kept locally")
    await wait_todos(browser, "nowhere", [("kept locally", False)])
    assert await todos(browser, "refused") == []


async def test_the_python_client_and_the_browser_see_each_others_changes(
    db: str, nursery: trio.Nursery, browser: Browser, tmp_path: Path
) -> None:
    """examples/todo-py's ``watch`` (our Python client) beside the web app on the same service."""
    stack = await start_stack(nursery, db)
    # its todos_client.py has the schema (tables, migrations) the generator writes for this
    # service
    generated = tmp_path / "todos_client.py"
    with trio.fail_after(60):
        done = await trio.run_process(
            [CLI, "generate", "--service", stack.url, "--out", str(generated)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert py_schema(generated) == py_schema(TODO_PY.parent / "todos_client.py"), (
        "examples/todo-py/todos_client.py is stale: regenerate it (see its todo.py)"
    )
    await open_page(browser, "a", stack.url, token("alice"))
    await wait_synced(browser, "a")
    command = [
        sys.executable,
        str(TODO_PY),
        "--service",
        stack.url,
        "--db",
        str(tmp_path / "py.db"),
    ]
    process = await trio.lowlevel.open_process(
        [*command, "--token", token("carol"), "--json", "watch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lists_in, lists = trio.open_memory_channel[list[tuple[str, bool]]](100)
    errors: list[bytes] = []

    async def read_lists() -> None:
        assert process.stdout is not None
        buffer = b""
        async with lists_in:
            async for chunk in process.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    lists_in.send_nowait([(t["title"], t["done"]) for t in json.loads(line)])

    async def read_errors() -> None:
        assert process.stderr is not None
        async for chunk in process.stderr:
            errors.append(chunk)

    async def printed(expected: list[tuple[str, bool]]) -> None:
        seen: list[list[tuple[str, bool]]] = []
        with trio.move_on_after(20):
            async for todos in lists:
                seen.append(todos)
                if todos == expected:
                    return
        raise AssertionError(f"todo.py never printed {expected}: {seen}\n{b''.join(errors)!r}")

    async def send(line: str) -> None:
        assert process.stdin is not None
        await process.stdin.send_all(line.encode() + b"\n")

    nursery.start_soon(read_lists)
    nursery.start_soon(read_errors)
    try:
        await printed([])
        await add(browser, "a", "from the browser")
        await printed([("from the browser", False)])
        await send("add from python")
        both = [("from the browser", False), ("from python", False)]
        await wait_todos(browser, "a", both)
        await toggle(browser, "a", "from python")
        await printed([("from the browser", False), ("from python", True)])
        await send("delete from the browser")
        await wait_todos(browser, "a", [("from python", True)])
        await wait_pg(db, lambda rows: rows == [("from python", True)])
        await send("quit")
        with trio.fail_after(30):
            assert await process.wait() == 0, b"".join(errors)
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()
