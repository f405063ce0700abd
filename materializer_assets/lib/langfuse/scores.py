"""Writing rewards back to Langfuse as scores (opt-in, DESIGN §4).

``POST /api/public/scores`` upserts by ``id``. Ids are deterministic, one
per training example: ``uuid5(namespace, "trace_id|example id|score name|scorer
version")``, the example id being the row's ``observation_id`` as we store it
(``uuid5(namespace, "trace_id|score name|scorer version")`` for a row without
one). A re-run of the same scorer overwrites its scores instead of adding
new ones, two examples of one trace (two generations, or two turns of one
conversation) keep a score each, and a new scorer version gets scores of its
own.

``observationId`` is sent only when it is Langfuse's own id
(:func:`langfuse_observation_id`): never an id we made up (``…#turn-k`` from
single-turn conversion) and never one from a source that is not Langfuse
(a chat JSONL line's id, a Postgres row). Such scores attach to the trace.

Values must be finite numbers (NUMERIC) or 0/1 (BOOLEAN); anything else is
skipped with a named reason, never sent.

Enabled by ``MATERIALIZER_LANGFUSE_WRITE_SCORES=true``; the asset
``langfuse_scores``, downstream of ``reward_dataset`` and gated by every
blocking check of the cell, calls :meth:`ScoreWriter.write` with its rows.
"""

from __future__ import annotations

import math
import os
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..consent import parse_consent
from .client import LangfuseClient
from .config import ENV_WRITE_SCORES

SCORES_PATH = "/api/public/scores"
# Fixed forever: changing it would change every id and duplicate every score.
SCORE_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/trace-reward-materializer/langfuse-scores")

SKIP_NOT_FINITE = "value_not_finite"
SKIP_NOT_BOOLEAN = "value_not_0_or_1"
SKIP_NO_TRACE = "missing_trace_id"
SKIP_NO_NAME = "missing_name"

# Values of the normalized trace's ``source`` column whose observation ids are Langfuse's own:
# the Langfuse API reader and the Langfuse blob-export files.
LANGFUSE_SOURCES = frozenset({"langfuse", "langfuse-export"})
# Single-turn conversion names the k-th assistant turn of a generation "<observation id>#turn-k".
DERIVED_OBSERVATION_MARK = "#turn-"


def write_back_enabled(env: Mapping[str, str] | None = None) -> bool:
    """The opt-in setting; anything but a clear yes is off."""
    env = os.environ if env is None else env
    return parse_consent((env.get(ENV_WRITE_SCORES) or "").strip()) is True


def score_id(trace_id: str, name: str, scorer_version: str, example_id: str | None = None) -> str:
    """Deterministic score id: uuid5 of ``trace_id|example_id|name|scorer_version``
    (``trace_id|name|scorer_version`` without an example id)."""
    key = f"{trace_id}|{name}|{scorer_version}" if not example_id else f"{trace_id}|{example_id}|{name}|{scorer_version}"
    return str(uuid.uuid5(SCORE_ID_NAMESPACE, key))


def langfuse_observation_id(observation_id: str | None, source: str | None) -> str | None:
    """``observation_id`` when Langfuse knows it (a row read from Langfuse, not a turn we
    derived from a generation), else None: the score then attaches to the trace."""
    if not observation_id or source not in LANGFUSE_SOURCES or DERIVED_OBSERVATION_MARK in observation_id:
        return None
    return observation_id


@dataclass(frozen=True)
class ScoreToWrite:
    trace_id: str
    name: str
    value: float
    scorer_version: str
    observation_id: str | None = None  # Langfuse's own observation id: sent as observationId
    data_type: str = "NUMERIC"  # NUMERIC or BOOLEAN
    comment: str | None = None
    metadata: Mapping[str, Any] | None = None
    environment: str | None = None
    # The training example within the trace (our observation_id, "…#turn-k" included): part of the
    # id, never sent. Defaults to observation_id.
    example_id: str | None = None

    @property
    def id(self) -> str:
        return score_id(self.trace_id, self.name, self.scorer_version, self.example_id or self.observation_id)

    def problem(self) -> str | None:
        if not self.trace_id or not str(self.trace_id).strip():
            return SKIP_NO_TRACE
        if not self.name or not str(self.name).strip():
            return SKIP_NO_NAME
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            return SKIP_NOT_FINITE
        if self.data_type == "BOOLEAN" and self.value not in (0, 1):
            return SKIP_NOT_BOOLEAN
        return None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "traceId": self.trace_id,
            "name": self.name,
            "value": float(self.value),
            "dataType": self.data_type,
            "metadata": {**(self.metadata or {}), "scorer_version": self.scorer_version},
        }
        if self.observation_id:
            body["observationId"] = self.observation_id
        if self.comment:
            body["comment"] = self.comment
        if self.environment:
            body["environment"] = self.environment
        return body


@dataclass
class WriteReport:
    written: int = 0
    skipped: Counter = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        return {"langfuse_scores_written": self.written, "langfuse_scores_skipped": dict(self.skipped)}


class ScoreWriter:
    """Posts scores one by one through the rate-capped, retrying client."""

    def __init__(self, client: LangfuseClient) -> None:
        self.client = client

    def write(self, scores: Iterable[ScoreToWrite]) -> WriteReport:
        report = WriteReport()
        for score in scores:
            problem = score.problem()
            if problem is not None:
                report.skipped[problem] += 1
                continue
            # An upsert by id: retrying a POST whose answer was lost is safe.
            answer = self.client.request_json(
                "POST", SCORES_PATH, json_body=score.body(), context=f"score {score.name!r} of trace {score.trace_id}"
            )
            report.written += 1
            report.ids.append(str(answer.get("id")) if isinstance(answer, dict) and answer.get("id") else score.id)
        return report
