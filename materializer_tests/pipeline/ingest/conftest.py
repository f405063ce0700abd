"""Fixtures for the ingest stage's Dagster tests against the Langfuse contract server."""

from __future__ import annotations

import pytest

from materializer_tests.langfuse_server.fixtures import (
    langfuse_env,
    langfuse_spec_path,
    make_langfuse_server,
)  # noqa: F401, F811


@pytest.fixture
def langfuse_source(monkeypatch, langfuse_env):  # noqa: F811 (the fixture imported above)
    """Call with a contract server: sets LANGFUSE_* and makes ``TraceSourceResource`` read it.

    Until ``lib.sources.open_source`` routes ``langfuse`` / ``http(s)://`` sources
    to :class:`LangfuseTraceReader` itself, the resource's ``open_source`` is
    wrapped for the test; once it does, the real function is used unchanged.
    """
    from materializer_assets.lib.langfuse import is_langfuse_source
    from materializer_assets.lib.sources import SourceUnavailableError, open_source
    from materializer_assets.lib.sources.langfuse import LangfuseTraceReader
    from materializer_assets.resources import settings

    def point_at(server) -> str:
        langfuse_env(server)
        try:
            wired = isinstance(open_source(server.url), LangfuseTraceReader)
        except SourceUnavailableError:
            wired = False
        if not wired:
            original = settings.open_source

            def open_source_with_langfuse(uri, options=None, s3_options=None):
                if is_langfuse_source(uri):
                    return LangfuseTraceReader.from_source(uri, options)
                return original(uri, options, s3_options)

            monkeypatch.setattr(settings, "open_source", open_source_with_langfuse)
        return server.url

    return point_at
