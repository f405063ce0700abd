"""consented_parquet → iceberg_table, with its checks.

The asset hands the cell's published Parquet files to the Iceberg IO manager,
which copies them into the table, replaces exactly that cell in one commit and
returns the commit; the checks then read back what the table holds for the
cell at that snapshot.
"""


import os

import dagster as dg
import pyarrow.dataset as ds

from ...lib import checks
from ...lib.iceberg import DEFAULT_TABLE, ParquetCellFiles
from ...lib.schema import NORMALIZED_SCHEMA, REQUIRED_COLUMNS
from ...resources.iceberg_io import IcebergIOManager
from ..partitions import cell_partitions
from ..check_results import cell_check_spec, check_result
from ..freshness import CELL_FRESHNESS
from ..metadata import published_metadata, same_columns

# Read at import, like the partitions' start date: asset metadata is static.
ICEBERG_TABLE = os.environ.get("MATERIALIZER_ICEBERG_TABLE", "").strip() or DEFAULT_TABLE

ICEBERG_CHECKS = {
    "row_count_matches_consented_parquet": "The table's cell has exactly as many rows as consented_parquet's cell.",
    "only_consented_rows": "Every row of the cell has consent=true and a recorded consent source.",
    "unique_trace_observation_ids": "No duplicate (trace_id, observation_id): one live copy of each row.",
    "required_columns_non_null": "Required columns are present and non-null.",
}


@dg.asset(
    partitions_def=cell_partitions,
    io_manager_key="iceberg_io_manager",
    group_name="lakehouse",
    kinds={"iceberg"},
    metadata={"iceberg_table": ICEBERG_TABLE},
    check_specs=[cell_check_spec(name, "iceberg_table", description) for name, description in ICEBERG_CHECKS.items()],
    freshness_policy=CELL_FRESHNESS,
    description=f"The consented cell as that (date, model_slug) partition of the Iceberg table {ICEBERG_TABLE}; "
    "re-materializing replaces exactly the cell.",
)
def iceberg_table(
    context: dg.AssetExecutionContext,
    consented_parquet: ds.Dataset,
    iceberg_io_manager: dg.ResourceParam[IcebergIOManager],
):
    source_rows = consented_parquet.count_rows()
    # An empty cell has no files and so no schema: the table is still created with the normalized one.
    schema = consented_parquet.schema if len(consented_parquet.schema) else NORMALIZED_SCHEMA
    files = ParquetCellFiles(list(consented_parquet.files), consented_parquet.filesystem, schema)
    committed = iceberg_io_manager.publish(context, files)
    published, commit = committed.cell, committed.commit
    yield dg.Output(
        committed,
        metadata={
            "source_rows": source_rows,
            "source_files": len(consented_parquet.files),
            **published_metadata(published, schema, lineage=same_columns("consented_parquet", schema)),
        },
    )
    context.log.info(f"{published!r}: {commit.rows} rows in {commit.files} file(s), {commit.method}")
    counts = checks.check_row_counts_match(published.count_rows(), source_rows, "iceberg", "consented_parquet")
    counts.metadata["snapshot_id"] = published.snapshot_id
    yield check_result("row_count_matches_consented_parquet", counts)
    yield check_result("only_consented_rows", checks.check_only_granted(published))
    yield check_result("unique_trace_observation_ids", checks.check_unique_ids(published))
    yield check_result("required_columns_non_null", checks.check_required_non_null(published, REQUIRED_COLUMNS))
