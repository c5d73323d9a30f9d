"""The folded decoder on a stream of an electrified database captured from PostgreSQL 18
(rust/core/testdata/electric.bin, written by scripts/capture_electric.py)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from electric_trio._native import (
    ElectricDecoder,
    ElectricTransaction,
    PgOutputDecoder,
    PgOutputError,
)

TESTDATA = Path(__file__).resolve().parents[2] / "rust" / "core" / "testdata"
PG_EPOCH_MS = 946_684_800_000


def payloads() -> list[bytes]:
    data = (TESTDATA / "electric.bin").read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def ms(txn: ElectricTransaction) -> int:
    assert txn.commit_timestamp % 1000 == 0
    return txn.commit_timestamp // 1000 + PG_EPOCH_MS


def test_the_golden_stream_folds_to_what_clients_see() -> None:
    txns = ElectricDecoder().decode(payloads())
    pg, delete, child, c1, c2, migration, magic, ack = txns

    tag = f"postgres_1@{ms(pg)}"
    assert pg.changes() == [
        ("insert", "public", "parent", {"id": 2, "name": "two"}, None, [tag]),
        ("update", "public", "parent", {"id": 1, "name": "uno"}, {"id": 1, "name": "one"}, [tag]),
    ]
    assert pg.origin == "postgres_1"
    assert pg.relations == [("public", "parent")]
    assert len(pg) == 2
    assert pg.changes(1) == pg.changes()[1:]

    assert delete.changes() == [("delete", "public", "parent", None, {"id": 2, "name": "two"}, [])]

    [(kind, _, table, new, _, tags)] = child.changes()
    assert (kind, table, new, tags) == (
        "insert",
        "child",
        {"id": 10, "parent_id": 1, "v": "c"},
        [f"postgres_1@{ms(child)}"],
    )
    assert child.referenced == [("public", "parent", ["1"], {"id": "1", "name": "uno"}, [tag])]

    assert c1.origin == "client_1"
    assert ms(c1) == 1_709_528_767_891
    assert c1.changes()[0][5] == ["client_1@1709528767891"]
    assert c2.origin == 'odd "src",\\x'
    assert c2.changes()[0][5] == ['odd "src",\\x@1709521568500']

    assert len(migration) == 0
    [(txid, _, query)] = migration.ddl
    assert txid == migration.xid
    assert query.startswith("CREATE TABLE public.later (")
    assert migration.electrified == [("public", "later")]

    assert magic.marker is not None
    assert json.loads(magic.marker) == {"xid": str(magic.xid), "caused_by": "subscription:s1"}
    assert (len(ack), ack.other_messages, ack.marker) == (0, 1, None)
    assert [t.end_lsn for t in txns] == [t.end_lsn for t in PgOutputDecoder().decode(payloads())]
    assert repr(c1).startswith(f"<ElectricTransaction xid={c1.xid} commit_lsn=")
    assert 'origin="client_1" changes=1>' in repr(c1)


def test_batches_of_any_size_fold_the_same() -> None:
    stream = payloads()
    whole = [t.changes() for t in ElectricDecoder().decode(stream)]
    decoder = ElectricDecoder()
    got = []
    for i in range(0, len(stream), 3):
        got += [t.changes() for t in decoder.decode(stream[i : i + 3])]
    assert got == whole
    assert not decoder.in_transaction


def test_a_bad_tag_raises_at_its_transaction_and_keeps_the_ones_before() -> None:
    stream = payloads()
    # same length: the composite in client_1's _tags loses its closing parenthesis
    at = next(i for i, p in enumerate(stream) if b'client_1)"}' in p)
    stream[at] = stream[at].replace(b'client_1)"}', b'client_1]"}')
    plain = PgOutputDecoder().decode(stream)
    with pytest.raises(PgOutputError) as caught:
        ElectricDecoder().decode(stream)
    error = caught.value
    assert error.lsn == plain[3].commit_lsn
    assert f"transaction {plain[3].xid} committed at LSN" in str(error)
    assert "bad tag in electric.shadow__public__parent._tags" in str(error)
    assert [t.xid for t in error.transactions] == [t.xid for t in plain[:3]]
