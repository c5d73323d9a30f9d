"""Postgres shutting down ends the replication stream with CommandComplete (its walsender sends
``COPY 0`` and exits, with no CopyDone): the reader takes it as the end it is, logs it plainly
and starts over, instead of reporting a protocol error ("unexpected message 'C'"). Runs a
Postgres of its own (the session's is shared); marked slow, as the other tests that do."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import trio
from test_satellite_protocol import start_service

from electric_trio._log import LogfmtFormatter
from electric_trio.pg.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


async def test_a_shutdown_ends_the_stream_plainly(tmp_path: Path) -> None:
    logger = logging.getLogger("electric_trio")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with EmbeddedPostgres(tmp_path / "data", port=_free_port(), fast=True) as pg:
            async with trio.open_nursery() as nursery:
                await start_service(nursery, pg.url)
                await trio.to_thread.run_sync(pg.stop)  # a fast shutdown
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
