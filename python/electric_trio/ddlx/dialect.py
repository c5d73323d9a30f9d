"""SQL dialects of migrations sent to clients: SQLite (the official client) and Postgres.

The SQLite text is byte-for-byte what the original service generated (its
``Electric.Postgres.Dialect.SQLite``), e.g.::

    CREATE TABLE "fish" (
      "id" INTEGER NOT NULL,
      "frog_id" INTEGER NOT NULL,
      CONSTRAINT "fish_frog_id_fkey" FOREIGN KEY ("frog_id") REFERENCES "frog" ("id"),
      CONSTRAINT "fish_pkey" PRIMARY KEY ("id")
    );

with these deliberate differences, each where the original produced SQL that SQLite rejects:
identifiers and string literals containing quotes are escaped; ``ALTER TABLE IF EXISTS`` loses
its ``IF EXISTS``; ``DEFAULT NULL`` keeps its ``NULL``; an unnamed index gets the name Postgres
gives it; a function without arguments keeps its ``()``; a generated column's expression is always
parenthesised. The Postgres dialect is the statement as the user wrote it (see
:mod:`electric_trio.ddlx.migration`).
"""

from __future__ import annotations

from ._parse import (
    AddColumn,
    AExpr,
    AnyConstraint,
    BoolExpr,
    Cast,
    Check,
    ColumnDef,
    ColumnRef,
    Const,
    CreateIndex,
    CreateTable,
    Default,
    Expr,
    ForeignKey,
    Function,
    Generated,
    Identity,
    NotNull,
    NullTest,
    PrimaryKey,
    TableConstraint,
    Unique,
    ValueFunction,
    default_index_name,
    parse_statements,
)
from .schema import ColumnType, FkAction, TranslationError

__all__ = [
    "postgres_type",
    "quote_ident",
    "sqlite_type",
    "translate_to_sqlite",
]

# The original's type families (Electric.Postgres), by the names the parser may produce.
_INTEGER = frozenset({"smallint", "int2", "integer", "int", "int4", "bigint", "int8"})
_FLOAT = frozenset(
    {"decimal", "numeric", "real", "float", "float4", "double precision", "float8", "money"}
)
_TEXT = frozenset({"character varying", "varchar", "character", "char", "text", "bpchar"})
_BLOB = frozenset({"bytea"})
_DATETIME = frozenset(
    {
        "date",
        "timetz",
        "time",
        "time without time zone",
        "time with time zone",
        "timestamptz",
        "timestamp",
        "timestamp without time zone",
        "timestamp with time zone",
    }
)
_JSON = frozenset({"json", "jsonb"})
_BOOL = frozenset({"boolean", "bool"})
_UUID = frozenset({"uuid"})
_SERIAL = frozenset({"serial", "serial4", "serial8"})


def sqlite_type(t: ColumnType) -> str:
    """The SQLite column type of a Postgres type, as the original mapped it.

    Any array is ``TEXT_JSON``; integers and bool ``INTEGER``; floats and numeric ``REAL``;
    json/jsonb ``TEXT_JSON``; bytea ``BLOB``; text, varchar, char, dates, times, timestamps,
    uuid, enums and anything else ``TEXT``. Type modifiers are kept (``varchar(255)`` is
    ``TEXT(255)``, ``timestamp(3)`` is ``TEXT(3)``).
    """
    if t.array:
        return "TEXT_JSON"
    name = t.name
    if name in _SERIAL and not t.size:
        return "INTEGER"
    if name in _INTEGER or name in _BOOL:
        base = "INTEGER"
    elif name in _FLOAT:
        base = "REAL"
    elif name in _BLOB:
        base = "BLOB"
    elif name in _JSON:
        base = "TEXT_JSON"
    else:  # text, date/time, uuid, enums and other user types
        base = "TEXT"
    return base + _sized(t.size)


def postgres_type(t: ColumnType) -> str:
    """The Postgres spelling of a type: ``varchar(255)``, ``int4[][3]``, ``public.colour``."""
    bounds = "".join("[]" if b == -1 else f"[{b}]" for b in t.array)
    return f"{t.name}{_sized(t.size)}{bounds}"


def quote_ident(name: str) -> str:
    """A double-quoted identifier (valid in both SQLite and Postgres)."""
    return '"' + name.replace('"', '""') + '"'


def translate_to_sqlite(sql: str) -> list[str]:
    """The SQLite statements for a Postgres DDL text, without a schema: one per CREATE TABLE,
    CREATE INDEX and ADD COLUMN, none for enums, DROP INDEX and no-op ALTER TABLE commands.

    Migrations go through :func:`electric_trio.ddlx.migration.apply_migration`, which also
    names unnamed indexes against the indexes the schema already has.
    """
    out: list[str] = []
    for parsed in parse_statements(sql):
        stmt = parsed.stmt
        if isinstance(stmt, CreateTable):
            out.append(sqlite_create_table(stmt))
        elif isinstance(stmt, AddColumn):
            out.append(sqlite_add_column(stmt))
        elif isinstance(stmt, CreateIndex):
            out.append(sqlite_create_index(stmt, stmt.name or default_index_name(stmt, set())))
    return out


# ---------------------------------------------------------------------------------------------
# Statements (internal: the migration module calls these with parsed statements)


def sqlite_create_table(stmt: CreateTable) -> str:
    """``CREATE TABLE`` with one column or constraint per line, two-space indented."""
    lines = [_column(c) for c in stmt.columns]
    lines += [_table_constraint(c) for c in stmt.constraints]
    head = _words("CREATE TABLE", "IF NOT EXISTS" if stmt.if_not_exists else None)
    body = ",\n".join("  " + line for line in lines)
    return f"{head} {quote_ident(stmt.name)} (\n" + (body + "\n" if body else "") + ");\n"


def sqlite_add_column(stmt: AddColumn) -> str:
    """``ALTER TABLE "t" ADD COLUMN "c" TYPE [constraints];`` — SQLite has no IF EXISTS here."""
    column = stmt.column
    constraints = [_add_column_constraint(c) for c in stmt.written_constraints]
    clause = _words("ADD COLUMN", quote_ident(column.name), sqlite_type(column.type), *constraints)
    return f"ALTER TABLE {quote_ident(stmt.table)} {clause};\n"


def sqlite_create_index(stmt: CreateIndex, name: str) -> str:
    """``CREATE [UNIQUE] INDEX [IF NOT EXISTS] "name" ON "t" (keys) [WHERE …];`` — collations,
    NULLS FIRST/LAST, INCLUDE and the access method are dropped."""
    keys = []
    for col in stmt.columns:
        target = quote_ident(col.name) if col.name is not None else _expr(col.expr)
        keys.append(f"{target} {'DESC' if col.descending else 'ASC'}")
    where = _expr(stmt.where) if stmt.where is not None else None
    return (
        _words(
            "CREATE",
            "UNIQUE" if stmt.unique else None,
            "INDEX",
            "IF NOT EXISTS" if stmt.if_not_exists else None,
            quote_ident(name),
            "ON",
            quote_ident(stmt.table),
            "(" + ", ".join(keys) + ")",
            "WHERE" if where is not None else None,
            where,
        )
        + ";\n"
    )


def _column(column: ColumnDef) -> str:
    parts = [quote_ident(column.name), sqlite_type(column.type)]
    for c in column.constraints:
        parts.append(_column_constraint(c))
    return " ".join(parts)


def _column_constraint(c: NotNull | Default | Generated) -> str:
    if isinstance(c, NotNull):
        return "NOT NULL"
    if isinstance(c, Default):
        return f"DEFAULT {_expr(c.expr)}"
    kind = "STORED" if c.stored else "VIRTUAL"
    return f"GENERATED ALWAYS AS {_parenthesised(c.expr)} {kind}"


def _table_constraint(c: TableConstraint) -> str:
    name = f"CONSTRAINT {quote_ident(c.name)}"
    if isinstance(c, PrimaryKey):
        return f"{name} PRIMARY KEY {_column_list(c.keys)}"
    if isinstance(c, Unique):
        return f"{name} UNIQUE {_column_list(c.keys)}"
    if isinstance(c, Check):
        return f"{name} CHECK ({_expr(c.expr)})"
    return _words(name, "FOREIGN KEY", _column_list(c.fk_cols), _references(c))


def _add_column_constraint(c: AnyConstraint) -> str:
    if isinstance(c, PrimaryKey):
        raise TranslationError("You cannot add a PRIMARY KEY column")
    if isinstance(c, Unique):
        raise TranslationError("You cannot add a column with a UNIQUE constraint")
    if isinstance(c, Identity):
        raise TranslationError("You cannot add an identity column")
    if isinstance(c, ForeignKey):
        return _words(f"CONSTRAINT {quote_ident(c.name)}", _references(c))
    if isinstance(c, Check):
        return _table_constraint(c)
    return _column_constraint(c)


def _references(fk: ForeignKey) -> str:
    return _words(
        "REFERENCES",
        quote_ident(fk.pk_table),
        _column_list(fk.pk_cols) if fk.pk_cols else None,
        _action("DELETE", fk.on_delete),
        _action("UPDATE", fk.on_update),
    )


def _action(event: str, action: FkAction) -> str | None:
    if action == "NO_ACTION":
        return None
    return f"ON {event} {action.replace('_', ' ')}"


def _column_list(names: tuple[str, ...]) -> str:
    return "(" + ", ".join(quote_ident(n) for n in names) + ")"


def _sized(size: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in size) + ")" if size else ""


def _words(*parts: str | None) -> str:
    return " ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# Expressions in SQLite


def _parenthesised(expr: Expr) -> str:
    sql = _expr(expr)
    wrapped = isinstance(expr, AExpr | BoolExpr | Cast) or (
        isinstance(expr, Function) and expr.name == "concat"
    )
    return sql if wrapped else f"({sql})"


def _expr(expr: Expr | None) -> str:
    match expr:
        case None:
            return "NULL"
        case Const(value=None):
            return "NULL"
        case Const(value=value) if value is not None:
            if value.kind == "BOOLEAN":
                return "1" if value.value == "true" else "0"
            if value.kind == "STRING":
                if value.value.startswith("\\x"):
                    return f"x'{value.value[2:]}'"
                return "'" + value.value.replace("'", "''") + "'"
            return value.value
        case ColumnRef(name=name):
            return quote_ident(name)
        case AExpr(name=name, left=left, right=right):
            parts = [_expr(left) if left else None, name, _expr(right) if right else None]
            return "(" + _words(*parts) + ")"
        case BoolExpr(op="NOT", args=args):
            return "(NOT " + " ".join(_expr(a) for a in args) + ")"
        case BoolExpr(op=op, args=args):
            return "(" + f" {op} ".join(_expr(a) for a in args) + ")"
        case Function(name="concat", args=args):
            # SQLite has no concat(): NULL-safe || instead
            return "(" + " || ".join(f"coalesce({_expr(a)}, '')" for a in args) + ")"
        case Function(name=name, args=args):
            return f"{name}(" + ", ".join(_expr(a) for a in args) + ")"
        case ValueFunction(name=name):
            if name in ("CURRENT_TIMESTAMP", "LOCALTIMESTAMP"):
                return "current_timestamp"
            if name == "CURRENT_DATE":
                return "current_date"
            return "current_time"
        case Cast(type=t, arg=arg):
            return f"(CAST({_expr(arg)} AS {sqlite_type(t)}))"
        case NullTest(is_not=is_not, arg=arg):
            return f"{_expr(arg)} {'IS NOT' if is_not else 'IS'} NULL"
    raise TranslationError(f"cannot translate expression {expr!r}")
