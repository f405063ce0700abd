"""Where traces come from, how consent is decided, and how PII is redacted."""

from __future__ import annotations

from typing import Optional

import dagster as dg
from pydantic import Field

from ..lib.consent import ConsentPolicy, ConsentRegistry
from ..lib.erasure import ErasureLedger, ErasureRequest, consent_policy, load_erasure_list
from ..lib.normalize import ReadOptions
from ..lib.redaction import ENTITY_TYPES, RedactionConfig, Redactor
from ..lib.registry import load_registry
from ..lib.sources import BUNDLED_REGISTRY, TraceReader, open_source
from ..lib.storage import Location, S3Options


class TraceSourceResource(dg.ConfigurableResource):
    """The trace source (``MATERIALIZER_SOURCE``) and consent registry (``MATERIALIZER_CONSENT_REGISTRY``)."""

    source: str = Field(
        default="",
        description="postgresql://… URL, local folder, s3://bucket/prefix, or empty for the bundled sample.",
    )
    consent_registry: str = Field(
        default="",
        description="CSV/Parquet file (local or s3://) or postgresql://…?table=… with user_id, granted, updated_at. "
        "Empty: none, except that the bundled sample uses its own registry.",
    )
    convert_to_single_turn: bool = Field(
        default=True, description="Make each assistant turn of a conversation its own example."
    )
    s3_endpoint_url: Optional[str] = Field(
        default=None, description="S3-compatible endpoint for s3:// sources; default AWS_ENDPOINT_URL."
    )

    def open_reader(self) -> TraceReader:
        return open_source(
            self.source,
            ReadOptions(convert_to_single_turn=self.convert_to_single_turn),
            S3Options(endpoint_url=self.s3_endpoint_url),
        )

    def registry_location(self) -> str:
        if self.consent_registry.strip():
            return self.consent_registry.strip()
        if not self.source.strip() and BUNDLED_REGISTRY.exists():
            return str(BUNDLED_REGISTRY)
        return ""

    def load_registry(self) -> Optional[ConsentRegistry]:
        location = self.registry_location()
        if not location:
            return None
        return load_registry(location, S3Options(endpoint_url=self.s3_endpoint_url))


class PrivacyResource(dg.ConfigurableResource):
    """PII redaction applied before anything reaches ``consented_parquet``."""

    redact: bool = Field(default=True, description="Redact PII (MATERIALIZER_REDACT).")
    engine: str = Field(
        default="patterns",
        description="'patterns' (vectorized regular expressions, fast) or 'presidio' (Microsoft Presidio, slower).",
    )
    entities: list[str] = Field(default=list(ENTITY_TYPES), description="Entity types to redact.")

    def redactor(self) -> Optional[Redactor]:
        if not self.redact:
            return None
        return Redactor(RedactionConfig(engine=self.engine, entities=tuple(self.entities)))


class ErasureResource(dg.ConfigurableResource):
    """Who is forgotten beyond the consent registry (the erasure list), and the salt of hashed user ids."""

    erasure_list: str = Field(
        default="",
        description="CSV/Parquet/text file (local or s3://) of user ids to forget, optional requested_at "
        "(MATERIALIZER_ERASURE_LIST).",
    )
    salt: str = Field(
        default="",
        description="Secret salt of the user-id hashes in audit records and split keys (MATERIALIZER_ERASURE_SALT); "
        "empty: a random salt kept in <warehouse>/_erasure/salt.",
    )
    orphan_grace_minutes: int = Field(
        default=60, description="Unreferenced files younger than this may belong to a write in flight: kept."
    )
    s3_endpoint_url: Optional[str] = Field(default=None, description="S3 endpoint for an s3:// erasure list.")

    def load_requests(self) -> list[ErasureRequest]:
        return load_erasure_list(self.erasure_list, S3Options(endpoint_url=self.s3_endpoint_url))

    def ledger(self, warehouse: Location) -> ErasureLedger:
        return ErasureLedger(warehouse, salt=self.salt or None)

    def policy(self, registry: Optional[ConsentRegistry], warehouse: Location) -> ConsentPolicy:
        """The consent policy every stage applies (registry, erasure list, users already erased)."""
        return consent_policy(registry, self.load_requests(), self.ledger(warehouse))
