"""GDPR erasure of the score cache, on real files in a local folder and on moto's S3."""

from __future__ import annotations

import json
import os
import posixpath
import time
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib import erasure as er
from materializer_assets.lib.scoring.cache import CACHE_SCHEMA, ScoreCache, read_entries
from materializer_assets.lib.scoring.cache_erasure import ScoreCacheOutput, ScoreCacheUnreadableError
from materializer_assets.lib.storage import S3Options, resolve

DAY, SLUG = "2026-04-18", "glm-5-32b"


@pytest.fixture(params=["local", "s3"])
def warehouse(request, tmp_path):
    if request.param == "local":
        return resolve(str(tmp_path / "wh"))
    bucket = request.getfixturevalue("s3_bucket")
    endpoint = request.getfixturevalue("s3_endpoint")
    return resolve(f"s3://{bucket}/wh", S3Options(endpoint_url=endpoint))


def _shard(cache, kind="judge", day=DAY):
    return cache.shard(kind, "Qwen/Qwen3-4B", "judge-v1", day, SLUG)


def _files(root) -> list[str]:
    selector = pafs.FileSelector(root.path, recursive=True, allow_not_found=True)
    return sorted(i.path for i in root.filesystem.get_file_info(selector) if i.type == pafs.FileType.File)


def _traces_in_files(root) -> list[str | None]:
    found = []
    for path in _files(root):
        if path.endswith(".parquet"):
            found += read_entries(root.filesystem, [path]).column("trace_id").to_pylist()
    return found


def _write_legacy(root, folder: str, keys: list[str]) -> str:
    """A cache file as written before entries carried a trace id."""
    table = pa.table(
        {
            "key": keys,
            "payload": [json.dumps({"score": 0.1}) for _ in keys],
            "written_at": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)] * len(keys), pa.timestamp("us", tz="UTC")),
        }
    )
    if isinstance(root.filesystem, pafs.LocalFileSystem):
        root.filesystem.create_dir(folder, recursive=True)
    path = posixpath.join(folder, "part-legacy.parquet")
    pq.write_table(table, path, filesystem=root.filesystem)
    return path


def _populate(warehouse) -> ScoreCache:
    """Two traces in two shards of one cell (judge + ragas), plus a second day for alice only."""
    cache = ScoreCache.in_warehouse(warehouse)
    for kind in ("judge", "ragas"):
        shard = _shard(cache, kind)
        shard.put(f"{kind}-alice", {"score": 0.2, "reasoning": "quotes ALICE-ANSWER"}, trace_id="t-alice")
        shard.put(f"{kind}-bob", {"score": 0.8, "reasoning": "quotes BOB-ANSWER"}, trace_id="t-bob")
        shard.close()
    other_day = _shard(cache, day="2026-04-19")
    other_day.put("judge-alice-2", {"score": 0.4}, trace_id="t-alice-2")
    other_day.close()
    return cache


def test_erasing_one_trace_keeps_the_other_served(warehouse):
    cache = _populate(warehouse)
    output = ScoreCacheOutput(cache.root)
    targets = er.ErasureTargets(frozenset({"alice"}), frozenset({"t-alice", "t-alice-2"}))
    assert output.exists()
    assert output.remaining(targets) == 3

    result = output.erase(targets)
    assert result.rows_removed == 3
    assert result.key_column == "trace_id"
    scorer = posixpath.relpath(_shard(cache).path, cache.root.path).split("/")[1]  # <model-slug>-<hash>
    assert result.rows_removed_by_cell == {
        f"{DAY}|{SLUG}|judge/{scorer}/judge-v1": 1,
        f"{DAY}|{SLUG}|ragas/{scorer}/judge-v1": 1,
        f"2026-04-19|{SLUG}|judge/{scorer}/judge-v1": 1,
    }
    assert output.purge() == {"deleted_files": 0}
    assert output.remaining(targets) == 0

    # The other trace is still served by a fresh shard; the erased one is in no file at all.
    for kind in ("judge", "ragas"):
        fresh = _shard(cache, kind)
        assert fresh.get(f"{kind}-bob") == {"score": 0.8, "reasoning": "quotes BOB-ANSWER"}
        assert fresh.get(f"{kind}-alice") is None
    assert _shard(cache, day="2026-04-19").get("judge-alice-2") is None
    assert sorted(_traces_in_files(cache.root)) == ["t-bob", "t-bob"]
    # One published file per shard that kept entries; the shard that kept none has no file left.
    parquet = [p for p in _files(cache.root) if p.endswith(".parquet")]
    assert len(parquet) == 2 and not any("date=2026-04-19" in p for p in parquet)
    assert not [p for p in _files(cache.root) if p.endswith(".tmp")]

    # A second erasure of the same targets finds nothing and rewrites nothing.
    assert output.erase(targets).rows_removed == 0
    assert [p for p in _files(cache.root) if p.endswith(".parquet")] == parquet


def test_untouched_shards_are_not_rewritten(warehouse):
    cache = _populate(warehouse)
    before = _files(cache.root)
    output = ScoreCacheOutput(cache.root)
    assert output.erase(er.ErasureTargets(frozenset({"dave"}), frozenset({"t-dave"}))).rows_removed == 0
    assert _files(cache.root) == before


def test_a_legacy_file_without_trace_id_is_removed(warehouse):
    cache = _populate(warehouse)
    folder = _shard(cache).path
    legacy = _write_legacy(cache.root, folder, ["old-1", "old-2"])
    assert _shard(cache).get("old-1") == {"score": 0.1}  # still served before the erasure
    output = ScoreCacheOutput(cache.root)
    targets = er.ErasureTargets(frozenset({"dave"}), frozenset({"t-dave"}))  # a user with no cached trace
    assert output.remaining(targets) == 2  # whose they are cannot be told: they count as remaining
    result = output.erase(targets)
    assert result.rows_removed == 2
    assert output.remaining(targets) == 0
    assert legacy not in _files(cache.root)
    fresh = _shard(cache)
    assert fresh.get("old-1") is None
    assert fresh.get("judge-alice") is not None and fresh.get("judge-bob") is not None  # attributed entries stay
    assert None not in _traces_in_files(cache.root)


def test_a_corrupt_file_fails_verification_and_erase_deletes_it(warehouse):
    cache = _populate(warehouse)
    corrupt = posixpath.join(_shard(cache).path, "part-corrupt.parquet")
    with cache.root.filesystem.open_output_stream(corrupt) as out:
        out.write(b"PAR1 this is not a parquet file")
    output = ScoreCacheOutput(cache.root)
    targets = er.ErasureTargets(frozenset({"alice"}), frozenset({"t-alice"}))
    with pytest.raises(ScoreCacheUnreadableError) as raised:
        output.remaining(targets)
    assert isinstance(raised.value, er.ErasureError)  # the erasure run fails, nothing recorded
    assert "part-corrupt.parquet" in str(raised.value)

    output.erase(targets)  # cannot be checked, scoring could not read it either: it goes
    assert corrupt not in _files(cache.root)
    assert output.purge()["unreadable_files_deleted"] == 1
    assert output.remaining(targets) == 0
    assert _shard(cache).get("judge-bob") is not None


def test_a_corrupt_file_under_the_cache_but_outside_any_shard_fails_verification(warehouse):
    cache = _populate(warehouse)
    stray = posixpath.join(cache.root.path, "judge", "stray.parquet")
    with cache.root.filesystem.open_output_stream(stray) as out:
        out.write(b"garbage")
    with pytest.raises(ScoreCacheUnreadableError):
        ScoreCacheOutput(cache.root).remaining(er.ErasureTargets(frozenset(), frozenset({"t-none"})))


def test_purge_deletes_only_stale_temporary_files(tmp_path):
    root = resolve(str(tmp_path / "wh"))
    cache = _populate(root)
    folder = _shard(cache).path
    stale, fresh = os.path.join(folder, "_part-stale.parquet.tmp"), os.path.join(folder, "_part-fresh.parquet.tmp")
    table = CACHE_SCHEMA.empty_table()
    pq.write_table(table, stale)
    pq.write_table(table, fresh)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert ScoreCacheOutput(cache.root).purge() == {"deleted_files": 1}
    assert not os.path.exists(stale) and os.path.exists(fresh)


def test_a_temporary_file_holding_a_targeted_entry_counts_as_remaining(tmp_path):
    root = resolve(str(tmp_path / "wh"))
    cache = _populate(root)
    folder = _shard(cache).path
    leftover = os.path.join(folder, "_part-crashed.parquet.tmp")
    pq.write_table(read_entries(root.filesystem, [p for p in _files(cache.root) if p.startswith(folder)]), leftover)
    output = ScoreCacheOutput(cache.root)
    targets = er.ErasureTargets(frozenset({"alice"}), frozenset({"t-alice"}))
    output.erase(targets)
    assert output.remaining(targets) == 1  # a young leftover is not purged yet: the run must not pass
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    output.purge()
    assert output.remaining(targets) == 0


def test_an_output_over_a_missing_cache_is_empty(tmp_path):
    output = ScoreCacheOutput(ScoreCache.in_warehouse(resolve(str(tmp_path / "none"))).root)
    targets = er.ErasureTargets(frozenset({"alice"}), frozenset({"t-alice"}))
    assert not output.exists()
    assert output.erase(targets).rows_removed == 0
    assert output.purge() == {"deleted_files": 0}
    assert output.remaining(targets) == 0
    assert output.trace_ids_of(frozenset({"alice"})) == set()


def test_run_erasure_over_the_cache_alone_audits_it(tmp_path):
    """With an output that maps the user to their traces, run_erasure erases the cache and records it."""
    root = resolve(str(tmp_path / "wh"))
    cache = _populate(root)

    class Traces(er.ErasableOutput):
        name, kind = "traces", "test"

        def trace_ids_of(self, user_ids):
            return {"t-alice", "t-alice-2"} if "alice" in user_ids else set()

        def erase(self, targets):
            return er.OutputErasure(self.name, self.kind, "user_id")

        def remaining(self, targets):
            return 0

    ledger = er.ErasureLedger(root, salt="test-salt")
    report = er.run_erasure(
        [er.ErasureRequest("alice", None, er.REASON_ERASURE_REQUEST)], [Traces(), ScoreCacheOutput(cache.root)], ledger
    )
    assert report.outputs["score-cache"].rows_removed == 3
    assert sorted(_traces_in_files(cache.root)) == ["t-bob", "t-bob"]
    [record] = ledger.audit_records()
    assert record["outputs"]["score-cache"]["rows_removed"] == 3
    assert "t-alice" not in json.dumps(record) and "alice" not in json.dumps(record["users"])
