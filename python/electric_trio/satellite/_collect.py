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

A full collection's cost grows with everything the process holds (about 0.3 s at 10,000
connected clients), and when thousands of clients leave at once the rule above would ask for one
every few dozen sessions: 10,100 sessions ending took 84 s of collections. So a collection also
waits until the time since the last one is :attr:`SessionCollector.spacing` times what that one
took: collections never take more than about 1/spacing of the event loop's time.
"""

from __future__ import annotations

import gc
import time


class SessionCollector:
    """Counts finished sessions; collects once enough of them are garbage."""

    def __init__(self, minimum: int = 50, spacing: float = 20.0) -> None:
        self.minimum = minimum
        self.spacing = spacing
        self._finished = 0
        self._next_allowed = 0.0
        #: Collections run (for tests and diagnostics).
        self.collections = 0

    def finished(self, connected: int) -> None:
        """A session ended; ``connected``: the sessions still there."""
        self._finished += 1
        if self._finished < max(self.minimum, connected // 4):
            return
        now = time.monotonic()
        if now < self._next_allowed:
            return  # the last one was too recent for its cost; a later session's end will do
        self._finished = 0
        self.collections += 1
        gc.collect()
        end = time.monotonic()
        self._next_allowed = end + self.spacing * (end - now)
