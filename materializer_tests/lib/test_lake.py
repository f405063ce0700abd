"""The Parquet lake on a local folder and on moto's S3 server."""

from __future__ import annotations

import json
import threading

import boto3
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib import erasure as er
from materializer_assets.lib.lake import (
    MANIFEST_NAME,
    CellAddress,
    CellNotMaterialized,
    FixedSplit,
    ParquetLake,
    ParquetWriteOptions,
    StageAlongside,
    iter_batches,
    read_ahead,
)
from materializer_assets.lib.stages import ConsentViolation, require_granted, split_by_consent
from materializer_assets.lib.storage import resolve

from .helpers import make_batch

ADDRESS = CellAddress("langfuse-traces", "2026-04-18", "glm-5-32b")


def _lake(root: str, **options) -> ParquetLake:
    return ParquetLake(resolve(root), ParquetWriteOptions(**options))


def _rows(lake: ParquetLake, address=ADDRESS) -> list[str]:
    return sorted(lake.open_cell(address).to_table(columns=["trace_id"]).column(0).to_pylist())


@pytest.fixture(params=["local", "s3"])
def lake_root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "warehouse")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/warehouse"


def test_write_publish_and_read_back(lake_root):
    lake = _lake(lake_root)
    batch = make_batch(10, consent=True)
    result = lake.write_cell(ADDRESS, iter([batch]), batch.schema, split=lambda b: {"consent=true": b})
    assert result.rows == 10 and len(result.files) == 1 and result.bytes > 0
    assert result.files[0].startswith("consent=true/part-")
    assert _rows(lake) == sorted(batch.column("trace_id").to_pylist())
    manifest = lake.manifest(ADDRESS)
    assert manifest["rows"] == 10 and manifest["files"] == result.files
    # Hive layout of our design document
    assert lake.cell_files(ADDRESS)[0].endswith(
        f"langfuse-traces/date=2026-04-18/model=glm-5-32b/consent=true/{result.files[0].split('/')[-1]}"
    )


def test_rewriting_a_cell_replaces_it_without_leftovers(lake_root):
    lake = _lake(lake_root)
    first = make_batch(10, consent=True)
    lake.write_cell(ADDRESS, iter([first]), first.schema, split=lambda b: {"consent=true": b})
    second = make_batch(4, consent=True, prefix="new")
    lake.write_cell(ADDRESS, iter([second]), second.schema, split=lambda b: {"consent=true": b})
    assert _rows(lake) == sorted(second.column("trace_id").to_pylist())
    # only the new version's files remain under the cell, staging is empty
    files = _all_files(lake, lake.cell_path(ADDRESS))
    assert sorted(f for f in files if not f.endswith(MANIFEST_NAME)) == sorted(lake.cell_files(ADDRESS))
    assert not _all_files(lake, f"{lake.root.path}/_staging")


def test_failure_halfway_publishes_nothing_and_keeps_the_previous_version(lake_root):
    lake = _lake(lake_root, row_group_rows=5)
    good = make_batch(6, consent=True)
    lake.write_cell(ADDRESS, iter([good]), good.schema)

    def failing_stream():
        yield make_batch(7, consent=True, prefix="half")  # written to staging
        raise ConnectionError("source went away")

    with pytest.raises(ConnectionError):
        lake.write_cell(ADDRESS, failing_stream(), good.schema)
    assert _rows(lake) == sorted(good.column("trace_id").to_pylist())
    assert not _all_files(lake, f"{lake.root.path}/_staging")
    live = sorted(f for f in _all_files(lake, lake.cell_path(ADDRESS)) if not f.endswith(MANIFEST_NAME))
    assert live == sorted(lake.cell_files(ADDRESS))


def test_reading_a_cell_never_written_is_a_clear_error(lake_root):
    with pytest.raises(CellNotMaterialized, match="has not been materialized"):
        _lake(lake_root).open_cell(ADDRESS)


def test_an_empty_stream_publishes_an_empty_cell(lake_root):
    lake = _lake(lake_root)
    schema = make_batch(1).schema
    result = lake.write_cell(ADDRESS, iter([]), schema)
    assert result.rows == 0 and result.files == []
    assert lake.open_cell(ADDRESS, schema).count_rows() == 0


def test_split_by_consent_writes_three_subfolders(tmp_path):
    lake = _lake(str(tmp_path))
    batch = pa.concat_batches(
        [make_batch(3, consent=True, prefix="y"), make_batch(2, consent=False, prefix="n"), make_batch(1, consent=None, prefix="u")]
    )
    result = lake.write_cell(ADDRESS, iter([batch]), batch.schema, split=split_by_consent)
    assert result.rows_by_subpath == {"consent=true": 3, "consent=false": 2, "consent=unknown": 1}
    true_files = [f for f in lake.cell_files(ADDRESS) if "/consent=true/" in f]
    assert pq.read_table(true_files[0]).column("consent").to_pylist() == [True] * 3


def test_consent_guard_aborts_the_whole_cell(tmp_path):
    lake = _lake(str(tmp_path))
    batch = pa.concat_batches([make_batch(3, consent=True), make_batch(1, consent=None, prefix="u")])
    with pytest.raises(ConsentViolation):
        lake.write_cell(ADDRESS, iter([batch]), batch.schema, guard=require_granted)
    with pytest.raises(CellNotMaterialized):
        lake.open_cell(ADDRESS)


def test_streaming_write_rolls_row_groups_and_files(tmp_path):
    lake = _lake(str(tmp_path), row_group_rows=100, max_rows_per_file=250)
    batches = [make_batch(50, prefix=f"b{i}") for i in range(12)]  # 600 rows
    result = lake.write_cell(ADDRESS, iter(batches), batches[0].schema)
    assert result.rows == 600
    # a file closes once it holds max_rows_per_file rows (whole row groups)
    assert len(result.files) == 2
    metadata = pq.ParquetFile(lake.cell_files(ADDRESS)[0]).metadata
    assert metadata.num_rows == 300 and metadata.num_row_groups == 3
    assert metadata.row_group(0).column(0).compression == "ZSTD"


def test_s3_files_are_where_the_layout_says(s3_bucket):
    lake = _lake(f"s3://{s3_bucket}/wh")
    batch = make_batch(3, consent=True)
    lake.write_cell(ADDRESS, iter([batch]), batch.schema, split=lambda b: {"consent=true": b})
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"wh/langfuse-traces/date=2026-04-18/model=glm-5-32b/{MANIFEST_NAME}" in keys
    parquet_keys = [k for k in keys if k.endswith(".parquet")]
    assert len(parquet_keys) == 1
    assert parquet_keys[0].startswith("wh/langfuse-traces/date=2026-04-18/model=glm-5-32b/consent=true/part-")
    body = boto3.client("s3").get_object(Bucket=s3_bucket, Key=f"wh/langfuse-traces/date=2026-04-18/model=glm-5-32b/{MANIFEST_NAME}")["Body"].read()
    assert json.loads(body)["rows"] == 3


def _all_files(lake: ParquetLake, path: str) -> list[str]:
    import pyarrow.fs as pafs

    infos = lake.filesystem.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    return [info.path for info in infos if info.type == pafs.FileType.File]


def test_row_groups_are_cut_by_the_shared_byte_budget(tmp_path):
    # Large rows: the budget, not the row count, ends each row group, over all sub-folders together.
    lake = _lake(str(tmp_path), row_group_rows=10_000, buffer_bytes=256 * 1024)
    batches = [make_batch(100, consent=[True, False][i % 2], prefix=f"b{i}") for i in range(20)]
    big = [
        b.set_column(b.schema.get_field_index("response"), "response", pa.array(["x" * 5_000] * b.num_rows))
        for b in batches
    ]
    result = lake.write_cell(ADDRESS, iter(big), big[0].schema, split=split_by_consent)
    assert result.rows == 2_000
    for path in lake.cell_files(ADDRESS):
        metadata = pq.ParquetFile(path).metadata
        assert metadata.num_row_groups > 1
        # ~5 kB rows under a 256 kB budget: never a row group of thousands of rows
        assert max(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)) <= 200


def test_iter_batches_reads_row_group_by_row_group_and_fills_appended_columns(tmp_path):
    lake = _lake(str(tmp_path), row_group_rows=40)
    batch = make_batch(100)
    lake.write_cell(ADDRESS, iter([batch.drop_columns(["tools"])]), batch.schema.remove(batch.schema.get_field_index("tools")))
    # Read with the full schema, as a file written before ``tools`` was appended is.
    dataset = lake.open_cell(ADDRESS, schema=batch.schema)
    batches = list(iter_batches(dataset, batch_size=1_000))
    assert [b.num_rows for b in batches] == [40, 40, 20]  # one row group at a time
    table = pa.Table.from_batches(batches)
    assert table.column("trace_id").to_pylist() == batch.column("trace_id").to_pylist()
    assert table.column("tools").null_count == 100
    assert [b.num_rows for b in iter_batches(dataset, columns=["trace_id"])] == [40, 40, 20]


def test_read_ahead_yields_everything_in_order():
    assert list(read_ahead(iter(range(1_000)), depth=3)) == list(range(1_000))


def test_read_ahead_raises_the_sources_error_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise OSError("connection reset")

    seen = []
    with pytest.raises(OSError, match="connection reset"):
        for item in read_ahead(source()):
            seen.append(item)
    assert seen == [1, 2]


def test_read_ahead_closes_the_source_when_the_consumer_stops_early():
    closed = threading.Event()

    def source():
        try:
            for number in range(1_000_000):
                yield number
        finally:
            closed.set()

    reader = read_ahead(source(), depth=2)
    assert next(reader) == 0
    reader.close()
    assert closed.wait(5)


def _by_prefix(batch: pa.RecordBatch) -> dict[str, pa.RecordBatch]:
    """train/ for trace ids starting with "a", test/ for the others."""
    import pyarrow.compute as pc

    is_a = pc.starts_with(batch.column("trace_id"), "a")
    return {"train": batch.filter(is_a), "test": batch.filter(pc.invert(is_a))}


def test_fixed_sub_folders_get_an_empty_file_and_keep_it_through_erasure(lake_root):
    lake = _lake(lake_root)
    address = CellAddress("exports/sft", "2026-04-18", "glm-5-32b")
    split = FixedSplit(_by_prefix, ("train", "test"))
    rows = make_batch(3, prefix="a")
    lake.write_cell(address, iter([rows]), rows.schema, split=split)
    manifest = lake.manifest(address)
    assert manifest["rows_by_subpath"] == {"train": 3, "test": 0} and manifest["fixed_subpaths"] == ["train", "test"]
    (empty,) = [f for f in manifest["files"] if f.startswith("test/")]
    table = pq.read_table(f"{lake.cell_path(address)}/{empty}", filesystem=lake.filesystem)
    assert table.num_rows == 0 and table.schema == rows.schema
    # No row group at all: `datasets` sizes its batches by the first row group and fails on an empty one.
    assert pq.ParquetFile(f"{lake.cell_path(address)}/{empty}", filesystem=lake.filesystem).metadata.num_row_groups == 0

    # An empty cell still has both folders.
    lake.write_cell(address, iter([]), rows.schema, split=split)
    assert sorted(f.split("/")[0] for f in lake.manifest(address)["files"]) == ["test", "train"]

    # Erasing every row of a folder leaves it an empty file, not a missing folder.
    lake.write_cell(address, iter([rows]), rows.schema, split=split)
    targets = er.ErasureTargets(frozenset({"user-0", "user-1", "user-2"}))
    erased = er.LakeDatasetOutput(lake, "exports/sft").erase(targets)
    assert erased.rows_removed == 3
    manifest = lake.manifest(address)
    assert manifest["rows"] == 0 and sorted(f.split("/")[0] for f in manifest["files"]) == ["test", "train"]
    assert manifest["fixed_subpaths"] == ["train", "test"]


def _raw_and_consented(lake: ParquetLake, batches, guard=None):
    """raw written from ``batches`` while its consent=true rows are staged alongside (the ingest step's shape)."""
    alongside = StageAlongside(
        lambda stream: lake.stage_cell(
            (b.filter(pc.equal(b.column("consent"), True)) for b in stream), RAW_SCHEMA, guard=guard
        )
    )
    raw = lake.write_cell(RAW, alongside.feed(batches), RAW_SCHEMA, split=split_by_consent)
    return raw, alongside


RAW = CellAddress("raw-traces", "2026-04-18", "glm-5-32b")
RAW_SCHEMA = make_batch(1).schema


def test_a_cell_staged_alongside_is_written_during_the_main_one_and_published_later(lake_root):
    lake = _lake(lake_root, row_group_rows=4)
    batches = [make_batch(5, consent=True, prefix="a"), make_batch(3, consent=False, prefix="b"),
               make_batch(2, consent=True, prefix="c")]
    raw, alongside = _raw_and_consented(lake, iter(batches))
    staged = alongside.result()
    assert raw.rows == 10 and staged.rows == 7
    with pytest.raises(CellNotMaterialized):  # staged, not published
        lake.open_cell(ADDRESS)
    result = lake.write_cell(ADDRESS, staged, RAW_SCHEMA)  # what the IO manager does with a staged cell
    assert result.rows == 7 and len(_rows(lake)) == 7
    assert not _all_files(lake, f"{lake.root.path}/_staging")


def test_a_staged_cell_can_be_discarded(tmp_path):
    lake = _lake(str(tmp_path))
    raw, alongside = _raw_and_consented(lake, iter([make_batch(3, consent=True)]))
    alongside.discard()
    assert raw.rows == 3
    assert not _all_files(lake, f"{lake.root.path}/_staging")
    with pytest.raises(CellNotMaterialized):
        lake.open_cell(ADDRESS)


def test_a_failing_staged_cell_lets_the_main_cell_finish_and_raises_after(tmp_path):
    lake = _lake(str(tmp_path))
    batches = [make_batch(3, consent=True), make_batch(2, consent=None, prefix="u")] * 20

    def no_unknown(batch):
        if batch.column("consent").null_count:
            raise ConsentViolation("unknown consent")

    alongside = StageAlongside(lambda stream: lake.stage_cell(stream, RAW_SCHEMA, guard=no_unknown), depth=1)
    raw = lake.write_cell(RAW, alongside.feed(iter(batches)), RAW_SCHEMA, split=split_by_consent)
    assert raw.rows == 100
    with pytest.raises(ConsentViolation):
        alongside.result()
    assert not _all_files(lake, f"{lake.root.path}/_staging")


def test_when_the_main_cell_fails_the_staged_cell_is_dropped(tmp_path):
    lake = _lake(str(tmp_path))

    def failing_stream():
        yield make_batch(4, consent=True)
        raise ConnectionError("source went away")

    alongside = StageAlongside(lambda stream: lake.stage_cell(stream, RAW_SCHEMA))
    with pytest.raises(ConnectionError):
        lake.write_cell(RAW, alongside.feed(failing_stream()), RAW_SCHEMA)
    with pytest.raises(Exception):
        alongside.result()
    alongside.discard()
    assert not _all_files(lake, f"{lake.root.path}/_staging")
