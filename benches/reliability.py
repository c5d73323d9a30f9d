"""Bad input tried and faults survived: the fuzz targets, the hypothesis bad-input tests and the
fault tests, run longer than CI runs them, with what each tried and what failed counted.

``python -m benches reliability [--fuzz-seconds N] [--examples N]`` (by name only: not part of the
default run, it takes about ``6 x fuzz-seconds`` plus the tests). Nothing here is a speed
figure: the section of RESULTS.md records the number of inputs each check fed the code under
test, the number of faults injected, and the failures (the limit being zero).

* Fuzzing: every libFuzzer target of ``rust/fuzz`` (the Rust parsers of network and user input)
  for ``--fuzz-seconds`` each, through ``rust/fuzz/run.sh``; a crash fails the run.
* Bad input against the live service and the proxy: ``tests/integration/test_bad_input*.py``,
  ``test_security.py`` and ``tests/unit/test_fuzz_native.py`` with ``--examples`` hypothesis
  examples per property (``BAD_INPUT_EXAMPLES``) and fresh random ones (``BAD_INPUT_RANDOM=1``),
  the examples counted from ``--hypothesis-show-statistics``.
* Faults: every ``tests/integration/test_faults*.py`` test, slow ones included, each ending
  with its convergence and no-duplicate checks.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ._harness import Progress, command_line, machine_facts, write_section

NAME = "reliability"
ROOT = Path(__file__).resolve().parent.parent
FUZZ_TARGETS = (
    "pgoutput",
    "pgwire_backend",
    "pgwire_frontend",
    "satellite_frame",
    "satellite_values",
    "shape_filter",
)
BAD_INPUT_TESTS = (
    "tests/integration/test_bad_input.py",
    "tests/integration/test_bad_input_proxy.py",
    "tests/integration/test_security.py",
    "tests/unit/test_fuzz_native.py",
)
_FUZZ_LINE = re.compile(r"^fuzz (\S+): (\d+) runs in (\d+)s \(([\d.]+)/s\), corpus (\d+)", re.M)
_HYPOTHESIS_TEST = re.compile(r"^(\S+::\S+):\s*$", re.M)
_PASSING = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid", re.M)
_OUTCOME = re.compile(r"(\d+) (passed|failed|error|errors|skipped|deselected)")


@dataclasses.dataclass
class Check:
    name: str
    tried: str
    failures: int
    seconds: float
    detail: str = ""


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benches reliability",
        description="Fuzz targets, bad-input properties and fault tests, run long, counted.",
    )
    parser.add_argument("--fuzz-seconds", type=int, default=60, help="per target (default 60)")
    parser.add_argument(
        "--examples", type=int, default=300, help="hypothesis examples per property (300)"
    )
    parser.add_argument("--quick", action="store_true", help="5 s per target, 25 examples")
    parser.add_argument("--record", action="store_true", help="write RESULTS.md even if --quick")
    parser.add_argument("--no-record", action="store_true", help="do not write RESULTS.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.fuzz_seconds, args.examples = 5, 25
    args.record = args.record or not (args.quick or args.no_record)
    return args


def fuzz(seconds: int, progress: Progress) -> list[Check]:
    checks = []
    for target in FUZZ_TARGETS:
        start = time.monotonic()
        done = subprocess.run(
            ["bash", str(ROOT / "rust/fuzz/run.sh"), target, str(seconds)],
            capture_output=True,
            text=True,
            check=False,
        )
        found = _FUZZ_LINE.search(done.stdout)
        runs = int(found.group(2)) if found else 0
        detail = (
            f"{float(found.group(4)):,.0f} inputs/s, corpus {int(found.group(5)):,} inputs"
            if found
            else " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])
        )
        checks.append(
            Check(
                name=f"fuzz `{target}`",
                tried=f"{runs:,} inputs",
                failures=0 if done.returncode == 0 else 1,
                seconds=time.monotonic() - start,
                detail=detail,
            )
        )
        progress.step(f"fuzz {target}: {runs:,} inputs, exit {done.returncode}")
    return checks


def pytest(
    paths: Sequence[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-m",
            "",
            "-q",
            "--hypothesis-show-statistics",
            *paths,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )
    return done, time.monotonic() - start


def _outcomes(output: str) -> dict[str, int]:
    last = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    counts: dict[str, int] = {}
    if last:
        for n, what in _OUTCOME.findall(last[-1]):
            counts[what.rstrip("s") if what == "errors" else what] = int(n)
    return counts


def examples(output: str) -> tuple[int, int]:
    """(properties, examples) from ``--hypothesis-show-statistics``: every passing and failing
    example of the generate phase (the reuse and shrink phases replay known inputs)."""
    properties = len(_HYPOTHESIS_TEST.findall(output))
    total = 0
    for block in output.split("- during generate phase")[1:]:
        found = _PASSING.search(block)
        if found:
            total += int(found.group(1)) + int(found.group(2) or 0)
    return properties, total


def bad_input(n: int, progress: Progress) -> list[Check]:
    done, seconds = pytest(BAD_INPUT_TESTS, {"BAD_INPUT_EXAMPLES": str(n), "BAD_INPUT_RANDOM": "1"})
    counts = _outcomes(done.stdout)
    properties, tried = examples(done.stdout)
    progress.step(f"bad input: {counts}, {tried:,} examples over {properties} properties")
    if done.returncode != 0:
        print(done.stdout[-4000:], file=sys.stderr)
    return [
        Check(
            name="bad input to the live service and proxy, and the native decoders (hypothesis)",
            tried=f"{tried:,} generated inputs over {properties} properties;"
            f" {counts.get('passed', 0)} tests",
            failures=counts.get("failed", 0) + counts.get("error", 0),
            seconds=seconds,
            detail=", ".join(Path(p).name for p in BAD_INPUT_TESTS),
        )
    ]


def faults(progress: Progress) -> list[Check]:
    paths = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests/integration").glob("test_faults*.py")
    )
    done, seconds = pytest(paths, {"CONVERGENCE_RANDOM": "1"})
    counts = _outcomes(done.stdout)
    progress.step(f"faults: {counts}")
    if done.returncode != 0:
        print(done.stdout[-4000:], file=sys.stderr)
    return [
        Check(
            name="fault tests (kill -9, Postgres restarts, cut connections, dropped slots,"
            " slow and away clients), each ending with the convergence check",
            tried=f"{counts.get('passed', 0) + counts.get('failed', 0)} fault scenarios",
            failures=counts.get("failed", 0) + counts.get("error", 0),
            seconds=seconds,
            detail=", ".join(Path(p).name for p in paths),
        )
    ]


def markdown(checks: list[Check], facts: dict[str, str], command: str, settings: str) -> str:
    out = [
        f"## {NAME}: bad input tried and faults survived",
        "",
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        "| check | tried | failures | limit | result | time |",
        "|---|---|--:|--:|---|--:|",
    ]
    out += [
        f"| {c.name} | {c.tried} | {c.failures} | 0 | {'pass' if c.failures == 0 else 'FAIL'}"
        f" | {c.seconds:,.0f} s |"
        for c in checks
    ]
    out += ["", "Details:", ""]
    out += [f"- {c.name}: {c.detail}" for c in checks if c.detail]
    out += ["", "How it was made:", ""]
    out += [f"- Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"]
    out += [f"- Command: `{command}`", f"- Settings: {settings}"]
    out += [f"- {k}: {v}" for k, v in facts.items()]
    return "\n".join(out)


def main(argv: Sequence[str]) -> int:
    args = _parse(argv)
    progress = Progress(NAME)
    facts = machine_facts()
    checks = fuzz(args.fuzz_seconds, progress)
    checks += bad_input(args.examples, progress)
    checks += faults(progress)
    settings = (
        f"{args.fuzz_seconds} s per fuzz target, {args.examples} hypothesis examples per"
        " bad-input property (random, not the CI's derandomized ones), every fault test"
    )
    body = markdown(checks, facts, command_line([NAME, *argv]), settings)
    print(body, flush=True)
    if args.record:
        write_section(NAME, body)
        progress.step("wrote its section of benches/RESULTS.md")
    return 0 if all(c.failures == 0 for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
