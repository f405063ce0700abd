"""Keeping the process's memory near what it uses (glibc malloc; a no-op elsewhere).

Buffers outside Arrow's pool (the database driver's batches, zstd and RE2
work memory) come from malloc on our reader and writer threads. glibc gives
each thread an arena of its own (up to 8 per core) and keeps the pages freed
in them, so peak RSS drifted up by ~50 MB over a large day
(benchmarks/scale_bench.py). Two knobs fix it: fewer arenas, and handing
free pages back after each written row group.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - only glibc has it (not musl)
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas, unless the operator set MALLOC_ARENA_MAX."""
    if _LIBC is not None and "MALLOC_ARENA_MAX" not in os.environ:
        _LIBC.mallopt(_M_ARENA_MAX, arenas)


def release_free_memory() -> None:
    """Return malloc's free pages to the system (cheap with few arenas)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
