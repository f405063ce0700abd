"""`dagster dev` with its daemon turns new Langfuse traces into materialized cells, nobody clicking.

The contract server runs in this process with traces of yesterday (real
time: the daemon's sensor looks at the real clock); ``dagster dev`` runs as
a subprocess on a code location that holds the ingest assets, the
``langfuse_new_traces`` sensor (on by default for a Langfuse source) and its
job. The test only watches: the sensor must register the model, request the
cell, and the run must publish it.
"""

from __future__ import annotations

import os
import textwrap
import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from materializer_tests.conftest import REPO_ROOT
from materializer_tests.dagster_dev import fresh_dagster_home, running_dagster_dev
from materializer_tests.langfuse_server import PUBLIC_KEY, SECRET_KEY, FixtureData
from materializer_tests.langfuse_server.data import GLM, _add_trace

pytestmark = pytest.mark.slow

CODE_LOCATION = textwrap.dedent('''
    """Ingest assets + the Langfuse sensor, reading the source through open_source
    (wrapped for Langfuse URLs only until open_source routes them itself)."""
    import dagster as dg

    from materializer_assets.lib.langfuse import is_langfuse_source
    from materializer_assets.lib.sources import SourceUnavailableError, open_source
    from materializer_assets.lib.sources.langfuse import LangfuseTraceReader
    from materializer_assets.pipeline import ingest
    from materializer_assets.pipeline.ingest.sensors import langfuse_new_traces, materialize_cells
    from materializer_assets.resources import settings

    try:
        open_source("langfuse").close()
    except SourceUnavailableError:
        original = settings.open_source

        def _open(uri, options=None, s3_options=None):
            if is_langfuse_source(uri):
                return LangfuseTraceReader.from_source(uri, options)
            return original(uri, options, s3_options)

        settings.open_source = _open

    defs = dg.Definitions(
        assets=ingest.ASSETS,
        sensors=[langfuse_new_traces],
        jobs=[materialize_cells],
        resources=ingest.build_resources(),
    )
    ''')


def test_the_daemon_materializes_new_traces(make_langfuse_server, tmp_path, monkeypatch):
    yesterday = (datetime.now(timezone.utc) - timedelta(days=1)).date()
    data = FixtureData()
    for number in range(3):
        _add_trace(
            data,
            number,
            yesterday,
            datetime(yesterday.year, yesterday.month, yesterday.day, 9 + number, tzinfo=timezone.utc),
            GLM,
        )
    server = make_langfuse_server("4.2.0", data=data)

    home = fresh_dagster_home(tmp_path)
    (tmp_path / "code_location.py").write_text(CODE_LOCATION)
    warehouse = tmp_path / "warehouse"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "MATERIALIZER_SOURCE": "langfuse",
        "LANGFUSE_BASE_URL": server.url,
        "LANGFUSE_PUBLIC_KEY": PUBLIC_KEY,
        "LANGFUSE_SECRET_KEY": SECRET_KEY,
        "MATERIALIZER_LANGFUSE_REQUESTS_PER_SECOND": "0",
        "MATERIALIZER_WAREHOUSE": str(warehouse),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cell = warehouse / "langfuse-traces" / f"date={yesterday}" / f"model={GLM}"
    code_location = ("-f", str(tmp_path / "code_location.py"))
    # Ready once the sensor's run has published the cell.
    with running_dagster_dev(env, lambda _: (cell / "_manifest.json").exists(), 300, code_location, tmp_path):
        monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml reads its storage folder from it
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            assert GLM in instance.get_dynamic_partitions("model")
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"materializer/trigger": "langfuse_new_traces"}))
            assert len(runs) == 1 and runs[0].tags["dagster/partition"] == f"{yesterday}|{GLM}"
            deadline = time.monotonic() + 60
            while instance.get_run_by_id(runs[0].run_id).status != dg.DagsterRunStatus.SUCCESS:
                assert time.monotonic() < deadline, instance.get_run_by_id(runs[0].run_id).status
                time.sleep(1)
