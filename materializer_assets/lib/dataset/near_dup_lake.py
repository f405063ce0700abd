"""The cross-cell near-duplicate index in the lake (its rows: see near_duplicate_index.py).

``reward_dataset`` reads every other cell's index before planning its splits
(:func:`load_other_cells`), replaces its own cell of the index with the rows its
plan keeps (:func:`publish_cell`) *before* it writes those rows, then looks at
the index cells that changed since it read them (:func:`conflicts_since`): a
cell planned at the same time. If one of them holds a near duplicate across
splits of a kept row, the cell plans again (see :mod:`.near_duplicate_index`).
The index is a Parquet lake dataset keyed by ``user_id`` and ``trace_id``; the
pipeline registers it for GDPR erasure.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import pyarrow as pa

from ..erasure import LakeDatasetOutput
from ..lake import CellAddress, CellNotMaterialized, ParquetLake, iter_batches
from .near_duplicate_index import INDEX_DATASET, REFERENCE_COLUMNS, index_schema, load_reference, with_spec
from .near_duplicates import NearDuplicateConfig, NearDuplicateReference, cross_split_matches
from .splits import SplitPlan

def _cells(lake: ParquetLake) -> list[CellAddress]:
    return LakeDatasetOutput(lake, INDEX_DATASET).cells()


# A cell of the index as read: its manifest version, by (date, model slug).
IndexVersions = dict[tuple[str, str], str]


def _load_others(
    lake: ParquetLake, day: str, slug: str, config: NearDuplicateConfig, unless_seen: IndexVersions | None = None
) -> tuple[NearDuplicateReference, int, IndexVersions]:
    """The reference made of the index cells other than (day, slug), the rows ignored (another
    spec), and the version of each cell read; with ``unless_seen``, only the cells whose version
    is not the one seen there (new or re-published since). Streamed a row group at a time."""
    parts, ignored, versions = [], 0, {}
    for address in _cells(lake):
        key = (address.date, address.model_slug)
        if key == (day, slug):
            continue  # this cell's own entries are replaced by this run
        try:
            manifest = lake.manifest(address)
        except CellNotMaterialized:
            continue  # being written for the first time: nothing published yet
        version = str(manifest.get("version"))
        if unless_seen is not None and unless_seen.get(key) == version:
            continue
        try:
            cell = lake.open_cell(address, manifest=manifest)
            reference, skipped = load_reference([iter_batches(cell, REFERENCE_COLUMNS)], config)
        except OSError:
            continue  # replaced while read: the version after it is read by whoever checks next
        parts.append(reference)
        ignored += skipped
        versions[key] = version
    return NearDuplicateReference.concat(parts, config.num_perm, config.lsh_params().bands), ignored, versions


def load_other_cells(
    lake: ParquetLake, day: str, slug: str, config: NearDuplicateConfig
) -> tuple[NearDuplicateReference, dict, IndexVersions]:
    """The signatures every other cell published, metadata about them, and the version of
    each cell read (for :func:`conflicts_since`)."""
    reference, ignored, versions = _load_others(lake, day, slug, config)
    return reference, {
        "near_dup_index_cells_read": len(versions),
        "near_dup_index_train_rows_read": len(reference.train_sig),
        "near_dup_index_test_rows_read": len(reference.test_sig),
        "near_dup_index_rows_ignored_other_spec": ignored,
    }, versions


def conflicts_since(
    lake: ParquetLake, day: str, slug: str, seen: IndexVersions, plan: SplitPlan, config: NearDuplicateConfig
) -> tuple[int, int]:
    """``(index cells changed since seen, kept distinct prompts of plan that near-duplicate a
    row of the other split in one of them)``. Call after :func:`publish_cell`: of two cells
    planned at once, the one that calls this second sees the other's entries."""
    other, _, versions = _load_others(lake, day, slug, config, unless_seen=seen)
    if not versions:
        return 0, 0
    own = plan.published
    return len(versions), (cross_split_matches(own, other, config) if own is not None else 0)


def publish_cell(
    lake: ParquetLake, day: str, slug: str, plan: SplitPlan, rows: Iterable[pa.RecordBatch], config: NearDuplicateConfig
) -> int:
    """Replace this cell of the index with the signatures of the rows ``plan`` keeps in train or
    test (``rows``: trace_id, observation_id and user_id of the rows planned, or of the reward
    cell written from the plan). Returns the rows written."""
    written = {"rows": 0}

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in rows:
            table = plan.index_rows(batch)
            if table is None or not table.num_rows:
                continue
            table = with_spec(table, config)
            written["rows"] += table.num_rows
            yield from table.to_batches()

    lake.write_cell(CellAddress(INDEX_DATASET, day, slug), batches(), index_schema(config.num_perm))
    return written["rows"]


# Plans of a cell while other cells publish conflicting index entries, before giving up.
PLAN_ATTEMPTS = 3


class NearDuplicateIndexConflict(RuntimeError):
    """Cells planned at the same time kept publishing near duplicates of this cell's kept rows."""


def plan_against_index(
    lake: ParquetLake,
    day: str,
    slug: str,
    config: NearDuplicateConfig,
    plan: Callable[[NearDuplicateReference], SplitPlan | None],
    planned_ids: Callable[[], Iterable[pa.RecordBatch]],
    log: Callable[[str], None] | None = None,
    attempts: int = PLAN_ATTEMPTS,
) -> dict:
    """Plan this cell against the index of every other cell and publish its own entries, safe
    against cells planned at the same time; returns metadata.

    ``plan(reference)`` makes the split plan; ``planned_ids()`` streams trace_id, observation_id
    and user_id of the rows planned. The cell's entries are published *before* its rows are
    written; then the index cells published since they were read are checked against the plan
    (:func:`conflicts_since`), and a conflict across splits means planning again against them.
    After ``attempts`` plans in conflict: :class:`NearDuplicateIndexConflict` (nothing written
    but the index entries, which a run of the cell replaces)."""
    metadata: dict = {}
    for attempt in range(1, attempts + 1):
        reference, metadata, seen = load_other_cells(lake, day, slug, config)
        split_plan = plan(reference)
        if split_plan is None:
            return metadata
        publish_cell(lake, day, slug, split_plan, planned_ids(), config)
        changed, conflicts = conflicts_since(lake, day, slug, seen, split_plan, config)
        metadata.update(
            near_dup_plan_attempts=attempt,
            near_dup_index_cells_published_while_planning=changed,
            near_dup_prompts_in_conflict_with_cells_planned_meanwhile=conflicts,
        )
        if not conflicts:
            return metadata
        if log is not None and attempt < attempts:
            log(
                f"{conflicts} kept prompt(s) near-duplicate rows of the other split in {changed} index cell(s) "
                f"published while this cell planned: planning again ({attempt + 1} of {attempts})"
            )
    raise NearDuplicateIndexConflict(
        f"the near-duplicate index kept changing under this cell's plan ({attempts} plans, "
        f"{metadata['near_dup_prompts_in_conflict_with_cells_planned_meanwhile']} prompt(s) in conflict in the "
        "last); nothing was written to the reward table: run the cell again"
    )
