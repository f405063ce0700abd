"""The one partitioning every asset shares: UTC day × model (DESIGN §1, §7)."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

DEFAULT_START_DATE = "2026-01-01"
MODEL_DIMENSION = "model"
DATE_DIMENSION = "date"

date_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("MATERIALIZER_START_DATE", DEFAULT_START_DATE), timezone="UTC"
)
# Models are discovered in the data; keys are slugs (lib.slugs.model_slug).
model_partitions = dg.DynamicPartitionsDefinition(name=MODEL_DIMENSION)
cell_partitions = dg.MultiPartitionsDefinition({DATE_DIMENSION: date_partitions, MODEL_DIMENSION: model_partitions})


def cell_key(day: str | date, model_slug: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATE_DIMENSION: str(day), MODEL_DIMENSION: model_slug})


def split_cell_key(partition_key: str) -> tuple[str, str]:
    """(date, model slug) of a cell's partition key ``2026-04-18|glm-5-32b``."""
    keys = getattr(partition_key, "keys_by_dimension", None)
    if keys is not None:
        return keys[DATE_DIMENSION], keys[MODEL_DIMENSION]
    # Multi-partition keys join dimension values in dimension-name order.
    day, _, model = str(partition_key).partition("|")
    if not model:
        raise ValueError(f"not a date|model partition key: {partition_key!r}")
    return day, model
