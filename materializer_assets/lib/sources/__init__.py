"""Trace sources, chosen by one setting (``MATERIALIZER_SOURCE``): a URL or a path.

- unset / empty: the bundled sample (``materializer_assets/sample_data``)
- ``postgresql://user@host:5432/db[?table=traces]``: the Postgres ``traces`` table
- a local folder or ``s3://bucket/prefix``: Langfuse blob-export files and JSONL
- ``langfuse`` or ``https://host``: the Langfuse API (LANGFUSE_BASE_URL/LANGFUSE_HOST,
  LANGFUSE_PUBLIC_KEY/LANGFUSE_SECRET_KEY)
"""

from __future__ import annotations

from pathlib import Path

from ..normalize import ReadOptions
from ..storage import S3Options
from .base import CellRead, SourceUnavailableError, TraceReader

BUNDLED_SAMPLE = Path(__file__).resolve().parent.parent.parent / "sample_data"
BUNDLED_REGISTRY = BUNDLED_SAMPLE / "consent_registry.csv"

__all__ = ["BUNDLED_SAMPLE", "BUNDLED_REGISTRY", "CellRead", "SourceUnavailableError", "TraceReader", "open_source"]


def is_postgres_url(uri: str) -> bool:
    return uri.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def open_source(uri: str | None, options: ReadOptions | None = None, s3_options: S3Options | None = None) -> TraceReader:
    """The reader for ``uri``; raises ``SourceUnavailableError`` for unknown kinds."""
    options = options or ReadOptions()
    uri = (uri or "").strip()
    if not uri:
        from .files import FileTraceReader

        return FileTraceReader(str(BUNDLED_SAMPLE), options=options)
    if is_postgres_url(uri):
        from .postgres import PostgresTraceReader

        return PostgresTraceReader(uri.replace("postgresql+psycopg://", "postgresql://", 1), options=options)
    if uri.lower() == "langfuse" or uri.lower().startswith(("http://", "https://")):
        from .langfuse import LangfuseTraceReader

        return LangfuseTraceReader.from_source(uri, options=options)
    from .files import FileTraceReader

    return FileTraceReader(uri, options=options, s3_options=s3_options)
