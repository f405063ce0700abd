"""A real OpenAI-compatible HTTP test server (see :mod:`.server`)."""

from .server import OpenAITestServer, ServerConfig

__all__ = ["OpenAITestServer", "ServerConfig"]
