"""The executor of every run Dagster launches (UI backfills, sensors, schedules, `dagster asset
materialize`, one Kubernetes pod per cell).

Default (``MATERIALIZER_RUN_EXECUTOR=forkserver``): Dagster's multiprocess executor, each step in a
process of its own, but forked from a **forkserver** that has already imported and resolved
everything (:mod:`materializer_assets.pipeline.preload`) instead of a fresh ``spawn`` that starts
Python and imports the whole project again for every step (most of a cell's run went there).
Steps still run in parallel, so ``judge_scores`` and ``ragas_scores`` overlap while they wait on
their endpoints.

``in_process`` runs a cell's steps one after another in the run's own process (no step process at
all, but judge and Ragas no longer overlap); ``spawn`` is Dagster's default. ``materializer run`` is
unaffected by all of this: ``execute_in_process`` runs its steps in its own process.
"""

from __future__ import annotations

import os

import dagster as dg

ENV = "MATERIALIZER_RUN_EXECUTOR"
PRELOAD_MODULE = "materializer_assets.pipeline.preload"
CHOICES = ("forkserver", "in_process", "spawn")

EXECUTOR_CONFIG = {"start_method": {"forkserver": {"preload_modules": [PRELOAD_MODULE]}}}


def build_executor(choice: str | None = None) -> dg.ExecutorDefinition:
    choice = (choice if choice is not None else os.environ.get(ENV, "")).strip() or "forkserver"
    if choice == "forkserver":
        return dg.multiprocess_executor.configured(EXECUTOR_CONFIG, name="forkserver_multiprocess")
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "spawn":
        return dg.multiprocess_executor
    raise ValueError(f"{ENV}={choice!r}: expected one of {', '.join(CHOICES)}")


executor = build_executor()
