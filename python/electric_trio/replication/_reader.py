"""The replication reader: Postgres's pgoutput stream into the transaction log.

One Trio task owns a ``replication=database`` connection. The stream's bytes go to the Rust
decoder as the socket delivers them (it splits the CopyData messages, decodes and folds them
with the GIL released, with no Python object per message); whole transactions come back as
handles, with Electric's bookkeeping folded in (tags, writer, DDL, referenced records), and are
appended to the log. Positions flow back to Postgres as standby status updates,
and a second, ordinary connection keeps the main slot within the resumable window.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
import trio

from .. import _native
from .._log import get_logger
from ..pg import (
    ConnectionLostError,
    ConnectParams,
    ReplicationStream,
    connect,
    format_lsn,
    parse_lsn,
)
from ._log import TransactionLog
from ._slot import (
    PUBLICATION,
    advance_main_slot,
    copy_to_temp_slot,
    ensure_main_slot,
    main_slot_name,
    temp_slot_name,
)

log = get_logger(__name__)

#: The most bytes of replication messages decoded in one step (inline, on the event loop's
#: thread: about a millisecond of work at most; a worker thread's round trip cost as much per
#: batch as decoding hundreds of rows).
_BATCH_BYTES = 256 * 1024
#: While a transaction larger than this is partly received, the reader lets the socket gather
#: this many bytes (or ``ReaderSettings.coalesce`` pass) before each read: about 65 rows of 6
#: columns. More cuts the reader's CPU further, but the walsender, whose sends
#: go unacknowledged meanwhile, then waits on its send buffer more often: 16 KiB cost it
#: about 15% more CPU per row, 32 KiB about 40%; 8 KiB under 10%.
_GATHER_BYTES = 8 * 1024
#: The bytes of a Commit in the stream: its CopyData and XLogData headers (30) and the
#: message (26).
_COMMIT_BYTES = 56
#: The most receives in a row the reader makes without letting other tasks run, while the
#: socket has bytes ready each time (it yields whenever it waits for the socket).
_READS_PER_YIELD = 16
#: The most bytes one ``ElectricDecoder.read_socket`` takes (its buffer's size): a receive of
#: fewer took all that the socket held.
_RECEIVE_SIZE = 256 * 1024


class ReaderSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How the reader runs; the service fills it from its configuration."""

    resumable_wal_window: int = 2 * 1024**3
    #: How often the main slot is moved up to the window (the original: 30 s).
    advance_interval: float = 30.0
    #: How often a status update is sent when nothing else triggers one.
    status_interval: float = 10.0
    #: The least time between two status updates: a busy stream reports its position once per
    #: gap instead of once per transaction (each update is a send and a wake-up of the
    #: walsender; at a thousand transactions a second that was a measurable share of both).
    status_gap: float = 0.02
    #: How long the reader may wait before its next read, while a transaction of more than
    #: ``_GATHER_BYTES`` is partly received, for ``_GATHER_BYTES`` more to arrive (none of its
    #: rows can be appended before its commit anyway). The walsender sends each change in a
    #: segment of its own, and a reader that read every segment as soon as it arrived paid
    #: its per-read cost (wake-up, receive, decode call, the loop's bookkeeping) every few
    #: rows: about as much as decoding them. It delays a large transaction's arrival in the
    #: log by this much at most; a transaction smaller than ``_GATHER_BYTES`` is never held
    #: back, and a wait gathers no more than the estimated rest of the transaction. 0 turns
    #: it off.
    #:
    #: Only on a plain TCP connection that the decoder receives from itself (a low-water mark,
    #: SO_RCVLOWAT, spares the wake-ups in between); never over TLS, where the walsender's
    #: records came a few hundred bytes per wait (PostgreSQL 15's replay after a restart took
    #: 13,500 waits of the whole 1 ms for 1 MB of WAL), nor on a Unix socket. A wait followed
    #: by a read still under ``_GATHER_BYTES`` also ends the waits until the transaction's
    #: end: the walsender is then not streaming freely.
    #:
    #: 2 ms rather than 1: on a quiet machine (replication-e2e, 1M rows, two interleaved pairs
    #: of 5 repetitions) the median of ours/Postgres CPU per row was 0.245 and 0.209 against
    #: 0.257 and 0.268 with 1 ms, ours 1.5-2.2 against 2.0-2.7 us/row, the walsender's CPU
    #: no higher (3.2-4.6 against 4.1-5.0 us/row).
    coalesce: float = 0.002
    publication: str = PUBLICATION


class ReaderStatus(msgspec.Struct, kw_only=True):
    """What the reader reports once streaming (returned through ``task_status.started``)."""

    main_slot: str
    temp_slot: str
    start_lsn: int
    transactions: int = 0
    changes: int = 0
    #: The position last confirmed to Postgres.
    flushed_lsn: int = 0
    #: Bytes of replication messages received.
    received_bytes: int = 0
    #: The WAL flushed when the reader started is read: after a restart of the service, the
    #: transactions of the slot's window are in the log again.
    replayed: bool = False


async def serve_replication(
    params: ConnectParams,
    txlog: TransactionLog[Any],
    settings: ReaderSettings,
    *,
    before_append: Callable[[Sequence[Any]], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[ReaderStatus] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Streams committed transactions into ``txlog`` until cancelled.

    Errors (a lost connection, a dropped slot, a malformed message) propagate to the caller,
    who decides whether to restart; nothing is skipped silently.
    """
    main = main_slot_name(params.dbname)
    temp = temp_slot_name(main)
    async with (
        await connect(params, replication="database") as repl,
        await connect(params) as service,
    ):
        if await ensure_main_slot(repl, main) and txlog.appended:
            # We streamed before, and the slot is gone: what was committed while it was
            # missing cannot be read again. Clients past that gap must resync.
            log.error(
                f"replication slot {main} was dropped or invalidated while the service ran:"
                " transactions committed in the meantime are lost to the service; it created"
                " the slot again, and clients resync from a new snapshot (BEHIND_WINDOW)",
                slot=main,
                last_lsn=format_lsn(txlog.last_lsn or 0),
            )
            txlog.clear()
        # Whatever a previous run of the service streamed was flushed by now: clients resume
        # at positions up to here, which the replay from the slot brings back into the log.
        flushed = await service.fetchval("SELECT pg_current_wal_flush_lsn()::text")
        start = await copy_to_temp_slot(repl, main, temp)
        txlog.replay_from, txlog.replay_to = start, parse_lsn(str(flushed))
        stream = await repl.start_replication(
            f'START_REPLICATION SLOT "{temp}" LOGICAL {format_lsn(start)} ('
            "proto_version '2', streaming 'on', messages 'true', "
            f"publication_names '{settings.publication}')"
        )
        status = ReaderStatus(main_slot=main, temp_slot=temp, start_lsn=start, flushed_lsn=start)
        log.info("replication started", slot=main, start_lsn=format_lsn(start))
        decoder = _native.ElectricDecoder()
        task_status.started(status)
        reporter = _StatusReporter(stream, status, settings.status_gap)
        gather = _gatherer(repl)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_slot_in_window, service, main, settings)
            nursery.start_soon(reporter.run)
            next_status = time.monotonic() + settings.status_interval
            framed = False
            gathering, waited = True, False
            # Bytes received of the transaction in progress.
            txn_bytes = 0
            # The socket the decoder receives from itself (None: through the connection).
            sock: trio.socket.SocketType | None = None
            fd = -1
            # Receives since the task last let others run.
            unyielded = 0
            # The last receive took all the socket held: wait for more before the next one.
            drained = False
            while True:
                try:
                    if framed:
                        # After a message other than CopyData, which the connection reads:
                        # an error or the end of the stream raise, a notice is absorbed.
                        payloads = await stream.receive_raw_batch(_BATCH_BYTES)
                        received = sum(map(len, payloads))
                        txns = decoder.decode(payloads)
                        framed = False
                    else:
                        if sock is None and (sock := stream.direct_socket()) is not None:
                            # Waited on by descriptor (Trio asks a socket for its fileno()
                            # at every wait).
                            fd = sock.fileno()
                        if sock is not None:
                            if drained:
                                drained = False
                                unyielded = 0
                                if gather is not None:
                                    gather.release()
                                await trio.lowlevel.wait_readable(fd)
                            # Received, framed and decoded in Rust, into a buffer it keeps.
                            try:
                                got = decoder.read_socket(fd)
                            except (OSError, EOFError) as e:
                                raise stream.lost(e) from None
                            if got is None:
                                unyielded = 0
                                if gather is not None:
                                    gather.release()
                                await trio.lowlevel.wait_readable(fd)
                                continue
                            txns, received = got
                            drained = received < _RECEIVE_SIZE
                            unyielded += 1
                            if unyielded >= _READS_PER_YIELD:
                                unyielded = 0
                                await trio.lowlevel.checkpoint()
                        else:
                            # The stream's bytes as received, framed and decoded in Rust.
                            data = await stream.receive_wire()
                            received = len(data)
                            txns = decoder.decode_wire(data)
                        unhandled = decoder.take_unhandled()
                        if unhandled[:1] == b"C":
                            # CommandComplete: the walsender of a server shutting down ends
                            # the stream so (no CopyDone) and exits; the reader starts over.
                            log.info("Postgres ended the replication stream", slot=main)
                            raise ConnectionLostError("Postgres ended the replication stream")
                        if unhandled:
                            stream.unread(unhandled)
                            framed = True
                            sock = None
                            if gather is not None:
                                gather.release()
                except _native.PgOutputError as e:
                    # Keep what was complete before the bad message, then stop loudly.
                    if e.transactions:
                        txlog.append(e.transactions)
                    log.error("undecodable replication message", error=str(e), lsn=e.lsn)
                    raise
                status.received_bytes += received
                if txns and txlog.last_lsn is not None and txns[0].end_lsn <= txlog.last_lsn:
                    # After a reconnection the slot replays its window: keep each transaction
                    # once in the log.
                    last = txlog.last_lsn
                    txns = [t for t in txns if t.end_lsn > last]
                if txns:
                    if before_append is not None:
                        # E.g. migrations: their client ops must exist before readers see them.
                        await before_append(txns)
                    txlog.append(txns)
                    status.transactions += len(txns)
                    status.changes += sum(len(t) for t in txns)
                    stream.acknowledge(txns[-1].end_lsn)
                if not decoder.in_transaction:
                    # Nothing half-received: all WAL up to the server's position is handled,
                    # even when none of it concerned us (so an idle slot never pins WAL).
                    stream.acknowledge(decoder.server_wal_end)
                if not status.replayed and txlog.replay_to <= max(
                    txlog.last_lsn or 0, 0 if decoder.in_transaction else decoder.server_wal_end
                ):
                    status.replayed = True
                    log.info("replication caught up", lsn=format_lsn(txlog.replay_to))
                now = time.monotonic()
                if decoder.take_reply_requested() or now >= next_status or txns:
                    reporter.request()
                    next_status = now + settings.status_interval
                if not decoder.in_transaction:
                    txn_bytes, gathering, waited = 0, True, False
                    continue
                txn_bytes += received
                if received >= _GATHER_BYTES:
                    waited = False
                if (
                    gathering
                    and txn_bytes > _GATHER_BYTES
                    and gather is not None
                    and sock is not None
                    and settings.coalesce
                ):
                    if waited:
                        # The last wait gathered little: the walsender is not streaming
                        # freely (PostgreSQL 15's sent a message per wait, as if waiting on
                        # this reader). No more waits until the transaction ends.
                        gathering = False
                    else:
                        await gather.wait(_gather_size(decoder, txn_bytes), settings.coalesce)
                        waited, drained = True, False


def _gather_size(decoder: _native.ElectricDecoder, txn_bytes: int) -> int:
    """How many bytes to gather before the next read of a transaction that has brought
    ``txn_bytes`` so far: ``_GATHER_BYTES``, or what is left of the transaction when that is
    less. Each message carries its WAL position, and the Begin the commit record's, so the
    WAL left to the commit is known; in bytes of the stream, at the rate of the transaction
    so far, less a quarter (rows differ in size; an estimate too low only ends the wait
    early, too high lets it run until ``coalesce`` passes). Without it the last part of
    every large transaction, under ``_GATHER_BYTES``, was waited for until ``coalesce``
    passed."""
    span = decoder.transaction_wal
    if span is None or span[0] <= 0:
        return _GATHER_BYTES
    decoded_wal, left_wal = span
    left = (txn_bytes * left_wal // decoded_wal + _COMMIT_BYTES) * 3 // 4
    return max(1, min(_GATHER_BYTES, left))


def _gatherer(conn: Any) -> _Gatherer | None:
    """The gatherer of the connection's TCP socket; None over TLS (the TLS object may hold
    bytes already read) or a Unix socket (whose poll ignores the low-water mark)."""
    stream = getattr(conn, "_stream", None)
    sock = stream.socket if isinstance(stream, trio.SocketStream) else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    return _Gatherer(sock)


class _Gatherer:
    """Waits for bytes to gather on a TCP socket: a low-water mark (SO_RCVLOWAT) spares the
    wake-ups at each segment in between (the kernel may still wake the reader earlier). The
    mark stays set from one wait to the next (a receive returns what is there regardless);
    :meth:`release` clears it before any wait without a time limit."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock
        # Waited on by descriptor: Trio asks a socket for its fileno() at every wait.
        self._fd = sock.fileno()
        self._mark = 1

    async def wait(self, nbytes: int, at_most: float) -> None:
        """Until ``nbytes`` are queued on the socket or ``at_most`` seconds have passed."""
        if self._mark != nbytes:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, nbytes)
            self._mark = nbytes
        with trio.move_on_after(at_most):
            await trio.lowlevel.wait_readable(self._fd)

    def release(self) -> None:
        if self._mark != 1:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            self._mark = 1


class _StatusReporter:
    """Sends the stream's standby status updates from a task of its own, at most one per
    ``gap`` seconds: a request made while one is pending or during the gap is folded into
    the next update, which carries the latest acknowledged position."""

    def __init__(self, stream: ReplicationStream, status: ReaderStatus, gap: float) -> None:
        self._stream = stream
        self._status = status
        self._gap = gap
        self._wanted = trio.Event()

    def request(self) -> None:
        self._wanted.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            await self._stream.send_status()
            self._status.flushed_lsn = self._stream.flushed_lsn
            await trio.sleep(self._gap)


async def _keep_slot_in_window(service: Any, main: str, settings: ReaderSettings) -> None:
    while True:
        moved = await advance_main_slot(service, main, settings.resumable_wal_window)
        if moved is not None:
            log.debug("advanced slot", slot=main, to=format_lsn(moved))
        await trio.sleep(settings.advance_interval)
