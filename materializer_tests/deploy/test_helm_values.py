"""deploy/helm/values.yaml gives the same instance as deploy/dagster.yaml, and its run pods are valid Jobs.

No `helm` binary installs from the registries here, so the test renders the few instance
sections these values set the way the chart's templates do (`templates/helpers/instance/`:
_postgresql.tpl, _run-launcher.tpl, _concurrency.tpl, _compute-log-manager.tpl and
configmap-instance.yaml), validates them with Dagster's own config schemas, and builds a run
Job from them with dagster-k8s's builders.
"""

from __future__ import annotations

import importlib
import re

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.instance.config import dagster_instance_config_schema
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
from dagster_postgres import PostgresRunStorage
from kubernetes.client import ApiClient

from .conftest import DEPLOY_DIR, HELM_VALUES, IMAGE, PROD_INSTANCE_YAML, require_tool

kubernetes_validate = require_tool("kubernetes_validate")

RELEASE = "materializer"
NAMESPACE = "materializer"


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(HELM_VALUES.read_text())


@pytest.fixture(scope="module")
def instance_yaml() -> dict:
    return yaml.safe_load(PROD_INSTANCE_YAML.read_text())


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def chart_instance_sections(values: dict) -> dict:
    """The dagster.yaml sections the chart renders from these values (the keys we set)."""
    pg = values["postgresql"]
    postgres_config = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
            "params": pg["postgresqlParams"],
            "scheme": pg["postgresqlScheme"],
        }
    }
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": f"{RELEASE}-dagster",
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{RELEASE}-dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [item["name"] for item in k8s["envConfigMaps"]],
        "env_secrets": [item["name"] for item in k8s["envSecrets"]],
        "labels": k8s["labels"],
        "resources": k8s["resources"],
        "fail_pod_on_run_failure": k8s["failPodOnRunFailure"],
        "run_k8s_config": {_snake(key): value for key, value in k8s["runK8sConfig"].items()},
    }
    concurrency = values["concurrency"]
    s3_logs = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    retention = values["retention"]
    return {
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": postgres_config},
        "event_log_storage": {"module": "dagster_postgres.event_log", "class": "PostgresEventLogStorage", "config": postgres_config},
        "schedule_storage": {"module": "dagster_postgres.schedule_storage", "class": "PostgresScheduleStorage", "config": postgres_config},
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator", "config": {}},
        "concurrency": {
            "pools": {_snake(key): value for key, value in concurrency["pools"].items()},
            "runs": {
                "max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"],
                "tag_concurrency_limits": concurrency["runs"]["tagConcurrencyLimits"],
            },
        },
        "compute_logs": {
            "module": "dagster_aws.s3.compute_log_manager",
            "class": "S3ComputeLogManager",
            "config": {"verify": True, **{_snake(key): value for key, value in s3_logs.items()}},
        },
        "run_monitoring": {_snake(key): value for key, value in monitoring.items()},
        "run_retries": {_snake(key): value for key, value in values["dagsterDaemon"]["runRetries"].items()},
        "retention": {
            name: {"purge_after_days": retention[name]["purgeAfterDays"]} for name in ("schedule", "sensor")
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


def _valid(schema, config: dict) -> dict:
    result = process_config(resolve_to_config_type(schema), config)
    assert result.success, [error.message for error in result.errors]
    return result.value


def test_the_chart_instance_passes_dagsters_own_config_schemas(values, monkeypatch):
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-secret")
    sections = chart_instance_sections(values)
    _valid(dagster_instance_config_schema(), sections)
    _valid(K8sRunLauncher.config_type(), sections["run_launcher"]["config"])
    storage = _valid(PostgresRunStorage.config_type(), sections["run_storage"]["config"])
    # SQLAlchemy 2.1 needs the driver named (DESIGN §7).
    assert storage["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_helm_values_and_deploy_dagster_yaml_describe_the_same_instance(values, instance_yaml):
    chart = chart_instance_sections(values)
    assert chart["concurrency"] == instance_yaml["concurrency"]
    assert chart["run_monitoring"] == instance_yaml["run_monitoring"]
    assert chart["run_retries"] == instance_yaml["run_retries"]
    assert chart["retention"] == instance_yaml["retention"]
    assert chart["telemetry"] == instance_yaml["telemetry"]
    assert chart["run_storage"]["config"]["postgres_db"]["scheme"] == instance_yaml["storage"]["postgres"]["postgres_db"]["scheme"]

    ours = instance_yaml["run_launcher"]["config"]
    theirs = chart["run_launcher"]["config"]
    for key in (
        "image_pull_policy",
        "env_config_maps",
        "env_secrets",
        "labels",
        "resources",
        "fail_pod_on_run_failure",
        "run_k8s_config",
        "dagster_home",
        "load_incluster_config",
    ):
        assert theirs[key] == ours[key], key

    ours_logs = instance_yaml["compute_logs"]["config"]
    theirs_logs = chart["compute_logs"]["config"]
    for key in ("prefix", "skip_empty_files", "upload_interval"):
        assert theirs_logs[key] == ours_logs[key], key
    # The run coordinator carries no limits: they live under `concurrency` (DESIGN §7).
    assert values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"] == {}


def test_a_run_pod_built_from_the_helm_values_is_a_valid_job(values):
    launcher = chart_instance_sections(values)["run_launcher"]["config"]
    job_config = DagsterK8sJobConfig(
        job_image=IMAGE,
        dagster_home=launcher["dagster_home"],
        image_pull_policy=launcher["image_pull_policy"],
        service_account_name=launcher["service_account_name"],
        instance_config_map=launcher["instance_config_map"],
        postgres_password_secret=launcher["postgres_password_secret"],
        env_config_maps=launcher["env_config_maps"],
        env_secrets=launcher["env_secrets"],
        labels=launcher["labels"],
        resources=launcher["resources"],
    )
    job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-0b1e2f3a",
        user_defined_k8s_config=UserDefinedDagsterK8sConfig.from_dict(launcher["run_k8s_config"]),
        component="run_worker",
        labels={"dagster/job": "__ASSET_JOB"},
    )
    body = ApiClient().sanitize_for_serialization(job)
    kubernetes_validate.validate(body, "1.33", strict=True)
    assert body["spec"]["backoffLimit"] == 0
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == values["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
    assert {"secretRef": {"name": "materializer-secrets"}} in container["envFrom"]
    env = {item["name"]: item for item in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == values["global"]["postgresqlSecretName"]


def test_the_user_deployment_serves_the_definitions_the_image_runs(values):
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    attribute = args[args.index("--attribute") + 1]
    assert isinstance(getattr(importlib.import_module(module), attribute), dg.Definitions)

    dockerfile = (DEPLOY_DIR / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd, "the Dockerfile's CMD is an exec-form list"
    command = yaml.safe_load(cmd.group(1))
    assert command[:3] == ["dagster", "api", "grpc"]
    assert command[command.index("--module-name") + 1] == module
    assert command[command.index("--attribute") + 1] == attribute
    assert int(command[command.index("--port") + 1]) == deployment["port"]
    assert re.search(rf"^EXPOSE {deployment['port']}$", dockerfile, re.MULTILINE)
    assert f"DAGSTER_HOME={values['global']['dagsterHome']}" in dockerfile
