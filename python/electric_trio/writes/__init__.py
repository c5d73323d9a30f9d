"""Client writes into Postgres: the direct writer and the logical-replication publisher."""

from .model import ClientWrite, RowInsert, Writer, WriteRejectedError

__all__ = ["ClientWrite", "RowInsert", "WriteRejectedError", "Writer"]
