"""The ``--target typescript`` module: the ``DbSchema`` and migrations for ``electric-sql@0.12.1``.

An ES module (JavaScript, or TypeScript when the output ends in ``.ts``/``.mts``) that builds the
official client's ``DbSchema`` without Prisma: per table the fields with the client's type
names, the relations, and zod validators of the inputs as the Prisma generator would check them
(column types and nullability; nested writes and include/select trees are left to the client).
"""

from __future__ import annotations

import json

from ..client.schema import DbSchema

__all__ = ["render_typescript"]

# Postgres type -> the client's PgBasicType / PgDateType name (enums and others: TEXT)
_CLIENT_TYPES = {
    "int2": "INT2",
    "int4": "INT4",
    "int8": "INT8",
    "float4": "FLOAT4",
    "float8": "FLOAT8",
    "text": "TEXT",
    "varchar": "VARCHAR",
    "bpchar": "CHAR",
    "char": "CHAR",
    "bool": "BOOL",
    "uuid": "UUID",
    "json": "JSON",
    "jsonb": "JSONB",
    "bytea": "BYTEA",
    "timestamp": "TIMESTAMP",
    "timestamptz": "TIMESTAMPTZ",
    "date": "DATE",
    "time": "TIME",
    "timetz": "TIMETZ",
}

_HELPERS = """
const INT_RANGES = {
  INT2: [-32768, 32767],
  INT4: [-2147483648, 2147483647],
}

function valueSchema(type__T_STRING__)__T_ZOD__ {
  switch (type) {
    case 'UUID':
      return z.string().uuid()
    case 'INT2':
    case 'INT4':
      return z.number().int().gte(INT_RANGES[type][0]).lte(INT_RANGES[type][1])
    case 'INT8':
      return z.bigint()
    case 'FLOAT4':
    case 'FLOAT8':
      return z.number().or(z.nan())
    case 'BOOL':
      return z.boolean()
    case 'TIMESTAMP':
    case 'TIMESTAMPTZ':
    case 'DATE':
    case 'TIME':
    case 'TIMETZ':
      return z.coerce.date()
    case 'JSON':
    case 'JSONB':
      return z.any()
    case 'BYTEA':
      return z.instanceof(Uint8Array)
    default:
      return z.string()
  }
}

function makeTable(
  fields__T_FIELDS__,
  notNull__T_STRINGS__,
  relations__T_RELATIONS__
)__T_ANY__ {
  const required = new Set(notNull)
  const createShape__T_SHAPE__ = {}
  const updateShape__T_SHAPE__ = {}
  const selectShape__T_SHAPE__ = {}
  const includeShape__T_SHAPE__ = {}
  for (const [field, type] of fields) {
    const schema = valueSchema(type)
    createShape[field] = required.has(field) ? schema : schema.nullish()
    updateShape[field] = (required.has(field) ? schema : schema.nullable()).optional()
    selectShape[field] = z.boolean().optional()
  }
  for (const relation of relations) {
    // nested writes and include/select trees are checked by the client itself
    createShape[relation.relationField] = z.any().optional()
    updateShape[relation.relationField] = z.any().optional()
    selectShape[relation.relationField] = z.any().optional()
    includeShape[relation.relationField] = z.any().optional()
  }
  const data = z.object(createShape).strict()
  const update = z.object(updateShape).strict()
  const select = z.object(selectShape).strict().optional()
  const include = z.object(includeShape).strict().optional()
  const where = z.any()
  return {
    fields,
    relations,
    modelSchema: data.partial(),
    createSchema: z.object({ data, select, include }).strict(),
    createManySchema: z
      .object({ data: z.union([data, data.array()]), skipDuplicates: z.boolean().optional() })
      .strict(),
    findUniqueSchema: z.object({ where, select, include }).strict(),
    findSchema: z
      .object({
        where: where.optional(),
        select,
        include,
        orderBy: z.any().optional(),
        cursor: z.any().optional(),
        take: z.number().optional(),
        skip: z.number().optional(),
        distinct: z.any().optional(),
      })
      .strict(),
    updateSchema: z.object({ data: update, where, select, include }).strict(),
    updateManySchema: z.object({ data: update, where: where.optional() }).strict(),
    upsertSchema: z.object({ where, create: data, update, select, include }).strict(),
    deleteSchema: z.object({ where, select, include }).strict(),
    deleteManySchema: z.object({ where: where.optional() }).strict(),
  }
}
"""

_TS_TYPES = {
    "__T_STRING__": ": string",
    "__T_ZOD__": ": z.ZodTypeAny",
    "__T_FIELDS__": ": Map<string, string>",
    "__T_STRINGS__": ": string[]",
    "__T_RELATIONS__": ": Relation[]",
    "__T_ANY__": ": any",
    "__T_SHAPE__": ": Record<string, z.ZodTypeAny>",
}


def _js(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def render_typescript(schema: DbSchema, *, source: str, typescript: bool) -> str:
    """The module's text: exports ``migrations``, ``pgMigrations`` (empty), ``tableSchemas``
    and ``schema`` (the ``DbSchema``, also the default export); in TypeScript also the type
    ``Electric`` (``ElectricClient<typeof schema>``) as the official generator does."""
    helpers = _HELPERS
    for marker, annotation in _TS_TYPES.items():
        helpers = helpers.replace(marker, annotation if typescript else "")
    if typescript:
        helpers = helpers.replace(
            "const INT_RANGES = {", "const INT_RANGES: Record<string, [number, number]> = {"
        )
    lines = [
        f"// The electrified schema of {source} for electric-sql@0.12.1.",
        "// Generated by `electric-trio generate --target typescript`; regenerate instead of "
        "editing.",
        "import { z } from 'zod'",
        "import { DbSchema, Relation } from 'electric-sql/client/model'",
        *(
            ["import type { ElectricClient } from 'electric-sql/client/model'"]
            if typescript
            else []
        ),
        "",
        "export const migrations = [",
    ]
    for migration in schema.migrations:
        lines.append("  {")
        lines.append("    statements: [")
        lines += [f"      {_js(s)}," for s in migration.statements]
        lines.append("    ],")
        lines.append(f"    version: {_js(migration.version)},")
        lines.append("  },")
    lines += ["]", "", "export const pgMigrations = []", helpers, "export const tableSchemas = {"]
    for name, table in schema.tables.items():
        fields = [[c.name, _CLIENT_TYPES.get(c.pg_type, "TEXT")] for c in table.columns]
        not_null = [c.name for c in table.columns if not c.nullable]
        lines.append(f"  {_js(name)}: makeTable(")
        lines.append(f"    new Map({_js(fields)}),")
        lines.append(f"    {_js(not_null)},")
        lines.append("    [")
        for r in table.relations:
            args = (
                [r.field, "", "", r.table, r.name, "many"]
                if r.many
                else [r.field, r.from_column, r.to_column, r.table, r.name, "one"]
            )
            lines.append(f"      new Relation({', '.join(_js(a) for a in args)}),")
        lines.append("    ]")
        lines.append("  ),")
    lines += [
        "}",
        "",
        "export const schema = new DbSchema(tableSchemas, migrations, pgMigrations)",
        "export default schema",
    ]
    if typescript:
        lines.append("export type Electric = ElectricClient<typeof schema>")
    lines.append("")
    return "\n".join(lines)
