"""``electric-trio generate``: a typed client module from the service's migrations.

Fetches ``<service>/api/migrations?dialect=sqlite``, builds the schema from the table
descriptions the migrations carry (nullability from Postgres through the migrations proxy when
``proxy`` is given, else from the migrations' SQLite DDL), and writes one module: for Python,
a ``msgspec.Struct`` and a typed :class:`~electric_trio.client.data.Table` per table, the
``schema`` (:class:`~electric_trio.client.schema.DbSchema`) and its migrations bundle; for
TypeScript, the ``DbSchema`` and migrations array of the official ``electric-sql@0.12.1``
client. ``watch`` polls for new migrations and writes the module again after each.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import trio

from ..client.schema import DbSchema
from ._fetch import FetchedMigration, GenerateError, fetch_migrations, migrations_url
from ._introspect import introspect_not_null
from ._python import render_python
from ._schema import build_schema, enum_types
from ._typescript import render_typescript

__all__ = ["GenerateError", "Generated", "Target", "generate", "render", "watch"]

Target = Literal["python", "typescript"]


@dataclass(frozen=True)
class Generated:
    """What one run wrote: the file, the last migration version (``None``: there is none yet)
    and the number of tables."""

    path: Path
    version: str | None
    tables: int


def render(
    migrations: list[FetchedMigration],
    *,
    target: Target,
    source: str,
    out: Path,
    not_null: dict[str, frozenset[str]] | None = None,
) -> str:
    """The module's text for ``migrations``."""
    return _render(build_schema(migrations, not_null), migrations, target, source, out)


def _render(
    schema: DbSchema, migrations: list[FetchedMigration], target: Target, source: str, out: Path
) -> str:
    if target == "python":
        return render_python(schema, source=source, enums=enum_types(migrations))
    return render_typescript(schema, source=source, typescript=out.suffix in (".ts", ".mts"))


def _write(path: Path, text: str) -> None:
    """Replaces ``path`` at once (a reader never sees half a module)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def generate(
    service: str,
    out: Path,
    *,
    target: Target = "python",
    proxy: str | None = None,
    progress: Callable[[str], None] = lambda _line: None,
    within: float = 30.0,
) -> Generated:
    """Fetches the migrations of ``service`` and writes the module to ``out``."""
    progress(f"fetching migrations from {migrations_url(service)}")
    migrations = await fetch_migrations(service, within=within) or []
    not_null = None
    if proxy is not None:
        progress("reading nullability from Postgres through the proxy")
        not_null = await introspect_not_null(proxy, within=within)
    progress(f"writing {out} ({len(migrations)} migrations)")
    schema = build_schema(migrations, not_null)
    text = _render(schema, migrations, target, service, out)
    try:
        await trio.to_thread.run_sync(_write, out, text)
    except OSError as exc:
        raise GenerateError(f"cannot write {out}: {exc.strerror or exc}") from None
    return Generated(out, migrations[-1].version if migrations else None, len(schema.tables))


async def watch(
    service: str,
    out: Path,
    *,
    interval: float = 1.0,
    target: Target = "python",
    proxy: str | None = None,
    progress: Callable[[str], None] = lambda _line: None,
    done: Callable[[Generated], None] = lambda _g: None,
) -> None:
    """Generates, then polls ``/api/migrations?dialect=sqlite&version=<last>`` every
    ``interval`` seconds and generates again when it answers with new migrations. Errors of a
    poll are reported through ``progress`` and the polling goes on; runs until cancelled."""
    generated = await generate(service, out, target=target, proxy=proxy, progress=progress)
    done(generated)
    while True:
        await trio.sleep(interval)
        try:
            newer = await fetch_migrations(service, generated.version or "")
            if newer:
                progress(f"new migration {newer[-1].version}")
                generated = await generate(
                    service, out, target=target, proxy=proxy, progress=progress
                )
                done(generated)
        except GenerateError as exc:
            progress(f"error: {exc} (still watching)")


def progress_printer(stream: TextIO | None = None) -> Callable[[str], None]:
    """Prints progress lines as ``electric-trio generate: ...`` to ``stream`` (stderr)."""

    def show(line: str) -> None:
        print(f"electric-trio generate: {line}", file=stream or sys.stderr, flush=True)

    return show
