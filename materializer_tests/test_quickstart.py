"""The quick start with the bundled test judge (docs/quickstart.md), as a user runs it: the bundled
sample, the bundled test judge, default thresholds, then every export of every cell loaded with
`datasets` the way docs/quickstart.md and docs/dataset-and-exports.md show.

`materializer run` is a subprocess on a fresh folder; the judge is the OpenAI test server
(`python -m materializer_tests.openai_server` in docs/quickstart.md, a thread here; the docs test,
test_docs.py, runs the page's own commands). TRL itself is not a
dependency: `scripts/check_exports_with_trl.py` runs its chat templates and trainers on these
files in a venv of its own. Here every row is checked against the key sets TRL 1.16 accepts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from materializer_assets.lib.dataset.exports import EXPORTS, data_files
from materializer_tests.openai_server.fixtures import openai_server_session  # noqa: F401

pytestmark = pytest.mark.slow

DAY = "2026-04-18"
TRL_KEYS = {"prompt", "chosen", "rejected", "completion", "messages", "label"}
TRL_KEY_SETS = {  # trl.data_utils.apply_chat_template (TRL 1.16), per export
    "sft": {"messages"},
    "dpo": {"prompt", "chosen", "rejected"},
    "kto": {"prompt", "completion", "label"},
    "grpo": {"prompt"},
}


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory, openai_server_session):
    folder = tmp_path_factory.mktemp("quickstart")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MATERIALIZER_", "DAGSTER_HOME", "LANGFUSE_"))}
    environment.update(
        MATERIALIZER_JUDGE_BASE_URL=openai_server_session.base_url,
        MATERIALIZER_JUDGE_MODEL="test-judge",
        MATERIALIZER_RAGAS_EMBEDDINGS_MODEL="test-embedder",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    result = subprocess.run(
        [sys.executable, "-m", "materializer_assets.cli", "run", "--date", DAY],
        cwd=folder, env=environment, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return folder / ".materializer" / "warehouse", result.stdout


def _cells(warehouse: Path, name: str) -> list[Path]:
    return sorted((warehouse / "exports" / name / f"date={DAY}").iterdir())


def test_the_quick_start_gives_sft_dpo_and_kto_rows_with_default_thresholds(quickstart):
    warehouse, stdout = quickstart
    line = next(line for line in stdout.splitlines() if line.strip().startswith("ok   glm-5-32b"))
    counts = dict(part.split("=") for part in line.split("rows ", 1)[1].split(";")[0].split())
    assert int(counts["sft_export"]) >= 2 and int(counts["dpo_export"]) >= 2 and int(counts["kto_export"]) >= 4, line
    cell = warehouse / "exports" / "dpo" / f"date={DAY}" / "model=glm-5-32b"
    rows = json.loads((cell / "_manifest.json").read_text())["rows_by_subpath"]
    assert rows["train"] >= 1 and rows["test"] >= 1  # a pair in each split
    # docs/quickstart.md shows this very line: it must not drift from what the quick start prints.
    page = (Path(__file__).resolve().parents[1] / "docs" / "quickstart.md").read_text()
    assert line.rstrip() in page.splitlines(), line


@pytest.mark.parametrize("name", EXPORTS)
def test_every_export_of_every_cell_loads_with_datasets_as_the_docs_show(quickstart, name, tmp_path):
    datasets = pytest.importorskip("datasets")
    warehouse, _ = quickstart
    cells = _cells(warehouse, name)
    assert len(cells) == 4  # every model of the day, the ones without rows included
    seen = {"rows": 0, "empty_split": 0, "empty_export": 0}
    for cell in cells:
        # Both folders always hold a file: the patterns resolve for every cell.
        patterns = {split: str(cell / split / "*.parquet") for split in ("train", "test")}
        assert all(list((cell / split).glob("*.parquet")) for split in ("train", "test")), cell
        manifest = json.loads((cell / "_manifest.json").read_text())
        # The docs' way: only the splits with rows (datasets refuses to build an empty split).
        files = data_files(str(cell))
        assert set(files) == {split for split, n in manifest["rows_by_subpath"].items() if n}
        if not files:
            seen["empty_export"] += 1
        else:
            seen["empty_split"] += len(files) < 2
            loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
            for split, part in loaded.items():
                assert len(part) == manifest["rows_by_subpath"][split] > 0
                assert set(part["split"]) == {split}
                seen["rows"] += len(part)
                if name in TRL_KEY_SETS:
                    for row in part:
                        assert {key for key in row if key in TRL_KEYS} == TRL_KEY_SETS[name], (cell, sorted(row))
                        if row.get("tools") is not None:
                            assert all(tool["type"] == "function" for tool in json.loads(row["tools"]))
        # Streaming takes the plain patterns, empty splits included.
        streamed = datasets.load_dataset("parquet", data_files=patterns, streaming=True)
        assert {split: sum(1 for _ in streamed[split]) for split in ("train", "test")} == {
            split: manifest["rows_by_subpath"][split] for split in ("train", "test")
        }
    assert seen["rows"] > 0
    assert seen["empty_export"] >= 1  # acme|router v2: nothing consented that day
    if name in ("sft", "dpo"):
        assert seen["empty_split"] + seen["empty_export"] >= 2  # cells with a split or everything empty


def test_tool_calls_reach_the_exports_structured(quickstart):
    datasets = pytest.importorskip("datasets")
    warehouse, _ = quickstart
    rows = []
    for cell in _cells(warehouse, "grpo"):
        files = data_files(str(cell))
        if files:
            loaded = datasets.load_dataset("parquet", data_files=files)
            rows += [row for part in loaded.values() for row in part]
    tool_results = [m for row in rows for m in row["prompt"] if m["role"] == "tool"]
    calls = [c for row in rows for m in row["prompt"] if m["tool_calls"] for c in m["tool_calls"]]
    assert tool_results and calls
    assert all(c["type"] == "function" and c["function"]["name"] and json.loads(c["function"]["arguments"]) is not None
               for c in calls)
    assert all(m["name"] for m in tool_results)
    assert any(m["tool_call_id"] for m in tool_results)
    assert any(row["tools"] for row in rows)
