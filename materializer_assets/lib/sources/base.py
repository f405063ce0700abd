"""The reader interface every source implements.

A reader answers two questions for a UTC day: which models have traces
(``models_on``), and what are the normalized rows of one (day, model-slug)
cell (``read_cell``). Rows come as a stream of Arrow record batches of
:data:`~materializer_assets.lib.schema.NORMALIZED_SCHEMA`, so no reader ever
holds a whole day in memory. Consent is what the trace itself records; the
pipeline applies the consent registry afterwards.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import date
from typing import Iterator

import pyarrow as pa

from ..normalize import ReadOptions, RejectionLog
from ..schema import NORMALIZED_SCHEMA


class SourceUnavailableError(RuntimeError):
    """The source cannot be read at all (unreachable server, missing folder).

    The message names the source (without secrets); nothing is published.
    """


@dataclass
class CellRead:
    """The rows of one cell, streamed; ``rejections`` fills in as it is consumed."""

    batches: Iterator[pa.RecordBatch]
    rejections: RejectionLog = field(default_factory=RejectionLog)
    schema: pa.Schema = NORMALIZED_SCHEMA

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self.batches


class TraceReader(abc.ABC):
    """Base class of all sources (Postgres, files, Langfuse API)."""

    #: short name stored in the ``source`` column, e.g. ``postgres``
    kind: str = "unknown"

    def __init__(self, options: ReadOptions | None = None) -> None:
        self.options = options or ReadOptions()

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where this reader reads from, safe to log (no passwords or keys)."""

    @abc.abstractmethod
    def models_on(self, day: date) -> list[str | None]:
        """Model names (as the source spells them; None if absent) with traces that day."""

    @abc.abstractmethod
    def read_cell(self, day: date, model_slug: str) -> CellRead:
        """Normalized rows of the traces of ``day`` whose model slugs to ``model_slug``."""

    def close(self) -> None:  # pragma: no cover - optional
        """Release connections."""
