"""No personal content where erasure cannot reach: Dagster's event log and the Iceberg manifests.

The whole graph (raw_traces → … → reward_dataset → exports) runs for cells of
the bundled sample on a real Dagster instance with SQLite storage (every event
is serialized into the database, as in production), the judge and Ragas being
the OpenAI-compatible test server; then a gdpr_erasure run forgets one user.
Every event of every run is read back from the instance and searched for the
sample's raw user ids and session ids and for the text of the cell's rows
(prompts, responses, messages, contexts, metadata), raw and redacted (DESIGN §10).
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest

from materializer_assets.pipeline import dataset, ingest, lakehouse, scoring
from materializer_assets.pipeline.dataset import RewardDatasetResource
from materializer_assets.pipeline.lakehouse.erasure import gdpr_erasure_job
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_assets.resources.scoring import JudgeResource, RagasResource
from materializer_tests.lib.iceberg_helpers import file_metrics, id_and_text_columns

ASSETS = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS + dataset.ASSETS

# Cells of the bundled sample: a RAG cell (contexts) and a chat cell with multi-turn conversations.
CELLS = [("2026-04-17", "glm-5-32b"), ("2026-04-16", "gpt-4o-mini-2024-07-18")]
SAMPLE_USER_ID = re.compile(r"u-\d{4}")  # every user id of the sample: u-0001 … u-0012
MIN_TEXT = 20  # shorter strings ("Hi", "chat") would match unrelated text
PREFIX = 30  # a cut-off preview of a text still holds its first characters
TEXT_COLUMNS = ("prompt", "response", "metadata", "tools")
LIST_COLUMNS = ("contexts", "tags")
ERASED_USER = "u-0004"  # in both cells


def _strings(value) -> list[str]:
    """Every string (keys included) in a decoded JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (key, *_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _event_log_text(instance: dg.DagsterInstance) -> tuple[str, int]:
    """All strings of every event (and run record) the instance holds, decoded from their serialized form."""
    parts, events = [], 0
    for run in instance.get_runs():
        parts += _strings(json.loads(dg.serialize_value(run)))
        for entry in instance.all_logs(run.run_id):
            events += 1
            parts += _strings(json.loads(dg.serialize_value(entry)))
            parts += [entry.message or "", entry.user_message or ""]
    return "\n".join(parts), events


def _row_texts(rows: list[dict]) -> set[str]:
    texts: set[str] = set()
    for row in rows:
        values = [row.get(name) for name in TEXT_COLUMNS]
        values += [m.get("content") for m in row.get("messages") or [] if m]
        values += [item for name in LIST_COLUMNS for item in row.get(name) or []]
        for value in values:
            if isinstance(value, str) and len(value.strip()) >= MIN_TEXT:
                texts.add(value.strip())
                texts.add(value.strip()[:PREFIX])
    return texts


def _source_rows(day: str, model: str) -> list[dict]:
    """The cell's rows as the source holds them: every consent state, before redaction."""
    reader = TraceSourceResource(source="").open_reader()
    try:
        cell = reader.read_cell(date.fromisoformat(day), model)
        return [row for batch in cell.batches for row in batch.to_pylist()]
    finally:
        reader.close()


def _stored_rows(warehouse: str) -> list[dict]:
    """What the pipeline wrote (consented and redacted): lake cells and both Iceberg tables."""
    rows = []
    for path in ("raw-traces", "langfuse-traces", "reward-dataset"):
        files = [str(f) for f in (Path(warehouse) / path).rglob("part-*.parquet")]
        if files:
            rows += ds.dataset(files).to_table().to_pylist()
    catalog = IcebergIOManager(warehouse=warehouse).load_catalog()
    for identifier in ("training_data.langfuse_traces", "training_data.reward_dataset"):
        rows += catalog.load_table(identifier).scan().to_arrow().to_pylist()
    return rows


def _leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted(secret for secret in secrets if secret in text)


@pytest.fixture(scope="module")
def graph_runs(tmp_path_factory, openai_server_session):
    root = tmp_path_factory.mktemp("event-log")
    warehouse = str(root / "wh")
    erasure_list = root / "erase.csv"
    erasure_list.write_text("user_id\n")
    fast = {"initial_backoff_s": 0.01, "max_attempts": 3, "timeout_s": 10.0}
    server = openai_server_session
    resources = {
        "trace_source": TraceSourceResource(source=""),  # the bundled sample, with its consent registry
        "privacy": PrivacyResource(),
        "erasure": ErasureResource(erasure_list=str(erasure_list), orphan_grace_minutes=60),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=warehouse),
        "iceberg_io_manager": IcebergIOManager(warehouse=warehouse),
        "judge": JudgeResource(base_url=server.base_url, model="judge-a", **fast),
        "ragas": RagasResource(base_url=server.base_url, model="ragas-llm", embeddings_model="embedder", **fast),
        "reward_settings": RewardDatasetResource(split_test_fraction=0.3, dpo_min_margin=0.05),
    }
    home = root / "dagster-home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:  # SQLite run and event storage
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        instance.add_dynamic_partitions(MODEL_DIMENSION, sorted({model for _, model in CELLS}))
        results = []
        for day, model in CELLS:
            result = dg.materialize(ASSETS, partition_key=cell_key(day, model), resources=resources, instance=instance,
                                    raise_on_error=False)
            assert result.success, (day, model)
            results.append(result)
        # An erasure run's events too (its metadata: counts and the audit record's path).
        erasure_list.write_text(f"user_id\n{ERASED_USER}\n")
        erased = gdpr_erasure_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)
        assert erased.success
        text, events = _event_log_text(instance)
    yield {"warehouse": warehouse, "results": results, "text": text, "events": events}


def test_the_sample_cells_have_personal_data_to_leak(graph_runs):
    # The test means something: the cells hold user ids, PII and long texts, the events were read.
    rows = [row for day, model in CELLS for row in _source_rows(day, model)]
    assert len({row["user_id"] for row in rows if row["user_id"]}) >= 8
    assert any(row["contexts"] for row in rows)
    assert any("@" in (row["prompt"] or "") + (row["response"] or "") for row in rows)
    text = graph_runs["text"]
    assert graph_runs["events"] > 200
    for key in ("rows_by_label_and_split", "reward_histogram", "rejected_by_reason", "no_user_in_both_splits",
                "users_erased", "snapshot_id"):
        assert key in text, key
    # and the search finds a text where one is
    secret = max(_row_texts(rows), key=len)
    assert secret in _leaks(text + "\n" + secret, _row_texts(rows))


def test_no_event_holds_a_raw_user_id_or_session_id(graph_runs):
    text = graph_runs["text"]
    assert SAMPLE_USER_ID.findall(text) == []
    sessions = {row["session_id"] for day, model in CELLS for row in _source_rows(day, model) if row["session_id"]}
    assert sessions and _leaks(text, sessions) == []


def test_no_event_holds_a_prompt_response_context_or_message_of_the_cells(graph_runs):
    text = graph_runs["text"]
    source = _row_texts([row for day, model in CELLS for row in _source_rows(day, model)])
    stored = _row_texts(_stored_rows(graph_runs["warehouse"]))  # the redacted versions
    assert len(source) > 50 and stored - source  # redaction changed some of them
    assert _leaks(text, source | stored) == []


def test_the_tables_written_by_the_graph_keep_no_id_or_text_bounds(graph_runs):
    catalog = IcebergIOManager(warehouse=graph_runs["warehouse"]).load_catalog()
    for identifier in ("training_data.langfuse_traces", "training_data.reward_dataset"):
        table = catalog.load_table(identifier)
        hidden = set(id_and_text_columns(table))
        assert {"user_id", "trace_id", "prompt", "response", "messages.element.content"} <= hidden
        files = file_metrics(table)
        assert files, identifier
        for entry in files:
            for kind in ("lower", "upper", "value_counts", "null_counts"):
                assert not hidden & set(entry[kind]), (identifier, kind, sorted(hidden & set(entry[kind])))
            assert {(entry["lower"]["date"], entry["lower"]["model_slug"])} == {(entry["upper"]["date"], entry["upper"]["model_slug"])}
            assert (entry["lower"]["date"].decode(), entry["lower"]["model_slug"].decode()) in set(CELLS)
        if identifier.endswith("reward_dataset"):
            assert "split_key" in hidden
