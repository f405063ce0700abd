"""Data files into a cell's folder of the table: Parquet encoded from batches, or files copied as they are.

:class:`_CellFileWriter` streams batches into Parquet files with the table's
write properties (row group size, compression, no statistics where the table
keeps no metrics), encoding row groups on a few threads with bounded memory;
:func:`_copy_file` copies a finished file in (natively when both sides are the
same kind of store). Registering the files is :mod:`.cells`' job; files of a
failed write are deleted here (:func:`_delete_quietly`).
"""

from __future__ import annotations

import os
import uuid
from typing import Any, Callable, Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.table import Table

from .base import Cell
from .tables import METRICS_COLUMN_PREFIX, NO_METRICS, _cell_folder

# Free text and high-cardinality ids: no Parquet dictionary (it would not pay).
NO_DICTIONARY_COLUMNS = ("user_id", "session_id", "prompt", "response", "metadata", "tools")


class _Lane:
    """One output file at a time, encoded on its own thread (Parquet encoding releases the GIL)."""

    def __init__(self, owner: "_CellFileWriter", index: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.owner = owner
        self.index = index
        self.files = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"iceberg-writer-{index}")
        self.pending = None
        self.writer: pq.ParquetWriter | None = None
        self.sink = None
        self.rows = 0
        self.bytes = 0

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # re-raises the writer's error here

    def submit(self, table: pa.Table) -> None:
        self.wait()  # at most one row group in flight per lane: bounded memory
        self.pending = self.executor.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        owner = self.owner
        if self.writer is None:
            path = f"{owner.folder}/{owner.token}-{self.index:02d}{self.files:03d}.parquet"
            self.files += 1
            owner.paths.append(path)
            self.sink = owner.io.new_output(path).create(overwrite=True)
            self.writer = pq.ParquetWriter(self.sink, owner.schema, **owner.writer_options)
        self.writer.write_table(table, row_group_size=owner.row_group_rows)
        self.rows += table.num_rows
        if self.sink.tell() >= owner.target_file_bytes:
            self.close_file()

    def close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.bytes += self.sink.tell()
            self.sink.close()
            self.writer = self.sink = None

    def finish(self) -> None:
        try:
            self.wait()
            self.executor.submit(self.close_file).result()
        finally:
            self.executor.shutdown(wait=True)


class _CellFileWriter:
    """Streams batches into Parquet files in the table's data folder.

    Row groups go round-robin to ``lanes`` files encoded in parallel (pyiceberg's
    own ``overwrite`` also writes files in parallel); memory stays bounded at
    about one row group per lane plus the one being filled.
    """

    def __init__(self, table: Table, cell: Cell, schema: pa.Schema, lanes: int | None = None) -> None:
        properties = table.properties
        self.io = table.io
        self.folder = _cell_folder(table, cell)
        self.schema = schema
        self.token = uuid.uuid4().hex
        self.row_group_rows = int(properties.get("write.parquet.row-group-limit", "65536"))
        # Readers decode a batch of rows at a time, but a writer holds a row group per lane.
        self.row_group_bytes = 16 * 2**20
        self.target_file_bytes = int(properties.get("write.target-file-size-bytes", str(512 * 2**20)))
        level = properties.get("write.parquet.compression-level")
        # Columns whose metrics Iceberg does not keep need no Parquet statistics either.
        no_statistics = {
            key.removeprefix(METRICS_COLUMN_PREFIX)
            for key, value in properties.items()
            if key.startswith(METRICS_COLUMN_PREFIX) and value in ("counts", NO_METRICS)
        }
        self.writer_options = {
            "compression": properties.get("write.parquet.compression-codec", "zstd"),
            "compression_level": int(level) if level not in (None, "") else None,
            "write_statistics": [name for name in schema.names if name not in no_statistics],
            # Dictionaries pay on short repeated values, not on free text or nested lists.
            "use_dictionary": [
                f.name for f in schema if f.name not in NO_DICTIONARY_COLUMNS and not pa.types.is_nested(f.type)
            ],
        }
        self.paths: list[str] = []
        self._lanes = [_Lane(self, i) for i in range(lanes or max(1, min(2, os.cpu_count() or 1)))]
        self._next = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    @property
    def rows(self) -> int:
        return sum(lane.rows for lane in self._lanes)

    @property
    def bytes(self) -> int:
        return sum(lane.bytes for lane in self._lanes)

    def _flush(self, final: bool = False) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        rest = None
        if not final and table.num_rows > self.row_group_rows:
            # Full row groups only; the remainder starts the next one.
            table, rest = table.slice(0, self.row_group_rows), table.slice(self.row_group_rows)
        self._buffer, self._buffered_rows, self._buffered_bytes = [], 0, 0
        if rest is not None and rest.num_rows:
            self._buffer = rest.to_batches()
            self._buffered_rows, self._buffered_bytes = rest.num_rows, rest.nbytes
        self._lanes[self._next % len(self._lanes)].submit(table)
        self._next += 1

    def write(self, batch: pa.RecordBatch) -> None:
        self._buffer.append(batch)
        self._buffered_rows += batch.num_rows
        self._buffered_bytes += batch.nbytes
        if self._buffered_rows >= self.row_group_rows or self._buffered_bytes >= self.row_group_bytes:
            self._flush()

    def close(self) -> list[str]:
        self._flush(final=True)
        for lane in self._lanes:
            lane.finish()
        return list(self.paths)

    def abort(self) -> None:
        for lane in self._lanes:
            try:
                lane.finish()
            except Exception:  # the files are removed below anyway
                pass
        _delete_quietly(self.io, self.paths)


def _delete_quietly(io: Any, paths: Iterable[str]) -> None:
    for path in paths:
        try:
            io.delete(path)
        except Exception:  # an orphan at worst; purge_unreferenced_files removes it later
            pass


def _copy_file(
    source_fs: pafs.FileSystem,
    source: str,
    io: Any,
    destination: str,
    table_fs: tuple[pafs.FileSystem, Callable[[str], str]] | None = None,
    chunk: int = 8 * 2**20,
) -> int:
    """Copy one file into the table: natively when both sides are the same kind of store, else streamed."""
    if table_fs is not None:
        filesystem, to_path = table_fs
        same_kind = type(filesystem) is type(source_fs) and isinstance(filesystem, (pafs.LocalFileSystem, pafs.S3FileSystem))
        if same_kind:
            try:
                # Local: an OS-level copy; S3: a server-side CopyObject (no bytes through this process).
                filesystem.copy_file(source, to_path(destination))
                return filesystem.get_file_info(to_path(destination)).size or 0
            except OSError:
                pass  # e.g. the table's credentials cannot read the lake's bucket: stream it
    copied = 0
    with source_fs.open_input_stream(source) as reader, io.new_output(destination).create(overwrite=True) as out:
        while True:
            data = reader.read(chunk)
            if not data:
                break
            out.write(data)
            copied += len(data)
    return copied
