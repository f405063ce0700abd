"""judge_scores and ragas_scores: one score row per consented trace of a cell.

Both read the upstream cell batch by batch (only the columns scoring needs),
score it through ``lib.scoring`` (bounded concurrency, retries, the score
cache in the warehouse) and publish the stream of score rows through the
Parquet IO manager. The checks then read back what it published.
Both run in the ``llm_judge`` pool, so concurrent runs cannot overload the
fleet (``dagster instance concurrency set llm_judge N``).
"""


from typing import Any

import dagster as dg

from ...lib import checks as base_checks
from ...lib.cells import split_cell_key
from ...lib.lake import CellStream
from ...lib.scoring import checks
from ...lib.scoring.inputs import ID_COLUMNS, INPUT_COLUMNS, InputStats, consented_only, scan_batches
from ...lib.scoring.runner import score_stream
from ...lib.scoring.schema import (
    JUDGE_SCORE_COLUMNS,
    JUDGE_SCORES_SCHEMA,
    RAGAS_METRICS,
    RAGAS_SCORES_SCHEMA,
)
from ...lib.consent import ConsentPolicy
from ...resources.parquet_io import ParquetLakeIOManager, PublishedLakeCell
from ...resources.settings import ErasureResource, TraceSourceResource
from ...resources.scoring import JudgeResource, RagasResource
from ..partitions import cell_partitions
from ..check_results import cell_check_spec, check_result
from ..metadata import published_metadata, score_lineage, score_numbers

# The asset both scorers read. Today the consented Parquet cell; switching to
# the Iceberg table is this one line (its IO manager hands over a lazy scan,
# which scan_batches streams the same way).
SCORED_UPSTREAM = "iceberg_table"
POOL = "llm_judge"
READ_BATCH_ROWS = 4096

JUDGE_CHECKS = {
    "judge_scores_in_range": ("Every judge score is in [0, 1] or null, and only ok rows have one.", True),
    "judge_every_trace_scored": ("Every consented trace of the cell has exactly one score row.", True),
    "judge_non_ok_share": ("Warns when the share of non-ok statuses exceeds max_non_ok_share.", False),
    "judge_endpoint_configured": ("Warns when no judge endpoint is configured (rows are not_configured).", False),
    "judge_schema_as_declared": ("Every published file's own schema (its footer) is exactly the declared one.", True),
}
RAGAS_CHECKS = {
    "ragas_scores_in_range": ("Every Ragas metric and reward is in [0, 1] or null, and only ok ones have a value.", True),
    "ragas_every_trace_scored": ("Every consented trace of the cell has exactly one score row.", True),
    "ragas_non_ok_share": ("Warns when the share of non-ok statuses exceeds max_non_ok_share.", False),
    "ragas_endpoint_configured": ("Warns when Ragas's LLM or embeddings endpoint is not configured.", False),
    "ragas_schema_as_declared": ("Every published file's own schema (its footer) is exactly the declared one.", True),
}


def _specs(asset_name: str, specs: dict[str, tuple[str, bool]]) -> list[dg.AssetCheckSpec]:
    return [cell_check_spec(name, asset_name, description, blocking) for name, (description, blocking) in specs.items()]


def _score_cell(
    context: dg.AssetExecutionContext,
    io_manager: ParquetLakeIOManager,
    traces: Any,
    scorer,
    resource,
    stream_schema,
    policy: ConsentPolicy,
    score_columns,
    name: str,
) -> tuple[PublishedLakeCell, dict]:
    """Score the cell and publish its score rows; returns the published cell and its metadata
    (described once the stream was written: the counts are known then)."""
    inputs = InputStats()
    batches = consented_only(scan_batches(traces, INPUT_COLUMNS, READ_BATCH_ROWS), inputs, policy)
    stream = CellStream(score_stream(scorer, batches, chunk_rows=resource.chunk_size()), stream_schema)
    published = io_manager.publish(context, stream)
    metadata = scorer.metadata()
    return published, {
        "upstream": SCORED_UPSTREAM,
        "upstream_rows": inputs.rows_read,
        "rows_skipped_without_consent": inputs.rows_without_consent,
        **metadata,
        **score_numbers(published.dataset, metadata["status_counts"], score_columns),
        **published_metadata(
            published.dataset, stream_schema, lineage=score_lineage(name, SCORED_UPSTREAM, stream_schema, score_columns)
        ),
    }


def _consented_ids(traces: Any, policy: ConsentPolicy):
    return consented_only(scan_batches(traces, ID_COLUMNS, READ_BATCH_ROWS), InputStats(), policy)


def _score_and_check(
    context: dg.AssetExecutionContext,
    traces: Any,
    resource,
    parquet_io_manager: ParquetLakeIOManager,
    policy: ConsentPolicy,
    stream_schema,
    *,
    check_prefix: str,
    vouchers: dict[str, str],
    unconfigured_warning: str,
):
    """Score the cell: yields its Output, then the four checks every scorer has; returns the scorer.

    ``vouchers`` maps each score column to the status column that vouches for it.
    """
    day, slug = split_cell_key(context.partition_key)
    scorer = resource.cell_scorer(day, slug, parquet_io_manager.lake().root)
    if not scorer.configured:
        context.log.warning(unconfigured_warning)
    cell, metadata = _score_cell(
        context, parquet_io_manager, traces, scorer, resource, stream_schema, policy, list(vouchers), check_prefix
    )
    yield dg.Output(cell, metadata=metadata)
    published = cell.dataset
    yield check_result(f"{check_prefix}_schema_as_declared", base_checks.check_schema(published, stream_schema), True)
    yield check_result(f"{check_prefix}_scores_in_range", checks.check_scores_in_range(published, vouchers), True)
    every_scored = checks.check_every_trace_scored(_consented_ids(traces, policy), published)
    yield check_result(f"{check_prefix}_every_trace_scored", every_scored, True)
    yield check_result(f"{check_prefix}_non_ok_share", checks.check_non_ok_share(published, resource.max_non_ok_share), False)
    return scorer


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="parquet_io_manager",
    ins={"traces": dg.AssetIn(SCORED_UPSTREAM)},
    group_name="scoring",
    kinds={"parquet", "openai"},
    pool=POOL,
    metadata={"lake_dataset": "judge-scores"},
    check_specs=_specs("judge_scores", JUDGE_CHECKS),
    description="LLM-judge score of every consented trace (the design document's prompt; one judge or a "
    "committee): judge_score in [0, 1] or null with its status.",
)
def judge_scores(
    context: dg.AssetExecutionContext,
    traces: Any,
    judge: JudgeResource,
    trace_source: TraceSourceResource,
    erasure: ErasureResource,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
):
    scorer = yield from _score_and_check(
        context,
        traces,
        judge,
        parquet_io_manager,
        erasure.policy(trace_source.load_registry(), parquet_io_manager.lake().root),
        JUDGE_SCORES_SCHEMA,
        check_prefix="judge",
        vouchers={name: "status" for name in JUDGE_SCORE_COLUMNS},
        unconfigured_warning="no judge endpoint configured: every row is not_configured",
    )
    yield check_result(
        "judge_endpoint_configured",
        checks.check_configured(
            scorer.configured,
            f"judge configured: {scorer.judge_model}",
            "no judge endpoint configured: every row is not_configured with a null score "
            "(set MATERIALIZER_JUDGE_MODEL and MATERIALIZER_JUDGE_BASE_URL)",
        ),
        False,
    )


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="parquet_io_manager",
    ins={"traces": dg.AssetIn(SCORED_UPSTREAM)},
    group_name="scoring",
    kinds={"parquet", "openai"},
    pool=POOL,
    metadata={"lake_dataset": "ragas-scores"},
    check_specs=_specs("ragas_scores", RAGAS_CHECKS),
    description="Ragas faithfulness, answer relevancy and context precision of every consented trace, and "
    "ragas_reward = 0.5·F + 0.3·AR + 0.2·CP renormalized over the metrics present.",
)
def ragas_scores(
    context: dg.AssetExecutionContext,
    traces: Any,
    ragas: RagasResource,
    trace_source: TraceSourceResource,
    erasure: ErasureResource,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
):
    scorer = yield from _score_and_check(
        context,
        traces,
        ragas,
        parquet_io_manager,
        erasure.policy(trace_source.load_registry(), parquet_io_manager.lake().root),
        RAGAS_SCORES_SCHEMA,
        check_prefix="ragas",
        vouchers={name: f"{name}_status" for name in RAGAS_METRICS} | {"ragas_reward": "status"},
        unconfigured_warning="no Ragas LLM endpoint configured: every row is not_configured",
    )
    if not scorer.configured:
        missing = (
            "no Ragas LLM endpoint configured: every row is not_configured with null scores "
            "(set MATERIALIZER_RAGAS_MODEL and MATERIALIZER_RAGAS_BASE_URL, or the judge's settings)"
        )
    else:
        missing = (
            "no embeddings endpoint configured: answer_relevancy is not_configured and left out of ragas_reward "
            "(set MATERIALIZER_RAGAS_EMBEDDINGS_MODEL)"
        )
    llm_model, embeddings_model = scorer.scorer.model_names
    yield check_result(
        "ragas_endpoint_configured",
        checks.check_configured(
            scorer.configured and embeddings_model is not None,
            f"Ragas configured: LLM {llm_model}, embeddings {embeddings_model}",
            missing,
        ),
        False,
    )
