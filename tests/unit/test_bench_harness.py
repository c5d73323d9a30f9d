"""The benchmark harness: result records, the RESULTS.md section writer and the command line.

No benchmark runs here and no figure is judged: timing belongs to ``python -m benches``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from benches import BENCHMARKS
from benches import __main__ as bench_cli
from benches._harness import (
    INTRO,
    Measurement,
    Report,
    command_line,
    write_section,
)


def _report(**changes: object) -> Report:
    fields: dict[str, object] = {
        "name": "demo",
        "title": "a demo",
        "description": "Counts things.",
        "peer": "peer",
        "measurements": (
            Measurement("read", "rows/s", ours=(90.0, 120.0), peer=(100.0, 80.0), target=0.8),
            Measurement("copy", "rows/s", ours=(50.0,), peer=(100.0,), target=0.8),
        ),
        "command": "python -m benches demo",
        "settings": "10 rows, best of 2 runs per side",
        "facts": {"CPU": "some, 2 cores"},
        "date": datetime.datetime(2025, 1, 2, 3, 4, tzinfo=datetime.UTC),
    }
    fields.update(changes)
    return Report(**fields)  # type: ignore[arg-type]


def test_measurement_takes_the_best_run_of_each_side() -> None:
    m = Measurement("read", "rows/s", ours=(90.0, 120.0), peer=(100.0, 80.0), target=0.8)
    assert (m.best_ours, m.best_peer, m.ratio, m.passed) == (120.0, 100.0, 1.2, True)
    low = Measurement("read", "rows/s", ours=(79.0,), peer=(100.0,), target=0.8)
    assert not low.passed
    with pytest.raises(ValueError, match="at least one run"):
        Measurement("read", "rows/s", ours=(), peer=(1.0,), target=0.8)


def test_report_tables_name_the_peer_and_the_outcome() -> None:
    report = _report()
    assert not report.passed
    md = report.to_markdown()
    assert md.startswith("## demo: a demo\n\nCounts things.\n")
    assert "| figure | ours rows/s | peer rows/s | ours/peer | target | result |" in md
    assert "| read | 120 | 100 | 1.20 | >= 0.80 | pass |" in md
    assert "| copy | 50 | 100 | 0.50 | >= 0.80 | FAIL |" in md
    assert "- Command: `python -m benches demo`" in md
    assert "- Date: 2025-01-02 03:04 UTC" in md
    assert "- CPU: some, 2 cores" in md
    text = report.to_text()
    assert "ours/peer" in text
    assert "FAIL" in text
    assert "command:  python -m benches demo" in text


def test_write_section_creates_replaces_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_section("one", "first body", path)
    assert path.read_text() == INTRO + "\n<!-- bench:one -->\nfirst body\n<!-- /bench:one -->\n"

    write_section("two", "second body", path)
    path.write_text(path.read_text() + "\nA note kept by hand.\n")
    write_section("one", "new body\n", path)
    text = path.read_text()
    assert text.startswith(INTRO)
    assert "first body" not in text
    assert text.count("<!-- bench:one -->") == 1
    assert text.index("new body") < text.index("second body") < text.index("A note kept")


def test_write_section_refuses_an_unclosed_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text("<!-- bench:one -->\nhalf a section\n")
    with pytest.raises(ValueError, match="no matching"):
        write_section("one", "body", path)
    assert path.read_text() == "<!-- bench:one -->\nhalf a section\n"
    with pytest.raises(ValueError, match="bad benchmark name"):
        write_section("no spaces", "body", path)


def test_command_line_quotes_arguments() -> None:
    assert command_line(["pgwire", "--rows", "10"]) == "python -m benches pgwire --rows 10"
    assert command_line(["a b"]) == "python -m benches 'a b'"


def test_cli_lists_benchmarks_and_rejects_unknown_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert "pgwire" in BENCHMARKS
    assert bench_cli.main(["--help"]) == 0
    assert "pgwire" in capsys.readouterr().out
    assert bench_cli.main(["nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
