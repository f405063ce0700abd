"""The freshness policy of the cells a day is expected to bring (iceberg_table, reward_dataset).

A cell is materialized once a day (the ``daily_cells`` schedule, or the
sensors as traces arrive): an asset none of whose cells was materialized for
``MATERIALIZER_FRESHNESS_HOURS`` hours (default 26: a day and some slack for
the run) fails its freshness policy, and warns two hours before. ``off`` (or 0)
sets no policy, e.g. for a warehouse that is only backfilled by hand.
"""

from __future__ import annotations

import os
from datetime import timedelta

import dagster as dg

FRESHNESS_ENV = "MATERIALIZER_FRESHNESS_HOURS"
DEFAULT_FRESHNESS_HOURS = 26.0
WARN_BEFORE = timedelta(hours=2)
OFF = {"off", "none", "false", "no", "0"}


def cell_freshness_policy(raw: str | None = None) -> dg.FreshnessPolicy | None:
    """The policy for ``raw`` hours (default: the environment's ``MATERIALIZER_FRESHNESS_HOURS``)."""
    raw = (os.environ.get(FRESHNESS_ENV, "") if raw is None else raw).strip()
    if raw.lower() in OFF:
        return None
    try:
        hours = float(raw) if raw else DEFAULT_FRESHNESS_HOURS
    except ValueError:
        raise ValueError(f"{FRESHNESS_ENV} must be a number of hours or 'off', got {raw!r}") from None
    if hours <= 0:
        return None
    fail = timedelta(hours=hours)
    warn = fail - WARN_BEFORE if fail > WARN_BEFORE else None
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn)


# Read at import, like the partitions' start date: an asset's policy is part of its definition.
CELL_FRESHNESS = cell_freshness_policy()
