"""Ragas 0.4.3 metrics over real HTTP (the openai client against the test server)."""

import asyncio

import pytest

from materializer_assets.lib.scoring.http import RetryPolicy
from materializer_assets.lib.scoring.judge import Endpoint
from materializer_assets.lib.scoring.ragas_metrics import RagasOutcome, RagasScorer, ragas_reward
from materializer_assets.lib.scoring.schema import (
    DEGENERATE,
    ERROR,
    NOT_APPLICABLE,
    NOT_CONFIGURED,
    OK,
    UNDETERMINED,
    UNPARSEABLE,
)

pytest.importorskip("ragas")

FAST_RETRY = RetryPolicy(max_attempts=3, timeout_s=10.0, initial_backoff_s=0.01, max_backoff_s=0.05)
QUESTION = "How do I sort a list in Python?"
ANSWER = "Use sorted to sort a list in Python. Bananas grow on trees."
CONTEXTS = ["In Python, sorted returns a new sorted list from any list.", "The weather in Lisbon is mild."]


def score(server, question, answer, contexts, embeddings=True, **kwargs):
    async def run():
        scorer = RagasScorer(
            Endpoint(server.base_url, "ragas-llm"),
            Endpoint(server.base_url, "embedder") if embeddings else None,
            retry=kwargs.pop("retry", FAST_RETRY),
            **kwargs,
        )
        try:
            return await scorer.score(question, answer, contexts), scorer
        finally:
            await scorer.aclose()

    return asyncio.run(run())


def test_the_three_metrics_over_http(openai_server):
    outcome, scorer = score(openai_server, QUESTION, ANSWER, CONTEXTS)
    metrics = outcome.metrics
    assert {name: m.status for name, m in metrics.items()} == {
        "faithfulness": OK,
        "answer_relevancy": OK,
        "context_precision": OK,
    }
    # Two statements; the server's NLI supports the first only (word overlap with the context).
    assert metrics["faithfulness"].value == pytest.approx(0.5)
    # The first context shares words with the answer, the second does not: average precision 1.
    assert metrics["context_precision"].value == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < metrics["answer_relevancy"].value <= 1.0
    assert outcome.status == OK
    expected = 0.5 * 0.5 + 0.3 * metrics["answer_relevancy"].value + 0.2 * metrics["context_precision"].value
    assert outcome.reward() == pytest.approx(expected)
    # every call went over HTTP and was counted: 2 faithfulness + 1 AR + 2 CP chat calls, 2 embeddings
    stats = openai_server.stats
    assert stats.chat == 5 and stats.embeddings == 2
    assert outcome.attempts == 7
    assert outcome.input_tokens > 0
    assert scorer.endpoint_stats()["llm"].requests == 5
    # Ragas's prompts went out in instructor's JSON mode, each answered with valid JSON
    assert set(stats.by_response_format) == {"json_object"}
    assert len(stats.by_kind) == 4


def test_without_contexts_only_answer_relevancy_applies(openai_server):
    outcome, _ = score(openai_server, QUESTION, ANSWER, [])
    assert outcome.metrics["faithfulness"].status == NOT_APPLICABLE
    assert outcome.metrics["context_precision"].status == NOT_APPLICABLE
    assert outcome.metrics["faithfulness"].value is None
    assert outcome.status == OK
    # renormalized over the metric present: the reward is answer relevancy itself
    assert outcome.reward() == pytest.approx(outcome.metrics["answer_relevancy"].value)
    assert openai_server.stats.chat == 1


def test_without_a_question_nothing_applies(openai_server):
    outcome, _ = score(openai_server, None, ANSWER, CONTEXTS)
    assert {m.status for m in outcome.metrics.values()} == {NOT_APPLICABLE}
    assert outcome.status == NOT_APPLICABLE
    assert outcome.reward() is None
    assert openai_server.stats.requests == 0


def test_unreadable_replies_are_unparseable(openai_server):
    outcome, _ = score(openai_server, QUESTION, "An answer. [[ragas:garbage]]", CONTEXTS)
    assert {m.status for m in outcome.metrics.values()} == {UNPARSEABLE}
    assert all(m.value is None for m in outcome.metrics.values())
    assert outcome.reward() is None
    assert outcome.status == UNPARSEABLE


def test_server_errors_are_errors_after_retries(openai_server):
    outcome, _ = score(openai_server, QUESTION, "An answer. [[ragas:fail500]]", CONTEXTS)
    assert {m.status for m in outcome.metrics.values()} == {ERROR}
    assert outcome.metrics["faithfulness"].error == "HTTP 500: injected ragas failure"
    assert outcome.metrics["faithfulness"].attempts == FAST_RETRY.max_attempts
    assert outcome.reward() is None


def test_a_nan_metric_is_undetermined_and_blocks_the_reward(openai_server):
    outcome, _ = score(openai_server, QUESTION, "Sorted sorts lists. [[ragas:nostatements]]", CONTEXTS)
    assert outcome.metrics["faithfulness"].status == UNDETERMINED
    assert outcome.metrics["faithfulness"].value is None
    assert outcome.metrics["context_precision"].status == OK
    assert outcome.status == UNDETERMINED
    assert outcome.reward() is None


def test_an_empty_generated_question_is_degenerate_not_a_zero(openai_server):
    # Ragas 0.4.3 returns answer_relevancy = 0.0 when the LLM generated no question; that 0.0 measures nothing.
    outcome, _ = score(openai_server, QUESTION, "Use sorted. [[ragas:emptyquestion]]", CONTEXTS)
    relevancy = outcome.metrics["answer_relevancy"]
    assert relevancy.status == DEGENERATE and relevancy.value is None
    assert "no question" in relevancy.error
    assert outcome.metrics["faithfulness"].status == OK and outcome.metrics["context_precision"].status == OK
    assert outcome.status == DEGENERATE
    assert outcome.reward() is None
    assert openai_server.stats.embeddings == 0  # Ragas compared nothing


def test_a_noncommittal_answer_keeps_its_real_zero(openai_server):
    # A question was generated and the answer is evasive: 0.0 is Ragas's verdict, not a degenerate value.
    outcome, _ = score(openai_server, QUESTION, "I don't know, sorry.", [])
    relevancy = outcome.metrics["answer_relevancy"]
    assert (relevancy.status, relevancy.value) == (OK, 0.0)
    assert outcome.reward() == 0.0


def test_a_metric_timeout_is_an_error(openai_server):
    outcome, _ = score(openai_server, QUESTION, "Slow. [[sleep:3]]", [], metric_timeout_s=0.3)
    assert outcome.metrics["answer_relevancy"].status == ERROR
    assert outcome.metrics["answer_relevancy"].error == "timeout"


def test_no_embeddings_endpoint_leaves_answer_relevancy_not_configured(openai_server):
    outcome, _ = score(openai_server, QUESTION, ANSWER, CONTEXTS, embeddings=False)
    assert outcome.metrics["answer_relevancy"].status == NOT_CONFIGURED
    assert outcome.status == OK
    f, cp = outcome.metrics["faithfulness"].value, outcome.metrics["context_precision"].value
    assert outcome.reward() == pytest.approx((0.5 * f + 0.2 * cp) / 0.7)
    assert openai_server.stats.embeddings == 0


def test_a_server_without_response_format_needs_structured_output_none(openai_server):
    openai_server.config.reject_response_format = True
    refused, _ = score(openai_server, QUESTION, ANSWER, CONTEXTS, retry=RetryPolicy(max_attempts=1))
    assert refused.metrics["faithfulness"].status == ERROR
    assert refused.metrics["faithfulness"].error.startswith("HTTP 400")
    outcome, _ = score(openai_server, QUESTION, ANSWER, CONTEXTS, structured_output="none")
    assert {m.status for m in outcome.metrics.values()} == {OK}
    assert outcome.metrics["faithfulness"].value == pytest.approx(0.5)


def test_nothing_configured_asks_nothing():
    async def run():
        return await RagasScorer(None, None).score(QUESTION, ANSWER, CONTEXTS)

    outcome = asyncio.run(run())
    assert outcome.status == NOT_CONFIGURED
    assert outcome.reward() is None


def test_outcomes_survive_the_cache_payload(openai_server):
    outcome, _ = score(openai_server, QUESTION, ANSWER, CONTEXTS)
    again = RagasOutcome.from_payload(outcome.to_payload())
    assert again.cached
    assert again.reward() == outcome.reward()
    assert again.status == outcome.status


@pytest.mark.parametrize(
    "values, statuses, expected",
    [
        ({"faithfulness": 0.9, "answer_relevancy": 0.8, "context_precision": 0.7},
         {"faithfulness": OK, "answer_relevancy": OK, "context_precision": OK}, 0.5 * 0.9 + 0.3 * 0.8 + 0.2 * 0.7),
        ({"faithfulness": None, "answer_relevancy": 0.8, "context_precision": None},
         {"faithfulness": NOT_APPLICABLE, "answer_relevancy": OK, "context_precision": NOT_APPLICABLE}, 0.8),
        ({"faithfulness": 0.6, "answer_relevancy": None, "context_precision": 0.5},
         {"faithfulness": OK, "answer_relevancy": NOT_CONFIGURED, "context_precision": OK}, (0.3 + 0.1) / 0.7),
        ({"faithfulness": None, "answer_relevancy": 0.8, "context_precision": 0.5},
         {"faithfulness": ERROR, "answer_relevancy": OK, "context_precision": OK}, None),
        ({"faithfulness": None, "answer_relevancy": None, "context_precision": None},
         {"faithfulness": NOT_APPLICABLE, "answer_relevancy": NOT_APPLICABLE, "context_precision": NOT_APPLICABLE}, None),
    ],
)
def test_reward_is_renormalized_over_the_metrics_present(values, statuses, expected):
    reward = ragas_reward(values, statuses)
    assert reward == (pytest.approx(expected) if expected is not None else None)


def test_custom_weights():
    values = {"faithfulness": 1.0, "answer_relevancy": 0.0, "context_precision": 0.0}
    statuses = dict.fromkeys(values, OK)
    assert ragas_reward(values, statuses, {"faithfulness": 1, "answer_relevancy": 1, "context_precision": 2}) == 0.25
