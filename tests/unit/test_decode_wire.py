"""ElectricDecoder.decode_wire: the replication connection's bytes as received, framed in Rust.

The golden stream of an electrified database (rust/core/testdata/electric.bin) is sent as the
server sends it (CopyData messages) and cut at arbitrary points, as a socket cuts it.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from electric_trio._native import ElectricDecoder, ElectricTransaction, PgOutputError

GOLDEN = Path(__file__).resolve().parents[2] / "rust" / "core" / "testdata" / "electric.bin"


def payloads() -> list[bytes]:
    data = GOLDEN.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def copy_data(payload: bytes) -> bytes:
    return b"d" + struct.pack(">I", len(payload) + 4) + payload


def summary(txns: Iterable[ElectricTransaction]) -> list[tuple[Any, ...]]:
    return [(t.xid, t.end_lsn, t.origin, t.changes(), t.ddl, t.marker) for t in txns]


def decode_in_chunks(decoder: ElectricDecoder, wire: bytes, cuts: list[int]) -> list[Any]:
    txns: list[Any] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        txns += decoder.decode_wire(wire[start:end])
        assert decoder.take_unhandled() == b""
    return txns


def test_cut_anywhere_it_decodes_as_the_payloads_do() -> None:
    expected = summary(ElectricDecoder().decode(payloads()))
    assert len(expected) == 8
    wire = b"".join(map(copy_data, payloads()))
    assert summary(decode_in_chunks(ElectricDecoder(), wire, [])) == expected
    # One byte at a time: every cut inside a header and inside a body.
    assert summary(decode_in_chunks(ElectricDecoder(), wire, list(range(1, len(wire))))) == (
        expected
    )
    rng = random.Random(9)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(wire)), 30))
        assert summary(decode_in_chunks(ElectricDecoder(), wire, cuts)) == expected


def test_stops_at_a_message_other_than_copy_data_and_hands_it_back() -> None:
    chunks = payloads()
    wire = b"".join(map(copy_data, chunks))
    error = b"E" + struct.pack(">I", 4 + 9) + b"SERROR\x00\x00\x00"
    after = copy_data(chunks[0])
    decoder = ElectricDecoder()
    # The error arrives cut in two, the second part with CopyData after it.
    txns = decoder.decode_wire(wire + error[:3])
    assert summary(txns) == summary(ElectricDecoder().decode(chunks))
    assert decoder.take_unhandled() == error[:3]
    assert decoder.take_unhandled() == b""
    decoder = ElectricDecoder()
    decoder.decode_wire(wire[:10])
    decoder.decode_wire(wire[10:] + error)
    assert decoder.decode_wire(after) == []  # kept behind the error, not decoded
    assert decoder.take_unhandled() == error + after


def test_a_bad_frame_header_is_left_to_the_connection() -> None:
    decoder = ElectricDecoder()
    bad = b"d" + struct.pack(">i", 2) + b"xx"
    assert decoder.decode_wire(bad) == []
    assert decoder.take_unhandled() == bad


def test_a_malformed_payload_raises_with_the_transactions_before_it() -> None:
    chunks = payloads()
    complete = ElectricDecoder().decode(chunks)
    wire = b"".join(map(copy_data, chunks)) + copy_data(b"w" + bytes(24) + b"?")
    with pytest.raises(PgOutputError) as caught:
        ElectricDecoder().decode_wire(wire)
    assert summary(caught.value.transactions) == summary(complete)
