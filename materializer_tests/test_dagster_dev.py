"""`dagster dev` in the repo root loads workspace.yaml and shows the graph with its checks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from .conftest import REPO_ROOT, _free_port

pytestmark = pytest.mark.slow

ASSET_GRAPH_QUERY = """
{
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    partitionDefinition { type dimensionTypes { name type dynamicPartitionsDefinitionName } }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
}
"""


@pytest.fixture
def dagster_dev(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "MATERIALIZER_WAREHOUSE": str(tmp_path / "warehouse")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"dagster dev exited: {process.stdout.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise AssertionError("dagster dev did not answer within 120 s")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _graph(url: str) -> dict:
    # The code location loads in the background after the server answers.
    deadline = time.monotonic() + 120
    while True:
        response = httpx.post(f"{url}/graphql", json={"query": ASSET_GRAPH_QUERY}, timeout=30)
        response.raise_for_status()
        nodes = response.json()["data"]["assetNodes"]
        if nodes or time.monotonic() > deadline:
            return {"/".join(node["assetKey"]["path"]): node for node in nodes}
        time.sleep(1)


def test_dagster_dev_shows_the_asset_graph_with_checks(dagster_dev):
    nodes = _graph(dagster_dev)
    assert {"raw_traces", "consented_parquet"} <= set(nodes)
    assert nodes["consented_parquet"]["dependencyKeys"] == [{"path": ["raw_traces"]}]
    for node in nodes.values():
        partitions = node["partitionDefinition"]
        assert partitions["type"] == "MULTIPARTITIONED"
        dimensions = {d["name"]: d for d in partitions["dimensionTypes"]}
        assert dimensions["date"]["type"] == "TIME_WINDOW"
        assert dimensions["model"]["type"] == "DYNAMIC"
        assert dimensions["model"]["dynamicPartitionsDefinitionName"] == "model"
    checks = {c["name"]: c["blocking"] for c in nodes["consented_parquet"]["assetChecksOrError"]["checks"]}
    assert checks == {
        "only_consented_rows": True,
        "unique_trace_observation_ids": True,
        "required_columns_non_null": True,
        "schema_as_declared": True,
        "counts_reconcile": True,
    }
    raw_checks = {c["name"]: c["blocking"] for c in nodes["raw_traces"]["assetChecksOrError"]["checks"]}
    assert raw_checks["no_rejected_records"] is False
    assert raw_checks["raw_schema_as_declared"] is True
