# ruff: noqa: F811 (the fixture comes from test_faults_pg_restart)
"""Postgres shutting down ends the replication stream with CommandComplete (its walsender sends
``COPY 0`` and exits, with no CopyDone): the reader takes it as the end it is, logs it plainly
and starts over, instead of reporting a protocol error ("unexpected message 'C'"). Runs a
Postgres of its own (the session's is shared); marked slow, as the other tests that do."""

from __future__ import annotations

import logging

import pytest
import trio
from test_faults_pg_restart import own_pg  # noqa: F401 (fixture)
from test_satellite_protocol import start_service

from electric_trio._log import LogfmtFormatter
from electric_trio.pg import connect
from electric_trio.pg.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow


class _Lines(logging.Handler):
    """The service's log lines as it writes them; ``restarting`` is set at the reader's
    restart."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(LogfmtFormatter())
        self.lines: list[str] = []
        self.restarting = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if "replication stopped; restarting" in self.lines[-1]:
            self.restarting.set()


async def _settled(url: str) -> None:
    """Until the service streams and none of its ordinary connections runs a query. A fast
    shutdown ends such a query with FATAL 57P01, which restarts the reader for that reason
    instead (its slot keeper queries right after the stream starts: under load, this test
    stopped Postgres in the middle of it)."""
    async with await connect(url) as c:
        with trio.fail_after(30):
            while not await c.fetchval(  # noqa: ASYNC110 (no event to wait on)
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            ) or await c.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND state <> 'idle' AND pid <> pg_backend_pid()"
            ):
                await trio.sleep(0.01)


async def test_a_shutdown_ends_the_stream_plainly(own_pg: EmbeddedPostgres) -> None:
    logger = logging.getLogger("electric_trio")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with trio.open_nursery() as nursery:
            await start_service(nursery, own_pg.url)
            await _settled(own_pg.url)
            await trio.to_thread.run_sync(own_pg.stop)  # a fast shutdown
            with trio.fail_after(30):
                await handler.restarting.wait()
            nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = handler.lines
    ended = [line for line in lines if "Postgres ended the replication stream" in line]
    assert ended, "\n".join(lines)
    assert "level=info" in ended[0]
    assert not [line for line in lines if "unexpected message" in line]
