"""Server frames written straight to a WebSocket's stream.

Frames from server to client are not masked, so a Satellite frame's WebSocket framing is a
fixed header in front of the payload: the bytes are built once per frame here (no per-message
state machine) and a transaction's frames go out in one write. trio-websocket keeps the
connection (handshake, reading, pings, close); this only writes complete binary messages under
its stream lock, between its own messages.

:func:`write_now` writes without yielding to the scheduler (one system call, no task switch);
the server's fan-out does the same from Rust (``_native.fanout_send``, to the descriptor
:func:`socket_fileno` gives).
When the socket takes only part of the bytes, the rest goes out from a task of the session
(:func:`write_rest`), the stream lock held until it is done. For that the connection's lock is
a semaphore (:class:`StreamLock`, installed by :func:`adopt`), which any task may release, and
which reports each time it is taken or given back (the fan-out keeps the set of sessions it may
write to at once up to date from such reports, instead of asking each session per transaction).

A client that stops taking bytes holds at most one write of ours (there is no queue behind it:
the stream makes the next transaction once this one is written, the window bounds the rest);
with a ``send_timeout`` (:func:`adopt`), a write of which the client takes no 64 KiB part in that
many seconds cuts it off, so a client that keeps talking but never reads does not hold its
write (up to a whole shape's initial data) for ever.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

__all__ = [
    "StreamLock",
    "adopt",
    "can_write_now",
    "frame",
    "send_framed",
    "send_frames",
    "socket_fileno",
    "write_now",
    "write_rest",
]

_BINARY_FIN = 0x82
#: The part of a write the client must take within the send timeout.
_PART = 1 << 16

log = logging.getLogger(__name__)


def frame(payload: bytes) -> bytes:
    """One unmasked, final, binary WebSocket frame carrying ``payload``."""
    n = len(payload)
    if n < 126:
        return bytes((_BINARY_FIN, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", _BINARY_FIN, 126, n) + payload
    return struct.pack("!BBQ", _BINARY_FIN, 127, n) + payload


async def send_frames(ws: WebSocketConnection, payloads: Iterable[bytes]) -> None:
    """Writes each payload as one binary message, all in one write; raises
    :class:`ConnectionClosed` like ``send_message``."""
    await send_framed(ws, b"".join(frame(p) for p in payloads))


async def send_framed(ws: WebSocketConnection, data: bytes) -> None:
    """Writes binary messages already framed (as :func:`frame` does; the shape graph frames
    subscription data in Rust) in one write; raises :class:`ConnectionClosed` like
    ``send_message``."""
    if ws._close_reason:
        raise ConnectionClosed(ws._close_reason)
    async with ws._stream_lock:
        try:
            await _send_all(ws, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            await ws._abort_web_socket()
            raise ConnectionClosed(ws._close_reason) from None


async def _send_all(ws: WebSocketConnection, data: bytes | memoryview) -> None:
    """``send_all``, in parts of 64 KiB each taken within the connection's send timeout;
    raises :class:`trio.TooSlowError` (logged) when one is not."""
    timeout: float | None = getattr(ws, _SEND_TIMEOUT, None)
    if timeout is None:
        await ws._stream.send_all(data)
        return
    view = memoryview(data)
    for start in range(0, len(view), _PART):
        with trio.move_on_after(timeout) as scope:
            await ws._stream.send_all(view[start : start + _PART])
        if scope.cancelled_caught:
            log.warning(
                "client not reading: cut off, none of %d bytes taken in %g s remote=%s",
                len(view) - start,
                timeout,
                ws.remote,
            )
            raise trio.TooSlowError


#: The attribute :func:`adopt` sets on a connection: its socket's ``fileno`` (the standard
#: library's, -1 once closed) or None when the stream is not a socket. Looked up once, as the
#: fan-out asks for it once per client per transaction.
_FILENO = "_electric_fileno"
#: The attribute :func:`adopt` sets on a connection: its send timeout (seconds) or None.
_SEND_TIMEOUT = "_electric_send_timeout"


class StreamLock:
    """A connection's stream lock as :func:`adopt` makes it: a semaphore of one (any task may
    release it, so a write's rest can go out from a task of its own) that calls ``changed``
    each time it is taken or given back. trio-websocket takes it with ``async with``."""

    __slots__ = ("_semaphore", "changed")

    def __init__(self, changed: Callable[[], object] | None = None) -> None:
        self._semaphore = trio.Semaphore(1)
        self.changed = changed

    @property
    def value(self) -> int:
        """1 when free, 0 when held."""
        return self._semaphore.value

    def acquire_nowait(self) -> None:
        self._semaphore.acquire_nowait()
        if self.changed is not None:
            self.changed()

    async def acquire(self) -> None:
        await self._semaphore.acquire()
        if self.changed is not None:
            self.changed()

    def release(self) -> None:
        self._semaphore.release()
        if self.changed is not None:
            self.changed()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


def adopt(
    ws: WebSocketConnection,
    send_timeout: float | None = None,
    changed: Callable[[], object] | None = None,
) -> None:
    """Makes the connection's stream lock one that :func:`write_now` can hand to a task
    (:class:`StreamLock`, calling ``changed`` as it is taken and given back); a write to it of
    which the client takes no 64 KiB part within ``send_timeout`` seconds closes the
    connection."""
    ws._stream_lock = StreamLock(changed)  # type: ignore[assignment]
    setattr(ws, _SEND_TIMEOUT, send_timeout)
    stream: Any = ws._stream
    inner = getattr(stream, "stream", stream)  # the HTTP server's ReplayStream
    fileno: Callable[[], int] | None = None
    if isinstance(inner, trio.SocketStream):
        sock = inner.socket
        fileno = getattr(getattr(sock, "_sock", None), "fileno", sock.fileno)
    setattr(ws, _FILENO, fileno)


def can_write_now(ws: WebSocketConnection) -> bool:
    """Whether :func:`write_now` may be called: open, adopted, not being written to."""
    lock = ws._stream_lock
    return (
        not ws._close_reason
        and isinstance(lock, StreamLock)
        and lock.value == 1
        and getattr(ws, _FILENO, None) is not None
    )


def write_now(ws: WebSocketConnection, data: bytes, spawn: Callable[..., object]) -> None:
    """Writes ``data``, binary messages already framed by :func:`frame`, without waiting
    (after :func:`can_write_now`); what the socket does not take at once is sent by a task
    started with ``spawn``, which holds the connection's lock until it is done (a write the
    socket takes whole needs no lock: nothing else runs before it is over). The fan-out frames
    a transaction's message once and writes the same bytes to every socket that gets it."""
    fileno: Callable[[], int] = getattr(ws, _FILENO)
    try:
        sent = os.write(fileno(), data)
    except BlockingIOError:
        sent = 0
    except OSError:
        return  # a broken connection: its reader finds out and ends the session
    write_rest(ws, data, sent, spawn)


def socket_fileno(ws: WebSocketConnection) -> Callable[[], int]:
    """What gives the descriptor of the connection's socket (-1 once it is closed), for a
    write that does not wait (after :func:`can_write_now`): the fan-out keeps it while the
    session is parked and calls it per transaction."""
    fileno: Callable[[], int] = getattr(ws, _FILENO)
    return fileno


def write_rest(
    ws: WebSocketConnection, data: bytes, sent: int, spawn: Callable[..., object]
) -> None:
    """After ``sent`` bytes of ``data`` were written to the connection's socket at once (by
    :func:`write_now`, or by the fan-out in Rust, after :func:`can_write_now`): the rest goes out
    from a task started with ``spawn``, which holds the connection's lock until it is done.
    ``sent`` < 0: the socket refused the write (the connection's reader finds out)."""
    if sent < 0 or sent == len(data):
        return
    lock = ws._stream_lock
    assert isinstance(lock, StreamLock)
    lock.acquire_nowait()
    spawn(_finish, ws, memoryview(data)[sent:], lock)


async def _finish(ws: WebSocketConnection, rest: memoryview, lock: StreamLock) -> None:
    try:
        await _send_all(ws, rest)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
        await ws._abort_web_socket()
    finally:
        lock.release()
