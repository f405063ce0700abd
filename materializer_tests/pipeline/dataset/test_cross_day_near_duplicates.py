"""Near-duplicate decontamination across days, in both materialization orders, through real runs.

Day A has train users asking questions; day B has test users asking the same
questions slightly edited (Jaccard ≥ 0.85 of byte 5-grams). Whichever day is
materialized first, no published test row ends up with a near-duplicate
published train row: B first → A's late train rows are dropped from training
(``near_duplicate_of_test``); A first → B's test rows are excluded
(``near_duplicate_of_train``). Both show in reward_dataset's metadata.
"""

import json
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds

from materializer_assets.lib.dataset import near_dup_lake
from materializer_assets.lib.dataset.splits import SplitConfig, group_split
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_tests.pipeline.results import materialization_metadata

from .test_dataset_assets import ASSETS, MODEL, _iceberg_rows, _resources

DAY_A, DAY_B = "2026-04-18", "2026-04-19"
QUESTIONS = [
    "How do I sort a list of dictionaries by a key in Python?",
    "What is the difference between a process and a thread in an operating system?",
    "How can I read a large CSV file in chunks with pandas without running out of memory?",
]
EDITED = [q.replace("?", " today?") for q in QUESTIONS]
CONFIG = SplitConfig(test_fraction=0.3)


def _users(split: str, count: int, prefix: str) -> list[str]:
    found, i = [], 0
    while len(found) < count:
        if group_split(f"user_id:{prefix}-{i}", CONFIG) == split:
            found.append(f"{prefix}-{i}")
        i += 1
    return found


TRAIN_USERS, TEST_USERS = _users("train", 3, "tr"), _users("test", 3, "te")


def _chat(trace_id, day, user, question, minute):
    return {
        "id": trace_id,
        "timestamp": f"{day}T10:{minute:02d}:00Z",
        "model": MODEL,
        "user_id": user,
        "consent": True,
        "contexts": ["Some retrieved context."],
        "latency_ms": 1000,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": f"Answer {trace_id}. [[reply:score=0.8]]"}],
    }


def _records() -> list[dict]:
    rows = [_chat(f"a-{i}", DAY_A, TRAIN_USERS[i], q, i) for i, q in enumerate(QUESTIONS)]
    rows += [_chat(f"b-{i}", DAY_B, TEST_USERS[i], q, i) for i, q in enumerate(EDITED)]
    rows.append(_chat("a-own", DAY_A, TEST_USERS[0], "Tell me a fact about octopuses and their three hearts.", 30))
    rows.append(_chat("b-own", DAY_B, TRAIN_USERS[0], "Which planets in the solar system have rings around them?", 30))
    return rows


def _setup(tmp_path: Path, server) -> tuple[dict, str]:
    source = tmp_path / "source"
    source.mkdir()
    with (source / "traces.jsonl").open("w") as out:
        for record in _records():
            out.write(json.dumps(record) + "\n")
    warehouse = str(tmp_path / "wh")
    return _resources(str(source), warehouse, server, split_test_fraction=CONFIG.test_fraction), warehouse


def _materialize(resources: dict, day: str):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_DIMENSION, [MODEL])
    result = dg.materialize(ASSETS, partition_key=cell_key(day, MODEL), resources=resources, instance=instance,
                            raise_on_error=False)
    assert result.success
    return materialization_metadata(result, "reward_dataset")


def _run(tmp_path: Path, server, order: list[str]):
    resources, warehouse = _setup(tmp_path, server)
    results = {day: _materialize(resources, day) for day in order}
    rows = {r["trace_id"]: (r["split"], r["excluded_reason"]) for r in _iceberg_rows(warehouse)}
    return rows, results, warehouse


def _no_test_row_has_a_train_near_duplicate(rows):
    for i in range(len(QUESTIONS)):
        a, b = rows[f"a-{i}"], rows[f"b-{i}"]
        assert not (a[0] == "train" and b[0] == "test"), (i, a, b)


def test_train_day_first_excludes_the_later_test_rows(tmp_path, openai_server_session):
    rows, meta, warehouse = _run(tmp_path, openai_server_session, [DAY_A, DAY_B])
    _no_test_row_has_a_train_near_duplicate(rows)
    assert all(rows[f"a-{i}"] == ("train", None) for i in range(3))
    assert all(rows[f"b-{i}"] == ("excluded", "near_duplicate_of_train") for i in range(3))
    assert rows["a-own"] == ("test", None) and rows["b-own"] == ("train", None)
    assert meta[DAY_B]["rows_excluded_near_duplicate_of_other_cell_train"] == 3
    assert meta[DAY_B]["rows_dropped_from_train_near_duplicate_of_other_cell_test"] == 0
    assert meta[DAY_B]["near_dup_index_cells_read"] == 1
    # the index holds hashes and ids only, one row per kept train/test row of each cell
    index = ds.dataset(str(Path(warehouse) / "near-dup-index"), format="parquet").to_table()
    assert set(index.column_names) >= {"trace_id", "user_id", "split", "signature"}
    assert not {"prompt", "messages", "response"} & set(index.column_names)


def test_test_day_first_drops_the_late_train_rows(tmp_path, openai_server_session):
    rows, meta, _ = _run(tmp_path, openai_server_session, [DAY_B, DAY_A])
    _no_test_row_has_a_train_near_duplicate(rows)
    assert all(rows[f"b-{i}"] == ("test", None) for i in range(3))
    assert all(rows[f"a-{i}"] == ("excluded", "near_duplicate_of_test") for i in range(3))
    assert rows["a-own"] == ("test", None) and rows["b-own"] == ("train", None)
    assert meta[DAY_A]["rows_dropped_from_train_near_duplicate_of_other_cell_test"] == 3
    assert meta[DAY_A]["rows_excluded_near_duplicate_of_other_cell_train"] == 0


def test_a_re_run_replaces_the_cells_index_entries(tmp_path, openai_server_session):
    # A, B, then A again: A's re-run reads B's index (B's test rows were excluded, so nothing to
    # collide with) and replaces its own entries; the outcome is unchanged and still clean.
    rows, meta, warehouse = _run(tmp_path, openai_server_session, [DAY_A, DAY_B, DAY_A])
    _no_test_row_has_a_train_near_duplicate(rows)
    assert all(rows[f"a-{i}"] == ("train", None) for i in range(3))
    index = ds.dataset(str(Path(warehouse) / "near-dup-index"), format="parquet", partitioning="hive").to_table()
    ids = index.column("trace_id").to_pylist()
    assert len(ids) == len(set(ids))  # no stale copies of A's entries


def test_cells_planned_at_the_same_time_end_as_if_one_ran_first(tmp_path, openai_server_session, monkeypatch):
    # A reads the index (nothing yet), then B runs from start to end before A publishes anything:
    # B plans blind to A too, as two cells of a backfill can. A then publishes its index entries,
    # finds B's (published since it read the index) in conflict with its plan, and plans again:
    # the end state is the one of "B first", with no test row near a train row.
    resources, warehouse = _setup(tmp_path, openai_server_session)
    real_load = near_dup_lake.load_other_cells
    meta = {}

    def load_then_run_the_other_cell(lake, day, slug, config):
        loaded = real_load(lake, day, slug, config)
        if day == DAY_A and DAY_B not in meta:
            meta[DAY_B] = _materialize(resources, DAY_B)
        return loaded

    monkeypatch.setattr(near_dup_lake, "load_other_cells", load_then_run_the_other_cell)
    meta[DAY_A] = _materialize(resources, DAY_A)
    rows = {r["trace_id"]: (r["split"], r["excluded_reason"]) for r in _iceberg_rows(warehouse)}
    _no_test_row_has_a_train_near_duplicate(rows)
    assert all(rows[f"b-{i}"] == ("test", None) for i in range(3))
    assert all(rows[f"a-{i}"] == ("excluded", "near_duplicate_of_test") for i in range(3))
    assert meta[DAY_B]["near_dup_plan_attempts"] == 1
    assert meta[DAY_B]["near_dup_index_cells_read"] == 0
    assert meta[DAY_A]["near_dup_plan_attempts"] == 2
    assert meta[DAY_A]["near_dup_index_cells_published_while_planning"] == 0  # the second plan read B
    assert meta[DAY_A]["rows_dropped_from_train_near_duplicate_of_other_cell_test"] == 3
    # the index agrees with the table: A's dropped rows are not in it
    index = ds.dataset(str(Path(warehouse) / "near-dup-index"), format="parquet", partitioning="hive").to_table()
    assert not {f"a-{i}" for i in range(3)} & set(index.column("trace_id").to_pylist())
