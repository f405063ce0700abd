"""The ``Definitions`` object that ``dagster dev``, ``workspace.yaml`` and the CLI load.

Each stage package under ``pipeline/`` exports its ``ASSETS``, ``SENSORS``,
``SCHEDULES`` and a ``build_resources()`` that reads its settings from the
environment (see docs/settings.md).
"""

from __future__ import annotations

import warnings

import dagster as dg

# Dagster itself passes `owners` when it binds resources to a sensor's job and warns about its own
# beta parameter; nothing in this project sets it, so it is not the user's business.
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__`", category=dg.BetaWarning
)

from .pipeline import dataset, ingest, lakehouse, scoring
from .pipeline.executor import executor

STAGES = [ingest, lakehouse, scoring, dataset]

ASSETS = [asset for stage in STAGES for asset in stage.ASSETS]


def build_resources() -> dict:
    resources: dict = {}
    for stage in STAGES:
        resources.update(stage.build_resources())
    return resources


defs = dg.Definitions(
    assets=ASSETS,
    sensors=[sensor for stage in STAGES for sensor in stage.SENSORS],
    schedules=[schedule for stage in STAGES for schedule in stage.SCHEDULES],
    jobs=[job for stage in STAGES for job in getattr(stage, "JOBS", [])],
    resources=build_resources(),
    # Steps forked from a preloaded forkserver, not spawned (pipeline/executor.py).
    executor=executor,
)
