"""The ingest stages as stream transforms: counts, dedup and the one-filter path."""

from __future__ import annotations

import posixpath
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib.consent import ConsentPolicy, ConsentRegistry
from materializer_assets.lib.lake import CellAddress, CellNotMaterialized, ParquetLake, iter_batches
from materializer_assets.lib.schema import NORMALIZED_SCHEMA
from materializer_assets.lib.stages import (
    DROP_DUPLICATE,
    DROP_EMPTY_RESPONSE,
    DROP_FORGOTTEN,
    ConsentedStats,
    ConsentFolderMismatch,
    RawStats,
    SeenKeys,
    consent_candidates,
    consented_from_raw,
    consented_stage,
    raw_stage,
    split_by_consent,
)
from materializer_assets.lib.storage import resolve

from .helpers import make_batch, make_rows


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
        list(consented_stage([pa.concat_batches([granted, blank, refused, unknown]), repeated], ConsentPolicy(), None, stats))
    )
    assert sorted(out.column("trace_id").to_pylist()) == [f"g-{i}" for i in range(6)]
    assert (stats.consented, stats.refused, stats.unknown) == (6, 3, 1)
    assert stats.dropped[DROP_EMPTY_RESPONSE] == 2 and stats.dropped[DROP_DUPLICATE] == 2
    assert stats.reconciles and stats.rows_in == 14


def test_raw_stage_drops_forgotten_users_before_anything_is_written():
    batch = pa.concat_batches([make_batch(2, consent=True, user="gone", prefix="g"), make_batch(2, consent=True)])
    stats = RawStats()
    policy = ConsentPolicy(ConsentRegistry.from_rows([{"user_id": "listed-later", "granted": "yes"}]), ["gone"])
    kept = pa.Table.from_batches(list(raw_stage([batch], policy, stats)))
    assert "gone" not in kept.column("user_id").to_pylist() and kept.num_rows == 2
    assert stats.as_metadata()["rows_dropped_forgotten_users"] == 2 and stats.rows == 2


def test_raw_stage_counts_consent_states_and_sources():
    batch = pa.concat_batches([make_batch(2, consent=True), make_batch(1, consent=False, prefix="n"), make_batch(3, consent=None, prefix="u")])
    stats = RawStats()
    assert sum(b.num_rows for b in raw_stage([batch], ConsentPolicy(), stats)) == 6
    assert stats.as_metadata()["rows_by_consent"] == {"true": 2, "false": 1, "unknown": 3}
    assert sum(stats.by_consent_source.values()) == 6


# ---------------------------------------------------------------- reading only what can be granted


def _raw_cell(tmp_path, batches):
    lake = ParquetLake(resolve(str(tmp_path)))
    address = CellAddress("raw-traces", "2026-04-18", "glm-5-32b")
    lake.write_cell(address, batches, NORMALIZED_SCHEMA, split=split_by_consent)
    return lake.open_cell(address)


def _consented(raw, registry):
    """(trace ids kept, stats, whether only part of the cell was read whole) as the asset does it."""
    stats = ConsentedStats()
    kept = list(consented_from_raw(raw, ConsentPolicy(registry), None, stats))
    ids = sorted(t for b in kept for t in b.column("trace_id").to_pylist())
    partial = stats.as_metadata()["raw_rows_only_counted"] > 0
    stats.rows_read_whole = None  # compared with a whole read below
    return ids, stats, partial


def _whole(raw, registry):
    stats = ConsentedStats()
    kept = [b for b in consented_stage(iter_batches(raw), ConsentPolicy(registry), None, stats)]
    return sorted(t for b in kept for t in b.column("trace_id").to_pylist()), stats


def _cell_batches():
    return [
        make_batch(4, consent=True, prefix="g"),
        make_batch(3, consent=False, prefix="r"),
        make_batch(2, consent=None, prefix="u"),
    ]


def test_without_a_registry_only_the_consent_true_folder_is_read_and_the_rest_is_counted(tmp_path):
    raw = _raw_cell(tmp_path, _cell_batches())
    to_read, to_count = consent_candidates(raw, ConsentPolicy())
    assert {posixpath.basename(posixpath.dirname(f)) for f in to_read.files} == {"consent=true"}
    assert {posixpath.basename(posixpath.dirname(f)) for f in to_count.files} == {"consent=false", "consent=unknown"}
    ids, stats, partial = _consented(raw, None)
    assert partial and ids == [f"g-{i}" for i in range(4)]
    assert (stats.rows_in, stats.consented, stats.refused, stats.unknown) == (9, 4, 3, 2)
    assert stats.reconciles and (ids, stats) == _whole(raw, None)


def test_a_registry_that_only_revokes_still_skips_the_other_folders_with_the_same_counts(tmp_path):
    raw = _raw_cell(tmp_path, _cell_batches())
    # user-0 refuses; user-1's only row is unreadable, a refusal: both are forgotten, every row of theirs
    # (g-0, g-1, r-0, r-1, u-0, u-1) is dropped, counted as such.
    registry = ConsentRegistry.from_rows(
        [{"user_id": "user-0", "granted": "no"}, {"user_id": "user-1", "granted": "maybe"}]
    )
    assert not registry.may_grant()
    ids, stats, partial = _consented(raw, registry)
    assert partial and ids == ["g-2", "g-3"]
    assert (ids, stats) == _whole(raw, registry)
    assert stats.reconciles and (stats.refused, stats.unknown, stats.dropped[DROP_FORGOTTEN]) == (1, 0, 6)


def test_a_registry_that_grants_makes_every_folder_readable_but_never_overrides_a_refusal(tmp_path):
    raw = _raw_cell(tmp_path, _cell_batches())
    # user-1 granted, undated (counts as oldest): u-1 (the trace says nothing) is granted,
    # r-1 (the trace refuses) stays refused.
    registry = ConsentRegistry.from_rows([{"user_id": "user-1", "granted": "yes"}])
    assert registry.may_grant()
    ids, stats, partial = _consented(raw, registry)
    assert not partial
    assert ids == ["g-0", "g-1", "g-2", "g-3", "u-1"]
    assert stats.reconciles and (stats.refused, stats.unknown) == (3, 1)


def test_a_granted_row_filed_under_consent_false_is_raised_not_dropped(tmp_path):
    raw = _raw_cell(tmp_path, [make_batch(2, consent=True, prefix="g")])
    folder = Path(raw.files[0]).parent
    misfiled = folder.parent / "consent=false"
    misfiled.mkdir()
    pq.write_table(pa.Table.from_batches([make_batch(1, consent=True, prefix="x")]), misfiled / "part-0.parquet")
    lake_files = [*raw.files, str(misfiled / "part-0.parquet")]
    mixed = ds.dataset(lake_files, schema=raw.schema, format="parquet")
    with pytest.raises(ConsentFolderMismatch, match="re-materialize raw_traces"):
        _consented(mixed, None)
    # Written through the lake, the mismatch aborts the cell: nothing is published.
    lake = ParquetLake(resolve(str(tmp_path)))
    consented = CellAddress("langfuse-traces", "2026-04-18", "glm-5-32b")
    with pytest.raises(ConsentFolderMismatch):
        lake.write_cell(consented, consented_from_raw(mixed, ConsentPolicy(), None, ConsentedStats()), NORMALIZED_SCHEMA)
    with pytest.raises(CellNotMaterialized):
        lake.cell_files(consented)


def test_consented_stage_restores_compacted_messages_after_redaction_with_the_same_counts():
    from materializer_assets.lib.redaction import Redactor
    from materializer_assets.lib.stages import raw_archive_form

    rows = make_rows(6, consent=True, response="write to bob@example.com or call 202-555-0143")
    rows[1]["prompt"] = rows[1]["messages"][0]["content"] = "my mail is a@x.io"
    rows[2]["messages"] = [{"role": "system", "content": "hi c@x.io"}] + rows[2]["messages"]  # not derivable
    whole = pa.RecordBatch.from_pylist(rows, schema=NORMALIZED_SCHEMA)
    (compacted,) = raw_archive_form([whole])
    assert compacted.column("messages").null_count == 5

    def run(batch):
        stats = ConsentedStats()
        out = pa.Table.from_batches(list(consented_stage([batch], ConsentPolicy(), Redactor(), stats)))
        return out, stats

    from_whole, whole_stats = run(whole)
    from_compacted, compacted_stats = run(compacted)
    assert from_compacted.to_pylist() == from_whole.to_pylist()
    assert compacted_stats.redactions == whole_stats.redactions
    assert whole_stats.redactions["EMAIL"] == 2 * 6 + 2 + 1  # responses and their messages, a@x.io twice, c@x.io
    assert from_compacted.column("messages")[1].as_py()[0]["content"] == "my mail is <EMAIL>"
