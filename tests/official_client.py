"""The official ``electric-sql@0.12.1`` client as a peer in tests: a Node process we drive.

``tests/node/driver.mjs`` runs the unmodified client (``electrify`` from ``electric-sql/node`` on
better-sqlite3) and takes JSON-line commands; :class:`OfficialClient` is its Trio side::

    async def test_sync(official_client):
        migration, schema = migration_from_ddl("1", "CREATE TABLE items (id text PRIMARY KEY)")
        client = await official_client()
        await client.open(db=official_client.db_path("a"), schema=describe_schema(schema),
                          migrations=[migration], url=service_url, user_id="alice")
        await client.connect()
        key = await client.sync("items", where="this.id LIKE 'a%'")
        rows = await client.wait_rows("SELECT * FROM items", until=lambda rows: len(rows) == 2)
        await client.call("create", table="items", data={"id": "a3"})

Every command is bounded (``within``, seconds; 10 by default): a server that does not answer
gives an :class:`OfficialClientError` (``code`` ``DRIVER_TIMEOUT``, or the client's
``SatelliteError`` code such as ``CONNECTION_FAILED_AFTER_RETRY``), never a hang. Values cross as
JSON, with ``int`` beyond 2**53, ``bytes``, ``datetime`` and non-finite floats tagged both ways.

The npm packages are installed once per machine by ``tests/node/install.sh`` (also run by
``./run``'s bootstrap); the ``node_client_dir`` fixture runs it, a no-op while the install matches
``package-lock.json``.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import shutil
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from electric_trio.ddlx.migration import MigrateOp, apply_migration
from electric_trio.ddlx.schema import Schema

NODE_DIR = Path(__file__).resolve().parent / "node"
DRIVER = NODE_DIR / "driver.mjs"

DEFAULT_TIMEOUT = 10.0
"""Seconds a command may take unless the call says otherwise."""

_SLACK = 3.0
"""Seconds we wait beyond a command's own timeout before calling the driver stuck."""

_MAX_SAFE_INT = 2**53 - 1

__all__ = [
    "DEFAULT_TIMEOUT",
    "OfficialClient",
    "OfficialClientError",
    "OfficialClientFactory",
    "describe_schema",
    "ensure_node_client",
    "insecure_token",
    "migration_from_ddl",
    "node_client_dir",
    "official_client",
    "open_official_client",
]


class OfficialClientError(Exception):
    """An error reply of the driver.

    ``code`` is the client's ``SatelliteErrorCode`` name when ``satellite`` is true, else one of
    the driver's (``DRIVER_TIMEOUT``, ``NOT_OPEN``, ``BAD_COMMAND``, ``VALIDATION``,
    ``INVALID_ARGUMENT``, ``DRIVER_EXITED``...) or SQLite's (``SQLITE_CONSTRAINT_PRIMARYKEY``).
    """

    def __init__(
        self, code: str, message: str, *, name: str = "", satellite: bool = False, stderr: str = ""
    ) -> None:
        detail = f"{code}: {message}"
        if stderr:
            detail += f"\n--- driver stderr (tail) ---\n{stderr}"
        super().__init__(detail)
        self.code = code
        self.message = message
        self.name = name
        self.satellite = satellite


# --- values --------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return {"$bigint": str(value)} if abs(value) > _MAX_SAFE_INT else value
    if isinstance(value, float):
        if math.isnan(value):
            return {"$float": "NaN"}
        if math.isinf(value):
            return {"$float": "Infinity" if value > 0 else "-Infinity"}
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, datetime | date):
        return {"$date": value.isoformat()}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    raise TypeError(f"cannot send {type(value).__name__} to the driver")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$bigint":
                return int(inner)
            if key == "$bytes":
                return bytes.fromhex(inner)
            if key == "$float":
                return float(inner.replace("Infinity", "inf"))
            if key == "$date":
                return datetime.fromisoformat(inner)
        return {k: _decode(v) for k, v in value.items()}
    return value


# --- schema and migrations -----------------------------------------------------------------

_FIELD_TYPES = {
    "smallint": "INT2",
    "int2": "INT2",
    "integer": "INT4",
    "int": "INT4",
    "int4": "INT4",
    "bigint": "INT8",
    "int8": "INT8",
    "real": "FLOAT4",
    "float4": "FLOAT4",
    "double precision": "FLOAT8",
    "float8": "FLOAT8",
    "text": "TEXT",
    "varchar": "VARCHAR",
    "character varying": "VARCHAR",
    "char": "CHAR",
    "character": "CHAR",
    "bpchar": "CHAR",
    "bool": "BOOL",
    "boolean": "BOOL",
    "uuid": "UUID",
    "json": "JSON",
    "jsonb": "JSONB",
    "bytea": "BYTEA",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "date": "DATE",
    "time": "TIME",
    "timetz": "TIMETZ",
}
"""Postgres type names (as our schema spells them) -> the client's PgBasicType/PgDateType."""


def _model_name(table: str) -> str:
    return table[:1].upper() + table[1:]


def describe_schema(schema: Schema) -> dict[str, Any]:
    """The driver's DbSchema description of ``schema``, as the generator would build it.

    Fields map to the client's type names (enums and unknown types are ``TEXT``); every
    single-column foreign key ``child.col -> parent.pcol`` gives the child a relation field named
    after the parent table and the parent one named after the child table, both under the
    relation name ``<A>To<B>`` of the two capitalised model names in alphabetical order (what
    Prisma calls the relation); a second FK between the same tables gets its column in the names.
    """
    tables: dict[str, dict[str, Any]] = {}
    for table in schema.tables:
        tables[table.name] = {
            "fields": {c.name: _FIELD_TYPES.get(c.type.name, "TEXT") for c in table.columns},
            "not_null": [c.name for c in table.columns if c.not_null],
            "relations": [],
        }
    for table in schema.tables:
        seen: dict[str, int] = {}
        for fk in table.foreign_keys:
            if len(fk.columns) != 1 or fk.ref_table not in tables:
                continue
            parent = fk.ref_table
            seen[parent] = seen.get(parent, 0) + 1
            a, b = sorted([_model_name(table.name), _model_name(parent)])
            name = f"{a}To{b}"
            child_field, parent_field = parent, table.name
            if seen[parent] > 1:
                name = f"{table.name}_{fk.columns[0]}To{_model_name(parent)}"
                child_field = f"{parent}_{fk.columns[0]}"
                parent_field = f"{table.name}_{fk.columns[0]}"
            tables[table.name]["relations"].append(
                {
                    "field": child_field,
                    "from": fk.columns[0],
                    "to": fk.ref_columns[0] if fk.ref_columns else "id",
                    "table": parent,
                    "name": name,
                    "objects": "one",
                }
            )
            tables[parent]["relations"].append(
                {"field": parent_field, "from": "", "to": "", "table": table.name, "name": name,
                 "objects": "many"}
            )  # fmt: skip
    return {"tables": tables}


def _op_json(op: MigrateOp) -> dict[str, Any]:
    out: dict[str, Any] = {"stmts": [{"type": int(s.type), "sql": s.sql} for s in op.sqlite]}
    if op.table is not None:
        out["table"] = {
            "name": op.table.name,
            "columns": [
                {
                    "name": c.name,
                    "sqliteType": c.sqlite_type,
                    "pgType": {
                        "name": c.pg_type.name,
                        "array": list(c.pg_type.array),
                        "size": list(c.pg_type.size),
                    },
                }
                for c in op.table.columns
            ],
            "fks": [
                {"fkCols": list(fk.fk_cols), "pkTable": fk.pk_table, "pkCols": list(fk.pk_cols)}
                for fk in op.table.fks
            ],
            "pks": list(op.table.pks),
        }
    return out


def migration_from_ddl(
    version: str, *statements: str, schema: Schema | None = None
) -> tuple[dict[str, Any], Schema]:
    """A migration for ``open`` from Postgres DDL, translated by our ddlx as the service would.

    Returns ``({"version", "ops"}, new_schema)``: the ops are the SatOpMigrate contents of the
    zip's ``metadata.json`` (SQLite statements + table descriptions), from which the driver builds
    the statements and triggers exactly as the generator does.
    """
    new_schema, ops = apply_migration(schema or Schema(), version, statements)
    return {"version": version, "ops": [_op_json(op) for op in ops]}, new_schema


def insecure_token(claims: Mapping[str, Any] | None = None, **more: Any) -> str:
    """An unsigned JWT (``alg: none``) as the client's ``insecureAuthToken`` builds it."""

    def part(data: Mapping[str, Any]) -> str:
        raw = json.dumps(dict(data), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({**(claims or {}), **more})}."


# --- installation --------------------------------------------------------------------------


def ensure_node_client() -> Path:
    """Install the npm packages of ``tests/node`` when missing or stale; returns the folder.

    Fast (a hash comparison) once installed. Raises RuntimeError when Node/npm are missing or the
    install fails, with npm's output.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RuntimeError("the official client tests need Node 20 and npm on PATH")
    done = subprocess.run(
        ["bash", str(NODE_DIR / "install.sh")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tests/node/install.sh failed:\n{done.stdout}\n{done.stderr}")
    return NODE_DIR


# --- the driver ----------------------------------------------------------------------------


class OfficialClient:
    """One driver process: one official client on one SQLite file.

    Start it with :func:`open_official_client` or the ``official_client`` fixture. ``events``
    holds every unsolicited message in arrival order (``{"event": "connectivity", "status",
    "reason"}``, ``"data_changed"``, ``"shape_status"``, ``"unhandled"``).
    """

    def __init__(self, process: trio.Process, name: str) -> None:
        self.name = name
        self.process = process
        self.events: list[dict[str, Any]] = []
        self.stderr_tail: deque[str] = deque(maxlen=200)
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[dict[str, Any]]] = {}
        self._news = trio.Event()
        self._ready = trio.Event()
        self._exited = False
        self._send_lock = trio.Lock()

    # -- plumbing

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        try:
            async for chunk in self.process.stdout:
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._dispatch(json.loads(line))
        finally:
            self._exited = True
            self._ready.set()
            for channel in self._waiting.values():
                channel.close()
            self._waiting.clear()
            self._wake()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        buffer = b""
        async for chunk in self.process.stderr:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            self.stderr_tail.extend(line.decode(errors="replace") for line in lines)
        if buffer:
            self.stderr_tail.append(buffer.decode(errors="replace"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "event" in message:
            if message["event"] == "ready":
                self._ready.set()
                return
            self.events.append(_decode(message))
            self._wake()
            return
        channel = self._waiting.pop(message.get("id"), None)  # type: ignore[arg-type]
        if channel is not None:
            channel.send_nowait(message)
            channel.close()

    def _wake(self) -> None:
        self._news.set()
        self._news = trio.Event()

    def stderr(self) -> str:
        """The last lines the driver (and the client's logger) wrote to stderr."""
        return "\n".join(self.stderr_tail)

    async def _wait_ready(self, within: float) -> None:
        with trio.move_on_after(within):
            await self._ready.wait()
        if self._exited or not self._ready.is_set():
            raise OfficialClientError(
                "DRIVER_EXITED", "the driver did not start", stderr=self.stderr()
            )

    # -- commands

    async def call(self, cmd: str, *, within: float = DEFAULT_TIMEOUT, **params: Any) -> Any:
        """Send one command and return its result; raises :class:`OfficialClientError`.

        ``within`` (seconds) bounds the command inside the driver, which then answers with a
        ``DRIVER_TIMEOUT`` error; we give up a few seconds later if it does not.
        """
        if self._exited:
            raise OfficialClientError(
                "DRIVER_EXITED", "the driver has exited", stderr=self.stderr()
            )
        request_id = next(self._ids)
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._waiting[request_id] = send
        message = {"id": request_id, "cmd": cmd, "timeout_ms": int(within * 1000)}
        message.update(_encode(params))
        line = (json.dumps(message) + "\n").encode()
        assert self.process.stdin is not None
        async with self._send_lock:
            await self.process.stdin.send_all(line)
        reply: dict[str, Any] | None = None
        with trio.move_on_after(within + _SLACK):
            async with receive:
                async for message in receive:
                    reply = message
                    break
        if reply is None:
            self._waiting.pop(request_id, None)
            exited = self._exited
            raise OfficialClientError(
                "DRIVER_EXITED" if exited else "DRIVER_STUCK",
                f"no reply to {cmd}" + ("" if exited else f" within {within + _SLACK} s"),
                stderr=self.stderr(),
            )
        if "error" in reply:
            error = reply["error"]
            raise OfficialClientError(
                error.get("code", "ERROR"),
                error.get("message", ""),
                name=error.get("name", ""),
                satellite=bool(error.get("satellite")),
            )
        return _decode(reply.get("result"))

    async def open(
        self,
        *,
        db: str | os.PathLike[str],
        schema: Mapping[str, Any] | None = None,
        migrations: Sequence[Mapping[str, Any]] = (),
        migrations_url: str | None = None,
        url: str | None = None,
        user_id: str | None = None,
        token: str | None = None,
        claims: Mapping[str, Any] | None = None,
        within: float = DEFAULT_TIMEOUT,
        **config: Any,
    ) -> dict[str, Any]:
        """``electrify`` the SQLite file ``db``; returns ``{client_id, migrations, applied}``.

        ``schema`` is a :func:`describe_schema`-style description; ``migrations`` inline ones
        (``{"version", "statements"}`` used as is, or ``{"version", "ops"}`` as from
        :func:`migration_from_ddl`); ``migrations_url`` a service whose ``/api/migrations``
        zip is appended to them. ``user_id``/``claims``/``token`` give the token ``connect``
        uses by default. ``config``: ``client_id``, ``rpc_timeout_ms`` (the client's RPC
        timeout, 3000), ``backoff`` (over the harness's 3 quick attempts), ``debug``,
        ``fk_checks``.
        """
        params: dict[str, Any] = {"db": os.fspath(db), "migrations": list(migrations), **config}
        for key, value in (
            ("schema", schema),
            ("migrations_url", migrations_url),
            ("url", url),
            ("user_id", user_id),
            ("token", token),
            ("claims", claims),
        ):
            if value is not None:
                params[key] = value
        result: dict[str, Any] = await self.call("open", within=within, **params)
        return result

    async def connect(
        self,
        *,
        user_id: str | None = None,
        token: str | None = None,
        claims: Mapping[str, Any] | None = None,
        within: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """``electric.connect(token)``; returns ``{status, reason, connected}``.

        The token is ``token``, else an unsigned one of ``claims`` or ``{"sub": user_id}``, else
        the one given to ``open``, else the last one used. Connection failures raise with the
        client's code (``CONNECTION_FAILED_AFTER_RETRY`` after the harness's 3 quick attempts,
        ``AUTH_...`` for auth errors the client does not retry).
        """
        params: dict[str, Any] = {}
        if token is not None:
            params["token"] = token
        elif claims is not None:
            params["claims"] = claims
        elif user_id is not None:
            params["user_id"] = user_id
        result: dict[str, Any] = await self.call("connect", within=within, **params)
        return result

    async def disconnect(self) -> dict[str, Any]:
        """``electric.disconnect()`` (no automatic reconnection); returns the status."""
        result: dict[str, Any] = await self.call("disconnect")
        return result

    async def close(self) -> None:
        """``electric.close()`` and close the SQLite file; the driver can ``open`` again."""
        await self.call("close")

    async def sync(
        self,
        table: str,
        *,
        where: str | Mapping[str, Any] | None = None,
        include: Mapping[str, Any] | None = None,
        key: str | None = None,
        wait: bool = True,
        within: float = DEFAULT_TIMEOUT,
    ) -> str:
        """``db.<table>.sync({where, include, key})``, waiting for ``synced``; the shape key."""
        result = await self.call(
            "sync", within=within, table=table, where=where, include=include, key=key, wait=wait
        )
        return str(result["key"])

    async def query(
        self, sql: str, *args: Any, within: float = DEFAULT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """A read of the local SQLite through ``db.rawQuery``."""
        result = await self.call("query", within=within, sql=sql, args=list(args))
        return list(result["rows"])

    async def exec(
        self, sql: str, *args: Any, within: float = DEFAULT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """A raw write (rows when it has RETURNING), then ``notifier.potentiallyChanged()``."""
        result = await self.call("exec", within=within, sql=sql, args=list(args))
        return list(result["rows"])

    async def status(self) -> dict[str, Any]:
        """``{open, status, reason, connected, client_id}`` of the client."""
        result: dict[str, Any] = await self.call("status")
        return result

    async def wait_rows(
        self,
        sql: str,
        *args: Any,
        until: Callable[[list[dict[str, Any]]], bool],
        within: float = DEFAULT_TIMEOUT,
        interval: float = 0.05,
    ) -> list[dict[str, Any]]:
        """Poll a local query until ``until(rows)``; returns those rows.

        Raises :class:`OfficialClientError` (``WAIT_TIMEOUT``) with the last rows seen.
        """
        rows: list[dict[str, Any]] = []
        with trio.move_on_after(within):
            while True:
                rows = await self.query(sql, *args)
                if until(rows):
                    return rows
                await trio.sleep(interval)
        raise OfficialClientError(
            "WAIT_TIMEOUT", f"{sql!r} never satisfied the condition in {within} s; last: {rows}"
        )

    async def wait_event(
        self,
        kind: str,
        predicate: Callable[[dict[str, Any]], bool] = lambda _event: True,
        *,
        since: int = 0,
        within: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """The first event of ``kind`` at index ``since`` or later matching ``predicate``."""
        index = since
        with trio.move_on_after(within):
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if event["event"] == kind and predicate(event):
                        return event
                if self._exited:
                    break
                await self._news.wait()
        raise OfficialClientError(
            "WAIT_TIMEOUT",
            f"no matching {kind!r} event in {within} s; events: {self.events[since:]}",
            stderr=self.stderr(),
        )

    def unhandled(self) -> list[dict[str, Any]]:
        """Unhandled rejections/exceptions the client raised in the background."""
        return [e for e in self.events if e["event"] == "unhandled"]

    # -- lifetime

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def aclose(self, grace: float = 2.0) -> None:
        """Close stdin (the driver closes the client and exits), kill it after ``grace`` s."""
        if self.process.returncode is None:
            with trio.move_on_after(grace) as scope:
                scope.shield = True
                if self.process.stdin is not None:
                    with trio.move_on_after(0.5):
                        await self.process.stdin.aclose()
                await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
        with trio.CancelScope(shield=True):
            await self.process.wait()


async def _start(nursery: trio.Nursery, name: str, env: Mapping[str, str] | None) -> OfficialClient:
    process = await trio.lowlevel.open_process(
        ["node", str(DRIVER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=NODE_DIR,
        env={**os.environ, **(env or {})},
    )
    client = OfficialClient(process, name)
    nursery.start_soon(client._read_stdout)
    nursery.start_soon(client._read_stderr)
    try:
        await client._wait_ready(30.0)
    except BaseException:
        await client.aclose(grace=0)
        raise
    return client


@asynccontextmanager
async def open_official_client(
    name: str = "client", *, env: Mapping[str, str] | None = None
) -> AsyncIterator[OfficialClient]:
    """Start one driver; on exit it is closed and, if still running, killed."""
    async with trio.open_nursery() as nursery:
        client = await _start(nursery, name, env)
        try:
            yield client
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


class OfficialClientFactory:
    """What the ``official_client`` fixture yields: ``await official_client()`` starts a driver.

    Every driver started is closed (killed if it does not exit) when the test ends.
    """

    def __init__(self, nursery: trio.Nursery, tmp_path: Path) -> None:
        self._nursery = nursery
        self._tmp_path = tmp_path
        self.clients: list[OfficialClient] = []

    async def __call__(
        self, name: str | None = None, *, env: Mapping[str, str] | None = None
    ) -> OfficialClient:
        client = await _start(self._nursery, name or f"client{len(self.clients) + 1}", env)
        self.clients.append(client)
        return client

    def db_path(self, name: str) -> Path:
        """A SQLite file in the test's temporary folder."""
        return self._tmp_path / f"{name}.db"

    async def aclose(self, clients: Iterable[OfficialClient] | None = None) -> None:
        for client in list(clients if clients is not None else self.clients):
            await client.aclose()


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_client_dir() -> Path:
    """``tests/node`` with its npm packages installed (once per machine, then cached)."""
    try:
        return ensure_node_client()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
async def official_client(
    node_client_dir: Path, tmp_path: Path
) -> AsyncIterator[OfficialClientFactory]:
    """A factory of official clients for one test; all are stopped when it ends."""
    async with trio.open_nursery() as nursery:
        factory = OfficialClientFactory(nursery, tmp_path)
        try:
            yield factory
        finally:
            await factory.aclose()
            nursery.cancel_scope.cancel()
