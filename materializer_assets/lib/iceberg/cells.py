"""One cell replaced at a time: its new files written or copied, then one commit.

**Writing a cell** (measured, see docs/iceberg.md and docs/performance.md): files are
written (or, when consented_parquet already wrote them, *copied*) into the
table's own data folder under new names, then one transaction deletes the
cell's old files and registers the new ones with ``add_files``. Copying
costs no Parquet encoding: 0.15–0.20 s vs 2.4–2.8 s for ``overwrite`` of a
200k-row, 163 MB cell on local disk (1.1–2.4 s vs 7.9–8.6 s on S3), and no
extra memory (``overwrite`` holds the cell: +1.5 GB); the copies belong to the table, so the
Parquet lake may delete its own files whenever it re-publishes. Only the
commit is retried on a concurrent-commit conflict; the files stay written.
Every row and every file is first checked to belong to the cell.
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.table import Table

from .base import Cell, CellMismatchError, IncompatibleSchemaError, _commit_attempts, _snapshot_id
from .tables import _cell_folder, _plain_type, ensure_metrics_properties, evolve_schema, table_arrow_schema, table_filesystem
from .writing import _CellFileWriter, _copy_file, _delete_quietly

SNAPSHOT_CELL_PROPERTY = "materializer.cell"
SNAPSHOT_METHOD_PROPERTY = "materializer.method"


@dataclass
class CellCommit:
    """What a cell write committed (the output metadata)."""

    table: str
    cell: Cell
    snapshot_id: int | None
    rows: int
    files: int
    bytes: int
    method: str  # "copy" (files copied as they are) or "write" (batches encoded here)
    columns_added: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_metadata(self) -> dict:
        return {
            "table": self.table,
            "snapshot_id": self.snapshot_id,
            "rows": self.rows,
            "files": self.files,
            "bytes": self.bytes,
            "write_method": self.method,
            "columns_added": ", ".join(self.columns_added),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ParquetCellFiles:
    """Parquet files that already hold exactly one cell, e.g. consented_parquet's published files.

    The Iceberg IO manager copies them into the table (no decoding or
    encoding) when their schema fits the table, else rewrites their rows.
    """

    paths: list[str]
    filesystem: pafs.FileSystem
    schema: pa.Schema

    @classmethod
    def from_dataset(cls, dataset: ds.FileSystemDataset) -> "ParquetCellFiles":
        return cls(list(dataset.files), dataset.filesystem, dataset.schema)


def conform_batch(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """``batch`` as exactly ``target`` (order, types; missing columns null), checking required ones."""
    columns = []
    for f in target:
        if f.name in batch.schema.names:
            column = batch.column(f.name)
            if not column.type.equals(f.type):
                try:
                    column = column.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    # Arrow's message may quote the value (a prompt, a user id): it would end up in the
                    # run's failure event, which cannot be erased. Name the column and the types only.
                    raise IncompatibleSchemaError(
                        f"column {f.name!r}: cannot write {column.type} as {f.type} ({type(exc).__name__})"
                    ) from None
        else:
            column = pa.nulls(batch.num_rows, f.type)
        if not f.nullable and column.null_count:
            raise IncompatibleSchemaError(
                f"column {f.name!r} is required in the table but {column.null_count} row(s) are null"
            )
        columns.append(column)
    extra = [name for name in batch.schema.names if name not in target.names]
    if extra:
        raise IncompatibleSchemaError(f"columns not in the table: {extra} (evolve the schema first)")
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _check_batch_in_cell(batch: pa.RecordBatch, cell: Cell) -> None:
    for name, expected in (("date", cell.date), ("model_slug", cell.model_slug)):
        column = batch.column(name)
        matches = pc.sum(pc.fill_null(pc.equal(column, expected), False)).as_py() or 0
        if matches != batch.num_rows:
            others = sorted({str(v) for v in pc.unique(column).to_pylist() if v != expected})[:5]
            raise CellMismatchError(
                f"{batch.num_rows - matches} row(s) for cell {cell.key} have {name} other than {expected!r} ({others})"
            )


def _commit_cell(table: Table, cell: Cell, paths: list[str], snapshot_properties: Mapping[str, str]) -> Table:
    """One transaction: drop the cell's current files, register ``paths``. Retried on conflicts."""
    properties = dict(snapshot_properties)
    for attempt in _commit_attempts():
        with attempt:
            table.refresh()
            with table.transaction() as transaction:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Delete operation did not match any records")
                    transaction.delete(cell.filter(), snapshot_properties=properties)
                if paths:
                    # Fresh uuid names cannot be referenced already: skip the full-table check.
                    transaction.add_files(paths, snapshot_properties=properties, check_duplicate_files=False)
    return table


def replace_cell_from_batches(
    table: Table,
    cell: Cell,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    snapshot_properties: Mapping[str, str] | None = None,
    guard: Callable[[pa.RecordBatch], None] | None = None,
) -> CellCommit:
    """Replace ``cell`` with the rows streamed in ``batches`` (all of which must belong to it)."""
    started = datetime.now(timezone.utc)
    added = evolve_schema(table, schema)
    ensure_metrics_properties(table)  # new columns too: before any file is written or registered
    target = table_arrow_schema(table)
    writer = _CellFileWriter(table, cell, target)
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if guard is not None:
                guard(batch)
            _check_batch_in_cell(batch, cell)
            writer.write(conform_batch(batch, target))
        paths = writer.close()
        properties = {SNAPSHOT_CELL_PROPERTY: cell.key, SNAPSHOT_METHOD_PROPERTY: "write", **(snapshot_properties or {})}
        _commit_cell(table, cell, paths, properties)
    except BaseException:
        writer.abort()
        raise
    return CellCommit(
        table=".".join(table.name()),
        cell=cell,
        snapshot_id=_snapshot_id(table),
        rows=writer.rows,
        files=len(paths),
        bytes=writer.bytes,
        method="write",
        columns_added=added,
        seconds=(datetime.now(timezone.utc) - started).total_seconds(),
    )


def _file_cell_values(metadata: pq.FileMetaData, column: str) -> set | None:
    """Distinct values of ``column`` per the footer statistics, or None if they are missing."""
    index = None
    for i in range(metadata.num_columns):
        if metadata.schema.column(i).path == column:
            index = i
            break
    if index is None:
        return {None}
    values: set = set()
    for r in range(metadata.num_row_groups):
        chunk = metadata.row_group(r).column(index)
        stats = chunk.statistics
        if stats is None or not stats.has_min_max or not stats.has_null_count:
            return None
        if stats.null_count:
            values.add(None)
        if stats.min != stats.max:
            values.update({stats.min, stats.max, "…"})
        values.add(stats.min)
    return values


def _copyable(file_schema: pa.Schema, table_schema: pa.Schema) -> bool:
    """add_files accepts the file as it is: same types, no required column optional or missing."""
    for f in table_schema:
        if f.name not in file_schema.names:
            if not f.nullable:
                return False
            continue
        ff = file_schema.field(f.name)
        if not _plain_type(ff.type).equals(f.type):
            return False
        if not f.nullable and ff.nullable:
            return False
    return all(name in table_schema.names for name in file_schema.names)


def replace_cell_from_files(
    table: Table,
    cell: Cell,
    files: ParquetCellFiles,
    snapshot_properties: Mapping[str, str] | None = None,
) -> CellCommit:
    """Replace ``cell`` with the rows of Parquet files that hold exactly that cell.

    The files are copied byte for byte into the table's data folder and
    registered with ``add_files`` (their partition is read from their column
    statistics, so each file is first checked to hold only this cell). Files
    whose schema does not fit the table as they are fall back to a rewrite.
    """
    started = datetime.now(timezone.utc)
    source_fs = files.filesystem
    footers = []
    for path in files.paths:
        with source_fs.open_input_file(path) as handle:
            footers.append((path, pq.read_metadata(handle)))
    footers = [(path, meta) for path, meta in footers if meta.num_rows > 0]
    for path, meta in footers:
        _check_file_in_cell(path, meta, cell, source_fs)
    file_schema = files.schema
    if footers:
        file_schema = footers[0][1].schema.to_arrow_schema()
    added = evolve_schema(table, file_schema)
    ensure_metrics_properties(table)  # add_files computes each file's metrics from these
    target = table_arrow_schema(table)
    if not all(_copyable(meta.schema.to_arrow_schema(), target) for _, meta in footers):
        dataset = ds.dataset([p for p, _ in footers], format="parquet", filesystem=source_fs)
        commit = replace_cell_from_batches(
            table, cell, dataset.to_batches(batch_size=32_768), dataset.schema, snapshot_properties
        )
        commit.columns_added = added + commit.columns_added
        return commit

    folder = _cell_folder(table, cell)
    token = uuid.uuid4().hex
    io = table.io
    try:
        destination_fs = table_filesystem(table)
    except Exception:  # a FileIO without a filesystem we can reach: stream through io
        destination_fs = None
    written: list[str] = []
    total_bytes = 0
    rows = 0
    try:
        for index, (path, meta) in enumerate(footers):
            destination = f"{folder}/{token}-{index:05d}.parquet"
            written.append(destination)
            total_bytes += _copy_file(source_fs, path, io, destination, destination_fs)
            rows += meta.num_rows
        properties = {SNAPSHOT_CELL_PROPERTY: cell.key, SNAPSHOT_METHOD_PROPERTY: "copy", **(snapshot_properties or {})}
        _commit_cell(table, cell, written, properties)
    except BaseException:
        _delete_quietly(io, written)
        raise
    return CellCommit(
        table=".".join(table.name()),
        cell=cell,
        snapshot_id=_snapshot_id(table),
        rows=rows,
        files=len(written),
        bytes=total_bytes,
        method="copy",
        columns_added=added,
        seconds=(datetime.now(timezone.utc) - started).total_seconds(),
    )


def _check_file_in_cell(path: str, meta: pq.FileMetaData, cell: Cell, filesystem: pafs.FileSystem) -> None:
    for name, expected in (("date", cell.date), ("model_slug", cell.model_slug)):
        values = _file_cell_values(meta, name)
        if values is None:  # no statistics: read the column itself
            column = pq.read_table(path, columns=[name], filesystem=filesystem).column(name)
            values = set(pc.unique(column).to_pylist())
        if values != {expected}:
            shown = sorted(str(v) for v in values)[:5]
            raise CellMismatchError(f"{path} is not only cell {cell.key}: {name} has {shown}")
