"""LangfuseTraceReader over real HTTP against the contract server, API v4 and v3."""

from __future__ import annotations

import json

import pytest

from materializer_assets.lib.langfuse import LangfuseUnavailableError
from materializer_assets.lib.normalize import ReadOptions
from materializer_assets.lib.slugs import model_slug
from materializer_assets.lib.sources.base import SourceUnavailableError
from materializer_tests.langfuse_server import build_default_fixture, expected_cells, expected_rows
from materializer_tests.langfuse_server.data import (
    DAY,
    GLM,
    GPT,
    LONG_CONTEXT,
    MODELS,
    NEXT_DAY,
    PREVIOUS_DAY,
    QWEN,
    add_many_traces,
)

from .helpers import V3, V4, comparable, read_rows, reader_for

VERSIONS = pytest.mark.parametrize("version", [V4, V3], ids=["v4", "v3"])
ALL_SLUGS = sorted({model_slug(name) for name in MODELS} | {"unknown"})


@VERSIONS
def test_every_cell_of_the_day_equals_the_fixture(make_langfuse_server, version):
    server = make_langfuse_server(version)
    reader = reader_for(server)
    assert {(DAY.isoformat(), slug) for slug in ALL_SLUGS} == expected_cells(server.data, DAY)
    total = 0
    for slug in ALL_SLUGS:
        rows, rejections = read_rows(reader, DAY, slug)
        assert rows == comparable(expected_rows(server.data, DAY, slug)), slug
        total += len(rows)
    assert (
        total == 39
    )  # 30 regular + two turns + tool call + unknown + metadata model + boundary + long + last instant + obs score
    assert reader.description == f"Langfuse API {'v4' if version == V4 else 'v3'} at {server.url}"


@VERSIONS
def test_what_the_rows_hold(make_langfuse_server, version):
    server = make_langfuse_server(version)
    reader = reader_for(server)
    gpt, _ = read_rows(reader, DAY, model_slug(GPT))
    first = next(row for row in gpt if row["trace_id"] == "tr-0418-000")
    assert first["model"] == GPT and first["source"] == "langfuse" and first["date"] == DAY.isoformat()
    assert first["contexts"] == ["doc 0a", "doc 0b"]  # the RETRIEVER observation's documents
    # user_feedback 0.0 and a thumbs-up (BOOLEAN true); the judge's (EVAL) 0.9 and a category are ignored
    assert first["feedback_score"] == pytest.approx(0.5)
    assert first["consent"] is True and first["consent_source"] == "tag"
    assert first["latency_ms"] == 1200 and first["input_tokens"] == 100 and first["total_tokens"] == 120
    assert first["cost_usd"] == 0.0 and first["session_id"] == "sess-0"
    assert first["user_id"] == "user-0" and "consent:training" in first["tags"]
    assert json.loads(first["metadata"])["tenant"] == "acme"
    assert first["prompt"].endswith("Grüße 👋") and first["response"] == "Answer 0"
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    refused = next(row for row in gpt if row["trace_id"] == "tr-0418-009")
    assert refused["consent"] is False and refused["consent_source"] == "tag"
    by_metadata = next(row for row in gpt if row["trace_id"] == "tr-0418-006")
    assert by_metadata["consent"] is True and by_metadata["consent_source"] == "metadata"
    unknown = next(row for row in gpt if row["trace_id"] == "tr-0418-003")
    assert unknown["consent"] is None

    rows, rejections = read_rows(reader, DAY, model_slug(GLM))
    by_trace = {}
    for row in rows:
        by_trace.setdefault(row["trace_id"], []).append(row)
    # An observation-level score named "user-feedback" is the trace's feedback.
    assert by_trace["tr-0418-108"][0]["feedback_score"] == 0.25
    # No provided model name but metadata.model = glm: in the glm cell.
    assert "tr-0418-103" in by_trace
    # Two assistant turns, two examples.
    assert [row["observation_id"] for row in by_trace["tr-0418-100"]] == [
        "tr-0418-100-gen#turn-0",
        "tr-0418-100-gen#turn-1",
    ]
    # Neither input nor output: rejected by name, located by its observation.
    assert dict(rejections.counts) == {"no_messages": 1}
    assert "tr-0418-104-gen" in rejections.examples[0]["location"]


@VERSIONS
def test_boundaries_and_long_metadata(make_langfuse_server, version):
    server = make_langfuse_server(version)
    reader = reader_for(server)
    qwen, _ = read_rows(reader, DAY, model_slug(QWEN))
    by_trace = {row["trace_id"]: row for row in qwen}
    # Trace started in the previous hour window; its retriever 20 s before the window.
    assert by_trace["tr-0418-105"]["contexts"] == ["boundary doc"]
    assert by_trace["tr-0418-105"]["user_id"] == "user-3"
    # A metadata value longer than v4's 200-character truncation arrives whole (expandMetadata).
    assert by_trace["tr-0418-106"]["contexts"] == [LONG_CONTEXT]
    gpt, _ = read_rows(reader, DAY, model_slug(GPT))
    assert "tr-0418-107" in {row["trace_id"] for row in gpt}  # 23:59:59.999 belongs to the day
    assert "tr-0419-001" not in {row["trace_id"] for row in gpt}  # 00:00:00.000 to the next
    next_day, _ = read_rows(reader, NEXT_DAY, model_slug(GPT))
    assert [row["trace_id"] for row in next_day] == ["tr-0419-001"]
    tool = next(row for row in gpt if row["trace_id"] == "tr-0418-101")
    assert json.loads(tool["response"])[0]["function"]["name"] == "search"
    assert json.loads(tool["tools"])[0]["function"]["name"] == "search"


@VERSIONS
def test_multi_turn_as_one_example(make_langfuse_server, version):
    server = make_langfuse_server(version)
    options = ReadOptions(convert_to_single_turn=False)
    rows, _ = read_rows(reader_for(server, options=options), DAY, model_slug(GLM))
    assert rows == comparable(expected_rows(server.data, DAY, model_slug(GLM), options))
    assert [row["observation_id"] for row in rows if row["trace_id"] == "tr-0418-100"] == ["tr-0418-100-gen"]


@VERSIONS
def test_models_on_a_day(make_langfuse_server, version):
    server = make_langfuse_server(version)
    reader = reader_for(server)
    assert reader.models_on(DAY) == [QWEN, GLM, GPT, None]
    assert reader.models_on(PREVIOUS_DAY) == [QWEN, GPT]
    assert reader.models_on(DAY.replace(day=1)) == []


@VERSIONS
def test_an_empty_cell_is_empty(make_langfuse_server, version):
    server = make_langfuse_server(version)
    rows, rejections = read_rows(reader_for(server), DAY.replace(day=2), "glm-5-32b")
    assert rows == [] and rejections.total == 0


@VERSIONS
def test_a_late_trace_appears_in_the_next_read(make_langfuse_server, version):
    server = make_langfuse_server(version)
    before, _ = read_rows(reader_for(server), DAY, model_slug(GLM))
    server.release_late()
    after, _ = read_rows(reader_for(server), DAY, model_slug(GLM))
    assert {row["trace_id"] for row in after} - {row["trace_id"] for row in before} == {"tr-0418-200"}
    assert next(row for row in after if row["trace_id"] == "tr-0418-200")["feedback_score"] == 1.0
    assert after == comparable(expected_rows(server.data, DAY, model_slug(GLM)))


CURSOR_MODES = ["normal", "null", "empty_pages", "trailing_empty"]


@pytest.mark.parametrize("cursor_mode", CURSOR_MODES)
def test_v4_pagination_across_pages_and_cursor_edge_cases(make_langfuse_server, cursor_mode):
    data = build_default_fixture()
    add_many_traces(data, 30, model=GLM)  # 30 more glm traces, 1-2 per hour
    server = make_langfuse_server(V4, data=data, cursor_mode=cursor_mode)
    reader = reader_for(server, page_limit_v4=2)
    rows, _ = read_rows(reader, DAY, model_slug(GLM))
    assert rows == comparable(expected_rows(data, DAY, model_slug(GLM)))
    assert len({row["trace_id"] for row in rows}) == 43  # 30 bulk + 13 glm traces of the default day
    pages = server.calls("/api/public/v2/observations")
    discovery = [r for r in pages if r.query.get("fields") == "core,model,metadata"]
    assert len(discovery) >= 3 and sum("cursor" in r.query for r in discovery) >= 2  # ≥ 3 pages of one listing
    if cursor_mode == "empty_pages":
        assert any("cursor" in r.query for r in pages if r.query.get("type") == "RETRIEVER")


def test_v3_pagination_across_pages(make_langfuse_server):
    data = build_default_fixture()
    add_many_traces(data, 30, model=GLM)
    server = make_langfuse_server(V3, data=data)
    reader = reader_for(server, page_limit_v3=1)
    rows, _ = read_rows(reader, DAY, model_slug(GLM))
    assert rows == comparable(expected_rows(data, DAY, model_slug(GLM)))
    generation_pages = [r for r in server.calls("/api/public/observations") if r.query.get("type") == "GENERATION"]
    assert max(int(r.query["page"]) for r in generation_pages) >= 3
    assert max(int(r.query["page"]) for r in server.calls("/api/public/traces")) >= 3
    assert all(int(r.query["limit"]) <= 100 for r in server.calls("/api/public/traces"))


@VERSIONS
def test_unreachable_server_fails_naming_it(version):
    from materializer_assets.lib.langfuse import LangfuseConfig
    from materializer_assets.lib.sources.langfuse import LangfuseTraceReader

    config = LangfuseConfig(
        host="http://127.0.0.1:9",
        public_key="pk",
        secret_key="sk-secret",
        max_attempts=2,
        backoff_initial_seconds=0.01,
        backoff_max_seconds=0.02,
        timeout_seconds=1,
    )
    reader = LangfuseTraceReader(config)
    with pytest.raises(SourceUnavailableError) as failure:
        reader.read_cell(DAY, "glm-5-32b")
    message = str(failure.value)
    assert "http://127.0.0.1:9" in message and "/api/public/health" in message and "sk-secret" not in message


def test_wrong_keys_fail_at_once_without_the_secret(make_langfuse_server):
    server = make_langfuse_server(V4)
    reader = reader_for(server, secret_key="sk-wrong-secret")
    with pytest.raises(LangfuseUnavailableError) as failure:
        list(reader.read_cell(DAY, "glm-5-32b").batches)
    assert "HTTP 401" in str(failure.value) and "sk-wrong-secret" not in str(failure.value)
    assert len(server.calls("/api/public/v2/observations")) == 1  # no retry can fix credentials


def test_the_version_comes_from_health_unless_configured(make_langfuse_server):
    v3 = make_langfuse_server("v3.95.2")
    assert reader_for(v3).api.version == "v3"
    v4 = make_langfuse_server(V4)
    assert reader_for(v4).api.version == "v4" and reader_for(v4).api.server_version == V4
    # Configured: no health call at all.
    v4.reset_log()
    assert reader_for(v4, api_version="v4").api.version == "v4"
    assert v4.calls("/api/public/health") == []
