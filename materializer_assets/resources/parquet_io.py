"""The Parquet IO manager: cells of the warehouse lake (DESIGN §2).

An asset returns a :class:`~materializer_assets.lib.lake.CellStream`; this
writes it streaming under ``<warehouse>/<lake_dataset>/date=D/model=M/…`` and
publishes it atomically. Loading an input gives a lazy ``pyarrow.dataset``
of the upstream cell's published files.
"""

from __future__ import annotations

from typing import Any, Optional

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
from pydantic import Field

from ..lib.cells import split_cell_key
from ..lib.lake import CellAddress, CellStream, ParquetLake, ParquetWriteOptions
from ..lib.storage import S3Options, resolve

DEFAULT_WAREHOUSE = ".materializer/warehouse"


class ParquetLakeIOManager(dg.ConfigurableIOManager):
    warehouse: str = Field(
        default=DEFAULT_WAREHOUSE, description="Local folder or s3://bucket/prefix (MATERIALIZER_WAREHOUSE)."
    )
    s3_endpoint_url: Optional[str] = Field(default=None, description="S3-compatible endpoint; default AWS_ENDPOINT_URL.")
    row_group_rows: int = Field(default=32_768, description="Rows per Parquet row group.")
    compression_level: int = Field(default=1, description="zstd level.")

    def lake(self) -> ParquetLake:
        options = ParquetWriteOptions(row_group_rows=self.row_group_rows, compression_level=self.compression_level)
        return ParquetLake(resolve(self.warehouse, S3Options(endpoint_url=self.s3_endpoint_url)), options)

    @staticmethod
    def _address(metadata: Any, asset_key: dg.AssetKey, partition_key: str) -> CellAddress:
        dataset = (metadata or {}).get("lake_dataset") or asset_key.path[-1].replace("_", "-")
        day, model = split_cell_key(partition_key)
        return CellAddress(str(dataset), day, model)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if isinstance(obj, pa.Table):
            obj = CellStream(iter(obj.to_batches()), obj.schema)
        if not isinstance(obj, CellStream):
            raise TypeError(f"ParquetLakeIOManager stores CellStream or pyarrow.Table, got {type(obj).__name__}")
        lake = self.lake()
        address = self._address(context.definition_metadata, context.asset_key, context.asset_partition_key)
        result = lake.write_cell(address, obj.batches, obj.schema, split=obj.split, guard=obj.guard)
        obj.written = result
        obj.published = lake.open_cell(address, obj.schema)
        metadata = result.as_metadata()
        if obj.describe is not None:
            metadata.update(obj.describe())
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> ds.Dataset:
        upstream = context.upstream_output
        address = self._address(
            upstream.definition_metadata if upstream else None, context.asset_key, context.asset_partition_key
        )
        return self.lake().open_cell(address)
