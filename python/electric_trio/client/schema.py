"""The client's description of an electrified database: tables, columns, keys, relations and the
migrations bundle. The generator writes one of these into the module it generates; ``electrify``
takes it; the typed data access reads it. Plain frozen records, so a generated module is data.

Column types are Postgres type names as the service's migrations spell them (``SatOpMigrate``'s
``PgColumnType.name``, lower case: ``int4``, ``text``, ``timestamptz``, ``uuid``, an enum's name).
"""

from __future__ import annotations

import msgspec

__all__ = [
    "Column",
    "DbSchema",
    "ForeignKey",
    "Migration",
    "Relation",
    "TableSchema",
]


class Column(msgspec.Struct, frozen=True):
    """One column: its name, Postgres type name and whether it may be NULL."""

    name: str
    pg_type: str
    nullable: bool = True


class ForeignKey(msgspec.Struct, frozen=True):
    """``columns`` of this table reference ``parent_columns`` of ``parent``."""

    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


class Relation(msgspec.Struct, frozen=True):
    """A navigable relation for ``include`` and typed access.

    ``many=False``: this table's ``from_column`` references ``table``'s ``to_column`` (the child
    side, one parent). ``many=True``: rows of ``table`` reference this table (the parent side);
    then ``from_column`` is this table's referenced column and ``to_column`` the child's column.
    ``name`` is the relation's name shared by both sides (Prisma's ``<A>To<B>``).
    """

    field: str
    table: str
    from_column: str
    to_column: str
    many: bool
    name: str


class TableSchema(msgspec.Struct, frozen=True):
    """A table in the ``main`` namespace: columns in their Postgres order."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    relations: tuple[Relation, ...] = ()

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


class Migration(msgspec.Struct, frozen=True):
    """One migration of the bundle: its version and its SQLite statements in order (the DDL and
    the triggers of every table it touches, as the generator writes them)."""

    version: str
    statements: tuple[str, ...]


class DbSchema(msgspec.Struct, frozen=True):
    """Every electrified table by name, and the migrations that build them locally."""

    tables: dict[str, TableSchema]
    migrations: tuple[Migration, ...] = ()

    def table(self, name: str) -> TableSchema:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"the schema has no table {name!r}") from None
