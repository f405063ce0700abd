from datetime import datetime, timezone

import pyarrow as pa
import pytest

from materializer_assets.lib.consent import (
    ConsentRegistry,
    apply_registry,
    consent_from_record,
    consent_state,
    granted_mask,
    parse_consent,
)
from materializer_assets.lib.normalize import ReadOptions, build_examples, rows_to_batch


@pytest.mark.parametrize("value", [True, "true", "TRUE", " yes ", "1", 1, "granted"])
def test_granted_values(value):
    assert parse_consent(value) is True


@pytest.mark.parametrize("value", [False, "false", "no", "0", 0, "N", "revoked"])
def test_refused_values(value):
    assert parse_consent(value) is False


@pytest.mark.parametrize("value", [None, "", " ", "maybe", 2, 0.5, [], {}, "null"])
def test_unknown_values(value):
    assert parse_consent(value) is None


def test_record_consent_precedence_column_then_tag_then_metadata():
    assert consent_from_record("false", ["consent:training"], {"consent_training": "yes"}) == (False, "column")
    assert consent_from_record(None, ["consent:training"], {"consent_training": "no"}) == (True, "tag")
    assert consent_from_record("", ["other"], {"consent_training": "no"}) == (False, "metadata")
    assert consent_from_record(None, [], {}) == (None, "none")
    # conflicting tags: refusal wins
    assert consent_from_record(None, ["consent:training", "no-consent"], {}) == (False, "tag")


def _batch(*users_and_consent):
    rows = []
    for i, (user, consent) in enumerate(users_and_consent):
        rows += build_examples(
            trace_id=f"t{i}",
            observation_id=None,
            timestamp="2026-04-18T00:00:00Z",
            model="m",
            messages=[{"role": "user", "content": "q"}],
            output="a",
            user_id=user,
            explicit_consent=consent,
            source="test",
            extracted_at=datetime(2026, 4, 19, tzinfo=timezone.utc),
            options=ReadOptions(),
        )
    return rows_to_batch(rows)


def test_registry_wins_over_the_trace_and_newest_row_counts():
    registry = ConsentRegistry.from_rows(
        [
            {"user_id": "alice", "granted": "true", "updated_at": "2026-01-01T00:00:00Z"},
            {"user_id": "alice", "granted": "false", "updated_at": "2026-03-01T00:00:00Z"},  # revoked later
            {"user_id": "bob", "granted": "yes", "updated_at": "2026-02-01"},
            {"user_id": "carol", "granted": "banana", "updated_at": "2026-02-01"},  # unreadable → unknown
        ]
    )
    batch = apply_registry(_batch(("alice", True), ("bob", None), ("carol", True), ("dave", True), (None, True)), registry)
    assert batch.column("consent").to_pylist() == [False, True, None, True, True]
    assert batch.column("consent_source").to_pylist() == ["registry", "registry", "registry", "column", "column"]
    assert consent_state(batch).to_pylist() == ["false", "true", "unknown", "true", "true"]
    assert granted_mask(batch).to_pylist() == [False, True, False, True, True]


def test_registry_from_csv_requires_columns():
    with pytest.raises(ValueError, match="lacks columns"):
        ConsentRegistry.from_csv_text("user,ok\nx,1\n", "r.csv")
    registry = ConsentRegistry.from_csv_text("user_id,granted,updated_at\nu1,no,2026-01-01\n", "r.csv")
    assert registry.get("u1").granted is False
    assert len(registry) == 1
    assert registry.fingerprint() == ConsentRegistry.from_csv_text("user_id,granted,updated_at\nu1,no,2026-01-01\n").fingerprint()


def test_unknown_consent_is_never_granted():
    batch = _batch(("u", None), ("v", ""), ("w", "maybe"))
    assert granted_mask(batch).to_pylist() == [False, False, False]
    assert consent_state(pa.Table.from_batches([batch])).to_pylist() == ["unknown"] * 3
