"""Fixture data of the contract server: one Langfuse project, version-neutral.

Traces, observations and scores are stored once; the server renders them as
v3 (traces + legacy observations + v2 scores) or v4 (v2 observations carrying
the trace's user, session, tags and metadata + v3 scores). Items marked
``late`` stay hidden until :meth:`FixtureData.release_late` (a trace that
reaches Langfuse after its day has been read).

:func:`expected_rows` is the oracle: the normalized rows a reader should
produce for a cell, computed from the fixture's own fields (which retriever
documents, which scores are user feedback) rather than by parsing API
responses, so extraction bugs cannot hide in shared code.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples
from materializer_assets.lib.slugs import model_slug

DAY = date(2026, 4, 18)
PREVIOUS_DAY = date(2026, 4, 17)
NEXT_DAY = date(2026, 4, 19)
GPT = "gpt-4o-mini-2024-07-18"
QWEN = "Qwen/Qwen3-Coder-4B-Instruct"
GLM = "glm-5-32b"
MODELS = (GPT, QWEN, GLM)
PROJECT_ID = "proj-contract"
FEEDBACK_NAMES = ("user_feedback", "feedback")
LONG_CONTEXT = "A" * 150 + " the second half of a long retrieved passage " + "B" * 150
EXTRACTED_AT = datetime(2026, 4, 20, tzinfo=timezone.utc)


def at(day: date, hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, ms * 1000, tzinfo=timezone.utc)


@dataclass
class FxTrace:
    id: str
    timestamp: datetime
    name: str = "rag-answer"
    user_id: str | None = None
    session_id: str | None = None
    environment: str = "production"
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    input: Any = None
    output: Any = None
    release: str | None = "2026.4.1"
    version: str | None = "v7"
    late: bool = False


@dataclass
class FxObservation:
    id: str
    trace_id: str
    type: str
    start_time: datetime
    end_time: datetime | None = None
    name: str = "llm-answer"
    model: str | None = None
    input: Any = None
    output: Any = None
    metadata: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    parent_observation_id: str | None = None
    environment: str = "production"
    level: str = "DEFAULT"
    model_parameters: dict[str, Any] | None = None
    updated_at: datetime | None = None
    late: bool = False


@dataclass
class FxScore:
    id: str
    trace_id: str
    name: str
    value: Any  # float for NUMERIC, bool for BOOLEAN, str for CATEGORICAL
    data_type: str = "NUMERIC"
    source: str = "API"
    timestamp: datetime | None = None
    observation_id: str | None = None
    comment: str | None = None
    metadata: dict[str, Any] | None = None
    environment: str = "production"
    late: bool = False

    @property
    def is_feedback(self) -> bool:
        normalized = self.name.lower().replace("-", "_").replace(" ", "_")
        return normalized in FEEDBACK_NAMES and self.source != "EVAL" and self.data_type in ("NUMERIC", "BOOLEAN")

    @property
    def numeric_value(self) -> float:
        return float(self.value)


class FixtureData:
    """The project's data; thread-safe, since the server answers from several threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.traces: dict[str, FxTrace] = {}
        self.observations: dict[str, FxObservation] = {}
        self.scores: dict[str, FxScore] = {}

    def add(self, *items: FxTrace | FxObservation | FxScore) -> None:
        with self.lock:
            for item in items:
                target = {FxTrace: self.traces, FxObservation: self.observations, FxScore: self.scores}[type(item)]
                target[item.id] = item

    def release_late(self) -> None:
        """Late items become visible, as if they had just been ingested."""
        with self.lock:
            for collection in (self.traces, self.observations, self.scores):
                for item in collection.values():
                    item.late = False

    def visible_traces(self) -> list[FxTrace]:
        with self.lock:
            return [t for t in self.traces.values() if not t.late]

    def visible_observations(self) -> list[FxObservation]:
        with self.lock:
            return [o for o in self.observations.values() if not o.late and not self.traces[o.trace_id].late]

    def visible_scores(self) -> list[FxScore]:
        with self.lock:
            return [
                s
                for s in self.scores.values()
                if not s.late and s.trace_id in self.traces and not self.traces[s.trace_id].late
            ]

    def snapshot(self) -> "FixtureData":
        with self.lock:
            clone = FixtureData()
            clone.traces = copy.deepcopy(self.traces)
            clone.observations = copy.deepcopy(self.observations)
            clone.scores = copy.deepcopy(self.scores)
            return clone


# ---------------------------------------------------------------- the default project


def _chat(question: str, system: str | None = "Answer briefly.") -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": question}]


def _add_trace(
    data: FixtureData,
    number: int,
    day: date,
    start: datetime,
    model: str | None,
    *,
    consent: str = "tag",
    retriever: list[str] | None = None,
    input: Any = ...,
    output: Any = ...,
    trace_start: datetime | None = None,
    retriever_start: datetime | None = None,
    generation_metadata: dict[str, str] | None = None,
    trace_metadata: dict[str, str] | None = None,
    late: bool = False,
    prefix: str = "tr",
) -> str:
    trace_id = f"{prefix}-{day:%m%d}-{number:03d}"
    tags = ["production"]
    metadata = {"tenant": "acme"}
    if consent == "tag":
        tags.append("consent:training")
    elif consent == "refused":
        tags.append("consent:refused")
    elif consent == "metadata":
        metadata["consent_training"] = "true"
    metadata.update(trace_metadata or {})
    question = f"Question {number} of {day} — Grüße 👋"
    data.add(
        FxTrace(
            id=trace_id,
            timestamp=trace_start or (start - timedelta(seconds=1)),
            user_id=f"user-{number % 6}",
            session_id=f"sess-{number % 4}",
            tags=tags,
            metadata=metadata,
            input={"question": question},
            output={"answer": f"Answer {number}"},
            late=late,
        ),
        FxObservation(
            id=f"{trace_id}-root",
            trace_id=trace_id,
            type="SPAN",
            name="handler",
            start_time=trace_start or (start - timedelta(seconds=1)),
            end_time=start + timedelta(seconds=3),
            input={"question": question},
            output={"answer": f"Answer {number}"},
            late=late,
        ),
        FxObservation(
            id=f"{trace_id}-gen",
            trace_id=trace_id,
            type="GENERATION",
            start_time=start,
            end_time=start + timedelta(milliseconds=1200 + 10 * number),
            model=model,
            input=_chat(question) if input is ... else input,
            output={"role": "assistant", "content": f"Answer {number}"} if output is ... else output,
            metadata=dict(generation_metadata or {}),
            usage={"input": 100 + number, "output": 20 + number, "total": 120 + 2 * number},
            cost={"input": 0.0001 * number, "output": 0.00002 * number, "total": 0.00012 * number},
            parent_observation_id=f"{trace_id}-root",
            model_parameters={"temperature": 0.2},
            updated_at=start + timedelta(seconds=5),
            late=late,
        ),
    )
    if retriever is not None:
        data.add(
            FxObservation(
                id=f"{trace_id}-ret",
                trace_id=trace_id,
                type="RETRIEVER",
                name="vector-search",
                start_time=retriever_start or (start - timedelta(milliseconds=500)),
                end_time=start - timedelta(milliseconds=100),
                input={"query": question},
                output={"documents": retriever},
                parent_observation_id=f"{trace_id}-root",
                late=late,
            )
        )
    return trace_id


def _feedback(data: FixtureData, trace_id: str, start: datetime, number: int) -> None:
    """A mix of feedback scores (counted) and scores that are not the user's (ignored)."""
    if number % 3 == 0:
        data.add(
            FxScore(
                f"{trace_id}-uf", trace_id, "user_feedback", (number % 5) / 4, timestamp=start + timedelta(minutes=2)
            )
        )
    if number % 6 == 0:
        data.add(
            FxScore(
                f"{trace_id}-thumb",
                trace_id,
                "feedback",
                number % 12 == 0,
                "BOOLEAN",
                timestamp=start + timedelta(minutes=3),
            )
        )
    if number % 4 == 0:  # a judge's score under a feedback name: not the user's
        data.add(
            FxScore(
                f"{trace_id}-eval",
                trace_id,
                "user_feedback",
                0.9,
                source="EVAL",
                timestamp=start + timedelta(minutes=4),
            )
        )
        data.add(FxScore(f"{trace_id}-faith", trace_id, "faithfulness", 0.7, timestamp=start + timedelta(minutes=4)))
    if number % 5 == 0:
        data.add(
            FxScore(
                f"{trace_id}-cat",
                trace_id,
                "user_feedback",
                "good",
                "CATEGORICAL",
                timestamp=start + timedelta(minutes=4),
            )
        )


CONSENTS = ("tag", "refused", "metadata", "unknown")


def build_default_fixture(regular_traces: int = 30) -> FixtureData:
    """A day (2026-04-18) of three models plus every awkward case the reader must handle."""
    data = FixtureData()
    for number in range(regular_traces):
        start = at(DAY, (number * 7) % 24, (number * 13) % 60, number % 60, 250)
        trace_id = _add_trace(
            data,
            number,
            DAY,
            start,
            MODELS[number % 3],
            consent=CONSENTS[number % 4],
            retriever=[f"doc {number}a", f"doc {number}b"] if number % 5 == 0 else None,
        )
        _feedback(data, trace_id, start, number)

    # A multi-turn conversation: two examples in single-turn mode, one otherwise.
    _add_trace(
        data,
        100,
        DAY,
        at(DAY, 9, 30),
        GLM,
        input=[
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Sort a list in Python."},
        ],
        output={"role": "assistant", "content": "Use sorted(xs)."},
    )
    # A tool call as the reply.
    _add_trace(
        data,
        101,
        DAY,
        at(DAY, 10, 15),
        GPT,
        output={
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "kb"}'}}
            ],
        },
        generation_metadata={"tools": json.dumps([{"type": "function", "function": {"name": "search"}}])},
    )
    # No model anywhere: the 'unknown' partition.
    _add_trace(data, 102, DAY, at(DAY, 11, 0), None)
    # No provided model name, but metadata.model: the slug of glm (read without the server-side filter).
    _add_trace(data, 103, DAY, at(DAY, 12, 5), None, generation_metadata={"model": GLM})
    # Neither input nor output: rejected as no_messages, in the glm cell.
    _add_trace(data, 104, DAY, at(DAY, 13, 0), GLM, input=None, output=None)
    # The trace started in the previous hour window; its retriever too (within the lead).
    _add_trace(
        data,
        105,
        DAY,
        at(DAY, 6, 0, 10),
        QWEN,
        trace_start=at(DAY, 5, 40),
        retriever=["boundary doc"],
        retriever_start=at(DAY, 5, 59, 50),
    )
    # Retrieved contexts in metadata, longer than v4's 200-character metadata truncation.
    _add_trace(data, 106, DAY, at(DAY, 14, 20), QWEN, trace_metadata={"contexts": json.dumps([LONG_CONTEXT])})
    # The last instant of the day and the first of the next.
    _add_trace(data, 107, DAY, at(DAY, 23, 59, 59, 999), GPT)
    _add_trace(data, 1, NEXT_DAY, at(NEXT_DAY, 0, 0, 0, 0), GPT)
    # A user's score on the generation (an observation-level score) counts for its trace.
    trace_id = _add_trace(data, 108, DAY, at(DAY, 15, 45), GLM)
    data.add(
        FxScore(
            f"{trace_id}-obs-uf",
            trace_id,
            "user-feedback",
            0.25,
            observation_id=f"{trace_id}-gen",
            timestamp=at(DAY, 15, 50),
        )
    )
    # The previous day: a few cells for the sensor.
    for number in range(4):
        _add_trace(data, number, PREVIOUS_DAY, at(PREVIOUS_DAY, 8 + number, 10), MODELS[number % 2])
    # Arrives late: hidden until release_late().
    late_id = _add_trace(data, 200, DAY, at(DAY, 16, 0), GLM, late=True)
    data.add(FxScore(f"{late_id}-uf", late_id, "user_feedback", 1.0, timestamp=at(DAY, 16, 5), late=True))
    return data


def add_many_traces(data: FixtureData, count: int, day: date = DAY, model: str = GLM, prefix: str = "bulk") -> None:
    """``count`` more consented traces of one model (for pagination tests)."""
    for number in range(count):
        start = at(day, number % 24, (number * 7) % 60, number % 60, number % 1000)
        _add_trace(
            data, number, day, start, model, prefix=prefix, retriever=[f"bulk doc {number}"] if number % 2 else None
        )


# ---------------------------------------------------------------- the oracle


def _day_of(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).date().isoformat()


def _model_of(observation: FxObservation) -> str | None:
    return observation.model or observation.metadata.get("model")


def expected_rows(data: FixtureData, day: date, slug: str, options: ReadOptions | None = None) -> list[dict]:
    """Normalized rows of the visible (day, slug) cell, sorted by (trace_id, observation_id)."""
    options = options or ReadOptions()
    observations = data.visible_observations()
    scores = data.visible_scores()
    rows: list[dict] = []
    for generation in observations:
        if generation.type != "GENERATION" or _day_of(generation.start_time) != day.isoformat():
            continue
        if model_slug(_model_of(generation)) != slug:
            continue
        trace = data.traces[generation.trace_id]
        retrievers = sorted(
            (o for o in observations if o.type == "RETRIEVER" and o.trace_id == trace.id), key=lambda o: o.start_time
        )
        contexts = [text for o in retrievers for text in o.output["documents"]]
        feedback = [s.numeric_value for s in scores if s.trace_id == trace.id and s.is_feedback]
        metadata = {**trace.metadata, **generation.metadata}
        try:
            rows += build_examples(SourceRecord(
                trace_id=trace.id,
                observation_id=generation.id,
                timestamp=generation.start_time,
                model=_model_of(generation),
                messages=generation.input,
                output=generation.output,
                source="langfuse",
                extracted_at=EXTRACTED_AT,
                options=options,
                user_id=trace.user_id,
                session_id=trace.session_id,
                environment=generation.environment,
                contexts=contexts or None,
                latency_ms=round((generation.end_time - generation.start_time).total_seconds() * 1000),
                input_tokens=generation.usage.get("input"),
                output_tokens=generation.usage.get("output"),
                total_tokens=generation.usage.get("total"),
                cost_usd=generation.cost.get("total"),
                tags=trace.tags,
                metadata=metadata,
                feedback_score=sum(feedback) / len(feedback) if feedback else None,
                tools=json.loads(metadata["tools"]) if "tools" in metadata else None,
            ))
        except Exception:  # rejected records are not rows
            continue
    return sorted(rows, key=lambda row: (row["trace_id"], row["observation_id"] or ""))


def expected_cells(data: FixtureData, day: date) -> set[tuple[str, str]]:
    return {
        (day.isoformat(), model_slug(_model_of(o)))
        for o in data.visible_observations()
        if o.type == "GENERATION" and _day_of(o.start_time) == day.isoformat()
    }
