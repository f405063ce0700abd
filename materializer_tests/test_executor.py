"""Runs launched by Dagster (UI backfills, sensors, schedules) use the executor of
``pipeline/executor.py``: the forkserver multiprocess executor with the project preloaded when a
scoring model is configured, in-process otherwise. A cell launched through the daemon with the
forkserver runs every step, ``judge_scores`` and ``ragas_scores`` each in a step process of its own
(so they can overlap). Nothing here is timed: ``benchmarks/backfill_bench.py`` measures.
"""

from __future__ import annotations

import importlib
import time

import dagster as dg
import pytest

from materializer_assets.definitions import defs
from materializer_assets.pipeline import executor as executor_module

from .test_backfill_e2e import (  # noqa: F401  (dagster_dev_home is a fixture)
    ASSET_NODES,
    BACKFILL_STATUS,
    FINISHED,
    LAUNCH_PARTITION_BACKFILL,
    _graphql,
    _runs_tagged,
    dagster_dev_home,
)

CELL = "2026-04-17|glm-5-32b"


def test_auto_is_in_process_without_a_scoring_model_and_the_forkserver_with_one(monkeypatch):
    monkeypatch.delenv(executor_module.ENV, raising=False)
    for name in executor_module.SCORING_MODEL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert executor_module.build_executor() is dg.in_process_executor
    for name in executor_module.SCORING_MODEL_SETTINGS:
        monkeypatch.setenv(name, "judge-a")
        assert executor_module.build_executor().name == "forkserver_multiprocess", name
        assert executor_module.build_executor("in_process") is dg.in_process_executor
        monkeypatch.delenv(name)


def test_the_definitions_executor_is_the_chosen_one_on_every_job(monkeypatch):
    assert defs.executor is executor_module.executor
    for job in [defs.resolve_implicit_global_asset_job_def(), *(defs.resolve_job_def(j.name) for j in defs.jobs or [])]:
        assert job.executor_def is executor_module.executor, job.name


def test_the_forkserver_executor_preloads_the_project():
    forkserver = executor_module.build_executor("forkserver")
    assert forkserver.name == "forkserver_multiprocess"
    assert executor_module.EXECUTOR_CONFIG["start_method"] == {
        "forkserver": {"preload_modules": ["materializer_assets.pipeline.preload"]}
    }
    # The configured executor builds a forkserver MultiprocessExecutor with the preload module.
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.multiprocess import MultiprocessExecutor

    config = forkserver.config_schema.resolve_config({}).value["config"]
    with dg.DagsterInstance.ephemeral() as instance:
        built = forkserver.executor_creation_fn(
            InitExecutorContext(
                job=dg.reconstructable(_asset_job),
                executor_def=forkserver,
                executor_config=config,
                instance=instance,
            )
        )
    assert isinstance(built, MultiprocessExecutor)
    assert built._start_method == "forkserver"
    assert built._explicit_forkserver_preload == ["materializer_assets.pipeline.preload"]


def test_the_executor_can_be_chosen_by_environment():
    assert executor_module.build_executor("in_process") is dg.in_process_executor
    assert executor_module.build_executor("spawn") is dg.multiprocess_executor
    with pytest.raises(ValueError, match="MATERIALIZER_RUN_EXECUTOR"):
        executor_module.build_executor("thread")


def _asset_job():
    return defs.resolve_implicit_global_asset_job_def()


def test_the_preload_module_imports_and_resolves_the_definitions():
    preload = importlib.import_module(executor_module.PRELOAD_MODULE)
    assert preload.defs is defs
    assert defs.has_resolved_repository_def()


@pytest.fixture
def forkserver_runs(monkeypatch):
    """What ``auto`` picks when a judge or Ragas model is configured, without calling one."""
    monkeypatch.setenv(executor_module.ENV, "forkserver")


@pytest.mark.slow
def test_a_cell_launched_through_the_daemon_runs_judge_and_ragas_in_their_own_step_processes(
    forkserver_runs, dagster_dev_home
):
    url, home, warehouse, env = dagster_dev_home
    assets = [node["assetKey"] for node in _graphql(url, ASSET_NODES)["assetNodes"]]
    launched = _graphql(
        url,
        LAUNCH_PARTITION_BACKFILL,
        {"backfillParams": {"tags": [], "assetSelection": assets, "partitionNames": [CELL], "fromFailure": False}},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 300
    while True:
        backfill = _graphql(url, BACKFILL_STATUS, {"backfillId": launched["backfillId"]})["partitionBackfillOrError"]
        if backfill["status"] in FINISHED or time.monotonic() > deadline:
            break
        time.sleep(2)
    (run,) = _runs_tagged(url, "dagster/backfill", launched["backfillId"])
    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"} and run["status"] == "SUCCESS", (backfill, run)

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        events = [record.dagster_event for record in instance.all_logs(run["runId"]) if record.dagster_event]
    finally:
        instance.dispose()
    succeeded = {event.step_key for event in events if event.event_type_value == "STEP_SUCCESS"}
    assert {"judge_scores", "ragas_scores", "reward_dataset", "iceberg_table"} <= succeeded
    pids = {
        event.step_key: event.event_specific_data.metadata["pid"].value
        for event in events
        if event.event_type_value == "STEP_WORKER_STARTED"
    }
    assert pids["judge_scores"] != pids["ragas_scores"]  # separate processes: they can run at once
