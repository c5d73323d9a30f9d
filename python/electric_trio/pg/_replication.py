"""The CopyBoth stream of a ``START_REPLICATION`` command."""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import msgspec
import trio

from .. import _native
from ..errors import ProtocolError
from ._errors import ConnectionLostError, PgError

if TYPE_CHECKING:
    from ._connection import Connection

#: The most bytes one receive of :meth:`ReplicationStream.receive_wire` takes (above glibc's
#: mmap threshold, as ``_connection._RECV_SIZE``, which says why).
_RECV_SIZE = 1 << 18
#: Microseconds between the Unix epoch and the Postgres epoch (2000-01-01).
PG_EPOCH_OFFSET_MICROS = 946_684_800_000_000


def pg_now() -> int:
    """Now, in microseconds since the Postgres epoch (the clock of replication messages)."""
    return time.time_ns() // 1000 - PG_EPOCH_OFFSET_MICROS


def format_lsn(lsn: int) -> str:
    """``0x16B3748`` -> ``0/16B3748``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """``0/16B3748`` -> ``0x16B3748``."""
    hi, sep, lo = text.partition("/")
    if not sep:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(hi, 16) << 32) | int(lo, 16)


class XLogData(msgspec.Struct, frozen=True, gc=False):
    """WAL data: for logical replication, one pgoutput message."""

    wal_start: int
    wal_end: int
    send_time: int
    data: bytes


class Keepalive(msgspec.Struct, frozen=True, gc=False):
    """The server's heartbeat; ``reply_requested`` ones are answered by the stream itself."""

    wal_end: int
    send_time: int
    reply_requested: bool


class ReplicationStream:
    """Messages of a running replication stream, and the standby status updates we send back.

    Report progress with :meth:`send_status` (or just set the flushed position with
    :meth:`acknowledge`: it is sent with the next status update, including the automatic answer
    to a keepalive that asks for one). :meth:`stop` ends the stream and gives the connection
    back to ordinary queries.
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._pending: deque[bytes] = deque()
        self.stopped = False
        #: The position reported as written/flushed/applied in status updates.
        self.flushed_lsn = 0
        #: The highest WAL end position the server has told us about.
        self.server_wal_end = 0

    async def __aenter__(self) -> ReplicationStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def receive_raw_batch(self, limit: int = 1 << 22) -> list[bytes]:
        """The next CopyData payloads as they arrive (at least one, about ``limit`` bytes at
        most), unparsed.

        This is the fast path for a decoder that takes whole batches (see ``_native``).
        """
        conn = self._conn
        if self._pending:
            batch = list(self._pending)
            self._pending.clear()
            return batch
        while True:
            if self.stopped:
                raise PgError("the replication stream is stopped")
            arrived = conn._reader.read_copy_data(limit)
            if arrived:
                return arrived
            msg = conn._next_buffered()
            if msg is None:
                await conn._recv_more()
            elif msg[0] == "E":
                self.stopped = True
                error = PgError.from_fields(msg[1])
                await self._finish()
                raise error
            elif msg[0] == "c":
                self.stopped = True
                await self._send_copy_done_and_finish()
                raise PgError("the server ended the replication stream")
            else:
                raise ProtocolError(f"unexpected message {msg[0]!r} in a replication stream")

    async def receive_wire(self) -> bytes:
        """The next bytes of the stream as the connection received them, unframed.

        The fastest path, for a decoder that splits the CopyData frames itself
        (``ElectricDecoder.decode_wire``): no Python object per message. The bytes may end
        in the middle of a message, and may hold other messages than CopyData (an error, the
        end of the stream): give those back with :meth:`unread`, then :meth:`receive_raw_batch`
        reads them as usual.
        """
        conn = self._conn
        if self.stopped:
            raise PgError("the replication stream is stopped")
        if self._pending:
            raise ProtocolError("receive_wire after receive left messages pending")
        if conn._reader.buffered:
            return bytes(conn._reader.take_buffered())
        try:
            data = await conn._stream.receive_some(_RECV_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            raise conn._lost(e) from None
        if not data:
            raise conn._lost(EOFError("server closed the connection"))
        return bytes(data)

    def direct_socket(self) -> trio.socket.SocketType | None:
        """The connection's socket, for a decoder that receives from it itself
        (``ElectricDecoder.read_socket``: into a buffer it keeps, no Python object per
        receive), when it may: a plain socket (not TLS), no bytes received and not read yet
        (:meth:`receive_wire` returns those first), the stream running. Report a failed
        receive with :meth:`lost`."""
        conn = self._conn
        stream = conn._stream
        if (
            self.stopped
            or self._pending
            or conn._reader.buffered
            or not isinstance(stream, trio.SocketStream)
        ):
            return None
        return stream.socket

    def lost(self, cause: BaseException) -> ConnectionLostError:
        """The error to raise when a receive from :meth:`direct_socket` failed with ``cause``
        (the connection is then broken)."""
        return self._conn._lost(cause)

    def unread(self, data: bytes) -> None:
        """Gives back bytes of :meth:`receive_wire` that the caller did not handle."""
        self._conn._reader.feed(data)

    async def receive(self) -> XLogData | Keepalive:
        """The next message; keepalives that ask for a reply are answered before returning."""
        if not self._pending:
            self._pending.extend(await self.receive_raw_batch())
        parsed = _native.parse_replication_message(self._pending.popleft())
        if parsed[0] == "w":
            _, start, end, send_time, data = parsed
            if end > self.server_wal_end:
                self.server_wal_end = end
            return XLogData(start, end, send_time, data)
        if parsed[0] == "k":
            _, end, send_time, reply = parsed
            if end > self.server_wal_end:
                self.server_wal_end = end
            if reply:
                await self.send_status()
            return Keepalive(end, send_time, reply)
        raise ProtocolError(f"unexpected replication message {parsed[0]!r} from the server")

    def __aiter__(self) -> ReplicationStream:
        return self

    async def __anext__(self) -> XLogData | Keepalive:
        if self.stopped:
            raise StopAsyncIteration
        return await self.receive()

    def acknowledge(self, lsn: int) -> None:
        """Marks everything up to ``lsn`` as durably handled (reported with the next update)."""
        if lsn > self.flushed_lsn:
            self.flushed_lsn = lsn

    async def send_status(self, lsn: int | None = None, *, reply_requested: bool = False) -> None:
        """Sends a standby status update with ``lsn`` (default: the acknowledged position)."""
        if lsn is not None:
            self.acknowledge(lsn)
        pos = self.flushed_lsn
        await self._conn._send(
            _native.encode_standby_status(pos, pos, pos, pg_now(), reply_requested)
        )

    async def stop(self) -> None:
        """Ends the stream (CopyDone) and waits for the server to finish. Idempotent."""
        if self.stopped:
            return
        self.stopped = True
        conn = self._conn
        with trio.CancelScope(shield=True), trio.move_on_after(10) as scope:
            try:
                await self._send_copy_done_and_finish()
            except (PgError, ProtocolError):
                pass
        if scope.cancelled_caught:
            await conn._close_now()
            self._release()

    async def _send_copy_done_and_finish(self) -> None:
        await self._conn._send(_native.encode_copy_done())
        await self._finish()

    async def _finish(self) -> None:
        """Skips the rest of the stream up to ReadyForQuery and frees the connection."""
        conn = self._conn
        try:
            while True:
                conn._reader.read_copy_data()
                msg = await conn._next()
                if msg[0] == "Z":
                    conn._ready(msg[1])
                    return
        finally:
            self._release()

    def _release(self) -> None:
        if self._conn._lock.locked():
            self._conn._lock.release()
