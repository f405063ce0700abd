"""The resources a test run of the graph needs, in one place: a resource the graph gains is added here once."""

from __future__ import annotations

from materializer_assets.resources import ErasureResource, ParquetLakeIOManager, PrivacyResource, TraceSourceResource
from materializer_assets.resources.iceberg_io import IcebergIOManager
from materializer_assets.resources.scoring import JudgeResource, RagasResource

# Retries fast enough for a test server that fails on purpose.
FAST_RETRIES = {"initial_backoff_s": 0.01, "max_attempts": 3, "timeout_s": 10.0}


def graph_resources(source: str, warehouse: str, **overrides) -> dict:
    """Every resource of the graph for a source and a warehouse, with no judge or Ragas endpoint;
    ``overrides`` replace or add resources by key."""
    return {
        "trace_source": TraceSourceResource(source=source),
        "privacy": PrivacyResource(),
        "erasure": ErasureResource(),
        "parquet_io_manager": ParquetLakeIOManager(warehouse=warehouse),
        "iceberg_io_manager": IcebergIOManager(warehouse=warehouse),
        "judge": JudgeResource(),
        "ragas": RagasResource(),
        **overrides,
    }


def served_judge(server, **settings) -> JudgeResource:
    """The judge on the OpenAI-compatible test server."""
    return JudgeResource(base_url=server.base_url, model="judge-a", **{**FAST_RETRIES, **settings})


def served_ragas(server, **settings) -> RagasResource:
    """Ragas on the OpenAI-compatible test server (LLM and embeddings)."""
    return RagasResource(
        base_url=server.base_url, model="ragas-llm", embeddings_model="embedder", **{**FAST_RETRIES, **settings}
    )
