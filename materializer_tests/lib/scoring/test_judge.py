"""The judge client against a real OpenAI-compatible HTTP server on 127.0.0.1."""

import asyncio
import json
import time

import pytest

from materializer_assets.lib.scoring.http import RetryPolicy
from materializer_assets.lib.scoring.judge import JSON_OBJECT, JSON_SCHEMA, PLAIN, Endpoint, JudgeClient
from materializer_assets.lib.scoring.prompt import JUDGE_INSTRUCTIONS, JudgePrompt
from materializer_assets.lib.scoring.schema import ERROR, OK, OUT_OF_RANGE, UNPARSEABLE
from materializer_tests.openai_server import replies

FAST_RETRY = RetryPolicy(max_attempts=4, timeout_s=5.0, initial_backoff_s=0.01, max_backoff_s=0.05)


def judge_once(server, question, answer, model="judge-a", **kwargs):
    async def run():
        client = JudgeClient(Endpoint(server.base_url, model), retry=kwargs.pop("retry", FAST_RETRY), **kwargs)
        try:
            return await client.judge(question, answer), client
        finally:
            await client.aclose()

    return asyncio.run(run())


def judge_many(server, pairs, model="judge-a", **kwargs):
    async def run():
        client = JudgeClient(Endpoint(server.base_url, model), retry=kwargs.pop("retry", FAST_RETRY), **kwargs)
        try:
            return await asyncio.gather(*(client.judge(q, a) for q, a in pairs)), client
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_plain_reply_is_scored_with_the_design_prompt(openai_server):
    outcome, client = judge_once(openai_server, "How do I sort?", "Use sorted().")
    assert outcome.status == OK
    assert outcome.score == replies.judge_score("judge-a", "How do I sort?", "Use sorted().")
    assert outcome.attempts == 1
    assert outcome.input_tokens > 0 and outcome.output_tokens > 0
    assert outcome.latency_ms > 0
    request = openai_server.stats.recent[-1]
    assert request["temperature"] == 0.1
    assert request["max_tokens"] == 200
    # the fixed instructions come first, the trace last: a shared prefix for vLLM's cache
    assert request["messages"][0] == {"role": "system", "content": JUDGE_INSTRUCTIONS}
    assert request["messages"][1]["content"].startswith("**Question**: How do I sort?")


def test_the_instructions_are_identical_for_every_trace():
    prompt = JudgePrompt()
    first, second = prompt.messages("q1", "a1"), prompt.messages("a very different question", "a2")
    assert first[0] == second[0]
    assert prompt.version == JudgePrompt().version
    assert prompt.version != JudgePrompt(max_tokens=300).version


def test_long_fields_are_truncated_and_a_missing_question_is_said():
    messages = JudgePrompt(max_field_chars=10).messages(None, "x" * 50)
    assert "no question" in messages[1]["content"]
    assert "x" * 10 + "\n[…truncated]" in messages[1]["content"]


@pytest.mark.parametrize(
    "directive, status, score, raw",
    [
        ("[[reply:garbage]]", UNPARSEABLE, None, None),
        ("[[reply:noscore]]", UNPARSEABLE, None, None),
        ("[[reply:score=1.7]]", OUT_OF_RANGE, None, 1.7),
        ("[[reply:score=-3]]", OUT_OF_RANGE, None, -3),
        ("[[reply:scale10=8]]", OK, 0.8, 8),
        ("[[reply:score=0.35]]", OK, 0.35, 0.35),
    ],
)
def test_bad_replies_are_null_with_their_status_never_zero(openai_server, directive, status, score, raw):
    outcome, _ = judge_once(openai_server, "q", f"an answer {directive}")
    assert outcome.status == status
    assert outcome.score == (pytest.approx(score) if score is not None else None)
    assert outcome.raw_score == raw
    if status != OK:
        assert outcome.error  # the reason is recorded


@pytest.mark.parametrize("directive", ["[[reply:badbody]]", "[[reply:nochoices]]"])
def test_a_broken_http_body_is_a_status_not_a_crash(openai_server, directive):
    outcome, _ = judge_once(openai_server, "q", f"an answer {directive}", structured_output="none")
    assert outcome.status in (ERROR, UNPARSEABLE)
    assert outcome.score is None and outcome.error


def test_a_fenced_reply_from_a_server_without_structured_output(openai_server):
    openai_server.config.reject_response_format = True
    outcome, client = judge_once(openai_server, "q", "an answer [[reply:fenced]]")
    assert outcome.status == OK
    assert client.mode == PLAIN


def test_structured_output_is_detected_once_per_endpoint(openai_server):
    openai_server.config.reject_json_schema = True  # like llama.cpp's server: HTTP 500
    outcomes, client = judge_many(openai_server, [(f"q{i}", f"a{i}") for i in range(20)])
    assert all(o.status == OK for o in outcomes)
    assert client.mode == JSON_OBJECT
    formats = openai_server.stats.by_response_format
    # A 500 may be a hiccup: retried with the normal policy; a 500 to every attempt is a refusal,
    # and the refused mode is never asked again.
    assert formats["json_schema"] == FAST_RETRY.max_attempts
    assert formats["json_object"] == 20
    json_object = [r for r in openai_server.stats.recent if r.get("response_format", {}).get("type") == "json_object"]
    assert json_object[0]["response_format"]["schema"]["required"] == ["score", "reasoning"]


def test_a_server_with_json_schema_keeps_it(openai_server):
    outcomes, client = judge_many(openai_server, [("q", "a"), ("q2", "a2")])
    assert client.mode == JSON_SCHEMA
    assert openai_server.stats.by_response_format == {"json_schema": 2}


def test_a_forced_mode_skips_detection(openai_server):
    _, client = judge_once(openai_server, "q", "a", structured_output="none")
    assert client.mode == PLAIN
    assert openai_server.stats.by_response_format == {"none": 1}


def test_429_and_5xx_are_retried(openai_server):
    openai_server.config.fail_next = [429, 503, 502]
    outcome, client = judge_once(openai_server, "q", "a")
    assert outcome.status == OK
    assert outcome.attempts == 4
    assert client.stats.retries == 3
    assert dict(client.stats.outcomes) == {"429": 1, "503": 1, "502": 1, "200": 1}


def test_failures_per_request_are_retried_until_they_pass(openai_server):
    outcome, _ = judge_once(openai_server, "q", "a [[fail:500x2]]")
    assert outcome.status == OK and outcome.attempts == 3


def test_exhausted_retries_are_an_error_not_a_score(openai_server):
    outcome, client = judge_once(openai_server, "q", "a [[fail:503x99]]")
    assert outcome.status == ERROR
    assert outcome.score is None
    assert outcome.attempts == FAST_RETRY.max_attempts
    assert outcome.error.startswith("HTTP 503")


def test_a_client_error_is_not_retried(openai_server):
    outcome, _ = judge_once(openai_server, "q", "a [[fail:404x99]]", structured_output="none")
    assert outcome.status == ERROR and outcome.attempts == 1


def test_timeouts_are_retried_then_an_error(openai_server):
    policy = RetryPolicy(max_attempts=2, timeout_s=0.3, initial_backoff_s=0.01, max_backoff_s=0.02)
    started = time.perf_counter()
    outcome, client = judge_once(openai_server, "q", "a [[sleep:3]]", retry=policy)
    assert outcome.status == ERROR
    assert outcome.error == "timeout"
    assert outcome.attempts == 2
    assert client.stats.outcomes["timeout"] == 2
    assert time.perf_counter() - started < 2.5


def test_retry_after_is_honoured(openai_server):
    # The server says Retry-After: 0 on 429s, so even a long backoff policy retries at once.
    policy = RetryPolicy(max_attempts=3, timeout_s=5, initial_backoff_s=5, max_backoff_s=5)
    openai_server.config.fail_next = [429, 429]
    started = time.perf_counter()
    outcome, _ = judge_once(openai_server, "q", "a", retry=policy)
    assert outcome.status == OK
    assert time.perf_counter() - started < 2


def test_an_unreachable_endpoint_is_an_error(openai_server):
    async def run():
        client = JudgeClient(Endpoint("http://127.0.0.1:9/v1", "judge"), retry=FAST_RETRY)
        try:
            return await client.judge("q", "a")
        finally:
            await client.aclose()

    outcome = asyncio.run(run())
    assert outcome.status == ERROR
    assert outcome.error.startswith("connection error")


def test_requests_in_flight_are_bounded(openai_server):
    openai_server.config.latency_s = 0.05
    outcomes, _ = judge_many(openai_server, [(f"q{i}", "a") for i in range(40)], concurrency=4, structured_output="json_schema")
    assert all(o.status == OK for o in outcomes)
    assert openai_server.stats.max_in_flight == 4


def test_the_api_key_is_sent_but_never_recorded(openai_server):
    async def run():
        client = JudgeClient(Endpoint(openai_server.base_url, "judge-a", api_key="sk-secret-123"), retry=FAST_RETRY)
        try:
            return await client.judge("q", "a [[fail:503x99]]"), repr(client.endpoint)
        finally:
            await client.aclose()

    outcome, text = asyncio.run(run())
    assert "sk-secret-123" not in json.dumps(outcome.to_payload()) + text


def test_a_definite_refusal_is_not_retried(openai_server):
    openai_server.config.reject_response_format = True  # HTTP 400 to any response_format
    outcome, client = judge_once(openai_server, "q", "a")
    assert outcome.status == OK and client.mode == PLAIN and outcome.mode == PLAIN
    assert openai_server.stats.by_response_format == {"json_schema": 1, "json_object": 1, "none": 1}


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_transient_failure_while_probing_is_retried_and_keeps_the_mode(openai_server, status):
    # One 500 (or 429, 502, 503) to the first json_schema request is retried with the normal
    # backoff; the server then answers, so json_schema stays this endpoint's mode for the run.
    openai_server.config.fail_next = [status]
    outcomes, client = judge_many(openai_server, [(f"q{i}", f"a{i}") for i in range(5)])
    assert [o.status for o in outcomes] == [OK] * 5
    assert outcomes[0].attempts == 2 and client.stats.retries == 1
    assert client.mode == JSON_SCHEMA and {o.mode for o in outcomes} == {JSON_SCHEMA}
    assert openai_server.stats.by_response_format == {"json_schema": 6}


def test_a_timeout_while_probing_is_retried_and_keeps_the_mode(openai_server):
    openai_server.config.stall_next = [3]
    policy = RetryPolicy(max_attempts=3, timeout_s=0.5, initial_backoff_s=0.01, max_backoff_s=0.02)
    outcome, client = judge_once(openai_server, "q", "a", retry=policy)
    assert outcome.status == OK and outcome.attempts == 2
    assert client.stats.outcomes["timeout"] == 1
    assert client.mode == JSON_SCHEMA


def test_a_connection_error_while_probing_decides_nothing(openai_server):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def run():
        client = JudgeClient(Endpoint(f"http://127.0.0.1:{port}/v1", "judge-a"), retry=FAST_RETRY)
        try:
            failed = await client.judge("q", "a")
            mode_after_failure = client.mode
            # The endpoint comes back (here: the client is pointed at the live server).
            client.client.base_url = openai_server.base_url
            return failed, mode_after_failure, await client.judge("q", "a"), client.mode
        finally:
            await client.aclose()

    failed, mode_after_failure, later, mode = asyncio.run(run())
    assert failed.status == ERROR and failed.attempts == FAST_RETRY.max_attempts
    assert failed.error.startswith("connection error") and failed.mode == JSON_SCHEMA
    assert mode_after_failure is None  # undetected: the next request detects again
    assert later.status == OK and mode == JSON_SCHEMA


def test_retries_that_run_out_leave_the_mode_undetected(openai_server):
    openai_server.config.fail_next = [503] * FAST_RETRY.max_attempts
    outcomes, client = judge_many(openai_server, [("q0", "a0")])
    assert outcomes[0].status == ERROR and client.mode is None
    outcome, client = judge_once(openai_server, "q1", "a1")
    assert outcome.status == OK and client.mode == JSON_SCHEMA


def test_a_500_to_every_attempt_is_a_refusal(openai_server):
    # llama.cpp refuses json_schema with HTTP 500: after the retries the next mode is asked.
    openai_server.config.fail_next = [500] * FAST_RETRY.max_attempts
    outcome, client = judge_once(openai_server, "q", "a")
    assert outcome.status == OK and outcome.attempts == FAST_RETRY.max_attempts + 1
    assert client.mode == JSON_OBJECT


def test_cache_keys_cover_what_the_judge_sees(openai_server):
    client = JudgeClient(Endpoint(openai_server.base_url, "judge-a"))
    keys = client.cache_keys("q", "my mail is <EMAIL>")
    assert set(keys) == {JSON_SCHEMA, JSON_OBJECT, PLAIN} and len(set(keys.values())) == 3
    assert client.cache_keys("q", "my mail is <EMAIL>") == keys  # stable
    assert client.cache_keys("q", "my mail is bob@example.com")[PLAIN] != keys[PLAIN]  # other text
    other_model = JudgeClient(Endpoint(openai_server.base_url, "judge-b"))
    assert other_model.cache_keys("q", "my mail is <EMAIL>")[PLAIN] != keys[PLAIN]
    other_prompt = JudgeClient(Endpoint(openai_server.base_url, "judge-a"), JudgePrompt(max_tokens=300))
    assert other_prompt.cache_keys("q", "my mail is <EMAIL>")[PLAIN] != keys[PLAIN]
    forced = JudgeClient(Endpoint(openai_server.base_url, "judge-a"), structured_output=JSON_OBJECT)
    assert forced.cache_keys("q", "my mail is <EMAIL>") == {JSON_OBJECT: keys[JSON_OBJECT]}
