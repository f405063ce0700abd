"""Backfills as users launch them: `dagster dev` (webserver + daemon), the UI's backfill mutation,
and the CLI for one cell, on the bundled sample. Every cell's files and check results are read back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pyarrow.dataset as ds
import pytest

from .conftest import REPO_ROOT
from .dagster_dev import fresh_dagster_home, running_dagster_dev

pytestmark = pytest.mark.slow

DAYS = ["2026-04-17", "2026-04-18"]
MODELS = ["glm-5-32b", "gpt-4o-mini-2024-07-18"]
CLI_CELL = ("2026-04-16", "glm-5-32b")
ASSETS = ["raw_traces", "consented_parquet"]
CONSENTED_CHECKS = {
    "only_consented_rows",
    "unique_trace_observation_ids",
    "required_columns_non_null",
    "schema_as_declared",
    "counts_reconcile",
}
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}

# The mutation and the params the UI's "Materialize" → "Launch backfill" dialog sends for a
# selection of assets and partition keys (LaunchAssetChoosePartitionsDialog.tsx).
LAUNCH_PARTITION_BACKFILL = """
mutation LaunchPartitionBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}
"""

BACKFILL_STATUS = """
query BackfillStatus($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { id status numPartitions isAssetBackfill }
    ... on PythonError { message }
  }
}
"""

RUNS_TAGGED = """
query RunsTagged($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

CHECK_EXECUTIONS = """
query Checks($assetKey: AssetKeyInput!, $checkName: String!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: 50) {
    runId status evaluation { success }
  }
}
"""

ASSET_NODES = "{ assetNodes { assetKey { path } } }"


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    payload = response.json()
    assert "errors" not in payload, payload["errors"]
    return payload["data"]


@pytest.fixture
def dagster_dev_home(tmp_path, monkeypatch):
    """`dagster dev` on a fresh DAGSTER_HOME (the repository's local dagster.yaml) and warehouse."""
    home = fresh_dagster_home(tmp_path)
    warehouse = tmp_path / "warehouse"
    env = {**os.environ, "DAGSTER_HOME": str(home), "MATERIALIZER_WAREHOUSE": str(warehouse)}
    env.pop("MATERIALIZER_SOURCE", None)  # the bundled sample
    # The backfill's partitions must exist before anyone launches it (DESIGN §7).
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the local dagster.yaml reads it
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("model", MODELS)
    instance.dispose()

    # Up, and the code location has loaded (it loads after the server answers).
    with running_dagster_dev(env, lambda url: bool(_graphql(url, ASSET_NODES)["assetNodes"])) as url:
        yield url, home, warehouse, env


def _check_cell(warehouse: Path, day: str, model: str) -> int:
    """The cell's published files: consented rows only, of this day and model. Returns the row count."""
    consented = warehouse / f"langfuse-traces/date={day}/model={model}"
    assert (consented / "_manifest.json").exists(), f"{day}|{model} was not published"
    files = list((consented / "consent=true").glob("part-*.parquet"))
    table = ds.dataset(files).to_table(columns=["consent", "date", "model_slug", "trace_id"])
    assert table.num_rows > 0, f"{day}|{model} has no consented rows"
    assert set(table.column("consent").to_pylist()) == {True}
    assert set(table.column("date").to_pylist()) == {day}
    assert set(table.column("model_slug").to_pylist()) == {model}
    assert (warehouse / f"raw-traces/date={day}/model={model}/_manifest.json").exists()
    return table.num_rows


def _runs_tagged(url: str, key: str, value: str) -> list[dict]:
    return _graphql(url, RUNS_TAGGED, {"key": key, "value": value})["runsOrError"]["results"]


def _partition(run: dict) -> str:
    return next(tag["value"] for tag in run["tags"] if tag["key"] == "dagster/partition")


def _passed_checks_by_run(url: str) -> dict[str, set[str]]:
    """Check executions of consented_parquet as the UI lists them: run id → checks that passed."""
    passed: dict[str, set[str]] = {}
    for check in CONSENTED_CHECKS:
        executions = _graphql(url, CHECK_EXECUTIONS, {"assetKey": {"path": ["consented_parquet"]}, "checkName": check})
        for execution in executions["assetCheckExecutions"]:
            if execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"]:
                passed.setdefault(execution["runId"], set()).add(check)
    return passed


def test_a_backfill_launched_like_the_ui_fills_every_cell(dagster_dev_home):
    url, home, warehouse, env = dagster_dev_home
    keys = [f"{day}|{model}" for day in DAYS for model in MODELS]
    launched = _graphql(
        url,
        LAUNCH_PARTITION_BACKFILL,
        {
            "backfillParams": {
                "tags": [],
                "assetSelection": [{"path": [name]} for name in ASSETS],
                "partitionNames": keys,
                "fromFailure": False,
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    # The same for one more cell from the command line, on the same instance, meanwhile.
    cli_key = "|".join(CLI_CELL)
    cli = subprocess.Popen(
        [
            sys.executable, "-m", "dagster", "asset", "materialize",
            "-m", "materializer_assets.definitions",
            "--select", ",".join(ASSETS),
            "--partition", cli_key,
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_backfill_and_check_it(url, backfill_id, keys, warehouse)
    finally:
        output = cli.communicate(timeout=180)[0]
    assert cli.returncode == 0, output[-3000:]
    _check_cell(warehouse, *CLI_CELL)
    (cli_run,) = _runs_tagged(url, "dagster/partition", cli_key)
    assert cli_run["status"] == "SUCCESS"
    assert _passed_checks_by_run(url).get(cli_run["runId"]) == CONSENTED_CHECKS


def _wait_for_backfill_and_check_it(url: str, backfill_id: str, keys: list[str], warehouse: Path) -> None:
    deadline = time.monotonic() + 150
    while True:
        backfill = _graphql(url, BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] in FINISHED or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    assert backfill["isAssetBackfill"] and backfill["numPartitions"] == len(keys)

    # One run per cell (the default backfill policy), all successful.
    runs = _runs_tagged(url, "dagster/backfill", backfill_id)
    assert sorted(_partition(run) for run in runs) == sorted(keys)
    assert {run["status"] for run in runs} == {"SUCCESS"}

    for day in DAYS:
        for model in MODELS:
            _check_cell(warehouse, day, model)
    passed = _passed_checks_by_run(url)
    for run in runs:
        assert passed.get(run["runId"]) == CONSENTED_CHECKS, (_partition(run), passed.get(run["runId"]))
