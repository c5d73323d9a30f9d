"""Server frames written straight to a WebSocket's stream.

Frames from server to client are not masked, so a Satellite frame's WebSocket framing is a
fixed header in front of the payload: the bytes are built once per frame here (no per-message
state machine) and a transaction's frames go out in one write. trio-websocket keeps the
connection (handshake, reading, pings, close); this only writes complete binary messages under
its stream lock, between its own messages.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

__all__ = ["frame", "send_frames"]

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
