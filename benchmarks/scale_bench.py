"""Our ``raw_traces`` + ``consented_parquet`` path on days of growing size:
time should grow linearly with the rows and peak memory should not.

    python benchmarks/scale_bench.py                          # days of 100k, 300k and 1M rows, 1 round
    python benchmarks/scale_bench.py --sizes 1000,3000 --rounds 1

Each size is one day of the ``traces`` table in the database
``materializer_bench_scale`` (4 models, loaded once and reused; ``--reload``
rebuilds). Each measurement is a process of its own; per size it prints the
median extraction time, rows/s, seconds per 100k rows and peak RSS, then the
RSS ratio largest/smallest day (the target: ≤ 1.2, and ≤ 400 MB at 1M rows).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

RSS_TARGET_BYTES = 400 * 2**20
RSS_GROWTH_TARGET = 1.2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="rows per day, comma-separated")
    parser.add_argument("--only", default="", help="measure only these of the sizes (the data of all is loaded)")
    parser.add_argument("--path", default="ours", choices=[p for p in common.PATHS if p != "baseline"] + ["baseline"])
    common.add_common_arguments(parser, database="materializer_bench_scale", rounds=1)
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(size.replace("_", "")) for size in args.sizes.split(",") if size.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--sizes must be positive")
    try:
        args.only = [int(size.replace("_", "")) for size in args.only.split(",") if size.strip()] or args.sizes
    except ValueError:
        parser.error("--only must be comma-separated integers")
    if set(args.only) - set(args.sizes):
        parser.error("--only must name sizes listed in --sizes")
    if not 1 <= args.models <= len(common.DEFAULT_MODELS):
        parser.error(f"--models must be between 1 and {len(common.DEFAULT_MODELS)}")
    return args


def main(argv=None) -> int:
    return common.run_then_drop(parse_args(argv), _run)


def _run(args: argparse.Namespace) -> int:
    spec = common.DataSpec(rows_per_day=tuple(args.sizes), models=common.DEFAULT_MODELS[: args.models])
    url = common.ensure_database(args.pg_url, args.database)
    print(f"days of {', '.join(f'{size:,}' for size in args.sizes)} rows × {args.models} model(s) in database {args.database}")
    if not common.load_traces(url, spec, reload=args.reload, log=print):
        print("  (reused the data already loaded)")
    print(f"path: {common.LABELS[args.path]}; {args.rounds} round(s) per size, each in its own process\n")

    summaries = {}
    for round_number in range(args.rounds):
        # Alternate the order of sizes so no size always runs on a cold machine.
        days = [(day, size) for day, size in zip(spec.days, args.sizes) if size in args.only]
        for day, size in days if round_number % 2 == 0 else reversed(days):
            measurement = common.measure(args.path, url, day, code=args.code)
            summaries.setdefault(size, []).append(measurement)
            print(f"round {round_number + 1}/{args.rounds}  {size:>9,} rows  {common.describe(measurement, size)}", flush=True)

    print(f"\nMedian of {args.rounds} round(s)")
    header = f"{'rows/day':>10s} {'time s':>8s} {'rows/s':>10s} {'s/100k':>7s} {'peak RSS':>10s} {'CPU s':>7s} {'process s':>10s}"
    print(header)
    print("-" * len(header))
    rows = {}
    for size in args.only:
        measurements = summaries[size]
        seconds = statistics.median(m.seconds for m in measurements)
        rss = statistics.median(m.peak_rss_bytes for m in measurements)
        rows[size] = (seconds, rss)
        print(
            f"{size:>10,} {seconds:8.2f} {size / seconds:10,.0f} {seconds / size * 100_000:7.2f} {common.mb(rss):>10s} "
            f"{statistics.median(m.cpu_seconds for m in measurements):7.1f} "
            f"{statistics.median(m.process_seconds for m in measurements):10.2f}"
        )
    smallest, largest = min(args.only), max(args.only)
    if smallest != largest:
        (small_s, small_rss), (large_s, large_rss) = rows[smallest], rows[largest]
        print(
            f"\n{largest:,} vs {smallest:,} rows: {largest / smallest:.1f}× the rows took {large_s / small_s:.2f}× the time; "
            f"peak RSS ratio {large_rss / small_rss:.2f} (target ≤ {RSS_GROWTH_TARGET}); "
            f"peak RSS at {largest:,} rows {common.mb(large_rss)} (target ≤ {common.mb(RSS_TARGET_BYTES)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
