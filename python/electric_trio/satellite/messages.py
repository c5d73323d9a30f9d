"""The Satellite protocol's messages as frozen msgspec Structs (``proto/satellite.proto``).

The wire codec is the Rust binding's ``SatelliteCodec``: :func:`decode` reads a frame's protobuf
bytes straight into the Struct of its type id (every field built), :func:`encode` writes the bytes
from a Struct's fields. The read path's ``SatOpLog`` frames are built in Rust without these
models; they serve the session's control messages and tests.

Naming: a nested message or enum is named by its path with the dots dropped
(``SatOpMigrate.Table`` is :class:`SatOpMigrateTable`), except that a component starting with
``Sat`` restarts the name (``SatSubsResp.SatSubsError.ShapeReqError`` is
:class:`SatSubsErrorShapeReqError`). Field names are the .proto's, except ``primaryKey``, which
is :attr:`SatRelationColumn.primary_key` in Python. Repeated fields are tuples; fields with
presence (optional scalars, messages, oneof members) are ``None`` when unset.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import ClassVar, TypeVar

import msgspec

from .. import _native
from .._native import SatelliteFrameError

__all__ = [
    "MAX_FRAME_LEN",
    "RPC_REQUESTS",
    "RPC_RESPONSES",
    "FrameMessage",
    "ProtoMessage",
    "SatAuthHeader",
    "SatAuthHeaderPair",
    "SatAuthReq",
    "SatAuthResp",
    "SatErrorResp",
    "SatErrorRespErrorCode",
    "SatInStartReplicationReq",
    "SatInStartReplicationReqDialect",
    "SatInStartReplicationReqOption",
    "SatInStartReplicationResp",
    "SatInStartReplicationRespReplicationError",
    "SatInStartReplicationRespReplicationErrorCode",
    "SatInStopReplicationReq",
    "SatInStopReplicationResp",
    "SatOpAdditionalBegin",
    "SatOpAdditionalCommit",
    "SatOpBegin",
    "SatOpCommit",
    "SatOpCompensation",
    "SatOpDelete",
    "SatOpGone",
    "SatOpInsert",
    "SatOpLog",
    "SatOpLogAck",
    "SatOpMigrate",
    "SatOpMigrateColumn",
    "SatOpMigrateEnumType",
    "SatOpMigrateForeignKey",
    "SatOpMigratePgColumnType",
    "SatOpMigrateStmt",
    "SatOpMigrateTable",
    "SatOpMigrateType",
    "SatOpRow",
    "SatOpUpdate",
    "SatRelation",
    "SatRelationColumn",
    "SatRelationRelationType",
    "SatRpcRequest",
    "SatRpcResponse",
    "SatShapeDataBegin",
    "SatShapeDataEnd",
    "SatShapeDef",
    "SatShapeDefRelation",
    "SatShapeDefSelect",
    "SatShapeReq",
    "SatSubsDataBegin",
    "SatSubsDataEnd",
    "SatSubsDataError",
    "SatSubsDataErrorCode",
    "SatSubsDataErrorShapeReqError",
    "SatSubsDataErrorShapeReqErrorCode",
    "SatSubsError",
    "SatSubsErrorCode",
    "SatSubsErrorShapeReqError",
    "SatSubsErrorShapeReqErrorCode",
    "SatSubsReq",
    "SatSubsResp",
    "SatTransOp",
    "SatUnsubsDataBegin",
    "SatUnsubsDataEnd",
    "SatUnsubsReq",
    "SatUnsubsResp",
    "SatelliteFrameError",
    "decode",
    "decode_message",
    "encode",
    "encode_message",
    "rpc_request_body",
    "rpc_response_body",
]

#: Frames longer than this are refused unless :func:`decode` is given another limit.
MAX_FRAME_LEN: int = _native.SATELLITE_MAX_FRAME_LEN


class ProtoMessage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of every message; ``PROTO_NAME`` is its name in the .proto package."""

    PROTO_NAME: ClassVar[str]


class FrameMessage(ProtoMessage, frozen=True, kw_only=True, gc=False):
    """A message that travels as a frame of its own, after the type id ``TYPE_ID``."""

    TYPE_ID: ClassVar[int]


# ---- RPC envelope and authentication ----------------------------------------------------------


class SatRpcRequest(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatRpcRequest"
    TYPE_ID: ClassVar[int] = 21
    method: str = ""
    request_id: int = 0
    message: bytes = b""


class SatRpcResponse(FrameMessage, frozen=True, kw_only=True, gc=False):
    """Success: ``message`` set (also when empty); failure: ``error`` set."""

    PROTO_NAME: ClassVar[str] = "SatRpcResponse"
    TYPE_ID: ClassVar[int] = 22
    method: str = ""
    request_id: int = 0
    message: bytes | None = None
    error: SatErrorResp | None = None


class SatAuthHeader(enum.IntEnum):
    UNSPECIFIED = 0


class SatAuthHeaderPair(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatAuthHeaderPair"
    key: SatAuthHeader = SatAuthHeader.UNSPECIFIED
    value: str = ""


class SatAuthReq(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatAuthReq"
    id: str = ""
    token: str = ""
    headers: tuple[SatAuthHeaderPair, ...] = ()


class SatAuthResp(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatAuthResp"
    id: str = ""
    headers: tuple[SatAuthHeaderPair, ...] = ()


class SatErrorRespErrorCode(enum.IntEnum):
    INTERNAL = 0
    AUTH_REQUIRED = 1
    AUTH_FAILED = 2
    REPLICATION_FAILED = 3
    INVALID_REQUEST = 4
    PROTO_VSN_MISMATCH = 5
    SCHEMA_VSN_MISMATCH = 6


class SatErrorResp(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatErrorResp"
    TYPE_ID: ClassVar[int] = 0
    error_type: SatErrorRespErrorCode = SatErrorRespErrorCode.INTERNAL
    lsn: bytes | None = None
    message: str | None = None


# ---- Replication control ----------------------------------------------------------------------


class SatInStartReplicationReqOption(enum.IntEnum):
    NONE = 0


class SatInStartReplicationReqDialect(enum.IntEnum):
    SQLITE = 0
    POSTGRES = 1


class SatInStartReplicationReq(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatInStartReplicationReq"
    lsn: bytes = b""
    options: tuple[SatInStartReplicationReqOption, ...] = ()
    subscription_ids: tuple[str, ...] = ()
    schema_version: str | None = None
    observed_transaction_data: tuple[int, ...] = ()
    sql_dialect: SatInStartReplicationReqDialect | None = None
    observed_gone_batch: tuple[str, ...] = ()


class SatInStartReplicationRespReplicationErrorCode(enum.IntEnum):
    CODE_UNSPECIFIED = 0
    BEHIND_WINDOW = 1
    INVALID_POSITION = 2
    SUBSCRIPTION_NOT_FOUND = 3
    MALFORMED_LSN = 4
    UNKNOWN_SCHEMA_VSN = 5


class SatInStartReplicationRespReplicationError(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatInStartReplicationResp.ReplicationError"
    code: SatInStartReplicationRespReplicationErrorCode = (
        SatInStartReplicationRespReplicationErrorCode.CODE_UNSPECIFIED
    )
    message: str = ""


class SatInStartReplicationResp(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatInStartReplicationResp"
    err: SatInStartReplicationRespReplicationError | None = None
    unacked_window_size: int | None = None


class SatInStopReplicationReq(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatInStopReplicationReq"


class SatInStopReplicationResp(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatInStopReplicationResp"


# ---- The data stream --------------------------------------------------------------------------


class SatRelationColumn(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatRelationColumn"
    name: str = ""
    type: str = ""
    primary_key: bool = msgspec.field(default=False, name="primaryKey")
    is_nullable: bool = False


class SatRelationRelationType(enum.IntEnum):
    TABLE = 0
    INDEX = 1
    VIEW = 2
    TRIGGER = 3


class SatRelation(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatRelation"
    TYPE_ID: ClassVar[int] = 10
    schema_name: str = ""
    table_type: SatRelationRelationType = SatRelationRelationType.TABLE
    table_name: str = ""
    relation_id: int = 0
    columns: tuple[SatRelationColumn, ...] = ()


class SatOpRow(ProtoMessage, frozen=True, kw_only=True, gc=False):
    """One value per column; bit ``7 - i % 8`` of byte ``i // 8`` set: column ``i`` is NULL."""

    PROTO_NAME: ClassVar[str] = "SatOpRow"
    nulls_bitmask: bytes = b""
    values: tuple[bytes, ...] = ()


class SatOpBegin(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpBegin"
    commit_timestamp: int = 0
    lsn: bytes = b""
    origin: str | None = None
    is_migration: bool = False
    additional_data_ref: int = 0
    transaction_id: int | None = None


class SatOpCommit(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpCommit"
    commit_timestamp: int = 0
    lsn: bytes = b""
    additional_data_ref: int = 0
    transaction_id: int | None = None


class SatOpAdditionalBegin(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpAdditionalBegin"
    ref: int = 0


class SatOpAdditionalCommit(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpAdditionalCommit"
    ref: int = 0


class SatOpInsert(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpInsert"
    relation_id: int = 0
    row_data: SatOpRow | None = None
    tags: tuple[str, ...] = ()


class SatOpUpdate(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpUpdate"
    relation_id: int = 0
    row_data: SatOpRow | None = None
    old_row_data: SatOpRow | None = None
    tags: tuple[str, ...] = ()


class SatOpDelete(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpDelete"
    relation_id: int = 0
    old_row_data: SatOpRow | None = None
    tags: tuple[str, ...] = ()


class SatOpCompensation(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpCompensation"
    relation_id: int = 0
    pk_data: SatOpRow | None = None
    tags: tuple[str, ...] = ()


class SatOpGone(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpGone"
    relation_id: int = 0
    pk_data: SatOpRow | None = None


class SatTransOp(ProtoMessage, frozen=True, kw_only=True, gc=False):
    """A oneof: exactly one field is set."""

    PROTO_NAME: ClassVar[str] = "SatTransOp"
    begin: SatOpBegin | None = None
    commit: SatOpCommit | None = None
    update: SatOpUpdate | None = None
    insert: SatOpInsert | None = None
    delete: SatOpDelete | None = None
    migrate: SatOpMigrate | None = None
    compensation: SatOpCompensation | None = None
    gone: SatOpGone | None = None
    additional_begin: SatOpAdditionalBegin | None = None
    additional_commit: SatOpAdditionalCommit | None = None


class SatOpLog(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpLog"
    TYPE_ID: ClassVar[int] = 9
    ops: tuple[SatTransOp, ...] = ()


class SatOpLogAck(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpLogAck"
    TYPE_ID: ClassVar[int] = 23
    ack_timestamp: int = 0
    lsn: bytes = b""
    transaction_id: int = 0
    subscription_ids: tuple[str, ...] = ()
    additional_data_source_ids: tuple[int, ...] = ()
    gone_subscription_ids: tuple[str, ...] = ()


# ---- Migrations -------------------------------------------------------------------------------


class SatOpMigrateType(enum.IntEnum):
    CREATE_TABLE = 0
    CREATE_INDEX = 1
    CREATE_ENUM_TYPE = 2
    ALTER_ADD_COLUMN = 6


class SatOpMigrateStmt(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpMigrate.Stmt"
    type: SatOpMigrateType = SatOpMigrateType.CREATE_TABLE
    sql: str = ""


class SatOpMigratePgColumnType(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpMigrate.PgColumnType"
    name: str = ""
    array: tuple[int, ...] = ()
    size: tuple[int, ...] = ()


class SatOpMigrateColumn(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpMigrate.Column"
    name: str = ""
    sqlite_type: str = ""
    pg_type: SatOpMigratePgColumnType | None = None


class SatOpMigrateForeignKey(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpMigrate.ForeignKey"
    fk_cols: tuple[str, ...] = ()
    pk_table: str = ""
    pk_cols: tuple[str, ...] = ()


class SatOpMigrateTable(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpMigrate.Table"
    name: str = ""
    columns: tuple[SatOpMigrateColumn, ...] = ()
    fks: tuple[SatOpMigrateForeignKey, ...] = ()
    pks: tuple[str, ...] = ()


class SatOpMigrateEnumType(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatOpMigrate.EnumType"
    name: str = ""
    values: tuple[str, ...] = ()


class SatOpMigrate(ProtoMessage, frozen=True, kw_only=True, gc=False):
    """``table`` and ``enum_type`` are a oneof."""

    PROTO_NAME: ClassVar[str] = "SatOpMigrate"
    version: str = ""
    stmts: tuple[SatOpMigrateStmt, ...] = ()
    table: SatOpMigrateTable | None = None
    enum_type: SatOpMigrateEnumType | None = None


# ---- Subscriptions ----------------------------------------------------------------------------


class SatShapeDefRelation(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatShapeDef.Relation"
    foreign_key: tuple[str, ...] = ()
    select: SatShapeDefSelect | None = None


class SatShapeDefSelect(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatShapeDef.Select"
    tablename: str = ""
    where: str = ""
    include: tuple[SatShapeDefRelation, ...] = ()


class SatShapeDef(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatShapeDef"
    selects: tuple[SatShapeDefSelect, ...] = ()


class SatShapeReq(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatShapeReq"
    request_id: str = ""
    shape_definition: SatShapeDef | None = None


class SatSubsReq(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsReq"
    subscription_id: str = ""
    shape_requests: tuple[SatShapeReq, ...] = ()


class SatSubsErrorCode(enum.IntEnum):
    CODE_UNSPECIFIED = 0
    SUBSCRIPTION_ID_ALREADY_EXISTS = 1
    SHAPE_REQUEST_ERROR = 2


class SatSubsErrorShapeReqErrorCode(enum.IntEnum):
    CODE_UNSPECIFIED = 0
    TABLE_NOT_FOUND = 1
    REFERENTIAL_INTEGRITY_VIOLATION = 2
    EMPTY_SHAPE_DEFINITION = 3
    DUPLICATE_TABLE_IN_SHAPE_DEFINITION = 4
    INVALID_WHERE_CLAUSE = 5
    INVALID_INCLUDE_TREE = 6


class SatSubsErrorShapeReqError(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsResp.SatSubsError.ShapeReqError"
    code: SatSubsErrorShapeReqErrorCode = SatSubsErrorShapeReqErrorCode.CODE_UNSPECIFIED
    message: str = ""
    request_id: str = ""


class SatSubsError(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsResp.SatSubsError"
    code: SatSubsErrorCode = SatSubsErrorCode.CODE_UNSPECIFIED
    message: str = ""
    shape_request_error: tuple[SatSubsErrorShapeReqError, ...] = ()


class SatSubsResp(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsResp"
    subscription_id: str = ""
    err: SatSubsError | None = None


class SatUnsubsReq(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatUnsubsReq"
    subscription_ids: tuple[str, ...] = ()


class SatUnsubsResp(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatUnsubsResp"


class SatSubsDataErrorCode(enum.IntEnum):
    CODE_UNSPECIFIED = 0
    SHAPE_DELIVERY_ERROR = 1


class SatSubsDataErrorShapeReqErrorCode(enum.IntEnum):
    CODE_UNSPECIFIED = 0
    SHAPE_SIZE_LIMIT_EXCEEDED = 1


class SatSubsDataErrorShapeReqError(ProtoMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsDataError.ShapeReqError"
    code: SatSubsDataErrorShapeReqErrorCode = SatSubsDataErrorShapeReqErrorCode.CODE_UNSPECIFIED
    message: str = ""
    request_id: str = ""


class SatSubsDataError(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsDataError"
    TYPE_ID: ClassVar[int] = 14
    code: SatSubsDataErrorCode = SatSubsDataErrorCode.CODE_UNSPECIFIED
    message: str = ""
    subscription_id: str = ""
    shape_request_error: tuple[SatSubsDataErrorShapeReqError, ...] = ()


class SatSubsDataBegin(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsDataBegin"
    TYPE_ID: ClassVar[int] = 15
    subscription_id: str = ""
    lsn: bytes = b""


class SatSubsDataEnd(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatSubsDataEnd"
    TYPE_ID: ClassVar[int] = 16


class SatShapeDataBegin(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatShapeDataBegin"
    TYPE_ID: ClassVar[int] = 17
    request_id: str = ""
    uuid: str = ""


class SatShapeDataEnd(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatShapeDataEnd"
    TYPE_ID: ClassVar[int] = 18


class SatUnsubsDataBegin(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatUnsubsDataBegin"
    TYPE_ID: ClassVar[int] = 24
    subscription_ids: tuple[str, ...] = ()
    lsn: bytes = b""


class SatUnsubsDataEnd(FrameMessage, frozen=True, kw_only=True, gc=False):
    PROTO_NAME: ClassVar[str] = "SatUnsubsDataEnd"
    TYPE_ID: ClassVar[int] = 25


# ---- Codec ------------------------------------------------------------------------------------

_FRAME_TYPES: dict[int, type[FrameMessage]] = {
    cls.TYPE_ID: cls
    for cls in (
        SatErrorResp,
        SatOpLog,
        SatRelation,
        SatSubsDataError,
        SatSubsDataBegin,
        SatSubsDataEnd,
        SatShapeDataBegin,
        SatShapeDataEnd,
        SatRpcRequest,
        SatRpcResponse,
        SatOpLogAck,
        SatUnsubsDataBegin,
        SatUnsubsDataEnd,
    )
}

#: The request and response message of each RPC method.
RPC_REQUESTS: dict[str, type[ProtoMessage]] = {
    "authenticate": SatAuthReq,
    "startReplication": SatInStartReplicationReq,
    "stopReplication": SatInStopReplicationReq,
    "subscribe": SatSubsReq,
    "unsubscribe": SatUnsubsReq,
}
RPC_RESPONSES: dict[str, type[ProtoMessage]] = {
    "authenticate": SatAuthResp,
    "startReplication": SatInStartReplicationResp,
    "stopReplication": SatInStopReplicationResp,
    "subscribe": SatSubsResp,
    "unsubscribe": SatUnsubsResp,
}

M = TypeVar("M", bound=ProtoMessage)


def _message_classes() -> dict[str, type[ProtoMessage]]:
    classes: dict[str, type[ProtoMessage]] = {}
    pending: list[type[ProtoMessage]] = [ProtoMessage]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if "PROTO_NAME" in sub.__dict__:
                classes[sub.PROTO_NAME] = sub
    return classes


#: Every enum of the .proto by its name there.
_ENUMS: dict[str, type[enum.IntEnum]] = {
    "SatAuthHeader": SatAuthHeader,
    "SatErrorResp.ErrorCode": SatErrorRespErrorCode,
    "SatInStartReplicationReq.Option": SatInStartReplicationReqOption,
    "SatInStartReplicationReq.Dialect": SatInStartReplicationReqDialect,
    "SatInStartReplicationResp.ReplicationError.Code": (
        SatInStartReplicationRespReplicationErrorCode
    ),
    "SatRelation.RelationType": SatRelationRelationType,
    "SatOpMigrate.Type": SatOpMigrateType,
    "SatSubsResp.SatSubsError.Code": SatSubsErrorCode,
    "SatSubsResp.SatSubsError.ShapeReqError.Code": SatSubsErrorShapeReqErrorCode,
    "SatSubsDataError.Code": SatSubsDataErrorCode,
    "SatSubsDataError.ShapeReqError.Code": SatSubsDataErrorShapeReqErrorCode,
}

# Reads and writes the protobuf wire format straight into and from these Structs, from plans
# the Rust side builds once from the compiled .proto (every message and enum must be here).
_CODEC = _native.SatelliteCodec(_message_classes(), _ENUMS)


def decode(frame: bytes, *, max_len: int = MAX_FRAME_LEN) -> FrameMessage:
    """The message of a frame; :class:`SatelliteFrameError` names what is wrong with a bad one."""
    message: FrameMessage = _CODEC.decode(frame, max_len)
    return message


#: The frame of a message: its type id, then its protobuf encoding. (The codec's method itself,
#: not a function calling it: one Python call less per frame.)
encode: Callable[[FrameMessage], bytes] = _CODEC.encode


def decode_message(cls: type[M], data: bytes) -> M:
    """A message that travels inside another (an RPC request or response) from its bytes."""
    message: M = _CODEC.decode_message(cls.PROTO_NAME, data)
    return message


#: The protobuf encoding of a message, without a type id (the codec's method itself, as
#: :data:`encode`).
encode_message: Callable[[ProtoMessage], bytes] = _CODEC.encode_message


def rpc_request_body(request: SatRpcRequest) -> ProtoMessage:
    """The request inside an RPC call; :class:`SatelliteFrameError` for an unknown method or
    bytes that are not its request."""
    cls = RPC_REQUESTS.get(request.method)
    if cls is None:
        raise SatelliteFrameError(f"unknown RPC method {request.method!r}")
    return decode_message(cls, request.message)


def rpc_response_body(response: SatRpcResponse) -> ProtoMessage:
    """The response inside a successful RPC answer, or its :class:`SatErrorResp`."""
    if response.message is not None:
        cls = RPC_RESPONSES.get(response.method)
        if cls is None:
            raise SatelliteFrameError(f"unknown RPC method {response.method!r}")
        return decode_message(cls, response.message)
    if response.error is not None:
        return response.error
    raise SatelliteFrameError(f"RPC response to {response.method!r} has no result")
