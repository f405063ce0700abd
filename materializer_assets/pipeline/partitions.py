"""The one partitioning every asset shares: UTC day × model (DESIGN §1, §7)."""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

from ..lib.cells import DATE_DIMENSION, MODEL_DIMENSION

DEFAULT_START_DATE = "2026-01-01"

date_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("MATERIALIZER_START_DATE", DEFAULT_START_DATE), timezone="UTC"
)
# Models are discovered in the data; keys are slugs (lib.slugs.model_slug).
model_partitions = dg.DynamicPartitionsDefinition(name=MODEL_DIMENSION)
cell_partitions = dg.MultiPartitionsDefinition({DATE_DIMENSION: date_partitions, MODEL_DIMENSION: model_partitions})


def cell_key(day: str | date, model_slug: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({DATE_DIMENSION: str(day), MODEL_DIMENSION: model_slug})
