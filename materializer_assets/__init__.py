"""Trace → Reward Dataset Materializer.

``materializer_assets.defs`` is the Dagster ``Definitions`` object. It is
loaded lazily so that ``materializer_assets.lib`` (pure functions, no Dagster)
can be imported without importing Dagster.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "defs":
        from .definitions import defs

        return defs
    raise AttributeError(name)
