"""Server frames built by satellite/_wire.py are what a WebSocket client reads."""

from __future__ import annotations

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage

from electric_trio.satellite._wire import frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_a_client_reads_each_frame_as_one_binary_message(size: int) -> None:
    client = Connection(ConnectionType.CLIENT)
    payloads = [bytes([size % 251]) * size, b"next"]
    client.receive_data(b"".join(frame(p) for p in payloads))
    got: list[bytes] = []
    partial = b""
    for event in client.events():
        assert isinstance(event, BytesMessage)
        partial += event.data
        if event.message_finished:
            got.append(partial)
            partial = b""
    assert got == payloads
