"""The one consent rule (DESIGN §4, revised): every case the rule names is a test here."""

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from materializer_assets.lib.consent import (
    SOURCE_REGISTRY,
    ConsentPolicy,
    ConsentRegistry,
    apply_registry,
    consent_from_record,
    consent_state,
    decide_consent,
    granted_mask,
    merge_metadata,
    parse_consent,
    record_signals,
)
from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples, rows_to_batch

T = datetime(2026, 4, 18, 12, tzinfo=timezone.utc)  # the trace's time in these tests
BEFORE, AFTER = "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"


@pytest.mark.parametrize("value", [True, "true", "TRUE", " yes ", "1", 1, "granted"])
def test_granted_values(value):
    assert parse_consent(value) is True


@pytest.mark.parametrize("value", [False, "false", "no", "0", 0, "N", "revoked"])
def test_refused_values(value):
    assert parse_consent(value) is False


@pytest.mark.parametrize("value", [None, "", " ", "maybe", 2, 0.5, [], {}, "null"])
def test_unknown_values(value):
    assert parse_consent(value) is None


# ---------------------------------------------------------------- what the trace says


def test_any_refusal_on_the_trace_wins_over_any_grant():
    assert consent_from_record("false", ["consent:training"], {"consent_training": "yes"}) == (False, "column")
    assert consent_from_record(None, ["consent:training"], {"consent_training": "no"}) == (False, "metadata")
    assert consent_from_record("true", ["no-consent"], {}) == (False, "tag")
    assert consent_from_record(True, [], {"consent_training": "no"}) == (False, "metadata")
    assert consent_from_record(None, ["consent:training", "no-consent"], {}) == (False, "tag")
    assert consent_from_record("", ["other"], {"consent_training": "no"}) == (False, "metadata")


def test_a_grant_with_nothing_against_it_grants_and_silence_is_unknown():
    assert consent_from_record("yes", [], {}) == (True, "column")
    assert consent_from_record(None, ["consent:training"], None) == (True, "tag")
    assert consent_from_record(None, [], {"consent_training": "1"}) == (True, "metadata")
    assert consent_from_record(None, [], {}) == (None, "none")
    assert consent_from_record("", [], {"consent_training": ""}) == (None, "none")  # empty: says nothing


def test_an_unreadable_value_on_the_trace_is_a_doubt_that_blocks_every_grant():
    assert consent_from_record("maybe", ["consent:training"], {}) == (None, "unreadable")
    assert consent_from_record(True, [], {"consent_training": "perhaps"}) == (None, "unreadable")
    registry = ConsentRegistry.from_rows([{"user_id": "u1", "granted": "true", "updated_at": BEFORE}])
    assert registry.decide(record_signals("maybe"), "u1", T) == (None, "unreadable")


def test_generation_metadata_cannot_override_a_trace_level_refusal_nor_the_reverse():
    trace_refuses = merge_metadata({"consent_training": "no", "a": 1}, {"consent_training": "yes", "a": 2})
    assert trace_refuses == {"consent_training": "no", "a": 2}  # other keys: the generation's win
    assert consent_from_record(None, [], trace_refuses) == (False, "metadata")
    generation_refuses = merge_metadata({"consent_training": "true"}, {"consent_training": "0"})
    assert consent_from_record(None, [], generation_refuses) == (False, "metadata")
    doubt = merge_metadata({"consent_training": "yes"}, {"consent_training": "maybe"})
    assert consent_from_record(None, [], doubt) == (None, "unreadable")
    assert merge_metadata({"consent_training": "yes"}, {"other": 1}) == {"consent_training": "yes", "other": 1}


# ---------------------------------------------------------------- the registry as a history


def _registry(*rows):
    return ConsentRegistry.from_rows([{"user_id": u, "granted": g, "updated_at": t} for u, g, t in rows])


def _decide(registry, trace_says=(), user="u1", at=T):
    return registry.decide(list(trace_says), user, at)


def test_a_registry_grant_never_overrides_the_traces_own_refusal():
    registry = _registry(("u1", "true", BEFORE))
    assert _decide(registry, [("column", False)]) == (False, "column")
    assert _decide(registry, [("tag", False)]) == (False, "tag")


def test_a_registry_grant_covers_only_traces_at_or_after_its_time():
    assert _decide(_registry(("u1", "true", BEFORE))) == (True, SOURCE_REGISTRY)
    assert _decide(_registry(("u1", "true", AFTER))) == (None, "none")  # not retroactive
    assert _decide(_registry(("u1", "true", T.isoformat()))) == (True, SOURCE_REGISTRY)  # at its time


def test_a_withdrawal_covers_everything_before_it_even_after_a_later_re_grant():
    registry = _registry(("u1", "true", "2026-01-01"), ("u1", "false", AFTER), ("u1", "true", "2026-06-01"))
    assert _decide(registry) == (False, SOURCE_REGISTRY)
    assert _decide(registry, [("column", True)]) == (False, SOURCE_REGISTRY)
    later = datetime(2026, 6, 2, tzinfo=timezone.utc)
    assert _decide(registry, at=later) == (True, SOURCE_REGISTRY)  # the re-grant covers newer traces
    # between the withdrawal and the re-grant: refused
    assert _decide(registry, at=datetime(2026, 5, 15, tzinfo=timezone.utc)) == (False, SOURCE_REGISTRY)
    assert not registry.forgotten_users()  # the newest row grants: kept, old traces refused


def test_an_undated_refusal_is_the_newest_row_and_an_undated_grant_the_oldest():
    # (u1, true, 2026-01-01) then (u1, false, ""): refused, and forgotten.
    registry = _registry(("u1", "true", "2026-01-01"), ("u1", "false", ""))
    assert _decide(registry, [("column", True)]) == (False, SOURCE_REGISTRY)
    assert set(registry.forgotten_users()) == {"u1"}
    # An undated grant is older than any dated refusal: the refusal wins and is the newest.
    registry = _registry(("u2", "false", "2026-01-01"), ("u2", "true", "not a date"))
    assert set(registry.forgotten_users()) == {"u2"} and _decide(registry, user="u2")[0] is False
    # Alone, an undated grant covers every trace.
    assert _decide(_registry(("u3", "yes", None)), user="u3") == (True, SOURCE_REGISTRY)


def test_an_unreadable_granted_value_is_a_refusal():
    registry = _registry(("u1", "true", "2026-01-01"), ("u1", "banana", "2026-02-01"))
    assert _decide(registry, [("column", True)]) == (False, SOURCE_REGISTRY)
    assert set(registry.forgotten_users()) == {"u1"}


def test_ties_go_to_the_refusal():
    registry = _registry(("u1", "true", "2026-03-01"), ("u1", "false", "2026-03-01"))
    assert _decide(registry) == (False, SOURCE_REGISTRY)
    assert set(registry.forgotten_users()) == {"u1"}
    # a refusal at exactly the trace's time covers it
    assert _decide(_registry(("u1", "true", "2026-01-01"), ("u1", "false", T.isoformat()), ("u1", "true", AFTER)))[0] is False


def test_every_row_is_kept_whatever_order_the_registry_lists_them():
    rows = [("u1", "true", "2026-06-01"), ("u1", "false", AFTER), ("u1", "true", "2026-01-01")]
    assert _registry(*rows).fingerprint() == _registry(*reversed(rows)).fingerprint()
    assert len(_registry(*rows).history("u1")) == 3
    assert _registry(*rows).fingerprint() != _registry(*rows[:2]).fingerprint()


def test_registry_from_csv_requires_columns():
    with pytest.raises(ValueError, match="lacks columns"):
        ConsentRegistry.from_csv_text("user,ok\nx,1\n", "r.csv")
    registry = ConsentRegistry.from_csv_text("user_id,granted,updated_at\nu1,no,2026-01-01\n", "r.csv")
    assert registry.newest("u1").granted is False and len(registry) == 1


# ---------------------------------------------------------------- applied to batches


def _batch(*rows, day="2026-04-18"):
    """Rows (user, explicit consent[, tags]) at 12:00 of ``day``."""
    built = []
    for i, row in enumerate(rows):
        user, consent, *tags = row
        built += build_examples(SourceRecord(
            trace_id=f"t{i}",
            observation_id=None,
            timestamp=f"{day}T12:00:00Z",
            model="m",
            messages=[{"role": "user", "content": "q"}],
            output="a",
            user_id=user,
            explicit_consent=consent,
            tags=tags[0] if tags else None,
            source="test",
            extracted_at=datetime(2026, 4, 19, tzinfo=timezone.utc),
            options=ReadOptions(),
        ))
    return rows_to_batch(built)


def test_applied_to_a_batch_the_registry_refuses_more_never_overrides_a_refusal():
    registry = _registry(
        ("alice", "true", "2026-01-01"), ("alice", "false", AFTER), ("alice", "true", "2026-06-01"),
        ("bob", "yes", "2026-02-01"),
        ("carol", "true", BEFORE),
        ("erin", "true", AFTER),
    )
    batch = apply_registry(
        _batch(("alice", True), ("bob", None), ("carol", False), ("dave", True), (None, True), ("erin", None),
               ("frank", None, ["consent:training", "consent:refused"])),
        registry,
    )
    assert batch.column("consent").to_pylist() == [False, True, False, True, True, None, False]
    assert batch.column("consent_source").to_pylist() == [
        "registry", "registry", "column", "column", "column", "none", "tag"]
    assert consent_state(batch).to_pylist() == ["false", "true", "false", "true", "true", "unknown", "false"]
    assert granted_mask(batch).to_pylist() == [False, True, False, True, True, False, False]
    assert apply_registry(batch, registry).equals(batch)  # applying it again changes nothing


def test_a_registry_grant_that_disappears_or_turns_unreadable_is_no_grant_any_more():
    granted = apply_registry(_batch(("bob", None), ("carol", True)), _registry(("bob", "yes", BEFORE)))
    assert granted.column("consent").to_pylist() == [True, True]
    removed = apply_registry(granted, _registry())
    assert removed.column("consent").to_pylist() == [None, True]  # carol's grant is her trace's own
    assert apply_registry(granted, None).column("consent").to_pylist() == [None, True]
    unreadable = apply_registry(granted, _registry(("bob", "yes", BEFORE), ("bob", "dunno", "2026-04-10")))
    assert unreadable.column("consent").to_pylist() == [False, True]


def test_unknown_consent_is_never_granted():
    batch = _batch(("u", None), ("v", ""), ("w", "maybe"))
    assert granted_mask(batch).to_pylist() == [False, False, False]
    assert consent_state(pa.Table.from_batches([batch])).to_pylist() == ["unknown"] * 3


# ---------------------------------------------------------------- who is forgotten


def test_the_policy_forgets_refusing_and_listed_users_and_what_an_erasure_removed():
    registry = _registry(("gone", "false", BEFORE), ("back", "true", "2026-06-01"), ("back", "false", "2026-03-01"))
    erased = {"back": datetime(2026, 4, 18, 13, tzinfo=timezone.utc)}  # an erasure removed "back" at 13:00
    policy = ConsentPolicy(registry, ["listed"], erased.get)
    batch = pa.concat_batches([
        _batch(("gone", True), ("listed", True), ("back", True), ("kept", True)),
        _batch(("back", None), day="2026-04-19"),
    ])
    assert policy.forgotten_mask(batch).to_pylist() == [True, True, True, False, False]
    kept, dropped = policy.apply(batch)
    assert dropped == 3 and kept.column("user_id").to_pylist() == ["kept", "back"]
    # "back" re-granted in June: a trace of 04-19 is still refused (the March withdrawal, then nothing granting)
    assert kept.column("consent").to_pylist() == [True, False]
    assert decide_consent([], registry.history("back"), datetime(2026, 6, 2, tzinfo=timezone.utc))[0] is True
