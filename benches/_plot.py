"""The scaling benchmark's plots (matplotlib, PNG), each line of ours beside its peer or limit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OURS = "tab:blue"
PEER = "tab:orange"
LIMIT = "tab:red"


def _save(fig: object, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.tight_layout()
    plt.savefig(path, dpi=110)
    plt.close("all")
    return path


def latency_and_memory(
    path: Path,
    *,
    title: str,
    xlabel: str,
    x: Sequence[float],
    ours_p50: Sequence[float],
    ours_p99: Sequence[float],
    peer_p50: Sequence[float],
    peer_p99: Sequence[float],
    peer_name: str,
    ours_mib: Sequence[float],
    peer_mib: Sequence[float] | None = None,
    limit_mib: float | None = None,
    limit_name: str = "",
    log_x: bool = True,
) -> Path:
    """Two panels: delivery latency p50/p99 (ours and the peer's), server memory (ours, the
    peer's, and a horizontal limit)."""
    fig, (lat, mem) = plt.subplots(1, 2, figsize=(11, 4.2))
    fig.suptitle(title)
    lat.plot(x, ours_p99, "o-", color=OURS, label="ours p99")
    lat.plot(x, ours_p50, "o--", color=OURS, alpha=0.6, label="ours p50")
    lat.plot(x, peer_p99, "s-", color=PEER, label=f"{peer_name} p99")
    lat.plot(x, peer_p50, "s--", color=PEER, alpha=0.6, label=f"{peer_name} p50")
    lat.set_xlabel(xlabel)
    lat.set_ylabel("delivery latency, ms (commit -> client)")
    lat.set_ylim(bottom=0)
    mem.plot(x, ours_mib, "o-", color=OURS, label="ours, server RSS")
    if peer_mib is not None:
        mem.plot(x, peer_mib, "s-", color=PEER, label=f"{peer_name}, server RSS")
    if limit_mib is not None:
        mem.axhline(limit_mib, color=LIMIT, linestyle=":", label=limit_name)
    mem.set_xlabel(xlabel)
    mem.set_ylabel("server memory, MiB (VmRSS)")
    mem.set_ylim(bottom=0)
    for ax in (lat, mem):
        if log_x:
            ax.set_xscale("log")
        ax.set_xticks(list(x), [f"{v:,.0f}" for v in x])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def initial_sync(
    path: Path,
    *,
    rows: Sequence[int],
    seconds: Sequence[float],
    target_rows_per_s: float,
) -> Path:
    """Initial sync time against shape size, with the time the target rate would take."""
    fig, (time_ax, rate_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    fig.suptitle("Initial sync of one shape, one client")
    time_ax.plot(rows, seconds, "o-", color=OURS, label="ours")
    time_ax.plot(
        rows,
        [r / target_rows_per_s for r in rows],
        ":",
        color=LIMIT,
        label=f"target: {target_rows_per_s:,.0f} rows/s",
    )
    time_ax.set_ylabel("seconds, connect -> end of the shape's data")
    rate_ax.plot(rows, [r / s for r, s in zip(rows, seconds, strict=True)], "o-", color=OURS)
    rate_ax.axhline(target_rows_per_s, color=LIMIT, linestyle=":", label="target")
    rate_ax.set_ylabel("rows/s")
    rate_ax.set_ylim(bottom=0)
    for ax in (time_ax, rate_ax):
        ax.set_xscale("log")
        ax.set_xticks(list(rows), [f"{v:,}" for v in rows])
        ax.minorticks_off()
        ax.set_xlabel("rows in the shape")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if len(rows) > 1:
        time_ax.set_yscale("log")
    else:
        time_ax.set_ylim(bottom=0)
    return _save(fig, path)
