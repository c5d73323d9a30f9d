"""The electrified schema: tables, their columns and keys, indexes and enum types.

Every record is a frozen :class:`msgspec.Struct`; a :class:`Schema` is a value that migrations
replace rather than mutate (see :func:`electric_trio.ddlx.migration.apply_migration`). The
service stores one per migration version in ``electric.schema.schema`` (jsonb):
:func:`schema_to_json` and :func:`schema_from_json` convert it.

Type names are those of the Postgres parser with ``pg_catalog`` dropped (``int8`` for ``bigint``,
``varchar`` for ``character varying``, ``timestamptz`` for ``timestamp with time zone``); a
user-defined type keeps the name the statement used (``colour`` or ``public.colour``), which is
also what the Satellite ``PgColumnType.name`` carries.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ..errors import ElectricError

__all__ = [
    "Column",
    "ColumnType",
    "DDLError",
    "EnumType",
    "FkAction",
    "FkMatch",
    "ForeignKey",
    "Index",
    "IndexColumn",
    "Schema",
    "SchemaMismatchError",
    "Table",
    "TranslationError",
    "UniqueConstraint",
    "UnsupportedDDLError",
    "schema_from_json",
    "schema_to_json",
]

DEFAULT_SCHEMA = "public"

FkAction = Literal["NO_ACTION", "RESTRICT", "CASCADE", "SET_NULL", "SET_DEFAULT"]
FkMatch = Literal["SIMPLE", "FULL", "PARTIAL"]


class DDLError(ElectricError):
    """A captured DDL statement could not be applied to the electrified schema."""


class UnsupportedDDLError(DDLError):
    """The statement is not one that migrations of electrified tables may contain.

    The message quotes the statement; :attr:`statement` holds its text.
    """

    def __init__(self, message: str, statement: str) -> None:
        super().__init__(f"{message} in: {statement.strip()}")
        self.statement = statement


class SchemaMismatchError(DDLError):
    """The statement refers to a table the schema does not have, or creates one it already has."""


class TranslationError(DDLError):
    """The statement is valid Postgres but SQLite cannot express it (ADD COLUMN … PRIMARY KEY)."""


class ColumnType(msgspec.Struct, frozen=True, gc=False):
    """A column's Postgres type: ``name``, ``array`` dimensions (``-1`` = unbounded, ``()`` for a
    scalar; ``int4[][3]`` is ``(-1, 3)``) and ``size`` (the type modifiers: ``varchar(255)`` is
    ``(255,)``, ``numeric(10, 2)`` is ``(10, 2)``, none is ``()``)."""

    name: str
    array: tuple[int, ...] = ()
    size: tuple[int, ...] = ()

    @property
    def type_modifier(self) -> int:
        """The first size, or -1 when there is none (how pgoutput relations report it)."""
        return self.size[0] if self.size else -1


class Column(msgspec.Struct, frozen=True, gc=False):
    """A table column, in table order."""

    name: str
    type: ColumnType
    not_null: bool = False
    #: The DEFAULT expression as SQL text, if the captured DDL gave one.
    default: str | None = None


class ForeignKey(msgspec.Struct, frozen=True, gc=False):
    """A foreign key: ``columns`` of this table reference ``ref_columns`` of
    ``ref_schema.ref_table``. ``ref_columns`` is the referenced table's primary key when the
    statement named no columns and that table is known."""

    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]
    on_delete: FkAction = "NO_ACTION"
    on_update: FkAction = "NO_ACTION"
    match: FkMatch = "SIMPLE"
    deferrable: bool = False
    initially_deferred: bool = False


class UniqueConstraint(msgspec.Struct, frozen=True, gc=False):
    """A UNIQUE table constraint (electrified tables cannot have one, see server-behaviour §4.1,
    but the statements that create tables may)."""

    name: str
    columns: tuple[str, ...]


class CheckConstraint(msgspec.Struct, frozen=True, gc=False):
    """A CHECK constraint (electrify refuses them unless constraint validation is off):
    ``definition`` as ``pg_get_constraintdef()`` gives it, ``CHECK (...)``."""

    name: str
    definition: str


class IndexColumn(msgspec.Struct, frozen=True, gc=False):
    """One key of an index: a column ``name`` or an ``expression`` (Postgres SQL text)."""

    name: str | None = None
    expression: str | None = None
    descending: bool = False
    nulls_first: bool = False


class Index(msgspec.Struct, frozen=True, gc=False):
    """An index on a table. ``where`` is the predicate of a partial index, as Postgres SQL."""

    name: str
    columns: tuple[IndexColumn, ...]
    unique: bool = False
    including: tuple[str, ...] = ()
    where: str | None = None
    using: str = "btree"
    oid: int | None = None


class Table(msgspec.Struct, frozen=True, gc=False):
    """An electrified table. ``foreign_keys`` are kept in the order the original service sent
    them to clients."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    unique_constraints: tuple[UniqueConstraint, ...] = ()
    indexes: tuple[Index, ...] = ()
    oid: int | None = None
    checks: tuple[CheckConstraint, ...] = ()

    def column(self, name: str) -> Column | None:
        """The column called ``name``, if any."""
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in table order."""
        return tuple(column.name for column in self.columns)


class EnumType(msgspec.Struct, frozen=True, gc=False):
    """An enum type created by ``CREATE TYPE … AS ENUM``; ``labels`` in declaration order."""

    schema: str
    name: str
    labels: tuple[str, ...]


class Schema(msgspec.Struct, frozen=True, gc=False):
    """The whole electrified schema at one migration version."""

    tables: tuple[Table, ...] = ()
    enums: tuple[EnumType, ...] = ()

    def table(self, schema: str, name: str) -> Table | None:
        """The table ``schema.name``, if the schema has it."""
        for table in self.tables:
            if table.schema == schema and table.name == name:
                return table
        return None

    def table_by_oid(self, oid: int) -> Table | None:
        """The table whose ``oid`` is known to be ``oid``, if any."""
        for table in self.tables:
            if table.oid == oid:
                return table
        return None

    def enum_type(self, type_name: str) -> EnumType | None:
        """The enum a column type name refers to: ``schema.name``, or a bare ``name`` for an enum
        in ``public`` (the lookup the original service used)."""
        for enum in self.enums:
            if type_name == f"{enum.schema}.{enum.name}" or (
                enum.schema == DEFAULT_SCHEMA and type_name == enum.name
            ):
                return enum
        return None

    def with_table_oid(self, schema: str, name: str, oid: int) -> Schema:
        """This schema with the oid of table ``schema.name`` set (oids come from Postgres)."""
        if self.table(schema, name) is None:
            raise SchemaMismatchError(f"unknown table {schema}.{name}")
        tables = tuple(
            msgspec.structs.replace(t, oid=oid) if (t.schema, t.name) == (schema, name) else t
            for t in self.tables
        )
        return msgspec.structs.replace(self, tables=tables)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Schema)


def schema_to_json(schema: Schema) -> bytes:
    """The JSON document stored for ``schema`` (fields with default values are included)."""
    return _encoder.encode(schema)


def schema_from_json(data: bytes | str) -> Schema:
    """Load a schema stored by :func:`schema_to_json`; raises :class:`msgspec.ValidationError`
    (or :class:`msgspec.DecodeError`) for a document of another shape."""
    return _decoder.decode(data)
