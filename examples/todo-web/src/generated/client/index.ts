// The client's schema of the todos table: what the official generator writes (field types,
// the zod schemas its typed table API validates inputs with, the bundled migrations), without
// Prisma. Written by hand until `electric-trio generate --target typescript` replaces this folder.
import { z } from 'zod'
import { DbSchema, ElectricClient } from 'electric-sql/client/model'
import migrations from './migrations'

export type Todo = {
  id: string
  title: string
  done: boolean
  created_at: Date
}

const todo = z
  .object({
    id: z.string().uuid(),
    title: z.string(),
    done: z.boolean(),
    created_at: z.coerce.date(),
  })
  .strict()

const select = z
  .object({
    id: z.boolean().optional(),
    title: z.boolean().optional(),
    done: z.boolean().optional(),
    created_at: z.boolean().optional(),
  })
  .strict()
  .optional()

// Filters, orderings and cursors are checked by the client's query builder itself.
const where = z.any()
const update = z
  .object({
    id: z.string().uuid().optional(),
    title: z.string().optional(),
    done: z.boolean().optional(),
    created_at: z.coerce.date().optional(),
  })
  .strict()

const todos = {
  fields: new Map([
    ['id', 'UUID'],
    ['title', 'TEXT'],
    ['done', 'BOOL'],
    ['created_at', 'TIMESTAMPTZ'],
  ]),
  relations: [],
  modelSchema: todo.partial(),
  createSchema: z.object({ data: todo, select }).strict(),
  createManySchema: z
    .object({ data: z.union([todo, todo.array()]), skipDuplicates: z.boolean().optional() })
    .strict(),
  findUniqueSchema: z.object({ where, select }).strict(),
  findSchema: z
    .object({
      where: where.optional(),
      select,
      orderBy: z.any().optional(),
      cursor: z.any().optional(),
      take: z.number().optional(),
      skip: z.number().optional(),
      distinct: z.any().optional(),
    })
    .strict(),
  updateSchema: z.object({ data: update, where, select }).strict(),
  updateManySchema: z.object({ data: update, where: where.optional() }).strict(),
  upsertSchema: z.object({ where, create: todo, update, select }).strict(),
  deleteSchema: z.object({ where, select }).strict(),
  deleteManySchema: z.object({ where: where.optional() }).strict(),
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const schema = new DbSchema({ todos } as any, migrations, [])
export type Electric = ElectricClient<typeof schema>
