"""Consent resolution, fail-closed (DESIGN §4, revised 2026-12-06).

Langfuse has no consent field. The signals are the consent registry (rows
``user_id, granted, updated_at``; every row is kept: a user's history), the
source's explicit column (``user_consent`` / ``consent``), tags
(``consent:training`` grants; ``consent:refused`` / ``no-consent`` refuse) and
the metadata key ``consent_training`` at trace or generation level.

:func:`decide_consent` is the one rule, used by every source and stage:

============================================  =====================================
situation                                     decision
============================================  =====================================
any explicit refusal on the trace (column,    refused, whatever grants it
tag, trace or generation metadata)
a trace-level value that is present but       unknown (refused): a doubt blocks
unreadable (``"maybe"``)                      every grant
a registry refusal dated at or after the      refused (withdrawals are retroactive,
trace (undated: counts as newest)             even after a later re-grant)
newest registry row at or before the trace    refused
is a refusal (ties: the refusal)
a grant on the trace, or a registry grant     granted
dated at or before the trace (undated grant:
counts as oldest)
anything else                                 unknown, i.e. refused
============================================  =====================================

A registry ``granted`` value that is neither true nor false counts as a
refusal. A user whose *newest* registry row refuses is *forgotten*
(:meth:`ConsentRegistry.forgotten_users`): written nowhere at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1", "granted", "opt-in", "optin", "on"})
FALSE_STRINGS = frozenset(
    {"false", "f", "no", "n", "0", "refused", "revoked", "denied", "opt-out", "optout", "off"}
)
GRANT_TAGS = frozenset({"consent:training", "consent:true", "consent:granted"})
REFUSE_TAGS = frozenset({"consent:refused", "consent:false", "consent:revoked", "no-consent"})
METADATA_KEY = "consent_training"

SOURCE_REGISTRY = "registry"
SOURCE_COLUMN = "column"
SOURCE_TAG = "tag"
SOURCE_METADATA = "metadata"
SOURCE_UNREADABLE = "unreadable"
SOURCE_NONE = "none"
# Where a trace can say something itself, in the order a decision names them.
TRACE_SOURCES = (SOURCE_COLUMN, SOURCE_TAG, SOURCE_METADATA)

_NEWEST = datetime.max.replace(tzinfo=timezone.utc)
_OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def parse_consent(value: Any) -> bool | None:
    """``True``/``False`` for a recognizable answer, ``None`` for anything else.

    Strings are matched case-insensitively ("false", "no", "0" are refusals);
    an empty string, a number other than 0/1 or a nested value is unknown.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == 1:
            return True
        if value == 0:
            return False
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE_STRINGS:
            return True
        if text in FALSE_STRINGS:
            return False
    return None


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


# A trace-level signal: (source, True | False | None); None = present but unreadable.
Signal = tuple[str, "bool | None"]


def record_signals(
    explicit: Any = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[Signal]:
    """What the trace itself says about consent, one signal per place that says something."""
    signals: list[Signal] = []
    if not _absent(explicit):
        signals.append((SOURCE_COLUMN, parse_consent(explicit)))
    lowered = {str(tag).strip().lower() for tag in (tags or ())}
    if lowered & REFUSE_TAGS:
        signals.append((SOURCE_TAG, False))
    if lowered & GRANT_TAGS:
        signals.append((SOURCE_TAG, True))
    if isinstance(metadata, Mapping) and not _absent(metadata.get(METADATA_KEY)):
        signals.append((SOURCE_METADATA, parse_consent(metadata[METADATA_KEY])))
    return signals


def merge_metadata(*levels: Mapping[str, Any] | None) -> dict[str, Any]:
    """Trace then generation metadata merged (later levels' keys win), except the
    consent key: a refusal at any level wins, then an unreadable value, then a grant."""
    merged: dict[str, Any] = {}
    for level in levels:
        if isinstance(level, Mapping):
            merged.update(level)
    values = [level[METADATA_KEY] for level in levels if isinstance(level, Mapping) and not _absent(level.get(METADATA_KEY))]
    if values:
        merged[METADATA_KEY] = min(values, key=lambda v: {False: 0, None: 1, True: 2}[parse_consent(v)])
    return merged


@dataclass(frozen=True)
class RegistryEntry:
    granted: bool  # an unreadable value is a refusal
    updated_at: datetime | None  # None: missing or unreadable

    @property
    def effective_time(self) -> datetime:
        """Undated refusals count as the newest row, undated grants as the oldest."""
        if self.updated_at is not None:
            return self.updated_at
        return _OLDEST if self.granted else _NEWEST

    @property
    def order(self) -> tuple[datetime, int]:
        return (self.effective_time, 0 if self.granted else 1)  # ties: the refusal is newer


def registry_decision(history: Sequence[RegistryEntry], trace_time: datetime | None) -> bool | None:
    """What a user's registry history says about a trace at ``trace_time``:
    False (refused), True (granted) or None (nothing covers it)."""
    if not history:
        return None
    if trace_time is None:  # no time: no grant can be shown to precede it
        return False if any(not entry.granted for entry in history) else None
    if any(not entry.granted and entry.effective_time >= trace_time for entry in history):
        return False  # a withdrawal covers everything before it
    before = [entry for entry in history if entry.effective_time <= trace_time]
    if not before:
        return None  # grants are not retroactive
    return max(before, key=lambda entry: entry.order).granted


def decide_consent(
    signals: Iterable[Signal],
    history: Sequence[RegistryEntry] = (),
    trace_time: datetime | None = None,
) -> tuple[bool | None, str]:
    """THE consent rule (module docstring): ``(consent, consent_source)`` of one trace.

    ``signals`` are what the trace records (:func:`record_signals`), ``history``
    its user's registry rows, ``trace_time`` its timestamp. ``consent`` is True
    only when something grants and nothing refuses or is in doubt.
    """
    refused_by = granted_by = None
    doubt = False
    for source, value in signals:
        if value is False:
            refused_by = refused_by or source
        elif value is True:
            granted_by = granted_by or source
        else:
            doubt = True
    if refused_by:
        return False, refused_by
    if doubt:
        return None, SOURCE_UNREADABLE
    registry = registry_decision(history, trace_time)
    if registry is False:
        return False, SOURCE_REGISTRY
    if granted_by:
        return True, granted_by
    if registry is True:
        return True, SOURCE_REGISTRY
    return None, SOURCE_NONE


def consent_from_record(
    explicit: Any = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[bool | None, str]:
    """Consent the trace itself records, and where it came from (no registry yet)."""
    return decide_consent(record_signals(explicit, tags, metadata))


def signals_of_decision(consent: bool | None, source: str | None) -> list[Signal]:
    """The trace's own signals as far as a recorded decision keeps them, so the
    registry can be applied again (by a later stage, or after it changed).

    A grant or refusal named after a trace source was the trace's own; an
    unreadable value stays a doubt. A registry decision hides whether the trace
    itself granted: taken as silent, which can only refuse more, never less.
    """
    if source in TRACE_SOURCES and consent is not None:
        return [(source, consent)]
    if source == SOURCE_UNREADABLE:
        return [(SOURCE_UNREADABLE, None)]
    return []


class ConsentRegistry:
    """Every registry row per user (their history), oldest first by :attr:`RegistryEntry.order`."""

    def __init__(self, histories: Mapping[str, Sequence[RegistryEntry]], location: str = "") -> None:
        self._histories = {
            user_id: tuple(sorted(entries, key=lambda entry: entry.order)) for user_id, entries in histories.items()
        }
        self.location = location

    def __len__(self) -> int:
        return len(self._histories)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._histories

    def user_ids(self) -> list[str]:
        return sorted(self._histories)

    def history(self, user_id: str | None) -> tuple[RegistryEntry, ...]:
        if user_id is None:
            return ()
        return self._histories.get(user_id, ())

    def newest(self, user_id: str | None) -> RegistryEntry | None:
        history = self.history(user_id)
        return history[-1] if history else None

    def forgotten_users(self) -> dict[str, RegistryEntry]:
        """Users whose newest row refuses, with that row: they are written nowhere."""
        return {
            user_id: history[-1] for user_id, history in sorted(self._histories.items()) if not history[-1].granted
        }

    def may_grant(self) -> bool:
        """Whether any row grants: only then can the registry turn a trace into a granted one."""
        return any(entry.granted for history in self._histories.values() for entry in history)

    def decide(self, signals: Iterable[Signal], user_id: str | None, trace_time: datetime | None) -> tuple[bool | None, str]:
        return decide_consent(signals, self.history(user_id), trace_time)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], location: str = "") -> "ConsentRegistry":
        histories: dict[str, list[RegistryEntry]] = {}
        for row in rows:
            user_id = row.get("user_id")
            if user_id is None or str(user_id).strip() == "":
                continue
            granted = parse_consent(row.get("granted")) is True  # unreadable: a refusal
            histories.setdefault(str(user_id), []).append(RegistryEntry(granted, _parse_time(row.get("updated_at"))))
        return cls(histories, location)

    @classmethod
    def from_table(cls, table: pa.Table, location: str = "") -> "ConsentRegistry":
        missing = {"user_id", "granted"} - set(table.column_names)
        if missing:
            raise ValueError(f"consent registry {location!r} lacks columns {sorted(missing)}")
        return cls.from_rows(table.to_pylist(), location)

    @classmethod
    def from_csv_text(cls, text: str, location: str = "") -> "ConsentRegistry":
        reader = csv.DictReader(io.StringIO(text))
        missing = {"user_id", "granted"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"consent registry {location!r} lacks columns {sorted(missing)}")
        return cls.from_rows(reader, location)

    def user_digest(self, user_id: str) -> str:
        """Digest of one user's history: changes when any of their rows does."""
        rows = [[entry.granted, _iso(entry.updated_at)] for entry in self.history(user_id)]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        """Stable digest of the registry's content (changes when any row does)."""
        digest = hashlib.sha256()
        for user_id in sorted(self._histories):
            digest.update(json.dumps([user_id, self.user_digest(user_id)]).encode())
        return digest.hexdigest()[:16]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _replace_columns(batch: pa.RecordBatch, **columns: pa.Array) -> pa.RecordBatch:
    names = batch.schema.names
    arrays = list(batch.columns)
    for name, array in columns.items():
        arrays[names.index(name)] = array
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)


def apply_registry(batch: pa.RecordBatch, registry: ConsentRegistry | None) -> pa.RecordBatch:
    """``consent``/``consent_source`` decided again by :func:`decide_consent` for the
    rows of users the registry knows, from what each row recorded
    (:func:`signals_of_decision`), its user's history and its ``timestamp``.

    Applying it twice with the same registry changes nothing; applying it after the
    registry changed gives what the new registry decides (or refuses more).
    """
    if batch.num_rows == 0:
        return batch
    registry = registry if registry is not None else ConsentRegistry({})
    # Rows the registry may decide now, and rows it decided before (it may have changed since).
    affected = pc.or_(
        pc.fill_null(pc.is_in(batch.column("user_id"), pa.array(registry.user_ids(), pa.string())), False),
        pc.fill_null(pc.equal(batch.column("consent_source"), SOURCE_REGISTRY), False),
    )
    rows = pc.indices_nonzero(affected).to_pylist()
    if not rows:
        return batch
    user_ids = batch.column("user_id").take(rows).to_pylist()
    times = batch.column("timestamp").take(rows).to_pylist() if "timestamp" in batch.schema.names else [None] * len(rows)
    consent = batch.column("consent").to_pylist()
    sources = batch.column("consent_source").to_pylist()
    for row, user_id, trace_time in zip(rows, user_ids, times):
        signals = signals_of_decision(consent[row], sources[row])
        consent[row], sources[row] = registry.decide(signals, user_id, trace_time)
    return _replace_columns(batch, consent=pa.array(consent, pa.bool_()), consent_source=pa.array(sources, pa.string()))


def consent_state(batch: pa.RecordBatch | pa.Table) -> pa.Array:
    """'true' / 'false' / 'unknown' per row: the ``consent=`` path segment."""
    consent = batch.column("consent")
    return pc.if_else(
        pc.is_null(consent),
        pa.scalar("unknown"),
        pc.if_else(pc.fill_null(consent, False), pa.scalar("true"), pa.scalar("false")),
    )


def granted_mask(batch: pa.RecordBatch | pa.Table) -> pa.Array:
    """Rows whose consent is explicitly True; null (unknown) counts as refused."""
    return pc.fill_null(pc.equal(batch.column("consent"), True), False)


# What ConsentPolicy.apply reads: the user, the trace's time and the decision recorded upstream.
CONSENT_COLUMNS = ("user_id", "timestamp", "consent", "consent_source")


class ConsentPolicy:
    """The consent rule as every stage applies it to its rows: who is forgotten, and
    :func:`apply_registry` for the rest.

    Forgotten (written nowhere, every row dropped): users whose newest registry row
    refuses and users on the erasure list. Users an erasure already removed
    (``erased_until``: the ledger's answer, the time it erased them) lose every row
    up to that time even after they consent again, so a re-run never brings them back.
    """

    def __init__(
        self,
        registry: ConsentRegistry | None = None,
        erasure_list: Iterable[str] = (),
        erased_until: "Callable[[str], datetime | None] | None" = None,
        anyone_erased: "Callable[[], bool] | None" = None,
    ) -> None:
        self.registry = registry
        self.forgotten = frozenset(erasure_list) | frozenset(registry.forgotten_users() if registry else ())
        self._erased_until = erased_until
        # asked on every batch (the ledger may record an erasure meanwhile); None: maybe someone
        self._anyone_erased = anyone_erased
        self._cutoffs: dict[str, datetime | None] = {}

    def cutoff(self, user_id: str) -> datetime | None:
        """Rows of ``user_id`` at or before this time are forgotten (None: none are)."""
        if user_id not in self._cutoffs:
            if user_id in self.forgotten:
                self._cutoffs[user_id] = _NEWEST
            else:
                self._cutoffs[user_id] = self._erased_until(user_id) if self._erased_until else None
        return self._cutoffs[user_id]

    def forgotten_mask(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        nobody = not self.forgotten and (
            self._erased_until is None or (self._anyone_erased is not None and not self._anyone_erased())
        )
        if "user_id" not in batch.schema.names or batch.num_rows == 0 or nobody:
            # no users, or nobody to forget (the usual day): no user of the batch needs looking up
            return pa.array(np.zeros(batch.num_rows, bool))
        users = batch.column("user_id")
        cutoffs = {user: self.cutoff(user) for user in pc.unique(users).to_pylist() if user is not None}
        if "timestamp" not in batch.schema.names:  # no time to compare: every row of an erased user goes
            cutoffs = {user: _NEWEST for user, cutoff in cutoffs.items() if cutoff is not None}
        everything = [user for user, cutoff in cutoffs.items() if cutoff == _NEWEST]
        mask = pc.fill_null(pc.is_in(users, pa.array(everything, pa.string())), False)
        for user, cutoff in cutoffs.items():
            if cutoff is None or cutoff == _NEWEST:
                continue
            early = pc.less_equal(batch.column("timestamp"), pa.scalar(cutoff, batch.schema.field("timestamp").type))
            mask = pc.or_(mask, pc.fill_null(pc.and_(pc.equal(users, user), early), False))
        return mask

    def apply(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
        """``batch`` without forgotten users' rows, consent decided again; and how many were dropped."""
        mask = self.forgotten_mask(batch)
        dropped = pc.sum(mask).as_py() or 0
        if dropped:
            batch = batch.filter(pc.invert(mask))
        return apply_registry(batch, self.registry), dropped

    def may_grant(self) -> bool:
        return self.registry is not None and self.registry.may_grant()

    @property
    def location(self) -> str:
        return self.registry.location if self.registry is not None else "none"
