"""``GET /api/status``: the state of the Postgres connection (server-behaviour.md §9)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ._router import Request, Response, Router

__all__ = ["PgStatus", "add_status_routes"]

PgStatus = Literal["starting", "ready", "failed"]

# The texts (typo included) are what the legacy server answers and what clients may match.
_ANSWERS: dict[PgStatus, Response] = {
    "ready": Response.text(200, "Connection to Postgres is up!"),
    "starting": Response.text(503, "Initializing connection to Posgres..."),
    "failed": Response.text(503, "Database connection failure."),
}


def add_status_routes(router: Router, pg_status: Callable[[], PgStatus]) -> None:
    """Routes ``/api/status`` to an answer built from ``pg_status()`` at each request."""

    async def status(request: Request) -> Response:
        return _ANSWERS[pg_status()]

    router.add("/api/status", status)
