"""TRL exports (SFT, DPO, KTO, GRPO) and LLMRouter rows: contents, and each loads with `datasets`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib.dataset import exports
from materializer_assets.lib.dataset.build import build_reward_table
from materializer_assets.lib.dataset.checks import check_dpo_pairs
from materializer_assets.lib.dataset.pairs import build_pairs
from materializer_assets.lib.dataset.rewards import RewardConfig, RewardWeights
from materializer_assets.lib.dataset.splits import SplitConfig
from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples

from .builders import EXTRACTED_AT, table, trace
from .test_splits import users

SPLIT = SplitConfig(test_fraction=0.5)
JUDGE_ONLY = RewardConfig(weights=RewardWeights(ragas=0.0, judge=1.0))
SYSTEM = "You are a concise assistant."
PROMPTS = {
    "train": ["What is the boiling point of water at sea level?", "Name three primary colors."],
    "test": ["Which planet is known as the red planet?", "Translate 'good morning' into Spanish."],
}
REWARDS = [0.95, 0.6, 0.25, None]  # preferred, neutral, non_preferred, unlabeled


def m(role: str, content: str | None, **extra) -> dict:
    """A message as the exports write it (TRL's conversational format with its tool-calling keys)."""
    return {"role": role, "content": content, "tool_calls": None, "tool_call_id": None, "name": None, **extra}


@pytest.fixture(scope="module")
def reward_table() -> pa.Table:
    rows, judge = [], []
    for split, prompts in PROMPTS.items():
        people = users(split, 8, SPLIT, prefix=f"export-{split}")
        for k, prompt in enumerate(prompts):
            for r, reward in enumerate(REWARDS):
                rows.append(
                    trace(
                        f"{split}-{k}-{r}",
                        user=people[k * 4 + r],
                        system=SYSTEM,
                        prompt=prompt,
                        response=f"Answer {r} to {prompt}",
                        latency_ms=800 + r,
                        input_tokens=10,
                        output_tokens=5 + r,
                    )
                )
                judge.append(reward)
    # An exact duplicate (excluded) and a row with no user prompt (an assistant message alone).
    rows.append(trace("dup", user=users("train", 1, SPLIT, prefix="dup")[0], system=SYSTEM, prompt=PROMPTS["train"][0], response="Answer 0 to " + PROMPTS["train"][0], hour=23))
    judge.append(0.99)
    (orphan,) = build_examples(SourceRecord(
        trace_id="orphan", observation_id=None, timestamp="2026-04-18T12:00:00Z", model="glm-5-32b", messages=[],
        output="An unprompted answer.", user_id="orphan-user", explicit_consent=True, source="test",
        extracted_at=EXTRACTED_AT, options=ReadOptions(convert_to_single_turn=False),
    ))
    rows.append(orphan)
    judge.append(0.9)
    out, _ = build_reward_table(table(rows, judge=judge), reward_config=JUDGE_ONLY, split_config=SPLIT)
    assert dict(Counter(out.column("split").to_pylist())) == {"train": 9, "test": 8, "excluded": 1}
    return out


@pytest.fixture(scope="module")
def load_parquet(tmp_path_factory):
    """Write an export per split to Parquet and load it back with `datasets` (offline)."""
    root = tmp_path_factory.mktemp("exports")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        patch.setenv("HF_HUB_OFFLINE", "1")
        import datasets

        def load(name: str, t: pa.Table) -> "datasets.DatasetDict":
            files = {}
            for split, part in exports.by_split(t).items():
                path = Path(root) / f"{name}-{split}.parquet"
                pq.write_table(part, path)
                files[split] = str(path)
            return datasets.load_dataset("parquet", data_files=files, cache_dir=str(Path(root) / "hf-cache"))

        yield load


def test_sft_is_conversational_preferred_only_with_lineage(reward_table, load_parquet):
    sft = exports.sft_table(reward_table)
    assert sft.schema == exports.sft_schema()
    assert sorted(sft.column("trace_id").to_pylist()) == ["test-0-0", "test-1-0", "train-0-0", "train-1-0"]
    row = next(r for r in sft.to_pylist() if r["trace_id"] == "train-0-0")
    assert row["messages"] == [
        m("system", SYSTEM),
        m("user", PROMPTS["train"][0]),
        m("assistant", "Answer 0 to " + PROMPTS["train"][0]),
    ]
    assert row["split"] == "train" and row["tools"] is None
    assert "label" not in row  # TRL rejects {"messages", "label"}

    loaded = load_parquet("sft", sft)
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].num_rows == 2 and loaded["test"].num_rows == 2
    assert set(loaded["train"].column_names) == {"messages", "tools", "trace_id", "observation_id", "split"}
    assert loaded["train"][0]["messages"][0] == m("system", SYSTEM)


def test_sft_with_every_label_skips_excluded_rows_and_rows_without_a_prompt(reward_table):
    skipped = Counter()
    sft = exports.sft_table(reward_table, labels=None, skipped=skipped)
    ids = set(sft.column("trace_id").to_pylist())
    assert len(ids) == 16 and "dup" not in ids and "orphan" not in ids
    assert skipped == Counter({"no_prompt": 1})


def test_sft_standard_format_is_prompt_completion(reward_table, load_parquet):
    sft = exports.sft_table(reward_table, conversational=False)
    row = next(r for r in sft.to_pylist() if r["trace_id"] == "test-1-0")
    assert row["prompt"] == PROMPTS["test"][1] and row["completion"] == "Answer 0 to " + PROMPTS["test"][1]
    loaded = load_parquet("sft-standard", sft)
    assert {"prompt", "completion"} <= set(loaded["test"].column_names)


def test_kto_labels_are_booleans_from_preferred_and_non_preferred(reward_table, load_parquet):
    kto = exports.kto_table(reward_table)
    labels = {r["trace_id"]: r["label"] for r in kto.to_pylist()}
    assert labels == {
        "train-0-0": True, "train-0-2": False, "train-1-0": True, "train-1-2": False,
        "test-0-0": True, "test-0-2": False, "test-1-0": True, "test-1-2": False,
    }  # neutral (…-1) and unlabeled (…-3) rows are left out
    row = next(r for r in kto.to_pylist() if r["trace_id"] == "test-0-2")
    assert row["prompt"] == [m("system", SYSTEM), m("user", PROMPTS["test"][0])]
    assert row["completion"] == [m("assistant", "Answer 2 to " + PROMPTS["test"][0])]

    loaded = load_parquet("kto", kto)
    assert {"prompt", "completion", "label"} <= set(loaded["train"].column_names)
    assert loaded["train"].features["label"].dtype == "bool"
    assert sorted(loaded["test"]["label"]) == [False, False, True, True]


def test_grpo_rows_are_prompt_only_with_reference_and_rewards(reward_table, load_parquet):
    grpo = exports.grpo_table(reward_table)
    assert grpo.num_rows == 16
    row = next(r for r in grpo.to_pylist() if r["trace_id"] == "train-1-3")
    assert row["prompt"] == [m("system", SYSTEM), m("user", PROMPTS["train"][1])]
    assert row["reference"] == "Answer 3 to " + PROMPTS["train"][1]
    assert row["final_reward"] is None and row["judge_score"] is None
    assert "label" not in row  # TRL rejects {"prompt", "label"}
    loaded = load_parquet("grpo", grpo)
    assert {"prompt", "reference", "final_reward", "ragas_reward", "judge_score"} <= set(loaded["train"].column_names)
    assert all(m["role"] != "assistant" for m in loaded["train"][0]["prompt"])


def test_dpo_pairs_are_conversational_within_each_split(reward_table, load_parquet):
    pairs, stats = build_pairs(reward_table)
    dpo = exports.dpo_table(pairs)
    assert dpo.schema == exports.dpo_schema()
    # Per prompt: 0.95 vs 0.25 (0.7), 0.95 vs 0.6 (0.35), 0.6 vs 0.25 (0.35); unlabeled rows never pair.
    assert dpo.num_rows == 4 * 3 and stats.prompt_groups == 4
    row = dpo.to_pylist()[0]
    assert row["prompt"][-1]["role"] == "user" and row["prompt"][0] == m("system", SYSTEM)
    assert row["chosen"][0]["role"] == "assistant" and row["rejected"][0]["role"] == "assistant"
    for r in dpo.to_pylist():
        assert r["chosen_trace_id"].split("-")[0] == r["rejected_trace_id"].split("-")[0] == r["split"]
    assert check_dpo_pairs(dpo, 0.2).passed

    loaded = load_parquet("dpo", dpo)
    assert {"prompt", "chosen", "rejected", "margin"} <= set(loaded["train"].column_names)
    assert loaded["train"].num_rows == 6 and loaded["test"].num_rows == 6
    assert loaded["test"][0]["chosen"] == [m("assistant", loaded["test"][0]["chosen"][0]["content"])]


def test_dpo_standard_format_uses_strings(reward_table):
    pairs, _ = build_pairs(reward_table)
    dpo = exports.dpo_table(pairs, conversational=False)
    row = dpo.to_pylist()[0]
    assert isinstance(row["prompt"], str) and isinstance(row["chosen"], str) and isinstance(row["rejected"], str)
    assert check_dpo_pairs(dpo, 0.2).passed


def test_router_rows_follow_the_llmrouter_format(reward_table, load_parquet):
    skipped = Counter()
    router = exports.router_table(reward_table, skipped=skipped)
    assert router.num_rows == 12  # 16 train/test rows − 4 unlabeled ones; the orphan has no query
    assert skipped == Counter({"no_reward": 4, "no_prompt": 1})
    row = next(r for r in router.to_pylist() if r["trace_id"] == "train-0-2")
    assert row == {
        "query": PROMPTS["train"][0],
        "model_name": "glm-5-32b",
        "response": "Answer 2 to " + PROMPTS["train"][0],
        "performance": 0.25,
        "response_time": 0.802,
        "token_num": 17,
        "input_tokens": 10,
        "output_tokens": 7,
        "task_name": "production",
        "ground_truth": "",
        "metric": "custom",
        "trace_id": "train-0-2",
        "observation_id": None,
        "split": "train",
        "reward_source": "judge",
    }
    lines = list(exports.router_jsonl_lines(router))
    assert len(lines) == 12 and all(line.endswith("\n") for line in lines)
    assert json.loads(lines[0]).keys() >= {"query", "model_name", "performance", "response_time", "token_num"}
    loaded = load_parquet("router", router)
    assert {"query", "model_name", "performance", "response_time", "token_num"} <= set(loaded["train"].column_names)


def test_exports_of_an_empty_cell_are_empty_tables_with_their_schema(reward_table):
    empty = reward_table.slice(0, 0)
    assert exports.sft_table(empty).schema == exports.sft_schema()
    assert exports.kto_table(empty).num_rows == 0
    assert exports.grpo_table(empty).schema == exports.grpo_schema()
    assert exports.router_table(empty).schema == exports.ROUTER_SCHEMA
    pairs, _ = build_pairs(empty)
    assert exports.dpo_table(pairs).schema == exports.dpo_schema()


def test_the_trl_reference_is_cited():
    assert exports.TRL_DATASET_FORMATS_URL == "https://huggingface.co/docs/trl/dataset_formats"
    assert exports.TRL_DATASET_FORMATS_URL in exports.__doc__


# ---------------------------------------------------------------- tool calls (TRL's tool-calling format)

AGENT = "Call a tool when you need live data."
WEATHER = "What's the weather in London?"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
# TRL 1.16 trl.data_utils.apply_chat_template: the key sets it accepts among its own keys.
TRL_KEYS = {"prompt", "chosen", "rejected", "completion", "messages", "label"}
TRL_KEY_SETS = [
    {"messages"},
    {"prompt"},
    {"prompt", "completion"},
    {"prompt", "chosen", "rejected"},
    {"chosen", "rejected"},
    {"prompt", "completion", "label"},
]


def _call(call_id: str, city: str, spaced: bool = False) -> dict:
    arguments = json.dumps({"city": city}, indent=1 if spaced else None)
    return {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}


def tool_row(trace_id: str, call_id: str, city: str = "London", answer: str | None = None, spaced: bool = False) -> dict:
    """A chat that calls get_weather: ending in the call, or (``answer``) in the answer after the tool ran.
    The tool message names its call by id only, as OpenAI's format does."""
    call = {"role": "assistant", "content": None, "tool_calls": [_call(call_id, city, spaced)]}
    messages = [{"role": "system", "content": AGENT}, {"role": "user", "content": WEATHER}]
    if answer is not None:
        messages += [call, {"role": "tool", "tool_call_id": call_id, "content": '{"temperature": 15}'}]
    (row,) = build_examples(SourceRecord(
        trace_id=trace_id, observation_id=None, timestamp="2026-04-18T09:00:00Z", model="glm-5-32b",
        messages=messages, output=answer if answer is not None else call, tools=TOOLS, user_id=f"user-{trace_id}",
        explicit_consent=True, source="test", extracted_at=EXTRACTED_AT, options=ReadOptions(convert_to_single_turn=False),
    ))
    return row


ALL_TRAIN = SplitConfig(test_fraction=0.0, remove_duplicates=False, near_duplicates=None)


def tool_table(rows_and_rewards: list[tuple[dict, float]]) -> pa.Table:
    out, _ = build_reward_table(
        table([r for r, _ in rows_and_rewards], judge=[v for _, v in rows_and_rewards]),
        reward_config=JUDGE_ONLY,
        split_config=ALL_TRAIN,
    )
    return out


def test_tool_calls_keep_their_structure_ids_and_tool_definitions():
    rewards = tool_table([(tool_row("answered", "call_a1", answer="It's 15 °C in London."), 0.95), (tool_row("calls", "call_b2"), 0.1)])
    call = m("assistant", None, tool_calls=[_call("call_a1", "London")])
    (sft,) = exports.sft_table(rewards).to_pylist()
    assert sft["messages"] == [
        m("system", AGENT),
        m("user", WEATHER),
        call,
        m("tool", '{"temperature": 15}', tool_call_id="call_a1", name="get_weather"),
        m("assistant", "It's 15 °C in London."),
    ]
    assert json.loads(sft["tools"]) == TOOLS

    kto = {r["trace_id"]: r for r in exports.kto_table(rewards).to_pylist()}
    assert kto["calls"]["label"] is False and json.loads(kto["calls"]["tools"]) == TOOLS
    assert kto["calls"]["completion"] == [m("assistant", None, tool_calls=[_call("call_b2", "London")])]
    assert kto["calls"]["prompt"] == [m("system", AGENT), m("user", WEATHER)]
    grpo = {r["trace_id"]: r for r in exports.grpo_table(rewards).to_pylist()}
    assert grpo["answered"]["prompt"][-1] == m("tool", '{"temperature": 15}', tool_call_id="call_a1", name="get_weather")
    assert json.loads(grpo["calls"]["reference"])[0]["function"]["name"] == "get_weather"


def test_a_pair_of_the_same_tool_call_under_other_ids_is_dropped_and_counted():
    rewards = tool_table(
        [
            (tool_row("good", "call_1111", "London"), 0.9),
            (tool_row("same-call", "call_2222", "London", spaced=True), 0.25),  # other id, other whitespace
            (tool_row("wrong-city", "call_3333", "Paris"), 0.1),
        ]
    )
    pairs, stats = build_pairs(rewards)
    assert [(p["chosen_trace_id"], p["rejected_trace_id"]) for p in pairs.to_pylist()] == [("good", "wrong-city")]
    assert stats.skipped_identical == 1 and stats.as_metadata()["pairs_dropped_degenerate"] == 1
    (row,) = exports.dpo_table(pairs).to_pylist()
    assert row["chosen"] == [m("assistant", None, tool_calls=[_call("call_1111", "London")])]
    assert row["rejected"] == [m("assistant", None, tool_calls=[_call("call_3333", "Paris")])]
    assert row["prompt"] == [m("system", AGENT), m("user", WEATHER)] and json.loads(row["tools"]) == TOOLS
    assert check_dpo_pairs(exports.dpo_table(pairs), 0.2).passed


def test_the_dpo_check_fails_a_pair_that_differs_only_in_call_ids():
    rewards = tool_table([(tool_row("good", "call_1111"), 0.9), (tool_row("wrong-city", "call_3333", "Paris"), 0.1)])
    pairs, _ = build_pairs(rewards)
    dpo = exports.dpo_table(pairs).to_pylist()
    dpo[0]["rejected"] = [m("assistant", None, tool_calls=[_call("call_9999", "London", spaced=True)])]
    outcome = check_dpo_pairs(pa.Table.from_pylist(dpo, schema=exports.dpo_schema()), 0.2)
    assert not outcome.passed and outcome.metadata["pairs_identical"] == 1


def test_every_export_row_has_a_key_set_trl_accepts(reward_table):
    rewards = pa.concat_tables(
        [
            reward_table,
            tool_table([(tool_row("answered", "call_a1", answer="15 °C."), 0.95), (tool_row("calls", "call_b2"), 0.1)]).cast(
                reward_table.schema
            ),
        ]
    )
    pairs, _ = build_pairs(rewards)
    tables = {
        "sft": exports.sft_table(rewards),
        "kto": exports.kto_table(rewards),
        "grpo": exports.grpo_table(rewards),
        "dpo": exports.dpo_table(pairs),
    }
    for name, t in tables.items():
        assert t.num_rows, name
        for row in t.to_pylist():
            assert {k for k in row if k in TRL_KEYS} in TRL_KEY_SETS, (name, sorted(row))
