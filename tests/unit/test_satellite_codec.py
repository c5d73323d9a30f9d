"""The Satellite frame codec through the native binding and the msgspec models.

Golden frames: ``rust/core/testdata/satellite``, encoded by the official electric-sql 0.12.1
client's own protobuf module (``scripts/gen_satellite_golden.mjs``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from electric_trio import _native
from electric_trio.errors import ProtocolError
from electric_trio.satellite import SatelliteFrameError
from electric_trio.satellite import messages as m

GOLDEN = Path(__file__).parents[2] / "rust" / "core" / "testdata" / "satellite"
MANIFEST: dict[str, str] = json.loads((GOLDEN / "manifest.json").read_text())["frames"]
# The official client writes empty packed repeated fields (PgColumnType.array/size) that
# canonical proto3 encoding leaves out.
NOT_CANONICAL = {"oplog_migration"}

CLIENT_ID = "0f4a4e6b-3a4c-4b8e-9d7e-2f1c6a5b4d3e"
SUB_ID = "5b1f7c9e-8d2a-4e3b-9f6c-1a2b3c4d5e6f"
TS = 1686827885372
REL = 16385


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.bin").read_bytes()


def items_row(title: str, n: int) -> m.SatOpRow:
    return m.SatOpRow(
        nulls_bitmask=b"\x00\x80",
        values=(
            b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            title.encode(),
            str(n).encode(),
            b"1.402e+36",
            b"t",
            b"2023-06-15 11:18:05.372Z",
            b"\x00\xff\x10",
            b'{"a": [1, 2]}',
            b"",
            b"-7",
        ),
    )


def all_message_classes() -> list[type[m.ProtoMessage]]:
    return [
        obj
        for name in m.__all__
        if isinstance(obj := getattr(m, name), type)
        and issubclass(obj, m.ProtoMessage)
        and obj not in (m.ProtoMessage, m.FrameMessage)
    ]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_golden_frames_round_trip(name: str) -> None:
    data = golden(name)
    message = m.decode(data)
    assert type(message).PROTO_NAME == MANIFEST[name]
    assert type(message).TYPE_ID == data[0]
    again = m.encode(message)
    if name in NOT_CANONICAL:
        assert len(again) < len(data)
        assert m.decode(again) == message
    else:
        assert again == data
    # The dict form is what the Struct is built from.
    type_id, d = _native.decode_frame(data)
    assert type_id == data[0]
    assert msgspec.convert(d, type(message)) == message


def test_golden_contents() -> None:
    auth = m.decode(golden("rpc_authenticate"))
    assert isinstance(auth, m.SatRpcRequest)
    assert (auth.method, auth.request_id) == ("authenticate", 1)
    assert m.rpc_request_body(auth) == m.SatAuthReq(
        id=CLIENT_ID,
        token="eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyLTEifQ.",
        headers=(m.SatAuthHeaderPair(key=m.SatAuthHeader.UNSPECIFIED, value="x-unused"),),
    )

    start = m.decode(golden("rpc_start_replication"))
    assert isinstance(start, m.SatRpcRequest)
    body = m.rpc_request_body(start)
    assert body == m.SatInStartReplicationReq(
        lsn=b"24151848",
        subscription_ids=(SUB_ID, "6c2e8d0f-9e3b-4f4c-8a7d-2b3c4d5e6f70"),
        observed_transaction_data=(5, 1 << 40),
        sql_dialect=m.SatInStartReplicationReqDialect.SQLITE,
    )
    # The client's bytes carry an empty packed `options` (12 00); ours leave it out.
    assert m.encode_message(body) == start.message.replace(b"\x12\x00", b"", 1)
    first = m.rpc_request_body(m.decode(golden("rpc_start_replication_first")))  # type: ignore[arg-type]
    assert first == m.SatInStartReplicationReq(
        schema_version="20230615_01", sql_dialect=m.SatInStartReplicationReqDialect.SQLITE
    )

    subscribe = m.rpc_request_body(m.decode(golden("rpc_subscribe")))  # type: ignore[arg-type]
    assert isinstance(subscribe, m.SatSubsReq)
    assert subscribe.subscription_id == SUB_ID
    projects = subscribe.shape_requests[0].shape_definition
    assert projects is not None
    (select,) = projects.selects
    assert (select.tablename, select.where) == ("projects", "this.owner_id = 'user-1'")
    (issues,) = select.include
    assert issues.foreign_key == ("project_id",)
    assert issues.select is not None
    assert issues.select.include[0].select == m.SatShapeDefSelect(tablename="comments")

    assert m.decode(golden("relation")).columns[0] == m.SatRelationColumn(  # type: ignore[attr-defined]
        name="id", type="uuid", primary_key=True, is_nullable=False
    )

    log = m.decode(golden("oplog_server"))
    assert log == m.SatOpLog(
        ops=(
            m.SatTransOp(
                begin=m.SatOpBegin(
                    commit_timestamp=TS,
                    lsn=b"24151848",
                    origin="postgres_1",
                    transaction_id=735,
                )
            ),
            m.SatTransOp(
                insert=m.SatOpInsert(
                    relation_id=REL,
                    row_data=items_row("first", 1),
                    tags=(f"postgres_1@{TS}",),
                )
            ),
            m.SatTransOp(
                update=m.SatOpUpdate(
                    relation_id=REL,
                    row_data=items_row("second", 2),
                    old_row_data=items_row("first", 1),
                    tags=(f"postgres_1@{TS}", f"{CLIENT_ID}@1686827000000"),
                )
            ),
            m.SatTransOp(
                delete=m.SatOpDelete(relation_id=REL, old_row_data=items_row("second", 2))
            ),
            m.SatTransOp(commit=m.SatOpCommit(commit_timestamp=TS, lsn=b"24151848")),
        )
    )

    migration = m.decode(golden("oplog_migration"))
    assert isinstance(migration, m.SatOpLog)
    migrate = migration.ops[1].migrate
    assert migrate is not None
    assert migrate.stmts[0].type is m.SatOpMigrateType.CREATE_TABLE
    assert migrate.table is not None
    assert migrate.table.columns[0].pg_type == m.SatOpMigratePgColumnType(name="int8")
    assert migration.ops[2].migrate == m.SatOpMigrate(
        version="20230615_01",
        enum_type=m.SatOpMigrateEnumType(name="colour", values=("red", "green")),
    )

    ack = m.decode(golden("oplog_ack"))
    assert ack == m.SatOpLogAck(
        ack_timestamp=1686827999000,
        lsn=b"24151848",
        transaction_id=735,
        subscription_ids=(SUB_ID,),
        additional_data_source_ids=(3, 4),
        gone_subscription_ids=("6c2e8d0f-9e3b-4f4c-8a7d-2b3c4d5e6f70",),
    )


def test_rpc_responses() -> None:
    empty = m.decode(golden("rpc_response_empty"))
    assert isinstance(empty, m.SatRpcResponse)
    assert empty.message == b""
    assert m.rpc_response_body(empty) == m.SatInStartReplicationResp()
    error = m.decode(golden("rpc_response_error"))
    assert isinstance(error, m.SatRpcResponse)
    assert m.rpc_response_body(error) == m.SatErrorResp(
        error_type=m.SatErrorRespErrorCode.INVALID_REQUEST, message="bad request"
    )
    # An empty message is still a message: the client resolves the call only when it is set.
    ok = m.SatRpcResponse(method="unsubscribe", request_id=9, message=b"")
    assert m.encode(ok) == b"\x16\x0a\x0bunsubscribe\x10\x09\x1a\x00"
    with pytest.raises(SatelliteFrameError, match="has no result"):
        m.rpc_response_body(m.SatRpcResponse(method="subscribe"))
    with pytest.raises(SatelliteFrameError, match="unknown RPC method 'nope'"):
        m.rpc_request_body(m.SatRpcRequest(method="nope"))
    with pytest.raises(SatelliteFrameError, match="malformed SatSubsReq"):
        m.rpc_request_body(m.SatRpcRequest(method="subscribe", message=b"\x0a\x05a"))


def test_models_match_the_proto() -> None:
    """Every message of the .proto has a model with the same field names and defaults."""
    classes = all_message_classes()
    assert len(classes) == 51
    assert len({cls.PROTO_NAME for cls in classes}) == 51
    for cls in classes:
        defaults = _native.decode_message(cls.PROTO_NAME, b"")
        names = {f.encode_name for f in msgspec.structs.fields(cls)}
        assert names == set(defaults), cls.PROTO_NAME
        assert msgspec.convert(defaults, cls) == cls(), cls.PROTO_NAME
    assert {cls.PROTO_NAME: cls.TYPE_ID for cls in classes if issubclass(cls, m.FrameMessage)} == (
        _native.frame_type_ids()
    )
    assert set(m.RPC_REQUESTS) == set(m.RPC_RESPONSES)


def test_malformed_frames() -> None:
    assert issubclass(SatelliteFrameError, ProtocolError)
    with pytest.raises(SatelliteFrameError, match="empty frame"):
        m.decode(b"")
    for type_id in (1, 8, 11, 19, 20, 26, 255):
        with pytest.raises(SatelliteFrameError, match=f"unknown message type byte {type_id}"):
            m.decode(bytes([type_id]) + golden("oplog_ack")[1:])
    data = golden("oplog_server")
    with pytest.raises(SatelliteFrameError, match="malformed SatOpLog"):
        m.decode(data[:-3])
    with pytest.raises(SatelliteFrameError, match=r"over the limit of 100 bytes"):
        m.decode(data, max_len=100)
    assert m.decode(data, max_len=len(data)) == m.decode(data)
    with pytest.raises(SatelliteFrameError, match="malformed SatRpcRequest"):
        m.decode(b"\x15\x0a\x02\xff\xfe")  # invalid UTF-8 in `method`
    # An enum number the protocol does not have.
    with pytest.raises(SatelliteFrameError, match="malformed SatErrorResp"):
        m.decode(b"\x00\x08\x63")
    with pytest.raises(SatelliteFrameError):
        m.decode_message(m.SatSubsReq, b"\xff")


def test_bad_values_name_the_field() -> None:
    # The Structs do not check their values: the codec names the field of a wrong one.
    with pytest.raises(TypeError, match=r"SatOpLogAck\.lsn: expected bytes, got str"):
        m.encode(m.SatOpLogAck(lsn="24151848"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"SatRelation\.relation_id"):
        m.encode(m.SatRelation(relation_id=1 << 40))
    with pytest.raises(TypeError, match=r"SatOpLog\.ops: SatTransOp\.begin"):
        m.encode(m.SatOpLog(ops=(m.SatTransOp(begin=1),)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"SatOpLogAck\.subscription_ids: expected a list"):
        m.encode(m.SatOpLogAck(subscription_ids="abc"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"SatOpLogAck\.lsn: None for a field without presence"):
        m.encode(m.SatOpLogAck(lsn=None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="SatAuthReq is not a frame message"):
        m.encode(m.SatAuthReq())  # type: ignore[arg-type]
    # Lists as well as tuples, bytearray as well as bytes.
    ack = m.SatOpLogAck(lsn=bytearray(b"1"), subscription_ids=["a"])  # type: ignore[arg-type]
    assert m.decode(m.encode(ack)) == m.SatOpLogAck(lsn=b"1", subscription_ids=("a",))


_text = st.text(max_size=20)
_u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
_u32 = st.integers(min_value=0, max_value=(1 << 32) - 1)
_row = st.builds(
    m.SatOpRow,
    nulls_bitmask=st.binary(max_size=3),
    values=st.lists(st.binary(max_size=10), max_size=5).map(tuple),
)
_trans_op = st.one_of(
    st.builds(
        lambda ts, lsn, origin, xid: m.SatTransOp(
            begin=m.SatOpBegin(commit_timestamp=ts, lsn=lsn, origin=origin, transaction_id=xid)
        ),
        _u64,
        st.binary(max_size=8),
        st.none() | _text,
        st.none() | _u64,
    ),
    st.builds(
        lambda rel, row, tags: m.SatTransOp(
            insert=m.SatOpInsert(relation_id=rel, row_data=row, tags=tags)
        ),
        _u32,
        st.none() | _row,
        st.lists(_text, max_size=3).map(tuple),
    ),
    st.builds(
        lambda rel, new, old: m.SatTransOp(
            update=m.SatOpUpdate(relation_id=rel, row_data=new, old_row_data=old)
        ),
        _u32,
        _row,
        _row,
    ),
    st.builds(lambda ref: m.SatTransOp(additional_begin=m.SatOpAdditionalBegin(ref=ref)), _u64),
)


@given(ops=st.lists(_trans_op, max_size=6))
def test_oplog_round_trip(ops: list[m.SatTransOp]) -> None:
    log = m.SatOpLog(ops=tuple(ops))
    assert m.decode(m.encode(log)) == log


@given(
    message=st.builds(
        m.SatInStartReplicationReq,
        lsn=st.binary(max_size=12),
        subscription_ids=st.lists(_text, max_size=3).map(tuple),
        schema_version=st.none() | _text,
        observed_transaction_data=st.lists(_u64, max_size=4).map(tuple),
        sql_dialect=st.none() | st.sampled_from(m.SatInStartReplicationReqDialect),
    )
)
def test_rpc_message_round_trip(message: m.SatInStartReplicationReq) -> None:
    request = m.SatRpcRequest(
        method="startReplication", request_id=7, message=m.encode_message(message)
    )
    decoded = m.decode(m.encode(request))
    assert isinstance(decoded, m.SatRpcRequest)
    assert m.rpc_request_body(decoded) == message


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out) + bytes((v,))


def _field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


@pytest.mark.parametrize(
    "size", [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 127, 128, 16_383, 16_384, 70_000]
)
def test_encoding_is_byte_exact_for_every_value_size(size: int) -> None:
    """Values and nested messages of every size class (lengths of one, two and three varint
    bytes; the encoder copies short values itself) are written as protobuf writes them."""
    value = bytes(i % 251 for i in range(size))
    tag = "é" * (size // 2) + "x" * (size % 2)
    row = m.SatOpRow(nulls_bitmask=b"\x40", values=(value, b"", b"t", value[::-1]))
    op = m.SatTransOp(insert=m.SatOpInsert(relation_id=size, row_data=row, tags=(tag, "b")))
    row_bytes = _field(1, b"\x40") + b"".join(_field(2, v) for v in row.values)
    insert = b"\x08" + _varint(size) if size else b""
    insert += _field(2, row_bytes) + _field(3, tag.encode()) + _field(3, b"b")
    expected = bytes((m.SatOpLog.TYPE_ID,)) + _field(1, _field(4, insert)) * 2
    log = m.SatOpLog(ops=(op, op))
    assert m.encode(log) == expected
    assert m.decode(expected) == log
    assert msgspec.convert(_native.decode_frame(expected)[1], m.SatOpLog) == log


def test_dict_form() -> None:
    _, d = _native.decode_frame(golden("oplog_client"))
    begin: dict[str, Any] = d["ops"][0]["begin"]
    assert begin == {
        "commit_timestamp": TS,
        "lsn": b"\x00\x00\x01\x02",
        "origin": None,
        "is_migration": False,
        "additional_data_ref": 0,
        "transaction_id": None,
    }
    assert d["ops"][0]["commit"] is None
    assert d["ops"][3]["commit"] == {
        "commit_timestamp": 0,
        "lsn": b"",
        "additional_data_ref": 0,
        "transaction_id": None,
    }
    _, rel = _native.decode_frame(golden("relation"))
    assert rel["columns"][0]["primaryKey"] is True


def test_decoder_reads_what_other_encoders_may_write() -> None:
    # SatOpLogAck: an unknown field (99, varint) skipped; additional_data_source_ids (5,
    # repeated uint64) unpacked, then packed; lsn (2) twice, the last one kept.
    frame = bytes([23, 0x98, 0x06, 0x07, 0x28, 0x01, 0x2A, 0x02, 0x02, 0x03])
    frame += b"\x12\x01a\x12\x01b"
    ack = m.decode(frame)
    assert ack == m.SatOpLogAck(lsn=b"b", additional_data_source_ids=(1, 2, 3))
    # SatTransOp is a oneof: a later member replaces an earlier one.
    begin = m.SatTransOp(begin=m.SatOpBegin(commit_timestamp=1))
    commit = m.SatTransOp(commit=m.SatOpCommit(commit_timestamp=2))
    both = m.encode_message(begin) + m.encode_message(commit)
    assert m.decode_message(m.SatTransOp, both) == commit
    # A message field that comes twice is merged, as protobuf parsers do.
    first = m.encode_message(m.SatTransOp(begin=m.SatOpBegin(commit_timestamp=1, lsn=b"1")))
    again = m.encode_message(m.SatTransOp(begin=m.SatOpBegin(origin="o")))
    merged = m.SatTransOp(begin=m.SatOpBegin(commit_timestamp=1, lsn=b"1", origin="o"))
    assert m.decode_message(m.SatTransOp, first + again) == merged
    # And a third time: merged into the merge of the first two.
    third = m.encode_message(m.SatTransOp(begin=m.SatOpBegin(lsn=b"3", transaction_id=9)))
    merged = m.SatTransOp(
        begin=m.SatOpBegin(commit_timestamp=1, lsn=b"3", origin="o", transaction_id=9)
    )
    assert m.decode_message(m.SatTransOp, first + again + third) == merged
    # An unknown group (field 14: start 0x73, a varint field inside, end 0x74) is skipped.
    assert m.decode(b"\x16\x73\x08\x01\x74\x10\x05") == m.SatRpcResponse(request_id=5)
    with pytest.raises(SatelliteFrameError):
        m.decode(b"\x16\x73\x08\x01\x7c")  # ended as field 15
    # Canonical output: packed, in field-number order, defaults left out.
    assert m.encode(ack) == bytes([23, 0x12, 0x01, 0x62, 0x2A, 0x03, 0x01, 0x02, 0x03])


def _dict_form(frame: bytes) -> m.FrameMessage | None:
    """The frame through the other decoder (prost-reflect's, to dicts) and msgspec.convert:
    None where it refuses the frame."""
    try:
        type_id, d = _native.decode_frame(frame)
        return msgspec.convert(d, m._FRAME_TYPES[type_id])
    except (SatelliteFrameError, msgspec.ValidationError):
        return None


def _codec(frame: bytes) -> m.FrameMessage | None:
    try:
        return m.decode(frame)
    except SatelliteFrameError:
        return None


_GOLDEN_FRAMES = [golden(name) for name in sorted(MANIFEST)]


@given(
    st.sampled_from(_GOLDEN_FRAMES),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4),
    st.integers(0, 1 << 16),
)
def test_codec_agrees_with_the_dict_form_decoder(
    frame: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    """Golden frames with bytes changed and cut short: the codec (hand-written, straight to the
    Structs) and the dict form (prost-reflect) accept the same frames as the same messages."""
    data = bytearray(frame)
    for at, byte in flips:
        data[at % len(data)] = byte
    data = data[: max(1, len(data) - cut % 8)]
    assert _codec(bytes(data)) == _dict_form(bytes(data))


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    # SatShapeDef.Select holds Relations (field 3), which hold a Select (field 2): 50,000
    # levels were a stack overflow of the whole process before the codec's depth limit.
    def nest(depth: int) -> bytes:
        data = b""
        for _ in range(depth):
            relation = b"\x12" + _varint(len(data)) + data
            data = b"\x1a" + _varint(len(relation)) + relation
        return data

    select = m.decode_message(m.SatShapeDefSelect, nest(49))
    assert select.include[0].select is not None
    with pytest.raises(SatelliteFrameError, match="recursion limit"):
        m.decode_message(m.SatShapeDefSelect, nest(50_000))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
