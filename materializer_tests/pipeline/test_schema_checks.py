"""Schema checks through real Dagster runs, against cells whose published files were tampered with.

The Parquet IO manager below is the real one, except that its ``publish``,
after publishing a cell of the named lake datasets, overwrites each published
file with one whose columns are ``{trace_id, bogus}`` — what a foreign writer
or a bug could leave. The asset's checks read the cell ``publish`` returned, as
they always do; each schema check must fail and name the file and the
difference. Scoring runs against the OpenAI-compatible test server on
127.0.0.1.
"""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from materializer_assets.pipeline import ingest, lakehouse, scoring
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources import ParquetLakeIOManager
from materializer_assets.resources.parquet_io import PublishedLakeCell
from materializer_tests.openai_server.fixtures import openai_server, openai_server_session  # noqa: F401
from materializer_tests.pipeline.resources import graph_resources, served_judge, served_ragas

DAY = "2026-04-18"
MODEL = "glm-5-32b"
ASSETS = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS
SCHEMA_CHECKS = {
    "raw_traces": "raw_schema_as_declared",
    "consented_parquet": "schema_as_declared",
    "judge_scores": "judge_schema_as_declared",
    "ragas_scores": "ragas_schema_as_declared",
}


class TamperingParquetIOManager(ParquetLakeIOManager):
    """The real IO manager; the files it published for the lake datasets in ``tamper`` are then replaced."""

    tamper: list[str] = []

    def publish(self, context, cell, output_name=None) -> PublishedLakeCell:
        published = super().publish(context, cell, output_name)
        if published.address.dataset in self.tamper:
            _replace_files(published.dataset)
        return published


def _replace_files(published) -> None:
    for path in published.files:
        trace_ids = pq.read_table(path, columns=["trace_id"], filesystem=published.filesystem).column(0)
        bogus = pa.table({"trace_id": trace_ids, "bogus": pa.array(["?"] * len(trace_ids))})
        pq.write_table(bogus, path, filesystem=published.filesystem)


def _source(folder: Path) -> str:
    folder.mkdir(parents=True)
    records = [
        {
            "id": f"t-{i}",
            "timestamp": f"{DAY}T10:0{i}:00Z",
            "model": MODEL,
            "user_id": f"user-{i}",
            "consent": True,
            "contexts": ["Python's sorted function returns a new sorted list."],
            "messages": [
                {"role": "user", "content": "How do I sort a list in Python?"},
                {"role": "assistant", "content": f"Use sorted(), example {i}."},
            ],
        }
        for i in range(3)
    ]
    (folder / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(folder)


def _run(tmp_path, tamper: list[str], server=None):
    warehouse = str(tmp_path / "wh")
    served = {"judge": served_judge(server, max_attempts=2), "ragas": served_ragas(server, max_attempts=2)} if server else {}
    resources = graph_resources(
        _source(tmp_path / "source"),
        warehouse,
        parquet_io_manager=TamperingParquetIOManager(warehouse=warehouse, tamper=tamper),
        **served,
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_DIMENSION, [MODEL])
    result = dg.materialize(ASSETS, partition_key=cell_key(DAY, MODEL), resources=resources, instance=instance,
                            raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    return result, evaluations, warehouse


def _assert_fails_naming_file(evaluation, warehouse: str, lake_dataset: str) -> None:
    assert evaluation.passed is False
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    description = evaluation.description
    assert f"{warehouse}/{lake_dataset}/date={DAY}/model={MODEL}/" in description
    assert ".parquet: missing " in description and "unexpected bogus (string)" in description
    differences = evaluation.metadata["differences"].value
    assert differences and all("unexpected bogus (string)" in diffs for diffs in differences.values())


@pytest.mark.parametrize(
    "asset, lake_dataset", [("raw_traces", "raw-traces"), ("consented_parquet", "langfuse-traces")]
)
def test_an_ingest_cell_with_foreign_columns_fails_its_schema_check(tmp_path, asset, lake_dataset):
    result, checks, warehouse = _run(tmp_path, [lake_dataset])
    _assert_fails_naming_file(checks[SCHEMA_CHECKS[asset]], warehouse, lake_dataset)
    if asset == "consented_parquet":
        assert checks["raw_schema_as_declared"].passed  # only the tampered cell fails
    # A failed blocking check stops the graph below it.
    assert "iceberg_table" not in {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def test_score_cells_with_foreign_columns_fail_their_schema_checks(tmp_path, openai_server):  # noqa: F811
    result, checks, warehouse = _run(tmp_path, ["judge-scores", "ragas-scores"], openai_server)
    assert checks["raw_schema_as_declared"].passed and checks["schema_as_declared"].passed
    _assert_fails_naming_file(checks["judge_schema_as_declared"], warehouse, "judge-scores")
    _assert_fails_naming_file(checks["ragas_schema_as_declared"], warehouse, "ragas-scores")
    # The score columns are gone from the files: the range checks say so too instead of passing on nulls.
    assert not checks["judge_scores_in_range"].passed and not checks["ragas_scores_in_range"].passed


def test_untampered_cells_pass_every_schema_check(tmp_path, openai_server):  # noqa: F811
    result, checks, _ = _run(tmp_path, [], openai_server)
    assert result.success
    for name in SCHEMA_CHECKS.values():
        assert checks[name].passed, (name, checks[name].description)
