"""Reading the traces to score from the upstream cell, batch by batch.

The upstream is whatever the upstream IO manager hands over: a
``pyarrow.dataset.Dataset`` (the Parquet lake today), or a lazy scan of the
Iceberg table (anything with ``to_batches(columns=...)``, or pyiceberg's
``to_arrow_batch_reader()``), a ``RecordBatchReader`` or a table. Only the
columns scoring needs are read. A row without explicit consent is never
scored — it is never sent to any endpoint — even if it reached the upstream,
and with a :class:`~..consent.ConsentPolicy` neither is a row the registry or
the erasure list has refused since the upstream was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ..consent import CONSENT_COLUMNS, ConsentPolicy, granted_mask

INPUT_COLUMNS = (
    "trace_id",
    "observation_id",
    "content_hash",
    "date",
    "model_slug",
    "prompt",
    "response",
    "contexts",
    *CONSENT_COLUMNS,
)
ID_COLUMNS = ("trace_id", "observation_id", *CONSENT_COLUMNS)
_TYPES = {"contexts": pa.list_(pa.string()), "consent": pa.bool_(), "timestamp": pa.timestamp("us", tz="UTC")}


@dataclass(frozen=True)
class TraceInput:
    trace_id: str
    observation_id: str | None
    content_hash: str
    date: str | None
    model_slug: str | None
    question: str | None
    answer: str
    contexts: tuple[str, ...]


@dataclass
class InputStats:
    rows_read: int = 0
    rows_without_consent: int = 0  # forgotten users' rows included


def _schema_names(upstream: Any) -> list[str] | None:
    schema = getattr(upstream, "schema", None)
    if callable(schema):  # pyiceberg scans expose schema() returning an Iceberg schema
        try:
            schema = schema()
        except TypeError:
            return None
    if isinstance(schema, pa.Schema):
        return list(schema.names)
    names = [getattr(f, "name", None) for f in getattr(schema, "fields", None) or ()]
    return [n for n in names if n] or None


def scan_batches(upstream: Any, columns: Sequence[str], batch_rows: int = 4096) -> Iterator[pa.RecordBatch]:
    """Stream ``columns`` of the upstream cell; columns it lacks come back as nulls."""
    names = _schema_names(upstream)
    wanted = [c for c in columns if names is None or c in names]
    if names is not None and not wanted:
        return
    if isinstance(upstream, ds.Dataset):
        source: Iterable = upstream.to_batches(columns=wanted, batch_size=batch_rows)
    elif isinstance(upstream, pa.Table):
        source = upstream.select(wanted).to_batches(max_chunksize=batch_rows)
    elif isinstance(upstream, pa.RecordBatchReader):
        source = upstream
    elif hasattr(upstream, "to_batches"):
        source = upstream.to_batches(columns=wanted)
    elif hasattr(upstream, "to_arrow_batch_reader"):
        scan = upstream.select(*wanted) if hasattr(upstream, "select") else upstream
        from ..iceberg.reading import stream_scan

        source = stream_scan(scan)
    else:
        raise TypeError(f"cannot stream batches from {type(upstream).__name__}")
    for batch in source:
        if batch.num_rows == 0:
            continue
        arrays, fields = [], []
        for name in columns:
            if name in batch.schema.names:
                column = batch.column(name)
            else:
                column = pa.nulls(batch.num_rows, _TYPES.get(name, pa.string()))
            arrays.append(column)
            fields.append(pa.field(name, column.type))
        batch = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
        for offset in range(0, batch.num_rows, batch_rows):
            yield batch.slice(offset, batch_rows)


def consented_only(
    batches: Iterable[pa.RecordBatch], stats: InputStats, policy: ConsentPolicy | None = None
) -> Iterator[pa.RecordBatch]:
    """Drop (and count) rows without explicit consent, decided again by ``policy`` when given
    (the registry may have changed since the upstream was written); they are never scored."""
    for batch in batches:
        stats.rows_read += batch.num_rows
        if policy is not None:
            batch, forgotten = policy.apply(batch)
            stats.rows_without_consent += forgotten
        # scan_batches gives a null consent column when the upstream lacks one: fail closed.
        mask = granted_mask(batch)
        kept = pc.sum(mask).as_py() or 0
        stats.rows_without_consent += batch.num_rows - kept
        if kept < batch.num_rows:
            batch = batch.filter(mask)
        if batch.num_rows:
            yield batch


def trace_inputs(batch: pa.RecordBatch) -> list[TraceInput]:
    columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    rows = []
    for i in range(batch.num_rows):
        rows.append(
            TraceInput(
                trace_id=columns["trace_id"][i],
                observation_id=columns["observation_id"][i],
                content_hash=columns["content_hash"][i],
                date=columns["date"][i],
                model_slug=columns["model_slug"][i],
                question=columns["prompt"][i],
                answer=columns["response"][i] or "",
                contexts=tuple(columns["contexts"][i] or ()),
            )
        )
    return rows
