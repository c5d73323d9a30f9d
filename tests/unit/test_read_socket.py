"""ElectricDecoder.read_socket: the decoder receives from the replication socket itself.

The golden stream of an electrified database (rust/core/testdata/electric.bin) is written to
one end of a socket pair as the server sends it (CopyData messages), cut at arbitrary points;
the decoder receives from the other, non-blocking end.
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from collections.abc import Iterator

import pytest
from test_decode_wire import copy_data, payloads, summary

from electric_trio._native import ElectricDecoder, ElectricTransaction

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    server, reader = socket.socketpair()
    reader.setblocking(False)
    with server, reader:
        yield server, reader


def drain(decoder: ElectricDecoder, sock: socket.socket) -> tuple[list[ElectricTransaction], int]:
    """Everything the socket holds now: the transactions and the bytes received."""
    txns: list[ElectricTransaction] = []
    received = 0
    while (got := decoder.read_socket(sock.fileno())) is not None:
        txns += got[0]
        received += got[1]
        assert decoder.take_unhandled() == b""
    return txns, received


def test_nothing_ready_is_none_and_cut_frames_join_across_receives(pair: Pair) -> None:
    server, reader = pair
    expected = summary(ElectricDecoder().decode(payloads()))
    wire = b"".join(map(copy_data, payloads()))
    decoder = ElectricDecoder()
    assert decoder.read_socket(reader.fileno()) is None
    txns: list[ElectricTransaction] = []
    total = 0
    # Cuts inside a header, inside a body, and at a frame's end.
    cuts = [0, 3, 7, 500, 501, len(wire) // 2, len(wire) - 1, len(wire)]
    for start, end in itertools.pairwise(cuts):
        server.sendall(wire[start:end])
        got, received = drain(decoder, reader)
        txns += got
        total += received
    assert total == len(wire)
    assert summary(txns) == expected
    assert not decoder.in_transaction


def test_a_keepalive_asking_for_a_reply_is_reported(pair: Pair) -> None:
    server, reader = pair
    decoder = ElectricDecoder()
    keepalive = b"k" + struct.pack(">QQ?", 0x1234, 0, True)
    server.sendall(copy_data(keepalive))
    assert drain(decoder, reader) == ([], len(copy_data(keepalive)))
    assert decoder.server_wal_end == 0x1234
    assert decoder.take_reply_requested()
    assert not decoder.take_reply_requested()


def test_a_message_other_than_copy_data_is_handed_back(pair: Pair) -> None:
    server, reader = pair
    chunks = payloads()
    error = b"E" + struct.pack(">I", 4 + 9) + b"SERROR\x00\x00\x00"
    server.sendall(b"".join(map(copy_data, chunks)) + error)
    decoder = ElectricDecoder()
    got = decoder.read_socket(reader.fileno())
    assert got is not None
    assert summary(got[0]) == summary(ElectricDecoder().decode(chunks))
    assert decoder.take_unhandled() == error


def test_the_peer_closing_is_an_eof_error(pair: Pair) -> None:
    server, reader = pair
    server.sendall(copy_data(payloads()[0])[:5])
    server.shutdown(socket.SHUT_WR)
    decoder = ElectricDecoder()
    assert decoder.read_socket(reader.fileno()) == ([], 5)
    with pytest.raises(EOFError):
        decoder.read_socket(reader.fileno())


def test_a_closed_descriptor_is_an_os_error() -> None:
    sock = socket.socket()
    fd = sock.detach()
    socket.close(fd)
    with pytest.raises(OSError, match="Bad file descriptor") as caught:
        ElectricDecoder().read_socket(fd)
    assert caught.value.errno == errno.EBADF
