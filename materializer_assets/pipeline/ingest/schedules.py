"""The daily run of our design document: at 06:00 UTC, every cell of yesterday.

It asks the source which models had traces yesterday, registers the slugs
that are not partitions yet (a schedule cannot return partition requests,
so it adds them to the instance directly: adding is idempotent), and
requests one run per cell with a run key per day and cell, so a re-evaluated
tick never runs a cell twice. On by default for a Postgres source, which
has no sensor; with a Langfuse or file source the sensors cover yesterday
already (switch the schedule on in the UI to have both).
"""

from __future__ import annotations

from datetime import timedelta, timezone

import dagster as dg

from ...lib.slugs import model_slug
from ...resources.settings import TraceSourceResource
from ..partitions import MODEL_DIMENSION, cell_key
from .sensors import TRIGGER_TAG, first_partition_day, materialize_cells, source_kind

SCHEDULE_NAME = "daily_cells"
CRON = "0 6 * * *"


def build_daily_schedule(default_status: dg.DefaultScheduleStatus | None = None) -> dg.ScheduleDefinition:
    if default_status is None:
        default_status = (
            dg.DefaultScheduleStatus.RUNNING if source_kind() == "postgres" else dg.DefaultScheduleStatus.STOPPED
        )

    @dg.schedule(
        name=SCHEDULE_NAME,
        cron_schedule=CRON,
        execution_timezone="UTC",
        job=materialize_cells,
        default_status=default_status,
        description="Every day at 06:00 UTC: materialize every (date, model) cell of yesterday.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext, trace_source: TraceSourceResource):
        day = context.scheduled_execution_time.astimezone(timezone.utc).date() - timedelta(days=1)
        if day < first_partition_day():
            return dg.SkipReason(f"{day} is before the first date partition")
        reader = trace_source.open_reader()
        try:
            slugs = sorted({model_slug(name) for name in reader.models_on(day)})
        finally:
            reader.close()
        if not slugs:
            return dg.SkipReason(f"no traces on {day}")
        known = set(context.instance.get_dynamic_partitions(MODEL_DIMENSION))
        missing = [slug for slug in slugs if slug not in known]
        if missing:
            context.instance.add_dynamic_partitions(MODEL_DIMENSION, missing)
        return [
            dg.RunRequest(
                run_key=f"{SCHEDULE_NAME}:{day}|{slug}",
                partition_key=cell_key(day, slug),
                tags={TRIGGER_TAG: SCHEDULE_NAME},
            )
            for slug in slugs
        ]

    return _schedule


daily_cells = build_daily_schedule()

SCHEDULES = [daily_cells]

__all__ = ["SCHEDULES", "build_daily_schedule", "daily_cells"]
