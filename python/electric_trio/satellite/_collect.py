"""Freeing the memory of finished sessions.

A session's objects form reference cycles (the session and its inbound half, the closures of
its tasks, its WebSocket's tasks), which only Python's cyclic collector frees. The service runs
that collector seldom (``cli.GC_THRESHOLD``: its oldest generation after hundreds of millions
of allocations), so on a server whose clients come and go, finished sessions, each with its
WebSocket, buffers and codec state, piled up for hours (the soak of issue 8: about a hundred
finished sessions still in memory after six minutes of reconnects). The server therefore asks
for a full collection once the sessions finished since the last one reach a quarter of those
connected, and at least :attr:`SessionCollector.minimum`: the garbage stays a bounded share of
the live sessions, as Python's own rule for its oldest generation intends, and a server whose
clients stay connected never pays for one.
"""

from __future__ import annotations

import gc


class SessionCollector:
    """Counts finished sessions; collects once enough of them are garbage."""

    def __init__(self, minimum: int = 50) -> None:
        self.minimum = minimum
        self._finished = 0
        #: Collections run (for tests and diagnostics).
        self.collections = 0

    def finished(self, connected: int) -> None:
        """A session ended; ``connected``: the sessions still there."""
        self._finished += 1
        if self._finished >= max(self.minimum, connected // 4):
            self._finished = 0
            self.collections += 1
            gc.collect()
