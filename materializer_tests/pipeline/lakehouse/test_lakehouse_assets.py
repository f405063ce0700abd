"""raw_traces → consented_parquet → iceberg_table and the gdpr_erasure job through real Dagster runs.

Catalogs: SQLite inside a local warehouse, SqlCatalog on PostgreSQL, Glue on moto's
server with the lake and the table data on moto's S3.
"""

from __future__ import annotations

import json

import dagster as dg
import pyarrow as pa
import pytest

from materializer_assets.lib import iceberg as ice
from materializer_assets.lib.erasure import ErasureLedger
from materializer_assets.lib.lake import CellAddress
from materializer_assets.pipeline import ingest, lakehouse
from materializer_assets.pipeline.lakehouse.erasure import ErasureResource, gdpr_erasure_job, gdpr_erasure_sensor
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key, cell_partitions
from materializer_assets.resources import ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_tests.lib.iceberg_helpers import CATALOG_KINDS, all_files, make_case, parquet_rows_with
from materializer_tests.pipeline.results import materialization_metadata

from .traces import DAYS, SLUGS

ASSETS = ingest.ASSETS + lakehouse.ASSETS
CELL_ASSETS = ["raw_traces", "consented_parquet", "iceberg_table"]
CONSENTED_PER_CELL = 2 * 4  # alice, bob, mallory, eve: two traces each


@pytest.fixture(params=[pytest.param(k, marks=pytest.mark.slow) if k == "glue-s3" else k for k in CATALOG_KINDS])
def case(request, tmp_path):
    return make_case(request.param, request, tmp_path)


def _resources(case, source_dir, registry_path, erasure_list_path) -> dict:
    return {
        "trace_source": TraceSourceResource(source=str(source_dir), consent_registry=str(registry_path)),
        "privacy": PrivacyResource(),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=case.warehouse),
        "iceberg_io_manager": IcebergIOManager(
            warehouse=case.warehouse,
            catalog_name=case.settings.name,
            catalog_properties=dict(case.settings.properties),
            local_catalog_dir=case.settings.local_catalog_dir,
        ),
        "erasure": ErasureResource(erasure_list=str(erasure_list_path), orphan_grace_minutes=60),
    }


def _run_cell(resources, day, slug, instance, assets=ASSETS, selection=CELL_ASSETS):
    instance.add_dynamic_partitions(MODEL_DIMENSION, [slug])
    return dg.materialize(
        assets, partition_key=cell_key(day, slug), resources=resources, instance=instance, selection=selection
    )


def _erase(resources, instance) -> dict:
    """Run the gdpr_erasure job; the erase_users op's output metadata."""
    result = gdpr_erasure_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)
    assert result.success, [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    (output,) = [e for e in result.all_node_events if e.is_successful_output]
    return {key: value.value for key, value in output.step_output_data.metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _table(case):
    return case.catalog().load_table(ice.DEFAULT_TABLE)


def _cell_files(table, day, slug):
    return sorted(ice.IcebergCell(table, ice.Cell(day, slug)).files())


def test_backfill_rerun_and_erasure_through_dagster(case, source_dir, registry_path, erasure_list_path):
    resources = _resources(case, source_dir, registry_path, erasure_list_path)
    instance = dg.DagsterInstance.ephemeral()

    # backfill: 3 days × 2 models, one run per cell
    for day in DAYS:
        for slug in SLUGS:
            result = _run_cell(resources, day, slug, instance)
            assert result.success
            checks = _checks(result)
            checks.pop("no_rejected_records", None)
            assert all(checks.values()), (day, slug, checks)
            meta = materialization_metadata(result, "iceberg_table")
            assert meta["rows"] == meta["source_rows"] == CONSENTED_PER_CELL
            assert meta["write_method"] == "copy" and meta["files"] >= 1 and meta["bytes"] > 0
            assert isinstance(meta["snapshot_id"], int)
    table = _table(case)
    per_cell = {(d, s): ice.IcebergCell(table, ice.Cell(d, s)).count_rows() for d in DAYS for s in SLUGS}
    history = [(x.snapshot_id, x.summary.operation.value, dict(x.summary.additional_properties)) for x in table.snapshots()]
    assert set(per_cell.values()) == {CONSENTED_PER_CELL}, (per_cell, history)
    assert table.scan().count() == len(DAYS) * len(SLUGS) * CONSENTED_PER_CELL, history
    users = set(table.scan(selected_fields=("user_id",)).to_arrow().column("user_id").to_pylist())
    assert users == {"alice", "bob", "mallory", "eve"}  # carol refused: never in the table

    # re-run one cell: same rows, one live copy, the other cells untouched
    day, slug = DAYS[1], SLUGS[1]
    untouched = {(d, s): _cell_files(table, d, s) for d in DAYS for s in SLUGS if (d, s) != (day, slug)}
    before = _cell_files(table, day, slug)
    result = _run_cell(resources, day, slug, instance)
    assert result.success and all(v for k, v in _checks(result).items() if k != "no_rejected_records")
    table = _table(case)
    assert ice.IcebergCell(table, ice.Cell(day, slug)).count_rows() == CONSENTED_PER_CELL
    assert set(_cell_files(table, day, slug)).isdisjoint(before)
    assert {(d, s): _cell_files(table, d, s) for (d, s) in untouched} == untouched
    assert table.scan().count() == len(DAYS) * len(SLUGS) * CONSENTED_PER_CELL
    assert materialization_metadata(result, "iceberg_table")["snapshot_id"] == table.current_snapshot().snapshot_id

    # mallory revokes (newer registry row), eve asks to be forgotten
    registry_path.write_text(
        "user_id,granted,updated_at\nmallory,true,2026-04-01T00:00:00Z\nmallory,false,2026-05-01T00:00:00Z\n"
    )
    erasure_list_path.write_text("user_id,requested_at\neve,2026-05-02T00:00:00Z\n")
    lake = case.lake()
    raw_kept = parquet_rows_with(lake.filesystem, all_files(lake.filesystem, f"{lake.root.path}/raw-traces"), "user_id", ["alice", "bob", "carol"])
    meta = _erase(resources, instance)
    assert meta["users_erased"] == 2 and meta["noop"] is False
    per_output = meta["rows_removed_by_output"]
    cells = len(DAYS) * len(SLUGS)
    assert per_output == {
        "lake:raw-traces": cells * 4,
        "lake:langfuse-traces": cells * 4,
        f"iceberg:{ice.DEFAULT_TABLE}": cells * 4,
    }

    # scan every file we keep: the lake (local or S3), the table's data and metadata folders
    table = _table(case)
    table_fs, _ = ice.table_filesystem(table)
    for filesystem, files in (
        (lake.filesystem, all_files(lake.filesystem, lake.root.path)),
        (table_fs, ice.table_files(table)),
    ):
        assert parquet_rows_with(filesystem, files, "user_id", ["mallory", "eve"]) == 0
    assert len(table.snapshots()) == 1
    raw_files = all_files(lake.filesystem, f"{lake.root.path}/raw-traces")
    assert parquet_rows_with(lake.filesystem, raw_files, "user_id", ["alice", "bob", "carol"]) == raw_kept
    assert table.scan().count() == cells * 2 * 2  # alice and bob
    (audit,) = ErasureLedger(lake.root).audit_records()
    assert "mallory" not in json.dumps(audit) and audit["status"] == "complete"

    # a second erasure run with nothing new is a no-op
    assert _erase(resources, instance)["noop"] is True
    assert len(ErasureLedger(lake.root).audit_records()) == 1

    # re-running a cell after the revocation does not bring mallory back into the consented outputs
    assert _run_cell(resources, DAYS[0], SLUGS[0], instance).success
    consented = lake.open_cell(CellAddress("langfuse-traces", DAYS[0], SLUGS[0])).to_table()
    assert "mallory" not in consented.column("user_id").to_pylist()
    assert "mallory" not in ice.IcebergCell(_table(case), ice.Cell(DAYS[0], SLUGS[0])).to_table().column("user_id").to_pylist()


def test_downstream_assets_read_a_lazy_cell_and_write_their_own_table(tmp_path, source_dir, registry_path, erasure_list_path):
    """What the scoring stage will do: read iceberg_table's cell lazily, cite its snapshot, write a table."""
    case = make_case("sqlite", None, tmp_path)
    seen = {}

    @dg.asset(
        partitions_def=cell_partitions,
        io_manager_key="iceberg_io_manager",
        metadata={"iceberg_table": "training_data.test_scores"},
    )
    def test_scores(iceberg_table: ice.IcebergCell) -> pa.Table:
        seen["snapshot_id"] = iceberg_table.snapshot_id
        batches = list(iceberg_table.to_batches(columns=["trace_id", "date", "model_slug"], batch_size=3))
        seen["batches"] = len(batches)
        rows = pa.Table.from_batches(batches)
        return rows.append_column("score", pa.array([0.5] * rows.num_rows, pa.float64()))

    resources = _resources(case, source_dir, registry_path, erasure_list_path)
    instance = dg.DagsterInstance.ephemeral()
    assets = ASSETS + [test_scores]
    result = _run_cell(resources, DAYS[0], SLUGS[0], instance, assets=assets, selection=CELL_ASSETS + ["test_scores"])
    assert result.success
    assert seen["snapshot_id"] == materialization_metadata(result, "iceberg_table")["snapshot_id"]  # lineage
    assert seen["batches"] == 3  # streamed, not one table
    scores = case.catalog().load_table("training_data.test_scores")
    assert scores.scan().count() == CONSENTED_PER_CELL
    meta = materialization_metadata(result, "test_scores")
    assert meta["write_method"] == "write" and meta["rows"] == CONSENTED_PER_CELL

    # the erasure finds the scores table from the asset metadata and erases it by trace id
    erasure_list_path.write_text("user_id\nalice\n")
    removed = _erase(resources, instance)["rows_removed_by_output"]
    assert removed["iceberg:training_data.test_scores"] == 2
    traces = scores.refresh().scan().to_arrow().column("trace_id").to_pylist()
    assert len(traces) == CONSENTED_PER_CELL - 2 and not any("-alice-" in t for t in traces)


def test_the_sensor_starts_erasure_when_the_registry_or_list_changes(tmp_path, registry_path, erasure_list_path):
    resources = {
        "trace_source": TraceSourceResource(source=str(tmp_path), consent_registry=str(registry_path)),
        "erasure": ErasureResource(erasure_list=str(erasure_list_path)),
    }
    first = gdpr_erasure_sensor(dg.build_sensor_context(resources=resources))
    assert len(first.run_requests) == 1 and first.cursor
    unchanged = gdpr_erasure_sensor(dg.build_sensor_context(cursor=first.cursor, resources=resources))
    assert isinstance(unchanged, dg.SkipReason)
    registry_path.write_text(registry_path.read_text() + "mallory,false,2026-05-01T00:00:00Z\n")
    revoked = gdpr_erasure_sensor(dg.build_sensor_context(cursor=first.cursor, resources=resources))
    assert len(revoked.run_requests) == 1 and revoked.cursor != first.cursor
    erasure_list_path.write_text("user_id\neve\n")
    listed = gdpr_erasure_sensor(dg.build_sensor_context(cursor=revoked.cursor, resources=resources))
    assert listed.run_requests[0].run_key != revoked.run_requests[0].run_key


def test_an_empty_cell_creates_the_table_and_an_empty_partition(tmp_path, source_dir, registry_path, erasure_list_path):
    case = make_case("sqlite", None, tmp_path)
    resources = _resources(case, source_dir, registry_path, erasure_list_path)
    result = _run_cell(resources, "2026-04-10", SLUGS[0], dg.DagsterInstance.ephemeral())
    assert result.success and all(v for k, v in _checks(result).items() if k != "no_rejected_records")
    assert materialization_metadata(result, "iceberg_table")["rows"] == 0
    assert _table(case).schema().find_field("trace_id").required


def test_bundled_sample_day_reaches_the_iceberg_table(tmp_path):
    from datetime import date

    from materializer_assets.lib.slugs import model_slug
    from materializer_assets.lib.sources import open_source

    slugs = sorted({model_slug(name) for name in open_source("").models_on(date.fromisoformat(DAYS[2]))})
    warehouse = str(tmp_path / "wh")
    resources = {
        "trace_source": TraceSourceResource(),
        "privacy": PrivacyResource(),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=warehouse),
        "iceberg_io_manager": IcebergIOManager(warehouse=warehouse, catalog_name="materializer_test"),
        "erasure": ErasureResource(),
    }
    instance = dg.DagsterInstance.ephemeral()
    total = 0
    for slug in slugs:
        result = _run_cell(resources, DAYS[2], slug, instance)
        assert result.success, slug
        assert all(e.passed for e in result.get_asset_check_evaluations() if e.asset_key.to_user_string() == "iceberg_table")
        total += materialization_metadata(result, "consented_parquet")["rows"]
    catalog = ice.load_catalog(ice.CatalogSettings(name="materializer_test", warehouse=warehouse))
    table = catalog.load_table(ice.DEFAULT_TABLE)
    assert total > 0 and table.scan().count() == total
    assert set(table.scan(selected_fields=("consent",)).to_arrow().column("consent").to_pylist()) == {True}
