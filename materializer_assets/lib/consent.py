"""Consent resolution, fail-closed (DESIGN §4).

Langfuse has no consent field. The first of these that says something wins:

1. the consent registry (user_id → granted, updated_at; the newest row per
   user counts), because a user's current decision overrides what any trace
   recorded;
2. the source's explicit consent column (``user_consent`` in the Postgres
   table, ``consent`` in JSONL);
3. a tag ``consent:training`` (granted) or ``consent:refused`` / ``no-consent``
   (refused);
4. a metadata key ``consent_training``.

Anything else is *unknown*, and unknown is treated as refused everywhere.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

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
SOURCE_NONE = "none"


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


def consent_from_record(
    explicit: Any = None,
    tags: Iterable[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> tuple[bool | None, str]:
    """Consent the trace itself records, and where it came from."""
    value = parse_consent(explicit)
    if value is not None:
        return value, SOURCE_COLUMN
    lowered = {str(tag).strip().lower() for tag in (tags or ())}
    if lowered & REFUSE_TAGS:  # a refusal tag wins over a grant tag
        return False, SOURCE_TAG
    if lowered & GRANT_TAGS:
        return True, SOURCE_TAG
    if isinstance(metadata, Mapping) and METADATA_KEY in metadata:
        value = parse_consent(metadata[METADATA_KEY])
        if value is not None:
            return value, SOURCE_METADATA
    return None, SOURCE_NONE


@dataclass(frozen=True)
class RegistryEntry:
    granted: bool | None
    updated_at: datetime | None


class ConsentRegistry:
    """The current consent decision per user; the newest row per user counts."""

    def __init__(self, entries: Mapping[str, RegistryEntry], location: str = "") -> None:
        self._entries = dict(entries)
        self.location = location

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._entries

    def items(self):
        return self._entries.items()

    def get(self, user_id: str | None) -> RegistryEntry | None:
        if user_id is None:
            return None
        return self._entries.get(user_id)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], location: str = "") -> "ConsentRegistry":
        entries: dict[str, RegistryEntry] = {}
        for row in rows:
            user_id = row.get("user_id")
            if user_id is None or str(user_id).strip() == "":
                continue
            user_id = str(user_id)
            entry = RegistryEntry(parse_consent(row.get("granted")), _parse_time(row.get("updated_at")))
            previous = entries.get(user_id)
            if previous is None or _newer_or_equal(entry.updated_at, previous.updated_at):
                entries[user_id] = entry
        return cls(entries, location)

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

    def fingerprint(self) -> str:
        """Stable digest of the registry's content (changes when any decision does)."""
        import hashlib

        digest = hashlib.sha256()
        for user_id in sorted(self._entries):
            entry = self._entries[user_id]
            digest.update(json.dumps([user_id, entry.granted, str(entry.updated_at)]).encode())
        return digest.hexdigest()[:16]


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


def _newer_or_equal(candidate: datetime | None, current: datetime | None) -> bool:
    if current is None:
        return True
    if candidate is None:
        return False
    return candidate >= current


def apply_registry(batch: pa.RecordBatch, registry: ConsentRegistry | None) -> pa.RecordBatch:
    """Override ``consent``/``consent_source`` where the registry knows the user.

    A registry row with an unrecognizable ``granted`` value still wins and
    makes the user's consent unknown (so: refused), never granted.
    """
    if registry is None or len(registry) == 0 or batch.num_rows == 0:
        return batch
    user_ids = batch.column("user_id").to_pylist()
    consent = batch.column("consent").to_pylist()
    sources = batch.column("consent_source").to_pylist()
    changed = False
    for i, user_id in enumerate(user_ids):
        entry = registry.get(user_id)
        if entry is not None:
            consent[i] = entry.granted
            sources[i] = SOURCE_REGISTRY
            changed = True
    if not changed:
        return batch
    names = batch.schema.names
    columns = list(batch.columns)
    columns[names.index("consent")] = pa.array(consent, pa.bool_())
    columns[names.index("consent_source")] = pa.array(sources, pa.string())
    return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


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
