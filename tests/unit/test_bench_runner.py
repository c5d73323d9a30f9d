"""``python -m benches`` with no name: the overall progress, the summary and its section; the
frames benchmark's frames against protobuf's classes (when the ``bench`` extra is there).

No benchmark is timed here.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from benches import __main__ as runner
from benches._harness import (
    Measurement,
    Progress,
    Report,
    collect_reports,
    overall_status,
    write_section,
)


def _report(measurements: tuple[Measurement, ...]) -> Report:
    return Report(
        name="demo",
        title="a demo",
        description="Counts things.",
        peer="peer",
        measurements=measurements,
        command="python -m benches demo",
        settings="",
        facts={"PostgreSQL": "18.6 (embedded)"},
    )


def test_lower_is_better_takes_the_least_run_and_a_greatest_ratio() -> None:
    m = Measurement(
        "p99", "ms", ours=(30.0, 20.0), peer=(40.0, 50.0), target=1.0, higher_is_better=False
    )
    assert (m.best_ours, m.best_peer, m.ratio, m.passed) == (20.0, 40.0, 0.5, True)
    assert m.target_text == "<= 1.00"
    worse = Measurement("p99", "ms", ours=(60.0,), peer=(40.0,), target=1.0, higher_is_better=False)
    assert not worse.passed
    assert "| p99 | 60 | 40 | 1.50 | <= 1.00 | FAIL |" in _report((worse,)).to_markdown()


def test_reports_are_collected_only_inside_the_block() -> None:
    m = Measurement("read", "rows/s", ours=(1.0,), peer=(1.0,), target=1.0)
    _report((m,))
    with collect_reports() as reports:
        inside = _report((m,))
    _report((m,))
    assert reports == [inside]


def test_the_summary_goes_before_every_other_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    write_section("pgwire", "## pgwire", path)
    write_section("summary", "## Summary\none", path, first=True)
    write_section("summary", "## Summary\ntwo", path, first=True)
    text = path.read_text()
    assert text.index("<!-- bench:summary -->") < text.index("<!-- bench:pgwire -->")
    assert "two" in text
    assert "one" not in text
    assert text.count("<!-- bench:summary -->") == 1


def test_progress_lines_carry_the_overall_status(capsys: pytest.CaptureFixture[str]) -> None:
    overall = runner.Overall(["a", "b"], [10.0, 30.0])
    overall.begin(1)
    with overall_status(overall.status):
        Progress("b").step("working")
    err = capsys.readouterr().err
    assert "2/2 b" in err
    assert "ETA" in err
    assert err.rstrip().endswith("working")


def test_run_all_summarises_every_figure_and_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = types.ModuleType("good")

    def main(argv: list[str]) -> int:
        assert argv == ["--quick"]
        _report((Measurement("read", "rows/s", ours=(200.0,), peer=(100.0,), target=1.0),))
        return 0

    good.main = main  # type: ignore[attr-defined]
    bad = types.ModuleType("bad")

    def fail(argv: list[str]) -> int:
        raise RuntimeError("no server")

    bad.main = fail  # type: ignore[attr-defined]
    monkeypatch.setattr(runner, "BENCHMARKS", {"good": "good", "bad": "bad"})
    monkeypatch.setattr(
        runner.importlib, "import_module", lambda name: {"good": good, "bad": bad}[name]
    )
    written: list[str] = []
    monkeypatch.setattr(runner, "write_section", lambda name, body, **kw: written.append(body))
    assert runner.run_all(["--quick"]) == 1
    out = capsys.readouterr().out
    assert "good       read" in out
    assert "200 rows/s" in out
    assert "2.00" in out
    assert "error: RuntimeError: no server" in out
    assert "1 of 2 figures pass." in out
    assert "PostgreSQL: 18.6 (embedded)" in out
    assert written == []  # --quick records nothing


def test_frames_encode_as_protobuf_does(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    pytest.importorskip("google.protobuf")
    from benches import frames

    pb = frames.generate_peer(tmp_path)
    request, body = frames.subscribe()
    for case in (
        frames.Case("oplog", frames.oplog(3), None, pb),
        frames.Case("relation", frames.relation(), None, pb),
        frames.Case("rpc", request, body, pb),
    ):
        assert case.ours_encode() == case.peer_encode() == case.frame
        assert case.peer_decode().SerializeToString() == case.frame[1:]


def test_a_full_run_writes_the_summary_first(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = types.ModuleType("bench")

    def main(argv: list[str]) -> int:
        _report((Measurement("read", "rows/s", ours=(50.0,), peer=(100.0,), target=1.0),))
        return 1

    bench.main = main  # type: ignore[attr-defined]
    monkeypatch.setattr(runner, "BENCHMARKS", {"bench": "bench"})
    monkeypatch.setattr(runner.importlib, "import_module", lambda name: bench)
    written: list[tuple[str, str, bool]] = []
    monkeypatch.setattr(
        runner,
        "write_section",
        lambda name, body, first=False: written.append((name, body, first)),
    )
    assert runner.run_all([]) == 1
    [(name, body, first)] = written
    assert (name, first) == ("summary", True)
    assert "| bench | read | 50.0 rows/s | 100 (peer) | 0.50 | >= 1.00 | FAIL |" in body
    assert "- Command: `python -m benches`" in body
    assert "- Memory: " in body


def test_the_soak_runs_only_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m benches`` (and ``--quick``) runs every benchmark but the soak, 30 minutes of
    faults that only its own name starts."""
    assert "soak" not in runner.BENCHMARKS
    ran: list[str] = []
    monkeypatch.setattr(runner, "BENCHMARKS", {"bench": "bench"})
    monkeypatch.setattr(
        runner,
        "_run_one",
        lambda name, options: ran.append(name) or runner.Outcome(name, 0, 0.0, [], None),
    )
    monkeypatch.setattr(runner, "write_section", lambda *a, **kw: None)
    runner.run_all([])
    runner.run_all(["--quick"])
    assert ran == ["bench", "bench"]
    soak = types.ModuleType("soak")
    soak.main = lambda argv: ran.append(f"soak {argv}") or 0  # type: ignore[attr-defined]
    monkeypatch.setattr(runner.importlib, "import_module", lambda name: soak)
    assert runner.main(["soak", "--minutes", "2"]) == 0
    assert ran[-1] == "soak ['--minutes', '2']"


def test_the_soak_leak_rule() -> None:
    from benches._soak_rss import Sample, steady, verdict

    # Two processes (a restart at 100 s): each one's first 30 s are its warm-up.
    flat = [Sample(t, 1 if t < 100 else 2, 80.0 if t % 50 else 300.0) for t in range(0, 300, 2)]
    assert all(s.t >= 30 for s in steady(flat) if s.pid == 1)
    assert all(s.t >= 130 for s in steady(flat) if s.pid == 2)
    judged = verdict(flat)
    assert (judged.first_mib, judged.last_mib, judged.leaked) == (80.0, 80.0, False)
    growing = [Sample(t, 1, 80.0 + t) for t in range(0, 300, 2)]
    assert verdict(growing).leaked
    # A warm-up that levels off (rising 20 MiB in 200 s, flat after) is no leak; a steady
    # rise of 0.5 MiB/min over 30 min is one (under 1.05x, but above the slope).
    minutes = range(0, 1800, 2)
    levels = [Sample(t, 1, 100.0 + min(t, 200) / 10) for t in minutes]
    assert not verdict(levels).leaked
    assert verdict(levels).slope == 0.0
    creeping = [Sample(t, 1, 300.0 + t / 120) for t in minutes]
    assert verdict(creeping).ratio < 1.05
    assert verdict(creeping).leaked
    assert abs(verdict(creeping).slope - 0.5) < 1e-9
