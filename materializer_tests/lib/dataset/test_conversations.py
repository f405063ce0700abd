"""The exports' column-wise conversations equal the per-row path, row for row (lib/dataset/conversations.py)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pyarrow as pa
import pytest

from materializer_assets.lib.dataset import exports
from materializer_assets.lib.dataset.conversations import PYTHON_WHITESPACE, conversations, not_blank
from materializer_assets.lib.schema import NORMALIZED_SCHEMA

MESSAGES_TYPE = NORMALIZED_SCHEMA.field("messages").type
TEXTS = [None, "", " ", "\u3000\n", "\x1c", "hi", "  What is 2+2?  ", "Paris.", "naïve café ☕", "x" * 300]
ROLES = ["system", "developer", "user", "assistant", "tool", "User", " assistant", None]
CALLS = json.dumps([{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}])


def _message(rng: random.Random) -> dict:
    role = rng.choice(ROLES[:4]) if rng.random() < 0.85 else rng.choice(ROLES[4:])
    calls = CALLS if role == "assistant" and rng.random() < 0.1 else rng.choice([None, None, ""])
    return {"role": role, "content": rng.choice(TEXTS), "tool_calls": calls, "name": rng.choice([None, None, "lookup"])}


def random_rows(seed: int, n: int = 400) -> pa.Table:
    rng = random.Random(seed)
    messages = []
    for _ in range(n):
        r = rng.random()
        messages.append(None if r < 0.1 else [] if r < 0.15 else [_message(rng) for _ in range(rng.randint(1, 5))])
    return pa.table(
        {
            "trace_id": [f"t{i}" for i in range(n)],
            "observation_id": [rng.choice([None, f"o{i}"]) for i in range(n)],
            "messages": pa.array(messages, MESSAGES_TYPE),
            "prompt": [rng.choice(TEXTS) for _ in range(n)],
            "response": [rng.choice(TEXTS) for _ in range(n)],
            "tools": [rng.choice([None, None, json.dumps([{"name": "lookup", "parameters": {}}]), "not json"]) for _ in range(n)],
            "split": [rng.choice(["train", "test", "excluded"]) for _ in range(n)],
            "final_reward": [rng.random() for _ in range(n)],
            "ragas_reward": [rng.choice([None, 0.5]) for _ in range(n)],
            "judge_score": [rng.choice([None, 0.25]) for _ in range(n)],
        }
    )


def test_python_whitespace_is_what_strip_removes():
    assert all(ch.isspace() for ch in PYTHON_WHITESPACE) and "\x1c" in PYTHON_WHITESPACE and "\u3000" in PYTHON_WHITESPACE
    strings = ["", " ", "\u3000", "\x85a\x85", "a", None, "\u200b"]
    assert not_blank(pa.array(strings, pa.string())).tolist() == [bool(s and s.strip()) for s in strings]


@pytest.mark.parametrize("seed", range(6))
def test_grpo_by_columns_equals_row_by_row(seed):
    table = random_rows(seed)
    got_skipped, want_skipped = Counter(), Counter()
    got = exports.grpo_table(table, skipped=got_skipped)
    want, _ = exports._grpo_rows(exports._exported_rows(table), conversational=True, skipped=want_skipped)
    assert got.schema == want.schema
    assert got.to_pylist() == want.to_pylist()
    assert got_skipped == want_skipped
    # both paths ran: some rows are plain chats, some are not
    fast = conversations(exports._exported_rows(table)).fast
    assert fast.any() and not fast.all()


def test_grpo_of_a_batch_without_messages_or_tools_columns():
    table = random_rows(99, 50).drop_columns(["messages", "tools"])
    got = exports.grpo_table(table)
    want, _ = exports._grpo_rows(exports._exported_rows(table), conversational=True, skipped=None)
    assert got.to_pylist() == want.to_pylist()


@pytest.mark.parametrize("seed", range(4))
def test_sft_and_kto_by_columns_equal_row_by_row(seed):
    import numpy as np

    table = random_rows(seed)
    rng = np.random.default_rng(seed)
    table = table.append_column("label", pa.array(rng.choice(["preferred", "non_preferred", "neutral", None], table.num_rows)))
    for labels in (("preferred",), None):
        got_skipped, want_skipped = Counter(), Counter()
        got = exports.sft_table(table, labels=labels, skipped=got_skipped)
        mask = pa.compute.is_in(table.column("label"), pa.array(list(labels))) if labels else None
        want, _ = exports._sft_rows(exports._exported_rows(table, mask), conversational=True, skipped=want_skipped)
        assert got.schema == want.schema and got.to_pylist() == want.to_pylist() and got_skipped == want_skipped
    got_skipped, want_skipped = Counter(), Counter()
    got = exports.kto_table(table, skipped=got_skipped)
    mask = pa.compute.is_in(table.column("label"), pa.array(["preferred", "non_preferred"]))
    want, _ = exports._kto_rows(exports._exported_rows(table, mask), conversational=True, skipped=want_skipped)
    assert got.schema == want.schema and got.to_pylist() == want.to_pylist() and got_skipped == want_skipped
    assert got.num_rows > 10


@pytest.mark.parametrize("seed", range(4))
def test_router_by_columns_equals_row_by_row(seed):
    import numpy as np

    table = random_rows(seed)
    rng = np.random.default_rng(seed)
    n = table.num_rows
    table = table.set_column(table.column_names.index("final_reward"), "final_reward", pa.array([None if rng.random() < 0.2 else float(rng.random()) for _ in range(n)], pa.float64()))
    for name in ("total_tokens", "input_tokens", "output_tokens", "latency_ms"):
        table = table.append_column(name, pa.array([None if rng.random() < 0.3 else int(rng.integers(0, 900)) for _ in range(n)], pa.int64()))
    table = table.append_column("model", pa.array(["glm-5-32b"] * n)).append_column("reward_source", pa.array(["ragas+judge"] * n))
    got_skipped, want_skipped = Counter(), Counter()
    got = exports.router_table(table, skipped=got_skipped)
    exported = exports._exported_rows(table)
    want_skipped["no_reward"] += exported.column("final_reward").null_count
    exported = exported.filter(pa.compute.is_valid(exported.column("final_reward")))
    want, _ = exports._router_rows(exported, task_name="production", metric="custom", skipped=want_skipped)
    assert got.schema == want.schema and got.to_pylist() == want.to_pylist() and got_skipped == want_skipped
    assert got.num_rows > 10
