"""The Iceberg layer on real catalogs: SQLite, PostgreSQL, Glue + S3 on moto's server."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib import checks
from materializer_assets.lib import iceberg as ice
from materializer_assets.lib.iceberg.reading import _row_groups
from materializer_assets.lib.lake import CellAddress, ParquetLake
from materializer_assets.lib.schema import NORMALIZED_SCHEMA
from materializer_assets.lib.storage import resolve
from materializer_tests.lib.helpers import make_batch
from materializer_tests.lib.iceberg_helpers import (
    CATALOG_KINDS,
    all_files,
    file_metrics,
    id_and_text_columns,
    make_case,
    parquet_rows_with,
)

DAY = "2026-04-18"
GLM = "glm-5-32b"
CELL = ice.Cell(DAY, GLM)
OTHER = ice.Cell("2026-04-19", GLM)
# 60 characters: pyiceberg's default metrics would truncate its bounds to 16.
LONG_SLUG = "acme-research-router-v2-instruct-long-context-preview-2026-04"[:60]
assert len(LONG_SLUG) == 60


@pytest.fixture(params=CATALOG_KINDS)
def case(request, tmp_path):
    return make_case(request.param, request, tmp_path)


@pytest.fixture
def sqlite_table(tmp_path):
    catalog = ice.load_catalog(ice.CatalogSettings(name="materializer_test", warehouse=str(tmp_path / "wh")))
    return ice.ensure_table(catalog, ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)


def _live_files(table, cell):
    return sorted(ice.IcebergCell(table.refresh(), cell).files())


def _user_ids(table, cell):
    return sorted(ice.IcebergCell(table.refresh(), cell).to_table(["user_id"]).column("user_id").to_pylist())


# ------------------------------------------------------------------ catalogs


def test_default_catalog_is_sqlite_inside_the_warehouse(tmp_path, monkeypatch):
    monkeypatch.delenv("PYICEBERG_HOME", raising=False)
    warehouse = tmp_path / "wh"
    catalog = ice.load_catalog(ice.CatalogSettings(name="materializer_test", warehouse=str(warehouse)))
    assert type(catalog).__name__ == "SqlCatalog"
    assert (warehouse / "iceberg" / "catalog.db").is_file()
    table = ice.ensure_table(catalog, ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    assert table.location() == f"file://{warehouse}/iceberg/training_data/langfuse_traces"


def test_default_catalog_with_an_s3_warehouse_keeps_sqlite_local_and_data_on_s3(tmp_path, s3_bucket):
    settings = ice.CatalogSettings(
        name="materializer_test", warehouse=f"s3://{s3_bucket}/wh", local_catalog_dir=str(tmp_path / "cat")
    )
    table = ice.ensure_table(ice.load_catalog(settings), ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    assert len(list((tmp_path / "cat").glob("*/catalog.db"))) == 1  # one SQLite file per S3 warehouse
    assert table.location().startswith(f"s3://{s3_bucket}/wh/iceberg/")
    commit = ice.replace_cell_from_batches(table, CELL, [make_batch(3)], NORMALIZED_SCHEMA)
    assert commit.rows == 3 and ice.IcebergCell(table, CELL).count_rows() == 3


def test_catalog_from_pyiceberg_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("PYICEBERG_CATALOG__FROMENV__TYPE", "sql")
    monkeypatch.setenv("PYICEBERG_CATALOG__FROMENV__URI", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("PYICEBERG_CATALOG__FROMENV__WAREHOUSE", f"file://{tmp_path}/envwh")
    settings = ice.CatalogSettings(name="fromenv", warehouse=str(tmp_path / "unused"))
    assert ice.resolve_catalog_properties(settings)[1] == "pyiceberg config"
    table = ice.ensure_table(ice.load_catalog(settings), "ns.t", NORMALIZED_SCHEMA)
    assert (tmp_path / "env.db").is_file()
    assert table.location().startswith(f"file://{tmp_path}/envwh/")
    assert not (tmp_path / "unused").exists()


def test_catalog_from_pyiceberg_yaml_with_explicit_properties_on_top(tmp_path, monkeypatch):
    (tmp_path / ".pyiceberg.yaml").write_text(
        f"catalog:\n  fromyaml:\n    type: sql\n    uri: sqlite:///{tmp_path}/yaml.db\n    warehouse: file://{tmp_path}/yamlwh\n"
    )
    monkeypatch.setenv("PYICEBERG_HOME", str(tmp_path))
    settings = ice.CatalogSettings(name="fromyaml", properties={"warehouse": f"file://{tmp_path}/override"})
    properties, origin = ice.resolve_catalog_properties(settings)
    assert origin == "pyiceberg config + resource config"
    assert properties["uri"] == f"sqlite:///{tmp_path}/yaml.db"
    table = ice.ensure_table(ice.load_catalog(settings), "ns.t", NORMALIZED_SCHEMA)
    assert table.location().startswith(f"file://{tmp_path}/override/")


def test_an_unusable_catalog_fails_naming_it_without_secrets(tmp_path):
    settings = ice.CatalogSettings(
        name="broken",
        properties={"type": "sql", "uri": "postgresql+psycopg://u:hunter2@127.0.0.1:1/db", "s3.secret-access-key": "s3cr3t"},
    )
    with pytest.raises(ice.CatalogConfigError) as info:
        ice.load_catalog(settings)
    message = str(info.value)
    assert "broken" in message and "127.0.0.1" in message
    assert "hunter2" not in message and "s3cr3t" not in message
    with pytest.raises(ice.CatalogConfigError, match="namespace.table"):
        ice.split_identifier("no_namespace")


# ------------------------------------------------------------------ the default catalog, published for pyiceberg


@pytest.fixture
def project_folder(tmp_path, monkeypatch):
    """A working directory with no .pyiceberg.yaml anywhere pyiceberg looks."""
    monkeypatch.delenv("PYICEBERG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in [name for name in os.environ if name.startswith("PYICEBERG_CATALOG__")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _with_pyiceberg(code: str) -> str:
    """``code`` in a new process in the working directory: pyiceberg reads its config once, at import."""
    result = subprocess.run([sys.executable, "-c", f"from pyiceberg.catalog import load_catalog\n{code}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_published_default_catalog_is_what_pyiceberg_loads(project_folder):
    settings = ice.CatalogSettings(name="materializer", warehouse=".materializer/warehouse")
    table = ice.ensure_table(ice.load_catalog(settings), ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    ice.replace_cell_from_batches(table, CELL, [make_batch(3)], NORMALIZED_SCHEMA)

    published = ice.publish_default_catalog(settings)
    assert (published.status, published.path) == ("written", str(project_folder / ".pyiceberg.yaml"))
    assert published.properties == ice.default_catalog_properties(settings)
    loaded = _with_pyiceberg(
        f"table = load_catalog('materializer').load_table('{ice.DEFAULT_TABLE}')\n"
        "print(table.metadata_location, table.scan().to_arrow().num_rows)"
    )
    assert loaded == f"{table.refresh().metadata_location} 3"
    assert ice.publish_default_catalog(settings).status == "unchanged"


def test_a_published_catalog_is_not_read_back_as_configuration(project_folder, tmp_path, monkeypatch):
    first = ice.CatalogSettings(name="materializer", warehouse=str(tmp_path / "first"))
    ice.publish_default_catalog(first)
    moved = ice.CatalogSettings(name="materializer", warehouse=str(tmp_path / "moved"))
    properties, origin = ice.resolve_catalog_properties(moved)
    assert origin == "default SQLite catalog" and str(tmp_path / "moved") in properties["uri"]
    assert ice.publish_default_catalog(moved).status == "written"  # the file follows the default
    assert str(tmp_path / "moved") in (project_folder / ".pyiceberg.yaml").read_text()
    # Environment variables still configure the catalog over a published file.
    monkeypatch.setenv("PYICEBERG_CATALOG__MATERIALIZER__URI", f"sqlite:///{tmp_path}/env.db")
    assert ice.resolve_catalog_properties(moved) == ({"uri": f"sqlite:///{tmp_path}/env.db"}, "pyiceberg config")
    assert ice.publish_default_catalog(moved).status == "configured"


def test_a_users_pyiceberg_yaml_is_never_touched(project_folder, tmp_path):
    settings = ice.CatalogSettings(name="materializer", warehouse=str(tmp_path / "wh"))
    user_config = "catalog:\n  other:\n    type: in-memory\n"
    (project_folder / ".pyiceberg.yaml").write_text(user_config)
    assert ice.publish_default_catalog(settings).status == "shadowed"
    # A published file from before, once its first line is gone, is the user's too.
    (project_folder / ".pyiceberg.yaml").unlink()
    ice.publish_default_catalog(settings)
    claimed = (project_folder / ".pyiceberg.yaml").read_text().split("\n", 1)[1]
    (project_folder / ".pyiceberg.yaml").write_text(claimed)
    assert ice.resolve_catalog_properties(settings)[1] == "pyiceberg config"
    assert ice.publish_default_catalog(settings).status == "configured"
    assert (project_folder / ".pyiceberg.yaml").read_text() == claimed
    # One in the home folder is read first: the working directory's would be ignored, so none is written.
    (project_folder / ".pyiceberg.yaml").unlink()
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pyiceberg.yaml").write_text(user_config)
    assert ice.publish_default_catalog(settings) == ice.PublishedCatalog("shadowed", str(home / ".pyiceberg.yaml"))
    assert not (project_folder / ".pyiceberg.yaml").exists()
    assert (home / ".pyiceberg.yaml").read_text() == user_config


def test_no_secret_is_published(project_folder, tmp_path, s3_bucket):
    from materializer_assets.lib.storage import S3Options

    secret, key_id = "wJalrXUtnFEMI-not-a-real-secret", "AKIA-not-a-real-key"
    settings = ice.CatalogSettings(
        name="materializer", warehouse=f"s3://{s3_bucket}/wh", local_catalog_dir=str(tmp_path / "cat"),
        s3=S3Options(access_key_id=key_id, secret_access_key=secret, session_token="tok-not-real"),
    )
    assert secret in ice.default_catalog_properties(settings).values()  # the pipeline uses them...
    published = ice.publish_default_catalog(settings)
    text = (project_folder / ".pyiceberg.yaml").read_text()
    assert published.status == "written" and f"s3://{s3_bucket}/wh/iceberg" in text and "s3.endpoint" in text
    assert secret not in text and key_id not in text and "tok-not-real" not in text  # ...the file does not


# ------------------------------------------------------------------ one cell, replaced, on every catalog


def test_a_cell_written_twice_has_one_live_copy_and_other_cells_are_untouched(case):
    table = ice.ensure_table(case.catalog(), ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    ice.replace_cell_from_batches(table, OTHER, [make_batch(4, day=OTHER.date, prefix="o")], NORMALIZED_SCHEMA)
    other_files = _live_files(table, OTHER)

    first = ice.replace_cell_from_batches(table, CELL, [make_batch(5), make_batch(5, prefix="u")], NORMALIZED_SCHEMA)
    second = ice.replace_cell_from_batches(table, CELL, [make_batch(5), make_batch(5, prefix="u")], NORMALIZED_SCHEMA)
    assert first.rows == second.rows == 10
    assert first.snapshot_id != second.snapshot_id
    cell = ice.IcebergCell(table, CELL)
    assert cell.count_rows() == 10
    assert checks.check_unique_ids(cell).passed
    assert _live_files(table, CELL) == sorted(f for f in cell.files())
    assert len(cell.files()) == second.files == 1
    assert _live_files(table, OTHER) == other_files  # not rewritten, not re-registered
    assert table.scan().count() == 14

    # The same cell from files the lake wrote: copied, replacing the written version.
    lake = case.lake()
    address = CellAddress("langfuse-traces", DAY, GLM)
    lake.write_cell(address, iter([make_batch(7)]), NORMALIZED_SCHEMA)
    copied = ice.replace_cell_from_files(table, CELL, ice.ParquetCellFiles.from_dataset(lake.open_cell(address)))
    assert copied.method == "copy" and copied.rows == 7
    assert ice.IcebergCell(table, CELL).count_rows() == 7
    assert table.scan().count() == 11


def test_copied_files_belong_to_the_table_and_survive_the_lake_republishing(case):
    table = ice.ensure_table(case.catalog(), ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    lake = case.lake()
    address = CellAddress("langfuse-traces", DAY, GLM)
    lake.write_cell(address, iter([make_batch(6)]), NORMALIZED_SCHEMA)
    lake_files = lake.cell_files(address)
    ice.replace_cell_from_files(table, CELL, ice.ParquetCellFiles.from_dataset(lake.open_cell(address)))
    table_files = ice.IcebergCell(table, CELL).files()
    assert all(f.startswith(table.location()) for f in table_files)

    lake.write_cell(address, iter([make_batch(2, prefix="new")]), NORMALIZED_SCHEMA)  # deletes the old files
    assert not any(lake.filesystem.get_file_info(p).is_file for p in lake_files)
    assert ice.IcebergCell(table, CELL).count_rows() == 6  # the table still reads its own copies


def test_deleting_users_then_purging_leaves_no_file_or_snapshot_with_their_rows(case):
    table = ice.ensure_table(case.catalog(), ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    for cell in (CELL, OTHER):
        for _ in range(2):  # older snapshots hold the rows too
            ice.replace_cell_from_batches(
                table,
                cell,
                [make_batch(3, day=cell.date, user="gone"), make_batch(4, day=cell.date, prefix="k")],
                NORMALIZED_SCHEMA,
            )
    snapshots_before = len(table.snapshots())
    removed = ice.delete_rows(table, "user_id", ["gone", "never-seen"])
    assert removed == {CELL.key: 3, OTHER.key: 3}
    assert len(table.refresh().snapshots()) == snapshots_before + 1  # one batched delete commit
    filesystem, _ = ice.table_filesystem(table)
    assert parquet_rows_with(filesystem, ice.table_files(table), "user_id", ["gone"]) > 0  # still in old snapshots

    report = ice.expire_and_purge(table)
    assert report.expired_snapshots == snapshots_before and report.deleted_files > 0
    assert len(table.refresh().snapshots()) == 1
    files = ice.table_files(table)
    assert parquet_rows_with(filesystem, files, "user_id", ["gone"]) == 0
    assert parquet_rows_with(filesystem, files, "user_id", [f"user-{i}" for i in range(4)]) == 8
    assert _user_ids(table, CELL) == [f"user-{i}" for i in range(4)]
    # only what the one remaining snapshot needs is left
    assert len([f for f in files if f.endswith(".metadata.json")]) == 1
    assert ice.delete_rows(table, "user_id", ["gone"]) == {}  # nothing left: no commit


# ------------------------------------------------------------------ guards, schema evolution


def test_rows_of_another_cell_are_refused_and_nothing_is_committed(sqlite_table):
    table = sqlite_table
    ice.replace_cell_from_batches(table, CELL, [make_batch(2)], NORMALIZED_SCHEMA)
    snapshot = table.current_snapshot().snapshot_id
    files_before = ice.table_files(table)
    with pytest.raises(ice.CellMismatchError, match="date other than '2026-04-18'"):
        ice.replace_cell_from_batches(
            table, CELL, [make_batch(2, prefix="a"), make_batch(2, day="2026-04-17")], NORMALIZED_SCHEMA
        )
    assert table.refresh().current_snapshot().snapshot_id == snapshot
    assert ice.table_files(table) == files_before  # the half-written file was removed


def test_lake_files_of_another_cell_are_refused(sqlite_table, tmp_path):
    lake = ParquetLake(resolve(str(tmp_path / "lake")))
    address = CellAddress("langfuse-traces", "2026-04-17", GLM)
    lake.write_cell(address, iter([make_batch(2, day="2026-04-17")]), NORMALIZED_SCHEMA)
    with pytest.raises(ice.CellMismatchError, match="not only cell 2026-04-18"):
        ice.replace_cell_from_files(sqlite_table, CELL, ice.ParquetCellFiles.from_dataset(lake.open_cell(address)))
    assert sqlite_table.refresh().current_snapshot() is None


def test_a_new_column_arrives_without_rewriting_old_files(tmp_path):
    catalog = ice.load_catalog(ice.CatalogSettings(name="materializer_test", warehouse=str(tmp_path / "wh")))
    old_schema = pa.schema(list(NORMALIZED_SCHEMA)[:-1])  # before "tools" was appended
    table = ice.ensure_table(catalog, ice.DEFAULT_TABLE, old_schema)
    old = pa.Table.from_batches([make_batch(3)]).select(old_schema.names).cast(old_schema)
    ice.replace_cell_from_batches(table, CELL, old.to_batches(), old_schema)
    old_files = _live_files(table, CELL)

    # the lake (new writer) has the new column: copied as it is, the table evolves
    lake = ParquetLake(resolve(str(tmp_path / "lake")))
    new = make_batch(2, day=OTHER.date)
    new = pa.RecordBatch.from_arrays(
        [pa.array(['[{"type": "function"}]'] * 2) if n == "tools" else new.column(n) for n in new.schema.names],
        schema=new.schema,
    )
    address = CellAddress("langfuse-traces", OTHER.date, GLM)
    lake.write_cell(address, iter([new]), NORMALIZED_SCHEMA)
    commit = ice.replace_cell_from_files(table, OTHER, ice.ParquetCellFiles.from_dataset(lake.open_cell(address)))
    assert commit.columns_added == ["tools"] and commit.method == "copy"
    assert table.refresh().schema().find_field("tools").optional
    assert table.properties["write.metadata.metrics.column.tools"] == "none"  # the new column's metrics too
    assert _live_files(table, CELL) == old_files  # old data files untouched
    old_cell = ice.IcebergCell(table, CELL).to_table()
    assert old_cell.column("tools").to_pylist() == [None] * 3
    assert ice.IcebergCell(table, OTHER).to_table().column("tools").to_pylist() == ['[{"type": "function"}]'] * 2
    # a second write with the same schema changes nothing
    again = ice.replace_cell_from_files(table, OTHER, ice.ParquetCellFiles.from_dataset(lake.open_cell(address)))
    assert again.columns_added == []


def test_an_incompatible_change_fails_with_a_clear_message_and_changes_nothing(sqlite_table):
    table = sqlite_table
    ice.replace_cell_from_batches(table, CELL, [make_batch(2)], NORMALIZED_SCHEMA)
    schema_id = table.schema().schema_id
    batch = make_batch(2)
    bad_schema = pa.schema([pa.field("latency_ms", pa.string()) if f.name == "latency_ms" else f for f in batch.schema])
    bad = pa.RecordBatch.from_arrays(
        [pa.array(["fast", "slow"]) if n == "latency_ms" else batch.column(n) for n in batch.schema.names], schema=bad_schema
    )
    with pytest.raises(ice.IncompatibleSchemaError, match=r"column 'latency_ms': the table has int64, the data has string"):
        ice.replace_cell_from_batches(table, CELL, [bad], bad_schema)
    assert table.refresh().schema().schema_id == schema_id
    assert ice.IcebergCell(table, CELL).count_rows() == 2


def test_a_value_that_cannot_be_cast_is_not_quoted_in_the_error():
    # The error becomes the run's failure event, which cannot be erased: column and types only.
    target = pa.schema([pa.field("latency_ms", pa.int64())])
    batch = pa.RecordBatch.from_arrays([pa.array(["my email is alice@example.com"])], names=["latency_ms"])
    with pytest.raises(ice.IncompatibleSchemaError) as info:
        ice.conform_batch(batch, target)
    assert "'latency_ms': cannot write string as int64" in str(info.value)
    assert "alice" not in str(info.value) and info.value.__cause__ is None and info.value.__suppress_context__


def test_a_required_column_with_nulls_is_refused(sqlite_table):
    batch = make_batch(2)
    loose = pa.schema([f.with_nullable(True) for f in batch.schema])
    nulls = pa.RecordBatch.from_arrays(
        [pa.nulls(2, pa.string()) if n == "content_hash" else batch.column(n) for n in batch.schema.names], schema=loose
    )
    with pytest.raises(ice.IncompatibleSchemaError, match="'content_hash' is required"):
        ice.replace_cell_from_batches(sqlite_table, CELL, [nulls], loose)
    assert sqlite_table.refresh().schema().find_field("content_hash").required  # not relaxed


def test_integer_columns_widen(sqlite_table):
    batch = make_batch(2)
    narrow = pa.schema([pa.field("latency_ms", pa.int32()) if f.name == "latency_ms" else f for f in batch.schema])
    ice.replace_cell_from_batches(sqlite_table, CELL, [batch.cast(narrow)], narrow)  # table long, data int: cast up
    assert ice.IcebergCell(sqlite_table, CELL).count_rows() == 2


# ------------------------------------------------------------------ table layout and reads


def test_partitioning_properties_and_row_groups(sqlite_table):
    table = sqlite_table
    names = [table.schema().find_field(f.source_id).name for f in table.spec().fields]
    assert names == ["date", "model_slug"]
    assert all(str(f.transform) == "identity" for f in table.spec().fields)
    assert table.properties["write.parquet.row-group-limit"] == "65536"
    assert table.properties["write.parquet.compression-codec"] == "zstd"
    rows = pa.Table.from_batches([make_batch(1)]).take([0] * 140_000)
    commit = ice.replace_cell_from_batches(table, CELL, rows.to_batches(max_chunksize=10_000), NORMALIZED_SCHEMA)
    assert commit.rows == 140_000 and commit.files == 2  # two files encoded in parallel
    filesystem, to_path = ice.table_filesystem(table)
    row_groups = []
    for path in sorted(ice.IcebergCell(table, CELL).files()):
        assert "/data/date=2026-04-18/model_slug=glm-5-32b/" in path
        meta = pq.read_metadata(filesystem.open_input_file(to_path(path)))
        row_groups += [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert meta.row_group(0).column(0).compression == "ZSTD"
    # row groups end at the row limit or at 16 MB of buffered rows, whichever comes first
    assert sum(row_groups) == 140_000 and max(row_groups) <= 65_536
    assert sorted(row_groups) == [20_000, 60_000, 60_000]  # ~16 MB of these rows, 10k-row batches


def _assert_manifests_hold_no_id_or_text_metrics(table, cells: set[tuple[str, str]]) -> None:
    """No bound or count of any id/text column in any manifest entry; full-length partition bounds."""
    hidden = set(id_and_text_columns(table))
    files = file_metrics(table)
    assert files
    for entry in files:
        for kind in ("lower", "upper", "value_counts", "null_counts"):
            assert not hidden & set(entry[kind]), (kind, sorted(hidden & set(entry[kind])))
    # date and model_slug: exact (untruncated) bounds, one cell per file
    found = set()
    for entry in files:
        assert entry["lower"]["date"] == entry["upper"]["date"]
        assert entry["lower"]["model_slug"] == entry["upper"]["model_slug"]
        found.add((entry["lower"]["date"].decode(), entry["lower"]["model_slug"].decode()))
    assert found == cells


def test_manifests_keep_no_user_id_or_text_bounds_and_full_partition_bounds(case):
    table = ice.ensure_table(case.catalog(), ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    hidden = set(id_and_text_columns(table))
    assert {"trace_id", "user_id", "session_id", "prompt", "response", "metadata", "tools", "model", "content_hash",
            "messages.element.content", "contexts.element", "tags.element"} <= hidden
    assert not {"date", "model_slug", "timestamp"} & hidden
    properties = table.properties
    for name in hidden:
        assert properties[f"write.metadata.metrics.column.{name}"] == "none", name
    assert properties["write.metadata.metrics.column.date"] == "full"
    assert properties["write.metadata.metrics.column.model_slug"] == "full"

    # written here (batches) ...
    ice.replace_cell_from_batches(table, CELL, [make_batch(3, user="secret-user")], NORMALIZED_SCHEMA)
    # ... and copied from the lake (add_files reads the lake files' own footer statistics)
    long_cell = ice.Cell(DAY, LONG_SLUG)
    lake = case.lake()
    address = CellAddress("langfuse-traces", DAY, LONG_SLUG)
    lake.write_cell(address, iter([make_batch(4, model=LONG_SLUG, user="another-secret-user")]), NORMALIZED_SCHEMA)
    copied = ice.replace_cell_from_files(table, long_cell, ice.ParquetCellFiles.from_dataset(lake.open_cell(address)))
    assert copied.method == "copy" and copied.rows == 4
    _assert_manifests_hold_no_id_or_text_metrics(table, {(DAY, GLM), (DAY, LONG_SLUG)})
    # the rows themselves are intact
    assert ice.IcebergCell(table, long_cell).count_rows() == 4 and _user_ids(table, CELL) == ["secret-user"] * 3


def test_a_table_without_the_metrics_properties_gets_them_on_its_next_write(tmp_path):
    catalog = ice.load_catalog(ice.CatalogSettings(name="materializer_test", warehouse=str(tmp_path / "wh")))
    table = ice.ensure_table(catalog, ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    # As a table created before this rule: no metrics properties, pyiceberg's truncate(16) default.
    metrics = [key for key in table.properties if key.startswith(ice.METRICS_COLUMN_PREFIX)]
    with table.transaction() as transaction:
        transaction.remove_properties(*metrics)
    rows = pa.Table.from_batches([make_batch(2, user="leaky-user", day=OTHER.date)]).cast(ice.table_arrow_schema(table))
    table.append(rows)
    (leaky,) = file_metrics(table)
    assert leaky["lower"]["user_id"] == b"leaky-user" and "trace_id" in leaky["lower"]  # what the rule prevents

    table = ice.ensure_table(catalog, ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)  # loaded for writing
    assert {k: v for k, v in table.properties.items() if k.startswith(ice.METRICS_COLUMN_PREFIX)} == ice.metrics_properties(
        table.schema()
    )
    ice.replace_cell_from_batches(table, OTHER, [make_batch(3, day=OTHER.date, prefix="v2")], NORMALIZED_SCHEMA)
    _assert_manifests_hold_no_id_or_text_metrics(table, {(OTHER.date, GLM)})

    # A column that arrives later (schema evolution) gets its property before its first file.
    with table.transaction() as transaction:
        transaction.remove_properties(*[k for k in table.properties if k.startswith(ice.METRICS_COLUMN_PREFIX)])
    extended = make_batch(2)
    extended = extended.append_column("reasoning", pa.array(["because the user said so", "quoting the prompt"]))
    ice.replace_cell_from_batches(table, CELL, [extended], extended.schema)
    assert table.refresh().properties["write.metadata.metrics.column.reasoning"] == "none"
    assert "reasoning" in id_and_text_columns(table)
    _assert_manifests_hold_no_id_or_text_metrics(table, {(OTHER.date, GLM), (DAY, GLM)})


def test_replacing_a_cell_with_a_60_character_model_slug_is_a_metadata_only_delete(sqlite_table):
    from pyiceberg.table.snapshots import Operation

    table = sqlite_table
    cell = ice.Cell(DAY, LONG_SLUG)
    first = ice.replace_cell_from_batches(table, cell, [make_batch(3, model=LONG_SLUG)], NORMALIZED_SCHEMA)
    assert first.files == 1
    before = {snapshot.snapshot_id for snapshot in table.snapshots()}
    ice.replace_cell_from_batches(table, cell, [make_batch(2, model=LONG_SLUG, prefix="v2")], NORMALIZED_SCHEMA)
    new = [snapshot for snapshot in table.refresh().snapshots() if snapshot.snapshot_id not in before]
    # The old file is dropped by its (full-length) partition bounds, not read and rewritten (an overwrite).
    assert [snapshot.summary.operation for snapshot in new] == [Operation.DELETE, Operation.APPEND]
    dropped = new[0].summary
    assert dropped["deleted-data-files"] == "1" and dropped["deleted-records"] == "3"
    assert dropped["added-data-files"] is None and dropped["added-records"] is None

    # Replaced by nothing: the commit is only the delete, so it is the current snapshot.
    written = set(ice.table_files(table))
    ice.replace_cell_from_batches(table, cell, [], NORMALIZED_SCHEMA)
    summary = table.refresh().current_snapshot().summary
    assert summary.operation == Operation.DELETE
    assert summary["deleted-data-files"] == "1" and summary["deleted-records"] == "2"
    assert summary["added-data-files"] is None and summary["added-records"] is None
    assert summary["added-files-size"] is None and summary["total-data-files"] == "0"
    new_files = set(ice.table_files(table)) - written
    assert not [path for path in new_files if path.endswith(".parquet")]  # no data file rewritten
    assert ice.IcebergCell(table, cell).count_rows() == 0


def test_a_loaded_cell_reads_one_snapshot_and_works_with_the_checks(sqlite_table):
    table = sqlite_table
    ice.replace_cell_from_batches(table, CELL, [make_batch(3)], NORMALIZED_SCHEMA)
    pinned = ice.IcebergCell(table, CELL)
    ice.replace_cell_from_batches(table, CELL, [make_batch(5, prefix="v2")], NORMALIZED_SCHEMA)
    assert pinned.count_rows() == 3  # lineage: still the snapshot it was loaded at
    assert ice.IcebergCell(table, CELL).count_rows() == 5
    assert pinned.schema.equals(NORMALIZED_SCHEMA)
    batches = list(pinned.to_batches(batch_size=2))
    assert [b.num_rows for b in batches] == [2, 1] and batches[0].schema.equals(NORMALIZED_SCHEMA)
    assert pinned.to_reader(["trace_id"]).read_all().num_rows == 3
    assert checks.check_only_granted(pinned).passed
    assert checks.check_schema(pinned, NORMALIZED_SCHEMA).passed
    empty = ice.IcebergCell(table, ice.Cell("2026-01-01", GLM))
    assert empty.count_rows() == 0 and list(empty.to_batches()) == []


def test_concurrent_writers_of_different_cells_both_commit(tmp_path):
    settings = ice.CatalogSettings(name="materializer_test", warehouse=str(tmp_path / "wh"))
    ice.ensure_table(ice.load_catalog(settings), ice.DEFAULT_TABLE, NORMALIZED_SCHEMA)
    errors = []

    def write(day: str) -> None:
        try:
            table = ice.load_catalog(settings).load_table(ice.DEFAULT_TABLE)  # own catalog, as another process
            for round_ in range(3):
                ice.replace_cell_from_batches(
                    table, ice.Cell(day, GLM), [make_batch(4, day=day, prefix=f"r{round_}")], NORMALIZED_SCHEMA
                )
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(f"2026-04-1{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    table = ice.load_catalog(settings).load_table(ice.DEFAULT_TABLE)
    assert table.scan().count() == 16
    assert all(ice.IcebergCell(table, ice.Cell(f"2026-04-1{i}", GLM)).count_rows() == 4 for i in range(4))


def test_all_files_helper_sees_the_table(sqlite_table):
    ice.replace_cell_from_batches(sqlite_table, CELL, [make_batch(1)], NORMALIZED_SCHEMA)
    filesystem, to_path = ice.table_filesystem(sqlite_table)
    assert all_files(filesystem, to_path(sqlite_table.location())) == ice.table_files(sqlite_table)


def test_scans_stream_bounded_batches_and_match_pyiceberg(sqlite_table, tmp_path):
    from pyiceberg.expressions import And, EqualTo

    table = sqlite_table
    ice.replace_cell_from_batches(table, CELL, [make_batch(7)], NORMALIZED_SCHEMA)
    cell_filter = ice.IcebergCell(table, CELL).cell.filter()
    # the cell filter selects whole files: read by row group, the same rows as pyiceberg's reader
    scan = table.scan(row_filter=cell_filter, selected_fields=("trace_id", "user_id"))
    ours = pa.Table.from_batches(list(ice.stream_scan(scan)))
    assert ours.sort_by("trace_id").equals(scan.to_arrow().sort_by("trace_id"))
    # a filter on other columns leaves a residual: pyiceberg's per-file reader applies it
    user = ours.column("user_id")[0].as_py()
    narrow = table.scan(row_filter=And(cell_filter, EqualTo("user_id", user)), selected_fields=("trace_id", "user_id"))
    filtered = pa.Table.from_batches(list(ice.stream_scan(narrow)))
    assert set(filtered.column("user_id").to_pylist()) == {user}
    assert filtered.num_rows == narrow.to_arrow().num_rows < ours.num_rows

    # a file comes a bounded batch of rows at a time (never a whole row group), absent columns as nulls
    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"trace_id": [f"t{i}" for i in range(10)]}), path, row_group_size=6)
    target = pa.schema([("trace_id", pa.string()), ("tools", pa.string())])
    batches = list(_row_groups(table.io, str(path), target, batch_rows=4))
    assert [b.num_rows for b in batches] == [4, 4, 2]
    assert pa.Table.from_batches(batches).column("trace_id").to_pylist() == [f"t{i}" for i in range(10)]
    assert all(b.schema.equals(target) and b.column("tools").null_count == b.num_rows for b in batches)


def test_streamed_reads_hold_no_more_than_a_batch(tmp_path, sqlite_table):
    """Reading a file of many row groups batch by batch keeps Arrow's memory flat: pyarrow's
    pre-buffering would keep every row group read so far until the file is closed."""
    path = tmp_path / "many-groups.parquet"
    import os

    texts = [os.urandom(1000).hex() for _ in range(40_000)]  # incompressible: 80 MB of column chunks
    pq.write_table(pa.table({"trace_id": [f"t{i}" for i in range(40_000)], "prompt": texts}), path, row_group_size=1000)
    target = pa.schema([("trace_id", pa.string()), ("prompt", pa.string())])
    held = []
    for i, batch in enumerate(_row_groups(sqlite_table.io, str(path), target, batch_rows=1000)):
        del batch
        if i in (5, 35):
            held.append(pa.total_allocated_bytes())
    assert held[1] - held[0] < 8 * 2**20, held  # 30 row groups (60 MB) later
