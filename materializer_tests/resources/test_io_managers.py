"""The publishing contract of the two IO managers, through real ``dg.materialize`` runs.

An asset publishes its cell with its IO manager's ``publish`` and gets the
published cell back as a value; it yields that value as its ``dg.Output``,
and ``handle_output`` only checks that it is this output's cell and records
the write: nothing is written twice, and a cell published for another output
fails the step instead of being recorded. A warehouse in ``tmp_path`` with the
default SQLite catalog.
"""

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from materializer_assets.lib.iceberg import Cell, IcebergCell
from materializer_assets.lib.lake import CellAddress, CellStream
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key, cell_partitions
from materializer_assets.resources import ParquetLakeIOManager
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_tests.pipeline.results import materialization_metadata

DAY, MODEL = "2026-04-18", "glm-5-32b"
TABLE = "training_data.publish_contract"


def _rows() -> pa.Table:
    return pa.table(
        {"trace_id": ["a", "b", "c"], "date": [DAY] * 3, "model_slug": [MODEL] * 3, "score": [0.1, 0.5, 0.9]}
    )


def _materialize(tmp_path, assets, **run):
    warehouse = str(tmp_path / "wh")
    resources = {
        "parquet_io_manager": ParquetLakeIOManager(warehouse=warehouse),
        "iceberg_io_manager": IcebergIOManager(warehouse=warehouse),
    }
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_DIMENSION, [MODEL])
    result = dg.materialize(assets, partition_key=cell_key(DAY, MODEL), resources=resources, instance=instance, **run)
    return result, resources


def test_an_asset_gets_back_the_lake_cell_it_published_and_its_output_records_that_one_write(tmp_path):
    seen = {}

    @dg.asset(partitions_def=cell_partitions, io_manager_key="parquet_io_manager", metadata={"lake_dataset": "contract"})
    def scores(context: dg.AssetExecutionContext, parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager]):
        rows = _rows()
        published = parquet_io_manager.publish(context, CellStream(iter(rows.to_batches(max_chunksize=1)), rows.schema))
        seen["published"] = published
        seen["rows_read_back"] = published.dataset.count_rows()
        # The asset's own keys stay its own: the write's "rows" does not replace them.
        yield dg.Output(published, metadata={"rows": 42, "note": "from the asset"})

    @dg.asset(partitions_def=cell_partitions)
    def downstream(scores: ds.Dataset) -> None:
        seen["loaded_files"] = sorted(scores.files)

    result, resources = _materialize(tmp_path, [scores, downstream])
    published = seen["published"]
    assert published.address == CellAddress("contract", DAY, MODEL)
    assert seen["rows_read_back"] == published.written.rows == 3
    metadata = materialization_metadata(result, "scores")
    assert metadata["version"] == published.written.token and metadata["files"] == len(published.written.files)
    assert metadata["path"] == published.written.uri and metadata["rows_by_subpath"] == {"": 3}
    assert (metadata["rows"], metadata["note"]) == (42, "from the asset")
    # handle_output recorded the cell and wrote nothing: the live version is the one publish returned.
    lake = resources["parquet_io_manager"].lake()
    assert lake.manifest(published.address)["version"] == published.written.token
    assert seen["loaded_files"] == sorted(published.dataset.files)


def test_an_asset_gets_back_the_iceberg_cell_it_committed_and_its_output_records_that_one_commit(tmp_path):
    seen = {}

    @dg.asset(partitions_def=cell_partitions, io_manager_key="iceberg_io_manager", metadata={"iceberg_table": TABLE})
    def scores(context: dg.AssetExecutionContext, iceberg_io_manager: dg.ResourceParam[IcebergIOManager]):
        committed = iceberg_io_manager.publish(context, _rows())
        seen["committed"] = committed
        seen["rows_read_back"] = committed.cell.count_rows()
        yield dg.Output(committed, metadata={"note": "from the asset"})

    @dg.asset(partitions_def=cell_partitions)
    def downstream(scores: IcebergCell) -> None:
        seen["loaded_snapshot"] = scores.snapshot_id

    result, resources = _materialize(tmp_path, [scores, downstream])
    committed = seen["committed"]
    assert (committed.cell.identifier, committed.cell.cell) == (TABLE, Cell(DAY, MODEL))
    assert seen["rows_read_back"] == committed.commit.rows == 3
    metadata = materialization_metadata(result, "scores")
    assert metadata["snapshot_id"] == committed.commit.snapshot_id and metadata["cell"] == f"{DAY}|{MODEL}"
    assert metadata["table"] == TABLE and metadata["note"] == "from the asset"
    # handle_output committed nothing: the table's current snapshot is the one publish returned.
    table = resources["iceberg_io_manager"].load_catalog().load_table(TABLE)
    assert table.current_snapshot().snapshot_id == committed.commit.snapshot_id == seen["loaded_snapshot"]


def test_an_asset_that_needs_nothing_back_returns_its_rows_and_the_io_manager_publishes_them(tmp_path):
    @dg.asset(partitions_def=cell_partitions, io_manager_key="parquet_io_manager", metadata={"lake_dataset": "plain"})
    def plain() -> pa.Table:
        return _rows()

    result, resources = _materialize(tmp_path, [plain])
    metadata = materialization_metadata(result, "plain")
    lake = resources["parquet_io_manager"].lake()
    address = CellAddress("plain", DAY, MODEL)
    assert (metadata["rows"], metadata["version"]) == (3, lake.manifest(address)["version"])
    assert lake.open_cell(address).to_table().equals(_rows())


@pytest.mark.parametrize("io_manager_key", ["parquet_io_manager", "iceberg_io_manager"])
def test_a_cell_published_for_another_output_fails_the_step(tmp_path, io_manager_key):
    @dg.multi_asset(
        partitions_def=cell_partitions,
        outs={
            name: dg.AssetOut(io_manager_key=io_manager_key, metadata={"iceberg_table": f"training_data.{name}"})
            for name in ("first", "second")
        },
    )
    def pair(context: dg.AssetExecutionContext):
        io_manager = getattr(context.resources, io_manager_key)
        first = io_manager.publish(context, _rows(), output_name="first")
        yield dg.Output(first, output_name="first")
        yield dg.Output(first, output_name="second")  # a bug: the first cell again

    result, _ = _materialize(tmp_path, [pair], raise_on_error=False)
    assert not result.success
    assert [e.asset_key.path[-1] for e in result.get_asset_materialization_events()] == ["first"]
    error = result.get_step_failure_events()[0].step_failure_data.error
    message = error.message + "".join(cause.message for cause in [error.cause] if cause is not None)
    assert "second published" in message and "but its cell is" in message
