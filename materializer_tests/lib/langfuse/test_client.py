"""The HTTP client's promises, over real HTTP: 429 + Retry-After, 5xx, slow pages, the rate cap."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from materializer_assets.lib.langfuse import LangfuseClient, LangfuseUnavailableError, RateLimiter, parse_retry_after
from materializer_assets.lib.slugs import model_slug
from materializer_tests.langfuse_server import expected_rows
from materializer_tests.langfuse_server.data import DAY, GLM

from .helpers import V3, V4, comparable, config_for, read_rows, reader_for

V2_OBSERVATIONS = "/api/public/v2/observations"
TRACES = "/api/public/traces"
SLUG = model_slug(GLM)


def _gaps(calls) -> list[float]:
    return [later.started - earlier.started for earlier, later in zip(calls, calls[1:])]


def test_429_then_success_waits_what_retry_after_says(make_langfuse_server):
    server = make_langfuse_server(V4)
    server.fail(V2_OBSERVATIONS, status=429, times=2, retry_after="1")
    rows, _ = read_rows(reader_for(server), DAY, SLUG)
    assert rows == comparable(expected_rows(server.data, DAY, SLUG))
    calls = server.calls(V2_OBSERVATIONS)
    assert [c.status for c in calls[:3]] == [429, 429, 200]
    assert all(gap >= 0.95 for gap in _gaps(calls[:3]))  # the client slept Retry-After, not its own backoff


def test_retry_after_as_an_http_date(make_langfuse_server):
    server = make_langfuse_server(V3)
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True)
    server.fail(TRACES, status=429, times=1, retry_after=when)
    rows, _ = read_rows(reader_for(server), DAY, SLUG)
    assert rows == comparable(expected_rows(server.data, DAY, SLUG))
    calls = server.calls(TRACES)
    assert calls[0].status == 429 and calls[1].status == 200 and calls[1].started - calls[0].started >= 0.5


@pytest.mark.parametrize("version, path", [(V4, V2_OBSERVATIONS), (V3, TRACES)], ids=["v4", "v3"])
@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_then_success(make_langfuse_server, version, path, status):
    server = make_langfuse_server(version)
    server.fail(path, status=status, times=3)
    reader = reader_for(server)
    rows, _ = read_rows(reader, DAY, SLUG)
    assert rows == comparable(expected_rows(server.data, DAY, SLUG))
    assert [c.status for c in server.calls(path)[:4]] == [status] * 3 + [200]
    assert reader.client.retries == 3


def test_a_slow_page_times_out_and_is_retried(make_langfuse_server):
    server = make_langfuse_server(V4)
    server.slow(V2_OBSERVATIONS, seconds=1.5, times=1)
    reader = reader_for(server, timeout_seconds=0.5)
    rows, _ = read_rows(reader, DAY, SLUG)
    assert rows == comparable(expected_rows(server.data, DAY, SLUG))
    assert reader.client.retries >= 1


@pytest.mark.parametrize("version, path", [(V4, V2_OBSERVATIONS), (V3, TRACES)], ids=["v4", "v3"])
def test_a_page_that_keeps_failing_raises_naming_the_window(make_langfuse_server, version, path):
    server = make_langfuse_server(version)
    reader = reader_for(server, max_attempts=3)
    cell = reader.read_cell(DAY, SLUG)
    server.fail(path, status=503, times=None)
    with pytest.raises(LangfuseUnavailableError) as failure:
        list(cell.batches)
    message = str(failure.value)
    assert f"GET {path}" in message and "failed after 3 attempt(s)" in message and "HTTP 503" in message
    assert "window 2026-04-18T" in message  # which part of the day could not be read
    assert len(server.calls(path)) >= 3


def test_a_body_that_is_not_json_is_retried(make_langfuse_server):
    import httpx

    server = make_langfuse_server(V4)
    calls = {"n": 0}

    class Truncating(httpx.HTTPTransport):
        def handle_request(self, request):
            calls["n"] += 1
            if calls["n"] == 2:  # the first page after the health check, cut off by a proxy
                return httpx.Response(200, content=b'{"data": [', headers={"Content-Type": "application/json"})
            return super().handle_request(request)

    from materializer_assets.lib.sources.langfuse import LangfuseTraceReader

    reader = LangfuseTraceReader(config_for(server), transport=Truncating())
    rows, _ = read_rows(reader, DAY, SLUG)
    assert rows == comparable(expected_rows(server.data, DAY, SLUG)) and reader.client.retries == 1


def test_requests_per_second_cap(make_langfuse_server):
    server = make_langfuse_server(V4)
    client = LangfuseClient(config_for(server, requests_per_second=10))
    started = time.monotonic()
    for _ in range(11):
        client.health()
    elapsed = time.monotonic() - started
    assert elapsed >= 0.95  # 11 requests, 10 gaps of 0.1 s
    calls = server.calls("/api/public/health")
    assert calls[-1].started - calls[0].started >= 0.9  # as the server saw them (arrival jitter aside)


def test_rate_limiter_spaces_starts_across_threads():
    import threading

    limiter = RateLimiter(20)
    starts: list[float] = []
    lock = threading.Lock()

    def work():
        for _ in range(5):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts.sort()
    assert len(starts) == 20 and starts[-1] - starts[0] >= 19 * 0.05 * 0.95
    assert RateLimiter(0).acquire() == 0.0  # no cap


def test_parse_retry_after():
    now = datetime(2026, 4, 18, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None and parse_retry_after("") is None


def test_retry_after_is_capped(make_langfuse_server):
    server = make_langfuse_server(V4)
    server.fail("/api/public/health", status=429, times=1, retry_after="3600")
    client = LangfuseClient(config_for(server, max_retry_after_seconds=0.2))
    started = time.monotonic()
    assert client.health()["status"] == "OK"
    assert time.monotonic() - started < 2
