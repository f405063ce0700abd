"""Reading a day × model cell from Langfuse's API, v4 and v3 (DESIGN §4).

Both versions produce the same thing: for every ``GENERATION`` observation
whose **start time** falls on the UTC day and whose model slugs to the cell's
slug, one record of :class:`~.normalize.SourceRecord` fields (the same rule the blob-export
reader follows, so an export and the API of one project give the same cells):

- prompt and response: the generation's ``input`` (the conversation) and
  ``output`` (the reply); model: ``providedModelName`` (v3: ``model``), else
  the generation's ``metadata.model``;
- user, session, environment, tags and metadata: the trace's (v4 carries them
  on every observation; v3 reads the trace), the generation's metadata keys
  winning over the trace's;
- contexts: the outputs of the trace's ``RETRIEVER`` observations, in
  start-time order (those that started up to ``retriever_lead_minutes``
  before the window being read);
- latency: end − start; tokens from ``usageDetails``; cost from
  ``costDetails.total`` (else ``totalCost`` / ``calculatedTotalCost``);
- ``feedback_score``: the mean of the trace's user-feedback scores (same names
  and rules as the blob-export reader: numeric or boolean, not ``EVAL``).

A day is read in windows (``window_minutes``, hourly by default), so memory
holds one window of one cell. **v4** first lists the day's generations with
only the ``core``, ``model`` and ``metadata`` field groups (cheap), to learn
which model names make up the slug and which windows hold them; then reads
only those windows, with ``io``/``usage``/``trace_context`` and a structured
``filter`` on the model name, so other models' inputs never cross the wire.
**v3** has no field selection on observations, so each window's generations
are listed and filtered here; traces come from the window's trace list
(``orderBy=timestamp.asc``), or one by one when a trace started in an earlier
window; scores by their ids.

``scan`` gives the sensor a fingerprint per cell (how many generations, a
digest of their ids and update times, and of the feedback scores given to
their traces since the scan began), without reading any input or output on v4.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Iterator, Mapping

from ..consent import merge_metadata
from ..normalize import (
    RecordRejected,
    as_float,
    as_mapping,
    as_string_list,
    as_text,
    context_texts,
    decoded,
    parse_timestamp,
    utc_day,
)
from ..slugs import model_slug
from ..sources.files.records import FEEDBACK_SCORE_NAMES, MACHINE_SCORE_SOURCES
from .client import LangfuseClient, LangfuseUnavailableError, iso_utc
from .config import LangfuseConfig

V2_OBSERVATIONS = "/api/public/v2/observations"
V3_SCORES = "/api/public/v3/scores"
LEGACY_OBSERVATIONS = "/api/public/observations"
TRACES = "/api/public/traces"
V2_SCORES = "/api/public/v2/scores"

# v4 field groups: what a cell read needs, and the cheap ones for discovery and scans.
V4_READ_FIELDS = "core,basic,io,metadata,model,usage,trace_context"
V4_DISCOVERY_FIELDS = "core,model,metadata"
V4_SCAN_FIELDS = "core,model,metadata,time"
V4_RETRIEVER_FIELDS = "core,io"
# Metadata keys whose full value matters (the rest may come truncated to 200 characters).
EXPANDED_METADATA_KEYS = "consent_training,feedback_score,contexts,retrieved_contexts,model,tools"
V3_TRACE_FIELDS = "core,io,scores"
FEEDBACK_DATA_TYPES = "NUMERIC,BOOLEAN"
_NOT_FEEDBACK_TYPES = frozenset({"CATEGORICAL", "TEXT", "CORRECTION"})

Cell = tuple[str, str]  # (UTC day YYYY-MM-DD, model slug)


# ---------------------------------------------------------------- windows


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        return f"window {iso_utc(self.start)}..{iso_utc(self.end)}"

    def index_of(self, moment: datetime, minutes: int) -> int:
        return int((moment - self.start).total_seconds() // (minutes * 60))


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def day_window(first: date, last: date | None = None) -> Window:
    """[start of ``first``, end of ``last``) in UTC."""
    return Window(day_start(first), day_start(last or first) + timedelta(days=1))


def day_windows(day: date, minutes: int) -> list[Window]:
    start = day_start(day)
    step = timedelta(minutes=minutes)
    return [Window(start + i * step, start + (i + 1) * step) for i in range((24 * 60) // minutes)]


# ---------------------------------------------------------------- record helpers


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    return None


def model_name(observation: Mapping[str, Any]) -> str | None:
    """The generation's model exactly as ``build_examples`` keeps it (so slugs agree)."""
    metadata = as_mapping(observation.get("metadata"))
    text = as_text(_first(observation.get("providedModelName"), observation.get("model"), metadata.get("model")))
    return text if text and text.strip() else None


def generation_cell(observation: Mapping[str, Any]) -> Cell:
    """(UTC day of the start time, model slug); raises RecordRejected without a usable start."""
    return utc_day(parse_timestamp(observation.get("startTime"))), model_slug(model_name(observation))


def _latency_ms(start: Any, end: Any, seconds: Any) -> int | None:
    if start is not None and end is not None:
        try:
            return round((parse_timestamp(end) - parse_timestamp(start)).total_seconds() * 1000)
        except RecordRejected:
            pass
    value = as_float(seconds)
    return None if value is None else round(value * 1000)


def _usage(observation: Mapping[str, Any]) -> dict[str, Any]:
    details = as_mapping(observation.get("usageDetails"))
    legacy = as_mapping(observation.get("usage"))  # v3's deprecated Usage object
    return {
        "input_tokens": _first(details.get("input"), legacy.get("input")),
        "output_tokens": _first(details.get("output"), legacy.get("output")),
        "total_tokens": _first(details.get("total"), legacy.get("total")),
    }


def _cost(observation: Mapping[str, Any]) -> Any:
    return _first(
        as_mapping(observation.get("costDetails")).get("total"),
        observation.get("totalCost"),
        observation.get("calculatedTotalCost"),
    )


def _contexts_by_trace(retrievers: Iterable[Mapping[str, Any]], trace_ids: set[str]) -> dict[str, list[str]]:
    """The documents of each trace's RETRIEVER observations, in the order they started."""
    found: dict[str, list[tuple[tuple[str, str], list[str]]]] = {}
    for observation in retrievers:
        trace_id = as_text(observation.get("traceId"))
        if trace_id in trace_ids:
            found.setdefault(trace_id, []).append((_sort_key(observation), context_texts(observation.get("output"))))
    return {trace_id: [text for _, texts in sorted(entries) for text in texts] for trace_id, entries in found.items()}


def _merged_tags(*groups: Any) -> list[str]:
    tags: list[str] = []
    for group in groups:
        for tag in as_string_list(decoded(group)):
            if tag not in tags:
                tags.append(tag)
    return tags


def feedback_value(score: Mapping[str, Any]) -> float | None:
    """A user's feedback from a score, or None (another score, a judge, a category)."""
    name = str(score.get("name") or "").strip().lower().replace("-", "_").replace(" ", "_")
    if name not in FEEDBACK_SCORE_NAMES:
        return None
    if str(score.get("source") or "").strip().upper() in MACHINE_SCORE_SOURCES:
        return None
    if str(score.get("dataType") or "").strip().upper() in _NOT_FEEDBACK_TYPES:
        return None
    value = score.get("value")
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return 1.0 if value.strip().lower() == "true" else 0.0
    return as_float(value)


def score_trace_id(score: Mapping[str, Any]) -> str | None:
    """The trace a score belongs to (v3 API ``subject``, or the flat ``traceId``)."""
    subject = score.get("subject")
    if isinstance(subject, Mapping):
        kind = subject.get("kind")
        if kind == "trace":
            return as_text(subject.get("id"))
        if kind == "observation":
            return as_text(subject.get("traceId"))
        return None
    return as_text(score.get("traceId"))


def _mean_feedback(scores: Iterable[Mapping[str, Any]], wanted: set[str]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    seen: set[str] = set()
    for score in scores:
        score_id = as_text(score.get("id"))
        if score_id is not None:
            if score_id in seen:  # a score listed twice (pages shifting under inserts) counts once
                continue
            seen.add(score_id)
        trace_id = score_trace_id(score)
        value = feedback_value(score) if trace_id in wanted else None
        if value is not None:
            total = totals.setdefault(trace_id, [0.0, 0])
            total[0] += value
            total[1] += 1
    return {trace_id: total / count for trace_id, (total, count) in totals.items()}


def generation_fields(
    generation: Mapping[str, Any],
    trace: Mapping[str, Any] | None = None,
    contexts: list[str] | None = None,
    feedback: float | None = None,
) -> dict[str, Any]:
    """The :class:`~..normalize.SourceRecord` fields of one generation (``trace``: the v3 trace row)."""
    trace = trace or {}
    metadata = merge_metadata(as_mapping(trace.get("metadata")), as_mapping(generation.get("metadata")))
    start = generation.get("startTime")
    return {
        "trace_id": as_text(generation.get("traceId")),
        "observation_id": generation.get("id"),
        "timestamp": start,
        "model": model_name(generation),
        "messages": decoded(generation.get("input")),
        "output": decoded(generation.get("output")),
        "user_id": _first(generation.get("userId"), trace.get("userId")),
        "session_id": _first(generation.get("sessionId"), trace.get("sessionId")),
        "environment": _first(generation.get("environment"), trace.get("environment")),
        "contexts": contexts or None,
        "latency_ms": _latency_ms(start, generation.get("endTime"), generation.get("latency")),
        **_usage(generation),
        "cost_usd": _cost(generation),
        "tags": _merged_tags(trace.get("tags"), generation.get("tags")),
        "metadata": metadata or None,
        "feedback_score": feedback,
        "tools": _tools(metadata),
    }


def _tools(metadata: Mapping[str, Any]) -> Any:
    tools = decoded(metadata.get("tools"))
    if isinstance(tools, list):
        tools = [decoded(tool) for tool in tools]
    return tools or None


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _listable(ids: Iterable[str]) -> list[str]:
    """Ids that fit a comma-separated filter; an id containing a comma cannot be asked for
    (its trace then has no feedback from the API, never a wrong one)."""
    return sorted(item for item in ids if "," not in item)


def _sort_key(observation: Mapping[str, Any]) -> tuple[str, str]:
    try:
        start = parse_timestamp(observation.get("startTime")).isoformat()
    except RecordRejected:
        start = ""
    return start, str(observation.get("id") or "")


# ---------------------------------------------------------------- fingerprints


def _digest(*parts: Any) -> int:
    text = "\x1f".join("" if part is None else str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big")


@dataclass
class CellFingerprint:
    """What the sensor compares between ticks: order-independent, so page order never matters."""

    day: str
    slug: str
    model_names: set = field(default_factory=set)
    generations: int = 0
    feedback_scores: int = 0
    digest: int = 0

    def add_generation(self, observation_id: Any, version: Any) -> None:
        self.generations += 1
        self.digest = (self.digest + _digest("generation", observation_id, version)) % 2**64

    def add_score(self, score_id: Any, value: float) -> None:
        self.feedback_scores += 1
        self.digest = (self.digest + _digest("score", score_id, value)) % 2**64

    @property
    def token(self) -> str:
        return f"g{self.generations}-s{self.feedback_scores}-{self.digest:016x}"


@dataclass
class _SlugPlan:
    """How to read one slug of one day: which names (server-side filter) and which windows."""

    names: set = field(default_factory=set)  # provided model names, for the server-side filter
    model_names: set = field(default_factory=set)  # names as the slug saw them (metadata.model included)
    needs_unfiltered: bool = False  # a generation without a provided model name: filter here, not there
    windows: set = field(default_factory=set)


# ---------------------------------------------------------------- the two API versions


class LangfuseApi:
    """What the reader and the sensors need from one API version."""

    version = "?"

    def __init__(self, client: LangfuseClient, config: LangfuseConfig, server_version: str = "") -> None:
        self.client = client
        self.config = config
        self.server_version = server_version
        self._day_plans: dict[str, dict[str, _SlugPlan]] = {}

    @property
    def host(self) -> str:
        return self.config.host

    def models_on(self, day: date) -> list[str | None]:
        names: set[str | None] = set()
        for plan in self._plans(day).values():
            names |= plan.model_names
        return sorted(names, key=lambda name: (name is None, name or ""))

    def _plans(self, day: date) -> dict[str, _SlugPlan]:
        key = day.isoformat()
        if key not in self._day_plans:
            self._day_plans[key] = self._discover(day)
        return self._day_plans[key]

    def _add_to_plan(
        self, plans: dict[str, _SlugPlan], observation: Mapping[str, Any], day: date, provided: Any
    ) -> None:
        try:
            record_day, slug = generation_cell(observation)
        except RecordRejected:
            return  # read_cell reports it for its own cell; discovery cannot place it
        if record_day != day.isoformat():
            return
        plan = plans.setdefault(slug, _SlugPlan())
        plan.model_names.add(model_name(observation))
        provided_text = as_text(provided)
        if provided_text and provided_text.strip():
            plan.names.add(provided_text)
        else:
            plan.needs_unfiltered = True
        start = parse_timestamp(observation.get("startTime"))
        plan.windows.add(day_window(day).index_of(start, self.config.window_minutes))

    # Subclasses implement these.
    def _discover(self, day: date) -> dict[str, _SlugPlan]:  # pragma: no cover - abstract
        raise NotImplementedError

    def cell_records(self, day: date, slug: str) -> Iterator[tuple[str, dict[str, Any]]]:  # pragma: no cover
        raise NotImplementedError

    def scan(self, first: date, last: date, scores_until: datetime) -> dict[Cell, CellFingerprint]:  # pragma: no cover
        raise NotImplementedError


class V4Api(LangfuseApi):
    """Langfuse v4: ``/api/public/v2/observations`` (cursor, field groups) and ``/api/public/v3/scores``."""

    version = "v4"

    def _observations(
        self,
        window: Window,
        kind: str,
        fields: str,
        model: str | None = None,
        expand: str | None = None,
        lead: timedelta = timedelta(0),
    ) -> Iterator[dict]:
        start = window.start - lead
        params: dict[str, Any] = {
            "type": kind,
            "fromStartTime": iso_utc(start),
            "toStartTime": iso_utc(window.end),
            "fields": fields,
            "limit": self.config.page_limit_v4,
            "expandMetadata": expand,
        }
        if model is not None:
            # The filter takes precedence over the query parameters, so it repeats them.
            params["filter"] = json.dumps(
                [
                    {"type": "string", "column": "type", "operator": "=", "value": kind},
                    {"type": "datetime", "column": "startTime", "operator": ">=", "value": iso_utc(start)},
                    {"type": "datetime", "column": "startTime", "operator": "<", "value": iso_utc(window.end)},
                    {"type": "string", "column": "model", "operator": "=", "value": model},
                ],
                separators=(",", ":"),
            )
        context = f"{kind} observations, {Window(start, window.end).label}" + (f", model {model!r}" if model else "")
        for page in self.client.iter_cursor_pages(V2_OBSERVATIONS, params, context):
            yield from page

    def _discover(self, day: date) -> dict[str, _SlugPlan]:
        plans: dict[str, _SlugPlan] = {}
        for observation in self._observations(day_window(day), "GENERATION", V4_DISCOVERY_FIELDS, expand="model"):
            self._add_to_plan(plans, observation, day, observation.get("providedModelName"))
        return plans

    def cell_records(self, day: date, slug: str) -> Iterator[tuple[str, dict[str, Any]]]:
        plan = self._plans(day).get(slug)
        if plan is None:
            return
        cell = (day.isoformat(), slug)
        windows = day_windows(day, self.config.window_minutes)
        for index in sorted(plan.windows):
            window = windows[index]
            generations: dict[str, dict] = {}
            for name in [None] if plan.needs_unfiltered else sorted(plan.names):
                for observation in self._observations(
                    window, "GENERATION", V4_READ_FIELDS, name, EXPANDED_METADATA_KEYS
                ):
                    if _in_cell(observation, cell):
                        generations[str(observation.get("id"))] = observation
            if not generations:
                continue
            trace_ids = {str(g.get("traceId")) for g in generations.values() if g.get("traceId") is not None}
            contexts = self._contexts(window, trace_ids)
            feedback = self._feedback(trace_ids, window)
            for observation in sorted(generations.values(), key=_sort_key):
                trace_id = as_text(observation.get("traceId"))
                yield (
                    f"{V2_OBSERVATIONS} observation {observation.get('id')}",
                    generation_fields(observation, None, contexts.get(trace_id), feedback.get(trace_id)),
                )

    def _contexts(self, window: Window, trace_ids: set[str]) -> dict[str, list[str]]:
        lead = timedelta(minutes=self.config.retriever_lead_minutes)
        return _contexts_by_trace(self._observations(window, "RETRIEVER", V4_RETRIEVER_FIELDS, lead=lead), trace_ids)

    def _feedback(self, trace_ids: set[str], window: Window) -> dict[str, float]:
        def scores() -> Iterator[dict]:
            for chunk in _chunks(_listable(trace_ids), self.config.score_ids_per_request):
                params = {
                    "traceId": ",".join(chunk),
                    "fields": "subject",
                    "dataType": FEEDBACK_DATA_TYPES,
                    "limit": min(self.config.page_limit_v3, 100),
                }
                for page in self.client.iter_cursor_pages(V3_SCORES, params, f"scores of the traces of {window.label}"):
                    yield from page

        return _mean_feedback(scores(), trace_ids)

    def scan(self, first: date, last: date, scores_until: datetime) -> dict[Cell, CellFingerprint]:
        window = day_window(first, last)
        params = {
            "fromTimestamp": iso_utc(window.start),
            "toTimestamp": iso_utc(max(scores_until, window.start)),
            "fields": "subject",
            "dataType": FEEDBACK_DATA_TYPES,
            "limit": min(self.config.page_limit_v3, 100),
        }
        scan = _Scan()
        for page in self.client.iter_cursor_pages(V3_SCORES, params, f"feedback scores since {iso_utc(window.start)}"):
            scan.add_scores(page)
        for observation in self._observations(window, "GENERATION", V4_SCAN_FIELDS, expand="model"):
            scan.add_generation(observation, version=_first(observation.get("updatedAt"), observation.get("endTime")))
        return scan.cells


class V3Api(LangfuseApi):
    """Langfuse v3 (self-hosted): traces, legacy observations and v2 scores, page by page."""

    version = "v3"

    def _observations(self, window: Window, kind: str, lead: timedelta = timedelta(0)) -> Iterator[dict]:
        start = window.start - lead
        params = {
            "type": kind,
            "fromStartTime": iso_utc(start),
            "toStartTime": iso_utc(window.end),
            "limit": self.config.page_limit_v3,
        }
        for page in self.client.iter_numbered_pages(
            LEGACY_OBSERVATIONS, params, f"{kind} observations, {Window(start, window.end).label}"
        ):
            yield from page

    def _discover(self, day: date) -> dict[str, _SlugPlan]:
        plans: dict[str, _SlugPlan] = {}
        for window in day_windows(day, self.config.window_minutes):
            for observation in self._observations(window, "GENERATION"):
                self._add_to_plan(plans, observation, day, observation.get("model"))
        return plans

    def cell_records(self, day: date, slug: str) -> Iterator[tuple[str, dict[str, Any]]]:
        cell = (day.isoformat(), slug)
        windows = day_windows(day, self.config.window_minutes)
        known = self._day_plans.get(day.isoformat())
        if known is not None:  # models_on already listed the day: only its windows
            plan = known.get(slug)
            windows = [windows[index] for index in sorted(plan.windows)] if plan else []
        for window in windows:
            generations: dict[str, dict] = {}
            for observation in self._observations(window, "GENERATION"):
                if _in_cell(observation, cell):
                    generations[str(observation.get("id"))] = observation
            if not generations:
                continue
            trace_ids = {str(g.get("traceId")) for g in generations.values() if g.get("traceId") is not None}
            traces = self._traces(window, trace_ids)
            contexts = self._contexts(window, trace_ids)
            feedback = self._feedback(traces, window)
            for observation in sorted(generations.values(), key=_sort_key):
                trace_id = as_text(observation.get("traceId"))
                yield (
                    f"{LEGACY_OBSERVATIONS} observation {observation.get('id')}",
                    generation_fields(
                        observation, traces.get(trace_id), contexts.get(trace_id), feedback.get(trace_id)
                    ),
                )

    def _traces(self, window: Window, trace_ids: set[str]) -> dict[str, dict]:
        params = {
            "fromTimestamp": iso_utc(window.start - timedelta(minutes=self.config.retriever_lead_minutes)),
            "toTimestamp": iso_utc(window.end),
            "orderBy": "timestamp.asc",
            "fields": V3_TRACE_FIELDS,
            "limit": self.config.page_limit_v3,
        }
        traces: dict[str, dict] = {}
        for page in self.client.iter_numbered_pages(TRACES, params, f"traces, {window.label}"):
            for trace in page:
                if str(trace.get("id")) in trace_ids:
                    traces[str(trace.get("id"))] = trace
        # A trace that started in an earlier window (a long agent run): fetched by id.
        for trace_id in sorted(trace_ids - traces.keys()):
            trace = self.client.request_json(
                "GET", f"{TRACES}/{_path_segment(trace_id)}", params={}, context=f"trace {trace_id} of {window.label}"
            )
            if isinstance(trace, dict):
                traces[trace_id] = trace
        return traces

    def _contexts(self, window: Window, trace_ids: set[str]) -> dict[str, list[str]]:
        lead = timedelta(minutes=self.config.retriever_lead_minutes)
        return _contexts_by_trace(self._observations(window, "RETRIEVER", lead=lead), trace_ids)

    def _feedback(self, traces: Mapping[str, Mapping[str, Any]], window: Window) -> dict[str, float]:
        inline: list[dict] = []  # a trace fetched by id carries its scores as objects
        score_ids: set[str] = set()
        for trace_id, trace in traces.items():
            for score in trace.get("scores") or []:
                if isinstance(score, Mapping):
                    inline.append({**score, "traceId": score.get("traceId") or trace_id})
                elif score is not None:
                    score_ids.add(str(score))

        def scores() -> Iterator[dict]:
            yield from inline
            for chunk in _chunks(_listable(score_ids), self.config.score_ids_per_request):
                params = {"scoreIds": ",".join(chunk), "fields": "score", "limit": min(self.config.page_limit_v3, 100)}
                for page in self.client.iter_numbered_pages(
                    V2_SCORES, params, f"scores of the traces of {window.label}"
                ):
                    yield from page

        return _mean_feedback(scores(), set(traces))

    def scan(self, first: date, last: date, scores_until: datetime) -> dict[Cell, CellFingerprint]:
        window = day_window(first, last)
        params = {
            "fromTimestamp": iso_utc(window.start),
            "toTimestamp": iso_utc(max(scores_until, window.start)),
            "fields": "score",
            "limit": min(self.config.page_limit_v3, 100),
        }
        scan = _Scan()
        for page in self.client.iter_numbered_pages(
            V2_SCORES, params, f"feedback scores since {iso_utc(window.start)}"
        ):
            scan.add_scores(page)
        day = first
        while day <= last:
            for hour in day_windows(day, self.config.window_minutes):
                for observation in self._observations(hour, "GENERATION"):
                    # v3 has no update time: the end time and the output stand for the version.
                    output = json.dumps(observation.get("output"), sort_keys=True, default=str)
                    scan.add_generation(observation, version=(observation.get("endTime"), _digest(output)))
            day += timedelta(days=1)
        return scan.cells


def _in_cell(observation: Mapping[str, Any], cell: Cell) -> bool:
    try:
        return generation_cell(observation) == cell
    except RecordRejected:
        return False


class _Scan:
    """Fingerprints of a scan. Feedback scores are read first, so memory holds the
    feedback of the scanned days, never an index of every generation."""

    def __init__(self) -> None:
        self.cells: dict[Cell, CellFingerprint] = {}
        self.feedback: dict[str, dict[str, float]] = {}  # trace id -> {score id: value}
        self.credited: set[tuple[str, Cell]] = set()  # (trace, cell) whose feedback is counted

    def add_scores(self, page: Iterable[Mapping[str, Any]]) -> None:
        for score in page:
            value = feedback_value(score)
            trace_id = score_trace_id(score)
            if value is not None and trace_id is not None:
                self.feedback.setdefault(trace_id, {})[str(score.get("id"))] = value

    def add_generation(self, observation: Mapping[str, Any], version: Any) -> None:
        try:
            cell = generation_cell(observation)
        except RecordRejected:
            return
        fingerprint = self.cells.get(cell)
        if fingerprint is None:
            fingerprint = self.cells[cell] = CellFingerprint(cell[0], cell[1])
        fingerprint.model_names.add(model_name(observation))
        fingerprint.add_generation(observation.get("id"), version)
        trace_id = as_text(observation.get("traceId"))
        if trace_id in self.feedback and (trace_id, cell) not in self.credited:
            self.credited.add((trace_id, cell))
            for score_id, value in sorted(self.feedback[trace_id].items()):
                fingerprint.add_score(score_id, value)


def _path_segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def api_for(client: LangfuseClient, config: LangfuseConfig) -> LangfuseApi:
    """The API of the server's version: ``config.api_version``, or asked from ``/api/public/health``."""
    if config.api_version == "v4":
        return V4Api(client, config)
    if config.api_version == "v3":
        return V3Api(client, config)
    health = client.health()
    version = str(health.get("version") or "")
    major = _major_version(version)
    if major is None:
        raise LangfuseUnavailableError(
            f"Langfuse at {config.host}: cannot tell the API version from /api/public/health "
            f"(version {version!r}); set MATERIALIZER_LANGFUSE_API=v3 or v4"
        )
    return (V4Api if major >= 4 else V3Api)(client, config, version)


def _major_version(version: str) -> int | None:
    import re

    match = re.match(r"\s*v?(\d+)", version)
    return int(match.group(1)) if match else None
