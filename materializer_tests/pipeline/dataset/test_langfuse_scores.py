"""langfuse_scores: final_reward written back to Langfuse, a step of its own after every blocking check.

Real Dagster runs of the whole graph on one cell read from the Langfuse
contract server (v4, its default fixture: a multi-turn trace gives two
examples ``…-gen#turn-0`` / ``…-gen#turn-1``), scored by the OpenAI test
server, and write the scores back to the same Langfuse over HTTP.
"""

from __future__ import annotations

import dagster as dg
import pytest

from materializer_assets.lib.langfuse import score_id
from materializer_assets.pipeline import dataset, ingest, lakehouse, scoring
from materializer_assets.pipeline.dataset import RewardDatasetResource
from materializer_assets.pipeline.dataset.assets import langfuse_scores
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_tests.langfuse_server.data import DAY, GLM
from materializer_tests.pipeline.resources import graph_resources, served_judge
from materializer_tests.pipeline.results import materialization_metadata

ASSETS = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS + dataset.ASSETS
SLUG = "glm-5-32b"
assert SLUG == GLM


def _resources(source: str, warehouse: str, judge_server, **settings) -> dict:
    return graph_resources(
        source,
        warehouse,
        judge=served_judge(judge_server),
        # The judge alone makes the reward (Ragas is not configured here).
        reward_settings=RewardDatasetResource(reward_weights="judge=1", **settings),
    )


def _materialize(assets, resources, instance):
    instance.add_dynamic_partitions(MODEL_DIMENSION, [SLUG])
    return dg.materialize(
        assets, partition_key=cell_key(DAY.isoformat(), SLUG), resources=resources, instance=instance, raise_on_error=False
    )


def _reward_rows(warehouse: str) -> list[dict]:
    table = IcebergIOManager(warehouse=warehouse).load_catalog().load_table("training_data.reward_dataset")
    return table.scan().to_arrow().to_pylist()


def test_each_example_gets_its_own_score_and_only_langfuse_observation_ids_are_sent(
    tmp_path, openai_server, make_langfuse_server, langfuse_env
):
    server = make_langfuse_server()
    langfuse_env(server)
    warehouse = str(tmp_path / "wh")
    resources = _resources(server.url, warehouse, openai_server, langfuse_write_scores=True)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # a re-run upserts the same ids
        result = _materialize(ASSETS, resources, instance)
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["langfuse_scores_written"], checks

    rows = [r for r in _reward_rows(warehouse) if r["final_reward"] is not None]
    assert {r["source"] for r in rows} == {"langfuse"}
    turns = sorted(r["observation_id"] for r in rows if r["trace_id"] == "tr-0418-100")
    assert turns == ["tr-0418-100-gen#turn-0", "tr-0418-100-gen#turn-1"]  # two examples of one trace

    metadata = materialization_metadata(result, "langfuse_scores")
    version = metadata["scorer_version"]
    assert metadata["rows"] == len(rows) and metadata["scores_on_traces"] == 2
    assert metadata["scores_on_observations"] == len(rows) - 2
    stored = {s.id: s for s in server.data.scores.values() if s.name == "final_reward"}
    assert len(stored) == len(rows)  # one per example, nothing overwritten, nothing added by the re-run
    known_observations = {o.id for o in server.data.observations.values()}
    for row in rows:
        score = stored[score_id(row["trace_id"], "final_reward", version, row["observation_id"])]
        assert score.trace_id == row["trace_id"] and score.value == pytest.approx(row["final_reward"])
        if "#turn-" in row["observation_id"]:
            assert score.observation_id is None  # made up by single-turn conversion: the score sits on the trace
        else:
            assert score.observation_id == row["observation_id"] and score.observation_id in known_observations
    sent = [post.body for post in server.calls("/api/public/scores", method="POST")]
    assert len(sent) == 2 * len(rows)
    assert all("#turn-" not in (body.get("observationId") or "") for body in sent)


def test_a_failed_blocking_check_of_the_cell_stops_the_write_back(
    tmp_path, openai_server, make_langfuse_server, langfuse_env
):
    server = make_langfuse_server()
    langfuse_env(server)

    @dg.asset_check(asset=dataset.dpo_export, blocking=True, partitions_def=dataset.dpo_export.partitions_def)
    def export_rejected_by_review() -> dg.AssetCheckResult:
        """Stands for any blocking check of the cell that fails."""
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR)

    resources = _resources(server.url, str(tmp_path / "wh"), openai_server, langfuse_write_scores=True)
    result = _materialize([*ASSETS, export_rejected_by_review], resources, dg.DagsterInstance.ephemeral())
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"reward_dataset", "dpo_export", "sft_export"} <= materialized
    assert "langfuse_scores" not in materialized
    assert "langfuse_scores_written" not in {e.check_name for e in result.get_asset_check_evaluations()}
    assert server.calls("/api/public/scores", method="POST") == []
    assert not [s for s in server.data.scores.values() if s.name == "final_reward"]


def test_write_back_is_a_step_of_its_own_after_the_reward_table_and_every_export():
    upstream = {key.to_user_string() for key in langfuse_scores.dependency_keys}
    assert upstream == {"reward_dataset", "reward_dataset_parquet", "sft_export", "dpo_export", "kto_export",
                        "grpo_export", "router_export"}
    reward_checks = {spec.name for spec in dataset.reward_dataset.check_specs}
    assert "langfuse_scores_written" not in reward_checks
    assert {spec.name for spec in langfuse_scores.check_specs} == {"langfuse_scores_written"}
