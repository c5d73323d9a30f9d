"""A client's sent-rows graph in Postgres, stored as it changes (issue 9).

``electric.client_checkpoints.sent_rows_graph`` holds a *base*: :data:`MAGIC`, the lineage it
begins (a random id), then a whole graph (``ShapeGraph.export_base``), usually the empty one a
new client starts from. Each checkpoint after it stores only the piece of the graph's change
log taken since the last one (``ShapeGraph.take_log``: edges added and removed, the journal's
steps) as a row of ``electric.client_checkpoint_logs`` of that lineage; a load imports the base
and applies the pieces in order (``ShapeGraph.replay``). A 1,000,000-row shape is stored once,
piece by piece while it is sent, never as one export of the whole graph holding the event loop
and its memory at every checkpoint. A new base (the whole graph, a new lineage) is written only
when the pieces stored outgrow the graph, or when a write failed (a lost piece would leave a
gap): the pieces of other lineages are then dropped.

A base without :data:`MAGIC` is a whole-graph export of an earlier version: loaded as it is.
"""

from __future__ import annotations

import logging
import secrets
import struct
from typing import Any, Final

import trio

from .. import _native
from ..pg import PgError
from ._bookkeeping import CHECKPOINT, Bookkeeper, Kind
from ._db import PostgresUnavailableError, SessionDatabase

__all__ = ["MAGIC", "StoredGraph", "load", "store"]

log = logging.getLogger("electric_trio.satellite")

#: The start of a base (an export starts with its row count, a u32: never this).
MAGIC: Final = b"\xffETG1"
#: ``export`` of an empty graph: no rows, no journal steps.
EMPTY_EXPORT: Final = bytes(8)
#: Log bytes that make a store worth doing while a large shape is being sent.
PIECE_BYTES: Final = 4 << 20
#: Pieces loaded per query.
_PAGE: Final = 16
#: Pieces this large are written alone, as a plain parameter: in the bookkeeper's arrays, a
#: bytea's text costs about four times the time to encode (115 ms per 4 MB, the event loop
#: held), and they have nothing to share a statement with.
ALONE_BYTES: Final = 256 << 10

# The writes, combined with other clients' by the server's bookkeeper (in order with the
# client's other writes); the base is its CHECKPOINT.
PIECE: Final = Kind(
    "checkpoint_piece",
    "INSERT INTO electric.client_checkpoint_logs"
    " (client_id, lineage, seq, pg_wal_pos, changes, pending_move_ins)"
    " SELECT * FROM unnest({0}, {1}, {2}, {3}, {4}, {5})",
    ("text[]", "int8[]", "int8[]", "int8[]", "bytea[]", "bytea[]"),
)
MOVE_ON: Final = Kind(
    "checkpoint_piece_moves_on",
    "UPDATE electric.client_checkpoint_logs l SET pg_wal_pos = u.p, pending_move_ins = u.m,"
    " updated_at = now() FROM unnest({0}, {1}, {2}, {3}, {4}) AS u(c, g, s, p, m)"
    " WHERE l.client_id = u.c AND l.lineage = u.g AND l.seq = u.s",
    ("text[]", "int8[]", "int8[]", "int8[]", "bytea[]"),
)
PRUNE: Final = Kind(
    "checkpoint_pieces_pruned",
    "DELETE FROM electric.client_checkpoint_logs l USING unnest({0}, {1}) AS u(c, g)"
    " WHERE l.client_id = u.c AND l.lineage <> u.g",
    ("text[]", "int8[]"),
)


class StoredGraph:
    """Where a client's stored graph stands: its lineage, the next piece's number."""

    def __init__(self) -> None:
        #: None: no base written (or a write failed): the next store writes one.
        self.lineage: int | None = None
        self.seq = 0
        #: Whether the graph's log holds every change since it was empty (a new client's):
        #: its base is then the empty graph, not an export of what it holds by now.
        self.whole_log = True
        #: Bytes of pieces stored since the base.
        self.stored = 0
        #: Whether a piece of this lineage is stored (the position of an empty piece goes to
        #: it instead of a new row).
        self.has_piece = False
        self.lock = trio.Lock()


def _base(lineage: int, export: bytes) -> bytes:
    return MAGIC + struct.pack("<q", lineage) + export


def _compact_due(stored: StoredGraph, rows: int) -> bool:
    """Whether the pieces stored outgrow a new base of the graph (about 110 bytes a row)."""
    return stored.stored > (32 << 20) + 200 * rows


async def store(
    bookkeeper: Bookkeeper,
    db: SessionDatabase,
    client_id: str,
    stored: StoredGraph,
    graph: _native.ShapeGraph,
    position: int,
    move_ins: bytes,
    *,
    subscribed: bool,
) -> bool:
    """Stores what changed in ``graph`` since the last store (a new base when due), at
    ``position``; False when Postgres is unavailable (the next store writes a new base).

    A client with no subscription and nothing in its graph has nothing to resume: nothing is
    written. One subscribed to shapes that hold no row yet has: its (empty) state is what tells
    a restarted service that its subscriptions are known (without it, they are refused as
    unknown and the client resets)."""
    async with stored.lock:
        if (
            not subscribed
            and stored.lineage is None
            and stored.whole_log
            and not len(graph)
            and not graph.log_len()
        ):
            return True
        try:
            if stored.lineage is None or _compact_due(stored, len(graph)):
                export = EMPTY_EXPORT if stored.whole_log else graph.export_base()
                stored.whole_log = False
                lineage = secrets.randbits(63)
                base = [(client_id, position, _base(lineage, export), move_ins)]
                del export
                await bookkeeper.write(CHECKPOINT, client_id, base)
                del base
                stored.lineage, stored.seq, stored.stored, stored.has_piece = lineage, 0, 0, False
                await bookkeeper.write(PRUNE, client_id, [(client_id, lineage)])
            changes = graph.take_log()
            if changes or not stored.has_piece:
                seq = stored.seq
                stored.seq += 1
                piece = (client_id, stored.lineage, seq, position, changes, move_ins)
                if len(changes) < ALONE_BYTES:
                    await bookkeeper.write(PIECE, client_id, [piece])
                else:
                    # After the client's earlier writes (each awaited), before its next; not
                    # interrupted half-way, as the bookkeeper's are not.
                    with trio.CancelScope(shield=True):
                        await db.fetch(
                            "INSERT INTO electric.client_checkpoint_logs"
                            " (client_id, lineage, seq, pg_wal_pos, changes, pending_move_ins)"
                            " VALUES ($1, $2, $3, $4, $5, $6)",
                            *piece,
                            key=client_id,
                        )
                stored.stored += len(changes)
                stored.has_piece = True
            else:
                # Nothing changed in the graph: the last piece moves on to this position.
                moved = (client_id, stored.lineage, stored.seq - 1, position, move_ins)
                await bookkeeper.write(MOVE_ON, client_id, [moved])
        except (PostgresUnavailableError, PgError) as e:
            log.warning("cannot store client state: %s", e)
            stored.lineage = None
            stored.whole_log = False
            return False
        except BaseException:
            # Interrupted (the session ending): the piece taken may not be stored, and a
            # later one after it would leave a gap. The next store writes a new base.
            stored.lineage = None
            stored.whole_log = False
            raise
        return True


async def load(
    db: SessionDatabase,
    client_id: str,
    graph: _native.ShapeGraph,
    base: bytes,
    position: int,
    move_ins: bytes | None,
) -> tuple[StoredGraph, int, bytes | None]:
    """Loads a stored graph into ``graph`` (whose subscriptions' layers were added): the base,
    then its lineage's pieces in order. Returns where the store stands, and the position and
    pending move-ins of the last piece applied (``position`` and ``move_ins``, the base's,
    when none). Raises :class:`PostgresUnavailableError`."""
    stored = StoredGraph()
    stored.whole_log = False
    if not base.startswith(MAGIC):
        graph.import_rows(base)  # an earlier version's whole export
        return stored, position, move_ins
    (lineage,) = struct.unpack_from("<q", base, len(MAGIC))
    graph.import_rows(base[len(MAGIC) + 8 :])
    seq = 0
    while True:
        rows: list[tuple[Any, ...]] = await db.fetch(
            "SELECT seq, pg_wal_pos, changes, pending_move_ins"
            " FROM electric.client_checkpoint_logs"
            " WHERE client_id = $1 AND lineage = $2 AND seq >= $3 ORDER BY seq LIMIT $4",
            client_id,
            lineage,
            seq,
            _PAGE,
            key=client_id,
        )
        for n, pos, changes, pending in rows:
            if n != seq:
                # A piece is missing (its write failed): what came after it cannot apply.
                log.warning(
                    "client state stored with a gap client_id=%s lineage=%d seq=%d",
                    client_id,
                    lineage,
                    seq,
                )
                return stored, position, move_ins
            graph.replay(bytes(changes))
            stored.stored += len(changes)
            position = int(pos)
            move_ins = None if pending is None else bytes(pending)
            seq += 1
            await trio.lowlevel.checkpoint()
        if len(rows) < _PAGE:
            break
    stored.lineage, stored.seq, stored.has_piece = lineage, seq, seq > 0
    return stored, position, move_ins
