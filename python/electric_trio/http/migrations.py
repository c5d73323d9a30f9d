"""``GET /api/migrations``: the migration history as a zip (server-behaviour.md §9).

``GET /api/migrations?dialect=sqlite|postgresql[&version=<v>]`` answers:

- 200 ``application/zip`` with, per migration after ``<v>`` (all of them when ``version`` is
  missing or empty, none for an unknown version), ``<version>/migration.sql`` and
  ``<version>/metadata.json``;
- 204 with an empty body when that leaves no migration;
- 403 ``{"error":"missing required parameter 'dialect'"}`` or
  ``{"error":"unsupported dialect \\"x\\""}``;
- 503 with the ``/api/status`` text while the service has no migration history yet.

``migration.sql`` is every statement of the migration in the dialect, right-trimmed and ended
with ``;`` unless it has one, joined with a blank line. ``metadata.json`` is
``{"format":"SatOpMigrate","ops":[<base64 SatOpMigrate>...],"protocol_version":
"Electric.Satellite","version":"<v>"}``, compact, keys in that order (the official generator
checks exactly these four keys). A migration without any op for clients (e.g. only a DROP INDEX)
still has its folder, with an empty ``migration.sql`` and no ops, as the original's.

The zip is built in memory with :mod:`zipfile` (deflated, entries dated 1980-01-01 so the same
history always gives the same bytes, files readable by everyone once unpacked).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import trio

from ..ddlx.migration import Dialect, MigrateOp, MigrateStmt, MigrateTable
from ..satellite.messages import (
    SatOpMigrate,
    SatOpMigrateColumn,
    SatOpMigrateEnumType,
    SatOpMigrateForeignKey,
    SatOpMigratePgColumnType,
    SatOpMigrateStmt,
    SatOpMigrateTable,
    SatOpMigrateType,
    encode_message,
)
from ._router import Request, Response, Router
from ._status import PgStatus

if TYPE_CHECKING:
    from ..ddlx.history import MigrationHistory, SchemaMigration
    from ..service import Service

__all__ = [
    "DIALECTS",
    "MigrationsApi",
    "add_migrations_routes",
    "migration_metadata",
    "migration_sql",
    "migrations_response",
    "migrations_zip",
    "sat_op_migrate",
]

DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql")

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--

# What /api/status answers while not ready (the same texts, typo included).
_NOT_READY: dict[PgStatus, Response] = {
    "starting": Response.text(503, "Initializing connection to Posgres..."),
    "failed": Response.text(503, "Database connection failure."),
}
_NO_CONTENT = Response(status=204, body=b"", content_type=None)


def sat_op_migrate(op: MigrateOp, dialect: Dialect) -> SatOpMigrate:
    """The ``SatOpMigrate`` clients of ``dialect`` get for ``op`` (protocol §4.4)."""
    table = op.table
    enum_type = op.enum_type
    return SatOpMigrate(
        version=op.version,
        stmts=tuple(_stmt(s) for s in op.stmts(dialect)),
        table=None if table is None else _table(table),
        enum_type=(
            None
            if enum_type is None
            else SatOpMigrateEnumType(name=enum_type.name, values=enum_type.values)
        ),
    )


def _stmt(stmt: MigrateStmt) -> SatOpMigrateStmt:
    return SatOpMigrateStmt(type=SatOpMigrateType(int(stmt.type)), sql=stmt.sql)


def _table(table: MigrateTable) -> SatOpMigrateTable:
    return SatOpMigrateTable(
        name=table.name,
        columns=tuple(
            SatOpMigrateColumn(
                name=c.name,
                sqlite_type=c.sqlite_type,
                pg_type=SatOpMigratePgColumnType(
                    name=c.pg_type.name, array=c.pg_type.array, size=c.pg_type.size
                ),
            )
            for c in table.columns
        ),
        fks=tuple(
            SatOpMigrateForeignKey(fk_cols=fk.fk_cols, pk_table=fk.pk_table, pk_cols=fk.pk_cols)
            for fk in table.fks
        ),
        pks=table.pks,
    )


def migration_sql(ops: Iterable[MigrateOp], dialect: Dialect) -> str:
    """``migration.sql``: the statements of ``ops`` in ``dialect``, each right-trimmed and ended
    with ``;`` unless it has one, joined with ``"\\n\\n"``."""
    statements = []
    for op in ops:
        for stmt in op.stmts(dialect):
            sql = stmt.sql.rstrip()
            statements.append(sql if sql.endswith(";") else sql + ";")
    return "\n\n".join(statements)


def migration_metadata(version: str, ops: Iterable[MigrateOp], dialect: Dialect) -> str:
    """``metadata.json``: compact, keys in the order of server-behaviour.md §9."""
    metadata = {
        "format": "SatOpMigrate",
        "ops": [
            base64.b64encode(encode_message(sat_op_migrate(op, dialect))).decode("ascii")
            for op in ops
        ],
        "protocol_version": "Electric.Satellite",
        "version": version,
    }
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)


def migrations_zip(migrations: Sequence[SchemaMigration], dialect: Dialect) -> bytes:
    """The zip of ``migrations``: ``<version>/migration.sql`` then ``<version>/metadata.json``
    for each, in the order given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for migration in migrations:
            files = (
                ("migration.sql", migration_sql(migration.ops, dialect)),
                ("metadata.json", migration_metadata(migration.version, migration.ops, dialect)),
            )
            for name, text in files:
                info = zipfile.ZipInfo(f"{migration.version}/{name}", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = _FILE_MODE
                zf.writestr(info, text.encode())
    return buffer.getvalue()


def _error(message: str) -> Response:
    return Response.json(403, {"error": message})


def _inspect(text: str) -> str:
    """``text`` as Elixir's ``inspect`` quotes a string (what the original's message shows)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


async def migrations_response(
    request: Request,
    history: MigrationHistory | None,
    status: Callable[[], PgStatus] = lambda: "starting",
) -> Response:
    """The answer to ``request`` from ``history`` (``None``: not ready, 503 with the
    ``/api/status`` text for ``status()``)."""
    params = request.query_params()
    # a repeated parameter: the last one counts, as with Plug
    dialects = params.get("dialect")
    if not dialects:
        return _error("missing required parameter 'dialect'")
    dialect = dialects[-1]
    if dialect not in DIALECTS:
        return _error(f"unsupported dialect {_inspect(dialect)}")
    if history is None:
        state = status()
        return _NOT_READY["failed" if state == "failed" else "starting"]
    versions = params.get("version")
    migrations = history.after(versions[-1] if versions else None)
    if not migrations:
        return _NO_CONTENT
    body = await trio.to_thread.run_sync(migrations_zip, migrations, dialect)
    return Response(status=200, body=body, content_type="application/zip")


def add_migrations_routes(
    router: Router,
    history: Callable[[], MigrationHistory | None],
    status: Callable[[], PgStatus] = lambda: "starting",
) -> None:
    """Routes ``/api/migrations`` to the history ``history()`` returns at each request."""

    async def migrations(request: Request) -> Response:
        return await migrations_response(request, history(), status)

    router.add("/api/migrations", migrations)


class MigrationsApi:
    """The subsystem serving ``/api/migrations`` from the service's migration history (set by
    the replication subsystem; 503 until then)."""

    name = "migrations_api"

    def install(self, service: Service) -> None:
        add_migrations_routes(service.router, lambda: service.migrations, service.status)

    async def run(
        self, service: Service, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
