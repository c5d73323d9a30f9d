"""``electric-trio generate --target typescript``: the module it writes is what the official
``electric-sql@0.12.1`` client in Node electrifies with (no Prisma), against our service: it
applies the bundled migrations, syncs a shape with an include, reads it through the typed API
and writes a row that reaches Postgres."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import trio
from test_generate import start_full
from test_proxy import db

from electric_trio.pg import connect
from official_client import NODE_DIR

__all__ = ["db"]

CLI = str(Path(sys.executable).parent / "electric-trio")

APP = """
import { electrify } from 'electric-sql/node'
import { insecureAuthToken } from 'electric-sql/auth'
import Database from 'better-sqlite3'
import { schema } from './generated/client.mjs'

const [url, dbPath] = process.argv.slice(2)
const sqlite = new Database(dbPath)
const electric = await electrify(sqlite, schema, {
  url,
  connectionBackOffOptions: {
    delayFirstAttempt: false, startingDelay: 100, jitter: 'none', maxDelay: 1000,
    numOfAttempts: 3, timeMultiple: 2,
  },
})
await electric.connect(insecureAuthToken({ sub: 'alice' }))
const { synced } = await electric.db.lists.sync({ include: { items: true } })
await synced
const lists = await electric.db.lists.findMany({ include: { items: true } })
await electric.db.items.create({
  data: { id: 'ts1', title: 'from node', n: 7n, list_id: lists[0].id },
})
// the write is sent, applied by the service and echoed back: the echo empties the oplog
const deadline = Date.now() + 15000
while (sqlite.prepare('SELECT count(*) AS n FROM _electric_oplog').get().n > 0) {
  if (Date.now() > deadline) {
    const oplog = sqlite.prepare('SELECT * FROM _electric_oplog').all()
    throw new Error('the write was never acknowledged: ' + JSON.stringify(oplog))
  }
  await new Promise((resolve) => setTimeout(resolve, 50))
}
const applied = sqlite
  .prepare("SELECT version FROM _electric_migrations WHERE version != '0' ORDER BY id")
  .all()
  .map((r) => r.version)
const result = { lists, applied }
process.stdout.write(
  'RESULT ' + JSON.stringify(result, (k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\\n'
)
await electric.close()
process.exit(0)
"""


async def test_typescript_module_drives_the_official_client(
    db: str, nursery: trio.Nursery, tmp_path: Path, node_client_dir: Path
) -> None:
    running = await start_full(nursery, db)
    async with await connect(running.dsn()) as conn:
        for statement in (
            "CREATE TABLE lists (id uuid PRIMARY KEY, name text NOT NULL)",
            "ALTER TABLE lists ENABLE ELECTRIC",
            "CREATE TABLE items (id text PRIMARY KEY, title text NOT NULL, n int8,"
            " list_id uuid REFERENCES lists (id))",
            "ALTER TABLE items ENABLE ELECTRIC",
        ):
            await conn.execute(statement)
    async with await connect(db) as conn:
        await conn.execute(
            "INSERT INTO lists VALUES ('6f1c1b9e-7c1a-4bd5-9d6e-35b0a1e9ae01', 'home');"
            " INSERT INTO items VALUES ('pg1', 'from postgres', 5,"
            " '6f1c1b9e-7c1a-4bd5-9d6e-35b0a1e9ae01')"
        )
    # /api/migrations serves what the service has read from the WAL so far
    migrations = running.service.migrations
    assert migrations is not None
    with trio.fail_after(30):
        while "items" not in {t.name for t in migrations.schema.tables}:  # noqa: ASYNC110
            await trio.sleep(0.05)
    service = f"http://127.0.0.1:{running.service.http_port}"
    out = tmp_path / "generated" / "client.mjs"
    with trio.fail_after(60):
        done = await trio.run_process(
            [CLI, "generate", "--service", service, "--target", "typescript", "--out", str(out)],
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    text = out.read_text()
    assert "electric-sql/client/model" in text
    assert "prisma" not in text.lower()

    (tmp_path / "node_modules").symlink_to(NODE_DIR / "node_modules")
    (tmp_path / "app.mjs").write_text(APP)
    with trio.fail_after(60):
        ran = await trio.run_process(
            ["node", "app.mjs", service, str(tmp_path / "app.db")],
            cwd=tmp_path,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    output = ran.stdout.decode()
    assert ran.returncode == 0, (output, ran.stderr.decode())
    result = json.loads(
        next(line for line in output.splitlines() if line.startswith("RESULT "))[7:]
    )
    assert len(result["applied"]) == 2
    assert [(li["name"], [i["id"] for i in li["items"]]) for li in result["lists"]] == [
        ("home", ["pg1"])
    ]
    assert result["lists"][0]["items"][0]["n"] == "5"
    async with await connect(db) as conn:
        rows = await conn.fetch("SELECT id, title, n FROM items ORDER BY id")
    assert [tuple(r) for r in rows] == [("pg1", "from postgres", 5), ("ts1", "from node", 7)]
