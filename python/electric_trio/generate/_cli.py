"""The ``electric-trio generate`` command: arguments and exit status."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

import trio

from . import Generated, GenerateError, Target, generate, progress_printer, watch

__all__ = ["add_arguments", "run"]

DEFAULT_SERVICE = "http://localhost:5133"
DEFAULT_NAME: dict[Target, str] = {"python": "electric_client.py", "typescript": "index.mjs"}
DEFAULT_OUT: dict[Target, str] = {
    "python": "electric_client.py",
    "typescript": "src/generated/client/index.mjs",
}


def output_path(out: str | None, target: Target) -> Path:
    """The file to write: ``out``, or the default name inside it when it is a folder or has no
    suffix (the official generator's ``ELECTRIC_CLIENT_PATH`` is a folder)."""
    if out is None:
        return Path(DEFAULT_OUT[target])
    path = Path(out)
    if path.is_dir() or not path.suffix:
        return path / DEFAULT_NAME[target]
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``generate`` (defaults from the official generator's variables)."""
    parser.add_argument(
        "--service",
        default=os.environ.get("ELECTRIC_SERVICE", DEFAULT_SERVICE),
        help=f"the service's URL (default: $ELECTRIC_SERVICE or {DEFAULT_SERVICE})",
    )
    parser.add_argument(
        "--proxy",
        default=os.environ.get("ELECTRIC_PROXY") or None,
        help="postgresql:// URL of the migrations proxy (or of a proxy tunnel's local port): "
        "nullability is read from Postgres through it; without it, from the migrations' DDL "
        "(default: $ELECTRIC_PROXY)",
    )
    parser.add_argument(
        "--out",
        default=os.environ.get("ELECTRIC_CLIENT_PATH") or None,
        help="the file to write, or a folder to write electric_client.py (python) or index.mjs "
        "(typescript) in (default: $ELECTRIC_CLIENT_PATH, else electric_client.py, or "
        "src/generated/client/index.mjs for typescript); a .ts/.mts name gives TypeScript",
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        const=1000,
        type=int,
        metavar="MS",
        help="keep running and generate again when a new migration appears, polling every MS "
        "milliseconds (default 1000)",
    )
    parser.add_argument(
        "--target",
        choices=["python", "typescript"],
        default="python",
        help="python (default): msgspec row types, typed tables, schema and migrations; "
        "typescript: the DbSchema and migrations of the official electric-sql client",
    )


def run(args: argparse.Namespace) -> int:
    """Runs ``generate`` for parsed ``args``: 0 when written (or a watch is interrupted), 1 for
    an error (one line on stderr), 2 for a bad ``--watch``."""
    target: Target = args.target
    out = output_path(args.out, target)
    progress = progress_printer()

    def done(generated: Generated) -> None:
        progress(
            f"wrote {generated.path}: {generated.tables} tables,"
            f" migrations up to {generated.version or '(none)'}"
        )

    if args.watch is not None and args.watch <= 0:
        print("electric-trio: error: --watch takes a positive number of ms", file=sys.stderr)
        return 2
    try:
        if args.watch is None:
            done(
                trio.run(
                    partial(
                        generate,
                        args.service,
                        out,
                        target=target,
                        proxy=args.proxy,
                        progress=progress,
                    )
                )
            )
        else:
            trio.run(
                partial(
                    watch,
                    args.service,
                    out,
                    interval=args.watch / 1000,
                    target=target,
                    proxy=args.proxy,
                    progress=progress,
                    done=done,
                )
            )
    except GenerateError as exc:
        print(f"electric-trio: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
