"""The near-duplicate index in a real local lake: what a cell reads, publishes and checks again
when another cell was published while it planned (lib/dataset/near_dup_lake.py)."""

from __future__ import annotations

import pyarrow as pa

from materializer_assets.lib.dataset import near_dup_lake
from materializer_assets.lib.dataset.near_duplicates import NearDuplicateConfig, cross_split_matches
from materializer_assets.lib.dataset.splits import SplitConfig, plan_splits
from materializer_assets.lib.lake import ParquetLake
from materializer_assets.lib.storage import resolve

from .builders import table, trace
from .test_splits import users

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
