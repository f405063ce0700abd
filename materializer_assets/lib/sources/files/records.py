"""What a trace record means: its cell, and the fields of its ``SourceRecord`` (DESIGN §4).

Field names are taken in snake_case (what the Langfuse export writes) or
camelCase (the public API).

**Langfuse blob-storage export** rows:

* Every ``GENERATION`` observation is one record: ``input`` is the
  conversation, ``output`` the reply, the model is ``provided_model_name``
  (or ``model``, or ``metadata.model``). Its **UTC day is the generation's start time**: the moment
  the reply was produced, known without a join.
* Trace-level fields (user, session, environment, tags, metadata) come from
  the trace row with the same id, or from the observation itself
  (``observations_v2`` rows carry them). Tags are the union; observation
  metadata keys override trace metadata keys. Consent tags and the
  ``consent_training`` metadata key may be on either.
* Contexts are the outputs of the trace's ``RETRIEVER`` observations, in
  start-time order.
* ``feedback_score`` is the mean of the trace's numeric scores whose name,
  lower-cased with ``-`` and spaces read as ``_``, is one of
  :data:`FEEDBACK_SCORE_NAMES`, except scores with source ``EVAL``
  (LLM-as-a-judge scores are not the user's feedback). ``CATEGORICAL``
  scores are ignored; ``BOOLEAN`` ones count as 0/1.
* Latency: ``end - start``, else the export's ``latency`` (seconds).
  Tokens from ``usage_details`` (input/output/total), cost from
  ``cost_details.total`` or ``calculated_total_cost`` / ``total_cost``.
* A trace with input and output on its own row and no ``GENERATION`` at all
  becomes one record of the trace's day; its model is ``metadata.model``
  (else unknown).

**Plain JSONL** lines, detected per line:
OpenAI chat (``{"messages": [...], "tools": [...]}``) or Langfuse observation
(``{"id", "input": [...], "output", "metadata"}``; a row whose ``type`` is
not ``GENERATION`` is skipped, so an export folder read on its own still
yields its generations). Our extension fields, at the top level or inside
``metadata``, give what training needs: ``id``/``trace_id``, ``timestamp``,
``model``, ``user_id``, ``session_id``, ``consent``, ``tags``, ``contexts``,
``feedback_score``, ``environment`` (plus ``latency_ms``, ``usage``,
``cost_usd``). A chat line without an id gets the trace id
``sha256(canonical JSON of the line)[:32]`` (keys sorted, compact
separators): the same line in two files gets the same id, so the later dedup
stage sees it as the duplicate it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ...consent import merge_metadata
from ...normalize import (
    RecordRejected,
    as_float,
    as_mapping,
    as_string_list,
    as_text,
    decoded,
    parse_timestamp,
    utc_day,
)
from ...slugs import model_slug as slug_for

# Score names (normalized: lower case, '-' and ' ' → '_') that carry a user's feedback.
FEEDBACK_SCORE_NAMES = frozenset({"user_feedback", "feedback", "user_rating", "user_score"})
# Score sources that are machines, not users: Langfuse's LLM-as-a-judge evaluators.
MACHINE_SCORE_SOURCES = frozenset({"EVAL"})

# Field names: snake_case as the export writes them, camelCase as the API does.
_TRACE_ID = ("trace_id", "traceId")
_OBSERVATION_ID = ("observation_id", "observationId")
_START_TIME = ("start_time", "startTime", "timestamp")
_END_TIME = ("end_time", "endTime")
_TIMESTAMP = ("timestamp", "start_time", "startTime", "created_at", "createdAt")
_MODEL = ("provided_model_name", "providedModelName", "model")
_USER_ID = ("user_id", "userId")
_SESSION_ID = ("session_id", "sessionId")
_TAGS = ("tags", "trace_tags", "traceTags")
_USAGE = ("usage_details", "usageDetails", "usage")
_USAGE_INPUT = ("input", "input_tokens", "prompt_tokens", "promptTokens", "inputTokens")
_USAGE_OUTPUT = ("output", "output_tokens", "completion_tokens", "completionTokens", "outputTokens")
_USAGE_TOTAL = ("total", "total_tokens", "totalTokens")
_ROW_INPUT_TOKENS = ("input_tokens", "inputTokens", "prompt_tokens", "promptTokens")
_ROW_OUTPUT_TOKENS = ("output_tokens", "outputTokens", "completion_tokens", "completionTokens")
_ROW_TOTAL_TOKENS = ("total_tokens", "totalTokens", "token_count")
_COST_DETAILS = ("cost_details", "costDetails")
_TOTAL_COST = ("cost_usd", "calculated_total_cost", "calculatedTotalCost", "total_cost", "totalCost")
_LATENCY_MS = ("latency_ms", "latencyMs")
_TOOLS = ("tools", "tool_definitions", "toolDefinitions")
_FEEDBACK = ("feedback_score", "feedbackScore")

# Columns each pass reads from Parquet files (the others are never decoded).
_GENERATION_CELL_COLUMNS = frozenset(("id", "type", "metadata") + _TRACE_ID + _START_TIME + _MODEL)
_TRACE_CELL_COLUMNS = frozenset(("id", "timestamp", "input", "output", "metadata", "model"))
_TRACE_CONTEXT_COLUMNS = frozenset(("id", "environment", "metadata") + _USER_ID + _SESSION_ID + _TAGS)
_RETRIEVER_COLUMNS = frozenset(("type", "output") + _TRACE_ID + _START_TIME)

_Cell = tuple[str, str]  # (UTC day as YYYY-MM-DD, model slug)


def _pick(mapping: Mapping[str, Any] | None, names: Iterable[str]) -> Any:
    """The first of ``names`` with a value; ``None`` and ``""`` count as absent."""
    if not mapping:
        return None
    for name in names:
        value = mapping.get(name)
        if value is not None and value != "":
            return value
    return None


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _as_dict(value: Any) -> dict[str, Any]:
    """A dict from a dict, a JSON object string, or a Parquet map (list of pairs)."""
    if isinstance(value, list) and value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return {str(key): item for key, item in value}
    return as_mapping(value)


def _model_name(value: Any) -> str | None:
    """The model name exactly as build_examples keeps it (so slugs agree)."""
    text = as_text(value)
    return text if text and text.strip() else None


def _id_text(value: Any) -> str | None:
    return None if value is None or str(value).strip() == "" else str(value)


def _merged_tags(*groups: Any) -> list[str]:
    tags: list[str] = []
    for group in groups:
        for tag in as_string_list(group):
            if tag not in tags:
                tags.append(tag)
    return tags


def _content_trace_id(record: Mapping[str, Any]) -> str:
    canonical = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class _Row:
    """A source record; with ``extensions``, our own fields may also sit inside ``metadata``."""

    def __init__(self, record: Mapping[str, Any], extensions: bool) -> None:
        self.record = record
        self.metadata = _as_dict(record.get("metadata"))
        self.extensions = extensions

    def get(self, *names: str) -> Any:
        value = _pick(self.record, names)
        if value is None and self.extensions:
            value = _pick(self.metadata, names)
        return value

    def model(self) -> str | None:
        return _model_name(_first(self.get(*_MODEL), _pick(self.metadata, ("model",))))

    def usage(self) -> dict[str, Any]:
        usage = _as_dict(self.get(*_USAGE))
        return {
            "input_tokens": _first(_pick(usage, _USAGE_INPUT), self.get(*_ROW_INPUT_TOKENS)),
            "output_tokens": _first(_pick(usage, _USAGE_OUTPUT), self.get(*_ROW_OUTPUT_TOKENS)),
            "total_tokens": _first(_pick(usage, _USAGE_TOTAL), self.get(*_ROW_TOTAL_TOKENS)),
        }

    def cost(self) -> Any:
        return _first(_pick(_as_dict(self.get(*_COST_DETAILS)), ("total",)), self.get(*_TOTAL_COST))

    def latency_ms(self, start: Any) -> Any:
        explicit = self.get(*_LATENCY_MS)
        if explicit is not None:
            return explicit
        end = self.get(*_END_TIME)
        if start is not None and end is not None:
            try:
                return round((parse_timestamp(end) - parse_timestamp(start)).total_seconds() * 1000)
            except RecordRejected:
                pass
        seconds = as_float(self.get("latency"))  # Langfuse reports latency in seconds
        return None if seconds is None else round(seconds * 1000)

    def tools(self) -> Any:
        tools = decoded(_first(self.get(*_TOOLS), _pick(self.metadata, ("tools",))))
        if isinstance(tools, list):  # Langfuse keeps each definition as a JSON string
            tools = [decoded(tool) for tool in tools]
        return tools or None


@dataclass
class _TraceFields:
    """What a trace row lends its generations (never its input/output)."""

    user_id: Any = None
    session_id: Any = None
    environment: Any = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def absorb(self, record: Mapping[str, Any]) -> None:
        """Add one trace row (the same trace may appear in several export windows)."""
        row = _Row(record, extensions=False)
        self.user_id = _first(self.user_id, row.get(*_USER_ID))
        self.session_id = _first(self.session_id, row.get(*_SESSION_ID))
        self.environment = _first(self.environment, row.get("environment"))
        self.tags = _merged_tags(self.tags, decoded(row.get(*_TAGS)))
        self.metadata = merge_metadata(self.metadata, row.metadata)


def _plain_shape(record: Mapping[str, Any]) -> str | None:
    """``chat``, ``observation``, ``unknown``; None for an observation that is not a generation."""
    if "messages" in record:
        return "chat"
    if "input" in record:
        kind = record.get("type")
        if kind not in (None, "") and str(kind).upper() != "GENERATION":
            return None
        return "observation"
    return "unknown"


def _plain_cell(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """UTC day and model of a plain line; raises RecordRejected without a usable timestamp."""
    row = _Row(record, extensions=True)
    return utc_day(parse_timestamp(row.get(*_TIMESTAMP))), row.model()


def _is_generation(record: Mapping[str, Any]) -> bool:
    kind = record.get("type")
    return kind in (None, "") or str(kind).upper() == "GENERATION"


def _generation_cell_and_model(record: Mapping[str, Any]) -> tuple[str, str | None]:
    row = _Row(record, extensions=False)
    return utc_day(parse_timestamp(row.get(*_START_TIME))), row.model()


def _generation_cell(record: Mapping[str, Any]) -> _Cell:
    record_day, model = _generation_cell_and_model(record)
    return record_day, slug_for(model)


def _has_io(record: Mapping[str, Any] | None) -> bool:
    return bool(record) and _pick(record, ("input",)) is not None and _pick(record, ("output",)) is not None


def _trace_cell_and_model(record: Mapping[str, Any]) -> tuple[str, str | None]:
    row = _Row(record, extensions=False)
    return utc_day(parse_timestamp(row.get("timestamp"))), row.model()


def _trace_cell(record: Mapping[str, Any]) -> _Cell:
    record_day, model = _trace_cell_and_model(record)
    return record_day, slug_for(model)


def _feedback_value(record: Mapping[str, Any]) -> float | None:
    name = str(record.get("name") or "").strip().lower().replace("-", "_").replace(" ", "_")
    if name not in FEEDBACK_SCORE_NAMES:
        return None
    if str(record.get("source") or "").strip().upper() in MACHINE_SCORE_SOURCES:
        return None
    if str(_pick(record, ("data_type", "dataType")) or "").strip().upper() == "CATEGORICAL":
        return None
    value = record.get("value")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return 1.0 if value.strip().lower() == "true" else 0.0
    return as_float(value)


def _chat_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI chat line with our extension fields."""
    row = _Row(record, extensions=True)
    trace_id = _first(_id_text(row.get(*_TRACE_ID)), _id_text(row.get("id")))
    return {
        "trace_id": trace_id if trace_id is not None else _content_trace_id(record),
        "observation_id": row.get(*_OBSERVATION_ID),
        "timestamp": row.get(*_TIMESTAMP),
        "model": row.model(),
        "messages": record.get("messages"),
        "user_id": row.get(*_USER_ID),
        "session_id": row.get(*_SESSION_ID),
        "environment": row.get("environment"),
        "contexts": row.get("contexts"),
        "latency_ms": row.latency_ms(None),
        **row.usage(),
        "cost_usd": row.cost(),
        "tags": _merged_tags(decoded(row.get(*_TAGS))),
        "metadata": record.get("metadata"),
        "explicit_consent": row.get("consent"),
        "feedback_score": row.get(*_FEEDBACK),
        "tools": row.tools(),
    }


def _observation_fields(
    record: Mapping[str, Any],
    extensions: bool,
    trace: _TraceFields | None = None,
    contexts: list[str] | None = None,
    feedback: float | None = None,
) -> dict[str, Any]:
    """A generation: a Langfuse export row, or (``extensions``) a Langfuse-format JSONL line."""
    row = _Row(record, extensions)
    trace = trace or _TraceFields()
    trace_id = _id_text(row.get(*_TRACE_ID))
    if trace_id is None and extensions:
        trace_id = _id_text(record.get("id"))  # a standalone observation is its own trace
    start = row.get(*(_TIMESTAMP if extensions else _START_TIME))
    return {
        "trace_id": trace_id,
        "observation_id": record.get("id"),
        "timestamp": start,
        "model": row.model(),
        "messages": decoded(record.get("input")),
        "output": decoded(record.get("output")),
        "user_id": _first(row.get(*_USER_ID), trace.user_id),
        "session_id": _first(row.get(*_SESSION_ID), trace.session_id),
        "environment": _first(row.get("environment"), trace.environment),
        "contexts": contexts or (row.get("contexts") if extensions else None),
        "latency_ms": row.latency_ms(start),
        **row.usage(),
        "cost_usd": row.cost(),
        "tags": _merged_tags(trace.tags, decoded(row.get(*_TAGS))),
        "metadata": merge_metadata(trace.metadata, row.metadata) or record.get("metadata"),
        "explicit_consent": row.get("consent") if extensions else None,
        "feedback_score": _first(feedback, row.get(*_FEEDBACK) if extensions else None),
        "tools": row.tools(),
    }


def _trace_row_fields(record: Mapping[str, Any], contexts: list[str] | None, feedback: float | None) -> dict[str, Any]:
    """A trace without generations, as one example from its own input and output."""
    row = _Row(record, extensions=False)
    return {
        "trace_id": record.get("id"),
        "observation_id": None,
        "timestamp": row.get("timestamp"),
        "model": row.model(),
        "messages": decoded(record.get("input")),
        "output": decoded(record.get("output")),
        "user_id": row.get(*_USER_ID),
        "session_id": row.get(*_SESSION_ID),
        "environment": row.get("environment"),
        "contexts": contexts,
        "latency_ms": row.latency_ms(None),
        **row.usage(),
        "cost_usd": row.cost(),
        "tags": _merged_tags(decoded(row.get(*_TAGS))),
        "metadata": row.metadata or record.get("metadata"),
        "feedback_score": feedback,
        "tools": row.tools(),
    }
