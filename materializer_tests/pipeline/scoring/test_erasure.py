"""GDPR erasure reaches the score cache: registered for every erasure run, tested through real runs."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds

from materializer_assets.lib import erasure as er
from materializer_assets.lib.scoring.cache import CACHE_SCHEMA, ScoreCache
from materializer_assets.lib.scoring.cache_erasure import ScoreCacheOutput
from materializer_assets.lib.storage import resolve
from materializer_assets.pipeline import scoring  # noqa: F401 - importing the stage registers the cache
from materializer_assets.pipeline.scoring.erasure import OUTPUT_NAME, score_cache_outputs
from materializer_assets.resources import ParquetLakeIOManager
from materializer_tests.pipeline.scoring.test_scoring_assets import _chat, _materialize, _resources, _served, _write_source

SHARED_ANSWER = "Use sorted(); it returns a new list."


def _resources_with_erasure(source, warehouse, judge, ragas) -> dict:
    from materializer_assets.pipeline.lakehouse.erasure import ErasureResource

    # Ingestion applies the erasure ledger, so it may ask for the erasure settings too.
    return {**_resources(source, warehouse, judge, ragas), "erasure": ErasureResource()}


def _environment(warehouse: str) -> er.ErasureEnvironment:
    return er.ErasureEnvironment(lake=ParquetLakeIOManager(warehouse=warehouse).lake())


def _cache_entries(warehouse: str) -> list[dict]:
    files = [str(f) for f in (Path(warehouse) / "score-cache").rglob("*.parquet")]
    return ds.dataset(files, schema=CACHE_SCHEMA).to_table().to_pylist() if files else []


def test_the_cache_is_registered_and_left_out_until_it_exists(tmp_path):
    assert OUTPUT_NAME in er._OUTPUT_FACTORIES
    warehouse = str(tmp_path / "wh")
    assert score_cache_outputs(_environment(warehouse), env={}) == []
    assert not [o for o in er.registered_outputs(_environment(warehouse)) if isinstance(o, ScoreCacheOutput)]

    shard = ScoreCache.in_warehouse(resolve(warehouse)).shard("judge", "judge-a", "v1", "2026-04-18", "m")
    shard.put("k", {"score": 0.5}, trace_id="t-1")
    shard.close()
    [output] = [o for o in er.registered_outputs(_environment(warehouse)) if isinstance(o, ScoreCacheOutput)]
    assert output.name == "score-cache" and output.root.path == str(Path(warehouse) / "score-cache")


def test_a_cache_kept_elsewhere_is_erased_too(tmp_path):
    elsewhere = str(tmp_path / "cache-elsewhere")
    shard = ScoreCache(resolve(elsewhere)).shard("judge", "judge-a", "v1", "2026-04-18", "m")
    shard.put("k", {"score": 0.5}, trace_id="t-1")
    shard.close()
    environment = _environment(str(tmp_path / "wh"))
    assert score_cache_outputs(environment, env={"MATERIALIZER_SCORE_CACHE": "off"}) == []
    [output] = score_cache_outputs(environment, env={"MATERIALIZER_SCORE_CACHE": elsewhere})
    assert output.name == f"score-cache:{elsewhere}" and output.root.path == elsewhere


def test_erasing_a_user_removes_every_cache_entry_of_their_traces(tmp_path, openai_server):
    alice = [_chat(f"a-{i}", True, f"Alice's answer number {i}.", user="alice") for i in range(4)]
    dave = [_chat(f"d-{i}", True, f"DAVE-SECRET answer {i}.", user="dave") for i in range(3)]
    shared = [_chat("a-shared", True, SHARED_ANSWER, user="alice"), _chat("d-shared", True, SHARED_ANSWER, user="dave")]
    source = _write_source(tmp_path / "source", alice + dave + shared)
    warehouse = str(tmp_path / "wh")
    judge, ragas = _served(openai_server)
    assert _materialize(_resources_with_erasure(source, warehouse, judge, ragas)).success

    dave_traces = {"d-0", "d-1", "d-2", "d-shared"}
    before = _cache_entries(warehouse)
    assert {e["trace_id"] for e in before} == dave_traces | {"a-0", "a-1", "a-2", "a-3", "a-shared"}

    environment = _environment(warehouse)
    outputs = [er.LakeDatasetOutput(environment.lake, "raw-traces"), *er.registered_outputs(environment)]
    assert "score-cache" in [o.name for o in outputs]
    ledger = er.ErasureLedger(environment.lake.root, salt="test-salt")
    report = er.run_erasure([er.ErasureRequest("dave", None, er.REASON_ERASURE_REQUEST)], outputs, ledger)

    after = _cache_entries(warehouse)
    assert not dave_traces & {e["trace_id"] for e in after}
    # Two shards (judge, ragas) had dave's four traces; alice's entries are all kept, the shared one too.
    assert report.outputs["score-cache"].rows_removed == 2 * len(dave_traces)
    assert sorted(e["trace_id"] for e in after) == sorted(2 * ["a-0", "a-1", "a-2", "a-3", "a-shared"])
    [record] = ledger.audit_records()
    assert record["status"] == "complete" and record["rows_remaining_after"]["score-cache"] == 0
    assert "DAVE" not in json.dumps(record)

    # Alice's cell is still answered from the cache: re-scoring her traces makes no judge call.
    calls = openai_server.stats.requests
    alice_only = _write_source(tmp_path / "alice-only", alice + shared[:1])
    resources = _resources_with_erasure(alice_only, warehouse, judge, ragas)
    again = _materialize(resources, instance=dg.DagsterInstance.ephemeral())
    assert again.success
    assert openai_server.stats.requests == calls


def test_the_gdpr_erasure_job_erases_the_cache(tmp_path, openai_server):
    from materializer_assets.pipeline.lakehouse.erasure import ErasureResource, gdpr_erasure_job

    source = _write_source(
        tmp_path / "source",
        [_chat("a-0", True, "Alice's answer.", user="alice"), _chat("d-0", True, "Dave's answer.", user="dave")],
    )
    warehouse = str(tmp_path / "wh")
    erasure_list = tmp_path / "erase.csv"
    erasure_list.write_text("user_id\n")
    judge, ragas = _served(openai_server)
    resources = {**_resources(source, warehouse, judge, ragas), "erasure": ErasureResource(erasure_list=str(erasure_list))}
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(resources, instance=instance).success
    assert sorted(e["trace_id"] for e in _cache_entries(warehouse)) == ["a-0", "a-0", "d-0", "d-0"]

    erasure_list.write_text("user_id\ndave\n")
    result = gdpr_erasure_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)
    assert result.success
    metadata = next(
        {k: v.value for k, v in e.step_output_data.metadata.items()}
        for e in result.all_events
        if e.is_successful_output
    )
    assert "score-cache" in metadata["outputs_checked"]
    assert metadata["rows_removed_by_output"]["score-cache"] == 2
    assert sorted(e["trace_id"] for e in _cache_entries(warehouse)) == ["a-0", "a-0"]
