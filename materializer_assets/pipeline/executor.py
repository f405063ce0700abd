"""The executor of every run Dagster launches (UI backfills, sensors, schedules, `dagster asset
materialize`, one Kubernetes pod per cell), chosen by ``MATERIALIZER_RUN_EXECUTOR``:

- ``forkserver``: Dagster's multiprocess executor, each step in a process of its own, forked from
  a **forkserver** that has already imported and resolved everything
  (:mod:`materializer_assets.pipeline.preload`) instead of a fresh ``spawn`` that starts Python
  and imports the whole project again for every step. Steps run in parallel (one per core), so
  ``judge_scores`` and ``ragas_scores`` overlap while they wait on their endpoints. Still ~10 s
  of forkserver start and forks per cell on two cores.
- ``in_process``: a cell's steps one after another in the run's own process, like ``materializer
  run`` (no step process at all); judge and Ragas do not overlap.
- ``auto`` (default): ``forkserver`` when an LLM judge or Ragas model is configured (their
  requests dominate a cell, and overlapping them saves the shorter of the two), else
  ``in_process`` (scoring has nothing to wait on, so there is nothing to overlap).
- ``spawn``: Dagster's default multiprocess executor (a new Python per step).

``materializer run`` is unaffected: ``execute_in_process`` runs its steps in its own process.
"""

from __future__ import annotations

import os

import dagster as dg

ENV = "MATERIALIZER_RUN_EXECUTOR"
PRELOAD_MODULE = "materializer_assets.pipeline.preload"
CHOICES = ("auto", "forkserver", "in_process", "spawn")
# Any of these set: the judge or Ragas calls a model, and the two steps are worth overlapping.
SCORING_MODEL_SETTINGS = ("MATERIALIZER_JUDGE_MODEL", "MATERIALIZER_JUDGE_COMMITTEE", "MATERIALIZER_RAGAS_MODEL")

EXECUTOR_CONFIG = {"start_method": {"forkserver": {"preload_modules": [PRELOAD_MODULE]}}}


def resolve_choice(choice: str | None = None) -> str:
    """The executor ``auto`` (or ``choice``, else ``$MATERIALIZER_RUN_EXECUTOR``) stands for."""
    choice = (choice if choice is not None else os.environ.get(ENV, "")).strip() or "auto"
    if choice == "auto":
        scoring = any(os.environ.get(name, "").strip() for name in SCORING_MODEL_SETTINGS)
        return "forkserver" if scoring else "in_process"
    return choice


def build_executor(choice: str | None = None) -> dg.ExecutorDefinition:
    choice = resolve_choice(choice)
    if choice == "forkserver":
        return dg.multiprocess_executor.configured(EXECUTOR_CONFIG, name="forkserver_multiprocess")
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "spawn":
        return dg.multiprocess_executor
    raise ValueError(f"{ENV}={choice!r}: expected one of {', '.join(CHOICES)}")


executor = build_executor()
