"""The ``Definitions`` object that ``dagster dev``, ``workspace.yaml`` and the CLI load.

Settings come from the environment (see the README's settings table).
Values that may hold secrets (a source URL with a password) are passed as
``EnvVar`` so Dagster resolves them at run time and never shows them.
"""

from __future__ import annotations

import os

import dagster as dg

from .lib.consent import parse_consent
from .pipeline.ingest.assets import consented_parquet, raw_traces
from .resources import ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from .resources.parquet_io import DEFAULT_WAREHOUSE


def _secret_setting(name: str, default: str = "") -> str | dg.EnvVar:
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else default


def _flag(name: str, default: bool) -> bool:
    value = parse_consent(os.environ.get(name)) if os.environ.get(name, "").strip() else None
    return default if value is None else value


def _list(name: str) -> list[str] | None:
    raw = os.environ.get(name, "").strip()
    return [item.strip() for item in raw.split(",") if item.strip()] if raw else None


def build_resources() -> dict:
    privacy_kwargs = {
        "redact": _flag("MATERIALIZER_REDACT", True),
        "engine": os.environ.get("MATERIALIZER_REDACTION_ENGINE", "patterns"),
    }
    entities = _list("MATERIALIZER_REDACT_ENTITIES")
    if entities:
        privacy_kwargs["entities"] = entities
    return {
        "trace_source": TraceSourceResource(
            source=_secret_setting("MATERIALIZER_SOURCE"),
            consent_registry=_secret_setting("MATERIALIZER_CONSENT_REGISTRY"),
            convert_to_single_turn=_flag("MATERIALIZER_CONVERT_TO_SINGLE_TURN", True),
        ),
        "privacy": PrivacyResource(**privacy_kwargs),
        "parquet_io_manager": ParquetLakeIOManager(
            warehouse=os.environ.get("MATERIALIZER_WAREHOUSE", DEFAULT_WAREHOUSE),
        ),
    }


ASSETS = [raw_traces, consented_parquet]

defs = dg.Definitions(assets=ASSETS, resources=build_resources())
