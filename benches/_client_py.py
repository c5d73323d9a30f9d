"""Our side of ``benches/client``: one Python client in a process of its own, so that its peak
memory (``VmHWM``) is the client's alone, driven by JSON lines like the official client's driver.

``python -m benches._client_py SCHEMA_JSON DB URL TOKEN``: opens the client on ``DB`` with the
:class:`~electric_trio.client.schema.DbSchema` in ``SCHEMA_JSON`` (msgspec JSON, the migrations
bundled as a generated module has them), connects, and prints ``{"ready": ...}``. Then, per line
on stdin:

- ``{"cmd": "sync", "table": T}``: ``client.sync(T)`` then ``await handle.synced()``; replies
  ``{"seconds": ...}`` (the time between the two, measured here);
- ``{"cmd": "query", "sql": S}``: the rows of ``client.conn.query(S)``;

and exits at EOF. It imports only what an application using the client imports.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

from electric_trio.client import ElectricConfig, open_electric
from electric_trio.client.schema import DbSchema


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _main(schema: DbSchema, db: str, url: str, token: str) -> None:
    config = ElectricConfig(url=url, timeout=60.0, connect_attempts=3, backoff_start=0.1)
    async with open_electric(db, schema, config, token=token) as client:
        _reply({"ready": True, "client_id": client.client_id})
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            if command["cmd"] == "sync":
                start = time.perf_counter()
                handle = await client.sync(command["table"])
                await handle.synced()
                _reply({"seconds": time.perf_counter() - start})
            elif command["cmd"] == "query":
                _reply({"rows": await client.conn.query(command["sql"])})
            else:
                _reply({"error": f"unknown command {command['cmd']!r}"})


if __name__ == "__main__":
    schema_path, db, url, token = sys.argv[1:5]
    trio.run(
        _main, msgspec.json.decode(Path(schema_path).read_bytes(), type=DbSchema), db, url, token
    )
