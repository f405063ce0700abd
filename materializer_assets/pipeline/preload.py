"""Imported once by the forkserver of a run's multiprocess executor (see ``executor.py``); every
step process is forked from it and inherits all of this, so a step pays neither a Python start-up
nor an import.

Besides the ``Definitions`` (resolved here: repository and asset job are cached on the object), it
imports what a step would otherwise import lazily: the instance storage (SQLite locally,
dagster-postgres in production), SQLAlchemy/Alembic, and the parts of pyiceberg the Iceberg asset
uses. Nothing here opens a connection or starts a thread: a fork must not inherit either.
"""

from __future__ import annotations

import importlib

from materializer_assets.definitions import defs

LAZY_MODULES = (
    "sqlalchemy",
    "alembic",
    "dagster._core.storage.event_log.sqlite",
    "dagster._core.storage.runs.sqlite",
    "dagster._core.storage.schedules.sqlite",
    "dagster_postgres",
    "pyiceberg.catalog.sql",
    "pyiceberg.io.pyarrow",
    "pyiceberg.io.fsspec",
    "fsspec",
)

for _name in LAZY_MODULES:
    try:
        importlib.import_module(_name)
    except ImportError:  # an optional one (dagster-postgres only in the production image)
        pass

defs.get_repository_def()
defs.resolve_implicit_global_asset_job_def()
