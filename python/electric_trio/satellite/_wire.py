"""Server frames written straight to a WebSocket's stream.

Frames from server to client are not masked, so a Satellite frame's WebSocket framing is a
fixed header in front of the payload: the bytes are built once per frame here (no per-message
state machine) and a transaction's frames go out in one write. trio-websocket keeps the
connection (handshake, reading, pings, close); this only writes complete binary messages under
its stream lock, between its own messages.

:func:`write_now` is the fan-out's path: when the socket takes the bytes at once it writes them
without yielding to the scheduler (one system call, no task switch); the rest of a partial
write goes out from a task of the session, the stream lock held until it is done. For that the
connection's lock is a semaphore (:func:`adopt`), which any task may release.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

__all__ = ["adopt", "can_write_now", "frame", "send_frames", "write_now"]

_BINARY_FIN = 0x82


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
    data = b"".join(frame(p) for p in payloads)
    if ws._close_reason:
        raise ConnectionClosed(ws._close_reason)
    async with ws._stream_lock:
        try:
            await ws._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await ws._abort_web_socket()
            raise ConnectionClosed(ws._close_reason) from None


#: The attribute :func:`adopt` sets on a connection: its socket's ``fileno`` (the standard
#: library's, -1 once closed) or None when the stream is not a socket. Looked up once, as the
#: fan-out asks for it once per client per transaction.
_FILENO = "_electric_fileno"


def adopt(ws: WebSocketConnection) -> None:
    """Makes the connection's stream lock one that :func:`write_now` can hand to a task."""
    ws._stream_lock = trio.Semaphore(1)  # type: ignore[assignment]
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
        and isinstance(lock, trio.Semaphore)
        and lock.value == 1
        and getattr(ws, _FILENO, None) is not None
    )


def write_now(ws: WebSocketConnection, data: bytes, spawn: Callable[..., object]) -> None:
    """Writes ``data``, binary messages already framed by :func:`frame`, without waiting
    (after :func:`can_write_now`); what the socket does not take at once is sent by a task
    started with ``spawn``. The fan-out frames a transaction's message once and writes the same
    bytes to every socket that gets it."""
    lock = ws._stream_lock
    assert isinstance(lock, trio.Semaphore)
    fileno: Callable[[], int] = getattr(ws, _FILENO)
    lock.acquire_nowait()
    try:
        sent = os.write(fileno(), data)
    except BlockingIOError:
        sent = 0
    except OSError:
        sent = len(data)  # a broken connection: its reader finds out and ends the session
    if sent == len(data):
        lock.release()
        return
    spawn(_finish, ws, memoryview(data)[sent:], lock)


async def _finish(ws: WebSocketConnection, rest: memoryview, lock: trio.Semaphore) -> None:
    try:
        await ws._stream.send_all(rest)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        await ws._abort_web_socket()
    finally:
        lock.release()
