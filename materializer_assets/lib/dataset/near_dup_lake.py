"""The cross-cell near-duplicate index in the lake (its rows: see near_duplicate_index.py).

``reward_dataset`` reads every other cell's index before planning its splits
(:func:`load_other_cells`) and replaces its own cell of the index once its rows
are published (:func:`publish_cell`). The index is a Parquet lake dataset keyed
by ``user_id`` and ``trace_id``; the pipeline registers it for GDPR erasure.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import pyarrow as pa

from ..erasure import LakeDatasetOutput
from ..lake import CellAddress, ParquetLake
from .near_duplicate_index import INDEX_DATASET, index_schema, load_reference, with_spec
from .near_duplicates import NearDuplicateConfig, NearDuplicateReference
from .splits import SplitPlan

def _cells(lake: ParquetLake) -> list[CellAddress]:
    return LakeDatasetOutput(lake, INDEX_DATASET).cells()


def load_other_cells(
    lake: ParquetLake, day: str, slug: str, config: NearDuplicateConfig
) -> tuple[NearDuplicateReference, dict]:
    """The signatures every other cell published, and metadata about them."""
    tables, cells = [], 0
    for address in _cells(lake):
        if (address.date, address.model_slug) == (day, slug):
            continue  # this cell's own entries are replaced by this run
        try:
            tables.append(lake.open_cell(address).to_table())
        except Exception:  # noqa: BLE001 — a cell without a published version (being written) has nothing yet
            continue
        cells += 1
    reference, ignored = load_reference(tables, config)
    return reference, {
        "near_dup_index_cells_read": cells,
        "near_dup_index_train_rows_read": len(reference.train_sig),
        "near_dup_index_test_rows_read": len(reference.test_sig),
        "near_dup_index_rows_ignored_other_spec": ignored,
    }


def publish_cell(
    lake: ParquetLake, day: str, slug: str, plan: SplitPlan, rows: Iterable[pa.RecordBatch], config: NearDuplicateConfig
) -> int:
    """Replace this cell of the index with the published rows' signatures (``rows``: trace_id,
    observation_id, user_id of the published reward cell). Returns the rows written."""
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
