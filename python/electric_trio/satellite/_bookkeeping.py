"""The Satellite clients' stored state, written for many clients at once.

Every client that connects, subscribes, acknowledges or leaves writes a little of its state to
``electric.client_*`` (its subscriptions, its sent-rows graph, its unsubscribe points). One
statement and one commit per write cost a Postgres round trip and a WAL flush each: 10,000
clients connecting after a restart queued behind each other's commits. Here the writes asked
for while a batch is being written form the next batch, written as one statement per kind of
write (``INSERT ... SELECT FROM unnest(...)``) combined in one data-modifying ``WITH``: one round
trip and one commit for every client in it (group commit, without a timer: a lone write goes
at once).

A client's writes are applied in the order it made them: a batch in which a client appears
more than once is written in rounds (the client's first write in the first statement, its second
in the next...), and within one statement no two writes concern the same client, so they touch
disjoint rows.

The first caller to find no batch being written writes one (with every write queued by then);
when it is done and more are queued, the oldest waiting caller writes the next. A write is not
interrupted half-way: a caller waits (shielded) until its batch is written, at most the query
timeout per statement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Generic, TypeVar

import trio

from ..pg import PgError
from ._db import PostgresUnavailableError, SessionDatabase

__all__ = ["Bookkeeper", "Combiner", "Kind"]

T = TypeVar("T")
R = TypeVar("R")

#: Most items one batch takes (the rest wait for the next one).
MAX_BATCH: Final = 1000
#: Most parameter bytes one batch takes (graphs can be large); at least one item goes.
MAX_BATCH_BYTES: Final = 16 << 20


class _Pending(Generic[T, R]):
    __slots__ = ("done", "error", "item", "result", "turn", "written")

    def __init__(self, item: T) -> None:
        self.item = item
        self.turn = trio.Event()
        self.written = False
        self.result: R | None = None
        self.error: BaseException | None = None


class Combiner(Generic[T, R]):
    """Calls ``run(items)`` for the items asked for while the previous call ran, each caller
    getting its own item's result (``run`` returns one result or exception per item).

    With ``shield`` (writes), a caller is not interrupted until its item is done. Without
    (reads), a caller may be cancelled while it waits (its item is dropped) or while it runs a
    batch (the batch's other items go back to the front of the queue, for the next caller)."""

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        size: Callable[[T], int] = lambda _item: 0,
        *,
        shield: bool = False,
    ) -> None:
        self._run = run
        self._size = size
        self._shield = shield
        self._queue: list[_Pending[T, R]] = []
        self._busy = False

    async def __call__(self, item: T) -> R:
        pending: _Pending[T, R] = _Pending(item)
        self._queue.append(pending)
        with trio.CancelScope(shield=self._shield):
            if self._busy:
                try:
                    await pending.turn.wait()
                except trio.Cancelled:
                    if pending in self._queue:
                        self._queue.remove(pending)
                    if pending.turn.is_set():
                        # Its turn came as it was cancelled: the next batch is the next one's.
                        if self._queue:
                            self._queue[0].turn.set()
                        else:
                            self._busy = False
                    raise
            if not pending.written:
                await self._write()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    async def _write(self) -> None:
        """Runs a batch from the front of the queue (the caller's item is its first)."""
        self._busy = True
        queue = self._queue
        count, size = 0, 0
        while count < len(queue) and count < MAX_BATCH:
            size += self._size(queue[count].item)
            if count and size > MAX_BATCH_BYTES:
                break
            count += 1
        batch, self._queue = queue[:count], queue[count:]
        try:
            results: Sequence[R | BaseException] = await self._run([p.item for p in batch])
        except Exception as e:
            results = [e] * len(batch)
        except BaseException:
            self._queue[:0] = batch[1:]  # interrupted: the others' items go again
            raise
        finally:
            if self._queue:
                self._queue[0].turn.set()  # the next batch is the oldest waiter's to run
            else:
                self._busy = False
        for pending, result in zip(batch, results, strict=True):
            pending.written = True
            if isinstance(result, BaseException):
                pending.error = result
            else:
                pending.result = result
            pending.turn.set()


class Kind:
    """One kind of write: a ``WITH`` part over the arrays of its rows' columns (``{0}``,
    ``{1}``... stand for their parameters)."""

    def __init__(self, name: str, sql: str, casts: Sequence[str]) -> None:
        self.name = name
        self.sql = sql
        self.casts = tuple(casts)


# Each kind's rows carry the client id first.
SUBSCRIPTION: Final = Kind(
    "subscription",
    "INSERT INTO electric.client_shape_subscriptions"
    " (client_id, subscription_id, min_txid, ord, shape_requests)"
    " SELECT u.c, u.s, u.x::xid8,"
    " (SELECT coalesce(max(ord), 0) + 1 FROM electric.client_shape_subscriptions o"
    " WHERE o.client_id = u.c), u.r"
    " FROM unnest({0}, {1}, {2}, {3}) AS u(c, s, x, r)"
    " ON CONFLICT (client_id, subscription_id) DO NOTHING",
    ("text[]", "text[]", "text[]", "bytea[]"),
)
FORGET_SUBSCRIPTIONS: Final = Kind(
    "forget_subscriptions",
    "DELETE FROM electric.client_shape_subscriptions d USING unnest({0}, {1}) AS u(c, s)"
    " WHERE d.client_id = u.c AND d.subscription_id = u.s",
    ("text[]", "text[]"),
)
CHECKPOINT: Final = Kind(
    "checkpoint",
    "INSERT INTO electric.client_checkpoints"
    " (client_id, pg_wal_pos, sent_rows_graph, pending_move_ins)"
    " SELECT * FROM unnest({0}, {1}, {2}, {3})"
    " ON CONFLICT (client_id) DO UPDATE SET pg_wal_pos = excluded.pg_wal_pos,"
    " sent_rows_graph = excluded.sent_rows_graph,"
    " pending_move_ins = excluded.pending_move_ins, updated_at = now()",
    ("text[]", "int8[]", "bytea[]", "bytea[]"),
)
UNSUBSCRIBED: Final = Kind(
    "unsubscribed",
    "INSERT INTO electric.client_unsub_points (client_id, subscription_id, wal_pos, gone_batch)"
    " SELECT * FROM unnest({0}, {1}, {2}, {3})"
    " ON CONFLICT (client_id, subscription_id) DO UPDATE SET"
    " wal_pos = excluded.wal_pos, gone_batch = excluded.gone_batch, updated_at = now()",
    ("text[]", "text[]", "int8[]", "bytea[]"),
)
FORGET_UNSUBSCRIBED: Final = Kind(
    "forget_unsubscribed",
    "DELETE FROM electric.client_unsub_points d USING unnest({0}, {1}) AS u(c, s)"
    " WHERE d.client_id = u.c AND d.subscription_id = u.s",
    ("text[]", "text[]"),
)
FORGET_STORED: Final = Kind(
    "forget_stored",
    "DELETE FROM electric.client_shape_subscriptions WHERE client_id = ANY({0})),"
    " forget_stored_u AS (DELETE FROM electric.client_unsub_points WHERE client_id = ANY({0})),"
    " forget_stored_c AS (DELETE FROM electric.client_checkpoints WHERE client_id = ANY({0})),"
    " forget_stored_l AS (DELETE FROM electric.client_checkpoint_logs"
    " WHERE client_id = ANY({0})",
    ("text[]",),
)

#: A write: its kind, the client, and its rows (each starting with the client id).
Write = tuple[Kind, str, Sequence[tuple[Any, ...]]]


def _write_size(write: Write) -> int:
    return sum(len(v) for row in write[2] for v in row if isinstance(v, bytes))


def superseded(writes: Sequence[Write]) -> dict[int, int]:
    """The checkpoints of ``writes`` that a later one of the same client replaces (each
    stores the client's whole graph), by the index of the one that replaces them: a client
    subscribing many times in a row stores its graph once per batch, not once per
    subscription. A forget of the client's state in between keeps both."""
    last: dict[str, int] = {}
    out: dict[int, int] = {}
    for i in range(len(writes) - 1, -1, -1):
        kind, client_id, _rows = writes[i]
        if kind is CHECKPOINT:
            if client_id in last:
                out[i] = last[client_id]
            else:
                last[client_id] = i
        elif kind is FORGET_STORED:
            last.pop(client_id, None)
    return out


def rounds(writes: Sequence[Write]) -> list[list[int]]:
    """The indexes of ``writes`` in statements: a client's n-th write of the batch goes in the
    n-th, so no statement has two writes of one client."""
    seen: dict[str, int] = {}
    out: list[list[int]] = []
    for i, (_kind, client_id, _rows) in enumerate(writes):
        n = seen.get(client_id, 0)
        seen[client_id] = n + 1
        if n == len(out):
            out.append([])
        out[n].append(i)
    return out


def statement(writes: Sequence[Write]) -> tuple[str, list[Any]]:
    """One statement (a data-modifying ``WITH``) for ``writes`` (of distinct clients)."""
    by_kind: dict[str, tuple[Kind, list[tuple[Any, ...]]]] = {}
    for kind, _client_id, rows in writes:
        by_kind.setdefault(kind.name, (kind, []))[1].extend(rows)
    parts: list[str] = []
    params: list[Any] = []
    for kind, rows in by_kind.values():
        names = []
        for column, cast in enumerate(kind.casts):
            params.append([row[column] for row in rows])
            names.append(f"${len(params)}::{cast}")
        parts.append(f"{kind.name} AS ({kind.sql.format(*names)})")
    return "WITH " + ", ".join(parts) + " SELECT 1", params


class Bookkeeper:
    """The clients' state writes, combined across clients (see the module doc) on their own
    connection (the sessions' reads never wait behind these commits)."""

    def __init__(self, db: SessionDatabase) -> None:
        self.db = db
        self._combiner: Combiner[Write, None] = Combiner(self._run, _write_size, shield=True)
        #: Statements and writes made (for tests and the log).
        self.statements = 0
        self.writes = 0

    async def write(self, kind: Kind, client_id: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Applies the write, after the client's earlier ones. Raises
        :class:`PostgresUnavailableError`, or the :class:`PgError` of this write."""
        if rows:
            await self._combiner((kind, client_id, rows))

    async def _run(self, writes: list[Write]) -> list[BaseException | None]:
        self.writes += len(writes)
        results: list[BaseException | None] = [None] * len(writes)
        replaced = superseded(writes)
        kept = [i for i in range(len(writes)) if i not in replaced]
        for indexes in rounds([writes[i] for i in kept]):
            indexes = [kept[i] for i in indexes]
            try:
                await self._statement([writes[i] for i in indexes])
            except PostgresUnavailableError as e:
                for i in indexes:
                    results[i] = e
            except PgError:
                # One bad write must not fail the others: each of this round alone.
                for i in indexes:
                    try:
                        await self._statement([writes[i]])
                    except (PgError, PostgresUnavailableError) as e:
                        results[i] = e
        for i, by in replaced.items():
            results[i] = results[by]
        return results

    async def _statement(self, writes: list[Write]) -> None:
        sql, params = statement(writes)
        self.statements += 1
        await self.db.fetch(sql, *params)

    async def aclose(self) -> None:
        await self.db.aclose()
