"""The data checks of lib/checks.py on real published lake cells, each shown passing and failing.

Cells are written by the lake itself and opened as the Parquet IO manager
opens them (with the declared schema passed in), then tampered with on disk
(or on moto's S3) the way a foreign writer or a bug would.
"""

from __future__ import annotations

import posixpath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib import checks
from materializer_assets.lib.lake import CellAddress, ParquetLake
from materializer_assets.lib.schema import NORMALIZED_SCHEMA, REQUIRED_COLUMNS
from materializer_assets.lib.storage import resolve

from .helpers import make_batch

ADDRESS = CellAddress("langfuse-traces", "2026-04-18", "glm-5-32b")


def _publish(root: str, *batches: pa.RecordBatch, split=None) -> tuple[ParquetLake, list[str]]:
    lake = ParquetLake(resolve(root))
    lake.write_cell(ADDRESS, iter(batches), NORMALIZED_SCHEMA, split=split)
    return lake, lake.cell_files(ADDRESS)


def _opened(lake: ParquetLake):
    """The cell as the Parquet IO manager hands it to the checks: with the declared schema."""
    return lake.open_cell(ADDRESS, NORMALIZED_SCHEMA)


def _overwrite(lake: ParquetLake, path: str, table: pa.Table) -> None:
    pq.write_table(table, path, filesystem=lake.filesystem)


def _normalized_table(n: int = 3, **kwargs) -> pa.Table:
    return pa.Table.from_batches([make_batch(n, **kwargs)]).cast(NORMALIZED_SCHEMA)


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "warehouse")
    return f"s3://{request.getfixturevalue('s3_bucket')}/warehouse"


# ---------------------------------------------------------------- schema


def test_a_published_cell_has_the_declared_schema_in_every_footer(root):
    lake, files = _publish(root, make_batch(4, consent=True), make_batch(3, consent=False, prefix="r"),
                           split=lambda b: {"all": b})
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    assert outcome.passed, outcome.description
    assert outcome.metadata["files"] == len(files) == 1


def test_a_file_with_foreign_columns_fails_naming_the_file_and_the_difference(root):
    lake, (path,) = _publish(root, make_batch(3))
    _overwrite(lake, path, pa.table({"trace_id": ["t-0", "t-1"], "bogus": ["x", "y"]}))
    dataset = _opened(lake)
    # What made the old check hollow: the dataset's schema is the declaration, whatever the files hold.
    assert dataset.schema.equals(NORMALIZED_SCHEMA)
    outcome = checks.check_schema(dataset, NORMALIZED_SCHEMA)
    assert not outcome.passed
    assert path in outcome.description
    missing = ", ".join(NORMALIZED_SCHEMA.names[1:])
    assert f"{path}: missing {missing}; unexpected bogus (string)" in outcome.description
    assert outcome.metadata["files_not_as_declared"] == 1
    assert outcome.metadata["differences"] == {
        path: [f"missing {missing}", "unexpected bogus (string)", "trace_id: expected not null, found nullable"]
    }


def test_reordered_columns_fail():
    names = list(NORMALIZED_SCHEMA.names)
    names[0], names[1] = names[1], names[0]
    outcome = checks.check_schema(_normalized_table().select(names), NORMALIZED_SCHEMA)
    assert not outcome.passed and "columns reordered" in outcome.description


def test_reordered_columns_in_a_footer_fail(tmp_path):
    lake, (path,) = _publish(str(tmp_path / "wh"), make_batch(3))
    names = list(NORMALIZED_SCHEMA.names)
    names.append(names.pop(0))  # trace_id last
    _overwrite(lake, path, pq.read_table(path).select(names))
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    assert not outcome.passed
    assert f"{path}: columns reordered (first out of place: {names[0]})" in outcome.description


def test_a_retyped_column_fails(tmp_path):
    lake, (path,) = _publish(str(tmp_path / "wh"), make_batch(3))
    table = pq.read_table(path)
    index = table.schema.get_field_index("latency_ms")
    table = table.set_column(index, pa.field("latency_ms", pa.string()), pc.cast(table.column(index), pa.string()))
    _overwrite(lake, path, table)
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    expected_type = NORMALIZED_SCHEMA.field("latency_ms").type
    assert not outcome.passed
    assert f"latency_ms: expected {expected_type}, found string" in outcome.description


def test_a_column_that_lost_its_not_null_constraint_fails(tmp_path):
    required = next(f for f in NORMALIZED_SCHEMA if not f.nullable)
    lake, (path,) = _publish(str(tmp_path / "wh"), make_batch(3))
    table = pq.read_table(path)
    relaxed = table.schema.set(table.schema.get_field_index(required.name), required.with_nullable(True))
    _overwrite(lake, path, table.cast(relaxed))
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    assert not outcome.passed
    assert f"{required.name}: expected not null, found nullable" in outcome.description


def test_an_extra_column_at_the_end_fails(tmp_path):
    lake, (path,) = _publish(str(tmp_path / "wh"), make_batch(3))
    table = pq.read_table(path)
    _overwrite(lake, path, table.append_column("debug_note", pa.array(["x"] * table.num_rows)))
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    assert not outcome.passed and outcome.description.endswith(f"{path}: unexpected debug_note (string)")


def test_one_bad_file_among_good_ones_is_named(tmp_path):
    lake, files = _publish(
        str(tmp_path / "wh"), make_batch(3, consent=True), make_batch(2, consent=False, prefix="r"),
        split=lambda b: {f"consent={str(b.column('consent')[0].as_py()).lower()}": b},
    )
    assert len(files) == 2
    bad = [f for f in files if "consent=false" in f][0]
    _overwrite(lake, bad, pq.read_table(bad).drop_columns(["user_id"]))
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    assert not outcome.passed
    assert outcome.description.startswith("1 of 2 file(s) differ")
    assert list(outcome.metadata["differences"]) == [bad]
    assert outcome.metadata["differences"][bad] == ["missing user_id"]


def test_an_unreadable_file_fails_instead_of_raising(tmp_path):
    lake, (path,) = _publish(str(tmp_path / "wh"), make_batch(3))
    with lake.filesystem.open_output_stream(path) as out:
        out.write(b"not parquet at all")
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    assert not outcome.passed and "unreadable footer" in outcome.description and path in outcome.description


def test_an_empty_cell_has_no_file_to_differ(tmp_path):
    lake, files = _publish(str(tmp_path / "wh"))
    assert files == []
    outcome = checks.check_schema(_opened(lake), NORMALIZED_SCHEMA)
    assert outcome.passed and outcome.metadata["files"] == 0


def test_schema_differences_lists_every_kind():
    expected = pa.schema([pa.field("a", pa.string(), nullable=False), pa.field("b", pa.int64()), pa.field("c", pa.float64())])
    assert checks.schema_differences(expected, expected) == []
    actual = pa.schema([pa.field("c", pa.float32()), pa.field("a", pa.string()), pa.field("z", pa.bool_())])
    assert checks.schema_differences(expected, actual) == [
        "missing b",
        "unexpected z (bool)",
        "a: expected not null, found nullable",
        "c: expected double, found float",
        "columns reordered (first out of place: c)",
    ]


# ---------------------------------------------------------------- required columns


def test_required_columns_fail_on_nulls_and_on_a_column_missing_from_the_files(tmp_path):
    lake, (path,) = _publish(str(tmp_path / "wh"), make_batch(3))
    assert checks.check_required_non_null(_opened(lake), REQUIRED_COLUMNS).passed

    table = pq.read_table(path)
    index = table.schema.get_field_index("response")
    _overwrite(lake, path, table.set_column(index, table.schema.field(index), pa.array(["ok", None, "ok"], pa.string())))
    outcome = checks.check_required_non_null(_opened(lake), REQUIRED_COLUMNS)
    assert not outcome.passed and outcome.metadata["null_counts"] == {"response": 1}

    _overwrite(lake, path, table.drop_columns(["response"]))
    outcome = checks.check_required_non_null(_opened(lake), REQUIRED_COLUMNS)
    assert not outcome.passed and outcome.metadata["missing_columns"] == "response"


# ---------------------------------------------------------------- consent, ids, counts


def test_only_granted_fails_on_refused_unknown_and_non_granting_rows(tmp_path):
    lake, _ = _publish(str(tmp_path / "wh"), make_batch(3, consent=True))
    assert checks.check_only_granted(_opened(lake)).passed

    lake, _ = _publish(str(tmp_path / "wh2"), make_batch(3, consent=True), make_batch(2, consent=False, prefix="r"),
                       make_batch(1, consent=None, prefix="u"))
    outcome = checks.check_only_granted(_opened(lake))
    assert not outcome.passed
    assert outcome.metadata["rows"] == 6 and outcome.metadata["rows_without_consent"] == 3


def test_unique_ids_fail_on_a_duplicate_trace_and_observation(tmp_path):
    lake, _ = _publish(str(tmp_path / "wh"), make_batch(3))
    assert checks.check_unique_ids(_opened(lake)).passed
    lake, _ = _publish(str(tmp_path / "wh2"), make_batch(3), make_batch(2))  # t-0 and t-1 twice
    outcome = checks.check_unique_ids(_opened(lake))
    assert not outcome.passed and outcome.metadata["duplicates"] == 2
    assert outcome.metadata["examples"] == "t-0/None, t-1/None"


def test_counts_reconcile_fails_when_rows_went_missing():
    assert checks.check_reconciles(10, {"consented": 6, "refused": 3, "unknown": 1}).passed
    outcome = checks.check_reconciles(10, {"consented": 6, "refused": 3, "unknown": 0})
    assert not outcome.passed and outcome.metadata["difference"] == 1


def test_row_counts_of_a_copy_must_match():
    assert checks.check_row_counts_match(5, 5, "iceberg", "consented_parquet").passed
    outcome = checks.check_row_counts_match(4, 5, "iceberg", "consented_parquet")
    assert not outcome.passed and outcome.description == "iceberg 4 rows, consented_parquet 5 rows"
    assert outcome.metadata == {"iceberg_rows": 4, "consented_parquet_rows": 5, "difference": -1}


def test_footers_are_read_through_the_cells_filesystem(root):
    lake, (path,) = _publish(root, make_batch(2))
    assert checks.file_schemas(_opened(lake))[0][0] == path
    assert posixpath.basename(path).startswith("part-")
    assert checks.columns_in_every_file(_opened(lake)) == set(NORMALIZED_SCHEMA.names)
