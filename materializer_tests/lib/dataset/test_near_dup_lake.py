"""The near-duplicate index in a real local lake: what a cell reads, publishes and checks again
when another cell was published while it planned (lib/dataset/near_dup_lake.py)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from materializer_assets.lib.dataset import near_dup_lake
from materializer_assets.lib.dataset.near_duplicates import NearDuplicateConfig, cross_split_matches
from materializer_assets.lib.dataset.splits import SplitConfig, plan_splits
from materializer_assets.lib.lake import ParquetLake
from materializer_assets.lib.storage import resolve

from .builders import table, trace
from .test_splits import QUESTIONS, users

CONFIG = SplitConfig(test_fraction=0.5)
NEAR = CONFIG.near_duplicates
MODEL = "glm-5-32b"
QUESTION = "How do I read a large CSV file in chunks with pandas without running out of memory?"
EDITED = QUESTION.replace("?", " today?")


def _cell(split: str, prompt: str, prefix: str) -> pa.Table:
    (user,) = users(split, 1, CONFIG, prefix=prefix)
    return table([trace(f"{prefix}-1", user=user, prompt=prompt)])


def _publish(lake: ParquetLake, day: str, rows: pa.Table, reference=None):
    plan = plan_splits([rows], CONFIG, reference=reference)
    near_dup_lake.publish_cell(lake, day, MODEL, plan, rows.select(["trace_id", "observation_id", "user_id"]).to_batches(), NEAR)
    return plan


def test_a_cell_published_while_planning_is_found_only_when_it_conflicts(tmp_path):
    lake = ParquetLake(resolve(str(tmp_path / "lake")))
    train_rows = _cell("train", QUESTION, "a")
    # A reads the index (empty) and plans; meanwhile B publishes a test row near A's train row
    reference, metadata, seen = near_dup_lake.load_other_cells(lake, "2026-04-18", MODEL, NEAR)
    assert metadata["near_dup_index_cells_read"] == 0 and seen == {}
    plan_a = _publish(lake, "2026-04-18", train_rows, reference)
    _publish(lake, "2026-04-19", _cell("test", EDITED, "b"))
    assert near_dup_lake.conflicts_since(lake, "2026-04-18", MODEL, seen, plan_a, NEAR) == (1, 1)

    # planned again against B: A's train row is dropped, and nothing is in conflict any more
    reference, metadata, seen = near_dup_lake.load_other_cells(lake, "2026-04-18", MODEL, NEAR)
    assert metadata["near_dup_index_cells_read"] == 1 and len(reference.test_sig) == 1
    plan_a = _publish(lake, "2026-04-18", train_rows, reference)
    assert plan_a.stats.excluded_near_duplicate_of_test_other_cell == 1
    assert near_dup_lake.conflicts_since(lake, "2026-04-18", MODEL, seen, plan_a, NEAR) == (0, 0)

    # B re-published (another version) with an unrelated prompt: changed, but no conflict
    _publish(lake, "2026-04-19", _cell("test", "Recommend three board games for a family.", "b"))
    plan_a = _publish(lake, "2026-04-18", train_rows)
    assert near_dup_lake.conflicts_since(lake, "2026-04-18", MODEL, seen, plan_a, NEAR) == (1, 0)


def test_cross_split_matches_counts_only_pairs_across_splits():
    def published(split: str, prompt: str, prefix: str):
        return plan_splits([_cell(split, prompt, prefix)], CONFIG).published

    train, test = published("train", QUESTION, "a"), published("test", EDITED, "b")
    assert cross_split_matches(train, test, NEAR) == 1
    assert cross_split_matches(test, train, NEAR) == 1
    assert cross_split_matches(train, published("train", EDITED, "c"), NEAR) == 0  # same split: no leak
    assert cross_split_matches(train, published("test", "Plan a two day itinerary for Kyoto.", "d"), NEAR) == 0
    assert cross_split_matches(train, test, NearDuplicateConfig(threshold=1.0)) == 0


def _plan_of(rows: pa.Table, before_publishing=None):
    """A ``plan`` for plan_against_index that runs ``before_publishing(attempt)`` after planning."""
    attempts = []

    def plan(reference):
        attempts.append(reference)
        made = plan_splits([rows], CONFIG, reference=reference)
        if before_publishing is not None:
            before_publishing(len(attempts))
        return made

    return plan, attempts


def test_plan_against_index_plans_again_after_a_conflicting_cell_and_reports_it(tmp_path):
    lake = ParquetLake(resolve(str(tmp_path / "lake")))
    rows = _cell("train", QUESTION, "a")
    other = _cell("test", EDITED, "b")
    # B is published while A plans the first time (after A read the index)
    plan, attempts = _plan_of(rows, lambda attempt: attempt == 1 and _publish(lake, "2026-04-19", other))
    logged = []
    metadata = near_dup_lake.plan_against_index(
        lake, "2026-04-18", MODEL, NEAR, plan, lambda: rows.select(["trace_id", "observation_id", "user_id"]).to_batches(), logged.append
    )
    assert len(attempts) == 2 and len(attempts[1].test_sig) == 1
    assert metadata["near_dup_plan_attempts"] == 2 and metadata["near_dup_index_cells_read"] == 1
    assert metadata["near_dup_prompts_in_conflict_with_cells_planned_meanwhile"] == 0
    assert len(logged) == 1 and "planning again (2 of 3)" in logged[0]
    # the index now holds no train entry of A (its train row near B's test row was dropped)
    index = lake.open_cell(near_dup_lake.CellAddress(near_dup_lake.INDEX_DATASET, "2026-04-18", MODEL)).to_table()
    assert index.num_rows == 0


def test_plan_against_index_gives_up_with_a_named_error(tmp_path):
    lake = ParquetLake(resolve(str(tmp_path / "lake")))
    questions = [QUESTION, *QUESTIONS[1:3]]
    train_users = users("train", 3, CONFIG, prefix="a")
    rows = table([trace(f"a-{i}", user=train_users[i], prompt=q) for i, q in enumerate(questions)])
    (test_user,) = users("test", 1, CONFIG, prefix="b")

    def republish_b(attempt):
        # during every plan a new version of B appears, near another of A's train rows
        edited = questions[attempt - 1].replace("?", " today?")
        _publish(lake, "2026-04-19", table([trace(f"b-{attempt}", user=test_user, prompt=edited)]))

    plan, attempts = _plan_of(rows, republish_b)
    ids = lambda: rows.select(["trace_id", "observation_id", "user_id"]).to_batches()  # noqa: E731
    with pytest.raises(near_dup_lake.NearDuplicateIndexConflict, match="3 plans"):
        near_dup_lake.plan_against_index(lake, "2026-04-18", MODEL, NEAR, plan, ids, attempts=3)
    assert len(attempts) == 3
