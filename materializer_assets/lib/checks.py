"""Data checks over a published cell, read back from its files.

Each returns a :class:`CheckOutcome`; the Dagster layer turns it into an
``AssetCheckResult``. They scan only the columns they need, batch by batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .consent import SOURCE_COLUMN, SOURCE_METADATA, SOURCE_REGISTRY, SOURCE_TAG
from .lake import iter_batches
from .stages import SeenKeys

GRANTING_SOURCES = frozenset({SOURCE_REGISTRY, SOURCE_COLUMN, SOURCE_TAG, SOURCE_METADATA})


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


def _columns(dataset: ds.Dataset, wanted: list[str]) -> list[str]:
    return [name for name in wanted if name in dataset.schema.names]


def check_only_granted(dataset: ds.Dataset) -> CheckOutcome:
    """Every row has consent = true and a consent source that can grant."""
    bad_consent = 0
    bad_source: Counter = Counter()
    rows = 0
    for batch in iter_batches(dataset, ["consent", "consent_source"]):
        rows += batch.num_rows
        bad_consent += batch.num_rows - (pc.sum(pc.fill_null(pc.equal(batch.column("consent"), True), False)).as_py() or 0)
        sources = batch.column("consent_source")
        offending = sources.filter(pc.invert(pc.fill_null(pc.is_in(sources, pa.array(sorted(GRANTING_SOURCES))), False)))
        for source in offending.to_pylist():
            bad_source[str(source)] += 1
    passed = bad_consent == 0 and not bad_source
    return CheckOutcome(
        passed,
        "every row has consent=true and a recorded consent source"
        if passed
        else f"{bad_consent} row(s) without consent=true, {sum(bad_source.values())} without a granting source",
        {"rows": rows, "rows_without_consent": bad_consent, "rows_with_bad_consent_source": sum(bad_source.values())},
    )


def check_unique_ids(dataset: ds.Dataset) -> CheckOutcome:
    """(trace_id, observation_id) is unique in the cell."""
    seen = SeenKeys()  # 8 bytes per row: a million-row cell stays small
    duplicates = 0
    examples: list[str] = []
    for batch in iter_batches(dataset, ["trace_id", "observation_id"]):
        trace_ids, observation_ids = batch.column(0).to_pylist(), batch.column(1).to_pylist()
        repeated = np.flatnonzero(~seen.first_seen(trace_ids, observation_ids))
        duplicates += len(repeated)
        examples.extend(f"{trace_ids[i]}/{observation_ids[i]}" for i in repeated[: 5 - len(examples)])
    return CheckOutcome(
        duplicates == 0,
        "no duplicate (trace_id, observation_id)" if not duplicates else f"{duplicates} duplicate id(s)",
        {"duplicates": duplicates, "examples": ", ".join(examples)},
    )


def check_required_non_null(dataset: ds.Dataset, required: tuple[str, ...]) -> CheckOutcome:
    nulls: Counter = Counter()
    missing = [name for name in required if name not in dataset.schema.names]
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


def check_schema(dataset: ds.Dataset, expected: pa.Schema) -> CheckOutcome:
    """The files' schema equals the declared one (names, order and types)."""
    actual = dataset.schema
    differences = []
    for position, field_ in enumerate(expected):
        if position >= len(actual.names):
            differences.append(f"missing {field_.name}")
        elif actual.field(position).name != field_.name or not actual.field(position).type.equals(field_.type):
            differences.append(f"{field_.name}: expected {field_.type}, found {actual.field(position)}")
    for extra in actual.names[len(expected.names):]:
        differences.append(f"unexpected {extra}")
    return CheckOutcome(
        not differences,
        "schema as declared" if not differences else "; ".join(differences[:10]),
        {"columns": len(actual.names)},
    )


def check_reconciles(rows_in: int, buckets: dict[str, int]) -> CheckOutcome:
    total = sum(buckets.values())
    return CheckOutcome(
        rows_in == total,
        f"raw rows {rows_in} = " + " + ".join(f"{name} {count}" for name, count in buckets.items()),
        {"raw_rows": rows_in, **buckets, "difference": rows_in - total},
    )
