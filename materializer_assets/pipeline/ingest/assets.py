"""raw_traces → consented_parquet, with their checks.

Both assets return their cell as a stream; the Parquet IO manager writes and
publishes it, and the checks then read back what was actually published.
"""


from datetime import date

import dagster as dg
import pyarrow.dataset as ds

from ...lib import checks
from ...lib.lake import CellStream, read_ahead
from ...lib.normalize import RejectionLog
from ...lib.schema import NORMALIZED_SCHEMA, REQUIRED_COLUMNS
from ...lib.stages import (
    ConsentedStats,
    RawStats,
    consented_from_raw,
    raw_stage,
    require_granted,
    split_by_consent,
)
from ...resources.parquet_io import ParquetLakeIOManager
from ...resources.settings import ErasureResource, PrivacyResource, TraceSourceResource
from ..partitions import cell_partitions, split_cell_key
from ..check_results import cell_check_spec, check_result
from ..metadata import flat_numbers, published_metadata, share

RAW_REQUIRED = ("trace_id", "timestamp", "date", "model_slug", "content_hash", "source", "extracted_at")

RAW_CHECKS = {
    "raw_schema_as_declared": "Published files have exactly the normalized schema.",
    "raw_required_non_null": "Identity and partition columns are never null.",
    "no_rejected_records": "Warns when the source had records that could not be normalized (counted by reason).",
}
CONSENTED_CHECKS = {
    "only_consented_rows": "Every row has consent=true and a recorded consent source.",
    "unique_trace_observation_ids": "No duplicate (trace_id, observation_id).",
    "required_columns_non_null": "Required columns are present and non-null.",
    "schema_as_declared": "Published files have exactly the normalized schema.",
    "counts_reconcile": "raw = consented + refused + unknown + dropped.",
}


def _specs(asset_name: str, specs: dict[str, str], warn: tuple[str, ...] = ()) -> list[dg.AssetCheckSpec]:
    return [cell_check_spec(name, asset_name, description, blocking=name not in warn) for name, description in specs.items()]


def _rejection_metadata(rejections: RejectionLog) -> dict:
    return {
        "rejected_records": rejections.total,
        "rejected_by_reason": dict(sorted(rejections.counts.items())),
        "rejected_unattributed_by_reason": dict(sorted(rejections.unattributed.items())),
        "rejected_examples": dg.MetadataValue.json(rejections.examples),
        **flat_numbers("rows_rejected", rejections.counts + rejections.unattributed),
    }


def _left_out_numbers(stats: ConsentedStats) -> dict:
    """Rows left out of the consented cell, one plottable key per reason, and the share kept."""
    return {
        **flat_numbers("rows_dropped", stats.as_metadata()["rows_dropped"]),
        **({"consented_share": share(stats.consented, stats.rows_in)} if stats.rows_in else {}),
    }


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="parquet_io_manager",
    group_name="ingest",
    kinds={"parquet"},
    metadata={"lake_dataset": "raw-traces"},
    check_specs=_specs("raw_traces", RAW_CHECKS, warn=("no_rejected_records",)),
    description="Normalized traces of one day × model cell, every consent state (consent=true|false|unknown).",
)
def raw_traces(
    context: dg.AssetExecutionContext,
    trace_source: TraceSourceResource,
    erasure: ErasureResource,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
):
    day, model = split_cell_key(context.partition_key)
    reader = trace_source.open_reader()
    # Forgotten users (registry, erasure list, earlier erasures) are dropped before anything is written.
    policy = erasure.policy(trace_source.load_registry(), parquet_io_manager.lake().root)
    context.log.info(f"reading {day} × {model} from {reader.description}")
    cell = reader.read_cell(date.fromisoformat(day), model)
    stats = RawStats()
    stream = CellStream(
        raw_stage(read_ahead(cell.batches, name="source-reader"), policy, stats),
        NORMALIZED_SCHEMA,
        split=split_by_consent,
        describe=lambda: {
            "source": reader.description,
            "consent_registry": policy.location,
            **stats.as_metadata(),
            **flat_numbers("rows_consent", stats.as_metadata()["rows_by_consent"]),
            **_rejection_metadata(cell.rejections),
            **published_metadata(stream.published, NORMALIZED_SCHEMA),
        },
    )
    try:
        yield dg.Output(stream)
    finally:
        reader.close()
    published = stream.published
    yield check_result("raw_schema_as_declared", checks.check_schema(published, NORMALIZED_SCHEMA))
    yield check_result("raw_required_non_null", checks.check_required_non_null(published, RAW_REQUIRED))
    rejected = cell.rejections.total
    yield check_result(
        "no_rejected_records",
        checks.CheckOutcome(
            rejected == 0,
            "no rejected records" if not rejected else f"{rejected} record(s) rejected; see metadata",
            {
                "rejected_by_reason": dict(sorted(cell.rejections.counts.items())),
                "rejected_unattributed_by_reason": dict(sorted(cell.rejections.unattributed.items())),
            },
        ),
        blocking=False,
    )


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="parquet_io_manager",
    group_name="ingest",
    kinds={"parquet"},
    metadata={"lake_dataset": "langfuse-traces"},
    check_specs=_specs("consented_parquet", CONSENTED_CHECKS),
    description="Only traces with explicit consent, non-empty response, deduplicated and PII-redacted "
    "(langfuse-traces/date=D/model=M/consent=true/).",
)
def consented_parquet(
    context: dg.AssetExecutionContext,
    raw_traces: ds.Dataset,
    trace_source: TraceSourceResource,
    privacy: PrivacyResource,
    erasure: ErasureResource,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
):
    # The same policy again: the registry may have changed since raw_traces ran.
    policy = erasure.policy(trace_source.load_registry(), parquet_io_manager.lake().root)
    stats = ConsentedStats()
    stream = CellStream(
        consented_from_raw(raw_traces, policy, privacy.redactor(), stats),
        NORMALIZED_SCHEMA,
        split=lambda batch: {"consent=true": batch},
        guard=require_granted,
        describe=lambda: {
            "consent_registry": policy.location,
            "redaction_engine": privacy.engine if privacy.redact else "off",
            **stats.as_metadata(),
            **_left_out_numbers(stats),
            **published_metadata(stream.published, NORMALIZED_SCHEMA),
        },
    )
    yield dg.Output(stream)
    published = stream.published
    # The footers first: a file with foreign columns is reported even if reading it breaks a later check.
    yield check_result("schema_as_declared", checks.check_schema(published, NORMALIZED_SCHEMA))
    yield check_result("only_consented_rows", checks.check_only_granted(published))
    yield check_result("unique_trace_observation_ids", checks.check_unique_ids(published))
    yield check_result("required_columns_non_null", checks.check_required_non_null(published, REQUIRED_COLUMNS))
    yield check_result(
        "counts_reconcile",
        checks.check_reconciles(
            raw_traces.count_rows(),
            {
                "consented": published.count_rows(),
                "refused": stats.refused,
                "unknown": stats.unknown,
                **{f"dropped_{reason}": count for reason, count in stats.dropped.items()},
            },
        ),
    )
