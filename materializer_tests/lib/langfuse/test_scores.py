"""Score write-back: deterministic ids, upserts, over real HTTP (POST /api/public/scores)."""

from __future__ import annotations

import math
import uuid

import pytest

from materializer_assets.lib.langfuse import (
    LangfuseClient,
    ScoreToWrite,
    ScoreWriter,
    langfuse_observation_id,
    score_id,
    write_back_enabled,
)
from materializer_assets.lib.langfuse.scores import SCORE_ID_NAMESPACE

from .helpers import V3, V4, config_for

TRACES = ["tr-0418-000", "tr-0418-001", "tr-0418-002"]


def _rewards(value: float, version: str = "reward-v1") -> list[ScoreToWrite]:
    return [
        ScoreToWrite(trace_id, "final_reward", value + i / 10, version, metadata={"run": "test"})
        for i, trace_id in enumerate(TRACES)
    ]


def test_score_ids_are_uuid5_of_trace_name_and_version():
    expected = uuid.uuid5(SCORE_ID_NAMESPACE, "tr-1|final_reward|reward-v1")
    assert score_id("tr-1", "final_reward", "reward-v1") == str(expected)
    assert score_id("tr-1", "final_reward", "reward-v1") == score_id("tr-1", "final_reward", "reward-v1")
    assert score_id("tr-1", "final_reward", "reward-v2") != score_id("tr-1", "final_reward", "reward-v1")
    assert score_id("tr-1", "judge_score", "reward-v1") != score_id("tr-1", "final_reward", "reward-v1")
    assert uuid.UUID(score_id("tr-1", "final_reward", "reward-v1")).version == 5


def test_score_ids_include_the_example_so_two_examples_of_a_trace_keep_a_score_each():
    turn_0 = score_id("tr-1", "final_reward", "v1", "gen-1#turn-0")
    turn_1 = score_id("tr-1", "final_reward", "v1", "gen-1#turn-1")
    other_generation = score_id("tr-1", "final_reward", "v1", "gen-2")
    assert len({turn_0, turn_1, other_generation, score_id("tr-1", "final_reward", "v1")}) == 4
    assert turn_0 == str(uuid.uuid5(SCORE_ID_NAMESPACE, "tr-1|gen-1#turn-0|final_reward|v1"))
    # Without an example id, the trace-level id stays what it always was.
    assert score_id("tr-1", "final_reward", "v1", None) == score_id("tr-1", "final_reward", "v1")
    derived = ScoreToWrite("tr-1", "final_reward", 0.5, "v1", example_id="gen-1#turn-0")
    own = ScoreToWrite("tr-1", "final_reward", 0.5, "v1", observation_id="gen-2")
    assert derived.id == turn_0 and "observationId" not in derived.body()
    assert own.id == other_generation and own.body()["observationId"] == "gen-2"


def test_only_langfuse_s_own_observation_ids_are_sent():
    assert langfuse_observation_id("gen-1", "langfuse") == "gen-1"
    assert langfuse_observation_id("8f2c0a", "langfuse-export") == "8f2c0a"
    assert langfuse_observation_id("gen-1#turn-1", "langfuse") is None  # single-turn conversion made it up
    assert langfuse_observation_id("#turn-0", "files") is None
    assert langfuse_observation_id("obs-123", "files") is None  # a JSONL line's id: not Langfuse's
    assert langfuse_observation_id("row-9", "postgres") is None
    assert langfuse_observation_id(None, "langfuse") is None


def test_examples_of_one_trace_are_two_scores_over_http_and_derived_ids_are_not_sent(make_langfuse_server):
    server = make_langfuse_server(V4)
    rows = [("gen-a#turn-0", "langfuse", 0.2), ("gen-a#turn-1", "langfuse", 0.9), ("gen-b", "langfuse", 0.6)]
    scores = [
        ScoreToWrite("tr-0418-000", "final_reward", value, "v1", observation_id=langfuse_observation_id(obs, source),
                     example_id=obs)
        for obs, source, value in rows
    ]
    writer = ScoreWriter(LangfuseClient(config_for(server)))
    assert writer.write(scores).written == 3 and writer.write(scores).written == 3
    stored = sorted((s.value, s.observation_id) for s in server.data.scores.values() if s.name == "final_reward")
    assert stored == [(0.2, None), (0.6, "gen-b"), (0.9, None)]
    bodies = [post.body for post in server.calls("/api/public/scores", method="POST")]
    assert not any("#turn-" in (body.get("observationId") or "") for body in bodies)


@pytest.mark.parametrize("version", [V4, V3], ids=["v4", "v3"])
def test_writing_twice_leaves_one_score_per_id(make_langfuse_server, version):
    server = make_langfuse_server(version)
    before = set(server.data.scores)
    writer = ScoreWriter(LangfuseClient(config_for(server)))
    first = writer.write(_rewards(0.5))
    second = writer.write(_rewards(0.6))  # a re-run with new values: upserted, not added
    assert first.written == second.written == 3 and first.ids == second.ids
    new = {key: value for key, value in server.data.scores.items() if key not in before}
    assert set(new) == {score_id(trace_id, "final_reward", "reward-v1") for trace_id in TRACES}
    assert sorted(score.value for score in new.values()) == pytest.approx([0.6, 0.7, 0.8])
    posts = server.calls("/api/public/scores", method="POST")
    assert len(posts) == 6 and all(post.status == 200 for post in posts)
    assert posts[0].body["metadata"] == {"run": "test", "scorer_version": "reward-v1"}
    assert posts[0].body["dataType"] == "NUMERIC" and posts[0].body["traceId"] == TRACES[0]
    # A new scorer version gets scores of its own.
    writer.write(_rewards(0.1, version="reward-v2"))
    assert len([s for s in server.data.scores.values() if s.name == "final_reward"]) == 6


def test_written_scores_are_listed_by_the_api(make_langfuse_server):
    server = make_langfuse_server(V4)
    client = LangfuseClient(config_for(server))
    ScoreWriter(client).write(_rewards(0.5))
    ScoreWriter(client).write(_rewards(0.5))
    ids = ",".join(score_id(t, "final_reward", "reward-v1") for t in TRACES)
    listed = client.request_json("GET", "/api/public/v3/scores", params={"id": ids, "fields": "subject,details"})
    assert sorted(item["subject"]["id"] for item in listed["data"]) == TRACES
    assert {item["source"] for item in listed["data"]} == {"API"}


def test_invalid_values_are_skipped_by_name_never_sent(make_langfuse_server):
    server = make_langfuse_server(V4)
    report = ScoreWriter(LangfuseClient(config_for(server))).write(
        [
            ScoreToWrite("tr-0418-000", "final_reward", math.nan, "v1"),
            ScoreToWrite("tr-0418-000", "final_reward", math.inf, "v1"),
            ScoreToWrite("tr-0418-000", "thumbs", 0.5, "v1", data_type="BOOLEAN"),
            ScoreToWrite("", "final_reward", 0.5, "v1"),
            ScoreToWrite("tr-0418-000", "final_reward", 1.0, "v1", observation_id="tr-0418-000-gen", comment="ok"),
            ScoreToWrite("tr-0418-000", "thumbs", 1, "v1", data_type="BOOLEAN"),
        ]
    )
    assert report.written == 2
    assert dict(report.skipped) == {"value_not_finite": 2, "value_not_0_or_1": 1, "missing_trace_id": 1}
    assert report.as_metadata() == {
        "langfuse_scores_written": 2,
        "langfuse_scores_skipped": {"value_not_finite": 2, "value_not_0_or_1": 1, "missing_trace_id": 1},
    }
    assert len(server.calls("/api/public/scores", method="POST")) == 2


def test_a_failing_post_is_retried_safely(make_langfuse_server):
    server = make_langfuse_server(V4)
    server.fail("/api/public/scores", status=502, times=1)
    report = ScoreWriter(LangfuseClient(config_for(server))).write(_rewards(0.5)[:1])
    assert report.written == 1
    assert [c.status for c in server.calls("/api/public/scores", method="POST")] == [502, 200]
    assert len([s for s in server.data.scores.values() if s.name == "final_reward"]) == 1


def test_write_back_is_opt_in():
    assert write_back_enabled({}) is False
    assert write_back_enabled({"MATERIALIZER_LANGFUSE_WRITE_SCORES": "maybe"}) is False
    assert write_back_enabled({"MATERIALIZER_LANGFUSE_WRITE_SCORES": "false"}) is False
    assert write_back_enabled({"MATERIALIZER_LANGFUSE_WRITE_SCORES": "true"}) is True
    assert write_back_enabled({"MATERIALIZER_LANGFUSE_WRITE_SCORES": "YES"}) is True
