"""raw_traces → … → judge_scores, ragas_scores → reward_dataset → exports, through real Dagster runs.

The judge and Ragas endpoints are the OpenAI-compatible test server on
127.0.0.1 (judge scores steered by ``[[reply:score=…]]`` in the answers, Ragas
computed from word overlap); the warehouse, its SQLite Iceberg catalog and
the JSONL source are temporary folders. One module-wide run is shared by the
read-only tests; re-run and write-back tests make their own.
"""

import json
import os
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest

from materializer_assets.lib.dataset import hashed_split_key
from materializer_assets.lib.erasure import ErasureLedger
from materializer_assets.lib.storage import resolve
from materializer_assets.pipeline import dataset, ingest, lakehouse, scoring
from materializer_assets.pipeline.dataset import RewardDatasetResource, reward_settings_from_env
from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_tests.pipeline.results import materialization_metadata
from materializer_tests.pipeline.resources import graph_resources, served_judge, served_ragas

DAY = "2026-04-18"
MODEL = "glm-5-32b"
ASSETS = ingest.ASSETS + lakehouse.ASSETS + scoring.ASSETS + dataset.ASSETS
CONTEXTS = ["Python's sorted function returns a new sorted list.", "Lists have a sort method that sorts in place."]
SHARED_QUESTIONS = [
    "How do I sort a list in Python?",
    "What is the difference between a tuple and a list?",
    "How do I read a file line by line?",
]
EXPORT_COLUMNS = {  # what TRL (and LLMRouter) read: https://huggingface.co/docs/trl/dataset_formats
    "sft": {"messages"},
    "dpo": {"prompt", "chosen", "rejected", "margin"},
    "kto": {"prompt", "completion", "label"},
    "grpo": {"prompt"},
    "router": {"query", "model_name", "performance", "response_time", "token_num"},
}
MIN_MARGIN = 0.1


def _chat(trace_id, user, question, answer, consent=True, contexts=CONTEXTS, minute=0):
    return {
        "id": trace_id,
        "timestamp": f"{DAY}T10:{minute:02d}:00Z",
        "model": MODEL,
        "user_id": user,
        "consent": consent,
        "contexts": contexts,
        "latency_ms": 1200,
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
    }


def _records() -> list[dict]:
    records = []
    # Users 0-5 ask shared questions, good and bad answers alternating: material for DPO pairs.
    for i in range(12):
        question = SHARED_QUESTIONS[i % 3]
        score = 0.95 if (i // 3) % 2 == 0 else 0.05
        # Good answers follow the retrieved contexts, so Ragas agrees with the judge and they are preferred.
        text = f"Python's sorted function returns a new sorted list, see case {i}." if score > 0.5 else \
            f"Answer {i} about it: use the standard library."
        answer = f"{text} [[reply:score={score}]]"
        records.append(_chat(f"t-shared-{i:02d}", f"user-{i % 6}", question, answer, minute=i))
    # Users 6-15 each ask a question of their own: some of them land in test.
    topics = ["regular expressions", "virtual environments", "decorators", "generators", "type hints",
              "dataclasses", "asyncio tasks", "unit testing", "logging setup", "packaging wheels"]
    for j, topic in enumerate(topics):
        records.append(_chat(f"t-own-{j:02d}", f"user-{6 + j}", f"Explain {topic} with a short example please.",
                             f"Here is how {topic} work in Python. [[reply:score=0.{5 + j % 4}]]", minute=20 + j))
    # Ragas answers garbage for this one: no ragas_reward, so no final_reward and no label (the judge's 0.9 alone is not one).
    records.append(_chat("t-no-context", "user-16", "Who wrote Python?", "Guido van Rossum. [[reply:score=0.9]] [[ragas:garbage]]",
                         contexts=None, minute=40))
    # An exact duplicate of t-own-00 (same prompt and response): kept in the table, excluded from training.
    dup = _chat("t-own-00-dup", "user-6", f"Explain {topics[0]} with a short example please.",
                f"Here is how {topics[0]} work in Python. [[reply:score=0.5]]", minute=41)
    records.append(dup)
    records.append(_chat("t-refused", "bob", SHARED_QUESTIONS[0], "REFUSED-TEXT must never be trained on.", consent=False))
    records.append(_chat("t-unknown", "carol", SHARED_QUESTIONS[0], "UNKNOWN-TEXT must never be trained on.", consent=None))
    return records


CONSENTED = sorted(r["id"] for r in _records() if r["consent"] is True)


def _write_source(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "traces.jsonl").open("w") as out:
        for record in _records():
            out.write(json.dumps(record) + "\n")
    return str(folder)


def _resources(source, warehouse, server, **settings) -> dict:
    return graph_resources(
        source,
        warehouse,
        judge=served_judge(server),
        ragas=served_ragas(server),
        reward_settings=RewardDatasetResource(**{"split_test_fraction": 0.3, "dpo_min_margin": MIN_MARGIN, **settings}),
    )


def _materialize(resources, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_DIMENSION, [MODEL])
    return dg.materialize(ASSETS, partition_key=cell_key(DAY, MODEL), resources=resources, instance=instance,
                          raise_on_error=False)


def _checks(result) -> dict:
    return {e.check_name: (e.passed, e.severity, e.description) for e in result.get_asset_check_evaluations()}


def _cell(warehouse, dataset_name) -> Path:
    return Path(warehouse) / dataset_name / f"date={DAY}" / f"model={MODEL}"


def _lake_rows(warehouse, dataset_name) -> list[dict]:
    files = sorted(_cell(warehouse, dataset_name).rglob("part-*.parquet"))
    return ds.dataset([str(f) for f in files]).to_table().to_pylist() if files else []


def _iceberg_rows(warehouse) -> list[dict]:
    table = IcebergIOManager(warehouse=warehouse).load_catalog().load_table("training_data.reward_dataset")
    return table.scan().to_arrow().to_pylist()


@pytest.fixture(scope="module")
def run(tmp_path_factory, openai_server_session):
    root = tmp_path_factory.mktemp("dataset")
    warehouse = str(root / "wh")
    source = _write_source(root / "source")
    result = _materialize(_resources(source, warehouse, openai_server_session))
    return result, warehouse, source


def test_every_consented_trace_has_one_reward_row_and_every_check_passes(run):
    result, warehouse, _ = run
    assert result.success
    checks = _checks(result)
    for name in ("final_reward_in_range", "no_group_in_both_splits", "no_user_in_both_splits", "consent_lineage",
                 "dpo_pairs_valid", "langfuse_scores_written"):
        assert checks[name][0], (name, checks[name])
    rows = _iceberg_rows(warehouse)
    assert sorted(r["trace_id"] for r in rows) == CONSENTED
    assert all(r["consent"] is True and r["consent_source"] for r in rows)
    # The lake copy holds the same rows.
    assert sorted(r["trace_id"] for r in _lake_rows(warehouse, "reward-dataset")) == CONSENTED


def test_final_reward_is_weighted_ragas_and_judge_with_lineage(run):
    result, warehouse, _ = run
    rows = {r["trace_id"]: r for r in _iceberg_rows(warehouse)}
    judge = {r["trace_id"]: r for r in _lake_rows(warehouse, "judge-scores")}
    ragas = {r["trace_id"]: r for r in _lake_rows(warehouse, "ragas-scores")}
    snapshot = materialization_metadata(result, "iceberg_table")["snapshot_id"]
    both = 0
    for trace_id, row in rows.items():
        assert row["judge_score"] == judge[trace_id]["judge_score"]
        assert row["ragas_reward"] == ragas[trace_id]["ragas_reward"]
        assert row["iceberg_snapshot_id"] == snapshot
        assert row["judge_model"] == judge[trace_id]["judge_model"] and row["prompt_version"]
        if row["judge_score"] is not None and row["ragas_reward"] is not None:
            both += 1
            assert row["final_reward"] == pytest.approx(0.6 * row["ragas_reward"] + 0.4 * row["judge_score"], abs=1e-9)
            assert row["reward_source"] == "ragas+judge"
    assert both >= len(rows) - 1
    lone = rows["t-no-context"]
    assert lone["ragas_reward"] is None and lone["judge_score"] == 0.9
    assert (lone["final_reward"], lone["label"], lone["unlabeled_reason"]) == (None, None, "ragas_unparseable")
    assert {r["label"] for r in rows.values()} >= {"preferred", "non_preferred"}
    assert materialization_metadata(result, "reward_dataset")["rows_unlabeled_by_reason"] == {"ragas_unparseable": 1}


def test_splits_never_share_a_user_and_exact_duplicates_are_excluded(run):
    _, warehouse, _ = run
    rows = _iceberg_rows(warehouse)
    users = {"train": set(), "test": set()}
    for row in rows:
        if row["split"] in users:
            users[row["split"]].add(row["user_id"])
    assert users["train"] and users["test"]
    assert not users["train"] & users["test"]
    # split_key is the group key hashed with the erasure salt (the warehouse's _erasure/salt here), never the raw id.
    salt = ErasureLedger(resolve(warehouse), salt=os.environ.get("MATERIALIZER_ERASURE_SALT") or None).salt
    for row in rows:
        assert row["split_key"] == hashed_split_key(f"user_id:{row['user_id']}", salt)
        assert row["user_id"] not in row["split_key"]
    duplicates = [r for r in rows if r["excluded_reason"] == "duplicate"]
    assert len(duplicates) == 1 and duplicates[0]["trace_id"] in {"t-own-00", "t-own-00-dup"}


def test_reward_metadata_shows_labels_per_split_and_a_histogram_but_no_rows(run):
    result, _, _ = run
    metadata = materialization_metadata(result, "reward_dataset")
    assert metadata["rows"] == len(CONSENTED)
    counts = metadata["rows_by_label_and_split"]
    assert sum(n for by_split in counts.values() for n in by_split.values()) == len(CONSENTED)
    assert sum(metadata["reward_histogram"]["counts"]) + metadata["reward_histogram"]["null"] == len(CONSENTED)
    assert "| final_reward |" in metadata["reward_histogram_md"]
    assert "preview_md" not in metadata  # no prompts or responses in the (unerasable) event log
    # the scorers wrote their cells in the order the table is read: both joined in step, none by key
    assert metadata["scores_joined_by_key"] == "none"


@pytest.mark.parametrize("name", sorted(EXPORT_COLUMNS))
def test_each_export_loads_with_datasets_and_has_trl_columns(run, name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    datasets = pytest.importorskip("datasets")
    _, warehouse, _ = run
    cell = _cell(warehouse, f"exports/{name}")
    data_files = {split: sorted(str(p) for p in (cell / split).glob("*.parquet")) for split in ("train", "test")}
    data_files = {split: files for split, files in data_files.items() if files}
    assert "train" in data_files, f"no train files for {name}"
    loaded = datasets.load_dataset("parquet", data_files=data_files, cache_dir=str(tmp_path / "hf"))
    train = loaded["train"]
    assert EXPORT_COLUMNS[name] <= set(train.column_names)
    assert len(train) > 0
    consented = set(CONSENTED)
    for split, part in loaded.items():
        assert set(part["split"]) == {split}
        text = json.dumps(part.to_list(), default=str)
        assert "REFUSED-TEXT" not in text and "UNKNOWN-TEXT" not in text
        ids = list(part["chosen_trace_id"]) + list(part["rejected_trace_id"]) if name == "dpo" else list(part["trace_id"])
        assert set(ids) <= consented
    if name == "sft":
        assert train[0]["messages"][-1]["role"] == "assistant"
    if name == "dpo":
        for row in train:
            assert row["chosen"] != row["rejected"] and row["margin"] >= MIN_MARGIN
            assert row["chosen"][0]["role"] == "assistant" and row["prompt"][-1]["role"] == "user"
    if name == "kto":
        assert set(train["label"]) <= {True, False}


def test_rerunning_the_cell_replaces_rows_instead_of_duplicating_them(tmp_path, openai_server):
    warehouse = str(tmp_path / "wh")
    source = _write_source(tmp_path / "source")
    instance = dg.DagsterInstance.ephemeral()
    first = _materialize(_resources(source, warehouse, openai_server), instance)
    assert first.success
    first_rows = _iceberg_rows(warehouse)
    before = {name: len(_lake_rows(warehouse, f"exports/{name}")) for name in EXPORT_COLUMNS}
    second = _materialize(_resources(source, warehouse, openai_server), instance)
    assert second.success
    rows = _iceberg_rows(warehouse)
    assert sorted(r["trace_id"] for r in rows) == CONSENTED
    assert sorted(r["trace_id"] for r in _lake_rows(warehouse, "reward-dataset")) == CONSENTED
    assert {name: len(_lake_rows(warehouse, f"exports/{name}")) for name in EXPORT_COLUMNS} == before
    # Same data, same settings: the same splits and split keys (stable salted hashes of the group key).
    splits = lambda result_rows: {r["trace_id"]: (r["split"], r["split_key"]) for r in result_rows}  # noqa: E731
    assert splits(rows) == splits(_lake_rows(warehouse, "reward-dataset"))
    assert splits(rows) == splits(first_rows)


def test_settings_come_from_the_environment_and_bad_values_are_named():
    settings = reward_settings_from_env(
        {
            "MATERIALIZER_REWARD_WEIGHTS": "ragas=0.5,judge=0.3,feedback=0.2",
            "MATERIALIZER_LABEL_PREFERRED_MIN": "0.9",
            "MATERIALIZER_SPLIT_GROUP_BY": "session_id",
            "MATERIALIZER_SPLIT_NEAR_DUP_THRESHOLD": "0",
            "MATERIALIZER_DPO_MAX_PAIRS_PER_PROMPT": "2",
            "MATERIALIZER_REWARD_USE_RAGAS": "false",
        }
    )
    assert settings.reward_config().scorers == ("judge",)
    assert reward_settings_from_env({"MATERIALIZER_REWARD_USE_JUDGE": "no"}).reward_config().scorers == ("ragas",)
    assert reward_settings_from_env({}).reward_config().scorers == ("ragas", "judge")
    with pytest.raises(ValueError, match="MATERIALIZER_REWARD_USE_RAGAS must be true or false"):
        reward_settings_from_env({"MATERIALIZER_REWARD_USE_RAGAS": "sometimes"})
    with pytest.raises(ValueError, match="no reward component is left"):
        reward_settings_from_env({"MATERIALIZER_REWARD_USE_RAGAS": "0", "MATERIALIZER_REWARD_USE_JUDGE": "0"}).reward_config()
    assert settings.reward_config().weights.feedback == 0.2
    assert settings.reward_config().thresholds.preferred == 0.9
    assert settings.split_config().group_by == "session_id" and settings.split_config().near_duplicates is None
    assert settings.pair_config().max_pairs_per_prompt == 2
    with pytest.raises(ValueError, match="MATERIALIZER_DPO_MIN_MARGIN"):
        reward_settings_from_env({"MATERIALIZER_DPO_MIN_MARGIN": "lots"})
    with pytest.raises(ValueError, match="reward weights"):
        RewardDatasetResource(reward_weights="ragas=1,bogus=2").reward_config()


def test_a_bad_setting_fails_the_run_before_anything_is_written(tmp_path, openai_server):
    warehouse = str(tmp_path / "wh")
    result = _materialize(_resources(_write_source(tmp_path / "source"), warehouse, openai_server,
                                     split_group_by="tenant"))
    assert not result.success
    assert not _cell(warehouse, "reward-dataset").exists()
    assert not (Path(warehouse) / "exports").exists()


def test_opt_in_write_back_posts_final_reward_to_langfuse_once_per_trace(
    tmp_path, openai_server, make_langfuse_server, langfuse_env
):
    from materializer_tests.langfuse_server.data import FixtureData

    server = make_langfuse_server(data=FixtureData())
    langfuse_env(server)
    warehouse = str(tmp_path / "wh")
    resources = _resources(_write_source(tmp_path / "source"), warehouse, openai_server, langfuse_write_scores=True)
    instance = dg.DagsterInstance.ephemeral()
    for _ in range(2):  # a re-run overwrites the same scores (deterministic ids), never adds
        result = _materialize(resources, instance)
        assert result.success
        assert _checks(result)["langfuse_scores_written"][0]
    rewards = {r["trace_id"]: r["final_reward"] for r in _iceberg_rows(warehouse) if r["final_reward"] is not None}
    scores = list(server.data.scores.values())
    assert sorted(s.trace_id for s in scores) == sorted(rewards)
    assert all(s.name == "final_reward" and s.value == pytest.approx(rewards[s.trace_id]) for s in scores)
    assert not {"t-refused", "t-unknown"} & {s.trace_id for s in scores}


def test_an_unreachable_langfuse_warns_but_keeps_the_dataset(tmp_path, openai_server, monkeypatch):
    monkeypatch.setenv("LANGFUSE_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-test")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-test")
    monkeypatch.setenv("MATERIALIZER_LANGFUSE_MAX_ATTEMPTS", "1")
    warehouse = str(tmp_path / "wh")
    resources = _resources(_write_source(tmp_path / "source"), warehouse, openai_server, langfuse_write_scores=True)
    result = _materialize(resources)
    assert result.success
    passed, severity, description = _checks(result)["langfuse_scores_written"]
    assert not passed and severity == dg.AssetCheckSeverity.WARN and "sk-lf-test" not in description
    assert sorted(r["trace_id"] for r in _iceberg_rows(warehouse)) == CONSENTED


def test_gdpr_erasure_removes_a_user_from_the_reward_table_and_every_export(tmp_path, openai_server):
    from materializer_assets.pipeline.lakehouse.erasure import ErasureResource, gdpr_erasure_job

    warehouse = str(tmp_path / "wh")
    erasure_list = tmp_path / "erase.csv"
    erasure_list.write_text("user_id\n")
    resources = {
        **_resources(_write_source(tmp_path / "source"), warehouse, openai_server),
        "erasure": ErasureResource(erasure_list=str(erasure_list), orphan_grace_minutes=60),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(resources, instance).success
    users = {r["trace_id"]: r["user_id"] for r in _iceberg_rows(warehouse)}
    pairs = _lake_rows(warehouse, "exports/dpo")
    # Erase the user behind a rejected response: the pair goes although its chosen side is someone else's.
    victim = users[pairs[0]["rejected_trace_id"]]
    gone = {t for t, u in users.items() if u == victim}
    assert users[pairs[0]["chosen_trace_id"]] != victim
    # The cross-cell near-duplicate index holds the victim's signatures (keyed by user and trace)...
    assert gone & {r["trace_id"] for r in _lake_rows(warehouse, "near-dup-index")}

    erasure_list.write_text(f"user_id\n{victim}\n")
    result = gdpr_erasure_job.execute_in_process(resources=resources, instance=instance, raise_on_error=False)
    assert result.success
    assert not gone & {r["trace_id"] for r in _iceberg_rows(warehouse)}
    assert not gone & {r["trace_id"] for r in _lake_rows(warehouse, "reward-dataset")}
    # ...and loses them with the rest.
    assert not gone & {r["trace_id"] for r in _lake_rows(warehouse, "near-dup-index")}
    assert {r["user_id"] for r in _lake_rows(warehouse, "near-dup-index")} - {victim}
    for name in ("sft", "kto", "grpo", "router"):
        assert not gone & {r["trace_id"] for r in _lake_rows(warehouse, f"exports/{name}")}, name
    left = _lake_rows(warehouse, "exports/dpo")
    assert 0 < len(left) < len(pairs)
    assert not gone & ({p["chosen_trace_id"] for p in left} | {p["rejected_trace_id"] for p in left})
    # The survivors keep their split folders.
    assert list((_cell(warehouse, "exports/dpo") / "train").glob("*.parquet"))


def test_a_cell_without_consented_traces_gives_empty_tables_and_exports(tmp_path, openai_server):
    folder = tmp_path / "source"
    folder.mkdir()
    refused = [r for r in _records() if r["consent"] is not True]
    (folder / "traces.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refused))
    warehouse = str(tmp_path / "wh")
    result = _materialize(_resources(str(folder), warehouse, openai_server))
    assert result.success
    assert all(passed for passed, _, _ in _checks(result).values())
    assert _iceberg_rows(warehouse) == []
    assert materialization_metadata(result, "reward_dataset")["rows"] == 0
    for name in EXPORT_COLUMNS:
        assert _lake_rows(warehouse, f"exports/{name}") == [], name
