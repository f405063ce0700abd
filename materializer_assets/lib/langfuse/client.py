"""A small, dependable HTTP client for Langfuse's public API (httpx + tenacity).

What it guarantees (DESIGN §4):

- **Rate cap**: requests start at most ``requests_per_second`` apart, across
  threads sharing the client.
- **429**: waits what ``Retry-After`` says (seconds or an HTTP date; capped
  by ``max_retry_after_seconds``), then retries.
- **5xx, timeouts, dropped connections, a truncated JSON body**: retried
  with exponential backoff and jitter, up to ``max_attempts`` attempts.
- **Everything else** (401/403, 400, 404) fails at once: retrying cannot help.
- A request that keeps failing raises :class:`LangfuseUnavailableError`
  naming the server, the request and the caller's ``context`` (the time
  window being read), never the keys. It is a ``SourceUnavailableError``, so
  a cell being read fails and nothing is published.

Pagination helpers stream one page at a time: cursor pages (v2 observations,
v3 scores: the cursor is absent or null on the last page; an empty page with
a cursor is not the end) and numbered pages (v3 lists: ``page`` from 1 up to
``meta.totalPages``).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import httpx
import tenacity

from ..sources.base import SourceUnavailableError
from .config import LangfuseConfig

log = logging.getLogger(__name__)

USER_AGENT = "trace-reward-materializer (+httpx)"
HEALTH_PATH = "/api/public/health"


class LangfuseUnavailableError(SourceUnavailableError):
    """A Langfuse request failed for good; the message names the request and window."""


class LangfuseHTTPError(Exception):
    """One failed attempt; ``retryable`` says whether another attempt may succeed."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None, retryable: bool = False
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable


class RateLimiter:
    """Spaces request starts at least ``1 / per_second`` apart (thread-safe)."""

    def __init__(self, per_second: float, clock=time.monotonic, sleep=time.sleep) -> None:
        self.interval = 1.0 / per_second if per_second and per_second > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_start = 0.0

    def acquire(self) -> float:
        """Block until the next request may start; returns the seconds waited."""
        if self.interval <= 0:
            return 0.0
        with self._lock:
            now = self._clock()
            start = max(now, self._next_start)
            self._next_start = start + self.interval
        wait = start - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)


class _RetryAfterOrBackoff(tenacity.wait.wait_base):
    """Wait what the server asked for (429/503 + Retry-After), else back off exponentially."""

    def __init__(self, config: LangfuseConfig) -> None:
        self.cap = config.max_retry_after_seconds
        self.backoff = tenacity.wait_exponential_jitter(
            multiplier=config.backoff_initial_seconds,
            max=config.backoff_max_seconds,
            jitter=config.backoff_initial_seconds,
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, LangfuseHTTPError) and error.retry_after is not None:
            return min(error.retry_after, self.cap)
        return self.backoff(retry_state)


def _retryable(error: BaseException) -> bool:
    if isinstance(error, LangfuseHTTPError):
        return error.retryable
    return isinstance(error, (httpx.TimeoutException, httpx.TransportError))


def iso_utc(moment: datetime) -> str:
    """``2026-04-18T00:00:00.000Z``: what JavaScript's Date produces and Langfuse parses."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class LangfuseClient:
    """Requests against one Langfuse server, with rate cap, retries and pagination."""

    def __init__(self, config: LangfuseConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        auth = httpx.BasicAuth(config.public_key, config.secret_key) if config.has_credentials else None
        self._http = httpx.Client(
            base_url=config.host,
            auth=auth,
            timeout=httpx.Timeout(config.timeout_seconds),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            transport=transport,
            follow_redirects=False,
        )
        self.limiter = RateLimiter(config.requests_per_second)
        self.requests_sent = 0
        self.retries = 0
        self._wait = _RetryAfterOrBackoff(config)

    # ------------------------------------------------------------ requests

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        context: str = "",
    ) -> Any:
        """The decoded JSON body of a successful response; retries as described above."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.max_attempts),
            wait=self._wait,
            retry=tenacity.retry_if_exception(_retryable),
            reraise=True,
            before_sleep=lambda state: self._before_sleep(method, path, context, state),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(method, path, params, json_body)
        except (LangfuseHTTPError, httpx.HTTPError) as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            where = f" for {context}" if context else ""
            raise LangfuseUnavailableError(
                f"Langfuse at {self.config.host}: {method} {path}{where} failed after {attempts} attempt(s): "
                f"{_describe(exc)}"
            ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, method: str, path: str, params: Mapping[str, Any] | None, json_body: Any) -> Any:
        self.limiter.acquire()
        self.requests_sent += 1
        query = {key: value for key, value in (params or {}).items() if value is not None}
        response = self._http.request(method, path, params=query, json=json_body)
        status = response.status_code
        if status == 429 or status >= 500:
            raise LangfuseHTTPError(
                f"HTTP {status}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                retryable=True,
            )
        if status in (401, 403):
            raise LangfuseHTTPError(
                f"HTTP {status}: the server rejected the API keys (LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY)",
                status=status,
            )
        if status >= 300:
            raise LangfuseHTTPError(f"HTTP {status}: {response.text[:300]}", status=status)
        try:
            return response.json()
        except ValueError as exc:  # a body cut off by a proxy: another attempt may do better
            raise LangfuseHTTPError(
                f"HTTP {status} with a body that is not JSON: {exc}", status=status, retryable=True
            ) from exc

    def _before_sleep(self, method: str, path: str, context: str, state: tenacity.RetryCallState) -> None:
        self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning(
            "Langfuse %s %s%s: attempt %d failed (%s); retrying in %.1fs",
            method,
            path,
            f" ({context})" if context else "",
            state.attempt_number,
            _describe(error),
            wait,
        )

    # ------------------------------------------------------------ endpoints

    def health(self) -> dict[str, Any]:
        body = self.request_json("GET", HEALTH_PATH, context="version check")
        if not isinstance(body, dict):
            raise LangfuseUnavailableError(
                f"Langfuse at {self.config.host}: {HEALTH_PATH} returned {type(body).__name__}"
            )
        return body

    def iter_cursor_pages(self, path: str, params: Mapping[str, Any], context: str = "") -> Iterator[list[dict]]:
        """``data`` of each page, following ``meta.cursor`` until it is absent, null or empty."""
        cursor: str | None = None
        seen: set[str] = set()
        page = 0
        while True:
            page += 1
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            body = self.request_json(
                "GET", path, params=query, context=f"{context}, page {page}" if context else f"page {page}"
            )
            yield _page_data(body, self.config.host, path, context)
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            cursor = meta.get("cursor")
            if not cursor:
                return
            if cursor in seen:  # a server bug must not become an endless loop
                raise LangfuseUnavailableError(
                    f"Langfuse at {self.config.host}: {path} ({context}) returned the same cursor twice"
                )
            seen.add(cursor)

    def iter_numbered_pages(self, path: str, params: Mapping[str, Any], context: str = "") -> Iterator[list[dict]]:
        """``data`` of pages 1..``meta.totalPages`` (v3 lists)."""
        page = 1
        limit = int(params.get("limit") or 50)
        while True:
            body = self.request_json(
                "GET",
                path,
                params={**params, "page": page},
                context=f"{context}, page {page}" if context else f"page {page}",
            )
            data = _page_data(body, self.config.host, path, context)
            yield data
            meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
            total_pages = meta.get("totalPages")
            if isinstance(total_pages, int) and not isinstance(total_pages, bool):
                if page >= total_pages:
                    return
            elif len(data) < limit:
                return
            page += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "LangfuseClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _page_data(body: Any, host: str, path: str, context: str) -> list[dict]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise LangfuseUnavailableError(f"Langfuse at {host}: {path} ({context}) returned a page without a data list")
    return [item for item in data if isinstance(item, dict)]


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    if isinstance(error, httpx.TimeoutException):
        return f"timed out ({type(error).__name__})"
    if isinstance(error, httpx.HTTPError):
        return f"{type(error).__name__}: {error}"
    return str(error)
