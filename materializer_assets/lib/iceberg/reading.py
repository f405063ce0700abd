"""Reading the table: one cell at one snapshot, streamed one row group at a time.

:class:`IcebergCell` is what downstream assets get for a cell; :func:`stream_scan`
reads any pyiceberg scan without holding whole files in memory (which
pyiceberg's own batch reader does, see its docstring).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pyarrow as pa
from pyiceberg.table import Table

from .base import Cell, _snapshot_id
from .tables import table_arrow_schema

def stream_scan(scan) -> Iterator[pa.RecordBatch]:
    """The batches of a pyiceberg ``DataScan``, one file after the other, ``READ_BATCH_ROWS`` rows at a time.

    ``scan.to_arrow_batch_reader()`` hands each data file to a thread pool that
    reads it whole (``list(...)`` per file task) and submits every file at once
    (apache/iceberg-python#3036), so a 1M-row cell's text would be in memory
    before its first batch; and its per-file scanner reads 16 batches ahead.
    Here a Parquet task the filter selects whole (its residual is always-true, as
    for the cell filter on the identity-partitioned ``date`` / ``model_slug``) and
    without delete files is read a batch of rows at a time with the projected
    columns (absent ones, from files written before a column was added, as
    nulls); any other task goes through pyiceberg's own per-file reader (deletes,
    residual filter, projection by field id), lazily, in this thread. Falls back
    to the public reader if a pyiceberg release moves those internals.
    """
    try:
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan, _read_all_delete_files, schema_to_pyarrow
        from pyiceberg.manifest import FileFormat

        tasks = list(scan.plan_files())
        projected = scan.projection()
        target = schema_to_pyarrow(projected, include_field_ids=False)
        reader = ArrowScan(scan.table_metadata, scan.io, projected, scan.row_filter, scan.case_sensitive, scan.limit)
        deletes = _read_all_delete_files(scan.io, tasks)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another pyiceberg release
        yield from scan.to_arrow_batch_reader()
        return
    for task in tasks:
        whole = not task.delete_files and task.residual == AlwaysTrue() and task.file.file_format == FileFormat.PARQUET
        if whole and scan.limit is None:
            yield from _row_groups(scan.io, task.file.file_path, target)
        else:
            yield from reader._record_batches_from_scan_tasks_and_deletes([task], deletes)


# Rows decoded at a time from a data file: a trace row holds ~5 kB of text (a 2 kB prompt is
# in both messages and prompt) and each step makes a few copies of a batch's text, so 4,096-row
# batches cost reward_dataset ~110 MB more peak RSS than 1,024 (a 64 MB row group read whole,
# before that, cost ~130 MB per read).
READ_BATCH_ROWS = 1024


def _row_groups(io, path: str, target: pa.Schema, batch_rows: int = READ_BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """``path``'s rows with ``target``'s columns, decoded ``batch_rows`` at a time (row group by
    row group, a page at a time within one)."""
    import pyarrow.parquet as pq

    with io.new_input(path).open() as stream:
        # pre_buffer would cache every row group's column chunks until the file is done
        parquet = pq.ParquetFile(stream, pre_buffer=False)
        present = set(parquet.schema_arrow.names)
        columns = [name for name in target.names if name in present]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            if not batch.num_rows:
                continue
            # The file's own types (as pyiceberg's reader keeps them: no string → large_string copy).
            arrays = [
                batch.column(field.name) if field.name in present else pa.nulls(batch.num_rows, field.type)
                for field in target
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=pa.schema([f.with_type(a.type) for f, a in zip(target, arrays)]))


class IcebergCell:
    """A lazy read of one cell at one snapshot: what downstream assets get.

    Duck-types the parts of ``pyarrow.dataset.Dataset`` the pipeline uses
    (``schema``, ``to_batches(columns=, batch_size=)``, ``count_rows()``), adds
    ``to_reader()`` (a ``RecordBatchReader``) and ``snapshot_id`` for lineage.
    """

    def __init__(self, table: Table, cell: Cell, snapshot_id: int | None = None) -> None:
        self.table = table
        self.cell = cell
        self.snapshot_id = snapshot_id if snapshot_id is not None else _snapshot_id(table)
        self.identifier = ".".join(table.name())

    def __repr__(self) -> str:
        return f"IcebergCell({self.identifier}, {self.cell.key}, snapshot {self.snapshot_id})"

    @property
    def schema(self) -> pa.Schema:
        return table_arrow_schema(self.table)

    def _scan(self, columns: Sequence[str] | None = None):
        kwargs: dict[str, Any] = {"row_filter": self.cell.filter()}
        if columns is not None:
            kwargs["selected_fields"] = tuple(columns)
        if self.snapshot_id is not None:
            kwargs["snapshot_id"] = self.snapshot_id
        return self.table.scan(**kwargs)

    def to_batches(self, columns: Sequence[str] | None = None, batch_size: int = 32_768, **_: Any) -> Iterator[pa.RecordBatch]:
        if self.snapshot_id is None:
            return
        schema = self.schema
        target = pa.schema([schema.field(c) for c in columns]) if columns is not None else schema
        for batch in stream_scan(self._scan(columns)):
            if batch.num_rows == 0:
                continue
            batch = batch.select(target.names)
            if not batch.schema.equals(target):
                batch = pa.RecordBatch.from_arrays(
                    [col.cast(f.type) for col, f in zip(batch.columns, target)], schema=target
                )
            for offset in range(0, batch.num_rows, batch_size):
                yield batch.slice(offset, batch_size)

    def to_reader(self, columns: Sequence[str] | None = None) -> pa.RecordBatchReader:
        schema = self.schema
        target = pa.schema([schema.field(c) for c in columns]) if columns is not None else schema
        return pa.RecordBatchReader.from_batches(target, self.to_batches(columns))

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole cell in memory: for small cells and tests only."""
        return self.to_reader(columns).read_all()

    def count_rows(self) -> int:
        if self.snapshot_id is None:
            return 0
        return self._scan().count()

    def files(self) -> list[str]:
        if self.snapshot_id is None:
            return []
        return [task.file.file_path for task in self._scan().plan_files()]
