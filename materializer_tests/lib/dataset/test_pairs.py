"""DPO pair rules: margin, ties, identical text, splits, near-identical prompts, cap, order."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from materializer_assets.lib.dataset.build import build_reward_table
from materializer_assets.lib.dataset.checks import check_dpo_pairs
from materializer_assets.lib.dataset.pairs import PairConfig, build_pairs
from materializer_assets.lib.dataset.rewards import RewardConfig, RewardWeights
from materializer_assets.lib.dataset.splits import SplitConfig

from .builders import set_column, table, trace

ALL_TRAIN = SplitConfig(test_fraction=0.0, remove_duplicates=False, near_duplicates=None)
JUDGE_ONLY = RewardConfig(weights=RewardWeights(ragas=0.0, judge=1.0))


def rewarded(specs: list[tuple], split_config: SplitConfig = ALL_TRAIN) -> pa.Table:
    """specs: (trace_id, prompt, response, reward[, user[, system]]) → a reward_dataset table (reward = judge score)."""
    rows = []
    for spec in specs:
        trace_id, prompt, response, _ = spec[:4]
        user = spec[4] if len(spec) > 4 else f"user-{trace_id}"
        system = spec[5] if len(spec) > 5 else None
        rows.append(trace(trace_id, user=user, prompt=prompt, response=response, system=system))
    out, _ = build_reward_table(
        table(rows, judge=[spec[3] for spec in specs]), reward_config=JUDGE_ONLY, split_config=split_config
    )
    return out


def pair_ids(pairs: pa.Table) -> list[tuple[str, str]]:
    return list(zip(pairs.column("chosen_trace_id").to_pylist(), pairs.column("rejected_trace_id").to_pylist()))


Q = "How do I sort a dictionary by value in Python?"


def test_chosen_is_the_higher_reward_and_margin_is_the_difference():
    t = rewarded([("lo", Q, "Use a loop.", 0.3), ("hi", Q, "Use sorted(d.items(), key=lambda kv: kv[1]).", 0.9)])
    pairs, stats = build_pairs(t)
    assert pair_ids(pairs) == [("hi", "lo")]
    row = pairs.to_pylist()[0]
    assert row["margin"] == 0.6 and row["chosen_reward"] == 0.9 and row["rejected_reward"] == 0.3
    assert row["chosen"].startswith("Use sorted") and row["rejected"] == "Use a loop."
    assert row["prompt_messages"] == [{"role": "user", "content": Q, "tool_calls": None, "tool_call_id": None, "name": None}]
    assert row["chosen_message"]["content"] == row["chosen"] and row["rejected_message"]["role"] == "assistant"
    assert row["split"] == "train"
    assert stats.pairs == 1 and stats.prompt_groups == 1
    assert check_dpo_pairs(pairs, 0.2).passed


def test_margin_threshold_is_inclusive_and_exact():
    # 0.5 − 0.3 is 0.19999999999999998 in floating point; margins are rounded like rewards.
    t = rewarded([("a", Q, "A", 0.5), ("b", Q, "B", 0.3), ("c", Q, "C", 0.31)])
    pairs, _ = build_pairs(t, PairConfig(min_margin=0.2))
    assert pair_ids(pairs) == [("a", "b")]
    assert pairs.column("margin").to_pylist() == [0.2]
    pairs, _ = build_pairs(t, PairConfig(min_margin=0.21))
    assert pairs.num_rows == 0


def test_ties_are_never_emitted_even_with_min_margin_zero():
    t = rewarded([("a", Q, "A", 0.5), ("b", Q, "B", 0.5)])
    pairs, _ = build_pairs(t, PairConfig(min_margin=0.0))
    assert pairs.num_rows == 0


def test_identical_responses_modulo_case_and_whitespace_are_never_paired():
    t = rewarded([("a", Q, "Use sorted().", 0.9), ("b", Q, "  use   SORTED(). ", 0.1), ("c", Q, "No idea.", 0.2)])
    pairs, stats = build_pairs(t)
    assert pair_ids(pairs) == [("a", "c")]
    assert stats.skipped_identical == 1


def test_pairs_never_cross_splits():
    t = rewarded([("tr-hi", Q, "Good", 0.9), ("tr-lo", Q, "Bad", 0.1), ("te-hi", Q, "Great", 0.95), ("te-lo", Q, "Awful", 0.05)])
    t = set_column(t, "split", ["train", "train", "test", "test"])
    pairs, _ = build_pairs(t)
    assert sorted(zip(pairs.column("split").to_pylist(), pair_ids(pairs))) == [
        ("test", ("te-hi", "te-lo")),
        ("train", ("tr-hi", "tr-lo")),
    ]


def test_excluded_and_unrewarded_rows_never_pair():
    t = rewarded([("a", Q, "A", 0.9), ("b", Q, "B", 0.1), ("c", Q, "C", None)])
    t = set_column(t, "split", ["train", "excluded", "train"])
    pairs, stats = build_pairs(t)
    assert pairs.num_rows == 0 and stats.rows == 1


def test_near_identical_prompts_pair_but_different_ones_do_not():
    t = rewarded(
        [
            ("a", Q, "Use sorted with a key.", 0.9),
            ("b", "how do I sort a dictionary by value in Python 3", "Dictionaries cannot be sorted.", 0.2),
            ("c", "How do I sort a dictionary by key in Python?", "Use sorted(d).", 0.1),
            ("d", "How do I sort a list of tuples by the second element?", "Use key=itemgetter(1).", 0.1),
        ]
    )
    pairs, _ = build_pairs(t)
    assert pair_ids(pairs) == [("a", "b")]
    pairs, _ = build_pairs(t, PairConfig(near_duplicates=None))  # exact (normalized) prompts only
    assert pairs.num_rows == 0


def test_different_system_prompts_are_different_prompts():
    t = rewarded([("a", Q, "A", 0.9, "u1", "Answer in French."), ("b", Q, "B", 0.1, "u2", "Answer in English.")])
    pairs, _ = build_pairs(t)
    assert pairs.num_rows == 0
    t = rewarded([("a", Q, "A", 0.9, "u1", "Answer in French."), ("b", Q, "B", 0.1, "u2", "answer in  french.")])
    pairs, _ = build_pairs(t)
    assert pair_ids(pairs) == [("a", "b")]
    assert pairs.column("prompt_messages").to_pylist()[0][0] == {
        "role": "system", "content": "Answer in French.", "tool_calls": None, "tool_call_id": None, "name": None
    }


def test_cap_per_prompt_keeps_the_largest_margins():
    rewards = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    t = rewarded([(f"r{i:02d}", Q, f"Response {i}", r) for i, r in enumerate(rewards)])
    pairs, stats = build_pairs(t, PairConfig(max_pairs_per_prompt=3))
    assert pair_ids(pairs) == [("r00", "r10"), ("r00", "r09"), ("r01", "r10")]
    assert pairs.column("margin").to_pylist() == [1.0, 0.9, 0.9]
    assert stats.groups_capped == 1
    assert check_dpo_pairs(pairs, 0.2).passed


def test_a_large_group_is_cheap_and_respects_the_cap():
    specs = [(f"r{i:04d}", Q, f"Response {i}", round(i / 1999, 6)) for i in range(2000)]
    pairs, _ = build_pairs(rewarded(specs), PairConfig(max_pairs_per_prompt=5))
    assert pairs.num_rows == 5
    assert pair_ids(pairs)[0] == ("r1999", "r0000")


def test_output_is_deterministic_whatever_the_row_order():
    specs = []
    for k, question in enumerate(["Q one about cats?", "Q two about dogs and their habits?", "Q three about birds?"]):
        specs += [(f"{k}-{i}", question, f"answer {k} {i}", r) for i, r in enumerate([0.95, 0.6, 0.35, 0.1])]
    first, _ = build_pairs(rewarded(specs))
    shuffled = specs[:]
    random.Random(3).shuffle(shuffled)
    second, _ = build_pairs(rewarded(shuffled))
    assert first.to_pylist() == second.to_pylist()
    assert first.num_rows == 3 * 4  # 6 pairs reach the 0.2 margin in each group; the cap keeps 4


def test_check_dpo_pairs_fails_on_bad_pairs():
    bad = pa.table(
        {
            "chosen": ["Same", "A", "B"],
            "rejected": [" same ", "C", "D"],
            "margin": [0.5, 0.1, 0.3],
            "chosen_reward": [0.9, 0.5, 0.9],
            "rejected_reward": [0.4, 0.4, 0.1],
            "chosen_trace_id": ["t1", "t2", "t3"],
        }
    )
    outcome = check_dpo_pairs(bad, 0.2)
    assert not outcome.passed
    assert outcome.metadata["pairs_identical"] == 1
    assert outcome.metadata["pairs_below_min_margin"] == 1
    assert outcome.metadata["pairs_inconsistent_margin"] == 1  # t3: 0.9 − 0.1 ≠ 0.3
    assert "t1: identical" in outcome.metadata["examples"]


def test_invalid_pair_configs_are_rejected():
    with pytest.raises(ValueError):
        PairConfig(min_margin=-0.1)
    with pytest.raises(ValueError):
        PairConfig(max_pairs_per_prompt=0)


@pytest.mark.parametrize("seed", [11, 12])
def test_random_cells_produce_only_valid_pairs(seed):
    rng = random.Random(seed)
    questions = ["Why is the sky blue?", "How do magnets work?", "What is a prime number?", "Explain photosynthesis."]
    specs = []
    for i in range(120):
        question = rng.choice(questions)
        if rng.random() < 0.3:
            question = question.lower().rstrip("?.") + " ?"
        reward = rng.choice([None, round(rng.random(), 2)])
        specs.append((f"t-{i:03d}", question, rng.choice(["Yes.", "No.", "Maybe.", "It depends.", "yes."]), reward, f"user-{rng.randrange(30)}"))
    t = rewarded(specs, SplitConfig(test_fraction=0.5, near_duplicates=None))
    pairs, stats = build_pairs(t, PairConfig(max_pairs_per_prompt=3))
    split_of = dict(zip(t.column("trace_id").to_pylist(), t.column("split").to_pylist()))
    reward_of = dict(zip(t.column("trace_id").to_pylist(), t.column("final_reward").to_pylist()))
    assert check_dpo_pairs(pairs, 0.2).passed
    for row in pairs.to_pylist():
        assert split_of[row["chosen_trace_id"]] == split_of[row["rejected_trace_id"]] == row["split"]
        assert reward_of[row["chosen_trace_id"]] - reward_of[row["rejected_trace_id"]] == pytest.approx(row["margin"])
        assert row["margin"] >= 0.2
        assert row["chosen"].strip().lower() != row["rejected"].strip().lower()
    per_group = {}
    for group in pairs.column("prompt_group").to_pylist():
        per_group[group] = per_group.get(group, 0) + 1
    assert max(per_group.values()) <= 3 and stats.pairs == pairs.num_rows > 0


def test_pairable_rows_keep_only_what_pairing_uses_and_pair_the_same():
    import pyarrow as pa

    from materializer_assets.lib.dataset.pairs import PAIR_INPUT_COLUMNS, build_pairs, pairable_rows

    cell = pa.table(
        {
            "trace_id": ["a", "b", "c", "d", "e"],
            "observation_id": [None] * 5,
            "split": ["train", "train", "excluded", "test", "train"],
            "final_reward": [0.9, 0.1, 0.8, None, 0.5],
            "messages": pa.nulls(5, pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
            "prompt": ["How do I sort?"] * 5,
            "response": ["Use sorted().", "No idea.", "Use sort().", "Maybe.", "sorted() or list.sort()."],
            "tools": [None] * 5,
        }
    ).select(list(PAIR_INPUT_COLUMNS))
    kept = pairable_rows(cell.to_batches(max_chunksize=2), cell.schema)
    assert kept.column("trace_id").to_pylist() == ["a", "b", "e"]  # excluded and unrewarded rows never held
    assert build_pairs(kept)[0].equals(build_pairs(cell)[0])
    assert pairable_rows(iter([]), cell.schema).num_rows == 0
