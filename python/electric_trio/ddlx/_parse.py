"""Captured Postgres DDL -> typed statements, through the Postgres parser (pglast).

The statements and expressions here mirror what the original service derived from the parse tree
(its ``Schema.AST`` module), including how it named unnamed constraints and the order it kept
them in, because the SQLite DDL that clients receive is generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, TypeAlias

import pglast
from pglast import ast
from pglast.enums import (
    A_Expr_Kind,
    AlterTableType,
    BoolExprType,
    ConstrType,
    NullTestType,
    ObjectType,
    SortByDir,
    SortByNulls,
    SQLValueFunctionOp,
)
from pglast.parser import ParseError
from pglast.stream import RawStream

from ._term_order import Atom, Term, elixir_struct, term_key
from .schema import DEFAULT_SCHEMA, ColumnType, FkAction, FkMatch, UnsupportedDDLError

__all__ = [
    "AddColumn",
    "CreateEnum",
    "CreateIndex",
    "CreateTable",
    "DropIndex",
    "ParsedStatement",
    "default_index_name",
    "parse_statements",
]

NAMEDATALEN = 64

# ---------------------------------------------------------------------------------------------
# Expressions (the subset the original could translate: defaults, checks, index keys/predicates)


@dataclass(frozen=True, slots=True)
class Value:
    kind: Literal["STRING", "INTEGER", "FLOAT", "BOOLEAN"]
    value: str


@dataclass(frozen=True, slots=True)
class Const:
    value: Value | None  # None: the NULL constant


@dataclass(frozen=True, slots=True)
class ValueFunction:
    name: str  # CURRENT_TIMESTAMP, CURRENT_DATE, CURRENT_TIME, LOCALTIME, LOCALTIMESTAMP


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Cast:
    type: ColumnType
    arg: Expr


@dataclass(frozen=True, slots=True)
class AExpr:
    name: str
    left: Expr | None
    right: Expr | None


@dataclass(frozen=True, slots=True)
class ColumnRef:
    name: str


@dataclass(frozen=True, slots=True)
class BoolExpr:
    op: Literal["AND", "OR", "NOT"]
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class NullTest:
    is_not: bool
    arg: Expr
    isrow: bool


Expr: TypeAlias = Const | ValueFunction | Function | Cast | AExpr | ColumnRef | BoolExpr | NullTest

# ---------------------------------------------------------------------------------------------
# Constraints


@dataclass(frozen=True, slots=True)
class NotNull:
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Default:
    expr: Expr


@dataclass(frozen=True, slots=True)
class Generated:
    name: str | None
    expr: Expr
    stored: bool


@dataclass(frozen=True, slots=True)
class Identity:
    pass


@dataclass(frozen=True, slots=True)
class PrimaryKey:
    name: str
    keys: tuple[str, ...]
    including: tuple[str, ...] = ()
    deferrable: bool = False
    initdeferred: bool = False


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    fk_cols: tuple[str, ...]
    pk_schema: str
    pk_table: str
    pk_cols: tuple[str, ...]
    deferrable: bool = False
    initdeferred: bool = False
    match: FkMatch = "SIMPLE"
    on_update: FkAction = "NO_ACTION"
    on_delete: FkAction = "NO_ACTION"


@dataclass(frozen=True, slots=True)
class Unique:
    name: str
    keys: tuple[str, ...]
    including: tuple[str, ...] = ()
    deferrable: bool = False
    initdeferred: bool = False


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    expr: Expr
    deferrable: bool = False
    initdeferred: bool = False


ColumnConstraint: TypeAlias = NotNull | Default | Generated
TableConstraint: TypeAlias = PrimaryKey | ForeignKey | Unique | Check
AnyConstraint: TypeAlias = ColumnConstraint | TableConstraint | Identity

# ---------------------------------------------------------------------------------------------
# Statements


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: str
    type: ColumnType
    constraints: tuple[ColumnConstraint, ...]  # kept in the original's order

    @property
    def not_null(self) -> bool:
        return any(isinstance(c, NotNull) for c in self.constraints)


@dataclass(frozen=True, slots=True)
class CreateTable:
    schema: str
    name: str
    if_not_exists: bool
    columns: tuple[ColumnDef, ...]
    constraints: tuple[TableConstraint, ...]  # kept in the original's order


@dataclass(frozen=True, slots=True)
class AddColumn:
    """One ``ADD COLUMN`` of an ALTER TABLE (several in one statement become several)."""

    schema: str
    table: str
    table_missing_ok: bool
    if_not_exists: bool
    column: ColumnDef
    table_constraints: tuple[TableConstraint, ...]
    # the column's constraints as written, for the SQLite ADD COLUMN clause
    written_constraints: tuple[AnyConstraint, ...]


@dataclass(frozen=True, slots=True)
class IndexElem:
    name: str | None
    expr: Expr | None
    expr_sql: str | None
    descending: bool
    nulls_first: bool
    name_hint: str  # what Postgres names an index after, for an unnamed index


@dataclass(frozen=True, slots=True)
class CreateIndex:
    schema: str
    table: str
    name: str | None
    unique: bool
    if_not_exists: bool
    columns: tuple[IndexElem, ...]
    including: tuple[str, ...]
    where: Expr | None
    where_sql: str | None
    using: str


@dataclass(frozen=True, slots=True)
class CreateEnum:
    schema: str
    name: str
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DropIndex:
    names: tuple[tuple[str | None, str], ...]
    missing_ok: bool


@dataclass(frozen=True, slots=True)
class AlterTableNoOp:
    """An ALTER TABLE sub-command that changes nothing clients see (ENABLE TRIGGER, OWNER TO…)."""

    schema: str
    table: str


Statement: TypeAlias = (
    CreateTable | AddColumn | CreateIndex | CreateEnum | DropIndex | AlterTableNoOp
)


@dataclass(frozen=True, slots=True)
class ParsedStatement:
    """A statement and its Postgres text: the statement as the user wrote it or, for one of
    several sub-commands of an ALTER TABLE, that sub-command alone as a statement."""

    stmt: Statement
    pg_sql: str


# ALTER TABLE sub-commands the proxy lets through on electrified tables without capturing them
# (server-behaviour.md §5); they may still share a captured statement with an ADD COLUMN.
_NO_OP_ALTERS = frozenset(
    {
        AlterTableType.AT_EnableTrig,
        AlterTableType.AT_EnableAlwaysTrig,
        AlterTableType.AT_EnableReplicaTrig,
        AlterTableType.AT_DisableTrig,
        AlterTableType.AT_EnableTrigAll,
        AlterTableType.AT_DisableTrigAll,
        AlterTableType.AT_EnableTrigUser,
        AlterTableType.AT_DisableTrigUser,
        AlterTableType.AT_ChangeOwner,
        AlterTableType.AT_SetStorage,
        AlterTableType.AT_SetStatistics,
        AlterTableType.AT_SetOptions,
        AlterTableType.AT_ResetOptions,
        AlterTableType.AT_SetCompression,
        AlterTableType.AT_SetRelOptions,
        AlterTableType.AT_ResetRelOptions,
        AlterTableType.AT_SetAccessMethod,
    }
)

_FK_ACTIONS: dict[str, FkAction] = {
    "a": "NO_ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET_NULL",
    "d": "SET_DEFAULT",
}
_FK_MATCH: dict[str, FkMatch] = {"s": "SIMPLE", "f": "FULL", "p": "PARTIAL"}
_VALUE_FUNCTIONS = {
    SQLValueFunctionOp.SVFOP_CURRENT_DATE: "CURRENT_DATE",
    SQLValueFunctionOp.SVFOP_CURRENT_TIME: "CURRENT_TIME",
    SQLValueFunctionOp.SVFOP_CURRENT_TIME_N: "CURRENT_TIME",
    SQLValueFunctionOp.SVFOP_CURRENT_TIMESTAMP: "CURRENT_TIMESTAMP",
    SQLValueFunctionOp.SVFOP_CURRENT_TIMESTAMP_N: "CURRENT_TIMESTAMP",
    SQLValueFunctionOp.SVFOP_LOCALTIME: "LOCALTIME",
    SQLValueFunctionOp.SVFOP_LOCALTIME_N: "LOCALTIME",
    SQLValueFunctionOp.SVFOP_LOCALTIMESTAMP: "LOCALTIMESTAMP",
    SQLValueFunctionOp.SVFOP_LOCALTIMESTAMP_N: "LOCALTIMESTAMP",
}


def parse_statements(sql: str) -> list[ParsedStatement]:
    """Parse one captured DDL text (one or more statements) into typed statements.

    Raises :class:`UnsupportedDDLError` for anything but CREATE TABLE, CREATE INDEX, CREATE TYPE
    … AS ENUM, DROP INDEX and ALTER TABLE made of ADD COLUMN and no-op sub-commands.
    """
    try:
        raws = pglast.parse_sql(sql)
    except ParseError as e:
        raise UnsupportedDDLError(f"cannot parse statement ({e})", sql) from None
    parsed: list[ParsedStatement] = []
    for raw in raws:
        start = raw.stmt_location or 0
        length = raw.stmt_len or 0
        text = (sql[start : start + length] if length else sql[start:]).strip()
        if raw.stmt is None:
            continue
        parsed.extend(_Mapper(text).statement(raw.stmt))
    return parsed


def sort_table_constraints(constraints: list[TableConstraint]) -> tuple[TableConstraint, ...]:
    """In the order the original kept them (Erlang term order of its protobuf structs)."""
    return tuple(sorted(constraints, key=lambda c: term_key(constraint_term(c))))


def make_object_name(name1: str, name2: str | None, label: str) -> str:
    """Postgres' ``makeObjectName``: ``name1[_name2]_label`` shortened to fit NAMEDATALEN."""
    avail = NAMEDATALEN - 1 - len(label.encode()) - (2 if name2 else 1)
    n1, n2 = name1.encode(), (name2 or "").encode()
    l1, l2 = len(n1), len(n2)
    while l1 + l2 > avail:
        if l1 > l2:
            l1 -= 1
        else:
            l2 -= 1
    parts = [n1[:l1].decode(errors="ignore")]
    if name2:
        parts.append(n2[:l2].decode(errors="ignore"))
    parts.append(label)
    return "_".join(parts)


def clip(name: str, max_bytes: int) -> str:
    """``name`` cut to ``max_bytes`` UTF-8 bytes, never inside a character (pg_mbcliplen)."""
    return name.encode()[:max_bytes].decode(errors="ignore")


def default_index_name(stmt: CreateIndex, taken: set[str]) -> str:
    """The name Postgres gives an unnamed index (``ChooseIndexName``): ``<table>_<keys>_idx``,
    then ``…_idx1``, ``…_idx2``… while the name is in ``taken``."""
    names: list[str] = []
    for hint in [c.name_hint for c in stmt.columns] + list(stmt.including):
        candidate, n = hint, 0
        while candidate in names:
            n += 1
            candidate = clip(hint, NAMEDATALEN - 1 - len(str(n))) + str(n)
        names.append(candidate)
    addition = ""
    for name in names:
        if addition:
            addition += "_"
        addition += name
        if len(addition.encode()) >= NAMEDATALEN:
            break
    addition = clip(addition, NAMEDATALEN - 1)
    label, n = "idx", 0
    while True:
        candidate = make_object_name(stmt.table, addition or None, label)
        if candidate not in taken:
            return candidate
        n += 1
        label = f"idx{n}"


def _constraint_name(given: str | None, table: str, keys: tuple[str, ...], label: str) -> str:
    # the original's Schema.constraint_name: PKs and CHECKs are named after the table alone
    if given:
        return clip(given, NAMEDATALEN - 1)
    if label == "pkey" or not keys:
        return make_object_name(table, None, label)
    return make_object_name(table, "_".join(keys), label)


@dataclass
class _TableBuilder:
    schema: str
    name: str
    columns: list[ColumnDef] = field(default_factory=list)
    constraints: list[TableConstraint] = field(default_factory=list)
    not_null: set[str] = field(default_factory=set)


class _Mapper:
    """Maps the parse tree of one statement; every error quotes that statement."""

    def __init__(self, text: str) -> None:
        self.text = text

    def unsupported(self, what: str) -> UnsupportedDDLError:
        return UnsupportedDDLError(what, self.text)

    # -- statements ---------------------------------------------------------------------------

    def statement(self, node: ast.Node) -> list[ParsedStatement]:
        if isinstance(node, ast.CreateStmt):
            return [ParsedStatement(self.create_table(node), self.text)]
        if isinstance(node, ast.IndexStmt):
            return [ParsedStatement(self.create_index(node), self.text)]
        if isinstance(node, ast.CreateEnumStmt):
            return [ParsedStatement(self.create_enum(node), self.text)]
        if isinstance(node, ast.AlterTableStmt):
            return self.alter_table(node)
        if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
            return [ParsedStatement(self.drop_index(node), self.text)]
        raise self.unsupported(f"unsupported statement {type(node).__name__}")

    def create_table(self, node: ast.CreateStmt) -> CreateTable:
        if node.inhRelations or node.partbound or node.partspec or node.ofTypename:
            raise self.unsupported("CREATE TABLE with INHERITS, PARTITION or OF is not supported")
        schema, name = self.range_var(node.relation)
        table = _TableBuilder(schema, name)
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef):
                column, table_constraints = self.column_def(element, name)
                table.columns.append(column)
                table.constraints.extend(table_constraints)
            elif isinstance(element, ast.Constraint):
                self.table_constraint(element, table)
            else:
                raise self.unsupported(f"unsupported table element {type(element).__name__}")
        columns = tuple(_with_not_null(c) if c.name in table.not_null else c for c in table.columns)
        return CreateTable(
            schema=schema,
            name=name,
            if_not_exists=bool(node.if_not_exists),
            columns=columns,
            constraints=sort_table_constraints(table.constraints),
        )

    def table_constraint(self, con: ast.Constraint, table: _TableBuilder) -> None:
        contype = con.contype
        if contype == ConstrType.CONSTR_PRIMARY:
            pk = self.primary_key(con, table.name, ())
            table.not_null.update(pk.keys)
            table.constraints.append(pk)
        elif contype == ConstrType.CONSTR_NOTNULL:
            table.not_null.update(self.names(con.keys))
        else:
            constraint = self.constraint(con, table.name, ())
            if not isinstance(constraint, ForeignKey | Unique | Check):
                raise self.unsupported(f"unsupported table constraint {_enum_name(contype)}")
            table.constraints.append(constraint)

    def column_def(
        self, node: ast.ColumnDef, table: str
    ) -> tuple[ColumnDef, list[TableConstraint]]:
        column, table_constraints, _ = self.column_def_written(node, table)
        return column, table_constraints

    def column_def_written(
        self, node: ast.ColumnDef, table: str
    ) -> tuple[ColumnDef, list[TableConstraint], list[AnyConstraint]]:
        """A column, the table constraints it declares, and all its constraints as written."""
        if node.colname is None or node.typeName is None:
            raise self.unsupported("column definition without a name or a type")
        name = node.colname
        written: list[AnyConstraint] = []
        for con in node.constraints or ():
            if not isinstance(con, ast.Constraint):
                raise self.unsupported(f"unexpected column constraint {type(con).__name__}")
            if con.contype in _ATTRIBUTES:
                # DEFERRABLE / INITIALLY DEFERRED written after a column constraint belong to it
                if not written:
                    raise self.unsupported("constraint attribute without a constraint")
                written[-1] = _apply_attribute(written[-1], con.contype)
                continue
            constraint = self.constraint(con, table, (name,))
            if constraint is not None:
                written.append(constraint)
        column_constraints: list[ColumnConstraint] = []
        table_constraints: list[TableConstraint] = []
        for constraint in written:
            if isinstance(constraint, NotNull):
                if not any(isinstance(c, NotNull) for c in column_constraints):
                    column_constraints.append(constraint)
            elif isinstance(constraint, Default | Generated):
                column_constraints.append(constraint)
            elif isinstance(constraint, Identity):
                pass
            else:
                if isinstance(constraint, PrimaryKey) and not any(
                    isinstance(c, NotNull) for c in column_constraints
                ):
                    column_constraints.append(NotNull())
                table_constraints.append(constraint)
        column = ColumnDef(
            name=name,
            type=self.type_name(node.typeName),
            constraints=_sort_column_constraints(column_constraints),
        )
        return column, table_constraints, written

    def constraint(
        self, con: ast.Constraint, table: str, column_keys: tuple[str, ...]
    ) -> AnyConstraint | None:
        contype = con.contype
        if contype == ConstrType.CONSTR_NULL:
            return None
        if contype == ConstrType.CONSTR_NOTNULL:
            return NotNull(con.conname or None)
        if contype == ConstrType.CONSTR_DEFAULT:
            return Default(self.expr_required(con.raw_expr))
        if contype == ConstrType.CONSTR_IDENTITY:
            return Identity()
        if contype == ConstrType.CONSTR_GENERATED:
            return Generated(
                con.conname or None,
                self.expr_required(con.raw_expr),
                stored=con.generated_kind != "v",
            )
        if contype == ConstrType.CONSTR_PRIMARY:
            return self.primary_key(con, table, column_keys)
        if contype == ConstrType.CONSTR_UNIQUE:
            keys = self.names(con.keys) or column_keys
            including = self.names(con.including)
            return Unique(
                name=_constraint_name(con.conname, table, keys + including, "key"),
                keys=keys,
                including=including,
                deferrable=bool(con.deferrable),
                initdeferred=bool(con.initdeferred),
            )
        if contype == ConstrType.CONSTR_FOREIGN:
            keys = self.names(con.fk_attrs) or column_keys
            pk_schema, pk_table = self.range_var(con.pktable)
            return ForeignKey(
                name=_constraint_name(con.conname, table, keys, "fkey"),
                fk_cols=keys,
                pk_schema=pk_schema,
                pk_table=pk_table,
                pk_cols=self.names(con.pk_attrs),
                deferrable=bool(con.deferrable),
                initdeferred=bool(con.initdeferred),
                match=_FK_MATCH.get(con.fk_matchtype or "s", "SIMPLE"),
                on_update=_FK_ACTIONS.get(con.fk_upd_action or "a", "NO_ACTION"),
                on_delete=_FK_ACTIONS.get(con.fk_del_action or "a", "NO_ACTION"),
            )
        if contype == ConstrType.CONSTR_CHECK:
            return Check(
                name=_constraint_name(con.conname, table, (), "check"),
                expr=self.expr_required(con.raw_expr),
                deferrable=bool(con.deferrable),
                initdeferred=bool(con.initdeferred),
            )
        raise self.unsupported(f"unsupported constraint {_enum_name(contype)}")

    def primary_key(
        self, con: ast.Constraint, table: str, column_keys: tuple[str, ...]
    ) -> PrimaryKey:
        return PrimaryKey(
            name=_constraint_name(con.conname or con.indexname, table, (), "pkey"),
            keys=self.names(con.keys) or column_keys,
            including=self.names(con.including),
            deferrable=bool(con.deferrable),
            initdeferred=bool(con.initdeferred),
        )

    def alter_table(self, node: ast.AlterTableStmt) -> list[ParsedStatement]:
        if node.objtype != ObjectType.OBJECT_TABLE:
            raise self.unsupported("only ALTER TABLE is supported")
        schema, table = self.range_var(node.relation)
        cmds = node.cmds or ()
        parsed: list[ParsedStatement] = []
        for cmd in cmds:
            if not isinstance(cmd, ast.AlterTableCmd):
                raise self.unsupported(f"unexpected ALTER TABLE command {type(cmd).__name__}")
            if cmd.subtype in _NO_OP_ALTERS:
                parsed.append(ParsedStatement(AlterTableNoOp(schema, table), self.text))
                continue
            if cmd.subtype != AlterTableType.AT_AddColumn:
                raise self.unsupported(
                    f"unsupported ALTER TABLE sub-command {_enum_name(cmd.subtype)}"
                )
            if not isinstance(cmd.def_, ast.ColumnDef):
                raise self.unsupported("ADD COLUMN without a column definition")
            column, table_constraints, written = self.column_def_written(cmd.def_, table)
            # one sub-command of several is given its own statement text (the original reused the
            # whole statement for each, which a Postgres client cannot run twice)
            pg_sql = self.text
            if len(cmds) > 1:
                pg_sql = RawStream()(
                    ast.AlterTableStmt(
                        relation=node.relation,
                        cmds=(cmd,),
                        objtype=node.objtype,
                        missing_ok=node.missing_ok,
                    )
                )
            add = AddColumn(
                schema=schema,
                table=table,
                table_missing_ok=bool(node.missing_ok),
                if_not_exists=bool(cmd.missing_ok),
                column=column,
                table_constraints=tuple(table_constraints),
                written_constraints=tuple(written),
            )
            parsed.append(ParsedStatement(add, pg_sql))
        return parsed

    def create_index(self, node: ast.IndexStmt) -> CreateIndex:
        schema, table = self.range_var(node.relation)
        columns = tuple(self.index_elem(e) for e in node.indexParams or ())
        including: list[str] = []
        for elem in node.indexIncludingParams or ():
            if not isinstance(elem, ast.IndexElem) or elem.name is None:
                raise self.unsupported("INCLUDE of an expression")
            including.append(elem.name)
        where = self.expr(node.whereClause)
        return CreateIndex(
            schema=schema,
            table=table,
            name=node.idxname or None,
            unique=bool(node.unique),
            if_not_exists=bool(node.if_not_exists),
            columns=columns,
            including=tuple(including),
            where=where,
            where_sql=RawStream()(node.whereClause) if node.whereClause is not None else None,
            using=node.accessMethod or "btree",
        )

    def index_elem(self, elem: ast.Node) -> IndexElem:
        if not isinstance(elem, ast.IndexElem):
            raise self.unsupported(f"unexpected index element {type(elem).__name__}")
        descending = elem.ordering == SortByDir.SORTBY_DESC
        if elem.nulls_ordering == SortByNulls.SORTBY_NULLS_DEFAULT:
            nulls_first = descending
        else:
            nulls_first = elem.nulls_ordering == SortByNulls.SORTBY_NULLS_FIRST
        if elem.name:
            return IndexElem(elem.name, None, None, descending, nulls_first, elem.name)
        if elem.expr is None:
            raise self.unsupported("index element without a column or an expression")
        hint = "expr"
        if isinstance(elem.expr, ast.FuncCall) and elem.expr.funcname:
            hint = self.string(elem.expr.funcname[-1])
        return IndexElem(
            None,
            self.expr_required(elem.expr),
            RawStream()(elem.expr),
            descending,
            nulls_first,
            hint,
        )

    def create_enum(self, node: ast.CreateEnumStmt) -> CreateEnum:
        names = self.names(node.typeName)
        if len(names) == 1:
            schema, name = DEFAULT_SCHEMA, names[0]
        elif len(names) == 2:
            schema, name = names
        else:
            raise self.unsupported("enum type name with a database qualifier")
        return CreateEnum(schema, name, self.names(node.vals))

    def drop_index(self, node: ast.DropStmt) -> DropIndex:
        names: list[tuple[str | None, str]] = []
        for obj in node.objects or ():
            parts = self.names(obj if isinstance(obj, tuple) else (obj,))
            if len(parts) == 1:
                names.append((None, parts[0]))
            elif len(parts) == 2:
                names.append((parts[0], parts[1]))
            else:
                raise self.unsupported("index name with a database qualifier")
        return DropIndex(tuple(names), bool(node.missing_ok))

    # -- names and types ----------------------------------------------------------------------

    def range_var(self, node: ast.RangeVar | None) -> tuple[str, str]:
        if node is None or not node.relname:
            raise self.unsupported("missing relation name")
        if node.catalogname:
            raise self.unsupported("relation name with a database qualifier")
        return node.schemaname or DEFAULT_SCHEMA, node.relname

    def string(self, node: object) -> str:
        if isinstance(node, ast.String) and node.sval is not None:
            return node.sval
        raise self.unsupported(f"expected a name, got {type(node).__name__}")

    def names(self, nodes: tuple[object, ...] | None) -> tuple[str, ...]:
        return tuple(self.string(n) for n in nodes or ())

    def type_name(self, node: ast.TypeName) -> ColumnType:
        if node.setof or node.pct_type:
            raise self.unsupported("SETOF and %TYPE column types are not supported")
        names = list(self.names(node.names))
        if len(names) == 2 and names[0] == "pg_catalog":
            names = names[1:]
        if not 1 <= len(names) <= 2:
            raise self.unsupported(f"unsupported type name {'.'.join(names)}")
        size: list[int] = []
        for mod in node.typmods or ():
            if not (isinstance(mod, ast.A_Const) and isinstance(mod.val, ast.Integer)):
                raise self.unsupported("non-integer type modifier")
            size.append(mod.val.ival or 0)
        array: list[int] = []
        for bound in node.arrayBounds or ():
            if not isinstance(bound, ast.Integer):
                raise self.unsupported("unexpected array bound")
            array.append(bound.ival if bound.ival is not None else -1)
        return ColumnType(".".join(names), tuple(array), tuple(size))

    # -- expressions --------------------------------------------------------------------------

    def expr_required(self, node: ast.Node | None) -> Expr:
        expr = self.expr(node)
        if expr is None:
            raise self.unsupported("missing expression")
        return expr

    def expr(self, node: ast.Node | None) -> Expr | None:
        if node is None:
            return None
        if isinstance(node, ast.A_Const):
            return Const(None if node.isnull else self.value(node.val))
        if isinstance(node, ast.ColumnRef):
            fields = node.fields or ()
            if len(fields) != 1:
                raise self.unsupported("qualified column references are not supported")
            return ColumnRef(self.string(fields[0]))
        if isinstance(node, ast.A_Expr):
            if node.kind != A_Expr_Kind.AEXPR_OP or len(node.name or ()) != 1:
                raise self.unsupported(f"unsupported operator expression {RawStream()(node)}")
            if isinstance(node.lexpr, tuple) or isinstance(node.rexpr, tuple):
                raise self.unsupported(f"unsupported operator expression {RawStream()(node)}")
            return AExpr(
                self.string((node.name or ())[0]),
                self.expr(node.lexpr),
                self.expr(node.rexpr),
            )
        if isinstance(node, ast.BoolExpr):
            op: Literal["AND", "OR", "NOT"]
            if node.boolop == BoolExprType.AND_EXPR:
                op = "AND"
            elif node.boolop == BoolExprType.OR_EXPR:
                op = "OR"
            else:
                op = "NOT"
            return BoolExpr(op, tuple(self.expr_required(a) for a in node.args or ()))
        if isinstance(node, ast.FuncCall):
            names = list(self.names(node.funcname))
            if names and names[0] == "pg_catalog":
                names = names[1:]
            if node.agg_star or node.agg_distinct or node.over is not None:
                raise self.unsupported(f"unsupported function call {RawStream()(node)}")
            return Function(".".join(names), tuple(self.expr_required(a) for a in node.args or ()))
        if isinstance(node, ast.TypeCast):
            if node.typeName is None:
                raise self.unsupported("cast without a type")
            return Cast(self.type_name(node.typeName), self.expr_required(node.arg))
        if isinstance(node, ast.NullTest):
            return NullTest(
                node.nulltesttype == NullTestType.IS_NOT_NULL,
                self.expr_required(node.arg),
                bool(node.argisrow),
            )
        if isinstance(node, ast.SQLValueFunction):
            name = _VALUE_FUNCTIONS.get(node.op) if node.op is not None else None
            if name is None:
                raise self.unsupported(f"unsupported value function {_enum_name(node.op)}")
            return ValueFunction(name)
        if isinstance(node, ast.A_ArrayExpr) and not node.elements:
            return Const(Value("STRING", "[]"))
        raise self.unsupported(f"unsupported expression {RawStream()(node)}")

    def value(self, node: ast.Node | None) -> Value:
        if isinstance(node, ast.Integer):
            return Value("INTEGER", str(node.ival or 0))
        if isinstance(node, ast.Float):
            return Value("FLOAT", node.fval or "0")
        if isinstance(node, ast.Boolean):
            return Value("BOOLEAN", "true" if node.boolval else "false")
        if isinstance(node, ast.String):
            return Value("STRING", node.sval or "")
        raise self.unsupported(f"unsupported constant {type(node).__name__}")


_ATTRIBUTES = frozenset(
    {
        ConstrType.CONSTR_ATTR_DEFERRABLE,
        ConstrType.CONSTR_ATTR_NOT_DEFERRABLE,
        ConstrType.CONSTR_ATTR_DEFERRED,
        ConstrType.CONSTR_ATTR_IMMEDIATE,
        ConstrType.CONSTR_ATTR_ENFORCED,
        ConstrType.CONSTR_ATTR_NOT_ENFORCED,
    }
)


def _apply_attribute(constraint: AnyConstraint, attribute: ConstrType) -> AnyConstraint:
    if not isinstance(constraint, PrimaryKey | ForeignKey | Unique | Check):
        return constraint
    if attribute == ConstrType.CONSTR_ATTR_DEFERRABLE:
        return replace(constraint, deferrable=True)
    if attribute == ConstrType.CONSTR_ATTR_NOT_DEFERRABLE:
        return replace(constraint, deferrable=False)
    if attribute == ConstrType.CONSTR_ATTR_DEFERRED:
        return replace(constraint, initdeferred=True)
    if attribute == ConstrType.CONSTR_ATTR_IMMEDIATE:
        return replace(constraint, initdeferred=False)
    return constraint


def _with_not_null(column: ColumnDef) -> ColumnDef:
    if column.not_null:
        return column
    return ColumnDef(
        column.name, column.type, _sort_column_constraints([*column.constraints, NotNull()])
    )


def _sort_column_constraints(constraints: list[ColumnConstraint]) -> tuple[ColumnConstraint, ...]:
    return tuple(sorted(constraints, key=lambda c: term_key(constraint_term(c))))


def _enum_name(value: object) -> str:
    return getattr(value, "name", str(value))


# ---------------------------------------------------------------------------------------------
# Erlang terms of the original's protobuf structs, for ordering

_PROTO = "Electric.Postgres.Schema.Proto"


def constraint_term(constraint: ColumnConstraint | TableConstraint) -> Term:
    tag: str
    inner: Term
    match constraint:
        case NotNull(name=name):
            tag = "not_null"
            inner = elixir_struct(
                f"{_PROTO}.Constraint.NotNull", name=name, deferrable=False, initdeferred=False
            )
        case Default(expr=expr):
            tag = "default"
            inner = elixir_struct(f"{_PROTO}.Constraint.Default", expr=_expr_term(expr))
        case Generated(name=name, expr=expr):
            tag = "generated"
            inner = elixir_struct(
                f"{_PROTO}.Constraint.Generated",
                name=name or "",
                when=Atom("ALWAYS"),
                expr=_expr_term(expr),
            )
        case PrimaryKey():
            tag = "primary"
            inner = elixir_struct(
                f"{_PROTO}.Constraint.PrimaryKey",
                name=constraint.name,
                keys=list(constraint.keys),
                including=list(constraint.including),
                deferrable=constraint.deferrable,
                initdeferred=constraint.initdeferred,
            )
        case Unique():
            tag = "unique"
            inner = elixir_struct(
                f"{_PROTO}.Constraint.Unique",
                name=constraint.name,
                keys=list(constraint.keys),
                including=list(constraint.including),
                deferrable=constraint.deferrable,
                initdeferred=constraint.initdeferred,
            )
        case ForeignKey():
            tag = "foreign"
            inner = elixir_struct(
                f"{_PROTO}.Constraint.ForeignKey",
                name=constraint.name,
                deferrable=constraint.deferrable,
                initdeferred=constraint.initdeferred,
                on_update=Atom(constraint.on_update),
                on_delete=Atom(constraint.on_delete),
                match_type=Atom(constraint.match),
                fk_cols=list(constraint.fk_cols),
                pk_table=elixir_struct(
                    f"{_PROTO}.RangeVar",
                    name=constraint.pk_table,
                    schema=constraint.pk_schema,
                    alias=None,
                ),
                pk_cols=list(constraint.pk_cols),
            )
        case Check():
            tag = "check"
            inner = elixir_struct(
                f"{_PROTO}.Constraint.Check",
                name=constraint.name,
                expr=_expr_term(constraint.expr),
                deferrable=constraint.deferrable,
                initdeferred=constraint.initdeferred,
            )
    return elixir_struct(f"{_PROTO}.Constraint", constraint=(Atom(tag), inner))


def _type_term(t: ColumnType) -> Term:
    return elixir_struct(
        f"{_PROTO}.Column.Type", name=t.name, size=list(t.size), array=list(t.array)
    )


def _expr_term(expr: Expr | None) -> Term:
    if expr is None:
        return None
    tag: str
    inner: Term
    match expr:
        case Const(value=value):
            tag = "const"
            inner = elixir_struct(
                f"{_PROTO}.Expression.Const",
                value=None
                if value is None
                else elixir_struct(
                    f"{_PROTO}.Expression.Value", type=Atom(value.kind), value=value.value
                ),
            )
        case ValueFunction(name=name):
            tag = "vfunction"
            inner = elixir_struct(f"{_PROTO}.Expression.ValueFunction", name=name, args=[])
        case Function(name=name, args=args):
            tag = "function"
            inner = elixir_struct(
                f"{_PROTO}.Expression.Function", name=name, args=[_expr_term(a) for a in args]
            )
        case Cast(type=t, arg=arg):
            tag = "cast"
            inner = elixir_struct(
                f"{_PROTO}.Expression.Cast", type=_type_term(t), arg=_expr_term(arg)
            )
        case AExpr(name=name, left=left, right=right):
            tag = "aexpr"
            inner = elixir_struct(
                f"{_PROTO}.Expression.AExpr",
                name=name,
                left=_expr_term(left),
                right=_expr_term(right),
            )
        case ColumnRef(name=name):
            tag = "col_ref"
            inner = elixir_struct(f"{_PROTO}.Expression.ColumnRef", name=name)
        case BoolExpr(op=op, args=args):
            tag = "bool_expr"
            inner = elixir_struct(
                f"{_PROTO}.Expression.BoolExpr", op=Atom(op), args=[_expr_term(a) for a in args]
            )
        case NullTest(is_not=is_not, arg=arg, isrow=isrow):
            tag = "null_test"
            inner = elixir_struct(
                f"{_PROTO}.Expression.NullTest",
                type=Atom("IS_NOT" if is_not else "IS"),
                arg=_expr_term(arg),
                isrow=isrow,
            )
    return elixir_struct(f"{_PROTO}.Expression", expr=(Atom(tag), inner))
