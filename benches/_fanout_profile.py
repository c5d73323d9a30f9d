"""Where a process spent its samples: py-spy's raw (collapsed) stacks summed by function.

Each line of ``py-spy record --format raw`` is ``frame;frame;...;leaf COUNT``, outermost first,
a frame being ``function (file:line)``. :func:`summarize` gives each function's share of all
samples twice: *inclusive* (the function anywhere on the stack, counted once per stack) and
*self* (the function as the leaf).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """``function (file)`` without the line number, the file shortened to its last two
    components (``satellite/session.py``)."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"].split("/")
    return f"{match['function']} ({'/'.join(path[-2:])})"


def summarize(
    lines: Iterable[str], top: int = 25
) -> tuple[int, list[tuple[str, float]], list[tuple[str, float]]]:
    """Total samples, then the ``top`` functions by inclusive and by self share (0..1)."""
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        match = _LINE.match(line.strip())
        if match is None:
            continue
        count = int(match["count"])
        frames = [frame_name(f) for f in match["stack"].split(";") if f]
        if not frames:
            continue
        total += count
        for name in dict.fromkeys(frames):
            inclusive[name] += count
        leaf[frames[-1]] += count
    if not total:
        return 0, [], []
    return (
        total,
        [(name, n / total) for name, n in inclusive.most_common(top)],
        [(name, n / total) for name, n in leaf.most_common(top)],
    )
