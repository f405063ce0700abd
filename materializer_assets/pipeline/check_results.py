"""Dagster check results from the lib's check outcomes."""

from __future__ import annotations

import dagster as dg

from ..lib.checks import CheckOutcome


def check_result(name: str, outcome: CheckOutcome, blocking: bool = True) -> dg.AssetCheckResult:
    """A blocking check fails with ERROR severity (its spec stops downstream steps); others WARN."""
    return dg.AssetCheckResult(
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata=outcome.metadata,
    )
