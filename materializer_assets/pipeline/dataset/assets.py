"""reward_dataset and its training exports (SFT, DPO, KTO, GRPO, router).

``reward_dataset`` reads the cell of the Iceberg table (pinned to one snapshot,
recorded on every row as lineage) twice — once for the split plan, once for
the rows — joins the judge and Ragas scores by (trace_id, observation_id,
content_hash) and streams ``REWARD_DATASET_SCHEMA`` rows into the Iceberg
table ``training_data.reward_dataset``, replacing exactly the cell. Then its
blocking checks read back what the table holds.

``reward_dataset_parquet`` copies that cell into the Parquet lake
(``reward-dataset/``), so the warehouse has it as plain Parquet too.

Each export reads the reward cell from Iceberg and writes Parquet under
``exports/<format>/date=D/model=M/{train,test}/``; the column layouts are
TRL's (https://huggingface.co/docs/trl/dataset_formats), see
``lib/dataset/exports.py``. Both split folders always hold a file (an empty
one with the export's schema when the split has no rows).

``langfuse_scores`` (opt-in: ``MATERIALIZER_LANGFUSE_WRITE_SCORES``) writes
each row's final_reward back to Langfuse as a score. It comes after the cell's
reward table and every export, so any blocking check of the cell that fails
(reward checks, ``dpo_pairs_valid``, and everything upstream) stops it before
a single score is sent.
"""


import hashlib
import os
from collections import Counter
from typing import Any, Callable, Iterator

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds

from ...lib import checks as base_checks
from ...lib.cells import split_cell_key
from ...lib.dataset import REWARD_DATASET_SCHEMA, RewardDatasetBuilder, RewardLineage, ScoresInCellOrder, build_pairs
from ...lib.dataset import checks as dataset_checks
from ...lib.dataset import exports
from ...lib.dataset.build import JUDGE_COLUMNS, RAGAS_COLUMNS, SCORE_KEY_COLUMNS
from ...lib.dataset.pairs import PAIR_INPUT_COLUMNS, pairable_rows
from ...lib.lake import CellStream, FixedSplit, iter_batches
from ...lib.scoring.inputs import CONSENT_COLUMNS, InputStats, consented_only, scan_batches
from ...resources.iceberg_io import IcebergIOManager
from ...resources.parquet_io import ParquetLakeIOManager, PublishedLakeCell
from ...resources.settings import ErasureResource, TraceSourceResource
from ..partitions import cell_partitions
from ..check_results import cell_check_spec, check_result
from ..freshness import CELL_FRESHNESS
from ..metadata import flat_numbers, published_metadata, reward_lineage, reward_numbers, row_count_metadata, same_columns
from ...lib.dataset import near_dup_lake as near_dup
from ...lib.iceberg.reading import READ_BATCH_ROWS  # rows of a few kB each: the batches a cell is decoded in
from .resources import RewardDatasetResource

REWARD_TABLE = os.environ.get("MATERIALIZER_REWARD_TABLE", "").strip() or "training_data.reward_dataset"
REWARD_LAKE_DATASET = "reward-dataset"
EXPORT_DATASETS = {name: f"exports/{name}" for name in exports.EXPORTS}
SCORE_BATCH_ROWS = 1 << 16
LANGFUSE_SCORE_NAME = "final_reward"
INDEX_ID_COLUMNS = ["trace_id", "observation_id", "user_id"]

REWARD_CHECKS = {
    "final_reward_in_range": "Every final_reward is in [0, 1] or null.",
    "no_group_in_both_splits": "No split group (user, or session when so configured) has rows in both train and test.",
    "no_user_in_both_splits": "No user_id has rows in both train and test.",
    "consent_lineage": "Every row has consent=true and a recorded, granting consent source.",
}
WRITE_BACK_CHECK = "langfuse_scores_written"
LANGFUSE_SCORE_COLUMNS = ["trace_id", "observation_id", "source", "final_reward", "environment"]


def _score_table(scores: ds.Dataset, columns: dict[str, str]) -> pa.RecordBatchReader | None:
    """The score columns reward rows need (ids + a few numbers per trace) as a stream, or None for an empty cell."""
    if not len(scores.schema):  # no files: the scorer wrote an empty cell
        return None
    wanted = [c for c in [*SCORE_KEY_COLUMNS, *columns] if c in scores.schema.names]
    schema = pa.schema([scores.schema.field(c) for c in wanted])
    return pa.RecordBatchReader.from_batches(schema, iter_batches(scores, wanted, SCORE_BATCH_ROWS))


def _markdown(metadata: dict) -> dict:
    """Markdown strings (``*_md``) as MetadataValue.md so the UI renders them as tables."""
    return {key: dg.MetadataValue.md(value) if key.endswith("_md") else value for key, value in metadata.items()}


def _scorer_version(reward_spec: str) -> str:
    return "reward_dataset/" + hashlib.sha256(reward_spec.encode()).hexdigest()[:12]


def _write_back(reward_cell: Any, reward_spec: str) -> base_checks.CheckOutcome:
    """Post each row's final_reward as a Langfuse score: one per example (trace + our observation
    id), re-runs overwrite (deterministic ids); observationId only where it is Langfuse's own."""
    from ...lib.langfuse import LangfuseClient, LangfuseConfig, ScoreToWrite, ScoreWriter, langfuse_observation_id

    version = _scorer_version(reward_spec)
    attached = Counter()

    def scores() -> Iterator[ScoreToWrite]:
        for batch in reward_cell.to_batches(columns=LANGFUSE_SCORE_COLUMNS):
            for row in batch.to_pylist():
                if row["final_reward"] is None:
                    continue  # no reward: nothing to say about the trace
                observation = langfuse_observation_id(row["observation_id"], row["source"])
                attached["observation" if observation else "trace"] += 1
                yield ScoreToWrite(
                    trace_id=row["trace_id"],
                    name=LANGFUSE_SCORE_NAME,
                    value=row["final_reward"],
                    scorer_version=version,
                    observation_id=observation,
                    example_id=row["observation_id"],
                    environment=row["environment"],
                    metadata={"reward_spec": reward_spec},
                )

    with LangfuseClient(LangfuseConfig.from_env()) as client:
        report = ScoreWriter(client).write(scores())
    return base_checks.CheckOutcome(
        True,
        f"{report.written} final_reward score(s) written to Langfuse as {LANGFUSE_SCORE_NAME!r} ({version})",
        {
            **report.as_metadata(),
            "scorer_version": version,
            "scores_on_observations": attached["observation"],
            "scores_on_traces": attached["trace"],
        },
    )


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="iceberg_io_manager",
    group_name="dataset",
    kinds={"iceberg"},
    metadata={"iceberg_table": REWARD_TABLE},
    check_specs=[cell_check_spec(name, "reward_dataset", d) for name, d in REWARD_CHECKS.items()],
    freshness_policy=CELL_FRESHNESS,
    description="One row per consented trace: ragas_reward, judge_score, feedback, final_reward (weighted; only when "
    "every configured scorer is ok for the row, else null with unlabeled_reason), label, a leakage-safe train/test "
    "split and lineage (trace, Iceberg snapshot, judge "
    f"model + prompt version, Ragas version), as the cell of the Iceberg table {REWARD_TABLE}.",
)
def reward_dataset(
    context: dg.AssetExecutionContext,
    iceberg_table: Any,
    judge_scores: ds.Dataset,
    ragas_scores: ds.Dataset,
    reward_settings: RewardDatasetResource,
    trace_source: TraceSourceResource,
    erasure: ErasureResource,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
    iceberg_io_manager: dg.ResourceParam[IcebergIOManager],
):
    reward_config = reward_settings.reward_config()
    # The erasure audit's ledger: its salt (MATERIALIZER_ERASURE_SALT, else the warehouse's
    # _erasure/salt) keys split_key and every user hash in metadata.
    ledger = erasure.ledger(parquet_io_manager.lake().root)
    split_config = reward_settings.split_config()
    near = split_config.near_duplicates
    day, slug = split_cell_key(context.partition_key)
    lake = parquet_io_manager.lake()
    # The table only holds consented rows (its own blocking check); deciding again with today's
    # policy keeps a consent bug upstream, or a registry change since, from reaching a training row.
    policy = erasure.policy(trace_source.load_registry(), parquet_io_manager.lake().root)
    builder: RewardDatasetBuilder | None = None

    def plan(reference: Any) -> Any:
        nonlocal builder
        builder = RewardDatasetBuilder(
            reward_config,
            split_config,
            RewardLineage(iceberg_snapshot_id=getattr(iceberg_table, "snapshot_id", None)),
            # split_key = HMAC(erasure salt, group key): stable across runs, never the raw user id.
            key_salt=ledger.salt,
            reference=reference,
        )
        plan_columns = list(dict.fromkeys([*builder.plan_columns, *CONSENT_COLUMNS]))
        builder.plan(consented_only(scan_batches(iceberg_table, plan_columns, READ_BATCH_ROWS), InputStats(), policy))
        return builder.split_plan

    def planned_ids() -> Iterator[pa.RecordBatch]:
        ids = scan_batches(iceberg_table, list(dict.fromkeys([*INDEX_ID_COLUMNS, *CONSENT_COLUMNS])), READ_BATCH_ROWS)
        return consented_only(ids, InputStats(), policy)

    if near is None:
        plan(None)
        index_metadata = {}
    else:
        # Near duplicates across cells, also with cells planned at the same time (near_dup_lake.py).
        index_metadata = near_dup.plan_against_index(lake, day, slug, near, plan, planned_ids, context.log.info)
    assert builder is not None
    # The score cells are read alongside the second pass, in the order the scorers wrote them (the
    # order of this scan), a batch at a time: looked up by key only where that order does not hold.
    builder.scores = ScoresInCellOrder(
        judge=lambda: _score_table(judge_scores, JUDGE_COLUMNS), ragas=lambda: _score_table(ragas_scores, RAGAS_COLUMNS)
    )
    row_stats = InputStats()
    rows = consented_only(
        scan_batches(iceberg_table, list(iceberg_table.schema.names), READ_BATCH_ROWS), row_stats, policy
    )
    committed = iceberg_io_manager.publish(context, CellStream(builder.batches(rows), REWARD_DATASET_SCHEMA))
    published = committed.cell
    yield dg.Output(
        committed,
        metadata=_markdown(
            {
                **builder.metadata(),
                **index_metadata,
                "iceberg_snapshot_id": getattr(iceberg_table, "snapshot_id", None),
                "upstream_rows": row_stats.rows_read,
                "rows_skipped_without_consent": row_stats.rows_without_consent,
                # scorers whose cell was not in this scan's order (joined by key: the whole cell in memory)
                "scores_joined_by_key": ", ".join(builder.scores.joined_by_key) or "none",
                **reward_numbers(published),
                **published_metadata(
                    published,
                    REWARD_DATASET_SCHEMA,
                    lineage=reward_lineage(reward_config, traces="iceberg_table", judge="judge_scores", ragas="ragas_scores"),
                ),
            }
        ),
    )
    def read(columns: list[str]):
        return published.to_batches(columns=columns)

    yield check_result("final_reward_in_range", dataset_checks.check_final_reward_range(read(["trace_id", "final_reward"])))
    yield check_result("no_group_in_both_splits", dataset_checks.check_no_group_in_both_splits(read(["split_key", "split"])))
    yield check_result(
        "no_user_in_both_splits",
        # Offending users are named only by the erasure audit's salted hash: the event log cannot be erased.
        dataset_checks.check_no_group_in_both_splits(read(["user_id", "split"]), "user_id", ledger.user_hash),
    )
    yield check_result("consent_lineage", dataset_checks.check_consent_lineage(read(["consent", "consent_source"])))


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="parquet_io_manager",
    group_name="dataset",
    kinds={"parquet"},
    metadata={"lake_dataset": REWARD_LAKE_DATASET},
    description="The reward_dataset cell as Parquet in the warehouse lake (reward-dataset/date=D/model=M/).",
)
def reward_dataset_parquet(
    context: dg.AssetExecutionContext,
    reward_dataset: Any,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
) -> dg.Output[PublishedLakeCell]:
    schema = reward_dataset.schema
    published = parquet_io_manager.publish(context, CellStream(iter(reward_dataset.to_batches()), schema))
    return dg.Output(
        published,
        metadata={
            "iceberg_snapshot_id": reward_dataset.snapshot_id,
            **published_metadata(published.dataset, schema, lineage=same_columns("reward_dataset", schema)),
        },
    )


def _route_splits(batch: pa.RecordBatch) -> dict[str, pa.RecordBatch]:
    parts = exports.by_split(pa.Table.from_batches([batch]))
    return {name: part.combine_chunks().to_batches()[0] for name, part in parts.items() if part.num_rows}


# One folder per split, so trainers load ``train/*.parquet`` and ``test/*.parquet``; a split
# without rows still gets a file (empty, with the schema), so those patterns always resolve.
_split_files = FixedSplit(_route_splits, exports.EXPORT_SPLITS)


def _export_cell(
    context: dg.AssetExecutionContext,
    io_manager: ParquetLakeIOManager,
    reward_cell: Any,
    build: Callable[..., pa.Table],
    schema: pa.Schema,
) -> dg.Output[PublishedLakeCell]:
    skipped: Counter = Counter()
    rows = Counter()

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reward_cell.to_batches(batch_size=READ_BATCH_ROWS):
            table = build(batch, skipped=skipped)
            rows.update(table.column("split").to_pylist())
            for part in table.to_batches():
                yield part

    published = io_manager.publish(context, CellStream(batches(), schema, split=_split_files))
    return dg.Output(
        published,
        metadata={
            "rows_by_split": dict(rows),
            **flat_numbers("rows", {split: rows.get(split, 0) for split in exports.EXPORT_SPLITS}),
            "rows_skipped": dict(skipped),
            "iceberg_snapshot_id": reward_cell.snapshot_id,
            "format_reference": exports.TRL_DATASET_FORMATS_URL,
            **published_metadata(published.dataset, schema),
        },
    )


def _export_asset(name: str, build: Callable[..., pa.Table], schema: pa.Schema, description: str):
    @dg.asset(
        name=f"{name}_export",
        partitions_def=cell_partitions,
        io_manager_key="parquet_io_manager",
        group_name="dataset",
        kinds={"parquet"},
        metadata={"lake_dataset": EXPORT_DATASETS[name]},
        description=description,
    )
    def _export(
        context: dg.AssetExecutionContext,
        reward_dataset: Any,
        parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
    ) -> dg.Output[PublishedLakeCell]:
        return _export_cell(context, parquet_io_manager, reward_dataset, build, schema)

    return _export


sft_export = _export_asset(
    "sft",
    exports.sft_table,
    exports.sft_schema(),
    "TRL SFT (conversational language modeling: messages) from the preferred rows of reward_dataset.",
)
kto_export = _export_asset(
    "kto",
    exports.kto_table,
    exports.kto_schema(),
    "TRL KTO (unpaired preference: prompt / completion / label) — preferred → true, non_preferred → false.",
)
grpo_export = _export_asset(
    "grpo",
    exports.grpo_table,
    exports.grpo_schema(),
    "TRL GRPO (prompt-only) with the logged response as reference and reward columns for reward functions.",
)
router_export = _export_asset(
    "router",
    exports.router_table,
    exports.ROUTER_SCHEMA,
    "LLMRouter training rows: query, model_name, performance (= final_reward), response_time, token_num.",
)

DPO_CHECK = "dpo_pairs_valid"


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="parquet_io_manager",
    group_name="dataset",
    kinds={"parquet"},
    metadata={"lake_dataset": EXPORT_DATASETS["dpo"]},
    check_specs=[
        cell_check_spec(
            DPO_CHECK, "dpo_export", "Every pair has chosen ≠ rejected and margin = chosen − rejected ≥ the minimum."
        )
    ],
    description="TRL DPO (preference: prompt / chosen / rejected, conversational) with a margin column: responses to "
    "the same or a near-identical prompt, within one split.",
)
def dpo_export(
    context: dg.AssetExecutionContext,
    reward_dataset: Any,
    reward_settings: RewardDatasetResource,
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
):
    config = reward_settings.pair_config()
    # Pairing needs the whole cell, but only the few columns pairs are built from.
    cell = _pair_inputs(reward_dataset)
    pairs, stats = build_pairs(cell, config)
    table = exports.dpo_table(pairs)
    stream = CellStream(iter(table.to_batches()), table.schema, split=_split_files)
    published = parquet_io_manager.publish(context, stream)
    yield dg.Output(
        published,
        metadata={
            **stats.as_metadata(),
            "min_margin": config.min_margin,
            "max_pairs_per_prompt": config.max_pairs_per_prompt,
            "iceberg_snapshot_id": reward_dataset.snapshot_id,
            "format_reference": exports.TRL_DATASET_FORMATS_URL,
            **published_metadata(published.dataset, table.schema),
        },
    )
    yield check_result(DPO_CHECK, dataset_checks.check_dpo_pairs(published.dataset, config.min_margin))


def _pair_inputs(reward_cell: Any) -> pa.Table:
    columns = [name for name in PAIR_INPUT_COLUMNS if name in reward_cell.schema.names]
    schema = pa.schema([reward_cell.schema.field(name) for name in columns])
    return pairable_rows(reward_cell.to_batches(columns=columns, batch_size=READ_BATCH_ROWS), schema)


EXPORT_ASSETS = [sft_export, dpo_export, kto_export, grpo_export, router_export]


@dg.asset(
    partitions_def=cell_partitions,
    group_name="dataset",
    kinds={"langfuse"},
    # After the exports too: a failed blocking check anywhere in the cell's run (dpo_pairs_valid,
    # the reward checks, every check upstream) skips this step, so nothing is sent.
    deps=[reward_dataset_parquet, *EXPORT_ASSETS],
    check_specs=[
        cell_check_spec(
            WRITE_BACK_CHECK, "langfuse_scores", "Warns when the opt-in Langfuse write-back of final_reward failed.", False
        )
    ],
    description="Opt-in (MATERIALIZER_LANGFUSE_WRITE_SCORES): each reward row's final_reward written back to "
    "Langfuse as the score 'final_reward', one per example (deterministic ids: re-runs overwrite), on the "
    "observation only when its id is Langfuse's own. Runs only after every blocking check of the cell passed.",
)
def langfuse_scores(
    context: dg.AssetExecutionContext, reward_dataset: Any, reward_settings: RewardDatasetResource
):
    if not reward_settings.langfuse_write_scores:
        outcome = base_checks.CheckOutcome(True, "Langfuse write-back disabled (MATERIALIZER_LANGFUSE_WRITE_SCORES)", {})
    else:
        try:
            outcome = _write_back(reward_dataset, reward_settings.reward_config().spec())
        except Exception as exc:  # the dataset is written; a Langfuse outage only warns
            context.log.warning(f"Langfuse write-back failed: {type(exc).__name__}: {exc}")
            outcome = base_checks.CheckOutcome(False, f"Langfuse write-back failed: {type(exc).__name__}: {exc}", {})
    metadata = {
        "enabled": reward_settings.langfuse_write_scores,
        "rows": outcome.metadata.get("langfuse_scores_written", 0),
        "iceberg_snapshot_id": getattr(reward_dataset, "snapshot_id", None),
        **{k: v for k, v in outcome.metadata.items() if k != "langfuse_scores_written"},
    }
    metadata.update(row_count_metadata(metadata["rows"]))
    yield dg.MaterializeResult(metadata=metadata)
    yield check_result(WRITE_BACK_CHECK, outcome, blocking=False)


ASSETS = [reward_dataset, reward_dataset_parquet, *EXPORT_ASSETS, langfuse_scores]
