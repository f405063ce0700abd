"""deploy/dagster.yaml on a real PostgreSQL database: runs, events, partitions and limits live there."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import dagster as dg
import psycopg
import pyarrow.dataset as ds
import pytest

from materializer_assets.pipeline.ingest.assets import consented_parquet, raw_traces
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource

DAY = "2026-04-18"
MODELS = ["glm-5-32b", "gpt-4o-mini-2024-07-18"]
ASSETS = [raw_traces, consented_parquet]  # the ingest stage: its resources are all a test needs


def _sample_resources(warehouse) -> dict:
    # An empty source is the bundled sample (with its own consent registry).
    return {
        "trace_source": TraceSourceResource(source=""),
        "privacy": PrivacyResource(),
        "erasure": ErasureResource(),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=str(warehouse)),
    }


def test_the_production_instance_loads_with_postgres_storage_and_the_limits(prod_home):
    instance = dg.DagsterInstance.from_config(str(prod_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
        # The URL Dagster built uses the psycopg2 driver that SQLAlchemy 2.1 needs named.
        assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")

        limits = instance.get_concurrency_config()
        assert limits.run_queue_config.max_concurrent_runs == 24
        assert {"key": "dagster/backfill", "limit": 16} in limits.run_queue_config.tag_concurrency_limits
        assert limits.pool_config.default_pool_limit == 4
        assert limits.pool_config.pool_granularity.value == "op"
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 300
        assert instance.run_retries_max_retries == 1
    finally:
        instance.dispose()


def test_a_partitioned_materialization_is_recorded_in_postgres(prod_home, prod_env, tmp_path):
    warehouse = tmp_path / "warehouse"
    instance = dg.DagsterInstance.from_config(str(prod_home))
    try:
        instance.add_dynamic_partitions(MODEL_DIMENSION, MODELS)
        result = dg.materialize(
            ASSETS,
            partition_key=cell_key(DAY, "glm-5-32b"),
            resources=_sample_resources(warehouse),
            instance=instance,
        )
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["only_consented_rows"] and checks["counts_reconcile"], checks
        run_id = result.run_id
    finally:
        instance.dispose()

    cell = warehouse / f"langfuse-traces/date={DAY}/model=glm-5-32b/consent=true"
    rows = ds.dataset(list(cell.glob("part-*.parquet"))).to_table()
    assert rows.num_rows > 0
    assert set(rows.column("consent").to_pylist()) == {True}

    # Straight from the database: the run, its events and the partitions are rows in Postgres.
    pg_url = f"postgresql://{prod_env['DAGSTER_PG_USERNAME']}@{prod_env['DAGSTER_PG_HOST']}:{prod_env['DAGSTER_PG_PORT']}/{prod_env['DAGSTER_PG_DB']}"
    with psycopg.connect(pg_url) as conn:
        status = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
        assert status == ("SUCCESS",)
        materialized = conn.execute(
            "SELECT DISTINCT asset_key, partition FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        ).fetchall()
        assert {key for key, _ in materialized} == {'["raw_traces"]', '["consented_parquet"]'}
        assert {partition for _, partition in materialized} == {f"{DAY}|glm-5-32b"}
        partitions = conn.execute(
            "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s ORDER BY partition", (MODEL_DIMENSION,)
        ).fetchall()
        assert [p for (p,) in partitions] == MODELS

    # Step logs went to S3 (moto), not to a pod's disk.
    keys = [
        obj["Key"]
        for obj in boto3.client("s3").list_objects_v2(Bucket=prod_env["DAGSTER_COMPUTE_LOGS_BUCKET"]).get("Contents", [])
    ]
    assert any(key.startswith("dagster-compute-logs/") for key in keys), keys


def test_partitions_cursors_and_pool_limits_survive_a_new_instance(prod_home, tmp_path):
    first = dg.DagsterInstance.from_config(str(prod_home))
    try:
        first.add_dynamic_partitions(MODEL_DIMENSION, MODELS)
        result = dg.materialize(
            ASSETS,
            partition_key=cell_key(DAY, "gpt-4o-mini-2024-07-18"),
            resources=_sample_resources(tmp_path / "warehouse"),
            instance=first,
        )
        assert result.success
        # What a sensor tick stores: its cursor, in the schedule storage (Postgres).
        first.add_instigator_state(_sensor_state("new_models_sensor", cursor="2026-04-18T00:00:00Z|3"))
    finally:
        first.dispose()

    # `dagster instance concurrency set` is how operators size the judge pool.
    cli = subprocess.run(
        [sys.executable, "-m", "dagster", "instance", "concurrency", "set", "llm_judge", "8"],
        env={**os.environ, "DAGSTER_HOME": str(prod_home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]

    second = dg.DagsterInstance.from_config(str(prod_home))  # a new process would see the same
    try:
        assert second.get_dynamic_partitions(MODEL_DIMENSION) == MODELS
        materialized = second.get_materialized_partitions(dg.AssetKey("consented_parquet"))
        assert materialized == {f"{DAY}|gpt-4o-mini-2024-07-18"}
        states = {state.name: state for state in second.all_instigator_state()}
        assert states["new_models_sensor"].instigator_data.cursor == "2026-04-18T00:00:00Z|3"
        assert second.event_log_storage.get_concurrency_info("llm_judge").slot_count == 8
    finally:
        second.dispose()


def _sensor_state(name: str, cursor: str):
    """A running sensor's stored state, as the sensor daemon writes it after a tick."""
    from dagster._core.remote_origin import (
        GrpcServerCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        SensorInstigatorData,
    )

    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin(host="materializer-assets", port=3030, location_name="materializer_assets"),
            "__repository__",
        ),
        name,
    )
    return InstigatorState(
        origin,
        InstigatorType.SENSOR,
        InstigatorStatus.RUNNING,
        SensorInstigatorData(cursor=cursor, sensor_type=None),
    )


@pytest.mark.parametrize("missing", ["DAGSTER_PG_HOST", "DAGSTER_PG_PASSWORD"])
def test_a_missing_credential_fails_loudly_naming_the_variable(prod_home, monkeypatch, missing):
    monkeypatch.delenv(missing)
    with pytest.raises(Exception, match=missing):
        dg.DagsterInstance.from_config(str(prod_home))
