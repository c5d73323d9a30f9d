"""``GET /metrics``: the service's state in the Prometheus text format (version 0.0.4).

Values are read from the running parts when scraped; a part that is not running (or not built
into this service) leaves its metrics out rather than reporting zeros. The replication lag and
the WAL the main slot retains come from Postgres, asked at each scrape on a short-lived
connection (bounded by a timeout; left out when Postgres does not answer).

- ``electric_satellite_clients``: clients connected on ``/ws`` now;
- ``electric_transactions_from_postgres_total``: transactions read from the replication slot;
- ``electric_transactions_from_clients_total``: client transactions written to Postgres;
- ``electric_replication_lag_bytes`` / ``electric_replication_lag_seconds``: WAL Postgres has
  written that the service has not confirmed, and how old the newest transaction received is
  while there is such WAL (0 when caught up);
- ``electric_slot_retained_wal_bytes``: WAL the main slot keeps from being recycled;
- ``electric_proxy_sessions`` / ``electric_proxy_sessions_total``: migrations-proxy sessions
  open now and since start.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import trio

from ..errors import ElectricError
from ._router import Request, Response

if TYPE_CHECKING:
    from ..service import Service

__all__ = ["CONTENT_TYPE", "MetricsApi", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PG_TIMEOUT = 5.0
_PG_EPOCH_US = 946_684_800_000_000

Sample = tuple[str, str, str, float]  # name, type, help, value


def render(samples: Iterable[Sample]) -> str:
    """The text format: ``# HELP``, ``# TYPE`` and the value of each metric."""
    lines = []
    for name, kind, help_text, value in samples:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        number = repr(float(value)) if value != int(value) else str(int(value))
        lines.append(f"{name} {number}")
    return "\n".join(lines) + "\n"


class MetricsApi:
    """Routes ``/metrics``; a :class:`~electric_trio.service.Subsystem` with nothing to run."""

    name = "metrics"

    def __init__(self) -> None:
        self._service: Service | None = None

    def install(self, service: Service) -> None:
        self._service = service
        service.router.add("/metrics", self._metrics)

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()

    async def _metrics(self, request: Request) -> Response:
        assert self._service is not None
        samples = list(_local_samples(self._service))
        samples.extend(await _postgres_samples(self._service))
        return Response(status=200, body=render(samples).encode(), content_type=CONTENT_TYPE)


def _route_owner(service: Service, path: str) -> Any:
    """The subsystem whose upgrade handler serves ``path`` (None if there is none)."""
    route = getattr(service.router, "_routes", {}).get(path)
    return getattr(getattr(route, "upgrade", None), "__self__", None)


def _local_samples(service: Service) -> Iterable[Sample]:
    server = getattr(_route_owner(service, "/ws"), "server", None)
    clients = getattr(server, "clients", None)
    if clients is not None:
        yield ("electric_satellite_clients", "gauge", "Clients connected on /ws.", len(clients))
    txlog = service.txlog
    if txlog is not None:
        yield (
            "electric_transactions_from_postgres_total",
            "counter",
            "Transactions read from the replication slot.",
            txlog.appended,
        )
    writer = getattr(service, "writer", None)
    statistics = getattr(writer, "statistics", None)
    if callable(statistics):
        written = getattr(statistics(), "transactions", None)
        if isinstance(written, int):
            yield (
                "electric_transactions_from_clients_total",
                "counter",
                "Client transactions written to Postgres.",
                written,
            )
    proxy = getattr(getattr(service, "proxy", None), "server", None)
    if proxy is not None:
        yield (
            "electric_proxy_sessions",
            "gauge",
            "Migrations proxy sessions open now.",
            proxy.sessions_active,
        )
        yield (
            "electric_proxy_sessions_total",
            "counter",
            "Migrations proxy sessions since start.",
            proxy.sessions_total,
        )


async def _postgres_samples(service: Service) -> list[Sample]:
    from ..pg import connect
    from ..replication._slot import main_slot_name
    from ..service import connect_params

    database = service.config.database
    slot = main_slot_name(database.dbname)
    try:
        with trio.fail_after(PG_TIMEOUT):
            async with await connect(connect_params(database)) as conn:
                row = await conn.fetchrow(
                    "SELECT pg_current_wal_lsn() - confirmed_flush_lsn,"
                    " pg_current_wal_lsn() - restart_lsn"
                    " FROM pg_replication_slots WHERE slot_name = $1",
                    slot,
                )
    except (trio.TooSlowError, OSError, ElectricError):  # Postgres away: report the rest
        return []
    if row is None:
        return []
    lag_bytes = max(int(row[0] or 0), 0)
    retained = max(int(row[1] or 0), 0)
    lag_seconds = 0.0
    txlog = service.txlog
    last = txlog.last_lsn if txlog is not None else None
    if lag_bytes > 0 and txlog is not None and last is not None:
        newest = txlog.read_after(last - 1)
        stamp = getattr(newest[-1], "commit_timestamp", None) if newest else None
        if isinstance(stamp, int):
            lag_seconds = max(time.time() - (stamp + _PG_EPOCH_US) / 1e6, 0.0)
    return [
        (
            "electric_replication_lag_bytes",
            "gauge",
            "WAL written by Postgres and not yet confirmed by the service.",
            lag_bytes,
        ),
        (
            "electric_replication_lag_seconds",
            "gauge",
            "Age of the newest transaction received while the service is behind.",
            lag_seconds,
        ),
        (
            "electric_slot_retained_wal_bytes",
            "gauge",
            "WAL the main replication slot keeps from being recycled.",
            retained,
        ),
    ]
