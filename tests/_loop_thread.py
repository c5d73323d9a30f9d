"""A live service in a Trio loop on a thread of its own, for the Hypothesis tests that throw bad
input at it (Hypothesis runs all the examples of a test in one call, so the service cannot be a
per-test Trio fixture): the harness's base class and the body of its module-scoped fixture."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio

from _databases import Server, create_database, drop_database

__all__ = ["LoopHarness", "run_on_thread"]

T = TypeVar("T")
H = TypeVar("H", bound="LoopHarness")


class LoopHarness:
    """Runs :meth:`serve` in a Trio loop on its own thread until :meth:`stop`.

    ``serve`` starts what the tests need, calls :meth:`started`, then sleeps. An error that ends
    the loop is kept in ``error`` for the test's thread to raise.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.token: trio.lowlevel.TrioToken | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop: trio.CancelScope | None = None

    async def serve(self) -> None:
        raise NotImplementedError

    def started(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.ready.set()

    def run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as e:  # reported to the test's thread
            self.error = e
        finally:
            self.ready.set()

    async def _main(self) -> None:
        with trio.CancelScope() as self._stop:
            await self.serve()

    def in_loop(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` in the service's loop, from the test's thread."""
        assert self.token is not None
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def stop(self) -> None:
        if self.token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.cancel, trio_token=self.token)
            except trio.RunFinishedError:  # the loop ended by itself (an error)
                pass


def run_on_thread(
    server: Server, prefix: str, make: Callable[[str], H], *, ready_within: float = 120
) -> Iterator[H]:
    """The body of a fixture: the harness ``make(url)`` of a fresh database, running on a
    thread until the fixture's scope ends; then stopped, and the database dropped."""
    name = trio.run(create_database, server.url, prefix)
    url = server.database_url(name)
    harness = make(url)
    thread = threading.Thread(target=harness.run, name=prefix, daemon=True)
    thread.start()
    try:
        assert harness.ready.wait(ready_within), "the service did not start"
        if harness.error is None:
            yield harness
    finally:
        harness.stop()
        thread.join(timeout=60)
        trio.run(drop_database, server.url, url, name)
    if harness.error is not None:
        raise harness.error
