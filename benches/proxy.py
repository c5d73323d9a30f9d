"""The migrations proxy and its tunnel against a direct connection to the same Postgres.

Two figures, each measured through the service and directly in the same run:

* ``pgbench -S`` (select-only, the built-in script: one ``SELECT abalance ... WHERE aid = :aid``
  per transaction, simple protocol), 8 clients on 2 threads, ``--seconds`` each run, against
  the proxy (migration mode: every statement goes through the Postgres parser) and against
  Postgres; transactions per second as pgbench reports them (without connection time);
* a COPY of ``--megabytes`` MB of text (``\\copy ... FROM`` a file, by ``psql``) through the
  proxy tunnel (``electric-trio proxy-tunnel`` in its own process -> WebSocket ``/proxy`` on the
  service's HTTP port -> the proxy -> Postgres) and directly; MB/s of COPY data.

The service runs in this process with only the proxy subsystem; pgbench, psql and the tunnel
are child processes. Everything shares the machine. Runs alternate which side goes first.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import psycopg
import trio

from electric_trio.config import Config
from electric_trio.pg.embedded import default_bindir
from electric_trio.proxy import ProxySubsystem
from electric_trio.service import Service, serve

from ._harness import Measurement, Progress, Report, command_line, machine_facts, write_section

NAME = "proxy"
PGBENCH_TARGET = 0.5
COPY_TARGET = 0.5
PASSWORD = "bench-proxy"
TABLE = "electric_bench_proxy_copy"

DESCRIPTION = """\
*pgbench -S*: pgbench's built-in select-only script (one `SELECT abalance FROM pgbench_accounts
WHERE aid = :aid` per transaction, simple protocol), scale {scale}, 8 clients on 2 threads,
{seconds} s per run, through the migrations proxy (user `postgres`, i.e. migration mode: every
statement is parsed) against straight to Postgres; transactions/s as pgbench reports them. *COPY
through the tunnel*: `psql -c "\\copy {table} FROM file"` of {megabytes} MB of text rows, through
`electric-trio proxy-tunnel` (its own process) -> WebSocket `/proxy` on the HTTP port -> the proxy
-> Postgres, against psql straight to Postgres; MB/s of COPY data (the table is emptied before
each run). The service runs with only its proxy subsystem; pgbench, psql and the tunnel are child
processes; Postgres, the service and the clients share the machine. {repeat} runs per side,
alternating which side goes first; the best run of each side is the figure.
"""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benches proxy",
        description="pgbench -S and a COPY through the migrations proxy against direct.",
    )
    parser.add_argument("--seconds", type=int, default=10, help="pgbench run length (10)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (10)")
    parser.add_argument("--megabytes", type=int, default=100, help="COPY size in MB (100)")
    parser.add_argument("--repeat", type=int, help="timed runs per side (default 3)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 20 MB, 1 run per side")
    parser.add_argument("--record", action=argparse.BooleanOptionalAction)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.megabytes = 3, 20
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.record is None:
        args.record = not args.quick
    return args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with(url: str, **parts: str | int) -> str:
    u = urllib.parse.urlsplit(url)
    user = parts.get("user", u.username or "postgres")
    password = parts.get("password", u.password or "")
    host = parts.get("host", u.hostname or "localhost")
    port = parts.get("port", u.port or 5432)
    netloc = f"{user}:{urllib.parse.quote(str(password))}@{host}:{port}"
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, "sslmode=disable", ""))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _pgbench(url: str, seconds: int) -> tuple[float, float]:
    """Transactions per second, and this process's CPU time (the service's) per transaction
    in microseconds: a figure that other load on the machine does not move much."""
    cpu = _cpu_seconds()
    done = await trio.run_process(
        [
            str(default_bindir() / "pgbench"),
            "-S",
            "-n",
            "-c",
            "8",
            "-j",
            "2",
            "-T",
            str(seconds),
            url,
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    cpu = _cpu_seconds() - cpu
    text = done.stdout.decode()
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    count = re.search(r"actually processed: ([0-9]+)", text)
    if done.returncode != 0 or match is None or count is None:
        raise RuntimeError(f"pgbench failed:\n{text}\n{done.stderr.decode()}")
    return float(match.group(1)), cpu / max(int(count.group(1)), 1) * 1e6


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLE}")


async def _copy(url: str, path: Path, size: int) -> float:
    await trio.to_thread.run_sync(_truncate, url)
    start = time.perf_counter()
    done = await trio.run_process(
        [
            str(default_bindir() / "psql"),
            url,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f"\\copy {TABLE} FROM '{path}'",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"psql COPY failed:\n{done.stderr.decode()}")
    return size / 1e6 / elapsed


def _write_copy_file(path: Path, megabytes: int) -> int:
    row = "x" * 90
    with path.open("w") as f:
        written, i = 0, 0
        while written < megabytes * 1_000_000:
            line = f"{i}\t{row}\n"
            f.write(line)
            written += len(line)
            i += 1
    return written


async def _measure(
    url: str, args: argparse.Namespace, progress: Progress, copy_file: Path, copy_size: int
) -> list[Measurement]:
    config = Config.from_env(
        {
            "DATABASE_URL": url,
            "HTTP_PORT": "0",
            "PG_PROXY_PORT": "http:0",
            "PG_PROXY_PASSWORD": PASSWORD,
            "AUTH_MODE": "insecure",
            "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes",
            "LOG_LEVEL": "warning",
        }
    )
    proxy = ProxySubsystem(port=0)
    async with trio.open_nursery() as nursery:
        service: Service = await nursery.start(
            partial(serve, config, subsystems=[proxy], handle_signals=False)
        )
        await service.wait_ready()
        assert proxy.port is not None
        direct = _with(url)
        proxied = _with(url, user="postgres", password=PASSWORD, host="127.0.0.1", port=proxy.port)
        tunnel_port = _free_port()
        tunnelled = _with(proxied, port=tunnel_port)
        tunnel = await nursery.start(
            partial(
                trio.run_process,
                [
                    str(Path(sys.executable).parent / "electric-trio"),
                    "proxy-tunnel",
                    "--service",
                    f"http://127.0.0.1:{service.http_port}",
                    "--local-port",
                    str(tunnel_port),
                ],
                stdout=trio.lowlevel.FdStream(os.dup(sys.stderr.fileno())),
                check=False,
            )
        )
        with trio.fail_after(30):
            while True:
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", tunnel_port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.1)
        ours_tps: list[float] = []
        peer_tps: list[float] = []
        ours_copy: list[float] = []
        peer_copy: list[float] = []
        progress.step("warm-up: pgbench 2 s each way")
        await _pgbench(direct, 2)
        await _pgbench(proxied, 2)
        for i in range(args.repeat):
            order = [(proxied, ours_tps), (direct, peer_tps)]
            for target, runs in order if i % 2 == 0 else order[::-1]:
                tps, cpu = await _pgbench(target, args.seconds)
                runs.append(tps)
                if runs is ours_tps:
                    progress.step(f"pgbench -S proxy: {tps:,.0f} tps, service CPU {cpu:.1f} us/tx")
                else:
                    progress.step(f"pgbench -S direct: {tps:,.0f} tps")
        for i in range(args.repeat):
            order = [(tunnelled, ours_copy), (direct, peer_copy)]
            for target, runs in order if i % 2 == 0 else order[::-1]:
                runs.append(await _copy(target, copy_file, copy_size))
                side = "tunnel" if runs is ours_copy else "direct"
                progress.step(f"COPY {copy_size / 1e6:.0f} MB {side}: {runs[-1]:,.1f} MB/s")
        tunnel.terminate()
        nursery.cancel_scope.cancel()
    return [
        Measurement(
            "pgbench -S, tps (proxy vs direct)",
            "tps",
            tuple(ours_tps),
            tuple(peer_tps),
            PGBENCH_TARGET,
        ),
        Measurement(
            "COPY in, MB/s (tunnel vs direct)",
            "MB/s",
            tuple(ours_copy),
            tuple(peer_copy),
            COPY_TARGET,
        ),
    ]


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    from ._harness import postgres

    with postgres(progress) as target, tempfile.TemporaryDirectory() as tmp:
        copy_file = Path(tmp) / "copy.tsv"
        copy_size = _write_copy_file(copy_file, args.megabytes)
        with psycopg.connect(target.url, autocommit=True) as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
            conn.execute(f"CREATE UNLOGGED TABLE {TABLE} (id int8, payload text)")
        progress.step(f"PostgreSQL {server_version}; pgbench -i -s {args.scale}")
        import subprocess

        subprocess.run(
            [str(default_bindir() / "pgbench"), "-i", "-q", "-s", str(args.scale), target.url],
            check=True,
            capture_output=True,
        )
        try:
            measurements = trio.run(_measure, target.url, args, progress, copy_file, copy_size)
        finally:
            with psycopg.connect(target.url, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
                conn.execute(
                    "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history,"
                    " pgbench_tellers"
                )
    facts |= {"PostgreSQL": f"{server_version} ({target.description})"}
    report = Report(
        name=NAME,
        title="migrations proxy and tunnel against direct",
        description=DESCRIPTION.format(
            scale=args.scale,
            seconds=args.seconds,
            megabytes=args.megabytes,
            repeat=args.repeat,
            table=TABLE,
        ),
        peer="direct",
        measurements=tuple(measurements),
        command=command_line(),
        settings=(
            f"pgbench -S -c 8 -j 2 -T {args.seconds}, scale {args.scale}; COPY of"
            f" {copy_size / 1e6:.0f} MB; best of {args.repeat} runs per side"
        ),
        facts=facts,
    )
    print(report.to_text(), flush=True)
    if args.record:
        write_section(NAME, report.to_markdown())
        progress.step("wrote its section of benches/RESULTS.md")
    return 0 if report.passed else 1
