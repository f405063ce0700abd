"""Shared fixtures: a real PostgreSQL database and a real S3 endpoint (moto's server).

PostgreSQL: ``MATERIALIZER_TEST_PG_URL`` (default the local server on
127.0.0.1:5432, trust auth) is the admin connection; each test that asks for
``pg_url`` gets a database of its own, dropped afterwards. In CI
(``CI=true``) a missing server is an error, never a skip.

S3: moto's threaded server on 127.0.0.1 with a random port, one per test
session; ``s3_bucket`` gives each test a fresh bucket.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
PG_ADMIN_URL = os.environ.get("MATERIALIZER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    psycopg = pytest.importorskip("psycopg")
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL is required in CI but {PG_ADMIN_URL} is unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {PG_ADMIN_URL}: {exc}")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """URL of a fresh, empty database that is dropped after the test."""
    import psycopg

    name = f"materializer_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint: moto's server on 127.0.0.1; also sets AWS_* for clients."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {key: os.environ.get(key) for key in _AWS_ENV}
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL")


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """Name of a fresh, empty bucket on the moto server."""
    import boto3

    name = f"bucket-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent (CI always has ../shared next to the repo)")
    return SHARED_DIR


@pytest.fixture(autouse=True)
def _forget_dagster_instance_context():
    """Creating a DagsterInstance sets a defs-state context variable; disposing the instance
    resets it to whatever it was before, and an instance nobody disposed is disposed by the
    garbage collector at a random later moment, reviving a dead instance's storage in the
    middle of another test. Collect such instances at the end of each test, then clear it."""
    try:
        from dagster._core.storage.defs_state.base import _current_storage
    except ImportError:  # a Dagster without defs state storage
        yield
        return
    _current_storage.set(None)
    yield
    import gc

    gc.collect()
    _current_storage.set(None)
