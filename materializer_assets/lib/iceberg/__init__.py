"""The Apache Iceberg table: catalogs, one cell replaced at a time, schema evolution, cleanup.

Pure pyiceberg + pyarrow (no Dagster). DESIGN §5 and §9 hold the facts this
relies on (pyiceberg 0.12). One module per job, each explaining its part:

- :mod:`.base`: the table's name, its partitioning (one Iceberg partition is
  one Dagster cell, :class:`Cell`), the named errors, the commit retry;
- :mod:`.catalog`: where the catalog is configured, loading it, and the
  ``.pyiceberg.yaml`` published so other tools open the default one;
- :mod:`.tables`: creating the table and its partition spec, evolving its
  schema, the metrics properties that keep ids and text out of metadata;
- :mod:`.writing`: a cell's data files, encoded from batches or copied;
- :mod:`.cells`: replacing one cell in one commit;
- :mod:`.reading`: a cell at one snapshot, streamed row group by row group;
- :mod:`.erasure`: deleting rows, expiring snapshots, purging files.

Callers import the names below from here.
"""

from .base import (
    DEFAULT_NAMESPACE,
    DEFAULT_TABLE,
    DEFAULT_TABLE_NAME,
    PARTITION_COLUMNS,
    CatalogConfigError,
    Cell,
    CellMismatchError,
    IcebergError,
    IncompatibleSchemaError,
)
from .catalog import (
    DEFAULT_CATALOG_NAME,
    ICEBERG_DIR,
    LOCAL_CATALOG_DIR_FOR_S3,
    PUBLISHED_CONFIG_MARKER,
    PYICEBERG_CONFIG_FILE,
    SQLITE_FILE,
    CatalogSettings,
    PublishedCatalog,
    default_catalog_properties,
    describe_properties,
    is_published_config,
    load_catalog,
    publish_default_catalog,
    pyiceberg_config,
    pyiceberg_config_file,
    resolve_catalog_properties,
    s3_properties,
    split_identifier,
)
from .cells import (
    SNAPSHOT_CELL_PROPERTY,
    SNAPSHOT_METHOD_PROPERTY,
    CellCommit,
    ParquetCellFiles,
    conform_batch,
    replace_cell_from_batches,
    replace_cell_from_files,
)
from .erasure import PurgeReport, count_matching_rows, delete_rows, expire_and_purge, table_files
from .reading import IcebergCell, stream_scan
from .tables import (
    DEFAULT_TABLE_PROPERTIES,
    FULL_METRICS,
    METRICS_COLUMN_PREFIX,
    NO_METRICS,
    ensure_metrics_properties,
    ensure_table,
    evolve_schema,
    metrics_properties,
    plain_arrow_schema,
    table_arrow_schema,
    table_filesystem,
)
from .writing import NO_DICTIONARY_COLUMNS

__all__ = [
    "CatalogConfigError",
    "CatalogSettings",
    "Cell",
    "CellCommit",
    "CellMismatchError",
    "DEFAULT_CATALOG_NAME",
    "DEFAULT_NAMESPACE",
    "DEFAULT_TABLE",
    "DEFAULT_TABLE_NAME",
    "DEFAULT_TABLE_PROPERTIES",
    "FULL_METRICS",
    "ICEBERG_DIR",
    "IcebergCell",
    "IcebergError",
    "IncompatibleSchemaError",
    "LOCAL_CATALOG_DIR_FOR_S3",
    "METRICS_COLUMN_PREFIX",
    "NO_DICTIONARY_COLUMNS",
    "NO_METRICS",
    "PARTITION_COLUMNS",
    "PUBLISHED_CONFIG_MARKER",
    "PYICEBERG_CONFIG_FILE",
    "ParquetCellFiles",
    "PublishedCatalog",
    "PurgeReport",
    "SNAPSHOT_CELL_PROPERTY",
    "SNAPSHOT_METHOD_PROPERTY",
    "SQLITE_FILE",
    "conform_batch",
    "count_matching_rows",
    "default_catalog_properties",
    "delete_rows",
    "describe_properties",
    "ensure_metrics_properties",
    "ensure_table",
    "evolve_schema",
    "expire_and_purge",
    "is_published_config",
    "load_catalog",
    "metrics_properties",
    "plain_arrow_schema",
    "publish_default_catalog",
    "pyiceberg_config",
    "pyiceberg_config_file",
    "replace_cell_from_batches",
    "replace_cell_from_files",
    "resolve_catalog_properties",
    "s3_properties",
    "split_identifier",
    "stream_scan",
    "table_arrow_schema",
    "table_files",
    "table_filesystem",
]
