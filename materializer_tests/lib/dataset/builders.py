"""Builders of real normalized trace rows (through the project's normalizer) for dataset tests."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples, rows_to_batch

EXTRACTED_AT = datetime(2026, 4, 19, tzinfo=timezone.utc)


def trace(
    trace_id: str,
    *,
    user: str | None = "u-1",
    prompt: str = "What is the capital of France?",
    response: str = "Paris.",
    system: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    session: str | None = None,
    observation_id: str | None = None,
    hour: int = 10,
    consent: bool | None = True,
    model: str = "glm-5-32b",
    latency_ms: int | None = 1500,
    input_tokens: int | None = 12,
    output_tokens: int | None = 30,
    feedback: float | None = None,
) -> dict:
    """One normalized row: optional system prompt, earlier turns, the user prompt, the response."""
    messages = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages += [{"role": role, "content": content} for role, content in history]
    messages.append({"role": "user", "content": prompt})
    (row,) = build_examples(SourceRecord(
        trace_id=trace_id,
        observation_id=observation_id,
        timestamp=f"2026-04-18T{hour:02d}:00:00Z",
        model=model,
        messages=messages,
        output=response,
        user_id=user,
        session_id=session,
        explicit_consent=consent,
        latency_ms=latency_ms,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        feedback_score=feedback,
        source="test",
        extracted_at=EXTRACTED_AT,
        options=ReadOptions(convert_to_single_turn=False),
    ))
    return row


def table(rows: list[dict], ragas: Sequence[float | None] | None = None, judge: Sequence[float | None] | None = None) -> pa.Table:
    """Rows as a normalized table, with ``ragas_reward`` / ``judge_score`` columns when given."""
    out = pa.Table.from_batches([rows_to_batch(rows)])
    if ragas is not None:
        out = out.append_column("ragas_reward", pa.array(list(ragas), pa.float64()))
    if judge is not None:
        out = out.append_column("judge_score", pa.array(list(judge), pa.float64()))
    return out


def set_column(t: pa.Table, name: str, values: list) -> pa.Table:
    field = t.schema.field(name)
    return t.set_column(t.schema.get_field_index(name), field, pa.array(values, field.type))


def rows_where(t: pa.Table, column: str, value) -> pa.Table:
    return t.filter(pc.equal(t.column(column), value))


def by_trace(t: pa.Table) -> dict[str, dict]:
    return {row["trace_id"]: row for row in t.to_pylist()}
