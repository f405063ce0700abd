"""Small builders of normalized batches for tests."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa

from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples, rows_to_batch

EXTRACTED_AT = datetime(2026, 4, 19, tzinfo=timezone.utc)


def make_rows(
    n: int,
    consent: bool | None = True,
    prefix: str = "t",
    model: str = "glm-5-32b",
    day: str = "2026-04-18",
    response: str | None = "an answer",
    user: str | None = None,
) -> list[dict]:
    rows = []
    for i in range(n):
        rows += build_examples(SourceRecord(
            trace_id=f"{prefix}-{i}",
            observation_id=None,
            timestamp=f"{day}T{i % 24:02d}:00:00Z",
            model=model,
            messages=[{"role": "user", "content": f"question {prefix} {i}"}],
            output=response,
            user_id=user if user is not None else f"user-{i}",
            explicit_consent=consent,
            source="test",
            extracted_at=EXTRACTED_AT,
            options=ReadOptions(),
        ))
    return rows


def make_batch(n: int, **kwargs) -> pa.RecordBatch:
    return rows_to_batch(make_rows(n, **kwargs))
