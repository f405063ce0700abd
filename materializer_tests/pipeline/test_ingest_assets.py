"""raw_traces → consented_parquet through real Dagster runs (``materialize``)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import dagster as dg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from materializer_assets.pipeline.ingest import ASSETS
from materializer_assets.lib.slugs import model_slug
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from materializer_tests.pipeline.results import materialization_metadata

DAY = "2026-04-18"
QWEN = "Qwen/Qwen3-Coder-4B-Instruct"


def _chat(trace_id, user, consent, *, model=QWEN, day=DAY, answer="Sure, here it is.", question="How do I sort?", **extra):
    record = {
        "id": trace_id,
        "timestamp": f"{day}T10:00:00Z",
        "model": model,
        "user_id": user,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        **extra,
    }
    if consent is not ...:
        record["consent"] = consent
    return record


def _write_jsonl(path: Path, records: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in records:
            out.write(record if isinstance(record, str) else json.dumps(record))
            out.write("\n")


@pytest.fixture
def source_dir(tmp_path) -> Path:
    folder = tmp_path / "source"
    _write_jsonl(
        folder / "a.jsonl",
        [
            _chat("t-granted", "alice", True, question="Mail me at alice@example.com"),
            _chat("t-refused", "bob", "false"),
            _chat("t-no", "bob2", "no"),
            _chat("t-unknown", "carol", ...),
            _chat("t-empty-string", "dan", ""),
            _chat("t-empty-response", "erin", True, answer=""),
            _chat("t-revoked", "frank", True),  # frank's newest registry row refuses: forgotten, written nowhere
            _chat("t-withdrawn", "hank", True),  # hank withdrew after this trace, then granted again: refused
            _chat("t-registry-grant", "gina", ...),  # the registry grants gina
            _chat("t-other-model", "alice", True, model="glm-5-32b"),
            _chat("t-other-day", "alice", True, day="2026-04-17"),
            "{not json",
        ],
    )
    _write_jsonl(folder / "b.jsonl", [_chat("t-granted", "alice", True)])  # duplicate across files
    (tmp_path / "registry.csv").write_text(
        "user_id,granted,updated_at\nfrank,false,2026-04-20T00:00:00Z\ngina,true,2026-04-01T00:00:00Z\n"
        "hank,true,2026-04-01T00:00:00Z\nhank,false,2026-04-20T00:00:00Z\nhank,true,2026-04-21T00:00:00Z\n"
    )
    return folder


def _resources(source: str, warehouse: str, registry: str = "", erasure_list: str = "") -> dict:
    return {
        "trace_source": TraceSourceResource(source=source, consent_registry=registry),
        "privacy": PrivacyResource(),
        "erasure": ErasureResource(erasure_list=erasure_list),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=warehouse),
    }


def _materialize(resources, slug, day=DAY, instance=None, selection=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_DIMENSION, [slug])
    return dg.materialize(
        ASSETS, selection=selection, partition_key=cell_key(day, slug), resources=resources, instance=instance,
        raise_on_error=False,
    )


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _blocking_checks(result) -> dict[str, bool]:
    return {
        e.check_name: e.passed
        for e in result.get_asset_check_evaluations()
        if e.severity == dg.AssetCheckSeverity.ERROR
    }


def test_a_cell_keeps_only_consented_redacted_unique_rows(source_dir, tmp_path):
    warehouse = tmp_path / "warehouse"
    slug = model_slug(QWEN)
    result = _materialize(_resources(str(source_dir), str(warehouse), str(tmp_path / "registry.csv")), slug)
    assert result.success
    checks = _checks(result)
    assert checks.pop("no_rejected_records") is False  # the malformed line, reported as a warning
    assert all(checks.values()), checks

    consented = warehouse / f"langfuse-traces/date={DAY}/model={slug}/consent=true"
    table = ds.dataset(list(consented.glob("part-*.parquet"))).to_table()
    assert sorted(table.column("trace_id").to_pylist()) == ["t-granted", "t-registry-grant"]
    assert table.column("consent").to_pylist() == [True, True]
    by_id = {row["trace_id"]: row for row in table.to_pylist()}
    assert by_id["t-registry-grant"]["consent_source"] == "registry"
    assert "alice@example.com" not in json.dumps(by_id["t-granted"]["messages"])
    assert "<EMAIL>" in by_id["t-granted"]["prompt"]

    raw = materialization_metadata(result, "raw_traces")
    assert raw["rows"] == 9  # 8 of the cell + the duplicate from b.jsonl; not frank's
    assert raw["rows_dropped_forgotten_users"] == 1
    assert raw["rows_by_consent"] == {"true": 4, "false": 3, "unknown": 2}
    assert raw["rejected_unattributed_by_reason"] == {"malformed_json": 1}
    consented_meta = materialization_metadata(result, "consented_parquet")
    assert consented_meta["rows_consented"] == 2
    assert consented_meta["rows_refused"] == 3  # bob, bob2, hank (withdrawn after the trace)
    assert consented_meta["rows_unknown_consent"] == 2  # carol, dan
    assert consented_meta["rows_dropped"] == {"empty_response": 1, "duplicate_id": 1, "forgotten_user": 0}
    assert consented_meta["redactions"]["EMAIL"] >= 1
    # the registry grants (gina): every raw folder is read
    assert (consented_meta["raw_rows_read_whole"], consented_meta["raw_rows_only_counted"]) == (9, 0)

    # raw keeps every consent state in its own folder
    raw_cell = warehouse / f"raw-traces/date={DAY}/model={slug}"
    refused = pq.read_table(next((raw_cell / "consent=false").glob("*.parquet")))
    assert sorted(refused.column("trace_id").to_pylist()) == ["t-no", "t-refused", "t-withdrawn"]
    # raw does not store messages that only repeat prompt and response; consented has them whole
    assert refused.column("messages").null_count == refused.num_rows
    assert [m["role"] for m in by_id["t-granted"]["messages"]] == ["user", "assistant"]
    assert by_id["t-granted"]["messages"][0]["content"] == by_id["t-granted"]["prompt"]
    assert not any("frank" in pq.read_table(p).column("user_id").to_pylist() for p in warehouse.rglob("*.parquet"))
    assert not any("consent=true" in str(p) and "t-unknown" in pq.read_table(p).column("trace_id").to_pylist()
                   for p in raw_cell.rglob("*.parquet"))


@pytest.mark.parametrize("on_s3", [False, True], ids=["local", "s3"])
def test_without_a_granting_registry_only_consented_raw_files_are_read(source_dir, tmp_path, request, on_s3):
    warehouse = f"s3://{request.getfixturevalue('s3_bucket')}/lake" if on_s3 else str(tmp_path / "warehouse")
    resources, slug, instance = _resources(str(source_dir), warehouse), model_slug(QWEN), dg.DagsterInstance.ephemeral()
    result = _materialize(resources, slug, instance=instance)
    assert result.success and all(_blocking_checks(result).values()), _checks(result)
    one_pass = materialization_metadata(result, "consented_parquet")
    # Both assets selected: consented is made from the source stream alongside raw, nothing is read back.
    assert (one_pass["raw_rows_read_whole"], one_pass["raw_rows_only_counted"]) == (10, 0)

    # consented_parquet alone (e.g. after a registry change) is made from the published raw cell
    result = _materialize(resources, slug, instance=instance, selection=["consented_parquet"])
    assert result.success and all(_blocking_checks(result).values()), _checks(result)
    assert {e.asset_key.to_user_string() for e in result.get_asset_check_evaluations()} == {"consented_parquet"}
    meta = materialization_metadata(result, "consented_parquet")
    # consent=true holds alice (twice), erin, frank and hank; bob, bob2, carol, dan and gina are only counted
    assert (meta["raw_rows_read_whole"], meta["raw_rows_only_counted"]) == (5, 5)
    for metadata in (one_pass, meta):
        assert (metadata["rows_consented"], metadata["rows_refused"], metadata["rows_unknown_consent"]) == (3, 2, 3)
        assert metadata["rows_dropped"] == {"empty_response": 1, "duplicate_id": 1, "forgotten_user": 0}
    assert _checks(result)["counts_reconcile"]
    # made from raw, whose messages were compacted: restored whole
    if not on_s3:
        rows = ds.dataset(f"{warehouse}/langfuse-traces/date={DAY}/model={slug}").to_table().to_pylist()
        assert len(rows) == 3
        assert all([m["content"] for m in row["messages"]] == [row["prompt"], row["response"]] for row in rows)


def test_rerunning_a_cell_replaces_it(source_dir, tmp_path):
    warehouse = tmp_path / "warehouse"
    resources = _resources(str(source_dir), str(warehouse), str(tmp_path / "registry.csv"))
    instance = dg.DagsterInstance.ephemeral()
    slug = model_slug(QWEN)
    assert _materialize(resources, slug, instance=instance).success
    first = sorted(p.name for p in warehouse.rglob("*.parquet"))
    assert _materialize(resources, slug, instance=instance).success
    files = list((warehouse / f"langfuse-traces/date={DAY}/model={slug}").rglob("*.parquet"))
    assert ds.dataset(files).count_rows() == 2
    assert len(sorted(p.name for p in warehouse.rglob("*.parquet"))) == len(first)
    assert not (warehouse / "_staging").exists() or not any((warehouse / "_staging").iterdir())


def test_a_day_without_data_is_an_empty_cell(source_dir, tmp_path):
    result = _materialize(_resources(str(source_dir), str(tmp_path / "wh")), "glm-5-32b", day="2026-04-10")
    assert result.success
    assert materialization_metadata(result, "consented_parquet")["rows"] == 0
    assert all(_blocking_checks(result).values())


def test_an_unreachable_source_fails_naming_it_and_publishes_nothing(tmp_path):
    missing = tmp_path / "does-not-exist"
    result = _materialize(_resources(str(missing), str(tmp_path / "wh")), "glm-5-32b")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert str(missing) in failure.step_failure_data.error.message + str(failure.step_failure_data.error.cause)
    assert not list((tmp_path / "wh").rglob("*.parquet"))


def test_an_unreadable_registry_fails_closed(source_dir, tmp_path):
    result = _materialize(_resources(str(source_dir), str(tmp_path / "wh"), str(tmp_path / "nope.csv")), model_slug(QWEN))
    assert not result.success
    assert not list((tmp_path / "wh").rglob("consent=true/*.parquet"))


def test_s3_warehouse_on_moto(source_dir, tmp_path, s3_bucket):
    slug = model_slug(QWEN)
    result = _materialize(
        _resources(str(source_dir), f"s3://{s3_bucket}/lake", str(tmp_path / "registry.csv")), slug
    )
    assert result.success, _checks(result)
    s3 = boto3.client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    consented = [k for k in keys if k.startswith(f"lake/langfuse-traces/date={DAY}/model={slug}/consent=true/part-")]
    assert len(consented) == 1
    # nothing staged is left (pyarrow may keep an empty "_staging/" folder marker)
    assert not [k for k in keys if "/_staging/" in k and not k.endswith("/")]
    import pyarrow.fs as pafs

    fs = pafs.S3FileSystem(endpoint_override=s3.meta.endpoint_url.split("://")[1], scheme="http")
    table = pq.read_table(f"{s3_bucket}/{consented[0]}", filesystem=fs)
    assert sorted(table.column("trace_id").to_pylist()) == ["t-granted", "t-registry-grant"]


def test_bundled_sample_day_materializes_with_passing_checks(tmp_path):
    from materializer_assets.lib.sources import open_source

    reader = open_source("")
    from datetime import date

    slugs = sorted({model_slug(name) for name in reader.models_on(date.fromisoformat(DAY))})
    assert len(slugs) >= 3
    resources = _resources("", str(tmp_path / "wh"))
    instance = dg.DagsterInstance.ephemeral()
    total_consented = 0
    for slug in slugs:
        result = _materialize(resources, slug, instance=instance)
        assert result.success, slug
        blocking = _blocking_checks(result)
        assert all(blocking.values()), (slug, blocking)
        total_consented += materialization_metadata(result, "consented_parquet")["rows"]
    assert total_consented > 0
    for path in (tmp_path / "wh" / "langfuse-traces").rglob("*.parquet"):
        table = pq.read_table(path, columns=["consent", "consent_source"])
        assert set(table.column("consent").to_pylist()) == {True}


@pytest.mark.parametrize("model", ["acme|router v2", "../../etc", "modèle/été,1", "a" * 300])
def test_odd_model_names_get_their_own_cell(tmp_path, model):
    folder = tmp_path / "source"
    _write_jsonl(folder / "x.jsonl", [_chat("t1", "alice", True, model=model), _chat("t2", "alice", True, model="glm-5-32b")])
    slug = model_slug(model)
    warehouse = tmp_path / "wh"
    result = _materialize(_resources(str(folder), str(warehouse)), slug)
    assert result.success
    cells = list((warehouse / "langfuse-traces" / f"date={DAY}").iterdir())
    assert [cell.name for cell in cells] == [f"model={slug}"]  # never a path outside the cell
    table = ds.dataset(list(cells[0].rglob("*.parquet"))).to_table()
    assert table.column("model").to_pylist() == [model]
    assert table.column("trace_id").to_pylist() == ["t1"]


def test_a_5mb_response_goes_through(tmp_path):
    folder = tmp_path / "source"
    big = "lorem ipsum " * (5 * 2**20 // 12)
    _write_jsonl(folder / "x.jsonl", [_chat("big", "alice", True, model="glm-5-32b", answer=big)])
    warehouse = tmp_path / "wh"
    result = _materialize(_resources(str(folder), str(warehouse)), "glm-5-32b")
    assert result.success
    files = list((warehouse / "langfuse-traces").rglob("*.parquet"))
    assert pq.read_table(files[0]).column("response").to_pylist() == [big]
