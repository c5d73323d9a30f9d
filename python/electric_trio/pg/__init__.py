"""A Trio-native Postgres client, with the wire protocol framed and decoded in Rust."""

from ._connection import Column as Column
from ._connection import Connection as Connection
from ._connection import CopyOut as CopyOut
from ._connection import Result as Result
from ._connection import connect as connect
from ._errors import ConnectionLostError as ConnectionLostError
from ._errors import PgAuthError as PgAuthError
from ._errors import PgConnectError as PgConnectError
from ._errors import PgError as PgError
from ._params import ConnectParams as ConnectParams
from ._replication import Keepalive as Keepalive
from ._replication import ReplicationStream as ReplicationStream
from ._replication import XLogData as XLogData
from ._replication import format_lsn as format_lsn
from ._replication import parse_lsn as parse_lsn
from ._types import Json as Json

__all__ = [
    "Column",
    "ConnectParams",
    "Connection",
    "ConnectionLostError",
    "CopyOut",
    "Json",
    "Keepalive",
    "PgAuthError",
    "PgConnectError",
    "PgError",
    "ReplicationStream",
    "Result",
    "XLogData",
    "connect",
    "format_lsn",
    "parse_lsn",
]
