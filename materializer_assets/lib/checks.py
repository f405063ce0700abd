"""Data checks over a published cell, read back from its files.

Each returns a :class:`CheckOutcome`; the Dagster layer turns it into an
``AssetCheckResult``. They scan only the columns they need, batch by batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .consent import SOURCE_COLUMN, SOURCE_METADATA, SOURCE_REGISTRY, SOURCE_TAG, granted_mask
from .lake import iter_batches
from .identity import SeenKeys

GRANTING_SOURCES = frozenset({SOURCE_REGISTRY, SOURCE_COLUMN, SOURCE_TAG, SOURCE_METADATA})


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _columns(dataset: ds.Dataset, wanted: list[str]) -> list[str]:
    return [name for name in wanted if name in dataset.schema.names]


@dataclass
class ConsentLineage:
    """What :func:`consent_lineage` found: rows read, rows without consent=true, and rows
    whose consent source cannot grant (a row may be both)."""

    rows: int = 0
    without_consent: int = 0
    without_granting_source: int = 0

    @property
    def passed(self) -> bool:
        return self.without_consent == 0 and self.without_granting_source == 0


CONSENT_LINEAGE_COLUMNS = ("consent", "consent_source")


def consent_lineage(batches: Iterable[pa.RecordBatch]) -> ConsentLineage:
    """The consent check of every consented output: consent = true and a consent source that can grant.

    ``batches`` need the :data:`CONSENT_LINEAGE_COLUMNS`.
    """
    found = ConsentLineage()
    granting = pa.array(sorted(GRANTING_SOURCES))
    for batch in batches:
        found.rows += batch.num_rows
        found.without_consent += batch.num_rows - (pc.sum(granted_mask(batch)).as_py() or 0)
        can_grant = pc.fill_null(pc.is_in(batch.column("consent_source"), value_set=granting), False)
        found.without_granting_source += batch.num_rows - (pc.sum(can_grant).as_py() or 0)
    return found


def check_only_granted(dataset: ds.Dataset) -> CheckOutcome:
    """Every row has consent = true and a consent source that can grant (:func:`consent_lineage`)."""
    found = consent_lineage(iter_batches(dataset, list(CONSENT_LINEAGE_COLUMNS)))
    return CheckOutcome(
        found.passed,
        "every row has consent=true and a recorded consent source"
        if found.passed
        else f"{found.without_consent} row(s) without consent=true, {found.without_granting_source} without a granting source",
        {
            "rows": found.rows,
            "rows_without_consent": found.without_consent,
            "rows_with_bad_consent_source": found.without_granting_source,
        },
    )


def check_unique_ids(dataset: ds.Dataset) -> CheckOutcome:
    """(trace_id, observation_id) is unique in the cell."""
    seen = SeenKeys()  # 8 bytes per row: a million-row cell stays small
    duplicates = 0
    examples: list[str] = []
    for batch in iter_batches(dataset, ["trace_id", "observation_id"]):
        trace_ids, observation_ids = batch.column(0), batch.column(1)
        repeated = np.flatnonzero(~seen.first_seen(trace_ids, observation_ids))
        duplicates += len(repeated)
        examples.extend(
            f"{trace_ids[int(i)].as_py()}/{observation_ids[int(i)].as_py()}" for i in repeated[: 5 - len(examples)]
        )
    return CheckOutcome(
        duplicates == 0,
        "no duplicate (trace_id, observation_id)" if not duplicates else f"{duplicates} duplicate id(s)",
        {"duplicates": duplicates, "examples": ", ".join(examples)},
    )


def check_required_non_null(dataset: ds.Dataset, required: tuple[str, ...]) -> CheckOutcome:
    nulls: Counter = Counter()
    # The footers, not dataset.schema: a lake cell is opened with its declared schema.
    present = columns_in_every_file(dataset)
    missing = [name for name in required if name not in present]
    for batch in iter_batches(dataset, _columns(dataset, list(required))):
        for name in batch.schema.names:
            nulls[name] += batch.column(name).null_count
    offenders = {name: count for name, count in nulls.items() if count}
    passed = not offenders and not missing
    return CheckOutcome(
        passed,
        "required columns are present and non-null"
        if passed
        else f"missing columns {missing}, nulls {offenders}",
        {"null_counts": offenders, "missing_columns": ", ".join(missing)},
    )


def file_schemas(dataset) -> list[tuple[str, pa.Schema]]:
    """``(file, schema)`` of every published file, each read from its own Parquet footer.

    A lake cell is opened with the declared schema passed in, so its
    ``dataset.schema`` is the declaration, not what the files hold; only the
    footers tell. Anything else (an Iceberg cell, a table) has one schema of its own.
    """
    if isinstance(dataset, ds.FileSystemDataset):
        return [(path, _footer_schema(path, dataset.filesystem)) for path in dataset.files]
    return [(type(dataset).__name__, dataset.schema)]


def _footer_schema(path: str, filesystem) -> pa.Schema | str:
    try:
        return pq.read_schema(path, filesystem=filesystem)
    except (OSError, pa.ArrowException) as exc:  # a missing or corrupt file is a difference too
        return f"unreadable footer: {type(exc).__name__}: {str(exc)[:200]}"


def columns_in_every_file(dataset) -> set[str]:
    """Names of the columns every published file has (by their footers)."""
    schemas = [schema if isinstance(schema, pa.Schema) else pa.schema([]) for _, schema in file_schemas(dataset)]
    if not schemas:  # an empty cell has no files: nothing is missing from them
        return set(dataset.schema.names)
    return set.intersection(*(set(schema.names) for schema in schemas))


def schema_differences(expected: pa.Schema, actual: pa.Schema) -> list[str]:
    """How ``actual`` differs from ``expected``, one entry per kind: missing and
    unexpected columns, each retyped column (type or nullability), reordering;
    empty when they are equal."""
    found = {field_.name: field_ for field_ in actual}
    declared = {field_.name: field_ for field_ in expected}
    missing = [name for name in expected.names if name not in found]
    unexpected = [f"{field_.name} ({field_.type})" for field_ in actual if field_.name not in declared]
    differences = []
    if missing:
        differences.append("missing " + ", ".join(missing))
    if unexpected:
        differences.append("unexpected " + ", ".join(unexpected))
    for field_ in expected:
        other = found.get(field_.name)
        if other is None:
            continue
        if not other.type.equals(field_.type):
            differences.append(f"{field_.name}: expected {field_.type}, found {other.type}")
        elif other.nullable != field_.nullable:
            differences.append(
                f"{field_.name}: expected {'nullable' if field_.nullable else 'not null'}, "
                f"found {'nullable' if other.nullable else 'not null'}"
            )
    if len(set(actual.names)) != len(actual.names):
        differences.append("duplicate column names")
    common_expected = [name for name in expected.names if name in found]
    common_actual = [name for name in actual.names if name in declared]
    if common_expected != common_actual:
        pairs = zip(common_expected, common_actual)
        first = next((found for wanted, found in pairs if wanted != found), common_actual[-1] if common_actual else "")
        differences.append(f"columns reordered (first out of place: {first})")
    return differences


def check_schema(dataset, expected: pa.Schema) -> CheckOutcome:
    """Every published file's own schema (its Parquet footer) equals the declared one:
    the same names, in the same order, with the same types and nullability."""
    schemas = file_schemas(dataset)
    offending: dict[str, list[str]] = {}
    for path, schema in schemas:
        differences = schema_differences(expected, schema) if isinstance(schema, pa.Schema) else [schema]
        if differences:
            offending[path] = differences
    if not offending:
        description = f"all {len(schemas)} file(s) have the declared schema ({len(expected)} columns)"
    else:
        shown = [f"{path}: {'; '.join(diffs)[:500]}" for path, diffs in list(offending.items())[:3]]
        description = f"{len(offending)} of {len(schemas)} file(s) differ from the declared schema — " + " | ".join(shown)
    return CheckOutcome(
        not offending,
        description,
        {
            "files": len(schemas),
            "files_not_as_declared": len(offending),
            "declared_columns": len(expected),
            "differences": {path: diffs[:20] for path, diffs in list(offending.items())[:10]},
        },
    )


def check_row_counts_match(rows: int, expected_rows: int, name: str, expected_name: str) -> CheckOutcome:
    """A copy of a cell has exactly as many rows as what it was copied from."""
    return CheckOutcome(
        rows == expected_rows,
        f"{name} {rows} rows, {expected_name} {expected_rows} rows",
        {f"{name}_rows": rows, f"{expected_name}_rows": expected_rows, "difference": rows - expected_rows},
    )


def check_reconciles(rows_in: int, buckets: dict[str, int]) -> CheckOutcome:
    total = sum(buckets.values())
    return CheckOutcome(
        rows_in == total,
        f"raw rows {rows_in} = " + " + ".join(f"{name} {count}" for name, count in buckets.items()),
        {"raw_rows": rows_in, **buckets, "difference": rows_in - total},
    )
