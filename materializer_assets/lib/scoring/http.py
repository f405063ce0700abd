"""HTTP for scoring calls: bounded concurrency, retries, a per-request timeout, accounting.

Everything the judge and Ragas send goes through one :class:`RequestGuard`
per endpoint, installed in the HTTP client under the ``openai`` client (its
``send``). That one place gives every call, including the ones Ragas and
instructor make inside their own code:

* at most ``concurrency`` requests in flight (a retry waiting for its backoff
  does not hold a slot);
* retries with exponential backoff and jitter on 429, 5xx, timeouts and
  connection errors (tenacity), honouring ``Retry-After``;
* a wall-clock timeout per attempt, body included;
* counts: requests, HTTP outcomes, latency of each request, tokens from the
  reply's ``usage`` — per endpoint (:class:`EndpointStats`) and per unit of
  work (:class:`CallLedger`, found through a context variable so concurrent
  traces never mix their counts).

The HTTP client is the one the installed ``openai`` ships (its aiohttp
flavour when aiohttp is installed: about a third less CPU per request than
its httpx one, which matters at hundreds of requests per second), built with
``max_retries=0`` on the ``openai`` side so nothing retries on top of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import math
import random
import re
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
NO_API_KEY = "EMPTY"  # vLLM and llama.cpp ignore it; the openai client insists on one


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    timeout_s: float = 60.0
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUSES


@dataclass
class CallLedger:
    """What one unit of work (one trace for one scorer) cost."""

    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    outcomes: Counter = field(default_factory=Counter)


@dataclass
class EndpointStats:
    """What all calls to one endpoint cost, for the asset's metadata."""

    requests: int = 0
    retries: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    outcomes: Counter = field(default_factory=Counter)
    latencies_ms: array = field(default_factory=lambda: array("d"))

    def merge(self, other: "EndpointStats") -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.outcomes.update(other.outcomes)
        self.latencies_ms.extend(other.latencies_ms)


_ledger: contextvars.ContextVar[CallLedger | None] = contextvars.ContextVar("scoring_call_ledger", default=None)
_no_retry_statuses: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "scoring_no_retry_statuses", default=frozenset()
)


@contextlib.contextmanager
def charged_to(ledger: CallLedger):
    """Count the requests made inside this block (and tasks it starts) on ``ledger``."""
    token = _ledger.set(ledger)
    try:
        yield ledger
    finally:
        _ledger.reset(token)


@contextlib.contextmanager
def without_retry_on(statuses: frozenset[int]):
    """Do not retry these statuses inside this block (used while probing a server's features)."""
    token = _no_retry_statuses.set(frozenset(statuses))
    try:
        yield
    finally:
        _no_retry_statuses.reset(token)


class _RetryableStatus(Exception):
    def __init__(self, response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retry_after_seconds(response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


async def _within(seconds: float, awaitable):
    """``awaitable`` with a deadline; asyncio.timeout (3.11+) spares wait_for's extra task per request."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10


def _refused(exc: BaseException) -> bool:
    """Whether a 'timeout' was in fact a refused or failed connection (an OSError underneath)."""
    seen = 0
    current = exc.__cause__ or exc.__context__
    while current is not None and seen < 10:
        if isinstance(current, ConnectionError) or type(current).__name__ == "ClientConnectorError":
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def http_module():
    """``httpx2`` or ``httpx``: whichever the installed ``openai`` builds its clients on."""
    import openai

    for base in openai.DefaultAsyncHttpxClient.__mro__:
        name = base.__module__.split(".")[0]
        if name in ("httpx2", "httpx"):
            return importlib.import_module(name)
    return importlib.import_module("httpx")  # pragma: no cover


class RequestGuard:
    """Bounds, retries, times out and counts the requests of one endpoint."""

    def __init__(self, concurrency: int, policy: RetryPolicy | None = None, stats: EndpointStats | None = None) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.policy = policy or RetryPolicy()
        self.stats = stats if stats is not None else EndpointStats()
        self._slots = asyncio.Semaphore(concurrency)
        self.http = http_module()

    def _wait(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _RetryableStatus):
            stated = _retry_after_seconds(exc.response)
            if stated is not None:
                return min(stated, self.policy.max_backoff_s)
        backoff = self.policy.initial_backoff_s * 2 ** (retry_state.attempt_number - 1)
        return min(self.policy.max_backoff_s, backoff) * (0.5 + random.random() / 2)

    def _retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, (_RetryableStatus, self.http.TimeoutException, self.http.TransportError))

    async def send(self, send_once, request):
        """Send ``request`` with ``send_once()`` (a fresh attempt per call) under the guard."""
        ledger = _ledger.get()
        skip = _no_retry_statuses.get()
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.stats.retries += 1
                    response = await self._attempt(send_once, request, ledger)
                    if response.status_code in self.policy.retry_statuses and response.status_code not in skip:
                        raise _RetryableStatus(response)
                    return response
        except _RetryableStatus as exc:  # retries exhausted: the openai client raises the matching error
            return exc.response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, send_once, request, ledger: CallLedger | None):
        async with self._slots:
            self.stats.requests += 1
            if ledger is not None:
                ledger.attempts += 1
            started = time.perf_counter()
            try:
                response = await _within(self.policy.timeout_s, send_once())
            except asyncio.TimeoutError:
                self._count("timeout", ledger)
                raise self.http.ReadTimeout(
                    f"no complete reply within {self.policy.timeout_s:g} s", request=request
                ) from None
            except self.http.TimeoutException as exc:
                if _refused(exc):
                    # openai's aiohttp transport reports a refused connection as ConnectTimeout
                    self._count("connection_error", ledger)
                    raise self.http.ConnectError(str(exc) or "connection refused", request=request) from exc
                self._count("timeout", ledger)
                raise
            except self.http.TransportError:
                self._count("connection_error", ledger)
                raise
            self.stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        self._count(str(response.status_code), ledger)
        if 200 <= response.status_code < 300:
            self._count_tokens(response, ledger)
        return response

    def _count(self, outcome: str, ledger: CallLedger | None) -> None:
        self.stats.outcomes[outcome] += 1
        if ledger is not None:
            ledger.outcomes[outcome] += 1

    def _count_tokens(self, response, ledger: CallLedger | None) -> None:
        try:
            body = response.content  # read already: the openai client does not stream these
        except Exception:  # a streamed body: no token count, not a failure
            return
        # A search, not a second JSON parse of every reply (embeddings replies are large).
        prompt_match = _PROMPT_TOKENS.search(body)
        completion_match = _COMPLETION_TOKENS.search(body)
        prompt = int(prompt_match.group(1)) if prompt_match else 0
        completion = int(completion_match.group(1)) if completion_match else 0
        self.stats.input_tokens += prompt
        self.stats.output_tokens += completion
        if ledger is not None:
            ledger.input_tokens += prompt
            ledger.output_tokens += completion


_guarded_classes: dict[type, type] = {}


def _guarded_client_class(base: type) -> type:
    """``base`` (an httpx/httpx2 AsyncClient) whose ``send`` goes through ``self.guard``."""
    if base not in _guarded_classes:

        class GuardedAsyncClient(base):  # type: ignore[misc, valid-type]
            guard: RequestGuard

            async def send(self, request, **kwargs):
                return await self.guard.send(lambda: base.send(self, request, **kwargs), request)

        _guarded_classes[base] = GuardedAsyncClient
    return _guarded_classes[base]


def async_openai_client(base_url: str | None, api_key: str | None, guard: RequestGuard):
    """An ``openai.AsyncOpenAI`` whose requests all go through ``guard``."""
    import openai

    http = guard.http
    timeout = guard.policy.timeout_s
    settings = {
        "timeout": http.Timeout(timeout, connect=min(10.0, timeout)),
        "limits": http.Limits(max_connections=guard.concurrency, max_keepalive_connections=guard.concurrency),
    }
    aiohttp_client = getattr(openai, "DefaultAioHttpClient", None)
    try:
        http_client = _guarded_client_class(aiohttp_client)(**settings) if aiohttp_client else None
    except RuntimeError:  # openai installed without its aiohttp extra
        http_client = None
    if http_client is None:
        http_client = _guarded_client_class(openai.DefaultAsyncHttpxClient)(**settings)
    http_client.guard = guard
    return openai.AsyncOpenAI(
        base_url=base_url or None,
        api_key=api_key or NO_API_KEY,
        max_retries=0,
        timeout=timeout,
        http_client=http_client,
    )


def percentile(values, fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` in [0, 1]); None without values."""
    if not len(values):
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
