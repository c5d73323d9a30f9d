"""The HTTP port: a small HTTP/1.1 server, its router, and the status endpoint.

Later subsystems add their routes to the service's :class:`Router` before the server starts:
``router.add("/api/migrations", handler)`` for a plain endpoint, and
``router.add("/ws", upgrade=handler)`` to take over WebSocket upgrade requests (the handler gets
the request and a stream replaying it, see :data:`UpgradeHandler`).
"""

from ._router import Handler as Handler
from ._router import Request as Request
from ._router import Response as Response
from ._router import Router as Router
from ._router import UpgradeHandler as UpgradeHandler
from ._server import HttpLimits as HttpLimits
from ._server import HttpServer as HttpServer
from ._server import ReplayStream as ReplayStream
from ._server import serve_http as serve_http
from ._status import PgStatus as PgStatus
from ._status import add_status_routes as add_status_routes

__all__ = [
    "Handler",
    "HttpLimits",
    "HttpServer",
    "PgStatus",
    "ReplayStream",
    "Request",
    "Response",
    "Router",
    "UpgradeHandler",
    "add_status_routes",
    "serve_http",
]
