"""The table itself: created with its partition spec, its schema evolved, its metrics properties kept right.

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

Also here: where the table's files are (:func:`table_filesystem`, and the
folder of one cell's data files).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping

import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationError,
)
from pyiceberg.table import Table

from .base import PARTITION_COLUMNS, Cell, IncompatibleSchemaError, _commit_attempts
from .catalog import split_identifier

METRICS_COLUMN_PREFIX = "write.metadata.metrics.column."
NO_METRICS = "none"  # no bounds, no counts: nothing of the values in the manifests
FULL_METRICS = "full"  # untruncated bounds: what a metadata-only cell delete needs

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


class _DropNoisyStatisticsWarnings(logging.Filter):
    # Files without min/max on id and text columns are deliberate (see metrics_properties).
    def filter(self, record: logging.LogRecord) -> bool:
        return "statistics missing for column" not in record.getMessage()


logging.getLogger("pyiceberg.io.pyarrow").addFilter(_DropNoisyStatisticsWarnings())


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
