"""``materializer``: run the asset graph for a day's cells, in-process, through Dagster.

    materializer run --date 2026-04-18 [--model NAME ...]
    materializer models --date 2026-04-18
    materializer reconcile

``run`` first reconciles consent (the ``gdpr_erasure`` job: a changed
registry or erasure list is applied to everything already written), then
finds the models that have traces that day, registers them as ``model``
partitions, and materializes every asset of the graph (the same
``Definitions`` that ``dagster dev`` loads) for each (date, model) cell,
printing a summary per cell. It exits non-zero when reconciliation, a cell
or a blocking check fails. ``reconcile`` runs only the first step. With the
default Iceberg catalog, ``run`` also writes it into ``./.pyiceberg.yaml``
(never over a file of yours), so pyiceberg's ``load_catalog("materializer")``
opens the tables.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Sequence

DEFAULT_DAGSTER_HOME = ".materializer/dagster_home"
_MINIMAL_INSTANCE_YAML = "telemetry:\n  enabled: false\n"


def _valid_day(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _instance():
    """The Dagster instance: $DAGSTER_HOME, else a local one next to the warehouse."""
    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        home = Path(DEFAULT_DAGSTER_HOME).resolve()
        home.mkdir(parents=True, exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists():
            repo_config = Path("dagster.yaml")
            if repo_config.exists():
                shutil.copyfile(repo_config, config)
            else:
                config.write_text(_MINIMAL_INSTANCE_YAML)
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def _models_for(day: str, requested: Sequence[str]) -> dict[str, str | None]:
    """slug → original model name for the cells to run."""
    from .definitions import defs
    from .lib.slugs import is_valid_slug, model_slug

    # Resolve EnvVar-backed settings exactly as a run would.
    source = defs.resources["trace_source"].process_config_and_initialize()
    reader = source.open_reader()
    try:
        found = {model_slug(name): name for name in reader.models_on(date.fromisoformat(day))}
    finally:
        reader.close()
    if not requested:
        return found
    chosen: dict[str, str | None] = {}
    for name in requested:
        slug = name if name in found or (is_valid_slug(name) and name not in {n for n in found.values()}) else model_slug(name)
        chosen[slug] = found.get(slug, name)
    return chosen


def _summarize(result, slug: str, name: str | None) -> tuple[bool, str]:
    import dagster as dg

    parts = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        metadata = materialization.metadata
        rows = metadata.get("rows")
        label = materialization.asset_key.to_user_string()
        parts.append(f"{label}={rows.value if rows is not None else '?'}")
    evaluations = result.get_asset_check_evaluations()
    failed_blocking = [
        e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    warned = [e.check_name for e in evaluations if not e.passed and e.severity == dg.AssetCheckSeverity.WARN]
    ok = result.success and not failed_blocking
    line = f"  {'ok  ' if ok else 'FAIL'} {slug}"
    if name and name != slug:
        line += f" ({name})"
    line += f": rows {' '.join(parts) or 'none'}; checks {len(evaluations) - len(failed_blocking) - len(warned)}/{len(evaluations)} passed"
    if warned:
        line += f", warnings: {', '.join(warned)}"
    if failed_blocking:
        line += f", FAILED: {', '.join(failed_blocking)}"
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
                line += f"\n       {event.step_key}: {_root_cause(event.step_failure_data.error)}"
    return ok, line


def _root_cause(error) -> str:
    """The first error under Dagster's wrappers: the one that says what went wrong."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    message = error.message.strip().splitlines()[0] if error.message.strip() else ""
    return message if message.startswith(error.cls_name or "") else f"{error.cls_name}: {message}"


def _run_config(verbose: bool) -> dict:
    # Dagster's console logger prints every event; the summary lines say what matters.
    return {} if verbose else {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def reconcile(instance, verbose: bool = False) -> bool:
    """Run ``gdpr_erasure`` in-process and print one line of what it did; True when it succeeded."""
    from .definitions import defs

    result = defs.get_job_def("gdpr_erasure").execute_in_process(
        instance=instance, run_config=_run_config(verbose), raise_on_error=False
    )
    if not result.success:
        errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure and e.step_failure_data]
        print(f"consent: FAIL {_root_cause(errors[0]) if errors and errors[0] else 'see the run log'}", flush=True)
        return False
    outputs = [
        event.step_output_data.metadata
        for event in result.all_events
        if event.is_successful_output and event.step_output_data is not None
    ]
    metadata = {key: value.value for key, value in (outputs[0] if outputs else {}).items()}
    if metadata.get("noop", True):
        print("consent: nothing to reconcile", flush=True)
    else:
        print(
            f"consent: forgot {metadata.get('users_erased', 0)} user(s), revoked {metadata.get('rows_revoked', 0)} "
            f"row(s), removed {metadata.get('rows_removed', 0)} row(s) from what was written; "
            f"audit {metadata.get('audit_record', '')}",
            flush=True,
        )
    return True


def run(day: str, models: Sequence[str], verbose: bool = False) -> int:
    from .definitions import defs
    from .lib.sources import SourceUnavailableError
    from .pipeline.partitions import MODEL_DIMENSION, cell_key, date_partitions

    if not _in_range(day):
        print(f"error: {day} is outside the date partitions (start {date_partitions.start:%Y-%m-%d}, "
              "set MATERIALIZER_START_DATE)", file=sys.stderr)
        return 2
    try:
        cells = _models_for(day, models)
    except SourceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not cells:
        print(f"{day}: no traces in the source")
        return 0
    instance = _instance()
    instance.add_dynamic_partitions(MODEL_DIMENSION, sorted(cells))
    job = defs.resolve_implicit_global_asset_job_def()
    print(f"{day}: {len(cells)} cell(s); Dagster home {os.environ['DAGSTER_HOME']}")
    # Cells apply today's consent decisions when they write; what was written before learns them here.
    all_ok = reconcile(instance, verbose)
    run_config = _run_config(verbose)
    for slug in sorted(cells):
        result = job.execute_in_process(
            instance=instance, partition_key=cell_key(day, slug), run_config=run_config, raise_on_error=False
        )
        ok, line = _summarize(result, slug, cells[slug])
        all_ok &= ok
        print(line, flush=True)
    _publish_catalog()
    return 0 if all_ok else 1


def _publish_catalog() -> None:
    """Let pyiceberg's own ``load_catalog`` find the default catalog (a ``.pyiceberg.yaml`` here)."""
    from .definitions import defs

    iceberg = defs.resources["iceberg_io_manager"].process_config_and_initialize()
    published = iceberg.publish_default_catalog()
    name = iceberg.catalog_name
    if published.status == "written":
        print(f"iceberg: wrote {os.path.relpath(published.path)}: pyiceberg's load_catalog(\"{name}\") opens the tables")
    elif published.status == "shadowed":
        print(
            f"iceberg: pyiceberg reads {published.path} first (left as it is): add this catalog there to open "
            f"the tables with load_catalog(\"{name}\"): {iceberg.describe_catalog()}"
        )


def _in_range(day: str) -> bool:
    from datetime import datetime, timezone

    from .pipeline.partitions import date_partitions

    start = date_partitions.start.date()
    today = datetime.now(timezone.utc).date()
    return start <= date.fromisoformat(day) < today


def list_models(day: str) -> int:
    from .lib.sources import SourceUnavailableError

    try:
        cells = _models_for(day, [])
    except SourceUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for slug, name in sorted(cells.items()):
        print(f"{slug}\t{name if name is not None else '(no model)'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="materializer", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="materialize the graph for a day's cells")
    run_parser.add_argument("--date", required=True, type=_valid_day, help="UTC day, YYYY-MM-DD")
    run_parser.add_argument(
        "--model", action="append", default=[], help="only this model (name as in the data, or its slug); repeatable"
    )
    run_parser.add_argument("--verbose", action="store_true", help="print Dagster's event log too")
    models_parser = commands.add_parser("models", help="list the models (and their partition slugs) of a day")
    models_parser.add_argument("--date", required=True, type=_valid_day)
    reconcile_parser = commands.add_parser(
        "reconcile", help="apply the consent registry and erasure list to everything already written"
    )
    reconcile_parser.add_argument("--verbose", action="store_true", help="print Dagster's event log too")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.date, args.model, args.verbose)
    if args.command == "reconcile":
        return 0 if reconcile(_instance(), args.verbose) else 1
    return list_models(args.date)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
