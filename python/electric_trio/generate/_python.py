"""The ``--target python`` module: row types, typed tables, the schema and the migrations."""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterable

from ..client import data
from ..client.schema import Column, DbSchema, Relation, TableSchema
from ._schema import model_name

__all__ = ["render_python"]

_TYPES = {
    "int2": "int",
    "int4": "int",
    "int8": "int",
    "float4": "float",
    "float8": "float",
    "bool": "bool",
    "date": "datetime.date",
    "time": "datetime.time",
    "timetz": "datetime.time",
    "timestamp": "datetime.datetime",
    "timestamptz": "datetime.datetime",
    "json": "typing.Any",
    "jsonb": "typing.Any",
    "bytea": "bytes",
}
_WIDTH = 88
_RESERVED = {"schema", "migrations", "msgspec", "datetime", "typing", "data", "client_schema"}


def _identifier(name: str, taken: set[str]) -> str:
    """A Python identifier for ``name``, unique in ``taken`` (which it joins)."""
    ident = re.sub(r"\W", "_", name, flags=re.ASCII) or "_"
    if ident[0].isdigit():
        ident = "_" + ident
    if ident.startswith("__"):  # a class body would mangle it
        ident = "n" + ident
    if keyword.iskeyword(ident) or keyword.issoftkeyword(ident):
        ident += "_"
    while ident in taken:
        ident += "_"
    taken.add(ident)
    return ident


def _lit(text: str) -> str:
    """``text`` as a double-quoted Python string literal (JSON's escapes are Python's)."""
    return json.dumps(text, ensure_ascii=False)


def _str(text: str, indent: int) -> list[str]:
    """``text`` as Python string literals of at most ``_WIDTH`` columns at ``indent``
    (implicitly concatenated when it needs several)."""
    room = max(20, _WIDTH - indent - 4)
    if len(_lit(text)) <= room:
        return [_lit(text)]
    pieces: list[str] = []
    for line in text.splitlines(keepends=True):
        while line:
            cut = room - 2
            while len(_lit(line[:cut])) > room and cut > 1:
                cut -= 1
            pieces.append(_lit(line[:cut]))
            line = line[cut:]
    return pieces


def _py_type(column: Column, enums: dict[str, tuple[str, ...]]) -> str:
    # an enum column's type is schema-qualified (``public.colour``), the enum's name is not
    values = enums.get(column.pg_type) or enums.get(column.pg_type.rsplit(".", 1)[-1])
    if values:
        base = "typing.Literal[" + ", ".join(_lit(v) for v in values) + "]"
    else:
        base = _TYPES.get(column.pg_type, "str")
    return f"{base} | None" if column.nullable else base


class _Names:
    """The module's Python names: classes per table, fields per column/relation."""

    def __init__(self, schema: DbSchema) -> None:
        taken = set(_RESERVED)
        self.model = {t: _identifier(model_name(t), taken) for t in schema.tables}
        self.table_class = {t: _identifier(f"{self.model[t]}Table", taken) for t in schema.tables}
        self.client = _identifier("Electric", taken)
        self.fields: dict[str, dict[str, str]] = {}
        for name, table in schema.tables.items():
            used: set[str] = set()
            fields = {c.name: _identifier(c.name, used) for c in table.columns}
            fields.update({"@" + r.field: _identifier(r.field, used) for r in table.relations})
            self.fields[name] = fields
        self.attributes: dict[str, str] = {}
        used_attrs = {n for n in dir(data.Database) if not n.startswith("__")}
        used_attrs |= {"executor", "schema", "_tables"}
        for name in schema.tables:
            self.attributes[name] = _identifier(name, used_attrs)


def _field(ident: str, name: str, annotation: str, default: str | None) -> list[str]:
    args = [] if ident == name else [f"name={_lit(name)}"]
    args += [] if default is None else [f"default={default}"]
    value = "" if not args else default if ident == name else f"msgspec.field({', '.join(args)})"
    line = f"    {ident}: {annotation}" + (f" = {value}" if value else "")
    if len(line) <= _WIDTH:
        return [line]
    # too long: the annotation in parentheses, the field's arguments one per line
    head = f"    {ident}: {annotation}"
    lines = (
        [head] if len(head) + 4 <= _WIDTH else [f"    {ident}: (", f"        {annotation}", "    )"]
    )
    if not value:
        return lines
    if ident == name:
        lines[-1] += " = ("
        return [*lines, f"        {value}", "    )"]
    lines[-1] += " = msgspec.field("
    return [*lines, *(f"        {a}," for a in args), "    )"]


def _row_class(table: TableSchema, names: _Names, enums: dict[str, tuple[str, ...]]) -> list[str]:
    fields = names.fields[table.name]
    lines = [
        "",
        "",
        f"class {names.model[table.name]}(msgspec.Struct, kw_only=True):",
        f'    """A row of ``{_doc(table.name)}``."""',
        "",
    ]
    for column in table.columns:
        default = "None" if column.nullable else None
        lines += _field(fields[column.name], column.name, _py_type(column, enums), default)
    for relation in table.relations:
        related = names.model[relation.table]
        annotation = (
            f"list[{related}] | msgspec.UnsetType"
            if relation.many
            else f"{related} | msgspec.UnsetType | None"
        )
        lines += _field(fields["@" + relation.field], relation.field, annotation, "msgspec.UNSET")
    lines += [
        "",
        "",
        f"class {names.table_class[table.name]}(data.Table[{names.model[table.name]}]):",
        f'    """The ``{_doc(table.name)}`` table."""',
        "",
        "    def __init__(self, db: data.Database) -> None:",
        f"        super().__init__(db, {_lit(table.name)}, {names.model[table.name]})",
    ]
    return lines


def _doc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _tuple(items: Iterable[str]) -> str:
    items = list(items)
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _table_value(table: TableSchema, indent: int) -> list[str]:
    pad = " " * indent
    lines = [f"{pad}{_lit(table.name)}: client_schema.TableSchema("]
    lines.append(f"{pad}    name={_lit(table.name)},")
    lines.append(f"{pad}    columns=(")
    for c in table.columns:
        args = [_lit(c.name), _lit(c.pg_type), repr(c.nullable)]
        line = f"{pad}        client_schema.Column({', '.join(args)}),"
        if len(line) <= _WIDTH:
            lines.append(line)
        else:
            lines.append(f"{pad}        client_schema.Column(")
            lines += [f"{pad}            {a}," for a in args]
            lines.append(f"{pad}        ),")
    lines.append(f"{pad}    ),")
    lines.append(f"{pad}    primary_key={_tuple(_lit(k) for k in table.primary_key)},")
    lines.append(f"{pad}    foreign_keys=(" + ("" if table.foreign_keys else "),"))
    for fk in table.foreign_keys:
        lines.append(f"{pad}        client_schema.ForeignKey(")
        lines.append(f"{pad}            {_tuple(_lit(c) for c in fk.columns)},")
        lines.append(f"{pad}            {_lit(fk.parent)},")
        lines.append(f"{pad}            {_tuple(_lit(c) for c in fk.parent_columns)},")
        lines.append(f"{pad}        ),")
    if table.foreign_keys:
        lines.append(f"{pad}    ),")
    lines.append(f"{pad}    relations=(" + ("" if table.relations else "),"))
    for r in table.relations:
        lines.extend(_relation_value(r, indent + 8))
    if table.relations:
        lines.append(f"{pad}    ),")
    lines.append(f"{pad}),")
    return lines


def _relation_value(r: Relation, indent: int) -> list[str]:
    pad = " " * indent
    return [
        f"{pad}client_schema.Relation(",
        f"{pad}    field={_lit(r.field)},",
        f"{pad}    table={_lit(r.table)},",
        f"{pad}    from_column={_lit(r.from_column)},",
        f"{pad}    to_column={_lit(r.to_column)},",
        f"{pad}    many={r.many!r},",
        f"{pad}    name={_lit(r.name)},",
        f"{pad}),",
    ]


def render_python(
    schema: DbSchema, *, source: str, enums: dict[str, tuple[str, ...]] | None = None
) -> str:
    """The module's text. ``source``: where the migrations came from (for the header)."""
    enums = enums or {}
    names = _Names(schema)
    body = [line for t in schema.tables.values() for line in _row_class(t, names, enums)]
    lines = [
        f'"""The electrified schema of {_doc(source)}, its typed tables and migrations.',
        "",
        "Generated by ``electric-trio generate``; regenerate instead of editing. Use::",
        "",
        f"    db = {names.client}(executor)  # the Satellite client or data.SqliteExecutor",
        '    rows = await db.<table>.find_many(where={"column": value})',
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]
    stdlib = [m for m in ("datetime", "typing") if any(m + "." in line for line in body)]
    lines += [f"import {m}" for m in stdlib] + ([""] if stdlib else [])
    lines += [
        "import msgspec",
        "from electric_trio.client import data",
        "from electric_trio.client import schema as client_schema",
        "",
        f'__all__ = ["{names.client}", "migrations", "schema"]',
    ]
    lines += body
    lines += ["", "", "migrations: tuple[client_schema.Migration, ...] = ("]
    for migration in schema.migrations:
        lines.append("    client_schema.Migration(")
        lines.append(f"        version={_lit(migration.version)},")
        lines.append("        statements=(")
        for statement in migration.statements:
            pieces = _str(statement, 12)
            if len(pieces) == 1:
                lines.append(f"            {pieces[0]},")
            else:
                lines.append("            (")
                lines += [f"                {p}" for p in pieces]
                lines.append("            ),")
        lines.append("        ),")
        lines.append("    ),")
    lines.append(")")
    lines += ["", "schema = client_schema.DbSchema(", "    tables={"]
    for table in schema.tables.values():
        lines += _table_value(table, 8)
    lines += ["    },", "    migrations=migrations,", ")"]
    lines += [
        "",
        "",
        f"class {names.client}(data.Database):",
        '    """Every table of the schema, typed, over ``executor``."""',
        "",
        "    def __init__(self, executor: data.Executor | data.ClientLike) -> None:",
        "        super().__init__(executor, schema)",
    ]
    for name in schema.tables:
        lines.append(f"        self.{names.attributes[name]} = {names.table_class[name]}(self)")
    return "\n".join(lines) + "\n"
