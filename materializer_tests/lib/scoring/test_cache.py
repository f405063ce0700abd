"""The score cache: persistent, newest wins, safe for concurrent runs, local and S3."""

import threading

import pyarrow.fs as pafs

from materializer_assets.lib.scoring.cache import ScoreCache, content_key
from materializer_assets.lib.storage import resolve


def _shard(cache, version="v1", day="2026-04-18", slug="glm-5-32b"):
    return cache.shard("judge", "Qwen/Qwen3-4B", version, day, slug)


def test_entries_survive_a_new_process_view(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    shard = _shard(cache)
    shard.put("hash-1", {"score": 0.5, "status": "ok"})
    assert shard.get("hash-1") == {"score": 0.5, "status": "ok"}  # visible before the flush
    shard.close()
    again = _shard(cache)
    assert again.get("hash-1") == {"score": 0.5, "status": "ok"}
    assert again.get("hash-2") is None
    files = list((tmp_path / "score-cache" / "judge").rglob("*.parquet"))
    assert len(files) == 1
    assert "date=2026-04-18/model=glm-5-32b" in str(files[0])
    assert not list(tmp_path.rglob("_*.tmp"))


def test_keys_are_scoped_by_model_prompt_version_and_cell(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    shard = _shard(cache)
    shard.put("hash-1", {"score": 0.5})
    shard.close()
    assert _shard(cache, version="v2").get("hash-1") is None
    assert _shard(cache, day="2026-04-19").get("hash-1") is None
    assert cache.shard("judge", "another-model", "v1", "2026-04-18", "glm-5-32b").get("hash-1") is None


def test_the_newest_entry_wins(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    first = _shard(cache)
    first.put("k", {"score": 0.1})
    first.close()
    second = _shard(cache)
    second.put("k", {"score": 0.9})
    second.close()
    assert _shard(cache).get("k") == {"score": 0.9}


def test_pending_entries_flush_in_bounded_files(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)), flush_rows=10)
    shard = _shard(cache)
    for i in range(25):
        shard.put(f"k{i}", {"i": i})
    assert shard.files_written == 2  # flushed as it went: a crash keeps what was paid for
    shard.flush()
    assert len(_shard(cache)) == 25


def test_concurrent_writers_never_lose_entries(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)), flush_rows=7, compact_above_files=1000)

    def writer(n):
        shard = _shard(cache)
        for i in range(50):
            shard.put(f"w{n}-{i}", {"n": n})
        shard.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(_shard(cache)) == 200


def test_compaction_merges_files_and_keeps_the_newest(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)), compact_above_files=3)
    for round_ in range(5):
        shard = _shard(cache)
        shard.put("same", {"round": round_})
        shard.put(f"only-{round_}", {"round": round_})
        shard.flush()  # no compaction yet: one file per round
    shard = _shard(cache)
    assert shard.compact()
    files = list((tmp_path / "score-cache").rglob("part-*.parquet"))
    assert len(files) == 1
    merged = _shard(cache)
    assert len(merged) == 6
    assert merged.get("same") == {"round": 4}


def test_content_key_covers_every_part():
    assert content_key("h", ["a", "b"]) != content_key("h", ["b", "a"])
    assert content_key("h", ["a"]) == content_key("h", ["a"])
    assert len(content_key("h")) == 32


def test_cache_on_s3(s3_bucket, s3_endpoint):
    from materializer_assets.lib.storage import S3Options

    root = resolve(f"s3://{s3_bucket}/warehouse", S3Options(endpoint_url=s3_endpoint))
    cache = ScoreCache.in_warehouse(root)
    shard = _shard(cache)
    shard.put("k", {"score": 0.25})
    shard.close()
    assert _shard(cache).get("k") == {"score": 0.25}
    listed = root.filesystem.get_file_info(pafs.FileSelector(f"{s3_bucket}/warehouse/score-cache", recursive=True))
    assert [info.path for info in listed if info.path.endswith(".parquet")]


def _entries(tmp_path):
    import pyarrow.dataset as ds

    files = [str(f) for f in (tmp_path / "score-cache").rglob("part-*.parquet")]
    from materializer_assets.lib.scoring.cache import CACHE_SCHEMA

    return sorted(
        ((r["key"], r["trace_id"]) for r in ds.dataset(files, schema=CACHE_SCHEMA).to_table().to_pylist()),
        key=lambda pair: (pair[0], pair[1] or ""),
    )


def test_entries_record_the_trace_they_were_written_for(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    shard = _shard(cache)
    shard.put("k1", {"score": 0.5}, trace_id="trace-1")
    shard.put("k2", {"score": 0.7}, trace_id="trace-2")
    shard.close()
    assert _entries(tmp_path) == [("k1", "trace-1"), ("k2", "trace-2")]
    [path] = (tmp_path / "score-cache").rglob("part-*.parquet")
    import pyarrow.parquet as pq

    assert pq.read_schema(path).names == ["key", "payload", "written_at", "trace_id"]  # the new column is last


def test_a_legacy_file_without_trace_id_is_still_served(tmp_path):
    import json
    from datetime import datetime, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    folder = tmp_path / _shard(cache).path.removeprefix(str(tmp_path)).lstrip("/")
    folder.mkdir(parents=True)
    legacy = pa.table(
        {
            "key": ["old"],
            "payload": [json.dumps({"score": 0.3})],
            "written_at": pa.array([datetime(2026, 1, 1, tzinfo=timezone.utc)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(legacy, folder / "part-legacy.parquet")
    shard = _shard(cache)
    assert shard.get("old") == {"score": 0.3}
    shard.put("new", {"score": 0.9}, trace_id="t-new")
    shard.close()
    assert _entries(tmp_path) == [("new", "t-new"), ("old", None)]


def test_a_trace_answered_from_another_traces_entry_gets_its_own(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)))
    shard = _shard(cache)
    shard.put("same-content", {"score": 0.5}, trace_id="t-alice")
    shard.attribute("same-content", "t-alice")  # its own entry already: nothing to write
    shard.attribute("same-content", "t-bob")
    shard.attribute("same-content", "t-bob")
    shard.attribute("unknown-key", "t-carol")  # nothing cached: nothing to attribute
    shard.close()
    assert _entries(tmp_path) == [("same-content", "t-alice"), ("same-content", "t-bob")]
    again = _shard(cache)
    again.attribute("same-content", "t-bob")  # known from the files: no new write
    again.close()
    assert again.files_written == 0
    assert again.get("same-content") == {"score": 0.5}


def test_compaction_keeps_the_newest_entry_of_each_trace(tmp_path):
    cache = ScoreCache.in_warehouse(resolve(str(tmp_path)), compact_above_files=2)
    for round_ in range(3):
        shard = _shard(cache)
        shard.put("k", {"round": round_}, trace_id="t-1")
        shard.flush()
    shard = _shard(cache)
    shard.attribute("k", "t-2")
    shard.close()  # flush + compaction of 4 files
    assert len(list((tmp_path / "score-cache").rglob("part-*.parquet"))) == 1
    assert _entries(tmp_path) == [("k", "t-1"), ("k", "t-2")]
    assert _shard(cache).get("k") == {"round": 2}
