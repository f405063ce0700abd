"""The checks of a published score cell (lib/scoring/checks.py), each shown passing and failing.

Score cells are written by the lake and opened as the Parquet IO manager
opens them (with the declared schema passed in).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from materializer_assets.lib.lake import CellAddress, ParquetLake
from materializer_assets.lib.scoring import checks
from materializer_assets.lib.scoring.schema import JUDGE_SCORES_SCHEMA, RAGAS_METRICS, RAGAS_SCORES_SCHEMA
from materializer_assets.lib.storage import resolve

ADDRESS = CellAddress("judge-scores", "2026-04-18", "glm-5-32b")
JUDGE_VOUCHERS = {"judge_score": "status"}
RAGAS_VOUCHERS = {name: f"{name}_status" for name in RAGAS_METRICS} | {"ragas_reward": "status"}


def _judge_rows(scores: list[tuple[str, float | None, str]]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"trace_id": trace_id, "observation_id": None, "content_hash": f"h-{trace_id}", "judge_score": score, "status": status}
            for trace_id, score, status in scores
        ],
        schema=JUDGE_SCORES_SCHEMA,
    )


def _publish(tmp_path, table: pa.Table, schema: pa.Schema = JUDGE_SCORES_SCHEMA):
    lake = ParquetLake(resolve(str(tmp_path / "wh")))
    lake.write_cell(ADDRESS, iter(table.to_batches()), schema)
    return lake, lake.open_cell(ADDRESS, schema)


def _ids(*trace_ids: str) -> list[pa.RecordBatch]:
    return pa.table({"trace_id": list(trace_ids), "observation_id": pa.nulls(len(trace_ids), pa.string())}).to_batches()


def test_scores_in_range_passes_on_ok_scores_and_null_failures(tmp_path):
    _, cell = _publish(tmp_path, _judge_rows([("a", 0.0, "ok"), ("b", 1.0, "ok"), ("c", None, "unparseable")]))
    assert checks.check_scores_in_range(cell, JUDGE_VOUCHERS).passed


def test_scores_in_range_fails_on_a_score_outside_0_1_or_nan(tmp_path):
    _, cell = _publish(tmp_path, _judge_rows([("a", 1.5, "ok"), ("b", float("nan"), "ok"), ("c", 0.5, "ok")]))
    outcome = checks.check_scores_in_range(cell, JUDGE_VOUCHERS)
    assert not outcome.passed and outcome.metadata["out_of_range"] == {"judge_score": 2}


def test_scores_in_range_fails_on_a_score_whose_status_is_not_ok(tmp_path):
    _, cell = _publish(tmp_path, _judge_rows([("a", 0.4, "error"), ("b", 0.5, "ok")]))
    outcome = checks.check_scores_in_range(cell, JUDGE_VOUCHERS)
    assert not outcome.passed and outcome.metadata["scores_with_non_ok_status"] == {"judge_score": 1}


def test_scores_in_range_fails_when_a_file_lacks_the_score_column(tmp_path):
    lake, cell = _publish(tmp_path, _judge_rows([("a", 0.4, "ok")]))
    (path,) = cell.files
    pq.write_table(pq.read_table(path).drop_columns(["judge_score"]), path)
    # Opened with the declared schema, the cell still "has" the column (read as nulls): only the footer tells.
    reopened = lake.open_cell(ADDRESS, JUDGE_SCORES_SCHEMA)
    assert "judge_score" in reopened.schema.names
    outcome = checks.check_scores_in_range(reopened, JUDGE_VOUCHERS)
    assert not outcome.passed and "missing columns ['judge_score']" in outcome.description


def test_ragas_scores_in_range_checks_every_metric_against_its_own_status(tmp_path):
    row = {"trace_id": "a", "observation_id": None, "content_hash": "h", "ragas_reward": 0.5, "status": "ok"}
    for name in RAGAS_METRICS:
        row |= {name: 0.5, f"{name}_status": "ok"}
    good = pa.Table.from_pylist([row], schema=RAGAS_SCORES_SCHEMA)
    _, cell = _publish(tmp_path / "good", good, RAGAS_SCORES_SCHEMA)
    assert checks.check_scores_in_range(cell, RAGAS_VOUCHERS).passed
    bad = pa.Table.from_pylist([row | {"answer_relevancy_status": "degenerate"}], schema=RAGAS_SCORES_SCHEMA)
    _, cell = _publish(tmp_path / "bad", bad, RAGAS_SCORES_SCHEMA)
    outcome = checks.check_scores_in_range(cell, RAGAS_VOUCHERS)
    assert not outcome.passed and outcome.metadata["scores_with_non_ok_status"] == {"answer_relevancy": 1}


def test_every_trace_scored_fails_on_missing_extra_and_duplicate_rows(tmp_path):
    _, cell = _publish(tmp_path, _judge_rows([("a", 0.1, "ok"), ("b", 0.2, "ok")]))
    assert checks.check_every_trace_scored(_ids("a", "b"), cell).passed

    outcome = checks.check_every_trace_scored(_ids("a", "b", "c"), cell)
    assert not outcome.passed and outcome.metadata["missing"] == 1

    outcome = checks.check_every_trace_scored(_ids("a"), cell)
    assert not outcome.passed and outcome.metadata["extra"] == 1 and outcome.metadata["extra_examples"] == "b/None"

    _, twice = _publish(tmp_path / "twice", _judge_rows([("a", 0.1, "ok"), ("a", 0.1, "ok")]))
    outcome = checks.check_every_trace_scored(_ids("a"), twice)
    assert not outcome.passed and outcome.metadata["duplicates"] == 1

    # an unknown row twice is one extra row and one duplicate; examples name each extra key once
    _, mixed = _publish(tmp_path / "mixed", _judge_rows([("a", 0.1, "ok"), ("b", 0.2, "ok"), ("b", 0.2, "ok"), ("c", 0.3, "ok")]))
    outcome = checks.check_every_trace_scored(_ids("a", "d"), mixed)
    assert outcome.metadata | {"consented_traces": 0} == {
        "consented_traces": 0, "missing": 1, "extra": 2, "duplicates": 1, "extra_examples": "b/None, c/None"
    }


def test_non_ok_share_fails_above_the_threshold_and_ignores_rows_never_asked(tmp_path):
    rows = [("a", 0.1, "ok"), ("b", None, "error"), ("c", None, "not_applicable"), ("d", 0.9, "ok")]
    _, cell = _publish(tmp_path, _judge_rows(rows))
    outcome = checks.check_non_ok_share(cell, 0.5)
    assert outcome.passed and outcome.metadata["non_ok_share"] == round(1 / 3, 4)
    outcome = checks.check_non_ok_share(cell, 0.2)
    assert not outcome.passed and outcome.metadata["status_counts"] == {"error": 1, "not_applicable": 1, "ok": 2}


def test_configured_fails_without_an_endpoint():
    assert checks.check_configured(True, "configured", "missing").passed
    outcome = checks.check_configured(False, "configured", "missing")
    assert not outcome.passed and outcome.description == "missing"
