"""The benchmark scripts run end to end at a tiny size and print their figures.

Real PostgreSQL (a database of the test's own, dropped by ``--drop``), real
Dagster runs, real Parquet files. Timings are never asserted: the machine is
shared and a tiny day says nothing about speed; only that every figure and
ratio is printed and both paths wrote what they should.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
pytestmark = pytest.mark.slow


def _run(script: str, pg_admin_url: str, *args: str) -> str:
    import psycopg

    database = f"materializer_bench_smoke_{uuid.uuid4().hex[:10]}"
    try:
        completed = subprocess.run(
            [sys.executable, str(BENCHMARKS / script), "--pg-url", pg_admin_url, "--database", database, "--drop", *args],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:  # also when the script was killed before its own --drop
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def _table_row(output: str, label: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith(label))
    return line[len(label):].split()


def test_extract_bench_prints_both_paths_and_their_ratio(pg_admin_url):
    pytest.importorskip("pandas")
    pytest.importorskip("sqlalchemy")
    output = _run("extract_bench.py", pg_admin_url, "--rows", "2000", "--rounds", "1")
    assert "loaded 2,000 rows" not in output  # three days of ~667 rows each, not one of 2,000
    day_rows = int(re.search(r"measured day: 2026-04-18 \(([\d,]+) rows\)", output).group(1).replace(",", ""))
    assert 600 <= day_rows <= 700
    baseline, ours = _table_row(output, "(a) baseline"), _table_row(output, "(b) ours")
    for row in (baseline, ours):
        seconds, rows_per_second, rss = float(row[0]), float(row[1].replace(",", "")), float(row[2].replace(",", ""))
        assert seconds > 0 and rows_per_second > 0 and rss > 0
    # (a) keeps user_consent = true only; (b) also grants by tag/metadata key, so it keeps more.
    baseline_rows, our_rows = int(baseline[6].replace(",", "")), int(ours[6].replace(",", ""))
    assert 0 < baseline_rows < our_rows < day_rows
    assert re.search(r"ours vs baseline: [\d.]+× faster \(time b/a = [\d.]+; .*peak RSS b/a = [\d.]+", output)
    # the same runs with iceberg_table, and what it adds to the cells' time
    assert int(_table_row(output, "(b+) +iceberg")[6].replace(",", "")) == our_rows
    assert re.search(r"iceberg_table: [\d.]+ s over the day's cells vs [\d.]+ s for raw_traces \+ consented_parquet: \+[\d.]+%", output)
    # the encoding alone of what (b) writes: the same rows, and the ratio it caps
    assert int(_table_row(output, "(f) encode only")[6].replace(",", "")) > our_rows  # raw-traces + langfuse-traces
    assert re.search(r"encode floor: .* takes [\d.]+ s on one core; .* at most [\d.]+× faster than the baseline", output)


def test_scale_bench_prints_time_and_rss_per_size_and_the_rss_ratio(pg_admin_url):
    output = _run("scale_bench.py", pg_admin_url, "--sizes", "1000,2000", "--rounds", "1")
    sizes = {}
    for line in output.splitlines():
        match = re.match(r"\s+([\d,]+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+([\d,]+) MB", line)
        if match:
            sizes[int(match.group(1).replace(",", ""))] = float(match.group(2)), int(match.group(5).replace(",", ""))
    assert set(sizes) == {1000, 2000}
    assert all(seconds > 0 and rss_mb > 0 for seconds, rss_mb in sizes.values())
    assert re.search(r"2,000 vs 1,000 rows: 2\.0× the rows took [\d.]+× the time; peak RSS ratio [\d.]+", output)


def test_graph_bench_prints_every_asset_the_ratio_and_the_targets(pg_admin_url):
    pytest.importorskip("pandas")
    pytest.importorskip("sqlalchemy")
    output = _run(
        "graph_bench.py", pg_admin_url, "--sizes", "300,600", "--judge-sizes", "300", "--judge-latency", "0",
        "--template-share", "0.9",
    )
    assert "90% of prompts on one" in output
    for label in ("graph", "graph+judge"):
        match = re.search(rf"  {re.escape(label)}: ([\d.]+) s = ([\d.]+)× the baseline", output)
        assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0, output
        steps = re.search(rf"  {re.escape(label)} per asset \(s, summed over cells\): (.*)", output).group(1)
        # every asset of the graph ran (the consent reconciliation too)
        # raw_traces + consented_parquet are one step: the multi-asset extract_cell
        for asset in ("extract_cell", "iceberg_table", "judge_scores", "ragas_scores",
                      "reward_dataset", "sft_export", "dpo_export", "kto_export", "grpo_export", "router_export"):
            assert f"{asset} " in steps, (asset, steps)
    assert re.search(r"300 rows: whole graph [\d.]+× the pandas extraction", output)
    assert re.search(r"peak RSS graph: [\d,]+ MB at 300, [\d,]+ MB at 600; largest/smallest [\d.]+", output)
