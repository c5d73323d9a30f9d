"""The soak's memory samples and its leak rule (pure logic, unit-tested)."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence

#: Samples of a process's first seconds are its warm-up (start, replay, clients reconnecting).
WARMUP_S = 30.0
#: A leak: RSS still rising by more than MAX_SLOPE MiB per minute over the run's last two
#: thirds (the least-squares slope of the steady samples; the first third is left to the
#: warm-up of caches and of the transaction log up to its bound), or the median RSS of the
#: last third above the first third's by more than MAX_RATIO.
MAX_RATIO = 1.05
MAX_SLOPE = 0.25


@dataclasses.dataclass(frozen=True)
class Sample:
    t: float
    """Seconds since the soak started."""
    pid: int
    mib: float


@dataclasses.dataclass(frozen=True)
class Verdict:
    first_mib: float
    last_mib: float
    samples: int
    slope: float
    """MiB per minute over the last two thirds."""
    leaked: bool

    @property
    def ratio(self) -> float:
        return self.last_mib / self.first_mib


def steady(samples: Sequence[Sample], warmup: float = WARMUP_S) -> list[Sample]:
    """The samples taken after their process's warm-up (each restart starts a new process)."""
    born: dict[int, float] = {}
    for s in samples:
        born.setdefault(s.pid, s.t)
    return [s for s in samples if s.t - born[s.pid] >= warmup]


def verdict(samples: Sequence[Sample], warmup: float = WARMUP_S) -> Verdict:
    """The rule: of the steady samples (:func:`steady`), the median of those in the last third
    of their time span against the median of those in the first third, and the slope over
    the last two thirds; a leak when the ratio is above MAX_RATIO or the slope above
    MAX_SLOPE."""
    kept = steady(samples, warmup)
    if len(kept) < 3:
        raise ValueError(f"too few steady samples to judge ({len(kept)})")
    start, end = kept[0].t, kept[-1].t
    third = (end - start) / 3
    first = [s.mib for s in kept if s.t <= start + third] or [kept[0].mib]
    last = [s.mib for s in kept if s.t >= end - third] or [kept[-1].mib]
    a, b = statistics.median(first), statistics.median(last)
    slope = slope_mib_per_min([s for s in kept if s.t >= start + third])
    leaked = b > a * MAX_RATIO or slope > MAX_SLOPE
    return Verdict(a, b, len(kept), slope, leaked)


def slope_mib_per_min(samples: Sequence[Sample]) -> float:
    """The least-squares slope of RSS over time (MiB per minute), 0 with fewer than 2 times."""
    if len({s.t for s in samples}) < 2:
        return 0.0
    return statistics.linear_regression([s.t / 60 for s in samples], [s.mib for s in samples])[0]


def process_slopes(samples: Sequence[Sample], warmup: float = WARMUP_S) -> list[float]:
    """Each service process's slope (MiB per minute) over its steady samples, in start order."""
    by_pid: dict[int, list[Sample]] = {}
    for s in steady(samples, warmup):
        by_pid.setdefault(s.pid, []).append(s)
    return [slope_mib_per_min(points) for points in by_pid.values() if len(points) >= 2]


def plot(path: object, samples: Sequence[Sample], events: Sequence[tuple[float, str]]) -> None:
    """RSS over time, one line segment per service process, faults as vertical marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots(figsize=(11, 4.2))
    pids: list[int] = []
    for s in samples:
        if s.pid not in pids:
            pids.append(s.pid)
    for i, pid in enumerate(pids):
        points = [s for s in samples if s.pid == pid]
        ax.plot(
            [s.t / 60 for s in points],
            [s.mib for s in points],
            "-",
            color="tab:blue",
            label="service RSS (one segment per process)" if i == 0 else None,
        )
    colors = {"kill -9": "tab:red", "SIGTERM": "tab:orange", "postgres restart": "tab:purple"}
    seen: set[str] = set()
    for t, kind in events:
        if kind in colors:
            ax.axvline(
                t / 60,
                color=colors[kind],
                linestyle=":",
                label=kind if kind not in seen else None,
            )
            seen.add(kind)
    ax.set_xlabel("minutes")
    ax.set_ylabel("service memory, MiB (VmRSS)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("soak: the service's RSS over time")
    from pathlib import Path

    out = Path(str(path))
    out.parent.mkdir(parents=True, exist_ok=True)
    plt.tight_layout()
    plt.savefig(out, dpi=110)
    plt.close("all")
