"""A local TCP port for a process a test starts itself (the service, a Postgres)."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port() -> int:
    """A loopback TCP port nothing listens on now (bound, then released; another process
    may still take it before the caller does, which the callers' retries or failures show)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
