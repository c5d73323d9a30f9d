"""``/api/status`` says ready only once every subsystem has started: clients that connected as
soon as it said so, while the writer was still setting up (the logical publisher's subscription
under load), had their transactions dropped ("no writer")."""

from __future__ import annotations

from functools import partial

import trio
from test_service import get_status, make_config

from electric_trio.service import Service, serve


class _Gated:
    """A subsystem that starts when the test says so."""

    name = "gated"

    def __init__(self) -> None:
        self.running = trio.Event()
        self.go = trio.Event()

    def install(self, service: Service) -> None:
        pass

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.running.set()
        await self.go.wait()
        task_status.started()
        await trio.sleep_forever()


async def test_not_ready_before_every_subsystem_started(pg_url: str, nursery: trio.Nursery) -> None:
    gated = _Gated()
    service: Service = await nursery.start(
        partial(serve, make_config(pg_url), subsystems=[gated], handle_signals=False)
    )
    with trio.fail_after(30):
        await gated.running.wait()
    assert service.postgres.state == "ready"  # connected, one subsystem still starting
    assert (await get_status(service.http_port))[0] == 503
    gated.go.set()
    with trio.fail_after(30):
        await service.wait_ready()
    assert (await get_status(service.http_port))[0] == 200
