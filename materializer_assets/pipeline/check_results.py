"""Dagster check specs and results from the lib's check outcomes."""

from __future__ import annotations

import warnings

import dagster as dg

from ..lib.checks import CheckOutcome
from .partitions import cell_partitions

# A partitioned check spec is a Dagster preview (1.13): it is what records each result under its
# day × model cell instead of "Partition —"; the notice is Dagster's, not the user's business.
warnings.filterwarnings(
    "ignore", message=r"Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning
)


def cell_check_spec(name: str, asset: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
    """A check of one day × model cell: its results are recorded under the cell's partition."""
    return dg.AssetCheckSpec(
        name, asset=asset, description=description, blocking=blocking, partitions_def=cell_partitions
    )


def check_result(name: str, outcome: CheckOutcome, blocking: bool = True) -> dg.AssetCheckResult:
    """A blocking check fails with ERROR severity (its spec stops downstream steps); others WARN."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata=outcome.metadata,
    )
