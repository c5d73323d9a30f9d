"""What the initial-sync benchmarks share (``benches/sync`` and ``benches/client``): the rows
they fill a 7-column table with, the wait until the service's replication has read them, a raw
Satellite client that times a whole-table subscription reading only each frame's type byte,
and the memory and profile of a process."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket
from wsproto.utilities import LocalProtocolError

from electric_trio.pg import Connection
from electric_trio.satellite import messages as m

#: The table: a uuid key, a title, an int, a float, a bool, a timestamp and a text that may be
#: NULL, named ``last`` (``{table}`` and ``{last}`` to fill in).
DDL = (
    "CREATE TABLE {table} (id uuid PRIMARY KEY, title text NOT NULL, n int4 NOT NULL,"
    " amount float8, done bool NOT NULL, created timestamptz NOT NULL, {last} text)"
)
#: Its rows ``$1`` to ``$2``: a title of 7 to 35 characters, the last text NULL in one row of
#: ten.
FILL = (
    "INSERT INTO {table} SELECT md5(i::text)::uuid,"
    " 'item ' || i || ' ' || repeat('x', (i % 24)::int), i, i * 0.25, i % 3 = 0,"
    " timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second',"
    " CASE WHEN i % 10 = 0 THEN NULL ELSE 'user-' || (i % 97) END"
    " FROM generate_series($1::int8, $2::int8) AS i"
)


async def wait_replicated(conn: Connection, within: float = 120.0) -> None:
    """Waits (at most ``within`` seconds) until a replication slot of the database has
    confirmed the WAL written so far: the service has read every row filled before."""
    target = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
    with trio.move_on_after(within):
        while True:
            read = await conn.fetchval(
                "SELECT coalesce(bool_or(confirmed_flush_lsn >= $1::text::pg_lsn), false)"
                " FROM pg_replication_slots WHERE database = current_database()",
                target,
            )
            if read:
                return
            await trio.sleep(0.2)


#: Bytes per read of :func:`raw_sync`'s socket.
RECEIVE_BYTES = 256 * 1024


async def _call(ws: Any, method: str, request_id: int, body: m.ProtoMessage) -> None:
    request = m.SatRpcRequest(method=method, request_id=request_id, message=m.encode_message(body))
    await ws.send_message(m.encode(request))


async def raw_sync(
    port: int, table: str, token: str, client_id: str, schema_version: str | None = None
) -> tuple[float, int]:
    """Seconds from the subscribe request to ``SatSubsDataEnd`` of a whole-table shape, and
    the bytes of its frames, for a raw Satellite client (authenticated with ``token`` as
    ``client_id``, starting from ``schema_version`` when given) that reads each frame's type
    byte alone: the service's part of an initial
    sync, which no client can shorten."""
    result: tuple[float, int] | None = None
    try:
        async with open_websocket(
            "127.0.0.1",
            port,
            "/ws",
            use_ssl=False,
            subprotocols=["electric.0.12"],
            max_message_size=256 * 1024 * 1024,
            # trio-websocket reads 4 KiB at a time by default: 25,000 reads (and wsproto passes)
            # for the 100 MB of a 1,000,000-row shape cost this client about 1 s of CPU, taken
            # from the service and Postgres on the same cores.
            receive_buffer_size=RECEIVE_BYTES,
        ) as ws:
            await _call(ws, "authenticate", 1, m.SatAuthReq(id=client_id, token=token))
            start_req = m.SatInStartReplicationReq(
                schema_version=schema_version, sql_dialect=m.SatInStartReplicationReqDialect.SQLITE
            )
            await _call(ws, "startReplication", 2, start_req)
            started = False
            while not started:
                message = m.decode(bytes(await ws.get_message()))
                if isinstance(message, m.SatRpcRequest) and message.method == "startReplication":
                    reply = m.encode_message(m.SatInStartReplicationResp())
                    response = m.SatRpcResponse(
                        method=message.method, request_id=message.request_id, message=reply
                    )
                    await ws.send_message(m.encode(response))
                elif isinstance(message, m.SatRpcResponse) and message.method == "startReplication":
                    started = True
            select = m.SatShapeDefSelect(tablename=table)
            shape = m.SatShapeReq(
                request_id=str(uuid.uuid4()), shape_definition=m.SatShapeDef(selects=(select,))
            )
            subscribe = m.SatSubsReq(subscription_id=str(uuid.uuid4()), shape_requests=(shape,))
            start = time.perf_counter()
            await _call(ws, "subscribe", 3, subscribe)
            received = 0
            while True:
                frame = await ws.get_message()
                received += len(frame)
                if frame[0] == m.SatSubsDataEnd.TYPE_ID:
                    result = time.perf_counter() - start, received
                    break
    except* LocalProtocolError:
        # trio-websocket answers a ping that arrives during its close handshake with a pong
        # it may no longer send: the sync was measured by then.
        if result is None:
            raise
    assert result is not None
    return result


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in KiB (``VmRSS``, ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    """Sets the process's ``VmHWM`` back to its current RSS, to measure the peak of one step."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextlib.asynccontextmanager
async def profiled(
    pid: int, out: Path | None, *, native: bool = False, raw: bool = True
) -> AsyncIterator[None]:
    """py-spy samples process ``pid`` (every thread; with ``native``, its Rust frames too)
    while the block runs, when ``out`` is set: raw lines, else speedscope JSON."""
    if out is None:
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--pid", str(pid), "--rate", "250"]
    command += ["--format", "raw" if raw else "speedscope", "--output", str(out)]
    # Native frames need the process paused while sampled.
    command.append("--native" if native else "--nonblocking")
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    await trio.sleep(1.0)
    try:
        yield
    finally:
        process.send_signal(2)
        with trio.move_on_after(60):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
