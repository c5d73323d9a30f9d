"""What every benchmark shares: result records, the results file, the server and the machine.

A benchmark measures each figure on our side and on a named peer in the same run, against the
same server, and reports :class:`Measurement` records gathered in a :class:`Report`. The report
is printed as a table and written to its own section of ``benches/RESULTS.md``
(:func:`write_section` leaves the other sections alone).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import trio

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = Path(__file__).resolve().with_name("RESULTS.md")

INTRO = """\
# Benchmark results

Every figure here is compared against a named peer doing the same work, measured in the same
run, on the same machine, against the same server and the same data. The ratio ours/peer is
the result; the absolute rates depend on the machine. Each section below is rewritten by the
command it names (`python -m benches NAME`, or `./run bench NAME`), which also prints it.
"""


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One figure: the rate of every timed run on our side and on the peer's (higher is better).

    The figure is the best run of each side; ``target`` is the least ratio ours/peer that passes.
    With ``higher_is_better=False`` (latencies, memory) the best run is the least value and
    ``target`` is the greatest ratio ours/peer that passes.
    """

    figure: str
    unit: str
    ours: tuple[float, ...]
    peer: tuple[float, ...]
    target: float
    higher_is_better: bool = True
    peer_name: str | None = None
    """Who the peer is for this figure, when not the report's peer."""

    def __post_init__(self) -> None:
        if not self.ours or not self.peer:
            raise ValueError(f"{self.figure}: every side needs at least one run")

    @property
    def best_ours(self) -> float:
        return max(self.ours) if self.higher_is_better else min(self.ours)

    @property
    def best_peer(self) -> float:
        return max(self.peer) if self.higher_is_better else min(self.peer)

    @property
    def ratio(self) -> float:
        return self.best_ours / self.best_peer

    @property
    def passed(self) -> bool:
        if self.higher_is_better:
            return self.ratio >= self.target
        return self.ratio <= self.target

    @property
    def target_text(self) -> str:
        """``>= 1.00``, or ``<= 1.00`` when lower is better."""
        return f"{'>=' if self.higher_is_better else '<='} {self.target:.2f}"


@dataclasses.dataclass(frozen=True)
class Report:
    """The outcome of one benchmark run, with what is needed to reproduce and judge it."""

    name: str
    title: str
    description: str
    peer: str
    """The peer's short name, used in column headers (``psycopg``)."""
    measurements: tuple[Measurement, ...]
    command: str
    settings: str
    facts: dict[str, str]
    date: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC)
    )

    def __post_init__(self) -> None:
        if _collected is not None:
            _collected.append(self)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.measurements)

    def _table(self) -> tuple[list[str], list[list[str]]]:
        units = {m.unit for m in self.measurements}
        if len(units) <= 1:
            unit = next(iter(units), "")
            header = ["figure", f"ours {unit}", f"{self.peer} {unit}", f"ours/{self.peer}"]
        else:  # figures in different units: each value carries its own
            header = ["figure", "ours", "peer", "ours/peer"]

        def value(v: float, unit: str) -> str:
            return _number(v) if len(units) <= 1 else f"{_number(v)} {unit}"

        header += ["target", "result"]
        rows = [
            [
                m.figure,
                value(m.best_ours, m.unit),
                value(m.best_peer, m.unit),
                f"{m.ratio:.2f}",
                m.target_text,
                "pass" if m.passed else "FAIL",
            ]
            for m in self.measurements
        ]
        return header, rows

    def _spread(self) -> list[str]:
        def runs(values: tuple[float, ...]) -> str:
            return ", ".join(_number(v) for v in values)

        return [
            f"{m.figure} ({m.unit}): ours {runs(m.ours)}; {m.peer_name or self.peer} {runs(m.peer)}"
            for m in self.measurements
        ]

    def to_text(self) -> str:
        """The report for a terminal: an aligned table, every run, the command and the facts."""
        header, rows = self._table()
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        numeric = {1, 2, 3}

        def line(cells: list[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        out = [self.title, "", line(header), line(["-" * w for w in widths])]
        out += [line(r) for r in rows]
        out += ["", "every run, in order:", *(f"  {s}" for s in self._spread())]
        out += ["", f"command:  {self.command}", f"settings: {self.settings}"]
        out += [f"date:     {self.date:%Y-%m-%d %H:%M} UTC"]
        out += [f"{k}: {v}" for k, v in self.facts.items()]
        return "\n".join(out)

    def to_markdown(self) -> str:
        """The body of this benchmark's section of RESULTS.md (without the markers)."""
        header, rows = self._table()
        align = ["---", "--:", "--:", "--:", "--:", "---"]
        out = [f"## {self.name}: {self.title}", "", self.description.strip(), ""]
        out += ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        out += ["", "Every timed run, in order:", ""]
        out += [f"- {s}" for s in self._spread()]
        out += ["", "How it was made:", ""]
        out += [f"- Date: {self.date:%Y-%m-%d %H:%M} UTC", f"- Command: `{self.command}`"]
        out += [f"- Settings: {self.settings}"]
        out += [f"- {k}: {v}" for k, v in self.facts.items()]
        return "\n".join(out)


def _number(v: float) -> str:
    """A figure for a table: whole numbers from 10 up, two decimals below."""
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.2f}"


_collected: list[Report] | None = None


@contextlib.contextmanager
def collect_reports() -> Iterator[list[Report]]:
    """Every :class:`Report` made while the block runs, in order (``python -m benches``)."""
    global _collected
    saved, _collected = _collected, []
    try:
        yield _collected
    finally:
        _collected = saved


# -- the results file -------------------------------------------------------------------------


def _markers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise ValueError(f"bad benchmark name {name!r}")
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def write_section(name: str, body: str, path: Path = RESULTS_PATH, *, first: bool = False) -> None:
    """Put ``body`` in the section of benchmark ``name`` of the results file.

    The section lies between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; it replaces
    the old one in place, or is appended (with ``first``, put before every other section). A
    missing file is created with the intro.
    """
    start, end = _markers(name)
    section = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else INTRO
    begin = text.find(start)
    other = text.find("<!-- bench:")
    if begin < 0 and first and other >= 0:
        text = text[:other] + section + "\n\n" + text[other:]
    elif begin < 0:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        finish = text.find(end, begin)
        if finish < 0:
            raise ValueError(f"{path}: {start} has no matching {end}")
        text = text[:begin] + section + text[finish + len(end) :]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# -- the server --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PgTarget:
    """The PostgreSQL a benchmark runs against."""

    url: str
    description: str


def _describe_url(url: str) -> str:
    """``user@host:port/db``: the URL without its password."""
    parts = urllib.parse.urlsplit(url)
    db = parts.path.lstrip("/")
    return f"{parts.username or ''}@{parts.hostname or 'localhost'}:{parts.port or 5432}/{db}"


@contextlib.contextmanager
def postgres(progress: Progress) -> Iterator[PgTarget]:
    """``DATABASE_URL`` when set; otherwise an embedded PostgreSQL in a temporary directory.

    The embedded server keeps its durable settings (fsync on): benchmarks are not tests.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        yield PgTarget(url, f"DATABASE_URL, {_describe_url(url)}")
        return
    from electric_trio.pg.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="electric-bench-") as tmp:
        progress.step("starting an embedded PostgreSQL (fsync on)")
        server = EmbeddedPostgres(Path(tmp) / "data", fast=False)
        with server:
            yield PgTarget(server.url, "embedded, fsync on, temporary data directory")
        progress.step("stopped the embedded PostgreSQL")


# -- the machine and the run ------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def _memory() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / (1 << 20):.1f} GiB"
    return "unknown"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


def machine_facts() -> dict[str, str]:
    """Facts about the machine and the software under test; call it before measuring."""
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} cores (os.cpu_count())",
        "Memory": f"{_memory()} (MemTotal)",
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Load average before the run (1, 5, 15 min)": ", ".join(
            f"{x:.2f}" for x in os.getloadavg()
        ),
        "electric-trio commit": _commit(),
    }


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed, in its ``python -m benches ...`` form."""
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", "benches", *args])


class Progress:
    """One line on stderr per step, with the time since the benchmark started (and, under
    ``python -m benches``, the whole run's progress: see :func:`overall_status`)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._start = time.monotonic()

    def step(self, message: str) -> None:
        elapsed = time.monotonic() - self._start
        status = f"{_overall()} " if _overall is not None else ""
        print(f"{status}[{self._name} {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


_overall: Callable[[], str] | None = None


@contextlib.contextmanager
def overall_status(status: Callable[[], str]) -> Iterator[None]:
    """Every :class:`Progress` line starts with ``status()`` while the block runs."""
    global _overall
    saved, _overall = _overall, status
    try:
        yield
    finally:
        _overall = saved


def parse_args(
    argv: Sequence[str],
    *,
    prog: str,
    description: str,
    rows_help: str = "rows",
    quick_rows: int = 200_000,
    full_rows: int = 1_000_000,
) -> argparse.Namespace:
    """The options every benchmark takes: ``--rows``, ``--repeat``, ``--quick``, ``--record``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--rows", type=int, help=f"{rows_help} (default {full_rows:,})")
    parser.add_argument("--repeat", type=int, help="timed runs per side (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help=f"{quick_rows:,} rows, 2 runs per side"
    )
    parser.add_argument(
        "--record",
        action=argparse.BooleanOptionalAction,
        help="write the section of benches/RESULTS.md (default: yes, except with --quick)",
    )
    args = parser.parse_args(argv)
    if args.rows is None:
        args.rows = quick_rows if args.quick else full_rows
    if args.repeat is None:
        args.repeat = 2 if args.quick else 5
    if args.record is None:
        args.record = not args.quick
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    return args


#: How long a benchmark waits for the service it started to be ready (a restart replays the
#: slot's window first).
READY_WITHIN = 120.0


class _Process(Protocol):
    returncode: int | None

    def poll(self) -> int | None: ...


async def wait_ready(port: int, process: _Process) -> None:
    """Until the service on ``port`` answers ``/api/status`` with 200; an error if
    ``process`` (the service's, a ``subprocess.Popen`` or ``trio.Process``) exits first, or
    after :data:`READY_WITHIN` seconds."""
    with trio.fail_after(READY_WITHIN):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with {process.returncode}")
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            except OSError:
                await trio.sleep(0.2)
                continue
            async with stream:
                await stream.send_all(b"GET /api/status HTTP/1.1\r\nhost: x\r\n\r\n")
                head = await stream.receive_some(4096)
            if head.startswith(b"HTTP/1.1 200"):
                return
            await trio.sleep(0.2)
