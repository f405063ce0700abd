"""Asset-check functions and the metadata helpers (histogram, label × split)."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from materializer_assets.lib.dataset.checks import (
    check_consent_lineage,
    check_dpo_pairs,
    check_final_reward_range,
    check_no_group_in_both_splits,
)
from materializer_assets.lib.dataset.summary import RewardSummary, histogram_markdown, reward_histogram


def test_final_reward_range_passes_on_nulls_and_bounds_and_fails_outside():
    good = pa.table({"trace_id": ["a", "b", "c", "d"], "final_reward": [0.0, 1.0, None, 0.5]})
    outcome = check_final_reward_range(good)
    assert outcome.passed and outcome.metadata["rows_null"] == 1
    bad = pa.table({"trace_id": ["a", "b", "c", "d"], "final_reward": [1.0000001, -0.2, math.nan, 0.3]})
    outcome = check_final_reward_range(bad)
    assert not outcome.passed
    assert outcome.metadata["rows_out_of_range"] == 3
    assert outcome.metadata["examples"].startswith("a=1.0000001")


def test_group_check_ignores_excluded_rows_and_finds_straddlers():
    t = pa.table(
        {
            "split_key": ["user_id:a", "user_id:a", "user_id:b", "user_id:b", "user_id:c", None],
            "split": ["train", "excluded", "test", "test", "train", "test"],
            "user_id": ["a", "a", "b", "b", "c", "c"],
        }
    )
    assert check_no_group_in_both_splits(t).passed
    outcome = check_no_group_in_both_splits(t, column="user_id")  # user c: train by key, test as a null-key row
    assert not outcome.passed and outcome.metadata["groups_in_both_splits"] == 1
    assert outcome.metadata["examples"] == ""  # a raw user id never goes into metadata
    outcome = check_no_group_in_both_splits(t, column="user_id", pseudonymize=lambda user: f"hash-of-{user}")
    assert outcome.metadata["examples"] == "hash-of-c"
    assert "c" not in outcome.description.split()
    leaking = pa.table({"split_key": ["5f2a", "5f2a"], "split": ["train", "test"]})
    outcome = check_no_group_in_both_splits(iter(leaking.to_batches(max_chunksize=1)))
    assert not outcome.passed and outcome.metadata["groups_in_both_splits"] == 1
    assert outcome.metadata["examples"] == "5f2a"  # split keys are salted hashes already


def test_consent_lineage_needs_true_and_a_granting_source(tmp_path):
    good = pa.table({"consent": [True, True, True, True], "consent_source": ["registry", "column", "tag", "metadata"]})
    assert check_consent_lineage(good).passed
    bad = pa.table({"consent": [True, False, None, True], "consent_source": ["column", "column", "column", None]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    outcome = check_consent_lineage(ds.dataset(tmp_path / "bad.parquet"))
    assert not outcome.passed
    assert outcome.metadata == {"rows": 4, "rows_without_consent": 2, "rows_without_consent_source": 1}
    assert not check_consent_lineage(pa.table({"consent": [True], "consent_source": ["none"]})).passed


def test_dpo_check_on_conversational_columns():
    chat = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    pairs = pa.table(
        {
            "chosen": pa.array([[{"role": "assistant", "content": "Yes"}], [{"role": "assistant", "content": "Same"}]], chat),
            "rejected": pa.array([[{"role": "assistant", "content": "No"}], [{"role": "assistant", "content": "SAME"}]], chat),
            "margin": [0.4, 0.4],
        }
    )
    outcome = check_dpo_pairs(pairs, 0.2)
    assert not outcome.passed and outcome.metadata["pairs_identical"] == 1
    assert check_dpo_pairs(pairs.slice(0, 1), 0.2).passed
    assert not check_dpo_pairs(pairs.slice(0, 1), 0.5).passed


def test_histogram_bins_include_their_lower_edge_and_the_last_includes_one():
    values = [0.0, 0.1, 0.3, 0.6 * 0.5 + 0.4 * 0.25, 0.7, 0.9999, 1.0, None, 1.5]
    histogram = reward_histogram(pa.array(values))
    assert histogram["edges"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert histogram["counts"] == [1, 1, 0, 1, 1, 0, 0, 1, 0, 2]
    assert histogram["null"] == 1 and histogram["out_of_range"] == 1
    text = histogram_markdown(histogram)
    assert "| [0.9, 1.0] | 2 |" in text and "| null | 1 |" in text


def test_summary_counts_labels_by_split_across_batches():
    summary = RewardSummary()
    for part in (
        pa.table({"final_reward": [0.9, None], "label": ["preferred", None], "split": ["train", "test"], "trace_id": ["a", "b"],
                  "user_id": ["u-secret", "u-secret"], "prompt": ["PROMPT-TEXT", "p"], "response": ["RESPONSE-TEXT", "r"]}),
        pa.table({"final_reward": [0.1, 0.5], "label": ["non_preferred", "neutral"], "split": ["excluded", "train"], "trace_id": ["c", "d"],
                  "user_id": ["u-other", None], "prompt": ["p", "p"], "response": ["r", "r"]}),
    ):
        summary.add(part)
    meta = summary.as_metadata()
    assert meta["rows"] == 4
    assert meta["rows_by_label_and_split"] == {
        "preferred": {"train": 1, "test": 0, "excluded": 0},
        "neutral": {"train": 1, "test": 0, "excluded": 0},
        "non_preferred": {"train": 0, "test": 0, "excluded": 1},
        "unlabeled": {"train": 0, "test": 1, "excluded": 0},
    }
    assert meta["reward_histogram"]["counts"][9] == 1 and meta["reward_histogram"]["null"] == 1
    assert "| unlabeled | 0 | 1 | 0 |" in meta["rows_by_label_and_split_md"]
    # Dagster's event log cannot be erased (DESIGN §10): counts only, no row contents, no preview.
    assert "preview_md" not in meta
    text = json.dumps(meta)
    for secret in ("u-secret", "u-other", "PROMPT-TEXT", "RESPONSE-TEXT"):
        assert secret not in text


def test_an_empty_summary_is_valid_metadata():
    meta = RewardSummary().as_metadata()
    assert meta["rows"] == 0 and sum(meta["reward_histogram"]["counts"]) == 0
    assert meta["rows_unlabeled"] == 0 and meta["rows_unlabeled_by_reason"] == {}
    assert set(meta) == {"rows", "rows_unlabeled", "rows_unlabeled_by_reason", "rows_by_label_and_split", "reward_histogram",
                         "rows_by_label_and_split_md", "reward_histogram_md"}


def test_summary_counts_unlabeled_rows_by_reason():
    summary = RewardSummary()
    summary.add(pa.table({"final_reward": [None, None, 0.9, None], "label": [None, None, "preferred", None],
                          "split": ["train", "test", "train", "excluded"],
                          "unlabeled_reason": ["ragas_error", "ragas_degenerate+judge_error", None, "ragas_error"]}))
    meta = summary.as_metadata()
    assert meta["rows_unlabeled"] == 3
    assert meta["rows_unlabeled_by_reason"] == {"judge_error": 1, "ragas_degenerate": 1, "ragas_error": 2}
