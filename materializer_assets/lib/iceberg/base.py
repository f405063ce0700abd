"""What every part of the Iceberg package shares: the table's name, its partition, the cell, the errors.

**Partitioning**: identity on the ``date`` string and identity on
``model_slug``. The Iceberg partition is then exactly the Dagster partition
(one :class:`Cell`), so

- replacing a cell is ``delete(date = D and model_slug = M)``, which drops
  whole files without reading them (a strict partition match), plus the new
  files, in one commit: idempotent and never a rewrite of other cells;
- ``add_files`` can take a file's partition from its column statistics
  (min = max of both columns, DESIGN §9);
- engines prune on ``date = '…'`` and ``model_slug = '…'``, the way the
  pipeline reads;
- no transform is needed (``day(timestamp)`` needs pyiceberg-core, and a day
  range filter on a timestamp is a weaker match for "exactly this cell").
  ``date`` is the UTC day of ``timestamp`` by construction, so nothing is lost.

Every commit here (a cell, a delete, properties, snapshot expiry) is retried
by :func:`_commit_attempts` when it loses a race with another writer.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import And, BooleanExpression, EqualTo
from pyiceberg.table import Table
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

DEFAULT_NAMESPACE = "training_data"
DEFAULT_TABLE_NAME = "langfuse_traces"
DEFAULT_TABLE = f"{DEFAULT_NAMESPACE}.{DEFAULT_TABLE_NAME}"
PARTITION_COLUMNS = ("date", "model_slug")

_COMMIT_ERRORS: tuple[type[BaseException], ...] = (CommitFailedException,)
try:  # SQLite answers "database is locked" while another process commits
    from sqlalchemy.exc import OperationalError as _SqlOperationalError

    _COMMIT_ERRORS += (_SqlOperationalError,)
except ImportError:  # pragma: no cover - sqlalchemy comes with pyiceberg[sql-*]
    pass


def _commit_attempts() -> Retrying:
    """Retries of a commit that lost a race with another writer (the catalog's optimistic
    concurrency): each attempt refreshes the table and redoes its change."""
    return Retrying(
        retry=retry_if_exception_type(_COMMIT_ERRORS),
        stop=stop_after_attempt(10),
        wait=wait_random_exponential(multiplier=0.05, max=3),
        reraise=True,
    )


class IcebergError(RuntimeError):
    """Base of the named failures of this module."""


class CatalogConfigError(IcebergError, ValueError):
    """The catalog configuration cannot be used (message names the setting, never a secret)."""


class IncompatibleSchemaError(IcebergError, ValueError):
    """Data whose schema cannot be merged into the table's (Iceberg allows only widening)."""


class CellMismatchError(IcebergError, ValueError):
    """Rows or files handed over for one cell belong (partly) to another cell."""


@dataclass(frozen=True)
class Cell:
    """One (date, model_slug) partition: one Dagster cell."""

    date: str
    model_slug: str

    @property
    def key(self) -> str:
        return f"{self.date}|{self.model_slug}"

    def filter(self) -> BooleanExpression:
        return And(EqualTo("date", self.date), EqualTo("model_slug", self.model_slug))


def _snapshot_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None
