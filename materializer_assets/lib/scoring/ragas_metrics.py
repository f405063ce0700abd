"""Ragas 0.4.3 metrics over OpenAI-compatible endpoints (DESIGN §6).

Faithfulness, answer relevancy and context precision (without reference)
from ``ragas.metrics.collections``, each called on its own with our own
timeout and error capture: those metrics raise on failure and Ragas's
``abatch_score`` is an unbounded ``gather`` where one error fails all, so we
never use it. Their HTTP goes through a :class:`~.http.RequestGuard`
(bounded requests in flight, retries, per-request timeout, token counts).

Every metric gets a status like the judge's. Faithfulness and context
precision need retrieved contexts; without them they are ``not_applicable``
(null) and the reward is renormalized over the metrics that apply:
``ragas_reward = Σ w_m · m / Σ w_m`` over the metrics with a value. When a
metric that applies failed (error, unparseable, out of range, undetermined)
the reward is null: a failure never becomes, or silently reshapes, a reward.
A metric that is not configured (no embeddings endpoint for answer
relevancy) is left out of the reward like an inapplicable one; the WARN check
on the asset reports it.

Some values Ragas returns measure nothing: when the LLM generates no
question from the response (an empty ``question``), ``AnswerRelevancy``
returns 0.0 without comparing anything. Such a value is ``degenerate``
(null, and the reward is null): a 0.0 there would read as "irrelevant answer".
We see the generated questions by wrapping the LLM the metric uses.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Sequence

from .http import CallLedger, EndpointStats, RequestGuard, RetryPolicy, async_openai_client, charged_to
from .judge import MAX_ERROR_CHARS, Endpoint, describe_failure
from .schema import (
    DEGENERATE,
    ERROR,
    NOT_APPLICABLE,
    NOT_CONFIGURED,
    OK,
    OUT_OF_RANGE,
    RAGAS_METRICS,
    UNDETERMINED,
    UNPARSEABLE,
    worst_status,
)

FAITHFULNESS, ANSWER_RELEVANCY, CONTEXT_PRECISION = RAGAS_METRICS
DEFAULT_WEIGHTS = {FAITHFULNESS: 0.5, ANSWER_RELEVANCY: 0.3, CONTEXT_PRECISION: 0.2}
# Cosine similarities of unit vectors land a few ulps outside [0, 1]; that is rounding, not a reply.
FLOAT_TOLERANCE = 1e-9
# How Ragas's LLM is asked for JSON: "json_object" is Ragas's own choice (instructor's JSON
# mode, response_format json_object); "none" sends no response_format (instructor's
# Markdown-JSON mode: the schema in the prompt) for servers that refuse response_format.
RAGAS_STRUCTURED_MODES = ("json_object", "none")
FAILED_STATUSES = frozenset({ERROR, UNPARSEABLE, OUT_OF_RANGE, UNDETERMINED, DEGENERATE})

# The questions AnswerRelevancy generated in the current metric call (see _question_recording_llm).
_generated_questions: contextvars.ContextVar[list | None] = contextvars.ContextVar("ragas_generated_questions", default=None)


def ragas_reward(values: dict[str, float | None], statuses: dict[str, str], weights: dict[str, float] | None = None) -> float | None:
    """0.5·F + 0.3·AR + 0.2·CP, renormalized over the metrics with a value (see the module doc)."""
    weights = weights or DEFAULT_WEIGHTS
    if any(statuses.get(name) in FAILED_STATUSES for name in weights):
        return None
    present = {name: values[name] for name in weights if values.get(name) is not None and statuses.get(name) == OK}
    total_weight = sum(weights[name] for name in present)
    if not present or total_weight <= 0:
        return None
    return sum(weights[name] * value for name, value in present.items()) / total_weight


@dataclass
class MetricOutcome:
    status: str
    value: float | None = None
    error: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float | None = None


@dataclass
class RagasOutcome:
    metrics: dict[str, MetricOutcome]
    cached: bool = False
    scored_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def status(self) -> str:
        statuses = [outcome.status for outcome in self.metrics.values()]
        if all(status in (NOT_CONFIGURED, NOT_APPLICABLE) for status in statuses):
            return NOT_CONFIGURED if NOT_CONFIGURED in statuses else NOT_APPLICABLE
        computed = [status for status in statuses if status not in (NOT_CONFIGURED, NOT_APPLICABLE)]
        return worst_status(computed) or OK

    @property
    def attempts(self) -> int:
        return sum(outcome.attempts for outcome in self.metrics.values())

    @property
    def input_tokens(self) -> int:
        return sum(outcome.input_tokens for outcome in self.metrics.values())

    @property
    def output_tokens(self) -> int:
        return sum(outcome.output_tokens for outcome in self.metrics.values())

    @property
    def latency_ms(self) -> float | None:
        latencies = [outcome.latency_ms for outcome in self.metrics.values() if outcome.latency_ms is not None]
        return max(latencies) if latencies else None  # metrics run concurrently

    @property
    def error(self) -> str | None:
        errors = [f"{name}: {outcome.error}" for name, outcome in self.metrics.items() if outcome.error]
        return "; ".join(errors)[:MAX_ERROR_CHARS * 2] if errors else None

    def reward(self, weights: dict[str, float] | None = None) -> float | None:
        return ragas_reward(
            {name: outcome.value for name, outcome in self.metrics.items()},
            {name: outcome.status for name, outcome in self.metrics.items()},
            weights,
        )

    def to_payload(self) -> dict:
        return {
            "metrics": {name: vars(outcome) for name, outcome in self.metrics.items()},
            "scored_at": self.scored_at.isoformat(),
        }

    @classmethod
    def from_payload(cls, payload: dict) -> "RagasOutcome":
        metrics = {name: MetricOutcome(**values) for name, values in payload["metrics"].items()}
        return cls(metrics, cached=True, scored_at=datetime.fromisoformat(payload["scored_at"]))


def not_configured_outcome() -> RagasOutcome:
    return RagasOutcome({name: MetricOutcome(NOT_CONFIGURED) for name in RAGAS_METRICS})


def classify_failure(exc: BaseException) -> tuple[str, BaseException]:
    """(status, the exception that explains it) for a failed metric.

    ``error`` for API/transport failures and timeouts anywhere in the chain
    (instructor wraps them), ``unparseable`` for replies that did not fit the
    metric's output model.
    """
    import openai
    import pydantic

    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    unparseable: BaseException | None = None
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, openai.LengthFinishReasonError):
            unparseable = unparseable or current
        elif isinstance(current, (openai.APIError, asyncio.TimeoutError, TimeoutError)):
            return ERROR, current
        elif isinstance(current, (pydantic.ValidationError, json.JSONDecodeError)):
            unparseable = current  # the most telling reason
        elif type(current).__name__ in (
            "InstructorRetryException",
            "IncompleteOutputException",
        ):
            unparseable = unparseable or current
        for linked in (current.__cause__, current.__context__, getattr(current, "last_exception", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)
        for failed in getattr(current, "failed_attempts", None) or ():
            linked = getattr(failed, "exception", None)
            if isinstance(linked, BaseException):
                pending.append(linked)
    if unparseable is not None:
        return UNPARSEABLE, unparseable
    return ERROR, exc


def _checked_value(value) -> tuple[str, float | None, str | None]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return UNPARSEABLE, None, f"metric value is not a number: {str(value)[:50]!r}"
    if math.isnan(number):
        return UNDETERMINED, None, "metric is NaN (e.g. no statements in the response)"
    if -FLOAT_TOLERANCE <= number < 0:
        number = 0.0
    elif 1 < number <= 1 + FLOAT_TOLERANCE:
        number = 1.0
    if not 0.0 <= number <= 1.0:
        return OUT_OF_RANGE, None, f"metric value {number:g} outside [0, 1]"
    return OK, number, None


def _no_question(questions: list, value: float | None) -> bool:
    """True when answer relevancy's value rests on no generated question: every question
    the LLM generated is blank, or (nothing was seen) Ragas returned its 0.0 for that case."""
    if any(isinstance(q, str) and q.strip() for q in questions):
        return False
    return bool(questions) or value == 0.0


_RECORDING_LLM_CLASS = None


def _question_recording_llm(llm):
    """``llm`` as AnswerRelevancy sees it: every call goes to ``llm``, and each generated
    question is noted in this metric call's ``_generated_questions`` list."""
    global _RECORDING_LLM_CLASS
    if _RECORDING_LLM_CLASS is None:
        from ragas.llms.base import InstructorBaseRagasLLM
        from ragas.metrics.collections.answer_relevancy.util import AnswerRelevanceOutput

        class QuestionRecordingLLM(InstructorBaseRagasLLM):
            def __init__(self, inner) -> None:
                self.inner = inner

            def __getattr__(self, name):
                return getattr(self.inner, name)

            @staticmethod
            def _note(result):
                questions = _generated_questions.get()
                if questions is not None and isinstance(result, AnswerRelevanceOutput):
                    questions.append(result.question)
                return result

            def generate(self, prompt, response_model):
                return self._note(self.inner.generate(prompt, response_model))

            async def agenerate(self, prompt, response_model):
                return self._note(await self.inner.agenerate(prompt, response_model))

        _RECORDING_LLM_CLASS = QuestionRecordingLLM
    return _RECORDING_LLM_CLASS(llm)


class RagasScorer:
    """Scores (question, answer, contexts) with the three Ragas metrics; never raises for a failed call."""

    def __init__(
        self,
        llm: Endpoint | None,
        embeddings: Endpoint | None = None,
        *,
        concurrency: int = 16,
        retry: RetryPolicy | None = None,
        metric_timeout_s: float = 600.0,
        max_tokens: int = 2048,
        strictness: int = 1,
        max_field_chars: int = 12_000,
        max_contexts: int = 10,
        instructor_max_retries: int = 2,
        structured_output: str = "json_object",
    ) -> None:
        if structured_output not in RAGAS_STRUCTURED_MODES:
            raise ValueError(f"structured_output must be one of {RAGAS_STRUCTURED_MODES}")
        self.structured_output = structured_output
        self.llm_endpoint = llm
        self.embeddings_endpoint = embeddings
        self.metric_timeout_s = metric_timeout_s
        self.max_tokens = max_tokens
        self.strictness = strictness
        self.max_field_chars = max_field_chars
        self.max_contexts = max_contexts
        self.instructor_max_retries = instructor_max_retries
        self.llm_guard = RequestGuard(concurrency, retry) if llm else None
        self.embeddings_guard = RequestGuard(concurrency, retry) if (llm and embeddings) else None
        self._clients: list = []
        self._metrics: dict | None = None

    @property
    def configured(self) -> bool:
        return self.llm_endpoint is not None

    @property
    def model_names(self) -> tuple[str | None, str | None]:
        return (
            self.llm_endpoint.model if self.llm_endpoint else None,
            self.embeddings_endpoint.model if (self.llm_endpoint and self.embeddings_endpoint) else None,
        )

    @property
    def prompt_version(self) -> str:
        """Ragas's version and our settings that change what is asked."""
        try:
            from importlib.metadata import version

            ragas_version = version("ragas")
        except Exception:  # pragma: no cover - ragas missing: nothing is asked anyway
            ragas_version = "absent"
        canonical = json.dumps(
            {
                "metrics": ["Faithfulness", "AnswerRelevancy", "ContextPrecisionWithoutReference"],
                "strictness": self.strictness,
                "max_tokens": self.max_tokens,
                "max_field_chars": self.max_field_chars,
                "max_contexts": self.max_contexts,
                "embeddings": self.model_names[1],
                "structured_output": self.structured_output,
            },
            sort_keys=True,
        )
        return f"ragas-{ragas_version}-" + hashlib.sha256(canonical.encode()).hexdigest()[:10]

    def endpoint_stats(self) -> dict[str, EndpointStats]:
        stats = {}
        if self.llm_guard is not None:
            stats["llm"] = self.llm_guard.stats
        if self.embeddings_guard is not None:
            stats["embeddings"] = self.embeddings_guard.stats
        return stats

    def _build(self) -> dict:
        os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
        from ragas.embeddings.base import embedding_factory
        from ragas.llms import llm_factory
        from ragas.metrics.collections import AnswerRelevancy, ContextPrecisionWithoutReference, Faithfulness

        llm_client = async_openai_client(self.llm_endpoint.base_url, self.llm_endpoint.api_key, self.llm_guard)
        self._clients.append(llm_client)
        if self.structured_output == "json_object":
            llm = llm_factory(
                self.llm_endpoint.model,
                client=llm_client,
                max_tokens=self.max_tokens,
                max_retries=self.instructor_max_retries,
            )
        else:
            import instructor
            from ragas.llms.base import InstructorLLM

            llm = InstructorLLM(
                client=instructor.from_openai(llm_client, mode=instructor.Mode.MD_JSON),
                model=self.llm_endpoint.model,
                provider="openai",
                max_tokens=self.max_tokens,
                max_retries=self.instructor_max_retries,
            )
        metrics = {FAITHFULNESS: Faithfulness(llm=llm), CONTEXT_PRECISION: ContextPrecisionWithoutReference(llm=llm)}
        llm = _question_recording_llm(llm)
        if self.embeddings_endpoint is not None:
            embeddings_client = async_openai_client(
                self.embeddings_endpoint.base_url, self.embeddings_endpoint.api_key, self.embeddings_guard
            )
            self._clients.append(embeddings_client)
            embeddings = embedding_factory("openai", model=self.embeddings_endpoint.model, client=embeddings_client)
            metrics[ANSWER_RELEVANCY] = AnswerRelevancy(llm=llm, embeddings=embeddings, strictness=self.strictness)
        return metrics

    def _clip(self, text: str) -> str:
        return text if len(text) <= self.max_field_chars else text[: self.max_field_chars]

    async def _run_metric(self, name: str, metric, **inputs) -> MetricOutcome:
        ledger = CallLedger()
        started = time.perf_counter()
        questions: list | None = [] if name == ANSWER_RELEVANCY else None
        with charged_to(ledger):
            # The metric's task copies the context as it is created: it sees this call's list.
            token = _generated_questions.set(questions)
            try:
                call = asyncio.ensure_future(metric.ascore(**inputs))
            finally:
                _generated_questions.reset(token)
            try:
                result = await asyncio.wait_for(call, self.metric_timeout_s)
            except Exception as exc:  # Ragas raises on failure; we record it
                status, cause = classify_failure(exc)
                detail = describe_failure(cause) if status == ERROR else f"unreadable reply: {type(cause).__name__}"
                return MetricOutcome(
                    status,
                    None,
                    detail[:MAX_ERROR_CHARS],
                    ledger.attempts,
                    ledger.input_tokens,
                    ledger.output_tokens,
                    (time.perf_counter() - started) * 1000,
                )
        status, value, detail = _checked_value(getattr(result, "value", result))
        if status == OK and questions is not None and _no_question(questions, value):
            status, value = DEGENERATE, None
            detail = f"the LLM generated no question from the response ({len(questions)} asked); Ragas scores that 0.0"
        return MetricOutcome(
            status,
            value,
            detail,
            ledger.attempts,
            ledger.input_tokens,
            ledger.output_tokens,
            (time.perf_counter() - started) * 1000,
        )

    async def score(self, question: str | None, answer: str, contexts: Sequence[str] | None) -> RagasOutcome:
        if not self.configured:
            return not_configured_outcome()
        if self._metrics is None:
            try:
                self._metrics = self._build()
            except ImportError as exc:  # configured, but the ragas pins are not installed
                detail = f"ragas is not installed ({exc.name}): pip install ragas==0.4.3 langchain-community==0.4.1"
                return RagasOutcome({name: MetricOutcome(ERROR, error=detail) for name in RAGAS_METRICS})
        question = (question or "").strip()
        contexts = [self._clip(c) for c in (contexts or []) if c and c.strip()][: self.max_contexts]
        answer = self._clip(answer)
        outcomes: dict[str, MetricOutcome] = {}
        jobs = {}
        for name in RAGAS_METRICS:
            metric = self._metrics.get(name)
            if metric is None:
                outcomes[name] = MetricOutcome(NOT_CONFIGURED, error="no embeddings endpoint configured")
            elif not question:
                outcomes[name] = MetricOutcome(NOT_APPLICABLE, error="no question (user turn) in the trace")
            elif name != ANSWER_RELEVANCY and not contexts:
                outcomes[name] = MetricOutcome(NOT_APPLICABLE)
            elif name == ANSWER_RELEVANCY:
                jobs[name] = self._run_metric(name, metric, user_input=question, response=answer)
            else:
                jobs[name] = self._run_metric(
                    name, metric, user_input=question, response=answer, retrieved_contexts=contexts
                )
        for name, outcome in zip(jobs, await asyncio.gather(*jobs.values())):
            outcomes[name] = outcome
        return RagasOutcome({name: outcomes[name] for name in RAGAS_METRICS})

    async def aclose(self) -> None:
        for client in self._clients:
            await client.close()
