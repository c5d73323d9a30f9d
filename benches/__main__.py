"""``python -m benches [NAME] [OPTIONS]``: one benchmark, or every one when no name is given.

Options after the name go to that benchmark (``python -m benches pgwire --help``); without a
name, the options are given to every benchmark (``python -m benches --quick``), every benchmark
runs in turn (on its own embedded PostgreSQL, or ``DATABASE_URL``), every progress line starts
with the whole run's progress, and a summary of every figure ends the run (``--quick`` also
gives some benchmarks smaller sizes, QUICK_EXTRA, to end within 5 minutes). Without ``--quick``
(or with ``--record``) that summary is also written at the top of ``benches/RESULTS.md``, beside
each benchmark's own section.

The service's malloc settings (``electric_trio._malloc``) are applied to this process first:
the parts of ours measured in it (the replication reader, the Postgres client, the codec) run
as they do in the service.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import os
import sys
import time
import traceback
from collections.abc import Sequence

from electric_trio._malloc import fix_thresholds

from . import BENCHMARKS
from ._harness import (
    Report,
    collect_reports,
    command_line,
    machine_facts,
    overall_status,
    write_section,
)

SUMMARY = "summary"
#: Run only when named (``python -m benches soak``): never part of the run of every benchmark.
OPT_IN: dict[str, str] = {"soak": "benches.soak", "reliability": "benches.reliability"}

#: Expected seconds per benchmark, (--quick, full), for the overall progress and its ETA: the
#: --quick ones measured on the 2-core machine of RESULTS.md (load average about 1), the full
#: ones estimated from each benchmark's sizes; a benchmark not listed counts as
#: DEFAULT_ESTIMATE. The ETA scales them by how the finished benchmarks compared.
ESTIMATES: dict[str, tuple[float, float]] = {
    "pgwire": (7, 60),
    "replication": (23, 200),
    "replication-e2e": (5, 150),
    "proxy": (16, 100),
    "writes": (54, 360),
    "fanout": (24, 150),
    "client": (16, 180),
    "publisher": (5, 100),
    "frames": (10, 90),
    "scaling": (37, 430),
    "sync": (25, 200),
}
DEFAULT_ESTIMATE = (60.0, 300.0)
#: With --quick, when every benchmark runs: options that keep the whole run within 5 minutes.
QUICK_EXTRA: dict[str, list[str]] = {"fanout": ["--clients", "300", "--rates", "5"]}


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclasses.dataclass
class Overall:
    """Where the whole run is: which benchmark, how far, elapsed, ETA (from the estimates,
    scaled by how the finished benchmarks compared with theirs)."""

    names: list[str]
    estimates: list[float]
    start: float = dataclasses.field(default_factory=time.monotonic)
    index: int = 0
    bench_start: float = dataclasses.field(default_factory=time.monotonic)
    done_actual: float = 0.0
    done_estimate: float = 0.0
    running: bool = False

    def begin(self, index: int) -> None:
        self.index = index
        self.bench_start = time.monotonic()
        self.running = True

    def end(self) -> None:
        self.done_actual += time.monotonic() - self.bench_start
        self.done_estimate += self.estimates[self.index]
        self.running = False

    def status(self) -> str:
        now = time.monotonic()
        done = self.done_estimate
        # Actual time over estimated time so far (a benchmark that failed at once is no guide).
        speed = max(self.done_actual / done, 0.2) if done else 1.0
        current = self.estimates[self.index] if self.running else 0.0
        in_current = now - self.bench_start if self.running else 0.0
        left_current = max(current * speed - in_current, 0.0)
        left = left_current + sum(self.estimates[self.index + 1 :]) * speed
        total = sum(self.estimates)
        fraction = min((done + min(in_current / speed, current)) / total, 1.0)
        bar = "#" * round(fraction * 20)
        return (
            f"[{bar:<20}] {fraction:4.0%} {self.index + 1}/{len(self.names)}"
            f" {self.names[self.index]}, {_clock(now - self.start)} elapsed,"
            f" ETA {_clock(left)}"
        )


@dataclasses.dataclass(frozen=True)
class Outcome:
    name: str
    status: int
    seconds: float
    reports: list[Report]
    error: str | None


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _rows(outcomes: list[Outcome]) -> list[list[str]]:
    rows = []
    for outcome in outcomes:
        for report in outcome.reports:
            for m in report.measurements:
                rows.append(
                    [
                        outcome.name,
                        m.figure,
                        f"{_number(m.best_ours)} {m.unit}",
                        f"{_number(m.best_peer)} ({m.peer_name or report.peer})",
                        f"{m.ratio:.2f}",
                        m.target_text,
                        "pass" if m.passed else "FAIL",
                    ]
                )
        if outcome.error is not None:
            rows.append([outcome.name, f"error: {outcome.error}", "", "", "", "", "ERROR"])
        elif not outcome.reports:
            rows.append([outcome.name, "no report", "", "", "", "", "ERROR"])
    return rows


HEADER = ["benchmark", "figure", "ours", "peer", "ours/peer", "target", "result"]


def _text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    numeric = {2, 3, 4}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(HEADER), line(["-" * w for w in widths]), *map(line, rows)])


def _markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(HEADER) + " |", "|---|---|--:|--:|--:|--:|---|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _postgres(outcomes: list[Outcome]) -> str:
    for outcome in outcomes:
        for report in outcome.reports:
            if "PostgreSQL" in report.facts:
                return report.facts["PostgreSQL"]
    return "not reported"


def _summary(
    outcomes: list[Outcome], argv: Sequence[str], facts: dict[str, str], seconds: float
) -> tuple[str, str]:
    """The summary as text for the terminal and as the body of its RESULTS.md section."""
    rows = _rows(outcomes)
    passed = sum(r[-1] == "pass" for r in rows)
    date = datetime.datetime.now(datetime.UTC)
    times = ", ".join(f"{o.name} {_clock(o.seconds)}" for o in outcomes)
    about = [
        f"Command: `{command_line(argv)}`",
        f"Date: {date:%Y-%m-%d %H:%M} UTC; the whole run took {_clock(seconds)} ({times})",
        f"PostgreSQL: {_postgres(outcomes)}",
        *(f"{k}: {v}" for k, v in facts.items()),
    ]
    verdict = f"{passed} of {len(rows)} figures pass."
    text = "\n".join(["summary of every benchmark", "", _text(rows), "", verdict, "", *about])
    markdown = "\n".join(
        [
            "## Summary: every figure of the last full run",
            "",
            "Written by `python -m benches` (every benchmark in one go); each benchmark's own"
            " section below has its description, every run and its facts. Ours and the peer"
            " are the best run of each side; for figures where lower is better (latency,"
            " memory) the target is a greatest ratio.",
            "",
            _markdown(rows),
            "",
            verdict,
            "",
            *(f"- {a}" for a in about),
        ]
    )
    return text, markdown


def _run_one(name: str, options: list[str]) -> Outcome:
    start = time.monotonic()
    error = None
    status = 1
    with collect_reports() as reports:
        try:
            module = importlib.import_module(BENCHMARKS[name])
            status = module.main(options)
        except KeyboardInterrupt:
            raise
        except SystemExit as e:
            status = e.code if isinstance(e.code, int) else int(e.code is not None)
            if status:
                error = f"exited with {e.code}"
        except BaseException as e:
            traceback.print_exc()
            # The first exception inside nested exception groups says what happened.
            while isinstance(e, BaseExceptionGroup) and e.exceptions:
                e = e.exceptions[0]
            error = f"{type(e).__name__}: {e}".splitlines()[0][:200]
    return Outcome(name, status, time.monotonic() - start, list(reports), error)


def run_all(options: list[str]) -> int:
    """Every benchmark with ``options``, the overall progress, the summary."""
    quick = "--quick" in options
    record = "--record" in options or not (quick or "--no-record" in options)
    names = list(BENCHMARKS)
    estimates = [ESTIMATES.get(n, DEFAULT_ESTIMATE)[0 if quick else 1] for n in names]
    overall = Overall(names, estimates)
    facts = machine_facts()
    print(
        f"running {len(names)} benchmarks{' (--quick)' if quick else ''}:"
        f" {', '.join(names)}; estimated {_clock(sum(estimates))}"
        f" on PostgreSQL {'from DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded'}",
        file=sys.stderr,
        flush=True,
    )
    outcomes = []
    start = time.monotonic()
    with overall_status(overall.status):
        for i, name in enumerate(names):
            overall.begin(i)
            print(f"{overall.status()} starting", file=sys.stderr, flush=True)
            extra = QUICK_EXTRA.get(name, []) if quick else []
            outcome = _run_one(name, [*options, *extra])
            overall.end()
            outcomes.append(outcome)
            print(
                f"{overall.status()} {name} finished in {_clock(outcome.seconds)}"
                f" (exit status {outcome.status})",
                file=sys.stderr,
                flush=True,
            )
    text, markdown = _summary(outcomes, options, facts, time.monotonic() - start)
    print("\n" + text, flush=True)
    if record:
        write_section(SUMMARY, markdown, first=True)
        print("wrote the summary at the top of benches/RESULTS.md", file=sys.stderr, flush=True)
    else:
        print("summary not recorded in benches/RESULTS.md (--quick)", file=sys.stderr, flush=True)
    return max((o.status for o in outcomes), default=0)


def main(argv: Sequence[str]) -> int:
    fix_thresholds()
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(BENCHMARKS)}; by name only: {', '.join(OPT_IN)}")
        return 0
    if argv and not argv[0].startswith("-"):
        name, *rest = argv
        known = {**BENCHMARKS, **OPT_IN}
        if name not in known:
            print(f"unknown benchmark {name!r}; known: {', '.join(known)}", file=sys.stderr)
            return 2
        module = importlib.import_module(known[name])
        status: int = module.main(rest)
        return status
    return run_all(list(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
