"""The Iceberg IO manager: each asset cell is exactly that cell of an Iceberg table (DESIGN §2).

The table comes from the asset's metadata (``{"iceberg_table": "training_data.langfuse_traces"}``;
default ``<default_namespace>.<asset name>``). An asset may return:

- :class:`~materializer_assets.lib.iceberg.ParquetCellFiles` (or a
  ``pyarrow.dataset.FileSystemDataset``): Parquet files holding exactly the
  cell, copied into the table as they are (no re-encoding);
- a :class:`~materializer_assets.lib.lake.CellStream`, a ``RecordBatchReader``
  or a ``pyarrow.Table``: batches streamed into new files.

Either way one commit replaces the cell (idempotent). The output metadata
records the snapshot id, rows, files and bytes; loading an input gives an
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

from typing import Any, Optional

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
from .parquet_io import DEFAULT_WAREHOUSE

TABLE_METADATA_KEY = "iceberg_table"


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

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        day, slug = split_cell_key(context.asset_partition_key)
        cell = Cell(day, slug)
        identifier = self.table_identifier(context.definition_metadata, context.asset_key)
        catalog = self.load_catalog()
        snapshot_properties = {"dagster.run_id": context.run_id, "dagster.asset": context.asset_key.to_user_string()}
        describe = getattr(obj, "describe", None)
        if isinstance(obj, ds.FileSystemDataset):
            obj = ParquetCellFiles.from_dataset(obj)
        if isinstance(obj, ParquetCellFiles):
            table = ensure_table(catalog, identifier, obj.schema)
            commit = replace_cell_from_files(table, cell, obj, snapshot_properties)
            obj.commit = commit
        else:
            if isinstance(obj, pa.Table):
                batches, schema, guard = iter(obj.to_batches()), obj.schema, None
            elif isinstance(obj, pa.RecordBatchReader):
                batches, schema, guard = iter(obj), obj.schema, None
            elif isinstance(obj, CellStream):
                batches, schema, guard = obj.batches, obj.schema, obj.guard
            else:
                raise TypeError(
                    "IcebergIOManager stores ParquetCellFiles, a pyarrow FileSystemDataset, CellStream, "
                    f"RecordBatchReader or pyarrow.Table, got {type(obj).__name__}"
                )
            table = ensure_table(catalog, identifier, schema)
            commit = replace_cell_from_batches(table, cell, batches, schema, snapshot_properties, guard=guard)
        published = IcebergCell(table, cell, commit.snapshot_id)
        if hasattr(obj, "published"):
            obj.published = published
        metadata: dict[str, Any] = {
            **commit.as_metadata(),
            "table_location": table.location(),
            "catalog": self.catalog_name,
            "cell": cell.key,
        }
        if callable(describe):
            metadata.update(describe())
        context.add_output_metadata(metadata)

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
