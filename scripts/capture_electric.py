"""Capture a golden pgoutput stream of an electrified database, for the fold tests.

Usage (from the repository root)::

    .venv/bin/python scripts/capture_electric.py [--out rust/core/testdata] [--database-url URL]

Same machinery and file format as ``capture_pgoutput.py`` (whose helpers it uses): the electric
schema is installed, tables are electrified, then the workload below runs while a temporary
slot streams ``electric_publication``. The walsender runs at ``TimeZone = 'Asia/Kolkata'`` so
that every tag's timestamp carries a non-zero offset. Writes ``electric.bin``;
rust/core/testdata/README.md describes it and rust/core/tests/electric.rs asserts its fold.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))

from capture_pgoutput import (
    DATABASE,
    Case,
    capture,
    fresh_database,
    server,
    write_records,
)

from electric_trio.ddlx import install_electric_schema
from electric_trio.pg import connect

SETUP = """
CREATE TABLE parent (id int8 PRIMARY KEY, name text);
CREATE TABLE child (id int8 PRIMARY KEY, parent_id int8 REFERENCES parent (id), v text);
CREATE TABLE plain (id int8 PRIMARY KEY, v text);
CALL electric.electrify('parent');
CALL electric.electrify('child');
INSERT INTO parent VALUES (1, 'one');
"""


def client_write(source: str, ts: str, row: str, pk: str) -> str:
    """One client insert into ``parent`` as the direct writer applies it (see
    tests/integration/test_pg_write_tags.py)."""
    quoted = source.replace("\\", "\\\\").replace('"', '\\"')
    tag = f'("{ts}","{quoted}")'.replace("'", "''")
    return (
        "BEGIN; SET LOCAL electric.session_replication_role = replica;"
        f"INSERT INTO parent (id, name) VALUES {row};"
        "INSERT INTO electric.shadow__public__parent"
        " (id, _tag, _is_a_delete_operation, _observed_tags, _modified_columns_bit_mask)"
        f" VALUES ({pk}, '{tag}', false, '{{}}', '{{t}}');"
        "COMMIT"
    )


WORKLOAD = [
    # 1. a Postgres write: two electrified changes and one of a table outside the publication
    "BEGIN; INSERT INTO parent VALUES (2, 'two'); INSERT INTO plain VALUES (1, 'x');"
    " UPDATE parent SET name = 'uno' WHERE id = 1; COMMIT",
    # 2. a delete
    "DELETE FROM parent WHERE id = 2",
    # 3. a child of an existing parent: parent 1 comes as an fk_chain_touch message
    "INSERT INTO child VALUES (10, 1, 'c')",
    # 4. client writes, one with a source that needs quoting at both levels
    client_write("client_1", "2024-03-04 05:06:07.891+00", "(3, 'three')", "3"),
    client_write('odd "src",\\x', "2024-03-04 05:06:08.5+02", "(4, 'four')", "4"),
    # 5. a migration
    "BEGIN; CALL electric.migration_version('20240101');"
    " CREATE TABLE later (id int8 PRIMARY KEY, v text); CALL electric.electrify('later'); COMMIT",
    # 6. the magic write (an insertion point) and the cluster id (dropped)
    "UPDATE electric.transaction_marker SET content = jsonb_build_object("
    "'xid', pg_current_xact_id(), 'caused_by', 'subscription:s1') WHERE id = 'magic write'",
    # 7. a transaction with another logical message and a bookkeeping write only
    "BEGIN; SELECT pg_logical_emit_message(true, 'other', 'x');"
    " INSERT INTO electric.acknowledged_client_lsns VALUES ('client_1', '\\x00000001'); COMMIT",
]


async def statements(url: str) -> None:
    async with await connect(url) as c:
        for sql in WORKLOAD:
            await c.execute(sql)


CASE = Case(
    "electric",
    "",
    statements,
    "proto_version '2', streaming 'on', messages 'true', publication_names 'electric_publication'",
    ("TimeZone = 'Asia/Kolkata'",),
)


async def main_async(server_url: str, out: Path) -> None:
    await fresh_database(server_url)
    db_url = urllib.parse.urlsplit(server_url)._replace(path=f"/{DATABASE}").geturl()
    async with await connect(db_url) as c:
        await install_electric_schema(c)
        await c.execute(SETUP)
    payloads = await capture(db_url, CASE)
    path = out / "electric.bin"
    write_records(path, payloads)
    print(f"{path}: {len(payloads)} payloads", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("rust/core/testdata"))
    parser.add_argument("--database-url", help="a server to use instead of an embedded one")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with server(args.database_url) as url:
        trio.run(main_async, url, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
