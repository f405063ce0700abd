"""Trace → Reward Dataset Materializer.

``materializer_assets.defs`` is the Dagster ``Definitions`` object. It is
loaded lazily so that ``materializer_assets.lib`` (pure functions, no Dagster)
can be imported without importing Dagster.
"""

import os
from typing import Any

# Arrow's default allocator (mimalloc) keeps freed pages: a day's cells peak
# at ~600 MB RSS instead of ~400 MB with jemalloc (benchmarks/scale_bench.py).
# Arrow reads this variable when pyarrow is first imported, so it is set here,
# before any of our modules imports pyarrow; an operator's own choice wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


# Fewer malloc arenas keep RSS from drifting up over a large day (lib/memory.py).
from .lib.memory import limit_malloc_arenas  # noqa: E402 - after the variable above

limit_malloc_arenas()


def __getattr__(name: str) -> Any:
    if name == "defs":
        from .definitions import defs

        return defs
    raise AttributeError(name)
