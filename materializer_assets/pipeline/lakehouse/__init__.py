"""Stage 2: consented_parquet → iceberg_table (Apache Iceberg), and GDPR erasure everywhere."""

from __future__ import annotations

import os

from ...resources.iceberg_io import IcebergIOManager
from ...resources.parquet_io import DEFAULT_WAREHOUSE
from .assets import ICEBERG_TABLE, iceberg_table
from .erasure import gdpr_erasure_job, gdpr_erasure_sensor

ASSETS = [iceberg_table]
# The sensor brings its job (gdpr_erasure) into the Definitions.
SENSORS = [gdpr_erasure_sensor]
JOBS = [gdpr_erasure_job]
SCHEDULES: list = []


def build_resources() -> dict:
    iceberg_kwargs: dict = {"warehouse": os.environ.get("MATERIALIZER_WAREHOUSE", DEFAULT_WAREHOUSE)}
    catalog = os.environ.get("MATERIALIZER_ICEBERG_CATALOG", "").strip()
    if catalog:
        iceberg_kwargs["catalog_name"] = catalog
    # The erasure resource is ingest's: raw_traces already needs it to leave forgotten users out.
    return {"iceberg_io_manager": IcebergIOManager(**iceberg_kwargs)}


__all__ = ["ASSETS", "ICEBERG_TABLE", "JOBS", "SCHEDULES", "SENSORS", "build_resources"]
