"""``FileTraceReader``: the traces of one cell from plain JSONL files and Langfuse blob-storage exports.

Which files are read is :mod:`.listing`'s job, how a file's records are read
:mod:`.formats`', what a record means :mod:`.records`'; this module joins them
into the rows of one cell (day, model).

**Streaming.** Rows leave as record batches of :data:`BATCH_ROWS`. An export
is read in passes over its files, each keeping only a small index: the trace
ids of the cell, their trace fields (not their input/output), their feedback
and retrieved contexts; then the generations are streamed.

**Rejections** (counted in ``CellRead.rejections`` by reason, location
``file:line``; for Parquet and JSON arrays the 1-based row). A record whose
cell (day and model) is known is counted only by that cell; one whose cell
cannot be told (a line that is not JSON, a record without a usable
timestamp, a damaged trace, score or retriever row, which can affect any
cell through the join) is counted as unattributed by every read of a cell
that scanned its file. A line with invalid UTF-8 is rejected
(``invalid_utf8``) and counted as attributed if its cell can be learnt.
Duplicates are kept (a later stage dedups).

The reader remembers, per file (path, size and mtime), which days it holds
once it has scanned it, so later reads of other days skip it; files with
unattributed rejections are always scanned, so every cell keeps reporting
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import partial
from typing import Any, Callable, Iterator

from ...normalize import (
    REJECT_MISSING_ID,
    REJECT_NO_MESSAGES,
    ReadOptions,
    RecordRejected,
    RejectionLog,
    batched_located_rows,
    build_guarded,
    context_texts,
    parse_timestamp,
)
from ...slugs import model_slug as slug_for
from ...storage import S3Options, resolve
from ..base import CellRead, TraceReader
from .formats import _RawRecord, read_records
from .listing import ExportRoot, SourceFile, list_trace_files
from .records import (
    _GENERATION_CELL_COLUMNS,
    _RETRIEVER_COLUMNS,
    _START_TIME,
    _TRACE_CELL_COLUMNS,
    _TRACE_CONTEXT_COLUMNS,
    _TRACE_ID,
    _Cell,
    _chat_fields,
    _feedback_value,
    _generation_cell,
    _generation_cell_and_model,
    _has_io,
    _id_text,
    _is_generation,
    _observation_fields,
    _pick,
    _plain_cell,
    _plain_shape,
    _trace_cell,
    _trace_cell_and_model,
    _trace_row_fields,
    _TraceFields,
)

BATCH_ROWS = 4096

# The ``source`` of rows read from a Langfuse blob export (their ids are Langfuse's own);
# plain JSONL rows are ``files``.
EXPORT_SOURCE = "langfuse-export"


@dataclass(frozen=True)
class _FileDays:
    days: frozenset[str]
    clean: bool  # False: it has rejections every cell must report


class _DayTally:
    def __init__(self) -> None:
        self.days: set[str] = set()
        self.clean = True


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
        plain_files, roots = list_trace_files(self._location)
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
        plain_files, roots = list_trace_files(self._location)  # fails now if the source is missing
        log = RejectionLog()
        extracted_at = datetime.now(timezone.utc)

        def located_rows() -> Iterator[tuple[str, dict[str, Any]]]:
            for file in plain_files:
                yield from self._plain_rows(file, cell, log, extracted_at)
            for root in roots:
                yield from self._export_rows(root, cell, log, extracted_at)

        return CellRead(batches=batched_located_rows(located_rows(), log, BATCH_ROWS), rejections=log)

    # ------------------------------------------------------------ reading files

    def _records(
        self,
        file: SourceFile,
        columns: frozenset[str] | None = None,
        line_filter: Callable[[bytes], bool] | None = None,
    ) -> Iterator[_RawRecord]:
        """Every record of one file, streamed (:func:`.formats.read_records`)."""
        return read_records(self._location.filesystem, file, columns, line_filter)

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

        ``fields`` builds the SourceRecord's fields inside the guard, so a
        record of unforeseen shape costs itself only. ``source``: the rows'
        ``source`` value (default ``files``; ``langfuse-export`` for the blob
        export, whose trace and observation ids are Langfuse's own).
        """
        rows = build_guarded(
            fields, source=source or self.kind, extracted_at=extracted_at, options=self.options, log=log, location=location
        )
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
