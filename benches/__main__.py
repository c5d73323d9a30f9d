"""``python -m benches [NAME] [OPTIONS]``: one benchmark, or every one when no name is given.

Options after the name go to that benchmark (``python -m benches pgwire --help``); without a
name, the options are given to every benchmark (``python -m benches --quick``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from . import BENCHMARKS


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(BENCHMARKS)}")
        return 0
    if argv and not argv[0].startswith("-"):
        name, *rest = argv
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        selected, options, every = [name], rest, False
    else:
        selected, options, every = list(BENCHMARKS), list(argv), True
    status = 0
    for i, name in enumerate(selected, 1):
        if every:
            print(f"== benchmark {i}/{len(selected)}: {name}", file=sys.stderr, flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        status = max(status, module.main(options))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
