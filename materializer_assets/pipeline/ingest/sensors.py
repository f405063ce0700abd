"""Sensors that turn new traces into runs of their (date, model) cells, with nobody clicking.

- ``langfuse_new_traces`` polls the Langfuse API (``MATERIALIZER_SOURCE=langfuse``
  or the server's URL): fingerprints of every cell of the last complete days
  (``MATERIALIZER_SENSOR_LOOKBACK_DAYS``, default 3), compared with the
  cursor (see :mod:`materializer_assets.lib.langfuse.watch`).
- ``blob_export_files`` watches the source folder or ``s3://`` prefix for new
  blob-export or JSONL files (see :mod:`materializer_assets.lib.langfuse.blob_export`).

Both return one ``SensorResult``: the unseen model slugs as new dynamic
partitions of ``model`` and one run request per cell, in the same tick. A
sensor is on by default when the source is of its kind; the other stays off
(switch it on in the UI). Today is never requested: its date partition only
exists once the day is over.
"""

from __future__ import annotations

import os
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import dagster as dg

from ...lib.langfuse.blob_export import FileCursor, advance, cells_for_changes, changed_files, list_source_files
from ...lib.langfuse.config import is_langfuse_source
from ...lib.langfuse.watch import TickPlan, WatchCursor, days_to_scan, plan_tick
from ...lib.slugs import model_slug
from ...lib.sources import SourceUnavailableError, TraceReader
from ...lib.sources.langfuse import LangfuseTraceReader
from ...lib.storage import S3Options, resolve
from ...resources.settings import TraceSourceResource
from ..partitions import MODEL_DIMENSION, cell_key, date_partitions, model_partitions

LOOKBACK_ENV = "MATERIALIZER_SENSOR_LOOKBACK_DAYS"
INTERVAL_ENV = "MATERIALIZER_SENSOR_INTERVAL_SECONDS"
DEFAULT_LOOKBACK_DAYS = 3
DEFAULT_INTERVAL_SECONDS = 300
TRIGGER_TAG = "materializer/trigger"

# The implicit asset job over the graph: every asset shares cell_partitions, so a
# run request for one (date, model) key materializes that cell end to end.
materialize_cells = dg.define_asset_job(
    "materialize_cells",
    selection=dg.AssetSelection.all(),
    description="Materialize every asset of one (date, model) cell.",
)


def source_kind(source: str | None = None) -> str:
    """``langfuse``, ``postgres``, ``files`` or ``sample`` (the bundled sample)."""
    text = (os.environ.get("MATERIALIZER_SOURCE", "") if source is None else source).strip()
    if not text:
        return "sample"
    if is_langfuse_source(text):
        return "langfuse"
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgres"
    return "files"


def lookback_days() -> int:
    raw = os.environ.get(LOOKBACK_ENV, "").strip()
    return max(int(raw), 1) if raw else DEFAULT_LOOKBACK_DAYS


def _interval_seconds() -> int:
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    return max(int(raw), 30) if raw else DEFAULT_INTERVAL_SECONDS


def _status(kind: str) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if source_kind() == kind else dg.DefaultSensorStatus.STOPPED


def first_partition_day() -> date:
    return date_partitions.start.date()


def _utc_today(clock: Callable[[], datetime]) -> date:
    return clock().astimezone(timezone.utc).date()


def _result(
    context: dg.SensorEvaluationContext, cells: list[tuple[str, str, str]], cursor: str, trigger: str
) -> dg.SensorResult:
    """New model partitions and one run per cell; ``cells`` are (day, slug, run-key suffix)."""
    known = set(context.instance.get_dynamic_partitions(MODEL_DIMENSION))
    new_slugs = sorted({slug for _, slug, _ in cells} - known)
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"{trigger}:{day}|{slug}:{suffix}",
                partition_key=cell_key(day, slug),
                tags={TRIGGER_TAG: trigger},
            )
            for day, slug, suffix in cells
        ],
        dynamic_partitions_requests=[model_partitions.build_add_request(new_slugs)] if new_slugs else [],
        cursor=cursor,
    )


def _source_sensor(
    name: str,
    kind: str,
    default_status: dg.DefaultSensorStatus | None,
    *,
    description: str,
    other_source_reason: str,
    evaluate: Callable[[dg.SensorEvaluationContext, TraceSourceResource, TraceReader], object],
) -> dg.SensorDefinition:
    """A sensor on the ``materialize_cells`` job that runs ``evaluate`` with an open reader
    of the configured source when the source is of ``kind``, and skips otherwise."""

    @dg.sensor(
        name=name,
        job=materialize_cells,
        minimum_interval_seconds=_interval_seconds(),
        default_status=default_status or _status(kind),
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext, trace_source: TraceSourceResource):
        if source_kind(trace_source.source) != kind:
            return dg.SkipReason(other_source_reason)
        reader = trace_source.open_reader()
        try:
            return evaluate(context, trace_source, reader)
        finally:
            reader.close()

    return _sensor


# ---------------------------------------------------------------- Langfuse API


def langfuse_tick(
    reader: LangfuseTraceReader, cursor_text: str | None, today: date, lookback: int, first_day: date, now: datetime
) -> TickPlan | None:
    """Scan the days a tick covers and plan its requests (None: no complete day yet)."""
    cursor = WatchCursor.loads(cursor_text)
    span = days_to_scan(cursor, today, lookback, first_day)
    if span is None:
        return None
    fingerprints = reader.scan_cells(span[0], span[1], scores_until=now)
    tokens = {cell: fingerprint.token for cell, fingerprint in fingerprints.items()}
    return plan_tick(cursor, tokens, span[0], span[1], lookback)


def build_langfuse_sensor(
    name: str = "langfuse_new_traces",
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    default_status: dg.DefaultSensorStatus | None = None,
) -> dg.SensorDefinition:
    """The Langfuse sensor; tests pass a ``clock`` to fix "today"."""

    def evaluate(context: dg.SensorEvaluationContext, trace_source: TraceSourceResource, reader: TraceReader):
        if not isinstance(reader, LangfuseTraceReader):
            return dg.SkipReason(f"the source is read by {type(reader).__name__}, not the Langfuse API reader")
        now = clock()
        plan = langfuse_tick(reader, context.cursor, _utc_today(clock), lookback_days(), first_partition_day(), now)
        if plan is None:
            return dg.SkipReason("no complete day since the first date partition yet")
        context.log.info(
            f"scanned {plan.first_day}..{plan.last_day} on {reader.description}: {len(plan.requests)} cell(s) changed"
        )
        return _result(context, [(r.day, r.slug, r.token) for r in plan.requests], plan.cursor.dumps(), name)

    return _source_sensor(
        name,
        "langfuse",
        default_status,
        description="Polls the Langfuse API for new or late traces and feedback; registers new models and "
        "requests runs of the (date, model) cells that changed within the lookback window.",
        other_source_reason="MATERIALIZER_SOURCE is not a Langfuse server (set it to 'langfuse' or the server URL)",
        evaluate=evaluate,
    )


# ---------------------------------------------------------------- blob-export files


def files_tick(
    trace_source: TraceSourceResource,
    reader: TraceReader,
    cursor_text: str | None,
    today: date,
    lookback: int,
    first_day: date,
) -> tuple[list[tuple[str, str, str]], FileCursor, int]:
    """(cells to request with their run-key suffix, next cursor, number of changed files)."""
    from ...lib.sources.files import FileTraceReader

    s3_options = S3Options(endpoint_url=trace_source.s3_endpoint_url)
    location = resolve(trace_source.source.strip(), s3_options)
    try:
        files = list_source_files(location)
    except (OSError, FileNotFoundError) as exc:
        raise SourceUnavailableError(f"cannot list trace files at {location.uri}: {exc}") from exc
    cursor = FileCursor.loads(cursor_text)
    changed = changed_files(files, cursor)
    next_cursor = advance(cursor, files)
    last = today - timedelta(days=1)
    first = max(last - timedelta(days=lookback - 1), first_day)
    if not changed or last < first:
        return [], next_cursor, len(changed)
    days = [first + timedelta(days=offset) for offset in range((last - first).days + 1)]
    file_readers: dict[str, FileTraceReader] = {}

    def models_in_file(file, day):
        if file.uri not in file_readers:  # one reader per file: it remembers which days the file holds
            file_readers[file.uri] = FileTraceReader(file.uri, options=reader.options, s3_options=s3_options)
        return file_readers[file.uri].models_on(day)

    cells = cells_for_changes(changed, files, days, reader.models_on, models_in_file, model_slug)
    suffix = f"{next_cursor.watermark_ns}"
    return [(day, slug, suffix) for day, slug in sorted(cells)], next_cursor, len(changed)


def build_blob_export_sensor(
    name: str = "blob_export_files",
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    default_status: dg.DefaultSensorStatus | None = None,
) -> dg.SensorDefinition:
    def evaluate(context: dg.SensorEvaluationContext, trace_source: TraceSourceResource, reader: TraceReader):
        cells, cursor, changed = files_tick(
            trace_source, reader, context.cursor, _utc_today(clock), lookback_days(), first_partition_day()
        )
        if not changed:
            return dg.SensorResult(cursor=cursor.dumps(), skip_reason=dg.SkipReason("no new files"))
        context.log.info(f"{changed} new or changed file(s) on {reader.description}: {len(cells)} cell(s)")
        return _result(context, cells, cursor.dumps(), name)

    return _source_sensor(
        name,
        "files",
        default_status,
        description="Watches the source folder or s3:// prefix for new Langfuse blob-export or JSONL files; "
        "registers new models and requests runs of the cells they touch within the lookback window.",
        other_source_reason="MATERIALIZER_SOURCE is not a folder or s3:// prefix of export files",
        evaluate=evaluate,
    )


langfuse_new_traces = build_langfuse_sensor()
blob_export_files = build_blob_export_sensor()

SENSORS = [langfuse_new_traces, blob_export_files]
JOBS = [materialize_cells]

__all__ = [
    "JOBS",
    "SENSORS",
    "blob_export_files",
    "build_blob_export_sensor",
    "build_langfuse_sensor",
    "langfuse_new_traces",
    "materialize_cells",
]
