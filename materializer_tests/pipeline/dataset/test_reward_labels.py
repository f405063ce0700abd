"""No label from a failed scorer, through real Dagster runs of the whole graph.

The judge and Ragas are the OpenAI-compatible test server over HTTP; what
each returns is steered by directives in the answers (``[[ragas:garbage]]``:
Ragas cannot read its replies; ``[[ragas:emptyquestion]]``: Ragas's LLM
generates an empty question, which Ragas itself would score 0.0;
``[[fail@judge-a:503x99]]``: the judge's endpoint is down for that trace).
The graph runs up to ``reward_dataset``; the exports have tests of their own.
"""

import json
from pathlib import Path

import dagster as dg
import pytest

from materializer_assets.pipeline import dataset, ingest, lakehouse, scoring
from materializer_assets.pipeline.dataset import reward_settings_from_env
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_tests.pipeline.results import materialization_metadata
from materializer_tests.pipeline.resources import graph_resources, served_judge, served_ragas

DAY = "2026-04-18"
MODEL = "glm-5-32b"
ASSETS = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS + [dataset.reward_dataset]
CONTEXTS = ["Python's sorted function returns a new sorted list.", "Lists have a sort method that sorts in place."]
QUESTION = "How do I sort a list in Python?"
# trace id → the answer, steering the test server
ANSWERS = {
    "t-good-0": "Use sorted to sort a list in Python. [[reply:score=0.95]]",
    "t-good-1": "Lists have a sort method. [[reply:score=0.9]]",
    "t-good-2": "Sort it somehow. [[reply:score=0.05]]",
    "t-ragas-unreadable": "Use sorted on the list. [[reply:score=0.9]] [[ragas:garbage]]",
    "t-ragas-degenerate": "Use sorted, it returns a new list. [[reply:score=0.9]] [[ragas:emptyquestion]]",
    "t-judge-down": "Call list.sort() on it. [[fail@judge-a:503x99]]",
}


def _source(folder: Path) -> str:
    folder.mkdir(parents=True)
    records = [
        {
            "id": trace_id,
            "timestamp": f"{DAY}T10:{minute:02d}:00Z",
            "model": MODEL,
            "user_id": f"user-{minute}",
            "consent": True,
            "contexts": CONTEXTS,
            "messages": [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": answer}],
        }
        for minute, (trace_id, answer) in enumerate(ANSWERS.items())
    ]
    (folder / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(folder)


def _run(tmp_path, server, env: dict[str, str]):
    warehouse = str(tmp_path / "wh")
    resources = graph_resources(
        _source(tmp_path / "source"),
        warehouse,
        judge=served_judge(server, max_attempts=2),
        ragas=served_ragas(server, max_attempts=2),
        # The settings as a deployment gives them: MATERIALIZER_* variables.
        reward_settings=reward_settings_from_env(env),
    )
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_DIMENSION, [MODEL])
    result = dg.materialize(ASSETS, partition_key=cell_key(DAY, MODEL), resources=resources, instance=instance,
                            raise_on_error=False)
    assert result.success
    table = IcebergIOManager(warehouse=warehouse).load_catalog().load_table("training_data.reward_dataset")
    rows = {row["trace_id"]: row for row in table.scan().to_arrow().to_pylist()}
    assert sorted(rows) == sorted(ANSWERS)
    return result, rows, warehouse


def _ragas_rows(warehouse) -> dict:
    import pyarrow.dataset as ds

    cell = Path(warehouse) / "ragas-scores" / f"date={DAY}" / f"model={MODEL}"
    files = [str(p) for p in cell.rglob("part-*.parquet")]
    return {row["trace_id"]: row for row in ds.dataset(files).to_table().to_pylist()}


def test_a_row_whose_ragas_failed_gets_no_reward_and_no_label_and_is_counted(tmp_path, openai_server):
    result, rows, warehouse = _run(tmp_path, openai_server, {})
    ragas = _ragas_rows(warehouse)
    # What the scorers said.
    assert ragas["t-ragas-unreadable"]["status"] == "unparseable"
    assert ragas["t-ragas-degenerate"]["answer_relevancy_status"] == "degenerate"
    assert ragas["t-ragas-degenerate"]["answer_relevancy"] is None and ragas["t-ragas-degenerate"]["status"] == "degenerate"
    assert rows["t-judge-down"]["judge_status"] == "error"

    # A failed Ragas with a happy judge (0.9) used to be final_reward 0.9, "preferred", reward_source "judge".
    for trace_id, reason in [("t-ragas-unreadable", "ragas_unparseable"), ("t-ragas-degenerate", "ragas_degenerate"),
                             ("t-judge-down", "judge_error")]:
        row = rows[trace_id]
        assert (row["final_reward"], row["label"], row["reward_source"]) == (None, None, None), trace_id
        assert row["unlabeled_reason"] == reason
    assert rows["t-ragas-unreadable"]["judge_score"] == 0.9 and rows["t-ragas-unreadable"]["judge_status"] == "ok"

    for trace_id in ("t-good-0", "t-good-1", "t-good-2"):
        row = rows[trace_id]
        assert row["reward_source"] == "ragas+judge" and row["unlabeled_reason"] is None
        assert row["final_reward"] == pytest.approx(0.6 * row["ragas_reward"] + 0.4 * row["judge_score"], abs=1e-9)
        assert row["label"] is not None

    metadata = materialization_metadata(result, "reward_dataset")
    assert metadata["rows_unlabeled"] == 3
    assert metadata["rows_unlabeled_by_reason"] == {"judge_error": 1, "ragas_degenerate": 1, "ragas_unparseable": 1}
    assert metadata["reward_scorers"] == "ragas+judge" and metadata["reward_scorers_left_out"] == {}
    assert sum(metadata["rows_by_label_and_split"]["unlabeled"].values()) == 3


def test_switching_ragas_off_lets_the_judge_alone_label_rows_and_says_so(tmp_path, openai_server):
    result, rows, _ = _run(tmp_path, openai_server, {"MATERIALIZER_REWARD_USE_RAGAS": "false"})
    for trace_id in ("t-ragas-unreadable", "t-ragas-degenerate", "t-good-1"):
        row = rows[trace_id]
        assert (row["final_reward"], row["label"], row["reward_source"]) == (0.9, "preferred", "judge"), trace_id
    assert rows["t-ragas-unreadable"]["ragas_status"] == "unparseable"  # still recorded, no longer counted
    assert rows["t-good-2"]["final_reward"] == 0.05 and rows["t-good-2"]["label"] == "non_preferred"
    assert rows["t-judge-down"]["final_reward"] is None and rows["t-judge-down"]["unlabeled_reason"] == "judge_error"
    assert {row["reward_source"] for row in rows.values()} == {"judge", None}
    assert all('"scorers":["judge"]' in row["reward_spec"] for row in rows.values())

    metadata = materialization_metadata(result, "reward_dataset")
    assert metadata["reward_scorers"] == "judge"
    assert metadata["reward_scorers_left_out"] == {"ragas": "switched_off"}
    assert metadata["rows_unlabeled_by_reason"] == {"judge_error": 1}
