"""The two ingest stages as pure stream transforms.

``raw_stage``: the reader's normalized rows with the consent registry applied
(every consent state kept), split by consent into ``consent=true|false|unknown``.

``consented_stage``: raw rows → only rows whose consent is explicitly granted,
with a non-empty response, deduplicated on (trace_id, observation_id) and
PII-redacted. Every row that goes in is counted in exactly one bucket, so
``rows_in == consented + refused + unknown + sum(dropped)``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from .consent import ConsentRegistry, apply_registry, consent_state, granted_mask

if TYPE_CHECKING:
    from .redaction import Redactor

DROP_EMPTY_RESPONSE = "empty_response"
DROP_DUPLICATE = "duplicate_id"
CONSENT_SUBPATHS = ("consent=true", "consent=false", "consent=unknown")


class ConsentViolation(AssertionError):
    """A row without explicit consent reached a consent=true write."""


@dataclass
class RawStats:
    rows: int = 0
    by_consent: Counter = field(default_factory=Counter)
    by_consent_source: Counter = field(default_factory=Counter)

    def as_metadata(self) -> dict:
        return {
            "rows": self.rows,
            "rows_by_consent": {state: self.by_consent.get(state, 0) for state in ("true", "false", "unknown")},
            "rows_by_consent_source": dict(sorted(self.by_consent_source.items())),
        }


@dataclass
class ConsentedStats:
    rows_in: int = 0
    consented: int = 0
    refused: int = 0
    unknown: int = 0
    dropped: Counter = field(default_factory=Counter)
    redactions: Counter = field(default_factory=Counter)

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.consented + self.refused + self.unknown + sum(self.dropped.values())

    def as_metadata(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_consented": self.consented,
            "rows_refused": self.refused,
            "rows_unknown_consent": self.unknown,
            "rows_dropped": {reason: self.dropped.get(reason, 0) for reason in (DROP_EMPTY_RESPONSE, DROP_DUPLICATE)},
            "redactions": dict(sorted(self.redactions.items())),
        }


def split_by_consent(batch: pa.RecordBatch) -> Mapping[str, pa.RecordBatch]:
    """Route rows to ``consent=true|false|unknown`` sub-folders."""
    states = consent_state(batch)
    return {f"consent={state}": batch.filter(pc.equal(states, state)) for state in ("true", "false", "unknown")}


def raw_stage(
    batches: Iterable[pa.RecordBatch], registry: ConsentRegistry | None, stats: RawStats
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        batch = apply_registry(batch, registry)
        stats.rows += batch.num_rows
        stats.by_consent.update(consent_state(batch).to_pylist())
        stats.by_consent_source.update(batch.column("consent_source").to_pylist())
        yield batch


def identity_key(trace_id: str, observation_id: str | None) -> bytes:
    """The dedup key of a row: (trace_id, observation_id), as a compact digest."""
    # 16-byte digests keep the seen-set small for million-row cells.
    return hashlib.blake2b(f"{trace_id}\x00{observation_id or ''}".encode(), digest_size=16).digest()


def consented_stage(
    batches: Iterable[pa.RecordBatch],
    registry: ConsentRegistry | None,
    redactor: "Redactor | None",
    stats: ConsentedStats,
) -> Iterator[pa.RecordBatch]:
    seen: set[bytes] = set()
    for batch in batches:
        stats.rows_in += batch.num_rows
        batch = apply_registry(batch, registry)
        states = consent_state(batch)
        stats.refused += pc.sum(pc.equal(states, "false")).as_py() or 0
        stats.unknown += pc.sum(pc.equal(states, "unknown")).as_py() or 0
        batch = batch.filter(granted_mask(batch))

        response = batch.column("response")
        has_response = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(response)), 0), False)
        stats.dropped[DROP_EMPTY_RESPONSE] += batch.num_rows - (pc.sum(has_response).as_py() or 0)
        batch = batch.filter(has_response)

        keep = []
        for trace_id, observation_id in zip(
            batch.column("trace_id").to_pylist(), batch.column("observation_id").to_pylist()
        ):
            key = identity_key(trace_id, observation_id)
            keep.append(key not in seen)
            seen.add(key)
        stats.dropped[DROP_DUPLICATE] += keep.count(False)
        if not all(keep):
            batch = batch.filter(pa.array(keep, pa.bool_()))
        if batch.num_rows == 0:
            continue
        if redactor is not None:
            batch, counts = redactor.redact_batch(batch)
            stats.redactions.update(counts)
        stats.consented += batch.num_rows
        yield batch


def require_granted(batch: pa.RecordBatch) -> None:
    """Write-time guard for consent=true outputs: the first line of defence."""
    granted = granted_mask(batch)
    if pc.sum(granted).as_py() != batch.num_rows:
        raise ConsentViolation(
            f"{batch.num_rows - (pc.sum(granted).as_py() or 0)} row(s) without explicit consent reached a consent=true write"
        )
    if batch.column("consent_source").null_count:
        raise ConsentViolation("consented row(s) without a recorded consent source")
