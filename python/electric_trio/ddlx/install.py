"""Installs Electric's side of Postgres: the ``electric`` schema and the publication.

The SQL lives in ``sql/``: ``sql/migrations/<version>_<name>.sql`` are applied once each, in
version order, and recorded in ``electric.schema_migrations``; ``sql/functions/*.sql`` hold
the routines, re-created (``CREATE OR REPLACE``) on every start so that a new release's
routines replace the old ones without a migration.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from functools import cache

import trio

from .._log import get_logger
from ..pg import Connection, PgError

__all__ = [
    "PUBLICATION_NAME",
    "SESSION_SETTINGS",
    "Migration",
    "install_electric_schema",
    "migrations",
    "prepare_session",
]

log = get_logger(__name__)

PUBLICATION_NAME = "electric_publication"

#: Settings every connection of ours runs with (server-behaviour.md §1): values are rendered
#: the same way whatever the server's defaults are.
SESSION_SETTINGS = (
    ("bytea_output", "hex"),
    ("DateStyle", "ISO, DMY"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "1"),
)

# Serialises installs across sessions from the very first statement: CREATE SCHEMA/TABLE
# IF NOT EXISTS are not safe against a concurrent creator (the loser fails on a catalog unique
# index), and the schema_migrations lock can only be taken once that table exists.
_INSTALL_LOCK_KEY = 0x656C_6563_7472_6963  # b"electric", a positive int8

_MIGRATION_NAME = re.compile(r"^(\d+)_[a-z0-9_]+\.sql$")
_PACKAGE = "electric_trio.ddlx"


@dataclass(frozen=True)
class Migration:
    """One file of ``sql/migrations``."""

    version: int
    name: str
    sql: str


async def prepare_session(conn: Connection) -> None:
    """Applies :data:`SESSION_SETTINGS` to a connection. Run it first on every connection."""
    await conn.execute("; ".join(f"SET {name} = '{value}'" for name, value in SESSION_SETTINGS))


@cache
def migrations() -> tuple[Migration, ...]:
    """The schema migrations shipped with the package, in version order."""
    found = []
    for entry in importlib.resources.files(_PACKAGE).joinpath("sql", "migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"unexpected file in ddlx/sql/migrations: {entry.name}")
        found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two files of ddlx/sql/migrations share a version")
    return tuple(found)


@cache
def _function_scripts() -> tuple[tuple[str, str], ...]:
    root = importlib.resources.files(_PACKAGE).joinpath("sql", "functions")
    scripts = [
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in root.iterdir()
        if entry.name.endswith(".sql")
    ]
    return tuple(sorted(scripts))


async def install_electric_schema(conn: Connection) -> list[str]:
    """Installs or upgrades the ``electric`` schema and the publication, in one transaction.

    Applies the migrations this database has not seen, re-creates every routine, regenerates
    the per-table functions of electrified tables, then creates ``electric_publication`` if it
    is missing (or adds any table it lacks). Idempotent, and safe when several services start
    at once: they take turns. Returns the versions of the migrations applied (as strings, in
    order; empty when the schema was up to date).
    """
    await prepare_session(conn)
    await conn.execute("BEGIN")
    try:
        await conn.execute(
            # Warnings and errors only: "already exists, skipping" on every start is noise.
            "SET LOCAL client_min_messages = warning;"
            f" SELECT pg_advisory_xact_lock({_INSTALL_LOCK_KEY});"
            " CREATE SCHEMA IF NOT EXISTS electric;"
            " CREATE TABLE IF NOT EXISTS electric.schema_migrations ("
            "   version int8 NOT NULL PRIMARY KEY,"
            "   inserted_at timestamp without time zone NOT NULL DEFAULT LOCALTIMESTAMP);"
            " LOCK TABLE electric.schema_migrations IN SHARE UPDATE EXCLUSIVE MODE"
        )
        done = {
            row[0] for row in await conn.fetch("SELECT version FROM electric.schema_migrations")
        }
        applied: list[str] = []
        for migration in migrations():
            if migration.version in done:
                continue
            log.info("applying electric schema migration", migration=migration.name)
            await _run_script(conn, f"migrations/{migration.name}", migration.sql)
            await conn.execute(
                "INSERT INTO electric.schema_migrations (version) VALUES ($1)", migration.version
            )
            applied.append(str(migration.version))
        for name, sql in _function_scripts():
            await _run_script(conn, f"functions/{name}", sql)
        await conn.execute(
            "SELECT electric.__reinstall_table_functions(); SELECT electric.__ensure_publication()"
        )
        await conn.execute("COMMIT")
    except BaseException:
        # Even when cancelled: leave the connection out of the failed transaction if we can.
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            try:
                if not conn.closed and conn.transaction_status != "I":
                    await conn.execute("ROLLBACK")
            except PgError:
                pass  # the connection is gone; so is the transaction
        raise
    return applied


async def _run_script(conn: Connection, name: str, sql: str) -> None:
    try:
        await conn.execute(sql)
    except PgError as e:
        e.add_note(f"while running ddlx/sql/{name}")
        raise
