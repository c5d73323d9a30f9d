"""What the migrations proxy does with a piece of SQL (server-behaviour.md §4-5).

Every statement goes through the Postgres parser (pglast). Statements that are not DDL on an
electrified table pass untouched. The others become either a rejection (an ``EXnnn`` error) or
a single ``DO`` block that runs the statement and then, in the same transaction, captures it
(``electric.capture_ddl``, ``electric.alter_shadow_table``) and names the migration
(``electric.assign_migration_version``). One statement in, one statement out: the same rewrite
works in a simple Query (several statements) and in an extended-protocol Parse (one), and the
client gets one CommandComplete per statement, whose tag the relay puts back to the original's.

Analysis is in two steps so that the catalogue is only asked about tables that matter:
:func:`parse` reads the statements and lists the tables and indexes they touch, then
:func:`plan` decides, given which of those are electrified.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pglast
from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.parser import ParseError, parse_sql_json, scan

from ._ddlx import DdlxCommand, DdlxSyntaxError, looks_like_ddlx, parse_ddlx

__all__ = [
    "FRAMEWORK_TABLES",
    "Parsed",
    "Plan",
    "Rejection",
    "Statement",
    "framework_version",
    "generated_version",
    "parse",
    "plan",
    "quote",
    "rejection_sql",
    "shadow_plan",
]

Table = tuple[str, str]

#: Column types an electrified table may gain with ADD COLUMN (§4.1), no modifiers, no arrays.
ALLOWED_TYPES = frozenset(
    "bool bytea date float4 float8 int2 int4 int8 jsonb text time timestamp timestamptz uuid "
    "varchar".split()
)

# ALTER TABLE sub-commands allowed on an electrified table and not captured (§5).
_ALLOWED_ALTERS = frozenset(
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

_CONSTRAINT_NAMES = {
    ConstrType.CONSTR_CHECK: "CHECK",
    ConstrType.CONSTR_GENERATED: "GENERATED",
    ConstrType.CONSTR_FOREIGN: "FOREIGN KEY",
    ConstrType.CONSTR_IDENTITY: "GENERATED",
    ConstrType.CONSTR_PRIMARY: "PRIMARY KEY",
    ConstrType.CONSTR_UNIQUE: "UNIQUE",
}

# Top-level statement kinds that can never touch an electrified table's definition: a query
# made only of these is forwarded as it came, after the (cheap, JSON) parse.
_INTERESTING = frozenset(
    {"AlterTableStmt", "IndexStmt", "DropStmt", "RenameStmt", "CallStmt", "DoStmt"}
)
_STMT_KIND = re.compile(r'\{"stmt":\{"(\w+)"')

#: Migration tables of the frameworks whose version the proxy picks up (§5): columns -> the
#: parameter carrying the version (and, for Prisma, how to cut it).
FRAMEWORK_TABLES: Mapping[str, tuple[frozenset[str], ...]] = {
    "schema_migrations": (frozenset({"version", "inserted_at"}),),
    "_prisma_migrations": (
        frozenset({"checksum", "finished_at", "id", "logs", "migration_name", "started_at"}),
        frozenset({"checksum", "id", "migration_name", "started_at"}),
    ),
    "atdatabases_migrations_applied": (
        frozenset({"applied_at", "ignored_error", "index", "name", "obsolete", "script"}),
    ),
}
_FRAMEWORK_VERSION_COLUMN = {
    "schema_migrations": "version",
    "_prisma_migrations": "migration_name",
    "atdatabases_migrations_applied": "index",
}


@dataclass(frozen=True)
class Rejection:
    """A statement the proxy refuses: sent to the client as an ErrorResponse."""

    code: str
    message: str
    detail: str | None = None


@dataclass
class Statement:
    text: str
    kind: str
    node: Any = None
    ddlx: DdlxCommand | None = None
    rejection: Rejection | None = None
    #: Tables whose electrification decides what happens to this statement.
    tables: list[Table] = field(default_factory=list)
    #: Indexes (schema or None, name) whose table decides it (DROP INDEX).
    indexes: list[tuple[str | None, str]] = field(default_factory=list)
    #: ``CALL electric.electrify``/``enable`` of this table.
    electrifies: Table | None = None


@dataclass
class Parsed:
    sql: str
    #: None when the SQL needs nothing from the proxy (forward it as it is).
    statements: list[Statement] | None
    #: A framework migrations-table INSERT: (table, columns in order) (extended protocol only).
    framework_insert: tuple[str, list[str]] | None = None

    @property
    def tables(self) -> set[Table]:
        return {t for s in self.statements or () for t in s.tables}

    @property
    def indexes(self) -> set[tuple[str | None, str]]:
        return {i for s in self.statements or () for i in s.indexes}


@dataclass
class Plan:
    """What to send upstream instead of the client's SQL."""

    #: The statements to run, each with the command tag the client must see instead of the
    #: upstream's (None: keep it).
    statements: list[tuple[str, str | None]] = field(default_factory=list)
    rejection: Rejection | None = None
    #: The rewrite captures DDL or electrifies: the transaction is now a migration.
    migration: bool = False
    #: Tables electrified by it (they count as electrified for the rest of the transaction).
    electrified: set[Table] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        return self.rejection is not None or any(tag is not None for _, tag in self.statements)

    @property
    def sql(self) -> str:
        return ";\n".join(text for text, _ in self.statements)

    @property
    def tags(self) -> list[str | None]:
        return [tag for _, tag in self.statements]


def generated_version() -> str:
    """The proxy's own version for a migration nobody named: UTC ``YYYYMMDDHHMMSS_ffffff``."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S_%f")


def quote(text: str) -> str:
    """``text`` as a dollar-quoted literal whose tag cannot occur in it."""
    while True:
        tag = f"$__{secrets.token_hex(6)}__$"
        if tag not in text:
            return f"{tag}{text}{tag}"


def _range_table(rv: Any) -> Table:
    return (rv.schemaname or "public", rv.relname)


def _names(items: Any) -> list[str]:
    return [getattr(i, "sval", "") for i in items or ()]


def _statement(text: str, node: Any) -> Statement:
    kind = type(node).__name__
    st = Statement(text=text, kind=kind, node=node)
    if isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        st.tables.append(_range_table(node.relation))
    elif isinstance(node, ast.IndexStmt):
        st.tables.append(_range_table(node.relation))
    elif isinstance(node, ast.DropStmt):
        for obj in node.objects or ():
            names = _names(obj)
            if node.removeType == ObjectType.OBJECT_TABLE:
                st.tables.append((names[-2], names[-1]) if len(names) > 1 else ("public", names[0]))
            elif node.removeType == ObjectType.OBJECT_INDEX:
                st.indexes.append((names[-2] if len(names) > 1 else None, names[-1]))
    elif isinstance(node, ast.RenameStmt) and node.relation is not None:
        st.tables.append(_range_table(node.relation))
    elif isinstance(node, ast.CallStmt):
        call: Any = node.funccall
        names = _names(call.funcname)
        if names in (["electric", "electrify"], ["electric", "enable"]):
            args = [
                str(a.val.sval)
                for a in call.args or ()
                if isinstance(a, ast.A_Const) and isinstance(a.val, ast.String)
            ]
            st.electrifies = _call_target(args)
    elif isinstance(node, ast.DoStmt):
        st.rejection = Rejection("EX000", "Unsupported DO...END block in migration")
    return st


def _call_target(args: list[str]) -> Table | None:
    if len(args) == 2:
        return (args[0], args[1])
    if len(args) == 1:
        parts = [p.strip('"') for p in re.split(r"\.(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)", args[0])]
        return (parts[0], parts[1]) if len(parts) == 2 else ("public", parts[0])
    return None


def _slices(sql: str, stmts: Any) -> list[tuple[str, Any]]:
    out = []
    for s in stmts:  # pglast gives locations in characters
        start = s.stmt_location or 0
        end = start + s.stmt_len if s.stmt_len else len(sql)
        out.append((sql[start:end].strip(), s.stmt))
    return out


def parse(sql: str, *, extended: bool = False) -> Parsed:
    """Reads ``sql``; raises nothing (SQL Postgres will refuse is forwarded for it to refuse)."""
    try:
        kinds = _STMT_KIND.findall(parse_sql_json(sql))
    except ParseError:
        kinds = None
    if kinds is not None and not _INTERESTING.intersection(kinds):
        if extended and kinds == ["InsertStmt"]:
            return Parsed(sql, None, _framework_insert(sql))
        return Parsed(sql, None)
    if kinds is not None:
        return Parsed(sql, [_statement(t, n) for t, n in _slices(sql, pglast.parse_sql(sql))])
    # The parser refused it: DDLX statements among plain ones, or an error Postgres will give.
    if not looks_like_ddlx(sql):
        return Parsed(sql, None)
    statements: list[Statement] = []
    for piece in _split(sql):
        try:
            nodes = _slices(piece, pglast.parse_sql(piece))
        except ParseError as e:
            if not _fails_at_electric(piece, e):
                return Parsed(sql, None)  # a plain syntax error: Postgres answers it
            try:
                cmd = parse_ddlx(piece)
            except DdlxSyntaxError as e:
                rejection = Rejection("00000", "Invalid ELECTRIC statement", str(e))
                statements.append(Statement(piece, "DDLX", rejection=rejection))
                continue
            st = Statement(piece, "DDLX", ddlx=cmd)
            if cmd.table is not None:
                st.tables.append(cmd.table)
            statements.append(st)
            continue
        statements.extend(_statement(t, n) for t, n in nodes)
    return Parsed(sql, statements)


def _fails_at_electric(sql: str, error: ParseError) -> bool:
    """The parser gave up at an ``ELECTRIC`` token: what makes a statement DDLX (§4)."""
    at = error.args[1] if len(error.args) > 1 else None
    if not isinstance(at, int):
        return False
    word = sql[at : at + 9]
    return word[:8].upper() == "ELECTRIC" and not (word[8:].isalnum() or word[8:] in ("_", "$"))


def _split(sql: str) -> list[str]:
    """The statements of ``sql``, cut at the ``;`` tokens of the Postgres scanner (so not inside
    strings, quoted names or comments), even where the parser would give up."""
    pieces, start = [], 0
    for token in scan(sql):  # offsets in characters
        if token.name == "ASCII_59":
            pieces.append(sql[start : token.start])
            start = token.end + 1
    pieces.append(sql[start:])
    return [p.strip() for p in pieces if p.strip()]


def _framework_insert(sql: str) -> tuple[str, list[str]] | None:
    lowered = sql.lower()
    if not any(name in lowered for name in FRAMEWORK_TABLES):
        return None
    node: Any = pglast.parse_sql(sql)[0].stmt
    rel = node.relation
    if (rel.schemaname or "public") != "public" or rel.relname not in FRAMEWORK_TABLES:
        return None
    columns = [c.name for c in node.cols or ()]
    if frozenset(columns) not in FRAMEWORK_TABLES[rel.relname]:
        return None
    return (rel.relname, columns)


def framework_version(
    insert: tuple[str, list[str]], params: list[bytes | None], formats: list[int]
) -> str | None:
    """The migration version carried by the parameters of a framework's INSERT (§5)."""
    table, columns = insert
    column = _FRAMEWORK_VERSION_COLUMN[table]
    try:
        index = columns.index(column)
        raw = params[index]
    except (ValueError, IndexError):
        return None
    if raw is None:
        return None
    fmt = formats[0] if len(formats) == 1 else (formats[index] if formats else 0)
    if fmt == 1:
        value = str(int.from_bytes(raw, "big", signed=True))
    else:
        value = raw.decode(errors="replace")
    if table == "_prisma_migrations":
        value = value.split("_", 1)[0]
    return value


def _type_name(type_name: Any) -> str:
    return _names(type_name.names)[-1].lower()


def _check_add_column(col: Any) -> tuple[Rejection | None, str]:
    type_name = _type_name(col.typeName)
    shown = type_name + ("[]" if col.typeName.arrayBounds else "")
    if col.typeName.arrayBounds or col.typeName.typmods or type_name not in ALLOWED_TYPES:
        if col.typeName.typmods:
            mods = ",".join(
                str(getattr(m.val, "ival", getattr(m.val, "sval", "?")))
                for m in col.typeName.typmods
            )
            shown = f"{type_name}({mods})" + ("[]" if col.typeName.arrayBounds else "")
        return Rejection("EX005", f"Cannot electrify column of type {json.dumps(shown)}"), ""
    for c in col.constraints or ():
        if c.contype == ConstrType.CONSTR_DEFAULT:
            return Rejection("EX006", "Cannot electrify column with DEFAULT clause"), ""
        if c.contype not in (ConstrType.CONSTR_NULL, ConstrType.CONSTR_NOTNULL):
            kind = _CONSTRAINT_NAMES.get(c.contype, str(c.contype.name))
            return Rejection("EX011", f"Cannot electrify column with {kind} constraint"), ""
    return None, type_name


def _sql_table(table: Table) -> str:
    return f'"{table[0]}"."{table[1]}"'


def plan(
    parsed: Parsed,
    electrified: Collection[Table],
    index_tables: Mapping[tuple[str | None, str], Table],
    *,
    version: tuple[str, int],
    features: Collection[str] = (),
    extended: bool = False,
) -> Plan:
    """Decides what to run for ``parsed`` given which tables are electrified (including those
    electrified earlier in the same transaction) and which table each dropped index is on."""
    result = Plan()
    known = set(electrified)
    assert parsed.statements is not None
    for st in parsed.statements:
        if st.rejection is not None:
            return Plan(rejection=st.rejection)
        outcome = _plan_one(st, known, index_tables, version, features, extended)
        if isinstance(outcome, Rejection):
            return Plan(rejection=outcome)
        text, tag, electrifies = outcome
        result.statements.append((text, tag))
        if tag is not None:
            result.migration = True
        if electrifies is not None:
            result.electrified.add(electrifies)
            known.add(electrifies)
    return result


def _do_block(body: list[str]) -> str:
    lines = "\n".join(f"  {line};" for line in body)
    tag = quote("\n".join(body))
    delim = tag[: tag.index("$", 1) + 1]
    return f"DO {delim}BEGIN\n{lines}\nEND{delim}"


def _plan_one(
    st: Statement,
    electrified: Collection[Table],
    index_tables: Mapping[tuple[str | None, str], Table],
    version: tuple[str, int],
    features: Collection[str],
    extended: bool,
) -> Rejection | tuple[str, str | None, Table | None]:
    assign = f"CALL electric.assign_migration_version({quote(version[0])}, {version[1]})"
    node = st.node
    if st.ddlx is not None:
        cmd = st.ddlx
        if cmd.action != "ENABLE" and cmd.flag not in features:
            return Rejection(
                "EX001",
                f"{cmd.tag} is currently unsupported",
                "electric-trio does not implement access controls; this command has no "
                "effect on the service",
            )
        electrifies = cmd.table if cmd.action == "ENABLE" else None
        return _do_block([*cmd.sql(quote), assign]), cmd.tag, electrifies
    if st.electrifies is not None:
        body = [f"EXECUTE {quote(st.text)}", assign]
        return _do_block(body), "ELECTRIC ENABLE", st.electrifies
    hit = next((t for t in st.tables if t in electrified), None)
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
        hit = next((index_tables[i] for i in st.indexes if i in index_tables), None)
        hit = hit if hit in electrified else None
    if hit is None:
        return st.text, None, None
    capture = [f"EXECUTE {quote(st.text)}", f"CALL electric.capture_ddl({quote(st.text)})"]
    notice = f"RAISE NOTICE 'Migration affecting electrified table %', {quote(_sql_table(hit))}"
    if isinstance(node, ast.AlterTableStmt):
        shadow = []
        for cmd in node.cmds or ():
            sub = cmd.subtype
            if sub == AlterTableType.AT_AddColumn:
                rejection, type_name = _check_add_column(cmd.def_)
                if rejection is not None:
                    return rejection
                shadow.append(
                    "CALL electric.alter_shadow_table("
                    f"{quote(hit[0])}, {quote(hit[1])}, 'add', "
                    f"{quote(cmd.def_.colname)}, {quote(type_name)})"
                )
            elif sub == AlterTableType.AT_DropColumn:
                return Rejection(
                    "EX010",
                    f'Cannot drop column "{cmd.name}" of electrified table {_sql_table(hit)}',
                )
            elif sub == AlterTableType.AT_AlterColumnType:
                return Rejection(
                    "EX009",
                    f'Cannot change type of column "{cmd.name}" of electrified table '
                    f"{_sql_table(hit)}",
                )
            elif sub not in _ALLOWED_ALTERS:
                return Rejection(
                    "EX007",
                    f'Cannot alter column "{cmd.name or ""}" of electrified table '
                    f"{_sql_table(hit)}",
                )
        if not shadow:
            return st.text, None, None  # only allowed, uncaptured sub-commands
        return _do_block([*capture, *shadow, notice, assign]), "ALTER TABLE", None
    if isinstance(node, ast.IndexStmt):
        return _do_block([*capture, notice, assign]), "CREATE INDEX", None
    if isinstance(node, ast.DropStmt):
        if node.removeType == ObjectType.OBJECT_TABLE:
            if extended:
                return Rejection("EX100", f"Cannot DROP Electrified table {_sql_table(hit)}")
            return Rejection("EX004", f"Cannot drop electrified table {_sql_table(hit)}")
        if node.removeType == ObjectType.OBJECT_INDEX:
            return _do_block([*capture, notice, assign]), "DROP INDEX", None
        return st.text, None, None
    if isinstance(node, ast.RenameStmt):
        if node.renameType == ObjectType.OBJECT_TABLE:
            return Rejection("EX002", f"Cannot rename electrified table {_sql_table(hit)}")
        if node.renameType == ObjectType.OBJECT_COLUMN:
            return Rejection(
                "EX008",
                f'Cannot rename column "{node.subname}" of electrified table {_sql_table(hit)}',
            )
        if node.renameType == ObjectType.OBJECT_TABCONSTRAINT:
            return Rejection(
                "EX012",
                f'Cannot rename constraint "{node.subname}" of electrified table {_sql_table(hit)}',
            )
        return Rejection("EX003", f"Cannot rename property of electrified table {_sql_table(hit)}")
    return st.text, None, None


def shadow_plan(parsed: Parsed) -> Plan:
    """For Prisma's shadow database (no electric schema there): DDLX statements do nothing but
    answer with their command tag; everything else runs as sent, unchecked."""
    result = Plan()
    assert parsed.statements is not None
    for st in parsed.statements:
        if st.ddlx is not None:
            result.statements.append((_do_block(["NULL"]), st.ddlx.tag))
        else:
            result.statements.append((st.text, None))
    return result


#: The SQLSTATE raised upstream for a refusal whose own code PL/pgSQL cannot raise (00000, that
#: of an invalid DDLX statement, which it turns into P0001); the relay puts the real one back.
STAND_IN_CODE = "EXDDX"


def raised_code(code: str) -> str:
    """The SQLSTATE :func:`rejection_sql` raises for a refusal with ``code``."""
    return STAND_IN_CODE if code == "00000" else code


def rejection_sql(rejection: Rejection) -> str:
    """A statement that fails upstream with ``rejection``'s code (see :func:`raised_code`) and
    message: the transaction state then follows Postgres's own rules (a failed statement aborts
    an open transaction)."""
    code = raised_code(rejection.code)
    parts = [f"ERRCODE = '{code}'", f"MESSAGE = {quote(rejection.message)}"]
    if rejection.detail:
        parts.append(f"DETAIL = {quote(rejection.detail)}")
    return _do_block([f"RAISE EXCEPTION USING {', '.join(parts)}"])
