"""Per-cell time of a day's cells run the way the daemon runs them, against ``materializer run``.

    python benchmarks/backfill_bench.py                     # the bundled sample, 2026-04-18 (4 cells)
    python benchmarks/backfill_bench.py --rows 40000        # a generated Postgres day (benchmarks/_common.py)

Both sides run the whole graph (every asset and check, no judge configured) on the same data, on
a fresh Dagster home (the repository's dagster.yaml: SQLite storage) and warehouse each, with no
judge (``--judge URL``: the test judge, e.g. with a fixed latency):

- **cli**: ``materializer run --date D`` in one process: ``execute_in_process`` per cell. Its
  per-cell time is the command's wall time divided by the cells (start-up, the consent
  reconciliation and imports included, as a user waits for them).
- **daemon**: one process per cell, ``dagster job execute`` of the asset job with the cell's
  ``dagster/partition`` tag: what the default run launcher does for every run of a UI backfill,
  a sensor or a schedule (``dagster api execute_run``: start Python, load the code location,
  execute the run with the ``Definitions``' executor; ``--executor`` sets
  ``MATERIALIZER_RUN_EXECUTOR``, repeat it to compare executors in one run). Its per-cell time is the wall time of
  that process; the run's own duration (RUN_START → RUN_SUCCESS, without the process start-up)
  is printed too. Cells run one after another, like the CLI's (the local instance runs two at a
  time, which halves neither side's per-cell CPU on two cores).

Prints both, their ratio and whether it meets the target (daemon ≤ 1.5 × cli per cell).
``--code`` measures another checkout (e.g. ``git archive`` of an older commit) with this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

TARGET = 1.5
SAMPLE_DAY = "2026-04-18"
ASSET_JOB = "__ASSET_JOB"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


JUDGE: dict[str, str] = {}  # --judge: the scoring settings both sides get


def _env(code: Path, home: Path, warehouse: Path, source: str | None) -> dict:
    env = {**os.environ, "DAGSTER_HOME": str(home), "MATERIALIZER_WAREHOUSE": str(warehouse)}
    env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])
    for name in list(env):  # no judge, Ragas or Langfuse endpoint: the same work on both sides
        if name.startswith(("MATERIALIZER_JUDGE", "MATERIALIZER_RAGAS", "OPENAI_", "LANGFUSE_")):
            env.pop(name)
    env.update(JUDGE)
    env.pop("MATERIALIZER_SOURCE", None)
    if source:
        env["MATERIALIZER_SOURCE"] = source
    return env


def _fresh(root: Path, name: str, code: Path) -> tuple[Path, Path]:
    home, warehouse = root / name / "dagster_home", root / name / "warehouse"
    home.mkdir(parents=True)
    shutil.copyfile(code / "dagster.yaml", home / "dagster.yaml")
    return home, warehouse


def _slugs(env: dict, day: str) -> list[str]:
    listed = subprocess.run(
        [sys.executable, "-m", "materializer_assets.cli", "models", "--date", day],
        env=env, capture_output=True, text=True, check=True, cwd=env["PYTHONPATH"].split(os.pathsep)[0],
    )
    return [line.split("\t")[0] for line in listed.stdout.splitlines() if line.strip()]


def measure_cli(code: Path, root: Path, day: str, source: str | None) -> dict:
    home, warehouse = _fresh(root, "cli", code)
    env = _env(code, home, warehouse, source)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "materializer_assets.cli", "run", "--date", day],
        env=env, cwd=code, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"materializer run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    cells = sum(1 for line in done.stdout.splitlines() if line.startswith("  ok "))
    return {"cells": cells, "wall_s": seconds, "per_cell_s": seconds / cells}


def measure_daemon(code: Path, root: Path, day: str, source: str | None, executor: str) -> dict:
    home, warehouse = _fresh(root, f"daemon-{executor}", code)
    env = {**_env(code, home, warehouse, source), "MATERIALIZER_RUN_EXECUTOR": executor}
    slugs = _slugs(env, day)
    # The partitions exist before anything launches a run (DESIGN §7), as the sensor ensures.
    subprocess.run(
        [sys.executable, "-c", "import sys, dagster as dg; i = dg.DagsterInstance.get(); "
         "i.add_dynamic_partitions('model', sys.argv[1:])", *slugs],
        env=env, cwd=code, check=True, capture_output=True,
    )
    config = home.parent / "quiet.json"  # JSON is YAML: the run config file
    config.write_text(json.dumps(QUIET))
    per_cell = []
    for slug in slugs:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "dagster", "job", "execute", "-m", "materializer_assets.definitions", "-a", "defs",
             "-j", ASSET_JOB, "-c", str(config), "--tags", json.dumps({"dagster/partition": f"{day}|{slug}"})],
            env=env, cwd=code, capture_output=True, text=True,
        )
        per_cell.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{day}|{slug} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    runs = subprocess.run(
        [sys.executable, "-c", _RUN_FIGURES], env=env, cwd=code, capture_output=True, text=True, check=True
    )
    figures = json.loads(runs.stdout.strip().splitlines()[-1])
    return {"cells": len(slugs), "wall_s": sum(per_cell), "per_cell_s": statistics.mean(per_cell), **figures}


# Read in a child on the daemon side's instance: each run's status, duration and executor.
_RUN_FIGURES = """
import json, dagster as dg
instance = dg.DagsterInstance.get()
runs = instance.get_runs()
durations, statuses = [], set()
for run in runs:
    stats = instance.get_run_stats(run.run_id)
    durations.append(stats.end_time - stats.start_time)
    statuses.add(run.status.value)
from materializer_assets.definitions import defs
executor = defs.resolve_implicit_global_asset_job_def().executor_def
name = {"multiprocess": "multiprocess (spawn)", "multi_or_in_process_executor": "multiprocess (spawn, Dagster default)", "forkserver_multiprocess": "multiprocess (forkserver, preloaded)"}
print(json.dumps({"run_s": sum(durations) / len(durations), "statuses": sorted(statuses), "executor": name.get(executor.name, executor.name)}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=0, help="generate a Postgres day of this many traces (default: the bundled sample)")
    parser.add_argument("--models", type=int, default=4, help="models of the generated day (default 4)")
    parser.add_argument("--pg-url", default=common.DEFAULT_ADMIN_URL, help="admin URL of the PostgreSQL server")
    parser.add_argument("--database", default="materializer_bench_backfill", help="database of the generated day")
    parser.add_argument("--drop", action="store_true", help="drop that database at the end")
    parser.add_argument(
        "--judge", metavar="URL",
        help="an OpenAI-compatible base URL serving test-judge and test-embedder (python -m "
        "materializer_tests.openai_server --port 8765 --latency 0.2): both sides score with it",
    )
    parser.add_argument(
        "--executor", action="append", choices=("auto", "forkserver", "in_process", "spawn"),
        help="MATERIALIZER_RUN_EXECUTOR of the daemon side; repeat to compare (default: the Definitions' default)",
    )
    parser.add_argument("--code", type=Path, default=common.REPO_ROOT, help="checkout measured (default this one)")
    args = parser.parse_args(argv)
    code = args.code.resolve()
    if args.judge:
        JUDGE.update({
            "MATERIALIZER_JUDGE_BASE_URL": args.judge, "MATERIALIZER_JUDGE_MODEL": "test-judge",
            "MATERIALIZER_RAGAS_EMBEDDINGS_MODEL": "test-embedder",
        })
    source, day = None, SAMPLE_DAY
    try:
        if args.rows:
            spec = common.DataSpec(rows_per_day=(args.rows,), models=common.DEFAULT_MODELS[: args.models])
            source = common.ensure_database(args.pg_url, args.database)
            common.load_traces(source, spec)
            day = spec.days[0].isoformat()
        with tempfile.TemporaryDirectory(prefix="backfill_bench_") as tmp:
            root = Path(tmp)
            print(f"data: {'bundled sample' if source is None else f'{args.rows:,} generated rows'}, {day}; "
                  f"judge {args.judge or 'none'}; code {code}", flush=True)
            cli = measure_cli(code, root, day, source)
            print(f"cli     {cli['cells']} cells  {cli['wall_s']:7.1f} s  per cell {cli['per_cell_s']:6.1f} s", flush=True)
            daemons = []
            for executor in args.executor or [""]:
                daemon = measure_daemon(code, root, day, source, executor)
                daemons.append(daemon)
                print(
                    f"daemon  {daemon['cells']} cells  {daemon['wall_s']:7.1f} s  per cell {daemon['per_cell_s']:6.1f} s"
                    f"  (run itself {daemon['run_s']:.1f} s; runs {','.join(daemon['statuses'])}; "
                    f"executor {daemon['executor']})",
                    flush=True,
                )
        for daemon in daemons:
            ratio = daemon["per_cell_s"] / cli["per_cell_s"]
            verdict = "met" if ratio <= TARGET else "NOT met"
            print(f"ratio daemon/cli per cell, {daemon['executor']}: {ratio:.2f}x (target <= {TARGET}x): {verdict}")
        return 0
    finally:
        if args.rows and args.drop:
            common.drop_database(args.pg_url, args.database)


if __name__ == "__main__":
    sys.exit(main())
