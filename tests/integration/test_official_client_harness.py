"""The official-client harness on its own, no service: tests/node/driver.mjs + official_client.py.

The unmodified ``electric-sql@0.12.1`` client electrifies a SQLite file with a hand-built DbSchema
and migrations as our ddlx translates them, writes and reads offline through its own API, fails
within bounded time when the service is missing or silent, and connects to a minimal fake
Satellite peer (which pins down what the service must answer for ``connect``).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import signal
import uuid
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from _ports import free_port
from electric_trio.ddlx.migration import MigrateOp, apply_migration
from electric_trio.ddlx.schema import Schema
from official_client import (
    OfficialClientError,
    OfficialClientFactory,
    describe_schema,
    insecure_token,
    migration_from_ddl,
    open_official_client,
)

ITEMS_DDL = "CREATE TABLE items (id text PRIMARY KEY, title text, done int4);"


def items_setup() -> tuple[dict[str, Any], dict[str, Any]]:
    migration, schema = migration_from_ddl("20240101000000", ITEMS_DDL)
    return describe_schema(schema), migration


async def test_driver_starts_and_answers(official_client: OfficialClientFactory) -> None:
    client = await official_client()
    assert (await client.call("ping"))["node"].startswith("v20.")
    status = await client.status()
    assert status == {"open": False, "status": "closed", "reason": None, "connected": False}
    with pytest.raises(OfficialClientError) as info:
        await client.call("no_such_command")
    assert info.value.code == "BAD_COMMAND"
    with pytest.raises(OfficialClientError) as info:
        await client.query("SELECT 1")
    assert info.value.code == "NOT_OPEN"


async def test_open_applies_the_migrations_and_their_triggers(
    official_client: OfficialClientFactory,
) -> None:
    schema, migration = items_setup()
    client = await official_client()
    opened = await client.open(
        db=official_client.db_path("a"), schema=schema, migrations=[migration]
    )
    assert opened["applied"] == ["20240101000000"]
    uuid.UUID(opened["client_id"])

    columns = await client.query("SELECT name, type, pk FROM pragma_table_info('items')")
    assert columns == [
        {"name": "id", "type": "TEXT", "pk": 1},
        {"name": "title", "type": "TEXT", "pk": 0},
        {"name": "done", "type": "INTEGER", "pk": 0},
    ]
    triggers = await client.query(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'items' ORDER BY name"
    )
    assert [t["name"] for t in triggers] == [
        "delete_main_items_into_oplog",
        "insert_main_items_into_oplog",
        "update_ensure_main_items_primarykey",
        "update_main_items_into_oplog",
    ]
    versions = await client.query("SELECT version FROM _electric_migrations ORDER BY id")
    assert [v["version"] for v in versions] == ["0", "20240101000000"]
    meta = await client.query("SELECT key, value FROM _electric_meta ORDER BY key")
    assert {m["key"]: m["value"] for m in meta}["clientId"] == opened["client_id"]


async def test_bundled_statements_are_applied_as_given(
    official_client: OfficialClientFactory,
) -> None:
    client = await official_client()
    bundle = {"version": "1", "statements": ['CREATE TABLE "notes" ("id" TEXT PRIMARY KEY);']}
    opened = await client.open(
        db=official_client.db_path("b"),
        schema={"tables": {"notes": {"fields": {"id": "TEXT"}}}},
        migrations=[bundle],
    )
    assert opened["applied"] == ["1"]
    # no triggers were in the bundle, so a write does not reach the oplog
    await client.call("create", table="notes", data={"id": "n1"})
    assert await client.query("SELECT count(*) AS n FROM _electric_oplog") == [{"n": 0}]


async def test_local_writes_through_the_client_api_reach_the_oplog(
    official_client: OfficialClientFactory,
) -> None:
    schema, migration = items_setup()
    client = await official_client()
    await client.open(db=official_client.db_path("c"), schema=schema, migrations=[migration])

    created = await client.call("create", table="items", data={"id": "i1", "title": "one"})
    assert created["value"] == {"id": "i1", "title": "one", "done": None}
    await client.call("create", table="items", data={"id": "i2", "title": "two", "done": 0})
    await client.call("update", table="items", data={"done": 1}, where={"id": "i1"})
    await client.call("delete", table="items", where={"id": "i2"})
    found = await client.call("findMany", table="items", orderBy={"id": "asc"})
    assert found["value"] == [{"id": "i1", "title": "one", "done": 1}]

    oplog = await client.query(
        "SELECT optype, primaryKey, newRow, oldRow FROM _electric_oplog ORDER BY rowid"
    )
    assert [(o["optype"], json.loads(o["primaryKey"])) for o in oplog] == [
        ("INSERT", {"id": "i1"}),
        ("INSERT", {"id": "i2"}),
        ("UPDATE", {"id": "i1"}),
        ("DELETE", {"id": "i2"}),
    ]
    assert json.loads(oplog[2]["newRow"]) == {"done": 1, "id": "i1", "title": "one"}
    assert json.loads(oplog[2]["oldRow"]) == {"done": None, "id": "i1", "title": "one"}
    assert oplog[3]["newRow"] is None
    changed = await client.wait_event("data_changed", lambda e: e["origin"] == "local")
    assert changed["tables"] == ["items"]


async def test_raw_writes_reach_the_oplog_and_get_snapshotted(
    official_client: OfficialClientFactory,
) -> None:
    schema, migration = items_setup()
    client = await official_client()
    await client.open(db=official_client.db_path("d"), schema=schema, migrations=[migration])

    rows = await client.exec(
        "INSERT INTO items (id, title, done) VALUES (?, ?, ?) RETURNING *", "r1", "raw", 0
    )
    assert rows == [{"id": "r1", "title": "raw", "done": 0}]
    result = await client.call("exec", sql="UPDATE items SET done = 1 WHERE id = ?", args=["r1"])
    assert result == {"rows": [], "rows_affected": 1}
    # potentiallyChanged() makes the client snapshot: timestamps and a shadow row with its tag
    oplog = await client.wait_rows(
        "SELECT optype, timestamp FROM _electric_oplog ORDER BY rowid",
        until=lambda rows: len(rows) == 2 and all(r["timestamp"] for r in rows),
    )
    assert [o["optype"] for o in oplog] == ["INSERT", "UPDATE"]
    opened = await client.status()
    shadow = await client.query("SELECT primaryKey, tags FROM _electric_shadow")
    assert len(shadow) == 1
    assert shadow[0]["primaryKey"] == '{"id":"r1"}'
    (tag,) = json.loads(shadow[0]["tags"])
    assert tag.startswith(opened["client_id"] + "@")


async def test_values_cross_the_driver_typed(official_client: OfficialClientFactory) -> None:
    migration, schema = migration_from_ddl(
        "1",
        "CREATE TABLE kinds (id uuid PRIMARY KEY, big int8, flag bool, raw bytea,"
        " at timestamptz, ratio float8, doc jsonb, n int2);",
    )
    client = await official_client()
    await client.open(
        db=official_client.db_path("e"), schema=describe_schema(schema), migrations=[migration]
    )
    key = str(uuid.uuid4())
    at = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    data = {
        "id": key,
        "big": 2**62,
        "flag": True,
        "raw": b"\x00\xff",
        "at": at,
        "ratio": math.inf,
        "doc": {"a": [1, None]},
        "n": -32768,
    }
    await client.call("create", table="kinds", data=data)
    found = await client.call("findUnique", table="kinds", where={"id": key})
    assert found["value"] == data

    (stored,) = await client.query("SELECT flag, at, ratio, doc, raw FROM kinds")
    assert stored == {
        "flag": 1,
        "at": "2024-05-01 12:00:00.123Z",
        "ratio": math.inf,
        "doc": '{"a":[1,null]}',
        "raw": b"\x00\xff",
    }
    # the generated-client-like validation rejects what the generator's zod schemas reject
    with pytest.raises(OfficialClientError) as info:
        await client.call("create", table="kinds", data={"id": "not-a-uuid"})
    assert info.value.code == "VALIDATION"
    with pytest.raises(OfficialClientError) as info:
        await client.call("create", table="kinds", data={"id": str(uuid.uuid4()), "n": 40000})
    assert info.value.code == "VALIDATION"
    with pytest.raises(OfficialClientError) as info:
        await client.exec("INSERT INTO kinds (id) VALUES (?) RETURNING id", key)
    assert info.value.code == "SQLITE_CONSTRAINT_PRIMARYKEY"


async def test_relations_include_and_compensation_triggers(
    official_client: OfficialClientFactory,
) -> None:
    migration, schema = migration_from_ddl(
        "1",
        "CREATE TABLE projects (id text PRIMARY KEY, name text NOT NULL);",
        "CREATE TABLE issues (id text PRIMARY KEY, project_id text REFERENCES projects (id));",
    )
    description = describe_schema(schema)
    assert description["tables"]["issues"]["relations"] == [
        {
            "field": "projects",
            "from": "project_id",
            "to": "id",
            "table": "projects",
            "name": "IssuesToProjects",
            "objects": "one",
        }
    ]
    client = await official_client()
    await client.open(db=official_client.db_path("f"), schema=description, migrations=[migration])
    await client.call("create", table="projects", data={"id": "p1", "name": "P"})
    await client.call("create", table="issues", data={"id": "x1", "project_id": "p1"})
    found = await client.call(
        "findUnique", table="projects", where={"id": "p1"}, include={"issues": True}
    )
    assert found["value"] == {"id": "p1", "name": "P", "issues": [{"id": "x1", "project_id": "p1"}]}
    ops = await client.query("SELECT tablename, optype FROM _electric_oplog ORDER BY rowid")
    assert [(o["tablename"], o["optype"]) for o in ops] == [
        ("projects", "INSERT"),
        # SQLite fires the newest trigger first: the compensation before the child's insert
        ("projects", "COMPENSATION"),
        ("issues", "INSERT"),
    ]


async def test_reopening_the_file_keeps_identity_and_data(
    official_client: OfficialClientFactory,
) -> None:
    schema, migration = items_setup()
    db = official_client.db_path("g")
    first = await official_client()
    opened = await first.open(db=db, schema=schema, migrations=[migration])
    await first.call("create", table="items", data={"id": "kept"})
    assert await first.call("close") == {"closed": True}
    await first.aclose()
    assert not first.running

    second = await official_client()
    again = await second.open(db=db, schema=schema, migrations=[migration])
    assert again["client_id"] == opened["client_id"]
    assert again["applied"] == ["20240101000000"]
    assert await second.query("SELECT id FROM items") == [{"id": "kept"}]


async def test_connect_without_a_server_fails_quickly(
    official_client: OfficialClientFactory,
) -> None:
    schema, migration = items_setup()
    client = await official_client()
    await client.open(
        db=official_client.db_path("h"),
        schema=schema,
        migrations=[migration],
        url=f"http://127.0.0.1:{free_port()}",
        user_id="alice",
    )
    with trio.fail_after(8):
        with pytest.raises(OfficialClientError) as info:
            await client.connect()
    assert info.value.satellite
    assert info.value.code == "CONNECTION_FAILED_AFTER_RETRY"
    event = await client.wait_event("connectivity", lambda e: e["status"] == "disconnected")
    assert event["reason"]["code"] == "CONNECTION_FAILED_AFTER_RETRY"
    status = await client.status()
    assert (status["status"], status["connected"]) == ("disconnected", False)
    # still usable offline
    await client.call("create", table="items", data={"id": "offline"})
    assert client.unhandled() == []


async def test_a_silent_server_gives_a_timeout_not_a_hang(
    official_client: OfficialClientFactory,
) -> None:
    accepted: list[trio.SocketStream] = []

    async def swallow(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, swallow, 0)
        port = listeners[0].socket.getsockname()[1]
        schema, migration = items_setup()
        client = await official_client()
        await client.open(
            db=official_client.db_path("i"),
            schema=schema,
            migrations=[migration],
            url=f"http://127.0.0.1:{port}",
            token=insecure_token(sub="bob"),
        )
        with trio.fail_after(6):
            with pytest.raises(OfficialClientError) as info:
                await client.connect(within=1.5)
        assert info.value.code == "DRIVER_TIMEOUT"
        assert accepted, "the client never reached the server"
        assert (await client.call("ping"))["pong"]
        with pytest.raises(OfficialClientError) as info:
            await client.sync("items", within=1.5)
        assert info.value.code in {"DRIVER_TIMEOUT", "CONNECTION_CANCELLED_BY_DISCONNECT"}
        # cancelling a connect mid-handshake leaves the client's socket errors unhandled: the
        # driver reports them as events instead of letting Node exit
        unhandled = {e["error"]["code"] for e in client.unhandled()}
        assert unhandled <= {"SOCKET_ERROR", "CONNECTION_CANCELLED_BY_DISCONNECT"}
        assert (await client.call("ping"))["pong"]
        nursery.cancel_scope.cancel()


def _pb_varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _pb(num: int, value: bytes | str | int | list[int]) -> bytes:
    if isinstance(value, int):
        return _pb_varint(num << 3) + _pb_varint(value)
    if isinstance(value, list):
        value = b"".join(_pb_varint(v) for v in value)
    raw = value.encode() if isinstance(value, str) else value
    return _pb_varint(num << 3 | 2) + _pb_varint(len(raw)) + raw


def encode_sat_op_migrate(version: str, op: MigrateOp) -> bytes:
    """``SatOpMigrate`` by hand (proto/satellite.proto), SQLite dialect."""
    out = _pb(1, version)
    for stmt in op.sqlite:
        out += _pb(2, _pb(1, int(stmt.type)) + _pb(2, stmt.sql))
    if op.table is not None:
        table = _pb(1, op.table.name)
        for c in op.table.columns:
            pg = _pb(1, c.pg_type.name)
            if c.pg_type.array:
                pg += _pb(2, list(c.pg_type.array))
            if c.pg_type.size:
                pg += _pb(3, list(c.pg_type.size))
            table += _pb(2, _pb(1, c.name) + _pb(2, c.sqlite_type) + _pb(3, pg))
        for fk in op.table.fks:
            body = b"".join(_pb(1, col) for col in fk.fk_cols) + _pb(2, fk.pk_table)
            table += _pb(3, body + b"".join(_pb(3, col) for col in fk.pk_cols))
        table += b"".join(_pb(4, pk) for pk in op.table.pks)
        out += _pb(3, table)
    return out


def migrations_zip(migrations: list[tuple[str, list[MigrateOp]]]) -> bytes:
    """The ``/api/migrations?dialect=sqlite`` zip (server-behaviour.md)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for version, ops in migrations:
            sql = "\n\n".join(s.sql.rstrip() for op in ops for s in op.sqlite)
            zf.writestr(f"{version}/migration.sql", sql)
            metadata = {
                "format": "SatOpMigrate",
                "ops": [
                    base64.b64encode(encode_sat_op_migrate(version, op)).decode() for op in ops
                ],
                "protocol_version": "Electric.Satellite",
                "version": version,
            }
            zf.writestr(f"{version}/metadata.json", json.dumps(metadata))
    return buffer.getvalue()


async def serve_http(
    nursery: trio.Nursery, responses: dict[str, tuple[int, bytes]], seen: list[str]
) -> int:
    """A minimal HTTP/1.1 server answering ``GET <path>`` from ``responses``; its port."""

    async def handle(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return
            request += chunk
        target = request.split(b" ", 2)[1].decode()
        seen.append(target)
        status, body = responses.get(target, (404, b""))
        reason = {200: "OK", 204: "No Content", 404: "Not Found"}[status]
        head = f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        if status != 204:
            head += f"Content-Type: application/zip\r\nContent-Length: {len(body)}\r\n"
        await stream.send_all(head.encode() + b"\r\n" + (body if status != 204 else b""))
        await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, handle, 0)
    return int(listeners[0].socket.getsockname()[1])


async def test_migrations_fetched_from_the_api(official_client: OfficialClientFactory) -> None:
    schema, ops1 = apply_migration(Schema(), "20230504114018", [ITEMS_DDL])
    schema, ops2 = apply_migration(
        schema,
        "20230608134524",
        ["CREATE TABLE tags (id uuid PRIMARY KEY, item_id text REFERENCES items (id));"],
    )
    body = migrations_zip([("20230504114018", ops1), ("20230608134524", ops2)])
    path = "/api/migrations?dialect=sqlite"
    seen: list[str] = []
    async with trio.open_nursery() as nursery:
        port = await serve_http(nursery, {path: (200, body)}, seen)
        client = await official_client()
        opened = await client.open(
            db=official_client.db_path("j"),
            schema=describe_schema(schema),
            migrations_url=f"http://127.0.0.1:{port}",
        )
        assert seen == [path]
        assert opened["applied"] == ["20230504114018", "20230608134524"]
        # triggers came from the table descriptions in metadata.json, FK compensation included
        await client.call("create", table="items", data={"id": "i"})
        await client.call("create", table="tags", data={"id": str(uuid.uuid4()), "item_id": "i"})
        ops = await client.query("SELECT tablename, optype FROM _electric_oplog ORDER BY rowid")
        assert [o["optype"] for o in ops] == ["INSERT", "COMPENSATION", "INSERT"]

        # 204: no migrations at all
        empty_port = await serve_http(nursery, {path: (204, b"")}, seen)
        other = await official_client()
        opened = await other.open(
            db=official_client.db_path("k"), migrations_url=f"http://127.0.0.1:{empty_port}"
        )
        assert opened["applied"] == []
        # anything else: the generator's error
        failing_port = await serve_http(nursery, {path: (404, b"")}, seen)
        await other.call("close")
        with pytest.raises(OfficialClientError) as info:
            await other.open(
                db=official_client.db_path("l"), migrations_url=f"http://127.0.0.1:{failing_port}"
            )
        assert info.value.code == "MIGRATIONS_FETCH"
        assert "Got 404 status code" in info.value.message
        nursery.cancel_scope.cancel()


def _pb_decode(data: bytes) -> dict[int, list[Any]]:
    """A protobuf message's fields (varint and length-delimited only), by number."""
    fields: dict[int, list[Any]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = varint()
        value: int | bytes
        if key & 7 == 0:
            value = varint()
        elif key & 7 == 2:
            size = varint()
            value, pos = data[pos : pos + size], pos + size
        else:
            raise AssertionError(f"wire type {key & 7} in a test message")
        fields.setdefault(key >> 3, []).append(value)
    return fields


SAT_RPC_REQUEST, SAT_RPC_RESPONSE = 21, 22
AUTH_REQUIRED = 1  # SatErrorResp.ErrorCode


class FakeSatellitePeer:
    """Just enough of the Satellite server for ``connect``: /ws with electric.0.12, and answers to
    ``authenticate`` and ``startReplication`` (a SatRpcResponse echoing method and request id,
    with ``message`` present even when empty). Tokens whose user is ``reject`` get the RPC error
    ``AUTH_REQUIRED`` and a close, as the service answers a bad token."""

    def __init__(self, reject: str = "") -> None:
        self.reject = reject
        self.handshake: dict[str, Any] = {}
        self.calls: list[tuple[str, dict[int, list[Any]]]] = []

    async def __call__(self, request: WebSocketRequest) -> None:
        self.handshake.update(path=request.path, subprotocols=list(request.proposed_subprotocols))
        ws = await request.accept(subprotocol="electric.0.12")
        try:
            while True:
                frame = await ws.get_message()
                assert isinstance(frame, bytes)
                assert frame[0] == SAT_RPC_REQUEST
                rpc = _pb_decode(frame[1:])
                method = rpc[1][0].decode()
                request_id = rpc.get(2, [0])[0]
                body = _pb_decode(rpc.get(3, [b""])[0])
                self.calls.append((method, body))
                head = _pb(1, method) + (_pb(2, request_id) if request_id else b"")
                if method == "authenticate" and insecure_token(sub=self.reject).encode() in body[2]:
                    error = _pb(1, AUTH_REQUIRED) + _pb(3, "bad token")
                    await ws.send_message(bytes([SAT_RPC_RESPONSE]) + head + _pb(4, error))
                    await ws.aclose(1007)
                    return
                reply = _pb(1, "server-1") if method == "authenticate" else b""
                await ws.send_message(bytes([SAT_RPC_RESPONSE]) + head + _pb(3, reply))
        except ConnectionClosed:
            pass


async def test_connects_to_a_minimal_satellite_peer(
    official_client: OfficialClientFactory,
) -> None:
    peer = FakeSatellitePeer()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, peer, "127.0.0.1", 0, None)
        schema, migration = items_setup()
        client = await official_client()
        opened = await client.open(
            db=official_client.db_path("m"),
            schema=schema,
            migrations=[migration],
            url=f"http://127.0.0.1:{server.port}",
            user_id="carol",
        )
        status = await client.connect()
        assert status == {"status": "connected", "reason": None, "connected": True}
        assert peer.handshake == {"path": "/ws", "subprotocols": ["electric.0.12"]}
        assert [method for method, _ in peer.calls] == ["authenticate", "startReplication"]
        auth = peer.calls[0][1]
        assert auth[1] == [opened["client_id"].encode()]
        assert auth[2] == [insecure_token(sub="carol").encode()]  # the client's own token
        start = peer.calls[1][1]
        assert 1 not in start  # no LSN yet: from scratch
        assert start[5] == [b"20240101000000"]  # schema_version: the newest migration
        await client.wait_event("connectivity", lambda e: e["status"] == "connected")

        await client.disconnect()
        assert (await client.status())["status"] == "disconnected"
        nursery.cancel_scope.cancel()


async def test_a_rejected_token_gives_the_auth_error_code(
    official_client: OfficialClientFactory,
) -> None:
    peer = FakeSatellitePeer(reject="mallory")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, peer, "127.0.0.1", 0, None)
        schema, migration = items_setup()
        client = await official_client()
        await client.open(
            db=official_client.db_path("n"),
            schema=schema,
            migrations=[migration],
            url=f"http://127.0.0.1:{server.port}",
        )
        with pytest.raises(OfficialClientError) as info:
            await client.connect(user_id="mallory")
        assert (info.value.code, info.value.name) == ("AUTH_REQUIRED", "SatErrorResp")
        assert info.value.message == "server error: bad token"
        assert [method for method, _ in peer.calls] == ["authenticate"]  # not retried
        nursery.cancel_scope.cancel()


async def test_the_process_is_killed_on_exit(node_client_dir: Path) -> None:
    async with open_official_client() as client:
        pid = client.process.pid
        assert client.running
    assert client.process.returncode == 0  # closed its stdin: exited by itself

    async with open_official_client() as client:
        os.kill(client.process.pid, signal.SIGSTOP)  # cannot exit by itself any more
        pid = client.process.pid
    assert client.process.returncode == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
