"""Client writes into Postgres: the direct writer and the logical-replication publisher."""

from .model import ClientWrite, RowInsert, Writer

__all__ = ["ClientWrite", "RowInsert", "Writer"]
