from datetime import datetime, timezone

import pytest

from materializer_assets.lib.normalize import (
    REJECT_BAD_MESSAGES,
    REJECT_BAD_TIMESTAMP,
    REJECT_MISSING_ID,
    REJECT_MISSING_TIMESTAMP,
    ReadOptions,
    RecordRejected,
    RejectionLog,
    assistant_output_message,
    SourceRecord,
    build_examples,
    content_hash,
    expand_turns,
    parse_timestamp,
    rows_to_batch,
)
from materializer_assets.lib.schema import NORMALIZED_SCHEMA

BANKING = [
    {"role": "system", "content": "You are a banking assistant."},
    {"role": "user", "content": "What is my balance?"},
    {"role": "assistant", "content": "Your balance is $1,234."},
    {"role": "user", "content": "Transfer $100 to savings."},
    {"role": "assistant", "content": "Done, $100 transferred."},
]


def _examples(messages=BANKING, single_turn=True, **kwargs):
    defaults = dict(
        trace_id="t1",
        observation_id="obs-1",
        timestamp="2026-04-18T23:59:59.999999Z",
        model="glm-5-32b",
        messages=messages,
        source="test",
        extracted_at=datetime(2026, 4, 19, tzinfo=timezone.utc),
        options=ReadOptions(convert_to_single_turn=single_turn),
    )
    defaults.update(kwargs)
    return build_examples(SourceRecord(**defaults))


def test_single_turn_conversion_follows_the_seed_example():
    rows = _examples()
    assert [len(r["messages"]) for r in rows] == [3, 5]
    assert [r["response"] for r in rows] == ["Your balance is $1,234.", "Done, $100 transferred."]
    assert [r["prompt"] for r in rows] == ["What is my balance?", "Transfer $100 to savings."]
    assert [r["observation_id"] for r in rows] == ["obs-1#turn-0", "obs-1#turn-1"]
    assert rows[0]["content_hash"] != rows[1]["content_hash"]


def test_whole_conversation_mode_keeps_one_example():
    (row,) = _examples(single_turn=False)
    assert len(row["messages"]) == 5
    assert row["response"] == "Done, $100 transferred."
    assert row["observation_id"] == "obs-1"


def test_generation_output_is_appended_as_the_reply():
    (row,) = _examples(messages=BANKING[:2], output={"role": "assistant", "content": "It is $5."})
    assert row["response"] == "It is $5."
    assert row["messages"][-1]["role"] == "assistant"


def test_tool_call_turns_use_the_call_as_response():
    calls = [{"toolCallId": "c1", "toolName": "get_weather", "input": {"city": "London"}}]
    message = assistant_output_message(calls)
    assert message["content"] is None and "get_weather" in message["tool_calls"]
    (row,) = _examples(messages=[{"role": "user", "content": "Weather?"}], output=calls)
    assert "get_weather" in row["response"]


def test_content_parts_and_unknown_parts():
    (row,) = _examples(
        messages=[{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}]}],
        output="ok",
    )
    assert row["prompt"] == "look\n[image_url]"


def test_timestamps_are_utc_and_day_is_utc_day():
    assert parse_timestamp("2026-04-18T23:30:00-02:00").isoformat() == "2026-04-19T01:30:00+00:00"
    assert parse_timestamp(1776470400).date().isoformat() == "2026-04-18"
    assert parse_timestamp(1776470400000).date().isoformat() == "2026-04-18"  # milliseconds
    assert _examples()[0]["date"] == "2026-04-18"


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"trace_id": None}, REJECT_MISSING_ID),
        ({"trace_id": "  "}, REJECT_MISSING_ID),
        ({"timestamp": None}, REJECT_MISSING_TIMESTAMP),
        ({"timestamp": "yesterday"}, REJECT_BAD_TIMESTAMP),
        ({"timestamp": [1]}, REJECT_BAD_TIMESTAMP),
        ({"messages": [{"content": "no role"}]}, REJECT_BAD_MESSAGES),
        ({"messages": 42}, REJECT_BAD_MESSAGES),
    ],
)
def test_rejections_are_named(kwargs, reason):
    with pytest.raises(RecordRejected) as error:
        _examples(**kwargs)
    assert error.value.reason == reason


def test_conversation_without_assistant_has_no_response():
    (row,) = _examples(messages=[{"role": "user", "content": "hello?"}])
    assert row["response"] is None


def test_content_hash_is_canonical():
    a = [{"role": "user", "content": "x", "tool_calls": None}]
    b = [{"role": "user", "content": "x"}]
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash([{"role": "assistant", "content": "x"}])
    assert len(content_hash(a)) == 32


def test_rows_fit_the_schema_and_keep_feedback_and_contexts():
    rows = _examples(metadata={"feedback_score": 4.5, "contexts": ["doc a", {"page_content": "doc b"}]}, tags="consent:training")
    batch = rows_to_batch(rows)
    assert batch.schema == NORMALIZED_SCHEMA
    assert batch.column("feedback_score").to_pylist() == [4.5, 4.5]
    assert batch.column("contexts").to_pylist()[0] == ["doc a", "doc b"]
    assert batch.column("consent").to_pylist() == [True, True]


def test_expand_turns_without_assistant():
    assert expand_turns([{"role": "user", "content": "q"}], True) == [(0, [{"role": "user", "content": "q"}])]


def test_rejection_examples_name_reason_and_location_but_never_quote_the_record():
    # Examples go into asset metadata (Dagster's event log, which cannot be erased).
    log = RejectionLog(max_examples=2)
    log.reject(REJECT_BAD_MESSAGES, "chat.jsonl:3", "ValueError: bad content 'my email is alice@example.com'")
    log.reject(REJECT_BAD_TIMESTAMP, "chat.jsonl:4", "user u-0012 said hi", attributed=False)
    log.reject(REJECT_BAD_TIMESTAMP, "chat.jsonl:5", "x")
    assert log.examples == [
        {"reason": REJECT_BAD_MESSAGES, "location": "chat.jsonl:3"},
        {"reason": REJECT_BAD_TIMESTAMP, "location": "chat.jsonl:4"},
    ]
    assert log.counts == {REJECT_BAD_MESSAGES: 1, REJECT_BAD_TIMESTAMP: 1} and log.unattributed == {REJECT_BAD_TIMESTAMP: 1}
    assert "alice@example.com" not in repr(log.examples) and "u-0012" not in repr(log.examples)


def _single_turn_rows(count: int) -> list[dict]:
    rows = []
    for index in range(count):
        (row,) = build_examples(SourceRecord(
            trace_id=f"t{index}",
            observation_id=None,
            timestamp="2026-04-18T12:00:00Z",
            model="glm-5-32b",
            messages=[{"role": "user", "content": f"question {index}"}],
            output=None if index == 2 else {"role": "assistant", "content": f"answer {index}"},
            source="test",
            extracted_at=datetime(2026, 4, 19, tzinfo=timezone.utc),
            options=ReadOptions(),
        )) or [None]
        rows.append(row)
    return [row for row in rows if row is not None]


def test_messages_derivable_from_prompt_and_response_are_compacted_and_restored():
    import pyarrow as pa

    from materializer_assets.lib.normalize import compact_messages, messages_array, restore_messages

    rows = _single_turn_rows(4)
    batch = pa.RecordBatch.from_pylist(rows, schema=NORMALIZED_SCHEMA)
    assert batch.column("messages").equals(messages_array(batch.column("prompt"), batch.column("response")))
    compacted = compact_messages(batch)
    compacted.validate(full=True)
    assert compacted.column("messages").null_count == batch.num_rows  # nothing of that text is kept
    assert restore_messages(compacted).to_pylist() == batch.to_pylist()

    # A row whose messages say more (a system prompt) keeps them; the others are compacted.
    mixed = list(rows)
    mixed[1] = {**rows[1], "messages": [{"role": "system", "content": "Be brief."}] + rows[1]["messages"]}
    batch = pa.RecordBatch.from_pylist(mixed, schema=NORMALIZED_SCHEMA)
    compacted = compact_messages(batch)
    compacted.validate(full=True)
    assert compacted.column("messages").is_null().to_pylist() == [True, False] + [True] * (batch.num_rows - 2)
    assert compacted.column("messages")[1].as_py() == batch.column("messages")[1].as_py()
    assert restore_messages(compacted).to_pylist() == batch.to_pylist()

    # Same shape, other text (an edited assistant turn): only that row keeps its messages.
    edited = list(rows)
    edited[0] = {**rows[0], "messages": [rows[0]["messages"][0], {**rows[0]["messages"][1], "content": "other"}]}
    batch = pa.RecordBatch.from_pylist(edited, schema=NORMALIZED_SCHEMA)
    compacted = compact_messages(batch)
    compacted.validate(full=True)
    assert compacted.column("messages").is_null().to_pylist() == [False] + [True] * (batch.num_rows - 1)
    assert restore_messages(compacted).to_pylist() == batch.to_pylist()
    assert restore_messages(compacted.slice(1, 2)).to_pylist() == batch.slice(1, 2).to_pylist()


def test_a_batch_whose_reader_derived_its_messages_is_compacted_without_comparing():
    import pyarrow as pa

    from materializer_assets.lib.normalize import MESSAGES_DERIVED, compact_messages, restore_messages

    batch = pa.RecordBatch.from_pylist(_single_turn_rows(3), schema=NORMALIZED_SCHEMA)
    marked = pa.RecordBatch.from_arrays(batch.columns, schema=NORMALIZED_SCHEMA.with_metadata(MESSAGES_DERIVED))
    compacted = compact_messages(marked)
    assert compacted.column("messages").null_count == 3
    assert not (compacted.schema.metadata or {})  # the mark does not reach the files
    assert restore_messages(compacted).to_pylist() == batch.to_pylist()
