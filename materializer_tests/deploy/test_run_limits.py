"""What deploy/dagster.yaml's run limits mean, through the counter Dagster's run queue uses."""

from __future__ import annotations

import dagster as dg
import yaml
from dagster._utils.tags import TagConcurrencyLimitsCounter

from .conftest import PROD_INSTANCE_YAML

LIMITS = yaml.safe_load(PROD_INSTANCE_YAML.read_text())["concurrency"]["runs"]


def _run(tags: dict) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="__ASSET_JOB", tags=tags)


def _backfill_runs(backfill_id: str, count: int) -> list[dg.DagsterRun]:
    return [_run({"dagster/backfill": backfill_id, "dagster/partition": f"2026-04-{i % 28 + 1:02d}|m"}) for i in range(count)]


def test_one_backfill_takes_at_most_8_run_slots():
    counter = TagConcurrencyLimitsCounter(LIMITS["tag_concurrency_limits"], _backfill_runs("b1", 8))
    assert counter.is_blocked(_backfill_runs("b1", 1)[0])
    assert not counter.is_blocked(_backfill_runs("b2", 1)[0])  # a second backfill still starts


def test_backfills_together_leave_slots_for_the_schedule_and_sensors():
    in_progress = _backfill_runs("b1", 8) + _backfill_runs("b2", 8)
    counter = TagConcurrencyLimitsCounter(LIMITS["tag_concurrency_limits"], in_progress)
    assert counter.is_blocked(_backfill_runs("b3", 1)[0])
    scheduled = _run({"dagster/schedule_name": "daily_materialize", "dagster/partition": "2026-04-18|m"})
    assert not counter.is_blocked(scheduled)
    assert len(in_progress) < LIMITS["max_concurrent_runs"]
