// Golden Satellite frames, encoded by the official client's own protobuf module and type ids.
//
// Usage (electric-sql installed OUTSIDE the repository, never vendored):
//   mkdir -p /tmp/satgolden && cd /tmp/satgolden && npm install --ignore-scripts electric-sql@0.12.1
//   node scripts/gen_satellite_golden.mjs /tmp/satgolden rust/core/testdata/satellite
//
// Each message becomes <name>.bin: the type id byte the client uses (util/proto.js) followed by
// the bytes of the generated encoder (_generated/protocol/satellite.js). manifest.json lists the
// files with their message type. The Rust (rust/core/src/satellite/tests.rs) and Python
// (tests/unit/test_satellite_codec.py) tests hold the expected decoded contents.

import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

const [installDir, outDir] = process.argv.slice(2)
if (!installDir || !outDir) {
  console.error('usage: node gen_satellite_golden.mjs <dir with node_modules/electric-sql> <out dir>')
  process.exit(2)
}
const dist = resolve(installDir, 'node_modules/electric-sql/dist')
const Pb = await import(pathToFileURL(join(dist, '_generated/protocol/satellite.js')))
const proto = await import(pathToFileURL(join(dist, 'util/proto.js')))
const pkg = (await import(pathToFileURL(resolve(installDir, 'node_modules/electric-sql/package.json')), {
  with: { type: 'json' },
})).default
if (pkg.version !== '0.12.1') throw new Error(`expected electric-sql 0.12.1, found ${pkg.version}`)

const text = (s) => new TextEncoder().encode(s)
const bytes = (...b) => Uint8Array.from(b)

function frame(message) {
  const body = Pb[message.$type.replace('Electric.Satellite.', '')].encode(message).finish()
  const out = new Uint8Array(1 + body.length)
  out.set(proto.getBufWithMsgTag(message), 0)
  out.set(body, 1)
  return out
}

const CLIENT_ID = '0f4a4e6b-3a4c-4b8e-9d7e-2f1c6a5b4d3e'
const SUB_ID = '5b1f7c9e-8d2a-4e3b-9f6c-1a2b3c4d5e6f'
const TOKEN = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyLTEifQ.'
const TS = 1686827885372
const REL = 16385

// A row of the `items` table of satellite_relation (10 columns, so a 2-byte NULL bitmask),
// with values as the server prints them; column 8 (note) is NULL.
const row = (title, n) =>
  Pb.SatOpRow.fromPartial({
    nullsBitmask: bytes(0x00, 0x80),
    values: [
      text('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
      text(title),
      text(String(n)),
      text('1.402e+36'),
      text('t'),
      text('2023-06-15 11:18:05.372Z'),
      bytes(0x00, 0xff, 0x10),
      text('{"a": [1, 2]}'),
      new Uint8Array(0),
      text('-7'),
    ],
  })

const rpc = (method, requestId, type, message) =>
  Pb.SatRpcRequest.fromPartial({ method, requestId, message: Pb[type].encode(Pb[type].fromPartial(message)).finish() })

const golden = {
  rpc_authenticate: rpc('authenticate', 1, 'SatAuthReq', {
    id: CLIENT_ID,
    token: TOKEN,
    headers: [{ key: Pb.SatAuthHeader.UNSPECIFIED, value: 'x-unused' }],
  }),
  rpc_start_replication: rpc('startReplication', 2, 'SatInStartReplicationReq', {
    lsn: text('24151848'),
    subscriptionIds: [SUB_ID, '6c2e8d0f-9e3b-4f4c-8a7d-2b3c4d5e6f70'],
    observedTransactionData: [5, 1099511627776],
    sqlDialect: Pb.SatInStartReplicationReq_Dialect.SQLITE,
  }),
  rpc_start_replication_first: rpc('startReplication', 2, 'SatInStartReplicationReq', {
    schemaVersion: '20230615_01',
    sqlDialect: Pb.SatInStartReplicationReq_Dialect.SQLITE,
  }),
  rpc_subscribe: rpc('subscribe', 3, 'SatSubsReq', {
    subscriptionId: SUB_ID,
    shapeRequests: [
      {
        requestId: 'b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e',
        shapeDefinition: {
          selects: [
            {
              tablename: 'projects',
              where: "this.owner_id = 'user-1'",
              include: [
                {
                  foreignKey: ['project_id'],
                  select: {
                    tablename: 'issues',
                    where: '',
                    include: [{ foreignKey: ['issue_id'], select: { tablename: 'comments' } }],
                  },
                },
              ],
            },
          ],
        },
      },
      {
        requestId: 'c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f',
        shapeDefinition: { selects: [{ tablename: 'items' }] },
      },
    ],
  }),
  rpc_response_auth: Pb.SatRpcResponse.fromPartial({
    method: 'authenticate',
    requestId: 1,
    message: Pb.SatAuthResp.encode(Pb.SatAuthResp.fromPartial({ id: 'server-1' })).finish(),
  }),
  rpc_response_empty: Pb.SatRpcResponse.fromPartial({
    method: 'startReplication',
    requestId: 0,
    message: new Uint8Array(0),
  }),
  rpc_response_error: Pb.SatRpcResponse.fromPartial({
    method: 'subscribe',
    requestId: 4,
    error: { errorType: Pb.SatErrorResp_ErrorCode.INVALID_REQUEST, message: 'bad request' },
  }),
  error_resp: Pb.SatErrorResp.fromPartial({
    errorType: Pb.SatErrorResp_ErrorCode.INVALID_REQUEST,
    lsn: bytes(0, 0, 0, 7),
    message: 'Primary key update',
  }),
  relation: Pb.SatRelation.fromPartial({
    schemaName: 'public',
    tableType: Pb.SatRelation_RelationType.TABLE,
    tableName: 'items',
    relationId: REL,
    columns: [
      ['id', 'uuid', true, false],
      ['title', 'text', false, false],
      ['n', 'int4', false, false],
      ['score', 'float8', false, true],
      ['done', 'bool', false, true],
      ['created', 'timestamptz', false, true],
      ['data', 'bytea', false, true],
      ['meta', 'jsonb', false, true],
      ['note', 'text', false, true],
      ['small', 'int2', false, true],
    ].map(([name, type, primaryKey, isNullable]) => ({ name, type, primaryKey, isNullable })),
  }),
  // A Postgres transaction as the server sends it.
  oplog_server: Pb.SatOpLog.fromPartial({
    ops: [
      { begin: { commitTimestamp: TS, lsn: text('24151848'), origin: 'postgres_1', transactionId: 735 } },
      { insert: { relationId: REL, rowData: row('first', 1), tags: [`postgres_1@${TS}`] } },
      {
        update: {
          relationId: REL,
          rowData: row('second', 2),
          oldRowData: row('first', 1),
          tags: [`postgres_1@${TS}`, `${CLIENT_ID}@1686827000000`],
        },
      },
      { delete: { relationId: REL, oldRowData: row('second', 2), tags: [] } },
      { commit: { commitTimestamp: TS, lsn: text('24151848') } },
    ],
  }),
  // A client transaction: 4-byte oplog rowid as LSN, an all-default commit.
  oplog_client: Pb.SatOpLog.fromPartial({
    ops: [
      { begin: { commitTimestamp: TS, lsn: bytes(0, 0, 1, 2) } },
      {
        insert: {
          relationId: 0,
          rowData: {
            nullsBitmask: bytes(0x40),
            values: [text('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), new Uint8Array(0), text('x')],
          },
          tags: [],
        },
      },
      { compensation: { relationId: 0, pkData: { nullsBitmask: bytes(0x60), values: [text('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'), new Uint8Array(0), new Uint8Array(0)] }, tags: [`postgres_1@${TS}`] } },
      { commit: {} },
    ],
  }),
  // Subscription data: bare inserts; move-in data: an additional pseudo-transaction; GONE.
  oplog_additional: Pb.SatOpLog.fromPartial({
    ops: [
      { additionalBegin: { ref: 3 } },
      { insert: { relationId: REL, rowData: row('third', 3), tags: [`postgres_1@${TS}`] } },
      { additionalCommit: { ref: 3 } },
    ],
  }),
  oplog_gone: Pb.SatOpLog.fromPartial({
    ops: [
      {
        gone: {
          relationId: REL,
          pkData: {
            nullsBitmask: bytes(0x7f, 0xc0),
            values: [text('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'), ...Array(9).fill(new Uint8Array(0))],
          },
        },
      },
    ],
  }),
  oplog_migration: Pb.SatOpLog.fromPartial({
    ops: [
      { begin: { commitTimestamp: TS, lsn: text('24151848'), origin: 'postgres_1', isMigration: true, transactionId: 736 } },
      {
        migrate: {
          version: '20230615_01',
          stmts: [
            {
              type: Pb.SatOpMigrate_Type.CREATE_TABLE,
              sql: 'CREATE TABLE "fish" (\n  "id" INTEGER NOT NULL,\n  CONSTRAINT "fish_pkey" PRIMARY KEY ("id")\n);\n',
            },
          ],
          table: {
            name: 'fish',
            columns: [{ name: 'id', sqliteType: 'INTEGER', pgType: { name: 'int8', array: [], size: [] } }],
            fks: [{ fkCols: ['frog_id'], pkTable: 'frog', pkCols: ['id'] }],
            pks: ['id'],
          },
        },
      },
      {
        migrate: {
          version: '20230615_01',
          stmts: [],
          enumType: { name: 'colour', values: ['red', 'green'] },
        },
      },
      { commit: { commitTimestamp: TS, lsn: text('24151848') } },
    ],
  }),
  oplog_ack: Pb.SatOpLogAck.fromPartial({
    ackTimestamp: 1686827999000,
    lsn: text('24151848'),
    transactionId: 735,
    subscriptionIds: [SUB_ID],
    additionalDataSourceIds: [3, 4],
    goneSubscriptionIds: ['6c2e8d0f-9e3b-4f4c-8a7d-2b3c4d5e6f70'],
  }),
  subs_data_begin: Pb.SatSubsDataBegin.fromPartial({ subscriptionId: SUB_ID, lsn: text('24151848') }),
  shape_data_begin: Pb.SatShapeDataBegin.fromPartial({ requestId: 'c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f' }),
  shape_data_end: Pb.SatShapeDataEnd.fromPartial({}),
  subs_data_end: Pb.SatSubsDataEnd.fromPartial({}),
  subs_data_error: Pb.SatSubsDataError.fromPartial({
    message: 'Could not retrieve initial data for subscription',
    subscriptionId: SUB_ID,
  }),
  unsubs_data_begin: Pb.SatUnsubsDataBegin.fromPartial({ subscriptionIds: [SUB_ID], lsn: text('24151848') }),
  unsubs_data_end: Pb.SatUnsubsDataEnd.fromPartial({}),
}

mkdirSync(outDir, { recursive: true })
const manifest = {}
for (const [name, message] of Object.entries(golden)) {
  writeFileSync(join(outDir, `${name}.bin`), frame(message))
  manifest[name] = message.$type.replace('Electric.Satellite.', '')
}
writeFileSync(
  join(outDir, 'manifest.json'),
  JSON.stringify({ generator: 'scripts/gen_satellite_golden.mjs', client: `electric-sql@${pkg.version}`, frames: manifest }, null, 2) + '\n',
)
console.log(`${Object.keys(golden).length} frames written to ${outDir}`)
