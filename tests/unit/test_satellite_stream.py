"""SatOpLog frames of folded transactions, encoded in Rust (the read path's binding), on the
golden stream of an electrified database (rust/core/testdata/electric.bin)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from electric_trio._native import (
    ElectricDecoder,
    ElectricTransaction,
    ShapeGraph,
    encode_transaction_oplog,
    transaction_relations,
)
from electric_trio.ddlx.history import SchemaMigration
from electric_trio.ddlx.migration import apply_migration
from electric_trio.ddlx.schema import Schema
from electric_trio.satellite import messages as m
from electric_trio.satellite.stream import Outbound, column_defs

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


# ---- what a session sends of a transaction (satellite/stream.py) ----------------------------


class FakeHistory:
    """The parts of a MigrationHistory the outbound stream reads."""

    def __init__(self, statements: list[str], migrations: Sequence[SchemaMigration] = ()) -> None:
        self.schema, _ = apply_migration(Schema(), "0", statements)
        self.migrations = list(migrations)

    def after(self, version: str | None) -> list[SchemaMigration]:
        return list(self.migrations) if version is None else []

    def for_transaction(self, end_lsn: int) -> list[SchemaMigration]:
        return [m for m in self.migrations if m.end_lsn == end_lsn]


def every_row(history: FakeHistory, oid: int, table: str = "parent") -> ShapeGraph:
    """A client subscribed to every row of ``table``."""
    graph = ShapeGraph("alice")
    described = history.schema.table("public", table)
    assert described is not None
    graph.define_table(
        "public", table, oid, column_defs(history.schema, described), list(described.primary_key)
    )
    graph.add_layer("sub", "public", table, "")
    return graph


def outbound(
    history: FakeHistory, graph: ShapeGraph | None = None, client_id: str = "me"
) -> Outbound:
    async def table_oid(schema: str, name: str) -> int:
        return 4242

    async def migration_times() -> dict[str, int]:
        return {"7": 1_700_000_000_000}

    return Outbound(
        client_id=client_id,
        dialect="sqlite",
        history=history,  # type: ignore[arg-type]
        graph=graph if graph is not None else ShapeGraph(None),
        table_oid=table_oid,
        migration_times=migration_times,
    )


PARENT = "CREATE TABLE parent (id int8 PRIMARY KEY, name text NOT NULL)"


async def test_nothing_goes_out_of_a_transaction_the_client_does_not_see() -> None:
    pg, _delete, _child, c1, *_ = ElectricDecoder().decode(payloads())
    out = outbound(FakeHistory([PARENT]))
    assert await out.transaction(pg) is None
    # its own write comes back, even with no row it can see
    echo = await outbound(FakeHistory([PARENT]), client_id="client_1").transaction(c1)
    assert echo is not None
    assert (echo.transaction_id, echo.lsn) == (c1.xid, c1.end_lsn)
    [frame] = echo.frames
    assert [op.begin is not None for op in m.decode(frame).ops] == [True, False]  # type: ignore[attr-defined]


async def test_relations_go_before_their_first_use_only() -> None:
    pg, delete, *_ = ElectricDecoder().decode(payloads())
    history = FakeHistory([PARENT])
    out = outbound(history, every_row(history, transaction_relations(pg, [0])[0][0]))
    first = await out.transaction(pg)
    assert first is not None
    relation_frame, log_frame = first.frames
    relation = m.decode(relation_frame)
    assert relation == m.SatRelation(
        schema_name="public",
        table_name="parent",
        relation_id=transaction_relations(pg, [0])[0][0],
        columns=(
            m.SatRelationColumn(name="id", type="int8", primary_key=True, is_nullable=False),
            m.SatRelationColumn(name="name", type="text", is_nullable=False),
        ),
    )
    # Row 1 was never sent to this client: its update reaches it as an insert.
    assert [op.insert is not None for op in m.decode(log_frame).ops[1:-1]] == [True, True]  # type: ignore[attr-defined]
    second = await out.transaction(delete)
    assert second is not None
    [only] = second.frames
    assert m.decode(only).ops[1].delete is not None  # type: ignore[attr-defined]


async def test_a_migration_sent_at_first_sync_is_not_sent_again_from_the_log() -> None:
    txns = ElectricDecoder().decode(payloads())
    migration_txn = txns[5]
    _, ops = apply_migration(Schema(), "7", ["CREATE TABLE later (id int8 PRIMARY KEY, v text)"])
    migration = SchemaMigration(
        "7", 99, ("CREATE TABLE later ...",), tuple(ops), migration_txn.end_lsn
    )
    history = FakeHistory(["CREATE TABLE later (id int8 PRIMARY KEY, v text)"], [migration])

    live = await outbound(history).transaction(migration_txn)
    assert live is not None
    relation, log = (m.decode(f) for f in live.frames)
    assert isinstance(relation, m.SatRelation)
    assert relation.relation_id == 4242
    assert log.ops[1].migrate.version == "7"  # type: ignore[attr-defined]

    out = outbound(history)
    [initial] = await out.initial_migrations(None, 555)
    assert (initial.transaction_id, initial.lsn) == (99, 555)
    begin = m.decode(initial.frames[-1]).ops[0].begin  # type: ignore[attr-defined]
    assert (begin.lsn, begin.commit_timestamp, begin.transaction_id) == (
        b"555",
        1_700_000_000_000,
        99,
    )
    assert await out.transaction(migration_txn) is None
