"""PII redaction: every entity type in every text column, false positives,
counts, nulls, slices, big cells, entity selection, and the presidio engine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples, rows_to_batch
from materializer_assets.lib.redaction import (
    ENTITY_TYPES,
    RedactionConfig,
    Redactor,
    placeholder,
)
from materializer_assets.lib.schema import NORMALIZED_SCHEMA

EXTRACTED_AT = datetime(2026, 4, 19, tzinfo=timezone.utc)

# Fake but well-formed secrets, built so no real-looking key sits in the repo.
OPENAI_KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
OPENAI_LEGACY_KEY = "sk-" + "Ab1" * 16
ANTHROPIC_KEY = "sk-ant-api03-" + "xY9_zW8-vU7tS6rQ5pO4nM3lK2jI1hG0fE9dC8bA7"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
GITHUB_PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123"
SLACK_TOKEN = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
GOOGLE_KEY = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6q"
STRIPE_KEY = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

# (text, exact redacted text) per entity; each text holds exactly one entity.
SAMPLES: dict[str, list[tuple[str, str]]] = {
    "API_KEY": [
        ("aws key AKIAIOSFODNN7EXAMPLE here", "aws key <API_KEY> here"),
        ("session ASIAY34FZKBOKMUTVV7A.", "session <API_KEY>."),
        (f"OPENAI_KEY is {OPENAI_KEY}", "OPENAI_KEY is <API_KEY>"),
        (f"legacy {OPENAI_LEGACY_KEY} key", "legacy <API_KEY> key"),
        (f"claude: {ANTHROPIC_KEY}", "claude: <API_KEY>"),
        (f"git clone with {GITHUB_TOKEN}", "git clone with <API_KEY>"),
        (f"gh {GITHUB_PAT}", "gh <API_KEY>"),
        (f"slack {SLACK_TOKEN} bot", "slack <API_KEY> bot"),
        (f"maps {GOOGLE_KEY} ok", "maps <API_KEY> ok"),
        (f"stripe {STRIPE_KEY}", "stripe <API_KEY>"),
        (f"jwt {JWT} end", "jwt <API_KEY> end"),
        ("Authorization: Bearer abc123def456ghi789", "Authorization: Bearer <API_KEY>"),
        ("curl -H 'authorization: bearer Zx9yW8vU7tS6rQ5p'", "curl -H 'authorization: bearer <API_KEY>'"),
        ("api_key=abc123secret&page=2", "api_key=<API_KEY>&page=2"),
        ("token: tok_9f8e7d6c5b", "token: <API_KEY>"),
        ("password=hunter2", "password=<API_KEY>"),
        ('{"password": "correct horse battery staple"}', '{"password": "<API_KEY>"}'),
        ("export OPENAI_API_KEY='not-a-real-key'", "export OPENAI_API_KEY='<API_KEY>'"),
    ],
    "EMAIL": [
        ("Contact bob.smith+tag@example.co.uk today.", "Contact <EMAIL> today."),
        ("mailto:alice_99@mail-server.example.org", "mailto:<EMAIL>"),
        ('{"email": "X.Y@Example.COM"}', '{"email": "<EMAIL>"}'),
    ],
    "IP_ADDRESS": [
        ("server 10.0.0.1 is down", "server <IP_ADDRESS> is down"),
        ("from 192.168.1.254:8080", "from <IP_ADDRESS>:8080"),
        ("gw=255.255.255.0;", "gw=<IP_ADDRESS>;"),
        ("v6 2001:0db8:85a3:0000:0000:8a2e:0370:7334 full", "v6 <IP_ADDRESS> full"),
        ("v6 2001:db8::8a2e:370:7334 short", "v6 <IP_ADDRESS> short"),
        ("http://[2001:db8::1]:8080/", "http://[<IP_ADDRESS>]:8080/"),
        ("mapped ::ffff:192.0.2.1", "mapped <IP_ADDRESS>"),
    ],
    "CREDIT_CARD": [
        ("card 4111 1111 1111 1111 exp 12/27", "card <CREDIT_CARD> exp 12/27"),
        ("card 4111-1111-1111-1111.", "card <CREDIT_CARD>."),
        ("card:4111111111111111", "card:<CREDIT_CARD>"),
        ("mc 5555555555554444", "mc <CREDIT_CARD>"),
        ("amex 3782 822463 10005", "amex <CREDIT_CARD>"),
        ("visa19 4111 1111 1111 1111 003", "visa19 <CREDIT_CARD>"),
    ],
    "PHONE": [
        ("call +44 20 7946 0958 now", "call <PHONE> now"),
        ("call +1-202-555-0143.", "call <PHONE>."),
        ("office (202) 555-0143", "office <PHONE>"),
        ("cell 202-555-0143", "cell <PHONE>"),
        ("fax 202.555.0143", "fax <PHONE>"),
        ("tel:+33 1 23 45 67 89", "tel:<PHONE>"),
        ("mobile +4915112345678", "mobile <PHONE>"),
        ("US 1-800-555-0143", "US <PHONE>"),
        ("Berlin +49 (0)30 1234567", "Berlin <PHONE>"),
    ],
}
ALL_SAMPLES = [(entity, text, expected) for entity, pairs in SAMPLES.items() for text, expected in pairs]

# Text that must come out untouched.
FALSE_POSITIVES = [
    "2026",
    "in 2026 and 1999",
    "2026-04-18",
    "18/04/2026",
    "2026-04-18T12:34:56.789Z",
    "2026-04-18 12:34:56+02:00",
    "2026-04-18T12:34:56+0200",
    "version 1.13.27",
    "v2.3.1 and Python 3.11.7",
    "42 items, 12345 rows, 8080 port",
    "$1,234.56 or €99.99 or 1,234,567",
    "550e8400-e29b-41d4-a716-446655440000",
    "123e4567-e89b-12d3-a456-426614174000",
    "abcdef12-1234-5678-9012-345678901234",
    "trace-12345",
    "SKU-2024-000123",
    "gpt-4o-mini-2024-07-18",
    "Qwen/Qwen3-Coder-4B-Instruct",
    "claude-3-5-sonnet-20241022",
    "meta-llama/Llama-3.1-8B-Instruct",
    "score 0.41234567890123456",
    "epoch ms 1713456789123, s 1713456789, ns 1713456789123456789",
    "years 2023 2024 2025 2026",
    "ISBN 978-3-16-148410-0",
    "ratio 16:9 at 12:30:45",
    "UTC+10 and +15% and +1",
    "x = a[::-1] + b[1::2]; std::vector<int>",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "max_tokens: 1024, input_tokens=532, token_count=5, password_hash: abc",
    "client = OpenAI(api_key=os.environ['OPENAI_API_KEY'])",
    "Bearer authentication; the bearer of bad news",
    "sk-learn and task-123",
    '{"latency_ms": 1234, "cost_usd": 0.00123, "max_tokens": 1024, "token": null, "pad_token": "[PAD]"}',
    "",
]


def example_row(
    *,
    prompt: str = "What is the capital of France?",
    response: str = "Paris.",
    tool_call_arguments: str | None = None,
    contexts: list[str] | None = None,
    metadata: dict | None = None,
    trace_id: str = "trace-1",
) -> dict:
    """One normalized row: system + user turn, assistant reply (with an optional tool call)."""
    output: dict = {"role": "assistant", "content": response}
    if tool_call_arguments is not None:
        output["tool_calls"] = [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": tool_call_arguments}}
        ]
    (row,) = build_examples(SourceRecord(
        trace_id=trace_id,
        observation_id=f"obs-{trace_id}",
        timestamp="2026-04-18T12:00:00Z",
        model="gpt-4o-mini-2024-07-18",
        messages=[{"role": "system", "content": "You are helpful."}, {"role": "user", "content": prompt}],
        output=output,
        contexts=contexts,
        metadata=metadata,
        tools=[{"type": "function", "function": {"name": "lookup", "description": "mail bob@example.com"}}],
        source="test",
        extracted_at=EXTRACTED_AT,
        options=ReadOptions(),
    ))
    return row


def message_texts(row: dict) -> list[str | None]:
    return [message[field] for message in row["messages"] for field in ("content", "tool_calls")]


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


# ---------------------------------------------------------------- api and config


def test_placeholders_are_typed_names_in_angle_brackets():
    assert [placeholder(entity) for entity in ENTITY_TYPES] == [
        "<API_KEY>",
        "<EMAIL>",
        "<IP_ADDRESS>",
        "<CREDIT_CARD>",
        "<PHONE>",
    ]
    with pytest.raises(ValueError, match="unknown PII entity 'SSN'"):
        placeholder("SSN")


def test_unknown_engine_or_entity_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown redaction engine 'spacy'.*patterns, presidio"):
        RedactionConfig(engine="spacy")
    with pytest.raises(ValueError, match=r"unknown PII entities \['SSN'\]"):
        RedactionConfig(entities=("EMAIL", "SSN"))
    with pytest.raises(ValueError, match="not the string"):
        RedactionConfig(entities="EMAIL")


def test_config_accepts_lists_and_stays_hashable():
    config = RedactionConfig(entities=["EMAIL"], columns=["prompt"])
    assert config.entities == ("EMAIL",) and config.columns == ("prompt",)
    assert hash(config) == hash(RedactionConfig(entities=("EMAIL",), columns=("prompt",)))


# ---------------------------------------------------------------- patterns on text


@pytest.mark.parametrize(
    "entity,text,expected", ALL_SAMPLES, ids=[f"{entity}-{i}" for i, (entity, _, _) in enumerate(ALL_SAMPLES)]
)
def test_each_entity_is_replaced_by_its_placeholder(redactor, entity, text, expected):
    redacted, counts = redactor.redact_text(text)
    assert redacted == expected
    assert counts == Counter({**{name: 0 for name in ENTITY_TYPES}, entity: 1})


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_look_alikes_are_left_untouched(redactor, text):
    redacted, counts = redactor.redact_text(text)
    assert redacted == text
    assert sum(counts.values()) == 0


def test_redact_text_keeps_none():
    assert Redactor().redact_text(None) == (None, Counter({entity: 0 for entity in ENTITY_TYPES}))


def test_neighbouring_entities_are_all_found_and_counted(redactor):
    text = (
        "dns 8.8.8.8 8.8.4.4,1.1.1.1; mail a@x.io,b@y.io; "
        "cards 4111111111111111 5555555555554444; call 202-555-0143/202-555-0199"
    )
    redacted, counts = redactor.redact_text(text)
    assert redacted == (
        "dns <IP_ADDRESS> <IP_ADDRESS>,<IP_ADDRESS>; mail <EMAIL>,<EMAIL>; "
        "cards <CREDIT_CARD> <CREDIT_CARD>; call <PHONE>/<PHONE>"
    )
    assert counts == Counter(IP_ADDRESS=3, EMAIL=2, CREDIT_CARD=2, PHONE=2, API_KEY=0)


def test_a_key_is_one_api_key_not_also_a_phone_or_card(redactor):
    # Keys run first: digit runs inside them never become phones or cards.
    text = "key=sk-" + "1234567890123456789012345" + " id AKIA2025555014312345"
    redacted, counts = redactor.redact_text(text)
    assert redacted == "key=<API_KEY> id <API_KEY>"
    assert counts["API_KEY"] == 2 and counts["PHONE"] == counts["CREDIT_CARD"] == 0


def test_secret_in_json_metadata_keeps_the_json_valid(redactor):
    metadata = json.dumps(
        {
            "api_key": "abc\\\"def",
            "nested": json.dumps({"password": "p@ss w0rd"}),
            "token": None,
            "max_tokens": 5,
            "client_secret": 12345,
        }
    )
    redacted, counts = redactor.redact_text(metadata)
    parsed = json.loads(redacted)
    assert parsed["api_key"].startswith("<API_KEY>")
    assert json.loads(parsed["nested"]) == {"password": "<API_KEY>"}
    assert parsed["token"] is None and parsed["max_tokens"] == 5 and parsed["client_secret"] == 12345
    assert counts["API_KEY"] == 2


def test_a_card_that_is_a_json_number_becomes_a_json_string(redactor):
    metadata = json.dumps({"n": 4111111111111111, "nested": json.dumps({"k": 5555555555554444}), "small": 12345})
    redacted, counts = redactor.redact_text(metadata)
    parsed = json.loads(redacted)
    assert parsed["n"] == "<CREDIT_CARD>" and parsed["small"] == 12345
    assert json.loads(parsed["nested"]) == {"k": "<CREDIT_CARD>"}
    assert counts["CREDIT_CARD"] == 2


def test_text_already_holding_a_placeholder_is_not_counted_again(redactor):
    redacted, counts = redactor.redact_text("was <EMAIL>, now c@d.io; token: <API_KEY>")
    assert redacted == "was <EMAIL>, now <EMAIL>; token: <API_KEY>"
    assert counts["EMAIL"] == 1 and counts["API_KEY"] == 0


# ---------------------------------------------------------------- batches


@pytest.mark.parametrize("entity", ENTITY_TYPES)
def test_every_text_column_is_redacted(redactor, entity):
    (text, expected), (other_text, other_expected) = SAMPLES[entity][0], SAMPLES[entity][-1]
    rows = [
        example_row(
            prompt=f"prompt {text}",
            response=f"response {other_text}",
            tool_call_arguments=json.dumps({"query": text}),
            contexts=[f"doc one {text}", "clean doc", f"doc three {other_text}"],
            metadata={"note": text},
        )
    ]
    batch = rows_to_batch(rows)
    redacted, counts = redactor.redact_batch(batch)
    row = redacted.to_pylist()[0]

    assert row["prompt"] == f"prompt {expected}"
    assert row["response"] == f"response {other_expected}"
    assert row["messages"][1]["content"] == f"prompt {expected}"  # the user turn
    assert row["messages"][2]["content"] == f"response {other_expected}"  # the assistant turn
    assert placeholder(entity) in row["messages"][2]["tool_calls"]
    assert row["contexts"] == [f"doc one {expected}", "clean doc", f"doc three {other_expected}"]
    assert placeholder(entity) in row["metadata"]
    # prompt, response, user + assistant content, tool call, 2 contexts, metadata
    assert counts[entity] == 8
    assert sum(counts.values()) == 8
    # Everything else is as it was: roles, names, tools, ids, the schema.
    original = batch.to_pylist()[0]
    for column in NORMALIZED_SCHEMA.names:
        if column not in ("prompt", "response", "messages", "contexts", "metadata"):
            assert row[column] == original[column], column
    assert [m["role"] for m in row["messages"]] == [m["role"] for m in original["messages"]]
    assert redacted.schema.equals(batch.schema, check_metadata=True)


def test_tools_column_and_roles_are_never_redacted(redactor):
    batch = rows_to_batch([example_row(prompt="mail bob@example.com")])
    redacted, _ = redactor.redact_batch(batch)
    assert redacted.column("tools").equals(batch.column("tools"))
    assert "bob@example.com" in redacted.column("tools")[0].as_py()


def test_counts_add_up_across_rows_and_cells(redactor):
    rows = [
        example_row(prompt="a@x.io and b@x.io", response="ok", trace_id="t1"),
        example_row(prompt="call 202-555-0143", response="ip 10.0.0.1 or 10.0.0.2", trace_id="t2"),
        example_row(prompt="clean", response="clean", contexts=["4111111111111111", "c@x.io"], trace_id="t3"),
    ]
    _, counts = redactor.redact_batch(rows_to_batch(rows))
    # prompts are also the user messages' content, responses the assistant's
    assert counts == Counter(EMAIL=2 * 2 + 1, PHONE=2, IP_ADDRESS=2 * 2, CREDIT_CARD=1, API_KEY=0)


def nullable_rows() -> list[dict]:
    base = example_row(prompt="mail a@x.io", response="call 202-555-0143", contexts=["ip 10.0.0.1"])
    rows = []
    for index, changes in enumerate(
        [
            {},
            {"prompt": None, "response": None, "metadata": None, "contexts": None, "messages": None},
            {"contexts": [], "messages": [], "metadata": '{"email": "c@x.io"}'},
            {
                "contexts": [None, "d@x.io", ""],
                "messages": [
                    {"role": "user", "content": None, "tool_calls": None, "name": None},
                    {"role": "assistant", "content": "", "tool_calls": '[{"ip": "10.0.0.9"}]', "name": "bot"},
                ],
            },
            {"prompt": "token: tok_123456789", "messages": [None]},
        ]
    ):
        rows.append({**base, "trace_id": f"t{index}", **changes})
    return rows


def test_nulls_and_empty_lists_are_preserved(redactor):
    batch = pa.RecordBatch.from_pylist(nullable_rows(), schema=NORMALIZED_SCHEMA)
    redacted, counts = redactor.redact_batch(batch)
    redacted.validate(full=True)
    rows = redacted.to_pylist()

    assert rows[0]["prompt"] == "mail <EMAIL>" and rows[0]["contexts"] == ["ip <IP_ADDRESS>"]
    assert all(rows[1][column] is None for column in ("prompt", "response", "metadata", "contexts", "messages"))
    assert rows[2]["contexts"] == [] and rows[2]["messages"] == []
    assert rows[2]["metadata"] == '{"email": "<EMAIL>"}'
    assert rows[3]["contexts"] == [None, "<EMAIL>", ""]
    assert rows[3]["messages"] == [
        {"role": "user", "content": None, "tool_calls": None, "name": None},
        {"role": "assistant", "content": "", "tool_calls": '[{"ip": "<IP_ADDRESS>"}]', "name": "bot"},
    ]
    assert rows[4]["prompt"] == "token: <API_KEY>" and rows[4]["messages"] == [None]
    assert redacted.column("messages").null_count == batch.column("messages").null_count
    assert redacted.column("contexts").null_count == batch.column("contexts").null_count
    # Per row (prompt/response also sit in the messages of rows 0 and 2):
    # 0: 2 emails, 2 phones, 1 IP; 2: 2 emails, 1 phone; 3: 2 emails, 1 phone,
    # 1 IP; 4: 1 key, 1 phone, 1 IP.
    assert counts == Counter(EMAIL=6, PHONE=5, IP_ADDRESS=3, API_KEY=1, CREDIT_CARD=0)


def test_sliced_batches_redact_only_their_rows(redactor):
    batch = pa.RecordBatch.from_pylist(nullable_rows(), schema=NORMALIZED_SCHEMA)
    full, _ = redactor.redact_batch(batch)
    sliced = batch.slice(1, 3)
    redacted, counts = redactor.redact_batch(sliced)
    redacted.validate(full=True)
    assert redacted.num_rows == 3
    assert redacted.to_pylist() == full.slice(1, 3).to_pylist()
    # Only rows 1..3 count (see test_nulls_and_empty_lists_are_preserved).
    assert counts == Counter(EMAIL=4, PHONE=2, IP_ADDRESS=1, API_KEY=0, CREDIT_CARD=0)


def test_a_five_megabyte_cell(redactor):
    filler = "lorem ipsum dolor sit amet 2026-04-18 v1.13.27 " * 1000  # ~47 kB
    text = "".join(f"{filler} contact user{i}@example.com or 202-555-{i:04d}. " for i in range(110))
    assert len(text) > 5_000_000
    batch = rows_to_batch([example_row(prompt=text, response="ok")])
    redacted, counts = redactor.redact_batch(batch)
    prompt = redacted.column("prompt")[0].as_py()
    assert "@example.com" not in prompt and "202-555-" not in prompt
    assert prompt.count("<EMAIL>") == 110 and prompt.count("<PHONE>") == 110
    assert prompt.count("v1.13.27") == 110 * 1000
    # the prompt and the user message hold the same text
    assert counts["EMAIL"] == counts["PHONE"] == 220
    assert redacted.column("messages")[0].as_py()[1]["content"] == prompt


def test_only_the_selected_entities_are_redacted():
    text = "a@x.io 10.0.0.1 202-555-0143 4111111111111111 AKIAIOSFODNN7EXAMPLE"
    redactor = Redactor(RedactionConfig(entities=("EMAIL", "PHONE")))
    redacted, counts = redactor.redact_text(text)
    assert redacted == "<EMAIL> 10.0.0.1 <PHONE> 4111111111111111 AKIAIOSFODNN7EXAMPLE"
    assert counts == Counter(EMAIL=1, PHONE=1)


def test_only_the_selected_columns_are_redacted():
    batch = rows_to_batch([example_row(prompt="a@x.io", response="b@x.io", contexts=["c@x.io"])])
    redacted, counts = Redactor(RedactionConfig(columns=("response", "not_a_column"))).redact_batch(batch)
    row = redacted.to_pylist()[0]
    assert row["response"] == "<EMAIL>"
    assert row["prompt"] == "a@x.io" and row["contexts"] == ["c@x.io"]
    assert row["messages"][2]["content"] == "b@x.io"
    assert counts["EMAIL"] == 1


def test_columns_missing_from_the_batch_are_skipped(redactor):
    batch = rows_to_batch([example_row(prompt="a@x.io")]).select(["trace_id", "prompt", "tools"])
    redacted, counts = redactor.redact_batch(batch)
    assert redacted.schema.equals(batch.schema)
    assert redacted.column("prompt")[0].as_py() == "<EMAIL>" and counts["EMAIL"] == 1


def test_an_empty_batch(redactor):
    batch = pa.RecordBatch.from_pylist([], schema=NORMALIZED_SCHEMA)
    redacted, counts = redactor.redact_batch(batch)
    assert redacted.num_rows == 0 and redacted.schema.equals(batch.schema)
    assert sum(counts.values()) == 0


def test_disabled_redaction_returns_the_batch_unchanged():
    batch = rows_to_batch([example_row(prompt="a@x.io")])
    redacted, counts = Redactor(RedactionConfig(enabled=False)).redact_batch(batch)
    assert redacted is batch and counts == Counter()


def test_large_string_and_large_list_columns():
    schema = pa.schema(
        [
            pa.field("prompt", pa.large_string()),
            pa.field("contexts", pa.large_list(pa.large_string())),
        ]
    )
    batch = pa.RecordBatch.from_pylist(
        [{"prompt": "a@x.io", "contexts": ["10.0.0.1", None]}, {"prompt": None, "contexts": None}], schema=schema
    )
    redacted, counts = Redactor().redact_batch(batch)
    assert redacted.schema.equals(schema)
    assert redacted.to_pylist() == [
        {"prompt": "<EMAIL>", "contexts": ["<IP_ADDRESS>", None]},
        {"prompt": None, "contexts": None},
    ]


def test_an_unsupported_column_type_is_an_error():
    batch = pa.RecordBatch.from_pydict({"prompt": pa.array([1, 2])})
    with pytest.raises(TypeError, match="cannot redact a column of type int64"):
        Redactor().redact_batch(batch)


def test_a_hundred_thousand_short_rows(redactor):
    rows = [
        example_row(prompt="hi, I am a@x.io", response="Noted.", trace_id="t0"),
        example_row(prompt="what is 2+2?", response="4, as of 2026-04-18", trace_id="t1"),
        example_row(prompt="my card 4111 1111 1111 1111", response="Never share it.", trace_id="t2"),
        example_row(prompt="ping 10.0.0.1", response="pong from 10.0.0.1", trace_id="t3"),
    ]
    batch = pa.concat_batches([rows_to_batch(rows)] * 25_000)
    assert batch.num_rows == 100_000
    redacted, counts = redactor.redact_batch(batch)
    assert redacted.num_rows == 100_000
    assert counts == Counter(EMAIL=2 * 25_000, CREDIT_CARD=2 * 25_000, IP_ADDRESS=4 * 25_000, PHONE=0, API_KEY=0)
    assert redacted.slice(99_996, 4).column("prompt").to_pylist() == [
        "hi, I am <EMAIL>",
        "what is 2+2?",
        "my card <CREDIT_CARD>",
        "ping <IP_ADDRESS>",
    ]


# ---------------------------------------------------------------- presidio


@pytest.fixture(scope="module")
def presidio_redactor() -> Redactor:
    try:
        return Redactor(RedactionConfig(engine="presidio"))
    except ImportError as exc:
        pytest.skip(f"presidio cannot be imported here: {exc}")


@pytest.mark.parametrize(
    "entity,text,secret",
    [
        ("EMAIL", "Contact bob.smith@example.co.uk today.", "bob.smith@example.co.uk"),
        ("PHONE", "call +44 20 7946 0958 now", "7946 0958"),
        ("PHONE", "office (202) 555-0143", "555-0143"),
        ("CREDIT_CARD", "card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
        ("IP_ADDRESS", "server 10.0.0.1 is down", "10.0.0.1"),
        ("IP_ADDRESS", "v6 2001:db8::8a2e:370:7334 short", "2001:db8::8a2e:370:7334"),
        ("API_KEY", "aws key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
        ("API_KEY", f"claude: {ANTHROPIC_KEY}", ANTHROPIC_KEY),
        ("API_KEY", f"jwt {JWT} end", JWT),
    ],
)
def test_presidio_finds_each_entity(presidio_redactor, entity, text, secret):
    redacted, counts = presidio_redactor.redact_text(text)
    assert secret not in redacted
    assert placeholder(entity) in redacted
    assert counts[entity] == 1 and sum(counts.values()) == 1


def test_presidio_keeps_key_prefixes_and_lowercase_look_alikes(presidio_redactor):
    redacted, counts = presidio_redactor.redact_text(
        "Authorization: Bearer abc123def456ghi789 and api_key=abc123secret but akiaiosfodnn7example"
    )
    assert redacted == "Authorization: Bearer <API_KEY> and api_key=<API_KEY> but akiaiosfodnn7example"
    assert counts["API_KEY"] == 2


@pytest.mark.parametrize(
    "text",
    [
        "2026-04-18T12:34:56.789Z",
        "version 1.13.27",
        "$1,234.56",
        "550e8400-e29b-41d4-a716-446655440000",
        "trace-12345",
        "gpt-4o-mini-2024-07-18",
        "Qwen/Qwen3-Coder-4B-Instruct",
        "x = a[::-1] + b[::2]",
    ],
)
def test_presidio_leaves_look_alikes(presidio_redactor, text):
    assert presidio_redactor.redact_text(text)[0] == text


def test_presidio_redacts_a_batch_like_the_patterns_engine(presidio_redactor, redactor):
    rows = [
        example_row(prompt="mail a@example.com", response="ip 10.0.0.1", contexts=["key AKIAIOSFODNN7EXAMPLE"]),
        example_row(prompt="card 4111111111111111", response="plain", trace_id="t2"),
    ]
    batch = rows_to_batch(rows)
    by_presidio, presidio_counts = presidio_redactor.redact_batch(batch)
    by_patterns, pattern_counts = redactor.redact_batch(batch)
    assert by_presidio.schema.equals(batch.schema)
    assert by_presidio.to_pylist() == by_patterns.to_pylist()
    assert presidio_counts == pattern_counts == Counter(EMAIL=2, IP_ADDRESS=2, API_KEY=1, CREDIT_CARD=2, PHONE=0)


def test_presidio_phone_regions_are_configurable(presidio_redactor):
    # The default regions include FR, so a French national number is found...
    assert presidio_redactor.redact_text("appelez le 01 23 45 67 89")[0] == "appelez le <PHONE>"
    try:
        us_only = Redactor(RedactionConfig(engine="presidio", entities=("PHONE",), phone_regions=("US",)))
    except ImportError as exc:
        pytest.skip(f"presidio cannot be imported here: {exc}")
    # ...but not with US alone; an international number needs no region.
    assert us_only.redact_text("appelez le 01 23 45 67 89")[0] == "appelez le 01 23 45 67 89"
    assert us_only.redact_text("call +44 20 7946 0958")[0] == "call <PHONE>"


# ---------------------------------------------------------------- presidio is an optional extra

PRESIDIO_MODULES = ("presidio_analyzer", "presidio_anonymizer", "spacy")


def test_presidio_without_the_extra_fails_naming_it(monkeypatch):
    # None in sys.modules makes the import fail as it does where the extra is not installed.
    for name in PRESIDIO_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=re.escape("pip install -e '.[presidio]'")):
        Redactor(RedactionConfig(engine="presidio"))


def test_the_default_engine_needs_no_presidio(tmp_path):
    """A process where Presidio and spaCy cannot be imported loads the Definitions and redacts
    with the engine the Definitions configure by default."""
    script = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PRESIDIO_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, NotInstalled())
from materializer_assets.definitions import defs

redactor = defs.resources["privacy"].process_config_and_initialize().redactor()
print(redactor.config.engine, redactor.redact_text("mail bob@example.com")[0])
"""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MATERIALIZER_")}
    environment["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["patterns", "mail", "<EMAIL>"]


def test_messages_that_repeat_prompt_and_response_get_their_redaction_and_counts(redactor):
    """Single-turn rows: the first message is the prompt, the last the response. They are
    scanned once, yet the batch equals a redaction of every value on its own, counts included."""
    texts = [("mail a@x.io now", "call 202-555-0143"), ("clean", "ip 10.0.0.1"), ("tok_123456789 here", "ok")]
    rows = []
    for index, (prompt, response) in enumerate(texts):
        row = example_row(prompt=prompt, response=response, trace_id=f"t{index}")
        row["messages"] = [dict(row["messages"][1]), dict(row["messages"][2])]  # user, assistant
        rows.append(row)
    rows[1]["messages"][0]["content"] = "edited a@x.io"  # no longer the prompt: scanned on its own
    batch = rows_to_batch(rows)
    redacted, counts = redactor.redact_batch(batch)
    redacted.validate(full=True)
    expected = Counter({entity: 0 for entity in ENTITY_TYPES})
    for original, row in zip(batch.to_pylist(), redacted.to_pylist()):
        for column in ("prompt", "response"):
            value, found = redactor.redact_text(original[column])
            assert row[column] == value
            expected.update(found)
        for before, after in zip(original["messages"], row["messages"]):
            for field in ("content", "tool_calls"):
                value, found = redactor.redact_text(before[field])
                assert after[field] == value
                expected.update(found)
        metadata, found = redactor.redact_text(original["metadata"])
        assert row["metadata"] == metadata
        expected.update(found)
        for before, after in zip(original["contexts"] or [], row["contexts"] or []):
            value, found = redactor.redact_text(before)
            assert after == value
            expected.update(found)
    assert redacted.column("messages")[0].as_py()[0]["content"] == "mail <EMAIL> now"
    assert counts == expected
    # redact_batches over several batches gives what redact_batch gives for each
    halves, both = redactor.redact_batches([batch.slice(0, 2), batch.slice(2)])
    assert pa.concat_batches(halves).to_pylist() == redacted.to_pylist() and both == counts
