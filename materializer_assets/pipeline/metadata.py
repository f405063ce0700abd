"""Dagster's standard table metadata for a published cell, and flat numbers the UI can plot.

Dagster reads ``dagster/row_count``, ``dagster/partition_row_count``,
``dagster/column_schema``, ``dagster/table_name`` and ``dagster/column_lineage``
from a materialization (the keys of its ``TableMetadataSet``, which 1.13 does
not export, so the documented keys are written here): the catalog then shows
row counts, the asset page a schema tab and column lineage.

Each asset puts :func:`published_metadata` of the cell its IO manager's
``publish`` returned on its ``dg.Output``. Dagster plots only top-level
numbers over time, so counts kept in dicts are repeated as flat keys
(:func:`flat_numbers`) and a few means and shares are computed from the
published columns.

Counts, shares, means and column names only: never row contents, since
Dagster's event log cannot be erased (DESIGN §10).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.compute as pc

from ..lib.dataset.build import JUDGE_COLUMNS, RAGAS_COLUMNS
from ..lib.dataset.rewards import LABELS, RewardConfig
from ..lib.dataset.schema import PASSTHROUGH_COLUMNS
from ..lib.dataset.summary import UNLABELED
from ..lib.iceberg.reading import IcebergCell
from ..lib.scoring.schema import NOT_CONFIGURED, OK

ROW_COUNT = "dagster/row_count"
PARTITION_ROW_COUNT = "dagster/partition_row_count"
COLUMN_SCHEMA = "dagster/column_schema"
TABLE_NAME = "dagster/table_name"
COLUMN_LINEAGE = "dagster/column_lineage"

SHARE_DIGITS = 4


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    """Dagster's ``TableSchema`` of an Arrow schema: one column per field, Arrow's type name, nullability."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=str(field.type),
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
            )
            for field in schema
        ]
    )


def iceberg_table_name(cell: IcebergCell) -> str:
    """``catalog.namespace.table``: the fully qualified name Dagster matches tables by."""
    return f"{cell.table.catalog.name}.{cell.identifier}"


def same_columns(asset: str, schema: pa.Schema, names: Iterable[str] | None = None) -> dict[str, list[dg.TableColumnDep]]:
    """Lineage of columns copied unchanged from ``asset`` (each depends on its namesake there)."""
    wanted = set(schema.names if names is None else names) & set(schema.names)
    return {name: [dg.TableColumnDep(asset, name)] for name in schema.names if name in wanted}


def published_metadata(
    published: Any,
    declared_schema: pa.Schema,
    *,
    lineage: Mapping[str, list[dg.TableColumnDep]] | None = None,
) -> dict[str, Any]:
    """Dagster's standard metadata of the cell an IO manager published.

    ``published`` is the lake cell (a ``pyarrow.dataset.Dataset``) or the
    Iceberg cell (:class:`IcebergCell`); ``declared_schema`` stands in for a
    cell without files, which has no schema of its own. Both row counts are
    the cell's: every asset here is a day × model partition.
    """
    if isinstance(published, ds.FileSystemDataset):
        # A dataset of its own: counting caches each file's footer in its fragments, and the
        # checks must read the files as they are when they run, not as they were now.
        published = ds.dataset(published.files, schema=published.schema, format=published.format,
                               filesystem=published.filesystem)
    rows = published.count_rows()
    schema = published.schema if len(published.schema) else declared_schema
    metadata: dict[str, Any] = {
        ROW_COUNT: dg.MetadataValue.int(rows),
        PARTITION_ROW_COUNT: dg.MetadataValue.int(rows),
        COLUMN_SCHEMA: dg.MetadataValue.table_schema(table_schema(schema)),
    }
    if isinstance(published, IcebergCell):
        metadata[TABLE_NAME] = dg.MetadataValue.text(iceberg_table_name(published))
    if lineage:
        known = {name: deps for name, deps in lineage.items() if name in schema.names}
        metadata[COLUMN_LINEAGE] = dg.MetadataValue.column_lineage(dg.TableColumnLineage(known))
    return metadata


def row_count_metadata(rows: int) -> dict[str, Any]:
    """The standard row counts alone, for an asset that publishes no table (Langfuse scores)."""
    return {ROW_COUNT: dg.MetadataValue.int(rows), PARTITION_ROW_COUNT: dg.MetadataValue.int(rows)}


# --------------------------------------------------------------------- plottable numbers


def _key(name: Any) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "none"


def flat_numbers(prefix: str, values: Mapping[Any, Any]) -> dict[str, int | float]:
    """``flat_numbers("rows_dropped", {"duplicate": 2})`` → ``{"rows_dropped_duplicate": 2}``.

    Dagster plots only top-level numbers; the dict stays under its own key too.
    Entries that are not numbers are left out.
    """
    return {
        f"{prefix}_{_key(name)}": value
        for name, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def share(part: int | float, whole: int | float) -> float | None:
    return round(part / whole, SHARE_DIGITS) if whole else None


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """A share of nothing is no number: left out rather than plotted as 0."""
    return {key: value for key, value in values.items() if value is not None}


def _mean(values: pa.ChunkedArray | pa.Array) -> float | None:
    mean = pc.mean(values).as_py()
    return round(mean, SHARE_DIGITS) if mean is not None else None


def _columns(published: Any, columns: list[str]) -> pa.Table | None:
    schema = published.schema
    if not len(schema) or any(name not in schema.names for name in columns):
        return None
    wanted = pa.schema([schema.field(name) for name in columns])
    return pa.Table.from_batches(list(published.to_batches(columns=columns)), schema=wanted)


def score_numbers(published: Any, status_counts: Mapping[str, int], score_columns: Iterable[str]) -> dict[str, Any]:
    """A score cell's ok share (of the rows a scorer was asked about), its statuses as flat counts,
    and the mean of each score column over the rows that have one."""
    asked = sum(n for status, n in status_counts.items() if status != NOT_CONFIGURED)
    numbers: dict[str, Any] = {
        "ok_share": share(status_counts.get(OK, 0), asked),
        **flat_numbers("rows_status", status_counts),
    }
    columns = list(score_columns)
    table = _columns(published, columns)
    for name in columns:
        numbers[f"mean_{name}"] = _mean(table.column(name)) if table is not None else None
    return _without_none(numbers)


def reward_numbers(published: Any) -> dict[str, Any]:
    """A reward cell's mean final_reward, the share of rows per label and the mean reward per label
    (rows per split are the split plan's own keys)."""
    table = _columns(published, ["final_reward", "label"])
    if table is None or not table.num_rows:
        return {}
    rows = table.num_rows
    labels = pc.fill_null(table.column("label"), UNLABELED)
    numbers: dict[str, Any] = {"mean_final_reward": _mean(table.column("final_reward"))}
    for label in (*LABELS, UNLABELED):
        chosen = pc.equal(labels, label)
        numbers[f"share_{label}"] = share(pc.sum(chosen).as_py() or 0, rows)
        numbers[f"mean_final_reward_{label}"] = _mean(pc.filter(table.column("final_reward"), chosen))
    return _without_none(numbers)


# --------------------------------------------------------------------- column lineage


# What each scorer reads of a trace (lib.scoring: the judge's prompt; Ragas's question, answer, contexts).
SCORED_TEXT_COLUMNS = {"judge": ("prompt", "response"), "ragas": ("prompt", "response", "contexts")}
SCORE_IDENTITY_COLUMNS = ("trace_id", "observation_id", "content_hash", "date", "model_slug")


def score_lineage(
    scorer: str, traces: str, schema: pa.Schema, score_columns: Iterable[str]
) -> dict[str, list[dg.TableColumnDep]]:
    """A score cell's identity columns come from the traces; each score from the text the scorer read."""
    scored_text = [dg.TableColumnDep(traces, name) for name in SCORED_TEXT_COLUMNS[scorer]]
    return {**same_columns(traces, schema, SCORE_IDENTITY_COLUMNS), **{name: scored_text for name in score_columns}}


def reward_lineage(config: RewardConfig, *, traces: str, judge: str, ragas: str) -> dict[str, list[dg.TableColumnDep]]:
    """Where reward_dataset's columns come from: copied trace columns, the joined score columns,
    and final_reward / label / reward_source from the components the reward config counts."""
    lineage: dict[str, list[dg.TableColumnDep]] = {
        name: [dg.TableColumnDep(traces, name)]
        for name in PASSTHROUGH_COLUMNS
        if name not in JUDGE_COLUMNS.values() and name not in RAGAS_COLUMNS.values()
    }
    for asset, columns in ((judge, JUDGE_COLUMNS), (ragas, RAGAS_COLUMNS)):
        lineage.update({target: [dg.TableColumnDep(asset, source)] for source, target in columns.items()})
    feedback = [dg.TableColumnDep(traces, "feedback_score")]
    lineage["feedback_reward"] = feedback
    lineage["feedback_status"] = feedback
    components: list[dg.TableColumnDep] = []
    if "ragas" in config.scorers:
        components += [dg.TableColumnDep(ragas, "ragas_reward"), dg.TableColumnDep(ragas, "status")]
    if "judge" in config.scorers:
        components += [dg.TableColumnDep(judge, "judge_score"), dg.TableColumnDep(judge, "status")]
    if config.weights.feedback > 0:
        components += feedback
    for name in ("final_reward", "label", "reward_source", "unlabeled_reason"):
        lineage[name] = components
    return lineage
