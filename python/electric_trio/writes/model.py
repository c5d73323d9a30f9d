"""What the Satellite side hands to the writers (server-behaviour.md §6-7).

The inbound half of a session (:mod:`electric_trio.satellite.inbound`) validates a client
transaction and turns it into a :class:`ClientWrite`: the exact rows to insert, in order, already
in Postgres text form. Both writers consume the same value: the direct writer runs them as one
Postgres transaction, the logical publisher streams them as pgoutput ``Insert`` messages for the
apply worker of Postgres's ``postgres_1`` subscription. The merge rules live in the rows (the
shadow row's tag, observed tags and modified-columns mask) and in the triggers Postgres runs, so
both modes resolve conflicts identically.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ..errors import ElectricError

__all__ = ["ClientWrite", "RowInsert", "WriteRejectedError", "Writer"]


class RowInsert(msgspec.Struct, frozen=True, gc=False):
    """One ``INSERT`` of a full row: every column of the table, in table order."""

    schema: str
    table: str
    columns: tuple[str, ...]
    #: Postgres text form of each value (what ``<type>in`` accepts); None is NULL.
    values: tuple[str | None, ...]


class ClientWrite(msgspec.Struct, frozen=True, gc=False):
    """One accepted client transaction, ready to be written to Postgres."""

    #: The client's id: the origin its writes echo back with.
    client_id: str
    #: The client's position of this transaction (its oplog LSN bytes, as sent).
    lsn: bytes
    #: The client's commit time, ms since 1970.
    commit_timestamp_ms: int
    #: In order: the ``electric.acknowledged_client_lsns`` row, then for each change its main
    #: table row followed by its shadow row.
    inserts: tuple[RowInsert, ...]


class WriteRejectedError(ElectricError):
    """Postgres refused a client transaction (a constraint it breaks, a value it does not
    take): it can never be written. The session tells the client (``SatErrorResp
    {INVALID_REQUEST, lsn}``) and closes the connection."""


class Writer(Protocol):
    """Takes accepted client transactions into Postgres, in the order they are given."""

    async def write(self, write: ClientWrite) -> None:
        """Returns once ``write`` is committed (direct) or queued for the publisher; raises
        :class:`WriteRejectedError` when Postgres refuses it. A transaction at or below the
        client's position already in ``electric.acknowledged_client_lsns`` (a replay) is not
        written again."""
        ...
