"""Dagster resources and the IO managers the pipeline stores its cells with."""

from .parquet_io import ParquetLakeIOManager
from .settings import ErasureResource, PrivacyResource, TraceSourceResource

__all__ = ["ErasureResource", "ParquetLakeIOManager", "PrivacyResource", "TraceSourceResource"]
