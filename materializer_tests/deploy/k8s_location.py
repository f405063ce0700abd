"""A code location for the daemon test: the ingest assets plus a sensor shaped like the ingest one.

The sensor does what DESIGN §7 describes for new models: in one tick it adds the models as
dynamic partitions, requests one run per (date, model) cell and stores a cursor. The daemon
then launches those runs through the production instance's K8sRunLauncher.
"""

from __future__ import annotations

import dagster as dg

from materializer_assets.pipeline import ingest
from materializer_assets.pipeline.partitions import cell_key, model_partitions

DAY = "2026-04-18"
MODELS = ["glm-5-32b", "gpt-4o-mini-2024-07-18"]
CURSOR = f"{DAY}|" + ",".join(MODELS)


@dg.sensor(
    name="new_models_sensor",
    asset_selection=dg.AssetSelection.assets(*ingest.ASSETS),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
)
def new_models_sensor(context: dg.SensorEvaluationContext):
    if context.cursor == CURSOR:
        return dg.SkipReason("already requested")
    return dg.SensorResult(
        dynamic_partitions_requests=[model_partitions.build_add_request(MODELS)],
        run_requests=[dg.RunRequest(partition_key=cell_key(DAY, model)) for model in MODELS],
        cursor=CURSOR,
    )


defs = dg.Definitions(assets=ingest.ASSETS, sensors=[new_models_sensor], resources=ingest.build_resources())
