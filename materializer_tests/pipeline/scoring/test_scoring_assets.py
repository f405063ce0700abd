"""raw_traces → consented_parquet → judge_scores, ragas_scores through real Dagster runs.

The judge and Ragas endpoints are the real OpenAI-compatible test server on
127.0.0.1; the warehouse is a temporary folder (or moto's S3).
"""

import json
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest

from materializer_assets.lib.slugs import model_slug
from materializer_assets.pipeline import ingest, lakehouse, scoring
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources import PrivacyResource
from materializer_assets.resources.scoring import JudgeMemberConfig, JudgeResource, RagasResource
from materializer_tests.pipeline.results import materialization_metadata
from materializer_tests.pipeline.resources import graph_resources

DAY = "2026-04-18"
MODEL = "glm-5-32b"
ASSETS = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS
CONTEXTS = ["Python's sorted function returns a new sorted list.", "Lists have a sort method that sorts in place."]


def _chat(trace_id, consent, answer, question="How do I sort a list in Python?", contexts=CONTEXTS, user="alice"):
    return {
        "id": trace_id,
        "timestamp": f"{DAY}T10:00:00Z",
        "model": MODEL,
        "user_id": user,
        "consent": consent,
        "contexts": contexts,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
    }


def _write_source(folder: Path, records) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "traces.jsonl").open("w") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
    return str(folder)


@pytest.fixture
def source(tmp_path) -> str:
    return _write_source(
        tmp_path / "source",
        [_chat(f"t-{i}", True, f"Use sorted to sort a list in Python. Example {i}.") for i in range(8)]
        + [_chat("t-no-context", True, "Call list.sort() on it.", contexts=None)]
        + [_chat("t-refused", False, "REFUSED-TEXT must never reach a judge.", user="bob")]
        + [_chat("t-unknown", None, "UNKNOWN-TEXT must never reach a judge.", user="carol")],
    )


def _resources(source, warehouse, judge=None, ragas=None) -> dict:
    return graph_resources(source, warehouse, judge=judge or JudgeResource(), ragas=ragas or RagasResource())


def _served(server, **judge_settings):
    fast = {"initial_backoff_s": 0.01, "max_attempts": 3, "timeout_s": 10.0}
    return (
        JudgeResource(base_url=server.base_url, model="judge-a", **{**fast, **judge_settings}),
        RagasResource(base_url=server.base_url, model="ragas-llm", embeddings_model="embedder", **fast),
    )


def _materialize(resources, slug=MODEL, day=DAY, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_DIMENSION, [slug])
    return dg.materialize(ASSETS, partition_key=cell_key(day, slug), resources=resources, instance=instance, raise_on_error=False)


def _checks(result) -> dict:
    return {e.check_name: (e.passed, e.severity) for e in result.get_asset_check_evaluations()}


def _rows(warehouse, dataset, slug=MODEL, day=DAY) -> list[dict]:
    files = sorted((Path(warehouse) / dataset / f"date={day}" / f"model={slug}").rglob("part-*.parquet"))
    return sorted(ds.dataset([str(f) for f in files]).to_table().to_pylist(), key=lambda r: r["trace_id"])


def test_without_an_endpoint_every_row_is_not_configured_and_a_warning_says_so(source, tmp_path):
    warehouse = str(tmp_path / "wh")
    result = _materialize(_resources(source, warehouse))
    assert result.success
    checks = _checks(result)
    assert checks["judge_endpoint_configured"] == (False, dg.AssetCheckSeverity.WARN)
    assert checks["ragas_endpoint_configured"] == (False, dg.AssetCheckSeverity.WARN)
    for name in ("judge_scores_in_range", "judge_every_trace_scored", "ragas_scores_in_range", "ragas_every_trace_scored",
                 "judge_non_ok_share", "ragas_non_ok_share"):
        assert checks[name][0], name
    judge_rows = _rows(warehouse, "judge-scores")
    assert len(judge_rows) == 9
    assert {r["status"] for r in judge_rows} == {"not_configured"}
    assert all(r["judge_score"] is None for r in judge_rows)
    ragas_rows = _rows(warehouse, "ragas-scores")
    assert {r["status"] for r in ragas_rows} == {"not_configured"}
    assert all(r[m] is None for r in ragas_rows for m in ("faithfulness", "answer_relevancy", "context_precision", "ragas_reward"))
    assert materialization_metadata(result, "judge_scores")["calls_made"] == 0
    assert not (tmp_path / "wh" / "score-cache").exists()


def test_every_consented_trace_is_scored_over_http_and_a_rerun_costs_nothing(source, tmp_path, openai_server):
    warehouse = str(tmp_path / "wh")
    judge, ragas = _served(openai_server)
    resources = _resources(source, warehouse, judge, ragas)
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(resources, instance=instance)
    assert result.success
    assert all(passed for passed, _ in _checks(result).values()), _checks(result)

    judge_rows = _rows(warehouse, "judge-scores")
    assert [r["trace_id"] for r in judge_rows] == sorted([f"t-{i}" for i in range(8)] + ["t-no-context"])
    assert {r["status"] for r in judge_rows} == {"ok"}
    assert all(0 <= r["judge_score"] <= 1 and r["judge_model"] == "judge-a" for r in judge_rows)
    assert all(r["prompt_version"].startswith("judge-") and r["attempts"] == 1 for r in judge_rows)

    ragas_rows = {r["trace_id"]: r for r in _rows(warehouse, "ragas-scores")}
    with_context = ragas_rows["t-0"]
    assert with_context["status"] == "ok"
    assert all(0 <= with_context[m] <= 1 for m in ("faithfulness", "answer_relevancy", "context_precision"))
    expected = 0.5 * with_context["faithfulness"] + 0.3 * with_context["answer_relevancy"] + 0.2 * with_context["context_precision"]
    assert with_context["ragas_reward"] == pytest.approx(expected)
    no_context = ragas_rows["t-no-context"]
    assert no_context["faithfulness_status"] == "not_applicable" and no_context["faithfulness"] is None
    assert no_context["ragas_reward"] == pytest.approx(no_context["answer_relevancy"])

    # a trace without consent never reached any endpoint
    assert not any("REFUSED-TEXT" in json.dumps(r) or "UNKNOWN-TEXT" in json.dumps(r) for r in openai_server.stats.recent)

    judge_meta = materialization_metadata(result, "judge_scores")
    assert judge_meta["calls_made"] == 9 and judge_meta["cache_hits"] == 0
    assert judge_meta["failures_by_status"] == {}
    assert judge_meta["input_tokens"] > 0 and judge_meta["latency_p95_ms"] is not None
    assert sum(judge_meta["score_histogram"].values()) == 9
    ragas_meta = materialization_metadata(result, "ragas_scores")
    assert ragas_meta["calls_made"] > 9 and ragas_meta["metric_status_counts"]["faithfulness"] == {"ok": 8, "not_applicable": 1}

    calls = openai_server.stats.requests
    again = _materialize(resources, instance=instance)
    assert again.success
    assert openai_server.stats.requests == calls  # re-materializing the cell made zero calls
    assert materialization_metadata(again, "judge_scores")["cache_hits"] == 9
    assert materialization_metadata(again, "ragas_scores")["cache_hits"] == 9
    assert materialization_metadata(again, "judge_scores")["calls_made"] == 0
    assert [r["judge_score"] for r in _rows(warehouse, "judge-scores")] == [r["judge_score"] for r in judge_rows]


def test_failures_are_null_with_their_status_and_warned_about(tmp_path, openai_server):
    source = _write_source(
        tmp_path / "source",
        [
            _chat("ok", True, "A fine answer."),
            _chat("garbage", True, "An answer [[reply:garbage]] [[ragas:garbage]]"),
            _chat("too-high", True, "An answer [[reply:score=1.7]]"),
            _chat("ten-scale", True, "An answer [[reply:scale10=8]]"),
            _chat("down", True, "An answer [[fail:503x99]] [[ragas:fail500]]"),
        ],
    )
    warehouse = str(tmp_path / "wh")
    judge, ragas = _served(openai_server)
    result = _materialize(_resources(source, warehouse, judge, ragas))
    assert result.success  # failures are data, not a crash
    checks = _checks(result)
    assert checks["judge_scores_in_range"][0] and checks["judge_every_trace_scored"][0]
    assert checks["judge_non_ok_share"] == (False, dg.AssetCheckSeverity.WARN)
    assert checks["ragas_non_ok_share"] == (False, dg.AssetCheckSeverity.WARN)
    rows = {r["trace_id"]: r for r in _rows(warehouse, "judge-scores")}
    assert rows["ok"]["status"] == "ok"
    assert (rows["garbage"]["status"], rows["garbage"]["judge_score"]) == ("unparseable", None)
    assert (rows["too-high"]["status"], rows["too-high"]["judge_score"]) == ("out_of_range", None)
    assert rows["too-high"]["judges"][0]["raw_score"] == 1.7
    assert (rows["ten-scale"]["status"], rows["ten-scale"]["judge_score"]) == ("ok", pytest.approx(0.8))
    assert (rows["down"]["status"], rows["down"]["judge_score"]) == ("error", None)
    assert rows["down"]["attempts"] == 3 and rows["down"]["error"].startswith("HTTP 503")
    meta = materialization_metadata(result, "judge_scores")
    assert meta["failures_by_status"] == {"error": 1, "out_of_range": 1, "unparseable": 1}
    ragas_rows = {r["trace_id"]: r for r in _rows(warehouse, "ragas-scores")}
    assert ragas_rows["garbage"]["status"] == "unparseable" and ragas_rows["garbage"]["ragas_reward"] is None
    assert ragas_rows["down"]["status"] == "error" and ragas_rows["down"]["ragas_reward"] is None


def test_a_rerun_asks_again_for_non_ok_replies_until_their_tries_run_out(tmp_path, openai_server):
    source = _write_source(
        tmp_path / "source",
        [_chat(f"ok-{i}", True, f"A fine answer {i}.") for i in range(3)]
        + [_chat("flaky", True, "An answer [[reply:garbagex1]]"), _chat("garbage", True, "An answer [[reply:garbage]]")],
    )
    warehouse = str(tmp_path / "wh")
    judge, _ = _served(openai_server, non_ok_max_tries=2)
    resources = _resources(source, warehouse, judge)
    instance = dg.DagsterInstance.ephemeral()

    def once():
        before = openai_server.stats.requests
        result = _materialize(resources, instance=instance)
        assert result.success
        statuses = {r["trace_id"]: r["status"] for r in _rows(warehouse, "judge-scores")}
        return statuses, openai_server.stats.requests - before, materialization_metadata(result, "judge_scores")

    statuses, calls, meta = once()
    assert (statuses["flaky"], statuses["garbage"], calls) == ("unparseable", "unparseable", 5)
    assert meta["rows_retried_from_cache"] == 0 and meta["non_ok_max_tries"] == 2
    # The re-run asks again for both unparseable replies (and only them); the flaky one now parses.
    statuses, calls, meta = once()
    assert (statuses["flaky"], statuses["garbage"], calls) == ("ok", "unparseable", 2)
    assert meta["rows_retried_from_cache"] == 2 and meta["cache_hits"] == 3
    assert meta["rows_final_non_ok_from_cache"] == 0
    # Two tries used: the last status is served from the cache, and the metadata says so.
    statuses, calls, meta = once()
    assert (statuses["flaky"], statuses["garbage"], calls) == ("ok", "unparseable", 0)
    assert meta["rows_retried_from_cache"] == 0 and meta["rows_final_non_ok_from_cache"] == 1
    assert meta["cache_hits"] == 5


def test_other_redaction_settings_ask_the_judge_and_ragas_again(tmp_path, openai_server):
    from materializer_assets.lib.redaction import ENTITY_TYPES

    source = _write_source(
        tmp_path / "source",
        [_chat(f"plain-{i}", True, f"Use sorted to sort a list. Example {i}.") for i in range(3)]
        + [_chat("mail", True, "Ask alice.smith@example.com how to sort a list with sorted.")],
    )
    warehouse = str(tmp_path / "wh")
    judge, ragas = _served(openai_server)
    instance = dg.DagsterInstance.ephemeral()

    def once(privacy):
        resources = {**_resources(source, warehouse, judge, ragas), "privacy": privacy}
        openai_server.stats.recent.clear()
        before = openai_server.stats.requests
        result = _materialize(resources, instance=instance)
        assert result.success
        return result, openai_server.stats.requests - before, json.dumps(list(openai_server.stats.recent))

    result, calls, sent = once(PrivacyResource())  # emails redacted
    assert calls > 4 and "<EMAIL>" in sent and "alice.smith@example.com" not in sent
    hashes = {r["trace_id"]: r["content_hash"] for r in _rows(warehouse, "judge-scores")}
    # Same traces, same content hashes, but emails are no longer redacted: what the judge and
    # Ragas would see changed, so the trace with the email is asked again (and only that one).
    result, calls, sent = once(PrivacyResource(entities=[e for e in ENTITY_TYPES if e != "EMAIL"]))
    assert calls > 0 and "alice.smith@example.com" in sent
    judge_meta = materialization_metadata(result, "judge_scores")
    assert judge_meta["judge_calls_asked"] == 1 and judge_meta["cache_hits"] == 3
    ragas_meta = materialization_metadata(result, "ragas_scores")
    assert ragas_meta["traces_asked"] == 1 and ragas_meta["cache_hits"] == 3
    assert {r["trace_id"]: r["content_hash"] for r in _rows(warehouse, "judge-scores")} == hashes  # taken before redaction
    # The same settings again: everything from the cache.
    result, calls, _ = once(PrivacyResource(entities=[e for e in ENTITY_TYPES if e != "EMAIL"]))
    assert calls == 0 and materialization_metadata(result, "judge_scores")["cache_hits"] == 4


def test_bursts_of_429_and_5xx_are_retried_within_the_run(source, tmp_path, openai_server):
    openai_server.config.fail_next = [429, 503, 429, 502]
    judge, _ = _served(openai_server, max_attempts=5)
    result = _materialize(_resources(source, str(tmp_path / "wh"), judge, RagasResource()))
    assert result.success
    assert {r["status"] for r in _rows(str(tmp_path / "wh"), "judge-scores")} == {"ok"}
    meta = materialization_metadata(result, "judge_scores")
    assert meta["calls_retried"] == 4
    assert meta["call_outcomes"]["429"] == 2


def test_a_judge_committee(source, tmp_path, openai_server):
    judge = JudgeResource(
        base_url=openai_server.base_url,
        committee=[JudgeMemberConfig(model="judge-a"), JudgeMemberConfig(model="judge-b"),
                   JudgeMemberConfig(model="judge-c", name="third")],
        aggregate="mean",
        initial_backoff_s=0.01,
    )
    result = _materialize(_resources(source, str(tmp_path / "wh"), judge))
    assert result.success
    rows = _rows(str(tmp_path / "wh"), "judge-scores")
    for row in rows:
        assert [v["judge"] for v in row["judges"]] == ["judge-a", "judge-b", "third"]
        assert row["judge_score"] == pytest.approx(sum(v["score"] for v in row["judges"]) / 3)
        assert row["judge_aggregate"] == "mean" and row["judge_ok"] == 3
    meta = materialization_metadata(result, "judge_scores")
    assert meta["quorum"] == 2  # a majority of three
    assert meta["krippendorff_alpha"] is not None and meta["krippendorff_alpha"] > 0.5
    assert openai_server.stats.by_model == {"judge-a": 9, "judge-b": 9, "judge-c": 9}


def test_scores_and_cache_on_an_s3_warehouse(source, s3_bucket, openai_server):
    judge, _ = _served(openai_server)
    resources = _resources(source, f"s3://{s3_bucket}/lake", judge)
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(resources, instance=instance).success
    calls = openai_server.stats.requests
    assert calls == 9
    again = _materialize(resources, instance=instance)
    assert again.success and openai_server.stats.requests == calls
    import boto3

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert any(k.startswith(f"lake/judge-scores/date={DAY}/model={MODEL}/part-") for k in keys)
    assert any(k.startswith("lake/score-cache/judge/") for k in keys)


def test_the_bundled_sample_cell_with_contexts(tmp_path, openai_server):
    judge, ragas = _served(openai_server)
    day, slug = "2026-04-17", model_slug("glm-5-32b")
    result = _materialize(_resources("", str(tmp_path / "wh"), judge, ragas), slug=slug, day=day)
    assert result.success
    blocking = {e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.severity == dg.AssetCheckSeverity.ERROR}
    assert all(blocking.values()), blocking
    consented = materialization_metadata(result, "consented_parquet")["rows"]
    assert consented > 0
    assert materialization_metadata(result, "judge_scores")["rows"] == consented
    ragas_rows = _rows(str(tmp_path / "wh"), "ragas-scores", slug=slug, day=day)
    assert len(ragas_rows) == consented
    assert any(r["faithfulness_status"] == "ok" for r in ragas_rows)


def test_both_assets_share_the_llm_judge_pool_and_read_one_upstream():
    from materializer_assets.pipeline.scoring.assets import POOL, SCORED_UPSTREAM

    assert POOL == "llm_judge" and SCORED_UPSTREAM == "iceberg_table"
    for asset in scoring.ASSETS:
        assert asset.op.pool == "llm_judge"
        assert [key.to_user_string() for key in asset.dependency_keys] == [SCORED_UPSTREAM]


def test_settings_come_from_the_environment(monkeypatch):
    for name in ("MATERIALIZER_JUDGE_BASE_URL", "MATERIALIZER_JUDGE_MODEL", "MATERIALIZER_JUDGE_API_KEY",
                 "MATERIALIZER_RAGAS_MODEL", "MATERIALIZER_RAGAS_BASE_URL", "MATERIALIZER_JUDGE_COMMITTEE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://fallback:8000/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-openai-env")
    monkeypatch.setenv("MATERIALIZER_JUDGE_MODEL", "qwen3-judge")
    monkeypatch.setenv("MATERIALIZER_RAGAS_EMBEDDINGS_MODEL", "bge-small")
    monkeypatch.setenv("MATERIALIZER_JUDGE_CONCURRENCY", "8")
    resources = scoring.build_resources()
    judge, ragas = resources["judge"], resources["ragas"]
    assert judge.base_url == "http://fallback:8000/v1" and judge.model == "qwen3-judge"
    assert isinstance(judge.api_key, dg.EnvVar) and judge.api_key.env_var_name == "OPENAI_API_KEY"  # never a literal
    assert judge.concurrency == 8
    assert ragas.model == "qwen3-judge" and ragas.base_url == "http://fallback:8000/v1"  # Ragas falls back to the judge
    assert ragas.embeddings_model == "bge-small"

    monkeypatch.setenv("MATERIALIZER_JUDGE_COMMITTEE", "judge-a, judge-b@http://other:8001/v1")
    members = scoring.build_resources()["judge"].committee
    assert [(m.model, m.base_url) for m in members] == [("judge-a", ""), ("judge-b", "http://other:8001/v1")]


def test_the_api_key_comes_from_an_env_var_and_is_never_recorded(source, tmp_path, openai_server, monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test-secret-4242")
    judge = JudgeResource(base_url=openai_server.base_url, model="judge-a", api_key=dg.EnvVar("TEST_JUDGE_KEY"))
    result = _materialize(_resources(source, str(tmp_path / "wh"), judge))
    assert result.success
    assert openai_server.stats.authorizations == {"Bearer sk-test-secret-4242": 9}
    recorded = json.dumps(materialization_metadata(result, "judge_scores"), default=str)
    recorded += json.dumps(_rows(str(tmp_path / "wh"), "judge-scores"), default=str)
    recorded += "".join(str(event) for event in result.all_events)
    assert "sk-test-secret-4242" not in recorded


def test_a_model_without_an_endpoint_is_not_configured():
    assert not JudgeResource(model="qwen3-judge").configured  # no base URL, no key: nothing to call
    assert not JudgeResource(base_url="http://vllm:8000/v1").configured  # no model
    assert JudgeResource(base_url="http://vllm:8000/v1", model="qwen3-judge").configured
    assert JudgeResource(committee=[JudgeMemberConfig(model="a")], base_url="http://x/v1").effective_quorum(4) == 3


def test_the_stage_loads_next_to_ingest():
    defs = dg.Definitions(
        assets=ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS,
        resources={**ingest.build_resources(), **lakehouse.build_resources(), **scoring.build_resources()},
    )
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("judge_scores")).parent_keys == {dg.AssetKey("iceberg_table")}
