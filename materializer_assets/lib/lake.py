"""The Parquet lake: cells written streaming, published atomically (DESIGN §2, §5, §9).

Layout under the warehouse root, as in our design document::

    <dataset>/date=2026-04-18/model=glm-5-32b/consent=true/part-<token>-00000.parquet
    <dataset>/date=2026-04-18/model=glm-5-32b/_manifest.json

How a cell is published, so readers never see half of it:

1. every file of the new version is written under ``_staging/<token>/``
   (names starting with ``_`` are ignored by Arrow, Spark, Hive, Trino);
2. when all writers closed cleanly, the files move into the cell folder under
   names no earlier version used;
3. ``_manifest.json`` is replaced in one step (an S3 PUT or a local rename,
   both atomic): it lists exactly the live files, and our readers read it;
4. files of earlier versions are deleted.

A failure before step 3 leaves the previous version live and the staging
files are removed; re-running a cell replaces it entirely, so rows are never
duplicated. Engines that glob the folders instead of reading the manifest
see one version at rest; the Iceberg table is the interface for them.
"""

from __future__ import annotations

import json
import posixpath
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .memory import release_free_memory
from .schema import DICTIONARY_COLUMNS, TEXT_COLUMNS
from .storage import Location

MANIFEST_NAME = "_manifest.json"
STAGING_DIR = "_staging"


class CellNotMaterialized(LookupError):
    """No published version of the cell exists yet."""


@dataclass(frozen=True)
class ParquetWriteOptions:
    """Parquet settings measured in DESIGN §5: zstd level 1, 32k-row row groups."""

    compression: str = "zstd"
    compression_level: int = 1
    row_group_rows: int = 32_768
    # Rows buffered for row groups, over all sub-folders of a cell together:
    # when text rows are large, a row group is cut at this size instead, so
    # memory stays bounded whatever the day's size (about 4k traces of 4 kB).
    buffer_bytes: int = 6 * 2**20
    max_rows_per_file: int = 1_000_000
    # Background writer: encoding (which releases the GIL) overlaps reading.
    writer_thread: bool = True


def parquet_writer_settings(schema: pa.Schema, options: ParquetWriteOptions) -> dict:
    """``pq.ParquetWriter`` keyword arguments of the lake's files: dictionaries only on
    low-cardinality columns, no statistics on the big text columns (DESIGN §5)."""
    present = set(schema.names)
    return {
        "compression": options.compression,
        "compression_level": options.compression_level,
        "use_dictionary": [c for c in DICTIONARY_COLUMNS if c in present],
        "write_statistics": [c for c in schema.names if c not in TEXT_COLUMNS],
    }


@dataclass(frozen=True)
class CellAddress:
    dataset: str
    date: str
    model_slug: str

    @property
    def relative_path(self) -> str:
        return f"{self.dataset}/date={self.date}/model={self.model_slug}"


@dataclass
class CellWriteResult:
    address: CellAddress
    token: str
    files: list[str]
    rows: int
    bytes: int
    rows_by_subpath: dict[str, int]
    uri: str

    def as_metadata(self) -> dict:
        return {
            "path": self.uri,
            "rows": self.rows,
            "files": len(self.files),
            "bytes": self.bytes,
            "rows_by_subpath": dict(self.rows_by_subpath),
            "version": self.token,
        }


Splitter = Callable[[pa.RecordBatch], Mapping[str, pa.RecordBatch]]
Guard = Callable[[pa.RecordBatch], None]


@dataclass(frozen=True)
class FixedSplit:
    """A :data:`Splitter` whose sub-folders every version of the cell has.

    A sub-folder no row went to gets one empty file with the cell's schema, so
    a reader's path pattern (``train/*.parquet``) always resolves. The manifest
    lists them under ``fixed_subpaths``, and rewrites of the cell (erasure) keep
    them (:func:`keep_fixed_subpaths`).
    """

    route: Splitter
    subpaths: tuple[str, ...]

    def __call__(self, batch: pa.RecordBatch) -> Mapping[str, pa.RecordBatch]:
        return self.route(batch)


def keep_fixed_subpaths(split: Splitter, manifest: Mapping) -> Splitter:
    """``split``, keeping the sub-folders a cell's manifest says every version has."""
    fixed = tuple(manifest.get("fixed_subpaths") or ())
    return FixedSplit(split, fixed) if fixed else split


@dataclass(frozen=True)
class CellStream:
    """A cell as a stream of batches, for an IO manager to write and publish.

    ``split`` routes each batch's rows to sub-folders, ``guard`` sees every
    batch before it is written and raises to abort the cell (see
    :meth:`ParquetLake.write_cell`).
    """

    batches: "Iterator[pa.RecordBatch] | StagedCell"  # a StagedCell is published as it is
    schema: pa.Schema
    split: "Splitter | None" = None
    guard: "Guard | None" = None


@dataclass
class StagedCell:
    """A cell version written under ``_staging/`` but not published yet (:meth:`ParquetLake.stage_cell`).

    :meth:`ParquetLake.publish_staged` (or ``write_cell`` given this instead of
    batches) makes it the cell's live version; :meth:`discard` drops it.
    """

    lake: "ParquetLake"
    token: str
    staging: str
    files: list[str]
    rows_by_subpath: dict[str, int]
    schema: pa.Schema
    fixed_subpaths: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return sum(self.rows_by_subpath.values())

    def discard(self) -> None:
        self.lake._delete_dir(self.staging)


@dataclass
class _SubpathWriter:
    subpath: str
    staging_dir: str
    token: str
    schema: pa.Schema
    filesystem: pafs.FileSystem
    options: ParquetWriteOptions
    buffer: list = field(default_factory=list)
    buffered_rows: int = 0
    buffered_bytes: int = 0
    file_index: int = 0
    rows_in_file: int = 0
    rows: int = 0
    writer: pq.ParquetWriter | None = None
    files: list[str] = field(default_factory=list)

    def _open(self) -> None:
        name = f"part-{self.token}-{self.file_index:05d}.parquet"
        relative = posixpath.join(self.subpath, name) if self.subpath else name
        path = posixpath.join(self.staging_dir, relative)
        self.writer = pq.ParquetWriter(
            path, self.schema, filesystem=self.filesystem, **parquet_writer_settings(self.schema, self.options)
        )
        self.files.append(relative)
        self.rows_in_file = 0

    def take_row_group(self) -> pa.Table | None:
        if not self.buffer:
            return None
        table = pa.Table.from_batches(self.buffer, schema=self.schema)
        self.buffer, self.buffered_rows, self.buffered_bytes = [], 0, 0
        return table

    def write(self, table: pa.Table) -> None:
        if self.writer is not None and self.rows_in_file >= self.options.max_rows_per_file:
            self.close()
            self.file_index += 1
        if self.writer is None:
            self._open()
        self.writer.write_table(table, row_group_size=self.options.row_group_rows)
        self.rows_in_file += table.num_rows
        self.rows += table.num_rows
        release_free_memory()  # zstd's work memory of this row group, see lib/memory.py

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class _BackgroundWriter:
    """Runs ``write`` calls on one thread behind a small bounded queue."""

    _STOP = object()

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.error: BaseException | None = None
        if enabled:
            # One row group queued while one is encoded: memory stays bounded.
            self.jobs: queue.Queue = queue.Queue(maxsize=1)
            self.thread = threading.Thread(target=self._run, name="parquet-writer", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is self._STOP:
                return
            if self.error is None:
                try:
                    job()
                except BaseException as exc:  # reported to the producer
                    self.error = exc

    def submit(self, job: Callable[[], None]) -> None:
        if not self.enabled:
            job()
            return
        if self.error is not None:
            raise self.error
        self.jobs.put(job)

    def finish(self) -> None:
        if self.enabled:
            self.jobs.put(self._STOP)
            self.thread.join()
            if self.error is not None:
                raise self.error


class ParquetLake:
    """Cells of Parquet datasets under one warehouse root (local or S3)."""

    def __init__(self, root: Location, options: ParquetWriteOptions | None = None) -> None:
        self.root = root
        self.options = options or ParquetWriteOptions()

    @property
    def filesystem(self) -> pafs.FileSystem:
        return self.root.filesystem

    def _make_dir(self, path: str) -> None:
        # Object stores have no folders; creating one would leave marker objects.
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            self.filesystem.create_dir(path, recursive=True)

    def cell_path(self, address: CellAddress) -> str:
        return posixpath.join(self.root.path, address.relative_path)

    def cell_uri(self, address: CellAddress) -> str:
        return posixpath.join(self.root.uri, address.relative_path)

    # ------------------------------------------------------------ writing

    def write_cell(
        self,
        address: CellAddress,
        batches: "Iterable[pa.RecordBatch] | StagedCell",
        schema: pa.Schema,
        split: Splitter | None = None,
        guard: Guard | None = None,
    ) -> CellWriteResult:
        """Write a stream of batches as the new version of ``address`` and publish it.

        ``split`` routes each batch's rows to sub-folders (``consent=true`` …);
        ``guard`` sees every batch before it is written and raises to abort
        the whole cell (nothing is published then). ``batches`` may also be a
        :class:`StagedCell` written earlier (:meth:`stage_cell`, e.g. on a
        thread alongside another cell): it is published as it is.
        """
        staged = batches if isinstance(batches, StagedCell) else self.stage_cell(batches, schema, split, guard)
        return self.publish_staged(address, staged)

    def stage_cell(
        self,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        split: Splitter | None = None,
        guard: Guard | None = None,
    ) -> "StagedCell":
        """Write a stream of batches under ``_staging/`` without publishing it (see :meth:`write_cell`)."""
        token = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        staging = posixpath.join(self.root.path, STAGING_DIR, token)
        self._make_dir(staging)
        writers: dict[str, _SubpathWriter] = {}
        background = _BackgroundWriter(self.options.writer_thread)
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                if batch.schema != schema:
                    batch = pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()[0]
                if guard is not None:
                    guard(batch)
                parts = split(batch) if split is not None else {"": batch}
                for subpath, part in parts.items():
                    if part.num_rows == 0:
                        continue
                    writer = writers.get(subpath)
                    if writer is None:
                        writer = writers[subpath] = _SubpathWriter(
                            subpath, staging, token, schema, self.filesystem, self.options
                        )
                        self._make_dir(posixpath.join(staging, subpath))
                    writer.buffer.append(part)
                    writer.buffered_rows += part.num_rows
                    writer.buffered_bytes += part.nbytes
                    for full in _writers_to_flush(writers.values(), self.options):
                        table = full.take_row_group()
                        background.submit(lambda w=full, t=table: w.write(t))
            for writer in writers.values():
                table = writer.take_row_group()
                if table is not None:
                    background.submit(lambda w=writer, t=table: w.write(t))
            for subpath in getattr(split, "subpaths", ()):
                if subpath not in writers:  # no row went there: an empty file with the schema
                    writer = writers[subpath] = _SubpathWriter(subpath, staging, token, schema, self.filesystem, self.options)
                    self._make_dir(posixpath.join(staging, subpath))
                    # No row group at all: readers that size batches by the first row group (datasets) stay happy.
                    background.submit(writer._open)
            background.finish()
            for writer in writers.values():
                writer.close()
        except BaseException:
            _abort(background, writers)
            self._delete_dir(staging)
            raise
        return StagedCell(
            lake=self,
            token=token,
            staging=staging,
            files=[relative for writer in writers.values() for relative in writer.files],
            rows_by_subpath={writer.subpath: writer.rows for writer in writers.values()},
            schema=schema,
            fixed_subpaths=tuple(getattr(split, "subpaths", ())),
        )

    def publish_staged(self, address: CellAddress, staged: "StagedCell") -> CellWriteResult:
        """Publish a staged cell as the new version of ``address``; its staging folder is removed."""
        if staged.lake.root.uri != self.root.uri:
            raise ValueError(f"a cell staged under {staged.lake.root.uri} cannot be published under {self.root.uri}")
        try:
            return self._publish(
                address, staged.token, staged.staging, staged.files, staged.rows_by_subpath, staged.schema,
                staged.fixed_subpaths,
            )
        finally:
            staged.discard()

    def _publish(
        self,
        address: CellAddress,
        token: str,
        staging: str,
        files: list[str],
        rows_by_subpath: dict[str, int],
        schema: pa.Schema,
        fixed_subpaths: tuple[str, ...] = (),
    ) -> CellWriteResult:
        cell = self.cell_path(address)
        self._make_dir(cell)
        total_bytes = 0
        for relative in files:
            destination = posixpath.join(cell, relative)
            self._make_dir(posixpath.dirname(destination))
            self.filesystem.move(posixpath.join(staging, relative), destination)
            total_bytes += self.filesystem.get_file_info(destination).size or 0
        manifest = {
            "version": token,
            "files": files,
            "rows": sum(rows_by_subpath.values()),
            "rows_by_subpath": rows_by_subpath,
            "bytes": total_bytes,
            "columns": schema.names,
            "published_at": datetime.now(timezone.utc).isoformat(),
        }
        if fixed_subpaths:
            manifest["fixed_subpaths"] = list(fixed_subpaths)
        self._write_manifest(cell, manifest, token)
        self._delete_unlisted(cell, set(files))
        return CellWriteResult(
            address=address,
            token=token,
            files=files,
            rows=manifest["rows"],
            bytes=total_bytes,
            rows_by_subpath=rows_by_subpath,
            uri=self.cell_uri(address),
        )

    def _write_manifest(self, cell: str, manifest: dict, token: str) -> None:
        payload = json.dumps(manifest, indent=1, sort_keys=True).encode()
        final = posixpath.join(cell, MANIFEST_NAME)
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            temporary = posixpath.join(cell, f"{MANIFEST_NAME}.{token}.tmp")
            with self.filesystem.open_output_stream(temporary) as out:
                out.write(payload)
            self.filesystem.move(temporary, final)  # os.replace: atomic
        else:
            # One PUT: the object appears whole or not at all.
            with self.filesystem.open_output_stream(final) as out:
                out.write(payload)

    def _delete_unlisted(self, cell: str, live: set[str]) -> None:
        selector = pafs.FileSelector(cell, recursive=True, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            relative = posixpath.relpath(info.path, cell)
            if relative == MANIFEST_NAME or relative in live:
                continue
            self.filesystem.delete_file(info.path)

    def _delete_dir(self, path: str) -> None:
        try:
            self.filesystem.delete_dir(path)
        except (FileNotFoundError, OSError):
            pass

    # ------------------------------------------------------------ reading

    def manifest(self, address: CellAddress) -> dict:
        path = posixpath.join(self.cell_path(address), MANIFEST_NAME)
        try:
            with self.filesystem.open_input_stream(path) as stream:
                return json.loads(stream.read())
        except FileNotFoundError as exc:
            raise CellNotMaterialized(f"{self.cell_uri(address)} has not been materialized") from exc
        except OSError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                raise CellNotMaterialized(f"{self.cell_uri(address)} has not been materialized") from exc
            raise

    def cell_files(self, address: CellAddress, manifest: dict | None = None) -> list[str]:
        """The published files of the cell (of ``manifest``, when the caller already read it)."""
        cell = self.cell_path(address)
        manifest = manifest if manifest is not None else self.manifest(address)
        return [posixpath.join(cell, relative) for relative in manifest["files"]]

    def open_cell(self, address: CellAddress, schema: pa.Schema | None = None, manifest: dict | None = None) -> ds.Dataset:
        """A lazy dataset of exactly the published files of the cell (of ``manifest``, if given)."""
        return ds.dataset(self.cell_files(address, manifest), schema=schema, format="parquet", filesystem=self.filesystem)

    def delete_cell(self, address: CellAddress) -> None:
        self._delete_dir(self.cell_path(address))


def _writers_to_flush(writers: Iterable[_SubpathWriter], options: ParquetWriteOptions) -> list[_SubpathWriter]:
    """Writers whose buffer makes a row group now: a full one by rows, or, while the
    buffers together exceed the byte budget, the largest."""
    writers = [writer for writer in writers if writer.buffer]
    due = [writer for writer in writers if writer.buffered_rows >= options.row_group_rows]
    pending = sorted((w for w in writers if w not in due), key=lambda w: w.buffered_bytes, reverse=True)
    total = sum(writer.buffered_bytes for writer in pending)
    for writer in pending:
        if total <= options.buffer_bytes:
            break
        due.append(writer)
        total -= writer.buffered_bytes
    return due


def _abort(background: _BackgroundWriter, writers: Mapping[str, _SubpathWriter]) -> None:
    if background.enabled and background.thread.is_alive():
        background.jobs.put(_BackgroundWriter._STOP)
        background.thread.join()
    for writer in writers.values():
        try:
            writer.close()
        except Exception:  # the staging folder is deleted anyway
            pass


def iter_batches(dataset: ds.Dataset, columns: list[str] | None = None, batch_size: int = 32_768) -> Iterator[pa.RecordBatch]:
    """Stream a dataset's batches one row group at a time (skips empty batches).

    ``Dataset.to_batches`` reads ahead across files and keeps decoded row
    groups alive (apache/arrow#39808), so its memory grows with the cell;
    reading each row group on its own keeps about one decoded row group in
    memory. Files missing columns of the dataset's schema (written before a
    column was appended) read them as nulls, as the dataset would. Anything
    else with ``to_batches(columns=, batch_size=)`` (an Iceberg cell) is
    read through that.
    """
    if not isinstance(dataset, ds.FileSystemDataset):
        for batch in dataset.to_batches(columns=columns, batch_size=batch_size):
            if batch.num_rows:
                yield batch
        return
    for fragment in dataset.get_fragments():
        for row_group in fragment.split_by_row_group():
            for batch in row_group.to_batches(
                schema=dataset.schema,
                columns=columns,
                batch_size=batch_size,
                batch_readahead=0,
                fragment_readahead=0,
            ):
                if batch.num_rows:
                    yield batch


T = TypeVar("T")


class _Abandoned(Exception):
    """The main stream stopped early: the cell staged alongside it must not be kept."""


class StageAlongside:
    """A second cell staged on a thread of its own from the batches of a main stream.

    ``stage`` gets an iterator of the batches :meth:`feed` passes on (after
    transforming them as it likes) and returns a :class:`StagedCell`; it runs
    while the caller writes the main stream, so both cells are encoded at
    once and the main cell is never read back. The queue between them holds
    ``depth`` batches: memory stays bounded, and the slower side sets the pace.
    If ``stage`` fails, the main stream goes on alone and :meth:`result`
    raises its error; if the main stream stops early, the staged cell is dropped.
    """

    _END = object()

    def __init__(self, stage: Callable[[Iterator[pa.RecordBatch]], StagedCell], depth: int = 2, name: str = "stage-alongside"):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._staged: StagedCell | None = None
        self._error: BaseException | None = None
        self._abandoned = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stage,), name=name, daemon=True)
        self._thread.start()

    def _items(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._queue.get()
            if self._abandoned.is_set():
                raise _Abandoned()
            if item is self._END:
                return
            yield item

    def _run(self, stage: Callable[[Iterator[pa.RecordBatch]], StagedCell]) -> None:
        try:
            staged = stage(self._items())
            if self._abandoned.is_set():
                staged.discard()
            else:
                self._staged = staged
        except BaseException as exc:  # handed to result(); the producer stops feeding
            self._error = exc

    def _put(self, item: object) -> None:
        while self._error is None and self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def feed(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches`` unchanged, each also handed to the staged cell; the end of
        ``batches`` ends that cell's input too."""
        completed = False
        try:
            for batch in batches:
                self._put(batch)
                yield batch
            completed = True
        finally:
            if not completed:
                self._abandoned.set()
            self._put(self._END)

    def result(self) -> StagedCell:
        """The staged cell, once the main stream was consumed; raises what staging raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._staged is None:
            raise RuntimeError("the stream feeding the staged cell stopped before its end")
        return self._staged

    def discard(self) -> None:
        """Drop the staged cell (e.g. the main cell failed its checks)."""
        self._abandoned.set()
        self._put(self._END)
        self._thread.join()
        if self._staged is not None:
            self._staged.discard()
            self._staged = None



@dataclass
class _ReadFailure:
    error: BaseException


def read_ahead(items: Iterable[T], depth: int = 1, name: str = "read-ahead") -> Iterator[T]:
    """``items``, produced on a background thread up to ``depth`` ahead of the caller.

    A database stream or Parquet decoding releases the GIL, so the source (and
    PostgreSQL behind it, which otherwise idles once its socket buffer is full)
    keeps working while the caller transforms and writes the previous batch.
    An error of the source is raised to the caller; when the caller stops
    early, the source is closed on its own thread.
    """
    finished = object()
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not offer(item):
                    return
            offer(finished)
        except BaseException as exc:  # handed to the consumer
            offer(_ReadFailure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # the consumer already has the error that matters
                    pass

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is finished:
                return
            if isinstance(item, _ReadFailure):
                raise item.error
            yield item
    finally:
        stop.set()
        # A source blocked in a read notices the stop at its next item; don't hang on it.
        thread.join(timeout=60)
