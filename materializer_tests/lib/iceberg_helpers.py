"""Real Iceberg catalogs for tests: SQLite, PostgreSQL (``pg_url``) and Glue + S3 on moto's server."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib import iceberg as ice
from materializer_assets.lib.lake import ParquetLake
from materializer_assets.lib.storage import resolve

CATALOG_KINDS = ("sqlite", "postgres", "glue-s3")


@dataclass
class CatalogCase:
    kind: str
    settings: ice.CatalogSettings
    warehouse: str  # where the Parquet lake lives (local folder or s3://)

    def catalog(self):
        return ice.load_catalog(self.settings)

    def lake(self) -> ParquetLake:
        return ParquetLake(resolve(self.warehouse))


def glue_properties(endpoint: str, bucket: str) -> dict[str, str]:
    return {
        "type": "glue",
        "glue.endpoint": endpoint,
        "glue.region": "us-east-1",
        "glue.access-key-id": "testing",
        "glue.secret-access-key": "testing",
        "s3.endpoint": endpoint,
        "s3.region": "us-east-1",
        "s3.access-key-id": "testing",
        "s3.secret-access-key": "testing",
        "warehouse": f"s3://{bucket}/iceberg",
    }


def postgres_properties(pg_url: str, warehouse_dir) -> dict[str, str]:
    return {
        "type": "sql",
        "uri": pg_url.replace("postgresql://", "postgresql+psycopg://", 1),
        "warehouse": f"file://{warehouse_dir}/iceberg",
    }


def make_case(kind: str, request: pytest.FixtureRequest, tmp_path) -> CatalogCase:
    """The catalog ``kind`` with a fresh warehouse (a Postgres database / an S3 bucket of its own)."""
    # A per-test catalog name keeps the user's own ~/.pyiceberg.yaml out of the way.
    name = "materializer_test"
    if kind == "sqlite":
        warehouse = str(tmp_path / "warehouse")
        return CatalogCase(kind, ice.CatalogSettings(name=name, warehouse=warehouse), warehouse)
    if kind == "postgres":
        pg_url = request.getfixturevalue("pg_url")
        warehouse = str(tmp_path / "warehouse")
        return CatalogCase(kind, ice.CatalogSettings(name=name, properties=postgres_properties(pg_url, warehouse)), warehouse)
    if kind == "glue-s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = request.getfixturevalue("s3_bucket")
        _empty_glue(endpoint)
        return CatalogCase(
            kind, ice.CatalogSettings(name=name, properties=glue_properties(endpoint, bucket)), f"s3://{bucket}/lake"
        )
    raise ValueError(kind)


def _empty_glue(endpoint: str) -> None:
    """Moto's Glue is one catalog per server (the session's): start each test from an empty one."""
    import boto3

    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
    for database in glue.get_databases()["DatabaseList"]:
        for table in glue.get_tables(DatabaseName=database["Name"])["TableList"]:
            glue.delete_table(DatabaseName=database["Name"], Name=table["Name"])
        glue.delete_database(Name=database["Name"])


def parquet_rows_with(filesystem: pafs.FileSystem, paths, column: str, values) -> int:
    """Rows whose ``column`` is in ``values`` in every Parquet file of ``paths`` (others skipped)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = 0
    for path in paths:
        if not path.endswith(".parquet"):
            continue
        table = pq.read_table(path, filesystem=filesystem)
        if column in table.column_names:
            found += pc.sum(pc.fill_null(pc.is_in(table.column(column), value_set=pa.array(list(values))), False)).as_py() or 0
    return found


def all_files(filesystem: pafs.FileSystem, root: str) -> list[str]:
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return sorted(i.path for i in filesystem.get_file_info(selector) if i.type == pafs.FileType.File)


def file_metrics(table) -> list[dict]:
    """Per live data file of ``table``, the column metrics its manifest entry holds, by column name:
    ``{"lower": {name: bytes}, "upper": {...}, "value_counts": {name: n}, "null_counts": {...}}``
    (read with ``table.inspect.files()``, i.e. from the manifests themselves)."""
    table.refresh()
    schema = table.schema()

    def named(pairs) -> dict:
        return {schema.find_column_name(field_id): value for field_id, value in (pairs or [])}

    return [
        {
            "path": row["file_path"],
            "lower": named(row["lower_bounds"]),
            "upper": named(row["upper_bounds"]),
            "value_counts": named(row["value_counts"]),
            "null_counts": named(row["null_value_counts"]),
        }
        for row in table.inspect.files().to_pylist()
    ]


def id_and_text_columns(table) -> list[str]:
    """Every string/binary column and every list/struct/map column and nested field of ``table``
    except the partition columns: the columns whose values must never reach the manifests."""
    from pyiceberg.schema import index_by_id
    from pyiceberg.types import BinaryType, StringType

    schema = table.schema()
    names = []
    for field_id, field in sorted(index_by_id(schema).items()):
        name = schema.find_column_name(field_id)
        kind = field.field_type
        top = name.split(".")[0]
        if top in ice.PARTITION_COLUMNS:
            continue
        if not schema.find_field(top).field_type.is_primitive or isinstance(kind, (StringType, BinaryType)):
            names.append(name)
    return names
