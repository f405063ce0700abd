"""Shared parts of the benchmarks: test data made in SQL, the two extraction
paths, and running each measurement in a process of its own.

Data. :func:`load_traces` fills the design document's ``traces`` table
(created by ``create_traces_table``) with ``generate_series`` in one
``INSERT … SELECT`` per day, so a million rows take about a minute, not an
hour of client round trips. Text is drawn from a 16 MB corpus of Zipf-ish
pseudo-words (one ``bytea`` stored uncompressed out of line, so each row's
``substring`` fetches just its slice): long enough that a Parquet page does
not see the same sentences again and again, so compression does about as
much work as on real prose. Inputs are 200–600 characters, outputs
500–2,000, metadata holds contexts, feedback, tags and token counts; consent
is mixed (column true/false/NULL, and for NULLs a tag or a metadata key); a
few rows carry an e-mail, phone number or API key so redaction has work to do.
The data of a (database, parameters) pair is reused; ``--reload`` rebuilds it.

Paths.
  (a) ``baseline``: the Airflow task of our design document — ``pandas.read_sql``
      of the day through SQLAlchemy + psycopg2 (what Airflow's ``PostgresHook``
      uses), ``groupby('model')``, ``pa.Table.from_pandas``,
      ``pq.write_table(compression='snappy')`` per model (to a local folder
      instead of S3, for both paths).
  (b) ``ours``: the real ``raw_traces`` + ``consented_parquet`` assets of the
      Dagster graph (with their checks; one ``extract_cell`` multi-asset step
      that writes raw and stages consented in one pass), one
      ``dagster.materialize()`` run per (date, model) cell of the day,
      in-process on an ephemeral instance, with the project's resources
      (source = the Postgres URL, warehouse = a temporary folder, redaction on).
  (b') ``ours-lib``: the same lib functions the assets call, without Dagster.
  (c) ``ours-direct``: the baseline's work done our way, for comparison only:
      consented, deduplicated, redacted rows straight from the source into
      ``langfuse-traces``, without writing and re-reading ``raw-traces``.
  (f) ``encode-floor``: only the Parquet encoding of the files (b) writes, on
      one thread: the part of (b) that no implementation writing those bytes
      with those settings can avoid.

Each measurement is a child process (``python benchmarks/_common.py child …``);
the parent reads the child's peak RSS from ``os.wait4`` (the kernel's
``ru_maxrss`` of exactly that process) and its wall time, and the child
reports the time of the extraction itself (after its imports) on its last
output line as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ADMIN_URL = os.environ.get("MATERIALIZER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DEFAULT_MODELS = ("glm-5-32b", "Qwen/Qwen3-Coder-4B-Instruct", "llama-3.1-8b-instruct", "gpt-4o-mini")
# Share of a day's rows per model (skewed, like real traffic).
MODEL_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
FIRST_DAY = date(2026, 4, 17)
PATHS = ("baseline", "ours", "ours-iceberg", "ours-lib", "ours-direct", "encode-floor")
RESULT_PREFIX = "BENCH_RESULT "

# ---------------------------------------------------------------- databases


def add_common_arguments(parser, database: str, rounds: int) -> None:
    """The options every extraction benchmark shares: the server, its database, the code measured."""
    parser.add_argument("--models", type=int, default=4, help="models per day (default 4)")
    parser.add_argument("--rounds", type=int, default=rounds, help=f"measurements per path or size (default {rounds})")
    parser.add_argument("--pg-url", default=DEFAULT_ADMIN_URL, help="admin URL of the PostgreSQL server")
    parser.add_argument("--database", default=database, help="database to load (created if absent)")
    parser.add_argument("--reload", action="store_true", help="rebuild the data even if it is there")
    parser.add_argument(
        "--code", type=Path, default=REPO_ROOT,
        help="folder whose materializer_assets is measured (default this checkout; e.g. a copy with a change to try)",
    )
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")


def run_then_drop(args, run) -> int:
    """``run(args)``, then drop the benchmark database if ``--drop`` asked for it (also on failure)."""
    try:
        return run(args)
    finally:
        if args.drop:
            drop_database(args.pg_url, args.database)



def database_url(admin_url: str, database: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{database}"


def ensure_database(admin_url: str, database: str) -> str:
    """URL of ``database`` on the server of ``admin_url``, created if absent."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{database}"')
    return database_url(admin_url, database)


def drop_database(admin_url: str, database: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


# ---------------------------------------------------------------- test data


def _vocabulary(seed: int, size: int = 4000) -> list[str]:
    """Common English words plus pronounceable pseudo-words, some with punctuation."""
    common = (
        "the of and to a in is it you that he was for on are with as I his they be at one have this from or had by "
        "not word but what some we can out other were all there when up use your how said an each she which do their "
        "time if will way about many then them write would like so these her long make thing see him two has look "
        "more day could go come did number sound no most people my over know water than call first who may down side "
        "been now find any new work part take get place made live where after back little only round man year came "
        "show every good me give our under name very through just form sentence great think say help low line differ "
        "turn cause much mean before move right boy old too same tell does set three want air well also play small "
        "end put home read hand port large spell add even land here must big high such follow act why ask men change "
        "cluster node pod Kubernetes Karpenter autoscaling GPU inference model latency token request deploy service "
        "function return error value config database query index table python import class def async await"
    ).split()
    rng = random.Random(seed)
    syllables = ["ka", "lo", "ri", "ten", "mar", "os", "ve", "qui", "dra", "no", "sel", "ph", "um", "tra", "be", "zi"]
    words = list(common)
    while len(words) < size:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
        words.append(word + rng.choice(["", "", "", "", "", ",", ".", "s", "ed", "ing"]))
    return words


@dataclass(frozen=True)
class DataSpec:
    """What :func:`load_traces` puts in the table; equal specs mean reusable data."""

    rows_per_day: tuple[int, ...]
    first_day: str = FIRST_DAY.isoformat()
    models: tuple[str, ...] = DEFAULT_MODELS
    seed: int = 42
    version: int = 1  # bump when the generator changes

    @property
    def days(self) -> list[date]:
        first = date.fromisoformat(self.first_day)
        return [first + timedelta(days=offset) for offset in range(len(self.rows_per_day))]

    @property
    def total_rows(self) -> int:
        return sum(self.rows_per_day)


def _model_case(models: Sequence[str]) -> str:
    """SQL picking a model for a uniform random ``r_model`` with MODEL_WEIGHTS (cycled)."""
    if len(models) == 1:
        return "%(model_0)s"
    weights = [MODEL_WEIGHTS[i % len(MODEL_WEIGHTS)] for i in range(len(models))]
    total, bound, branches = sum(weights), 0.0, []
    for index, weight in enumerate(weights[:-1]):
        bound += weight / total
        branches.append(f"WHEN r_model < {bound:.6f} THEN %(model_{index})s")
    return "CASE " + " ".join(branches) + f" ELSE %(model_{len(models) - 1})s END"


# One day's rows. Per-row random numbers come from the OFFSET 0 subquery (a
# fence: each is drawn once and used in several columns). Text is sliced from
# the corpus bytea at random offsets.
_INSERT_DAY = """
INSERT INTO traces (id, "timestamp", user_id, session_id, input, output, model, latency_ms, token_count,
                    metadata, user_consent)
SELECT
    md5(%(seed_text)s || g)::uuid,
    %(day)s::timestamp + r_time * interval '86399.999 seconds',
    'user-' || (r_user * 20000)::int,
    'session-' || (r_user * 20000)::int || '-' || (g %% 7),
    convert_from(substring(c.body FROM 1 + (r_in_at * (c.size - 700))::int FOR in_len), 'UTF8')
        || CASE WHEN r_pii < 0.03 THEN ' You can reach me at user' || g || '@example.com.'
                WHEN r_pii < 0.04 THEN ' My key is sk-proj-' || md5(g::text) || ' thanks' ELSE '' END,
    CASE WHEN r_null_output < 0.01 THEN NULL ELSE
        convert_from(substring(c.body FROM 1 + (r_out_at * (c.size - 2100))::int FOR out_len), 'UTF8')
        || CASE WHEN r_pii BETWEEN 0.5 AND 0.51 THEN ' Call +1 415-555-0' || (100 + g %% 900) || ' for help.'
                ELSE '' END END,
    {model_case},
    (50 + r_latency * r_latency * 4000)::int,
    (in_len + out_len) / 4,
    jsonb_strip_nulls(jsonb_build_object(
        'domain', (ARRAY['eks-documentation', 'billing', 'coding', 'support', 'search'])[1 + (g %% 5)],
        'environment', CASE WHEN g %% 10 = 0 THEN 'staging' ELSE 'production' END,
        'feedback_score', CASE WHEN r_feedback < 0.7 THEN round((1 + r_feedback * 40)::numeric %% 4 + 1, 1) END,
        'input_tokens', in_len / 4,
        'output_tokens', out_len / 4,
        'cost_usd', round(((in_len + out_len) * 0.000002)::numeric, 6),
        'contexts', CASE WHEN r_ctx < 0.6 THEN jsonb_build_array(
            convert_from(substring(c.body FROM 1 + (r_ctx * 1e6)::int %% (c.size - 400) FOR 100 + (g %% 300)::int), 'UTF8'),
            convert_from(substring(c.body FROM 1 + (r_in_at * 7e6)::int %% (c.size - 400) FOR 100 + (g %% 211)::int), 'UTF8'))
            END,
        'tags', CASE WHEN r_consent BETWEEN 0.80 AND 0.87 THEN jsonb_build_array('app:chat', 'consent:training')
                     ELSE jsonb_build_array('app:chat') END,
        'consent_training', CASE WHEN r_consent BETWEEN 0.87 AND 0.93 THEN to_jsonb('yes'::text)
                                 WHEN r_consent BETWEEN 0.93 AND 0.96 THEN to_jsonb('no'::text) END
    )),
    CASE WHEN r_consent < 0.6 THEN true WHEN r_consent < 0.8 THEN false END
FROM (
    SELECT g, random() AS r_time, random() AS r_user, random() AS r_in_at, random() AS r_out_at,
           200 + (random() * 400)::int AS in_len, 500 + (random() * 1500)::int AS out_len,
           random() AS r_model, random() AS r_latency, random() AS r_feedback, random() AS r_ctx,
           random() AS r_consent, random() AS r_pii, random() AS r_null_output
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    OFFSET 0
) AS r
CROSS JOIN (SELECT body, length(body) AS size FROM bench_corpus) AS c
"""


def _corpus_words(total_rows: int) -> int:
    # ~16 MB of text for big tables (more than zstd's window, so pages do not
    # repeat each other); small tables get a small corpus and load in a second.
    return min(2_700_000, max(100_000, total_rows * 3))


def load_traces(url: str, spec: DataSpec, reload: bool = False, log=print) -> bool:
    """Fill ``traces`` in database ``url`` per ``spec``; False when it already held exactly that."""
    import psycopg
    from psycopg.types.json import Jsonb

    sys.path.insert(0, str(REPO_ROOT))
    from materializer_assets.lib.sources.postgres import create_traces_table

    marker = json.dumps(asdict(spec), sort_keys=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_dataset (spec jsonb NOT NULL)")
        row = conn.execute("SELECT spec FROM bench_dataset").fetchone()
        has_traces = conn.execute("SELECT to_regclass('traces') IS NOT NULL").fetchone()[0]
        if not reload and row is not None and has_traces and json.dumps(row[0], sort_keys=True) == marker:
            return False
        started = time.perf_counter()
        conn.execute("DROP TABLE IF EXISTS traces")
        conn.execute("DELETE FROM bench_dataset")
    create_traces_table(url)
    vocabulary = _vocabulary(spec.seed)
    with psycopg.connect(url, autocommit=True) as conn:
        # Reads are the same for a logged table; loading skips the WAL.
        conn.execute("ALTER TABLE traces SET UNLOGGED")
        conn.execute("SELECT setseed(%s)", (((spec.seed % 1000) / 1000.0),))
        conn.execute("CREATE TEMP TABLE bench_corpus (body bytea)")
        conn.execute("ALTER TABLE bench_corpus ALTER COLUMN body SET STORAGE EXTERNAL")
        conn.execute(
            """INSERT INTO bench_corpus
               SELECT convert_to(string_agg((%(vocab)s::text[])[1 + floor(power(random(), 2.5) * %(n)s)::int], ' '), 'UTF8')
               FROM generate_series(1, %(words)s)""",
            {"vocab": vocabulary, "n": len(vocabulary), "words": _corpus_words(spec.total_rows)},
        )
        first = 1
        model_params = {f"model_{index}": name for index, name in enumerate(spec.models)}
        insert = _INSERT_DAY.replace("{model_case}", _model_case(spec.models))
        for day, rows in zip(spec.days, spec.rows_per_day):
            params = {"seed_text": f"{spec.seed}-", "day": day.isoformat(), "first": first, "last": first + rows - 1}
            conn.execute(insert, {**params, **model_params})
            first += rows
            log(f"  loaded {rows:,} rows for {day} ({time.perf_counter() - started:.0f} s)")
        # Set hint bits and the visibility map now, not during the first measured read.
        conn.execute("VACUUM (FREEZE, ANALYZE) traces")
        conn.execute("INSERT INTO bench_dataset VALUES (%s)", (Jsonb(json.loads(marker)),))
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('traces'))").fetchone()[0]
    log(f"  {spec.total_rows:,} rows in {time.perf_counter() - started:.0f} s; table size {size}")
    return True


# ---------------------------------------------------------------- the two paths (run in the child)


def _count_parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in folder.rglob("*.parquet"))


def run_baseline(url: str, day: date, out_dir: Path) -> dict:
    """The design document's Airflow task, as written (pandas.read_sql of the day)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    started = time.perf_counter()
    # The query of the design document; the day is a validated date.
    query = f"""
        SELECT
            id, timestamp, user_id, session_id,
            input, output, model, latency_ms, token_count,
            metadata
        FROM traces
        WHERE DATE(timestamp) = '{day.isoformat()}'
        AND user_consent = true
        AND output IS NOT NULL
        ORDER BY timestamp
    """
    with engine.connect() as connection:
        df = pd.read_sql(query, connection)
    files = 0
    for model, group in df.groupby("model"):
        table = pa.Table.from_pandas(group)
        folder = out_dir / "langfuse-traces" / f"date={day}" / f"model={model}" / "consent=true"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "traces-000001.parquet", "wb") as f:
            pq.write_table(table, f, compression="snappy")
        files += 1
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {"seconds": elapsed, "rows_read": len(df), "rows_written": len(df), "files": files}


def _day_slugs(url: str, day: date) -> list[str]:
    from materializer_assets.lib import slugs
    from materializer_assets.lib.sources.postgres import PostgresTraceReader

    with PostgresTraceReader(url) as reader:
        return sorted({slugs.model_slug(name) for name in reader.models_on(day)})


def run_ours_dagster(url: str, day: date, out_dir: Path, with_iceberg: bool = False) -> dict:
    """raw_traces + consented_parquet (+ iceberg_table) of every cell of the day, as real Dagster runs."""
    import dagster as dg

    from materializer_assets.pipeline import ingest  # nothing downstream is materialized
    from materializer_assets.pipeline.partitions import MODEL_DIMENSION, cell_key
    from materializer_assets.resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource

    started = time.perf_counter()
    assets = list(ingest.ASSETS)
    resources = {
        "trace_source": TraceSourceResource(source=url),
        "privacy": PrivacyResource(),
        "erasure": ErasureResource(),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=str(out_dir)),
    }
    if with_iceberg:  # imported only then: pyiceberg is not part of the extraction's footprint
        from materializer_assets.pipeline import lakehouse
        from materializer_assets.resources.iceberg_io import IcebergIOManager

        assets += list(lakehouse.ASSETS)
        resources["iceberg_io_manager"] = IcebergIOManager(warehouse=str(out_dir))
    # In-memory run and event storage, like the project's tests: a persistent SQLite
    # instance adds ~1 s of fsync'ed event writes per run, which is storage, not extraction.
    step_seconds: dict[str, float] = {}
    with dg.DagsterInstance.ephemeral() as instance:
        slugs = _day_slugs(url, day)
        instance.add_dynamic_partitions(MODEL_DIMENSION, slugs)
        rows_read = rows_written = 0
        for slug in slugs:
            result = dg.materialize(
                assets, partition_key=cell_key(day, slug), resources=resources, instance=instance, raise_on_error=True
            )
            failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
            if failed:
                raise RuntimeError(f"{day}|{slug}: checks failed: {failed}")
            for event in result.get_asset_materialization_events():
                materialization = event.step_materialization_data.materialization
                rows = materialization.metadata["rows"].value
                asset = materialization.asset_key.to_user_string()
                if asset == "raw_traces":
                    rows_read += rows
                elif asset == "consented_parquet":
                    rows_written += rows
            for step, seconds in _step_seconds(instance, result.run_id).items():
                step_seconds[step] = step_seconds.get(step, 0.0) + seconds
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed, "rows_read": rows_read, "rows_written": rows_written, "cells": len(slugs),
        "step_seconds": step_seconds,
    }


def run_ours_iceberg(url: str, day: date, out_dir: Path) -> dict:
    """``ours`` plus ``iceberg_table``: what registering the cell in Iceberg adds to its time."""
    return run_ours_dagster(url, day, out_dir, with_iceberg=True)


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    """Wall time of each step of a run, from its STEP_START and STEP_SUCCESS events."""
    starts: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS" and event.step_key in starts:
            seconds[event.step_key] = entry.timestamp - starts[event.step_key]
    return seconds


def run_ours_lib(url: str, day: date, out_dir: Path) -> dict:
    """The same work through the lib functions the assets call, without Dagster: raw written
    while consented is staged from the same batches alongside it (as ``extract_cell`` does),
    or, with code from before the one-pass multi-asset, consented made from raw read back."""
    from materializer_assets.lib import lake as lake_module
    from materializer_assets.lib.consent import ConsentPolicy
    from materializer_assets.lib.lake import CellAddress, ParquetLake, read_ahead
    from materializer_assets.lib.redaction import Redactor
    from materializer_assets.lib.schema import NORMALIZED_SCHEMA
    from materializer_assets.lib.sources.postgres import PostgresTraceReader
    from materializer_assets.lib.stages import (
        ConsentedStats,
        RawStats,
        consented_from_raw,
        raw_stage,
        require_granted,
        split_by_consent,
    )
    from materializer_assets.lib.storage import resolve

    one_pass = hasattr(lake_module, "StageAlongside")
    started = time.perf_counter()
    lake = ParquetLake(resolve(str(out_dir)))
    redactor = Redactor()
    rows_read = rows_written = 0
    slugs = _day_slugs(url, day)
    with PostgresTraceReader(url) as reader:
        for slug in slugs:
            raw = CellAddress("raw-traces", day.isoformat(), slug)
            consented_address = CellAddress("langfuse-traces", day.isoformat(), slug)
            cell = reader.read_cell(day, slug)
            from materializer_assets.lib import stages as stages_module

            if hasattr(stages_module, "raw_archive_form"):  # the reader's thread does the policy and compaction too
                raw_batches = read_ahead(stages_module.raw_archive_form(raw_stage(cell.batches, ConsentPolicy(), RawStats())))
            else:
                raw_batches = raw_stage(read_ahead(cell.batches), ConsentPolicy(), RawStats())
            if one_pass:
                from materializer_assets.lib.stages import consented_stage

                alongside = lake_module.StageAlongside(
                    lambda batches: lake.stage_cell(
                        consented_stage(batches, None, redactor, ConsentedStats()),
                        NORMALIZED_SCHEMA,
                        split=lambda batch: {"consent=true": batch},
                        guard=require_granted,
                    )
                )
                raw_batches = alongside.feed(raw_batches)
            written = lake.write_cell(raw, raw_batches, NORMALIZED_SCHEMA, split=split_by_consent)
            rows_read += written.rows
            if one_pass:
                written = lake.publish_staged(consented_address, alongside.result())
            else:
                consented = consented_from_raw(lake.open_cell(raw), ConsentPolicy(), redactor, ConsentedStats())
                written = lake.write_cell(
                    consented_address,
                    consented,
                    NORMALIZED_SCHEMA,
                    split=lambda batch: {"consent=true": batch},
                    guard=require_granted,
                )
            rows_written += written.rows
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows_read": rows_read, "rows_written": rows_written, "cells": len(slugs)}


def run_ours_direct(url: str, day: date, out_dir: Path) -> dict:
    """The baseline's work done our way: consented, redacted, deduplicated rows straight
    from the source into ``langfuse-traces``, without writing and re-reading ``raw-traces``."""
    from materializer_assets.lib.lake import CellAddress, ParquetLake
    from materializer_assets.lib.redaction import Redactor
    from materializer_assets.lib.schema import NORMALIZED_SCHEMA
    from materializer_assets.lib.sources.postgres import PostgresTraceReader
    from materializer_assets.lib.stages import ConsentedStats, consented_stage, require_granted
    from materializer_assets.lib.storage import resolve

    started = time.perf_counter()
    lake = ParquetLake(resolve(str(out_dir)))
    redactor = Redactor()
    rows_read = rows_written = 0
    slugs = _day_slugs(url, day)
    with PostgresTraceReader(url) as reader:
        for slug in slugs:
            stats = ConsentedStats()
            written = lake.write_cell(
                CellAddress("langfuse-traces", day.isoformat(), slug),
                consented_stage(reader.read_cell(day, slug).batches, None, redactor, stats),
                NORMALIZED_SCHEMA,
                split=lambda batch: {"consent=true": batch},
                guard=require_granted,
            )
            rows_read += stats.rows_in
            rows_written += written.rows
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "rows_read": rows_read, "rows_written": rows_written, "cells": len(slugs)}


def run_encode_floor(url: str, day: date, out_dir: Path) -> dict:
    """Only the Parquet encoding of what (b) writes, timed on this one thread.

    The day's ``raw-traces`` and ``langfuse-traces`` files are made first
    (``ours-lib``, untimed); then each row group is read back into memory
    (untimed) and encoded again with the lake's writer settings (timed). No
    implementation of (b) that writes these bytes with these settings can
    take less than this time divided by the machine's cores.
    """
    import pyarrow.parquet as pq

    from materializer_assets.lib.lake import ParquetWriteOptions, parquet_writer_settings

    made = out_dir / "made"
    run_ours_lib(url, day, made)
    options, encoding, rows = ParquetWriteOptions(), 0.0, 0
    target = out_dir / "encoded-again.parquet"
    for path in sorted(made.rglob("*.parquet")):
        source = pq.ParquetFile(path)
        with pq.ParquetWriter(target, source.schema_arrow, **parquet_writer_settings(source.schema_arrow, options)) as writer:
            for index in range(source.num_row_groups):
                row_group = source.read_row_group(index)
                started = time.perf_counter()
                writer.write_table(row_group, row_group_size=options.row_group_rows)
                encoding += time.perf_counter() - started
                rows += row_group.num_rows
        target.unlink()
    return {"seconds": encoding, "rows_read": rows, "rows_written": rows}


RUNNERS = {
    "baseline": run_baseline,
    "ours": run_ours_dagster,
    "ours-iceberg": run_ours_iceberg,
    "ours-lib": run_ours_lib,
    "ours-direct": run_ours_direct,
    "encode-floor": run_encode_floor,
}


def python_path_with(code: Path, env: Mapping[str, str]) -> str:
    """``env``'s PYTHONPATH with ``code`` first: a child process imports the code measured."""
    return os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH", "")]))


def import_code_from(code: Path) -> None:
    """Import ``materializer_assets`` from ``code`` in this (child) process, or stop."""
    sys.path.insert(0, str(code))
    import materializer_assets

    if not Path(materializer_assets.__file__).resolve().is_relative_to(code.resolve()):
        raise SystemExit(f"materializer_assets came from {materializer_assets.__file__}, not from {code}")


def _child_main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", choices=PATHS)
    parser.add_argument("--url", required=True)
    parser.add_argument("--day", required=True, type=date.fromisoformat)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--code", default=REPO_ROOT, type=Path)
    args = parser.parse_args(argv)
    import_code_from(args.code)
    result = RUNNERS[args.path](args.url, args.day, args.out)
    result["bytes_written"] = sum(p.stat().st_size for p in args.out.rglob("*.parquet"))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ---------------------------------------------------------------- measuring (in the parent)


@dataclass
class Measurement:
    path: str
    seconds: float  # the extraction, after imports (reported by the child)
    process_seconds: float  # the whole child process, interpreter start and imports included
    peak_rss_bytes: int
    cpu_seconds: float  # user + system time of the child (the database server's is not in it)
    rows_read: int
    rows_written: int
    bytes_written: int
    extra: dict = field(default_factory=dict)


def measure(
    path: str, url: str, day: date, code: Path = REPO_ROOT, env: dict | None = None, keep_output: bool = False
) -> Measurement:
    """Run one path for one day in a fresh child process, importing ``materializer_assets`` from ``code``."""
    out_dir = Path(tempfile.mkdtemp(prefix=f"bench-{path}-"))
    command = [sys.executable, str(Path(__file__).resolve()), "child", path, "--url", url, "--day", day.isoformat(),
               "--out", str(out_dir), "--code", str(code)]
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = python_path_with(code, child_env)
    child_env.setdefault("DAGSTER_HOME", str(out_dir / "_dagster_home"))  # never the user's instance
    try:
        return measure_command(path, command, child_env)
    finally:
        if not keep_output:
            shutil.rmtree(out_dir, ignore_errors=True)


def measure_command(label: str, command: Sequence[str], env: dict, cwd: Path | None = None) -> Measurement:
    """Run ``command`` (a child printing its result after RESULT_PREFIX) and measure its process."""
    # Output goes to files, not pipes: Dagster logs a lot, and a full pipe would block the child.
    with tempfile.TemporaryFile("w+") as stdout_file, tempfile.TemporaryFile("w+") as stderr_file:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout_file, stderr=stderr_file, env=env, text=True, cwd=cwd)
        # wait4: the peak RSS of exactly this child (RUSAGE_CHILDREN would be the max of all so far).
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout_file.seek(0)
        stderr_file.seek(0)
        stdout, stderr = stdout_file.read(), stderr_file.read()
    if process.returncode != 0:
        raise RuntimeError(f"{label} failed (exit {process.returncode}):\n{stdout[-2000:]}\n{stderr[-4000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        raise RuntimeError(f"{label} printed no result:\n{stdout[-2000:]}\n{stderr[-2000:]}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    return Measurement(
        path=label,
        seconds=result.pop("seconds"),
        process_seconds=elapsed,
        peak_rss_bytes=usage.ru_maxrss * 1024,  # kilobytes on Linux
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        rows_read=result.pop("rows_read"),
        rows_written=result.pop("rows_written"),
        bytes_written=result.pop("bytes_written"),
        extra=result,
    )


def rows_on(url: str, day: date) -> int:
    """Rows of ``day`` in the table (what both paths read from)."""
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(
            'SELECT count(*) FROM traces WHERE "timestamp" >= %s AND "timestamp" < %s',
            (day, day + timedelta(days=1)),
        ).fetchone()[0]


def mb(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MB"


def describe(m: Measurement, day_rows: int) -> str:
    return (
        f"{m.path:14s} {m.seconds:7.2f} s  {day_rows / m.seconds:9,.0f} rows/s  peak RSS {mb(m.peak_rss_bytes):>9s}  "
        f"CPU {m.cpu_seconds:6.1f} s  process {m.process_seconds:6.2f} s  rows written {m.rows_written:,}"
    )


def summarize(measurements: Sequence[Measurement], day_rows: int) -> dict:
    """Medians over rounds (peak RSS too: the typical run, not the worst)."""
    seconds = statistics.median(m.seconds for m in measurements)
    return {
        "rounds": len(measurements),
        "seconds": seconds,
        "rows_per_second": day_rows / seconds,
        "peak_rss_bytes": statistics.median(m.peak_rss_bytes for m in measurements),
        "max_peak_rss_bytes": max(m.peak_rss_bytes for m in measurements),
        "cpu_seconds": statistics.median(m.cpu_seconds for m in measurements),
        "process_seconds": statistics.median(m.process_seconds for m in measurements),
        "rows_written": measurements[-1].rows_written,
        "bytes_written": measurements[-1].bytes_written,
        "step_seconds": {
            step: statistics.median(m.extra.get("step_seconds", {}).get(step, 0.0) for m in measurements)
            for step in measurements[-1].extra.get("step_seconds", {})
        },
    }


def print_iceberg_share(summary: dict) -> None:
    """What iceberg_table adds to a cell's raw_traces + consented_parquet time (summed over the day's cells)."""
    steps = summary.get("step_seconds") or {}
    if "iceberg_table" not in steps:
        return
    # One step (the extract_cell multi-asset) makes both; before it, a step each.
    extraction = steps.get("extract_cell", 0.0) + steps.get("raw_traces", 0.0) + steps.get("consented_parquet", 0.0)
    print(
        f"iceberg_table: {steps['iceberg_table']:.2f} s over the day's cells vs {extraction:.2f} s for "
        f"raw_traces + consented_parquet: +{steps['iceberg_table'] / extraction * 100:.1f}% (target ≤ 20%)"
    )


LABELS = {
    "baseline": "(a) baseline",
    "ours": "(b) ours",
    "ours-iceberg": "(b+) +iceberg",
    "ours-lib": "(b') ours-lib",
    "ours-direct": "(c) ours-direct",
    "encode-floor": "(f) encode only",
}


def print_encode_floor(summaries: dict[str, dict], cores: int) -> None:
    """The best ratio against the baseline that any (b) writing the same bytes could reach here."""
    if "encode-floor" not in summaries or "baseline" not in summaries:
        return
    encoding, base = summaries["encode-floor"]["seconds"], summaries["baseline"]["seconds"]
    print(
        f"encode floor: Parquet-encoding the {mb(summaries['encode-floor']['bytes_written'])} that (b) writes "
        f"(raw-traces + langfuse-traces) takes {encoding:.2f} s on one core; even shared perfectly by "
        f"{cores} cores that alone is {encoding / cores:.2f} s, so (b) can be at most "
        f"{base / (encoding / cores):.2f}× faster than the baseline on this machine"
    )


def print_table(summaries: dict[str, dict], title: str) -> None:
    print(title)
    header = f"{'path':18s} {'time s':>8s} {'rows/s':>10s} {'peak RSS':>10s} {'CPU s':>7s} {'process s':>10s} {'rows out':>10s} {'Parquet':>10s}"
    print(header)
    print("-" * len(header))
    for path, s in summaries.items():
        print(
            f"{LABELS.get(path, path):18s} {s['seconds']:8.2f} {s['rows_per_second']:10,.0f} {mb(s['peak_rss_bytes']):>10s} "
            f"{s['cpu_seconds']:7.1f} {s['process_seconds']:10.2f} {s['rows_written']:10,} {mb(s['bytes_written']):>10s}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        _child_main(sys.argv[2:])
    else:
        sys.exit("usage: python benchmarks/_common.py child {baseline,ours,ours-lib} --url U --day D --out DIR")
