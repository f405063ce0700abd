"""The Parquet IO manager: cells of the warehouse lake (DESIGN §2).

An asset publishes its cell through this IO manager, which it also takes as a
resource: :meth:`ParquetLakeIOManager.publish` writes a
:class:`~materializer_assets.lib.lake.CellStream` streaming under
``<warehouse>/<lake_dataset>/date=D/model=M/…``, publishes it atomically and
returns a :class:`PublishedLakeCell`. The asset reads its checks and metadata
from that value and yields ``dg.Output(<it>, metadata=…)``; ``handle_output``
then only checks that it is this output's cell and records the write
(``path``, ``rows``, ``files``, ``bytes``, ``rows_by_subpath``, ``version``).
An asset that needs nothing back may return a ``CellStream`` or a
``pyarrow.Table`` instead: ``handle_output`` publishes it the same way.
Loading an input gives a lazy ``pyarrow.dataset`` of the upstream cell's
published files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
from pydantic import Field

from ..lib.cells import split_cell_key
from ..lib.lake import CellAddress, CellStream, CellWriteResult, ParquetLake, ParquetWriteOptions
from ..lib.storage import S3Options, resolve

DEFAULT_WAREHOUSE = ".materializer/warehouse"


@dataclass(frozen=True)
class PublishedLakeCell:
    """A cell version :meth:`ParquetLakeIOManager.publish` made live: what was written, and the live files."""

    written: CellWriteResult
    dataset: ds.Dataset  # the published files, read lazily (checks, metadata)

    @property
    def address(self) -> CellAddress:
        return self.written.address


def recorded_metadata(write_metadata: Mapping[str, Any], output_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The write's metadata an IO manager adds to an output: keys the asset set on its
    ``dg.Output`` keep the asset's value (raw_traces' ``rows`` is what it read)."""
    return {key: value for key, value in write_metadata.items() if key not in output_metadata}


def output_asset_key(context: dg.AssetExecutionContext, output_name: str | None) -> dg.AssetKey:
    """The asset an output of the running step stores (a multi-asset names the output)."""
    return context.asset_key_for_output(output_name) if output_name else context.asset_key


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

    def publish(
        self, context: dg.AssetExecutionContext, cell: "CellStream | pa.Table", output_name: str | None = None
    ) -> PublishedLakeCell:
        """Write ``cell`` as the running partition of the asset (of ``output_name`` in a multi-asset)
        and publish it atomically; the asset yields the result as its ``dg.Output``."""
        key = output_asset_key(context, output_name)
        return self._publish(self._address(context.assets_def.metadata_by_key[key], key, context.partition_key), cell)

    def _publish(self, address: CellAddress, cell: Any) -> PublishedLakeCell:
        if isinstance(cell, pa.Table):
            cell = CellStream(iter(cell.to_batches()), cell.schema)
        if not isinstance(cell, CellStream):
            raise TypeError(
                f"ParquetLakeIOManager stores PublishedLakeCell, CellStream or pyarrow.Table, got {type(cell).__name__}"
            )
        lake = self.lake()
        written = lake.write_cell(address, cell.batches, cell.schema, split=cell.split, guard=cell.guard)
        return PublishedLakeCell(written, lake.open_cell(address, cell.schema))

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        address = self._address(context.definition_metadata, context.asset_key, context.asset_partition_key)
        if isinstance(obj, PublishedLakeCell):
            expected = self.lake().cell_uri(address)
            if obj.written.uri != expected:  # load_input would read another cell than the one published
                raise ValueError(
                    f"{context.asset_key.to_user_string()} published {obj.written.uri}, but its cell is {expected}"
                )
        else:
            obj = self._publish(address, obj)
        context.add_output_metadata(recorded_metadata(obj.written.as_metadata(), context.output_metadata))

    def load_input(self, context: dg.InputContext) -> ds.Dataset:
        upstream = context.upstream_output
        address = self._address(
            upstream.definition_metadata if upstream else None, context.asset_key, context.asset_partition_key
        )
        return self.lake().open_cell(address)
