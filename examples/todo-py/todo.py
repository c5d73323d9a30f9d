"""The todo list of examples/todo-web from Python, through ``electric_trio.client``.

A local SQLite database kept in sync with the service: a change made in the browser shows up
here, and the other way round::

    python examples/todo-py/todo.py watch             # the list, again after every change;
                                                      # type add/toggle/delete TITLE or quit
    python examples/todo-py/todo.py add "buy milk"
    python examples/todo-py/todo.py toggle "buy milk"
    python examples/todo-py/todo.py delete "buy milk"
    python examples/todo-py/todo.py list

Options (before the command): ``--service URL`` (default ``$ELECTRIC_SERVICE``, else
http://localhost:5133), ``--db PATH`` (the local database, default ``todo-py.db``), ``--token
JWT`` (default: an unsigned token for ``--user``, which a service in ``AUTH_MODE=insecure``
takes), ``--json`` (each list as one JSON line). A write returns once the service has
acknowledged it. ``todos_client.py`` beside this file is written by
``electric-trio generate --out examples/todo-py/todos_client.py``.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import sys
import uuid
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from todos_client import Electric, Todos, schema

from electric_trio.client import ClientError, ElectricClient, ElectricConfig, open_electric


def unsigned_token(user: str) -> str:
    """A JWT with no signature (``alg: none``), as the official client's insecureAuthToken."""

    def part(data: dict[str, str]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'sub': user})}."


def show(todos: list[Todos], as_json: bool) -> None:
    if as_json:
        rows = [{"id": t.id, "title": t.title, "done": t.done} for t in todos]
        print(json.dumps(rows), flush=True)
        return
    print(f"-- {len(todos)} todo{'' if len(todos) == 1 else 's'}")
    for t in todos:
        print(f"[{'x' if t.done else ' '}] {t.title}")
    sys.stdout.flush()


ORDER = [{"created_at": "asc"}, {"id": "asc"}]


async def find(db: Electric, title: str) -> Todos:
    todo = await db.todos.find_first(where={"title": title})
    if todo is None:
        raise SystemExit(f"todo.py: no todo titled {title!r}")
    return todo


async def change(db: Electric, command: str, title: str) -> None:
    if command == "add":
        now = datetime.datetime.now(datetime.UTC)
        await db.todos.create(Todos(id=str(uuid.uuid4()), title=title, done=False, created_at=now))
    elif command == "toggle":
        todo = await find(db, title)
        await db.todos.update(where={"id": todo.id}, data={"done": not todo.done})
    elif command == "delete":
        await db.todos.delete(where={"id": (await find(db, title)).id})
    else:
        raise SystemExit(f"todo.py: unknown command {command!r} (add, toggle, delete, quit)")


async def commands(db: Electric, done: trio.CancelScope) -> None:
    """``watch``'s input: ``add TITLE``, ``toggle TITLE``, ``delete TITLE`` or ``quit``, one a
    line; end of input or ``quit`` ends the watch."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        async for chunk in stdin:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                command, _, title = line.decode().strip().partition(" ")
                if command == "quit":
                    done.cancel()
                    return
                if command:
                    try:
                        await change(db, command, title.strip())
                    except SystemExit as e:
                        print(e, file=sys.stderr, flush=True)
    done.cancel()


async def acknowledged(client: ElectricClient) -> None:
    """Returns once the service has acknowledged every local write (the client's oplog is
    emptied when its own transactions come back)."""
    with client.notifier.subscribe() as changes:
        while (await client.conn.query("SELECT count(*) AS n FROM _electric_oplog"))[0]["n"]:
            await changes.__anext__()


async def run(args: argparse.Namespace) -> None:
    config = ElectricConfig(url=args.service, connect_attempts=5, backoff_start=0.2)
    token = args.token or unsigned_token(args.user)
    async with open_electric(args.db, schema, config, token=token) as client:
        shape = await client.sync("todos")
        with trio.fail_after(30):
            await shape.synced()
        db = Electric(client)
        if args.command == "watch":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(commands, db, nursery.cancel_scope)
                async for todos in db.todos.live_many(order_by=ORDER):
                    show(todos, args.json)
        elif args.command != "list":
            await change(db, args.command, args.title)
        with trio.fail_after(30):
            await acknowledged(client)
        show(await db.todos.find_many(order_by=ORDER), args.json)
        await client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description="The todo list, synced through electric-trio.")
    parser.add_argument(
        "--service", default=os.environ.get("ELECTRIC_SERVICE", "http://localhost:5133")
    )
    parser.add_argument("--db", default="todo-py.db", help="the local SQLite database")
    parser.add_argument("--token", help="a JWT for the service (default: unsigned, for --user)")
    parser.add_argument("--user", default="todo-py")
    parser.add_argument("--json", action="store_true", help="print each list as one JSON line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="sync, then print the list")
    commands.add_parser("watch", help="print the list, again after every change (Ctrl-C ends)")
    for name in ("add", "toggle", "delete"):
        commands.add_parser(name, help=f"{name} a todo (by title)").add_argument("title")
    args = parser.parse_args()
    try:
        trio.run(run, args)
    except BaseException as e:
        # the client's nursery wraps what ends it in an exception group
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        if isinstance(e, KeyboardInterrupt):
            return
        if isinstance(e, ClientError):
            raise SystemExit(f"todo.py: {e}") from None
        if isinstance(e, SystemExit):
            raise e from None
        raise


if __name__ == "__main__":
    main()
