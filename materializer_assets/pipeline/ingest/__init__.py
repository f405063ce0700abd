"""Stage 1: sources → raw_traces → consented_parquet (the consent-safe Parquet lake)."""

from __future__ import annotations

import os

from ...resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from ...resources.parquet_io import DEFAULT_WAREHOUSE
from ..settings import env_flag, env_list, secret_setting
from .assets import extract_cell  # raw_traces and consented_parquet, one multi-asset
from .schedules import daily_cells
from .sensors import blob_export_files, langfuse_new_traces, materialize_cells

ASSETS = [extract_cell]
SENSORS: list = [langfuse_new_traces, blob_export_files]
SCHEDULES: list = [daily_cells]
JOBS: list = [materialize_cells]


def build_resources() -> dict:
    privacy_kwargs = {
        "redact": env_flag("MATERIALIZER_REDACT", True),
        "engine": os.environ.get("MATERIALIZER_REDACTION_ENGINE", "patterns"),
    }
    entities = env_list("MATERIALIZER_REDACT_ENTITIES")
    if entities:
        privacy_kwargs["entities"] = entities
    return {
        "trace_source": TraceSourceResource(
            source=secret_setting("MATERIALIZER_SOURCE"),
            consent_registry=secret_setting("MATERIALIZER_CONSENT_REGISTRY"),
            convert_to_single_turn=env_flag("MATERIALIZER_CONVERT_TO_SINGLE_TURN", True),
        ),
        "privacy": PrivacyResource(**privacy_kwargs),
        "erasure": ErasureResource(
            erasure_list=secret_setting("MATERIALIZER_ERASURE_LIST"),
            salt=secret_setting("MATERIALIZER_ERASURE_SALT"),
        ),
        "parquet_io_manager": ParquetLakeIOManager(
            warehouse=os.environ.get("MATERIALIZER_WAREHOUSE", DEFAULT_WAREHOUSE),
        ),
    }


__all__ = ["ASSETS", "JOBS", "SCHEDULES", "SENSORS", "build_resources"]
