"""The migrations proxy (server-behaviour.md §4-5, §10) and the proxy tunnel.

:class:`ProxySubsystem` runs a Postgres-protocol listener on ``PG_PROXY_PORT`` in front of
``DATABASE_URL``: migration tools connect to it as to Postgres, and DDL on electrified tables is
checked, captured and versioned on its way through. With ``PG_PROXY_PORT=http[:<port>]`` the
same proxy is reachable over the ``/proxy`` WebSocket of the HTTP port, which
:func:`run_tunnel` (``electric-trio proxy-tunnel``) turns back into a local TCP port.
"""

from ._server import ProxyServer as ProxyServer
from ._server import ProxySubsystem as ProxySubsystem
from ._tunnel import run_tunnel as run_tunnel

__all__ = ["ProxyServer", "ProxySubsystem", "run_tunnel"]
