"""The collector of finished sessions: garbage collected in bounded time when many leave."""

from __future__ import annotations

import time

import pytest

from electric_trio.satellite import _collect
from electric_trio.satellite._collect import SessionCollector


def test_a_crowd_leaving_at_once_costs_few_collections(monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 sessions ending back to back (a load balancer draining the node): each
    collection takes 10 ms here, so a collection every 50 sessions would be 200 of them (2 s
    of a held event loop); spaced by their cost, the burst pays for one or two."""
    runs: list[float] = []

    def slow_collect() -> int:
        runs.append(time.monotonic())
        time.sleep(0.01)
        return 0

    monkeypatch.setattr(_collect.gc, "collect", slow_collect)
    collector = SessionCollector()
    for left in range(10_000, 0, -1):
        collector.finished(left - 1)
    assert 1 <= collector.collections == len(runs) < 5


def test_collections_resume_once_the_spacing_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_collect.gc, "collect", lambda: 0)
    collector = SessionCollector(minimum=10, spacing=0.0)
    for _ in range(100):
        collector.finished(0)
    assert collector.collections == 10
