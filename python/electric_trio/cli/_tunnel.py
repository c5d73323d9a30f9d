"""``electric-trio proxy-tunnel``: runs :func:`electric_trio.proxy.run_tunnel` until interrupted."""

from __future__ import annotations

import sys
from functools import partial

import trio

from .._log import configure_logging
from ..proxy import run_tunnel
from ..proxy._tunnel import tunnel_url

__all__ = ["proxy_tunnel"]


def proxy_tunnel(service: str, local_port: int) -> int:
    """Exit status: 0 after Ctrl-C, 2 for a bad URL, 1 when the port cannot be opened."""
    try:
        tunnel_url(service)
    except ValueError as e:
        print(f"electric-trio: error: {e}", file=sys.stderr)
        return 2
    configure_logging("info")
    print(f"ElectricSQL proxy tunnel listening on port {local_port}", flush=True)
    try:
        trio.run(partial(run_tunnel, service, local_port))
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        print(f"electric-trio: error: cannot listen on port {local_port}: {e}", file=sys.stderr)
        return 1
    return 0
