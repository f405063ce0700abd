"""One LLM judge: an OpenAI-compatible endpoint and a model, asked the design document's prompt.

Structured output is detected once per endpoint (per client): the first
request asks for ``response_format={"type": "json_schema", ...}``; a server
that refuses it is asked again with ``{"type": "json_object", "schema": ...}``,
then with no ``response_format`` at all; the first mode the server answers
(HTTP 2xx, even a reply that ignores the format) is used for every later
request. The reply is always read by the tolerant parser (:mod:`.parsing`),
so a server that ignores the format still works.

Only a definite answer decides the mode. HTTP 400/415/422/501 refuse the
format at once. A 500 is retried like any other call (the request guard's
tenacity loop, same attempts and backoff), since one 500 is as likely a hiccup
as a refusal; only a 500 to every attempt (llama.cpp's way of refusing
``json_schema``) counts as a refusal. 429, 502–504, timeouts and connection
errors are retried the same way and never decide anything: when they outlast
the retries, that request is an ``error`` and the mode stays undetected, so
the next request detects again.

:meth:`JudgeClient.cache_keys` hashes the request as it would be sent (the
rendered messages — the text after redaction and clipping — model, sampling
settings and ``response_format`` of a mode) with the prompt version: the score
cache (:mod:`.runner`) keys each answer on exactly what the judge saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .cache import content_key
from .http import CallLedger, EndpointStats, RequestGuard, RetryPolicy, async_openai_client, charged_to, without_retry_on
from .parsing import ParsedScore, parse_judge_reply
from .prompt import JUDGE_REPLY_SCHEMA, JudgePrompt
from .schema import ERROR, OK, UNPARSEABLE

JSON_SCHEMA = "json_schema"
JSON_OBJECT = "json_object"
PLAIN = "none"
AUTO = "auto"
STRUCTURED_MODES = (JSON_SCHEMA, JSON_OBJECT, PLAIN)
# Statuses with which a server says "I do not support this response_format" at once: not retried.
DEFINITE_REJECTIONS = frozenset({400, 415, 422, 501})
# A 500 means the same only when every attempt got it (llama.cpp refuses json_schema with a 500).
REJECTION_STATUSES = DEFINITE_REJECTIONS | {500}
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint and the model to ask there."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    name: str = ""  # a label for the committee; the model name by default

    @property
    def label(self) -> str:
        return self.name or self.model


@dataclass
class JudgeOutcome:
    status: str
    score: float | None = None
    raw_score: float | None = None
    reasoning: str | None = None
    attempts: int = 0
    latency_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    mode: str | None = None  # the structured-output mode of the (last) request sent
    tries: int = 1  # runs that asked the judge for this answer (the score cache counts them)
    cached: bool = False
    scored_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_payload(self) -> dict:
        """What the score cache keeps."""
        return {
            "mode": self.mode,
            "tries": self.tries,
            "status": self.status,
            "score": self.score,
            "raw_score": self.raw_score,
            "reasoning": self.reasoning,
            "attempts": self.attempts,
            "latency_ms": self.latency_ms,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error": self.error,
            "scored_at": self.scored_at.isoformat(),
        }

    @classmethod
    def from_payload(cls, payload: dict) -> "JudgeOutcome":
        values = dict(payload)
        values["scored_at"] = datetime.fromisoformat(values["scored_at"])
        return cls(**values, cached=True)


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed call, without request content or secrets."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return f"connection error: {type(exc.__cause__ or exc).__name__}"
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        return f"HTTP {exc.status_code}: {message or exc.message}"[:MAX_ERROR_CHARS]
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _response_format(mode: str) -> dict | None:
    if mode == JSON_SCHEMA:
        return {
            "type": "json_schema",
            "json_schema": {"name": "judge_score", "schema": JUDGE_REPLY_SCHEMA, "strict": True},
        }
    if mode == JSON_OBJECT:
        return {"type": "json_object", "schema": JUDGE_REPLY_SCHEMA}
    return None


def _reply_text(body: bytes) -> str | None:
    """The first choice's text; None when the body is not a chat completion with one."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


class JudgeClient:
    """Asks one endpoint to judge (question, answer) pairs; never raises for a failed call."""

    def __init__(
        self,
        endpoint: Endpoint,
        prompt: JudgePrompt | None = None,
        *,
        concurrency: int = 32,
        retry: RetryPolicy | None = None,
        structured_output: str = AUTO,
        stats: EndpointStats | None = None,
    ) -> None:
        if structured_output not in (AUTO, *STRUCTURED_MODES):
            raise ValueError(f"structured_output must be one of auto, {', '.join(STRUCTURED_MODES)}")
        self.endpoint = endpoint
        self.prompt = prompt or JudgePrompt()
        self.guard = RequestGuard(concurrency, retry, stats)
        self.client = async_openai_client(endpoint.base_url, endpoint.api_key, self.guard)
        self.mode: str | None = None if structured_output == AUTO else structured_output
        self._detecting = asyncio.Lock()

    @property
    def stats(self) -> EndpointStats:
        return self.guard.stats

    def _body(self, mode: str, messages: list[dict]) -> dict:
        body = {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": self.prompt.temperature,
            "max_tokens": self.prompt.max_tokens,
        }
        response_format = _response_format(mode)
        if response_format is not None:
            body["response_format"] = response_format
        return body

    def candidate_modes(self) -> tuple[str, ...]:
        """The modes a request may be sent with: the detected (or forced) one, or any before detection."""
        return (self.mode,) if self.mode is not None else STRUCTURED_MODES

    def cache_keys(self, question: str | None, answer: str, modes: tuple[str, ...] | None = None) -> dict[str, str]:
        """Mode → the cache key of the request for (question, answer) sent in that mode
        (``modes``: by default :meth:`candidate_modes`).

        Covers what the judge sees: the rendered messages (after redaction upstream and
        clipping here), the model, sampling settings and response_format, and the prompt version.
        """
        messages = content_key(self.prompt.messages(question, answer))  # hashed once for every mode
        return {
            mode: content_key(self.prompt.version, self._body(mode, messages))
            for mode in (modes or self.candidate_modes())
        }

    async def _create(self, mode: str, messages: list[dict]) -> bytes:
        body = self._body(mode, messages)
        # The client's generic POST (its documented way to send a body as-is), answered
        # as bytes: the typed chat.completions.create() re-walks every parameter's type and
        # builds a model of the reply on each call, about half of our CPU per request
        # (which decides throughput at hundreds of requests per second); and "schema"
        # inside json_object (llama.cpp's extension) is not in its types anyway.
        # Same auth, base URL, timeouts and errors (4xx/5xx still raise APIStatusError).
        return await self.client.post("/chat/completions", cast_to=bytes, body=body)

    async def _detect_and_create(self, messages: list[dict], sent: dict):
        """Try the modes in order; the first the server answers becomes this endpoint's mode.

        Transient failures (429, 5xx, timeouts, connection errors) are retried by the
        request guard with the endpoint's retry policy; only a definite refusal moves on
        to the next mode (see the module doc), and only a reply sets the mode.
        """
        import openai

        for mode in STRUCTURED_MODES:
            sent["mode"] = mode
            try:
                if mode == PLAIN:
                    completion = await self._create(mode, messages)
                else:
                    # A definite refusal is not transient: do not retry it, ask the next way.
                    with without_retry_on(DEFINITE_REJECTIONS):
                        completion = await self._create(mode, messages)
            except openai.APIStatusError as exc:
                if mode != PLAIN and exc.status_code in REJECTION_STATUSES:
                    continue
                raise
            self.mode = mode
            return completion
        raise AssertionError("unreachable")  # pragma: no cover

    async def _complete(self, messages: list[dict], sent: dict):
        if self.mode is None:
            async with self._detecting:  # concurrent first requests wait for one detection
                if self.mode is None:
                    return await self._detect_and_create(messages, sent)
        sent["mode"] = self.mode
        return await self._create(self.mode, messages)

    async def judge(self, question: str | None, answer: str) -> JudgeOutcome:
        ledger = CallLedger()
        started = time.perf_counter()
        sent: dict = {"mode": self.mode}
        with charged_to(ledger):
            try:
                completion = await self._complete(self.prompt.messages(question, answer), sent)
            except Exception as exc:  # every failure becomes a status, never a score
                return JudgeOutcome(
                    ERROR,
                    mode=sent["mode"],
                    attempts=ledger.attempts,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    input_tokens=ledger.input_tokens,
                    output_tokens=ledger.output_tokens,
                    error=describe_failure(exc),
                )
        text = _reply_text(completion)
        if text is None:
            parsed = ParsedScore(UNPARSEABLE, detail="reply is not a chat completion with a message")
        else:
            parsed = parse_judge_reply(text)
        return JudgeOutcome(
            parsed.status,
            score=parsed.score if parsed.status == OK else None,
            raw_score=parsed.raw_score,
            reasoning=parsed.reasoning,
            attempts=ledger.attempts,
            latency_ms=(time.perf_counter() - started) * 1000,
            input_tokens=ledger.input_tokens,
            output_tokens=ledger.output_tokens,
            error=parsed.detail,
            mode=sent["mode"],
        )

    async def aclose(self) -> None:
        await self.client.close()
