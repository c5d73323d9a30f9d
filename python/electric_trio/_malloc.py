"""glibc malloc's thresholds fixed for a long-running service (issue 8's soak).

glibc serves a block of 128 KiB or more with a mapping of its own, returned to the system when
freed, and every other block from its heap. By default it adjusts that threshold as it goes:
each time such a mapped block is freed, blocks up to that size come from the heap from then on
(up to 32 MiB), and the heap keeps twice as much free memory at its top before giving any back.
One large buffer freed once is enough: from then on the larger buffers allocated and freed
as transactions pass come from the heap, between smaller blocks that live longer (the
transaction log's), and leave holes that later buffers of other sizes do not fit. The service's
heap grew for as long as it ran: the 30-minute soak without restarts, +0.9 MiB a minute; its
probe (benches/soak.py --probe) showed the transactions driving it (reconnects alone: flat),
malloc's bytes in use flat and its free bytes in the heap growing, and the growth gone with
the threshold fixed. Fixed (at glibc's own initial value: setting it stops the adjusting), such
buffers keep their own mappings and the heap holds the small blocks only.

Linux with glibc only; nothing is changed when the environment tunes malloc itself
(``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ..., or a ``glibc.malloc.*`` tunable
in ``GLIBC_TUNABLES``: glibc read those already, and an operator's choice stands).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["MMAP_THRESHOLD", "fix_thresholds"]

#: ``mallopt``'s parameter (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up are mapped on their own (glibc's initial value).
MMAP_THRESHOLD = 128 * 1024


def fix_thresholds(environ: dict[str, str] | None = None) -> bool:
    """Fixes malloc's mapping threshold at :data:`MMAP_THRESHOLD` (which also stops glibc
    raising the heap's trim threshold). True when done; False off glibc or when the
    environment tunes malloc itself."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return False
    if any(k.startswith("MALLOC_") and k.endswith("_") for k in env):
        return False
    if any(t.strip().startswith("glibc.malloc.") for t in env.get("GLIBC_TUNABLES", "").split(":")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc's, not musl's: mallopt differs there)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
