"""The ``writes`` subsystem: where accepted client transactions go (server-behaviour.md §3, §7).

``direct_writes``: a :class:`~.direct.DirectWriter` on its own connection, and the ``postgres_1``
subscription of a previous logical-replication run disabled (a failure is only logged: usually
there is none). ``logical_replication``: the logical publisher Postgres subscribes to.
Either becomes ``service.writer``, which the Satellite sessions hand their clients'
transactions to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
import trio

from .._log import get_logger
from ..pg import PgError, connect
from .direct import DirectWriter
from .publisher import LogicalPublisher

__all__ = ["SUBSCRIPTION", "WritesSubsystem"]

if TYPE_CHECKING:
    from ..service import Service

log = get_logger(__name__)

#: The subscription (and origin) name of the original service's connector.
SUBSCRIPTION = "postgres_1"


class WritesSubsystem:
    """Starts the writer of ``ELECTRIC_WRITE_TO_PG_MODE``."""

    name = "writes"

    def install(self, service: Service) -> None:
        pass

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from ..service import connect_params

        mode = service.config.write_to_pg_mode
        async with trio.open_nursery() as nursery:
            if mode == "direct_writes":
                writer = DirectWriter(connect_params(service.config.database))
                await nursery.start(writer.run)
                await _disable_subscription(service)
                service.writer = writer
            else:
                publisher = LogicalPublisher(service)
                await nursery.start(publisher.run)
                service.writer = publisher
            log.info("writes started", mode=mode)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                service.writer = None


async def _disable_subscription(service: Service) -> None:
    from ..service import connect_params

    params = msgspec.structs.replace(
        connect_params(service.config.database), application_name="electric-trio writes"
    )
    try:
        with trio.fail_after(params.connect_timeout + 10):
            async with await connect(params) as conn:
                await conn.execute(f'ALTER SUBSCRIPTION "{SUBSCRIPTION}" DISABLE')
        log.info("subscription disabled", subscription=SUBSCRIPTION)
    except (PgError, OSError, trio.TooSlowError) as e:
        message = e.message if isinstance(e, PgError) else str(e)
        log.info("could not disable the subscription", subscription=SUBSCRIPTION, error=message)
