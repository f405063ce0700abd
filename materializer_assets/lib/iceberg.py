"""The Apache Iceberg table: catalogs, one cell replaced at a time, schema evolution, cleanup.

Pure pyiceberg + pyarrow (no Dagster). DESIGN §5 and §9 hold the facts this
relies on (pyiceberg 0.12).

**Catalog**, the pyiceberg way: a catalog named ``materializer`` (configurable)
is looked up in ``.pyiceberg.yaml`` and ``PYICEBERG_CATALOG__MATERIALIZER__*``
environment variables (read fresh on every call), with explicit properties on
top. When none of them say anything, the default is a ``SqlCatalog`` on SQLite
inside the warehouse: ``<warehouse>/iceberg/catalog.db``, table data under
``<warehouse>/iceberg``. SQLite cannot live on S3, so with an ``s3://``
warehouse the default keeps the SQLite file on local disk
(``.materializer/iceberg/<hash of the warehouse URI>/catalog.db``) and the data on S3; anything shared by
several machines should configure a Postgres ``SqlCatalog``, Glue or REST.
:func:`publish_default_catalog` writes that default into a ``.pyiceberg.yaml``
in the working directory, so other tools open it with pyiceberg's own
``load_catalog("materializer")``; such a file is written for them and never
read back as configuration (a changed warehouse still moves the default).

**Partitioning**: identity on the ``date`` string and identity on
``model_slug``. The Iceberg partition is then exactly the Dagster partition
(one cell), so

- replacing a cell is ``delete(date = D and model_slug = M)``, which drops
  whole files without reading them (a strict partition match), plus the new
  files, in one commit: idempotent and never a rewrite of other cells;
- ``add_files`` can take a file's partition from its column statistics
  (min = max of both columns, DESIGN §9);
- engines prune on ``date = '…'`` and ``model_slug = '…'``, the way the
  pipeline reads;
- no transform is needed (``day(timestamp)`` needs pyiceberg-core, and a day
  range filter on a timestamp is a weaker match for "exactly this cell").
  ``date`` is the UTC day of ``timestamp`` by construction, so nothing is lost.

**Writing a cell** (measured, see docs/iceberg.md and docs/performance.md): files are
written (or, when consented_parquet already wrote them, *copied*) into the
table's own data folder under new names, then one transaction deletes the
cell's old files and registers the new ones with ``add_files``. Copying
costs no Parquet encoding: 0.15–0.20 s vs 2.4–2.8 s for ``overwrite`` of a
200k-row, 163 MB cell on local disk (1.1–2.4 s vs 7.9–8.6 s on S3), and no
extra memory (``overwrite`` holds the cell: +1.5 GB); the copies belong to the table, so the
Parquet lake may delete its own files whenever it re-publishes. Only the
commit is retried on a concurrent-commit conflict; the files stay written.

**Privacy in metadata** (DESIGN §10): manifests keep per-file lower/upper
bounds, and pyiceberg's default (``truncate(16)``) would copy the first 16
characters of every string column into them. Every id-like or text column
(every string, binary, list, struct or map column, and each nested field of
those) gets the metrics mode ``none`` (no bounds, no counts), so no user id or
text prefix lands in metadata, where an erasure could not reach it; the
partition columns get ``full`` (untruncated bounds), so a cell delete drops
whole files by their bounds instead of rewriting them, whatever the length
of the model slug. :func:`metrics_properties` derives these
``write.metadata.metrics.column.<name>`` properties from the table's schema;
they are set when a table is created, and brought up to date whenever a
table is loaded for writing, its schema evolves, or rows are deleted.
"""

from __future__ import annotations

import logging
import hashlib
import os
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationError,
)
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In
from pyiceberg.table import Table
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .storage import S3Options, is_s3_uri, resolve

DEFAULT_CATALOG_NAME = "materializer"
DEFAULT_NAMESPACE = "training_data"
DEFAULT_TABLE_NAME = "langfuse_traces"
DEFAULT_TABLE = f"{DEFAULT_NAMESPACE}.{DEFAULT_TABLE_NAME}"
PARTITION_COLUMNS = ("date", "model_slug")
ICEBERG_DIR = "iceberg"
SQLITE_FILE = "catalog.db"
LOCAL_CATALOG_DIR_FOR_S3 = ".materializer/iceberg"

METRICS_COLUMN_PREFIX = "write.metadata.metrics.column."
NO_METRICS = "none"  # no bounds, no counts: nothing of the values in the manifests
FULL_METRICS = "full"  # untruncated bounds: what a metadata-only cell delete needs
# Free text and high-cardinality ids: no Parquet dictionary (it would not pay).
NO_DICTIONARY_COLUMNS = ("user_id", "session_id", "prompt", "response", "metadata", "tools")

DEFAULT_TABLE_PROPERTIES: dict[str, str] = {
    "format-version": "2",
    # DESIGN §5: 64k-row row groups scan about 2x faster than pyiceberg's 1M default.
    "write.parquet.row-group-limit": "65536",
    "write.parquet.compression-codec": "zstd",
    "write.parquet.compression-level": "1",
    # Every cell write is a commit: keep the metadata.json history bounded.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
}

SNAPSHOT_CELL_PROPERTY = "materializer.cell"
SNAPSHOT_METHOD_PROPERTY = "materializer.method"

_COMMIT_ERRORS: tuple[type[BaseException], ...] = (CommitFailedException,)
try:  # SQLite answers "database is locked" while another process commits
    from sqlalchemy.exc import OperationalError as _SqlOperationalError

    _COMMIT_ERRORS += (_SqlOperationalError,)
except ImportError:  # pragma: no cover - sqlalchemy comes with pyiceberg[sql-*]
    pass


def _commit_attempts() -> Retrying:
    """Retries of a commit that lost a race with another writer (the catalog's optimistic
    concurrency): each attempt refreshes the table and redoes its change."""
    return Retrying(
        retry=retry_if_exception_type(_COMMIT_ERRORS),
        stop=stop_after_attempt(10),
        wait=wait_random_exponential(multiplier=0.05, max=3),
        reraise=True,
    )


class IcebergError(RuntimeError):
    """Base of the named failures of this module."""


class CatalogConfigError(IcebergError, ValueError):
    """The catalog configuration cannot be used (message names the setting, never a secret)."""


class IncompatibleSchemaError(IcebergError, ValueError):
    """Data whose schema cannot be merged into the table's (Iceberg allows only widening)."""


class CellMismatchError(IcebergError, ValueError):
    """Rows or files handed over for one cell belong (partly) to another cell."""


class _DropNoisyStatisticsWarnings(logging.Filter):
    # Files without min/max on id and text columns are deliberate (see metrics_properties).
    def filter(self, record: logging.LogRecord) -> bool:
        return "statistics missing for column" not in record.getMessage()


logging.getLogger("pyiceberg.io.pyarrow").addFilter(_DropNoisyStatisticsWarnings())


# --------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class CatalogSettings:
    """Where the catalog is; empty ``properties`` and no pyiceberg config means the default."""

    name: str = DEFAULT_CATALOG_NAME
    properties: Mapping[str, str] = field(default_factory=dict)
    warehouse: str = ".materializer/warehouse"
    s3: S3Options | None = None
    # Where the default SQLite catalog lives when the warehouse is on S3.
    local_catalog_dir: str = LOCAL_CATALOG_DIR_FOR_S3


PYICEBERG_CONFIG_FILE = ".pyiceberg.yaml"
# First line of a .pyiceberg.yaml that publish_default_catalog wrote: while it is there the file
# is ours to rewrite, and it is not read back as configuration.
PUBLISHED_CONFIG_MARKER = "# Written by `materializer run`"
_PUBLISHED_CONFIG_HEADER = (
    f"{PUBLISHED_CONFIG_MARKER}: the default Iceberg catalog of this folder, so that pyiceberg's\n"
    "# load_catalog(NAME) opens its tables. It is rewritten when that default changes; delete these\n"
    "# lines to keep the file as yours (it is then the catalog's configuration).\n"
)


def pyiceberg_config_file() -> str | None:
    """The ``.pyiceberg.yaml`` pyiceberg reads: the first of ``$PYICEBERG_HOME``, ``~`` and the
    working directory that holds one (the order of ``pyiceberg.utils.config.Config``, 0.12)."""
    for directory in (os.environ.get("PYICEBERG_HOME"), os.path.expanduser("~"), os.getcwd()):
        if directory and os.path.isfile(os.path.join(directory, PYICEBERG_CONFIG_FILE)):
            return os.path.join(directory, PYICEBERG_CONFIG_FILE)
    return None


def is_published_config(path: str) -> bool:
    """True for a ``.pyiceberg.yaml`` that :func:`publish_default_catalog` wrote (and nobody claimed)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().startswith(PUBLISHED_CONFIG_MARKER)
    except OSError:
        return False


def pyiceberg_config(name: str) -> dict[str, Any]:
    """The named catalog's properties from ``.pyiceberg.yaml`` and ``PYICEBERG_CATALOG__*``, read now.

    (pyiceberg reads its environment once at import; reading it again here lets
    a process that sets the variables later, e.g. a test or a launcher, work.)
    A file :func:`publish_default_catalog` wrote only mirrors the default: then
    only the environment variables count.
    """
    from pyiceberg.utils.config import Config

    config_file = pyiceberg_config_file()
    if config_file and is_published_config(config_file):
        # pyiceberg's own parsing of PYICEBERG_* (a private static method of 0.12; pinned <0.13).
        catalogs = Config._from_environment_variables({}).get("catalog") or {}
        return dict(catalogs.get(name.lower()) or {})
    return dict(Config().get_catalog_config(name) or {})


@dataclass(frozen=True)
class PublishedCatalog:
    """What :func:`publish_default_catalog` did: ``written``, ``unchanged``, ``configured`` (the
    catalog is not the default: pyiceberg's config already has it) or ``shadowed`` (pyiceberg reads
    another ``.pyiceberg.yaml`` first, which is left alone); ``path`` is the file concerned."""

    status: str
    path: str | None
    properties: Mapping[str, str] = field(default_factory=dict)


def publish_default_catalog(settings: CatalogSettings) -> PublishedCatalog:
    """Write the default catalog as ``catalog.<name>`` into ``./.pyiceberg.yaml`` for other readers.

    Never touches a ``.pyiceberg.yaml`` someone else wrote, never writes a secret (credentials come
    from the environment, as for the pipeline), and only when the catalog is the default one.
    """
    import yaml

    properties, origin = resolve_catalog_properties(settings)
    if origin != "default SQLite catalog":
        return PublishedCatalog("configured", pyiceberg_config_file())
    target = os.path.join(os.getcwd(), PYICEBERG_CONFIG_FILE)
    found = pyiceberg_config_file()
    if found is not None and (found != target or not is_published_config(found)):
        return PublishedCatalog("shadowed", found)
    public = {key: value for key, value in properties.items() if not _is_secret_key(key)}
    text = _PUBLISHED_CONFIG_HEADER.replace("NAME", f'"{settings.name}"') + yaml.safe_dump(
        {"catalog": {settings.name.lower(): public}}, default_flow_style=False, sort_keys=True
    )
    if found is not None:
        with open(found, encoding="utf-8") as handle:
            if handle.read() == text:
                return PublishedCatalog("unchanged", target, public)
    partial = f"{target}.{uuid.uuid4().hex}.tmp"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, target)  # readers see the old file or the new one, never half of it
    return PublishedCatalog("written", target, public)


def default_catalog_properties(settings: CatalogSettings) -> dict[str, str]:
    """A ``SqlCatalog`` on SQLite: inside a local warehouse, or local beside an S3 one."""
    warehouse = settings.warehouse.strip() or ".materializer/warehouse"
    if is_s3_uri(warehouse):
        location = resolve(warehouse)  # validates the bucket
        # One SQLite file per S3 warehouse: two warehouses must never share table entries.
        warehouse_key = hashlib.sha256(location.uri.encode()).hexdigest()[:12]
        catalog_dir = os.path.join(os.path.abspath(os.path.expanduser(settings.local_catalog_dir)), warehouse_key)
        os.makedirs(catalog_dir, exist_ok=True)
        properties = {
            "type": "sql",
            "uri": f"sqlite:///{catalog_dir}/{SQLITE_FILE}",
            "warehouse": f"{location.uri}/{ICEBERG_DIR}",
        }
        properties.update(s3_properties(settings.s3))
        return properties
    root = os.path.abspath(os.path.expanduser(warehouse.removeprefix("file://")))
    os.makedirs(os.path.join(root, ICEBERG_DIR), exist_ok=True)
    return {
        "type": "sql",
        "uri": f"sqlite:///{root}/{ICEBERG_DIR}/{SQLITE_FILE}",
        "warehouse": f"file://{root}/{ICEBERG_DIR}",
    }


def s3_properties(options: S3Options | None) -> dict[str, str]:
    """pyiceberg FileIO properties for an S3-compatible endpoint (pyarrow ignores AWS_ENDPOINT_URL)."""
    opts = (options or S3Options()).merged_with_env()
    properties = {}
    if opts.endpoint_url:
        properties["s3.endpoint"] = opts.endpoint_url
    if opts.region:
        properties["s3.region"] = opts.region
    if opts.access_key_id and opts.secret_access_key:
        properties["s3.access-key-id"] = opts.access_key_id
        properties["s3.secret-access-key"] = opts.secret_access_key
        if opts.session_token:
            properties["s3.session-token"] = opts.session_token
    return properties


def resolve_catalog_properties(settings: CatalogSettings) -> tuple[dict[str, str], str]:
    """(properties, where they came from): explicit + pyiceberg config, or the default."""
    configured = pyiceberg_config(settings.name)
    explicit = {key: str(value) for key, value in settings.properties.items() if value not in (None, "")}
    merged = {**configured, **explicit}
    if merged:
        origin = "resource config" if explicit and not configured else "pyiceberg config"
        if explicit and configured:
            origin = "pyiceberg config + resource config"
        return merged, origin
    return default_catalog_properties(settings), "default SQLite catalog"


def load_catalog(settings: CatalogSettings | None = None) -> Catalog:
    """The catalog, loaded with pyiceberg's own ``load_catalog``."""
    from pyiceberg.catalog import load_catalog as pyiceberg_load_catalog

    settings = settings or CatalogSettings()
    properties, origin = resolve_catalog_properties(settings)
    try:
        return pyiceberg_load_catalog(settings.name, **properties)
    except Exception as exc:  # connection errors too: the message must name the catalog, not its secrets
        shown = describe_properties(properties)
        raise CatalogConfigError(
            f"cannot load Iceberg catalog {settings.name!r} from the {origin} ({shown}): "
            f"{type(exc).__name__}: {_scrub(str(exc).splitlines()[0] if str(exc) else '', properties)}"
        ) from None


_SECRET_KEY_HINTS = ("secret", "password", "token", "credential", "key-id", "access-key")


def _is_secret_key(key: str) -> bool:
    return any(hint in key.lower() for hint in _SECRET_KEY_HINTS)


def describe_properties(properties: Mapping[str, Any]) -> str:
    """Catalog properties for logs and messages: secrets and URL passwords hidden."""
    from .registry import redact_url

    shown = []
    for key in sorted(properties):
        value = str(properties[key])
        if _is_secret_key(key):
            value = "***"
        elif "://" in value:
            value = redact_url(value)
        shown.append(f"{key}={value}")
    return ", ".join(shown)


def _scrub(message: str, properties: Mapping[str, Any]) -> str:
    """``message`` with every secret property value and URL password replaced by ***."""
    from urllib.parse import urlparse

    for key, value in properties.items():
        value = str(value)
        if _is_secret_key(key) and value:
            message = message.replace(value, "***")
        if "://" in value:
            password = urlparse(value).password
            if password:
                message = message.replace(password, "***")
    return message


def split_identifier(identifier: str | Sequence[str]) -> tuple[str, str]:
    parts = identifier.split(".") if isinstance(identifier, str) else list(identifier)
    if len(parts) < 2 or not all(parts):
        raise CatalogConfigError(f"an Iceberg table is named namespace.table, got {identifier!r}")
    return ".".join(parts[:-1]), parts[-1]


# --------------------------------------------------------------------- tables


def plain_arrow_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` without field metadata (field ids) and without schema metadata."""
    return pa.schema([_plain_field(f) for f in schema])


def _plain_field(f: pa.Field) -> pa.Field:
    return pa.field(f.name, _plain_type(f.type), nullable=f.nullable)


def _plain_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_struct(t):
        return pa.struct([_plain_field(t.field(i)) for i in range(t.num_fields)])
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(_plain_field(t.value_field))
    if pa.types.is_map(t):
        return pa.map_(_plain_type(t.key_type), _plain_field(t.item_field))
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_dictionary(t):
        return _plain_type(t.value_type)
    return t


def table_arrow_schema(table: Table) -> pa.Schema:
    """The table's current schema as plain Arrow (what files are written with)."""
    return plain_arrow_schema(table.schema().as_arrow())


def _nested_field_ids(field_type: Any) -> Iterator[int]:
    """Ids of every field nested in a list, struct or map type (any depth)."""
    from pyiceberg.types import ListType, MapType, StructType

    if isinstance(field_type, StructType):
        children = list(field_type.fields)
    elif isinstance(field_type, ListType):
        children = [field_type.element_field]
    elif isinstance(field_type, MapType):
        children = [field_type.key_field, field_type.value_field]
    else:
        return
    for child in children:
        yield child.field_id
        yield from _nested_field_ids(child.field_type)


def metrics_properties(schema: Any) -> dict[str, str]:
    """The ``write.metadata.metrics.column.*`` properties an Iceberg ``schema`` needs.

    ``none`` for every string, binary, UUID or fixed column and every list,
    struct or map column, including each field nested in it under the name
    pyiceberg looks up (e.g. ``messages.element.content``); ``full`` for the
    partition columns. Other columns (numbers, booleans, timestamps)
    keep the table default.
    """
    from pyiceberg.types import BinaryType, FixedType, StringType, UUIDType

    properties: dict[str, str] = {}
    for top in schema.fields:
        kind = top.field_type
        if top.name in PARTITION_COLUMNS:
            properties[METRICS_COLUMN_PREFIX + top.name] = FULL_METRICS
        elif not kind.is_primitive:
            properties[METRICS_COLUMN_PREFIX + top.name] = NO_METRICS
            for field_id in _nested_field_ids(kind):
                name = schema.find_column_name(field_id)
                if name:
                    properties[METRICS_COLUMN_PREFIX + name] = NO_METRICS
        elif isinstance(kind, (StringType, BinaryType, UUIDType, FixedType)):
            properties[METRICS_COLUMN_PREFIX + top.name] = NO_METRICS
    return properties


def ensure_metrics_properties(table: Table) -> dict[str, str]:
    """Bring the table's metrics properties up to date with its current schema; returns what changed.

    A no-op (no commit) when nothing is missing, so it runs before every write:
    tables created before a column existed, or before this rule, get it on
    their next write. Retried on a concurrent commit.
    """
    changed: dict[str, str] = {}
    for attempt in _commit_attempts():
        with attempt:
            table.refresh()
            wanted = metrics_properties(table.schema())
            changed = {key: value for key, value in wanted.items() if table.properties.get(key) != value}
            if changed:
                with table.transaction() as transaction:
                    transaction.set_properties(changed)
    return changed


def ensure_table(
    catalog: Catalog,
    identifier: str,
    schema: pa.Schema,
    properties: Mapping[str, str] | None = None,
    location: str | None = None,
) -> Table:
    """Load the table for writing, or create it partitioned by identity(date), identity(model_slug).

    Safe when several processes race to create it: the loser loads the winner's.
    Either way the table's metrics properties are those :func:`metrics_properties`
    asks for (set at creation, updated on an existing table).
    """
    namespace, _ = split_identifier(identifier)
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        pass
    else:
        ensure_metrics_properties(table)
        return table
    missing = [name for name in PARTITION_COLUMNS if name not in schema.names]
    if missing:
        raise IncompatibleSchemaError(f"cannot create {identifier}: the data has no partition column(s) {missing}")
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    table_properties = {**DEFAULT_TABLE_PROPERTIES, **(properties or {})}
    kwargs: dict[str, Any] = {"schema": plain_arrow_schema(schema), "properties": table_properties}
    if location:
        kwargs["location"] = location
    try:
        with catalog.create_table_transaction(identifier, **kwargs) as transaction:
            with transaction.update_spec() as spec:
                for name in PARTITION_COLUMNS:
                    spec.add_identity(name)
            # Field ids (and so nested column names) exist once the schema is in the transaction.
            transaction.set_properties(metrics_properties(transaction.table_metadata.schema()))
    except (TableAlreadyExistsError, CommitFailedException):
        pass
    table = catalog.load_table(identifier)
    ensure_metrics_properties(table)  # a no-op unless another process created it differently
    return table


def evolve_schema(table: Table, incoming: pa.Schema) -> list[str]:
    """Merge ``incoming`` into the table's schema by name; returns the columns added.

    New columns (top level or inside structs) are added as optional, so old data
    files stay as they are and read them as null. Types may only widen the way
    Iceberg allows (int → long, float → double, decimal precision); anything
    else raises :class:`IncompatibleSchemaError` naming each column. A column
    the table requires keeps being required (it is never silently relaxed).
    """
    current = table_arrow_schema(table)
    incoming = plain_arrow_schema(incoming)
    added = [name for name in incoming.names if name not in current.names]
    conflicts = []
    nested_change = False
    for f in incoming:
        if f.name not in current.names:
            continue
        existing = current.field(f.name)
        if existing.type.equals(f.type):
            continue
        if _widening(existing.type, f.type):
            continue
        if _nested_superset(existing.type, f.type):
            nested_change = True
            continue
        conflicts.append(f"column {f.name!r}: the table has {existing.type}, the data has {f.type}")
    if conflicts:
        raise IncompatibleSchemaError(
            f"incompatible schema change for {'.'.join(table.name())}: " + "; ".join(conflicts)
            + ". Iceberg only widens int→long, float→double and decimal precision; "
            "add a new column instead of changing the type of an existing one."
        )
    promotions = [
        f.name for f in incoming
        if f.name in current.names and _widens(current.field(f.name).type, f.type)
    ]
    if not added and not nested_change and not promotions:
        return []
    union_fields = []
    for f in incoming:
        if f.name not in current.names:
            union_fields.append(f.with_nullable(True))  # Iceberg adds columns as optional
            continue
        existing = current.field(f.name)
        # Never narrow the table to the data's type, never relax a required column.
        kind = existing.type if _widens(f.type, existing.type) else f.type
        union_fields.append(pa.field(f.name, kind, nullable=existing.nullable))
    union = pa.schema(union_fields)
    try:
        with table.update_schema() as update:
            update.union_by_name(union)
    except ValidationError as exc:
        raise IncompatibleSchemaError(f"incompatible schema change for {'.'.join(table.name())}: {exc}") from exc
    return added


def _widens(old: pa.DataType, new: pa.DataType) -> bool:
    """``new`` is a strict Iceberg widening of ``old`` (int→long, float→double, decimal precision)."""
    if pa.types.is_int32(old) and pa.types.is_int64(new):
        return True
    if pa.types.is_float32(old) and pa.types.is_float64(new):
        return True
    if pa.types.is_decimal(old) and pa.types.is_decimal(new):
        return new.scale == old.scale and new.precision > old.precision
    return False


def _widening(old: pa.DataType, new: pa.DataType) -> bool:
    """Either side widens the other: the table widens, or the data is cast up on write."""
    return _widens(old, new) or _widens(new, old)


def _nested_superset(old: pa.DataType, new: pa.DataType) -> bool:
    """``new`` only adds struct fields (at any depth) to ``old``."""
    if pa.types.is_struct(old) and pa.types.is_struct(new):
        old_fields = {old.field(i).name: old.field(i) for i in range(old.num_fields)}
        for i in range(new.num_fields):
            nf = new.field(i)
            of = old_fields.get(nf.name)
            if of is None:
                continue
            if not (of.type.equals(nf.type) or _nested_superset(of.type, nf.type) or _widening(of.type, nf.type)):
                return False
        return True
    if pa.types.is_list(old) and pa.types.is_list(new):
        return old.value_type.equals(new.value_type) or _nested_superset(old.value_type, new.value_type)
    return False


# --------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """One (date, model_slug) partition: one Dagster cell."""

    date: str
    model_slug: str

    @property
    def key(self) -> str:
        return f"{self.date}|{self.model_slug}"

    def filter(self) -> BooleanExpression:
        return And(EqualTo("date", self.date), EqualTo("model_slug", self.model_slug))


@dataclass
class CellCommit:
    """What a cell write committed (the output metadata)."""

    table: str
    cell: Cell
    snapshot_id: int | None
    rows: int
    files: int
    bytes: int
    method: str  # "copy" (files copied as they are) or "write" (batches encoded here)
    columns_added: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_metadata(self) -> dict:
        return {
            "table": self.table,
            "snapshot_id": self.snapshot_id,
            "rows": self.rows,
            "files": self.files,
            "bytes": self.bytes,
            "write_method": self.method,
            "columns_added": ", ".join(self.columns_added),
            "seconds": round(self.seconds, 3),
        }


@dataclass
class ParquetCellFiles:
    """Parquet files that already hold exactly one cell, e.g. consented_parquet's published files.

    The Iceberg IO manager copies them into the table (no decoding or
    encoding) when their schema fits the table, else rewrites their rows.
    ``published`` and ``commit`` are filled by the IO manager.
    """

    paths: list[str]
    filesystem: pafs.FileSystem
    schema: pa.Schema
    describe: Callable[[], dict] | None = None
    published: "IcebergCell | None" = None
    commit: "CellCommit | None" = None

    @classmethod
    def from_dataset(cls, dataset: ds.FileSystemDataset, describe: Callable[[], dict] | None = None) -> "ParquetCellFiles":
        return cls(list(dataset.files), dataset.filesystem, dataset.schema, describe=describe)


def _data_root(table: Table) -> str:
    return (table.properties.get("write.data.path") or f"{table.location().rstrip('/')}/data").rstrip("/")


def _cell_folder(table: Table, cell: Cell) -> str:
    from pyiceberg.typedef import Record

    values = {"date": cell.date, "model_slug": cell.model_slug}
    spec = table.spec()
    schema = table.schema()
    names = [schema.find_field(f.source_id).name for f in spec.fields]
    if sorted(names) != sorted(PARTITION_COLUMNS):
        raise IncompatibleSchemaError(
            f"{'.'.join(table.name())} is partitioned by {names}, not by identity(date), identity(model_slug)"
        )
    return f"{_data_root(table)}/{spec.partition_to_path(Record(*[values[n] for n in names]), schema)}"


def table_filesystem(table: Table) -> tuple[pafs.FileSystem, Callable[[str], str]]:
    """A pyarrow filesystem for the table's location and a URI → path function for it."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    scheme, netloc, _ = PyArrowFileIO.parse_location(table.location())
    io = table.io
    if isinstance(io, PyArrowFileIO):
        filesystem = io.fs_by_scheme(scheme, netloc)
    else:  # FsspecFileIO and friends
        filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(io.get_fs(scheme)))
    return filesystem, lambda uri: PyArrowFileIO.parse_location(uri)[2]


def conform_batch(batch: pa.RecordBatch, target: pa.Schema) -> pa.RecordBatch:
    """``batch`` as exactly ``target`` (order, types; missing columns null), checking required ones."""
    columns = []
    for f in target:
        if f.name in batch.schema.names:
            column = batch.column(f.name)
            if not column.type.equals(f.type):
                try:
                    column = column.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    # Arrow's message may quote the value (a prompt, a user id): it would end up in the
                    # run's failure event, which cannot be erased. Name the column and the types only.
                    raise IncompatibleSchemaError(
                        f"column {f.name!r}: cannot write {column.type} as {f.type} ({type(exc).__name__})"
                    ) from None
        else:
            column = pa.nulls(batch.num_rows, f.type)
        if not f.nullable and column.null_count:
            raise IncompatibleSchemaError(
                f"column {f.name!r} is required in the table but {column.null_count} row(s) are null"
            )
        columns.append(column)
    extra = [name for name in batch.schema.names if name not in target.names]
    if extra:
        raise IncompatibleSchemaError(f"columns not in the table: {extra} (evolve the schema first)")
    return pa.RecordBatch.from_arrays(columns, schema=target)


def _check_batch_in_cell(batch: pa.RecordBatch, cell: Cell) -> None:
    for name, expected in (("date", cell.date), ("model_slug", cell.model_slug)):
        column = batch.column(name)
        matches = pc.sum(pc.fill_null(pc.equal(column, expected), False)).as_py() or 0
        if matches != batch.num_rows:
            others = sorted({str(v) for v in pc.unique(column).to_pylist() if v != expected})[:5]
            raise CellMismatchError(
                f"{batch.num_rows - matches} row(s) for cell {cell.key} have {name} other than {expected!r} ({others})"
            )


class _Lane:
    """One output file at a time, encoded on its own thread (Parquet encoding releases the GIL)."""

    def __init__(self, owner: "_CellFileWriter", index: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.owner = owner
        self.index = index
        self.files = 0
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"iceberg-writer-{index}")
        self.pending = None
        self.writer: pq.ParquetWriter | None = None
        self.sink = None
        self.rows = 0
        self.bytes = 0

    def wait(self) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()  # re-raises the writer's error here

    def submit(self, table: pa.Table) -> None:
        self.wait()  # at most one row group in flight per lane: bounded memory
        self.pending = self.executor.submit(self._write, table)

    def _write(self, table: pa.Table) -> None:
        owner = self.owner
        if self.writer is None:
            path = f"{owner.folder}/{owner.token}-{self.index:02d}{self.files:03d}.parquet"
            self.files += 1
            owner.paths.append(path)
            self.sink = owner.io.new_output(path).create(overwrite=True)
            self.writer = pq.ParquetWriter(self.sink, owner.schema, **owner.writer_options)
        self.writer.write_table(table, row_group_size=owner.row_group_rows)
        self.rows += table.num_rows
        if self.sink.tell() >= owner.target_file_bytes:
            self.close_file()

    def close_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.bytes += self.sink.tell()
            self.sink.close()
            self.writer = self.sink = None

    def finish(self) -> None:
        try:
            self.wait()
            self.executor.submit(self.close_file).result()
        finally:
            self.executor.shutdown(wait=True)


class _CellFileWriter:
    """Streams batches into Parquet files in the table's data folder.

    Row groups go round-robin to ``lanes`` files encoded in parallel (pyiceberg's
    own ``overwrite`` also writes files in parallel); memory stays bounded at
    about one row group per lane plus the one being filled.
    """

    def __init__(self, table: Table, cell: Cell, schema: pa.Schema, lanes: int | None = None) -> None:
        properties = table.properties
        self.io = table.io
        self.folder = _cell_folder(table, cell)
        self.schema = schema
        self.token = uuid.uuid4().hex
        self.row_group_rows = int(properties.get("write.parquet.row-group-limit", "65536"))
        self.row_group_bytes = 64 * 2**20
        self.target_file_bytes = int(properties.get("write.target-file-size-bytes", str(512 * 2**20)))
        level = properties.get("write.parquet.compression-level")
        # Columns whose metrics Iceberg does not keep need no Parquet statistics either.
        no_statistics = {
            key.removeprefix(METRICS_COLUMN_PREFIX)
            for key, value in properties.items()
            if key.startswith(METRICS_COLUMN_PREFIX) and value in ("counts", NO_METRICS)
        }
        self.writer_options = {
            "compression": properties.get("write.parquet.compression-codec", "zstd"),
            "compression_level": int(level) if level not in (None, "") else None,
            "write_statistics": [name for name in schema.names if name not in no_statistics],
            # Dictionaries pay on short repeated values, not on free text or nested lists.
            "use_dictionary": [
                f.name for f in schema if f.name not in NO_DICTIONARY_COLUMNS and not pa.types.is_nested(f.type)
            ],
        }
        self.paths: list[str] = []
        self._lanes = [_Lane(self, i) for i in range(lanes or max(1, min(2, os.cpu_count() or 1)))]
        self._next = 0
        self._buffer: list[pa.RecordBatch] = []
        self._buffered_rows = 0
        self._buffered_bytes = 0

    @property
    def rows(self) -> int:
        return sum(lane.rows for lane in self._lanes)

    @property
    def bytes(self) -> int:
        return sum(lane.bytes for lane in self._lanes)

    def _flush(self, final: bool = False) -> None:
        if not self._buffer:
            return
        table = pa.Table.from_batches(self._buffer, schema=self.schema)
        rest = None
        if not final and table.num_rows > self.row_group_rows:
            # Full row groups only; the remainder starts the next one.
            table, rest = table.slice(0, self.row_group_rows), table.slice(self.row_group_rows)
        self._buffer, self._buffered_rows, self._buffered_bytes = [], 0, 0
        if rest is not None and rest.num_rows:
            self._buffer = rest.to_batches()
            self._buffered_rows, self._buffered_bytes = rest.num_rows, rest.nbytes
        self._lanes[self._next % len(self._lanes)].submit(table)
        self._next += 1

    def write(self, batch: pa.RecordBatch) -> None:
        self._buffer.append(batch)
        self._buffered_rows += batch.num_rows
        self._buffered_bytes += batch.nbytes
        if self._buffered_rows >= self.row_group_rows or self._buffered_bytes >= self.row_group_bytes:
            self._flush()

    def close(self) -> list[str]:
        self._flush(final=True)
        for lane in self._lanes:
            lane.finish()
        return list(self.paths)

    def abort(self) -> None:
        for lane in self._lanes:
            try:
                lane.finish()
            except Exception:  # the files are removed below anyway
                pass
        _delete_quietly(self.io, self.paths)


def _delete_quietly(io: Any, paths: Iterable[str]) -> None:
    for path in paths:
        try:
            io.delete(path)
        except Exception:  # an orphan at worst; purge_unreferenced_files removes it later
            pass


def _commit_cell(table: Table, cell: Cell, paths: list[str], snapshot_properties: Mapping[str, str]) -> Table:
    """One transaction: drop the cell's current files, register ``paths``. Retried on conflicts."""
    properties = dict(snapshot_properties)
    for attempt in _commit_attempts():
        with attempt:
            table.refresh()
            with table.transaction() as transaction:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Delete operation did not match any records")
                    transaction.delete(cell.filter(), snapshot_properties=properties)
                if paths:
                    # Fresh uuid names cannot be referenced already: skip the full-table check.
                    transaction.add_files(paths, snapshot_properties=properties, check_duplicate_files=False)
    return table


def _snapshot_id(table: Table) -> int | None:
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def replace_cell_from_batches(
    table: Table,
    cell: Cell,
    batches: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    snapshot_properties: Mapping[str, str] | None = None,
    guard: Callable[[pa.RecordBatch], None] | None = None,
) -> CellCommit:
    """Replace ``cell`` with the rows streamed in ``batches`` (all of which must belong to it)."""
    started = datetime.now(timezone.utc)
    added = evolve_schema(table, schema)
    ensure_metrics_properties(table)  # new columns too: before any file is written or registered
    target = table_arrow_schema(table)
    writer = _CellFileWriter(table, cell, target)
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if guard is not None:
                guard(batch)
            _check_batch_in_cell(batch, cell)
            writer.write(conform_batch(batch, target))
        paths = writer.close()
        properties = {SNAPSHOT_CELL_PROPERTY: cell.key, SNAPSHOT_METHOD_PROPERTY: "write", **(snapshot_properties or {})}
        _commit_cell(table, cell, paths, properties)
    except BaseException:
        writer.abort()
        raise
    return CellCommit(
        table=".".join(table.name()),
        cell=cell,
        snapshot_id=_snapshot_id(table),
        rows=writer.rows,
        files=len(paths),
        bytes=writer.bytes,
        method="write",
        columns_added=added,
        seconds=(datetime.now(timezone.utc) - started).total_seconds(),
    )


def _file_cell_values(metadata: pq.FileMetaData, column: str) -> set | None:
    """Distinct values of ``column`` per the footer statistics, or None if they are missing."""
    index = None
    for i in range(metadata.num_columns):
        if metadata.schema.column(i).path == column:
            index = i
            break
    if index is None:
        return {None}
    values: set = set()
    for r in range(metadata.num_row_groups):
        chunk = metadata.row_group(r).column(index)
        stats = chunk.statistics
        if stats is None or not stats.has_min_max or not stats.has_null_count:
            return None
        if stats.null_count:
            values.add(None)
        if stats.min != stats.max:
            values.update({stats.min, stats.max, "…"})
        values.add(stats.min)
    return values


def _copyable(file_schema: pa.Schema, table_schema: pa.Schema) -> bool:
    """add_files accepts the file as it is: same types, no required column optional or missing."""
    for f in table_schema:
        if f.name not in file_schema.names:
            if not f.nullable:
                return False
            continue
        ff = file_schema.field(f.name)
        if not _plain_type(ff.type).equals(f.type):
            return False
        if not f.nullable and ff.nullable:
            return False
    return all(name in table_schema.names for name in file_schema.names)


def replace_cell_from_files(
    table: Table,
    cell: Cell,
    files: ParquetCellFiles,
    snapshot_properties: Mapping[str, str] | None = None,
) -> CellCommit:
    """Replace ``cell`` with the rows of Parquet files that hold exactly that cell.

    The files are copied byte for byte into the table's data folder and
    registered with ``add_files`` (their partition is read from their column
    statistics, so each file is first checked to hold only this cell). Files
    whose schema does not fit the table as they are fall back to a rewrite.
    """
    started = datetime.now(timezone.utc)
    source_fs = files.filesystem
    footers = []
    for path in files.paths:
        with source_fs.open_input_file(path) as handle:
            footers.append((path, pq.read_metadata(handle)))
    footers = [(path, meta) for path, meta in footers if meta.num_rows > 0]
    for path, meta in footers:
        _check_file_in_cell(path, meta, cell, source_fs)
    file_schema = files.schema
    if footers:
        file_schema = footers[0][1].schema.to_arrow_schema()
    added = evolve_schema(table, file_schema)
    ensure_metrics_properties(table)  # add_files computes each file's metrics from these
    target = table_arrow_schema(table)
    if not all(_copyable(meta.schema.to_arrow_schema(), target) for _, meta in footers):
        dataset = ds.dataset([p for p, _ in footers], format="parquet", filesystem=source_fs)
        commit = replace_cell_from_batches(
            table, cell, dataset.to_batches(batch_size=32_768), dataset.schema, snapshot_properties
        )
        commit.columns_added = added + commit.columns_added
        return commit

    folder = _cell_folder(table, cell)
    token = uuid.uuid4().hex
    io = table.io
    try:
        destination_fs = table_filesystem(table)
    except Exception:  # a FileIO without a filesystem we can reach: stream through io
        destination_fs = None
    written: list[str] = []
    total_bytes = 0
    rows = 0
    try:
        for index, (path, meta) in enumerate(footers):
            destination = f"{folder}/{token}-{index:05d}.parquet"
            written.append(destination)
            total_bytes += _copy_file(source_fs, path, io, destination, destination_fs)
            rows += meta.num_rows
        properties = {SNAPSHOT_CELL_PROPERTY: cell.key, SNAPSHOT_METHOD_PROPERTY: "copy", **(snapshot_properties or {})}
        _commit_cell(table, cell, written, properties)
    except BaseException:
        _delete_quietly(io, written)
        raise
    return CellCommit(
        table=".".join(table.name()),
        cell=cell,
        snapshot_id=_snapshot_id(table),
        rows=rows,
        files=len(written),
        bytes=total_bytes,
        method="copy",
        columns_added=added,
        seconds=(datetime.now(timezone.utc) - started).total_seconds(),
    )


def _check_file_in_cell(path: str, meta: pq.FileMetaData, cell: Cell, filesystem: pafs.FileSystem) -> None:
    for name, expected in (("date", cell.date), ("model_slug", cell.model_slug)):
        values = _file_cell_values(meta, name)
        if values is None:  # no statistics: read the column itself
            column = pq.read_table(path, columns=[name], filesystem=filesystem).column(name)
            values = set(pc.unique(column).to_pylist())
        if values != {expected}:
            shown = sorted(str(v) for v in values)[:5]
            raise CellMismatchError(f"{path} is not only cell {cell.key}: {name} has {shown}")


def _copy_file(
    source_fs: pafs.FileSystem,
    source: str,
    io: Any,
    destination: str,
    table_fs: tuple[pafs.FileSystem, Callable[[str], str]] | None = None,
    chunk: int = 8 * 2**20,
) -> int:
    """Copy one file into the table: natively when both sides are the same kind of store, else streamed."""
    if table_fs is not None:
        filesystem, to_path = table_fs
        same_kind = type(filesystem) is type(source_fs) and isinstance(filesystem, (pafs.LocalFileSystem, pafs.S3FileSystem))
        if same_kind:
            try:
                # Local: an OS-level copy; S3: a server-side CopyObject (no bytes through this process).
                filesystem.copy_file(source, to_path(destination))
                return filesystem.get_file_info(to_path(destination)).size or 0
            except OSError:
                pass  # e.g. the table's credentials cannot read the lake's bucket: stream it
    copied = 0
    with source_fs.open_input_stream(source) as reader, io.new_output(destination).create(overwrite=True) as out:
        while True:
            data = reader.read(chunk)
            if not data:
                break
            out.write(data)
            copied += len(data)
    return copied


# --------------------------------------------------------------------- reading


def stream_scan(scan) -> Iterator[pa.RecordBatch]:
    """The batches of a pyiceberg ``DataScan``, one file after the other, one row group at a time.

    ``scan.to_arrow_batch_reader()`` hands each data file to a thread pool that
    reads it whole (``list(...)`` per file task) and submits every file at once
    (apache/iceberg-python#3036), so a 1M-row cell's text would be in memory
    before its first batch; and its per-file scanner reads 16 batches ahead.
    Here a Parquet task the filter selects whole (its residual is always-true, as
    for the cell filter on the identity-partitioned ``date`` / ``model_slug``) and
    without delete files is read one row group at a time with the projected
    columns (absent ones, from files written before a column was added, as
    nulls); any other task goes through pyiceberg's own per-file reader (deletes,
    residual filter, projection by field id), lazily, in this thread. Falls back
    to the public reader if a pyiceberg release moves those internals.
    """
    try:
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan, _read_all_delete_files, schema_to_pyarrow
        from pyiceberg.manifest import FileFormat

        tasks = list(scan.plan_files())
        projected = scan.projection()
        target = schema_to_pyarrow(projected, include_field_ids=False)
        reader = ArrowScan(scan.table_metadata, scan.io, projected, scan.row_filter, scan.case_sensitive, scan.limit)
        deletes = _read_all_delete_files(scan.io, tasks)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - another pyiceberg release
        yield from scan.to_arrow_batch_reader()
        return
    for task in tasks:
        whole = not task.delete_files and task.residual == AlwaysTrue() and task.file.file_format == FileFormat.PARQUET
        if whole and scan.limit is None:
            yield from _row_groups(scan.io, task.file.file_path, target)
        else:
            yield from reader._record_batches_from_scan_tasks_and_deletes([task], deletes)


def _row_groups(io, path: str, target: pa.Schema) -> Iterator[pa.RecordBatch]:
    """``path``'s rows with ``target``'s columns, one decoded row group at a time."""
    import pyarrow.parquet as pq

    with io.new_input(path).open() as stream:
        parquet = pq.ParquetFile(stream)
        present = set(parquet.schema_arrow.names)
        columns = [name for name in target.names if name in present]
        for index in range(parquet.num_row_groups):
            group = parquet.read_row_group(index, columns=columns)
            if not group.num_rows:
                continue
            # The file's own types (as pyiceberg's reader keeps them: no string → large_string copy).
            arrays = [
                group.column(field.name) if field.name in present else pa.nulls(group.num_rows, field.type)
                for field in target
            ]
            schema = pa.schema([field.with_type(array.type) for field, array in zip(target, arrays)])
            yield from pa.Table.from_arrays(arrays, schema=schema).combine_chunks().to_batches()


class IcebergCell:
    """A lazy read of one cell at one snapshot: what downstream assets get.

    Duck-types the parts of ``pyarrow.dataset.Dataset`` the pipeline uses
    (``schema``, ``to_batches(columns=, batch_size=)``, ``count_rows()``), adds
    ``to_reader()`` (a ``RecordBatchReader``) and ``snapshot_id`` for lineage.
    """

    def __init__(self, table: Table, cell: Cell, snapshot_id: int | None = None) -> None:
        self.table = table
        self.cell = cell
        self.snapshot_id = snapshot_id if snapshot_id is not None else _snapshot_id(table)
        self.identifier = ".".join(table.name())

    def __repr__(self) -> str:
        return f"IcebergCell({self.identifier}, {self.cell.key}, snapshot {self.snapshot_id})"

    @property
    def schema(self) -> pa.Schema:
        return table_arrow_schema(self.table)

    def _scan(self, columns: Sequence[str] | None = None):
        kwargs: dict[str, Any] = {"row_filter": self.cell.filter()}
        if columns is not None:
            kwargs["selected_fields"] = tuple(columns)
        if self.snapshot_id is not None:
            kwargs["snapshot_id"] = self.snapshot_id
        return self.table.scan(**kwargs)

    def to_batches(self, columns: Sequence[str] | None = None, batch_size: int = 32_768, **_: Any) -> Iterator[pa.RecordBatch]:
        if self.snapshot_id is None:
            return
        schema = self.schema
        target = pa.schema([schema.field(c) for c in columns]) if columns is not None else schema
        for batch in stream_scan(self._scan(columns)):
            if batch.num_rows == 0:
                continue
            batch = batch.select(target.names)
            if not batch.schema.equals(target):
                batch = pa.RecordBatch.from_arrays(
                    [col.cast(f.type) for col, f in zip(batch.columns, target)], schema=target
                )
            for offset in range(0, batch.num_rows, batch_size):
                yield batch.slice(offset, batch_size)

    def to_reader(self, columns: Sequence[str] | None = None) -> pa.RecordBatchReader:
        schema = self.schema
        target = pa.schema([schema.field(c) for c in columns]) if columns is not None else schema
        return pa.RecordBatchReader.from_batches(target, self.to_batches(columns))

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole cell in memory: for small cells and tests only."""
        return self.to_reader(columns).read_all()

    def count_rows(self) -> int:
        if self.snapshot_id is None:
            return 0
        return self._scan().count()

    def files(self) -> list[str]:
        if self.snapshot_id is None:
            return []
        return [task.file.file_path for task in self._scan().plan_files()]


# --------------------------------------------------------------------- erasure and cleanup


def count_matching_rows(table: Table, column: str, values: Iterable[str]) -> dict[str, int]:
    """Rows whose ``column`` is in ``values``, per cell key (reads only three columns)."""
    values = sorted(set(values))
    table.refresh()
    if not values or table.current_snapshot() is None or column not in table.schema().column_names:
        return {}
    counts: Counter = Counter()
    scan = table.scan(row_filter=In(column, values), selected_fields=("date", "model_slug", column))
    for batch in stream_scan(scan):
        for day, slug in zip(batch.column("date").to_pylist(), batch.column("model_slug").to_pylist()):
            counts[f"{day}|{slug}"] += 1
    return dict(counts)


def delete_rows(table: Table, column: str, values: Iterable[str], snapshot_properties: Mapping[str, str] | None = None) -> dict[str, int]:
    """One copy-on-write delete of every row whose ``column`` is in ``values``; rows removed per cell.

    DESIGN §5: a delete rewrites most files it touches, so callers batch all
    values of a run into this one call.
    """
    counts = count_matching_rows(table, column, values)
    if not counts:
        return {}
    predicate = In(column, sorted(set(values)))
    ensure_metrics_properties(table)  # the rewritten files' metrics follow the table's properties
    for attempt in _commit_attempts():
        with attempt:
            table.refresh()
            table.delete(predicate, snapshot_properties=dict(snapshot_properties or {}))
    return counts


@dataclass
class PurgeReport:
    expired_snapshots: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0

    def as_dict(self) -> dict:
        return {"expired_snapshots": self.expired_snapshots, "deleted_files": self.deleted_files, "deleted_bytes": self.deleted_bytes}


def _referenced_files(table: Table, snapshots: Iterable[Any], live_only: bool) -> set[str]:
    io = table.io
    referenced: set[str] = set()
    for snapshot in snapshots:
        referenced.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(io):
            referenced.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=live_only):
                referenced.add(entry.data_file.file_path)
    return referenced


def expire_and_purge(
    table: Table,
    older_than: datetime | None = None,
    orphan_grace: timedelta = timedelta(hours=1),
) -> PurgeReport:
    """Expire snapshots and physically delete every file no remaining snapshot needs.

    ``older_than=None`` keeps only the current snapshot (what an erasure needs:
    any older snapshot can still read erased rows). Deleted are: files that only
    expired snapshots referenced, older ``*.metadata.json`` versions, and
    orphans (files no snapshot ever referenced, e.g. from a failed write) older
    than ``orphan_grace`` (younger ones may belong to a write in flight).
    """
    report = PurgeReport()
    for attempt in _commit_attempts():
        with attempt:
            table.refresh()
            current = table.current_snapshot()
            before = list(table.snapshots())
            protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
            cutoff = older_than.timestamp() * 1000 if older_than is not None else None
            expire = [
                s.snapshot_id
                for s in before
                if s.snapshot_id not in protected
                and (current is None or s.snapshot_id != current.snapshot_id)
                and (cutoff is None or s.timestamp_ms < cutoff)
            ]
            if expire:
                table.maintenance.expire_snapshots().by_ids(expire).commit()
    report.expired_snapshots = len(expire)
    table.refresh()
    referenced_ever = _referenced_files(table, before, live_only=False)
    live = _referenced_files(table, table.snapshots(), live_only=True)
    filesystem, to_path = table_filesystem(table)
    live_paths = {to_path(uri) for uri in live} | {to_path(table.metadata_location)}
    ever_paths = {to_path(uri) for uri in referenced_ever}
    current_metadata = to_path(table.metadata_location)
    now = datetime.now(timezone.utc)
    selector = pafs.FileSelector(to_path(table.location()), recursive=True, allow_not_found=True)
    infos = [info for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File]
    current_mtime = next((info.mtime for info in infos if info.path == current_metadata), None)
    for info in infos:
        if info.path in live_paths:
            continue
        mtime = info.mtime.astimezone(timezone.utc) if info.mtime is not None else now
        old_metadata = info.path.endswith(".metadata.json") and (
            current_mtime is None or info.mtime is None or info.mtime <= current_mtime
        )
        if info.path in ever_paths or old_metadata or mtime < now - orphan_grace:
            filesystem.delete_file(info.path)
            report.deleted_files += 1
            report.deleted_bytes += info.size or 0
    return report


def table_files(table: Table) -> list[str]:
    """Every file under the table's location (paths on its filesystem)."""
    filesystem, to_path = table_filesystem(table)
    selector = pafs.FileSelector(to_path(table.location()), recursive=True, allow_not_found=True)
    return sorted(info.path for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File)
