"""SatOpLog frames of folded transactions, encoded in Rust (the read path's binding), on the
golden stream of an electrified database (rust/core/testdata/electric.bin)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from electric_trio._native import (
    ElectricDecoder,
    ElectricTransaction,
    encode_transaction_oplog,
    transaction_relations,
)
from electric_trio.satellite import messages as m

TESTDATA = Path(__file__).resolve().parents[2] / "rust" / "core" / "testdata"
PG_EPOCH_MS = 946_684_800_000
INT8, TEXT = 20, 25


def payloads() -> list[bytes]:
    data = (TESTDATA / "electric.bin").read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def ms(txn: ElectricTransaction) -> int:
    return txn.commit_timestamp // 1000 + PG_EPOCH_MS


def test_a_transaction_with_chosen_changes_and_migrate_ops() -> None:
    pg, *_ = ElectricDecoder().decode(payloads())
    migrate = m.SatOpMigrate(version="7", stmts=(m.SatOpMigrateStmt(sql="CREATE INDEX i"),))
    frame = encode_transaction_oplog(pg, [1], [m.encode_message(migrate)])
    log = m.decode(frame)
    assert isinstance(log, m.SatOpLog)
    begin, op_migrate, op_update, commit = log.ops
    assert begin.begin == m.SatOpBegin(
        commit_timestamp=ms(pg),
        lsn=str(pg.end_lsn).encode(),
        origin="postgres_1",
        transaction_id=pg.xid,
    )
    assert commit.commit == m.SatOpCommit(commit_timestamp=ms(pg), lsn=str(pg.end_lsn).encode())
    assert op_migrate.migrate == migrate
    [(oid, schema, table, columns)] = transaction_relations(pg, [1])
    assert (schema, table, columns) == ("public", "parent", [("id", INT8), ("name", TEXT)])
    assert op_update.update == m.SatOpUpdate(
        relation_id=oid,
        row_data=m.SatOpRow(nulls_bitmask=b"\x00", values=(b"1", b"uno")),
        old_row_data=m.SatOpRow(nulls_bitmask=b"\x00", values=(b"1", b"one")),
        tags=(f"postgres_1@{ms(pg)}",),
    )


def test_an_echo_without_changes_is_begin_and_commit() -> None:
    _pg, _delete, _child, c1, *_ = ElectricDecoder().decode(payloads())
    log = m.decode(encode_transaction_oplog(c1, []))
    assert isinstance(log, m.SatOpLog)
    begin, commit = log.ops
    assert begin.begin is not None
    assert (begin.begin.origin, begin.begin.commit_timestamp) == ("client_1", ms(c1))
    assert commit.commit is not None
    assert transaction_relations(c1, []) == []


def test_migration_transactions_are_marked() -> None:
    txns = ElectricDecoder().decode(payloads())
    migration = txns[5]
    begin = m.decode(encode_transaction_oplog(migration, [])).ops[0].begin  # type: ignore[attr-defined]
    assert begin.is_migration


def test_a_change_index_out_of_range() -> None:
    pg, *_ = ElectricDecoder().decode(payloads())
    with pytest.raises(IndexError, match="change 2 of a transaction of 2 changes"):
        encode_transaction_oplog(pg, [2])
    with pytest.raises(IndexError):
        transaction_relations(pg, [0, 5])
