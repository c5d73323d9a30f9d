# ruff: noqa: F811 (the db fixture comes from test_client_writes)
"""The Python client offline: the connection is cut (a TCP relay between client and service
stops), the client keeps accepting writes, reconnects with backoff, sends each write exactly once
and resumes from its stored position without a full resync."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from test_client_writes import db  # noqa: F401
from test_py_client import TOKEN, config_for, projects_service, schema_of, wait_pg, wait_rows
from test_satellite_protocol import sql

from electric_trio.client import ElectricConfig, Status, open_electric
from electric_trio.client._values import b64
from electric_trio.service import Service


class Relay:
    """A TCP relay to the service that can be cut (open connections closed, new ones refused)
    and restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.up = True
        self.connections = 0
        self._scopes: set[trio.CancelScope] = set()

    async def serve(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(trio.serve_tcp, self._handle, 0)
        self.port = listeners[0].socket.getsockname()[1]

    async def _handle(self, down: trio.SocketStream) -> None:
        if not self.up:
            await down.aclose()
            return
        self.connections += 1
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                up = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                async with up, down, trio.open_nursery() as nursery:

                    async def pipe(a: trio.SocketStream, b: trio.SocketStream) -> None:
                        while data := await a.receive_some(65536):
                            await b.send_all(data)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(pipe, down, up)
                    nursery.start_soon(pipe, up, down)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            finally:
                self._scopes.discard(scope)

    def cut(self) -> None:
        self.up = False
        for scope in list(self._scopes):
            scope.cancel()


async def relayed(nursery: trio.Nursery, service: Service) -> Relay:
    relay = Relay(service.http_port)
    await relay.serve(nursery)
    return relay


AUDIT = (
    "CREATE TABLE audit (op text, id text, name text);"
    " CREATE FUNCTION audit_projects() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN INSERT INTO public.audit VALUES (TG_OP, NEW.id, NEW.name); RETURN NEW; END $$;"
    " CREATE TRIGGER audit AFTER INSERT OR UPDATE ON projects"
    " FOR EACH ROW EXECUTE FUNCTION audit_projects();"
    " ALTER TABLE projects ENABLE ALWAYS TRIGGER audit;"
)


@pytest.mark.slow  # (the client's behaviour: the PostgreSQL 15 pass leaves it out)
async def test_offline_writes_are_sent_once_on_reconnect_and_the_stream_resumes(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    service = await projects_service(nursery, db)
    await sql(db, AUDIT)
    await sql(
        db,
        "INSERT INTO projects (id, name) VALUES ('p1', 'one'), ('gone', 'deleted while offline')",
    )
    relay = await relayed(nursery, service)
    config = ElectricConfig(
        url=f"http://127.0.0.1:{relay.port}", backoff_start=0.2, backoff_max=0.5
    )
    async with open_electric(tmp_path / "a.db", schema_of(service), config, token=TOKEN) as client:
        shape = await client.sync("projects")
        with trio.fail_after(15):
            await shape.synced()
        await client.conn.execute("INSERT INTO projects (id, name) VALUES ('c1', 'online')")
        await wait_pg(
            db, "SELECT op, id, name FROM audit WHERE id = 'c1'", [("INSERT", "c1", "online")]
        )

        statuses = client.status_changes()
        assert await statuses.__anext__() == Status.CONNECTED
        relay.cut()
        with trio.fail_after(15):
            assert await statuses.__anext__() == Status.CONNECTING
        # offline: writes are accepted locally
        await client.conn.execute("INSERT INTO projects (id, name) VALUES ('c2', 'offline 1')")
        await client.conn.execute("UPDATE projects SET name = 'offline 2' WHERE id = 'c2'")
        await client.conn.execute("INSERT INTO projects (id, name) VALUES ('c3', 'offline 3')")
        await wait_rows(client, "SELECT name FROM projects WHERE id = 'c2'", [("offline 2",)])
        # meanwhile Postgres changes
        await sql(
            db,
            "DELETE FROM projects WHERE id = 'gone';"
            " UPDATE projects SET name = 'uno' WHERE id = 'p1'",
        )
        await trio.sleep(0.5)
        assert client.status == Status.CONNECTING
        sub_before = await client.conn.query(
            "SELECT value FROM _electric_meta WHERE key = 'subscriptions'"
        )

        relay.up = True
        with trio.fail_after(20):
            while await statuses.__anext__() != Status.CONNECTED:
                pass
        await statuses.aclose()
        expected = [("c1", "online"), ("c2", "offline 2"), ("c3", "offline 3"), ("p1", "uno")]
        await wait_pg(db, "SELECT id, name FROM projects ORDER BY id", expected)
        await wait_rows(client, "SELECT id, name FROM projects ORDER BY id", expected)
        # resumed, not re-synced: the delete made while offline came from the stream (a new
        # initial sync inserts rows but never deletes one) and the subscription is the same
        assert (
            await client.conn.query("SELECT value FROM _electric_meta WHERE key = 'subscriptions'")
            == sub_before
        )
        # wait for any duplicate to show, then check each write reached Postgres once
        await client.conn.execute("INSERT INTO projects (id, name) VALUES ('c4', 'marker')")
        await wait_pg(db, "SELECT id FROM projects WHERE id = 'c4'", [("c4",)])
        await wait_rows(client, "SELECT rowid FROM _electric_oplog", [])
    await wait_pg(
        db,
        "SELECT op, id, name FROM audit WHERE id LIKE 'c%' ORDER BY id, op",
        [
            ("INSERT", "c1", "online"),
            ("INSERT", "c2", "offline 1"),
            ("UPDATE", "c2", "offline 2"),
            ("INSERT", "c3", "offline 3"),
            ("INSERT", "c4", "marker"),
        ],
    )


async def test_a_position_the_service_cannot_resume_from_resyncs_and_keeps_local_writes(
    db: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    service = await projects_service(nursery, db)
    await sql(db, "INSERT INTO projects (id, name) VALUES ('p1', 'one')")
    path = tmp_path / "a.db"
    config = config_for(service)
    async with open_electric(path, schema_of(service), config, token=TOKEN) as client:
        shape = await client.sync("projects")
        with trio.fail_after(15):
            await shape.synced()
        await wait_rows(client, "SELECT id FROM projects", [("p1",)])
    # the stored position goes bad (as after the service lost its window), and a write is
    # made while the client is closed
    raw = sqlite3.connect(path)
    raw.execute("UPDATE _electric_meta SET value = ? WHERE key = 'lsn'", (b64(b"1"),))
    raw.execute("INSERT INTO projects (id, name) VALUES ('local', 'kept')")
    raw.commit()
    raw.close()
    await sql(db, "INSERT INTO projects (id, name) VALUES ('p2', 'two')")
    async with open_electric(path, schema_of(service), config, token=TOKEN) as client:
        expected = [("local", "kept"), ("p1", "one"), ("p2", "two")]
        await wait_rows(client, "SELECT id, name FROM projects ORDER BY id", expected)
        await wait_pg(db, "SELECT id, name FROM projects ORDER BY id", expected)
        assert client.status == Status.CONNECTED
        lsn = await client.conn.query("SELECT value FROM _electric_meta WHERE key = 'lsn'")
        assert lsn[0]["value"] not in (None, "", b64(b"1"))
