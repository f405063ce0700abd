"""The `materializer` command, run as a user runs it: a subprocess on a fresh folder."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from materializer_assets.lib.slugs import model_slug

pytestmark = pytest.mark.slow


def _environment(**env: str) -> dict[str, str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("MATERIALIZER_", "DAGSTER_HOME", "PYICEBERG_"))
    }
    environment.update(env)
    return environment


def _run(args: list[str], cwd: Path, python_flags: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "materializer_assets.cli", *args],
        cwd=cwd,
        env=_environment(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The quick start's `materializer run` on the bundled sample in a fresh folder, every Python
    warning shown (-W default, and PYTHONWARNINGS for the processes the run starts)."""
    folder = tmp_path_factory.mktemp("sample-run")
    result = _run(["run", "--date", "2026-04-18"], folder, ("-W", "default"), PYTHONWARNINGS="default")
    assert result.returncode == 0, result.stdout + result.stderr
    return folder, result


def test_run_on_the_bundled_sample_writes_the_lake(sample_run):
    tmp_path, result = sample_run
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
    # Quiet by default: Dagster's log says what the user should act on (no judge configured), and no
    # Python warning (`...Warning: ...` and its source line) reaches stderr, even with -W default.
    assert [line for line in result.stderr.splitlines() if "Warning" in line] == [], result.stderr
    assert [line for line in result.stderr.splitlines() if " - dagster - " not in line] == [], result.stderr
    # The sample's users whose newest registry row refuses are in no file, raw included, and the
    # reconciliation before the cells had nothing to remove: the counts printed stay true.
    assert "consent: forgot 3 user(s), revoked 0 row(s), removed 0 row(s)" in result.stdout, result.stdout
    trace_files = [str(p) for p in warehouse.glob("*-traces/**/*.parquet")]  # raw-traces, langfuse-traces
    users = ds.dataset(trace_files).to_table(columns=["user_id"]).column("user_id").to_pylist()
    assert users and not {"u-0003", "u-0005", "u-0011"} & set(users)
    again = _run(["reconcile"], tmp_path)
    assert again.returncode == 0 and "consent: nothing to reconcile" in again.stdout, again.stdout + again.stderr


# The README's "Reading the table" snippets, run as written in the folder of the run.
READ_WITH_PYICEBERG = """
from pyiceberg.catalog import load_catalog

table = load_catalog("materializer").load_table("training_data.langfuse_traces")
rows = table.scan(row_filter="date = '2026-04-18'", selected_fields=("trace_id", "model_slug")).to_arrow()
print(rows.group_by("model_slug").aggregate([("trace_id", "count")]).sort_by("model_slug").to_pylist())
"""
READ_WITH_DUCKDB = """
from pathlib import Path

import duckdb
import duckdb_extension_avro
import duckdb_extension_iceberg
from pyiceberg.catalog import load_catalog

table = load_catalog("materializer").load_table("training_data.langfuse_traces")
con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
for package in (duckdb_extension_avro, duckdb_extension_iceberg):  # the extensions from their wheels: no download
    con.execute(f"LOAD '{next(Path(package.__file__).parent.glob('extensions/*/*.duckdb_extension'))}'")
print(con.sql(f"SELECT model_slug, count(*) AS rows FROM iceberg_scan('{table.metadata_location}') GROUP BY ALL ORDER BY 1"))
"""


def _iceberg_rows_printed(stdout: str) -> dict[str, int]:
    """model slug → iceberg_table rows, from the run's summary lines."""
    rows = {}
    for line in stdout.splitlines():
        if line.strip().startswith("ok"):
            slug = line.split()[1].rstrip(":")
            rows[slug] = int(line.split("iceberg_table=")[1].split()[0])
    return {slug: n for slug, n in rows.items() if n}


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    # A plain process in the folder: no PYTHONPATH, no project import, only what pyiceberg finds there.
    environment = {k: v for k, v in _environment().items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def published_catalog(sample_run) -> tuple[Path, dict[str, int]]:
    folder, result = sample_run
    if (Path.home() / ".pyiceberg.yaml").exists():
        pytest.skip("pyiceberg reads ~/.pyiceberg.yaml before the working directory's")
    assert "iceberg: wrote .pyiceberg.yaml" in result.stdout, result.stdout
    config = (folder / ".pyiceberg.yaml").read_text()
    assert config.startswith("# Written by `materializer run`")
    assert f"sqlite:///{folder}/.materializer/warehouse/iceberg/catalog.db" in config
    return folder, _iceberg_rows_printed(result.stdout)


def test_pyiceberg_load_catalog_opens_the_table_after_a_run(published_catalog):
    folder, printed = published_catalog
    read = _python(READ_WITH_PYICEBERG, folder)
    assert read.returncode == 0, read.stderr
    counts = {row["model_slug"]: row["trace_id_count"] for row in ast.literal_eval(read.stdout.strip())}
    assert counts == printed and sum(counts.values()) > 0

    # A second run leaves the file as it is; one of the user's is never touched.
    again = _run(["run", "--date", "2026-04-18", "--model", "glm-5-32b"], folder)
    assert again.returncode == 0 and "iceberg:" not in again.stdout, again.stdout + again.stderr
    user_file = folder / "elsewhere" / ".pyiceberg.yaml"
    user_file.parent.mkdir()
    user_file.write_text("catalog:\n  other:\n    type: in-memory\n")
    shadowed = _run(["run", "--date", "2026-04-18", "--model", "glm-5-32b"], folder, PYICEBERG_HOME=str(user_file.parent))
    assert shadowed.returncode == 0, shadowed.stdout + shadowed.stderr
    assert f"iceberg: pyiceberg reads {user_file} first (left as it is)" in shadowed.stdout
    assert user_file.read_text() == "catalog:\n  other:\n    type: in-memory\n"


def test_duckdb_reads_the_table_offline(published_catalog):
    pytest.importorskip(
        "duckdb_extension_iceberg", reason="DuckDB's Iceberg extension comes with the [duckdb] extra (and [test])"
    )
    folder, printed = published_catalog
    read = _python(READ_WITH_DUCKDB, folder)
    assert read.returncode == 0, read.stderr
    rows = {line.split("│")[1].strip(): int(line.split("│")[2]) for line in read.stdout.splitlines()
            if line.count("│") == 3 and line.split("│")[2].strip().isdigit()}
    assert rows == printed


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


# Users of the adversarial run below: (user_consent column, metadata, what the registry/list says) → outcome.
ADVERSARIAL = {
    "zz-refuses-in-metadata-4711": (True, {"consent_training": "no"}, "refused"),
    "zz-registry-grant-before-4712": (None, {}, "granted"),
    "zz-registry-grant-after-4713": (None, {}, "unknown"),
    "zz-withdrew-then-back-4714": (True, {}, "refused"),
    "zz-undated-refusal-4715": (True, {}, "forgotten"),
    "zz-unreadable-registry-4716": (True, {}, "forgotten"),
    "zz-on-erasure-list-4717": (True, {"consent_training": "yes"}, "forgotten"),
    "zz-tie-goes-to-refusal-4718": (True, {}, "forgotten"),
    "zz-granted-everywhere-4719": (True, {"consent_training": "yes", "tags": ["consent:training"]}, "granted"),
}
ADVERSARIAL_REGISTRY = (
    "user_id,granted,updated_at\n"
    "zz-refuses-in-metadata-4711,true,2026-01-01T00:00:00Z\n"
    "zz-registry-grant-before-4712,true,2026-04-01T00:00:00Z\n"
    "zz-registry-grant-after-4713,true,2026-04-20T00:00:00Z\n"
    "zz-withdrew-then-back-4714,true,2026-01-01T00:00:00Z\n"
    "zz-withdrew-then-back-4714,false,2026-05-01T00:00:00Z\n"
    "zz-withdrew-then-back-4714,true,2026-06-01T00:00:00Z\n"
    "zz-undated-refusal-4715,true,2026-01-01T00:00:00Z\n"
    "zz-undated-refusal-4715,false,\n"
    "zz-unreadable-registry-4716,banana,2026-01-01T00:00:00Z\n"
    "zz-tie-goes-to-refusal-4718,true,2026-03-01T00:00:00Z\n"
    "zz-tie-goes-to-refusal-4718,false,2026-03-01T00:00:00Z\n"
)


def _rows_by_folder(warehouse: Path, dataset: str) -> dict[str, set[str]]:
    """user ids per consent folder of a lake dataset (all days and models)."""
    found: dict[str, set[str]] = {}
    for path in (warehouse / dataset).rglob("*.parquet"):
        folder = next((part for part in path.parts if part.startswith("consent=")), "")
        users = ds.dataset(str(path)).to_table(columns=["user_id"]).column("user_id").to_pylist()
        found.setdefault(folder, set()).update(users)
    return found


def _grep(folder: Path, needles: list[str]) -> dict[str, list[str]]:
    """Which files under ``folder`` hold any needle as plain bytes (SQLite keeps text as is)."""
    hits = {}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found = [n for n in needles if n.encode() in data]
            if found:
                hits[str(path)] = found
    return hits


def test_adversarial_consent_through_the_cli_on_postgres(tmp_path, pg_url):
    """Conflicting signals and registry histories from a real Postgres table and a CSV registry,
    then revocations after the day was run: nothing of a refusing, unknown or forgotten user beyond
    raw's consent=false|unknown folders (the forgotten not even there), nothing in the Dagster instance."""
    from materializer_assets.lib.sources.postgres import create_traces_table, insert_traces

    create_traces_table(pg_url)
    rows = []
    for number, (user, (column, metadata, _)) in enumerate(sorted(ADVERSARIAL.items())):
        rows.append({
            "id": f"00000000-0000-0000-0000-{number:012d}", "timestamp": "2026-04-18T10:00:00", "user_id": user,
            "session_id": f"session-{user}", "input": f"question from {user}", "output": f"secret answer of {user}",
            "model": "glm-5-32b", "latency_ms": 10, "token_count": 5, "metadata": json.dumps(metadata),
            "user_consent": column,
        })
    insert_traces(pg_url, rows)
    (tmp_path / "registry.csv").write_text(ADVERSARIAL_REGISTRY)
    (tmp_path / "erase.csv").write_text("user_id\nzz-on-erasure-list-4717\n")
    env = {"MATERIALIZER_SOURCE": pg_url, "MATERIALIZER_CONSENT_REGISTRY": str(tmp_path / "registry.csv"),
           "MATERIALIZER_ERASURE_LIST": str(tmp_path / "erase.csv")}
    result = _run(["run", "--date", "2026-04-18"], tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr

    warehouse = tmp_path / ".materializer" / "warehouse"
    expected = {outcome: {u for u, (_, _, o) in ADVERSARIAL.items() if o == outcome}
                for outcome in ("granted", "refused", "unknown", "forgotten")}
    raw = _rows_by_folder(warehouse, "raw-traces")
    assert raw == {"consent=true": expected["granted"], "consent=false": expected["refused"],
                   "consent=unknown": expected["unknown"]}
    assert set().union(*_rows_by_folder(warehouse, "langfuse-traces").values()) == expected["granted"]
    outside_raw = [p for p in warehouse.rglob("*.parquet") if "raw-traces" not in p.parts]
    assert outside_raw
    users_outside_raw = {u for p in outside_raw if "user_id" in ds.dataset(str(p)).schema.names
                         for u in ds.dataset(str(p)).to_table(columns=["user_id"]).column("user_id").to_pylist()}
    assert users_outside_raw == expected["granted"]

    # Revocations after the day was run: the granted-everywhere user withdraws (and comes back later),
    # the registry-only grant disappears.
    (tmp_path / "registry.csv").write_text(
        ADVERSARIAL_REGISTRY.replace("zz-registry-grant-before-4712,true,2026-04-01T00:00:00Z\n", "")
        + "zz-granted-everywhere-4719,false,2026-05-01T00:00:00Z\nzz-granted-everywhere-4719,true,2026-06-01T00:00:00Z\n"
    )
    reconciled = _run(["reconcile"], tmp_path, **env)
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    assert "revoked 2 row(s)" in reconciled.stdout, reconciled.stdout
    raw = _rows_by_folder(warehouse, "raw-traces")
    assert raw.get("consent=true", set()) == set()
    assert raw["consent=false"] == expected["refused"] | {"zz-granted-everywhere-4719"}
    assert raw["consent=unknown"] == expected["unknown"] | {"zz-registry-grant-before-4712"}
    for path in outside_raw:
        if path.exists() and "user_id" in ds.dataset(str(path)).schema.names:
            assert ds.dataset(str(path)).count_rows() == 0 or not set(
                ds.dataset(str(path)).to_table(columns=["user_id"]).column("user_id").to_pylist()), path
    # Every Parquet file but raw's, decoded (they are compressed): none of their words; JSON and other
    # files (audit, ledger, Iceberg metadata) as bytes: none of their ids either.
    answers = [f"secret answer of {u}" for u in ADVERSARIAL]
    decoded = {str(p): json.dumps(pq.read_table(p).to_pylist(), default=str, ensure_ascii=False)
               for p in warehouse.rglob("*.parquet") if "raw-traces" not in p.parts}
    assert decoded and not {f for f, text in decoded.items() if any(a in text or u in text
                                                                      for a, u in zip(answers, ADVERSARIAL))}
    assert not {f: h for f, h in _grep(warehouse, list(ADVERSARIAL)).items() if not f.endswith(".parquet")}
    # The Dagster instance (SQLite event log, run storage, compute logs): no user id, no answer.
    instance = _grep(tmp_path / ".materializer" / "dagster_home", [*ADVERSARIAL, "secret answer of"])
    assert instance == {}
