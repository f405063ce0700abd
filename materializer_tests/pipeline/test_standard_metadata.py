"""Dagster's standard metadata, partitioned checks and freshness, on real runs of the bundled sample.

The whole graph runs for two cells of the bundled sample on a real (SQLite)
Dagster instance, the judge and Ragas being the OpenAI-compatible test
server. Each materialization must carry ``dagster/row_count`` and
``dagster/column_schema`` equal to what was published (read back from the lake
and the Iceberg tables), the Iceberg assets ``dagster/table_name``,
reward_dataset its column lineage; each check evaluation is recorded under its
cell's partition; iceberg_table and reward_dataset have a freshness policy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from dagster._core.definitions.metadata import TableMetadataSet  # what Dagster itself reads the keys with

from materializer_assets.lib.dataset.rewards import RewardConfig, RewardWeights
from materializer_assets.lib.iceberg import Cell, IcebergCell
from materializer_assets.lib.lake import CellAddress
from materializer_assets.pipeline import dataset, ingest, lakehouse, scoring
from materializer_assets.pipeline.dataset import RewardDatasetResource
from materializer_assets.pipeline.freshness import FRESHNESS_ENV, cell_freshness_policy
from materializer_assets.pipeline.metadata import flat_numbers, reward_lineage, table_schema
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources import ParquetLakeIOManager
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_tests.openai_server.fixtures import openai_server_session  # noqa: F401 - the judge and Ragas
from materializer_tests.pipeline.resources import graph_resources, served_judge, served_ragas

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

ASSETS = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS + dataset.ASSETS
CELLS = [("2026-04-17", "glm-5-32b"), ("2026-04-16", "gpt-4o-mini-2024-07-18")]
REWARD_WEIGHTS = "ragas=0.5,judge=0.3,feedback=0.2"
REPO = Path(__file__).resolve().parents[2]


def _definition_metadata(asset_name: str) -> dict:
    for asset in ASSETS:
        for key in asset.keys:
            if key.to_user_string() == asset_name:
                return dict(asset.metadata_by_key[key])
    raise KeyError(asset_name)


def _materializations(result) -> dict[str, dict]:
    return {
        event.asset_key.to_user_string(): event.step_materialization_data.materialization.metadata
        for event in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def graph_runs(tmp_path_factory, openai_server_session):
    root = tmp_path_factory.mktemp("standard-metadata")
    warehouse = str(root / "wh")
    resources = graph_resources(
        "",  # the bundled sample, with its consent registry
        warehouse,
        judge=served_judge(openai_server_session),
        ragas=served_ragas(openai_server_session),
        reward_settings=RewardDatasetResource(split_test_fraction=0.3, reward_weights=REWARD_WEIGHTS),
    )
    home = root / "dagster-home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        instance.add_dynamic_partitions(MODEL_DIMENSION, sorted({model for _, model in CELLS}))
        results = {}
        for day, model in CELLS:
            result = dg.materialize(
                ASSETS, partition_key=cell_key(day, model), resources=resources, instance=instance, raise_on_error=False
            )
            assert result.success, (day, model)
            results[(day, model)] = result
        yield {"warehouse": warehouse, "results": results, "instance": instance}


def _published(warehouse: str, asset_name: str, day: str, model: str) -> tuple[int, list[str], IcebergCell | None]:
    """Rows and column names of the cell as it was published, read back from the lake or the table."""
    metadata = _definition_metadata(asset_name)
    if "iceberg_table" in metadata:
        table = IcebergIOManager(warehouse=warehouse).load_catalog().load_table(metadata["iceberg_table"])
        cell = IcebergCell(table, Cell(day, model))
        return cell.count_rows(), cell.schema.names, cell
    lake = ParquetLakeIOManager(warehouse=warehouse).lake()
    cell = lake.open_cell(CellAddress(metadata["lake_dataset"], day, model))
    return cell.count_rows(), cell.schema.names, None


def test_every_table_asset_reports_the_rows_and_columns_it_published(graph_runs):
    for (day, model), result in graph_runs["results"].items():
        materializations = _materializations(result)
        assert set(materializations) == {key.to_user_string() for asset in ASSETS for key in asset.keys}
        for asset_name, metadata in materializations.items():
            table = TableMetadataSet.extract(metadata)
            if asset_name == "langfuse_scores":  # no table: the scores written (write-back is off here)
                assert (table.row_count, table.partition_row_count, table.column_schema) == (0, 0, None)
                continue
            rows, columns, iceberg = _published(graph_runs["warehouse"], asset_name, day, model)
            assert table.row_count == rows and table.partition_row_count == rows, (asset_name, day, model)
            assert [column.name for column in table.column_schema.columns] == columns, asset_name
            if iceberg is not None:
                assert table.table_name == f"materializer.{iceberg.identifier}", asset_name
            else:
                assert table.table_name is None, asset_name
        # the sample has rows in every stage of the graph
        assert TableMetadataSet.extract(materializations["reward_dataset"]).row_count > 0


def test_the_iceberg_table_names_open_the_tables_with_pyiceberg(graph_runs):
    result = graph_runs["results"][CELLS[0]]
    catalog = IcebergIOManager(warehouse=graph_runs["warehouse"]).load_catalog()
    for asset_name in ("iceberg_table", "reward_dataset"):
        name = TableMetadataSet.extract(_materializations(result)[asset_name]).table_name
        catalog_name, _, identifier = name.partition(".")
        assert catalog_name == catalog.name
        assert catalog.load_table(identifier).name() == tuple(identifier.split("."))


def test_reward_dataset_has_column_lineage_to_the_scores_and_feedback(graph_runs):
    metadata = _materializations(graph_runs["results"][CELLS[0]])["reward_dataset"]
    lineage = TableMetadataSet.extract(metadata).column_lineage.deps_by_column
    final = {(dep.asset_key.to_user_string(), dep.column_name) for dep in lineage["final_reward"]}
    assert {("judge_scores", "judge_score"), ("ragas_scores", "ragas_reward"), ("iceberg_table", "feedback_score")} <= final
    assert [(d.asset_key.to_user_string(), d.column_name) for d in lineage["judge_score"]] == [("judge_scores", "judge_score")]
    assert [(d.asset_key.to_user_string(), d.column_name) for d in lineage["ragas_version"]] == [("ragas_scores", "prompt_version")]
    assert [(d.asset_key.to_user_string(), d.column_name) for d in lineage["trace_id"]] == [("iceberg_table", "trace_id")]
    judge = TableMetadataSet.extract(_materializations(graph_runs["results"][CELLS[0]])["judge_scores"]).column_lineage
    assert [(d.asset_key.to_user_string(), d.column_name) for d in judge.deps_by_column["judge_score"]] == [
        ("iceberg_table", "prompt"), ("iceberg_table", "response")
    ]
    # every column the lineage names is a column of the published table
    schema_names = {c.name for c in TableMetadataSet.extract(metadata).column_schema.columns}
    assert set(lineage) <= schema_names


def test_plottable_numbers_are_top_level_numbers(graph_runs):
    materializations = _materializations(graph_runs["results"][CELLS[0]])
    numeric = (dg.IntMetadataValue, dg.FloatMetadataValue)
    expected = {
        "reward_dataset": ["mean_final_reward", "share_preferred", "share_non_preferred", "share_unlabeled",
                           "mean_final_reward_preferred", "rows_train", "rows_test"],
        "judge_scores": ["ok_share", "mean_judge_score", "rows_status_ok"],
        "ragas_scores": ["ok_share", "mean_ragas_reward", "mean_faithfulness"],
        "consented_parquet": ["rows_refused", "rows_unknown_consent", "rows_dropped_empty_response",
                              "rows_dropped_duplicate_id", "rows_dropped_forgotten_user", "consented_share"],
        "raw_traces": ["rows_consent_true", "rows_consent_false", "rows_consent_unknown"],
        "sft_export": ["rows_train", "rows_test"],
    }
    for asset_name, keys in expected.items():
        metadata = materializations[asset_name]
        for key in keys:
            assert isinstance(metadata.get(key), numeric), (asset_name, key, metadata.get(key))
    reward = materializations["reward_dataset"]
    shares = sum(reward[f"share_{label}"].value for label in ("preferred", "neutral", "non_preferred", "unlabeled"))
    assert shares == pytest.approx(1.0, abs=1e-3)
    assert 0.0 <= reward["mean_final_reward"].value <= 1.0
    assert materializations["judge_scores"]["ok_share"].value == pytest.approx(
        1 - materializations["judge_scores"]["non_ok_share"].value, abs=1e-3
    )
    # the dicts the tests and users already read are still there
    assert "rows_by_label_and_split" in reward and "rows_dropped" in materializations["consented_parquet"]


def test_check_evaluations_are_recorded_under_their_cell(graph_runs):
    instance = graph_runs["instance"]
    check_keys = [spec.key for asset in ASSETS for spec in asset.check_specs]
    assert len(check_keys) > 20
    for (day, model), result in graph_runs["results"].items():
        evaluations = result.get_asset_check_evaluations()
        assert {e.asset_check_key for e in evaluations} == set(check_keys)
        assert {e.partition for e in evaluations} == {str(cell_key(day, model))}
    for check_key in check_keys:
        records = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=10)
        assert sorted(record.partition for record in records) == sorted(str(cell_key(d, m)) for d, m in CELLS), check_key
        assert all(record.status.value in ("SUCCEEDED", "FAILED") for record in records), check_key


def test_every_check_spec_is_partitioned_like_its_asset():
    for asset in ASSETS:
        for spec in asset.check_specs:
            assert spec.partitions_def == asset.partitions_def, spec.key


def test_iceberg_table_and_reward_dataset_have_a_freshness_policy():
    policies = {spec.key.to_user_string(): spec.freshness_policy for asset in ASSETS for spec in asset.specs}
    day = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))
    assert {name for name, policy in policies.items() if policy is not None} == {"iceberg_table", "reward_dataset"}
    assert policies["iceberg_table"] == policies["reward_dataset"] == day


def test_the_freshness_window_comes_from_the_environment():
    assert cell_freshness_policy("48") == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=48), warn_window=timedelta(hours=46)
    )
    assert cell_freshness_policy("1.5") == dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=1.5))
    assert cell_freshness_policy("off") is None and cell_freshness_policy("0") is None
    with pytest.raises(ValueError, match=FRESHNESS_ENV):
        cell_freshness_policy("a day")


def test_loading_the_definitions_warns_about_nothing():
    env = {**os.environ, "PYTHONPATH": str(REPO), FRESHNESS_ENV: "30"}
    code = (
        "import warnings; warnings.simplefilter('always')\n"
        "from materializer_assets.definitions import defs\n"
        "graph = defs.resolve_asset_graph(); defs.get_repository_def()\n"
        "import dagster as dg\n"
        "print(graph.get(dg.AssetKey('reward_dataset')).freshness_policy.fail_window.to_timedelta())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    assert done.stdout.strip() == "1 day, 6:00:00"


def test_table_schema_maps_arrow_fields_to_columns():
    schema = pa.schema(
        [
            pa.field("trace_id", pa.string(), nullable=False),
            pa.field("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            pa.field("final_reward", pa.float64()),
            pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        ]
    )
    columns = table_schema(schema).columns
    assert [(c.name, c.type, c.constraints.nullable) for c in columns] == [
        ("trace_id", "string", False),
        ("messages", "list<item: struct<role: string, content: string>>", True),
        ("final_reward", "double", True),
        ("timestamp", "timestamp[us, tz=UTC]", True),
    ]


def test_reward_lineage_names_only_the_components_that_count():
    judge_only = reward_lineage(RewardConfig(weights=RewardWeights.parse("judge=1")), traces="t", judge="j", ragas="r")
    assert {(d.asset_key.to_user_string(), d.column_name) for d in judge_only["final_reward"]} == {
        ("j", "judge_score"), ("j", "status")
    }
    with_feedback = reward_lineage(RewardConfig(weights=RewardWeights.parse(REWARD_WEIGHTS)), traces="t", judge="j", ragas="r")
    assert ("t", "feedback_score") in {(d.asset_key.to_user_string(), d.column_name) for d in with_feedback["label"]}


def test_flat_numbers_repeat_counts_as_top_level_keys():
    assert flat_numbers("rows_dropped", {"duplicate_id": 2, "empty response": 1, "note": "x", "flag": True}) == {
        "rows_dropped_duplicate_id": 2,
        "rows_dropped_empty_response": 1,
    }
