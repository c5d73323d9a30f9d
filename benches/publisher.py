"""Client transactions through the logical publisher against the direct writer.

``ELECTRIC_WRITE_TO_PG_MODE=logical_replication``: Postgres's apply worker pulls each client
transaction from the service's publisher (pgoutput from the Rust encoder) and commits it; the
peer, measured in the same run on the same server and table, is ``direct_writes``: the direct
writer committing the same transactions on its own connections. Clients hand transactions to
the writer as the Satellite sessions do (``await writer.write(...)``, the next one once the
previous returned, which for both means: committed in Postgres).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import time
import urllib.parse
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

from electric_trio.config import Config
from electric_trio.ddlx.schema import Table
from electric_trio.pg import ConnectParams, connect
from electric_trio.replication import ReplicationSubsystem
from electric_trio.service import Service, serve
from electric_trio.writes import ClientWrite, Writer
from electric_trio.writes.direct import DirectWriter
from electric_trio.writes.publisher import SUBSCRIPTION, LogicalPublisher
from electric_trio.writes.rows import ack_row, change_rows, tag_literal

from ._harness import (
    Measurement,
    Progress,
    Report,
    command_line,
    machine_facts,
    parse_args,
    postgres,
    write_section,
)

NAME = "publisher"
DATABASE = "electric_bench_publisher"
CLIENTS = 20
#: The issue sets no target for logical_replication mode: it is reported beside direct_writes.
TARGET = 0.0
COLUMNS = "id int8 PRIMARY KEY, n int4, label text, x float8, flag bool, ts timestamptz"

DESCRIPTION = """\
A 6-column electrified table (int8 key, int4, text of 32 characters, float8, bool,
timestamptz). {clients} clients in the service's process each hand {per_client} 1-row client
transactions (the acknowledged-position row, the main row, the shadow row, as the Satellite
sessions build them) to the writer, each the next once the previous one is committed in
Postgres. *Ours*: the logical publisher (`logical_replication`): Postgres's apply worker pulls
the transactions as pgoutput and applies them; `write()` returns once the apply worker reports
the transaction committed. *Peer*: the direct writer (`direct_writes`, its default four
connections). Every transaction runs the conflict resolution triggers. The service's process
also runs the replication reader, which decodes every commit on both sides. A warm-up run per
side, then best of {repeat} runs per side, alternating which side goes first. Client, service
and Postgres share the machine (2 cores here). Durability differs: the apply worker commits with
`synchronous_commit = off` (Postgres's default for subscriptions), so `write()` returns before
the commit's WAL is flushed (the publisher keeps the transaction until Postgres reports it
flushed and sends it again after a Postgres crash; clients see their echo only once it is
flushed), while the direct writer waits for each commit's flush. No target: the issue asks for
this mode to be reported beside direct_writes.
"""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    return parse_args(
        argv,
        prog="python -m benches publisher",
        description="Client transactions: the logical publisher against the direct writer.",
        rows_help="1-row transactions per run",
        quick_rows=1_000,
        full_rows=5_000,
    )


def _database_url(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(dbname)))


_keys = itertools.count(1)
_lsns = itertools.count(1)


def _client_write(table: Table, client: str) -> ClientWrite:
    lsn = next(_lsns)
    key = next(_keys)
    ms = 1_700_000_000_000 + lsn
    row = (str(key), str(key % 1000), f"{key:032x}", str(key / 7), "t", "2024-01-01 00:00:00+00")
    raw = lsn.to_bytes(4, "big")
    main, shadow = change_rows(table, "insert", row, tag_literal(ms, client), "{}", [True] * 5)
    return ClientWrite(client, raw, ms, (ack_row(client, raw), main, shadow))


async def _run(writer: Writer, table: Table, side: str, transactions: int) -> tuple[float, float]:
    """Transactions per second and process CPU seconds per transaction."""
    per_client = transactions // CLIENTS
    writes = [
        [_client_write(table, f"{side}-{c}") for _ in range(per_client)] for c in range(CLIENTS)
    ]

    async def client(batch: list[ClientWrite]) -> None:
        for w in batch:
            await writer.write(w)

    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for batch in writes:
            nursery.start_soon(client, batch)
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    done = per_client * CLIENTS
    return done / elapsed, cpu / done


class _PublisherSubsystem:
    name = "publisher"

    def __init__(self) -> None:
        self.publisher: LogicalPublisher | None = None

    def install(self, service: Service) -> None:
        pass

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.publisher = LogicalPublisher(service)
        await self.publisher.run(task_status=task_status)


async def _measure(db_url: str, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    config = Config.from_env(
        {
            "DATABASE_URL": db_url,
            "HTTP_PORT": "0",
            "PG_PROXY_PASSWORD": "bench",
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "logical_replication",
            "LOGICAL_PUBLISHER_HOST": "127.0.0.1",
            "LOGICAL_PUBLISHER_PORT": "0",
            "LOG_LEVEL": "warning",
        }
    )
    sub = _PublisherSubsystem()
    ours: list[float] = []
    peer: list[float] = []
    cpu: dict[str, list[float]] = {"ours": [], "peer": []}
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(
            partial(
                serve,
                config,
                subsystems=[ReplicationSubsystem(), sub],
                handle_signals=False,
            )
        )
        with trio.fail_after(60):
            await service.wait_ready()
        async with await connect(db_url) as c:
            await c.execute(
                "BEGIN; CALL electric.migration_version('1');"
                f" CREATE TABLE items ({COLUMNS}); CALL electric.electrify('items'); COMMIT"
            )
        history = service.migrations
        assert history is not None
        assert sub.publisher is not None
        with trio.fail_after(60):
            while history.version != "1":  # noqa: ASYNC110 (the history has no event)
                await trio.sleep(0.05)
        table = history.schema.table("public", "items")
        assert table is not None
        direct = DirectWriter(ConnectParams.from_url(db_url))
        await nursery.start(direct.run)
        sides: dict[str, Writer] = {"ours": sub.publisher, "peer": direct}
        progress.step("warm-up run per side")
        for side, writer in sides.items():
            await _run(writer, table, side, max(CLIENTS, args.rows // 10))
        for i in range(args.repeat):
            order = ["ours", "peer"] if i % 2 == 0 else ["peer", "ours"]
            for side in order:
                rate, per_tx = await _run(sides[side], table, side, args.rows)
                (ours if side == "ours" else peer).append(rate)
                cpu[side].append(per_tx)
                progress.step(f"run {i + 1}/{args.repeat} {side}: {rate:,.0f} tx/s")
        stats = sub.publisher.stats()
        nursery.cancel_scope.cancel()
    return {"ours": ours, "peer": peer, "cpu": cpu, "stats": stats}


async def _bench(url: str, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    db_url = _database_url(url, DATABASE)

    async def drop() -> None:
        async with await connect(url) as admin:
            exists = await admin.fetchval(
                "SELECT count(*) FROM pg_database WHERE datname = $1", DATABASE
            )
        if exists:
            async with await connect(db_url) as c:
                if await c.fetchval(
                    "SELECT count(*) FROM pg_subscription WHERE subname = $1", SUBSCRIPTION
                ):
                    await c.execute(
                        f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" DISABLE;'
                        f' ALTER SUBSCRIPTION "{SUBSCRIPTION}" SET (slot_name = NONE);'
                        f' DROP SUBSCRIPTION "{SUBSCRIPTION}"'
                    )
        async with await connect(url) as admin:
            await admin.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                f" WHERE database = '{DATABASE}' AND NOT active"
            )
            await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")

    await drop()
    async with await connect(url) as admin:
        await admin.execute(f"CREATE DATABASE {DATABASE}")
        server_version = str(await admin.fetchval("SHOW server_version"))
    try:
        progress.step(f"{CLIENTS} clients, {args.rows:,} 1-row transactions per run")
        results = await _measure(db_url, args, progress)
    finally:
        await drop()
    return results | {"server_version": server_version}


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    with postgres(progress) as target:
        results = trio.run(_bench, target.url, args, progress)
    measurement = Measurement(
        figure=f"{CLIENTS} clients, 1-row transactions: logical publisher (peer: direct writer)",
        unit="tx/s",
        ours=tuple(results["ours"]),
        peer=tuple(results["peer"]),
        target=TARGET,
    )
    cpu = results["cpu"]
    stats = results["stats"]
    facts |= {
        "PostgreSQL": f"{results['server_version']} ({target.description})",
        "Peer": "the direct writer (direct_writes), 4 connections, same process",
        "Service CPU per transaction, ours / peer (least of the runs)": (
            f"{min(cpu['ours']) * 1e3:.2f} ms / {min(cpu['peer']) * 1e3:.2f} ms"
        ),
        "Publisher": (
            f"{stats.applied:,} transactions applied, {stats.sent:,} sent,"
            f" {stats.streams} stream(s), {stats.rejected} rejected"
        ),
    }
    report = Report(
        name=NAME,
        title="Client writes (logical_replication): the publisher against the direct writer",
        description=DESCRIPTION.format(
            clients=CLIENTS, per_client=args.rows // CLIENTS, repeat=args.repeat
        ),
        peer="peer",
        measurements=(measurement,),
        command=command_line([NAME, *argv]),
        settings=f"{args.rows:,} transactions per run, best of {args.repeat} runs per side",
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    else:
        progress.step("not recorded in benches/RESULTS.md (--quick; --record to write it)")
    return 0 if report.passed else 1
