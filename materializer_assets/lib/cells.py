"""A cell's partition key: one UTC day × one model slug (DESIGN §1, §7).

Dagster joins the values of a multi-partition key in dimension-name order
(``2026-04-18|glm-5-32b``); the IO managers and the assets read the day and
the slug back from it. Plain strings, so the IO managers need not import the
pipeline's partitions definition.
"""

from __future__ import annotations

DATE_DIMENSION = "date"
MODEL_DIMENSION = "model"


def split_cell_key(partition_key: str) -> tuple[str, str]:
    """(date, model slug) of a cell's partition key ``2026-04-18|glm-5-32b``."""
    keys = getattr(partition_key, "keys_by_dimension", None)  # a Dagster MultiPartitionKey
    if keys is not None:
        return keys[DATE_DIMENSION], keys[MODEL_DIMENSION]
    # Multi-partition keys join dimension values in dimension-name order.
    day, _, model = str(partition_key).partition("|")
    if not model:
        raise ValueError(f"not a date|model partition key: {partition_key!r}")
    return day, model
