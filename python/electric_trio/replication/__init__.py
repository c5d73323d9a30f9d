"""From Postgres's logical replication stream to the service's transaction log."""

from ._log import TransactionLog as TransactionLog
from ._reader import ReaderSettings as ReaderSettings
from ._reader import ReaderStatus as ReaderStatus
from ._reader import serve_replication as serve_replication
from ._slot import PUBLICATION as PUBLICATION
from ._slot import SlotInUseError as SlotInUseError
from ._slot import main_slot_name as main_slot_name
from ._slot import temp_slot_name as temp_slot_name
from ._subsystem import ReplicationSubsystem as ReplicationSubsystem

__all__ = [
    "PUBLICATION",
    "ReaderSettings",
    "ReaderStatus",
    "ReplicationSubsystem",
    "SlotInUseError",
    "TransactionLog",
    "main_slot_name",
    "serve_replication",
    "temp_slot_name",
]
