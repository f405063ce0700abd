"""Traces from a Langfuse server's public API, v3 or v4 (DESIGN §4).

``MATERIALIZER_SOURCE=langfuse`` reads the server named by ``LANGFUSE_BASE_URL``
/ ``LANGFUSE_HOST``; ``MATERIALIZER_SOURCE=https://host`` names it directly.
Keys: ``LANGFUSE_PUBLIC_KEY`` / ``LANGFUSE_SECRET_KEY`` (or ``https://pk:sk@host``).
The API version is asked from ``/api/public/health`` (major ≥ 4: v4) unless
``MATERIALIZER_LANGFUSE_API`` says ``v3`` or ``v4``.

Rows are built by :func:`~materializer_assets.lib.normalize.build_examples`
(see :mod:`materializer_assets.lib.langfuse.extract` for which field comes
from where) and leave as record batches of :data:`BATCH_ROWS` rows, one time
window at a time. A record that cannot become an example is counted in
``CellRead.rejections`` by reason, located by its observation id. A request
that keeps failing (429s beyond the retries, 5xx, timeouts) raises
:class:`~materializer_assets.lib.langfuse.LangfuseUnavailableError` naming
the window, from inside the stream, so the cell fails and nothing is
published. Traces without any ``GENERATION`` observation are not read (they
carry no model); the blob-export reader reads them from the trace's own
input and output.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterator, Mapping

import httpx

from ..langfuse.client import LangfuseClient
from ..langfuse.config import LangfuseConfig
from ..langfuse.extract import Cell, CellFingerprint, LangfuseApi, api_for
from ..normalize import (
    ReadOptions,
    RejectionLog,
    batched_located_rows,
    build_guarded,
)
from .base import CellRead, TraceReader

BATCH_ROWS = 2048


class LangfuseTraceReader(TraceReader):
    """One Langfuse project, read through its public API."""

    kind = "langfuse"

    def __init__(
        self,
        config: LangfuseConfig,
        options: ReadOptions | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(options)
        self.config = config
        self.client = LangfuseClient(config, transport=transport)
        self._api: LangfuseApi | None = None

    @classmethod
    def from_source(
        cls, uri: str | None, options: ReadOptions | None = None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> "LangfuseTraceReader":
        """The reader for ``langfuse`` or an ``http(s)://`` URL, with keys from the environment."""
        return cls(LangfuseConfig.from_env(uri, env=env, **overrides), options=options)

    @property
    def description(self) -> str:
        version = f" {self._api.version}" if self._api is not None else ""
        return f"Langfuse API{version} at {self.config.host}"

    @property
    def api(self) -> LangfuseApi:
        """The server's API version, asked once (fails now if the server cannot be reached)."""
        if self._api is None:
            self._api = api_for(self.client, self.config)
        return self._api

    def models_on(self, day: date) -> list[str | None]:
        return self.api.models_on(day)

    def read_cell(self, day: date, model_slug: str) -> CellRead:
        api = self.api  # an unreachable server or bad keys fail here, before anything streams
        log = RejectionLog()
        extracted_at = datetime.now(timezone.utc)

        def rows() -> Iterator[tuple[str, dict[str, Any]]]:
            for location, fields in api.cell_records(day, model_slug):
                examples = build_guarded(
                    lambda: fields, source=self.kind, extracted_at=extracted_at, options=self.options, log=log, location=location
                )
                for row in examples:
                    yield location, row

        return CellRead(batches=batched_located_rows(rows(), log, BATCH_ROWS), rejections=log)

    def scan_cells(self, first: date, last: date, scores_until: datetime | None = None) -> dict[Cell, CellFingerprint]:
        """Fingerprints of every (day, slug) cell from ``first`` to ``last`` (for the sensor)."""
        return self.api.scan(first, last, scores_until or datetime.now(timezone.utc))

    def close(self) -> None:
        self.client.close()
