"""Start `dagster dev` in the repository root for a test, as a user would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx

from .conftest import REPO_ROOT, _free_port


def fresh_dagster_home(tmp_path: Path) -> Path:
    """An empty DAGSTER_HOME holding the repository's local dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@contextlib.contextmanager
def running_dagster_dev(
    env: dict,
    ready: Callable[[str], bool],
    timeout: float = 120,
    code: tuple[str, ...] = ("-w", "workspace.yaml"),
    cwd: Path = REPO_ROOT,
) -> Iterator[str]:
    """`dagster dev` of ``code`` (the repository's workspace by default) on a free port with
    ``env``; yields its URL once ``ready(url)`` is true, and stops its whole process group
    afterwards."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", *code, "-h", "127.0.0.1", "-p", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"dagster dev exited: {process.stdout.read().decode()[-3000:]}")
            try:
                if ready(url):
                    break
            except (httpx.HTTPError, AssertionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dagster dev was not ready within {timeout:.0f} s")
            time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
