"""The `materializer` command, run as a user runs it: a subprocess on a fresh folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from materializer_assets.lib.slugs import model_slug

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MATERIALIZER_", "DAGSTER_HOME"))}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "materializer_assets.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_on_the_bundled_sample_writes_the_lake(tmp_path):
    result = _run(["run", "--date", "2026-04-18"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith(("ok", "FAIL"))]
    assert len(lines) >= 3 and all(line.strip().startswith("ok") for line in lines), result.stdout
    assert model_slug("Qwen/Qwen3-Coder-4B-Instruct") in result.stdout
    warehouse = tmp_path / ".materializer" / "warehouse"
    consented = list((warehouse / "langfuse-traces" / "date=2026-04-18").rglob("consent=true/*.parquet"))
    assert consented
    table = ds.dataset(consented).to_table(columns=["consent", "date"])
    assert set(table.column("consent").to_pylist()) == {True}
    assert set(table.column("date").to_pylist()) == {"2026-04-18"}
    assert (tmp_path / ".materializer" / "dagster_home").is_dir()
    # The sample's users whose newest registry row refuses are in no file, raw included, and the
    # reconciliation before the cells had nothing to remove: the counts printed stay true.
    assert "consent: forgot 3 user(s), revoked 0 row(s), removed 0 row(s)" in result.stdout, result.stdout
    trace_files = [str(p) for p in warehouse.glob("*-traces/**/*.parquet")]  # raw-traces, langfuse-traces
    users = ds.dataset(trace_files).to_table(columns=["user_id"]).column("user_id").to_pylist()
    assert users and not {"u-0003", "u-0005", "u-0011"} & set(users)
    again = _run(["reconcile"], tmp_path)
    assert again.returncode == 0 and "consent: nothing to reconcile" in again.stdout, again.stdout + again.stderr


def test_run_one_model_by_its_name(tmp_path):
    result = _run(["run", "--date", "2026-04-18", "--model", "glm-5-32b"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 cell(s)" in result.stdout
    cells = list((tmp_path / ".materializer/warehouse/langfuse-traces/date=2026-04-18").iterdir())
    assert [cell.name for cell in cells] == ["model=glm-5-32b"]


def test_failures_exit_non_zero_with_the_reason(tmp_path):
    bad = _run(["run", "--date", "2026-04-18"], tmp_path, MATERIALIZER_SOURCE=str(tmp_path / "missing"))
    assert bad.returncode != 0
    assert str(tmp_path / "missing") in bad.stderr

    # a registry that cannot be read fails the cell (fail closed)
    failing = _run(
        ["run", "--date", "2026-04-18", "--model", "glm-5-32b"],
        tmp_path,
        MATERIALIZER_CONSENT_REGISTRY=str(tmp_path / "no-registry.csv"),
    )
    assert failing.returncode == 1
    assert "FAIL" in failing.stdout and "consent registry" in failing.stdout

    assert _run(["run", "--date", "2026-13-01"], tmp_path).returncode == 2


def test_models_lists_slugs_and_names(tmp_path):
    result = _run(["models", "--date", "2026-04-18"], tmp_path)
    assert result.returncode == 0
    rows = dict(line.split("\t") for line in result.stdout.strip().splitlines())
    assert rows[model_slug("Qwen/Qwen3-Coder-4B-Instruct")] == "Qwen/Qwen3-Coder-4B-Instruct"
    assert rows["glm-5-32b"] == "glm-5-32b"


def test_run_against_postgres(tmp_path, pg_url):
    from materializer_assets.lib.sources.postgres import create_traces_table, insert_traces

    create_traces_table(pg_url)
    insert_traces(
        pg_url,
        [
            {"id": "00000000-0000-0000-0000-000000000001", "timestamp": "2026-04-18T03:15:00", "user_id": "u1",
             "session_id": "s", "input": "What is EKS Auto Mode?", "output": "A managed node group…",
             "model": "glm-5-32b", "latency_ms": 850, "token_count": 512,
             "metadata": json.dumps({"feedback_score": 4.5}), "user_consent": True},
            {"id": "00000000-0000-0000-0000-000000000002", "timestamp": "2026-04-18T04:00:00", "user_id": "u2",
             "session_id": "s", "input": "q", "output": "a", "model": "glm-5-32b", "latency_ms": 1,
             "token_count": 1, "metadata": None, "user_consent": False},
        ],
    )
    result = _run(["run", "--date", "2026-04-18"], tmp_path, MATERIALIZER_SOURCE=pg_url)
    assert result.returncode == 0, result.stdout + result.stderr
    files = list((tmp_path / ".materializer/warehouse/langfuse-traces").rglob("*.parquet"))
    table = ds.dataset(files).to_table()
    assert table.column("trace_id").to_pylist() == ["00000000-0000-0000-0000-000000000001"]
    assert table.column("feedback_score").to_pylist() == [4.5]
