"""Sensors and the daily schedule with a real DagsterInstance (SQLite storage on disk).

A tick is evaluated the way the daemon does it: the sensor runs with its
cursor and resources, its dynamic-partition requests are applied to the
instance, and the requested cells run through the sensor's own job.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import boto3
import dagster as dg
import pytest

from materializer_assets.lib.slugs import model_slug
from materializer_assets.pipeline.ingest import ASSETS
from materializer_assets.pipeline.ingest.schedules import build_daily_schedule
from materializer_assets.pipeline.ingest.sensors import (
    TRIGGER_TAG,
    build_blob_export_sensor,
    build_langfuse_sensor,
    materialize_cells,
)
from materializer_assets.pipeline.partitions import MODEL_DIMENSION
from materializer_assets.resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from materializer_tests.langfuse_server import expected_cells
from materializer_tests.langfuse_server.data import DAY, GLM, NEXT_DAY, PREVIOUS_DAY, _add_trace, at

TODAY = date(2026, 4, 20)  # complete days: up to 2026-04-19; lookback 3: 04-17 … 04-19


def _clock() -> datetime:
    return datetime(2026, 4, 20, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def _resources(source: str, warehouse: str) -> dict:
    return {
        "trace_source": TraceSourceResource(source=source),
        "privacy": PrivacyResource(),
        "erasure": ErasureResource(),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=warehouse),
    }


class Ticker:
    """Evaluates one sensor tick after another, keeping the cursor like the daemon."""

    def __init__(self, sensor, instance, resources):
        self.sensor = sensor
        self.instance = instance
        self.resources = resources
        self.defs = dg.Definitions(assets=ASSETS, sensors=[sensor], jobs=[materialize_cells], resources=resources)
        self.cursor = None

    def tick(self):
        # Like the daemon: an instance ref, so partition keys are checked against the
        # instance's partitions plus those this tick adds.
        context = dg.build_sensor_context(
            instance=self.instance,
            instance_ref=self.instance.get_ref(),
            cursor=self.cursor,
            resources=self.resources,
            definitions=self.defs,
            sensor_name=self.sensor.name,
        )
        data = self.sensor.evaluate_tick(context)
        for request in data.dynamic_partitions_requests or []:  # what the daemon does first
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursor = data.cursor
        return data

    def run(self, request) -> dg.ExecuteInProcessResult:
        job = self.defs.get_job_def(materialize_cells.name)
        return job.execute_in_process(
            instance=self.instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
        )


def _cells(data) -> set[tuple[str, str]]:
    cells = set()
    for request in data.run_requests or []:
        keys = request.partition_key.keys_by_dimension if hasattr(request.partition_key, "keys_by_dimension") else None
        day, _, slug = str(request.partition_key).partition("|")
        cells.add((keys["date"], keys["model"]) if keys else (day, slug))
    return cells


@pytest.mark.parametrize("version", ["4.2.0", "3.120.0"], ids=["v4", "v3"])
def test_langfuse_sensor_registers_models_requests_cells_and_picks_up_late_traces(
    make_langfuse_server, langfuse_source, instance, tmp_path, version
):
    server = make_langfuse_server(version)
    sensor = build_langfuse_sensor(clock=_clock)
    ticker = Ticker(sensor, instance, _resources(langfuse_source(server), str(tmp_path / "warehouse")))
    assert instance.get_dynamic_partitions(MODEL_DIMENSION) == []

    first = ticker.tick()
    wanted = (
        expected_cells(server.data, PREVIOUS_DAY)
        | expected_cells(server.data, DAY)
        | expected_cells(server.data, NEXT_DAY)
    )
    assert _cells(first) == wanted and len(first.run_requests) == len(wanted)
    assert set(instance.get_dynamic_partitions(MODEL_DIMENSION)) == {slug for _, slug in wanted}
    assert all(r.tags[TRIGGER_TAG] == "langfuse_new_traces" and r.run_key for r in first.run_requests)
    assert json.loads(first.cursor)["watermark"] == "2026-04-19"

    nothing = ticker.tick()
    assert not nothing.run_requests and not nothing.dynamic_partitions_requests
    # A restart: a new process evaluates a new sensor object with the stored cursor.
    restarted = Ticker(build_langfuse_sensor(clock=_clock), instance, ticker.resources)
    restarted.cursor = ticker.cursor
    assert not restarted.tick().run_requests
    # Even with its cursor lost, a tick asks for the same run keys, which Dagster drops as already seen.
    amnesiac = Ticker(build_langfuse_sensor(clock=_clock), instance, ticker.resources)
    assert {r.run_key for r in amnesiac.tick().run_requests} == {r.run_key for r in first.run_requests}

    server.release_late()  # a glm trace of 2026-04-18 reaches Langfuse after that day was read
    late = ticker.tick()
    assert _cells(late) == {(DAY.isoformat(), model_slug(GLM))}
    assert not late.dynamic_partitions_requests
    assert late.run_requests[0].run_key != next(r.run_key for r in first.run_requests if _cells_of(r) == _cells(late))

    # A model nobody has seen: a new partition and exactly its cell, in the same tick.
    _add_trace(server.data, 7, NEXT_DAY, at(NEXT_DAY, 10), "Mistral/Small 3.1 (EU)")
    new_model = ticker.tick()
    slug = model_slug("Mistral/Small 3.1 (EU)")
    assert _cells(new_model) == {(NEXT_DAY.isoformat(), slug)}
    assert [list(r.partition_keys) for r in new_model.dynamic_partitions_requests] == [[slug]]
    assert slug in instance.get_dynamic_partitions(MODEL_DIMENSION)
    assert not ticker.tick().run_requests  # and quiet again


def _cells_of(request) -> set[tuple[str, str]]:
    keys = request.partition_key.keys_by_dimension
    return {(keys["date"], keys["model"])}


def test_requested_cells_materialize_through_the_sensor_job(make_langfuse_server, langfuse_source, instance, tmp_path):
    server = make_langfuse_server("4.2.0")
    warehouse = tmp_path / "warehouse"
    ticker = Ticker(build_langfuse_sensor(clock=_clock), instance, _resources(langfuse_source(server), str(warehouse)))
    requests = ticker.tick().run_requests
    glm = next(r for r in requests if _cells_of(r) == {(DAY.isoformat(), model_slug(GLM))})
    result = ticker.run(glm)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_traces", "consented_parquet"}
    assert result.dagster_run.tags[TRIGGER_TAG] == "langfuse_new_traces"
    cell = warehouse / "langfuse-traces" / f"date={DAY}" / f"model={model_slug(GLM)}"
    assert json.loads((cell / "_manifest.json").read_text())["files"]
    # The cell's partition run is recorded on the instance, as the UI shows it.
    assert instance.get_latest_materialization_event(dg.AssetKey("raw_traces")) is not None


def test_langfuse_sensor_skips_other_sources(instance, tmp_path):
    sensor = build_langfuse_sensor(clock=_clock)
    ticker = Ticker(sensor, instance, _resources(str(tmp_path), str(tmp_path / "warehouse")))
    data = ticker.tick()
    assert not data.run_requests and "not a Langfuse server" in data.skip_message


def test_a_sensor_that_cannot_reach_langfuse_fails_the_tick_and_keeps_its_cursor(
    make_langfuse_server, langfuse_source, instance, tmp_path, monkeypatch
):
    monkeypatch.setenv("MATERIALIZER_LANGFUSE_MAX_ATTEMPTS", "1")
    server = make_langfuse_server("4.2.0")
    ticker = Ticker(
        build_langfuse_sensor(clock=_clock), instance, _resources(langfuse_source(server), str(tmp_path / "w"))
    )
    ticker.tick()
    cursor = ticker.cursor
    server.fail("/api/public/v2/observations", status=503, times=None)
    with pytest.raises(Exception, match="HTTP 503"):
        ticker.tick()
    assert ticker.cursor == cursor


# ---------------------------------------------------------------- blob-export files


def _jsonl(path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def _chat(trace_id: str, day: str, model: str) -> dict:
    return {
        "id": trace_id,
        "timestamp": f"{day}T10:00:00Z",
        "model": model,
        "user_id": "u1",
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    }


def _generation(observation_id: str, trace_id: str, day: str, model: str) -> dict:
    return {
        "id": observation_id,
        "trace_id": trace_id,
        "type": "GENERATION",
        "start_time": f"{day}T08:00:00Z",
        "provided_model_name": model,
        "input": [{"role": "user", "content": "q"}],
        "output": "a",
    }


def test_blob_export_sensor_requests_the_cells_of_new_files(instance, tmp_path):
    source = tmp_path / "export"
    _jsonl(
        source / "chats" / "a.jsonl", [_chat("c1", "2026-04-19", "glm-5-32b"), _chat("c2", "2026-04-10", "old-model")]
    )
    _jsonl(
        source / "proj" / "traces" / "2026-04-19T00:00:00.000Z.jsonl",
        [{"id": "t1", "timestamp": "2026-04-18T08:00:00Z"}],
    )
    _jsonl(
        source / "proj" / "observations" / "2026-04-19T00:00:00.000Z.jsonl",
        [_generation("g1", "t1", "2026-04-18", "Qwen/Qwen3-Coder-4B-Instruct")],
    )
    ticker = Ticker(build_blob_export_sensor(clock=_clock), instance, _resources(str(source), str(tmp_path / "w")))

    first = ticker.tick()
    qwen = model_slug("Qwen/Qwen3-Coder-4B-Instruct")
    # 2026-04-10 is outside the lookback window: a backfill, not the sensor's job.
    assert _cells(first) == {("2026-04-19", "glm-5-32b"), ("2026-04-18", qwen)}
    assert set(instance.get_dynamic_partitions(MODEL_DIMENSION)) == {"glm-5-32b", qwen}
    assert not ticker.tick().run_requests  # nothing new

    # A new plain file: exactly its own cells.
    _jsonl(source / "chats" / "b.jsonl", [_chat("c3", "2026-04-17", "gpt-4o-mini")])
    assert _cells(ticker.tick()) == {("2026-04-17", "gpt-4o-mini")}
    # A new export window (a scores file): every model of the days it covers.
    _jsonl(
        source / "proj" / "scores" / "2026-04-19T00:00:00.000Z.jsonl",
        [{"id": "s1", "trace_id": "t1", "name": "user_feedback", "value": 1}],
    )
    assert _cells(ticker.tick()) == {("2026-04-18", qwen)}
    assert not ticker.tick().run_requests


def test_blob_export_sensor_on_s3(instance, tmp_path, s3_bucket):
    s3 = boto3.client("s3")
    record = json.dumps(_chat("c1", "2026-04-18", "glm-5-32b")) + "\n"
    s3.put_object(Bucket=s3_bucket, Key="exports/chats/a.jsonl", Body=record.encode())
    ticker = Ticker(
        build_blob_export_sensor(clock=_clock), instance, _resources(f"s3://{s3_bucket}/exports", str(tmp_path / "w"))
    )
    assert _cells(ticker.tick()) == {("2026-04-18", "glm-5-32b")}
    assert not ticker.tick().run_requests
    s3.put_object(
        Bucket=s3_bucket, Key="exports/chats/b.jsonl", Body=json.dumps(_chat("c2", "2026-04-19", "m2")).encode()
    )
    assert _cells(ticker.tick()) == {("2026-04-19", "m2")}


# ---------------------------------------------------------------- the daily schedule


def test_daily_schedule_requests_yesterdays_cells_at_six(make_langfuse_server, langfuse_source, instance, tmp_path):
    server = make_langfuse_server("4.2.0")
    resources = _resources(langfuse_source(server), str(tmp_path / "w"))
    schedule = build_daily_schedule()
    assert schedule.cron_schedule == "0 6 * * *" and schedule.execution_timezone == "UTC"
    defs = dg.Definitions(assets=ASSETS, schedules=[schedule], jobs=[materialize_cells], resources=resources)
    context = dg.build_schedule_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        scheduled_execution_time=datetime(2026, 4, 19, 6, tzinfo=timezone.utc),
        resources=resources,
        repository_def=defs.get_repository_def(),
    )
    data = schedule.evaluate_tick(context)
    assert _cells(data) == expected_cells(server.data, DAY)
    assert set(instance.get_dynamic_partitions(MODEL_DIMENSION)) == {
        slug for _, slug in expected_cells(server.data, DAY)
    }
    assert len({r.run_key for r in data.run_requests}) == len(data.run_requests)
    # A day without traces: skipped, by name.
    quiet = dg.build_schedule_context(
        instance=instance,
        instance_ref=instance.get_ref(),
        scheduled_execution_time=datetime(2026, 4, 3, 6, tzinfo=timezone.utc),
        resources=resources,
        repository_def=defs.get_repository_def(),
    )
    assert "no traces on 2026-04-02" in schedule.evaluate_tick(quiet).skip_message
