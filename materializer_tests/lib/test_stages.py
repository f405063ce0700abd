"""The ingest stages as stream transforms: counts, dedup and the one-filter path."""

from __future__ import annotations

import pyarrow as pa

from materializer_assets.lib.stages import (
    DROP_DUPLICATE,
    DROP_EMPTY_RESPONSE,
    ConsentedStats,
    RawStats,
    SeenKeys,
    consented_stage,
    raw_stage,
)

from .helpers import make_batch


def test_seen_keys_marks_repeats_within_and_across_calls():
    seen = SeenKeys()
    first = seen.first_seen(["a", "b", "a", "c"], [None, None, None, "o1"])
    assert first.tolist() == [True, True, False, True]
    second = seen.first_seen(["c", "c", "d"], ["o1", "o2", None])
    assert second.tolist() == [False, True, True]
    assert len(seen) == 5


def test_seen_keys_stays_exact_over_many_merged_runs():
    seen = SeenKeys()
    for start in range(0, 50_000, 1_000):
        ids = [f"t{i}" for i in range(start, start + 1_000)]
        assert seen.first_seen(ids, [None] * len(ids)).all()
    again = [f"t{i}" for i in range(0, 50_000, 7)]
    assert not seen.first_seen(again, [None] * len(again)).any()
    assert len(seen) == 50_000
    assert len(seen._runs) <= 16  # merged as it grew, so lookups stay cheap


def test_consented_stage_counts_every_row_in_exactly_one_bucket():
    granted = make_batch(6, consent=True, prefix="g")
    blank = make_batch(2, consent=True, prefix="w", response=" \u2003\n")  # whitespace only: no answer
    refused = make_batch(3, consent=False, prefix="r")
    unknown = make_batch(1, consent=None, prefix="u")
    repeated = make_batch(2, consent=True, prefix="g")  # g-0, g-1 again, in a later batch
    stats = ConsentedStats()
    out = pa.Table.from_batches(
        list(consented_stage([pa.concat_batches([granted, blank, refused, unknown]), repeated], None, None, stats))
    )
    assert sorted(out.column("trace_id").to_pylist()) == [f"g-{i}" for i in range(6)]
    assert (stats.consented, stats.refused, stats.unknown) == (6, 3, 1)
    assert stats.dropped[DROP_EMPTY_RESPONSE] == 2 and stats.dropped[DROP_DUPLICATE] == 2
    assert stats.reconciles and stats.rows_in == 14


def test_raw_stage_counts_consent_states_and_sources():
    batch = pa.concat_batches([make_batch(2, consent=True), make_batch(1, consent=False, prefix="n"), make_batch(3, consent=None, prefix="u")])
    stats = RawStats()
    assert sum(b.num_rows for b in raw_stage([batch], None, stats)) == 6
    assert stats.as_metadata()["rows_by_consent"] == {"true": 2, "false": 1, "unknown": 3}
    assert sum(stats.by_consent_source.values()) == 6
