"""`dagster definitions validate` on the repository's workspace, as a user runs it: quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("with_dagster_home", [False, True], ids=["temporary-instance", "dagster-home"])
def test_dagster_definitions_validate_is_quiet(tmp_path, with_dagster_home):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MATERIALIZER_", "DAGSTER_HOME"))}
    environment.update(PYTHONWARNINGS="default", PYTHONPATH=str(REPO_ROOT))
    if with_dagster_home:  # the instance `materializer run` makes: the repository's dagster.yaml in it
        (tmp_path / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
        environment["DAGSTER_HOME"] = str(tmp_path)
    # Without DAGSTER_HOME, Dagster makes a temporary instance configured by ./dagster.yaml.
    result = subprocess.run(
        [sys.executable, "-W", "default", "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "All code locations passed validation" in output
    # Dagster's own SupersessionWarning for this very command (it suggests `dg check defs`, which
    # needs dagster-dg-cli) is raised before the code location loads: it is about what the user
    # typed. Nothing else may warn: not the code location, not the instance ("WARNING" log lines).
    warnings = [
        line for line in output.splitlines()
        if ("Warning" in line or "WARNING" in line) and "`definitions_validate_command` is superseded" not in line
    ]
    assert warnings == [], output
