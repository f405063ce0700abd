"""`dagster dev` in the repo root loads workspace.yaml and shows the graph with its checks."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from .dagster_dev import fresh_dagster_home, running_dagster_dev

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
    home = fresh_dagster_home(tmp_path)
    env = {**os.environ, "DAGSTER_HOME": str(home), "MATERIALIZER_WAREHOUSE": str(tmp_path / "warehouse")}
    with running_dagster_dev(env, lambda url: httpx.get(f"{url}/server_info", timeout=2).status_code == 200) as url:
        yield url


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
