"""The normalized trace schema (DESIGN §3): one row per training example.

Columns are only ever appended at the end, so files written by older versions
stay readable and Iceberg can evolve the table with ``union_by_name``.
"""

from __future__ import annotations

import pyarrow as pa

MESSAGE_TYPE = pa.struct(
    [
        pa.field("role", pa.string()),
        pa.field("content", pa.string()),
        # Tool calls stay a JSON string: their shape differs per provider and
        # trainers re-parse them anyway.
        pa.field("tool_calls", pa.string()),
        pa.field("name", pa.string()),
    ]
)

NORMALIZED_SCHEMA = pa.schema(
    [
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("observation_id", pa.string()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("date", pa.string(), nullable=False),
        pa.field("model", pa.string()),
        pa.field("model_slug", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("environment", pa.string()),
        pa.field("messages", pa.list_(MESSAGE_TYPE)),
        pa.field("prompt", pa.string()),
        pa.field("response", pa.string()),
        pa.field("contexts", pa.list_(pa.string())),
        pa.field("latency_ms", pa.int64()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("total_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("metadata", pa.string()),
        pa.field("consent", pa.bool_()),
        pa.field("consent_source", pa.string()),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("extracted_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # Appended after DESIGN §3: the user's own feedback (Langfuse user score
        # or metadata feedback_score), raw as the source gave it.
        pa.field("feedback_score", pa.float64()),
        # Tools offered to the model (OpenAI function-calling JSON), if any.
        pa.field("tools", pa.string()),
    ]
)

COLUMN_NAMES: tuple[str, ...] = tuple(NORMALIZED_SCHEMA.names)

# Columns a consented row may never have null (checked after every write).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "trace_id",
    "timestamp",
    "date",
    "model_slug",
    "response",
    "consent",
    "consent_source",
    "content_hash",
    "source",
    "extracted_at",
)

# Columns that hold long free text: no statistics, no dictionary (DESIGN §5).
TEXT_COLUMNS: tuple[str, ...] = ("messages", "prompt", "response", "contexts", "metadata", "tools")

# Low-cardinality columns worth dictionary encoding.
DICTIONARY_COLUMNS: tuple[str, ...] = (
    "date",
    "model",
    "model_slug",
    "environment",
    "consent_source",
    "source",
)


def empty_table() -> pa.Table:
    return NORMALIZED_SCHEMA.empty_table()


def conform(table: pa.Table | pa.RecordBatch) -> pa.Table:
    """Return ``table`` with exactly the normalized columns, in order and type.

    Missing trailing columns are filled with nulls (files written before a
    column was added); unknown columns are an error so a typo never passes.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    extra = set(table.column_names) - set(COLUMN_NAMES)
    if extra:
        raise ValueError(f"columns not in the normalized schema: {sorted(extra)}")
    columns = []
    for field in NORMALIZED_SCHEMA:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=NORMALIZED_SCHEMA)
