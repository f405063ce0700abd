"""Checks of a published score cell, read back from its files batch by batch."""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from ..checks import CheckOutcome, columns_in_every_file
from ..identity import batch_identity_keys, find_sorted
from ..lake import iter_batches
from .schema import NOT_APPLICABLE, NOT_CONFIGURED, OK


def check_scores_in_range(dataset: ds.Dataset, score_statuses: Mapping[str, str]) -> CheckOutcome:
    """Every score is in [0, 1] or null, and a score is only there when its status is ok.

    ``score_statuses`` maps each score column to the status column that vouches for it.
    """
    bad: Counter = Counter()
    unvouched: Counter = Counter()
    rows = 0
    names = columns_in_every_file(dataset)  # the footers: a lake cell is opened with its declared schema
    missing = sorted({c for pair in score_statuses.items() for c in pair if c not in names})
    present = {score: status for score, status in score_statuses.items() if score in names and status in names}
    columns = sorted(set(present) | set(present.values()))
    for batch in iter_batches(dataset, columns) if columns else ():
        rows += batch.num_rows
        for score, status in present.items():
            values = batch.column(score)
            outside = pc.or_(pc.or_(pc.less(values, 0.0), pc.greater(values, 1.0)), pc.is_nan(values))
            bad[score] += pc.sum(pc.fill_null(outside, False)).as_py() or 0
            with_score_not_ok = pc.and_(pc.is_valid(values), pc.fill_null(pc.not_equal(batch.column(status), OK), True))
            unvouched[score] += pc.sum(with_score_not_ok).as_py() or 0
    offenders = {name: count for name, count in bad.items() if count}
    not_ok = {name: count for name, count in unvouched.items() if count}
    passed = not offenders and not missing and not not_ok
    if passed:
        description = "every score is in [0, 1] or null"
    else:
        description = f"out of range {offenders}, scores whose status is not ok {not_ok}, missing columns {missing}"
    return CheckOutcome(
        passed,
        description,
        {"rows": rows, "out_of_range": offenders, "scores_with_non_ok_status": not_ok},
    )


def check_non_ok_share(dataset: ds.Dataset, max_share: float) -> CheckOutcome:
    """The share of scored rows whose status is not ok stays under ``max_share``.

    Rows that were never asked (``not_configured``: the endpoint check
    reports those; ``not_applicable``: nothing to ask) are left out.
    """
    statuses: Counter = Counter()
    for batch in iter_batches(dataset, ["status"]):
        statuses.update(batch.column("status").to_pylist())
    asked = sum(n for status, n in statuses.items() if status not in (NOT_CONFIGURED, NOT_APPLICABLE))
    non_ok = asked - statuses.get(OK, 0)
    share = non_ok / asked if asked else 0.0
    passed = share <= max_share
    return CheckOutcome(
        passed,
        (f"{non_ok} of {asked} scored row(s) not ok ({share:.1%}); threshold {max_share:.1%}" if asked
         else "no row was scored"),
        {"non_ok_share": round(share, 4), "threshold": max_share, "status_counts": dict(sorted(statuses.items()))},
    )


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, "S16")


def check_every_trace_scored(upstream_batches: Iterable[pa.RecordBatch], dataset: ds.Dataset) -> CheckOutcome:
    """Exactly one score row per consented upstream trace: none missing, none extra, none twice.

    Keys are 16-byte identity digests in sorted numpy arrays (~32 bytes per row for both
    sides; sets of Python bytes took ~170, ~120 MB for a million-row cell)."""
    expected = np.unique(_concat([batch_identity_keys(batch) for batch in upstream_batches]))
    seen_parts: list[np.ndarray] = []
    examples: dict[bytes, str] = {}  # the first extra keys, in order of rows
    for batch in iter_batches(dataset, ["trace_id", "observation_id"]):
        keys = batch_identity_keys(batch)
        seen_parts.append(keys)
        if len(examples) < 5:
            for i in np.flatnonzero(~find_sorted(expected, keys)[1]).tolist():
                if len(examples) == 5:
                    break
                examples.setdefault(
                    keys[i].tobytes(), f"{batch.column(0)[i].as_py()}/{batch.column(1)[i].as_py()}"
                )
    rows = sum(len(part) for part in seen_parts)
    distinct = np.unique(_concat(seen_parts))
    del seen_parts
    duplicates = rows - len(distinct)
    extra = int(np.count_nonzero(~find_sorted(expected, distinct)[1]))
    missing = int(np.count_nonzero(~find_sorted(distinct, expected)[1]))
    passed = not (missing or extra or duplicates)
    return CheckOutcome(
        passed,
        f"all {len(expected)} consented trace(s) have one score row"
        if passed
        else f"{missing} trace(s) without a score row, {extra} row(s) for unknown traces, {duplicates} duplicate(s)",
        {"consented_traces": len(expected), "missing": missing, "extra": extra, "duplicates": duplicates,
         "extra_examples": ", ".join(examples.values())},
    )


def check_configured(configured: bool, ok_description: str, missing_description: str) -> CheckOutcome:
    return CheckOutcome(configured, ok_description if configured else missing_description, {"configured": configured})
