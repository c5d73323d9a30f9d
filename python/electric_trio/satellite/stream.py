"""What a session sends from the transaction log (satellite-protocol.md §7.4, §7.9).

Per transaction: a ``SatRelation`` for every relation the client has not been sent yet in its
current shape, then one ``SatOpLog`` frame ``begin, ops…, commit``. Migrations go out as migrate
ops (all the migrations newer than the client's schema version at its first sync, one
transaction per version; later ones as they arrive in the log); row changes as the client's
shape graph decides.

The client's :class:`~electric_trio._native.ShapeGraph` (Rust) holds the layers of its
subscriptions and the rows it was sent: for each transaction it picks the changes the client
sees (where clauses, include trees, the ownership rule of server-behaviour.md §6), turns rows
that move in into inserts and rows that leave into gones, and encodes the ``SatOpLog`` frame,
rows never becoming Python objects.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

import msgspec

from .. import _native
from ..ddlx.history import MigrationHistory
from ..ddlx.migration import Dialect, MigrateOp
from ..ddlx.schema import Schema, Table
from ..http.migrations import sat_op_migrate
from .messages import (
    SatOpBegin,
    SatOpCommit,
    SatOpLog,
    SatRelation,
    SatRelationColumn,
    SatTransOp,
    encode,
    encode_message,
)

__all__ = [
    "OWNER_COLUMN",
    "POSTGRES_ORIGIN",
    "Outbound",
    "Outgoing",
    "RefCounter",
    "column_defs",
    "describe_tables",
]

#: The origin of writes made in Postgres (the connector's name).
POSTGRES_ORIGIN = "postgres_1"
#: A table with this column is owned row by row (server-behaviour.md §6).
OWNER_COLUMN = "electric_user_id"

# Names of the types electrified columns may have, by type OID (an enum's is looked up by name).
_TYPE_NAMES = {
    16: "bool",
    17: "bytea",
    20: "int8",
    21: "int2",
    23: "int4",
    25: "text",
    700: "float4",
    701: "float8",
    1043: "varchar",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    2950: "uuid",
    3802: "jsonb",
}


#: OIDs of the built-in types electrified columns may have (enums are looked up by name).
TYPE_OIDS = {
    "bool": 16,
    "bytea": 17,
    "int8": 20,
    "int2": 21,
    "int4": 23,
    "text": 25,
    "json": 114,
    "float4": 700,
    "float8": 701,
    "bpchar": 1042,
    "varchar": 1043,
    "date": 1082,
    "time": 1083,
    "timestamp": 1114,
    "timestamptz": 1184,
    "numeric": 1700,
    "uuid": 2950,
    "jsonb": 3802,
}


def column_defs(schema: Schema, table: Table) -> list[tuple[str, int, list[str] | None]]:
    """A table's columns as the Rust shape graph and filter take them."""
    enums = {e.name: list(e.labels) for e in schema.enums}
    out: list[tuple[str, int, list[str] | None]] = []
    for c in table.columns:
        labels = enums.get(c.type.name)
        oid = 0 if labels is not None or c.type.array else TYPE_OIDS.get(c.type.name, 25)
        out.append((c.name, oid, labels))
    return out


async def describe_tables(
    graph: _native.ShapeGraph,
    schema: Schema,
    tables: Iterable[tuple[str, str]],
    table_oid: Callable[[str, str], Awaitable[int]],
) -> None:
    """Describes these tables to ``graph`` as ``schema`` has them (unknown ones are skipped)."""
    for schema_name, name in list(tables):
        table = schema.table(schema_name, name)
        if table is None:
            continue
        oid = table.oid or await table_oid(schema_name, name)
        graph.define_table(
            schema_name,
            name,
            oid,
            column_defs(schema, table),
            list(table.primary_key),
            OWNER_COLUMN if table.column(OWNER_COLUMN) is not None else None,
        )


class RefCounter:
    """The next additional-data ref of a client (refs stay unique across its connections)."""

    def __init__(self) -> None:
        self.next = 1


class Outgoing(msgspec.Struct, frozen=True, gc=False):
    """The frames of one transaction for one client, and what it acknowledges it by."""

    frames: tuple[bytes, ...]
    transaction_id: int
    lsn: int
    #: Move-in rows to fetch and send later as additional data ``additional_ref``:
    #: ``(layer, keys)`` pairs of the shape graph.
    move_ins: tuple[tuple[int, list[list[str]]], ...] = ()
    additional_ref: int = 0


def commit_timestamp_ms(pg_us: int) -> int:
    """A Postgres commit time (µs since 2000-01-01) as the protocol's ms since 1970."""
    return max(0, (pg_us + 946_684_800_000_000) // 1000)


class Outbound:
    """One client's view of the stream: which relations it was sent (and in which shape), which
    migration versions it got at its first sync, and the frames of each transaction.

    ``table_oid(schema, name)`` gives a table's OID (the ``relation_id`` clients see);
    ``migration_times()`` the commit time (ms) of every migration version.
    """

    def __init__(
        self,
        *,
        client_id: str,
        dialect: Dialect,
        history: MigrationHistory,
        graph: _native.ShapeGraph,
        table_oid: Callable[[str, str], Awaitable[int]],
        migration_times: Callable[[], Awaitable[dict[str, int]]],
        refs: RefCounter | None = None,
    ) -> None:
        self.client_id = client_id
        self.dialect = dialect
        self.history = history
        #: The client's sent-rows graph: which changes it sees (shapes and ownership).
        self.graph = graph
        # It lists the relations a frame uses that this connection has not been told about.
        graph.reset_relations()
        self._table_oid = table_oid
        self._migration_times = migration_times
        self._relations: dict[int, SatRelation] = {}
        self._relation_keys: dict[int, tuple[object, ...]] = {}
        self._delivered: set[str] = set()
        #: The tables described to the graph (described again after a migration).
        self.tables: set[tuple[str, str]] = set()
        self._refs = refs if refs is not None else RefCounter()

    async def initial_migrations(self, schema_version: str | None, lsn: int) -> list[Outgoing]:
        """Every migration after ``schema_version`` (all for None), one transaction per
        version, all at position ``lsn`` (§7.9); they are not sent again from the log."""
        migrations = self.history.after(schema_version)
        if not migrations:
            return []
        times = await self._migration_times()
        out: list[Outgoing] = []
        for migration in migrations:
            frames = await self._migration_relations(migration.ops)
            ts = times.get(migration.version, 0)
            ops = [SatTransOp(migrate=sat_op_migrate(op, self.dialect)) for op in migration.ops]
            position = str(lsn).encode()
            begin = SatOpBegin(
                commit_timestamp=ts,
                lsn=position,
                origin=POSTGRES_ORIGIN,
                is_migration=True,
                transaction_id=migration.txid,
            )
            commit = SatOpCommit(commit_timestamp=ts, lsn=position)
            log = SatOpLog(ops=(SatTransOp(begin=begin), *ops, SatTransOp(commit=commit)))
            frames.append(encode(log))
            self._delivered.add(migration.version)
            out.append(Outgoing(tuple(frames), migration.txid, lsn))
        return out

    async def transaction(self, txn: _native.ElectricTransaction) -> Outgoing | None:
        """The frames of a transaction from the log, or None when this client gets nothing of
        it: no migration it lacks, no change it sees, and not its own write echoed back."""
        ops = [
            op
            for migration in self.history.for_transaction(txn.end_lsn)
            if migration.version not in self._delivered
            for op in migration.ops
        ]
        if ops or txn.ddl:
            await self.describe_tables(self.tables)
        frames = await self._migration_relations(ops)
        migrate = [encode_message(sat_op_migrate(op, self.dialect)) for op in ops]
        return self._outgoing(txn, frames, migrate)

    def _outgoing(
        self, txn: _native.ElectricTransaction, frames: list[bytes], migrate: list[bytes]
    ) -> Outgoing | None:
        self.graph.begin_step(txn.end_lsn)
        result = self.graph.process(
            txn, migrate, force=txn.origin == self.client_id, additional_ref=self._refs.next
        )
        if result is None:
            return None
        frame, relations, move_ins = result
        frames.extend(self.relation_frames(relations))
        frames.append(frame)
        ref = 0
        if move_ins:
            ref = self._refs.next
            self._refs.next += 1
        return Outgoing(tuple(frames), txn.xid, txn.end_lsn, tuple(move_ins), ref)

    def relation_frames(
        self, relations: Sequence[tuple[int, str, str, list[tuple[str, int]]]]
    ) -> list[bytes]:
        """``SatRelation`` frames for the relations the client has not been sent as they are."""
        frames: list[bytes] = []
        for oid, schema, table, columns in relations:
            # Unchanged since the last check (same columns, same schema): nothing to build.
            key = (schema, table, tuple(columns), id(self.history.schema))
            if self._relation_keys.get(oid) == key:
                continue
            self._relation_keys[oid] = key
            relation = self._data_relation(oid, schema, table, columns)
            if self._relations.get(oid) != relation:
                self._relations[oid] = relation
                frames.append(encode(relation))
        return frames

    async def describe_tables(self, tables: Iterable[tuple[str, str]]) -> None:
        """Describes these tables to the graph as the schema has them now."""
        await describe_tables(self.graph, self.history.schema, tables, self._table_oid)
        self.tables.update(tables)

    async def _migration_relations(self, ops: Sequence[MigrateOp]) -> list[bytes]:
        """The ``SatRelation`` frames of the tables ``ops`` create or alter, when new to the
        client (legacy sent them before the migration, re-sent after ADD COLUMN)."""
        frames: list[bytes] = []
        for op in ops:
            if op.table is None or op.relation is None:
                continue
            schema, name = op.relation
            oid = await self._table_oid(schema, name)
            current = self.history.schema.table(schema, name)
            not_null = {c.name for c in current.columns if c.not_null} if current else set()
            relation = SatRelation(
                schema_name=schema,
                table_name=name,
                relation_id=oid,
                columns=tuple(
                    SatRelationColumn(
                        name=c.name,
                        type=c.pg_type.name,
                        primary_key=c.name in op.table.pks,
                        is_nullable=c.name not in not_null and c.name not in op.table.pks,
                    )
                    for c in op.table.columns
                ),
            )
            if self._relations.get(oid) != relation:
                self._relations[oid] = relation
                self._relation_keys.pop(oid, None)
                self.graph.reset_relations()
                frames.append(encode(relation))
        return frames

    def _data_relation(
        self, oid: int, schema: str, name: str, columns: Sequence[tuple[str, int]]
    ) -> SatRelation:
        """The relation as the transaction's rows have it (its columns and types come from the
        replication stream, so they match the rows even when a migration came later);
        nullability and the primary key from the schema."""
        table = self.history.schema.table(schema, name)
        pks = table.primary_key if table else ()
        described = {c.name: c for c in table.columns} if table else {}
        out: list[SatRelationColumn] = []
        for column, type_oid in columns:
            known = described.get(column)
            type_name = _TYPE_NAMES.get(type_oid) or (known.type.name if known else "text")
            not_null = known.not_null if known else False
            out.append(
                SatRelationColumn(
                    name=column,
                    type=type_name,
                    primary_key=column in pks,
                    is_nullable=not (not_null or column in pks),
                )
            )
        return SatRelation(schema_name=schema, table_name=name, relation_id=oid, columns=tuple(out))
