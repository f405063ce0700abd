"""GDPR erasure as a job (``gdpr_erasure``, op ``erase_users``) and the sensor that starts it.

The job is not partitioned: one run forgets the pending users in every
cell of every output. The sensor starts it when the consent registry or the
erasure list changes (cursor: their fingerprints); a run with nothing new is a
no-op, so a spurious trigger costs one registry read.
"""


from datetime import timedelta
import dagster as dg

from ...lib.consent import ConsentPolicy
from ...lib.erasure import (
    ErasableOutput,
    ErasureEnvironment,
    IcebergTableOutput,
    LakeDatasetOutput,
    merge_requests,
    registered_outputs,
    requests_fingerprint,
    requests_from_registry,
    run_erasure,
)
from ...resources.iceberg_io import TABLE_METADATA_KEY, IcebergIOManager
from ...resources.parquet_io import ParquetLakeIOManager
from ...resources.settings import ErasureResource, TraceSourceResource
from .assets import ICEBERG_TABLE

# Always erased, even from a code location that does not define their assets.
RAW_LAKE_DATASET = "raw-traces"
DEFAULT_LAKE_DATASETS = (RAW_LAKE_DATASET, "langfuse-traces")


def declared_outputs(context: dg.OpExecutionContext, lake_root_uri: str) -> tuple[set[str], set[str]]:
    """(lake datasets, Iceberg tables) that assets declare or that were ever materialized.

    Two sources, because either can be missing: the code location's asset
    metadata (``lake_dataset`` / ``iceberg_table``; only available when the run
    comes from a code location), and the latest materialization of every asset
    the instance knows (our IO managers record the table, or the cell path).
    """
    datasets: set[str] = set()
    tables: set[str] = set()
    try:
        repository = context.repository_def
    except Exception:  # in-process runs (materialize()) have no repository
        repository = None
    if repository is not None:
        for assets_def in repository.assets_defs_by_key.values():
            for metadata in assets_def.metadata_by_key.values():
                if metadata.get("lake_dataset"):
                    datasets.add(str(metadata["lake_dataset"]))
                if metadata.get(TABLE_METADATA_KEY):
                    tables.add(str(metadata[TABLE_METADATA_KEY]))
    instance = context.instance
    prefix = lake_root_uri.rstrip("/") + "/"
    for key in instance.get_asset_keys():
        event = instance.get_latest_materialization_event(key)
        materialization = event.asset_materialization if event is not None else None
        if materialization is None:
            continue
        metadata = {name: value.value for name, value in materialization.metadata.items()}
        if metadata.get("write_method") and metadata.get("table"):  # IcebergIOManager
            tables.add(str(metadata["table"]))
        path = str(metadata.get("path") or "")
        if "rows_by_subpath" in metadata and path.startswith(prefix) and "/date=" in path:  # ParquetLakeIOManager
            datasets.add(path[len(prefix):].split("/date=")[0])
    return datasets, tables


def erasable_outputs(
    datasets: set[str],
    tables: set[str],
    lake_io: ParquetLakeIOManager,
    iceberg_io: IcebergIOManager,
    grace: timedelta,
    policy: ConsentPolicy | None = None,
) -> list[ErasableOutput]:
    """The given and default lake datasets and Iceberg tables, then registered outputs.
    raw-traces is refiled by ``policy`` (a kept user's revoked rows move to consent=false|unknown)."""
    datasets = set(datasets) | set(DEFAULT_LAKE_DATASETS)
    tables = set(tables) | {ICEBERG_TABLE}
    lake = lake_io.lake()
    catalog_cache: dict = {}

    def catalog():
        if "catalog" not in catalog_cache:
            catalog_cache["catalog"] = iceberg_io.load_catalog()
        return catalog_cache["catalog"]

    outputs: list[ErasableOutput] = [
        LakeDatasetOutput(lake, name, stale_after=grace, refile=policy if name == RAW_LAKE_DATASET else None)
        for name in sorted(datasets)
    ]
    outputs += [IcebergTableOutput(catalog, identifier, orphan_grace=grace) for identifier in sorted(tables)]
    known = {output.name for output in outputs}
    for output in registered_outputs(ErasureEnvironment(lake=lake, catalog=catalog, orphan_grace=grace)):
        if output.name not in known:
            outputs.append(output)
            known.add(output.name)
    return outputs


@dg.op(
    out=dg.Out(dg.Nothing),
    description="GDPR erasure: forgets users who revoked consent (registry) or asked to be forgotten (erasure "
    "list) in every lake cell, Iceberg table and registered output, expires snapshots, purges files, and "
    "writes an audit record under <warehouse>/_erasure/audit/. A run with nothing new is a no-op.",
)
def erase_users(
    context: dg.OpExecutionContext,
    trace_source: TraceSourceResource,
    erasure: ErasureResource,
    # IO managers as resources: their configuration says where the lake and the catalog are.
    parquet_io_manager: dg.ResourceParam[ParquetLakeIOManager],
    iceberg_io_manager: dg.ResourceParam[IcebergIOManager],
):
    registry = trace_source.load_registry()
    requests = merge_requests(requests_from_registry(registry), erasure.load_requests())
    lake = parquet_io_manager.lake()
    ledger = erasure.ledger(lake.root)
    policy = erasure.policy(registry, lake.root)
    grace = timedelta(minutes=erasure.orphan_grace_minutes)
    datasets, tables = declared_outputs(context, lake.root.uri)
    outputs = erasable_outputs(datasets, tables, parquet_io_manager, iceberg_io_manager, grace, policy)
    context.log.info(f"{len(requests)} erasure request(s); outputs: {[o.name for o in outputs]}")
    report = run_erasure(requests, outputs, ledger, run_id=context.run.run_id, policy=policy)
    context.log.info("nothing new to erase" if report.noop else f"erased {report.users} user(s): {report.audit_uri}")
    yield dg.Output(
        None,
        metadata={
            **report.as_metadata(),
            "requests_seen": len(requests),
            "outputs_checked": [output.name for output in outputs],
            "noop": report.noop,
        },
    )


# A job, not an asset: it is not a cell of the graph and must not run inside every cell's run.
@dg.job(name="gdpr_erasure", description="Forget users everywhere (see the erase_users op); started by gdpr_erasure_sensor.")
def gdpr_erasure_job():
    erase_users()


@dg.sensor(
    job=gdpr_erasure_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts gdpr_erasure when the consent registry or the erasure list changes.",
)
def gdpr_erasure_sensor(context: dg.SensorEvaluationContext, trace_source: TraceSourceResource, erasure: ErasureResource):
    registry = trace_source.load_registry()
    requests = erasure.load_requests()
    fingerprint = f"{registry.fingerprint() if registry is not None else 'none'}-{requests_fingerprint(requests)}"
    if fingerprint == context.cursor:
        return dg.SkipReason("consent registry and erasure list unchanged")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"gdpr-erasure-{fingerprint}")], cursor=fingerprint)
