"""The records of one trace file, by its format: JSON lines, a JSON array, Parquet or CSV (``.gz`` too).

Files are read one at a time, JSONL line by line, Parquet by row group with
only the columns a pass needs. A JSON-array file (``.json``) is the
exception: it is parsed whole, one file at a time.

Each record comes as a :class:`_RawRecord` with its location (``file:line``;
for Parquet and JSON arrays the 1-based row) or the reason it cannot be
used. A line with invalid UTF-8 is ``invalid_utf8``; it is parsed once more
with U+FFFD replacement only so the reader can learn its cell. A JSON string
with an unpaired surrogate escape counts as invalid UTF-8 too. An unreadable
file (corrupt Parquet, bad gzip) ends in one ``unreadable_file`` record; the
records read before the damage stay. Storage that stops answering while a
file is read raises :class:`~..base.SourceUnavailableError` (a partial cell is
never passed off as complete).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ...normalize import (
    REJECT_INVALID_UTF8,
    REJECT_MALFORMED_JSON,
    REJECT_NOT_AN_OBJECT,
    REJECT_UNREADABLE_FILE,
)
from ..base import SourceUnavailableError
from .listing import SourceFile

_READ_BUFFER_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 1024
_CSV_FIELD_LIMIT = 1 << 30  # 5 MB responses and more must fit in one CSV field
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@dataclass
class _RawRecord:
    location: str
    record: dict[str, Any] | None = None
    problem: str | None = None  # a REJECT_* reason when the record cannot be used
    detail: str = ""
    salvaged: dict[str, Any] | None = None  # invalid UTF-8: the object read with U+FFFD, only to find its cell

    @property
    def readable(self) -> dict[str, Any] | None:
        """The record, or for invalid UTF-8 the salvaged one (to learn its cell)."""
        return self.record if self.problem is None else self.salvaged


def _parse_json_object(raw: bytes | str, location: str) -> _RawRecord:
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            salvaged = _parse_json_object(raw.decode("utf-8", "replace"), location).record
            return _RawRecord(location, problem=REJECT_INVALID_UTF8, detail=str(exc), salvaged=salvaged)
    else:
        text = raw
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _RawRecord(location, problem=REJECT_MALFORMED_JSON, detail=str(exc))
    if not isinstance(value, dict):
        return _RawRecord(location, problem=REJECT_NOT_AN_OBJECT, detail=type(value).__name__)
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        return _RawRecord(location, problem=REJECT_INVALID_UTF8, detail="unpaired surrogate escape", salvaged=value)
    return _RawRecord(location, record=value)


def read_records(
    filesystem: pafs.FileSystem,
    file: SourceFile,
    columns: frozenset[str] | None = None,
    line_filter: Callable[[bytes], bool] | None = None,
) -> Iterator[_RawRecord]:
    """Every record of one file, streamed; a damaged file ends in one ``unreadable_file``."""
    name = file.path.lower()
    try:
        if name.endswith(".parquet"):
            yield from _parquet_records(filesystem, file, columns)
        elif name.endswith((".csv", ".csv.gz")):
            yield from _csv_records(filesystem, file)
        elif name.endswith((".json", ".json.gz")) and _starts_with_bracket(filesystem, file):
            yield from _json_array_records(filesystem, file)
        else:
            yield from _jsonl_records(filesystem, file, line_filter)
    except (OSError, EOFError, zlib.error, csv.Error, pa.ArrowException) as exc:
        if isinstance(exc, OSError) and not _still_there(filesystem, file):
            # The storage went away (network, permissions, file deleted): fail, never publish a partial cell.
            raise SourceUnavailableError(f"cannot read {file.uri}: {exc}") from exc
        yield _RawRecord(file.uri, problem=REJECT_UNREADABLE_FILE, detail=f"{type(exc).__name__}: {exc}")

def _still_there(filesystem: pafs.FileSystem, file: SourceFile) -> bool:
    try:
        return filesystem.get_file_info(file.path).type == pafs.FileType.File
    except OSError:
        return False

def _open(filesystem: pafs.FileSystem, file: SourceFile) -> io.BufferedReader:
    compression = "gzip" if file.path.lower().endswith(".gz") else None
    stream = filesystem.open_input_stream(file.path, compression=compression)
    return io.BufferedReader(stream, buffer_size=_READ_BUFFER_BYTES)

def _jsonl_records(filesystem: pafs.FileSystem, file: SourceFile, line_filter: Callable[[bytes], bool] | None) -> Iterator[_RawRecord]:
    with _open(filesystem, file) as reader:
        for number, line in enumerate(reader, start=1):
            if number == 1 and line.startswith(codecs.BOM_UTF8):
                line = line[len(codecs.BOM_UTF8) :]
            if not line.strip() or (line_filter is not None and not line_filter(line)):
                continue
            yield _parse_json_object(line, f"{file.uri}:{number}")

def _starts_with_bracket(filesystem: pafs.FileSystem, file: SourceFile) -> bool:
    """A ``.json`` export file is an array; anything else is read as JSON lines."""
    with _open(filesystem, file) as reader:
        head = reader.peek(4096)[:4096].lstrip(codecs.BOM_UTF8 + b" \t\r\n")
    return head.startswith(b"[")

def _json_array_records(filesystem: pafs.FileSystem, file: SourceFile) -> Iterator[_RawRecord]:
    with _open(filesystem, file) as reader:
        data = reader.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield _RawRecord(file.uri, problem=REJECT_INVALID_UTF8, detail=str(exc))
        return
    try:
        items = json.loads(text)
    except (ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", None)
        yield _RawRecord(f"{file.uri}:{line}" if line else file.uri, problem=REJECT_MALFORMED_JSON, detail=str(exc))
        return
    for index, item in enumerate(items if isinstance(items, list) else [items], start=1):
        location = f"{file.uri}:{index}"
        if not isinstance(item, dict):
            yield _RawRecord(location, problem=REJECT_NOT_AN_OBJECT, detail=type(item).__name__)
        elif _has_lone_surrogate(item):
            yield _RawRecord(location, problem=REJECT_INVALID_UTF8, detail="unpaired surrogate", salvaged=item)
        else:
            yield _RawRecord(location, record=item)

def _parquet_records(filesystem: pafs.FileSystem, file: SourceFile, columns: frozenset[str] | None) -> Iterator[_RawRecord]:
    with filesystem.open_input_file(file.path) as handle:
        # pre_buffer would keep every row group read so far until the file is done
        parquet = pq.ParquetFile(handle, pre_buffer=False)
        names = parquet.schema_arrow.names
        selected = None if columns is None else [name for name in names if name in columns]
        row = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=selected):
            for record in batch.to_pylist():
                row += 1
                yield _RawRecord(f"{file.uri}:{row}", record=record)

def _csv_records(filesystem: pafs.FileSystem, file: SourceFile) -> Iterator[_RawRecord]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with _open(filesystem, file) as binary:
        # surrogateescape keeps invalid bytes visible, so the row can be rejected by name.
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
        reader = csv.DictReader(text)
        for row in reader:
            record = {key: value for key, value in row.items() if key is not None}
            location = f"{file.uri}:{reader.line_num}"
            if _has_lone_surrogate(record):
                yield _RawRecord(location, problem=REJECT_INVALID_UTF8, detail="invalid UTF-8", salvaged=record)
            else:
                yield _RawRecord(location, record=record)
