"""Builders shared by the Langfuse tests."""

from __future__ import annotations

from datetime import date

import pyarrow as pa

from materializer_assets.lib.langfuse import LangfuseConfig
from materializer_assets.lib.normalize import ReadOptions
from materializer_assets.lib.schema import NORMALIZED_SCHEMA
from materializer_assets.lib.sources.langfuse import LangfuseTraceReader
from materializer_tests.langfuse_server import PUBLIC_KEY, SECRET_KEY, LangfuseContractServer

V4 = "4.2.0"
V3 = "3.120.0"


def config_for(server: LangfuseContractServer, **overrides) -> LangfuseConfig:
    """Fast retries and no rate cap unless a test asks for them."""
    values = dict(
        host=server.url,
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
        requests_per_second=0,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.05,
        timeout_seconds=5,
    )
    values.update(overrides)
    return LangfuseConfig(**values)


def reader_for(server: LangfuseContractServer, options: ReadOptions | None = None, **overrides) -> LangfuseTraceReader:
    return LangfuseTraceReader(config_for(server, **overrides), options=options)


def read_rows(reader: LangfuseTraceReader, day: date, slug: str) -> tuple[list[dict], object]:
    """Rows of a cell (sorted like the oracle, extraction time blanked) and its rejection log."""
    cell = reader.read_cell(day, slug)
    batches = list(cell.batches)
    for batch in batches:
        assert batch.schema.equals(NORMALIZED_SCHEMA, check_metadata=True)
    rows = pa.Table.from_batches(batches, NORMALIZED_SCHEMA).to_pylist()
    return comparable(rows), cell.rejections


def comparable(rows: list[dict]) -> list[dict]:
    rows = [{**row, "extracted_at": None} for row in rows]
    return sorted(rows, key=lambda row: (row["trace_id"], row["observation_id"] or ""))
