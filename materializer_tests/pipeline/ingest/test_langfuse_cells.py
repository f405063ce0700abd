"""raw_traces → consented_parquet from the Langfuse API: real Dagster runs against the contract server."""

from __future__ import annotations

import json

import dagster as dg
import pyarrow.dataset as ds
import pytest

from materializer_assets.lib.slugs import model_slug
from materializer_assets.pipeline.ingest import ASSETS
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from materializer_tests.langfuse_server import expected_rows
from materializer_tests.langfuse_server.data import DAY, GLM, GPT

GPT_SLUG = model_slug(GPT)


def _resources(source: str, warehouse: str) -> dict:
    return {
        "trace_source": TraceSourceResource(source=source),
        "privacy": PrivacyResource(),
        "erasure": ErasureResource(),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=warehouse),
    }


def _materialize(resources, slug, instance, selection=None):
    instance.add_dynamic_partitions(MODEL_DIMENSION, [slug])
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=cell_key(DAY, slug),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def _published(warehouse, dataset: str, slug: str) -> list[dict]:
    cell = warehouse / dataset / f"date={DAY}" / f"model={slug}"
    manifest = json.loads((cell / "_manifest.json").read_text())
    files = [str(cell / name) for name in manifest["files"]]
    return ds.dataset(files).to_table().to_pylist() if files else []


@pytest.mark.parametrize("version", ["4.2.0", "3.120.0"], ids=["v4", "v3"])
def test_a_langfuse_cell_feeds_the_same_graph(make_langfuse_server, langfuse_source, tmp_path, version):
    server = make_langfuse_server(version)
    warehouse = tmp_path / "warehouse"
    result = _materialize(_resources(langfuse_source(server), str(warehouse)), GPT_SLUG, dg.DagsterInstance.ephemeral())
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks.values()), checks

    expected = expected_rows(server.data, DAY, GPT_SLUG)
    raw = _published(warehouse, "raw-traces", GPT_SLUG)
    assert sorted((r["trace_id"], r["observation_id"]) for r in raw) == [
        (r["trace_id"], r["observation_id"]) for r in expected
    ]
    assert {r["source"] for r in raw} == {"langfuse"}
    consented = _published(warehouse, "langfuse-traces", GPT_SLUG)
    granted = {r["trace_id"] for r in expected if r["consent"] is True}
    assert {r["trace_id"] for r in consented} == granted and granted
    assert all(r["consent"] is True for r in consented)
    by_id = {r["trace_id"]: r for r in consented}
    assert by_id["tr-0418-000"]["feedback_score"] == 0.5 and by_id["tr-0418-000"]["contexts"] == ["doc 0a", "doc 0b"]


def test_a_page_that_keeps_failing_fails_the_cell_and_publishes_nothing(
    make_langfuse_server, langfuse_source, tmp_path, monkeypatch
):
    monkeypatch.setenv("MATERIALIZER_LANGFUSE_MAX_ATTEMPTS", "2")
    server = make_langfuse_server("4.2.0")
    warehouse = tmp_path / "warehouse"
    resources = _resources(langfuse_source(server), str(warehouse))
    instance = dg.DagsterInstance.ephemeral()
    glm = model_slug(GLM)
    raw_only = ["raw_traces"]  # one output of the ingest multi-asset

    # A first cell that never gets published: a page keeps failing after rows were already read.
    server.fail("/api/public/v3/scores", status=503, times=None)
    result = _materialize(resources, glm, instance, raw_only)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    error = failure.step_failure_data.error
    text = error.message + str(error.cause)
    assert "/api/public/v3/scores" in text and "window 2026-04-18T" in text and "HTTP 503" in text
    assert not list(warehouse.rglob("*.parquet")) and not list(warehouse.rglob("_manifest.json"))

    # Then it works; a later failing run leaves that version live and untouched.
    server.clear_faults()
    assert _materialize(resources, glm, instance, raw_only).success
    before = _published(warehouse, "raw-traces", glm)
    files_before = sorted(p.name for p in warehouse.rglob("*.parquet"))
    server.fail("/api/public/v2/observations", status=500, times=None)
    assert not _materialize(resources, glm, instance, raw_only).success
    assert _published(warehouse, "raw-traces", glm) == before
    assert sorted(p.name for p in warehouse.rglob("*.parquet")) == files_before
