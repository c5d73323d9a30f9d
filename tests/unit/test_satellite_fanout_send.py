"""The server's fan-out in one Rust call (``_native.fanout_send``): each client's graph processes
the transaction and its WebSocket frame goes straight to its socket, on the golden stream of an
electrified database (rust/core/testdata/electric.bin)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from test_satellite_stream import PARENT, FakeHistory, every_row, payloads

from electric_trio._native import ElectricDecoder, fanout_send, transaction_relations
from electric_trio.satellite import messages as m
from electric_trio.satellite._wire import frame

NOT_WRITTEN, BROKEN = -1, -2


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Three connected socket pairs: (the server's end, non-blocking; the client's end)."""
    made = [socket.socketpair() for _ in range(3)]
    for server, _ in made:
        server.setblocking(False)
    yield made
    for server, client in made:
        server.close()
        client.close()


def received(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(5)
    data = b""
    while len(data) < n:
        data += sock.recv(n - len(data))
    return data


def nothing_on(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


def test_each_client_gets_its_frame_on_its_socket_at_once(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    pg, delete, *_ = ElectricDecoder().decode(payloads())
    history = FakeHistory([PARENT])
    oid = transaction_relations(pg, [0])[0][0]
    graphs = [every_row(history, oid) for _ in pairs]
    fds = [server.fileno() for server, _ in pairs]
    ids = ["a", "b", "c"]

    # First use of the relation: nothing is written, the caller announces it before the frame.
    frames, written, special = fanout_send(pg, graphs, ids, [1, 1, 1], fds)
    assert written == [NOT_WRITTEN] * 3
    assert [(i, [r[2] for r in relations]) for i, relations, _ in special] == [
        (0, ["parent"]),
        (1, ["parent"]),
        (2, ["parent"]),
    ]
    for _, client in pairs:
        assert nothing_on(client)

    # Then: the first client's socket is full, the third is closed; the second takes it all.
    full, _ = pairs[0]
    try:
        while True:
            full.send(b"\0" * 65536)
    except BlockingIOError:
        pass
    frames, written, special = fanout_send(delete, graphs, ids, [1, 1, 1], [*fds[:2], -1])
    wire = frames[1]
    assert wire is not None
    # the same changes: one bytes object
    assert frames[0] is wire
    assert frames[2] is wire
    assert written == [0, len(wire), BROKEN]
    assert special == []
    data = received(pairs[1][1], len(wire))
    assert data == wire
    log = m.decode(data[2:])  # an unmasked binary WebSocket frame around the SatOpLog
    assert frame(data[2:]) == wire
    assert isinstance(log, m.SatOpLog)
    assert log.ops[0].begin is not None
    assert log.ops[0].begin.transaction_id == delete.xid
    assert log.ops[1].delete is not None
    assert log.ops[-1].commit is not None


def test_a_client_that_sees_nothing_gets_nothing(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    pg, *_ = ElectricDecoder().decode(payloads())
    history = FakeHistory([PARENT, "CREATE TABLE other (id int8 PRIMARY KEY)"])
    oid = transaction_relations(pg, [0])[0][0]
    graphs = [every_row(history, oid, "other")]
    frames, written, special = fanout_send(pg, graphs, ["a"], [1], [pairs[0][0].fileno()])
    assert (frames, written, special) == ([None], [0], [])
    assert nothing_on(pairs[0][1])
