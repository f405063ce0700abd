"""Model names → partition keys and path segments (DESIGN §5).

Model names come from the data: ``Qwen/Qwen3-Coder-4B-Instruct``,
``gpt-4o-mini-2024-07-18``, sometimes with ``|``, ``,`` or ``/``, which break
Dagster partition keys and storage paths. A slug uses only ``[a-z0-9._-]``.

Collision-free by construction: a name that is already a valid slug is kept
as it is; any name that had to be changed gets a suffix made from a hash of
the *original* name, so ``Qwen/X``, ``qwen/x`` and ``qwen-x`` stay three
different partitions. The original name stays in the ``model`` column.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

UNKNOWN_MODEL_SLUG = "unknown"
MAX_SLUG_LENGTH = 80
_HASH_LENGTH = 8
_VALID_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9_-]|\.(?!\.))*$")
_RESERVED = {UNKNOWN_MODEL_SLUG}


def _name_hash(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LENGTH]


def is_valid_slug(value: str) -> bool:
    """True if ``value`` can be used as a partition key and a path segment."""
    return (
        0 < len(value) <= MAX_SLUG_LENGTH
        and _VALID_SLUG.match(value) is not None
        and not value.endswith((".", "-"))
    )


def model_slug(name: str | None) -> str:
    """Slug for a model name; ``None`` or blank names map to ``unknown``."""
    if name is None or not name.strip():
        return UNKNOWN_MODEL_SLUG
    if is_valid_slug(name) and name not in _RESERVED:
        return name
    # Fold accents (é → e) so unicode names keep a readable stem.
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^a-z0-9._-]+", "-", folded.lower())
    stem = re.sub(r"\.{2,}", ".", stem)  # never a '..' path segment
    stem = re.sub(r"-{2,}", "-", stem).strip(".-_")
    suffix = _name_hash(name)
    stem = stem[: MAX_SLUG_LENGTH - _HASH_LENGTH - 1].rstrip(".-_")
    return f"{stem}-{suffix}" if stem else f"model-{suffix}"
