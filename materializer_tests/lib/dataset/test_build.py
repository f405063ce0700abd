"""The reward_dataset builder: score join, consent guard, lineage, streaming, Parquet and Iceberg."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib import iceberg as ice
from materializer_assets.lib.dataset import exports
from materializer_assets.lib.dataset.build import (
    DuplicateScoreRows,
    RewardDatasetBuilder,
    RewardLineage,
    ScoreLookup,
    ScoresInCellOrder,
    build_reward_table,
)
from materializer_assets.lib.dataset.checks import (
    check_consent_lineage,
    check_final_reward_range,
    check_no_group_in_both_splits,
)
from materializer_assets.lib.dataset.rewards import RewardConfig, RewardInputError
from materializer_assets.lib.dataset.schema import REWARD_DATASET_SCHEMA
from materializer_assets.lib.dataset.splits import SplitConfig
from materializer_assets.lib.normalize import ReadOptions, SourceRecord, build_examples
from materializer_assets.lib.scoring.schema import JUDGE_SCORES_SCHEMA, RAGAS_SCORES_SCHEMA
from materializer_assets.lib.stages import ConsentViolation
from materializer_tests.lib.iceberg_helpers import file_metrics, id_and_text_columns

from .builders import EXTRACTED_AT, by_trace, set_column, table, trace

JUDGE_MODEL = "qwen3-judge"
JUDGE_PROMPT = "judge-v3"
RAGAS_VERSION = "ragas-0.4.3-0123456789"
SNAPSHOT = 4242424242424242424
JUDGE_ALONE = RewardConfig(use_ragas=False)  # Ragas switched off explicitly: the judge alone labels rows
QUESTIONS = [
    "What is the capital of France?",
    "How do I reverse a list in Python?",
    "Explain TCP versus UDP.",
    "Write a haiku about autumn.",
    "Why is the sky blue?",
    "What is a monad?",
]


def judge_rows(traces: pa.Table, scores: dict[str, tuple[float | None, str]], content_hash: dict[str, str] | None = None) -> pa.Table:
    rows = []
    for row in traces.to_pylist():
        if row["trace_id"] not in scores:
            continue
        score, status = scores[row["trace_id"]]
        rows.append(
            {
                "trace_id": row["trace_id"],
                "observation_id": row["observation_id"],
                "content_hash": (content_hash or {}).get(row["trace_id"], row["content_hash"]),
                "date": row["date"],
                "model_slug": row["model_slug"],
                "judge_score": score,
                "judge_model": JUDGE_MODEL,
                "prompt_version": JUDGE_PROMPT,
                "status": status,
            }
        )
    return pa.Table.from_pylist(rows, schema=JUDGE_SCORES_SCHEMA)


def ragas_rows(traces: pa.Table, scores: dict[str, tuple[float | None, str]]) -> pa.Table:
    rows = []
    for row in traces.to_pylist():
        if row["trace_id"] not in scores:
            continue
        reward, status = scores[row["trace_id"]]
        rows.append(
            {
                "trace_id": row["trace_id"],
                "observation_id": row["observation_id"],
                "content_hash": row["content_hash"],
                "date": row["date"],
                "model_slug": row["model_slug"],
                "faithfulness": reward,
                "answer_relevancy": reward,
                "context_precision": reward,
                "faithfulness_status": status,
                "answer_relevancy_status": status,
                "context_precision_status": status,
                "ragas_reward": reward,
                "status": status,
                "prompt_version": RAGAS_VERSION,
            }
        )
    return pa.Table.from_pylist(rows, schema=RAGAS_SCORES_SCHEMA)


@pytest.fixture
def traces() -> pa.Table:
    return table([trace(f"t-{i}", user=f"user-{i % 4}", prompt=q, response=f"Answer {i}", hour=i) for i, q in enumerate(QUESTIONS)])


def test_scores_are_joined_by_trace_observation_and_content_hash(traces):
    judge = judge_rows(
        traces,
        {"t-0": (0.9, "ok"), "t-1": (None, "unparseable"), "t-2": (0.2, "ok"), "t-3": (0.5, "ok")},
        content_hash={"t-3": "0" * 32},  # scored an earlier version of the content: must not apply
    )
    ragas = ragas_rows(traces, {"t-0": (0.8, "ok"), "t-1": (0.7, "ok"), "t-2": (None, "not_applicable")})
    out, meta = build_reward_table(
        traces, scores=ScoreLookup(judge=judge, ragas=ragas), lineage=RewardLineage(iceberg_snapshot_id=SNAPSHOT)
    )
    assert out.schema == REWARD_DATASET_SCHEMA
    rows = by_trace(out)
    assert out.column("trace_id").to_pylist() == [f"t-{i}" for i in range(6)]  # input order kept

    assert rows["t-0"]["final_reward"] == pytest.approx(0.6 * 0.8 + 0.4 * 0.9)
    assert rows["t-0"]["reward_source"] == "ragas+judge" and rows["t-0"]["label"] == "preferred"
    assert (rows["t-0"]["judge_model"], rows["t-0"]["prompt_version"], rows["t-0"]["ragas_version"]) == (JUDGE_MODEL, JUDGE_PROMPT, RAGAS_VERSION)
    assert (rows["t-0"]["judge_status"], rows["t-0"]["ragas_status"]) == ("ok", "ok")

    assert rows["t-0"]["unlabeled_reason"] is None

    # A scorer that did not give an ok score leaves the row without reward and label, whatever the other said.
    assert rows["t-1"]["judge_status"] == "unparseable" and rows["t-1"]["ragas_reward"] == 0.7
    assert (rows["t-1"]["final_reward"], rows["t-1"]["label"], rows["t-1"]["reward_source"]) == (None, None, None)
    assert rows["t-1"]["unlabeled_reason"] == "judge_unparseable"
    assert rows["t-2"]["ragas_status"] == "not_applicable" and rows["t-2"]["judge_score"] == 0.2
    assert (rows["t-2"]["final_reward"], rows["t-2"]["label"]) == (None, None)
    assert rows["t-2"]["unlabeled_reason"] == "ragas_not_applicable"

    for unscored in ("t-3", "t-4"):
        assert rows[unscored]["judge_score"] is None and rows[unscored]["judge_status"] is None
        assert rows[unscored]["final_reward"] is None and rows[unscored]["label"] is None
        assert rows[unscored]["unlabeled_reason"] == "ragas_not_scored+judge_not_scored"

    for row in rows.values():
        assert row["iceberg_snapshot_id"] == SNAPSHOT
        assert row["consent"] is True and row["consent_source"] == "column"
        assert row["reward_spec"] == RewardConfig().spec() and row["split_spec"] == SplitConfig().spec()
    assert meta["rows"] == 6
    assert sum(meta["rows_by_label_and_split"]["unlabeled"].values()) == meta["rows_unlabeled"] == 5
    assert meta["rows_unlabeled_by_reason"] == {
        "judge_not_scored": 3,
        "judge_unparseable": 1,
        "ragas_not_applicable": 1,
        "ragas_not_scored": 3,
    }
    assert meta["reward_scorers"] == "ragas+judge" and meta["reward_scorers_left_out"] == {}


def test_switching_ragas_off_lets_the_judge_alone_label_and_says_so(traces):
    judge = judge_rows(traces, {"t-0": (0.9, "ok"), "t-1": (None, "error"), "t-2": (0.2, "ok")})
    ragas = ragas_rows(traces, {"t-0": (None, "error"), "t-1": (0.7, "ok"), "t-2": (None, "degenerate")})
    out, meta = build_reward_table(traces, reward_config=JUDGE_ALONE, scores=ScoreLookup(judge=judge, ragas=ragas))
    rows = by_trace(out)
    assert (rows["t-0"]["final_reward"], rows["t-0"]["label"], rows["t-0"]["reward_source"]) == (0.9, "preferred", "judge")
    assert (rows["t-2"]["final_reward"], rows["t-2"]["label"], rows["t-2"]["reward_source"]) == (0.2, "non_preferred", "judge")
    assert rows["t-0"]["ragas_status"] == "error"  # still recorded, just not counted
    assert rows["t-1"]["final_reward"] is None and rows["t-1"]["unlabeled_reason"] == "judge_error"
    assert meta["reward_scorers"] == "judge" and meta["reward_scorers_left_out"] == {"ragas": "switched_off"}
    assert meta["rows_unlabeled_by_reason"] == {"judge_error": 1, "judge_not_scored": 3}
    assert '"scorers":["judge"]' in rows["t-0"]["reward_spec"]


def test_duplicate_score_rows_are_a_named_error(traces):
    judge = judge_rows(traces, {"t-0": (0.9, "ok")})
    with pytest.raises(DuplicateScoreRows):
        ScoreLookup(judge=pa.concat_tables([judge, judge]))


def _opener(scores: pa.Table | None, opened: list | None = None):
    """What the asset passes: a fresh read of the score cell, a batch of 2 rows at a time."""

    def open_scores():
        if opened is not None:
            opened.append(1)
        return None if scores is None else pa.RecordBatchReader.from_batches(scores.schema, scores.to_batches(max_chunksize=2))

    return open_scores


def _streamed(traces: pa.Table, scores) -> tuple[list[dict], RewardDatasetBuilder]:
    builder = RewardDatasetBuilder(scores=scores)
    builder.plan(traces.select(builder.plan_columns).to_batches(max_chunksize=3))
    rows = pa.Table.from_batches(list(builder.batches(traces.to_batches(max_chunksize=3))), schema=REWARD_DATASET_SCHEMA)
    return rows.to_pylist(), builder


def test_scores_in_the_cell_order_are_joined_in_step_and_otherwise_by_key(traces):
    judge = judge_rows(traces, {f"t-{i}": (i / 5, "ok" if i != 2 else "error") for i in range(6)})
    ragas = ragas_rows(traces, {f"t-{i}": (0.5, "ok") for i in range(6)})
    expected, _ = _streamed(traces, ScoreLookup(judge=judge, ragas=ragas))
    assert {row["judge_status"] for row in expected} == {"ok", "error"}

    # as the scorers write them: the order of the trace cell; each cell is read once
    opened: list = []
    in_order, builder = _streamed(traces, ScoresInCellOrder(judge=_opener(judge, opened), ragas=_opener(ragas, opened)))
    assert in_order == expected and builder.scores.joined_by_key == [] and len(opened) == 2

    # another order, a missing row, or rows for unknown traces: the rest is joined by key
    shuffled = judge.take(pa.array([5, 4, 3, 2, 1, 0]))
    extra = pa.concat_tables([judge, judge_rows(table([trace("t-unknown")]), {"t-unknown": (0.3, "ok")})])
    for judge_cell in (shuffled, extra.slice(1)):
        got, builder = _streamed(traces, ScoresInCellOrder(judge=_opener(judge_cell), ragas=_opener(ragas)))
        want, _ = _streamed(traces, ScoreLookup(judge=judge_cell, ragas=ragas))
        assert got == want and builder.scores.joined_by_key == ["judge"]
    got, builder = _streamed(traces, ScoresInCellOrder(judge=_opener(extra), ragas=_opener(ragas)))
    assert got == expected and builder.scores.joined_by_key == []  # the unknown row is left over, unused

    # no score file: no score columns, as with no lookup
    got, _ = _streamed(traces, ScoresInCellOrder(judge=_opener(None), ragas=_opener(None)))
    assert got == _streamed(traces, ScoreLookup())[0]


@pytest.mark.parametrize("where", ["first", "last"])
def test_duplicate_score_rows_joined_in_step_are_the_same_named_error(traces, where):
    judge = judge_rows(traces, {f"t-{i}": (0.5, "ok") for i in range(6)})
    twice = judge.take(pa.array([0, 0, 1, 2, 3, 4, 5] if where == "first" else [0, 1, 2, 3, 4, 5, 5]))
    with pytest.raises(DuplicateScoreRows):
        _streamed(traces, ScoresInCellOrder(judge=_opener(twice)))


def test_a_score_outside_0_1_fails_the_build(traces):
    ragas = ragas_rows(traces, {"t-0": (1.7, "ok")})
    with pytest.raises(RewardInputError, match="ragas_reward"):
        build_reward_table(traces, scores=ScoreLookup(ragas=ragas))


@pytest.mark.parametrize("consent", [False, None])
def test_a_row_without_granted_consent_never_reaches_the_output(traces, consent):
    bad = pa.concat_tables([traces, table([trace("t-refused", consent=consent)])])
    builder = RewardDatasetBuilder()
    builder.plan(bad.to_batches())
    with pytest.raises(ConsentViolation):
        list(builder.batches(bad.to_batches()))


def test_a_row_without_a_consent_source_is_refused(traces):
    bad = set_column(traces, "consent_source", [None] + ["column"] * 5)
    builder = RewardDatasetBuilder()
    builder.plan(bad.to_batches())
    with pytest.raises(ConsentViolation):
        list(builder.batches(bad.to_batches()))


def test_two_streaming_passes_over_small_batches_equal_the_in_memory_build(traces):
    judge = judge_rows(traces, {f"t-{i}": (i / 5, "ok") for i in range(6)})
    expected, _ = build_reward_table(traces, reward_config=JUDGE_ALONE, scores=ScoreLookup(judge=judge))
    builder = RewardDatasetBuilder(JUDGE_ALONE, scores=ScoreLookup(judge=judge))
    builder.plan(traces.select(builder.plan_columns).to_batches(max_chunksize=2))
    streamed = pa.Table.from_batches(list(builder.batches(traces.to_batches(max_chunksize=2))), schema=REWARD_DATASET_SCHEMA)
    assert streamed.to_pylist() == expected.to_pylist()
    meta = builder.metadata()
    assert sum(meta["reward_histogram"]["counts"]) == 6 and meta["reward_histogram"]["null"] == 0
    assert meta["reward_histogram"]["counts"][0] == 1 and meta["reward_histogram"]["counts"][9] == 1  # 0.0 and 1.0
    assert "preview_md" not in meta  # no row contents in metadata (DESIGN §10)
    assert "| preferred |" in meta["rows_by_label_and_split_md"]
    assert meta["rows_train"] + meta["rows_test"] + meta["rows_excluded_duplicate"] + meta["rows_excluded_near_duplicate"] == 6


def test_the_builder_refuses_to_write_before_planning(traces):
    with pytest.raises(RuntimeError):
        list(RewardDatasetBuilder().batches(traces.to_batches()))


def test_reward_rows_round_trip_through_parquet_and_pass_the_checks(traces, tmp_path):
    judge = judge_rows(traces, {f"t-{i}": (0.1 * i, "ok") for i in range(6)})
    out, _ = build_reward_table(traces, reward_config=JUDGE_ALONE, scores=ScoreLookup(judge=judge))
    assert out.column("final_reward").null_count == 0
    pq.write_table(out, tmp_path / "part-0.parquet")
    dataset = ds.dataset(tmp_path, format="parquet")
    assert dataset.schema.equals(REWARD_DATASET_SCHEMA, check_metadata=False)
    assert check_final_reward_range(dataset).passed
    assert check_no_group_in_both_splits(dataset).passed
    assert check_consent_lineage(dataset).passed


def test_tool_call_responses_keep_their_json_text(tmp_path):
    (row,) = build_examples(SourceRecord(
        trace_id="tool",
        observation_id="obs-1",
        timestamp="2026-04-18T08:00:00Z",
        model="glm-5-32b",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        output={"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        user_id="u-tool",
        explicit_consent=True,
        source="test",
        extracted_at=EXTRACTED_AT,
        options=ReadOptions(convert_to_single_turn=False),
    ))
    out, _ = build_reward_table(table([row], judge=[0.9]), reward_config=JUDGE_ALONE, split_config=SplitConfig(test_fraction=0.0))
    (sft,) = exports.sft_table(out).to_pylist()
    # TRL's tool-calling format: the call stays structured (the response column keeps its JSON text).
    final = sft["messages"][-1]
    assert final["role"] == "assistant" and final["content"] is None
    assert final["tool_calls"] == [{"id": None, "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]
    assert '"weather"' in out.column("response")[0].as_py()
    assert sft["observation_id"] == "obs-1"


def test_a_reward_cell_is_stored_in_iceberg_and_rewritten_idempotently(traces, tmp_path):
    catalog = ice.load_catalog(ice.CatalogSettings(name="materializer_test", warehouse=str(tmp_path / "wh")))
    iceberg = ice.ensure_table(catalog, "training_data.reward_dataset", REWARD_DATASET_SCHEMA)
    cell = ice.Cell("2026-04-18", "glm-5-32b")
    judge = judge_rows(traces, {f"t-{i}": (0.15 * i, "ok") for i in range(6)})

    for _ in range(2):  # a re-run replaces the cell, never duplicates it
        builder = RewardDatasetBuilder(JUDGE_ALONE, scores=ScoreLookup(judge=judge), lineage=RewardLineage(iceberg_snapshot_id=SNAPSHOT))
        builder.plan(traces.select(builder.plan_columns).to_batches())
        commit = ice.replace_cell_from_batches(iceberg, cell, builder.batches(traces.to_batches()), REWARD_DATASET_SCHEMA)
        assert commit.rows == 6

    stored = ice.IcebergCell(iceberg.refresh(), cell).to_table()
    assert stored.num_rows == 6
    assert sorted(stored.column("trace_id").to_pylist()) == [f"t-{i}" for i in range(6)]
    assert Counter(stored.column("iceberg_snapshot_id").to_pylist()) == Counter({SNAPSHOT: 6})
    assert stored.column("messages").to_pylist()[0][0]["role"] == "user"
    assert check_consent_lineage(stored).passed and check_final_reward_range(stored).passed
    # The manifests hold no bound or count of any id or text column (DESIGN §10), full partition bounds.
    hidden = set(id_and_text_columns(iceberg))
    assert {"split_key", "user_id", "trace_id", "prompt", "response", "messages.element.content", "contexts.element",
            "label", "split", "reward_spec"} <= hidden
    (entry,) = file_metrics(iceberg)
    for kind in ("lower", "upper", "value_counts", "null_counts"):
        assert not hidden & set(entry[kind]), (kind, sorted(hidden & set(entry[kind])))
    assert entry["lower"]["model_slug"] == entry["upper"]["model_slug"] == b"glm-5-32b"
    assert entry["lower"]["date"] == entry["upper"]["date"] == b"2026-04-18"


def test_an_empty_cell_builds_an_empty_table_with_the_schema():
    empty = table([trace("x")]).slice(0, 0)
    out, meta = build_reward_table(empty)
    assert out.num_rows == 0 and out.schema == REWARD_DATASET_SCHEMA
    assert meta["rows"] == 0 and meta["rows_train"] == 0
