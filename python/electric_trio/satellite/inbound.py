"""The client's half of replication: its ``SatRelation`` and ``SatOpLog`` frames (§7.3).

One :class:`Inbound` per session. Today the client's transactions are accepted once it answered
our ``startReplication`` and dropped, never acknowledged, so the client keeps them in its oplog
(the writes issue fills this in: validation, :class:`~electric_trio.writes.ClientWrite`, the
writer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .messages import SatOpLog, SatRelation

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Inbound"]


class Inbound:
    """Receives one client's relations and transactions."""

    def __init__(self, session: Session) -> None:
        self.session = session

    async def receive(self, message: SatRelation | SatOpLog) -> None:
        """Handles one frame from the client, in order with the others."""
        del message
