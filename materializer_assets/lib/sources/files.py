"""Traces from files: Langfuse blob-storage exports and plain JSONL (DESIGN §4).

``FileTraceReader(uri)`` reads a local folder, a single file, or
``s3://bucket/prefix``. Under it, two kinds of input are recognized:

**Langfuse blob-storage export**:
``{prefix}{projectId}/{traces|observations|observations_v2|scores}/{windowEnd}.{jsonl|json|parquet|csv}``
(``.gz`` too). Field names are taken in snake_case (what the export writes)
or camelCase (the public API). A folder is read as an export folder when it
is named ``observations_v2``, when its parent also holds another of the four
folder names, or when its file names start with an ISO date
(``2026-04-18T06:00:00Z.jsonl``). A lone ``traces/``, ``observations/`` or
``scores/`` folder of hand-made files is read as plain JSONL instead.

* Every ``GENERATION`` observation is one record: ``input`` is the
  conversation, ``output`` the reply, the model is ``provided_model_name``
  (or ``model``, or ``metadata.model``). Its **UTC day is the generation's start time**: the moment
  the reply was produced, known without a join.
* Trace-level fields (user, session, environment, tags, metadata) come from
  the trace row with the same id, or from the observation itself
  (``observations_v2`` rows carry them). Tags are the union; observation
  metadata keys override trace metadata keys. Consent tags and the
  ``consent_training`` metadata key may be on either.
* Contexts are the outputs of the trace's ``RETRIEVER`` observations, in
  start-time order.
* ``feedback_score`` is the mean of the trace's numeric scores whose name,
  lower-cased with ``-`` and spaces read as ``_``, is one of
  :data:`FEEDBACK_SCORE_NAMES`, except scores with source ``EVAL``
  (LLM-as-a-judge scores are not the user's feedback). ``CATEGORICAL``
  scores are ignored; ``BOOLEAN`` ones count as 0/1.
* Latency: ``end - start``, else the export's ``latency`` (seconds).
  Tokens from ``usage_details`` (input/output/total), cost from
  ``cost_details.total`` or ``calculated_total_cost`` / ``total_cost``.
* A trace with input and output on its own row and no ``GENERATION`` at all
  becomes one record of the trace's day; its model is ``metadata.model``
  (else unknown).

**Plain JSONL** (``*.jsonl``, ``*.ndjson``, also ``.gz``), detected per line:
OpenAI chat (``{"messages": [...], "tools": [...]}``) or Langfuse observation
(``{"id", "input": [...], "output", "metadata"}``; a row whose ``type`` is
not ``GENERATION`` is skipped, so an export folder read on its own still
yields its generations). Our extension fields, at the top level or inside
``metadata``, give what training needs: ``id``/``trace_id``, ``timestamp``,
``model``, ``user_id``, ``session_id``, ``consent``, ``tags``, ``contexts``,
``feedback_score``, ``environment`` (plus ``latency_ms``, ``usage``,
``cost_usd``). A chat line without an id gets the trace id
``sha256(canonical JSON of the line)[:32]`` (keys sorted, compact
separators): the same line in two files gets the same id, so the later dedup
stage sees it as the duplicate it is.

**Streaming.** Files are read one at a time, JSONL line by line, Parquet by
row group with only the columns a pass needs; rows leave as record batches
of :data:`BATCH_ROWS`. An export is read in passes over its files, each
keeping only a small index: the trace ids of the cell, their trace fields
(not their input/output), their feedback and retrieved contexts; then the
generations are streamed. A JSON-array file (``.json``) is the exception: it
is parsed whole, one file at a time.

**Rejections** (counted in ``CellRead.rejections`` by reason, location
``file:line``; for Parquet and JSON arrays the 1-based row). A record whose
cell (day and model) is known is counted only by that cell; one whose cell
cannot be told (a line that is not JSON, a record without a usable
timestamp, a damaged trace, score or retriever row, which can affect any
cell through the join) is counted as unattributed by every read of a cell
that scanned its file. A line with invalid UTF-8 is rejected
(``invalid_utf8``); it is parsed once more with U+FFFD replacement only to
learn its cell, and counted as attributed if that works. A JSON string with
an unpaired surrogate escape counts as invalid UTF-8 too. An unreadable file
(corrupt Parquet, bad gzip) is ``unreadable_file``; the rows read before the
damage stay. Duplicates are kept (a later stage dedups).

A missing folder, file or bucket raises :class:`SourceUnavailableError`, and
so does storage that stops answering while a file is read (a partial cell is
never passed off as complete); an existing empty folder is a source without
data. The reader remembers, per
file (path, size and mtime), which days it holds once it has scanned it, so
later reads of other days skip it; files with unattributed rejections are
always scanned, so every cell keeps reporting them.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import posixpath
import re
import zlib
from dataclasses import dataclass, field
from functools import partial
from datetime import date, datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..consent import merge_metadata
from ..normalize import (
    REJECT_BAD_MESSAGES,
    REJECT_INVALID_UTF8,
    REJECT_MALFORMED_JSON,
    REJECT_MISSING_ID,
    REJECT_NO_MESSAGES,
    REJECT_NOT_AN_OBJECT,
    REJECT_UNREADABLE_FILE,
    ReadOptions,
    RecordRejected,
    RejectionLog,
    as_float,
    as_mapping,
    as_string_list,
    as_text,
    batched_located_rows,
    build_examples,
    context_texts,
    decoded,
    parse_timestamp,
    utc_day,
)
from ..slugs import model_slug as slug_for
from ..storage import S3Options, resolve
from .base import CellRead, SourceUnavailableError, TraceReader

BATCH_ROWS = 4096

EXPORT_FOLDERS = ("traces", "observations", "observations_v2", "scores")
# The ``source`` of rows read from a Langfuse blob export (their ids are Langfuse's own);
# plain JSONL rows are ``files``.
EXPORT_SOURCE = "langfuse-export"
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
EXPORT_SUFFIXES = JSONL_SUFFIXES + (".json", ".json.gz", ".parquet", ".csv", ".csv.gz")

# Score names (normalized: lower case, '-' and ' ' → '_') that carry a user's feedback.
FEEDBACK_SCORE_NAMES = frozenset({"user_feedback", "feedback", "user_rating", "user_score"})
# Score sources that are machines, not users: Langfuse's LLM-as-a-judge evaluators.
MACHINE_SCORE_SOURCES = frozenset({"EVAL"})

_READ_BUFFER_BYTES = 1 << 20
_PARQUET_BATCH_ROWS = 1024
_CSV_FIELD_LIMIT = 1 << 30  # 5 MB responses and more must fit in one CSV field
_WINDOW_END_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}T")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

# Field names: snake_case as the export writes them, camelCase as the API does.
_TRACE_ID = ("trace_id", "traceId")
_OBSERVATION_ID = ("observation_id", "observationId")
_START_TIME = ("start_time", "startTime", "timestamp")
_END_TIME = ("end_time", "endTime")
_TIMESTAMP = ("timestamp", "start_time", "startTime", "created_at", "createdAt")
_MODEL = ("provided_model_name", "providedModelName", "model")
_USER_ID = ("user_id", "userId")
_SESSION_ID = ("session_id", "sessionId")
_TAGS = ("tags", "trace_tags", "traceTags")
_USAGE = ("usage_details", "usageDetails", "usage")
_USAGE_INPUT = ("input", "input_tokens", "prompt_tokens", "promptTokens", "inputTokens")
_USAGE_OUTPUT = ("output", "output_tokens", "completion_tokens", "completionTokens", "outputTokens")
_USAGE_TOTAL = ("total", "total_tokens", "totalTokens")
_ROW_INPUT_TOKENS = ("input_tokens", "inputTokens", "prompt_tokens", "promptTokens")
_ROW_OUTPUT_TOKENS = ("output_tokens", "outputTokens", "completion_tokens", "completionTokens")
_ROW_TOTAL_TOKENS = ("total_tokens", "totalTokens", "token_count")
_COST_DETAILS = ("cost_details", "costDetails")
_TOTAL_COST = ("cost_usd", "calculated_total_cost", "calculatedTotalCost", "total_cost", "totalCost")
_LATENCY_MS = ("latency_ms", "latencyMs")
_TOOLS = ("tools", "tool_definitions", "toolDefinitions")
_FEEDBACK = ("feedback_score", "feedbackScore")

# Columns each pass reads from Parquet files (the others are never decoded).
_GENERATION_CELL_COLUMNS = frozenset(("id", "type", "metadata") + _TRACE_ID + _START_TIME + _MODEL)
_TRACE_CELL_COLUMNS = frozenset(("id", "timestamp", "input", "output", "metadata", "model"))
_TRACE_CONTEXT_COLUMNS = frozenset(("id", "environment", "metadata") + _USER_ID + _SESSION_ID + _TAGS)
_RETRIEVER_COLUMNS = frozenset(("type", "output") + _TRACE_ID + _START_TIME)

_Cell = tuple[str, str]  # (UTC day as YYYY-MM-DD, model slug)


# ---------------------------------------------------------------- small helpers


def _pick(mapping: Mapping[str, Any] | None, names: Iterable[str]) -> Any:
    """The first of ``names`` with a value; ``None`` and ``""`` count as absent."""
    if not mapping:
        return None
    for name in names:
        value = mapping.get(name)
        if value is not None and value != "":
            return value
    return None


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _as_dict(value: Any) -> dict[str, Any]:
    """A dict from a dict, a JSON object string, or a Parquet map (list of pairs)."""
    if isinstance(value, list) and value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return {str(key): item for key, item in value}
    return as_mapping(value)


def _model_name(value: Any) -> str | None:
    """The model name exactly as build_examples keeps it (so slugs agree)."""
    text = as_text(value)
    return text if text and text.strip() else None


def _id_text(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def _merged_tags(*groups: Any) -> list[str]:
    tags: list[str] = []
    for group in groups:
        for tag in as_string_list(group):
            if tag not in tags:
                tags.append(tag)
    return tags


def _content_trace_id(record: Mapping[str, Any]) -> str:
    canonical = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _Row:
    """A source record; with ``extensions``, our own fields may also sit inside ``metadata``."""

    def __init__(self, record: Mapping[str, Any], extensions: bool) -> None:
        self.record = record
        self.metadata = _as_dict(record.get("metadata"))
        self.extensions = extensions

    def get(self, *names: str) -> Any:
        value = _pick(self.record, names)
        if value is None and self.extensions:
            value = _pick(self.metadata, names)
        return value

    def model(self) -> str | None:
        return _model_name(_first(self.get(*_MODEL), _pick(self.metadata, ("model",))))

    def usage(self) -> dict[str, Any]:
        usage = _as_dict(self.get(*_USAGE))
        return {
            "input_tokens": _first(_pick(usage, _USAGE_INPUT), self.get(*_ROW_INPUT_TOKENS)),
            "output_tokens": _first(_pick(usage, _USAGE_OUTPUT), self.get(*_ROW_OUTPUT_TOKENS)),
            "total_tokens": _first(_pick(usage, _USAGE_TOTAL), self.get(*_ROW_TOTAL_TOKENS)),
        }

    def cost(self) -> Any:
        return _first(_pick(_as_dict(self.get(*_COST_DETAILS)), ("total",)), self.get(*_TOTAL_COST))

    def latency_ms(self, start: Any) -> Any:
        explicit = self.get(*_LATENCY_MS)
        if explicit is not None:
            return explicit
        end = self.get(*_END_TIME)
        if start is not None and end is not None:
            try:
                return round((parse_timestamp(end) - parse_timestamp(start)).total_seconds() * 1000)
            except RecordRejected:
                pass
        seconds = as_float(self.get("latency"))  # Langfuse reports latency in seconds
        return None if seconds is None else round(seconds * 1000)

    def tools(self) -> Any:
        tools = decoded(_first(self.get(*_TOOLS), _pick(self.metadata, ("tools",))))
        if isinstance(tools, list):  # Langfuse keeps each definition as a JSON string
            tools = [decoded(tool) for tool in tools]
        return tools or None


@dataclass
class _TraceFields:
    """What a trace row lends its generations (never its input/output)."""

    user_id: Any = None
    session_id: Any = None
    environment: Any = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def absorb(self, record: Mapping[str, Any]) -> None:
        """Add one trace row (the same trace may appear in several export windows)."""
        row = _Row(record, extensions=False)
        self.user_id = _first(self.user_id, row.get(*_USER_ID))
        self.session_id = _first(self.session_id, row.get(*_SESSION_ID))
        self.environment = _first(self.environment, row.get("environment"))
        self.tags = _merged_tags(self.tags, decoded(row.get(*_TAGS)))
        self.metadata = merge_metadata(self.metadata, row.metadata)


# ---------------------------------------------------------------- records from files


@dataclass(frozen=True)
class SourceFile:
    path: str  # on the filesystem (``bucket/key`` or ``/abs/path``)
    uri: str  # as shown in locations (``s3://bucket/key`` or ``/abs/path``)
    size: int | None = None
    mtime_ns: int | None = None

    @property
    def cache_key(self) -> tuple | None:
        return None if self.mtime_ns is None else (self.path, self.size, self.mtime_ns)


@dataclass
class ExportRoot:
    """One project's export folder: ``<root>/{traces,observations,observations_v2,scores}/``."""

    uri: str
    traces: list[SourceFile] = field(default_factory=list)
    observations: list[SourceFile] = field(default_factory=list)
    scores: list[SourceFile] = field(default_factory=list)


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


@dataclass(frozen=True)
class _FileDays:
    days: frozenset[str]
    clean: bool  # False: it has rejections every cell must report


class _DayTally:
    def __init__(self) -> None:
        self.days: set[str] = set()
        self.clean = True


# ---------------------------------------------------------------- the reader


class FileTraceReader(TraceReader):
    """Langfuse blob-storage exports and plain JSONL under a folder, a file or ``s3://`` prefix."""

    kind = "files"

    def __init__(self, uri: str, options: ReadOptions | None = None, s3_options: S3Options | None = None) -> None:
        super().__init__(options)
        self.uri = uri
        self._location = resolve(uri, s3_options)
        self._file_days: dict[tuple, _FileDays] = {}

    @property
    def description(self) -> str:
        return f"files at {self._location.uri}"

    # ------------------------------------------------------------ public API

    def models_on(self, day: date) -> list[str | None]:
        day_text = day.isoformat()
        plain_files, roots = self._inventory()
        models: set[str | None] = set()
        for file in plain_files:
            if self._may_hold(file, day_text):
                models.update(model for _, record_day, model, _ in self._scan_plain(file) if record_day == day_text)
        for root in roots:
            candidates = self._trace_row_candidates(root, day_text, None, None)
            models |= self._find_generations(root, day_text, None, candidates, None).models
            models.update(candidates.values())
        return sorted(models, key=lambda name: (name is None, name or ""))

    def read_cell(self, day: date, model_slug: str) -> CellRead:
        cell: _Cell = (day.isoformat(), model_slug)
        plain_files, roots = self._inventory()  # fails now if the source is missing
        log = RejectionLog()
        extracted_at = datetime.now(timezone.utc)

        def located_rows() -> Iterator[tuple[str, dict[str, Any]]]:
            for file in plain_files:
                yield from self._plain_rows(file, cell, log, extracted_at)
            for root in roots:
                yield from self._export_rows(root, cell, log, extracted_at)

        return CellRead(batches=batched_located_rows(located_rows(), log, BATCH_ROWS), rejections=log)

    # ------------------------------------------------------------ listing

    def _inventory(self) -> tuple[list[SourceFile], list[ExportRoot]]:
        """Plain JSONL files and export roots under the uri, each sorted by path."""
        location = self._location
        filesystem = location.filesystem
        try:
            info = filesystem.get_file_info(location.path)
            if info.type == pafs.FileType.NotFound:
                raise SourceUnavailableError(f"trace files not found: {location.uri} does not exist")
            if info.type == pafs.FileType.File:
                return self._classify([(posixpath.basename(info.path), self._source_file(info))])
            selector = pafs.FileSelector(location.path, recursive=True, allow_not_found=True)
            infos = filesystem.get_file_info(selector)
        except OSError as exc:
            raise SourceUnavailableError(f"cannot list trace files at {location.uri}: {exc}") from exc
        listed = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            relative = posixpath.relpath(info.path, location.path)
            if any(part.startswith((".", "_")) for part in relative.split("/")):
                continue
            listed.append((relative, self._source_file(info)))
        return self._classify(sorted(listed, key=lambda item: item[0]))

    def _source_file(self, info: pafs.FileInfo) -> SourceFile:
        uri = f"s3://{info.path}" if self._location.is_s3 else info.path
        return SourceFile(info.path, uri, info.size, info.mtime_ns)

    def _classify(self, listed: list[tuple[str, SourceFile]]) -> tuple[list[SourceFile], list[ExportRoot]]:
        def export_folder(relative: str) -> tuple[str, str] | None:
            folders = relative.split("/")[:-1]
            for index in range(len(folders) - 1, -1, -1):
                if folders[index] in EXPORT_FOLDERS:
                    return "/".join(folders[:index]), folders[index]
            return None

        kinds_by_root: dict[str, set[str]] = {}
        for relative, _ in listed:
            found = export_folder(relative)
            if found:
                kinds_by_root.setdefault(found[0], set()).add(found[1])

        plain: list[SourceFile] = []
        roots: dict[str, ExportRoot] = {}
        for relative, file in listed:
            name = posixpath.basename(relative).lower()
            found = export_folder(relative)
            is_export = found is not None and (
                found[1] == "observations_v2"
                or len(kinds_by_root[found[0]]) > 1
                or _WINDOW_END_NAME.match(name) is not None
            )
            if is_export and name.endswith(EXPORT_SUFFIXES):
                root_key, kind = found
                root = roots.setdefault(root_key, ExportRoot(posixpath.join(self._location.uri, root_key)))
                if kind == "traces":
                    root.traces.append(file)
                elif kind == "scores":
                    root.scores.append(file)
                else:
                    root.observations.append(file)
            elif not is_export and name.endswith(JSONL_SUFFIXES):
                plain.append(file)
        return plain, [roots[key] for key in sorted(roots)]

    # ------------------------------------------------------------ reading files

    def _records(
        self,
        file: SourceFile,
        columns: frozenset[str] | None = None,
        line_filter: Callable[[bytes], bool] | None = None,
    ) -> Iterator[_RawRecord]:
        """Every record of one file, streamed; a damaged file ends in one ``unreadable_file``."""
        name = file.path.lower()
        try:
            if name.endswith(".parquet"):
                yield from self._parquet_records(file, columns)
            elif name.endswith((".csv", ".csv.gz")):
                yield from self._csv_records(file)
            elif name.endswith((".json", ".json.gz")) and self._starts_with_bracket(file):
                yield from self._json_array_records(file)
            else:
                yield from self._jsonl_records(file, line_filter)
        except (OSError, EOFError, zlib.error, csv.Error, pa.ArrowException) as exc:
            if isinstance(exc, OSError) and not self._still_there(file):
                # The storage went away (network, permissions, file deleted): fail, never publish a partial cell.
                raise SourceUnavailableError(f"cannot read {file.uri}: {exc}") from exc
            yield _RawRecord(file.uri, problem=REJECT_UNREADABLE_FILE, detail=f"{type(exc).__name__}: {exc}")

    def _still_there(self, file: SourceFile) -> bool:
        try:
            return self._location.filesystem.get_file_info(file.path).type == pafs.FileType.File
        except OSError:
            return False

    def _open(self, file: SourceFile) -> io.BufferedReader:
        compression = "gzip" if file.path.lower().endswith(".gz") else None
        stream = self._location.filesystem.open_input_stream(file.path, compression=compression)
        return io.BufferedReader(stream, buffer_size=_READ_BUFFER_BYTES)

    def _jsonl_records(self, file: SourceFile, line_filter: Callable[[bytes], bool] | None) -> Iterator[_RawRecord]:
        with self._open(file) as reader:
            for number, line in enumerate(reader, start=1):
                if number == 1 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8) :]
                if not line.strip() or (line_filter is not None and not line_filter(line)):
                    continue
                yield _parse_json_object(line, f"{file.uri}:{number}")

    def _starts_with_bracket(self, file: SourceFile) -> bool:
        """A ``.json`` export file is an array; anything else is read as JSON lines."""
        with self._open(file) as reader:
            head = reader.peek(4096)[:4096].lstrip(codecs.BOM_UTF8 + b" \t\r\n")
        return head.startswith(b"[")

    def _json_array_records(self, file: SourceFile) -> Iterator[_RawRecord]:
        with self._open(file) as reader:
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

    def _parquet_records(self, file: SourceFile, columns: frozenset[str] | None) -> Iterator[_RawRecord]:
        with self._location.filesystem.open_input_file(file.path) as handle:
            parquet = pq.ParquetFile(handle)
            names = parquet.schema_arrow.names
            selected = None if columns is None else [name for name in names if name in columns]
            row = 0
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=selected):
                for record in batch.to_pylist():
                    row += 1
                    yield _RawRecord(f"{file.uri}:{row}", record=record)

    def _csv_records(self, file: SourceFile) -> Iterator[_RawRecord]:
        if csv.field_size_limit() < _CSV_FIELD_LIMIT:
            csv.field_size_limit(_CSV_FIELD_LIMIT)
        with self._open(file) as binary:
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

    # ------------------------------------------------------------ per-file day cache

    def _may_hold(self, file: SourceFile, day: str) -> bool:
        known = self._file_days.get(file.cache_key) if file.cache_key else None
        return known is None or not known.clean or day in known.days

    def _remember(self, file: SourceFile, tally: _DayTally) -> None:
        if file.cache_key:
            self._file_days[file.cache_key] = _FileDays(frozenset(tally.days), tally.clean)

    @staticmethod
    def _unattributed(
        raw: _RawRecord, reason: str, detail: str, log: RejectionLog | None, tally: _DayTally | None = None
    ) -> None:
        """Count a record whose cell cannot be told (every cell that scans its file reports it)."""
        if tally is not None:
            tally.clean = False
        if log is not None:
            log.reject(reason, raw.location, detail, attributed=False)

    # ------------------------------------------------------------ plain JSONL

    def _scan_plain(
        self, file: SourceFile, cell: _Cell | None = None, log: RejectionLog | None = None
    ) -> Iterator[tuple[_RawRecord, str, str | None, str]]:
        """``(raw, day, model, shape)`` of every record with a cell; problems go to ``log``.

        A broken line is counted here: attributed if its cell is ``cell``, not
        at all if it is another known cell, unattributed if it has none.
        """
        tally = _DayTally()
        for raw in self._records(file):
            record = raw.readable
            if record is None:  # not JSON, not an object, an unreadable file: no cell to tell
                self._unattributed(raw, raw.problem, raw.detail, log, tally)
                continue
            shape = _plain_shape(record)
            if shape is None:
                continue  # an observation that is not a generation is no example
            try:
                record_day, model = _plain_cell(record)
            except RecordRejected as exc:
                self._unattributed(raw, raw.problem or exc.reason, raw.detail or exc.detail, log, tally)
                continue
            tally.days.add(record_day)
            if raw.problem is not None:  # invalid UTF-8, yet its cell is known: only that cell counts it
                if log is not None and (record_day, slug_for(model)) == cell:
                    log.reject(raw.problem, raw.location, raw.detail)
                continue
            yield raw, record_day, model, shape
        self._remember(file, tally)

    def _plain_rows(
        self, file: SourceFile, cell: _Cell, log: RejectionLog, extracted_at: datetime
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if not self._may_hold(file, cell[0]):
            return
        for raw, record_day, model, shape in self._scan_plain(file, cell, log):
            if (record_day, slug_for(model)) != cell:
                continue
            if shape == "unknown":
                log.reject(REJECT_NO_MESSAGES, raw.location, "neither 'messages' nor 'input'")
                continue
            if shape == "chat":
                fields = partial(_chat_fields, raw.record)
            else:
                fields = partial(_observation_fields, raw.record, extensions=True)
            yield from self._examples(fields, raw.location, log, extracted_at)

    def _examples(
        self,
        fields: Callable[[], dict[str, Any]],
        location: str,
        log: RejectionLog,
        extracted_at: datetime,
        source: str | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Normalized rows of one record of the cell being read (so its rejection is attributed).

        ``fields`` builds build_examples' arguments inside the guard, so a
        record of unforeseen shape costs itself only. ``source``: the rows'
        ``source`` value (default ``files``; ``langfuse-export`` for the blob
        export, whose trace and observation ids are Langfuse's own).
        """
        try:
            rows = build_examples(
                **fields(), source=source or self.kind, extracted_at=extracted_at, options=self.options
            )
        except RecordRejected as exc:
            log.reject(exc.reason, location, exc.detail)
            return
        except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as exc:
            # A shape nobody foresaw must cost this record only, never the cell.
            log.reject(REJECT_BAD_MESSAGES, location, f"{type(exc).__name__}: {exc}")
            return
        for row in rows:
            yield location, row

    # ------------------------------------------------------------ Langfuse blob export

    def _export_rows(
        self, root: ExportRoot, cell: _Cell, log: RejectionLog, extracted_at: datetime
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        day, slug = cell
        candidates = self._trace_row_candidates(root, day, slug, log)
        generations = self._find_generations(root, day, slug, candidates, log)
        if not generations.count and not candidates:
            return
        wanted = generations.trace_ids | candidates.keys()
        traces = self._trace_fields(root, wanted)
        feedback = self._feedback_scores(root, wanted, log)
        contexts = self._retrieved_contexts(root, wanted)

        for file in root.observations:
            if not self._may_hold(file, day):
                continue
            for raw in self._records(file):
                record = raw.record
                if record is None or not _is_generation(record):
                    continue  # damaged lines were counted when the generations were found
                try:
                    if _generation_cell(record) != cell:
                        continue
                except RecordRejected:
                    continue
                trace_id = _id_text(_pick(record, _TRACE_ID))
                fields = partial(
                    _observation_fields,
                    record,
                    extensions=False,
                    trace=traces.get(trace_id),
                    contexts=contexts.get(trace_id),
                    feedback=feedback.get(trace_id),
                )
                yield from self._examples(fields, raw.location, log, extracted_at, EXPORT_SOURCE)

        for file in root.traces:
            if not candidates or not self._may_hold(file, day):
                continue
            for raw in self._records(file):
                record = raw.record
                trace_id = _id_text(record.get("id")) if record else None
                if trace_id not in candidates or not _has_io(record):
                    continue
                try:
                    if _trace_cell(record) != cell:
                        continue
                except RecordRejected:
                    continue
                fields = partial(_trace_row_fields, record, contexts.get(trace_id), feedback.get(trace_id))
                yield from self._examples(fields, raw.location, log, extracted_at, EXPORT_SOURCE)

    def _trace_row_candidates(
        self, root: ExportRoot, day: str, slug: str | None, log: RejectionLog | None
    ) -> dict[str, str | None]:
        """Trace rows of ``day`` with their own input and output: id → model.

        Damaged trace rows are counted here, unattributed: a trace lends its
        user, tags and consent to generations of any cell.
        """
        candidates: dict[str, str | None] = {}
        for file in root.traces:
            if not self._may_hold(file, day):
                continue
            tally = _DayTally()
            for raw in self._records(file, columns=_TRACE_CELL_COLUMNS):
                if raw.problem is not None:
                    self._unattributed(raw, raw.problem, raw.detail, log, tally)
                    continue
                record = raw.record
                try:
                    record_day, model = _trace_cell_and_model(record)
                except RecordRejected as exc:
                    if _has_io(record):  # it would have been an example
                        self._unattributed(raw, exc.reason, exc.detail, log, tally)
                    continue
                tally.days.add(record_day)
                if record_day != day or not _has_io(record) or (slug is not None and slug_for(model) != slug):
                    continue
                trace_id = _id_text(record.get("id"))
                if trace_id is None:
                    if log is not None:
                        log.reject(REJECT_MISSING_ID, raw.location, "trace row")
                    continue
                candidates[trace_id] = model
            self._remember(file, tally)
        return candidates

    def _find_generations(
        self,
        root: ExportRoot,
        day: str,
        slug: str | None,
        candidates: dict[str, str | None],
        log: RejectionLog | None,
    ) -> _Generations:
        """Generations of the cell (``slug`` None: of the day), and drop candidates that have any.

        Every damaged observation line is counted here (and only here).
        """
        found = _Generations()
        for file in root.observations:
            # Finding which candidate traces have a generation needs every file.
            if not candidates and not self._may_hold(file, day):
                continue
            tally = _DayTally()
            for raw in self._records(file, columns=_GENERATION_CELL_COLUMNS):
                record = raw.readable
                if record is None or not _is_generation(record):
                    if raw.problem is not None:
                        self._unattributed(raw, raw.problem, raw.detail, log, tally)
                    continue
                trace_id = _id_text(_pick(record, _TRACE_ID))
                candidates.pop(trace_id, None)
                try:
                    record_day, model = _generation_cell_and_model(record)
                except RecordRejected as exc:
                    self._unattributed(raw, raw.problem or exc.reason, raw.detail or exc.detail, log, tally)
                    continue
                tally.days.add(record_day)
                in_cell = record_day == day and (slug is None or slug_for(model) == slug)
                if record_day == day:
                    found.models.add(model)
                if raw.problem is not None:
                    if in_cell and log is not None:
                        log.reject(raw.problem, raw.location, raw.detail)
                    continue
                if in_cell:
                    found.count += 1
                    if trace_id is not None:
                        found.trace_ids.add(trace_id)
            self._remember(file, tally)
        return found

    def _trace_fields(self, root: ExportRoot, wanted: set[str]) -> dict[str, _TraceFields]:
        traces: dict[str, _TraceFields] = {}
        for file in root.traces:
            for raw in self._records(file, columns=_TRACE_CONTEXT_COLUMNS):
                trace_id = _id_text(raw.record.get("id")) if raw.record else None
                if trace_id in wanted:
                    traces.setdefault(trace_id, _TraceFields()).absorb(raw.record)
        return traces

    def _feedback_scores(self, root: ExportRoot, wanted: set[str], log: RejectionLog) -> dict[str, float]:
        """Mean user feedback per trace; damaged score lines are counted, unattributed."""
        totals: dict[str, list[float]] = {}
        for file in root.scores:
            for raw in self._records(file):
                if raw.problem is not None:
                    self._unattributed(raw, raw.problem, raw.detail, log)
                    continue
                trace_id = _id_text(_pick(raw.record, _TRACE_ID))
                value = _feedback_value(raw.record) if trace_id in wanted else None
                if value is not None:
                    total = totals.setdefault(trace_id, [0.0, 0])
                    total[0] += value
                    total[1] += 1
        return {trace_id: total / count for trace_id, (total, count) in totals.items()}

    def _retrieved_contexts(self, root: ExportRoot, wanted: set[str]) -> dict[str, list[str]]:
        found: dict[str, list[tuple[str, int, list[str]]]] = {}
        order = 0
        for file in root.observations:
            # Only lines that mention a retriever are worth parsing.
            for raw in self._records(file, _RETRIEVER_COLUMNS, lambda line: b"retriever" in line.lower()):
                record = raw.record
                if record is None or str(record.get("type") or "").upper() != "RETRIEVER":
                    continue
                trace_id = _id_text(_pick(record, _TRACE_ID))
                if trace_id not in wanted:
                    continue
                try:
                    start = parse_timestamp(_pick(record, _START_TIME)).isoformat()
                except RecordRejected:
                    start = ""
                order += 1
                found.setdefault(trace_id, []).append((start, order, context_texts(record.get("output"))))
        return {
            trace_id: [text for _, _, texts in sorted(entries) for text in texts]
            for trace_id, entries in found.items()
        }


@dataclass
class _Generations:
    count: int = 0
    trace_ids: set[str] = field(default_factory=set)
    models: set[str | None] = field(default_factory=set)


# ---------------------------------------------------------------- record shapes


def _plain_shape(record: Mapping[str, Any]) -> str | None:
    """``chat``, ``observation``, ``unknown``; None for an observation that is not a generation."""
    if "messages" in record:
        return "chat"
    if "input" in record:
        kind = record.get("type")
        if kind not in (None, "") and str(kind).upper() != "GENERATION":
            return None
        return "observation"
    return "unknown"


def _plain_cell(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """UTC day and model of a plain line; raises RecordRejected without a usable timestamp."""
    row = _Row(record, extensions=True)
    return utc_day(parse_timestamp(row.get(*_TIMESTAMP))), row.model()


def _is_generation(record: Mapping[str, Any]) -> bool:
    kind = record.get("type")
    return kind in (None, "") or str(kind).upper() == "GENERATION"


def _generation_cell_and_model(record: Mapping[str, Any]) -> tuple[str, str | None]:
    row = _Row(record, extensions=False)
    return utc_day(parse_timestamp(row.get(*_START_TIME))), row.model()


def _generation_cell(record: Mapping[str, Any]) -> _Cell:
    record_day, model = _generation_cell_and_model(record)
    return record_day, slug_for(model)


def _has_io(record: Mapping[str, Any] | None) -> bool:
    return bool(record) and _pick(record, ("input",)) is not None and _pick(record, ("output",)) is not None


def _trace_cell_and_model(record: Mapping[str, Any]) -> tuple[str, str | None]:
    row = _Row(record, extensions=False)
    return utc_day(parse_timestamp(row.get("timestamp"))), row.model()


def _trace_cell(record: Mapping[str, Any]) -> _Cell:
    record_day, model = _trace_cell_and_model(record)
    return record_day, slug_for(model)


def _feedback_value(record: Mapping[str, Any]) -> float | None:
    name = str(record.get("name") or "").strip().lower().replace("-", "_").replace(" ", "_")
    if name not in FEEDBACK_SCORE_NAMES:
        return None
    if str(record.get("source") or "").strip().upper() in MACHINE_SCORE_SOURCES:
        return None
    if str(_pick(record, ("data_type", "dataType")) or "").strip().upper() == "CATEGORICAL":
        return None
    value = record.get("value")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return 1.0 if value.strip().lower() == "true" else 0.0
    return as_float(value)


# ---------------------------------------------------------------- build_examples arguments


def _chat_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat line with our extension fields."""
    row = _Row(record, extensions=True)
    trace_id = _first(_id_text(row.get(*_TRACE_ID)), _id_text(row.get("id")))
    return {
        "trace_id": trace_id if trace_id is not None else _content_trace_id(record),
        "observation_id": row.get(*_OBSERVATION_ID),
        "timestamp": row.get(*_TIMESTAMP),
        "model": row.model(),
        "messages": record.get("messages"),
        "user_id": row.get(*_USER_ID),
        "session_id": row.get(*_SESSION_ID),
        "environment": row.get("environment"),
        "contexts": row.get("contexts"),
        "latency_ms": row.latency_ms(None),
        **row.usage(),
        "cost_usd": row.cost(),
        "tags": _merged_tags(decoded(row.get(*_TAGS))),
        "metadata": record.get("metadata"),
        "explicit_consent": row.get("consent"),
        "feedback_score": row.get(*_FEEDBACK),
        "tools": row.tools(),
    }


def _observation_fields(
    record: Mapping[str, Any],
    extensions: bool,
    trace: _TraceFields | None = None,
    contexts: list[str] | None = None,
    feedback: float | None = None,
) -> dict[str, Any]:
    """A generation: a Langfuse export row, or (``extensions``) a Langfuse-format JSONL line."""
    row = _Row(record, extensions)
    trace = trace or _TraceFields()
    trace_id = _id_text(row.get(*_TRACE_ID))
    if trace_id is None and extensions:
        trace_id = _id_text(record.get("id"))  # a standalone observation is its own trace
    start = row.get(*(_TIMESTAMP if extensions else _START_TIME))
    return {
        "trace_id": trace_id,
        "observation_id": record.get("id"),
        "timestamp": start,
        "model": row.model(),
        "messages": decoded(record.get("input")),
        "output": decoded(record.get("output")),
        "user_id": _first(row.get(*_USER_ID), trace.user_id),
        "session_id": _first(row.get(*_SESSION_ID), trace.session_id),
        "environment": _first(row.get("environment"), trace.environment),
        "contexts": contexts or (row.get("contexts") if extensions else None),
        "latency_ms": row.latency_ms(start),
        **row.usage(),
        "cost_usd": row.cost(),
        "tags": _merged_tags(trace.tags, decoded(row.get(*_TAGS))),
        "metadata": merge_metadata(trace.metadata, row.metadata) or record.get("metadata"),
        "explicit_consent": row.get("consent") if extensions else None,
        "feedback_score": _first(feedback, row.get(*_FEEDBACK) if extensions else None),
        "tools": row.tools(),
    }


def _trace_row_fields(record: Mapping[str, Any], contexts: list[str] | None, feedback: float | None) -> dict[str, Any]:
    """A trace without generations, as one example from its own input and output."""
    row = _Row(record, extensions=False)
    return {
        "trace_id": record.get("id"),
        "observation_id": None,
        "timestamp": row.get("timestamp"),
        "model": row.model(),
        "messages": decoded(record.get("input")),
        "output": decoded(record.get("output")),
        "user_id": row.get(*_USER_ID),
        "session_id": row.get(*_SESSION_ID),
        "environment": row.get("environment"),
        "contexts": contexts,
        "latency_ms": row.latency_ms(None),
        **row.usage(),
        "cost_usd": row.cost(),
        "tags": _merged_tags(decoded(row.get(*_TAGS))),
        "metadata": row.metadata or record.get("metadata"),
        "feedback_score": feedback,
        "tools": row.tools(),
    }
