"""One day from the Postgres ``traces`` table into Parquet: the design document's
pandas task (a) against our ``raw_traces`` + ``consented_parquet`` path (b).

    python benchmarks/extract_bench.py                      # 1,000,000 traces, 3 days × 4 models, 3 rounds
    python benchmarks/extract_bench.py --rows 20000 --rounds 1

Loads the traces once into the database ``materializer_bench_extract`` (reused
while the parameters are the same; ``--reload`` rebuilds it), then measures the
middle day, each path in a process of its own, alternating a/b/b/a over the
rounds so drift on a shared machine hits both alike. Prints, per path, the
median extraction time (after imports), rows/s of the day's rows, peak RSS
(the child's ``ru_maxrss``), CPU seconds and whole-process time, then the
ratios, and what ``iceberg_table`` adds to the cells' time (``ours-iceberg``:
the same runs with the Iceberg asset, timed per step). ``--paths`` adds
``ours-lib`` (the same lib functions without Dagster) and ``ours-direct``
(consented rows straight from the source, no raw dataset: the baseline's
work done our way, for comparison). ``--before-code DIR`` measures the ``ours*``
paths a second time with the code of DIR (e.g. the commit before a change), in
the same rounds, so a before/after comparison shares the machine's load. ``encode-floor`` times only the Parquet
encoding of the files (b) writes, on one thread, and prints the best ratio
against the baseline that any (b) writing those bytes could reach on this
machine's cores.

Note what each path does. (a) reads only the day's rows with
``user_consent = true`` and an output, and writes them once (snappy).
(b) reads every row of the day once, writes all of them to ``raw-traces``
(consent=true|false|unknown; ``messages`` that only repeat prompt and
response stored as null) and, from the same batches on another thread, keeps
granted consent from every rule (column, tag, metadata key), drops empty
responses and duplicates, redacts PII and writes ``langfuse-traces`` (zstd,
with ``messages`` whole), and runs the assets' checks.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="traces in the table (default 1,000,000)")
    parser.add_argument("--days", type=int, default=3, help="days they span (default 3); the middle one is measured")
    parser.add_argument(
        "--paths",
        default="baseline,ours,ours-iceberg,encode-floor",
        help="comma list of baseline, ours (Dagster), ours-iceberg (ours + iceberg_table), ours-lib, ours-direct, "
        "encode-floor (only the Parquet encoding of what ours writes) (default baseline,ours,ours-iceberg,encode-floor)",
    )
    parser.add_argument(
        "--before-code", type=Path, action="append", default=[],
        help="also measure the ours* paths with the materializer_assets of this folder (e.g. "
        "`git archive <commit> | tar -x -C DIR`), in the same rounds, as '<path>@<folder name>'; repeatable",
    )
    common.add_common_arguments(parser, database="materializer_bench_extract", rounds=3)
    args = parser.parse_args(argv)
    args.paths = [path.strip() for path in args.paths.split(",") if path.strip()]
    unknown = set(args.paths) - set(common.PATHS)
    if unknown or not args.paths:
        parser.error(f"unknown paths {sorted(unknown)}; choose from {', '.join(common.PATHS)}")
    if args.rows < args.days or args.days < 1 or args.models < 1 or args.models > len(common.DEFAULT_MODELS):
        parser.error(f"need rows >= days >= 1 and 1 <= models <= {len(common.DEFAULT_MODELS)}")
    return args


def main(argv=None) -> int:
    return common.run_then_drop(parse_args(argv), _run)


def _run(args: argparse.Namespace) -> int:
    per_day = [args.rows // args.days + (1 if index < args.rows % args.days else 0) for index in range(args.days)]
    spec = common.DataSpec(rows_per_day=tuple(per_day), models=common.DEFAULT_MODELS[: args.models])
    day = spec.days[len(spec.days) // 2]
    url = common.ensure_database(args.pg_url, args.database)
    print(f"traces: {spec.total_rows:,} over {args.days} day(s) × {args.models} model(s) in database {args.database}")
    loaded = common.load_traces(url, spec, reload=args.reload, log=print)
    if not loaded:
        print("  (reused the data already loaded)")
    day_rows = common.rows_on(url, day)
    print(f"measured day: {day} ({day_rows:,} rows); {args.rounds} round(s), each path in its own process\n")

    runs = [(path, path, args.code) for path in args.paths]
    for folder in args.before_code:
        runs += [(f"{path}@{folder.name}", path, folder) for path in args.paths if path.startswith("ours")]
    results: dict[str, list[common.Measurement]] = {name: [] for name, _, _ in runs}
    for round_number in range(args.rounds):
        # a b, then b a: neither path always runs first on a warming or cooling machine.
        order = runs if round_number % 2 == 0 else list(reversed(runs))
        for name, path, code in order:
            measurement = common.measure(path, url, day, code=code)
            measurement.path = name
            results[name].append(measurement)
            print(f"round {round_number + 1}/{args.rounds}  {common.describe(measurement, day_rows)}", flush=True)

    print()
    summaries = {path: common.summarize(measurements, day_rows) for path, measurements in results.items()}
    common.print_table(summaries, title=f"Median of {args.rounds} round(s), day {day}, {day_rows:,} rows in the source")
    for summary in summaries.values():
        common.print_iceberg_share(summary)
    if "baseline" in summaries:
        base = summaries["baseline"]
        for path in results:
            if path in ("baseline", "encode-floor"):
                continue
            ours = summaries[path]
            print(
                f"{path} vs baseline: {base['seconds'] / ours['seconds']:.2f}× faster "
                f"(time b/a = {ours['seconds'] / base['seconds']:.2f}; whole process "
                f"{base['process_seconds'] / ours['process_seconds']:.2f}×), "
                f"peak RSS b/a = {ours['peak_rss_bytes'] / base['peak_rss_bytes']:.2f}"
            )
    common.print_encode_floor(summaries, cores=os.cpu_count() or 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
