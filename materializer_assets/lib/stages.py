"""The two ingest stages as pure stream transforms.

``raw_stage``: the reader's normalized rows without forgotten users, consent
decided by :class:`~.consent.ConsentPolicy` (every other consent state kept),
split by consent into ``consent=true|false|unknown``.

``consented_stage``: raw rows → only rows whose consent is explicitly granted,
with a non-empty response, deduplicated on (trace_id, observation_id) and
PII-redacted. Every row that goes in is counted in exactly one bucket, so
``rows_in == consented + refused + unknown + sum(dropped)``.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from .consent import CONSENT_COLUMNS, ConsentPolicy, consent_state, granted_mask
from .identity import SeenKeys
from .lake import iter_batches, read_ahead
from .normalize import compact_messages, restore_messages

if TYPE_CHECKING:
    from .redaction import Redactor

DROP_EMPTY_RESPONSE = "empty_response"
DROP_DUPLICATE = "duplicate_id"
DROP_FORGOTTEN = "forgotten_user"
CONSENT_SUBPATHS = ("consent=true", "consent=false", "consent=unknown")


class ConsentViolation(AssertionError):
    """A row without explicit consent reached a consent=true write."""


class ConsentFolderMismatch(RuntimeError):
    """A raw cell's ``consent=`` folder holds a row of another consent state."""


@dataclass
class RawStats:
    rows: int = 0
    by_consent: Counter = field(default_factory=Counter)
    by_consent_source: Counter = field(default_factory=Counter)
    forgotten: int = 0  # rows of forgotten users, dropped before anything is written

    def as_metadata(self) -> dict:
        return {
            "rows": self.rows,
            "rows_dropped_forgotten_users": self.forgotten,
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
    rows_read_whole: int | None = None  # of rows_in; the rest was only counted (consented_from_raw)

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.consented + self.refused + self.unknown + sum(self.dropped.values())

    def as_metadata(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_consented": self.consented,
            "rows_refused": self.refused,
            "rows_unknown_consent": self.unknown,
            "rows_dropped": {
                reason: self.dropped.get(reason, 0) for reason in (DROP_EMPTY_RESPONSE, DROP_DUPLICATE, DROP_FORGOTTEN)
            },
            "redactions": dict(sorted(self.redactions.items())),
            "raw_rows_read_whole": self.rows_in if self.rows_read_whole is None else self.rows_read_whole,
            "raw_rows_only_counted": 0 if self.rows_read_whole is None else self.rows_in - self.rows_read_whole,
        }


def split_by_consent(batch: pa.RecordBatch) -> Mapping[str, pa.RecordBatch]:
    """Route rows to ``consent=true|false|unknown`` sub-folders (the states of
    :func:`~.consent.consent_state`, from boolean masks: no per-row strings)."""
    consent = batch.column("consent")
    masks = {
        "consent=true": pc.fill_null(consent, False),
        "consent=false": pc.fill_null(pc.invert(consent), False),
        "consent=unknown": pc.is_null(consent),
    }
    parts = {}
    for subpath, mask in masks.items():
        rows = pc.sum(mask).as_py() or 0
        # A batch of one state is routed whole, without copying its text.
        parts[subpath] = batch if rows == batch.num_rows else batch.filter(mask) if rows else batch.slice(0, 0)
    return parts


def split_as_granted(batch: pa.RecordBatch) -> Mapping[str, pa.RecordBatch]:
    """Route a consented cell's rows, all granted (:func:`require_granted` guards that), to ``consent=true``."""
    return {CONSENT_SUBPATHS[0]: batch}


def _value_counts(array: pa.Array) -> dict:
    return {item["values"].as_py(): item["counts"].as_py() for item in pc.value_counts(array)}


def raw_stage(batches: Iterable[pa.RecordBatch], policy: ConsentPolicy, stats: RawStats) -> Iterator[pa.RecordBatch]:
    """Forgotten users' rows dropped (counted), consent decided by the policy, every state kept."""
    for batch in batches:
        batch, forgotten = policy.apply(batch)
        stats.forgotten += forgotten
        stats.rows += batch.num_rows
        stats.by_consent.update(_value_counts(consent_state(batch)))
        stats.by_consent_source.update(_value_counts(batch.column("consent_source")))
        yield batch


def raw_archive_form(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The rows as raw-traces stores them: ``messages`` null where it only repeats
    ``prompt`` and ``response`` (:func:`~.normalize.compact_messages`); readers of a
    raw cell get it back with :func:`~.normalize.restore_messages` (consented_stage does, after redaction)."""
    for batch in batches:
        yield compact_messages(batch)


def _count_refused_and_unknown(batch: pa.RecordBatch, stats: ConsentedStats) -> None:
    """The one rule both consented_stage and count_ungranted count by (counts_reconcile relies on it)."""
    consent = batch.column("consent")
    stats.unknown += consent.null_count
    stats.refused += pc.sum(pc.invert(consent)).as_py() or 0


# Kept rows are redacted in groups of about this many bytes: each call of the
# regex engine compiles its patterns again, which costs more than the scan of
# a small source batch (a few hundred rows).
REDACTION_GROUP_BYTES = 16 * 2**20


def consented_stage(
    batches: Iterable[pa.RecordBatch],
    policy: ConsentPolicy | None,
    redactor: "Redactor | None",
    stats: ConsentedStats,
) -> Iterator[pa.RecordBatch]:
    """``policy`` None: the batches went through it already (raw_stage of the same pass)."""
    seen = SeenKeys()
    pending: list[pa.RecordBatch] = []
    pending_bytes = 0

    def release() -> Iterator[pa.RecordBatch]:
        nonlocal pending, pending_bytes
        group, pending, pending_bytes = pending, [], 0
        if redactor is not None:
            redacted, counts = redactor.redact_batches(group)
            stats.redactions.update(counts)
            for original, batch in zip(group, redacted):
                stats.redactions.update(_derived_message_redactions(original, batch, redactor))
            group = redacted
        # Messages compacted in raw (or by raw_archive_form in the same pass) come back
        # from the redacted prompt and response: that text is scanned once.
        for batch in group:
            yield restore_messages(batch)

    for batch in batches:
        stats.rows_in += batch.num_rows
        if policy is not None:
            batch, forgotten = policy.apply(batch)
            stats.dropped[DROP_FORGOTTEN] += forgotten
        _count_refused_and_unknown(batch, stats)
        granted = granted_mask(batch)

        # One mask and a single filter of the wide batch: each filter copies all its text.
        response = batch.column("response")
        # utf8_is_space is exactly str.isspace (checked over all code points), without copying the text.
        has_response = pc.and_(pc.greater(pc.utf8_length(response), 0), pc.invert(pc.utf8_is_space(response)))
        keep = pc.and_(granted, pc.fill_null(has_response, False))
        stats.dropped[DROP_EMPTY_RESPONSE] += (pc.sum(granted).as_py() or 0) - (pc.sum(keep).as_py() or 0)

        candidates = pc.indices_nonzero(keep)
        first = seen.first_seen(batch.column("trace_id").take(candidates), batch.column("observation_id").take(candidates))
        stats.dropped[DROP_DUPLICATE] += len(first) - int(first.sum())
        rows = candidates.filter(pa.array(first)) if not first.all() else candidates
        if len(rows) == 0:
            continue
        if len(rows) < batch.num_rows:
            batch = batch.take(rows)
        stats.consented += batch.num_rows
        pending.append(batch)
        pending_bytes += batch.nbytes
        if pending_bytes >= REDACTION_GROUP_BYTES:
            yield from release()
    if pending:
        yield from release()


def _derived_message_redactions(original: pa.RecordBatch, redacted: pa.RecordBatch, redactor: "Redactor") -> Counter:
    """What redacting the messages that restore_messages derives would have counted:
    the placeholders their prompt and response gained."""
    counts: Counter = Counter()
    if "messages" not in original.schema.names or not original.column("messages").null_count:
        return counts
    derived = original.column("messages").is_null()
    for name in ("prompt", "response"):
        if name in original.schema.names and name in redactor.config.columns:
            counts.update(redactor.placeholder_gains(original.column(name), redacted.column(name), derived))
    return counts


def consent_candidates(raw: ds.Dataset, policy: ConsentPolicy) -> tuple[ds.Dataset, ds.Dataset | None]:
    """``(to_read, to_count)``: the raw cell's files that may hold granted rows, and the
    ones whose rows can only be refused or unknown (None when every file must be read).

    raw_traces files each row under its consent state, so without a registry that
    grants, only ``consent=true/`` can yield consented rows: the rest is counted from
    three small columns instead of being read whole. Where few users consent, that is
    most of the cell's bytes (and of its S3 reads).
    """
    if policy.may_grant() or not isinstance(raw, ds.FileSystemDataset):
        return raw, None
    granted_folder = CONSENT_SUBPATHS[0]
    in_granted_folder = [posixpath.basename(posixpath.dirname(path)) == granted_folder for path in raw.files]
    if all(in_granted_folder):
        return raw, None
    to_read = [path for path, granted in zip(raw.files, in_granted_folder) if granted]
    to_count = [path for path, granted in zip(raw.files, in_granted_folder) if not granted]

    def subset(files: list[str]) -> ds.Dataset:
        return ds.dataset(files, schema=raw.schema, format=raw.format, filesystem=raw.filesystem)

    return subset(to_read), subset(to_count)


def count_ungranted(batches: Iterable[pa.RecordBatch], policy: ConsentPolicy, stats: ConsentedStats) -> None:
    """Count rows that :func:`consent_candidates` left out, as :func:`consented_stage`
    would (refused or unknown after the registry). A granted row among them means the
    raw cell's folders disagree with its rows: raised, never dropped silently."""
    for batch in batches:
        stats.rows_in += batch.num_rows
        batch, forgotten = policy.apply(batch)
        stats.dropped[DROP_FORGOTTEN] += forgotten
        granted = pc.sum(granted_mask(batch)).as_py() or 0
        if granted:
            raise ConsentFolderMismatch(
                f"{granted} granted row(s) in a raw consent=false|unknown file: re-materialize raw_traces"
            )
        _count_refused_and_unknown(batch, stats)


def consented_from_raw(
    raw: ds.Dataset,
    policy: ConsentPolicy,
    redactor: "Redactor | None",
    stats: ConsentedStats,
) -> Iterator[pa.RecordBatch]:
    """:func:`consented_stage` over a raw cell, reading whole only the files that may hold
    granted rows (:func:`consent_candidates`); the others are counted once the stream is
    consumed, so ``stats`` is complete then, and nothing of them is in memory meanwhile."""
    to_read, to_count = consent_candidates(raw, policy)
    # Messages compacted in raw are restored by consented_stage, after redaction.
    yield from consented_stage(read_ahead(iter_batches(to_read), name="raw-reader"), policy, redactor, stats)
    stats.rows_read_whole = stats.rows_in
    if to_count is not None:
        # Counting a row that cannot be granted needs only what the policy reads.
        count_ungranted(iter_batches(to_count, list(CONSENT_COLUMNS)), policy, stats)


def require_granted(batch: pa.RecordBatch) -> None:
    """Write-time guard for consent=true outputs: the first line of defence."""
    granted = granted_mask(batch)
    if pc.sum(granted).as_py() != batch.num_rows:
        raise ConsentViolation(
            f"{batch.num_rows - (pc.sum(granted).as_py() or 0)} row(s) without explicit consent reached a consent=true write"
        )
    if batch.column("consent_source").null_count:
        raise ConsentViolation("consented row(s) without a recorded consent source")
