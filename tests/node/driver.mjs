// The official electric-sql@0.12.1 client in Node, driven by tests/official_client.py.
//
// Protocol: one JSON object per line.
//   stdin   {"id": 1, "cmd": "open", ...params}
//   stdout  {"id": 1, "result": {...}}
//           {"id": 1, "error": {"code", "message", "name", "satellite"?}}
//           {"event": "connectivity" | "data_changed" | "shape_status" | "unhandled", ...}
// Every command is bounded by a timeout (its `timeout_ms`, else DEFAULT_TIMEOUT_MS): a server
// that never answers gives a DRIVER_TIMEOUT error reply, never a hang. The client's own logs and
// anything else written to the console go to stderr. EOF on stdin closes the client and exits.
//
// Values in JSON: BigInt, Date, bytes and non-finite floats travel as {"$bigint": "12"},
// {"$date": "<ISO>"}, {"$bytes": "<hex>"} and {"$float": "NaN" | "Infinity" | "-Infinity"}.

import { createInterface } from 'node:readline'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { format } from 'node:util'

// Our replies own stdout: everything the client logs goes to stderr. Installed before the client
// is imported (loglevel binds the console methods when its level is set).
const writeOut = process.stdout.write.bind(process.stdout)
for (const method of ['log', 'info', 'warn', 'error', 'debug', 'trace']) {
  console[method] = (...args) => process.stderr.write(format(...args) + '\n')
}

const { electrify } = await import('electric-sql/node')
const { DbSchema, Relation } = await import('electric-sql/client/model')
const { insecureAuthToken } = await import('electric-sql/auth')
const { SatelliteError, SatelliteErrorCode, serverErrorToSatelliteError } = await import(
  'electric-sql/util'
)
const { parseMetadata, makeMigration, sqliteBuilder } = await import(
  'electric-sql/migrators/builder'
)
const { default: Database } = await import('better-sqlite3')
const { z } = await import('zod')
const { default: decompress } = await import('decompress')

const DEFAULT_TIMEOUT_MS = 10_000

// The harness's reconnection policy: few quick attempts, so that an unreachable or broken server
// fails a `connect` in about a second instead of the client's 50 attempts over minutes.
const DEFAULT_BACKOFF = {
  delayFirstAttempt: false,
  startingDelay: 100,
  jitter: 'none',
  maxDelay: 1000,
  numOfAttempts: 3,
  timeMultiple: 2,
}

class DriverError extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

// --- JSON value encoding ---------------------------------------------------------------------

function encodeValue(v) {
  if (typeof v === 'bigint') return { $bigint: v.toString() }
  if (typeof v === 'number' && !Number.isFinite(v)) return { $float: String(v) }
  if (v instanceof Date) {
    return Number.isNaN(v.getTime()) ? { $date: 'Invalid Date' } : { $date: v.toISOString() }
  }
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('hex') }
  if (Array.isArray(v)) return v.map(encodeValue)
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, encodeValue(x)]))
  }
  return v
}

function decodeValue(v) {
  if (Array.isArray(v)) return v.map(decodeValue)
  if (v !== null && typeof v === 'object') {
    const keys = Object.keys(v)
    if (keys.length === 1) {
      const [key] = keys
      const x = v[key]
      if (key === '$bigint') return BigInt(x)
      if (key === '$date') return new Date(x)
      if (key === '$bytes') return new Uint8Array(Buffer.from(x, 'hex'))
      if (key === '$float') return Number(x)
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decodeValue(x)]))
  }
  return v
}

function send(obj) {
  writeOut(JSON.stringify(encodeValue(obj)) + '\n')
}

function emit(event, fields) {
  send({ event, ...fields })
}

function describeError(err) {
  if (err instanceof SatelliteError) {
    return {
      code: SatelliteErrorCode[err.code] ?? String(err.code),
      message: err.message,
      name: 'SatelliteError',
      satellite: true,
    }
  }
  // An RPC error response rejects the call with the decoded SatErrorResp itself, not a
  // SatelliteError (e.g. `authenticate` with a bad token): report the code the client maps it to.
  if (err?.$type === 'Electric.Satellite.SatErrorResp') {
    const mapped = serverErrorToSatelliteError(err)
    return {
      code: SatelliteErrorCode[mapped.code] ?? String(mapped.code),
      message: `server error${err.message ? `: ${err.message}` : ''}`,
      name: 'SatErrorResp',
      satellite: true,
    }
  }
  if (err instanceof DriverError) {
    return { code: err.code, message: err.message, name: 'DriverError' }
  }
  if (err instanceof z.ZodError) {
    return { code: 'VALIDATION', message: err.message, name: 'ZodError' }
  }
  if (err instanceof Error) {
    const code = typeof err.code === 'string' ? err.code : err.name === 'InvalidArgumentError' ? 'INVALID_ARGUMENT' : 'ERROR'
    return { code, message: err.message, name: err.constructor?.name ?? err.name }
  }
  return { code: 'ERROR', message: String(err), name: typeof err }
}

function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new DriverError('DRIVER_TIMEOUT', `${what} did not finish within ${ms} ms`)),
      ms
    )
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// A promise we may stop awaiting (after a timeout) must not become an unhandled rejection.
function quiet(promise) {
  promise.catch(() => {})
  return promise
}

// --- DbSchema from a JSON description --------------------------------------------------------
//
// {"tables": {"items": {"fields": {"id": "TEXT", "done": "BOOL"}, "not_null": ["id"],
//                        "relations": [{"field": "lists", "from": "list_id", "to": "id",
//                                       "table": "lists", "name": "ItemsToLists",
//                                       "objects": "one"}]}}}
// Field types are the client's PgBasicType / PgDateType names. Relations as the generator
// writes them: an outgoing one (this table holds the FK: from/to set) and its incoming opposite
// on the other table (from/to empty, same name).

const INT_RANGES = {
  INT2: [-32768, 32767],
  INT4: [-2147483648, 2147483647],
  INT: [-2147483648, 2147483647],
  INTEGER: [-2147483648, 2147483647],
}

function valueSchema(type) {
  switch (type) {
    case 'UUID':
      return z.string().uuid()
    case 'INT2':
    case 'INT4':
    case 'INT':
    case 'INTEGER':
      return z.number().int().gte(INT_RANGES[type][0]).lte(INT_RANGES[type][1])
    case 'INT8':
      return z.bigint()
    case 'FLOAT4':
    case 'FLOAT8':
    case 'REAL':
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

function tableSchemas(name, descr) {
  const fields = descr.fields ?? {}
  const notNull = new Set(descr.not_null ?? [])
  const relationFields = (descr.relations ?? []).map((r) => r.field)
  const createShape = {}
  const updateShape = {}
  for (const [field, type] of Object.entries(fields)) {
    const schema = valueSchema(type)
    createShape[field] = notNull.has(field) ? schema : schema.nullish()
    updateShape[field] = (notNull.has(field) ? schema : schema.nullable()).optional()
  }
  const selectShape = Object.fromEntries(Object.keys(fields).map((f) => [f, z.boolean().optional()]))
  const includeShape = {}
  for (const field of relationFields) {
    // nested creates/updates and include trees are checked by the DAL itself
    createShape[field] = z.any().optional()
    updateShape[field] = z.any().optional()
    selectShape[field] = z.any().optional()
    includeShape[field] = z.any().optional()
  }
  const data = z.object(createShape).strict()
  const update = z.object(updateShape).strict()
  const select = z.object(selectShape).strict().optional()
  const include = z.object(includeShape).strict().optional()
  const where = z.any()
  return {
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

function buildDbSchema(description, migrations) {
  const tables = {}
  for (const [name, descr] of Object.entries(description?.tables ?? {})) {
    const relations = (descr.relations ?? []).map(
      (r) =>
        new Relation(r.field, r.from ?? '', r.to ?? '', r.table, r.name, r.objects ?? (r.from ? 'one' : 'many'))
    )
    tables[name] = {
      fields: new Map(Object.entries(descr.fields ?? {})),
      relations,
      ...tableSchemas(name, descr),
    }
  }
  return new DbSchema(tables, migrations, [])
}

// --- migrations ------------------------------------------------------------------------------
//
// Inline: [{"version": "1", "statements": ["CREATE TABLE ...", <triggers>...]}] (a bundled
// migrations.ts entry, used as is) or [{"version": "1", "ops": [<SatOpMigrate as JSON>]}] (what
// the generator decodes from metadata.json: the statements of every op + the triggers of every
// table the ops describe, built by the client's own makeMigration).

function inlineMigration(m) {
  if (typeof m.version !== 'string') throw new DriverError('BAD_COMMAND', 'a migration needs a string version')
  if (Array.isArray(m.statements)) return { version: m.version, statements: m.statements }
  if (Array.isArray(m.ops)) {
    const ops = m.ops.map((op) => ({
      stmts: (op.stmts ?? []).map((s) => ({ type: s.type ?? 0, sql: s.sql })),
      table: op.table
        ? {
            name: op.table.name,
            columns: op.table.columns.map((c) => ({
              name: c.name,
              sqliteType: c.sqliteType ?? c.sqlite_type ?? '',
              pgType: c.pgType ?? c.pg_type,
            })),
            fks: (op.table.fks ?? []).map((fk) => ({
              fkCols: fk.fkCols ?? fk.fk_cols,
              pkTable: fk.pkTable ?? fk.pk_table,
              pkCols: fk.pkCols ?? fk.pk_cols,
            })),
            pks: op.table.pks ?? [],
          }
        : undefined,
    }))
    return makeMigration({ version: m.version, ops }, sqliteBuilder)
  }
  throw new DriverError('BAD_COMMAND', `migration ${m.version} has neither statements nor ops`)
}

// What `npx electric-sql generate` does: GET /api/migrations?dialect=sqlite, unzip, then for
// each `<version>/metadata.json` (folders sorted by name) parseMetadata + makeMigration.
async function fetchMigrations(serviceUrl, timeoutMs) {
  const url = new URL('/api/migrations', serviceUrl)
  url.searchParams.set('dialect', 'sqlite')
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  if (response.status === 204) return []
  if (response.status !== 200) {
    throw new DriverError(
      'MIGRATIONS_FETCH',
      `Failed to fetch migrations from Electric. Got ${response.status} status code.`
    )
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'electric-migrations-'))
  try {
    const zip = path.join(dir, 'migrations.zip')
    await writeFile(zip, Buffer.from(await response.arrayBuffer()))
    const out = path.join(dir, 'migrations')
    await decompress(zip, out)
    const entries = await readdir(out, { withFileTypes: true })
    const names = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort()
    const migrations = []
    for (const name of names) {
      const text = await readFile(path.join(out, name, 'metadata.json'), 'utf8')
      migrations.push(makeMigration(parseMetadata(JSON.parse(text)), sqliteBuilder))
    }
    return migrations
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

// --- the client ------------------------------------------------------------------------------

let sqlite = null
let electric = null
let defaultToken = null
let unsubscribers = []
const syncing = new Map() // shape key -> its `synced` promise

function requireOpen() {
  if (electric === null) throw new DriverError('NOT_OPEN', 'no client: send `open` first')
  return electric
}

function makeToken(params) {
  if (typeof params.token === 'string') return params.token
  if (params.claims) return insecureAuthToken(params.claims)
  if (params.user_id !== undefined) return insecureAuthToken({ sub: String(params.user_id) })
  return null
}

function connectivity() {
  const state = electric?.satellite.connectivityState
  return {
    status: state?.status ?? 'disconnected',
    reason: state?.reason ? describeError(state.reason) : null,
    connected: electric?.isConnected ?? false,
  }
}

// Coerce typed-API inputs to what the DAL expects: numbers/strings for INT8 fields become BigInt.
function coerceData(table, data) {
  const fields = electric.db[table]?._fields
  if (!fields || data === null || typeof data !== 'object') return data
  if (Array.isArray(data)) return data.map((d) => coerceData(table, d))
  const out = { ...data }
  for (const [key, v] of Object.entries(out)) {
    if (fields.get(key) === 'INT8' && (typeof v === 'number' || typeof v === 'string')) {
      out[key] = BigInt(v)
    }
  }
  return out
}

const DAL_METHODS = [
  'create',
  'createMany',
  'findUnique',
  'findFirst',
  'findMany',
  'update',
  'updateMany',
  'upsert',
  'delete',
  'deleteMany',
]

async function closeClient() {
  for (const unsubscribe of unsubscribers) unsubscribe()
  unsubscribers = []
  syncing.clear()
  const [e, db] = [electric, sqlite]
  electric = null
  sqlite = null
  if (e !== null) await e.close()
  if (db !== null && db.open) db.close()
}

const commands = {
  async ping() {
    return { pong: true, node: process.version }
  },

  // {db, schema, migrations?, migrations_url?, url?, token?|user_id?|claims?, client_id?,
  //  rpc_timeout_ms?, backoff?, debug?, fk_checks?}
  async open(p, timeoutMs) {
    if (electric !== null) throw new DriverError('ALREADY_OPEN', 'the client is open: `close` it first')
    if (typeof p.db !== 'string') throw new DriverError('BAD_COMMAND', '`open` needs a db path')
    let migrations = (p.migrations ?? []).map(inlineMigration)
    if (p.migrations_url) migrations = migrations.concat(await fetchMigrations(p.migrations_url, timeoutMs))
    const dbSchema = buildDbSchema(p.schema ?? { tables: {} }, migrations)
    const config = {
      url: p.url ?? 'http://127.0.0.1:5133',
      timeout: p.rpc_timeout_ms ?? 3000,
      connectionBackOffOptions: { ...DEFAULT_BACKOFF, ...(p.backoff ?? {}) },
      debug: p.debug ?? false,
    }
    if (p.client_id) config.auth = { clientId: p.client_id }
    if (p.fk_checks) config.foreignKeyChecksDownstream = p.fk_checks
    defaultToken = makeToken(p)
    sqlite = new Database(p.db)
    try {
      electric = await electrify(sqlite, dbSchema, config)
    } catch (err) {
      sqlite.close()
      sqlite = null
      throw err
    }
    const notifier = electric.notifier
    unsubscribers.push(
      notifier.subscribeToConnectivityStateChanges(({ connectivityState }) => {
        emit('connectivity', {
          status: connectivityState.status,
          reason: connectivityState.reason ? describeError(connectivityState.reason) : null,
        })
      }),
      notifier.subscribeToDataChanges(({ changes, origin }) => {
        emit('data_changed', {
          origin,
          tables: [...new Set(changes.map((c) => c.qualifiedTablename.tablename))],
          changes: changes.map((c) => ({
            table: c.qualifiedTablename.tablename,
            records: c.recordChanges ?? [],
          })),
        })
      }),
      notifier.subscribeToShapeSubscriptionSyncStatusChanges(({ key, status }) => {
        emit('shape_status', { key, status: status ?? null })
      })
    )
    const applied = sqlite
      .prepare("SELECT version FROM _electric_migrations WHERE version != '0' ORDER BY id")
      .all()
      .map((r) => r.version)
    return {
      client_id: electric.satellite._authState?.clientId ?? null,
      migrations: migrations.map((m) => m.version),
      applied,
    }
  },

  // {token?|user_id?|claims?}: the token of `open` when none is given
  async connect(p, timeoutMs) {
    const e = requireOpen()
    const token = makeToken(p) ?? defaultToken
    if (token === null && !e.satellite.hasToken()) {
      throw new DriverError('BAD_COMMAND', '`connect` needs a token (token, user_id or claims)')
    }
    try {
      await withTimeout(quiet(e.connect(token ?? undefined)), timeoutMs, 'connect')
    } catch (err) {
      if (err instanceof DriverError) e.disconnect() // stop the backoff loop
      throw err
    }
    return connectivity()
  },

  async disconnect() {
    requireOpen().disconnect()
    return connectivity()
  },

  async status() {
    if (electric === null) return { open: false, status: 'closed', reason: null, connected: false }
    return { open: true, ...connectivity(), client_id: electric.satellite._authState?.clientId ?? null }
  },

  // {table, where?, include?, key?, wait? (default true)} -> {key}; waits for the shape's data
  async sync(p, timeoutMs) {
    const e = requireOpen()
    const table = e.db[p.table]
    if (!table || typeof table.sync !== 'function') {
      throw new DriverError('BAD_COMMAND', `no table ${JSON.stringify(p.table)} in the DbSchema`)
    }
    const shape = {}
    if (p.where !== undefined && p.where !== null) shape.where = decodeValue(p.where)
    if (p.include !== undefined && p.include !== null) shape.include = p.include
    if (p.key !== undefined && p.key !== null) shape.key = p.key
    const { key, synced } = await withTimeout(quiet(table.sync(shape)), timeoutMs, 'sync request')
    syncing.set(key, quiet(synced))
    if (p.wait === false) return { key, synced: false }
    await withTimeout(synced, timeoutMs, `shape ${key} to sync`)
    return { key, synced: true }
  },

  // {key}: waits for a shape requested with wait=false
  async wait_synced(p, timeoutMs) {
    requireOpen()
    const synced = syncing.get(p.key)
    if (synced === undefined) throw new DriverError('BAD_COMMAND', `no shape with key ${p.key}`)
    await withTimeout(synced, timeoutMs, `shape ${p.key} to sync`)
    return { key: p.key, synced: true }
  },

  async sync_status(p) {
    const status = requireOpen().sync.syncStatus(p.key)
    return { key: p.key, status: status ?? null }
  },

  // {keys: [...]}
  async unsubscribe(p, timeoutMs) {
    const e = requireOpen()
    const keys = Array.isArray(p.keys) ? p.keys : [p.key]
    await withTimeout(quiet(e.sync.unsubscribe(keys)), timeoutMs, 'unsubscribe')
    for (const key of keys) syncing.delete(key)
    return { keys }
  },

  // {sql, args?}: a read on the local SQLite through the client (db.rawQuery)
  async query(p, timeoutMs) {
    const e = requireOpen()
    const rows = await withTimeout(
      quiet(e.db.rawQuery({ sql: p.sql, args: decodeValue(p.args ?? []) })),
      timeoutMs,
      'query'
    )
    return { rows }
  },

  // {sql, args?}: a raw write through the client's adapter. With RETURNING (or any statement
  // that returns rows) it goes through db.unsafeExec; then the notifier is told data changed.
  async exec(p, timeoutMs) {
    const e = requireOpen()
    const stmt = { sql: p.sql, args: decodeValue(p.args ?? []) }
    let rows = []
    let rowsAffected = null
    const run = async () => {
      if (sqlite.prepare(p.sql).reader) rows = await e.db.unsafeExec(stmt)
      else rowsAffected = (await e.adapter.run(stmt)).rowsAffected
    }
    await withTimeout(quiet(run()), timeoutMs, 'exec')
    e.notifier.potentiallyChanged()
    return { rows, rows_affected: rowsAffected ?? rows.length }
  },

  async potentially_changed() {
    requireOpen().notifier.potentiallyChanged()
    return {}
  },

  async close(_p, timeoutMs) {
    await withTimeout(quiet(closeClient()), timeoutMs, 'close')
    return { closed: true }
  },
}

for (const method of DAL_METHODS) {
  // {table, ...args of the method}: e.g. {"cmd": "create", "table": "items", "data": {...}}
  commands[method] = async (p, timeoutMs) => {
    const e = requireOpen()
    const { table, ...rest } = p
    const api = e.db[table]
    if (!api || typeof api[method] !== 'function') {
      throw new DriverError('BAD_COMMAND', `no table ${JSON.stringify(table)} in the DbSchema`)
    }
    const args = decodeValue(rest)
    for (const field of ['data', 'create', 'update']) {
      if (field in args) args[field] = coerceData(table, args[field])
    }
    const result = await withTimeout(quiet(api[method](args)), timeoutMs, `${table}.${method}`)
    return { value: result ?? null }
  }
}

// --- main loop -------------------------------------------------------------------------------

process.on('unhandledRejection', (reason) => emit('unhandled', { error: describeError(reason) }))
process.on('uncaughtException', (err) => emit('unhandled', { error: describeError(err) }))

async function handle(line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    send({ id: null, error: { code: 'BAD_COMMAND', message: `not JSON: ${err.message}`, name: 'SyntaxError' } })
    return
  }
  const { id = null, cmd, timeout_ms: timeoutMs = DEFAULT_TIMEOUT_MS, ...params } = msg
  const command = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined
  if (command === undefined) {
    send({ id, error: { code: 'BAD_COMMAND', message: `unknown command ${JSON.stringify(cmd)}`, name: 'DriverError' } })
    return
  }
  try {
    const result = await withTimeout(quiet(command(params, timeoutMs)), timeoutMs + 1000, cmd)
    send({ id, result })
  } catch (err) {
    send({ id, error: describeError(err) })
  }
}

const pending = new Set()
const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', (line) => {
  if (line.trim() === '') return
  const p = handle(line)
  pending.add(p)
  p.finally(() => pending.delete(p))
})
lines.on('close', async () => {
  await Promise.allSettled([...pending])
  try {
    await withTimeout(closeClient(), 5000, 'close at EOF')
  } catch (err) {
    process.stderr.write(`driver: close at EOF failed: ${err.message}\n`)
  }
  process.exit(0)
})
send({ event: 'ready', node: process.version, pid: process.pid })
