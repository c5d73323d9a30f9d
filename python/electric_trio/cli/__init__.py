"""The ``electric-trio`` command.

``electric-trio serve`` runs the service against ``DATABASE_URL``; ``electric-trio dev`` runs it
on an embedded PostgreSQL kept in ``--data-dir`` (unless ``DATABASE_URL`` is given), with
development defaults: ``AUTH_MODE=insecure``, a generated ``PG_PROXY_PASSWORD`` and, for a
Postgres on this machine, ``LOGICAL_PUBLISHER_HOST=127.0.0.1`` (client writes go the default
way, ``logical_replication``). Every environment variable of server-behaviour.md §11 has a
flag of the same meaning, which wins over the variable.

Errors the user can fix come out as ``electric-trio: error: ...`` on stderr, without a
traceback; the exit status is 2 for usage and configuration errors, 1 when the service cannot
start, 0 after a shutdown on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import trio

from .. import __version__
from .._log import configure_logging, get_logger
from .._malloc import fix_thresholds as fix_malloc_thresholds
from ..config import SETTINGS, Config
from ..errors import ConfigError
from ..pg.embedded import EmbeddedPostgres, EmbeddedPostgresError
from ..service import StartupError, serve, shutdown_on_signal

__all__ = ["main"]

PROG = "electric-trio"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DEFAULT_DATA_DIR = Path(".electric")
_PROXY_PASSWORD_FILE = "pg_proxy_password"
# Only used to validate the rest of the settings before the embedded server has a URL.
_PLACEHOLDER_URL = "postgresql://postgres@localhost/postgres"

log = get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "proxy-tunnel":
        from ._tunnel import proxy_tunnel

        return proxy_tunnel(args.service, args.local_port)
    if args.command == "generate":
        from ..generate._cli import run as generate

        return generate(args)
    overrides: dict[str, str | None] = {s.env: getattr(args, _dest(s.env)) for s in SETTINGS}
    if args.command == "serve":
        return _serve(os.environ, overrides)
    return _dev(os.environ, overrides, Path(args.data_dir))


def _dest(env: str) -> str:
    return "setting_" + env.lower()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="ElectricSQL (Satellite) sync service on Trio."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd = commands.add_parser(
        "serve",
        help="run the service against DATABASE_URL",
        description="Run the service. Settings come from the environment variables named "
        "below; a flag wins over its variable.",
    )
    dev_cmd = commands.add_parser(
        "dev",
        help="run the service on an embedded PostgreSQL, with development defaults",
        description="Run the service on a private PostgreSQL kept in --data-dir (not started "
        "when DATABASE_URL is given), with AUTH_MODE=insecure, a generated PG_PROXY_PASSWORD "
        "and, when PostgreSQL runs on this machine, LOGICAL_PUBLISHER_HOST=127.0.0.1 unless set.",
    )
    dev_cmd.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        metavar="DIR",
        help="where the embedded PostgreSQL keeps its data (default: ./.electric)",
    )
    tunnel_cmd = commands.add_parser(
        "proxy-tunnel",
        help="carry local Postgres connections to the service's migrations proxy over WebSockets",
        description="Listen on --local-port and carry each connection to the migrations proxy "
        "through its own WebSocket to <service>/proxy (the service needs PG_PROXY_PORT=http).",
    )
    tunnel_cmd.add_argument(
        "--service",
        default=os.environ.get("ELECTRIC_SERVICE", "http://localhost:5133"),
        help="the service's URL (default: $ELECTRIC_SERVICE or http://localhost:5133)",
    )
    tunnel_cmd.add_argument(
        "--local-port", type=int, default=65432, help="local port to listen on (default 65432)"
    )
    from ..generate._cli import add_arguments as generate_arguments

    generate_arguments(
        commands.add_parser(
            "generate",
            help="write a typed client module from the service's migrations",
            description="Fetch <service>/api/migrations and write one module: row types, typed "
            "tables, the schema and the migrations bundle (python), or the DbSchema and "
            "migrations of the official client (typescript).",
        )
    )
    for command in (serve_cmd, dev_cmd):
        group = command.add_argument_group("settings")
        for setting in SETTINGS:
            group.add_argument(
                setting.flag,
                dest=_dest(setting.env),
                metavar="VALUE",
                help=f"{setting.help} [{setting.env}]",
            )
    return parser


def _fail(message: str, status: int) -> int:
    """Prints ``message`` as ``electric-trio: error: ...`` (further lines indented)."""
    first, *rest = message.splitlines() or [""]
    lines = [f"{PROG}: error: {first}", *(f"  {line}" for line in rest)]
    print("\n".join(lines), file=sys.stderr, flush=True)
    return status


def _config_error(error: ConfigError) -> int:
    problems = str(error).splitlines()
    if len(problems) == 1:
        return _fail(problems[0], EXIT_USAGE)
    return _fail("invalid configuration:\n" + "\n".join(problems), EXIT_USAGE)


#: The collector's first-generation threshold for the service: a node with thousands of
#: connections allocates many short-lived objects per transaction and client, and the default
#: (2,000) made collections take about half of the CPU in benches/fanout.
GC_THRESHOLD = (100_000, 50, 100)


def _run(async_fn: Callable[..., Awaitable[object]], *args: object) -> int:
    """Runs the Trio program and turns the errors a user can act on into one line."""
    status = EXIT_OK
    gc.set_threshold(*GC_THRESHOLD)
    fix_malloc_thresholds()
    try:
        trio.run(_frozen_after_start, async_fn, *args)
    except* (StartupError, _EmbeddedError) as group:
        status = _fail(str(_first(group)), EXIT_FAILURE)
    except* KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    return status


async def _frozen_after_start(async_fn: Callable[..., Awaitable[object]], *args: object) -> None:
    """Runs ``async_fn`` with the objects made while starting moved out of the collector's
    sight (they live as long as the process)."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(async_fn, *args)
        await trio.sleep(1.0)
        gc.freeze()


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception of a (possibly nested) group: nurseries in nurseries nest them."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _serve(environ: Mapping[str, str], overrides: Mapping[str, str | None]) -> int:
    try:
        config = Config.from_env(environ, overrides)
    except ConfigError as e:
        return _config_error(e)
    configure_logging(config.log_level)
    return _run(serve, config)


# ---- dev ----------------------------------------------------------------------------------


class _EmbeddedError(Exception):
    """The embedded PostgreSQL could not be started."""


def _dev(environ: Mapping[str, str], overrides: Mapping[str, str | None], data_dir: Path) -> int:
    password_file = data_dir / _PROXY_PASSWORD_FILE
    try:
        proxy_password = password_file.read_text().strip()
    except OSError:
        proxy_password = ""
    generated = not proxy_password
    if generated:
        proxy_password = secrets.token_urlsafe(18)
    defaults = {"AUTH_MODE": "insecure", "PG_PROXY_PASSWORD": proxy_password}
    database_url = overrides.get("DATABASE_URL") or environ.get("DATABASE_URL", "").strip()
    embedded = not database_url
    if embedded or _on_this_machine(database_url):
        # where Postgres's subscription reaches the logical publisher (client writes)
        defaults["LOGICAL_PUBLISHER_HOST"] = "127.0.0.1"
    try:
        # With the embedded server the URL is only known once it runs: validate everything
        # else first, so that a bad setting does not cost a PostgreSQL start.
        placeholder = {"DATABASE_URL": _PLACEHOLDER_URL} if embedded else {}
        config = Config.from_env(environ, overrides, defaults={**defaults, **placeholder})
    except ConfigError as e:
        return _config_error(e)
    configure_logging(config.log_level)
    if generated and config.pg_proxy_password == proxy_password:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            password_file.touch(mode=0o600)
            password_file.write_text(proxy_password + "\n")
        except OSError as e:
            return _fail(f"cannot write {password_file}: {e.strerror}", EXIT_FAILURE)
        log.info("generated PG_PROXY_PASSWORD", file=str(password_file.absolute()))
    if not embedded:
        return _run(serve, config)
    return _run(_dev_embedded, environ, overrides, defaults, data_dir)


def _on_this_machine(database_url: str) -> bool:
    """Whether the URL's host is a loopback name (an unparsable URL is the config's to report)."""
    try:
        host = urllib.parse.urlsplit(database_url).hostname
    except ValueError:
        return False
    return host in ("localhost", "127.0.0.1", "::1")


async def _dev_embedded(
    environ: Mapping[str, str],
    overrides: Mapping[str, str | None],
    defaults: Mapping[str, str],
    data_dir: Path,
) -> None:
    pg = EmbeddedPostgres(data_dir / "postgres")
    async with trio.open_nursery() as nursery:
        # Signals are ours from the start, so that a Ctrl-C while PostgreSQL starts still
        # stops it (the start itself runs to completion in its thread first).
        nursery.start_soon(shutdown_on_signal, nursery.cancel_scope)
        try:
            log.info("starting the embedded PostgreSQL", data_dir=str(pg.data_dir))
            try:
                await trio.to_thread.run_sync(pg.start)
            except EmbeddedPostgresError as e:
                raise _EmbeddedError(f"cannot start the embedded PostgreSQL: {e}") from None
            log.info("embedded PostgreSQL is running", port=pg.port, log=str(pg.log_path))
            config = Config.from_env(
                environ, overrides, defaults={**defaults, "DATABASE_URL": pg.url}
            )
            await serve(config, handle_signals=False)
        finally:
            with trio.CancelScope(shield=True):
                running = pg.running
                await trio.to_thread.run_sync(pg.stop)
                if running:
                    log.info("embedded PostgreSQL stopped")
        nursery.cancel_scope.cancel()
