"""Bytes and text from outside, thrown at every entry point of the native extension that parses
them: whatever comes in, the only exceptions out are ours (subclasses of ``ElectricError``),
never PyO3's ``PanicException`` (a ``BaseException`` that no per-connection handler stops) and
never a crash. The coverage-guided fuzzing of the same parsers is in ``rust/fuzz``; this checks
the binding layer around them.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from electric_trio import _native
from electric_trio.errors import ElectricError, InternalError
from electric_trio.satellite import messages

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Type OIDs of every column type the readers decode, arrays and an unknown OID among them.
OIDS = [16, 17, 20, 21, 23, 25, 114, 700, 701, 1082, 1083, 1114, 1184, 1266, 1700, 2950, 3802]
OIDS += [1007, 1009, 1115, 99_999]

# Satellite message type ids (13 real ones, a reserved one, an unknown one) and some frames.
TYPE_BYTES = st.sampled_from([0, 9, 10, 14, 15, 16, 17, 18, 21, 22, 23, 24, 25, 1, 99])


def frames(body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.builds(lambda t, b: bytes([t]) + b, TYPE_BYTES, body)


def pg_messages() -> st.SearchStrategy[bytes]:
    """Tagged Postgres messages with a length that is right, short, long, negative or huge."""
    lengths = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))

    def build(tag: int, body: bytes, length: int | None) -> bytes:
        n = len(body) + 4 if length is None else length
        return bytes([tag]) + n.to_bytes(4, "big", signed=True) + body

    return st.builds(
        build, st.sampled_from(b"DTCEZRSKNAdcGHWIsn1234tQPBFpXfkw"), st.binary(), lengths
    )


def ours(call: object, *args: object) -> None:
    try:
        call(*args)  # type: ignore[operator]
    except ElectricError:
        pass


def test_a_panic_reaches_python_as_internal_error() -> None:
    with pytest.raises(InternalError, match="internal error in electric-trio's native code: x"):
        _native._panic_in_guard("x")
    assert issubclass(InternalError, ElectricError)
    assert issubclass(InternalError, Exception)


@FUZZ
@given(st.one_of(st.binary(max_size=300), frames(st.binary(max_size=300))))
def test_satellite_frames(data: bytes) -> None:
    ours(_native.decode_frame, data)
    ours(_native.decode_frame, data, 16)
    # The codec the service reads client frames with.
    ours(messages.decode, data)
    ours(lambda d: messages.decode(d, max_len=16), data)


_MESSAGES = [
    "SatAuthReq",
    "SatInStartReplicationReq",
    "SatSubsReq",
    "SatUnsubsReq",
    "SatOpLog",
    "SatRelation",
    "SatInStopReplicationReq",
]


@FUZZ
@given(st.sampled_from(_MESSAGES), st.binary(max_size=300))
def test_rpc_bodies(name: str, data: bytes) -> None:
    ours(_native.decode_message, name, data)
    ours(messages._CODEC.decode_message, name, data)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(OIDS), st.none()), min_size=1, max_size=4), st.data())
def test_client_row_values(types: list[tuple[int, None]], data: st.DataObject) -> None:
    names = {16: "bool", 17: "bytea", 20: "int8", 21: "int2", 23: "int4", 25: "text"}
    names |= {114: "json", 700: "float4", 701: "float8", 1082: "date", 1083: "time"}
    names |= {1114: "timestamp", 1184: "timestamptz", 2950: "uuid", 3802: "jsonb"}
    columns: list[tuple[str, list[str] | None]] = [
        (names[oid], None) if oid in names else ("enum", ["a", "b"]) for oid, _ in types
    ]
    codec = _native.ClientRowCodec(columns)
    values = data.draw(st.lists(st.binary(max_size=40), min_size=len(columns) - 1))
    ours(codec.to_pg_text, data.draw(st.binary(max_size=2)), values)


CLAUSE_TEXT = st.text(string.printable + "éß\u0000\u202e'\"", max_size=120)
_WORDS = ["this.a", "this.b", "(", ")", "'x'", "1", "-", "+", "*", "/", "%", "||", "=", "<>"]
_WORDS += ["AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "LIKE", "ILIKE", "ESCAPE", ","]
_WORDS += ["::", "int8", "date", "CAST", "AS", "lower", "abs", "'2024-01-01'", "1e308", "TRUE"]
CLAUSE_WORDS = st.lists(st.sampled_from(_WORDS), max_size=40).map(" ".join)


@FUZZ
@given(st.one_of(CLAUSE_TEXT, CLAUSE_WORDS), st.sampled_from(OIDS), st.sampled_from(OIDS))
def test_where_clauses(clause: str, a: int, b: int) -> None:
    try:
        f = _native.ShapeFilter.compile(clause, [("a", a), ("b", b)])
    except ElectricError:
        return
    f.to_sql("t")
    for row in ({}, {"a": None, "b": None}):
        ours(f.evaluate, row)


@FUZZ
@given(st.lists(pg_messages(), max_size=6), st.lists(st.sampled_from(OIDS), max_size=4))
def test_postgres_server_messages(messages: list[bytes], oids: list[int]) -> None:
    reader = _native.BackendReader(max_message=1 << 16)
    reader.set_columns(oids)
    reader.feed(b"".join(messages))

    def drain() -> None:
        for _ in range(10):
            reader.read_rows()
            if reader.next() is None:
                break

    ours(drain)


@FUZZ
@given(st.binary(max_size=60), st.lists(pg_messages(), max_size=6))
def test_postgres_client_messages(startup: bytes, messages: list[bytes]) -> None:
    first = (len(startup) + 4).to_bytes(4, "big") + startup
    reader = _native.FrontendReader(max_message=1 << 16)
    reader.feed(first + b"".join(messages))
    scanner = _native.FrameScanner(max_message=1 << 16)
    scanner.feed(first + b"".join(messages))
    try:
        reader.next_startup()
        for _ in range(8):
            reader.next()
    except ElectricError:
        pass
    try:
        scanner.next_untagged()
        for _ in range(8):
            scanner.next(b"QPBEDCp")
    except ElectricError:
        pass
    ours(_native.parse_startup, startup)
    for message in messages:
        ours(_native.parse_frontend, message[0], message[5:])
        ours(_native.parse_sasl_initial_response, message[5:])


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=80), st.binary(max_size=80).map(lambda b: b"w" + b))))
def test_replication_payloads(payloads: list[bytes]) -> None:
    ours(_native.PgOutputDecoder().decode, payloads)
    ours(_native.ElectricDecoder().decode, payloads)
