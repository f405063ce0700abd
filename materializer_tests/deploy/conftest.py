"""Fixtures for the production deployment: deploy/dagster.yaml on a real PostgreSQL database.

``prod_env`` sets every variable deploy/dagster.yaml reads (the database from ``pg_url``, the
compute-log bucket on moto's S3 server, Kubernetes names); ``prod_home`` is a DAGSTER_HOME
holding that file, unchanged unless a test passes overrides to ``write_instance_yaml``.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ..conftest import REPO_ROOT

DEPLOY_DIR = REPO_ROOT / "deploy"
PROD_INSTANCE_YAML = DEPLOY_DIR / "dagster.yaml"
HELM_VALUES = DEPLOY_DIR / "helm" / "values.yaml"
IMAGE = "registry.example.com/trace-reward-materializer:0.1.0-test"


def require_tool(module: str):
    """Import a validator from the test extra; skip locally without it, fail in CI (CI=true)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')", allow_module_level=True)


def pg_env(pg_url: str) -> dict[str, str]:
    """DAGSTER_PG_* for a ``postgresql://user[:password]@host:port/db`` URL."""
    parts = urlsplit(pg_url)
    return {
        "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parts.port or 5432),
        "DAGSTER_PG_DB": parts.path.lstrip("/"),
        "DAGSTER_PG_USERNAME": parts.username or "postgres",
        # Trust auth ignores it; the instance still needs the variable to be set.
        "DAGSTER_PG_PASSWORD": parts.password or "unused-with-trust-auth",
    }


@pytest.fixture
def prod_env(pg_url, s3_bucket, monkeypatch) -> dict[str, str]:
    env = {
        **pg_env(pg_url),
        "DAGSTER_K8S_JOB_NAMESPACE": "materializer",
        "DAGSTER_K8S_SERVICE_ACCOUNT": "materializer-runs",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": "materializer-dagster-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": "dagster-postgresql-secret",
        "MATERIALIZER_IMAGE": IMAGE,
        "DAGSTER_COMPUTE_LOGS_BUCKET": s3_bucket,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def write_instance_yaml(home: Path, overrides: dict | None = None) -> Path:
    """deploy/dagster.yaml into ``home``; ``overrides`` replace top-level sections or launcher keys."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not overrides:
        shutil.copyfile(PROD_INSTANCE_YAML, target)
        return target
    config = yaml.safe_load(PROD_INSTANCE_YAML.read_text())
    launcher = overrides.pop("run_launcher_config", None)
    if launcher:
        config["run_launcher"]["config"].update(launcher)
    config.update(overrides)
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


@pytest.fixture
def prod_home(tmp_path, prod_env) -> Path:
    home = tmp_path / "dagster_home"
    write_instance_yaml(home)
    return home
