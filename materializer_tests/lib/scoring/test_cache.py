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
