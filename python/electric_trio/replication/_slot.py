"""The replication slots of the service: names, creation, and keeping retained WAL bounded."""

from __future__ import annotations

import re

from .._log import get_logger
from ..ddlx.install import PUBLICATION_NAME
from ..pg import Connection, PgError, format_lsn, parse_lsn

PUBLICATION = PUBLICATION_NAME

log = get_logger(__name__)


def main_slot_name(dbname: str) -> str:
    """``electric_replication_out_<db>``, as the original named it (at most 63 characters)."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", dbname.lower()).strip("_")[:38]
    return f"electric_replication_out_{cleaned}"


def temp_slot_name(main: str) -> str:
    """The per-connection temporary copy of the main slot."""
    return f"{main[:59]}_rc"


class SlotInUseError(PgError):
    """Another process streams from our slot: probably another instance of the service."""


async def ensure_main_slot(repl: Connection, slot: str) -> bool:
    """Creates the main slot unless it exists (so a dropped slot is re-created at startup);
    an invalidated slot (``wal_status = 'lost'``: Postgres removed WAL it needed, e.g. past
    ``max_slot_wal_keep_size``) is dropped and created again. True when the slot is new."""
    # (a replication connection takes simple queries only; the name is [a-z0-9_])
    lost = await repl.fetchval(
        "SELECT count(*) FROM pg_replication_slots"
        f" WHERE slot_name = '{slot}' AND wal_status = 'lost'"
    )
    if lost:
        await repl.execute(f"SELECT pg_drop_replication_slot('{slot}')")
    try:
        await repl.execute(f'CREATE_REPLICATION_SLOT "{slot}" LOGICAL pgoutput NOEXPORT_SNAPSHOT')
    except PgError as e:
        if e.sqlstate != "42710":  # duplicate_object: it exists, which is what we want
            raise
        return False
    return True


async def copy_to_temp_slot(repl: Connection, main: str, temp: str) -> int:
    """Copies the main slot to a temporary one owned by ``repl``; returns its start LSN.

    Streaming from the copy leaves the main slot where it is, so that a restarted service can
    replay the last ``ELECTRIC_RESUMABLE_WAL_WINDOW`` bytes of WAL into its transaction log.
    """
    try:
        row = await repl.fetchrow(
            f"SELECT lsn::text FROM pg_copy_logical_replication_slot('{main}', '{temp}', true)"
        )
    except PgError as e:
        if e.sqlstate in ("55006", "42710"):
            raise SlotInUseError(
                e.message,
                sqlstate=e.sqlstate,
                severity=e.severity,
                hint="Another instance of Electric appears to be connected to this database.",
            ) from None
        raise
    assert row is not None
    return parse_lsn(row[0])


async def advance_main_slot(conn: Connection, slot: str, window: int) -> int | None:
    """Moves the main slot up to ``window`` bytes behind the current WAL position.

    This is what keeps retained WAL bounded even when nothing of ours is written (an idle slot
    that pins WAL forever was the original's most reported failure). Returns the new position,
    or None when the slot is already within the window.

    A main slot invalidated by Postgres (``wal_status = 'lost'``) or dropped while the service
    streams is noticed here and made again at once (:func:`remake_main_slot`).
    """
    row = await conn.fetchrow(
        "SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text, wal_status"
        " FROM pg_replication_slots WHERE slot_name = $1",
        slot,
    )
    if row is None or row[2] == "lost":
        await remake_main_slot(conn, slot, lost=row is not None)
        return None
    if row[0] is None:
        return None
    confirmed, current = parse_lsn(row[0]), parse_lsn(row[1])
    target = current - window
    if target <= confirmed:
        return None
    await conn.execute(
        "SELECT pg_replication_slot_advance($1, $2::pg_lsn)", slot, format_lsn(target)
    )
    return target


async def remake_main_slot(conn: Connection, slot: str, *, lost: bool) -> None:
    """Makes the main slot again, while the service streams, from the temporary copy it
    streams from: the new slot starts where the service has read to, so nothing is missed,
    but clients positioned before that cannot resume after a restart of the service (its
    replay starts there; they resync, told BEHIND_WINDOW). Without this, the loss was only
    seen at the next start, when the slot made afresh at the current position left a gap that
    every client had to resync over."""
    log.error(
        f"replication slot {slot} was "
        + (
            "invalidated by Postgres (wal_status 'lost': the WAL it needed was removed,"
            " e.g. past max_slot_wal_keep_size)"
            if lost
            else "dropped"
        )
        + " while the service streamed; it is made again from the service's temporary copy"
        " (nothing streamed is lost; clients positioned before now resync after a restart of"
        " the service). To keep it from recurring, raise max_slot_wal_keep_size above"
        " ELECTRIC_RESUMABLE_WAL_WINDOW or lower the window",
        slot=slot,
    )
    if lost:
        await conn.execute("SELECT pg_drop_replication_slot($1)", slot)
    await conn.execute(
        "SELECT pg_copy_logical_replication_slot($1, $2, false)", temp_slot_name(slot), slot
    )
