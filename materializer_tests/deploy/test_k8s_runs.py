"""Each run becomes a Kubernetes Job: the production instance's K8sRunLauncher, driven by the
real daemon, creates one Job per (date, model) cell; the Jobs are checked against Kubernetes'
own JSON schemas (kubernetes-validate, strict). No cluster: the API server is kube_api's
recorder on 127.0.0.1, reached through the launcher's real `kubernetes` client.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from ..conftest import REPO_ROOT
from .conftest import IMAGE, require_tool, write_instance_yaml
from .k8s_location import CURSOR, DAY, MODELS
from .kube_api import running_fake_kube_api

kubernetes_validate = require_tool("kubernetes_validate")

# Non-secret variables deploy/dagster.yaml's storage needs inside each run pod: they belong in the
# materializer-config ConfigMap (the password comes from postgres_password_secret).
RUN_POD_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_DB", "DAGSTER_PG_USERNAME", "DAGSTER_COMPUTE_LOGS_BUCKET")
K8S_VERSION = "1.33"  # a current Kubernetes minor; schemas ship with kubernetes-validate


def _container(job: dict) -> dict:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def check_run_worker_job(job: dict, namespace: str, prod_env: dict) -> None:
    """What every run pod needs, checked on the Job JSON a cluster would receive."""
    assert namespace == prod_env["DAGSTER_K8S_JOB_NAMESPACE"]
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0  # Dagster retries runs, Kubernetes must not
    assert spec["ttlSecondsAfterFinished"] == 86400
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == prod_env["DAGSTER_K8S_SERVICE_ACCOUNT"]
    assert pod["restartPolicy"] == "Never"
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/part-of"] == "trace-reward-materializer"
    assert labels["app.kubernetes.io/component"] == "run-worker"

    container = _container(job)
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    env_from = {(next(iter(source)), next(iter(source.values()))["name"]) for source in container["envFrom"]}
    assert ("secretRef", "materializer-secrets") in env_from
    assert ("configMapRef", "materializer-config") in env_from
    env = {item["name"]: item for item in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": prod_env["DAGSTER_K8S_PG_PASSWORD_SECRET"],
        "key": "postgresql-password",
    }
    # The pod gets the instance as a reference in its arguments: storage settings stay `env:`
    # references, resolved in the pod from the materializer-config ConfigMap and the Secret.
    args = json.loads(container["args"][3])
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    ref = args["instance_ref"]
    needed = set()
    for section in ("run_storage_data", "event_storage_data", "schedule_storage_data", "compute_logs_data"):
        needed |= set(re.findall(r"env: (\w+)", ref[section]["config_yaml"]))
    assert needed == set(RUN_POD_VARIABLES) | {"DAGSTER_PG_PASSWORD"}
    # Secrets are referenced, never copied into the spec.
    assert prod_env["DAGSTER_PG_PASSWORD"] not in json.dumps(job)


@pytest.mark.slow
def test_a_sensor_tick_becomes_one_kubernetes_job_per_cell(tmp_path, prod_env):
    with running_fake_kube_api() as kube:
        home = tmp_path / "dagster_home"
        # Only how the launcher reaches the API server differs from deploy/dagster.yaml.
        write_instance_yaml(
            home,
            {
                "run_launcher_config": {
                    "load_incluster_config": False,
                    "kubeconfig_file": str(kube.write_kubeconfig(tmp_path / "kubeconfig.json")),
                }
            },
        )
        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(
            "load_from:\n"
            "  - python_module:\n"
            "      module_name: materializer_tests.deploy.k8s_location\n"
            "      attribute: defs\n"
            "      location_name: materializer_assets\n"
            f"      working_directory: {REPO_ROOT}\n"
        )
        env = {**os.environ, "DAGSTER_HOME": str(home), "MATERIALIZER_WAREHOUSE": str(tmp_path / "warehouse")}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", "-w", str(workspace)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 150
            while len(kube.jobs) < len(MODELS) and time.monotonic() < deadline:
                if daemon.poll() is not None:
                    raise AssertionError(daemon.stdout.read().decode()[-4000:])
                time.sleep(1)
        finally:
            if daemon.poll() is None:
                os.killpg(daemon.pid, signal.SIGTERM)
            try:
                output = daemon.communicate(timeout=60)[0].decode()
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                output = daemon.communicate()[0].decode()
        assert len(kube.jobs) == len(MODELS), output[-4000:]
        jobs = list(kube.jobs)

    for recorded in jobs:
        check_run_worker_job(recorded.body, recorded.namespace, prod_env)

    # A new instance (any other process) sees what the daemon stored in Postgres.
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert instance.get_dynamic_partitions("model") == MODELS
        sensor_state = next(s for s in instance.all_instigator_state() if s.name == "new_models_sensor")
        assert sensor_state.instigator_data.cursor == CURSOR
        runs = instance.get_runs()
        assert sorted(run.tags["dagster/partition"] for run in runs) == [f"{DAY}|{model}" for model in MODELS]
        assert {run.status for run in runs} == {dg.DagsterRunStatus.STARTING}  # launched, pod pending
        job_run_ids = {r.body["spec"]["template"]["metadata"]["labels"]["dagster/run-id"] for r in jobs}
        assert job_run_ids == {run.run_id for run in runs}
        assert all(run.tags["dagster/image"] == IMAGE for run in runs)
    finally:
        instance.dispose()
