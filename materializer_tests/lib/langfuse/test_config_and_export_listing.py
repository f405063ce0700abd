"""Settings from Langfuse's own variables, and the blob-export listing rules (pure)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from materializer_assets.lib.langfuse import LangfuseConfig, is_langfuse_source, redact_url
from materializer_assets.lib.langfuse.blob_export import (
    FileCursor,
    ListedFile,
    advance,
    changed_files,
    export_window_days,
    list_source_files,
    window_end,
)
from materializer_assets.lib.langfuse.extract import context_texts, decoded, feedback_value
from materializer_assets.lib.sources.base import SourceUnavailableError
from materializer_assets.lib.storage import resolve

ENV = {"LANGFUSE_PUBLIC_KEY": "pk-lf-1", "LANGFUSE_SECRET_KEY": "sk-lf-secret"}


def test_host_from_langfuse_variables():
    assert (
        LangfuseConfig.from_env("langfuse", env={**ENV, "LANGFUSE_HOST": "https://eu.example.com/"}).host
        == "https://eu.example.com"
    )
    both = {**ENV, "LANGFUSE_HOST": "https://old.example.com", "LANGFUSE_BASE_URL": "https://new.example.com"}
    assert LangfuseConfig.from_env("langfuse", env=both).host == "https://new.example.com"
    assert LangfuseConfig.from_env("langfuse", env=ENV).host == "https://cloud.langfuse.com"
    # The source URL names the server itself.
    config = LangfuseConfig.from_env("https://lf.internal:3000", env={**ENV, "LANGFUSE_HOST": "https://ignored"})
    assert config.host == "https://lf.internal:3000" and config.public_key == "pk-lf-1"


def test_keys_in_the_source_url_and_never_in_descriptions():
    config = LangfuseConfig.from_env("https://pk-lf-9:sk-lf-9%2Fx@lf.example.com/", env={})
    assert (config.host, config.public_key, config.secret_key) == ("https://lf.example.com", "pk-lf-9", "sk-lf-9/x")
    assert "sk-lf-9" not in repr(config)
    assert redact_url("https://pk:sk@lf.example.com:8443/x") == "https://lf.example.com:8443/x"


def test_missing_keys_name_the_variables_not_values():
    with pytest.raises(SourceUnavailableError) as failure:
        LangfuseConfig.from_env("langfuse", env={"LANGFUSE_PUBLIC_KEY": "pk-only"})
    assert "LANGFUSE_SECRET_KEY" in str(failure.value) and "pk-only" not in str(failure.value)


def test_our_knobs():
    env = {
        **ENV,
        "MATERIALIZER_LANGFUSE_REQUESTS_PER_SECOND": "0.5",
        "MATERIALIZER_LANGFUSE_API": "V3",
        "MATERIALIZER_LANGFUSE_TIMEOUT_SECONDS": "12",
        "MATERIALIZER_LANGFUSE_MAX_ATTEMPTS": "4",
    }
    config = LangfuseConfig.from_env("langfuse", env=env)
    assert (config.requests_per_second, config.api_version, config.timeout_seconds, config.max_attempts) == (
        0.5,
        "v3",
        12,
        4,
    )
    with pytest.raises(ValueError, match="MATERIALIZER_LANGFUSE_REQUESTS_PER_SECOND"):
        LangfuseConfig.from_env("langfuse", env={**ENV, "MATERIALIZER_LANGFUSE_REQUESTS_PER_SECOND": "fast"})
    with pytest.raises(ValueError):
        LangfuseConfig(api_version="v5")
    with pytest.raises(ValueError):
        LangfuseConfig(window_minutes=7)


def test_which_sources_are_langfuse():
    assert is_langfuse_source("langfuse") and is_langfuse_source("LANGFUSE") and is_langfuse_source("https://x")
    assert (
        not is_langfuse_source("s3://bucket/x")
        and not is_langfuse_source("")
        and not is_langfuse_source("postgresql://h/db")
    )


def test_values_as_v4_returns_them():
    assert decoded('[{"role": "user", "content": "hi"}]') == [{"role": "user", "content": "hi"}]
    assert decoded('"just text"') == "just text"
    assert decoded("plain text") == "plain text" and decoded("[not json") == "[not json"
    assert context_texts('{"documents": ["a", "b"]}') == ["a", "b"]
    assert context_texts([{"page_content": "p"}, "q"]) == ["p", "q"]
    assert feedback_value({"name": "User Feedback", "value": 0.5, "dataType": "NUMERIC", "source": "API"}) == 0.5
    assert feedback_value({"name": "feedback", "value": True, "dataType": "BOOLEAN"}) == 1.0
    assert feedback_value({"name": "feedback", "value": 1, "dataType": "BOOLEAN", "stringValue": "True"}) == 1.0
    assert feedback_value({"name": "user_feedback", "value": 0.9, "source": "EVAL"}) is None
    assert feedback_value({"name": "user_feedback", "value": "good", "dataType": "CATEGORICAL"}) is None
    assert feedback_value({"name": "faithfulness", "value": 0.9}) is None


# ---------------------------------------------------------------- blob-export listings


def _file(relative: str, mtime: int = 1) -> ListedFile:
    return ListedFile(relative, f"/x/{relative}", 10, mtime)


def test_window_end_from_export_names():
    assert window_end("proj/traces/2026-04-19T06:00:00.000Z.jsonl") == datetime(2026, 4, 19, 6, tzinfo=timezone.utc)
    assert window_end("2026-04-19T06-00-00Z.parquet") == datetime(2026, 4, 19, 6, tzinfo=timezone.utc)
    assert window_end("2026-04-19T08:00:00+02:00.csv.gz") == datetime(2026, 4, 19, 6, tzinfo=timezone.utc)
    assert window_end("chats.jsonl") is None and window_end("2026-99-19T06:00:00Z.jsonl") is None


def test_export_window_days_from_the_previous_window():
    files = [
        _file("p/observations/2026-04-18T00:00:00.000Z.jsonl"),
        _file("p/observations/2026-04-21T00:00:00.000Z.jsonl"),
    ]
    # Three days since the previous export in the same folder.
    assert export_window_days(files[1], files) == {date(2026, 4, 18), date(2026, 4, 19), date(2026, 4, 20)}
    # The first file of a folder: the day before its window end.
    assert export_window_days(files[0], files) == {date(2026, 4, 17)}
    hourly = [_file("p/traces/2026-04-18T05:00:00Z.jsonl"), _file("p/traces/2026-04-18T06:00:00Z.jsonl")]
    assert export_window_days(hourly[1], hourly) == {date(2026, 4, 18)}
    assert export_window_days(_file("p/traces/latest.jsonl"), []) is None
    assert hourly[0].is_export and not _file("chats/a.jsonl").is_export


def test_file_cursor_sees_new_and_rewritten_files_once():
    a, b = _file("a.jsonl", 100), _file("b.jsonl", 100)
    cursor = FileCursor()
    assert changed_files([a, b], cursor) == [a, b]
    cursor = FileCursor.loads(advance(cursor, [a, b]).dumps())
    assert changed_files([a, b], cursor) == []
    c = _file("c.jsonl", 100)  # same second as the watermark, not seen yet
    assert changed_files([a, b, c], cursor) == [c]
    cursor = advance(cursor, [a, b, c])
    rewritten = _file("a.jsonl", 200)
    assert changed_files([rewritten, b, c], cursor) == [rewritten]
    assert FileCursor.loads("garbage") == FileCursor()


def test_listing_skips_hidden_and_underscore_names(tmp_path):
    (tmp_path / "p" / "traces").mkdir(parents=True)
    (tmp_path / "p" / "traces" / "2026-04-19T00:00:00Z.jsonl").write_text("{}\n")
    (tmp_path / "chat.jsonl").write_text("{}\n")
    (tmp_path / ".hidden.jsonl").write_text("{}\n")
    (tmp_path / "_staging").mkdir()
    (tmp_path / "_staging" / "x.jsonl").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("not a trace file")
    files = list_source_files(resolve(str(tmp_path)))
    assert [f.relative for f in files] == ["chat.jsonl", "p/traces/2026-04-19T00:00:00Z.jsonl"]
    assert all(f.mtime_ns > 0 and f.size > 0 for f in files)
    single = list_source_files(resolve(str(tmp_path / "chat.jsonl")))
    assert [f.relative for f in single] == ["chat.jsonl"]
    with pytest.raises(FileNotFoundError):
        list_source_files(resolve(str(tmp_path / "missing")))
