"""Langfuse's public API: an HTTP client (httpx + tenacity), v3/v4 extraction and score write-back.

Pure library code (no Dagster): the reader in ``lib/sources/langfuse.py`` and
the sensors in ``pipeline/ingest/sensors.py`` build on it.
"""

from .client import LangfuseClient, LangfuseHTTPError, LangfuseUnavailableError, RateLimiter, iso_utc, parse_retry_after
from .config import LangfuseConfig, is_langfuse_source, redact_url
from .extract import CellFingerprint, LangfuseApi, V3Api, V4Api, Window, api_for, day_windows
from .scores import ScoreToWrite, ScoreWriter, WriteReport, langfuse_observation_id, score_id, write_back_enabled

__all__ = [
    "CellFingerprint",
    "LangfuseApi",
    "LangfuseClient",
    "LangfuseConfig",
    "LangfuseHTTPError",
    "LangfuseUnavailableError",
    "RateLimiter",
    "ScoreToWrite",
    "ScoreWriter",
    "V3Api",
    "V4Api",
    "Window",
    "WriteReport",
    "api_for",
    "day_windows",
    "is_langfuse_source",
    "iso_utc",
    "parse_retry_after",
    "redact_url",
    "langfuse_observation_id",
    "score_id",
    "write_back_enabled",
]
