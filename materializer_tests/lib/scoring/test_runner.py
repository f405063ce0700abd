"""Scoring cells end to end in lib: inputs, streaming, cache, committee — against the real server."""

import asyncio

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples, rows_to_batch
from materializer_assets.lib.scoring.cache import ScoreCache
from materializer_assets.lib.scoring.http import RetryPolicy
from materializer_assets.lib.scoring.inputs import INPUT_COLUMNS, InputStats, consented_only, scan_batches, trace_inputs
from materializer_assets.lib.scoring.judge import JSON_SCHEMA, Endpoint, JudgeClient
from materializer_assets.lib.scoring.prompt import JudgePrompt
from materializer_assets.lib.scoring.ragas_metrics import RagasScorer
from materializer_assets.lib.scoring.runner import JudgeCellScorer, RagasCellScorer, score_stream
from materializer_assets.lib.scoring.schema import (
    ERROR,
    JUDGE_SCORES_SCHEMA,
    NO_QUORUM,
    NOT_CONFIGURED,
    OK,
    OUT_OF_RANGE,
    RAGAS_SCORES_SCHEMA,
    UNPARSEABLE,
)
from materializer_assets.lib.storage import S3Options, resolve
from materializer_tests.lib.helpers import EXTRACTED_AT
from materializer_tests.openai_server import replies

FAST_RETRY = RetryPolicy(max_attempts=3, timeout_s=10.0, initial_backoff_s=0.01, max_backoff_s=0.05)
DAY, SLUG = "2026-04-18", "glm-5-32b"


def traces(n, consent=True, answers=None, contexts=None, prefix="t") -> pa.RecordBatch:
    rows = []
    for i in range(n):
        answer = answers[i] if answers else f"Answer number {i} explains sorting."
        rows += build_examples(SourceRecord(
            trace_id=f"{prefix}-{i}",
            observation_id=None,
            timestamp=f"{DAY}T10:00:00Z",
            model=SLUG,
            messages=[{"role": "user", "content": f"question {i} about sorting"}],
            output=answer,
            user_id=f"user-{i}",
            explicit_consent=consent,
            source="test",
            extracted_at=EXTRACTED_AT,
            options=ReadOptions(),
            contexts=contexts,
        ))
    return rows_to_batch(rows)


def judges(server, *models, concurrency=8):
    return [JudgeClient(Endpoint(server.base_url, m), concurrency=concurrency, retry=FAST_RETRY) for m in models]


def run(scorer, batch, chunk_rows=16) -> pa.Table:
    stats = InputStats()
    batches = consented_only(scan_batches(pa.Table.from_batches([batch]), INPUT_COLUMNS, 64), stats)
    return pa.Table.from_batches(list(score_stream(scorer, batches, chunk_rows=chunk_rows)), schema=scorer_schema(scorer))


def scorer_schema(scorer):
    return JUDGE_SCORES_SCHEMA if isinstance(scorer, JudgeCellScorer) else RAGAS_SCORES_SCHEMA


def test_every_trace_gets_a_row_in_order(openai_server):
    batch = traces(50)
    scorer = JudgeCellScorer(judges(openai_server, "judge-a"), day=DAY, cell_model_slug=SLUG)
    table = run(scorer, batch)
    assert table.column("trace_id").to_pylist() == [f"t-{i}" for i in range(50)]
    assert set(table.column("status").to_pylist()) == {OK}
    expected = [replies.judge_score("judge-a", f"question {i} about sorting", f"Answer number {i} explains sorting.")
                for i in range(50)]
    assert table.column("judge_score").to_pylist() == expected
    assert table.column("judge_aggregate").to_pylist() == ["single"] * 50
    meta = scorer.metadata()
    assert meta["calls_made"] == 50 and meta["cache_hits"] == 0
    assert meta["status_counts"] == {OK: 50}
    assert sum(meta["score_histogram"].values()) == 50
    assert meta["latency_p50_ms"] is not None and meta["latency_p95_ms"] >= meta["latency_p50_ms"]
    assert meta["input_tokens"] > 0


def test_a_second_run_of_the_same_cell_makes_zero_calls(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    batch = traces(30, answers=[f"answer {i}" for i in range(30)])
    first = run(JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG), batch)
    calls = openai_server.stats.requests
    assert calls == 30
    second_scorer = JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG)
    second = run(second_scorer, batch)
    assert openai_server.stats.requests == calls  # zero calls
    meta = second_scorer.metadata()
    assert meta["cache_hits"] == 30 and meta["rows_retried_from_cache"] == 0
    assert second.column("judge_score").to_pylist() == first.column("judge_score").to_pylist()
    assert second.column("status").to_pylist() == [OK] * 30
    assert [v["cached"] for v in second.column("judges").to_pylist()[0]] == [True]


def _cache_entries(tmp_path) -> list[tuple[str, str]]:
    from materializer_assets.lib.scoring.cache import CACHE_SCHEMA

    files = [str(f) for f in (tmp_path / "score-cache").rglob("part-*.parquet")]
    table = ds.dataset(files, schema=CACHE_SCHEMA).to_table()
    return sorted(zip(table.column("key").to_pylist(), table.column("trace_id").to_pylist()))


def _judge_keys(server, batch, mode=JSON_SCHEMA) -> list[str]:
    client = judges(server, "judge-a")[0]
    return [client.cache_keys(row.question, row.answer, (mode,))[mode] for row in trace_inputs(batch)]


def test_cache_entries_carry_the_trace_they_were_written_for(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    answers = [f"shared answer {i}" for i in range(4)]
    batch = traces(4, answers=answers, prefix="a")
    run(JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG), batch)
    keys = _judge_keys(openai_server, batch)  # the server has json_schema: requests went out in that mode
    assert _cache_entries(tmp_path) == sorted((k, f"a-{i}") for i, k in enumerate(keys))
    calls = openai_server.stats.requests
    # Other traces with the same content are answered from the cache, and get entries of their own.
    scorer = JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG)
    run(scorer, traces(4, answers=answers, prefix="b"))
    assert openai_server.stats.requests == calls
    assert _cache_entries(tmp_path) == sorted([(k, f"a-{i}") for i, k in enumerate(keys)]
                                              + [(k, f"b-{i}") for i, k in enumerate(keys)])
    # Once each trace has its entry, re-running the cell writes nothing.
    again = JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG)
    run(again, traces(4, answers=answers, prefix="b"))
    assert again.shards[0].files_written == 0


@pytest.fixture(params=["local", "s3"])
def warehouse(request, tmp_path):
    if request.param == "local":
        return resolve(str(tmp_path / "wh"))
    bucket, endpoint = request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_endpoint")
    return resolve(f"s3://{bucket}/wh", S3Options(endpoint_url=endpoint))


def _tries(cache, key) -> int:
    shard = cache.shard("judge", "judge-a", JudgePrompt().version, DAY, SLUG)
    return shard.get(key)["tries"]


def test_non_ok_answers_are_asked_again_until_their_tries_run_out(openai_server, warehouse):
    cache = ScoreCache.in_warehouse(warehouse)
    answers = ["fine", "a [[reply:garbage]]", "b [[reply:score=1.7]]", "c [[reply:garbagex1]]", "d [[fail:503x3]]"]
    batch = traces(5, answers=answers)
    keys = _judge_keys(openai_server, batch)

    def once():
        scorer = JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG, max_tries=3)
        before = openai_server.stats.requests
        table = run(scorer, batch)
        return table.column("status").to_pylist(), openai_server.stats.requests - before, scorer.metadata()

    statuses, calls, meta = once()
    assert statuses == [OK, UNPARSEABLE, OUT_OF_RANGE, UNPARSEABLE, ERROR]
    assert calls == 4 + 3 and meta["rows_retried_from_cache"] == 0
    # Run 2: every non-ok answer is asked again; the flaky one (and the failed call) now pass.
    statuses, calls, meta = once()
    assert statuses == [OK, UNPARSEABLE, OUT_OF_RANGE, OK, OK]
    assert calls == 4 and meta["rows_retried_from_cache"] == 4 and meta["cache_hits"] == 1
    assert meta["rows_final_non_ok_from_cache"] == 0 and meta["non_ok_max_tries"] == 3
    assert [_tries(cache, k) for k in keys[1:3]] == [2, 2]
    # Run 3: the third and last try of the two that stay non-ok.
    statuses, calls, meta = once()
    assert statuses == [OK, UNPARSEABLE, OUT_OF_RANGE, OK, OK]
    assert calls == 2 and meta["rows_retried_from_cache"] == 2 and meta["cache_hits"] == 3
    assert [_tries(cache, k) for k in keys[1:3]] == [3, 3]
    # Run 4: tries used up: their last status is served from the cache, no call.
    statuses, calls, meta = once()
    assert statuses == [OK, UNPARSEABLE, OUT_OF_RANGE, OK, OK]
    assert calls == 0 and meta["rows_retried_from_cache"] == 0
    assert meta["cache_hits"] == 5 and meta["rows_final_non_ok_from_cache"] == 2


def test_one_try_means_a_non_ok_answer_is_never_asked_again(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    batch = traces(2, answers=["fine", "a [[reply:garbage]]"])
    for _ in range(2):
        scorer = JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG, max_tries=1)
        run(scorer, batch)
    assert openai_server.stats.requests == 2
    assert scorer.metadata()["rows_final_non_ok_from_cache"] == 1
    with pytest.raises(ValueError):
        JudgeCellScorer(judges(openai_server, "judge-a"), max_tries=0)


def test_other_text_or_another_structured_output_mode_asks_again(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))

    def scorer(**kwargs):
        client = JudgeClient(Endpoint(openai_server.base_url, "judge-a"), retry=FAST_RETRY, **kwargs)
        return JudgeCellScorer([client], cache=cache, day=DAY, cell_model_slug=SLUG)

    redacted = traces(3, answers=[f"write to <EMAIL> about {i}" for i in range(3)])
    run(scorer(), redacted)
    assert openai_server.stats.requests == 3
    # The same traces (same content_hash upstream) with other redacted text: the judge is asked again.
    clear = traces(3, answers=[f"write to bob@example.com about {i}" for i in range(3)])
    run(scorer(), clear)
    assert openai_server.stats.requests == 6
    run(scorer(), clear)
    assert openai_server.stats.requests == 6
    # A judge forced to another structured-output mode sends other requests: asked again.
    forced = scorer(structured_output="json_object")
    run(forced, clear)
    assert openai_server.stats.requests == 9 and forced.metadata()["cache_hits"] == 0
    # Before a run has detected the endpoint's mode, the newest answer to any mode's request
    # serves (knowing the mode would cost a call); here the json_object answers.
    auto = scorer()
    table = run(auto, traces(3, answers=[f"write to bob@example.com about {i}" for i in range(3)], prefix="z"))
    assert openai_server.stats.requests == 9 and auto.metadata()["cache_hits"] == 3
    assert table.column("judge_score").to_pylist() == run(scorer(structured_output="json_object"), clear).column("judge_score").to_pylist()


def test_ragas_non_ok_answers_are_retried_and_the_key_covers_inputs_and_models(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))

    def scorer(embeddings="emb", max_tries=2):
        return RagasCellScorer(
            RagasScorer(Endpoint(openai_server.base_url, "llm"), Endpoint(openai_server.base_url, embeddings),
                        retry=FAST_RETRY),
            cache=cache, day=DAY, cell_model_slug=SLUG, max_tries=max_tries,
        )

    batch = traces(3, answers=["Sorting puts items in order.", "x [[ragas:garbage]]", "y [[ragas:fail500]]"],
                   contexts=["Sorting puts items of a list in order."])
    first = scorer()
    assert run(first, batch).column("status").to_pylist() == [OK, UNPARSEABLE, ERROR]
    calls = openai_server.stats.requests
    second = scorer()
    assert run(second, batch).column("status").to_pylist() == [OK, UNPARSEABLE, ERROR]
    assert openai_server.stats.requests > calls
    meta = second.metadata()
    assert meta["rows_retried_from_cache"] == 2 and meta["cache_hits"] == 1 and meta["traces_asked"] == 2
    calls = openai_server.stats.requests
    third = scorer()
    run(third, batch)
    # The unparseable reply had its two tries: served from the cache now. The HTTP error is asked
    # again on every run (an outage must not pin a row to "error").
    assert third.metadata()["rows_final_non_ok_from_cache"] == 1 and third.metadata()["cache_hits"] == 2
    assert third.metadata()["rows_retried_from_cache"] == 1 and openai_server.stats.requests > calls
    # Another embeddings model is another key.
    other = scorer(embeddings="emb-2")
    run(other, batch)
    assert other.metadata()["cache_hits"] == 0 and openai_server.stats.requests > calls
    assert RagasCellScorer.cache_key(other, trace_inputs(batch)[0]) != RagasCellScorer.cache_key(third, trace_inputs(batch)[0])


def test_ragas_cache_entries_carry_the_trace_too(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    scorer = RagasCellScorer(
        RagasScorer(Endpoint(openai_server.base_url, "llm"), Endpoint(openai_server.base_url, "emb"), retry=FAST_RETRY),
        cache=cache, day=DAY, cell_model_slug=SLUG,
    )
    run(scorer, traces(3, contexts=["Sorting puts items of a list in order."], prefix="r"))
    assert sorted(trace for _, trace in _cache_entries(tmp_path)) == ["r-0", "r-1", "r-2"]


def test_errors_are_asked_again_on_the_next_run(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    batch = traces(5, answers=["a0", "a1 [[fail:503x3]]", "a2", "a3", "a4"])
    first = run(JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG), batch)
    assert first.column("status").to_pylist()[1] == "error"
    assert first.column("judge_score").to_pylist()[1] is None
    before = openai_server.stats.requests
    second = run(JudgeCellScorer(judges(openai_server, "judge-a"), cache=cache, day=DAY, cell_model_slug=SLUG), batch)
    assert openai_server.stats.requests == before + 1  # only the failed trace, which now passes
    assert second.column("status").to_pylist() == [OK] * 5


def test_no_endpoint_means_not_configured_rows_and_no_cache(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    scorer = JudgeCellScorer([], cache=cache, day=DAY, cell_model_slug=SLUG)
    table = run(scorer, traces(7))
    assert table.column("status").to_pylist() == [NOT_CONFIGURED] * 7
    assert table.column("judge_score").null_count == 7
    assert scorer.metadata()["calls_made"] == 0
    assert not (tmp_path / "score-cache").exists()
    ragas = RagasCellScorer(RagasScorer(None), cache=cache, day=DAY, cell_model_slug=SLUG)
    table = run(ragas, traces(7))
    assert table.column("status").to_pylist() == [NOT_CONFIGURED] * 7
    for name in ("faithfulness", "answer_relevancy", "context_precision", "ragas_reward"):
        assert table.column(name).null_count == 7


def test_a_committee_keeps_every_vote_and_measures_agreement(openai_server, tmp_path):
    answers = [f"answer {i}" for i in range(40)]
    answers[0] += " [[reply@judge-c:score=7]]"  # one judge out of range: the others still make quorum
    answers[1] += " [[reply@judge-b:garbage]] [[reply@judge-c:garbage]]"  # below quorum
    scorer = JudgeCellScorer(
        judges(openai_server, "judge-a", "judge-b", "judge-c"), aggregate_method="median", quorum=2,
        cache=ScoreCache.in_warehouse(resolve(str(tmp_path))), day=DAY, cell_model_slug=SLUG,
    )
    table = run(scorer, traces(40, answers=answers))
    rows = table.to_pylist()
    assert rows[0]["status"] == OK and rows[0]["judge_ok"] == 2
    assert [v["status"] for v in rows[0]["judges"]] == [OK, OK, OUT_OF_RANGE]
    assert rows[0]["judges"][2]["raw_score"] == 7
    assert rows[1]["status"] == NO_QUORUM and rows[1]["judge_score"] is None
    for row in rows[2:]:
        scores = sorted(v["score"] for v in row["judges"])
        assert row["judge_score"] == pytest.approx(scores[1])  # the median
        assert row["judge_disagreement"] == pytest.approx(scores[2] - scores[0])
        assert row["judge_model"] == "judge-a,judge-b,judge-c"
        assert row["judge_aggregate"] == "median"
    meta = scorer.metadata()
    assert meta["judges"] == 3 and meta["quorum"] == 2
    assert meta["krippendorff_alpha"] > 0.8  # the test server's judges mostly agree
    assert meta["status_counts"] == {OK: 39, NO_QUORUM: 1}


def test_a_noisy_judge_lowers_alpha(openai_server):
    scorer = JudgeCellScorer(judges(openai_server, "judge-a", "random-judge"), aggregate_method="mean", quorum=1)
    run(scorer, traces(60))
    assert scorer.metadata()["krippendorff_alpha"] < 0.5


def test_ragas_cells_cache_on_contexts_too(openai_server, tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))

    def scorer():
        return RagasCellScorer(
            RagasScorer(Endpoint(openai_server.base_url, "llm"), Endpoint(openai_server.base_url, "emb"), retry=FAST_RETRY),
            cache=cache, day=DAY, cell_model_slug=SLUG,
        )

    batch = traces(6, contexts=["Sorting puts items of a list in order."])
    first = run(scorer(), batch)
    assert set(first.column("status").to_pylist()) == {OK}
    assert first.column("ragas_reward").null_count == 0
    calls = openai_server.stats.requests
    second_scorer = scorer()
    second = run(second_scorer, batch)
    assert openai_server.stats.requests == calls
    assert second.column("ragas_reward").to_pylist() == first.column("ragas_reward").to_pylist()
    assert second_scorer.metadata()["cache_hits"] == 6
    # the same conversation with other contexts is asked again
    run(scorer(), traces(6, contexts=["Something else entirely."]))
    assert openai_server.stats.requests > calls


def test_rows_without_consent_are_never_sent(openai_server):
    granted = traces(3, prefix="yes", answers=["fine 0", "fine 1", "fine 2"])
    refused = traces(2, consent=False, prefix="no", answers=["SECRET-REFUSED 0", "SECRET-REFUSED 1"])
    unknown = traces(2, consent=None, prefix="maybe", answers=["SECRET-UNKNOWN 0", "SECRET-UNKNOWN 1"])
    table = pa.Table.from_batches([granted, refused, unknown])
    stats = InputStats()
    scorer = JudgeCellScorer(judges(openai_server, "judge-a"))
    batches = consented_only(scan_batches(table, INPUT_COLUMNS), stats)
    out = pa.Table.from_batches(list(score_stream(scorer, batches)), schema=JUDGE_SCORES_SCHEMA)
    assert out.column("trace_id").to_pylist() == ["yes-0", "yes-1", "yes-2"]
    assert stats.rows_without_consent == 4
    assert not any("SECRET" in str(request) for request in openai_server.stats.recent)


def test_scan_batches_reads_only_what_it_needs_from_any_lazy_handle(tmp_path):
    batch = traces(10)
    path = tmp_path / "cell.parquet"
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_batches([batch]), path)
    dataset = ds.dataset(str(path))

    class LazyScan:  # what an Iceberg IO manager may hand over
        schema = dataset.schema

        def to_batches(self, columns=None):
            return dataset.to_batches(columns=columns)

    for handle in (dataset, pa.Table.from_batches([batch]), LazyScan(), pa.RecordBatchReader.from_batches(batch.schema, [batch])):
        out = list(scan_batches(handle, INPUT_COLUMNS, batch_rows=4))
        assert [b.num_rows for b in out] == [4, 4, 2]
        assert out[0].schema.names == list(INPUT_COLUMNS)


def test_missing_columns_come_back_null_and_missing_consent_fails_closed():
    table = pa.table({"trace_id": ["a"], "observation_id": [None], "content_hash": ["h"], "response": ["r"]})
    out = list(scan_batches(table, INPUT_COLUMNS))
    assert out[0].column("contexts").to_pylist() == [None]
    stats = InputStats()
    assert list(consented_only(out, stats)) == []
    assert stats.rows_without_consent == 1


def test_an_empty_upstream_gives_no_rows(openai_server):
    empty = ds.dataset([], format="parquet")
    scorer = JudgeCellScorer(judges(openai_server, "judge-a"))
    assert list(score_stream(scorer, consented_only(scan_batches(empty, INPUT_COLUMNS), InputStats()))) == []


def test_rows_the_policy_refuses_since_the_upstream_was_written_are_never_scored():
    from materializer_assets.lib.consent import ConsentPolicy, ConsentRegistry
    from materializer_tests.lib.helpers import make_batch

    batch = pa.concat_batches(
        [make_batch(2, user="gone", prefix="g"), make_batch(2, user="withdrew", prefix="w"), make_batch(2, prefix="k")]
    )
    registry = ConsentRegistry.from_rows(
        [
            {"user_id": "withdrew", "granted": "false", "updated_at": "2026-05-01T00:00:00Z"},
            {"user_id": "withdrew", "granted": "true", "updated_at": "2026-06-01T00:00:00Z"},
        ]
    )
    stats = InputStats()
    policy = ConsentPolicy(registry, ["gone"])
    kept = list(consented_only(scan_batches(pa.Table.from_batches([batch]), INPUT_COLUMNS), stats, policy))
    assert sorted(t for b in kept for t in b.column("trace_id").to_pylist()) == ["k-0", "k-1"]
    assert (stats.rows_read, stats.rows_without_consent) == (6, 4)


@pytest.mark.parametrize("kind", ["judge", "ragas"])
def test_an_unconfigured_scorer_writes_the_rows_and_metadata_of_the_per_row_path_by_columns(kind):
    def make():
        return JudgeCellScorer([]) if kind == "judge" else RagasCellScorer(RagasScorer(None, None))

    batch = next(scan_batches(pa.Table.from_batches([traces(37)]), INPUT_COLUMNS, 64))
    fast = make()
    assert not fast.configured
    by_columns = pa.Table.from_batches(list(score_stream(fast, [batch.slice(0, 20), batch.slice(20)])))
    slow = make()
    per_row = asyncio.run(slow.score_chunk(trace_inputs(batch)))  # what score_stream did before
    assert by_columns.equals(pa.Table.from_batches([per_row]))
    assert fast.metadata() == slow.metadata()
