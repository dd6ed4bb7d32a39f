"""Give the memory freed by a frame back to the system.

Why: each watcher thread allocates its frame's buffers (decoded image, model input, error
maps) from its own C heap, and glibc keeps what is freed there for reuse: with several
printers the daemon's resident memory grows by megabytes per printer that nothing uses
(``benchmarks/memory.py``). ``malloc_trim`` returns free pages; it costs well under a
millisecond a frame. A C library without it (musl) keeps its own habits: nothing is done.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def release_freed() -> None:
    """Return the C heap's free pages to the system (a no-op where the C library cannot)."""
    if _TRIM is not None:
        _TRIM(0)
