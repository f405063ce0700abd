"""pytest fixtures for the OpenAI test server; conftest files import them."""

from __future__ import annotations

from typing import Iterator

import pytest

from .server import OpenAITestServer, ServerConfig


@pytest.fixture(scope="session")
def openai_server_session() -> Iterator[OpenAITestServer]:
    server = OpenAITestServer(ServerConfig()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_server(openai_server_session: OpenAITestServer) -> OpenAITestServer:
    """The OpenAI-compatible server on 127.0.0.1, with default settings and zeroed counts."""
    openai_server_session.config = ServerConfig()
    openai_server_session.reset()
    return openai_server_session
