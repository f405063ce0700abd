"""FileTraceReader on real files: local folders and moto's S3 server."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib.normalize import ReadOptions
from materializer_assets.lib.schema import NORMALIZED_SCHEMA
from materializer_assets.lib.slugs import model_slug
from materializer_assets.lib.sources.base import SourceUnavailableError
from materializer_assets.lib.sources.files import BATCH_ROWS, FileTraceReader
from materializer_assets.lib.storage import S3Options

DAY = date(2026, 4, 18)
NEXT_DAY = date(2026, 4, 19)
GPT = "gpt-4o-mini-2024-07-18"
QWEN = "Qwen/Qwen3-Coder-4B-Instruct"


# ---------------------------------------------------------------- helpers


def write_lines(path: Path, lines: list[Any]) -> Path:
    """JSONL: dicts are dumped, bytes/str written as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = []
    for line in lines:
        if isinstance(line, bytes):
            chunks.append(line)
        elif isinstance(line, str):
            chunks.append(line.encode("utf-8"))
        else:
            chunks.append(json.dumps(line, ensure_ascii=False).encode("utf-8"))
    path.write_bytes(b"\n".join(chunks) + b"\n")
    return path


def chat(content: str = "What is my balance?", reply: str = "$1,234.", **fields: Any) -> dict[str, Any]:
    record = {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": reply}],
        "timestamp": "2026-04-18T10:00:00Z",
        "model": GPT,
    }
    record.update(fields)
    return record


def read(reader: FileTraceReader, day: date = DAY, model: str | None = GPT):
    """All rows of one cell, and its rejection log (filled once the rows are consumed)."""
    cell = reader.read_cell(day, model_slug(model))
    batches = list(cell)
    for batch in batches:
        assert batch.schema == NORMALIZED_SCHEMA
    rows = [row for batch in batches for row in batch.to_pylist()]
    return rows, cell.rejections


def by_observation(rows: list[dict]) -> dict[str | None, dict]:
    return {row["observation_id"]: row for row in rows}


# ---------------------------------------------------------------- plain JSONL: OpenAI chat


def test_chat_line_becomes_a_normalized_row(tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "get_balance", "parameters": {"type": "object"}}}]
    write_lines(
        tmp_path / "traces.jsonl",
        [
            chat(
                id="chat-1",
                user_id="u-1",
                session_id="s-1",
                environment="production",
                tags=["consent:training", "web"],
                metadata={"tenant": "acme"},
                contexts=["doc one", "doc two"],
                feedback_score=1,
                latency_ms=812,
                usage={"prompt_tokens": 20, "completion_tokens": 5},
                cost_usd=0.0012,
                tools=tools,
            )
        ],
    )
    reader = FileTraceReader(str(tmp_path))
    assert reader.kind == "files"
    assert reader.models_on(DAY) == [GPT]
    rows, rejections = read(reader)
    assert rejections.total == 0
    [row] = rows
    assert row["trace_id"] == "chat-1"
    assert row["observation_id"] is None
    assert row["date"] == "2026-04-18" and row["model"] == GPT and row["model_slug"] == model_slug(GPT)
    assert row["user_id"] == "u-1" and row["session_id"] == "s-1" and row["environment"] == "production"
    assert row["prompt"] == "What is my balance?" and row["response"] == "$1,234."
    assert row["contexts"] == ["doc one", "doc two"]
    assert row["consent"] is True and row["consent_source"] == "tag"
    assert row["feedback_score"] == 1.0 and row["latency_ms"] == 812
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (20, 5, 25)
    assert row["cost_usd"] == pytest.approx(0.0012)
    assert json.loads(row["tools"]) == tools
    assert json.loads(row["metadata"]) == {"tenant": "acme"}
    assert row["source"] == "files"


def test_extension_fields_may_sit_inside_metadata(tmp_path: Path) -> None:
    record = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "metadata": {
            "id": "chat-meta",
            "timestamp": "2026-04-18T23:59:59.999Z",
            "model": QWEN,
            "user_id": "u-9",
            "consent": "yes",
            "contexts": ["ctx"],
            "feedback_score": 0.5,
        },
    }
    write_lines(tmp_path / "a.jsonl", [record])
    rows, _ = read(FileTraceReader(str(tmp_path)), model=QWEN)
    [row] = rows
    assert (row["trace_id"], row["user_id"], row["consent"], row["consent_source"]) == ("chat-meta", "u-9", True, "column")
    assert row["contexts"] == ["ctx"] and row["feedback_score"] == 0.5


def test_chat_without_id_gets_a_stable_content_hash(tmp_path: Path) -> None:
    record = chat()
    write_lines(tmp_path / "a.jsonl", [record])
    # Same content, other key order and spacing, in another file.
    reordered = dict(reversed(list(record.items())))
    write_lines(tmp_path / "b.jsonl", [json.dumps(reordered, separators=(", ", " : "))])
    rows, _ = read(FileTraceReader(str(tmp_path)))
    canonical = json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert [row["trace_id"] for row in rows] == [expected, expected]


MULTI_TURN = {
    "id": "bank-1",
    "timestamp": "2026-04-18T09:00:00Z",
    "model": GPT,
    "messages": [
        {"role": "system", "content": "You are a banking assistant."},
        {"role": "user", "content": "What is my balance?"},
        {"role": "assistant", "content": "Your balance is $1,234."},
        {"role": "user", "content": "Transfer $100 to savings."},
        {"role": "assistant", "content": "Done, $100 transferred."},
        {"role": "user", "content": "Thanks!"},
        {"role": "assistant", "content": "You're welcome."},
    ],
}


def test_multi_turn_chat_in_single_turn_mode_gives_one_example_per_assistant_turn(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [MULTI_TURN])
    rows, _ = read(FileTraceReader(str(tmp_path), ReadOptions(convert_to_single_turn=True)))
    assert [row["observation_id"] for row in rows] == ["#turn-0", "#turn-1", "#turn-2"]
    assert [row["response"] for row in rows] == ["Your balance is $1,234.", "Done, $100 transferred.", "You're welcome."]
    assert [len(row["messages"]) for row in rows] == [3, 5, 7]
    assert {row["trace_id"] for row in rows} == {"bank-1"}
    assert len({row["content_hash"] for row in rows}) == 3


def test_multi_turn_chat_kept_whole_when_not_converting(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [dict(MULTI_TURN, observation_id="gen-1")])
    rows, _ = read(FileTraceReader(str(tmp_path), ReadOptions(convert_to_single_turn=False)))
    [row] = rows
    assert row["observation_id"] == "gen-1"
    assert len(row["messages"]) == 7 and row["response"] == "You're welcome." and row["prompt"] == "Thanks!"


def test_tool_calls_in_chat(tmp_path: Path) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "London"}'}}
    record = {
        "id": "tools-1",
        "timestamp": "2026-04-18T12:00:00Z",
        "model": GPT,
        "messages": [
            {"role": "user", "content": "What's the weather in London?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 15}'},
            {"role": "assistant", "content": "15 °C."},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    }
    write_lines(tmp_path / "a.jsonl", [record])
    rows, _ = read(FileTraceReader(str(tmp_path)))
    first, second = rows
    assert json.loads(first["response"]) == [call]  # a turn that only calls a tool: the calls are the target
    assert second["response"] == "15 °C."
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert second["messages"][2]["name"] == "call_1"
    assert json.loads(second["tools"]) == record["tools"]


# ---------------------------------------------------------------- plain JSONL: Langfuse observation format


def test_langfuse_observation_line_with_tool_call_output(tmp_path: Path) -> None:
    tool = {"type": "function", "function": {"name": "get_order_status"}}
    record = {
        "id": "obs-1",
        "input": [{"role": "user", "content": "Where is order A-1?"}],
        "output": [{"toolCallId": "call_9", "toolName": "get_order_status", "input": {"order_id": "A-1"}}],
        "metadata": {"tools": [json.dumps(tool)], "timestamp": "2026-04-18T08:00:00Z", "model": GPT, "user_id": "u-2",
                     "consent": True},
    }
    write_lines(tmp_path / "observations.jsonl", [record])
    rows, rejections = read(FileTraceReader(str(tmp_path)))
    assert rejections.total == 0
    [row] = rows
    assert row["trace_id"] == "obs-1" and row["observation_id"] == "obs-1" and row["user_id"] == "u-2"
    [call] = json.loads(row["response"])
    assert call["id"] == "call_9" and call["function"]["name"] == "get_order_status"
    assert json.loads(call["function"]["arguments"]) == {"order_id": "A-1"}
    assert json.loads(row["tools"]) == [tool]  # JSON-encoded definitions are decoded
    assert row["consent"] is True


def test_observation_line_uses_trace_id_and_skips_non_generations(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "observations.jsonl",
        [
            {"id": "obs-2", "trace_id": "trace-2", "type": "GENERATION", "input": "Hi", "output": {"role": "assistant", "content": "Hello"},
             "startTime": "2026-04-18T08:00:00Z", "endTime": "2026-04-18T08:00:01.250Z", "providedModelName": GPT},
            {"id": "span-1", "trace_id": "trace-2", "type": "SPAN", "input": "x", "output": "y", "timestamp": "2026-04-18T08:00:00Z"},
        ],
    )
    rows, rejections = read(FileTraceReader(str(tmp_path)))
    [row] = rows
    assert (row["trace_id"], row["observation_id"], row["response"]) == ("trace-2", "obs-2", "Hello")
    assert row["latency_ms"] == 1250
    assert rejections.total == 0


# ---------------------------------------------------------------- consent


@pytest.mark.parametrize(
    ("fields", "consent", "source"),
    [
        ({"tags": ["consent:training"]}, True, "tag"),
        ({"tags": ["consent:refused"]}, False, "tag"),
        ({"tags": ["no-consent", "consent:training"]}, False, "tag"),
        ({"metadata": {"consent_training": "true"}}, True, "metadata"),
        ({"metadata": {"consent_training": "false"}}, False, "metadata"),
        ({"metadata": {"consent_training": "no"}}, False, "metadata"),
        ({"metadata": {"consent_training": "0"}}, False, "metadata"),
        ({"metadata": {"consent_training": ""}}, None, "none"),
        ({"consent": "false"}, False, "column"),
        ({"consent": "no"}, False, "column"),
        ({"consent": "0"}, False, "column"),
        ({"consent": ""}, None, "none"),
        ({"consent": True}, True, "column"),
        ({"consent": "maybe", "tags": ["consent:training"]}, None, "unreadable"),  # a doubt blocks grants
        ({"consent": True, "metadata": {"consent_training": "no"}}, False, "metadata"),  # any refusal wins
        ({"consent": "yes", "tags": ["consent:refused"]}, False, "tag"),
        ({}, None, "none"),
    ],
)
def test_consent_from_tag_metadata_or_field(tmp_path: Path, fields: dict, consent: bool | None, source: str) -> None:
    write_lines(tmp_path / "a.jsonl", [chat(**fields)])
    [row], _ = read(FileTraceReader(str(tmp_path)))
    assert (row["consent"], row["consent_source"]) == (consent, source)


# ---------------------------------------------------------------- bad input


def test_bad_lines_are_counted_by_reason_and_never_stop_the_others(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [
            chat(id="good-1"),  # 1
            '{"messages": [{"role": "user", "content": "unterminated',  # 2 malformed, cell unknown
            '["an", "array"]',  # 3 not an object
            b'{"id": "latin", "messages": [{"role": "user", "content": "Caf\xe9"}], "timestamp": "2026-04-18T01:00:00Z", '
            b'"model": "gpt-4o-mini-2024-07-18"}',  # 4 invalid UTF-8, cell readable: attributed
            b'{"id": "latin2", "messages": "\xff\xfe"',  # 5 invalid UTF-8, unreadable: unattributed
            chat(id="no-ts", timestamp=None),  # 6 missing timestamp
            chat(id="bad-ts", timestamp="yesterday"),  # 7 bad timestamp
            {"input": [{"role": "user", "content": "x"}], "output": "y", "timestamp": "2026-04-18T02:00:00Z", "model": GPT},  # 8 no id
            chat(id="bad-msg", messages=[{"content": "no role"}]),  # 9 bad messages
            {"id": "nothing", "timestamp": "2026-04-18T03:00:00Z", "model": GPT},  # 10 neither messages nor input
            "   ",  # blank lines are skipped
            '{"id": "surrogate", "messages": [{"role": "user", "content": "\\ud800"}], "timestamp": "2026-04-18T04:00:00Z", '
            '"model": "gpt-4o-mini-2024-07-18"}',  # 12 unpaired surrogate escape: invalid UTF-8
            chat(id="good-2"),  # 13
        ],
    )
    rows, rejections = read(FileTraceReader(str(tmp_path)))
    assert [row["trace_id"] for row in rows] == ["good-1", "good-2"]
    assert dict(rejections.counts) == {"invalid_utf8": 2, "missing_id": 1, "bad_messages": 1, "no_messages": 1}
    assert dict(rejections.unattributed) == {
        "malformed_json": 1,
        "not_an_object": 1,
        "invalid_utf8": 1,
        "missing_timestamp": 1,
        "bad_timestamp": 1,
    }
    locations = {example["location"] for example in rejections.examples}
    assert f"{path}:2" in locations and f"{path}:4" in locations and f"{path}:12" in locations


def test_unattributed_rejections_reach_every_cell_attributed_only_their_own(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "a.jsonl",
        [
            chat(id="gpt-ok"),
            chat(id="qwen-ok", model=QWEN),
            "{broken",
            chat(id="qwen-bad", model=QWEN, messages=[42]),
            chat(id="tomorrow-bad", timestamp="2026-04-19T10:00:00Z", messages=[42]),
        ],
    )
    reader = FileTraceReader(str(tmp_path))
    _, gpt_log = read(reader, model=GPT)
    _, qwen_log = read(reader, model=QWEN)
    _, next_day_log = read(reader, day=NEXT_DAY)
    for log in (gpt_log, qwen_log, next_day_log):
        assert dict(log.unattributed) == {"malformed_json": 1}
    assert dict(gpt_log.counts) == {}
    assert dict(qwen_log.counts) == {"bad_messages": 1}
    assert dict(next_day_log.counts) == {"bad_messages": 1}


def test_model_names_land_in_their_own_cells(tmp_path: Path) -> None:
    names = ["Qwen/Qwen3-Coder-4B-Instruct", "acme|router v2", "..", "my model", "modèle-ü", "glm-5-32b", ""]
    write_lines(tmp_path / "a.jsonl", [chat(id=f"t{i}", model=name) for i, name in enumerate(names)])
    reader = FileTraceReader(str(tmp_path))
    assert reader.models_on(DAY) == sorted(name for name in names if name) + [None]
    for index, name in enumerate(names):
        rows, _ = read(reader, model=name or None)
        assert [row["trace_id"] for row in rows] == [f"t{index}"]
        assert rows[0]["model"] == (name or None)
        assert rows[0]["model_slug"] == model_slug(name or None)
    assert model_slug(None) == "unknown"


def test_five_megabyte_response(tmp_path: Path) -> None:
    reply = "x" * (5 * 1024 * 1024)
    write_lines(tmp_path / "big.jsonl", [chat(id="big", reply=reply), chat(id="small")])
    rows, _ = read(FileTraceReader(str(tmp_path)))
    assert [len(row["response"]) for row in rows] == [len(reply), len("$1,234.")]


def test_batches_are_bounded_and_duplicates_kept(tmp_path: Path) -> None:
    count = BATCH_ROWS + 10
    write_lines(tmp_path / "a.jsonl", [chat(id=f"t{i}") for i in range(count)])
    write_lines(tmp_path / "resend.jsonl", [chat(id="t0")])
    cell = FileTraceReader(str(tmp_path)).read_cell(DAY, model_slug(GPT))
    sizes = [batch.num_rows for batch in cell]
    assert max(sizes) <= BATCH_ROWS and sum(sizes) == count + 1  # the duplicate id stays: dedup is later


def test_gzipped_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(json.dumps(chat(id="gz")).encode() + b"\n"))
    rows, _ = read(FileTraceReader(str(tmp_path)))
    assert [row["trace_id"] for row in rows] == ["gz"]


# ---------------------------------------------------------------- days, empty and missing sources


def test_a_day_without_data_is_an_empty_cell(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [chat()])
    reader = FileTraceReader(str(tmp_path))
    assert reader.models_on(NEXT_DAY) == []
    rows, rejections = read(reader, day=NEXT_DAY)
    assert rows == [] and rejections.total == 0


def test_an_empty_folder_is_a_source_without_data(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not traces")  # other files are ignored
    reader = FileTraceReader(str(tmp_path))
    assert reader.models_on(DAY) == []
    rows, rejections = read(reader)
    assert rows == [] and rejections.total == 0


def test_a_missing_folder_is_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    reader = FileTraceReader(str(missing))
    with pytest.raises(SourceUnavailableError, match=str(missing)):
        reader.models_on(DAY)
    with pytest.raises(SourceUnavailableError, match=str(missing)):
        reader.read_cell(DAY, "glm-5-32b")


def test_a_single_file_can_be_the_source(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "one.jsonl", [chat(id="one")])
    write_lines(tmp_path / "other.jsonl", [chat(id="other")])
    rows, _ = read(FileTraceReader(str(path)))
    assert [row["trace_id"] for row in rows] == ["one"]


def test_files_seen_once_are_skipped_for_other_days_unless_they_have_unattributed_rejections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_lines(tmp_path / "clean.jsonl", [chat(id="clean")])
    write_lines(tmp_path / "dirty.jsonl", [chat(id="dirty"), "{oops"])
    reader = FileTraceReader(str(tmp_path))
    opened: list[str] = []
    real_records = FileTraceReader._records

    def counting_records(self, file, *args, **kwargs):
        opened.append(Path(file.path).name)
        return real_records(self, file, *args, **kwargs)

    monkeypatch.setattr(FileTraceReader, "_records", counting_records)
    assert len(read(reader)[0]) == 2
    assert opened == ["clean.jsonl", "dirty.jsonl"]
    opened.clear()
    rows, rejections = read(reader, day=NEXT_DAY)
    assert rows == [] and opened == ["dirty.jsonl"] and dict(rejections.unattributed) == {"malformed_json": 1}
    # A changed file (size, mtime) is read again.
    write_lines(tmp_path / "clean.jsonl", [chat(id="clean", timestamp="2026-04-19T08:00:00Z")])
    opened.clear()
    rows, _ = read(reader, day=NEXT_DAY)
    assert [row["trace_id"] for row in rows] == ["clean"] and sorted(opened) == ["clean.jsonl", "dirty.jsonl"]


# ---------------------------------------------------------------- Langfuse blob-storage export


PROJECT = "exports/cm-proj-1"


def export_fixture(root: Path) -> None:
    """Two daily windows of a legacy export (traces, observations, scores), snake_case as exported."""
    day1, day2 = "2026-04-18T00-00-00", "2026-04-19T00-00-00"
    write_lines(
        root / PROJECT / "traces" / f"{day1}.jsonl",
        [
            # consent as a tag on the trace; metadata shared with its generation
            {"id": "t-rag", "timestamp": "2026-04-17 23:59:59.900000", "name": "rag", "user_id": "u-1", "session_id": "s-1",
             "environment": "production", "tags": ["production", "consent:training"], "metadata": {"tenant": "acme", "tier": "free"},
             "input": "{\"question\": \"How do I rotate a key?\"}", "output": "{\"answer\": \"Settings.\"}"},
            # a trace without generations: its own row becomes the example (model from metadata)
            {"id": "t-legacy", "timestamp": "2026-04-17 10:00:00.000000", "user_id": "u-3", "metadata": {"model": "glm-5-32b"},
             "input": "[{\"role\": \"user\", \"content\": \"Hours?\"}]", "output": "9 to 5."},
        ],
    )
    write_lines(
        root / PROJECT / "traces" / f"{day2}.jsonl",
        [
            {"id": "t-tool", "timestamp": "2026-04-18 15:00:00.000000", "user_id": "u-2", "session_id": "s-2",
             "environment": "staging", "tags": [], "metadata": {}, "input": None, "output": None},
            "{\"id\": \"t-broken\", ",  # a damaged trace row: unattributed
        ],
    )
    write_lines(
        root / PROJECT / "observations" / f"{day1}.jsonl",
        [
            {"id": "span-1", "trace_id": "t-rag", "type": "SPAN", "start_time": "2026-04-17 23:59:59.950000", "input": None, "output": None},
            {"id": "ret-2", "trace_id": "t-rag", "type": "RETRIEVER", "start_time": "2026-04-17 23:59:59.990000",
             "output": "[{\"page_content\": \"Doc B\"}]"},
        ],
    )
    write_lines(
        root / PROJECT / "observations" / f"{day2}.jsonl",
        [
            {"id": "ret-1", "trace_id": "t-rag", "type": "RETRIEVER", "start_time": "2026-04-17 23:59:59.980000",
             "output": {"documents": [{"page_content": "Doc A"}]}},
            # the generation starts after midnight: its example belongs to 2026-04-18
            {"id": "gen-rag", "trace_id": "t-rag", "type": "GENERATION", "start_time": "2026-04-18 00:00:00.100000",
             "end_time": "2026-04-18 00:00:01.600000", "provided_model_name": "glm-5-32b",
             "input": "[{\"role\": \"user\", \"content\": \"How do I rotate a key?\"}]",
             "output": "{\"role\": \"assistant\", \"content\": \"Settings > API keys.\"}",
             "usage_details": {"input": 100, "output": 20, "total": 120}, "cost_details": {"input": 0.001, "output": 0.002, "total": 0.003},
             "metadata": {"tier": "pro", "prompt": "v3"}},
            {"id": "gen-call", "trace_id": "t-tool", "type": "GENERATION", "start_time": "2026-04-18 15:00:00.200000",
             "end_time": "2026-04-18 15:00:00.900000", "provided_model_name": GPT,
             "input": "[{\"role\": \"user\", \"content\": \"Weather in Paris?\"}]",
             "output": "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"c1\", \"type\": \"function\", "
                       "\"function\": {\"name\": \"get_weather\", \"arguments\": \"{}\"}}]}",
             "metadata": {"consent_training": "no"}},
            {"id": "gen-bad", "trace_id": "t-tool", "type": "GENERATION", "start_time": "2026-04-18 15:00:02.000000",
             "provided_model_name": GPT, "input": "[{\"content\": \"no role\"}]", "output": "x"},
            {"id": "gen-no-time", "trace_id": "t-tool", "type": "GENERATION", "provided_model_name": GPT, "input": "[]", "output": "x"},
        ],
    )
    write_lines(
        root / PROJECT / "scores" / f"{day2}.jsonl",
        [
            {"id": "s1", "trace_id": "t-rag", "name": "user-feedback", "value": 1, "source": "API", "data_type": "NUMERIC"},
            {"id": "s2", "trace_id": "t-rag", "name": "user_feedback", "value": 0, "source": "API", "data_type": "NUMERIC"},
            {"id": "s3", "trace_id": "t-rag", "name": "user_feedback", "value": 0, "source": "EVAL", "data_type": "NUMERIC"},
            {"id": "s4", "trace_id": "t-rag", "name": "faithfulness", "value": 0.2, "source": "EVAL", "data_type": "NUMERIC"},
            {"id": "s5", "trace_id": "t-legacy", "name": "feedback", "value": "true", "source": "API", "data_type": "BOOLEAN"},
            {"id": "s6", "trace_id": "t-tool", "name": "user_feedback", "value": 2, "source": "API", "data_type": "CATEGORICAL"},
        ],
    )


def test_blob_export_joins_traces_observations_and_scores_across_files(tmp_path: Path) -> None:
    export_fixture(tmp_path)
    reader = FileTraceReader(str(tmp_path))
    assert reader.models_on(DAY) == ["glm-5-32b", GPT]
    assert reader.models_on(date(2026, 4, 17)) == ["glm-5-32b"]

    rows, rejections = read(reader, model="glm-5-32b")
    [rag] = rows
    assert (rag["trace_id"], rag["observation_id"], rag["date"]) == ("t-rag", "gen-rag", "2026-04-18")
    assert (rag["user_id"], rag["session_id"], rag["environment"]) == ("u-1", "s-1", "production")
    assert rag["consent"] is True and rag["consent_source"] == "tag"
    assert rag["contexts"] == ["Doc A", "Doc B"]  # retriever outputs in start-time order, from two files
    assert rag["feedback_score"] == 0.5  # mean of the user's two votes; the EVAL scores do not count
    assert json.loads(rag["metadata"]) == {"tenant": "acme", "tier": "pro", "prompt": "v3"}  # observation keys win
    assert rag["latency_ms"] == 1500 and rag["total_tokens"] == 120 and rag["cost_usd"] == pytest.approx(0.003)
    assert rag["response"] == "Settings > API keys." and rag["prompt"] == "How do I rotate a key?"
    assert dict(rejections.unattributed) == {"malformed_json": 1, "missing_timestamp": 1}
    assert dict(rejections.counts) == {}

    rows, rejections = read(reader, model=GPT)
    [call] = rows
    assert call["observation_id"] == "gen-call" and call["user_id"] == "u-2" and call["environment"] == "staging"
    assert json.loads(call["response"])[0]["function"]["name"] == "get_weather"
    assert call["consent"] is False and call["consent_source"] == "metadata"  # on the generation's metadata
    assert call["feedback_score"] is None  # categorical scores are not feedback
    assert dict(rejections.counts) == {"bad_messages": 1}

    [legacy], _ = read(reader, day=date(2026, 4, 17), model="glm-5-32b")
    assert (legacy["trace_id"], legacy["observation_id"], legacy["response"]) == ("t-legacy", None, "9 to 5.")
    assert legacy["feedback_score"] == 1.0 and legacy["user_id"] == "u-3"


def test_blob_export_invalid_utf8_is_attributed_only_to_a_generation_whose_cell_is_known(tmp_path: Path) -> None:
    base = tmp_path / "proj"
    write_lines(
        base / "traces" / "2026-04-19T00-00-00.jsonl",
        [
            {"id": "t1", "timestamp": "2026-04-18 08:00:00", "user_id": "u-1"},
            b'{"id": "t2", "timestamp": "2026-04-18 08:00:00", "user_id": "J\xfcrgen"}',  # lends fields to any cell
        ],
    )
    write_lines(
        base / "observations" / "2026-04-19T00-00-00.jsonl",
        [
            {"id": "g1", "trace_id": "t1", "type": "GENERATION", "start_time": "2026-04-18 08:00:01",
             "provided_model_name": GPT, "input": "hi", "output": "hello"},
            b'{"id": "g2", "trace_id": "t2", "type": "GENERATION", "start_time": "2026-04-18 08:00:02", '
            b'"provided_model_name": "glm-5-32b", "input": "Gr\xfc\xdfe", "output": "hello"}',
        ],
    )
    reader = FileTraceReader(str(tmp_path))
    assert reader.models_on(DAY) == ["glm-5-32b", GPT]
    rows, gpt_log = read(reader)
    assert [row["observation_id"] for row in rows] == ["g1"]
    assert dict(gpt_log.counts) == {} and dict(gpt_log.unattributed) == {"invalid_utf8": 1}
    rows, glm_log = read(reader, model="glm-5-32b")
    assert rows == []
    assert dict(glm_log.counts) == {"invalid_utf8": 1} and dict(glm_log.unattributed) == {"invalid_utf8": 1}


def test_a_row_arrow_refuses_is_rejected_alone(tmp_path: Path) -> None:
    """An unpaired surrogate hidden in JSON text inside JSON only appears once the input is decoded."""
    hidden = '[{"role": "user", "content": "\\ud800"}]'  # JSON text whose content is an unpaired surrogate
    assert json.loads(hidden)[0]["content"] == "\ud800"
    write_lines(
        tmp_path / "p" / "observations_v2" / "2026-04-19T00-00-00.jsonl",
        [
            {"id": "g1", "trace_id": "t1", "type": "GENERATION", "start_time": "2026-04-18 08:00:00",
             "provided_model_name": GPT, "input": hidden, "output": "x"},
            {"id": "g2", "trace_id": "t2", "type": "GENERATION", "start_time": "2026-04-18 08:00:01",
             "provided_model_name": GPT, "input": "hi", "output": "hello"},
        ],
    )
    rows, rejections = read(FileTraceReader(str(tmp_path)))
    assert [row["observation_id"] for row in rows] == ["g2"]
    assert dict(rejections.counts) == {"invalid_utf8": 1}


def test_blob_export_in_parquet_json_and_csv(tmp_path: Path) -> None:
    """The same rows in the three other export formats; Parquet with typed timestamps and maps."""
    base = tmp_path / "exp" / "proj"
    (base / "traces").mkdir(parents=True)
    (base / "observations").mkdir()
    (base / "scores").mkdir()
    traces = [
        {"id": "t1", "timestamp": "2026-04-18 08:00:00.000000", "user_id": "u-1", "tags": "[\"consent:training\"]",
         "metadata": "{\"tenant\": \"acme\"}", "input": "", "output": ""},
    ]
    (base / "traces" / "2026-04-19T00-00-00.json").write_text(json.dumps(traces))
    observations = pa.table(
        {
            "id": ["g1", "r1"],
            "trace_id": ["t1", "t1"],
            "type": ["GENERATION", "RETRIEVER"],
            "start_time": pa.array([1776499201000000, 1776499200500000], pa.timestamp("us", tz="UTC")),
            "end_time": pa.array([1776499203000000, None], pa.timestamp("us", tz="UTC")),
            "provided_model_name": [QWEN, None],
            "input": ["[{\"role\": \"user\", \"content\": \"Sort a list\"}]", "{\"query\": \"sort\"}"],
            "output": ["\"sorted(xs)\"", "[\"Use sorted().\"]"],
            "metadata": pa.array([[("feature", "code")], []], pa.map_(pa.string(), pa.string())),
            "usage_details": pa.array([[("input", 7), ("output", 3), ("total", 10)], []], pa.map_(pa.string(), pa.int64())),
        }
    )
    pq.write_table(observations, base / "observations" / "2026-04-19T00-00-00.parquet")
    (base / "scores" / "2026-04-19T00-00-00.csv").write_text(
        "id,trace_id,name,value,source,data_type\ns1,t1,User Feedback,0.8,API,NUMERIC\ns2,t1,quality,1,ANNOTATION,NUMERIC\n"
    )
    rows, rejections = read(FileTraceReader(str(tmp_path)), model=QWEN)
    [row] = rows
    assert rejections.total == 0
    assert (row["trace_id"], row["observation_id"], row["date"]) == ("t1", "g1", "2026-04-18")
    assert row["response"] == "sorted(xs)"  # a JSON string literal is decoded
    assert row["contexts"] == ["Use sorted()."]
    assert row["consent"] is True and row["user_id"] == "u-1"
    assert json.loads(row["metadata"]) == {"tenant": "acme", "feature": "code"}
    assert row["total_tokens"] == 10 and row["latency_ms"] == 2000
    assert row["feedback_score"] == pytest.approx(0.8)


def test_camel_case_rows_as_the_public_api_names_them(tmp_path: Path) -> None:
    """observations_v2 rows carry the trace's fields themselves; latency in seconds, cost as totalCost."""
    write_lines(
        tmp_path / "p" / "observations_v2" / "2026-04-19T00-00-00.jsonl",
        [
            {"id": "g1", "traceId": "t1", "type": "GENERATION", "startTime": "2026-04-18T14:03:12.010Z", "latency": 1.78,
             "providedModelName": GPT, "input": "[{\"role\":\"user\",\"content\":\"Rotate?\"}]",
             "output": "{\"role\":\"assistant\",\"content\":\"Click Rotate.\"}", "userId": "user-123", "sessionId": "sess-42",
             "tags": ["consent:training"], "usageDetails": {"input": 812, "output": 41, "total": 853}, "totalCost": 0.0001464},
        ],
    )
    [row], _ = read(FileTraceReader(str(tmp_path)))
    assert (row["user_id"], row["session_id"], row["consent"]) == ("user-123", "sess-42", True)
    assert (row["latency_ms"], row["total_tokens"], row["cost_usd"]) == (1780, 853, pytest.approx(0.0001464))


def test_a_lone_observations_folder_of_hand_made_files_is_plain_jsonl(tmp_path: Path) -> None:
    write_lines(
        tmp_path / "observations" / "agent.jsonl",
        [{"id": "o1", "input": [{"role": "user", "content": "hi"}], "output": "hello",
          "metadata": {"timestamp": "2026-04-18T08:00:00Z", "model": GPT}}],
    )
    [row], _ = read(FileTraceReader(str(tmp_path)))
    assert row["trace_id"] == "o1" and row["response"] == "hello"


def test_a_corrupt_parquet_file_is_unreadable(tmp_path: Path) -> None:
    base = tmp_path / "proj"
    write_lines(base / "traces" / "2026-04-19T00-00-00.jsonl", [{"id": "t1", "timestamp": "2026-04-18 08:00:00"}])
    write_lines(
        base / "observations" / "2026-04-18T12-00-00.jsonl",
        [{"id": "g1", "trace_id": "t1", "type": "GENERATION", "start_time": "2026-04-18 08:00:01", "provided_model_name": GPT,
          "input": "hi", "output": "hello"}],
    )
    broken = base / "observations" / "2026-04-19T00-00-00.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    rows, rejections = read(FileTraceReader(str(tmp_path)))
    assert [row["observation_id"] for row in rows] == ["g1"]
    assert dict(rejections.unattributed) == {"unreadable_file": 1}
    assert rejections.examples[0]["location"] == str(broken)


# ---------------------------------------------------------------- S3 (moto's server)


def test_reads_chat_and_export_from_s3(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    export_fixture(tmp_path / "local")
    write_lines(tmp_path / "local" / "chat" / "a.jsonl", [chat(id="s3-chat"), "{broken"])
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for path in sorted((tmp_path / "local").rglob("*")):
        if path.is_file():
            key = "landing/" + path.relative_to(tmp_path / "local").as_posix()
            client.put_object(Bucket=s3_bucket, Key=key, Body=path.read_bytes())
    reader = FileTraceReader(f"s3://{s3_bucket}/landing", s3_options=S3Options(endpoint_url=s3_endpoint))
    assert reader.models_on(DAY) == ["glm-5-32b", GPT]
    rows, rejections = read(reader)
    assert sorted(row["observation_id"] or row["trace_id"] for row in rows) == ["gen-call", "s3-chat"]
    locations = {example["location"] for example in rejections.examples}
    assert f"s3://{s3_bucket}/landing/chat/a.jsonl:2" in locations
    [rag], _ = read(reader, model="glm-5-32b")
    assert rag["contexts"] == ["Doc A", "Doc B"] and rag["feedback_score"] == 0.5


def test_a_missing_bucket_is_unavailable(s3_endpoint: str) -> None:
    reader = FileTraceReader("s3://no-such-bucket-here/traces", s3_options=S3Options(endpoint_url=s3_endpoint))
    with pytest.raises(SourceUnavailableError, match="s3://no-such-bucket-here/traces"):
        reader.models_on(DAY)


def test_an_empty_bucket_is_a_source_without_data(s3_endpoint: str, s3_bucket: str) -> None:
    reader = FileTraceReader(f"s3://{s3_bucket}", s3_options=S3Options(endpoint_url=s3_endpoint))
    assert reader.models_on(DAY) == []
    assert read(reader)[0] == []


def test_storage_that_goes_away_while_reading_fails_the_cell(tmp_path: Path) -> None:
    write_lines(tmp_path / "a.jsonl", [chat(id="a")])
    write_lines(tmp_path / "b.jsonl", [chat(id="b")])
    cell = FileTraceReader(str(tmp_path)).read_cell(DAY, model_slug(GPT))  # lists both files
    (tmp_path / "b.jsonl").unlink()
    with pytest.raises(SourceUnavailableError, match="b.jsonl"):
        list(cell)
