"""The Iceberg IO manager: each asset cell is exactly that cell of an Iceberg table (DESIGN §2).

The table comes from the asset's metadata (``{"iceberg_table": "training_data.langfuse_traces"}``;
default ``<default_namespace>.<asset name>``). An asset publishes its cell
through this IO manager, which it also takes as a resource:
:meth:`IcebergIOManager.publish` takes

- :class:`~materializer_assets.lib.iceberg.ParquetCellFiles` (or a
  ``pyarrow.dataset.FileSystemDataset``): Parquet files holding exactly the
  cell, copied into the table as they are (no re-encoding);
- a :class:`~materializer_assets.lib.lake.CellStream`, a ``RecordBatchReader``
  or a ``pyarrow.Table``: batches streamed into new files,

replaces the cell in one commit (idempotent) and returns a
:class:`PublishedIcebergCell`: the commit, and the cell read at its snapshot.
The asset reads its checks and metadata from that value and yields
``dg.Output(<it>, metadata=…)``; ``handle_output`` then only checks that it is
this output's cell and records the commit (snapshot id, rows, files, bytes …).
An asset that needs nothing back may return any of the values above instead:
``handle_output`` publishes it the same way. Loading an input gives an
:class:`~materializer_assets.lib.iceberg.IcebergCell`, a lazy read of the cell
pinned to the current snapshot (``.to_batches()``, ``.to_reader()``,
``.count_rows()``, ``.snapshot_id`` for lineage).

The catalog is configured the pyiceberg way (``.pyiceberg.yaml`` or
``PYICEBERG_CATALOG__<NAME>__*``), with ``catalog_properties`` on top; with
neither, a SQLite ``SqlCatalog`` inside the warehouse, which
:meth:`IcebergIOManager.publish_default_catalog` (called by ``materializer run``)
writes into ``./.pyiceberg.yaml`` for pyiceberg's own ``load_catalog``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import dagster as dg
import pyarrow as pa
import pyarrow.dataset as ds
from pydantic import Field

from ..lib.cells import split_cell_key
from ..lib.iceberg import (
    DEFAULT_CATALOG_NAME,
    DEFAULT_NAMESPACE,
    LOCAL_CATALOG_DIR_FOR_S3,
    CatalogSettings,
    Cell,
    CellCommit,
    IcebergCell,
    ParquetCellFiles,
    PublishedCatalog,
    describe_properties,
    ensure_table,
    load_catalog,
    publish_default_catalog,
    replace_cell_from_batches,
    replace_cell_from_files,
    resolve_catalog_properties,
)
from ..lib.lake import CellStream
from ..lib.storage import S3Options
from .parquet_io import DEFAULT_WAREHOUSE, output_asset_key, recorded_metadata

TABLE_METADATA_KEY = "iceberg_table"


@dataclass(frozen=True)
class PublishedIcebergCell:
    """A cell :meth:`IcebergIOManager.publish` committed: the commit, and the cell read at its snapshot."""

    commit: CellCommit
    cell: IcebergCell  # pinned to the commit's snapshot
    table_location: str
    catalog: str

    def as_metadata(self) -> dict[str, Any]:
        return {
            **self.commit.as_metadata(),
            "table_location": self.table_location,
            "catalog": self.catalog,
            "cell": self.cell.cell.key,
        }


class IcebergIOManager(dg.ConfigurableIOManager):
    warehouse: str = Field(
        default=DEFAULT_WAREHOUSE,
        description="Warehouse (MATERIALIZER_WAREHOUSE): where the default SQLite catalog and its tables live.",
    )
    catalog_name: str = Field(
        default=DEFAULT_CATALOG_NAME,
        description="pyiceberg catalog name, looked up in .pyiceberg.yaml and PYICEBERG_CATALOG__<NAME>__* "
        "(MATERIALIZER_ICEBERG_CATALOG).",
    )
    catalog_properties: dict[str, str] = Field(
        default_factory=dict,
        description="Catalog properties on top of pyiceberg's config (type, uri, warehouse, glue.*, s3.* …). "
        "Keep secrets in PYICEBERG_CATALOG__* variables instead.",
    )
    default_namespace: str = Field(
        default=DEFAULT_NAMESPACE, description="Namespace of tables of assets without 'iceberg_table' metadata."
    )
    s3_endpoint_url: Optional[str] = Field(
        default=None, description="S3-compatible endpoint for the default catalog's data; default AWS_ENDPOINT_URL."
    )
    local_catalog_dir: str = Field(
        default=LOCAL_CATALOG_DIR_FOR_S3,
        description="Where the default SQLite catalog file is kept when the warehouse is on S3.",
    )

    def catalog_settings(self) -> CatalogSettings:
        return CatalogSettings(
            name=self.catalog_name,
            properties=dict(self.catalog_properties),
            warehouse=self.warehouse,
            s3=S3Options(endpoint_url=self.s3_endpoint_url),
            local_catalog_dir=self.local_catalog_dir,
        )

    def load_catalog(self):
        return load_catalog(self.catalog_settings())

    def publish_default_catalog(self) -> PublishedCatalog:
        """The default catalog into the working directory's ``.pyiceberg.yaml`` (lib.iceberg)."""
        return publish_default_catalog(self.catalog_settings())

    def describe_catalog(self) -> str:
        properties, origin = resolve_catalog_properties(self.catalog_settings())
        return f"{self.catalog_name} ({origin}: {describe_properties(properties)})"

    def table_identifier(self, metadata: Any, asset_key: dg.AssetKey) -> str:
        identifier = (metadata or {}).get(TABLE_METADATA_KEY)
        return str(identifier) if identifier else f"{self.default_namespace}.{asset_key.path[-1]}"

    def publish(
        self, context: dg.AssetExecutionContext, data: Any, output_name: str | None = None
    ) -> PublishedIcebergCell:
        """Replace the running partition of the asset (of ``output_name`` in a multi-asset) with
        ``data`` in one commit; the asset yields the result as its ``dg.Output``."""
        key = output_asset_key(context, output_name)
        identifier = self.table_identifier(context.assets_def.metadata_by_key[key], key)
        cell = Cell(*split_cell_key(context.partition_key))
        return self._publish(identifier, cell, data, _snapshot_properties(context.run.run_id, key))

    def _publish(
        self, identifier: str, cell: Cell, obj: Any, snapshot_properties: Mapping[str, str]
    ) -> PublishedIcebergCell:
        catalog = self.load_catalog()
        if isinstance(obj, ds.FileSystemDataset):
            obj = ParquetCellFiles.from_dataset(obj)
        if isinstance(obj, ParquetCellFiles):
            table = ensure_table(catalog, identifier, obj.schema)
            commit = replace_cell_from_files(table, cell, obj, snapshot_properties)
        else:
            if isinstance(obj, pa.Table):
                batches, schema, guard = iter(obj.to_batches()), obj.schema, None
            elif isinstance(obj, pa.RecordBatchReader):
                batches, schema, guard = iter(obj), obj.schema, None
            elif isinstance(obj, CellStream):
                batches, schema, guard = obj.batches, obj.schema, obj.guard
            else:
                raise TypeError(
                    "IcebergIOManager stores PublishedIcebergCell, ParquetCellFiles, a pyarrow FileSystemDataset, "
                    f"CellStream, RecordBatchReader or pyarrow.Table, got {type(obj).__name__}"
                )
            table = ensure_table(catalog, identifier, schema)
            commit = replace_cell_from_batches(table, cell, batches, schema, snapshot_properties, guard=guard)
        published = IcebergCell(table, cell, commit.snapshot_id)
        return PublishedIcebergCell(commit, published, table.location(), self.catalog_name)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        cell = Cell(*split_cell_key(context.asset_partition_key))
        identifier = self.table_identifier(context.definition_metadata, context.asset_key)
        if isinstance(obj, PublishedIcebergCell):
            published = (obj.cell.identifier, obj.cell.cell.key)
            if published != (identifier, cell.key):  # load_input would read another cell than the one committed
                raise ValueError(
                    f"{context.asset_key.to_user_string()} published cell {published[1]} of {published[0]}, "
                    f"but its cell is {cell.key} of {identifier}"
                )
        else:
            obj = self._publish(identifier, cell, obj, _snapshot_properties(context.run_id, context.asset_key))
        context.add_output_metadata(recorded_metadata(obj.as_metadata(), context.output_metadata))

    def load_input(self, context: dg.InputContext) -> IcebergCell:
        upstream = context.upstream_output
        identifier = self.table_identifier(upstream.definition_metadata if upstream else None, context.asset_key)
        day, slug = split_cell_key(context.asset_partition_key)
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            table = self.load_catalog().load_table(identifier)
        except (NoSuchTableError, NoSuchNamespaceError) as exc:
            raise dg.Failure(
                f"Iceberg table {identifier} does not exist in catalog {self.catalog_name}: "
                f"materialize {context.asset_key.to_user_string()} first"
            ) from exc
        return IcebergCell(table, Cell(day, slug))


def _snapshot_properties(run_id: str, asset_key: dg.AssetKey) -> dict[str, str]:
    """Recorded on the snapshot, so the table's history names the run and the asset that wrote it."""
    return {"dagster.run_id": run_id, "dagster.asset": asset_key.to_user_string()}
