"""The native pgoutput decoder on streams captured from PostgreSQL 18 (rust/core/testdata)."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import math
import struct
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from electric_trio import _native
from electric_trio._native import UNCHANGED_TOAST, PgOutputDecoder, PgOutputError, Transaction
from electric_trio.errors import ProtocolError

TESTDATA = Path(__file__).resolve().parents[2] / "rust" / "core" / "testdata"
UTC = datetime.UTC


def payloads(name: str) -> list[bytes]:
    """The CopyData payloads of a golden file (4-byte big-endian length, then the bytes)."""
    data = (TESTDATA / name).read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def decode(name: str) -> tuple[PgOutputDecoder, list[Transaction]]:
    decoder = PgOutputDecoder()
    return decoder, decoder.decode(payloads(name))


def xlog_lsn(payload: bytes) -> int:
    (lsn,) = struct.unpack_from(">Q", payload, 1)
    return int(lsn)


def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def test_every_column_type_decodes_to_its_python_type() -> None:
    decoder, txns = decode("types.bin")
    assert [len(t) for t in txns] == [1, 1, 1]
    assert all(t.relations == [("public", "all_types")] for t in txns)
    assert txns[0].commit_lsn < txns[0].end_lsn <= txns[1].commit_lsn
    committed = datetime.datetime(2000, 1, 1, tzinfo=UTC) + datetime.timedelta(
        microseconds=txns[0].commit_timestamp
    )
    assert datetime.datetime(2020, 1, 1, tzinfo=UTC) < committed < datetime.datetime.now(UTC)

    [(kind, schema, table, row, old)] = txns[0].changes()
    assert (kind, schema, table, old) == ("insert", "public", "all_types", None)
    assert row == {
        "id": 1,
        "b": True,
        "i2": -32768,
        "i4": 2147483647,
        "i8": -9223372036854775808,
        "f4": 1.5,
        "f8": math.pi,
        "num": decimal.Decimal("12345678901234.123456"),
        "t": 'h\u00e9llo, "world"\n\ttab',
        "vc": "varchar",
        "bp": "ab  ",
        "ba": b"\x00\xff\x10",
        "u": uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        "d": datetime.date(2024, 2, 29),
        "tm": datetime.time(13, 14, 15, 500000),
        "ttz": datetime.time(
            13, 14, 15, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
        ),
        "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
        # Sent in the walsender's time zone (+05:30), normalised to UTC.
        "tstz": datetime.datetime(2023, 12, 31, 23, 0, tzinfo=UTC),
        "j": {"a": [1, 2.5, None]},
        "jb": {"b": {"c": True}},
        "ai": [1, None, -3],
        "at": ["a b", 'c"d', None, "NULL", "e"],
        "af": [1.5, -0.25],
        "ad": [datetime.date(2000, 1, 1), None],
        "atz": [datetime.datetime(2024, 6, 1, 12, tzinfo=UTC)],
        "m": "happy",
        "iv": "1 day 02:03:04",
    }
    assert isinstance(row["tstz"], datetime.datetime)

    [(_, _, _, edge, _)] = txns[1].changes()
    assert edge is not None
    assert math.isnan(edge["f4"])
    assert edge["f8"] == -math.inf
    assert edge["num"].is_nan()
    assert edge["d"] == datetime.date.max
    assert edge["ts"] == datetime.datetime.min
    assert edge["tstz"] == datetime.datetime.max.replace(tzinfo=UTC)
    assert edge["tm"] == datetime.time(23, 59, 59, 999999)
    assert edge["ttz"].utcoffset() == datetime.timedelta(hours=-12)
    assert (edge["j"], edge["ai"], edge["at"]) == ([], [], [["x", "y"], ["z", None]])

    [(_, _, _, nulls, _)] = txns[2].changes()
    assert nulls is not None
    assert nulls["id"] == 3
    assert all(v is None for k, v in nulls.items() if k != "id")

    assert decoder.relation(0) is None
    relation_message = next(p for p in payloads("types.bin") if p[25:26] == b"R")
    (oid,) = struct.unpack_from(">I", relation_message, 26)
    schema, table, identity, columns = decoder.relation(oid) or ("", "", "", [])
    assert (schema, table, identity) == ("public", "all_types", "d")
    assert columns[0] == ("id", 20, -1, True)
    assert columns[9] == ("vc", 1043, 24, False)  # varchar(20): typmod 20 + 4


def test_updates_deletes_truncate_and_messages() -> None:
    decoder, txns = decode("changes.bin")
    changes = [c for t in txns for c in t.changes()]
    by_kind = [(c[0], c[2]) for c in changes]
    assert by_kind == [
        ("insert", "def_t"),
        ("update", "def_t"),
        ("update", "def_t"),
        ("insert", "full_t"),
        ("insert", "full_t"),
        ("update", "full_t"),
        ("delete", "full_t"),
        ("delete", "def_t"),
        ("insert", "parent"),
        ("insert", "child"),
        ("truncate", "parent"),
        ("truncate", "child"),
    ]
    inserted = changes[0][3]
    assert inserted is not None
    assert len(inserted["big"]) == 6400
    # The update did not touch the TOASTed column: it is not sent.
    assert changes[1][3] == {"id": 1, "v": "changed", "big": UNCHANGED_TOAST}
    assert changes[1][3]["big"] is UNCHANGED_TOAST
    assert changes[1][4] is None
    # A key change sends the old key only.
    assert changes[2][3] == {"id": 10, "v": "changed", "big": UNCHANGED_TOAST}
    assert changes[2][4] == {"id": 1}
    # REPLICA IDENTITY FULL sends the whole old row.
    assert changes[5][3:] == ({"id": 1, "v": "b", "n": 11}, {"id": 1, "v": "a", "n": 1})
    assert changes[6][3:] == (None, {"id": 2, "v": None, "n": 2})
    assert changes[7][3:] == (None, {"id": 10})
    assert changes[10][3:] == (None, None)

    fk = txns[7]
    assert fk.relations == [("public", "parent"), ("public", "child")]
    assert fk.messages == [("electric.fk_chain_touch", b'{"a": 1}', True)]
    only_message = txns[-1]
    assert len(only_message) == 0
    assert only_message.changes() == []
    assert only_message.messages == [("only", b"\x00\xff", True)]
    assert all(t.origin is None and not t.streamed for t in txns)

    [(lsn, prefix, content)] = decoder.take_messages()
    assert (prefix, content) == ("nontx", b"hello")
    assert txns[7].end_lsn <= lsn <= txns[8].commit_lsn
    assert decoder.take_messages() == []
    assert decoder.dropped_messages == 0


def test_streamed_transaction_with_a_subtransaction_abort() -> None:
    decoder, txns = decode("streamed.bin")
    assert [t.relations for t in txns] == [[("public", "small_t")], [("public", "big_t")]]
    small, big = txns
    assert not small.streamed
    assert big.streamed
    assert len(big) == 1500
    ids = [c[3]["id"] for c in big.changes() if c[3] is not None]
    assert ids == [*range(1, 1001), *range(1501, 2001)]
    # Pages of a large transaction.
    assert [c[3] for c in big.changes(1000, 1002)] == [
        {"id": 1501, "v": "released 1501"},
        {"id": 1502, "v": "released 1502"},
    ]
    assert [c[3] for c in big.changes(1499)] == [{"id": 2000, "v": "row 2000"}]
    assert big.changes(5, 2) == []
    assert big.changes(2000) == []
    assert not decoder.in_transaction


def test_batches_of_any_size_give_the_same_transactions() -> None:
    all_payloads = payloads("streamed.bin")
    decoder = PgOutputDecoder()
    got: list[Transaction] = []
    seen_in_progress = False
    for i in range(0, len(all_payloads), 97):
        got += decoder.decode(all_payloads[i : i + 97])
        seen_in_progress |= decoder.in_transaction
    assert seen_in_progress
    assert [len(t) for t in got] == [1, 1500]
    assert decoder.decode([]) == []


def test_keepalives_update_the_server_position() -> None:
    decoder = PgOutputDecoder()
    keepalive = b"k" + struct.pack(">QQB", 0x1_0000_0010, 5, 1)
    assert decoder.decode([keepalive]) == []
    assert decoder.server_wal_end == 0x1_0000_0010
    assert decoder.reply_requested
    assert decoder.take_reply_requested()
    assert not decoder.reply_requested
    assert not decoder.take_reply_requested()
    decoder.decode([b"k" + struct.pack(">QQB", 0x20, 5, 0)])
    assert decoder.server_wal_end == 0x1_0000_0010
    assert not decoder.reply_requested


def test_a_corrupted_byte_raises_with_the_lsn_and_keeps_completed_transactions() -> None:
    stream = payloads("changes.bin")
    at = next(i for i, p in enumerate(stream) if p[:1] == b"w" and p[25:26] == b"U")
    corrupted = bytearray(stream[at])
    corrupted[30] = ord("X")  # the new-tuple marker
    stream[at] = bytes(corrupted)
    lsn = xlog_lsn(stream[at])
    decoder = PgOutputDecoder()
    with pytest.raises(PgOutputError) as caught:
        decoder.decode(stream)
    error = caught.value
    assert isinstance(error, ProtocolError)
    assert error.lsn == lsn
    assert f"pgoutput at LSN {lsn_text(lsn)}:" in str(error)
    assert "expected 'N' before the new tuple, got 'X'" in str(error)
    assert [t.relations for t in error.transactions] == [[("public", "def_t")]]
    assert not decoder.in_transaction


def test_a_value_that_does_not_parse_names_its_column() -> None:
    stream = payloads("types.bin")
    at = next(i for i, p in enumerate(stream) if p[:1] == b"w" and p[25:26] == b"I")
    # Turn the int8 primary key "1" of the first insert into "x".
    needle = b"t\x00\x00\x00\x011"
    assert needle in stream[at]
    stream[at] = stream[at].replace(needle, b"t\x00\x00\x00\x01x", 1)
    with pytest.raises(PgOutputError, match=r'column "id" of public\.all_types: invalid integer'):
        PgOutputDecoder().decode(stream)


def test_payloads_that_are_not_xlogdata() -> None:
    with pytest.raises(PgOutputError, match="unexpected replication message 'h'") as caught:
        PgOutputDecoder().decode([b"h" + bytes(16)])
    assert caught.value.lsn is None
    with pytest.raises(PgOutputError, match="bad replication message"):
        PgOutputDecoder().decode([b""])


def test_transaction_handles_are_immutable() -> None:
    _, txns = decode("types.bin")
    with pytest.raises(AttributeError):
        txns[0].xid = 1  # type: ignore[misc]
    assert repr(txns[0]).startswith(f"<Transaction xid={txns[0].xid} commit_lsn=")
    assert repr(UNCHANGED_TOAST) == "UNCHANGED_TOAST"
    assert type(UNCHANGED_TOAST) is _native.UnchangedToastType
    with pytest.raises(TypeError):
        _native.UnchangedToastType()


GOLDEN = payloads("changes.bin") + payloads("types.bin")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    index=st.integers(0, len(GOLDEN) - 1),
    cut=st.integers(0, 400),
    garbage=st.binary(max_size=40),
)
def test_truncated_or_garbage_payloads_raise_never_crash(
    index: int, cut: int, garbage: bytes
) -> None:
    payload = GOLDEN[index]
    for bad in (payload[: cut % (len(payload) + 1)], payload[:25] + garbage, garbage):
        with contextlib.suppress(PgOutputError):
            PgOutputDecoder().decode([*GOLDEN[:index], bad])
