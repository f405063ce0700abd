"""raw_traces → consented_parquet, with their checks.

Both assets publish their cell as a stream through the Parquet IO manager,
which returns what it published; the checks then read back those files.
"""


from datetime import date

import dagster as dg

from ...lib import checks
from ...lib.cells import split_cell_key
from ...lib.lake import CellAddress, CellStream, StageAlongside, read_ahead
from ...lib.normalize import RejectionLog
from ...lib.schema import NORMALIZED_SCHEMA, REQUIRED_COLUMNS
from ...lib.stages import (
    ConsentedStats,
    RawStats,
    consented_from_raw,
    consented_stage,
    raw_archive_form,
    raw_stage,
    require_granted,
    split_as_granted,
    split_by_consent,
)
from ...resources.parquet_io import ParquetLakeIOManager, PublishedLakeCell
from ...resources.settings import ErasureResource, PrivacyResource, TraceSourceResource
from ..partitions import cell_partitions
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


RAW_DATASET = "raw-traces"
CONSENTED_DATASET = "langfuse-traces"
RAW_KEY = dg.AssetKey("raw_traces")
CONSENTED_KEY = dg.AssetKey("consented_parquet")


def _for_asset(key: dg.AssetKey, result: dg.AssetCheckResult) -> dg.AssetCheckResult:
    """``result`` aimed at ``key``: one step carries the checks of both assets."""
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=result.check_name,
        passed=result.passed,
        severity=result.severity,
        description=result.description,
        metadata=result.metadata,
    )


def _output(published: PublishedLakeCell, output_name: str, metadata: dict) -> dg.Output:
    """The Output of a cell the IO manager published: the asset's metadata and the cell's standard metadata."""
    metadata = {**metadata, **published_metadata(published.dataset, NORMALIZED_SCHEMA)}
    return dg.Output(published, output_name=output_name, metadata=metadata)


@dg.multi_asset(
    name="extract_cell",
    partitions_def=cell_partitions,
    group_name="ingest",
    can_subset=True,
    outs={
        "raw_traces": dg.AssetOut(
            io_manager_key="parquet_io_manager",
            kinds={"parquet"},
            metadata={"lake_dataset": RAW_DATASET},
            is_required=False,
            description="Normalized traces of one day × model cell, every consent state (consent=true|false|unknown).",
        ),
        "consented_parquet": dg.AssetOut(
            io_manager_key="parquet_io_manager",
            kinds={"parquet"},
            metadata={"lake_dataset": CONSENTED_DATASET},
            is_required=False,
            description="Only traces with explicit consent, non-empty response, deduplicated and PII-redacted "
            "(langfuse-traces/date=D/model=M/consent=true/).",
        ),
    },
    internal_asset_deps={"raw_traces": set(), "consented_parquet": {RAW_KEY}},
    check_specs=_specs("raw_traces", RAW_CHECKS, warn=("no_rejected_records",)) + _specs("consented_parquet", CONSENTED_CHECKS),
)
def extract_cell(
    context: dg.AssetExecutionContext,
    trace_source: TraceSourceResource,
    privacy: PrivacyResource,
    erasure: ErasureResource,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
):
    """raw_traces and consented_parquet of a cell: each its own asset, output and checks.

    Selected together they come from one pass over the source: raw is written
    while consented is staged from the same batches on a thread of its own
    (``StageAlongside``), so both are encoded at once and raw is never read
    back; consented is published only after raw's blocking checks passed.
    Selected alone, consented is made from the published raw cell, as after
    an erasure or a registry change.
    """
    day, model = split_cell_key(context.partition_key)
    lake = parquet_io_manager.lake()
    selected = {key.to_user_string() for key in context.selected_asset_keys}
    selected_checks = set(context.selected_asset_check_keys)
    # Forgotten users (registry, erasure list, earlier erasures) are dropped before anything is written.
    policy = erasure.policy(trace_source.load_registry(), lake.root)
    consented_stats = ConsentedStats()
    alongside = None
    raw_published = None
    if "raw_traces" in selected:
        if "consented_parquet" in selected:
            redactor = privacy.redactor()
            alongside = StageAlongside(
                lambda raw_batches: lake.stage_cell(
                    # raw_stage applied the policy to these batches already
                    consented_stage(raw_batches, None, redactor, consented_stats),
                    NORMALIZED_SCHEMA,
                    split=split_as_granted,
                    guard=require_granted,
                ),
                name="consented-writer",
            )
        try:
            raw_published, raw_passed = yield from _raw_traces(
                context, trace_source, parquet_io_manager, policy, alongside, selected_checks
            )
        except BaseException:
            if alongside is not None:
                alongside.discard()
            raise
        if alongside is not None and not raw_passed:
            alongside.discard()  # the step fails on raw's blocking checks; consented is not published
            return
    if "consented_parquet" in selected:
        if raw_published is not None:
            raw_rows = raw_published.written.rows
            batches = alongside.result()
        else:
            # The registry may have changed since raw_traces ran: the policy is applied again.
            raw = lake.open_cell(CellAddress(RAW_DATASET, day, model))
            raw_rows = raw.count_rows()
            batches = consented_from_raw(raw, policy, privacy.redactor(), consented_stats)
        yield from _consented_parquet(
            context, parquet_io_manager, batches, raw_rows, policy, privacy, consented_stats, selected_checks
        )


def _raw_traces(
    context, trace_source: TraceSourceResource, io_manager: ParquetLakeIOManager, policy, alongside, selected_checks
):
    """Yields raw_traces' output and checks; returns the published cell and whether its blocking checks passed."""
    day, model = split_cell_key(context.partition_key)
    reader = trace_source.open_reader()
    context.log.info(f"reading {day} × {model} from {reader.description}")
    cell = reader.read_cell(date.fromisoformat(day), model)
    stats = RawStats()
    # Messages that only repeat prompt and response are stored as null in raw; consented_stage
    # (alongside, or later from raw) derives them again from the redacted prompt and response.
    # On the reader's thread too: the consent policy and the compaction, so this thread only routes and writes.
    batches = read_ahead(raw_archive_form(raw_stage(cell.batches, policy, stats)), name="source-reader")
    if alongside is not None:
        batches = alongside.feed(batches)
    stream = CellStream(batches, NORMALIZED_SCHEMA, split=split_by_consent)
    try:
        raw = io_manager.publish(context, stream, output_name="raw_traces")
        yield _output(raw, "raw_traces", {
            "source": reader.description,
            "consent_registry": policy.location,
            **stats.as_metadata(),
            **flat_numbers("rows_consent", stats.as_metadata()["rows_by_consent"]),
            **_rejection_metadata(cell.rejections),
        })
    finally:
        reader.close()
    published = raw.dataset
    rejected = cell.rejections.total
    results = [
        check_result("raw_schema_as_declared", checks.check_schema(published, NORMALIZED_SCHEMA)),
        check_result("raw_required_non_null", checks.check_required_non_null(published, RAW_REQUIRED)),
        check_result(
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
        ),
    ]
    passed = True
    for result in results:
        if dg.AssetCheckKey(RAW_KEY, result.check_name) in selected_checks:
            passed &= result.passed or result.severity != dg.AssetCheckSeverity.ERROR
            yield _for_asset(RAW_KEY, result)
    return raw, passed


def _consented_parquet(
    context,
    io_manager: ParquetLakeIOManager,
    batches,
    raw_rows: int,
    policy,
    privacy: PrivacyResource,
    stats: ConsentedStats,
    selected_checks,
):
    """Yields consented_parquet's output (a stream, or a cell staged alongside raw) and checks."""
    stream = CellStream(batches, NORMALIZED_SCHEMA, split=split_as_granted, guard=require_granted)
    consented = io_manager.publish(context, stream, output_name="consented_parquet")
    yield _output(consented, "consented_parquet", {
        "consent_registry": policy.location,
        "redaction_engine": privacy.engine if privacy.redact else "off",
        **stats.as_metadata(),
        **_left_out_numbers(stats),
    })
    published = consented.dataset
    # The footers first: a file with foreign columns is reported even if reading it breaks a later check.
    results = [
        lambda: check_result("schema_as_declared", checks.check_schema(published, NORMALIZED_SCHEMA)),
        lambda: check_result("only_consented_rows", checks.check_only_granted(published)),
        lambda: check_result("unique_trace_observation_ids", checks.check_unique_ids(published)),
        lambda: check_result("required_columns_non_null", checks.check_required_non_null(published, REQUIRED_COLUMNS)),
        lambda: check_result(
            "counts_reconcile",
            checks.check_reconciles(
                raw_rows,
                {
                    "consented": published.count_rows(),
                    "refused": stats.refused,
                    "unknown": stats.unknown,
                    **{f"dropped_{reason}": count for reason, count in stats.dropped.items()},
                },
            ),
        ),
    ]
    for make in results:
        result = make()
        if dg.AssetCheckKey(CONSENTED_KEY, result.check_name) in selected_checks:
            yield _for_asset(CONSENTED_KEY, result)


# Both keys are outputs of the one multi-asset; the names stay importable.
raw_traces = consented_parquet = extract_cell
