"""GDPR erasure of the DPO export, whose rows belong to two traces.

``reward_dataset`` (Iceberg, keyed by user_id), ``reward-dataset/`` and the
SFT/KTO/GRPO/router exports (Parquet, keyed by user_id or trace_id) are found
by the erasure job from their asset metadata. A DPO pair has neither column:
it holds ``chosen_trace_id`` and ``rejected_trace_id``, so
:class:`PairedTracesOutput` drops every pair either side of which belongs to
an erased user (half a pair is no pair), and verifies both columns.
"""

from __future__ import annotations

import posixpath
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..erasure import ErasureTargets, LakeDatasetOutput, OutputErasure
from ..lake import STAGING_DIR, CellAddress, keep_fixed_subpaths

PAIR_TRACE_COLUMNS = ("chosen_trace_id", "rejected_trace_id")


def _pair_mask(table: pa.Table | pa.RecordBatch, values: pa.Array) -> pa.Array:
    masks = [pc.fill_null(pc.is_in(table.column(c), value_set=values), False) for c in PAIR_TRACE_COLUMNS]
    return pc.or_(*masks)


class PairedTracesOutput(LakeDatasetOutput):
    """A lake dataset whose rows name two traces (``chosen_trace_id``, ``rejected_trace_id``)."""

    def __init__(self, lake, dataset: str, **kwargs) -> None:
        super().__init__(lake, dataset, **kwargs)
        # Not "lake:<dataset>": the erasure job keeps that name for the plain output it discovers.
        self.name = f"lake:{dataset}#pairs"

    def trace_ids_of(self, user_ids: frozenset[str]) -> set[str]:
        return set()

    def erase(self, targets: ErasureTargets) -> OutputErasure:
        result = OutputErasure(self.name, self.kind, ",".join(PAIR_TRACE_COLUMNS))
        if not targets.trace_ids:
            return result
        values = pa.array(sorted(targets.trace_ids), pa.string())
        for address in self.cells():
            removed = self._erase_pairs(address, values)
            if removed:
                result.rows_removed_by_cell[f"{address.date}|{address.model_slug}"] = removed
        return result

    def _erase_pairs(self, address: CellAddress, values: pa.Array) -> int:
        relative = self._published(address)
        if not relative:
            return 0
        fs = self.lake.filesystem
        cell = self.lake.cell_path(address)
        paths = [posixpath.join(cell, r) for r in relative]
        removed = sum(
            pc.sum(_pair_mask(pq.read_table(p, columns=list(PAIR_TRACE_COLUMNS), filesystem=fs), values)).as_py() or 0
            for p in paths
        )
        if not removed:
            return 0
        schema = pq.read_schema(paths[0], filesystem=fs)
        current = {"subpath": ""}

        def kept() -> Iterator[pa.RecordBatch]:
            for rel, path in zip(relative, paths):
                current["subpath"] = posixpath.dirname(rel)
                for batch in ds.dataset(path, format="parquet", filesystem=fs).to_batches(batch_size=32_768):
                    batch = batch.filter(pc.invert(_pair_mask(batch, values)))
                    if batch.num_rows:
                        yield batch

        # Keeps each file's split folder (train/, test/, an empty file when no pair is left); publishing stays atomic.
        split = keep_fixed_subpaths(lambda batch: {current["subpath"]: batch}, self.lake.manifest(address))
        self.lake.write_cell(address, kept(), schema, split=split)
        return removed

    def remaining(self, targets: ErasureTargets) -> int:
        if not targets.trace_ids:
            return 0
        values = pa.array(sorted(targets.trace_ids), pa.string())
        staging = posixpath.join(self.lake.root.path, STAGING_DIR)
        selector = pafs.FileSelector(staging, recursive=True, allow_not_found=True)
        files = self._all_parquet_files() + [
            i.path for i in self.lake.filesystem.get_file_info(selector) if i.path.endswith(".parquet")
        ]
        found = 0
        for path in files:
            try:
                schema = pq.read_schema(path, filesystem=self.lake.filesystem)
            except (OSError, pa.ArrowInvalid):
                continue
            if not set(PAIR_TRACE_COLUMNS) <= set(schema.names):
                continue
            table = pq.read_table(path, columns=list(PAIR_TRACE_COLUMNS), filesystem=self.lake.filesystem)
            found += pc.sum(_pair_mask(table, values)).as_py() or 0
        return found
